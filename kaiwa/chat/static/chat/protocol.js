// The numbers of the wire protocol (PROTOCOL.md) that the protocol client
// (client.js) and the room page (room/*.js) both follow: one copy, imported
// by both. Nothing here touches the DOM or the network.

// Section 1: a room is a slug of 1 to 64 characters of [A-Za-z0-9_-].
export const ROOM_SLUG = /^[A-Za-z0-9_-]{1,64}$/;
// Section 2: `read` at most about once a second per room.
export const READ_INTERVAL_MS = 1000;
// Section 3: a `typing` start not refreshed within 6 s has expired.
export const TYPING_EXPIRY_MS = 6000;
// Section 6: close codes after which reconnecting cannot help, and what
// each means.
export const GIVE_UP = {
  4401: "not logged in",
  4403: "not allowed in this room",
  4404: "no such room",
};
