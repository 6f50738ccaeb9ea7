from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from kaiwa import health, metrics

urlpatterns = [
    path("", RedirectView.as_view(url="/chat/", permanent=False)),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.ReadyView.as_view(), name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("", include("kaiwa.accounts.urls")),
    path("", include("kaiwa.chat.urls")),
]
