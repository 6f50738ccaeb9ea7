// What the modules of the room page share: its fixed context (the room, the
// user, the elements every section uses, the protocol client), read once
// from the page, and all of its mutable state in one object, `state`.
import { RoomClient, browserEnv } from "../client.js";
import { $ } from "./dom.js";

export const room = JSON.parse($("room-name").textContent);
export const me = JSON.parse($("user-name").textContent);
export const csrfToken = document.querySelector("[name=csrfmiddlewaretoken]").value;

export const list = $("messages");
export const historyTop = $("history-top");
export const input = $("chat-message-input");
export const client = new RoomClient(room, browserEnv());

export const state = {
  // The message list (messages.js).
  // id -> {frame (the message's current state), reactions: Map(emoji -> Set of usernames), article}
  shown: new Map(),
  detached: false, // the newest messages are not in the DOM (scrolled far back, or a search jump)
  olderDone: false, // the oldest message of the room is shown
  loadingOlder: false,
  pendingReload: null, // {latest}: a reset whose history is not loaded yet
  transcriptQueued: false, // #chat-log is redrawn in a microtask
  stuckToBottom: true, // the newest messages were in view at the last scroll
  // Reactions (reactions.js): the open picker, if any.
  picker: null,
  // The composer (composer.js).
  editing: null, // id of the message the composer edits
  draftBeforeEdit: "", // what the composer held when the edit began
  // Typing and presence (presence.js).
  typists: new Map(), // username -> expiry timer
  members: new Map(), // username -> "online" | "away"
  idleTimer: null,
  // The wiring (app.js): ready frames received, this page's first included.
  readies: 0,
};
