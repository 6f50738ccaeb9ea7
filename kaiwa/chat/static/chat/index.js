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
  document.getElementById("dm-username-submit").onclick = async function () {
    const csrf = document.querySelector("[name=csrfmiddlewaretoken]").value;
    const response = await fetch("/api/dms/", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ username: dmInput.value.trim() }),
    });
    if (response.status === 429) {
      dmError.textContent = "Too many new conversations: try again in a minute.";
      return;
    }
    if (!response.ok) { dmError.textContent = "No such user."; return; }
    const room = await response.json();
    window.location.pathname = "/chat/" + room.slug + "/";
  };
})();
