"""The chat pages in headless Chromium, driven through Playwright.

- the Channels tutorial part 4 scenario (ChatTests): two windows in the same
  room see each other's messages; windows in different rooms do not;
- the seed tutorial's own JavaScript client (seeds/000) against a real server;
- the room page survives a server restart: it shows "reconnecting", resumes
  with ``after=<seq>`` and shows every message exactly once;
- it keeps its log, and offers to try again, when the history after a reset
  fails to load; the index page says why a direct message did not open.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Route,
    WebSocketRoute,
    expect,
    sync_playwright,
)

from tests.browser.csp import Violations
from tests.kaiwa_process import KaiwaServer, password

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000  # generous: a message normally arrives in milliseconds
NEGATIVE_WAIT_S = 1.5  # how long a message that must NOT arrive gets to show up

# The client of seeds/000 verbatim, except wss:// -> ws:// (the test server has no TLS).
SEED_CLIENT = """\
const ws = new WebSocket(
'ws://' + window.location.host + '/ws/chat/room1/'
);
ws.onmessage = function(event) {
const data = JSON.parse(event.data);
console.log(data.username + ': ' + data.message);
};
ws.onopen = function() {
ws.send(JSON.stringify({
'message': 'こんにちは!'
}));
};
"""


@pytest.fixture
def browser(chromium_path: str) -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def new_context(browser: Browser) -> Iterator:
    """Factory of browser contexts (separate windows with their own cookies)."""
    contexts: list[tuple[BrowserContext, Violations]] = []

    def make() -> BrowserContext:
        context = browser.new_context(viewport={"width": 1000, "height": 700})
        context.set_default_timeout(WAIT_MS)
        contexts.append((context, Violations(context)))
        return context

    yield make
    for context, _ in contexts:
        context.close()
    for _, violations in contexts:
        violations.assert_none()  # the pages kept the Content-Security-Policy


def log_in(context: BrowserContext, server: KaiwaServer, name: str) -> Page:
    """Log ``name`` in through the login form; returns the page, on the room index."""
    page = context.new_page()
    page.goto(server.http + "/accounts/login/")
    page.fill("[name=username]", name)
    page.fill("[name=password]", password(name))
    page.click("#login-submit")
    page.wait_for_url(server.http + "/chat/")
    return page


def enter_room(page: Page, server: KaiwaServer, room: str) -> None:
    """From the room index, type the room name and press Enter (tutorial part 4)."""
    page.click("#room-name-input")
    page.keyboard.type(room)
    page.keyboard.press("Enter")
    page.wait_for_url(server.http + f"/chat/{room}/")
    wait_live(page)


def wait_live(page: Page) -> None:
    page.wait_for_selector('#connection-state[data-state="live"]', timeout=WAIT_MS)


def post_message(page: Page, text: str) -> None:
    page.click("#chat-message-input")
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def chat_log(page: Page) -> str:
    return page.eval_on_selector("#chat-log", "el => el.value")


def wait_in_log(page: Page, line: str, who: str) -> None:
    try:
        page.wait_for_function(
            "line => document.getElementById('chat-log').value.split('\\n').includes(line)",
            arg=line,
            timeout=WAIT_MS,
        )
    except Exception as exc:  # a readable failure instead of a bare timeout
        raise AssertionError(f"{line!r} never reached {who}; log was {chat_log(page)!r}") from exc


def log_lines(page: Page) -> list[str]:
    return [line for line in chat_log(page).split("\n") if line]


def rest_post(server: KaiwaServer, token: str, room: str, text: str) -> dict:
    answer = httpx.post(
        f"{server.http}/api/rooms/{room}/messages/",
        json={"message": text},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


# 1. Channels tutorial part 4 (ChatTests) -------------------------------------


def test_message_posted_is_seen_by_everyone_in_same_room(kaiwa_server, new_context):
    alice = log_in(new_context(), kaiwa_server, "alice")
    bob = log_in(new_context(), kaiwa_server, "bob")
    enter_room(alice, kaiwa_server, "room_1")
    enter_room(bob, kaiwa_server, "room_1")

    post_message(alice, "hello")

    wait_in_log(alice, "alice: hello", "alice (her own window)")
    wait_in_log(bob, "alice: hello", "bob (same room)")
    assert alice.input_value("#chat-message-input") == "", "the input is cleared after sending"
    assert log_lines(bob).count("alice: hello") == 1

    ARTIFACTS.mkdir(exist_ok=True)
    bob.screenshot(path=str(ARTIFACTS / "room.png"), full_page=True)


def test_message_posted_is_not_seen_by_anyone_in_different_room(kaiwa_server, new_context):
    alice = log_in(new_context(), kaiwa_server, "alice")
    bob = log_in(new_context(), kaiwa_server, "bob")
    enter_room(alice, kaiwa_server, "room_1")
    enter_room(bob, kaiwa_server, "room_2")

    post_message(alice, "hello")
    wait_in_log(alice, "alice: hello", "alice (window 1 from window 1)")

    post_message(bob, "world")
    wait_in_log(bob, "bob: world", "bob (window 2 from window 2)")

    time.sleep(NEGATIVE_WAIT_S)  # a cross-room leak gets this long to show up
    assert "hello" not in chat_log(bob), "bob in room_2 received alice's room_1 message"
    assert "world" not in chat_log(alice), "alice in room_1 received bob's room_2 message"


# 2. The seed tutorial's JavaScript client --------------------------------------


def test_seed_javascript_client_talks_to_the_room_page(kaiwa_server, new_context):
    bob = log_in(new_context(), kaiwa_server, "bob")
    bob.goto(kaiwa_server.http + "/chat/room1/")
    wait_live(bob)

    alice = log_in(new_context(), kaiwa_server, "alice")  # on /chat/, a logged-in page
    console: list[str] = []
    alice.on("console", lambda msg: console.append(msg.text))

    # The page's CSP allows no inline <script>: the client runs as an init script
    # (as if pasted into the devtools console), on the page's next load.
    alice.add_init_script(SEED_CLIENT)
    alice.reload()

    wait_in_log(bob, "alice: こんにちは!", "bob's room page")
    deadline = time.monotonic() + WAIT_MS / 1000
    while "alice: こんにちは!" not in console and time.monotonic() < deadline:
        alice.wait_for_timeout(100)  # lets Playwright deliver console events
    assert "alice: こんにちは!" in console, f"alice's console: {console!r}"
    assert log_lines(bob).count("alice: こんにちは!") == 1


# 3. Reconnect and resume across a server restart ----------------------------


def test_room_page_resumes_after_server_restart(kaiwa_server, new_context):
    bob = log_in(new_context(), kaiwa_server, "bob")
    sockets: list[str] = []
    bob.on("websocket", lambda ws: sockets.append(ws.url))
    bob.goto(kaiwa_server.http + "/chat/room1/")
    wait_live(bob)

    token = kaiwa_server.token("alice")
    last = rest_post(kaiwa_server, token, "room1", "before the restart")
    wait_in_log(bob, "alice: before the restart", "bob before the restart")
    before = log_lines(bob)

    kaiwa_server.stop()
    bob.wait_for_selector('#connection-state[data-state="reconnecting"]', timeout=WAIT_MS)

    # Keep bob away while the server comes back and alice posts, so that he can
    # only get these messages from the resume backlog (?after=<seq>).
    bob.context.set_offline(True)
    kaiwa_server.start()
    first = rest_post(kaiwa_server, token, "room1", "while bob was away")
    second = rest_post(kaiwa_server, token, "room1", "still away")
    assert second["seq"] == first["seq"] + 1
    time.sleep(NEGATIVE_WAIT_S)  # bob keeps retrying, and failing, meanwhile
    assert "away" not in chat_log(bob), "bob should have been offline"
    assert bob.get_attribute("#connection-state", "data-state") == "reconnecting"
    bob.context.set_offline(False)

    wait_in_log(bob, "alice: still away", "bob after the restart")
    wait_live(bob)
    rest_post(kaiwa_server, token, "room1", "live again")
    wait_in_log(bob, "alice: live again", "bob, live after the resume")
    # A duplicate from the resume would have come before "live again"; give it a moment anyway.
    bob.wait_for_timeout(500)
    lines = log_lines(bob)
    assert lines == [
        *before,
        "alice: while bob was away",
        "alice: still away",
        "alice: live again",
    ], lines
    assert re.match(r"live", bob.text_content("#connection-state") or "")
    # The page resumed from the last seq it had shown (PROTOCOL.md section 1).
    assert sockets[0] == f"{kaiwa_server.ws}/ws/chat/room1/", sockets
    assert sockets[-1] == f"{kaiwa_server.ws}/ws/chat/room1/?after={last['seq']}", sockets


# 4. Read positions: coalesced, as PROTOCOL.md section 2 asks -----------------


# Records every frame the page sends, with the page's own clock (ms).
RECORD_SENDS = """
window.__sent = [];
const realSend = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  window.__sent.push([performance.now(), data]);
  return realSend.call(this, data);
};
"""


def test_room_page_coalesces_read_frames(kaiwa_server, new_context):
    bob = log_in(new_context(), kaiwa_server, "bob")
    bob.add_init_script(RECORD_SENDS)
    bob.goto(kaiwa_server.http + "/chat/room1/")
    wait_live(bob)

    token = kaiwa_server.token("alice")
    seqs = [rest_post(kaiwa_server, token, "room1", f"burst {n}")["seq"] for n in range(20)]
    wait_in_log(bob, "alice: burst 19", "bob")
    bob.wait_for_timeout(2500)  # the trailing read, a second after the first

    sent = bob.evaluate("window.__sent")
    reads = [(at, json.loads(data)["seq"]) for at, data in sent if '"read"' in data]
    assert 1 <= len(reads) <= 4, reads  # not one per message (20 arrived)
    assert reads[-1][1] == seqs[-1]  # the latest seq is reported in the end
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(reads)]
    assert all(gap >= 990 for gap in gaps), reads  # at most one a second


# 5. Cross-origin WebSocket from another port of the same host ------------------

ATTACK_PAGE = """<!doctype html><title>elsewhere</title><script>
window.__result = null;
const ws = new WebSocket("ws://127.0.0.1:%(port)d/ws/chat/room1/");
ws.onmessage = (e) => { window.__result = "read: " + e.data; };
ws.onclose = (e) => { window.__result = window.__result || "closed " + e.code; };
</script>"""


def test_a_page_on_another_port_cannot_use_the_users_cookie(kaiwa_server, new_context, tmp_path):
    import http.server
    import socket
    import threading

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        other_port = probe.getsockname()[1]
    (tmp_path / "attack.html").write_text(ATTACK_PAGE % {"port": kaiwa_server.port})
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    other = http.server.ThreadingHTTPServer(("127.0.0.1", other_port), handler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        context = new_context()
        log_in(context, kaiwa_server, "bob")  # bob's session cookie, valid for 127.0.0.1
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{other_port}/attack.html")
        page.wait_for_function("window.__result !== null", timeout=WAIT_MS)
        result = page.evaluate("window.__result")
        assert result.startswith("closed"), result  # refused at the handshake: nothing read
        # The same socket from Kaiwa's own page works (the cookie itself is fine).
        page.goto(kaiwa_server.http + "/chat/room1/")
        wait_live(page)
    finally:
        other.shutdown()


# 6. A reset whose history cannot be fetched keeps the log ---------------------


def test_room_page_keeps_its_log_when_the_missed_history_fails_to_load(kaiwa_server, new_context):
    # The page's socket goes through Playwright: the server's frames of the
    # "missed" messages are dropped, and the reset a server sends when more was
    # missed than it replays (PROTOCOL.md section 1) is injected.
    sockets: list[WebSocketRoute] = []

    def relay(page_socket: WebSocketRoute) -> None:
        server = page_socket.connect_to_server()
        server.on_message(lambda frame: None if "missed" in frame else page_socket.send(frame))
        sockets.append(page_socket)

    bob = log_in(new_context(), kaiwa_server, "bob")
    bob.route_web_socket(re.compile(r"/ws/chat/room1/"), relay)
    bob.goto(kaiwa_server.http + "/chat/room1/")
    wait_live(bob)
    token = kaiwa_server.token("alice")
    rest_post(kaiwa_server, token, "room1", "seen")
    wait_in_log(bob, "alice: seen", "bob")
    rest_post(kaiwa_server, token, "room1", "missed 1")
    latest = rest_post(kaiwa_server, token, "room1", "missed 2")["seq"]
    history = re.compile(r"/api/rooms/room1/messages/")
    bob.route(history, lambda route: route.fulfill(status=502, body="<h1>Bad gateway</h1>"))

    sockets[0].send(json.dumps({"type": "reset", "seq": latest}))

    expect(bob.get_by_role("alert")).to_contain_text("could not be loaded")
    rest_post(kaiwa_server, token, "room1", "after the reset")
    wait_in_log(bob, "alice: after the reset", "bob")
    assert log_lines(bob) == ["alice: seen", "alice: after the reset"]

    bob.route(history, lambda route: route.abort())  # offline: the same alert
    bob.get_by_role("button", name="Try again").click()
    expect(bob.get_by_role("alert")).to_contain_text("could not be loaded")
    assert log_lines(bob) == ["alice: seen", "alice: after the reset"]

    bob.unroute(history)
    bob.get_by_role("button", name="Try again").click()
    expect(bob.get_by_role("alert")).to_be_hidden()
    wait_in_log(bob, "alice: missed 2", "bob, once the history loads")
    assert log_lines(bob) == [
        "alice: seen",
        "alice: missed 1",
        "alice: missed 2",
        "alice: after the reset",
    ]


# 7. The index page's direct-message box says what went wrong ------------------


def fulfill(route: Route, status: int, body: str) -> None:
    route.fulfill(status=status, body=body)


def test_index_page_shows_why_a_direct_message_did_not_open(kaiwa_server, new_context):
    bob = log_in(new_context(), kaiwa_server, "bob")
    expect(bob.get_by_label("Room name")).to_be_visible()
    name = bob.get_by_role("textbox", name="Username")
    open_button = bob.get_by_role("button", name="Open")
    alert = bob.get_by_role("alert")

    name.fill("nobody")
    open_button.click()
    expect(alert).to_have_text("No such user.")  # the server's detail (404)

    name.fill("")
    open_button.click()
    expect(alert).to_have_text("'username' must be a non-empty string.")  # 400

    # Answers that are not Kaiwa's JSON (a proxy's pages), then no answer at all.
    dms = re.compile(r"/api/dms/$")
    name.fill("alice")
    for status, text in [
        (429, "Too many new conversations: try again in a minute."),
        (502, "The server could not open the conversation: try again."),
    ]:
        bob.route(dms, functools.partial(fulfill, status=status, body="<h1>No</h1>"))
        open_button.click()
        expect(alert).to_have_text(text)
        bob.unroute(dms)
    bob.route(dms, lambda route: route.abort())
    open_button.click()
    expect(alert).to_have_text(
        "The server could not be reached: check the connection and try again."
    )
    bob.unroute(dms)

    open_button.click()
    bob.wait_for_url(re.compile(r"/chat/dm-\d+-\d+/$"))
