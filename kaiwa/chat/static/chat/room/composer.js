// The composer (#composer): sending, editing your own messages (Arrow Up
// edits the last one), the draft kept per room, and your messages on their
// way (pending until acknowledged; Retry or Discard when refused).
import { $, el } from "./dom.js";
import { client, input, list, me, room, state } from "./state.js";
import { articles, scrollToBottom, toLatest } from "./messages.js";

export function startEdit(id) {
  const entry = state.shown.get(id);
  if (!entry) return;
  if (state.editing === null) state.draftBeforeEdit = input.value;
  state.editing = id;
  input.value = entry.frame.message;
  $("composer-mode").hidden = false;
  $("chat-message-submit").textContent = "Save";
  input.focus();
}

export function stopEdit() {
  state.editing = null;
  input.value = state.draftBeforeEdit; // what was being written before the edit
  state.draftBeforeEdit = "";
  autosize();
  $("composer-mode").hidden = true;
  $("chat-message-submit").textContent = "Send";
}

function lastOwnMessage() {
  const all = articles();
  for (let i = all.length - 1; i >= 0; i--) {
    const entry = state.shown.get(all[i].dataset.id);
    if (entry.frame.username === me) return entry.frame.id;
  }
  return null;
}

// The composer's draft survives a reload of the tab (sessionStorage, per room).
const DRAFT_KEY = "kaiwa-draft:" + room;
function saveDraft() {
  if (state.editing !== null) return; // the composer holds a message being edited
  try {
    if (input.value) sessionStorage.setItem(DRAFT_KEY, input.value);
    else sessionStorage.removeItem(DRAFT_KEY);
  } catch (error) {
    // storage full or disabled: the draft is only on screen
  }
}
export function restoreDraft() {
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
  if (state.editing !== null) {
    client.edit(state.editing, text);
    stopEdit();
    return;
  }
  client.send(text);
  input.value = "";
  saveDraft();
  autosize();
  if (state.detached) toLatest(); // your message shows where it goes: at the bottom
}

function autosize() {
  input.style.height = "auto";
  input.style.height = Math.min(input.scrollHeight, 200) + "px";
}

// Own messages waiting for their acknowledgement (the broadcast), or failed.
function pendingItem(clientId) {
  return list.querySelector('.pending[data-client-id="' + CSS.escape(clientId) + '"]');
}

// The composer's listeners, and its pending messages' (app.js calls this once).
export function installComposer() {
  $("composer").addEventListener("submit", (event) => { event.preventDefault(); submit(); });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    } else if (event.key === "Escape" && state.editing !== null) {
      event.preventDefault();
      stopEdit();
    } else if (event.key === "ArrowUp" && input.value === "" && state.editing === null) {
      const id = lastOwnMessage();
      if (id !== null) { event.preventDefault(); startEdit(id); }
    }
  });
  input.addEventListener("input", () => {
    autosize();
    saveDraft();
    if (state.editing === null) client.typing(input.value !== "");
  });

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
}
