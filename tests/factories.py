import factory
from django.contrib.auth import get_user_model

from kaiwa.accounts.services import token_create
from kaiwa.chat.models import Membership, Message, Room


def token_for(user, name: str = "test") -> str:
    """A new API token (the secret string) of ``user``."""
    return token_create(user=user, name=name)[1]


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("pw-secret-123")


class RoomFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Room

    slug = factory.Sequence(lambda n: f"room-{n}")
    title = factory.LazyAttribute(lambda r: r.slug)


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    room = factory.SubFactory(RoomFactory)
    user = factory.SubFactory(UserFactory)


class MessageFactory(factory.django.DjangoModelFactory):
    """A stored message; raises the room's last_seq as message_create does."""

    class Meta:
        model = Message

    room = factory.SubFactory(RoomFactory)
    author = factory.SubFactory(UserFactory)
    username = factory.LazyAttribute(lambda m: m.author.username if m.author else "guest-1")
    text = factory.Sequence(lambda n: f"message {n}")

    @factory.lazy_attribute
    def seq(self):
        room = self.room
        room.last_seq += 1
        room.save(update_fields=["last_seq"])
        return room.last_seq
