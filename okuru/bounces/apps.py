from django.apps import AppConfig


class BouncesConfig(AppConfig):
    name = "okuru.bounces"
    label = "bounces"
