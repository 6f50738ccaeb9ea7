from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from kaiwa.chat import services
from kaiwa.chat.errors import ChatError
from kaiwa.chat.models import Membership, Message, Room
from kaiwa.request_types import AuthenticatedHttpRequest


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = [
        "slug",
        "title",
        "private",
        "last_seq",
        "retention_days",
        "created_at",
        "created_by",
    ]
    list_filter = ["private"]
    search_fields = ["slug", "title"]
    # retention_days is the room's own retention (kaiwa.chat.retention);
    # purged_seq is where retention has deleted up to.
    readonly_fields = ["last_seq", "purged_seq", "created_by", "created_from_ip"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["room", "user", "last_read_seq", "joined_at"]
    search_fields = ["room__slug", "user__username"]
    autocomplete_fields = ["room", "user"]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Messages are read here and deleted through the services only: a
    deletion is a room event and leaves a tombstone, so that no seq has a
    hole and no frame carries the text again. Editing the text by hand would
    skip the edit event, so every field is read-only."""

    list_display = ["room", "seq", "username", "text", "created_at", "edited_at", "deleted_at"]
    list_filter = ["room"]
    search_fields = ["text", "username"]
    readonly_fields = [
        "room", "seq", "author", "username", "text", "html", "client_id", "created_at",
        "edited_at", "deleted_at",
    ]  # fmt: skip
    actions = ["delete_keeping_tombstones"]

    def has_delete_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False  # the row stays as a tombstone: see delete_keeping_tombstones

    @admin.action(description="Delete the selected messages (tombstones keep their seq)")
    def delete_keeping_tombstones(
        self, request: AuthenticatedHttpRequest, queryset: QuerySet[Message]
    ) -> None:
        """Delete each live message as staff (a ``delete`` room event per
        message, sent to the room's sockets), in private rooms too: moderation
        needs no membership. A refusal is reported, never a 500."""
        count = 0
        for message in queryset.filter(deleted_at__isnull=True).select_related("room"):
            try:
                services.message_delete(
                    room=message.room, user=request.user, message_id=message.pk, moderation=True
                )
            except ChatError as exc:
                self.message_user(request, f"{message}: {exc.detail}", level=messages.ERROR)
                continue
            count += 1
        self.message_user(request, f"{count} message(s) deleted.")
