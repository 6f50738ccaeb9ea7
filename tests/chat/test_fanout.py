"""The fan-out hub's building blocks: Outbox and RoomFeed invariants."""

import asyncio

import pytest

from kaiwa.chat import frames
from kaiwa.chat.realtime import middleware
from kaiwa.chat.realtime.feed import RoomFeed
from kaiwa.chat.realtime.hub import Hub
from kaiwa.chat.realtime.outbox import Outbox, OutboxOverflow


class Transport:
    """An ASGI send that records frames and can push back like a full socket."""

    def __init__(self):
        self.frames = []
        self.open = asyncio.Event()
        self.open.set()

    async def send(self, message):
        await self.open.wait()
        self.frames.append(message["text"])


async def test_outbox_writes_at_once_when_the_socket_is_writable():
    transport = Transport()
    outbox = Outbox(transport.send, 10, 10_000)
    for n in range(5):
        outbox.put(f"f{n}")
    # Written within put(): no task was needed.
    assert transport.frames == ["f0", "f1", "f2", "f3", "f4"]
    assert outbox.busy is None


async def test_outbox_queues_in_order_while_the_socket_pushes_back():
    transport = Transport()
    transport.open.clear()
    outbox = Outbox(transport.send, 10, 10_000)
    for n in range(4):
        outbox.put(f"f{n}")
    assert transport.frames == []
    assert len(outbox.frames) == 3
    transport.open.set()
    await asyncio.wait_for(outbox.busy, 1)
    assert transport.frames == ["f0", "f1", "f2", "f3"]
    outbox.put("f4")
    assert transport.frames[-1] == "f4"


@pytest.mark.parametrize(("messages", "size"), [(2, 10_000), (100, 5)])
async def test_outbox_overflows_on_frames_or_bytes(messages, size):
    transport = Transport()
    transport.open.clear()
    outbox = Outbox(transport.send, messages, size)
    outbox.put("first")  # pending write
    outbox.put("ab")
    outbox.put("cd")  # at the limit
    with pytest.raises(OutboxOverflow):
        outbox.put("cd")
    outbox.close()
    await asyncio.sleep(0)
    assert not outbox.frames
    assert outbox.size == 0


async def test_outbox_ignores_a_closed_socket():
    async def gone(message):
        raise ConnectionResetError

    outbox = Outbox(gone, 10, 100)
    outbox.put("x")  # must not raise: the disconnect event ends the consumer
    assert outbox.busy is None


class Recorder:
    socket_id = "r"

    def __init__(self):
        self.seqs = []

    def deliver(self, seq, frame):
        self.seqs.append(seq)

    def deliver_event(self, frame):
        pass


def fr(seq, text="m"):
    """A message frame of seq ``seq`` (the feed reads its type and id)."""
    return frames.encode({"type": "message", "seq": seq, "id": str(seq), "message": text})


async def test_room_feed_delivers_in_seq_order_and_drops_duplicates(settings):
    settings.KAIWA_GAP_GRACE_SECONDS = 30  # no database: the gap closes by itself
    feed = RoomFeed(slug="r")
    recorder = Recorder()
    feed.subscribers.add(recorder)
    feed.offer(6, fr(6))  # before start: held
    feed.start(4)
    feed.offer(7, fr(7))
    feed.offer(5, fr(5))
    feed.offer(5, fr(5, "again"))
    feed.offer(3, fr(3, "old"))
    assert recorder.seqs == [5, 6, 7]
    assert feed.hwm == 7
    assert feed.pending == {}
    feed.close()


async def test_room_feed_holds_messages_behind_a_gap(settings):
    settings.KAIWA_GAP_GRACE_SECONDS = 30
    feed = RoomFeed(slug="r")
    recorder = Recorder()
    feed.subscribers.add(recorder)
    feed.start(0)
    feed.offer(2, fr(2))
    feed.offer(3, fr(3))
    assert recorder.seqs == []
    assert feed._gap_task is not None
    feed.offer(1, fr(1))
    assert recorder.seqs == [1, 2, 3]
    feed.close()


