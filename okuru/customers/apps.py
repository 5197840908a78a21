from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "okuru.customers"
    label = "customers"
