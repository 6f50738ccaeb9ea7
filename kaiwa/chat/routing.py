from django.urls import re_path

from kaiwa.chat.realtime import consumers

# The room part is matched loosely and validated by the consumer, so that a bad
# name is answered with close code 4404 rather than a routing error.
# django-stubs types re_path() for views only, and types-channels' URLRouter
# wants its own pattern type: the stubs disagree on what Channels routes.
websocket_urlpatterns = [
    re_path(r"^ws/chat/(?P<room>[^/]*)/?$", consumers.ChatConsumer.as_asgi()),  # type: ignore[arg-type]
    re_path(r"", consumers.NoRouteConsumer.as_asgi()),  # type: ignore[arg-type]
]
