from django.apps import AppConfig


class MailingsConfig(AppConfig):
    name = "okuru.mailings"
    label = "mailings"

    def ready(self) -> None:
        # The "delivery_history" filter condition plugs into the customers filter engine;
        # extraction and recipient_fields register their job runners.
        from okuru.mailings import extraction, recipient_fields, targeting  # noqa: F401
