// Search: the results of #search over REST (#search-results), and the page
// around a result opened from them (?at=<seq>#m-<id>).
import { $, el } from "./dom.js";
import { api } from "./api.js";
import { list, state } from "./state.js";
import { HISTORY_PAGE, loadLatest } from "./messages.js";

function closeSearch() {
  $("search-results").hidden = true;
  $("search-input").focus();
}

// A search result opened: the page around message seq `at`, then the rest
// of the room on demand (scrolling up, or "New messages" to the latest).
export async function jumpTo(at) {
  state.detached = true;
  await loadLatest(at + Math.floor(HISTORY_PAGE / 2));
  $("new-messages").hidden = false;
  $("new-messages").textContent = "Jump to the latest messages";
  const target = list.querySelector('article[data-seq="' + at + '"]');
  if (target) {
    target.classList.add("highlight");
    target.scrollIntoView({ block: "center" });
  }
}

// The search form and its results' listeners (app.js calls this once).
export function installSearch() {
  $("search").addEventListener("submit", async (event) => {
    event.preventDefault();
    const words = $("search-input").value.trim();
    if (!words) return;
    const answer = await api("/api/search/?" + new URLSearchParams({ q: words, limit: 20 }));
    const results = $("search-list");
    results.replaceChildren();
    if (!answer.ok || !answer.body) {
      results.append(el("li", {}, (answer.body && answer.body.detail) || "The search failed."));
    } else if (!answer.body.messages.length) {
      results.append(el("li", {}, "No message matches."));
    }
    for (const m of (answer.body && answer.body.messages) || []) {
      const link = el("a", { href: "/chat/" + encodeURIComponent(m.room) + "/?at=" + m.seq + "#m-" + m.id });
      link.append(el("span", { class: "where" }, m.room + " · " + m.username + " · " +
        new Date(m.created_at).toLocaleString([], { dateStyle: "medium", timeStyle: "short" })));
      const text = el("span", { class: "body" });
      text.innerHTML = m.html; // sanitized by the server
      link.append(text);
      const item = el("li");
      item.append(link);
      results.append(item);
    }
    $("search-results").hidden = false;
  });
  $("search-close").addEventListener("click", closeSearch);
  $("search-results").addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeSearch();
  });
  $("search-input").addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("search-results").hidden) { event.preventDefault(); closeSearch(); }
  });
}
