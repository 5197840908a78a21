from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "okuru.customers"
    label = "customers"

    def ready(self) -> None:
        from okuru.customers import jobs  # noqa: F401 -- registers the import and export runners
