"""The room page (app.js on client.js) in Chromium, as people use it: two
users in two browsers, every element found by its role and accessible name
(Testing Library's advice), on a real ``kaiwa serve`` with presence on.

Screenshots of the main views go to test-artifacts/ (docs/screenshots/ holds
copies of them)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.browser.csp import Violations
from tests.browser.test_chat_pages import ARTIFACTS, CHROMIUM_ARGS, WAIT_MS, log_in, wait_live
from tests.kaiwa_process import KaiwaServer, base_env, create_users
from tests.wsclient import joined_sync

pytestmark = pytest.mark.browser

ROOMS_POLL_WAIT_MS = 10_000  # the sidebar polls its counts every 2 s here


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[KaiwaServer]:
    tmp = tmp_path_factory.mktemp("room-page")
    env = base_env(
        KAIWA_DATA_DIR=str(tmp / "data"),
        KAIWA_PRESENCE_MAX_MEMBERS="200",
        KAIWA_PRESENCE_GRACE_SECONDS="2",
        KAIWA_ROOMS_POLL_SECONDS="2",
        # One test seeds a long history through REST at once.
        KAIWA_RATE_MESSAGES_PER_SECOND="10000",
        KAIWA_RATE_BURST="10000",
    )
    create_users(env, "alice", "bob", "carol")
    running = KaiwaServer(env, tmp / "serve.log").start()
    ARTIFACTS.mkdir(exist_ok=True)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    import os
    import shutil

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(chromium):
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def contexts(browser: Browser) -> Iterator:
    made: list[BrowserContext] = []
    watched: list[Violations] = []

    def make(**options) -> BrowserContext:
        context = browser.new_context(**{"viewport": {"width": 1100, "height": 750}, **options})
        context.set_default_timeout(WAIT_MS)
        # Headless Chromium may report a page of one context hidden when
        # another opens: each page is visible until a test hides it (hide()).
        context.add_init_script(VISIBLE_UNTIL_HIDDEN)
        made.append(context)
        watched.append(Violations(context))
        return context

    yield make
    for context in made:
        context.close()
    for violations in watched:
        violations.assert_none()  # the pages kept the Content-Security-Policy


VISIBLE_UNTIL_HIDDEN = """
Object.defineProperty(document, "hidden", {configurable: true, get: () => window.__hidden === true});
Object.defineProperty(document, "visibilityState", {
  configurable: true, get: () => (window.__hidden === true ? "hidden" : "visible"),
});
"""


def hide(page: Page) -> None:
    """The page's tab goes to the background (document.hidden, visibilitychange)."""
    page.evaluate(
        "() => { window.__hidden = true; document.dispatchEvent(new Event('visibilitychange')); }"
    )


_rooms = iter(range(10_000))


def fresh_room() -> str:
    return f"r{int(time.time() * 1000) % 10**8}-{next(_rooms)}"


def open_room(page: Page, server: KaiwaServer, room: str) -> None:
    page.goto(f"{server.http}/chat/{room}/")
    wait_live(page)


def composer(page: Page):
    return page.get_by_role("textbox", name="Message", exact=True)


def messages(page: Page):
    return page.get_by_role("log", name="Messages")


def article(page: Page, author: str, text: str):
    return messages(page).get_by_role(
        "article", name=re.compile(rf"^{author}\b.*{re.escape(text)}")
    )


def say(page: Page, text: str) -> None:
    composer(page).fill(text)
    composer(page).press("Enter")


def pair(contexts, server: KaiwaServer, room: str, **options) -> tuple[Page, Page]:
    alice = log_in(contexts(**options), server, "alice")
    bob = log_in(contexts(**options), server, "bob")
    open_room(alice, server, room)
    open_room(bob, server, room)
    return alice, bob


def test_the_page_has_its_landmarks_and_names(server, contexts):
    alice = log_in(contexts(), server, "alice")
    open_room(alice, server, fresh_room())
    expect(alice.get_by_role("navigation", name="Rooms")).to_be_visible()
    expect(messages(alice)).to_be_visible()
    expect(composer(alice)).to_be_focused()
    expect(alice.get_by_role("button", name="Send")).to_be_visible()
    expect(alice.get_by_role("complementary", name="Members")).to_be_visible()
    expect(alice.get_by_role("searchbox", name="Search")).to_be_visible()
    expect(alice.get_by_role("status").filter(has_text=re.compile("^$"))).to_have_count(2)


