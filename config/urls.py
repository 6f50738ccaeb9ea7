from csp.decorators import csp_update
from django.contrib import admin
from django.http import HttpRequest, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from kaiwa import health, metrics
from kaiwa.openapi import swagger_ui_policy


def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """/favicon.ico, which browsers ask for on their own: a redirect to the
    SVG icon (base.html links it too)."""
    return HttpResponseRedirect(static("chat/favicon.svg"))


urlpatterns = [
    path("favicon.ico", favicon),
    path("", RedirectView.as_view(url="/chat/", permanent=False)),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.ReadyView.as_view(), name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    # The OpenAPI 3 schema (YAML; ?format=json for JSON) and Swagger UI, both public.
    # The split view serves Swagger UI's start-up script as a file (?script), not
    # inline, so the page keeps the Content-Security-Policy (with its own additions).
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "api/docs",
        csp_update(swagger_ui_policy())(SpectacularSwaggerSplitView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path("", include("kaiwa.accounts.urls")),
    path("", include("kaiwa.chat.urls")),
]
