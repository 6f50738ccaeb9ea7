"""Usernames: lookalikes, case variants and reserved names are refused at
sign-up, and every user holds a unique canonical key (``UsernameClaim``)."""

import html
import importlib
from unittest import mock

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.test import Client

from kaiwa.accounts.forms import AdminUserAddForm, AdminUserChangeForm, SignupForm
from kaiwa.accounts.models import UsernameClaim
from kaiwa.accounts.validators import username_key, username_skeleton
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-passphrase-9"
TAKEN = "A user with that username already exists."
RESERVED = "This name is reserved."
CONFUSABLE = "This name mixes alphabets"
LOOKALIKE = "This name looks like another user's name. Please choose another."


def signup_form(username: str) -> SignupForm:
    return SignupForm({"username": username, "password1": PASSWORD, "password2": PASSWORD})


def username_errors(username: str) -> list[str]:
    form = signup_form(username)
    assert not form.is_valid()
    return form.errors["username"]


def signup_post(client: Client, username: str):
    return client.post(
        "/accounts/signup/",
        {"username": username, "password1": PASSWORD, "password2": PASSWORD},
    )


def test_it_refuses_cyrillic_lookalike():
    UserFactory(username="alice")
    errors = username_errors("\u0430lice")  # Cyrillic а, then Latin "lice"
    assert any(CONFUSABLE in e for e in errors), errors


def test_it_refuses_an_all_cyrillic_lookalike_of_a_taken_name():
    UserFactory(username="ace")
    # One script, so not "mixed", but it looks like "ace": the key catches it.
    assert username_errors("\u0430\u0441\u0435") == [TAKEN]


@pytest.mark.parametrize("username", ["Alice", "ALICE", "aLiCe"])
def test_it_refuses_case_variants(username):
    UserFactory(username="alice")
    assert username_errors(username) == [TAKEN]


def test_it_refuses_non_ascii_case_variants_on_sqlite():
    UserFactory(username="ünal")
    assert username_errors("Ünal") == [TAKEN]
    UserFactory(username="straße")
    assert username_errors("STRASSE") == [TAKEN]


@pytest.mark.parametrize(
    "username",
    [
        *("admin", "Administrator", "ROOT", "system", "kaiwa", "staff", "support", "security"),
        *("postmaster", "webmaster", "guest", "everyone", "here", "channel", "All", "a11"),
        *("r00t", "R00T", "adrnin", "SYSTEM"),
    ],
)
def test_it_refuses_reserved_names(username):
    assert any(RESERVED in e for e in username_errors(username))


@pytest.mark.parametrize(
    ("taken", "username"),
    [
        ("alice", "aIice"),  # capital I for l, before case folding makes it an i
        ("aIice", "alice"),
        ("alice", "AIice"),
        ("bob", "b0b"),  # zero for o
        ("bob", "B0B"),
        ("root2", "r00t2"),
        ("tim", "tirn"),  # r n for m
        ("rnary", "mary"),
        ("Ian", "lan"),
        ("bill", "bi1I"),
    ],
)
def test_it_refuses_lookalikes_of_a_taken_name(taken, username):
    UserFactory(username=taken)
    assert username_errors(username) == [LOOKALIKE]


@pytest.mark.parametrize(
    ("taken", "username"), [("bali", "ball"), ("bob", "bab"), ("tim", "tin"), ("lan", "ian")]
)
def test_it_accepts_names_that_differ_visibly(taken, username):
    UserFactory(username=taken)
    assert signup_form(username).is_valid()


def test_skeletons_are_taken_before_and_after_case_folding():
    assert username_skeleton("aIice") == username_skeleton("alice") == "alice"
    assert username_skeleton("B0B") == username_skeleton("bob")
    assert username_skeleton("tirn") == username_skeleton("tim")
    assert username_skeleton("\u0430\u0441\u0435") == username_skeleton("ace")
    assert username_skeleton("ali") != username_skeleton("all")


@pytest.mark.parametrize("username", ["guest-x", "guest-1a2b3c4d", "Guest-X"])
def test_it_refuses_guest_names_at_signup(username):
    assert any(RESERVED in e for e in username_errors(username))


