"""The WebSocket origin check: scheme, host and port, as Django's CSRF check."""

import pytest

from kaiwa.accounts.middleware import origin_allowed


def scope(host="127.0.0.1:8000", scheme="ws"):
    return {"type": "websocket", "scheme": scheme, "headers": [(b"host", host.encode())]}


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://127.0.0.1:8000", True),  # the page Kaiwa served
        ("http://127.0.0.1:9999", False),  # another port of the same host
        ("https://127.0.0.1:8000", False),  # another scheme
        ("http://127.0.0.1", False),
        ("http://evil.example:8000", False),
        ("null", False),
        ("http://[::1", False),  # not a URL
    ],
)
def test_only_the_sites_own_origin_passes(settings, origin, allowed):
    settings.CSRF_TRUSTED_ORIGINS = []
    assert origin_allowed(scope(), origin) is allowed


def test_a_secure_socket_expects_an_https_origin(settings):
    assert origin_allowed(scope("chat.example.com", "wss"), "https://chat.example.com") is False
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    assert origin_allowed(scope("chat.example.com", "wss"), "https://chat.example.com")
    assert not origin_allowed(scope("chat.example.com", "wss"), "http://chat.example.com")


def test_a_host_outside_allowed_hosts_is_no_origin_of_ours(settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    assert not origin_allowed(scope("evil.example"), "http://evil.example")


def test_trusted_origins_and_their_wildcards_pass(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com", "https://*.example.org"]
    assert origin_allowed(scope(), "https://chat.example.com")
    assert origin_allowed(scope(), "https://team.example.org")
    assert not origin_allowed(scope(), "http://team.example.org")  # the scheme counts
    assert not origin_allowed(scope(), "https://example.org.evil.example")
