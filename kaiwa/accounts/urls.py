from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views
from .forms import SignInForm

urlpatterns = [
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(authentication_form=SignInForm),
        name="login",
    ),
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/password_reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("accounts/tokens/", views.tokens, name="tokens"),
    path("api/auth/token", views.TokenAPI.as_view(), name="api-token"),
    path("api/tokens/", views.TokenListAPI.as_view(), name="api-tokens"),
    path("api/tokens/<str:token_id>", views.TokenDetailAPI.as_view(), name="api-token-detail"),
]