def test_the_server_may_still_name_guests_and_other_code_may_create_such_users():
    # Reserved names bind sign-up only; the consumer names anonymous sockets
    # guest-<hex> without a user row, and a shell or factory may create one.
    user = UserFactory(username="guest-1")
    assert user.username_claim.key == "guest-l"


def test_it_normalises_full_width_letters_nfkc():
    form = signup_form("ｄｏｒａ")
    assert form.is_valid(), form.errors
    assert form.save().username == "dora"


def test_full_width_letters_collide_with_the_plain_name():
    UserFactory(username="alice")
    assert username_errors("ａｌｉｃｅ") == [TAKEN]


@pytest.mark.parametrize("username", ["dora", "José", "Иван", "田中", "user_1.x", "guests"])
def test_it_accepts_a_plain_new_name(username):
    form = signup_form(username)
    assert form.is_valid(), form.errors
    user = form.save_unless_taken()
    assert user.username == username
    assert user.username_claim.key == username_key(username)


def test_keys_collide_for_lookalikes_and_case_only():
    assert username_key("alice") == username_key("\u0430lice") == username_key("ALICE")
    assert username_key("Ünal") == username_key("ünal") != username_key("Unal")
    assert username_key("ali") != username_key("all")


def test_every_created_user_gets_a_claim():
    User = get_user_model()
    user = User.objects.create_user("erin", password=PASSWORD)
    assert UsernameClaim.objects.get(user=user).key == "erin"


def test_createsuperuser_may_take_a_reserved_name_and_claims_it():
    call_command("createsuperuser", "--noinput", username="admin", email="a@example.com")
    assert UsernameClaim.objects.get(user__username="admin").key == "admin"


def test_a_rename_moves_the_claim():
    user = UserFactory(username="erin")
    user.username = "Frank"
    user.save()
    assert UsernameClaim.objects.get(user=user).key == "frank"


def test_a_save_without_the_username_leaves_the_claim_alone():
    user = UserFactory(username="erin")
    UsernameClaim.objects.filter(user=user).update(key="kept")  # as no rename would write it
    user.save(update_fields=["last_login"])
    assert UsernameClaim.objects.get(user=user).key == "kept"
    user.save()  # a full save writes the key again
    assert UsernameClaim.objects.get(user=user).key == "erin"


def test_the_database_refuses_a_second_holder_of_a_skeleton():
    UserFactory(username="alice")
    with pytest.raises(IntegrityError), transaction.atomic():
        UserFactory(username="aIice")
    assert not get_user_model().objects.filter(username="aIice").exists()


def test_the_database_refuses_a_second_holder_of_a_key():
    UserFactory(username="ünal")
    with pytest.raises(IntegrityError), transaction.atomic():
        UserFactory(username="Ünal")
    assert not get_user_model().objects.filter(username="Ünal").exists()


def test_a_user_without_a_claim_gets_one_on_his_next_save():
    user = UserFactory(username="erin")
    UsernameClaim.objects.filter(user=user).delete()  # as after bulk_create
    user.save()
    assert UsernameClaim.objects.get(user=user).key == "erin"


def test_the_migration_fills_keys_for_existing_users():
    migration = importlib.import_module("kaiwa.accounts.migrations.0002_usernameclaim_fill")
    older = UserFactory(username="ünal")
    alice = UserFactory(username="Alice")
    UsernameClaim.objects.all().delete()
    # Before the claims, SQLite let a case variant in beside the older user.
    newer = UserFactory.build(username="Ünal")
    with mock.patch("kaiwa.accounts.signals.username_claim_set"):
        newer.save()
    migration.claims_fill(apps, None)
    keys = dict(UsernameClaim.objects.values_list("user_id", "key"))
    assert keys == {
        older.pk: username_key("ünal"),
        alice.pk: "alice",
        newer.pk: f"{username_key('ünal')}#{newer.pk}",
    }
    newer.save()  # a legacy duplicate can still be saved
    assert UsernameClaim.objects.get(user=newer).key.endswith(f"#{newer.pk}")


