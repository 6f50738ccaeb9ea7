from rest_framework.authentication import TokenAuthentication


class BearerTokenAuthentication(TokenAuthentication):
    """DRF token authentication with the ``Authorization: Bearer <token>`` header."""

    keyword = "Bearer"
