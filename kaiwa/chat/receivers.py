"""Model signals of the chat app: what open sockets must learn on commit.

- A message row deleted outside the services (the admin, a shell) must not
  be served again from a feed's memory (``fanout`` invariant 4): every
  process drops it from its room feed.
- Access revoked must reach sockets already open, on every process, within
  a second or two: a membership removed, a room made private or deleted, a
  user deactivated, deleted or given a new password, an API token deleted,
  a session logged out. The sockets concerned re-run their admission
  (``ChatConsumer.revalidate``) and close with 4401, 4403 or 4404 if it now
  fails; a logged-out session's sockets close with 4401 at once. Posts are
  re-checked in the write transaction as well (``services.messages.posts_refused``),
  so nothing posted after a revocation is stored, even before the socket's
  close. Each socket also re-checks itself every KAIWA_REVALIDATE_SECONDS.
"""

from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_delete
from django.dispatch import receiver
from django.http import HttpRequest

from kaiwa.accounts.models import ApiToken
from kaiwa.chat.models import Membership, Message, Room
from kaiwa.chat.realtime import publish

# Saving a user with these fields may end his access (a full save includes them).
ACCESS_FIELDS = frozenset({"password", "is_active"})


@receiver(pre_delete, sender=Message, dispatch_uid="kaiwa.chat.message_forget")
def message_forget_on_delete(sender: type[Message], instance: Message, **kwargs: Any) -> None:
    """Queue ``publish.publish_forget`` for the deleted message's room and seq."""
    slug = instance.room.slug  # read now: on a room's cascade the row goes first
    transaction.on_commit(partial(publish.publish_forget, slug, instance.seq))


@receiver(pre_delete, sender=Membership, dispatch_uid="kaiwa.chat.membership_revoke")
def membership_revoke_on_delete(
    sender: type[Membership], instance: Membership, **kwargs: Any
) -> None:
    """The user's sockets in that room re-check their access (4403 if private)."""
    slug = instance.room.slug
    transaction.on_commit(partial(publish.publish_room_revalidate, slug, instance.user_id))


@receiver(post_save, sender=Room, dispatch_uid="kaiwa.chat.room_private")
def room_revalidate_on_private(
    sender: type[Room], instance: Room, created: bool, **kwargs: Any
) -> None:
    """A private room saved (perhaps just made private): its sockets re-check (4403)."""
    if instance.private and not created:
        transaction.on_commit(partial(publish.publish_room_revalidate, instance.slug))


@receiver(pre_delete, sender=Room, dispatch_uid="kaiwa.chat.room_delete")
def room_revalidate_on_delete(sender: type[Room], instance: Room, **kwargs: Any) -> None:
    """A room deleted: its sockets re-check and close (4404)."""
    transaction.on_commit(partial(publish.publish_room_revalidate, instance.slug))


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="kaiwa.chat.user_access")
def user_revalidate_on_save(
    sender: type[User],
    instance: User,
    created: bool,
    update_fields: frozenset[str] | None = None,
    **kwargs: Any,
) -> None:
    """A user saved with a new password or active flag: his sockets re-check
    (a deactivated user's close with 4401, and so do those whose session a
    password change invalidated). ``last_login`` updates are skipped."""
    if created or (update_fields is not None and not ACCESS_FIELDS & set(update_fields)):
        return
    transaction.on_commit(partial(publish.publish_user_revalidate, instance.pk))


@receiver(post_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="kaiwa.chat.user_delete")
def user_revalidate_on_delete(sender: type[User], instance: User, **kwargs: Any) -> None:
    """A user deleted: his sockets close (4401)."""
    transaction.on_commit(partial(publish.publish_user_revalidate, instance.pk))


@receiver(post_delete, sender=ApiToken, dispatch_uid="kaiwa.chat.token_delete")
def token_revalidate_on_delete(sender: type[ApiToken], instance: ApiToken, **kwargs: Any) -> None:
    """An API token deleted: the sockets signed in with it close (4401)."""
    transaction.on_commit(partial(publish.publish_user_revalidate, instance.user_id))


@receiver(user_logged_out, dispatch_uid="kaiwa.chat.session_revoke")
def session_revoke_on_logout(
    sender: type[User | None], request: HttpRequest | None, user: User | None, **kwargs: Any
) -> None:
    """A logout: the sockets of that session close (4401), on every process."""
    key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and key:
        transaction.on_commit(partial(publish.publish_session_revoke, user.pk, key))