def test_the_migration_fills_skeletons_for_existing_users():
    migration = importlib.import_module(
        "kaiwa.accounts.migrations.0006_usernameclaim_skeleton_fill"
    )
    older = UserFactory(username="bob")
    # Before skeletons, b0b could sign up beside bob.
    with mock.patch("kaiwa.accounts.signals.username_claim_set"):
        newer = UserFactory(username="b0b")
    UsernameClaim.objects.create(user=newer, key=username_key("b0b"))
    UsernameClaim.objects.update(skeleton=None)
    migration.skeletons_fill(apps, None)
    skeletons = dict(UsernameClaim.objects.values_list("user_id", "skeleton"))
    assert skeletons == {older.pk: "bob", newer.pk: f"bob#{newer.pk}"}
    newer.save()  # a legacy lookalike can still be saved
    assert UsernameClaim.objects.get(user=newer).skeleton == f"bob#{newer.pk}"


def test_a_race_lost_at_the_database_is_a_form_error_not_a_500():
    form = signup_form("Ünal")
    assert form.is_valid(), form.errors
    UserFactory(username="ünal")  # the other sign-up commits first
    assert form.save_unless_taken() is None
    assert form.errors["username"] == [TAKEN]
    assert not get_user_model().objects.filter(username="Ünal").exists()


def test_signup_page_maps_a_lost_race_to_an_error():
    UserFactory(username="ünal")
    client = Client(raise_request_exception=False)
    # As if the other sign-up committed between this one's checks and its save.
    with mock.patch.object(SignupForm, "_username_conflict", return_value=None):
        answer = signup_post(client, "Ünal")
    assert answer.status_code == 200
    assert html.escape(TAKEN) in answer.content.decode()
    assert not get_user_model().objects.filter(username="Ünal").exists()


def test_signup_page_refuses_a_lookalike_and_says_why():
    UserFactory(username="alice")
    answer = signup_post(Client(), "\u0430lice")
    page = answer.content.decode()
    assert answer.status_code == 200
    assert CONFUSABLE in page
    assert 'aria-invalid="true"' in page
    assert "_auth_user_id" not in answer.client.session


def test_signup_page_refuses_a_capital_i_for_an_l_and_says_why():
    UserFactory(username="alice")
    answer = signup_post(Client(), "aIice")
    page = answer.content.decode()
    assert answer.status_code == 200
    assert html.escape(LOOKALIKE) in page
    assert 'aria-invalid="true"' in page
    assert not get_user_model().objects.filter(username="aIice").exists()


def test_signup_page_refuses_a_non_ascii_case_variant():
    UserFactory(username="ünal")
    answer = signup_post(Client(), "ÜNAL")
    assert answer.status_code == 200
    assert html.escape(TAKEN) in answer.content.decode()


def test_signup_page_refuses_a_guest_name():
    answer = signup_post(Client(), "guest-1234abcd")
    assert answer.status_code == 200
    assert RESERVED in answer.content.decode()


def test_signup_page_stores_the_normalised_name():
    client = Client()
    answer = signup_post(client, "ｄｏｒａ")
    assert answer.status_code == 302
    assert answer["Location"] == "/chat/"
    user = get_user_model().objects.get(username="dora")
    assert user.username_claim.key == "dora"


def test_admin_add_form_refuses_a_lookalike_but_allows_reserved_names():
    UserFactory(username="alice")
    data = {"password1": PASSWORD, "password2": PASSWORD, "usable_password": "true"}
    lookalike = AdminUserAddForm({"username": "\u0430lice", **data})
    assert not lookalike.is_valid()
    assert AdminUserAddForm({"username": "admin", **data}).is_valid()


def test_admin_change_form_refuses_a_rename_onto_a_taken_key():
    UserFactory(username="ünal")
    bob = UserFactory(username="bob")
    form = AdminUserChangeForm(
        {"username": "Ünal", "date_joined": "2024-01-01 00:00"}, instance=bob
    )
    assert not form.is_valid()
    assert form.errors["username"] == [TAKEN]
