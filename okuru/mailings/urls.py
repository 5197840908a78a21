from django.urls import path

from okuru.mailings import extraction_views, redelivery_views, views

app_name = "mailings"
urlpatterns = [
    path("", views.mail_list, name="list"),
    path("new/", views.mail_create, name="create"),
    path("<int:mail_id>/", views.mail_detail, name="detail"),
    path("<int:mail_id>/edit/", views.mail_edit, name="edit"),
    path("<int:mail_id>/preview/", views.mail_preview, name="preview"),
    path("<int:mail_id>/counts/", views.mail_counts, name="counts"),
    path("<int:mail_id>/test/", views.mail_test, name="test"),
    path("<int:mail_id>/links/", views.mail_links, name="links"),
    path("<int:mail_id>/send/", views.mail_send, name="send"),
    path("extractions/", extraction_views.extraction_list, name="extractions"),
    path("extractions/new/", extraction_views.extraction_new, name="extraction_new"),
    path("extractions/purge/", extraction_views.extraction_purge, name="extraction_purge"),
    path("extractions/<int:extraction_id>/", extraction_views.extraction_detail, name="extraction"),
    path(
        "extractions/<int:extraction_id>/discard/",
        extraction_views.extraction_discard,
        name="extraction_discard",
    ),
    path(
        "extractions/<int:extraction_id>/continue/",
        extraction_views.extraction_continue,
        name="extraction_continue",
    ),
    path("relays/", views.relay_list, name="relays"),
    path("relays/new/", views.relay_create, name="relay_create"),
    path("relays/<int:relay_id>/", views.relay_edit, name="relay"),
    path("relays/<int:relay_id>/default/", views.relay_default, name="relay_default"),
    path("relays/<int:relay_id>/test/", views.relay_test, name="relay_test"),
    path("relays/<int:relay_id>/delete/", views.relay_delete, name="relay_delete"),
    path("deliveries/", views.delivery_list, name="deliveries"),
    path("deliveries/<int:delivery_id>/", views.delivery_report, name="report"),
    path("deliveries/<int:delivery_id>/unknown/", views.delivery_unknown, name="unknown"),
    # Before delivery_action, whose <str:action> would take these.
    path("deliveries/<int:delivery_id>/resend/", redelivery_views.resend, name="resend"),
    path("deliveries/<int:delivery_id>/redeliver/", redelivery_views.redeliver, name="redeliver"),
    path(
        "deliveries/<int:delivery_id>/redeliver/counts/",
        redelivery_views.redeliver_counts,
        name="redeliver_counts",
    ),
    path("deliveries/<int:delivery_id>/plans/", redelivery_views.plan_create, name="plan"),
    path("plans/<int:plan_id>/cancel/", redelivery_views.plan_cancel, name="plan_cancel"),
    path(
        "deliveries/<int:delivery_id>/<str:action>/",
        views.delivery_action,
        name="delivery_action",
    ),
    path("deliveries/<int:delivery_id>/events.csv", views.delivery_events, name="events"),
    path(
        "deliveries/<int:delivery_id>/recipients/<str:count>/",
        views.delivery_recipients,
        name="recipients",
    ),
    path(
        "deliveries/<int:delivery_id>/recipients/<str:count>/export/",
        views.delivery_export,
        name="export",
    ),
]
