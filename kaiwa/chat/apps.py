from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "kaiwa.chat"
    label = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from kaiwa.chat import receivers  # noqa: F401 (connects the receivers)
