"""Web pages: the room index and a room."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from . import selectors
from .errors import RoomNotFound
from .models import Room
from .services import room_slug_check


@login_required
def index(request: HttpRequest) -> HttpResponse:
    rooms = selectors.room_list_visible(user=request.user)
    return render(request, "chat/index.html", {"rooms": rooms})


@login_required
def room(request: HttpRequest, room_name: str) -> HttpResponse:
    try:
        room_slug_check(slug=room_name)
    except RoomNotFound as exc:
        raise Http404("Bad room name.") from exc
    existing = Room.objects.filter(slug=room_name).first()
    # A private room is shown only to its members; a new name becomes a public
    # room on the socket's first join, as in the Channels tutorial.
    if existing is not None and existing.private:
        try:
            existing = selectors.room_get_visible(user=request.user, slug=room_name)
        except RoomNotFound as exc:
            raise Http404("No such room.") from exc
    title = existing.title if existing is not None else room_name
    return render(request, "chat/room.html", {"room_name": room_name, "title": title})
