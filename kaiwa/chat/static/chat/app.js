// The room page: renders what client.js (the protocol, no DOM) emits, and
// turns what the person does into its calls. Sections: the message list,
// reactions, the composer, typing and presence, the sidebar, search.
import { RoomClient, browserEnv } from "./client.js";

const $ = (id) => document.getElementById(id);
const room = JSON.parse($("room-name").textContent);
const me = JSON.parse($("user-name").textContent);
const csrfToken = document.querySelector("[name=csrfmiddlewaretoken]").value;

// Articles kept in the DOM at most; beyond, the far end is dropped (and
// loaded again over REST when scrolled back to), so a room of any length
// scrolls like a short one.
const MAX_ARTICLES = 300;
const HISTORY_PAGE = 50; // messages per REST page (PROTOCOL.md section 5: at most 200)
const TRANSCRIPT_LINES = 500; // lines kept in #chat-log
const GROUP_MS = 5 * 60 * 1000; // one author's messages within this run together
const NEAR_BOTTOM_PX = 48;
const NEAR_TOP_PX = 200;
const TYPING_EXPIRY_MS = 6000; // PROTOCOL.md section 3
const IDLE_MS = 5 * 60 * 1000; // no key or pointer for this long: away
// The sidebar's unread counts, while the tab is visible (KAIWA_ROOMS_POLL_SECONDS).
const ROOMS_POLL_MS = Number($("sidebar").dataset.pollMs) || 30000;
// After a reconnect (a deploy reconnects every tab at once) the sidebar and
// the members are fetched again within this, at random, not all at once.
const REFRESH_SPREAD_MS = 20000;
const MEMBERS_POLL_MS = 60000;
const REACTIONS = [
  ["👍", "thumbs up"], ["❤️", "heart"], ["😂", "laughing"], ["🎉", "party"],
  ["😮", "surprised"], ["😢", "sad"], ["🙏", "thank you"], ["👀", "eyes"],
];
const CLOSED_TEXT = { 4401: "not logged in", 4403: "not allowed in this room", 4404: "no such room" };

const list = $("messages");
const historyTop = $("history-top");
const input = $("chat-message-input");
const client = new RoomClient(room, browserEnv());

// id -> {frame (the message's current state), reactions: Map(emoji -> Set of usernames), article}
const shown = new Map();
let detached = false; // the newest messages are not in the DOM (scrolled far back, or a search jump)
let olderDone = false; // the oldest message of the room is shown
let loadingOlder = false;
let pendingReload = null; // {latest}: a reset whose history is not loaded yet
let editing = null; // id of the message the composer edits

// --- REST ---------------------------------------------------------------------

async function api(path, options) {
  const init = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
  if (init.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(init.body);
  }
  if (init.method && init.method !== "GET") init.headers["X-CSRFToken"] = csrfToken;
  const response = await fetch(path, init);
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    // no body (204), or not JSON (a proxy's error page)
  }
  return { ok: response.ok, status: response.status, body: body };
}

function messagesPath(query) {
  return "/api/rooms/" + encodeURIComponent(room) + "/messages/?" + new URLSearchParams(query);
}

// --- the message list ---------------------------------------------------------

function articles() {
  return list.querySelectorAll("article[data-seq]");
}

function dayOf(iso) {
  const at = new Date(iso);
  return at.getFullYear() + "-" + at.getMonth() + "-" + at.getDate();
}

