// Typing and presence: "… is typing" (#typing), the members with their
// status (#member-list), and this tab's own status: away when it is hidden
// or idle for IDLE_MS, online again on a key or the pointer.
import { TYPING_EXPIRY_MS } from "../protocol.js";
import { $, el } from "./dom.js";
import { api } from "./api.js";
import { client, me, room, state } from "./state.js";
import { atBottom } from "./messages.js";
import { loadRooms } from "./sidebar.js";

const IDLE_MS = 5 * 60 * 1000; // no key or pointer for this long: away

function showTyping() {
  const names = Array.from(state.typists.keys()).sort();
  let text = "";
  if (names.length === 1) text = names[0] + " is typing…";
  else if (names.length === 2) text = names[0] + " and " + names[1] + " are typing…";
  else if (names.length > 2) text = "Several people are typing…";
  if ($("typing").textContent !== text) $("typing").textContent = text;
}

export function typistGone(username) {
  if (!state.typists.has(username)) return;
  clearTimeout(state.typists.get(username));
  state.typists.delete(username);
  showTyping();
}

function showMembers() {
  const items = Array.from(state.members).sort((a, b) =>
    a[1] === b[1] ? a[0].localeCompare(b[0]) : a[1] === "online" ? -1 : 1);
  $("member-list").replaceChildren(...items.map(([username, status]) => {
    const item = el("li", { class: status, "data-username": username });
    item.append(el("span", { class: "dot", "aria-hidden": "true" }), username + " ",
      el("span", { class: "status" }, status));
    return item;
  }));
}

export async function loadMembers() {
  const answer = await api("/api/rooms/" + encodeURIComponent(room) + "/presence");
  if (!answer.ok || !answer.body) return;
  state.members.clear();
  for (const user of answer.body.users) state.members.set(user.username, user.status);
  if (client.state === "live") state.members.set(me, client.status); // ours may not be stored yet
  showMembers();
}

// Away when the tab is hidden or nothing happened for IDLE_MS.
export function active() {
  clearTimeout(state.idleTimer);
  state.idleTimer = setTimeout(() => client.presence("away"), IDLE_MS);
  if (!document.hidden) client.presence("online");
}

// The `typing` and `presence` frames, and what makes this tab active or
// away (app.js calls this once).
export function installPresence() {
  client.on("typing", (frame) => {
    if (frame.username === me) return;
    typistGone(frame.username);
    if (frame.state !== "stop") {
      state.typists.set(frame.username, setTimeout(() => typistGone(frame.username), TYPING_EXPIRY_MS));
    }
    showTyping();
  });

  client.on("presence", (frame) => {
    if (frame.status === "offline") state.members.delete(frame.username);
    else state.members.set(frame.username, frame.status);
    showMembers();
  });

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
}
