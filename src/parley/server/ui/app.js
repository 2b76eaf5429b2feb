// parley's admin page: plain JavaScript over the admin API, no dependencies, no network but the gateway.
"use strict";

const state = { key: sessionStorage.getItem("parley-key") || "", logPage: 1 };
const $ = (sel, root = document) => root.querySelector(sel);
const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

async function api(method, path, body) {
  const reply = await fetch(path, {
    method,
    headers: { authorization: "Bearer " + state.key, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await reply.json().catch(() => ({}));
  if (!reply.ok) {
    const error = (data && data.error) || {};
    throw new Error(error.message || reply.status + " " + reply.statusText);
  }
  return data;
}

function cell(row, value, cls) {
  const td = document.createElement("td");
  td.textContent = value === null || value === undefined ? "" : String(value);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function button(row, label, onClick) {
  const b = document.createElement("button");
  b.textContent = label;
  b.className = "small";
  b.addEventListener("click", onClick);
  row.appendChild(b);
  return b;
}

const usd = (n) => "$" + (Number(n) || 0).toFixed(Math.abs(n) < 1 ? 6 : 2);
const csv = (s) => (s || "").split(",").map((x) => x.trim()).filter(Boolean);

function formValues(form, numbers = []) {
  const out = {};
  for (const [name, value] of new FormData(form).entries()) {
    if (value === "") continue;
    out[name] = numbers.includes(name) ? Number(value) : value;
  }
  return out;
}

function showError(where, error) {
  let p = $(".error", where);
  if (!p) {
    p = document.createElement("p");
    p.className = "error";
    p.setAttribute("role", "alert");
    where.prepend(p);
  }
  p.textContent = error ? error.message : "";
}

// --- sign in and pages ------------------------------------------------------------------------

async function signIn(key) {
  state.key = key;
  await api("GET", "/key/list?page_size=1");
  sessionStorage.setItem("parley-key", key);
}

function show(page) {
  for (const section of document.querySelectorAll(".page")) section.hidden = section.id !== page;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.hash === "#" + page);
}

async function route() {
  if (!state.key) {
    $("#nav").hidden = true;
    show("signin");
    return;
  }
  $("#nav").hidden = false;
  const page = (location.hash || "#keys").slice(1);
  show(page);
  const loaders = { keys: loadKeys, teams: loadTeams, spend: loadSpend, logs: loadLogs, models: loadModels };
  try {
    await (loaders[page] || loadKeys)();
    showError($("#" + page), null);
  } catch (e) {
    showError($("#" + page), e);
  }
}

// --- keys -------------------------------------------------------------------------------------

async function loadKeys() {
  const data = await api("GET", "/key/list?return_full_object=true&page_size=500");
  const body = $("#key-table tbody");
  body.replaceChildren();
  for (const k of data.keys || []) {
    const row = body.insertRow();
    row.dataset.token = k.token;
    cell(row, k.key_alias);
    cell(row, k.key_name, "mono");
    cell(row, k.team_id);
    cell(row, (k.models || []).join(", "));
    cell(row, usd(k.spend));
    cell(row, k.max_budget === null ? "none" : usd(k.max_budget));
    cell(row, k.blocked ? "blocked" : "active");
    const actions = cell(row, "");
    button(actions, k.blocked ? "Unblock" : "Block", () =>
      act(() => api("POST", k.blocked ? "/key/unblock" : "/key/block", { key: k.token })));
    button(actions, "Regenerate", () => act(async () => {
      const made = await api("POST", "/key/regenerate", { key: k.token });
      revealKey(made.key);
    }));
    button(actions, "Delete", () => {
      if (confirm("Delete key " + (k.key_alias || k.key_name) + "?")) act(() => api("POST", "/key/delete", { keys: [k.token] }));
    });
  }
}

async function act(fn) {
  try {
    await fn();
    await route();
  } catch (e) {
    showError($("#" + (location.hash || "#keys").slice(1)), e);
  }
}

function revealKey(key) {
  $("#key-secret-value").textContent = key;
  $("#key-secret").hidden = false;
}

$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const values = formValues(event.target, ["max_budget", "rpm_limit", "tpm_limit"]);
  for (const name of ["models", "guardrails"]) if (values[name]) values[name] = csv(values[name]);
  act(async () => {
    const made = await api("POST", "/key/generate", values);
    event.target.reset();
    revealKey(made.key);
  });
});

// --- teams and users --------------------------------------------------------------------------

async function loadTeams() {
  const teams = await api("GET", "/team/list");
  const users = await api("GET", "/user/list?page_size=500");
  const tbody = $("#team-table tbody");
  tbody.replaceChildren();
  for (const t of teams || []) {
    const row = tbody.insertRow();
    cell(row, t.team_alias || t.team_id);
    cell(row, usd(t.spend));
    cell(row, t.max_budget === null ? "none" : usd(t.max_budget));
    cell(row, (t.models || []).join(", ") || "all");
  }
  const ubody = $("#user-table tbody");
  ubody.replaceChildren();
  for (const u of users.users || []) {
    const row = ubody.insertRow();
    cell(row, u.user_id);
    cell(row, u.user_email);
    cell(row, u.user_role === "proxy_admin" ? "admin" : "member");
    cell(row, usd(u.spend));
  }
}

$("#team-form").addEventListener("submit", (event) => {
  event.preventDefault();
  act(() => api("POST", "/team/new", formValues(event.target, ["max_budget"])).then(() => event.target.reset()));
});

$("#user-form").addEventListener("submit", (event) => {
  event.preventDefault();
  act(() => api("POST", "/user/new", formValues(event.target)).then(() => event.target.reset()));
});

// --- spend ------------------------------------------------------------------------------------

const COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

async function loadSpend() {
  const params = new URLSearchParams(formValues($("#spend-form")));
  params.set("tz", zone);
  const data = await api("GET", "/spend/daily?" + params);
  $("#spend-total").textContent = usd(data.total_spend);
  $("#spend-requests").textContent = String(data.total_requests);
  $("#spend-tz").textContent = data.tz;
  drawChart($("#spend-chart"), data);
  const body = $("#spend-table tbody");
  body.replaceChildren();
  data.groups.forEach((g, i) => {
    const row = body.insertRow();
    const name = cell(row, g.label);
    name.style.borderLeft = "6px solid " + COLORS[i % COLORS.length];
    cell(row, usd(g.spend));
    cell(row, g.requests);
    cell(row, g.prompt_tokens);
    cell(row, g.completion_tokens);
  });
}

function drawChart(box, data) {
  const ns = "http://www.w3.org/2000/svg";
  const width = 760, height = 240, pad = 44;
  const days = data.days;
  const color = new Map(data.groups.map((g, i) => [g.group, COLORS[i % COLORS.length]]));
  const perDay = new Map(days.map((d) => [d, 0]));
  for (const s of data.series) perDay.set(s.day, perDay.get(s.day) + s.spend);
  const top = Math.max(1e-9, ...perDay.values());
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "spend per day");
  const slot = (width - pad * 2) / Math.max(1, days.length);
  const stacked = new Map(days.map((d) => [d, 0]));
  for (const s of data.series) {
    const i = days.indexOf(s.day);
    const h = (s.spend / top) * (height - pad * 2);
    const base = stacked.get(s.day);
    stacked.set(s.day, base + h);
    const rect = document.createElementNS(ns, "rect");
    const bar = Math.min(slot * 0.7, 48);
    rect.setAttribute("x", String(pad + i * slot + (slot - bar) / 2));
    rect.setAttribute("width", String(bar));
    rect.setAttribute("y", String(height - pad - base - h));
    rect.setAttribute("height", String(Math.max(h, 0.5)));
    rect.setAttribute("fill", color.get(s.group));
    rect.dataset.day = s.day;
    rect.dataset.spend = String(s.spend);
    const tip = document.createElementNS(ns, "title");
    tip.textContent = `${s.day} ${s.label}: ${usd(s.spend)} (${s.requests} requests)`;
    rect.appendChild(tip);
    svg.appendChild(rect);
  }
  days.forEach((d, i) => {
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", String(pad + i * slot + slot / 2));
    label.setAttribute("y", String(height - pad + 16));
    label.setAttribute("text-anchor", "middle");
    label.textContent = d.slice(5);
    svg.appendChild(label);
  });
  const max = document.createElementNS(ns, "text");
  max.setAttribute("x", "2");
  max.setAttribute("y", String(pad - 6));
  max.textContent = usd(top);
  svg.appendChild(max);
  box.replaceChildren(svg);
  if (!days.length) box.textContent = "No spend in this period.";
}

