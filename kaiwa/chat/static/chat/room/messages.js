// The room page's message list (#messages): the messages in seq order,
// grouped by author and day, at most MAX_ARTICLES of them in the DOM, the
// older and the newest pages over REST, and the #chat-log transcript.
import { $, el } from "./dom.js";
import { api, messagesPath } from "./api.js";
import { client, historyTop, list, me, room, state } from "./state.js";
import { fillReactions, openPicker, reactionMap } from "./reactions.js";
import { startEdit } from "./composer.js";

// Articles kept in the DOM at most; beyond, the far end is dropped (and
// loaded again over REST when scrolled back to), so a room of any length
// scrolls like a short one.
const MAX_ARTICLES = 300;
export const HISTORY_PAGE = 50; // messages per REST page (PROTOCOL.md section 5: at most 200)
const TRANSCRIPT_LINES = 500; // lines kept in #chat-log
const GROUP_MS = 5 * 60 * 1000; // one author's messages within this run together
const NEAR_BOTTOM_PX = 48;
const NEAR_TOP_PX = 200;

export function articles() {
  return list.querySelectorAll("article[data-seq]");
}

function dayOf(iso) {
  const at = new Date(iso);
  return at.getFullYear() + "-" + at.getMonth() + "-" + at.getDate();
}

