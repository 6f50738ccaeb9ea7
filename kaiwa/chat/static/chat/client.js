// Kaiwa's protocol client (PROTOCOL.md version 2) for one room: no DOM here.
//
// It keeps the highest seq seen and resumes with ?after=<seq> after any
// disconnect, reconnects with exponential backoff and random jitter (never
// in lock-step), re-sends what the server has not acknowledged with the same
// client_id (so nothing is stored twice), marks a send failed when an error
// frame names its client_id, coalesces `read` to about one a second (and at
// once when the tab becomes visible), throttles `typing`, and remembers the
// tab's presence across reconnects. The page (app.js) renders what it emits.
//
// Everything it needs from the browser comes in `env` (WebSocket, timers,
// randomness), so that tests drive it with fakes (tests/browser/test_client_js.py).

import { GIVE_UP, READ_INTERVAL_MS, TYPING_EXPIRY_MS } from "./protocol.js";

// The protocol's numbers (protocol.js, shared with the page), as before.
export { GIVE_UP, READ_INTERVAL_MS };
export const BACKOFF_BASE_MS = 500;
export const BACKOFF_MAX_MS = 30000;
// The server relays a `typing` start at most every 2 s and a start expires
// after TYPING_EXPIRY_MS (6 s): refresh it every 3 s while typing, stop after
// 5 s without a key.
export const TYPING_REFRESH_MS = TYPING_EXPIRY_MS / 2;
export const TYPING_IDLE_MS = 5000;
const ROOM_EVENTS = new Set(["message", "edit", "delete", "reaction"]);

// Milliseconds before reconnect attempt `attempt` (0, 1, ...): a random
// point in the upper half of min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2^attempt)
// ("equal jitter", AWS Architecture Blog, "Exponential Backoff And Jitter").
export function backoffDelay(attempt, random) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return ceiling / 2 + (random() * ceiling) / 2;
}

// A client_id: "c-" and 24 hex digits from `randomBytes(12)`.
export function newClientId(randomBytes) {
  return "c-" + Array.from(randomBytes(12), (b) => b.toString(16).padStart(2, "0")).join("");
}

// The browser's own implementations of what RoomClient needs.
export function browserEnv() {
  return {
    WebSocket: window.WebSocket,
    setTimeout: window.setTimeout.bind(window),
    clearTimeout: window.clearTimeout.bind(window),
    now: () => performance.now(),
    random: Math.random,
    randomBytes: (n) => crypto.getRandomValues(new Uint8Array(n)),
    url: (room, after) => {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      const query = after === null ? "" : "?after=" + after;
      return scheme + location.host + "/ws/chat/" + encodeURIComponent(room) + "/" + query;
    },
  };
}

// One room's connection. Events (`on(type, listener)`), each with one object:
//   state    {state: "connecting"|"live"|"reconnecting"|"closed", detail, delay}
//   ready    the ready frame
//   message, edit, delete, reaction   the room event frame, once each, in seq order
//   typing, presence, read, reset     the frame
//   pending  {clientId, text}          a send waits for its acknowledgement
//   acked    {clientId, frame}         ... and got it (the message frame follows)
//   failed   {clientId, text, code, detail}   ... or was refused; retry(clientId)
//   error    the error frame (every one, client_id or not)
export class RoomClient {
  constructor(room, env) {
    this.room = room;
    this.env = env;
    this.listeners = new Map();
    this.socket = null;
    this.state = "idle";
    this.lastSeq = null; // highest seq received; null before the first ready
    this.readSeq = 0; // highest seq reported read (by this or another tab)
    this.readSentAt = -Infinity;
    this.readTimer = null;
    this.attempt = 0;
    this.reconnectTimer = null;
    this.unacked = new Map(); // client_id -> {text, failed}
    this.typingSentAt = null; // env.now() of the last `typing` start sent
    this.typingIdle = null;
    this.status = "online";
    this.stopped = false;
  }

