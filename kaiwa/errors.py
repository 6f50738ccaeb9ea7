"""What Django's error reports (the debug page, error emails) may show."""

import re

from django.views.debug import SafeExceptionReporterFilter


class KaiwaExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, also masking every setting and environment variable
    whose name ends in ``URL`` or ``URLS`` (DATABASE_URL, REDIS_URL,
    EMAIL_URL, CELERY_BROKER_URL ...): they carry passwords
    (``redis://:password@host``). Django's own pattern
    (API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE) misses them.
    ``KAIWA_BASE_URL`` is public but masked all the same, as simpler than a
    list of exceptions."""

    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URLS?$|BROKER", flags=re.IGNORECASE
    )
