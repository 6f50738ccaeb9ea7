from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "kaiwa.chat"
    label = "chat"
    verbose_name = "Chat"
