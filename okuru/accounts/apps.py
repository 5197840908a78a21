from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "okuru.accounts"
    label = "accounts"
