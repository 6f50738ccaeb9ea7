"""The WebSocket consumer of ``/ws/chat/<room>/`` (PROTOCOL.md sections 1-3, 6).

The consumer decodes and validates frames and calls services; the fan-out hub
(``fanout``) feeds it the room's messages in ``seq`` order.
"""

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib import import_module
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs

import orjson
from django.conf import settings
from django.contrib.auth.models import User
from django.db import DataError
from django.db import Error as DatabaseError
from django.utils import timezone

from kaiwa import logs, metrics
from kaiwa.accounts.middleware import BEARER_TOKEN_KEY
from kaiwa.accounts.selectors import token_expiry_of
from kaiwa.chat import frames, selectors, services, validators
from kaiwa.chat.errors import ChatError, NotAuthenticated, RoomForbidden, Unavailable
from kaiwa.chat.models import Room
from kaiwa.chat.realtime import executors, limits, loops, publish
from kaiwa.chat.realtime.admission import get_admitter
from kaiwa.chat.realtime.base import SocketConsumer
from kaiwa.chat.realtime.feed import RoomFeed
from kaiwa.chat.realtime.hub import get_hub
from kaiwa.chat.realtime.middleware import RAW_SEND_KEY
from kaiwa.chat.realtime.outbox import Outbox, OutboxOverflow
from kaiwa.chat.realtime.presence import SOCKET_STATUSES, get_presence
from kaiwa.chat.realtime.read_positions import get_read_positions
from kaiwa.chat.realtime.writer import get_writer

if TYPE_CHECKING:
    # The scope type of types-channels (a WebSocket scope with Channels' keys),
    # which names it for type checkers only.
    pass

logger = logging.getLogger(__name__)

CLOSE_TOO_BIG = 1009
CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_SLOW = 4408
# How long a close frame may wait behind unread data: a slow client (4408) gets
# it once it reads again. Longer than uvicorn's keepalive (20 s ping + 20 s
# pong timeout), which fails a connection whose client reads nothing at all.
CLOSE_TIMEOUT_SECONDS = 60.0
# After a token's expiry, before its socket's re-check (seconds): the database
# compares expiry with its own clock, which may be a little behind.
TOKEN_EXPIRY_MARGIN_SECONDS = 0.05
SESSION_ENGINE = import_module(settings.SESSION_ENGINE)

# Socket ids are unique across processes (they name the origin of a user
# event that crosses the channel layer): this process's random prefix and a
# counter, cheaper than a uuid4 per connection.
_SOCKET_PREFIX = secrets.token_hex(6)
_socket_numbers = itertools.count(1)


def new_socket_id() -> str:
    """A socket id unique to this process's lifetime and across processes."""
    return f"{_SOCKET_PREFIX}-{next(_socket_numbers)}"


def parse_after(query_string: bytes) -> tuple[int | None, bool]:
    """Read ``after=<seq>`` from a raw query string.

    Returns ``(after, ok)``: ``after`` is None when absent or invalid, and
    ``ok`` is False when it was given but is not a non-negative integer.
    """
    values = parse_qs(query_string.decode("latin-1")).get("after")
    if not values:
        return None, True
    value = values[-1]
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        return None, False
    return int(value), True


# PROTOCOL.md section 2: at most one typing relay per user and room every 2 s.
TYPING_THROTTLE_SECONDS = 2.0
# How long a process trusts a room's member count for typing (seconds).
TYPING_SIZE_CHECK_SECONDS = 60.0


def _client_id(kind: str, data: dict[str, Any]) -> str | None:
    """The ``client_id`` an error frame repeats: a ``message`` frame's, when it
    is a string (PROTOCOL.md section 3)."""
    client_id = data.get("client_id")
    return client_id if kind == "message" and isinstance(client_id, str) else None


class SocketGone(Exception):
    """The client's connection closed while the join was sending to it."""


