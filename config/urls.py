from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/chat/", permanent=False)),
    path("admin/", admin.site.urls),
    path("", include("kaiwa.accounts.urls")),
    path("", include("kaiwa.chat.urls")),
]