async def test_raw_send_middleware_puts_the_servers_send_in_the_scope():
    seen = {}

    async def app(scope, receive, send):
        seen.update(scope)

    async def send(message):
        pass

    await middleware.RawSendMiddleware(app)({"type": "websocket"}, None, send)
    assert seen[middleware.RAW_SEND_KEY] is send


# --- the feed's memory of recent frames (invariant 4) ----------------------------------


def started_feed(settings, memory, hwm, recent):
    settings.KAIWA_FEED_MEMORY_MESSAGES = memory
    settings.KAIWA_GAP_GRACE_SECONDS = 30
    feed = RoomFeed(slug="r")
    feed.start(hwm, [(seq, fr(seq)) for seq in recent])
    return feed


async def test_feed_memory_answers_joins_and_resumes_it_covers(settings):
    feed = started_feed(settings, memory=5, hwm=10, recent=[6, 7, 8, 9, 10])
    assert feed.floor == 5
    assert feed.backlog(None, 3, 1000) == ([fr(8), fr(9), fr(10)], None, 10)
    assert feed.backlog(7, 50, 1000) == ([fr(8), fr(9), fr(10)], None, 10)
    assert feed.backlog(5, 50, 1000) == ([fr(6), fr(7), fr(8), fr(9), fr(10)], None, 10)
    assert feed.backlog(10, 50, 1000) == ([], None, 10)
    assert feed.backlog(4, 50, 1000) is None  # older than memory: the database answers
    assert feed.backlog(None, 6, 1000) is None
    assert feed.backlog(11, 50, 1000) is None  # ahead of this process: the database knows
    assert feed.backlog(2, 50, 3) == ([], 10, 10)  # over the resume limit: reset
    feed.close()


async def test_feed_memory_of_a_short_room_holds_all_of_it(settings):
    feed = started_feed(settings, memory=5, hwm=2, recent=[1, 2])
    assert feed.floor == 0
    assert feed.backlog(None, 50, 1000) == ([fr(1), fr(2)], None, 2)
    assert feed.backlog(0, 50, 1000) == ([fr(1), fr(2)], None, 2)
    feed.close()


async def test_feed_memory_slides_with_deliveries_and_forgets_deleted_rows(settings):
    feed = started_feed(settings, memory=3, hwm=3, recent=[1, 2, 3])
    feed.offer(4, fr(4))
    feed.offer(5, fr(5))
    assert [e.seq for e in feed.recent] == [3, 4, 5]
    assert feed.floor == 2
    assert feed.backlog(1, 50, 1000) is None
    feed.forget(4)
    assert feed.backlog(2, 50, 1000) == ([fr(3), fr(5)], None, 5)
    feed.close()


async def test_feed_without_memory_always_defers_to_the_database(settings):
    feed = started_feed(settings, memory=0, hwm=3, recent=[])
    feed.offer(4, fr(4))
    assert feed.backlog(None, 50, 1000) is None
    assert feed.backlog(3, 50, 1000) is None
    assert feed.backlog(4, 50, 1000) == ([], None, 4)
    feed.close()


class Listener:
    """A subscriber of a room feed that records what it is sent."""

    def __init__(self, user_id):
        self.user_id = user_id
        self.frames = []

    def deliver_event(self, frame):
        self.frames.append(frame)


async def test_a_transient_message_leaves_each_frame_out_of_its_own_users_sockets():
    """Hub.publish_transient with ``skip``: one message carries the news of
    several users (new members of a room in a storm), and each frame reaches
    every socket of the room but those of the user it names."""
    hub = Hub(asyncio.get_running_loop())
    feed = RoomFeed(slug="lobby")
    hub.feeds["lobby"] = feed
    alice, bob, carol, bob_again = Listener(1), Listener(2), Listener(3), Listener(2)
    feed.subscribers.update({alice, bob, carol, bob_again})
    hub.publish_transient("lobby", ["bob is online", "carol is online"], None, [2, 3])
    assert alice.frames == ["bob is online", "carol is online"]
    assert bob.frames == bob_again.frames == ["carol is online"]
    assert carol.frames == ["bob is online"]
    hub.publish_transient("lobby", ["alice is typing"], 1)  # no skip: all but the sender
    assert alice.frames == ["bob is online", "carol is online"]
    assert carol.frames == ["bob is online", "alice is typing"]
    feed.close()
