"""Health endpoints for load balancers and orchestrators.

- ``GET /healthz``: the process is up and serving HTTP: always 200
  ``{"status": "ok"}``, touching nothing else (a liveness probe).
- ``GET /readyz``: the process can do its work: the database, Redis (with
  ``REDIS_URL``) and the Celery broker (when one is configured) each answer
  within READY_TIMEOUT, probed at once with django-health-check's checks
  (``SELECT 1``, Redis ``PING``, a broker connection). 200 with
  ``{"<check>": "OK", ...}``, else 503 with the failing checks' errors,
  always JSON, never cached. Cheap enough to poll every second
  (docs/operations.md has the figure).

Both are exempt from the HTTPS redirect (``SECURE_REDIRECT_EXEMPT``) so that
a load balancer may poll the backend over plain HTTP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import typing
from functools import partial

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET
from health_check import checks
from health_check.base import HealthCheck
from health_check.contrib.redis import Redis as RedisPing
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView

# How long each readiness probe may take (seconds): a load balancer polling
# every second must get its answer within that second or so.
READY_TIMEOUT = datetime.timedelta(seconds=1)


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """``GET /healthz``: 200 ``{"status": "ok"}`` while the process serves HTTP."""
    response = JsonResponse({"status": "ok"})
    add_never_cache_headers(response)
    return response


@dataclasses.dataclass
class Database(checks.Database):
    """``SELECT 1`` on the default database, within READY_TIMEOUT."""

    timeout = READY_TIMEOUT


@dataclasses.dataclass
class Redis(RedisPing):
    """``PING`` to REDIS_URL (the channel layer's, the cache's), or to the
    master that the sentinels of REDIS_SENTINELS name, within READY_TIMEOUT."""

    timeout = READY_TIMEOUT


@dataclasses.dataclass
class CeleryBroker(HealthCheck):
    """A connection to the Celery broker (CELERY_BROKER_URL, else REDIS_URL),
    one attempt within READY_TIMEOUT; raises ServiceUnavailable."""

    timeout = READY_TIMEOUT

    def run(self) -> None:
        from config.celery_app import app

        seconds = READY_TIMEOUT.total_seconds()
        try:
            with app.connection_for_read() as connection:
                connection.ensure_connection(max_retries=1, interval_start=0, timeout=seconds)
        except Exception as exc:  # kombu raises many kinds; each means "down"
            raise ServiceUnavailable("The Celery broker does not answer.") from exc


def ready_checks() -> list[typing.Any]:
    """The probes of this deployment's services (what ``/readyz`` runs)."""
    found: list[typing.Any] = [Database]
    if settings.REDIS_URL:
        from kaiwa import redis_conn

        timeout = READY_TIMEOUT.total_seconds()
        # Behind Sentinel (REDIS_SENTINELS): a PING to the master it names.
        factory = partial(
            redis_conn.async_client,
            settings.REDIS_URL,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
        )
        found.append((Redis, {"client_factory": factory}))
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        found.append(CeleryBroker)
    return found


class ReadyView(HealthCheckView):
    """``GET /readyz`` (see the module docstring): django-health-check's view,
    answering JSON always and 503 (not its 500) when a check fails, which is
    what load balancers and Kubernetes expect of a service not ready."""

    def get_checks(self) -> typing.Generator[HealthCheck, None, None]:
        self.checks = ready_checks()
        return super().get_checks()

    async def get(
        self, request: HttpRequest, *args: typing.Any, **kwargs: typing.Any
    ) -> HttpResponse:
        with self.get_executor() as executor:
            self.results = await asyncio.gather(
                *(check.get_result(executor) for check in self.get_checks())
            )
        failed = any(result.error for result in self.results)
        return self.render_to_response_json(503 if failed else 200)
