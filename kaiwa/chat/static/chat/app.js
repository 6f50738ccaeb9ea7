// The room page's entry (room.html loads it as a module): renders what
// client.js (the protocol, no DOM) emits, and turns what the person does
// into its calls. Its sections are modules of room/: the message list
// (messages.js), reactions, the composer, typing and presence (presence.js),
// the sidebar, search; the REST helper (api.js), the page's context and
// mutable state (state.js). This file wires them: the connection's label,
// the room's events, and the start.
import { GIVE_UP } from "./protocol.js";
import { $, el } from "./room/dom.js";
import { client, historyTop, input, list, room, state } from "./room/state.js";
import {
  articles, atBottom, drop, fill, installMessageList, onLiveMessage, reloadHistory,
  scrollToBottom, toLatest, transcriptLater,
} from "./room/messages.js";
import { closePicker, onReaction } from "./room/reactions.js";
import { installComposer, restoreDraft, stopEdit } from "./room/composer.js";
import { active, installPresence, loadMembers, typistGone } from "./room/presence.js";
import { installSidebar, loadRooms } from "./room/sidebar.js";
import { installSearch, jumpTo } from "./room/search.js";

// The sidebar's unread counts, while the tab is visible (KAIWA_ROOMS_POLL_SECONDS).
const ROOMS_POLL_MS = Number($("sidebar").dataset.pollMs) || 30000;
// After a reconnect (a deploy reconnects every tab at once) the sidebar and
// the members are fetched again within this, at random, not all at once.
const REFRESH_SPREAD_MS = 20000;
const MEMBERS_POLL_MS = 60000;

installComposer();
installPresence();
installSidebar();
installSearch();
installMessageList();

client.on("state", ({ state: now, detail, delay }) => {
  const label = $("connection-state");
  label.dataset.state = now;
  if (now === "live") label.textContent = "live as " + detail;
  else if (now === "reconnecting" && delay !== undefined) label.textContent = "reconnecting in " + Math.round(delay / 100) / 10 + " s";
  else if (now === "closed") label.textContent = "closed: " + (GIVE_UP[delay] || detail);
  else label.textContent = now;
  if (now === "closed" && delay === 4401) {
    window.location.href = "/accounts/login/?next=" + encodeURIComponent(location.pathname);
  }
});
client.on("ready", () => {
  if (!state.detached && !articles().length && !state.loadingOlder) {
    historyTop.textContent = "No messages in " + room + " yet.";
    historyTop.dataset.empty = "1";
    historyTop.hidden = false;
  }
  if (!state.detached && atBottom()) scrollToBottom();
  if (!document.hidden) client.seen();
  state.readies += 1;
  if (state.readies === 1) {
    loadMembers();
    loadRooms();
  } else {
    setTimeout(() => { loadMembers(); loadRooms(); }, Math.random() * REFRESH_SPREAD_MS);
  }
});
client.on("message", (frame) => {
  typistGone(frame.username);
  if (frame.deleted && !state.shown.has(frame.id)) return; // a deletion replayed: nothing to show
  onLiveMessage(frame);
});
client.on("edit", (frame) => {
  const entry = state.shown.get(frame.id);
  if (!entry) return;
  entry.frame = Object.assign({}, entry.frame, {
    message: frame.message, html: frame.html, edited_at: frame.edited_at,
  });
  fill(entry);
  transcriptLater();
});
client.on("delete", (frame) => {
  const entry = state.shown.get(frame.id);
  if (!entry) return;
  if (state.editing === frame.id) stopEdit();
  drop(entry.article);
  transcriptLater();
});
client.on("reaction", onReaction);
client.on("reset", (frame) => {
  state.pendingReload = { latest: frame.seq };
  reloadHistory();
});
client.on("read", () => loadRooms());
client.on("error", (frame) => {
  if (frame.client_id) return; // shown on its pending message
  const note = el("p", { class: "error notice", role: "status" }, frame.detail);
  list.append(note);
  setTimeout(() => note.remove(), 8000);
});

$("history-retry").addEventListener("click", () => { if (state.pendingReload) reloadHistory(); });
$("new-messages").addEventListener("click", () => toLatest());
document.addEventListener("click", (event) => {
  const tapped = event.target.closest("article.msg[data-id]");
  for (const other of list.querySelectorAll("article.selected")) {
    if (other !== tapped) other.classList.remove("selected");
  }
  if (tapped && !event.target.closest("button, a")) tapped.classList.add("selected");
  if (state.picker && !state.picker.contains(event.target) && !event.target.closest(".actions")) closePicker();
});

const at = Number(new URLSearchParams(location.search).get("at"));
if (Number.isInteger(at) && at > 0) jumpTo(at);
setInterval(() => { if (!document.hidden) loadRooms(); }, ROOMS_POLL_MS);
setInterval(() => { if (!document.hidden) loadMembers(); }, MEMBERS_POLL_MS);
active();
restoreDraft();
input.focus();
client.start();
