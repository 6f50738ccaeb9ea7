from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "kaiwa.accounts"
    label = "accounts"
    verbose_name = "Accounts"