function el(tag, attributes, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
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
function fill(entry) {
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
  const entry = shown.get(article.dataset.id);
  const before = previous && previous.dataset.seq ? shown.get(previous.dataset.id) : null;
  const newDay = !before || dayOf(before.frame.created_at) !== dayOf(entry.frame.created_at);
  const sameRun = before && !newDay && before.frame.username === entry.frame.username &&
    new Date(entry.frame.created_at) - new Date(before.frame.created_at) < GROUP_MS;
  article.classList.toggle("first-of-day", newDay);
  article.classList.toggle("continued", Boolean(sameRun));
}

function atBottom() {
  return list.scrollHeight - list.scrollTop - list.clientHeight < NEAR_BOTTOM_PX;
}

// Insert or update the message `frame` (a message frame or REST object) in
// seq order; returns its entry.
function upsert(frame) {
  const existing = shown.get(frame.id);
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
  shown.set(frame.id, entry);
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

function drop(article) {
  shown.delete(article.dataset.id);
  const next = article.nextElementSibling;
  article.remove();
  regroup(next);
}

// A live message: shown at the bottom unless the newest ones are not shown.
function onLiveMessage(frame) {
  if (detached) { $("new-messages").hidden = false; return; }
  const follow = atBottom();
  upsert(frame);
  const all = articles();
  if (all.length > MAX_ARTICLES && follow) {
    drop(all[0]);
    olderDone = false;
    historyTop.hidden = true;
  }
  if (follow || frame.username === me) scrollToBottom();
  else $("new-messages").hidden = false;
  if (follow && !document.hidden) client.seen();
}

function scrollToBottom() {
  list.scrollTop = list.scrollHeight;
  $("new-messages").hidden = true;
}

async function loadOlder() {
  if (loadingOlder || olderDone) return;
  const first = articles()[0];
  if (!first) return;
  loadingOlder = true;
  const answer = await api(messagesPath({ before: first.dataset.seq, limit: HISTORY_PAGE }));
  loadingOlder = false;
  if (!answer.ok || !answer.body) return;
  // The view stays put: the text that was first on screen stays where it
  // was (its article may lose its day header to the older ones).
  const anchor = first.querySelector(".body");
  const top = anchor.getBoundingClientRect().top;
  for (const message of answer.body.messages) upsert(message);
  list.scrollTop += anchor.getBoundingClientRect().top - top;
  const got = answer.body.messages;
  if (got.length < HISTORY_PAGE || got[0].seq === 1) { // a room's first event is its first message
    olderDone = true;
    historyTop.textContent = "This is the beginning of " + room + ".";
    historyTop.hidden = false;
  }
  let all = articles();
  while (all.length > MAX_ARTICLES) {
    drop(all[all.length - 1]);
    detached = true;
    all = articles();
  }
}

// The newest page over REST, replacing what is shown (after a reset, or to
// leave the past the person scrolled or jumped to).
async function loadLatest(before) {
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
  olderDone = got.length < HISTORY_PAGE || (got.length > 0 && got[0].seq === 1);
  historyTop.hidden = !olderDone;
  historyTop.textContent = "This is the beginning of " + room + ".";
  return true;
}

// More was missed than the server replays: the page up to `latest` comes
// over REST; what is shown stays until it arrives, and an alert offers to
// try again when it does not.
async function reloadHistory() {
  const reload = pendingReload;
  $("history-error").hidden = true;
  let ok = false;
  try {
    ok = await loadLatest(reload.latest + 1);
  } catch (error) {
    ok = false; // offline
  }
  if (reload !== pendingReload) return; // a later reset replaced this one
  if (!ok) { $("history-error").hidden = false; return; }
  pendingReload = null;
  scrollToBottom();
}

// #chat-log: "username: message" per line, as the Channels tutorial's page.
let transcriptQueued = false;
function transcriptLater() {
  if (transcriptQueued) return;
  transcriptQueued = true;
  queueMicrotask(() => {
    transcriptQueued = false;
    const lines = [];
    for (const article of articles()) {
      const frame = shown.get(article.dataset.id).frame;
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

// --- reactions -----------------------------------------------------------------

function reactionMap(reactions) {
  const map = new Map();
  for (const r of reactions || []) map.set(r.emoji, new Set(r.usernames));
  return map;
}

function fillReactions(entry) {
  const box = entry.article.querySelector(".reactions");
  box.replaceChildren();
  for (const [emoji, users] of entry.reactions) {
    if (!users.size) continue;
    const mine = users.has(me);
    const names = Array.from(users).sort().join(", ");
    const chip = el("button", {
      type: "button", class: "reaction", "aria-pressed": String(mine), title: names,
      "aria-label": emoji + " " + users.size + ": " + names,
    });
    chip.append(emoji + " ", el("span", { class: "count" }, String(users.size)));
    chip.onclick = () => client.react(entry.frame.id, emoji, !mine);
    box.append(chip);
  }
}

function onReaction(frame) {
  const entry = shown.get(frame.id);
  if (!entry) return;
  if (!entry.reactions.has(frame.emoji)) entry.reactions.set(frame.emoji, new Set());
  const users = entry.reactions.get(frame.emoji);
  if (frame.on) users.add(frame.username);
  else users.delete(frame.username);
  if (!users.size) entry.reactions.delete(frame.emoji);
  fillReactions(entry);
}

let picker = null;
function closePicker() {
  if (picker) { picker.remove(); picker = null; }
}

function openPicker(entry, opener) {
  closePicker();
  picker = el("div", { class: "picker", role: "group", "aria-label": "Pick a reaction" });
  for (const [emoji, name] of REACTIONS) {
    const choice = el("button", { type: "button", "aria-label": name, title: name }, emoji);
    choice.onclick = () => {
      const users = entry.reactions.get(emoji);
      client.react(entry.frame.id, emoji, !(users && users.has(me)));
      closePicker();
      opener.focus();
    };
    picker.append(choice);
  }
  picker.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { closePicker(); opener.focus(); }
  });
  entry.article.querySelector(".actions").after(picker);
  picker.querySelector("button").focus();
}

// --- the composer --------------------------------------------------------------

let draftBeforeEdit = "";
function startEdit(id) {
  const entry = shown.get(id);
  if (!entry) return;
  if (editing === null) draftBeforeEdit = input.value;
  editing = id;
  input.value = entry.frame.message;
  $("composer-mode").hidden = false;
  $("chat-message-submit").textContent = "Save";
  input.focus();
}

function stopEdit() {
  editing = null;
  input.value = draftBeforeEdit; // what was being written before the edit
  draftBeforeEdit = "";
  autosize();
  $("composer-mode").hidden = true;
  $("chat-message-submit").textContent = "Send";
}

function lastOwnMessage() {
  const all = articles();
  for (let i = all.length - 1; i >= 0; i--) {
    const entry = shown.get(all[i].dataset.id);
    if (entry.frame.username === me) return entry.frame.id;
  }
  return null;
}

// The composer's draft survives a reload of the tab (sessionStorage, per room).
const DRAFT_KEY = "kaiwa-draft:" + room;
function saveDraft() {
  if (editing !== null) return; // the composer holds a message being edited
  try {
    if (input.value) sessionStorage.setItem(DRAFT_KEY, input.value);
    else sessionStorage.removeItem(DRAFT_KEY);
  } catch (error) {
    // storage full or disabled: the draft is only on screen
  }
}
function restoreDraft() {
  try {
    const draft = sessionStorage.getItem(DRAFT_KEY);
    if (draft && !input.value) { input.value = draft; autosize(); }
  } catch (error) {
    // storage disabled
  }
}

function submit() {
  const text = input.value;
  if (!text.trim()) return;
  if (editing !== null) {
    client.edit(editing, text);
    stopEdit();
    return;
  }
  client.send(text);
  input.value = "";
  saveDraft();
  autosize();
  if (detached) toLatest(); // your message shows where it goes: at the bottom
}

function autosize() {
  input.style.height = "auto";
  input.style.height = Math.min(input.scrollHeight, 200) + "px";
}

$("composer").addEventListener("submit", (event) => { event.preventDefault(); submit(); });
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submit();
  } else if (event.key === "Escape" && editing !== null) {
    event.preventDefault();
    stopEdit();
  } else if (event.key === "ArrowUp" && input.value === "" && editing === null) {
    const id = lastOwnMessage();
    if (id !== null) { event.preventDefault(); startEdit(id); }
  }
});
input.addEventListener("input", () => {
  autosize();
  saveDraft();
  if (editing === null) client.typing(input.value !== "");
});

// Own messages waiting for their acknowledgement (the broadcast), or failed.
function pendingItem(clientId) {
  return list.querySelector('.pending[data-client-id="' + CSS.escape(clientId) + '"]');
}

client.on("pending", ({ clientId, text }) => {
  let item = pendingItem(clientId);
  if (!item) {
    item = el("article", { class: "pending msg", "data-client-id": clientId, "aria-label": me + ", sending: " + text });
    item.append(el("p", { class: "head" }, me), el("div", { class: "body" }, text), el("p", { class: "state" }));
    list.append(item);
  }
  item.classList.remove("failed");
  item.querySelector(".state").replaceChildren("sending…");
  scrollToBottom();
});
client.on("acked", ({ clientId }) => {
  const item = pendingItem(clientId);
  if (item) item.remove();
});
client.on("failed", ({ clientId, detail }) => {
  const item = pendingItem(clientId);
  if (!item) return;
  item.classList.add("failed");
  const retry = el("button", { type: "button" }, "Retry");
  retry.onclick = () => client.retry(clientId);
  const discard = el("button", { type: "button" }, "Discard");
  discard.onclick = () => { client.discard(clientId); item.remove(); };
  item.querySelector(".state").replaceChildren("Not sent: " + detail + " ", retry, " ", discard);
});

// --- typing and presence -------------------------------------------------------

const typists = new Map(); // username -> expiry timer
function showTyping() {
  const names = Array.from(typists.keys()).sort();
  let text = "";
  if (names.length === 1) text = names[0] + " is typing…";
  else if (names.length === 2) text = names[0] + " and " + names[1] + " are typing…";
  else if (names.length > 2) text = "Several people are typing…";
  if ($("typing").textContent !== text) $("typing").textContent = text;
}

function typistGone(username) {
  if (!typists.has(username)) return;
  clearTimeout(typists.get(username));
  typists.delete(username);
  showTyping();
}

client.on("typing", (frame) => {
  if (frame.username === me) return;
  typistGone(frame.username);
  if (frame.state !== "stop") {
    typists.set(frame.username, setTimeout(() => typistGone(frame.username), TYPING_EXPIRY_MS));
  }
  showTyping();
});

const members = new Map(); // username -> "online" | "away"
function showMembers() {
  const items = Array.from(members).sort((a, b) =>
    a[1] === b[1] ? a[0].localeCompare(b[0]) : a[1] === "online" ? -1 : 1);
  $("member-list").replaceChildren(...items.map(([username, status]) => {
    const item = el("li", { class: status, "data-username": username });
    item.append(el("span", { class: "dot", "aria-hidden": "true" }), username + " ",
      el("span", { class: "status" }, status));
    return item;
  }));
}

async function loadMembers() {
  const answer = await api("/api/rooms/" + encodeURIComponent(room) + "/presence");
  if (!answer.ok || !answer.body) return;
  members.clear();
  for (const user of answer.body.users) members.set(user.username, user.status);
  if (client.state === "live") members.set(me, client.status); // ours may not be stored yet
  showMembers();
}

client.on("presence", (frame) => {
  if (frame.status === "offline") members.delete(frame.username);
  else members.set(frame.username, frame.status);
  showMembers();
});

// Away when the tab is hidden or nothing happened for IDLE_MS.
let idleTimer = null;
function active() {
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => client.presence("away"), IDLE_MS);
  if (!document.hidden) client.presence("online");
}
for (const type of ["keydown", "pointerdown", "pointermove", "wheel", "focus"]) {
  window.addEventListener(type, active, { passive: true });
}
document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    client.presence("away");
  } else {
    active();
    if (atBottom()) client.seen(true);
    loadRooms();
  }
});

