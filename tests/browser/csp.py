"""Content-Security-Policy violations as Chromium reports them, for every
browser test: each context the browser tests open is watched, and a test
whose pages reported one fails at teardown (``assert_none``)."""

from __future__ import annotations

from playwright.sync_api import BrowserContext, ConsoleMessage, Page

# Collects each violation the page reports, from the first script on.
LISTEN_FOR_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI} (${e.sourceFile}:${e.lineNumber})`);
});
"""


class Violations:
    """The CSP violations of one browser context's pages: console errors and events."""

    def __init__(self, context: BrowserContext) -> None:
        self.console: list[str] = []
        context.add_init_script(LISTEN_FOR_VIOLATIONS)
        context.on("page", self._watch)

    def _watch(self, page: Page) -> None:
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.console.append(message.text)

    def of(self, page: Page) -> list[str]:
        """Every violation reported so far: the console's, then ``page``'s events."""
        return [*self.console, *page.evaluate("window.__cspViolations || []")]

    def assert_none(self) -> None:
        """Fail when any page of the context logged a CSP violation."""
        assert self.console == [], f"Content-Security-Policy violations: {self.console}"
