from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "kaiwa.chat"
    label = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from . import signals  # noqa: F401 (connects the receivers)
