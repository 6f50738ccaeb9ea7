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
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|AUTHORIZATION|URLS?$|BROKER",
        flags=re.IGNORECASE,
    )

    def cleanse_setting(self, key: int | str, value: object) -> object:
        """Django's cleansing, then the password of any URL left in a value
        (``CACHES["default"]["LOCATION"]``, ``CHANNEL_LAYERS ... hosts``:
        settings whose names say nothing of the secret they carry)."""
        cleansed = super().cleanse_setting(key, value)
        if type(cleansed) is str:  # not a lazy object, which only looks like one
            return URL_PASSWORD.sub(r"\1" + self.cleansed_substitute + "@", cleansed)
        return cleansed


# scheme://user:password@ (the user may be empty: redis://:password@host)
URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^/@\s:]*:)[^@/\s]*@")
