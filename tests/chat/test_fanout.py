"""The fan-out hub's building blocks: Outbox and RoomFeed invariants."""

import asyncio

import pytest

from kaiwa.chat import fanout
from kaiwa.chat.fanout import Outbox, OutboxOverflow, RoomFeed


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
    assert transport.frames == [] and len(outbox.frames) == 3
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
    with pytest.raises(OutboxOverflow):
        for _ in range(3):
            outbox.put("cd")
    outbox.close()
    await asyncio.sleep(0)
    assert not outbox.frames and outbox.size == 0


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


async def test_room_feed_delivers_in_seq_order_and_drops_duplicates(settings):
    settings.KAIWA_GAP_GRACE_SECONDS = 30  # no database: the gap closes by itself
    feed = RoomFeed(slug="r")
    recorder = Recorder()
    feed.subscribers.add(recorder)
    feed.offer(6, "f6")  # before start: held
    feed.start(4)
    feed.offer(7, "f7")
    feed.offer(5, "f5")
    feed.offer(5, "f5 again")
    feed.offer(3, "old")
    assert recorder.seqs == [5, 6, 7]
    assert feed.hwm == 7 and feed.pending == {}
    feed.close()


async def test_room_feed_holds_messages_behind_a_gap(settings):
    settings.KAIWA_GAP_GRACE_SECONDS = 30
    feed = RoomFeed(slug="r")
    recorder = Recorder()
    feed.subscribers.add(recorder)
    feed.start(0)
    feed.offer(2, "f2")
    feed.offer(3, "f3")
    assert recorder.seqs == [] and feed._gap_task is not None
    feed.offer(1, "f1")
    assert recorder.seqs == [1, 2, 3]
    feed.close()


async def test_raw_send_middleware_puts_the_servers_send_in_the_scope():
    seen = {}

    async def app(scope, receive, send):
        seen.update(scope)

    async def send(message):
        pass

    await fanout.RawSendMiddleware(app)({"type": "websocket"}, None, send)
    assert seen[fanout.RAW_SEND_KEY] is send
