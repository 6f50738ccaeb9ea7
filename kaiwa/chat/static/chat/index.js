// The room index: enter a room by name (Channels tutorial ids), open a DM.
(function () {
  "use strict";
  const nameInput = document.getElementById("room-name-input");
  const nameError = document.getElementById("room-name-error");
  const ROOM = /^[A-Za-z0-9_-]{1,64}$/;

  nameInput.focus();
  nameInput.onkeyup = function (e) {
    if (e.key === "Enter") document.getElementById("room-name-submit").click();
  };
  document.getElementById("room-name-submit").onclick = function () {
    const roomName = nameInput.value.trim();
    if (!ROOM.test(roomName)) { nameError.hidden = false; return; }
    window.location.pathname = "/chat/" + roomName + "/";
  };

  const dmInput = document.getElementById("dm-username-input");
  const dmError = document.getElementById("dm-error");
  dmInput.onkeyup = function (e) {
    if (e.key === "Enter") document.getElementById("dm-username-submit").click();
  };
  // What a failed POST /api/dms/ says: the server's `detail`, else (a body
  // that is not Kaiwa's JSON, say a proxy's page) a message for its status.
  const DM_STATUS_ERRORS = {
    404: "No such user.",
    429: "Too many new conversations: try again in a minute.",
  };
  async function dmErrorText(response) {
    try {
      const body = await response.json();
      if (body && typeof body.detail === "string" && body.detail) return body.detail;
    } catch (error) {
      // not JSON: the status tells
    }
    if (DM_STATUS_ERRORS[response.status]) return DM_STATUS_ERRORS[response.status];
    if (response.status >= 500) return "The server could not open the conversation: try again.";
    return "The conversation could not be opened (HTTP " + response.status + ").";
  }

  document.getElementById("dm-username-submit").onclick = async function () {
    const csrf = document.querySelector("[name=csrfmiddlewaretoken]").value;
    dmError.textContent = "";
    let response;
    try {
      response = await fetch("/api/dms/", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify({ username: dmInput.value.trim() }),
      });
    } catch (error) {
      dmError.textContent = "The server could not be reached: check the connection and try again.";
      return;
    }
    if (!response.ok) { dmError.textContent = await dmErrorText(response); return; }
    const room = await response.json();
    window.location.pathname = "/chat/" + room.slug + "/";
  };
})();
