// A Kaiwa room page: PROTOCOL.md version 1 in a browser.
// Keeps the highest seq seen, resumes with ?after=<seq> after any disconnect,
// reconnects with exponential backoff and random jitter, and re-sends what the
// server has not acknowledged (same client_id, so nothing is stored twice).
(function () {
  "use strict";
  const room = JSON.parse(document.getElementById("room-name").textContent);
  const log = document.getElementById("chat-log");
  const input = document.getElementById("chat-message-input");
  const submit = document.getElementById("chat-message-submit");
  const stateLabel = document.getElementById("connection-state");
  const historyError = document.getElementById("history-error");

  const BACKOFF_BASE_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  // PROTOCOL.md section 2: `read` at most about once a second per room, and
  // when the tab becomes visible; never once per message.
  const READ_INTERVAL_MS = 1000;
  const GIVE_UP = { 4401: "not logged in", 4403: "not allowed in this room", 4404: "no such room" };

  let socket = null;
  let lastSeq = null;     // highest seq shown; null until the first ready
  let readSeq = 0;        // highest seq reported read
  let readSentAt = -Infinity;  // performance.now() of the last read frame
  let readTimer = null;   // a trailing read is scheduled
  let attempt = 0;
  const unacked = new Map();  // client_id -> text, in send order
  let pendingReload = null;  // { latest, mark }: a reset whose history is not shown yet

  function setState(state, text) {
    stateLabel.dataset.state = state;
    stateLabel.textContent = text || state;
  }

  function appendLine(line) {
    log.value += line + "\n";
    log.scrollTop = log.scrollHeight;
  }

  function showMessage(m) {
    if (lastSeq !== null && m.seq <= lastSeq) return;  // never twice
    lastSeq = m.seq;
    appendLine(m.username + ": " + m.message);
  }

  function newClientId() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return "c-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function sendMessage(clientId, text) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "message", message: text, client_id: clientId }));
    }
  }

  function sendRead() {
    if (document.hidden || lastSeq === null || lastSeq <= readSeq) return;
    if (socket && socket.readyState === WebSocket.OPEN) {
      readSeq = lastSeq;
      readSentAt = performance.now();
      socket.send(JSON.stringify({ type: "read", seq: readSeq }));
    }
  }

  // Report what is shown: now if the last read is a second old, else once,
  // with the latest seq, when the second is over (a burst of N messages costs
  // at most two read frames).
  function markRead(now) {
    if (now === true && readTimer !== null) {  // visible again: report at once
      clearTimeout(readTimer);
      readTimer = null;
    }
    if (readTimer !== null) return;
    const wait = now === true ? 0 : readSentAt + READ_INTERVAL_MS - performance.now();
    if (wait <= 0) {
      sendRead();
    } else {
      readTimer = setTimeout(function () { readTimer = null; sendRead(); }, wait);
    }
  }

  // More was missed than the server replays: the last page up to `latest`
  // comes over REST. The old log stays until that page arrives; then the page
  // replaces it, followed by what arrived live meanwhile. On failure an alert
  // offers to try again.
  function reloadHistory(latest) {
    lastSeq = latest;
    pendingReload = { latest: latest, mark: log.value.length };
    fetchHistory(pendingReload);
  }

  async function fetchHistory(reload) {
    historyError.hidden = true;
    let page = null;
    try {
      const response = await fetch("/api/rooms/" + encodeURIComponent(room) +
        "/messages/?limit=50&before=" + (reload.latest + 1), { credentials: "same-origin" });
      if (response.ok) page = await response.json();
    } catch (error) {
      // offline, or a body that is not JSON: page stays null, the alert shows
    }
    if (reload !== pendingReload) return;  // a later reset replaced this one
    if (page === null) { historyError.hidden = false; return; }
    pendingReload = null;
    const lines = page.messages.map((m) => m.username + ": " + m.message + "\n");
    log.value = lines.join("") + log.value.slice(reload.mark);
    log.scrollTop = log.scrollHeight;
  }

  function onFrame(data) {
    switch (data.type) {
      case "message":
        if (data.client_id) unacked.delete(data.client_id);
        showMessage(data);
        markRead();
        break;
      case "ready":
        attempt = 0;
        lastSeq = Math.max(lastSeq === null ? 0 : lastSeq, data.seq);
        setState("live", "live as " + data.username);
        for (const [clientId, text] of unacked) sendMessage(clientId, text);
        markRead();
        break;
      case "reset":
        reloadHistory(data.seq);
        break;
      case "read":
        readSeq = Math.max(readSeq, data.seq);
        break;
      case "error":
        appendLine("[error] " + data.detail);
        break;
    }
  }

  function onClose(event) {
    if (GIVE_UP[event.code]) {
      setState("closed", "closed: " + GIVE_UP[event.code]);
      if (event.code === 4401) window.location.href = "/accounts/login/?next=" + encodeURIComponent(location.pathname);
      return;
    }
    if (event.code === 1009) unacked.clear();  // never retry a frame that was too big
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
    const delay = ceiling / 2 + Math.random() * ceiling / 2;  // jitter: never in lock-step
    attempt += 1;
    setState("reconnecting", "reconnecting in " + Math.round(delay / 100) / 10 + " s");
    setTimeout(connect, delay);
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    let url = scheme + location.host + "/ws/chat/" + encodeURIComponent(room) + "/";
    if (lastSeq !== null) url += "?after=" + lastSeq;
    setState(attempt ? "reconnecting" : "connecting");
    socket = new WebSocket(url);
    socket.onmessage = (e) => onFrame(JSON.parse(e.data));
    socket.onclose = onClose;
  }

  input.focus();
  input.onkeyup = function (e) {
    if (e.key === "Enter") submit.click();
  };
  submit.onclick = function () {
    const text = input.value;
    if (!text.trim()) return;
    const clientId = newClientId();
    unacked.set(clientId, text);
    sendMessage(clientId, text);
    input.value = "";
  };
  document.getElementById("history-retry").onclick = function () {
    if (pendingReload) fetchHistory(pendingReload);
  };
  document.addEventListener("visibilitychange", function () { markRead(true); });
  connect();
})();
