from django.urls import path

from . import api, views

app_name = "chat"

urlpatterns = [
    path("chat/", views.index, name="index"),
    path("chat/<str:room_name>/", views.room, name="room"),
    path("api/rooms/", api.RoomListAPI.as_view(), name="api-rooms"),
    path("api/rooms/<str:room>/messages/", api.MessageListAPI.as_view(), name="api-messages"),
    path("api/rooms/<str:room>/read", api.ReadAPI.as_view(), name="api-read"),
    path("api/dms/", api.DirectMessageAPI.as_view(), name="api-dms"),
]