def test_two_users_chat_with_formatting_mentions_and_times(server, contexts):
    room = fresh_room()
    alice, bob = pair(contexts, server, room)
    say(alice, "**bold** and `code` <b>not html</b> @bob")
    message = article(bob, "alice", "bold and code")
    expect(message).to_be_visible()
    expect(message.locator("strong")).to_have_text("bold")
    expect(message.locator("code")).to_have_text("code")
    expect(message).to_contain_text("<b>not html</b>")  # shown as text, never as HTML
    expect(message.locator("b")).to_have_count(0)
    expect(message).to_have_class(re.compile("mentions-me"))  # bob is mentioned
    expect(article(alice, "alice", "bold and code")).not_to_have_class(re.compile("mentions-me"))
    # The time, in the viewer's zone, is part of the article's accessible text.
    expect(message.locator("time")).to_have_text(re.compile(r"\d\d?:\d\d"))
    expect(composer(alice)).to_have_value("")
    # The day divider sits above the first message, outside its box (which
    # hover and a search's highlight colour).
    first = messages(bob).get_by_role("article").first
    day, box = first.locator(".day").bounding_box(), first.bounding_box()
    assert day is not None
    assert box is not None
    assert day["y"] + day["height"] <= box["y"] + 0.5, (day, box)

    composer(alice).fill("line one")
    composer(alice).press("Shift+Enter")
    composer(alice).type("line two")
    expect(composer(alice)).to_have_value("line one\nline two")
    composer(alice).press("Enter")
    expect(article(bob, "alice", "line two")).to_be_visible()
    # A code block's lines start flush: inline code's padding is not on them.
    composer(alice).fill("```\nfirst = 1\nsecond = 2\n```")
    composer(alice).press("Enter")
    block = article(bob, "alice", "first = 1").locator("pre code")
    expect(block).to_have_text("first = 1\nsecond = 2\n")
    assert block.evaluate("el => getComputedStyle(el).paddingLeft") == "0px"
    bob.screenshot(path=str(ARTIFACTS / "room-desktop.png"))


def test_edit_with_history_delete_and_keyboard(server, contexts):
    room = fresh_room()
    alice, bob = pair(contexts, server, room)
    say(alice, "opening line")
    say(alice, "first draft")  # continues alice's run: no header of its own
    expect(article(bob, "alice", "first draft")).to_be_visible()

    article(alice, "alice", "first draft").hover()
    article(alice, "alice", "first draft").get_by_role("button", name="Edit", exact=True).click()
    expect(composer(alice)).to_have_value("first draft")
    composer(alice).fill("second draft")
    composer(alice).press("Enter")
    edited = article(bob, "alice", "second draft")
    expect(edited).to_be_visible()
    expect(edited).to_have_class(re.compile("continued"))
    # The mark follows the text, visible even where the header is not.
    expect(edited.get_by_role("button", name=re.compile("edited"))).to_be_visible()
    edited.get_by_role("button", name=re.compile("edited")).click()
    history = bob.get_by_role("dialog", name="Edit history")
    expect(history.get_by_role("listitem")).to_have_count(2)
    expect(history.get_by_role("listitem").first).to_contain_text("first draft")
    history.get_by_role("button", name="Close").click()

    # Up edits your last message; Escape gives up.
    composer(alice).press("ArrowUp")
    expect(composer(alice)).to_have_value("second draft")
    composer(alice).press("Escape")
    expect(composer(alice)).to_have_value("")
    # An edit started over a draft gives the draft back when it ends.
    composer(alice).fill("half written")
    article(alice, "alice", "second draft").hover()
    article(alice, "alice", "second draft").get_by_role("button", name="Edit", exact=True).click()
    expect(composer(alice)).to_have_value("second draft")
    composer(alice).press("Escape")
    expect(composer(alice)).to_have_value("half written")
    composer(alice).fill("")

    # Delete asks first: Cancel keeps the message, Delete removes it.
    confirm = alice.get_by_role("dialog", name="Delete message")
    article(alice, "alice", "second draft").hover()
    article(alice, "alice", "second draft").get_by_role("button", name="Delete").click()
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()  # Enter does not delete
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    expect(article(bob, "alice", "second draft")).to_be_visible()
    article(alice, "alice", "second draft").hover()
    article(alice, "alice", "second draft").get_by_role("button", name="Delete").click()
    confirm.get_by_role("button", name="Delete").click()
    # Gone, for those who watched and (as in a join's backlog) after a reload.
    expect(messages(bob)).not_to_contain_text("second draft")
    expect(article(bob, "alice", "opening line")).to_be_visible()
    bob.reload()
    wait_live(bob)
    expect(article(bob, "alice", "opening line")).to_be_visible()
    expect(messages(bob)).not_to_contain_text("second draft")
    # bob may react and cannot edit or delete alice's messages.
    say(alice, "not yours")
    theirs = article(bob, "alice", "not yours")
    theirs.hover()
    expect(theirs.get_by_role("button", name="Add reaction")).to_be_visible()
    expect(theirs.get_by_role("button", name="Edit", exact=True)).to_have_count(0)
    expect(theirs.get_by_role("button", name="Delete")).to_have_count(0)


