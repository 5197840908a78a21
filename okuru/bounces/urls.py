from django.urls import path

from okuru.bounces import views

app_name = "bounces"
urlpatterns = [
    path("", views.bounce_list, name="list"),
    path("queue/", views.bounce_queue, name="queue"),
    path("<int:bounce_id>/", views.bounce_detail, name="detail"),
    path("<int:bounce_id>/reparse/", views.bounce_reparse, name="reparse"),
    path("<int:bounce_id>/discard/", views.bounce_discard, name="discard"),
    path("list-cleaning/", views.list_cleaning, name="list_cleaning"),
    path("list-cleaning/export/", views.list_cleaning_export, name="list_cleaning_export"),
    path("mailboxes/", views.mailbox_list, name="mailboxes"),
    path("mailboxes/new/", views.mailbox_create, name="mailbox_create"),
    path("mailboxes/<int:mailbox_id>/", views.mailbox_edit, name="mailbox"),
    path("mailboxes/<int:mailbox_id>/test/", views.mailbox_test, name="mailbox_test"),
    path("mailboxes/<int:mailbox_id>/delete/", views.mailbox_delete, name="mailbox_delete"),
    path("sns/", views.sns_webhook, name="sns"),
]
