from django.contrib import admin

from .models import MissedMessage, MissedMessageEmail


@admin.register(MissedMessage)
class MissedMessageAdmin(admin.ModelAdmin):
    list_display = ["user", "room", "message", "reason", "state", "skip_reason", "due_at", "email"]
    list_filter = ["state", "reason", "skip_reason"]
    search_fields = ["user__username", "room__slug"]
    # Rows are the workers' queue: state changes only through the services.
    readonly_fields = [f.name for f in MissedMessage._meta.fields]


@admin.register(MissedMessageEmail)
class MissedMessageEmailAdmin(admin.ModelAdmin):
    list_display = ["to", "subject", "sent_at", "message_id"]
    search_fields = ["to", "user__username", "message_id"]
    readonly_fields = ["user", "message_id", "to", "subject", "sent_at"]
