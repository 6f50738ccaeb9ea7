from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from .forms import AdminSignInForm, AdminUserAddForm, AdminUserChangeForm

User = get_user_model()

admin.site.login_form = AdminSignInForm

admin.site.unregister(User)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Django's user admin, with forms that refuse a lookalike of an existing name."""

    add_form = AdminUserAddForm
    form = AdminUserChangeForm
