from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "okuru.tracking"
    label = "tracking"

    def ready(self) -> None:
        # Imported here, not at the top: models may be imported only once the app registry is
        # ready. Reports apply the opens and clicks still in the inbox before they read.
        from okuru.mailings import reports
        from okuru.tracking import recording

        reports.register_catch_up(recording.drain_quietly)