// --- the sidebar ---------------------------------------------------------------

async function loadRooms() {
  const answer = await api("/api/rooms/");
  if (!answer.ok || !answer.body) return;
  $("room-nav").replaceChildren(...answer.body.rooms.map((r) => {
    const link = el("a", { href: "/chat/" + encodeURIComponent(r.slug) + "/" });
    const current = r.slug === room;
    if (current) link.setAttribute("aria-current", "page");
    link.append(el("span", { class: "name" }, r.title || r.slug));
    const unread = current ? 0 : r.unread;
    if (unread) {
      const badge = el("span", { class: "badge" });
      badge.append(el("span", { "aria-hidden": "true" }, String(unread)),
        el("span", { class: "visually-hidden" }, " " + unread + " unread"));
      link.append(" ", badge);
    }
    if (!current && r.mentions) {
      link.append(" ", el("span", { class: "mention-mark", title: "mentions you", "aria-hidden": "true" }, "@"),
        el("span", { class: "visually-hidden" }, " mentions you"));
    }
    const item = el("li", { class: r.slug.startsWith("dm-") ? "dm" : "room" });
    item.append(link);
    return item;
  }));
}

const ROOM_NAME = /^[A-Za-z0-9_-]{1,64}$/;
$("room-enter").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("room-enter-input").value.trim();
  if (!ROOM_NAME.test(name)) { $("room-enter-error").hidden = false; return; }
  window.location.pathname = "/chat/" + name + "/";
});
$("dm-open").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("dm-open-error").textContent = "";
  let answer;
  try {
    answer = await api("/api/dms/", { method: "POST", body: { username: $("dm-open-input").value.trim() } });
  } catch (error) {
    $("dm-open-error").textContent = "The server could not be reached.";
    return;
  }
  if (!answer.ok) {
    $("dm-open-error").textContent = (answer.body && answer.body.detail) || "The conversation could not be opened.";
    return;
  }
  window.location.pathname = "/chat/" + answer.body.slug + "/";
});

