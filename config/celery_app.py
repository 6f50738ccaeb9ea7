"""The Celery app. Broker: CELERY_BROKER_URL, else REDIS_URL; with neither,
tasks run eagerly in-process (see config.settings)."""

import logging.config
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("kaiwa")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def logging_configure(**kwargs: Any) -> None:
    """Configure a worker's logging (main and pool processes) from Django's
    ``settings.LOGGING``, as cookiecutter-django does.

    With a receiver connected Celery leaves the root logger alone, so worker
    records come out in Kaiwa's format at KAIWA_LOG_LEVEL; the worker's
    ``--loglevel`` and ``--logfile`` options no longer apply.
    """
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
