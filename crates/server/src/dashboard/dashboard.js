// Moat admin dashboard. Everything it shows comes from the admin API with the bearer token
// the operator typed; the token stays in this tab's sessionStorage. Text from the server is
// only ever set with textContent (never parsed as HTML), and the page's CSP allows no inline
// script, so a hostile device id or identity cannot run code here.
"use strict";

const TOKEN_KEY = "moat.admin.token";
const COLORS = ["#2f6fde", "#17a589", "#e0a100", "#c0392b", "#8e44ad", "#7f8c8d"];
const SVG = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: "Bearer " + token(), ...(options.headers || {}) },
  });
  if (response.status === 401) {
    signOut("The token was refused.");
    throw new Error("unauthorized");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.detail || response.statusText);
  }
  return body;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

// Fixed colours where a label means good or bad.
const MEANING = { pass: "#17a589", fail: "#c0392b", sent: "#2f6fde", blocked: "#e0a100", failed: "#c0392b" };
const colour = (label, j) => MEANING[label] || COLORS[j % COLORS.length];

// A stacked bar chart: one bar per date, one segment per label.
function barChart(container, dates, points, order) {
  container.replaceChildren();
  const labels = order
    ? order.filter((l) => points.some((p) => p.label === l))
    : [...new Set(points.map((p) => p.label))].sort();
  const byDate = new Map(dates.map((d) => [d, new Map()]));
  for (const p of points) {
    const row = byDate.get(p.date);
    if (row) row.set(p.label, (row.get(p.label) || 0) + p.value);
  }
  const totals = dates.map((d) => [...byDate.get(d).values()].reduce((a, b) => a + b, 0));
  const max = Math.max(1, ...totals);
  const W = 420, H = 180, left = 30, bottom = 20, top = 8;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  chart.appendChild(svg("line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom, class: "axis" }));
  const maxLabel = svg("text", { x: 2, y: top + 8 });
  maxLabel.textContent = String(max);
  chart.appendChild(maxLabel);
  const slot = (W - left) / dates.length;
  const barW = Math.max(2, slot * 0.7);
  dates.forEach((date, i) => {
    let y = H - bottom;
    labels.forEach((label, j) => {
      const v = byDate.get(date).get(label) || 0;
      if (!v) return;
      const h = ((H - bottom - top) * v) / max;
      y -= h;
      const rect = svg("rect", {
        x: left + i * slot + (slot - barW) / 2, y, width: barW, height: h,
        fill: colour(label, j), "data-label": label, "data-date": date,
      });
      const title = svg("title", {});
      title.textContent = `${date} ${label}: ${v}`;
      rect.appendChild(title);
      chart.appendChild(rect);
    });
    if (i === 0 || i === dates.length - 1 || dates.length <= 7) {
      const t = svg("text", { x: left + i * slot + slot / 2, y: H - 6, "text-anchor": "middle" });
      t.textContent = date.slice(5);
      chart.appendChild(t);
    }
  });
  container.appendChild(chart);
  const legend = el("div", null, "legend");
  labels.forEach((label, j) => {
    const item = el("span");
    const swatch = el("i");
    swatch.style.background = colour(label, j);
    item.append(swatch, label);
    legend.appendChild(item);
  });
  if (!labels.length) legend.appendChild(el("span", "no data in this range", "muted"));
  container.appendChild(legend);
}

function fillTable(table, rows, cells) {
  const body = table.tBodies[0];
  body.replaceChildren();
  if (!rows.length) {
    const tr = el("tr");
    const td = el("td", "none", "muted");
    td.colSpan = table.tHead.rows[0].cells.length;
    tr.appendChild(td);
    body.appendChild(tr);
    return;
  }
  for (const row of rows) body.appendChild(cells(row));
}

function revokeButton(device) {
  const button = el("button", "Revoke");
  button.type = "button";
  button.dataset.device = device;
  button.addEventListener("click", async () => {
    // Two steps, so one stray click revokes nothing.
    if (!button.classList.contains("danger")) {
      button.classList.add("danger");
      button.textContent = "Confirm revoke";
      return;
    }
    button.disabled = true;
    try {
      await api(`/admin/v1/devices/${encodeURIComponent(device)}/revoke`, { method: "POST" });
      $("status").textContent = `Revoked ${device}.`;
      await Promise.all([search(), loadAudit()]);
    } catch (e) {
      $("status").textContent = `Could not revoke ${device}: ${e.message}`;
      button.disabled = false;
    }
  });
  return button;
}

async function loadStats() {
  const days = $("range").value;
  const s = await api(`/admin/v1/stats?days=${days}`);
  const t = s.totals;
  $("t-enroll").textContent = t.enrollments;
  $("t-pass").textContent = t.attestation_pass_rate === null
    ? "–" : `${(t.attestation_pass_rate * 100).toFixed(1)}%`;
  $("t-sent").textContent = t.sms_sent;
  $("t-blocked").textContent = t.sms_blocked;
  $("t-spend").textContent = `${t.sms_estimated_spend.toFixed(2)} ${t.currency}`;
  barChart($("c-enroll"), s.dates, s.enrollments);
  barChart($("c-attest"), s.dates, s.attestations, ["pass", "fail"]);
  barChart($("c-sms"), s.dates, s.sms, ["sent", "blocked", "failed"]);
  fillTable($("top-devices"), s.top_refused_devices, (r) => {
    const tr = el("tr");
    tr.append(el("td", r.key, "mono"), el("td", r.count));
    return tr;
  });
  fillTable($("top-ips"), s.top_refused_ips, (r) => {
    const tr = el("tr");
    tr.append(el("td", r.key, "mono"), el("td", r.count));
    return tr;
  });
  $("status").textContent = `${s.from} to ${s.to} (UTC), updated ${new Date().toLocaleTimeString()}`;
}

async function search() {
  const q = $("q").value.trim();
  const path = q ? `/admin/v1/devices?q=${encodeURIComponent(q)}&limit=50` : "/admin/v1/devices?limit=20";
  const { devices } = await api(path);
  fillTable($("devices"), devices, (d) => {
    const tr = el("tr");
    if (d.status !== "active") tr.className = "revoked";
    tr.dataset.device = d.id;
    const action = el("td");
    if (d.status === "active") action.appendChild(revokeButton(d.id));
    tr.append(
      el("td", d.id, "mono"), el("td", d.device_id), el("td", d.mode), el("td", d.platform || ""),
      el("td", d.status, "status"), el("td", d.last_used_at), action,
    );
    return tr;
  });
}

async function loadAudit() {
  const { events } = await api("/admin/v1/audit?limit=20");
  fillTable($("audit"), events, (e) => {
    const tr = el("tr");
    tr.append(el("td", e.at), el("td", e.kind), el("td", e.actor, "mono"),
      el("td", e.subject || "", "mono"), el("td", e.ip || "", "mono"));
    return tr;
  });
}

async function loadAll() {
  try {
    await Promise.all([loadStats(), search(), loadAudit()]);
  } catch (e) {
    if (e.message !== "unauthorized") $("status").textContent = `Could not load: ${e.message}`;
  }
}

function showApp(signedIn) {
  $("login").hidden = signedIn;
  $("app").hidden = !signedIn;
  $("session").hidden = !signedIn;
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  showApp(false);
  $("login-error").textContent = message || "";
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    try {
      await api("/admin/v1/stats?days=1");
    } catch (e) {
      if (e.message !== "unauthorized") $("login-error").textContent = e.message;
      return;
    }
    $("login-error").textContent = "";
    showApp(true);
    await loadAll();
  });
  $("signout").addEventListener("click", () => signOut());
  $("refresh").addEventListener("click", loadAll);
  $("range").addEventListener("change", loadStats);
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search().catch((e) => { $("status").textContent = e.message; });
  });
  $("latest").addEventListener("click", () => {
    $("q").value = "";
    search().catch((e) => { $("status").textContent = e.message; });
  });
  if (token()) {
    showApp(true);
    loadAll();
  }
});
