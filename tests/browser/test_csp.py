"""The Content-Security-Policy in Chromium: every page Kaiwa serves sends one,
and works under it. A violation would break the page (a blocked script, a
refused WebSocket); the test also listens for Chromium's own reports, the
``securitypolicyviolation`` events and the console's "Content Security
Policy" errors, so that nothing is blocked quietly."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    expect,
    sync_playwright,
)

from tests.browser.csp import Violations
from tests.browser.test_chat_pages import CHROMIUM_ARGS, WAIT_MS, log_in, wait_live
from tests.kaiwa_process import KaiwaServer, manage

pytestmark = pytest.mark.browser


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
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1100, "height": 750})
    context.set_default_timeout(WAIT_MS)
    yield context
    context.close()


def visit(page: Page, server: KaiwaServer, path: str) -> None:
    """Load ``path``; it must carry the policy."""
    answer = page.goto(server.http + path)
    assert answer is not None
    assert answer.ok, (path, answer.status)
    assert "script-src 'self'" in answer.headers.get("content-security-policy", ""), path


def test_the_sign_in_pages_keep_the_policy(kaiwa_server, context):
    violations = Violations(context)
    page = context.new_page()
    visit(page, kaiwa_server, "/accounts/signup/")
    expect(page.get_by_role("button", name=re.compile("sign up", re.I))).to_be_visible()
    visit(page, kaiwa_server, "/accounts/login/")
    expect(page.get_by_role("button", name=re.compile("log in", re.I))).to_be_visible()
    assert violations.of(page) == []


def test_the_rooms_list_and_the_room_page_keep_the_policy(kaiwa_server, context):
    violations = Violations(context)
    page = log_in(context, kaiwa_server, "alice")
    visit(page, kaiwa_server, "/chat/")
    expect(page.get_by_role("heading", name="Rooms", exact=True)).to_be_visible()
    visit(page, kaiwa_server, "/chat/csp-room/")
    wait_live(page)  # app.js ran and its WebSocket opened
    composer = page.get_by_role("textbox", name="Message", exact=True)
    composer.fill("hello *under* the policy")
    composer.press("Enter")
    log = page.get_by_role("log", name="Messages")
    expect(log.get_by_role("article", name=re.compile(r"^alice\b.*hello"))).to_be_visible()
    visit(page, kaiwa_server, "/accounts/tokens/")
    assert violations.of(page) == []


def test_the_api_docs_keep_the_policy(kaiwa_server, context):
    violations = Violations(context)
    page = context.new_page()
    visit(page, kaiwa_server, "/api/docs")
    # Swagger UI's own script rendered the schema: its title and an operation.
    expect(page.get_by_role("heading", name=re.compile("^Kaiwa"))).to_be_visible()
    expect(page.get_by_text("/api/auth/token", exact=True).first).to_be_visible()
    assert violations.of(page) == []


def test_the_admin_keeps_the_policy(kaiwa_server, sqlite_env, context):
    make_staff = (
        "from django.contrib.auth.models import User\n"
        "User.objects.filter(username='carol').update(is_staff=True, is_superuser=True)\n"
    )
    manage(sqlite_env, "shell", "-c", make_staff)
    violations = Violations(context)
    page = log_in(context, kaiwa_server, "carol")
    for path in ("/admin/", "/admin/auth/user/", "/admin/chat/room/", "/admin/auth/user/add/"):
        visit(page, kaiwa_server, path)
    expect(page.get_by_role("button", name=re.compile("^Save$"))).to_be_visible()
    assert violations.of(page) == []
