"""The page's protocol client, ``kaiwa/chat/static/chat/client.js``, on its
own: in Chromium, with a fake WebSocket and fake timers (its ``env``), so
that each test scripts the server and the clock exactly. No server runs;
the module is served to the page by Playwright's router."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Route, sync_playwright

from tests.browser.test_chat_pages import CHROMIUM_ARGS

pytestmark = pytest.mark.browser

STATIC = Path(__file__).resolve().parents[2] / "kaiwa/chat/static/chat"
ORIGIN = "http://kaiwa.test"

# A fake world for RoomClient: sockets that record what is sent and are
# driven by the test (open, frame, close), a clock moved by hand, and
# randomness fixed at 0.5.
HARNESS = """
async () => {
  const m = await import("/static/chat/client.js");
  class FakeSocket {
    constructor(url) { this.url = url; this.sent = []; this.readyState = 0; world.sockets.push(this); }
    send(text) { if (this.readyState !== 1) throw new Error("send on a closed socket"); this.sent.push(JSON.parse(text)); }
    close(code) { this.readyState = 3; }
  }
  const world = {
    m, sockets: [], timers: [], clock: 0, events: [],
    socket() { return this.sockets[this.sockets.length - 1]; },
    open() { this.socket().readyState = 1; },
    frame(f) { this.socket().onmessage({ data: JSON.stringify(f) }); },
    ready(seq, username) { this.frame({ type: "ready", room: "lobby", seq: seq, username: username || "alice" }); },
    drop(code) { const s = this.socket(); s.readyState = 3; s.onclose({ code: code }); },
    advance(ms) {
      this.clock += ms;
      for (;;) {
        const due = this.timers.filter((t) => t.at <= this.clock).sort((a, b) => a.at - b.at)[0];
        if (!due) break;
        this.timers.splice(this.timers.indexOf(due), 1);
        due.fn();
      }
    },
    sent() { return this.sockets.flatMap((s) => s.sent); },
  };
  let nextTimer = 1;
  const env = {
    WebSocket: FakeSocket,
    setTimeout: (fn, ms) => { const id = nextTimer++; world.timers.push({ id, at: world.clock + ms, fn }); return id; },
    clearTimeout: (id) => { world.timers = world.timers.filter((t) => t.id !== id); },
    now: () => world.clock,
    random: () => 0.5,
    randomBytes: (n) => Uint8Array.from({ length: n }, (_, i) => i + world.sockets.length),
    url: (room, after) => "ws://kaiwa.test/ws/chat/" + room + "/" + (after === null ? "" : "?after=" + after),
  };
  world.client = new m.RoomClient("lobby", env);
  for (const type of ["state", "ready", "message", "edit", "delete", "reaction", "typing",
                      "presence", "read", "reset", "pending", "acked", "failed", "error"]) {
    world.client.on(type, (detail) => world.events.push([type, detail]));
  }
  window.world = world;
}
"""


@pytest.fixture(scope="module")
def module_page(request) -> Iterator[Page]:
    import os
    import shutil

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(chromium):
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page()

        def serve(route: Route) -> None:
            path = route.request.url.removeprefix(ORIGIN)
            if path.startswith("/static/chat/"):
                body = (STATIC / path.removeprefix("/static/chat/")).read_text()
                route.fulfill(body=body, content_type="text/javascript")
            else:
                route.fulfill(
                    body="<!DOCTYPE html><title>client.js</title>", content_type="text/html"
                )

        page.route(ORIGIN + "/**", serve)
        page.goto(ORIGIN + "/")
        yield page
        browser.close()


@pytest.fixture
def world(module_page: Page):
    """A fresh RoomClient in a fake world; returns ``run(js)`` evaluating
    ``js`` (a function body with ``w`` as the world) in the page."""
    module_page.evaluate(HARNESS)

    def run(body: str) -> Any:
        return module_page.evaluate(f"() => {{ const w = window.world; {body} }}")

    return run


def sent_types(run) -> list[str]:
    return run("return w.sent().map((f) => f.type);")


def test_it_connects_then_resumes_after_the_highest_seq(world):
    world(
        "w.client.start(); w.open(); w.frame({type: 'message', room: 'lobby', seq: 7, id: 'm7', message: 'hi', username: 'bob'}); w.ready(7);"
    )
    assert world("return w.client.state") == "live"
    assert world("return w.socket().url") == "ws://kaiwa.test/ws/chat/lobby/"
    world("w.drop(1012);")
    assert world("return w.client.state") == "reconnecting"
    # Equal jitter at random() = 0.5: 3/4 of the first ceiling (500 ms).
    assert world("return w.events.filter(([t]) => t === 'state').pop()[1].delay") == 375
    world("w.advance(374);")
    assert world("return w.sockets.length") == 1
    world("w.advance(1);")
    assert world("return w.socket().url") == "ws://kaiwa.test/ws/chat/lobby/?after=7"


def test_backoff_doubles_up_to_its_ceiling_and_resets_on_ready(world):
    delays = world("""
        w.client.start();
        const out = [];
        for (let i = 0; i < 9; i++) {
          w.drop(1006);
          out.push(w.events.filter(([t]) => t === 'state').pop()[1].delay);
          w.advance(60000);
        }
        w.open(); w.ready(0); w.drop(1006);
        out.push(w.events.filter(([t]) => t === 'state').pop()[1].delay);
        return out;
    """)
    assert delays == [375, 750, 1500, 3000, 6000, 12000, 22500, 22500, 22500, 375]


def test_it_never_delivers_a_room_event_twice_and_keeps_seq_order(world):
    seqs = world("""
        w.client.start(); w.open();
        const m = (seq) => ({type: 'message', room: 'lobby', seq, id: 'm' + seq, message: 'x', username: 'bob'});
        w.frame(m(1)); w.frame(m(2)); w.ready(2);
        w.frame(m(2)); w.frame({type: 'edit', room: 'lobby', seq: 3, id: 'm1', message: 'y'});
        w.frame({type: 'reaction', room: 'lobby', seq: 3, id: 'm1', emoji: '+1', on: true});
        w.frame(m(4));
        return w.events.filter(([t]) => ['message', 'edit', 'reaction'].includes(t)).map(([t, f]) => t + f.seq);
    """)
    assert seqs == ["message1", "message2", "edit3", "message4"]


def test_unacknowledged_messages_are_resent_with_the_same_client_id(world):
    result = world("""
        w.client.start(); w.open(); w.ready(0);
        const id = w.client.send('hello');
        w.drop(1006); w.advance(1000); w.open(); w.ready(0);
        w.frame({type: 'message', room: 'lobby', seq: 1, id: 'm1', message: 'hello', username: 'alice', client_id: id});
        w.drop(1006); w.advance(1000); w.open(); w.ready(1);
        return {id, first: w.sockets[0].sent, second: w.sockets[1].sent, third: w.sockets[2].sent,
                acked: w.events.filter(([t]) => t === 'acked').map(([, d]) => d.clientId)};
    """)
    message = {"type": "message", "message": "hello", "client_id": result["id"]}
    assert result["first"] == [message]
    assert result["second"] == [message]  # re-sent after the reconnect
    assert result["third"] == []  # acknowledged: never again
    assert result["acked"] == [result["id"]]


def test_a_message_sent_while_offline_waits_for_ready(world):
    result = world("""
        w.client.start();
        const id = w.client.send('queued');
        w.open();
        const before = w.socket().sent.length;
        w.ready(0);
        return {before, after: w.socket().sent, id};
    """)
    assert result["before"] == 0
    assert result["after"] == [{"type": "message", "message": "queued", "client_id": result["id"]}]


def test_an_error_naming_a_client_id_fails_that_send_until_retried(world):
    result = world("""
        w.client.start(); w.open(); w.ready(0);
        const id = w.client.send('too fast');
        w.frame({type: 'error', code: 'rate_limited', detail: 'Too many messages', client_id: id});
        w.drop(1006); w.advance(1000); w.open(); w.ready(0);
        const resentWhileFailed = w.socket().sent.length;
        w.client.retry(id);
        return {id, resentWhileFailed, after: w.socket().sent,
                failed: w.events.filter(([t]) => t === 'failed').map(([, d]) => [d.clientId, d.code])};
    """)
    assert result["failed"] == [[result["id"], "rate_limited"]]
    assert result["resentWhileFailed"] == 0  # a failed send waits for the user
    assert result["after"] == [
        {"type": "message", "message": "too fast", "client_id": result["id"]}
    ]


def test_a_frame_too_big_fails_its_sends_and_still_reconnects(world):
    result = world("""
        w.client.start(); w.open(); w.ready(0);
        w.client.send('x'.repeat(20000));
        w.drop(1009); w.advance(1000); w.open(); w.ready(0);
        return {failed: w.events.filter(([t]) => t === 'failed').map(([, d]) => d.code), resent: w.socket().sent};
    """)
    assert result == {"failed": ["too_big"], "resent": []}


@pytest.mark.parametrize("code", [4401, 4403, 4404])
def test_it_gives_up_on_the_close_codes_that_say_so(world, code):
    world(f"w.client.start(); w.open(); w.drop({code}); w.advance(120000);")
    assert world("return w.sockets.length") == 1
    assert world("return w.client.state") == "closed"


def test_reads_are_coalesced_to_one_a_second(world):
    reads = world("""
        w.client.start(); w.open(); w.ready(0);
        const m = (seq) => ({type: 'message', room: 'lobby', seq, id: 'm' + seq, message: 'x', username: 'bob'});
        for (let seq = 1; seq <= 20; seq++) { w.frame(m(seq)); w.client.seen(); w.advance(10); }
        const early = w.sent().filter((f) => f.type === 'read').map((f) => f.seq);
        w.advance(1000);
        return {early, all: w.sent().filter((f) => f.type === 'read').map((f) => f.seq)};
    """)
    assert reads["early"] == [1]  # the first at once, the rest wait for the second
    assert reads["all"] == [1, 20]  # then one read with the latest seq


def test_a_visible_tab_reports_at_once_and_never_moves_back(world):
    reads = world("""
        w.client.start(); w.open(); w.ready(5);
        w.client.seen(true);
        w.frame({type: 'read', room: 'lobby', seq: 9});  // another tab read further
        w.frame({type: 'message', room: 'lobby', seq: 6, id: 'm6', message: 'x', username: 'bob'});
        w.advance(2000); w.client.seen(true);
        return w.sent().filter((f) => f.type === 'read').map((f) => f.seq);
    """)
    assert reads == [5]  # seq 6 is below the other tab's 9: nothing to report


def test_typing_is_throttled_and_stops_after_idle_or_on_send(world):
    frames = world("""
        w.client.start(); w.open(); w.ready(0);
        for (let i = 0; i < 10; i++) { w.client.typing(true); w.advance(400); }  // 4 s of keys
        w.advance(5000);  // idle: a stop
        w.client.typing(true); w.client.send('done');
        return w.sent().filter((f) => f.type !== 'message');
    """)
    assert frames == [
        {"type": "typing"},
        {"type": "typing"},
        {"type": "typing", "state": "stop"},
        {"type": "typing"},
        {"type": "typing", "state": "stop"},
    ]


def test_presence_is_sent_on_change_and_again_after_a_reconnect(world):
    frames = world("""
        w.client.start(); w.open(); w.ready(0);
        w.client.presence('online');  // no change: nothing
        w.client.presence('away');
        w.drop(1012); w.advance(1000); w.open(); w.ready(0);
        return w.sockets.map((s) => s.sent);
    """)
    assert frames == [
        [{"type": "presence", "status": "away"}],
        [{"type": "presence", "status": "away"}],  # the new socket starts online
    ]


def test_a_reset_moves_the_position_and_is_passed_on(world):
    result = world("""
        w.client.start(); w.open();
        w.frame({type: 'reset', seq: 5000}); w.ready(5000);
        w.drop(1006); w.advance(1000);
        return {url: w.socket().url, resets: w.events.filter(([t]) => t === 'reset').length};
    """)
    assert result == {"url": "ws://kaiwa.test/ws/chat/lobby/?after=5000", "resets": 1}
