from django.urls import re_path

from . import consumers

# The room part is matched loosely and validated by the consumer, so that a bad
# name is answered with close code 4404 rather than a routing error.
websocket_urlpatterns = [
    re_path(r"^ws/chat/(?P<room>[^/]*)/?$", consumers.ChatConsumer.as_asgi()),
    re_path(r"", consumers.NoRouteConsumer.as_asgi()),
]
