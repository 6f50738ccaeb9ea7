"""Web pages: the room index and a room."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import render

from kaiwa.chat import selectors
from kaiwa.chat.errors import RoomNotFound
from kaiwa.chat.models import DM_PREFIX
from kaiwa.chat.validators import room_slug_check
from kaiwa.request_types import AuthenticatedHttpRequest

INDEX_PAGE_ROOMS = 50  # rooms per /chat/ page


@login_required
def index(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Your rooms first, then the other public rooms, INDEX_PAGE_ROOMS a page
    (``?page=``): a page stays small however many rooms exist."""
    rooms = selectors.room_list_index(user=request.user)
    page = Paginator(rooms, INDEX_PAGE_ROOMS).get_page(request.GET.get("page"))
    entries = [(r, selectors.room_title_for(room=r, user=request.user)) for r in page]
    return render(request, "chat/index.html", {"page": page, "entries": entries})


@login_required
def room(request: AuthenticatedHttpRequest, room_name: str) -> HttpResponse:
    """The page of room ``room_name``, alike for a name that is free and for a
    private room you are not in (its socket is then refused with 4403), so
    that the page tells nothing of which rooms exist. A ``dm-`` name you are
    not in is 404 whether it exists or not: no socket could enter it."""
    try:
        room_slug_check(slug=room_name)
    except RoomNotFound as exc:
        raise Http404("Bad room name.") from exc
    try:
        visible = selectors.room_get_visible(user=request.user, slug=room_name)
    except RoomNotFound as exc:
        if room_name.startswith(DM_PREFIX):
            raise Http404("No such room.") from exc
        return _room_page(request, room_name, room_name)
    return _room_page(request, room_name, selectors.room_title_for(room=visible, user=request.user))


def _room_page(request: AuthenticatedHttpRequest, room_name: str, title: str) -> HttpResponse:
    page = {
        "room_name": room_name,
        "title": title,
        "rooms_poll_ms": round(settings.KAIWA_ROOMS_POLL_SECONDS * 1000),
    }
    return render(request, "chat/room.html", page)
