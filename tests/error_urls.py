"""URLs for the error page tests: the application's own, plus a view that fails."""

from django.urls import include, path

from okuru.urls import handler403  # noqa: F401  (the handlers must be in the URLconf module)
from okuru.urls import urlpatterns as okuru_patterns


def fail(request):
    raise RuntimeError("a bug")


urlpatterns = [path("fail/", fail), path("", include(okuru_patterns))]
