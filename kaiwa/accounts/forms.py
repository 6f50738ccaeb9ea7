"""The sign-up and sign-in forms, and the admin's user forms."""

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import (
    AdminUserCreationForm,
    AuthenticationForm,
    UserChangeForm,
    UserCreationForm,
)
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.db import IntegrityError, transaction

from .models import UsernameClaim
from .validators import (
    username_key,
    username_skeleton,
    validate_username_not_confusable,
    validate_username_not_reserved,
)

# No user's name is longer (``User.username``'s column); django-axes records a
# failed sign-in's name in a 255-character one.
USERNAME_MAX_LENGTH: int = User._meta.get_field("username").max_length or 150


class SignInLengthMixin:
    """A sign-in form whose username is refused above USERNAME_MAX_LENGTH
    characters, with Django's "Ensure this value has at most 150 characters"
    error, before any password is checked. Django's ``AuthenticationForm``
    sets the field's ``max_length`` after the field is made, which renders
    the ``maxlength`` attribute but validates nothing, so a longer name
    reached ``authenticate`` and django-axes' failure record."""

    fields: dict[str, Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["username"]
        field.validators = [*field.validators, MaxLengthValidator(USERNAME_MAX_LENGTH)]


class SignInForm(SignInLengthMixin, AuthenticationForm):
    """The login page's form: Django's, with the username's length checked."""


class AdminSignInForm(SignInLengthMixin, AdminAuthenticationForm):
    """The admin login's form: Django's, with the username's length checked."""


class UsernameKeyMixin:
    """A user form's username checks: ``username_validators`` (a class
    attribute) on top of the field's own, and, for a new or changed name, no
    other user may hold its canonical key (``validators.username_key``):
    Django's "A user with that username already exists." otherwise; nor its
    skeleton (``validators.username_skeleton``): "This name looks like
    another user's name." (code ``lookalike``) otherwise."""

    username_validators: tuple[Callable[[str], None], ...] = ()
    # Given by the ModelForm this is mixed into.
    fields: dict[str, Any]
    cleaned_data: dict[str, Any]
    changed_data: list[str]
    instance: User
    _meta: Any  # the ModelForm's options (ModelFormOptions, generic in its model)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["username"]
        field.validators = [*field.validators, *self.username_validators]

    def clean_username(self) -> str:
        clean = getattr(super(), "clean_username", None)  # UserCreationForm's: case only
        # Django sets cleaned_data[name] before it calls clean_<name>.
        username: str = clean() if clean else self.cleaned_data["username"]
        if username and "username" in self.changed_data:
            error = self._username_conflict(username)
            if error is not None:
                raise error
        return username

    def _username_conflict(self, username: str) -> ValidationError | None:
        """The error for a name whose key or skeleton another user holds, or None."""
        others = UsernameClaim.objects.exclude(user_id=self.instance.pk)
        if others.filter(key=username_key(username)).exists():
            return self._username_taken_error()
        if others.filter(skeleton=username_skeleton(username)).exists():
            return ValidationError(
                "This name looks like another user's name. Please choose another.",
                code="lookalike",
            )
        return None

    def _username_taken_error(self) -> ValidationError:
        """Django's own "A user with that username already exists." (code ``unique``)."""
        return self.instance.unique_error_message(self._meta.model, ["username"])


class SignupForm(UsernameKeyMixin, UserCreationForm):
    """Django's ``UserCreationForm`` plus an optional email address, where
    missed-message emails (kaiwa.notifications) go; without one, none are sent.

    The username is stored NFKC-normalised (Django's ``UsernameField``) and
    must not be reserved (``admin``, ``guest-…``), mix lookalike scripts, or
    share its key with another user's (``Ünal`` beside ``ünal``) or its
    skeleton (``aIice`` beside ``alice``)."""

    email = forms.EmailField(
        required=False,
        help_text="Optional. Where we tell you about @mentions and direct messages you missed.",
    )

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")

    username_validators = (validate_username_not_reserved, validate_username_not_confusable)

    def save_unless_taken(self) -> User | None:
        """Save the new user and his ``UsernameClaim`` in one transaction and
        return him; or return None, with the "already exists" error on the
        username, when a concurrent sign-up took the name or its key first
        (the database's unique constraints decide, after ``is_valid``)."""
        try:
            with transaction.atomic():
                return self.save()
        except IntegrityError:
            self.add_error("username", self._username_taken_error())
            return None


class AdminUserAddForm(UsernameKeyMixin, AdminUserCreationForm):
    """The admin's "Add user" form: no lookalike of an existing name (reserved
    names are allowed: the operators choose them)."""

    username_validators = (validate_username_not_confusable,)


class AdminUserChangeForm(UsernameKeyMixin, UserChangeForm):
    """The admin's user form: a rename must not take another user's key."""
