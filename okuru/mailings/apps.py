from django.apps import AppConfig


class MailingsConfig(AppConfig):
    name = "okuru.mailings"
    label = "mailings"

    def ready(self) -> None:
        # The "delivery_history" filter condition plugs into the customers filter engine;
        # extraction registers its job runner.
        from okuru.mailings import extraction, targeting  # noqa: F401