// On a phone the rooms and the members are drawers over the messages: one
// open at a time, closed by their "Hide" button, Escape or a tap outside.
const DRAWERS = [["sidebar-toggle", "show-sidebar", "sidebar"], ["members-toggle", "show-members", "members"]];
function drawerOpen() {
  return DRAWERS.find(([, panel]) => document.body.classList.contains(panel)) || null;
}
function setDrawer(which, open) {
  for (const [button, panel] of DRAWERS) {
    const on = open && button === which;
    document.body.classList.toggle(panel, on);
    $(button).setAttribute("aria-expanded", String(on));
  }
}
function closeDrawer() {
  const open = drawerOpen();
  if (!open) return;
  setDrawer(null, false);
  $(open[0]).focus();
}
for (const [button, , drawer] of DRAWERS) {
  $(button).addEventListener("click", () => {
    const open = drawerOpen();
    setDrawer(button, !(open && open[0] === button));
  });
  $(drawer).querySelector(".drawer-close").addEventListener("click", closeDrawer);
}
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && drawerOpen() && !$("delete-dialog").open) closeDrawer();
});
document.addEventListener("pointerdown", (event) => {
  const open = drawerOpen();
  if (open && !event.target.closest("#" + open[2]) && !event.target.closest(".toggle")) setDrawer(null, false);
});

