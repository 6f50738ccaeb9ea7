"""REST authentication by API token: ``Authorization: Bearer <token>``."""

from knox.auth import TokenAuthentication


class BearerTokenAuthentication(TokenAuthentication):
    """django-rest-knox's token authentication (hashed tokens with an expiry)
    under the ``Bearer`` scheme of PROTOCOL.md section 5 (``REST_KNOX``'s
    ``AUTH_HEADER_PREFIX``). A wrong, expired or revoked token, or one of an
    inactive user, answers 401 with ``WWW-Authenticate: Bearer``."""
