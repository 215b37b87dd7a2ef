"use strict";
document.getElementById("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const err = document.getElementById("login-error");
  err.textContent = "";
  const res = await fetch("/login", {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "X-CSRF-Token": document.querySelector('meta[name="csrf"]').content,
    },
    body: JSON.stringify({
      name: document.getElementById("name").value,
      password: document.getElementById("password").value,
    }),
  });
  if (res.ok) {
    window.location.assign("/");
  } else {
    const body = await res.json().catch(() => ({}));
    err.textContent = body.detail || `log in failed (${res.status})`;
  }
});
