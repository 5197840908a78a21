from django.urls import path

from okuru.capture import views

app_name = "capture"
urlpatterns = [
    path("", views.message_list, name="list"),
    path("<int:message_id>/", views.message_detail, name="detail"),
    path("<int:message_id>/html/", views.message_html, name="html"),
    path("<int:message_id>/raw/", views.message_raw, name="raw"),
]
