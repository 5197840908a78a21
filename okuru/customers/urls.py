from django.urls import path

from okuru.customers import views

app_name = "customers"
urlpatterns = [
    path("", views.customer_list, name="list"),
    path("customers/count/", views.customer_count, name="count"),
    path("customers/new/", views.customer_create, name="create"),
    path("customers/<int:customer_id>/", views.customer_detail, name="detail"),
    path("customers/<int:customer_id>/delete/", views.customer_delete, name="delete"),
    path("views/", views.view_list, name="views"),
    path("views/new/", views.view_create, name="view_create"),
    path("views/<int:view_id>/", views.view_edit, name="view_edit"),
    path("views/<int:view_id>/delete/", views.view_delete, name="view_delete"),
    path("design/", views.design_page, name="design"),
    path("design/fields/new/", views.field_add, name="field_add"),
    path("design/fields/<str:key>/", views.field_edit, name="field_edit"),
    path("design/fields/<str:key>/delete/", views.field_delete, name="field_delete"),
    path("design/topics/new/", views.topic_add, name="topic_add"),
    path("design/topics/<int:topic_id>/", views.topic_edit, name="topic_edit"),
    path("design/topics/<int:topic_id>/delete/", views.topic_delete, name="topic_delete"),
    path("import/", views.import_page, name="import"),
    path("export/", views.export_page, name="export"),
    path(
        "export/settings/<int:setting_id>/delete/",
        views.export_setting_delete,
        name="export_setting_delete",
    ),
    path("export/jobs/<int:job_id>/download/", views.export_download, name="export_download"),
]
