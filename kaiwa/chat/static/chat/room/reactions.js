// Reactions: a message's chips (one per emoji, pressed when it is yours),
// the picker of REACTIONS, and the `reaction` frames that change them.
import { el } from "./dom.js";
import { client, me, state } from "./state.js";

const REACTIONS = [
  ["👍", "thumbs up"], ["❤️", "heart"], ["😂", "laughing"], ["🎉", "party"],
  ["😮", "surprised"], ["😢", "sad"], ["🙏", "thank you"], ["👀", "eyes"],
];

export function reactionMap(reactions) {
  const map = new Map();
  for (const r of reactions || []) map.set(r.emoji, new Set(r.usernames));
  return map;
}

export function fillReactions(entry) {
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

export function onReaction(frame) {
  const entry = state.shown.get(frame.id);
  if (!entry) return;
  if (!entry.reactions.has(frame.emoji)) entry.reactions.set(frame.emoji, new Set());
  const users = entry.reactions.get(frame.emoji);
  if (frame.on) users.add(frame.username);
  else users.delete(frame.username);
  if (!users.size) entry.reactions.delete(frame.emoji);
  fillReactions(entry);
}

export function closePicker() {
  if (state.picker) { state.picker.remove(); state.picker = null; }
}

export function openPicker(entry, opener) {
  closePicker();
  state.picker = el("div", { class: "picker", role: "group", "aria-label": "Pick a reaction" });
  for (const [emoji, name] of REACTIONS) {
    const choice = el("button", { type: "button", "aria-label": name, title: name }, emoji);
    choice.onclick = () => {
      const users = entry.reactions.get(emoji);
      client.react(entry.frame.id, emoji, !(users && users.has(me)));
      closePicker();
      opener.focus();
    };
    state.picker.append(choice);
  }
  state.picker.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { closePicker(); opener.focus(); }
  });
  entry.article.querySelector(".actions").after(state.picker);
  state.picker.querySelector("button").focus();
}
