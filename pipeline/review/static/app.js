"use strict";
// The review console.  All text from the database goes into the page through textContent or
// text nodes, never innerHTML: a transcript can hold anything a streamer (or an attacker) said.

const CSRF = document.querySelector('meta[name="csrf"]').content;
const LEAD_IN_S = 2; // the player starts this long before the violation
const POLL_MS = 3000;

const state = {
  me: null, facets: null, filters: {status: "pending", sort: "newest"}, page: 1, perPage: 50,
  items: [], total: 0, current: null, currentIndex: -1, seen: null,
};

const $ = (id) => document.getElementById(id);
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("data-")) node.setAttribute(k, v); else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}
const fmtTime = (s) => {
  const t = Math.max(0, Math.floor(s)); const h = Math.floor(t / 3600), m = Math.floor(t / 60) % 60, x = t % 60;
  return (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + String(x).padStart(2, "0");
};

async function api(path, opts = {}) {
  const init = {credentials: "same-origin", headers: {}};
  if (opts.body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.headers["X-CSRF-Token"] = CSRF;
    init.body = JSON.stringify(opts.body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) { window.location.assign("/login"); throw new Error("log in first"); }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : `HTTP ${res.status}`);
  return body;
}

function query() {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(state.filters)) if (v !== "" && v != null) p.set(k, v);
  if (!state.filters.status) p.set("status", "");
  p.set("page", state.page); p.set("per_page", state.perPage);
  return p.toString();
}

function fillSelect(sel, values, keepFirst = true) {
  const first = keepFirst ? sel.options[0] : null;
  sel.replaceChildren(...(first ? [first] : []), ...values.map((v) => el("option", {value: v}, v)));
}

async function init() {
  state.me = await api("/api/me");
  $("whoami").textContent = `${state.me.name} (${state.me.role})`;
  document.body.dataset.role = state.me.role;
  state.facets = await api("/api/facets");
  fillSelect($("f-stream"), state.facets.streams);
  fillSelect($("f-category"), Object.keys(state.facets.categories));
  fillSelect($("f-severity"), state.facets.severities);
  fillSelect($("f-sort"), state.facets.sorts, false);
  fillSubcategories();
  const codes = Object.entries(state.facets.categories).flatMap(([c, subs]) => subs.map((s) => `${c}.${s}`));
  fillSelect($("relabel"), codes, false);
  const bind = (id, key) => $(id).addEventListener("change", () => {
    state.filters[key] = $(id).value; state.page = 1;
    if (key === "category") { fillSubcategories(); state.filters.subcategory = ""; }
    loadQueue();
  });
  bind("f-stream", "stream"); bind("f-category", "category"); bind("f-subcategory", "subcategory");
  bind("f-severity", "severity"); bind("f-score-min", "score_min"); bind("f-score-max", "score_max");
  bind("f-sort", "sort");
  for (const [id, key] of [["f-since", "since"], ["f-until", "until"]]) {
    $(id).addEventListener("change", () => {
      state.filters[key] = $(id).value ? new Date($(id).value).toISOString().slice(0, 19) + "+00:00" : "";
      state.page = 1; loadQueue();
    });
  }
  $("prev-page").addEventListener("click", () => { if (state.page > 1) { state.page--; loadQueue(); } });
  $("next-page").addEventListener("click", () => {
    if (state.page * state.perPage < state.total) { state.page++; loadQueue(); }
  });
  $("logout").addEventListener("click", async () => { await api("/logout", {body: {}}); window.location.assign("/login"); });
  for (const b of document.querySelectorAll("#actions button[data-action]")) {
    b.addEventListener("click", () => decide(b.dataset.action));
  }
  $("allow").addEventListener("click", allowPhrase);
  document.addEventListener("keydown", onKey);
  state.seen = (await api("/api/poll")).latest; // violations newer than this reload the queue
  await loadQueue(true);
  setInterval(poll, POLL_MS);
}

function fillSubcategories() {
  const cats = state.facets.categories;
  const c = state.filters.category;
  const subs = c ? cats[c] : [...new Set(Object.values(cats).flat())];
  fillSelect($("f-subcategory"), subs);
}