class ChatConsumer(SocketConsumer):
    """One socket in one room.

    Lifecycle: accept; authenticate (4401); admit to the room (4403, 4404);
    join the room's feed; send the backlog or ``reset``; send ``ready``; then
    live messages from the feed through a bounded ``Outbox``.
    """

    async def connect(self) -> None:
        self.accepted_at = time.monotonic()
        self.close_code: int | None = None  # the code this side closed with
        self.socket_id = new_socket_id()
        logs.bind_socket(socket_id=self.socket_id)
        self.room: Room | None = None
        self.feed: RoomFeed | None = None
        self.user: User | None = None
        self.username = ""
        self.ready = False
        self.closing = False
        self.last_seq = 0
        self.read_seq = 0  # the user's read position as this socket knows it
        self.early: list[tuple[int, str]] = []
        self.typing_sent = 0.0  # monotonic time of the last `start` relayed; 0: none
        self.presence_open = False  # counted in this process's presence
        self.new_member = False  # this join made the user a member of the room
        # The scope as ASGI has it, open to the keys Kaiwa's middleware adds.
        scope: Mapping[str, Any] = self.scope
        self.outbox = Outbox(
            scope.get(RAW_SEND_KEY, self.base_send),
            settings.KAIWA_OUTBOUND_MAX_MESSAGES,
            settings.KAIWA_OUTBOUND_MAX_BYTES,
        )
        self.room_slug = ""
        self.user_id: int | None = None
        self.session_key: str | None = None
        self.admission: selectors.Admission | None = None  # the credentials of the join
        self.expiry_timer: asyncio.TimerHandle | None = None  # its token's expiry
        # user id (or "ip:<address>" for a guest) whose socket slot we hold
        self.socket_slot: int | str | None = None
        self.sender_limit = limits.SenderLimit(f"guest:{self.socket_id}")
        # Accepted through the server's own send: Channels' session wrapper
        # would only save a session, and this consumer changes none.
        await self.outbox.send({"type": "websocket.accept"})
        slug = self.scope["url_route"]["kwargs"]["room"]
        try:  # a bad room name is refused first, whoever asks (PROTOCOL.md 1)
            validators.room_slug_check(slug=slug)
            await self._admit(slug)
        except ChatError as exc:
            await self._close(exc.close_code)
            return
        except SocketGone:
            return  # nobody to tell: the disconnect event cleans up
        except Exception:  # noqa: BLE001 (logged with its traceback by _join_failed)
            await self._join_failed()
            return
        if not await self._take_socket_slot():
            self.closing = True
            self.close_code = limits.CLOSE_TOO_MANY
            metrics.JOINS.labels(str(limits.CLOSE_TOO_MANY)).inc()
            await self.close(limits.CLOSE_TOO_MANY, reason="too many connections")
            return
        try:
            await self._join(slug)
        except ChatError as exc:
            await self._close(exc.close_code)
        except SocketGone:
            return  # nobody to tell: the disconnect event cleans up
        except Exception:  # noqa: BLE001 (logged with its traceback by _join_failed)
            await self._join_failed()

    async def _join_failed(self) -> None:
        """In an ``except`` block of the join: log the error with its
        traceback, tell the client ``unavailable`` if it is still there and
        close with Unavailable's close code (1013)."""
        logger.exception("join failed")
        with contextlib.suppress(SocketGone):
            await self._send_now(frames.error_frame("unavailable", Unavailable().detail))
        await self._close(Unavailable.close_code)

    async def _admit(self, slug: str) -> None:
        """Authenticate and admit to the room (4401, 4403, 4404), in a batch
        with the other joins of the moment (kaiwa.chat.realtime.admission); a new room
        (4403 over the creator's cap, 4429 over his rate) or membership is
        written by the write thread."""
        # The scope as ASGI has it, open to the keys Kaiwa's middleware adds.
        scope: Mapping[str, Any] = self.scope
        user = scope.get("user")  # set when a stack resolved it already (tests do)
        session = scope.get("session")  # WebsocketAuthStack's SessionBase, or None
        self.session_key = session.session_key if session is not None else None
        self.admission = selectors.Admission(
            slug=slug,
            user=user if isinstance(user, User) else None,  # not AnonymousUser
            session=session,
            token=scope.get(BEARER_TOKEN_KEY),
        )
        self.user, room = await get_admitter().admit(self.admission)
        if room is None:  # a new public room: within its creator's budgets (4403, 4429)
            creator = services.Creator(
                user_id=self.user.pk if self.user is not None else None,
                ip=limits.client_ip(self.scope),
            )
            room = await get_writer().create_room(slug, creator)
            if room.private:  # made private (or a DM) by someone else meanwhile
                raise RoomForbidden("This room is private.")
        if self.user is not None and room.read_seq is None:
            await get_writer().add_member(room.pk, self.user.pk)
            self.new_member = True  # the room hears of him (Presence.member_joined)
        self.room = room
        self.room_slug = room.slug
        self._close_at_token_expiry()
        logs.bind_socket(room=room.slug, user_id=self.user.pk if self.user is not None else None)
        if self.user is not None:
            self.user_id = self.user.pk
            # Channels' AuthMiddleware keeps a lazy user here; this stack a resolved one.
            self.scope["user"] = self.user  # type: ignore[typeddict-item]
            self.username = self.user.username
            self.read_seq = room.read_seq or 0
        else:
            self.username = f"guest-{secrets.token_hex(4)}"

    async def _take_socket_slot(self) -> bool:
        """Count this socket against its user's cap, or a guest's against his
        IP's (kaiwa.chat.realtime.limits), and pick its message bucket; False when full."""
        if self.user is not None:
            slot: int | str = self.user.pk
            self.sender_limit = limits.SenderLimit(f"user:{self.user.pk}")
        else:
            ip = limits.client_ip(self.scope)
            if ip is None:  # no address to key on: the socket's own bucket
                return True
            slot = f"ip:{ip}"
            self.sender_limit = limits.SenderLimit(f"guest-ip:{ip}")
        if not await limits.user_socket_acquire(slot, self.socket_id):
            return False
        self.socket_slot = slot
        return True

    async def _join(self, slug: str) -> None:
        after, after_ok = parse_after(self.scope.get("query_string", b""))
        hub = get_hub()
        self.feed = await hub.subscribe_room(slug, self)
        if self.user is not None:
            await hub.subscribe_user(self.user.pk, self)
        if not after_ok:
            await self._send_now(
                frames.error_frame(
                    "bad_request", "'after' must be a non-negative integer; ignored."
                )
            )
        backlog = self.feed.backlog(
            after, settings.KAIWA_BACKLOG_MESSAGES, settings.KAIWA_RESUME_LIMIT
        )
        if backlog is None:  # older than the feed's memory: the database answers
            assert self.room is not None
            stored = await executors.run_read(
                selectors.message_backlog, room=self.room, after=after
            )
            backlog = (stored.frames, stored.reset_seq, stored.latest_seq)
        if after is not None:
            metrics.RESUMES.labels("replayed" if backlog[1] is None else "reset").inc()
        await self._send_backlog(slug, *backlog)

    async def _send_backlog(
        self, slug: str, messages: list[str], reset_seq: int | None, latest_seq: int
    ) -> None:
        if reset_seq is not None:
            await self._send_now(frames.encode({"type": "reset", "seq": reset_seq}))
        for frame in messages:
            await self._send_now(frame)
        self.last_seq = latest_seq
        ready = {"type": "ready", "room": slug, "seq": self.last_seq, "username": self.username}
        await self._send_now(frames.encode(ready))
        self.ready = True
        metrics.JOINS.labels("ready").inc()
        metrics.JOIN_SECONDS.observe(time.monotonic() - self.accepted_at)
        if self.user_id is not None:
            if self.new_member:
                get_presence().member_joined(self.user_id, slug)
            get_presence().open(self.user_id, self.socket_id)
            self.presence_open = True
        for seq, frame in self.early:
            self.deliver(seq, frame)
        self.early = []

    # --- access, re-checked (kaiwa.chat.receivers, Hub.revalidate_all) ------------

    async def revalidate(self) -> None:
        """Re-run this socket's admission with the credentials of its join (a
        fresh session load, the token, the room's privacy and membership);
        close it with 4401, 4403 or 4404 when it would be refused now. A
        database error leaves it open (the next check retries)."""
        if self.closing or self.admission is None:
            return
        admission = self.admission
        if admission.session is not None:  # read the session afresh
            admission = dataclasses.replace(
                admission, session=SESSION_ENGINE.SessionStore(self.session_key)
            )
        try:
            user, room = await get_admitter().admit(admission)
        except ChatError as exc:
            logger.info("socket %s: access revoked (%s)", self.socket_id, exc.code)
            await self._close(exc.close_code)
            return
        except Exception:
            logger.exception("socket %s: access check failed; kept open", self.socket_id)
            return
        if room is None:
            await self._close(4404)
        elif (user.pk if user is not None else None) != self.user_id:
            await self._close(CLOSE_UNAUTHENTICATED)

    def _close_at_token_expiry(self) -> None:
        """A socket admitted by an API token that expires re-checks its
        access just after the expiry (and closes with 4401, the token being
        refused then) instead of at the next periodic re-check."""
        expiry = token_expiry_of(self.user)
        if expiry is None:
            return
        delay = (expiry - timezone.now()).total_seconds() + TOKEN_EXPIRY_MARGIN_SECONDS
        self.expiry_timer = asyncio.get_running_loop().call_later(
            max(0.0, delay), lambda: loops.spawn(self.revalidate())
        )

    async def revoke(self, code: int) -> None:
        """Close with ``code``: this socket's credentials are no longer valid."""
        logger.info("socket %s: credentials revoked, closing with %d", self.socket_id, code)
        await self._close(code)

    # --- fed by the hub (must not block) --------------------------------------

    def deliver(self, seq: int, frame: str) -> None:
        """Queue room message ``seq`` unless already sent (backlog overlap)."""
        if not self.ready:
            self.early.append((seq, frame))
            if len(self.early) > self.outbox.limit_messages:
                self._overflow()
            return
        if seq <= self.last_seq or self.closing:
            return
        self.last_seq = seq
        self._queue(frame)

    def deliver_event(self, frame: str) -> None:
        """Queue a frame addressed to this socket's user."""
        if self.ready and not self.closing:
            self._queue(frame)

    def _reply(self, frame: str) -> None:
        """Queue a frame of this socket's own (an answer, an error), counted."""
        metrics.sent(frame)
        self._queue(frame)

    def _queue(self, frame: str) -> None:
        try:
            self.outbox.put(frame)
        except OutboxOverflow:
            self._overflow()

    def _overflow(self) -> None:
        if not self.closing:
            metrics.OUTBOX_OVERFLOWS.inc()
            logger.info("socket %s too slow: closing with 4408", self.socket_id)
            loops.spawn(self._close(CLOSE_TOO_SLOW))

    # --- client frames ----------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing or not self.ready:
            return
        if text_data is None:
            self._reply(frames.error_frame("bad_frame", "Binary frames are not supported."))
            return
        if len(text_data) * 4 > settings.KAIWA_MAX_FRAME_BYTES and (
            len(text_data.encode()) > settings.KAIWA_MAX_FRAME_BYTES
        ):
            await self._close(CLOSE_TOO_BIG)
            return
        try:
            data = orjson.loads(text_data)
        except orjson.JSONDecodeError:
            self._reply(frames.error_frame("bad_json", "The frame is not valid JSON."))
            return
        if not isinstance(data, dict):
            self._reply(frames.error_frame("bad_frame", "A frame is one JSON object."))
            return
        await self._dispatch(data)

    async def _dispatch(self, data: dict[str, Any]) -> None:
        kind = data.get("type", "message")
        metrics.received(kind)
        handler = self.HANDLERS.get(kind) if isinstance(kind, str) else None
        try:
            if handler is None:
                self._reply(frames.error_frame("bad_frame", f"Unknown frame type {kind!r}."))
            else:
                await handler(self, data)
        except (NotAuthenticated, RoomForbidden) as exc:  # access lost: nothing stored
            self._reply(frames.error_frame(exc.code, exc.detail, _client_id(kind, data)))
            await self._close(exc.close_code)
        except ChatError as exc:
            self._reply(frames.error_frame(exc.code, exc.detail, _client_id(kind, data)))
        except DataError:  # what validation missed and the database refused
            logger.warning("a frame the database refused", exc_info=True)
            self._reply(
                frames.error_frame(
                    "bad_frame", "The database refused this frame.", _client_id(kind, data)
                )
            )
        except DatabaseError:
            logger.exception("database unavailable")
            self._reply(
                frames.error_frame("unavailable", Unavailable().detail, _client_id(kind, data))
            )

    async def _typing(self, data: dict[str, Any]) -> None:
        """Relay ``typing`` to the room's other sockets (PROTOCOL.md section 2):
        never stored; a ``start`` at most every TYPING_THROTTLE_SECONDS per
        socket; nothing in rooms of more than KAIWA_TYPING_MAX_MEMBERS members
        (counted once per TYPING_SIZE_CHECK_SECONDS per room and process)."""
        state = data.get("state", "start")
        if state not in ("start", "stop"):
            raise ChatError("'state' must be 'start' or 'stop'.", code="bad_frame")
        assert self.room is not None
        now = time.monotonic()
        if state == "start" and now - self.typing_sent < TYPING_THROTTLE_SECONDS:
            return
        if state == "stop" and not self.typing_sent:
            return  # nothing was relayed to stop
        assert self.feed is not None
        count = await self.feed.members_within(self.room.pk, TYPING_SIZE_CHECK_SECONDS)
        if count > settings.KAIWA_TYPING_MAX_MEMBERS:
            return
        self.typing_sent = now if state == "start" else 0.0
        frame = {
            "type": "typing",
            "room": self.room_slug,
            "username": self.username,
            "state": state,
        }
        get_hub().publish_transient(self.room_slug, [frames.encode(frame)], self.user_id)

    def _presence(self, data: dict[str, Any]) -> None:
        """This socket is ``online`` (active) or ``away`` (idle or hidden);
        never stored, answered by nothing (kaiwa.chat.realtime.presence announces the
        user's change of status, if any, within FLUSH_SECONDS)."""
        status = data.get("status")
        if status not in SOCKET_STATUSES:
            raise ChatError("'status' must be 'online' or 'away'.", code="bad_frame")
        if self.user_id is None:
            raise ChatError("Guests have no presence.", code="bad_frame")
        get_presence().set(self.user_id, self.socket_id, status)

    async def _room_event(self, kind: str, data: dict[str, Any]) -> None:
        """An ``edit``, ``delete`` or ``react`` frame: stored as a room event by
        the write thread and broadcast to the room, this socket included (its
        acknowledgement); a ``react`` that changes nothing gets no answer."""
        assert self.room is not None
        if not await self.sender_limit.check():  # the same budget as posts
            if self.sender_limit.exhausted:
                await self._close(limits.CLOSE_TOO_MANY)
            else:
                self._reply(frames.error_frame("rate_limited", self.sender_limit.detail()))
            return
        common: dict[str, object] = {
            "room": self.room,
            "user": self.user,
            "message_id": data.get("id"),
        }
        if kind == "edit":
            request = services.EventRequest(
                services.message_edit, {**common, "text": data.get("message")}
            )
        elif kind == "delete":
            request = services.EventRequest(services.message_delete, common)
        else:
            request = services.EventRequest(
                services.reaction_set, {**common, "emoji": data.get("emoji"), "on": data.get("on")}
            )
        # Re-checked in the write transaction as posts are (services.posts_refused).
        request = dataclasses.replace(
            request,
            session_key=self.session_key,
            token=self.admission.token if self.admission is not None else None,
        )
        outcome = await get_writer().room_event(request)
        if isinstance(outcome, ChatError):
            raise outcome

    async def _post(self, data: dict[str, Any]) -> None:
        assert self.room is not None  # frames are read only after the join
        if (
            not await self.sender_limit.check()
        ):  # token bucket: nothing stored (kaiwa.chat.realtime.limits)
            if self.sender_limit.exhausted:
                await self._close(limits.CLOSE_TOO_MANY)
            else:  # naming the send it refuses (PROTOCOL.md section 3)
                detail = self.sender_limit.detail()
                self._reply(frames.error_frame("rate_limited", detail, _client_id("message", data)))
            return
        post = services.Post(
            room=self.room,
            user=self.user,
            username=self.username,
            text=validators.message_text_check(text=data.get("message")),
            client_id=validators.client_id_check(client_id=data.get("client_id")),
            session_key=self.session_key,
            token=self.admission.token if self.admission is not None else None,
        )
        message, created = await get_writer().submit(post)
        if not created:  # a retry: the original is the acknowledgement
            self._reply(frames.message_frame(message, post.room.slug))

    async def _read(self, data: dict[str, Any]) -> None:
        """Note the read position in memory (stored within a second, see
        kaiwa.chat.realtime.read_positions) and tell the user's other sockets now."""
        if self.user is None:
            raise ChatError("Guests have no read position.", code="bad_frame")
        assert self.room is not None
        # Never past what this socket was sent: that would hide unsent messages.
        seq = min(validators.read_seq_check(seq=data.get("seq")), self.last_seq)
        if seq <= self.read_seq:
            return  # a position never moves back
        self.read_seq = seq
        get_read_positions().note(self.room.pk, self.user.pk, seq)
        publish.publish_read(self.user.pk, self.room.slug, seq, self.socket_id)

    async def _ping(self, data: dict[str, Any]) -> None:
        self._reply(frames.PONG_FRAME)

    async def _edit(self, data: dict[str, Any]) -> None:
        await self._room_event("edit", data)

    async def _delete(self, data: dict[str, Any]) -> None:
        await self._room_event("delete", data)

    async def _react(self, data: dict[str, Any]) -> None:
        await self._room_event("react", data)

    async def _presence_frame(self, data: dict[str, Any]) -> None:
        self._presence(data)

    # The client frame types of PROTOCOL.md sections 2 and 3, each to its handler.
    HANDLERS: ClassVar[dict[str, Callable[["ChatConsumer", dict[str, Any]], Awaitable[None]]]] = {
        "message": _post,
        "ping": _ping,
        "read": _read,
        "edit": _edit,
        "delete": _delete,
        "react": _react,
        "typing": _typing,
        "presence": _presence_frame,
    }

    # --- plumbing ---------------------------------------------------------------

    async def _send_now(self, frame: str) -> None:
        """Send ``frame`` now (the join's frames, before the outbox takes
        over); raises SocketGone when the connection closed under it."""
        metrics.sent(frame)
        try:
            await self.outbox.send({"type": "websocket.send", "text": frame})
        except Exception as exc:
            # uvicorn raises RuntimeError once it has closed the connection
            # itself (a keepalive ping unanswered, as in a connect storm) and
            # ClientDisconnected after the client's close: the client is
            # gone, and its websocket.disconnect follows.
            self.closing = True
            raise SocketGone from exc

    async def _close(self, code: int) -> None:
        if self.closing:
            return
        self.closing = True
        self.close_code = code
        if not self.ready:
            metrics.JOINS.labels(str(code)).inc()
        self.outbox.close()
        try:
            await asyncio.wait_for(self.close(code), CLOSE_TIMEOUT_SECONDS)
        except Exception:  # noqa: BLE001 (timed out, or the transport is gone)
            logger.info("socket %s: close %d not sent", self.socket_id, code)

    async def disconnect(self, code: int) -> None:
        """Release what the socket held; counts its close, by the code this
        side sent if it closed first, else by the client's (or 1006)."""
        self.closing = True
        if self.expiry_timer is not None:
            self.expiry_timer.cancel()
        code = self.close_code or code
        metrics.CLOSES.labels(str(code)).inc()
        # The socket's one line at INFO (kaiwa.logs), its ids bound since connect.
        logs.socket_closed(code, time.monotonic() - self.accepted_at, self.ready)
        if self.socket_slot is not None:
            slot, self.socket_slot = self.socket_slot, None
            await limits.user_socket_release(slot, self.socket_id)
        self.outbox.close()
        if self.presence_open and self.user_id is not None:
            get_presence().close(self.user_id, self.socket_id)
            self.presence_open = False
        if self.feed is not None and self.room is not None:
            hub = get_hub()
            await hub.unsubscribe_room(self.room.slug, self)
            if self.user is not None:
                await hub.unsubscribe_user(self.user.pk, self)
        if self.room is not None and self.user is not None:
            positions = get_read_positions()
            if (self.room.pk, self.user.pk) in positions.pending:
                # Stored before the close completes (a SIGTERM shutdown waits).
                await positions.flush()


class NoRouteConsumer(SocketConsumer):
    """Any other WebSocket path: closed with 4404."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(4404)