$("#spend-form").addEventListener("submit", (event) => {
  event.preventDefault();
  act(loadSpend);
});

// --- request log ------------------------------------------------------------------------------

async function loadLogs() {
  const params = new URLSearchParams(formValues($("#log-form")));
  params.set("page", String(state.logPage));
  params.set("page_size", "50");
  const data = await api("GET", "/spend/logs?" + params);
  $("#log-total").textContent = String(data.total);
  $("#log-page").textContent = `page ${data.page} of ${Math.max(1, data.total_pages)}`;
  $("#log-prev").disabled = data.page <= 1;
  $("#log-next").disabled = data.page >= data.total_pages;
  const body = $("#log-table tbody");
  body.replaceChildren();
  for (const r of data.data) {
    const row = body.insertRow();
    row.className = r.status >= 400 ? "failed" : "";
    cell(row, new Date(r.startTime).toLocaleString());
    cell(row, r.key_alias);
    cell(row, r.model);
    cell(row, r.status >= 400 ? `${r.status} ${r.error_type || ""}` : r.status);
    cell(row, `${r.prompt_tokens} / ${r.completion_tokens}`);
    cell(row, usd(r.spend));
    cell(row, r.latency_ms === null ? "" : Math.round(r.latency_ms) + " ms");
    row.addEventListener("click", () => toggleDetail(row, r));
  }
}