function renderTabs(counts) {
  const tabs = [["pending", "Pending"], ["confirmed", "Confirmed"], ["dismissed", "Dismissed"], ["escalated", "Escalated"], ["", "All"]];
  const all = Object.values(counts).reduce((a, b) => a + b, 0);
  $("status-tabs").replaceChildren(...tabs.map(([value, name]) => {
    const b = el("button", {type: "button", role: "tab", "data-status": value}, `${name} (${value ? counts[value] : all})`);
    b.setAttribute("aria-selected", String((state.filters.status || "") === value));
    b.addEventListener("click", () => { state.filters.status = value; state.page = 1; loadQueue(true); });
    return b;
  }));
}

async function loadQueue(openFirst = false, preferId = null) {
  const data = await api("/api/violations?" + query());
  state.items = data.items; state.total = data.total;
  renderTabs(data.counts);
  const rows = data.items.map((it, i) => {
    const tr = el("tr", {"data-id": it.id, "data-index": String(i)},
      el("td", {}, it.stream_id), el("td", {}, fmtTime(it.start)),
      el("td", {}, it.label ? `${it.label} (was ${it.category}.${it.subcategory})` : `${it.category}.${it.subcategory}`),
      el("td", {class: "sev-" + it.severity}, it.severity), el("td", {}, it.score.toFixed(2)),
      el("td", {class: "text"}, it.text), el("td", {class: "st-" + it.status}, it.status));
    tr.addEventListener("click", () => openItem(i));
    return tr;
  });
  $("queue-rows").replaceChildren(...rows);
  const pages = Math.max(1, Math.ceil(data.total / state.perPage));
  $("page-info").textContent = `page ${data.page} of ${pages} · ${data.total} items`;
  let idx = -1;
  if (preferId) idx = state.items.findIndex((x) => x.id === preferId);
  if (idx < 0 && state.current) idx = state.items.findIndex((x) => x.id === state.current.id);
  if (idx < 0 && (openFirst || state.current) && state.items.length) idx = Math.min(Math.max(state.currentIndex, 0), state.items.length - 1);
  if (idx >= 0 && (!state.current || state.items[idx].id !== state.current.id || preferId)) await openItem(idx);
  else markCurrent();
  if (!state.items.length) { state.current = null; $("item").hidden = true; }
}

function markCurrent() {
  for (const tr of $("queue-rows").children) {
    tr.classList.toggle("current", state.current && tr.dataset.id === state.current.id);
  }
}

async function openItem(i) {
  if (i < 0 || i >= state.items.length) return;
  const it = await api("/api/violations/" + encodeURIComponent(state.items[i].id));
  state.current = it; state.currentIndex = i;
  markCurrent();
  $("queue-rows").children[i]?.scrollIntoView({block: "nearest"});
  $("item").hidden = false;
  $("item").dataset.id = it.id;
  $("action-error").textContent = "";
  renderPlayer(it); renderFacts(it); renderEvidence(it); renderContext(it); renderAudit(it);
  $("relabel").value = it.label || it.code;
  $("note").value = it.note || "";
  $("allow").hidden = !it.can_allow;
}

function renderPlayer(it) {
  const p = $("player");
  if (!it.clip_url) { p.removeAttribute("src"); p.load(); p.dataset.seek = ""; p.dataset.clip = ""; return; }
  const seek = Math.max(0, it.start_s - (it.clip_start || 0) - LEAD_IN_S);
  // the same item drawn again (a note saved, the queue reloaded): keep the clip where it plays
  if (p.dataset.clip === it.clip_url && p.dataset.seek === String(seek)) return;
  p.dataset.seek = String(seek);
  p.dataset.clip = it.clip_url;
  p.addEventListener("loadedmetadata", () => { p.currentTime = seek; }, {once: true});
  p.src = it.clip_url;
}

