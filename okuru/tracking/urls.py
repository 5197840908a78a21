"""Paths as ``okuru.lib.signing.path_for`` writes them into sent mail: never change them."""

from django.urls import path

from okuru.tracking import views

app_name = "tracking"
urlpatterns = [
    path("o/<str:token>.gif", views.open_pixel, name="open"),
    path("c/<str:token>", views.click, name="click"),
    path("u/<str:token>", views.unsubscribe, name="unsubscribe"),
    path("v/<str:token>", views.view_in_browser, name="view"),
]