function render(entry) {
  const frame = entry.frame;
  const at = new Date(frame.created_at);
  const article = el("article", {
    "data-seq": frame.seq, "data-id": frame.id, "data-author": frame.username,
    "aria-labelledby": "h-" + frame.id + " b-" + frame.id, id: "m-" + frame.id,
  });
  article.className = "msg";
  const day = el("p", { class: "day" },
    at.toLocaleDateString([], { weekday: "long", month: "long", day: "numeric", year: "numeric" }));
  const head = el("p", { class: "head", id: "h-" + frame.id });
  head.append(el("span", { class: "author" }, frame.username), " ",
    el("time", { datetime: frame.created_at, title: at.toLocaleString() },
      at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
  const body = el("div", { class: "body", id: "b-" + frame.id });
  const reactions = el("div", { class: "reactions" });
  const actions = el("div", { class: "actions" });
  article.append(day, head, body, reactions, actions);
  entry.article = article;
  fill(entry);
  return article;
}

// (Re)draw what changes: text, edited mark, deletion, reactions, actions.
export function fill(entry) {
  const frame = entry.frame;
  const article = entry.article;
  const body = article.querySelector(".body");
  // The server's html: rendered from a Markdown subset and sanitized
  // (PROTOCOL.md section 3); the raw text never goes in as HTML. (A deleted
  // message is never shown: upsert and the delete frame drop it.)
  if (typeof frame.html === "string") body.innerHTML = frame.html;
  else body.textContent = frame.message;
  // The time on hover: a message that continues a run has no header.
  body.title = new Date(frame.created_at).toLocaleString();
  if (frame.edited_at) {
    // After the text (in its last paragraph), as the header of a
    // continued message is not shown.
    const mark = el("button", { type: "button", class: "edited link", "aria-label": "edited: show the history" }, "(edited)");
    mark.onclick = () => showHistory(frame.id);
    const last = body.lastElementChild;
    (last && last.tagName === "P" ? last : body).append(" ", mark);
  }
  const mentioned = body.querySelector('.mention[data-username="' + CSS.escape(me) + '"]');
  article.classList.toggle("mentions-me", Boolean(mentioned));
  for (const mention of body.querySelectorAll(".mention")) {
    mention.classList.toggle("me", mention.dataset.username === me);
  }
  fillReactions(entry);
  fillActions(entry);
}

function fillActions(entry) {
  const actions = entry.article.querySelector(".actions");
  actions.replaceChildren();
  const react = el("button", { type: "button", "aria-haspopup": "true", "aria-label": "Add reaction" }, "☺+");
  react.onclick = () => openPicker(entry, react);
  actions.append(react);
  if (entry.frame.username === me) {
    const edit = el("button", { type: "button" }, "Edit");
    edit.onclick = () => startEdit(entry.frame.id);
    const remove = el("button", { type: "button" }, "Delete");
    remove.onclick = () => confirmDelete(entry.frame.id, remove);
    actions.append(edit, remove);
  }
}

// Deleting asks first, in a dialog whose buttons are "Delete" and "Cancel".
function confirmDelete(id, opener) {
  const dialog = $("delete-dialog");
  dialog.returnValue = "";
  dialog.onclose = () => {
    if (dialog.returnValue === "delete") client.remove(id);
    else if (opener.isConnected) opener.focus();
  };
  dialog.showModal();
}

// Group by author and day: a header only where the author or the day
// changes, or GROUP_MS passed (the header stays in the accessible text).
function regroup(article) {
  if (!article) return;
  const previous = article.previousElementSibling;
  const entry = state.shown.get(article.dataset.id);
  const before = previous && previous.dataset.seq ? state.shown.get(previous.dataset.id) : null;
  const newDay = !before || dayOf(before.frame.created_at) !== dayOf(entry.frame.created_at);
  const sameRun = before && !newDay && before.frame.username === entry.frame.username &&
    new Date(entry.frame.created_at) - new Date(before.frame.created_at) < GROUP_MS;
  article.classList.toggle("first-of-day", newDay);
  article.classList.toggle("continued", Boolean(sameRun));
}

export function atBottom() {
  return list.scrollHeight - list.scrollTop - list.clientHeight < NEAR_BOTTOM_PX;
}

// Insert or update the message `frame` (a message frame or REST object) in
// seq order; returns its entry.
export function upsert(frame) {
  const existing = state.shown.get(frame.id);
  if (frame.deleted) { // gone, as in the backlog of a join (PROTOCOL.md section 1)
    if (existing) drop(existing.article);
    return null;
  }
  if (existing) {
    existing.frame = frame;
    existing.reactions = reactionMap(frame.reactions);
    fill(existing);
    return existing;
  }
  const entry = { frame: frame, reactions: reactionMap(frame.reactions), article: null };
  state.shown.set(frame.id, entry);
  const article = render(entry);
  let next = null;
  for (const other of articles()) {
    if (Number(other.dataset.seq) > frame.seq) { next = other; break; }
  }
  list.insertBefore(article, next || list.querySelector(".pending") || null);
  if (historyTop.dataset.empty) { // the room's first message
    delete historyTop.dataset.empty;
    historyTop.textContent = "This is the beginning of " + room + ".";
  }
  regroup(article);
  regroup(article.nextElementSibling);
  transcriptLater();
  return entry;
}

export function drop(article) {
  state.shown.delete(article.dataset.id);
  const next = article.nextElementSibling;
  article.remove();
  regroup(next);
}

// A live message: shown at the bottom unless the newest ones are not shown.
export function onLiveMessage(frame) {
  if (state.detached) { $("new-messages").hidden = false; return; }
  const follow = atBottom();
  upsert(frame);
  const all = articles();
  if (all.length > MAX_ARTICLES && follow) {
    drop(all[0]);
    state.olderDone = false;
    historyTop.hidden = true;
  }
  if (follow || frame.username === me) scrollToBottom();
  else $("new-messages").hidden = false;
  if (follow && !document.hidden) client.seen();
}

export function scrollToBottom() {
  list.scrollTop = list.scrollHeight;
  $("new-messages").hidden = true;
}

async function loadOlder() {
  if (state.loadingOlder || state.olderDone) return;
  const first = articles()[0];
  if (!first) return;
  state.loadingOlder = true;
  const answer = await api(messagesPath({ before: first.dataset.seq, limit: HISTORY_PAGE }));
  state.loadingOlder = false;
  if (!answer.ok || !answer.body) return;
  // The view stays put: the text that was first on screen stays where it
  // was (its article may lose its day header to the older ones).
  const anchor = first.querySelector(".body");
  const top = anchor.getBoundingClientRect().top;
  for (const message of answer.body.messages) upsert(message);
  list.scrollTop += anchor.getBoundingClientRect().top - top;
  const got = answer.body.messages;
  if (got.length < HISTORY_PAGE || got[0].seq === 1) { // a room's first event is its first message
    state.olderDone = true;
    historyTop.textContent = "This is the beginning of " + room + ".";
    historyTop.hidden = false;
  }
  let all = articles();
  while (all.length > MAX_ARTICLES) {
    drop(all[all.length - 1]);
    state.detached = true;
    all = articles();
  }
}

// The newest page over REST, replacing what is shown (after a reset, or to
// leave the past the person scrolled or jumped to).
export async function loadLatest(before) {
  const query = { limit: HISTORY_PAGE };
  if (before !== undefined) query.before = before;
  const answer = await api(messagesPath(query));
  if (!answer.ok || !answer.body) return false;
  const cutoff = before === undefined ? Infinity : before;
  for (const article of articles()) {
    if (Number(article.dataset.seq) < cutoff) drop(article);
  }
  for (const message of answer.body.messages) upsert(message);
  const got = answer.body.messages;
  state.olderDone = got.length < HISTORY_PAGE || (got.length > 0 && got[0].seq === 1);
  historyTop.hidden = !state.olderDone;
  historyTop.textContent = "This is the beginning of " + room + ".";
  return true;
}

// More was missed than the server replays: the page up to `latest` comes
// over REST; what is shown stays until it arrives, and an alert offers to
// try again when it does not.
export async function reloadHistory() {
  const reload = state.pendingReload;
  $("history-error").hidden = true;
  let ok = false;
  try {
    ok = await loadLatest(reload.latest + 1);
  } catch (error) {
    ok = false; // offline
  }
  if (reload !== state.pendingReload) return; // a later reset replaced this one
  if (!ok) { $("history-error").hidden = false; return; }
  state.pendingReload = null;
  scrollToBottom();
}

// #chat-log: "username: message" per line, as the Channels tutorial's page.
export function transcriptLater() {
  if (state.transcriptQueued) return;
  state.transcriptQueued = true;
  queueMicrotask(() => {
    state.transcriptQueued = false;
    const lines = [];
    for (const article of articles()) {
      const frame = state.shown.get(article.dataset.id).frame;
      lines.push(frame.username + ": " + frame.message + "\n");
    }
    $("chat-log").value = lines.slice(-TRANSCRIPT_LINES).join("");
  });
}

async function showHistory(id) {
  const answer = await api("/api/messages/" + encodeURIComponent(id) + "/history");
  const items = $("history-list");
  items.replaceChildren();
  if (!answer.ok || !answer.body) {
    items.append(el("li", {}, "The history could not be loaded."));
  } else {
    for (const version of answer.body.versions) {
      const item = el("li");
      const when = version.edited_at ? "edited " + new Date(version.edited_at).toLocaleString() : "original";
      const text = el("div", { class: "body" });
      text.innerHTML = version.html; // sanitized by the server
      item.append(el("p", { class: "head" }, when), text);
      items.append(item);
    }
  }
  $("history-dialog").showModal();
}

// Back to the newest messages (from far back in the history or a search jump).
export async function toLatest() {
  if (state.detached) {
    state.detached = false;
    $("new-messages").textContent = "New messages";
    // The address of a search jump (?at=…#m-…) would bring the past back on reload.
    if (location.search || location.hash) history.replaceState(null, "", location.pathname);
    await loadLatest();
  }
  scrollToBottom();
  client.seen();
}

// The list's own listeners (app.js calls this once).
export function installMessageList() {
  // When the log changes size (search results opened, the composer grew, a
  // phone's keyboard came up), the newest messages stay in view if they were.
  new ResizeObserver(() => {
    if (state.stuckToBottom && !state.detached) list.scrollTop = list.scrollHeight;
  }).observe(list);
  list.addEventListener("scroll", () => {
    state.stuckToBottom = atBottom();
    // Not before the first ready: the backlog renders over several frames
    // on a slow machine, and a scroll event of the moment the list barely
    // overflowed would load a page of older messages nobody scrolled to.
    if (list.scrollTop < NEAR_TOP_PX && state.readies > 0) loadOlder();
    if (state.stuckToBottom) {
      if (state.detached) return;
      $("new-messages").hidden = true;
      if (!document.hidden) client.seen();
    }
  }, { passive: true });
}