function renderFacts(it) {
  const facts = [
    ["Status", it.status], ["Label", it.code + (it.label ? ` → relabelled ${it.label}` : "")],
    ["Severity", it.severity], ["Score", it.score.toFixed(3)], ["Stream", it.stream_id],
    ["Stream time", `${fmtTime(it.start_s)}–${fmtTime(it.end_s)} (${it.start_s.toFixed(1)} s)`],
    ["Wall clock", it.wall_start || "—"], ["Basis", it.basis || "—"],
    ["Evidence kind", [...new Set(it.evidence.map((e) => e.kind + (e.detail ? `/${e.detail}` : "")))].join(", ")],
    ["ASR model", it.asr_model || "—"], ["Classifier", it.classifier_version || "—"],
    ["Decided", it.decided_by ? `${it.decided_by} at ${it.decided_at}` : "—"],
  ];
  $("facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function renderEvidence(it) {
  $("evidence").replaceChildren(...it.evidence.map((e) => el("li", {},
    el("mark", {}, e.match), ` ${e.kind}${e.detail ? " (" + e.detail + ")" : ""} · rule ${e.rule}`,
    e.time ? ` · ${e.time[0].toFixed(1)}–${e.time[1].toFixed(1)} s` : "")));
}

function highlighted(text, spans) {
  const parts = []; let pos = 0;
  const sorted = spans.filter((s) => s && s[1] > s[0]).sort((a, b) => a[0] - b[0]);
  for (const [a, b] of sorted) {
    if (a < pos) continue;
    parts.push(text.slice(pos, a), el("mark", {}, text.slice(a, b))); pos = b;
  }
  parts.push(text.slice(pos));
  return parts;
}

function renderContext(it) {
  $("context").replaceChildren(...it.context.map((u) => {
    const text = u.text || "";
    const body = u.current ? highlighted(text, it.evidence.filter((e) => e.kind !== "model").map((e) => e.span)) : [text];
    const p = el("p", {class: u.current ? "utt current" : "utt"}, el("span", {class: "t"}, fmtTime(u.start_s) + " "), ...body);
    p.addEventListener("click", () => {
      const player = $("player");
      if (player.src) player.currentTime = Math.max(0, u.start_s - (it.clip_start || 0));
    });
    return p;
  }));
  if (!it.context.length) $("context").append(el("p", {class: "utt current"}, ...highlighted(it.text || "", it.evidence.map((e) => e.span))));
}

function renderAudit(it) {
  $("audit").replaceChildren(...it.audit.map((a) => el("li", {},
    `${a.at} · ${a.actor} (${a.role}) · ${a.action}`,
    a.detail && Object.keys(a.detail).length ? " · " + Object.entries(a.detail).map(([k, v]) => `${k}: ${v}`).join(", ") : "")));
}

async function decide(action) {
  const it = state.current;
  if (!it) return;
  const body = {action, expected_status: it.status};
  if (action === "relabel") body.label = $("relabel").value;
  if (action === "note") body.note = $("note").value;
  else if ($("note").value.trim() && $("note").value.trim() !== (it.note || "")) body.note = $("note").value;
  try {
    await api(`/api/violations/${encodeURIComponent(it.id)}/decision`, {body});
  } catch (e) { $("action-error").textContent = e.message; return; }
  if (action === "note") { await openItem(state.currentIndex); return; }
  // submit-and-next: open the item after this one, as the queue now stands
  const next = state.items[state.currentIndex + 1];
  state.current = null;
  await loadQueue(true, next ? next.id : null);
}

async function allowPhrase() {
  const it = state.current;
  const match = it.evidence.find((e) => e.kind === "phonetic" || e.kind === "variant");
  const phrase = window.prompt("Allow-list this phrase (it must contain the matched words):", match ? match.match : "");
  if (!phrase) return;
  try {
    const r = await api(`/api/violations/${encodeURIComponent(it.id)}/allow`, {body: {phrase}});
    $("action-error").textContent = r.added ? `added to ${r.file}` : `already in ${r.file}`;
    await openItem(state.currentIndex);
  } catch (e) { $("action-error").textContent = e.message; }
}

function onKey(ev) {
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName);
  if (typing) {
    if (ev.key === "Escape") document.activeElement.blur();
    else if (ev.key === "Enter" && ev.ctrlKey && document.activeElement === $("note")) decide("note");
    return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const keys = {
    j: () => openItem(Math.min(state.currentIndex + 1, state.items.length - 1)),
    k: () => openItem(Math.max(state.currentIndex - 1, 0)),
    c: () => decide("confirm"), d: () => decide("dismiss"), e: () => decide("escalate"),
    r: () => $("relabel").focus(), n: () => $("note").focus(),
  };
  if (keys[ev.key]) { ev.preventDefault(); keys[ev.key](); }
}

async function poll() {
  try {
    const key = (await api("/api/poll")).latest;
    if (key !== state.seen) {
      $("live-note").textContent = "new violations arrived";
      await loadQueue(false);
    }
    state.seen = key;
  } catch (e) { /* a dropped poll is retried at the next tick */ }
}

init().catch((e) => { document.body.prepend(el("p", {class: "fatal"}, e.message)); });