// --- search --------------------------------------------------------------------

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
function closeSearch() {
  $("search-results").hidden = true;
  $("search-input").focus();
}
$("search-close").addEventListener("click", closeSearch);
$("search-results").addEventListener("keydown", (event) => {
  if (event.key === "Escape") closeSearch();
});
$("search-input").addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !$("search-results").hidden) { event.preventDefault(); closeSearch(); }
});

// When the log changes size (search results opened, the composer grew, a
// phone's keyboard came up), the newest messages stay in view if they were.
let stuckToBottom = true;
new ResizeObserver(() => {
  if (stuckToBottom && !detached) list.scrollTop = list.scrollHeight;
}).observe(list);

// A search result opened: the page around message seq `at`, then the rest
// of the room on demand (scrolling up, or "New messages" to the latest).
async function jumpTo(at) {
  detached = true;
  await loadLatest(at + Math.floor(HISTORY_PAGE / 2));
  $("new-messages").hidden = false;
  $("new-messages").textContent = "Jump to the latest messages";
  const target = list.querySelector('article[data-seq="' + at + '"]');
  if (target) {
    target.classList.add("highlight");
    target.scrollIntoView({ block: "center" });
  }
}

// --- wiring --------------------------------------------------------------------

client.on("state", ({ state, detail, delay }) => {
  const label = $("connection-state");
  label.dataset.state = state;
  if (state === "live") label.textContent = "live as " + detail;
  else if (state === "reconnecting" && delay !== undefined) label.textContent = "reconnecting in " + Math.round(delay / 100) / 10 + " s";
  else if (state === "closed") label.textContent = "closed: " + (CLOSED_TEXT[delay] || detail);
  else label.textContent = state;
  if (state === "closed" && delay === 4401) {
    window.location.href = "/accounts/login/?next=" + encodeURIComponent(location.pathname);
  }
});
let readies = 0;
client.on("ready", () => {
  if (!detached && !articles().length && !loadingOlder) {
    historyTop.textContent = "No messages in " + room + " yet.";
    historyTop.dataset.empty = "1";
    historyTop.hidden = false;
  }
  if (!detached && atBottom()) scrollToBottom();
  if (!document.hidden) client.seen();
  readies += 1;
  if (readies === 1) {
    loadMembers();
    loadRooms();
  } else {
    setTimeout(() => { loadMembers(); loadRooms(); }, Math.random() * REFRESH_SPREAD_MS);
  }
});
client.on("message", (frame) => {
  typistGone(frame.username);
  if (frame.deleted && !shown.has(frame.id)) return; // a deletion replayed: nothing to show
  onLiveMessage(frame);
});
client.on("edit", (frame) => {
  const entry = shown.get(frame.id);
  if (!entry) return;
  entry.frame = Object.assign({}, entry.frame, {
    message: frame.message, html: frame.html, edited_at: frame.edited_at,
  });
  fill(entry);
  transcriptLater();
});
client.on("delete", (frame) => {
  const entry = shown.get(frame.id);
  if (!entry) return;
  if (editing === frame.id) stopEdit();
  drop(entry.article);
  transcriptLater();
});
client.on("reaction", onReaction);
client.on("reset", (frame) => {
  pendingReload = { latest: frame.seq };
  reloadHistory();
});
client.on("read", () => loadRooms());
client.on("error", (frame) => {
  if (frame.client_id) return; // shown on its pending message
  const note = el("p", { class: "error notice", role: "status" }, frame.detail);
  list.append(note);
  setTimeout(() => note.remove(), 8000);
});

