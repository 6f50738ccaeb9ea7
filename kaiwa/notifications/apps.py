from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "kaiwa.notifications"
    label = "notifications"
    verbose_name = "Notifications"