def test_reactions_with_counts_and_who(server, contexts):
    room = fresh_room()
    alice, bob = pair(contexts, server, room)
    say(alice, "react to me")
    theirs = article(bob, "alice", "react to me")
    theirs.hover()
    theirs.get_by_role("button", name="Add reaction").click()
    bob.get_by_role("group", name="Pick a reaction").get_by_role("button", name="thumbs up").click()
    chip = article(alice, "alice", "react to me").get_by_role("button", name="👍 1: bob")
    expect(chip).to_be_visible()
    expect(chip).to_have_attribute("aria-pressed", "false")
    chip.click()  # alice adds hers
    both = article(bob, "alice", "react to me").get_by_role("button", name="👍 2: alice, bob")
    expect(both).to_have_attribute("aria-pressed", "true")
    both.click()  # bob takes his back
    expect(
        article(alice, "alice", "react to me").get_by_role("button", name="👍 1: alice")
    ).to_be_visible()


def test_typing_and_presence(server, contexts):
    room = fresh_room()
    alice, bob = pair(contexts, server, room)
    composer(alice).type("I am writ")
    typing = bob.get_by_role("status").filter(has_text="typing")
    expect(typing).to_have_text("alice is typing…")
    composer(alice).press("Enter")
    expect(typing).to_have_count(0)

    members = bob.get_by_role("complementary", name="Members")
    expect(members.get_by_role("listitem").filter(has_text="alice")).to_have_text(
        re.compile("alice\\s+online")
    )
    # alice's tab is hidden: away for bob.
    hide(alice)
    expect(members.get_by_role("listitem").filter(has_text="alice")).to_have_text(
        re.compile("alice\\s+away")
    )
    alice.close()  # and gone: offline after the grace period (2 s here)
    expect(members.get_by_role("listitem").filter(has_text="alice")).to_have_count(0)


def test_unread_counts_in_the_other_users_sidebar(server, contexts):
    general, elsewhere = fresh_room(), fresh_room()
    alice, bob = pair(contexts, server, general)
    open_room(bob, server, elsewhere)
    say(alice, "hello @bob")
    say(alice, "are you there")
    expect(article(alice, "alice", "are you there")).to_be_visible()
    link = bob.get_by_role("navigation", name="Rooms").get_by_role("link", name=re.compile(general))
    expect(link).to_have_accessible_name(
        re.compile(rf"{general}\s+2 unread\s+mentions you"), timeout=ROOMS_POLL_WAIT_MS
    )
    link.click()
    wait_live(bob)
    expect(article(bob, "alice", "are you there")).to_be_visible()
    current = bob.get_by_role("navigation", name="Rooms").get_by_role(
        "link", name=re.compile(general)
    )
    expect(current).to_have_attribute("aria-current", "page")
    expect(current).to_have_accessible_name(general)


