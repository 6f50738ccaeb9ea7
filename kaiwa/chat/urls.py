from django.urls import path

from kaiwa.chat import api, views

app_name = "chat"

urlpatterns = [
    path("chat/", views.index, name="index"),
    path("chat/<str:room_name>/", views.room, name="room"),
    path("api/rooms/", api.RoomListAPI.as_view(), name="api-rooms"),
    path("api/rooms/<str:room>/messages/", api.MessageListAPI.as_view(), name="api-messages"),
    path("api/rooms/<str:room>/read", api.ReadAPI.as_view(), name="api-read"),
    path("api/rooms/<str:room>/presence", api.PresenceAPI.as_view(), name="api-presence"),
    path("api/dms/", api.DirectMessageAPI.as_view(), name="api-dms"),
    path("api/search/", api.SearchAPI.as_view(), name="api-search"),
    path("api/messages/<str:message_id>", api.MessageAPI.as_view(), name="api-message"),
    path(
        "api/messages/<str:message_id>/reactions/<str:emoji>",
        api.ReactionAPI.as_view(),
        name="api-reaction",
    ),
    path(
        "api/messages/<str:message_id>/history",
        api.MessageHistoryAPI.as_view(),
        name="api-message-history",
    ),
]
