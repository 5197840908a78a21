from django.apps import AppConfig


class MailingsConfig(AppConfig):
    name = "okuru.mailings"
    label = "mailings"

    def ready(self) -> None:
        # The "delivery_history" filter condition plugs into the customers filter engine.
        from okuru.mailings import targeting  # noqa: F401
