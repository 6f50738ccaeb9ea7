"""ASGI entry point: HTTP to Django, WebSocket through origin and auth checks.

Wired as in the Channels tutorial: ``get_asgi_application()`` runs before any
import that touches models.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from kaiwa.cli import data_dir_create  # noqa: E402

data_dir_create()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from kaiwa.accounts.middleware import BrowserOriginValidator, WebsocketAuthStack  # noqa: E402
from kaiwa.chat.realtime.lifespan import lifespan  # noqa: E402
from kaiwa.chat.realtime.limits import ConnectRateLimit  # noqa: E402
from kaiwa.chat.realtime.middleware import RawSendMiddleware  # noqa: E402
from kaiwa.chat.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # At shutdown: pending read positions written, the fan-out hub closed.
        "lifespan": lifespan,
        # The connect rate per IP first: a refused handshake costs no database work.
        "websocket": ConnectRateLimit(
            RawSendMiddleware(
                BrowserOriginValidator(
                    # A list of Django's URLPattern, which types-channels does not
                    # take for its own (see kaiwa.chat.routing).
                    WebsocketAuthStack(URLRouter(websocket_urlpatterns))  # type: ignore[arg-type]
                )
            )
        ),
    }
)
