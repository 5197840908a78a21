from django.apps import AppConfig


class MailingsConfig(AppConfig):
    name = "okuru.mailings"
    label = "mailings"

    def ready(self) -> None:
        # Imported here, not at the top: models may be imported only once the app registry is
        # ready. Importing them registers mailings' filter kinds with the customers filter
        # engine ("delivery_history" in targeting, "delivery_count" in reports), the job runners
        # of extraction and recipient_fields, and the sending task that actions kick (tasks).
        from okuru.mailings import (  # noqa: F401
            extraction,
            recipient_fields,
            reports,
            targeting,
            tasks,
        )
