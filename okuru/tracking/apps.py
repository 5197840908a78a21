from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "okuru.tracking"
    label = "tracking"

    def ready(self) -> None:
        # The "delivery_count" filter condition (the recipients of a report's count) plugs
        # into the customers filter engine; the recipient exports are built on it.
        from okuru.mailings import reports  # noqa: F401