function toggleDetail(row, r) {
  const next = row.nextElementSibling;
  if (next && next.classList.contains("detail")) {
    next.remove();
    return;
  }
  const detail = row.parentElement.insertRow(row.sectionRowIndex + 1);
  detail.className = "detail";
  const td = cell(detail, "");
  td.colSpan = 7;
  const pre = document.createElement("pre");
  const keep = ["request_id", "route", "status", "error_type", "model", "upstream_model", "model_id",
    "end_user", "session_id", "request_tags", "stream", "cache_hit", "ttft_ms", "retrieval"];
  pre.textContent = JSON.stringify(Object.fromEntries(keep.filter((k) => k in r).map((k) => [k, r[k]])), null, 2);
  td.appendChild(pre);
}

$("#log-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.logPage = 1;
  act(loadLogs);
});
$("#log-prev").addEventListener("click", () => { state.logPage -= 1; act(loadLogs); });
$("#log-next").addEventListener("click", () => { state.logPage += 1; act(loadLogs); });

// --- models -----------------------------------------------------------------------------------

async function loadModels() {
  const models = await api("GET", "/v1/models?limit=1000");
  let health = null;
  try {
    health = await api("GET", "/health");
  } catch (e) {
    health = null;
  }
  const healthy = new Set(((health && health.healthy_endpoints) || []).map((e) => e.model_name || e.model));
  const unhealthy = new Set(((health && health.unhealthy_endpoints) || []).map((e) => e.model_name || e.model));
  const body = $("#model-table tbody");
  body.replaceChildren();
  for (const m of models.data || []) {
    const row = body.insertRow();
    cell(row, m.id);
    cell(row, unhealthy.has(m.id) ? "unhealthy" : healthy.has(m.id) ? "healthy" : "not checked");
  }
}

// --- start ------------------------------------------------------------------------------------

$("#signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await signIn($("#signin-key").value.trim());
    $("#signin-error").textContent = "";
    location.hash = "#keys";
    await route();
  } catch (e) {
    state.key = "";
    $("#signin-error").textContent = e.message;
  }
});
$("#signout").addEventListener("click", () => {
  sessionStorage.removeItem("parley-key");
  state.key = "";
  route();
});
window.addEventListener("hashchange", route);
route();