def test_search_jumps_to_the_message_in_its_room(server, contexts):
    room = fresh_room()
    alice, bob = pair(contexts, server, room)
    say(alice, "the pineapple plan")
    say(alice, "something else")
    expect(article(bob, "alice", "something else")).to_be_visible()
    open_room(bob, server, fresh_room())
    bob.get_by_role("searchbox", name="Search").fill("pineapple")
    bob.get_by_role("searchbox", name="Search").press("Enter")
    result = bob.get_by_role("region", name="Search results").get_by_role(
        "link", name=re.compile("pineapple")
    )
    expect(result).to_contain_text(room)
    result.click()
    wait_live(bob)
    found = article(bob, "alice", "the pineapple plan")
    expect(found).to_be_visible()
    expect(found).to_have_class(re.compile("highlight"))
    jump = bob.get_by_role("button", name="Jump to the latest messages")
    expect(jump).to_be_visible()
    # Back to the present: the address loses the search's ?at=…#m-…, so a
    # reload stays in the present.
    jump.click()
    expect(article(bob, "alice", "something else")).to_be_visible()
    bob.wait_for_function("() => !location.search && !location.hash")
    assert bob.url.endswith(f"/chat/{room}/"), bob.url

    # A message sent while a search result is shown brings the present back.
    result.page.goto(f"{server.http}/chat/{room}/?at=1")
    wait_live(bob)
    expect(jump).to_be_visible()
    say(bob, "replying from the past")
    expect(article(bob, "bob", "replying from the past")).to_be_in_viewport()
    expect(jump).to_be_hidden()


def test_opening_search_keeps_the_newest_messages_in_view(server, contexts):
    room = fresh_room()
    alice, bob = pair(contexts, server, room)
    for n in range(25):  # more than the log's height
        say(alice, f"line {n}")
    newest = article(bob, "alice", "line 24")
    expect(newest).to_be_in_viewport()
    bob.get_by_role("searchbox", name="Search").fill("line")
    bob.get_by_role("searchbox", name="Search").press("Enter")
    expect(bob.get_by_role("region", name="Search results")).to_be_visible()
    expect(newest).to_be_in_viewport()
    bob.get_by_role("region", name="Search results").get_by_role("button", name="Close").click()
    expect(newest).to_be_in_viewport()
    # Escape in the search box closes the results too.
    bob.get_by_role("searchbox", name="Search").press("Enter")
    expect(bob.get_by_role("region", name="Search results")).to_be_visible()
    bob.get_by_role("searchbox", name="Search").press("Escape")
    expect(bob.get_by_role("region", name="Search results")).to_be_hidden()


def test_an_empty_room_says_so(server, contexts):
    alice = log_in(contexts(), server, "alice")
    room = fresh_room()
    open_room(alice, server, room)
    expect(alice.get_by_text(f"No messages in {room} yet.")).to_be_visible()
    say(alice, "hello?")
    expect(alice.get_by_text(f"This is the beginning of {room}.")).to_be_visible()


def test_a_draft_survives_a_reload(server, contexts):
    alice = log_in(contexts(), server, "alice")
    room = fresh_room()
    open_room(alice, server, room)
    composer(alice).fill("half a thought")
    alice.reload()
    wait_live(alice)
    expect(composer(alice)).to_have_value("half a thought")
    composer(alice).press("Enter")
    expect(article(alice, "alice", "half a thought")).to_be_visible()
    alice.reload()
    wait_live(alice)
    expect(composer(alice)).to_have_value("")  # sent: no draft left


def test_a_reload_mid_conversation_shows_each_message_once(server, contexts):
    room = fresh_room()
    alice, bob = pair(contexts, server, room)
    for n in range(3):
        say(alice, f"before reload {n}")
    expect(article(bob, "alice", "before reload 2")).to_be_visible()
    bob.reload()
    wait_live(bob)
    say(alice, "after reload")
    expect(article(bob, "alice", "after reload")).to_be_visible()
    texts = messages(bob).get_by_role("article").all_inner_texts()
    assert sum("before reload" in t for t in texts) == 3, texts
    assert sum("after reload" in t for t in texts) == 1, texts


