"""Screenshots of the room page for the README (docs/screenshots/).

Run from the repository's root, after ``make install``::

    .venv/bin/python docs/screenshots/make_screenshots.py

It starts its own ``kaiwa serve`` on the embedded defaults (SQLite in a
temporary ``KAIWA_DATA_DIR``, ``DJANGO_DEBUG=1``, a free port on 127.0.0.1),
signs up four users on the sign-up page, has them talk in a room named
``general`` in headless Chromium (``/usr/bin/chromium``, or ``CHROMIUM``),
writes the PNGs and stops the server. Nothing outside the temporary directory
and the output directory is touched.

- ``room-desktop.png``: ben's view of general: a conversation of four
  authors with formatting, reactions, an edited message, a mention of ben,
  "carol is typing…", the members with their presence, and other rooms and
  a direct message with unread counts and a mention mark in the sidebar.
- ``room-dark.png``: the same with ``prefers-color-scheme: dark``.
- ``room-phone.png``, ``room-phone-rooms.png``: ben on a 360 x 740 phone,
  then with the Rooms drawer open.
- ``room-search.png``: aiko's search results for "v2.4.1".

Options: ``--out DIR`` writes the PNGs elsewhere (default: this script's
folder). Emoji need a colour emoji font (Debian: ``fonts-noto-color-emoji``).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
KAIWA = Path(sys.executable).parent / "kaiwa"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PASSWORD = "screenshot-passphrase-4821"
DESKTOP = {"width": 1100, "height": 750}
PHONE = {"width": 360, "height": 740}
WAIT_MS = 15_000

# Headless Chromium may report a page hidden when another context opens one:
# each page counts as visible (online, reading) until hide() says otherwise.
VISIBLE_UNTIL_HIDDEN = """
Object.defineProperty(document, "hidden", {configurable: true, get: () => window.__hidden === true});
Object.defineProperty(document, "visibilityState", {
  configurable: true, get: () => (window.__hidden === true ? "hidden" : "visible"),
});
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def kaiwa_server(data_dir: Path) -> Iterator[str]:
    """``kaiwa serve`` on the embedded defaults; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_DEBUG": "1",
        "KAIWA_DATA_DIR": str(data_dir),
        # The sidebar's counts refresh every 2 s instead of 30, so that the
        # other rooms' unread counts show without waiting.
        "KAIWA_ROOMS_POLL_SECONDS": "2",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "EMAIL_URL", "EMAIL_HOST"):
        env.pop(name, None)
    data_dir.mkdir(parents=True)
    log_path = data_dir.parent / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(KAIWA), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"kaiwa serve exited:\n{log_path.read_text()}")
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"kaiwa serve did not start:\n{log_path.read_text()}")
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class People:
    """One browser context per user, signed up on the sign-up page."""

    def __init__(self, browser: Browser, base: str) -> None:
        self.browser = browser
        self.base = base
        self.contexts: list[BrowserContext] = []

    def context(self, **options) -> BrowserContext:
        options = {
            "viewport": DESKTOP,
            "locale": "en-US",
            "timezone_id": "Europe/Berlin",
            **options,
        }
        context = self.browser.new_context(**options)
        context.set_default_timeout(WAIT_MS)
        context.add_init_script(VISIBLE_UNTIL_HIDDEN)
        self.contexts.append(context)
        return context

    def sign_up(self, username: str) -> Page:
        page = self.context().new_page()
        page.goto(self.base + "/accounts/signup/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password:", exact=True).fill(PASSWORD)
        page.get_by_label("Password confirmation").fill(PASSWORD)
        page.get_by_role("button", name="Sign up").click()
        page.wait_for_url("**/chat/")
        return page

    def log_in(self, username: str, **options) -> Page:
        page = self.context(**options).new_page()
        page.goto(self.base + "/accounts/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/chat/")
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def open_room(page: Page, base: str, room: str) -> None:
    page.goto(f"{base}/chat/{room}/")
    expect(page.locator("#connection-state")).to_have_text(re.compile("^live"))


def composer(page: Page):
    return page.get_by_role("textbox", name="Message", exact=True)


def messages(page: Page):
    return page.get_by_role("log", name="Messages")


def article(page: Page, author: str, text: str):
    pattern = re.compile(rf"^{author}\b.*{re.escape(text)}", re.S)
    return messages(page).get_by_role("article", name=pattern)


def say(page: Page, text: str, shows: str) -> None:
    """Send `text`; wait until its message (whose text contains `shows`) is in."""
    composer(page).fill(text)
    composer(page).press("Enter")
    expect(article(page, r"\S+", shows)).to_be_visible()


def react(page: Page, author: str, text: str, reaction: str) -> None:
    message = article(page, author, text)
    message.hover()
    message.get_by_role("button", name="Add reaction").click()
    page.get_by_role("group", name="Pick a reaction").get_by_role("button", name=reaction).click()


def hide(page: Page) -> None:
    """The page's tab goes to the background: its user becomes away."""
    page.evaluate(
        "() => { window.__hidden = true; document.dispatchEvent(new Event('visibilitychange')); }"
    )


def settle(page: Page) -> None:
    """No hover, no focus on a message (its actions would show): the pointer
    off the messages, the focus in the composer."""
    composer(page).focus()
    page.mouse.move(1, 1)
    page.wait_for_timeout(300)