  on(type, listener) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type).push(listener);
    return this;
  }

  emit(type, detail) {
    for (const listener of this.listeners.get(type) || []) listener(detail);
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    if (this.reconnectTimer !== null) this.env.clearTimeout(this.reconnectTimer);
    if (this.socket) this.socket.close(1000);
  }

  setState(state, detail, delay) {
    this.state = state;
    this.emit("state", { state: state, detail: detail || "", delay: delay });
  }

  connect() {
    this.reconnectTimer = null;
    this.setState(this.attempt ? "reconnecting" : "connecting");
    const socket = new this.env.WebSocket(this.env.url(this.room, this.lastSeq));
    this.socket = socket;
    socket.onmessage = (event) => {
      if (socket === this.socket) this.onFrame(JSON.parse(event.data));
    };
    socket.onclose = (event) => {
      if (socket === this.socket) this.onClose(event.code);
    };
  }

  isOpen() {
    return this.socket !== null && this.socket.readyState === 1; // WebSocket.OPEN
  }

  transmit(frame) {
    if (this.isOpen() && this.state === "live") this.socket.send(JSON.stringify(frame));
  }

  // --- server frames ---------------------------------------------------------

  onFrame(frame) {
    if (ROOM_EVENTS.has(frame.type)) {
      if (this.lastSeq !== null && frame.seq <= this.lastSeq) return; // never twice
      this.lastSeq = frame.seq;
      if (frame.type === "message") this.acknowledge(frame);
      this.emit(frame.type, frame);
      return;
    }
    switch (frame.type) {
      case "ready":
        this.onReady(frame);
        break;
      case "read":
        if (frame.room === this.room) this.readSeq = Math.max(this.readSeq, frame.seq);
        this.emit("read", frame);
        break;
      case "reset":
        this.lastSeq = frame.seq;
        this.emit("reset", frame);
        break;
      case "error":
        this.onError(frame);
        break;
      default:
        this.emit(frame.type, frame); // typing, presence, pong
    }
  }

  onReady(frame) {
    this.attempt = 0;
    this.lastSeq = Math.max(this.lastSeq === null ? 0 : this.lastSeq, frame.seq);
    this.setState("live", frame.username);
    this.emit("ready", frame);
    for (const [clientId, entry] of this.unacked) {
      if (!entry.failed) this.transmitMessage(clientId, entry.text);
    }
    if (this.status !== "online") this.transmit({ type: "presence", status: this.status });
  }

  acknowledge(frame) {
    if (!frame.client_id || !this.unacked.has(frame.client_id)) return;
    this.unacked.delete(frame.client_id);
    this.emit("acked", { clientId: frame.client_id, frame: frame });
  }

  onError(frame) {
    const entry = frame.client_id ? this.unacked.get(frame.client_id) : undefined;
    if (entry) {
      entry.failed = true;
      this.emit("failed", {
        clientId: frame.client_id,
        text: entry.text,
        code: frame.code,
        detail: frame.detail,
      });
    }
    this.emit("error", frame);
  }

  onClose(code) {
    this.socket = null;
    if (this.readTimer !== null) {
      this.env.clearTimeout(this.readTimer);
      this.readTimer = null;
    }
    if (this.stopped) {
      this.setState("closed", "stopped");
      return;
    }
    if (GIVE_UP[code]) {
      this.setState("closed", GIVE_UP[code], code);
      return;
    }
    if (code === 1009) this.failAll("too_big", "The message is too big to send.");
    const delay = backoffDelay(this.attempt, this.env.random);
    this.attempt += 1;
    this.setState("reconnecting", "", delay);
    this.reconnectTimer = this.env.setTimeout(() => this.connect(), delay);
  }

  failAll(code, detail) {
    for (const [clientId, entry] of this.unacked) {
      if (entry.failed) continue;
      entry.failed = true;
      this.emit("failed", { clientId: clientId, text: entry.text, code: code, detail: detail });
    }
  }

  // --- what the page asks ----------------------------------------------------

  // Post `text`; returns its client_id. It is sent now if live, else on the
  // next ready, and again after every reconnect until acknowledged.
  send(text) {
    const clientId = newClientId(this.env.randomBytes);
    this.unacked.set(clientId, { text: text, failed: false });
    this.emit("pending", { clientId: clientId, text: text });
    this.transmitMessage(clientId, text);
    this.typing(false);
    return clientId;
  }

  // Send a failed message again, with its client_id (stored at most once).
  retry(clientId) {
    const entry = this.unacked.get(clientId);
    if (!entry) return;
    entry.failed = false;
    this.emit("pending", { clientId: clientId, text: entry.text });
    this.transmitMessage(clientId, entry.text);
  }

  // Give up a failed message.
  discard(clientId) {
    this.unacked.delete(clientId);
  }

  transmitMessage(clientId, text) {
    this.transmit({ type: "message", message: text, client_id: clientId });
  }

  edit(id, text) {
    this.transmit({ type: "edit", id: id, message: text });
  }

  remove(id) {
    this.transmit({ type: "delete", id: id });
  }

  react(id, emoji, on) {
    this.transmit({ type: "react", id: id, emoji: emoji, on: on });
  }

  // The user typed (`active` true) or stopped (sent, cleared: false).
  typing(active) {
    if (this.typingIdle !== null) {
      this.env.clearTimeout(this.typingIdle);
      this.typingIdle = null;
    }
    if (!active) {
      if (this.typingSentAt !== null) this.transmit({ type: "typing", state: "stop" });
      this.typingSentAt = null;
      return;
    }
    const now = this.env.now();
    if (this.typingSentAt === null || now - this.typingSentAt >= TYPING_REFRESH_MS) {
      this.typingSentAt = now;
      this.transmit({ type: "typing" });
    }
    this.typingIdle = this.env.setTimeout(() => this.typing(false), TYPING_IDLE_MS);
  }

  // The tab is active ("online") or idle or hidden ("away").
  presence(status) {
    if (status === this.status) return;
    this.status = status;
    this.transmit({ type: "presence", status: status });
  }

  // The page shows everything up to lastSeq: report it read, now if the last
  // `read` is a second old (or `now` is true: the tab became visible), else
  // once when the second is over, with the latest seq then.
  seen(now) {
    if (now === true && this.readTimer !== null) {
      this.env.clearTimeout(this.readTimer);
      this.readTimer = null;
    }
    if (this.readTimer !== null) return;
    const wait = now === true ? 0 : this.readSentAt + READ_INTERVAL_MS - this.env.now();
    if (wait <= 0) {
      this.sendRead();
    } else {
      this.readTimer = this.env.setTimeout(() => {
        this.readTimer = null;
        this.sendRead();
      }, wait);
    }
  }

  sendRead() {
    if (this.lastSeq === null || this.lastSeq <= this.readSeq || !this.isOpen()) return;
    if (this.state !== "live") return;
    this.readSeq = this.lastSeq;
    this.readSentAt = this.env.now();
    this.transmit({ type: "read", seq: this.readSeq });
  }
}
