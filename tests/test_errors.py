"""Error reports (kaiwa.error_reports.KaiwaExceptionReporterFilter): no secret of a
setting or a request shows in them."""

from django.views.debug import get_default_exception_reporter_filter


def test_it_masks_url_shaped_secrets(settings):
    settings.DATABASE_URL = "postgres://kaiwa:db-password@db:5432/kaiwa"
    settings.REDIS_URL = "redis://:redis-password@redis:6379/0"
    settings.EMAIL_URL = "smtp://mailer:mail-password@smtp:587"
    settings.CELERY_BROKER_URL = "amqp://rabbit:broker-password@mq//"
    shown = str(get_default_exception_reporter_filter().get_safe_settings())
    for secret in ("db-password", "redis-password", "mail-password", "broker-password"):
        assert secret not in shown
    assert "DATABASE_URL" in shown  # named, with its value masked


def test_it_masks_passwords_inside_other_settings_and_the_authorization_header(rf, settings):
    url = "redis://:redis-password@redis:6379/0"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache", "LOCATION": url}
    }
    settings.CHANNEL_LAYERS = {"default": {"CONFIG": {"hosts": [url]}}}
    reporter = get_default_exception_reporter_filter()
    shown = str(reporter.get_safe_settings())
    assert "redis-password" not in shown
    assert "redis://:********************@redis:6379/0" in shown  # the rest still helps
    request = rf.get("/", HTTP_AUTHORIZATION="Bearer secret-token-value")
    assert "secret-token-value" not in str(reporter.get_safe_request_meta(request))