def conversation(base: str, people: People, out: Path) -> None:
    aiko = people.sign_up("aiko")
    ben = people.sign_up("ben")
    carol = people.sign_up("carol")
    dmitri = people.sign_up("dmitri")

    # Ben is in two more rooms, where the others write while he reads general.
    # He opens general first: one who joins a room while online elsewhere
    # shows in its Members only at the page's next poll (a minute).
    for room in ("deploys", "random", "general"):
        open_room(ben, base, room)
    open_room(aiko, base, "general")
    open_room(carol, base, "general")
    open_room(dmitri, base, "general")

    say(
        aiko,
        "Morning! **v2.4.1** is on staging, release notes: https://example.com/releases/2.4.1",
        "is on staging",
    )
    say(
        carol,
        "Nice. Before the prod rollout:\n```\nkaiwa migrate\nkaiwa serve --no-migrate\n```",
        "Before the prod rollout",
    )
    say(
        dmitri,
        "Checklist for today:\n- back up the database\n- run the migrations\n- _then_ flip the flag",
        "Checklist for today",
    )
    say(
        aiko,
        "@ben could you review the rollback plan? It is in `docs/operations.md`",
        "rollback plan",
    )
    say(ben, "On it, after lunch", "after lunch")
    # Ben edits his message (it shows "(edited)", with the history behind it).
    mine = article(ben, "ben", "after lunch")
    mine.hover()
    mine.get_by_role("button", name="Edit").click()
    composer(ben).fill("On it, right after standup :)")
    composer(ben).press("Enter")
    expect(article(aiko, "ben", "right after standup")).to_contain_text("(edited)")
    say(dmitri, "Thanks **both**. I will watch the dashboards", "watch the dashboards")

    react(ben, "aiko", "is on staging", "thumbs up")
    react(carol, "aiko", "is on staging", "thumbs up")
    react(dmitri, "aiko", "is on staging", "party")
    react(aiko, "ben", "right after standup", "thank you")
    expect(
        article(ben, "aiko", "is on staging").get_by_role("button", name=re.compile("👍 2"))
    ).to_be_visible()

    # Elsewhere: a mention in deploys, a message in random, a direct message.
    open_room(carol, base, "deploys")
    say(carol, "Deploy of v2.4.1 to prod finished", "to prod finished")
    say(carol, "@ben the canary looks good", "canary looks good")
    open_room(dmitri, base, "random")
    say(dmitri, "Lunch at noon?", "Lunch at noon")
    aiko_dm = people.contexts[0].new_page()
    aiko_dm.goto(base + "/chat/")
    aiko_dm.get_by_placeholder("username").fill("ben")
    aiko_dm.get_by_placeholder("username").press("Enter")
    aiko_dm.wait_for_url(re.compile(r"/chat/dm-\d+-\d+/"))
    expect(aiko_dm.locator("#connection-state")).to_have_text(re.compile("^live"))
    say(aiko_dm, "Do you have a minute after standup?", "a minute after")
    aiko_dm.close()
    hide(dmitri)  # dmitri's tab is in the background: away
    carol_page = carol
    open_room(carol_page, base, "general")

    nav = ben.get_by_role("navigation", name="Rooms")
    expect(nav.get_by_role("link", name=re.compile(r"^deploys.*mentions you"))).to_be_visible()
    expect(nav.get_by_role("link", name=re.compile(r"aiko.*unread"))).to_be_visible()
    members = ben.get_by_role("complementary", name="Members")
    expect(members.get_by_role("listitem").filter(has_text="dmitri")).to_contain_text("away")
    expect(members.get_by_role("listitem").filter(has_text="carol")).to_contain_text("online")

    # carol types: "carol is typing…" under ben's messages.
    def typing(page: Page, watcher: Page) -> None:
        composer(page).click()
        page.keyboard.type("Looks good to me, I", delay=20)
        expect(watcher.locator("#typing")).to_have_text("carol is typing…")

    typing(carol_page, ben)
    settle(ben)
    ben.screenshot(path=out / "room-desktop.png")

    # Dark: ben in a second, dark browser, while carol still types.
    ben_dark = people.log_in("ben", color_scheme="dark")
    open_room(ben_dark, base, "general")
    expect(
        ben_dark.get_by_role("navigation", name="Rooms").get_by_role("link", name="general")
    ).to_be_visible()
    composer(carol_page).fill("")
    typing(carol_page, ben_dark)
    settle(ben_dark)
    ben_dark.screenshot(path=out / "room-dark.png")

    # The phone.
    phone = people.log_in("ben", viewport=PHONE, is_mobile=True, has_touch=True)
    open_room(phone, base, "general")
    expect(article(phone, "dmitri", "watch the dashboards")).to_be_visible()
    phone.wait_for_timeout(300)
    phone.screenshot(path=out / "room-phone.png")
    phone.get_by_role("button", name="Rooms").click()
    expect(
        phone.get_by_role("navigation", name="Rooms").get_by_role(
            "link", name=re.compile("^deploys")
        )
    ).to_be_visible()
    phone.wait_for_timeout(300)
    phone.screenshot(path=out / "room-phone-rooms.png")

    # Search: aiko looks for "v2.4.1".
    search = aiko.get_by_role("searchbox", name="Search")
    search.fill("v2.4.1")
    search.press("Enter")
    results = aiko.get_by_role("region", name="Search results")
    expect(results.get_by_role("link", name=re.compile("to prod finished"))).to_be_visible()
    settle(aiko)
    aiko.screenshot(path=out / "room-search.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="where the PNGs go")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="kaiwa-screenshots-") as tmp,
        kaiwa_server(Path(tmp) / "data") as base,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        people = People(browser, base)
        try:
            conversation(base, people, args.out)
        finally:
            people.close()
            browser.close()
    for name in ("room-desktop", "room-dark", "room-phone", "room-phone-rooms", "room-search"):
        print(args.out / f"{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
