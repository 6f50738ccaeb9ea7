from django.contrib import admin

from .models import Membership, Message, Room


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["slug", "title", "private", "last_seq", "created_at", "created_by"]
    list_filter = ["private"]
    search_fields = ["slug", "title"]
    readonly_fields = ["last_seq", "created_by", "created_from_ip"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["room", "user", "last_read_seq", "joined_at"]
    search_fields = ["room__slug", "user__username"]
    autocomplete_fields = ["room", "user"]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["room", "seq", "username", "text", "created_at"]
    list_filter = ["room"]
    search_fields = ["text", "username"]
    # seq is the room's ordering contract: never edited by hand.
    readonly_fields = ["room", "seq", "author", "username", "client_id", "created_at"]
