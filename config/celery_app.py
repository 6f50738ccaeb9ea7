"""The Celery app. Broker: CELERY_BROKER_URL, else REDIS_URL; with neither,
tasks run eagerly in-process (see config.settings)."""

import logging.config
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging, task_failure, task_retry, task_success

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


@task_success.connect
def task_succeeded(sender: Any = None, **kwargs: Any) -> None:
    """Count a task that returned (kaiwa_celery_tasks_total{outcome="success"})."""
    _task_count(sender, "success")


@task_failure.connect
def task_failed(sender: Any = None, **kwargs: Any) -> None:
    """Count a task that raised and will not be retried."""
    _task_count(sender, "failure")


@task_retry.connect
def task_retried(sender: Any = None, **kwargs: Any) -> None:
    """Count a task that asked to be retried."""
    _task_count(sender, "retry")


def _task_count(task: Any, outcome: str) -> None:
    from kaiwa import metrics

    metrics.CELERY_TASKS.labels(getattr(task, "name", "unknown"), outcome).inc()
