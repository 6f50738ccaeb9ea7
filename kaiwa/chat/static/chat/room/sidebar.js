// The sidebar: the rooms with their unread counts and mention marks
// (#room-nav), entering a room by name, opening a direct message, and on a
// phone the two drawers (the rooms, the members).
import { ROOM_SLUG } from "../protocol.js";
import { $, el } from "./dom.js";
import { api } from "./api.js";
import { room } from "./state.js";

export async function loadRooms() {
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

// The sidebar's forms and the drawers' buttons (app.js calls this once).
export function installSidebar() {
  $("room-enter").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("room-enter-input").value.trim();
    if (!ROOM_SLUG.test(name)) { $("room-enter-error").hidden = false; return; }
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
}
