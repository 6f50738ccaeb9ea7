// The REST helper of the room page: same-origin JSON, the CSRF token on
// anything but GET, and an answer that never throws on a body that is not JSON.
import { csrfToken, room } from "./state.js";

export async function api(path, options) {
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

export function messagesPath(query) {
  return "/api/rooms/" + encodeURIComponent(room) + "/messages/?" + new URLSearchParams(query);
}
