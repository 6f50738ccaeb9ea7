"""Settings of the seed tutorial's project (seeds/000): channels_redis's
RedisChannelLayer with its default configuration."""

import os
import secrets

# A new key per process: nothing this server signs outlives the benchmark run.
SECRET_KEY = secrets.token_urlsafe(50)
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "channels",
]
ASGI_APPLICATION = "bench.tutorial.asgi.application"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
host, _, port = os.environ.get("BENCH_REDIS", "127.0.0.1:6379").partition(":")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [(host, int(port))]},
    },
}
USE_TZ = True
