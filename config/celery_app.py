"""The Celery app. Broker: CELERY_BROKER_URL, else REDIS_URL; with neither,
tasks run eagerly in-process (see config.settings)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("kaiwa")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