def test_history_scrolls_back_with_a_bounded_dom(server, contexts):
    room = fresh_room()
    token = server.token("carol")
    with joined_sync(server, room, token=token):  # the room exists from its first join
        pass
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
        for n in range(1, 401):
            answer = http.post(
                f"{server.http}/api/rooms/{room}/messages/", json={"message": f"old {n}"}
            )
            assert answer.status_code == 201, answer.text
    bob = log_in(contexts(), server, "bob")
    open_room(bob, server, room)
    log = messages(bob)
    expect(article(bob, "carol", "old 400")).to_be_visible()
    assert log.get_by_role("article").count() == 50

    def scroll_to_top_and_load() -> None:
        count = log.get_by_role("article").count()
        first = log.get_by_role("article").first.get_attribute("data-seq")
        # The first message's text on screen once at the top, before older ones load.
        top = log.evaluate(
            "(el, seq) => { el.scrollTop = 0;"
            ' const t = el.querySelector(`article[data-seq="${seq}"] .body`).getBoundingClientRect().top;'
            " el.dispatchEvent(new Event('scroll')); return t; }",
            first,
        )
        bob.wait_for_function(
            "([n, s]) => document.querySelectorAll('#messages article[data-seq]').length !== n"
            " || document.querySelector('#messages article[data-seq]').dataset.seq !== s",
            arg=[count, first],
        )
        after = bob.evaluate(
            f"() => document.querySelector('article[data-seq=\"{first}\"] .body').getBoundingClientRect().top"
        )
        assert abs(after - top) < 2, (top, after)  # the view stays put while older ones load

    for _ in range(3):
        scroll_to_top_and_load()
    assert log.get_by_role("article").count() == 200
    for _ in range(4):  # down to message 1: 400 in all, 300 kept
        scroll_to_top_and_load()
    expect(bob.get_by_text("This is the beginning of")).to_be_visible()
    expect(log.get_by_role("article", name=re.compile(r"^carol\b.* old 1$"))).to_be_attached()
    assert log.get_by_role("article").count() <= 300  # the DOM stays bounded
    # The newest were dropped: a new one is announced, not appended.
    rest = httpx.post(
        f"{server.http}/api/rooms/{room}/messages/",
        json={"message": "brand new"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert rest.status_code == 201
    new = bob.get_by_role("button", name="New messages")
    expect(new).to_be_visible()
    new.click()
    expect(article(bob, "carol", "brand new")).to_be_visible()
    assert log.get_by_role("article").count() == 50


def test_a_phone_sized_screen(server, contexts, browser):
    room = fresh_room()
    phone = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}
    alice = log_in(contexts(**phone), server, "alice")
    open_room(alice, server, room)
    rooms = alice.get_by_role("navigation", name="Rooms")
    expect(rooms).to_be_hidden()
    expect(composer(alice)).to_be_visible()
    say(alice, "from my phone")
    mine = article(alice, "alice", "from my phone")
    expect(mine).to_be_visible()
    width = alice.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 360, f"the page scrolls sideways: {width}px"
    # The header is one row of buttons and title, then the search box.
    toggle = alice.get_by_role("button", name="Rooms", exact=True)
    row = [
        toggle.bounding_box(),
        alice.get_by_role("heading", name=room).bounding_box(),
        alice.get_by_role("button", name="Members", exact=True).bounding_box(),
    ]
    assert all(b is not None for b in row)
    tops = [b["y"] + b["height"] / 2 for b in row if b]
    assert max(tops) - min(tops) < 8, row
    # No hover on a phone: a message's actions show when it is tapped.
    expect(mine.get_by_role("button", name="Edit", exact=True)).to_be_hidden()
    mine.locator(".body").tap()
    expect(mine.get_by_role("button", name="Edit", exact=True)).to_be_visible()
    alice.screenshot(path=str(ARTIFACTS / "room-phone.png"))
    # The rooms drawer opens from its button and closes by its own button,
    # by Escape and by a tap outside it.
    for close in ("button", "Escape", "outside"):
        toggle.click()
        expect(rooms).to_be_visible()
        expect(rooms.get_by_role("link", name=room)).to_be_visible()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        if close == "button":
            alice.screenshot(path=str(ARTIFACTS / "room-phone-rooms.png"))
            rooms.get_by_role("button", name="Hide rooms").click()
        elif close == "Escape":
            alice.keyboard.press("Escape")
        else:
            alice.mouse.click(340, 400)
        expect(rooms).to_be_hidden()
        expect(toggle).to_have_attribute("aria-expanded", "false")
    dark = contexts(color_scheme="dark")
    page = log_in(dark, server, "bob")
    open_room(page, server, room)
    expect(article(page, "alice", "from my phone")).to_be_visible()
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(22, 25, 29)", background
    page.screenshot(path=str(ARTIFACTS / "room-dark.png"))


@pytest.fixture
def strict_server(tmp_path) -> Iterator[KaiwaServer]:
    env = base_env(
        KAIWA_DATA_DIR=str(tmp_path / "data"),
        KAIWA_RATE_MESSAGES_PER_SECOND="0.5",
        KAIWA_RATE_BURST="1",
    )
    create_users(env, "alice")
    running = KaiwaServer(env, tmp_path / "serve.log").start()
    yield running
    running.stop()


def test_a_refused_send_is_shown_failed_and_can_be_retried(strict_server, contexts):
    alice = log_in(contexts(), strict_server, "alice")
    open_room(alice, strict_server, "lobby")
    say(alice, "one")
    expect(article(alice, "alice", "one")).to_be_visible()
    say(alice, "two")
    failed = messages(alice).get_by_role("article", name=re.compile("sending: two"))
    expect(failed).to_contain_text("Not sent")
    alice.wait_for_timeout(2500)  # the bucket refills (0.5 a second)
    failed.get_by_role("button", name="Retry").click()
    expect(article(alice, "alice", "two")).to_be_visible()
    expect(failed).to_have_count(0)


def test_entering_a_room_and_opening_a_direct_message_from_the_sidebar(server, contexts):
    alice = log_in(contexts(), server, "alice")
    open_room(alice, server, fresh_room())
    rooms = alice.get_by_role("navigation", name="Rooms")
    target = fresh_room()
    rooms.get_by_role("textbox", name="Enter or create a room").fill("no spaces allowed")
    rooms.get_by_role("button", name="Enter").click()
    expect(rooms.get_by_text("A room name is 1 to 64")).to_be_visible()
    rooms.get_by_role("textbox", name="Enter or create a room").fill(target)
    rooms.get_by_role("textbox", name="Enter or create a room").press("Enter")
    alice.wait_for_url(f"{server.http}/chat/{target}/")
    wait_live(alice)
    expect(alice.get_by_role("heading", name=target)).to_be_visible()

    rooms.get_by_role("textbox", name="Direct message").fill("nobody-here")
    rooms.get_by_role("button", name="Open").click()
    expect(rooms.get_by_role("status")).to_have_text("No such user.")
    rooms.get_by_role("textbox", name="Direct message").fill("carol")
    rooms.get_by_role("button", name="Open").click()
    alice.wait_for_url(re.compile(r"/chat/dm-[^/]+/$"))
    wait_live(alice)
    expect(alice.get_by_role("heading", name="carol", exact=True)).to_be_visible()
    say(alice, "just between us")
    carol = log_in(contexts(), server, "carol")
    carol.goto(alice.url)
    wait_live(carol)
    expect(carol.get_by_role("heading", name="alice", exact=True)).to_be_visible()
    expect(article(carol, "alice", "just between us")).to_be_visible()
    bob = log_in(contexts(), server, "bob")  # not in it: the page is not found
    response = bob.goto(alice.url)
    assert response is not None
    assert response.status == 404


def test_keyboard_only(server, contexts):
    room = fresh_room()
    alice, bob = pair(contexts, server, room)
    say(alice, "react with the keyboard")
    expect(article(bob, "alice", "react with the keyboard")).to_be_visible()
    expect(composer(bob)).to_be_focused()
    # From the composer, Shift+Tab walks back into the log to the last
    # message's actions; Enter opens the picker, which takes the focus.
    react = article(bob, "alice", "react with the keyboard").get_by_role(
        "button", name="Add reaction"
    )
    for _ in range(10):
        bob.keyboard.press("Shift+Tab")
        if react.evaluate("el => el === document.activeElement"):
            break
    expect(react).to_be_focused()
    bob.keyboard.press("Enter")
    expect(
        bob.get_by_role("group", name="Pick a reaction").get_by_role("button", name="thumbs up")
    ).to_be_focused()
    bob.keyboard.press("Tab")
    bob.keyboard.press("Enter")  # heart
    expect(
        article(alice, "alice", "react with the keyboard").get_by_role("button", name="❤️ 1: bob")
    ).to_be_visible()
    expect(react).to_be_focused()  # back where it was
    bob.keyboard.press("Escape")


def test_a_skip_link_leads_from_the_top_to_the_message_box(server, contexts):
    alice = log_in(contexts(), server, "alice")
    open_room(alice, server, fresh_room())
    skip = alice.get_by_role("link", name="Skip to the message box")
    alice.evaluate("() => document.activeElement.blur()")
    for _ in range(6):  # past the header's links: the first stop of the page's own
        alice.keyboard.press("Tab")
        if skip.evaluate("el => el === document.activeElement"):
            break
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()  # shown when focused
    alice.keyboard.press("Enter")
    expect(composer(alice)).to_be_focused()