$("history-retry").addEventListener("click", () => { if (pendingReload) reloadHistory(); });
$("new-messages").addEventListener("click", () => toLatest());

// Back to the newest messages (from far back in the history or a search jump).
async function toLatest() {
  if (detached) {
    detached = false;
    $("new-messages").textContent = "New messages";
    // The address of a search jump (?at=…#m-…) would bring the past back on reload.
    if (location.search || location.hash) history.replaceState(null, "", location.pathname);
    await loadLatest();
  }
  scrollToBottom();
  client.seen();
}
list.addEventListener("scroll", () => {
  stuckToBottom = atBottom();
  if (list.scrollTop < NEAR_TOP_PX) loadOlder();
  if (stuckToBottom) {
    if (detached) return;
    $("new-messages").hidden = true;
    if (!document.hidden) client.seen();
  }
}, { passive: true });
document.addEventListener("click", (event) => {
  const tapped = event.target.closest("article.msg[data-id]");
  for (const other of list.querySelectorAll("article.selected")) {
    if (other !== tapped) other.classList.remove("selected");
  }
  if (tapped && !event.target.closest("button, a")) tapped.classList.add("selected");
  if (picker && !picker.contains(event.target) && !event.target.closest(".actions")) closePicker();
});

const at = Number(new URLSearchParams(location.search).get("at"));
if (Number.isInteger(at) && at > 0) jumpTo(at);
setInterval(() => { if (!document.hidden) loadRooms(); }, ROOMS_POLL_MS);
setInterval(() => { if (!document.hidden) loadMembers(); }, MEMBERS_POLL_MS);
active();
restoreDraft();
input.focus();
client.start();
