"""Paths as ``okuru.lib.signing.path_for`` writes them into sent mail: never change them.

A token may reach us damaged (a mail client cutting or re-encoding the URL, a ``%2F`` decoded
to ``/``): every path under a prefix goes to its view, which answers a bad token as it always
does — the pixel for an open, the "link not valid" page for the others — never Django's 404 or
a server error."""

from django.urls import path, re_path

from okuru.tracking import views

app_name = "tracking"
urlpatterns = [
    path("o/<path:token>.gif", views.open_pixel, name="open"),
    re_path(r"^o/(?P<token>[\s\S]*)\Z", views.open_pixel),
    re_path(r"^c/(?P<token>[\s\S]*)\Z", views.click, name="click"),
    re_path(r"^u/(?P<token>[\s\S]*)\Z", views.unsubscribe, name="unsubscribe"),
    re_path(r"^v/(?P<token>[\s\S]*)\Z", views.view_in_browser, name="view"),
]
