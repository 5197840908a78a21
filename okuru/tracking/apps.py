from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "okuru.tracking"
    label = "tracking"
