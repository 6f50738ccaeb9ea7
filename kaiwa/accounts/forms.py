"""The sign-up form."""

from django import forms
from django.contrib.auth.forms import UserCreationForm


class SignupForm(UserCreationForm):
    """Django's ``UserCreationForm`` plus an optional email address, where
    missed-message emails (kaiwa.notifications) go; without one, none are sent."""

    email = forms.EmailField(
        required=False,
        help_text="Optional. Where we tell you about @mentions and direct messages you missed.",
    )

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")
