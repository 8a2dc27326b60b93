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

// Refusal reasons (Moat's problem codes) in words, each in a fixed colour so a reason looks
// the same on every day and in every range. Codes not listed here are shown as they are.
const REASONS = {
  device_revoked: ["Revoked device", "#6c3483"],
  credential_invalid: ["Unknown or bad credential", "#1f618d"],
  signature_invalid: ["Bad signature", "#d35400"],
  signature_expired: ["Signature too old or too new", "#a04000"],
  digest_mismatch: ["Body does not match its digest", "#dc7633"],
  replay_detected: ["Replay", "#922b21"],
  rate_limited: ["Rate limited", "#b7950b"],
  sms_blocked: ["SMS blocked", "#e0a100"],
  integrity_invalid: ["Integrity check failed", "#117a65"],
  identity_invalid: ["Bad identity proof", "#5d6d7e"],
  token_invalid: ["Bad or expired token", "#2e4053"],
  otp_invalid: ["Wrong code", "#7b7d7d"],
  otp_locked: ["Code attempts locked", "#4a235a"],
};

// A reason's colour: its own, or for a code not listed one picked by its spelling, so it is the
// same in both charts and the table whatever else is shown beside it.
function reasonColour(code) {
  if (REASONS[code]) return REASONS[code][1];
  let h = 0;
  for (const c of code) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return COLORS[h % COLORS.length];
}

// "2026-03-01T12:34:56Z" → "2026-03-01 12:34:56": the page states once that times are UTC.
function utc(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().slice(0, 19).replace("T", " ");
}

// A stacked bar chart: one bar per date (or hour), one segment per label. `tick` writes an
// x-axis label.
function barChart(container, dates, points, order, tick = (d) => d.slice(5), colourOf = colour) {
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
        fill: colourOf(label, j), "data-label": label, "data-date": date,
      });
      const title = svg("title", {});
      title.textContent = `${date} ${label}: ${v}`;
      rect.appendChild(title);
      chart.appendChild(rect);
    });
    if (i === 0 || i === dates.length - 1 || dates.length <= 7 || (dates.length === 24 && i % 6 === 0)) {
      // The last of many ticks ends at its slot's right edge, so it is not cut off.
      const end = i === dates.length - 1 && dates.length > 7;
      const t = svg("text", {
        x: left + i * slot + (end ? slot : slot / 2), y: H - 6, "text-anchor": end ? "end" : "middle",
      });
      t.textContent = tick(date);
      chart.appendChild(t);
    }
  });
  container.appendChild(chart);
  const legend = el("div", null, "legend");
  labels.forEach((label, j) => {
    const item = el("span");
    const swatch = el("i");
    swatch.style.background = colourOf(label, j);
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
  $("t-refused").textContent = t.refusals;
  barChart($("c-enroll"), s.dates, s.enrollments);
  barChart($("c-attest"), s.dates, s.attestations, ["pass", "fail"]);
  barChart($("c-sms"), s.dates, s.sms, ["sent", "blocked", "failed"]);
  barChart($("c-refusals"), s.dates, s.refusals, null, undefined, reasonColour);
  barChart($("c-refusals-hourly"), s.hours, s.refusals_hourly, null, (h) => h.slice(11, 16), reasonColour);
  const byReason = new Map();
  for (const p of s.refusals) byReason.set(p.label, (byReason.get(p.label) || 0) + p.value);
  const reasons = [...byReason].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  fillTable($("reasons"), reasons, ([code, count]) => {
    const tr = el("tr");
    tr.dataset.code = code;
    const name = el("td");
    const swatch = el("i", null, "swatch");
    swatch.style.background = reasonColour(code);
    name.append(swatch, el("span", REASONS[code]?.[0] || code, "name"), el("span", code, "mono code"));
    const share = t.refusals ? `${((count * 100) / t.refusals).toFixed(1)}%` : "–";
    tr.append(name, el("td", count, "num count"), el("td", share, "num"));
    return tr;
  });
  fillTable($("routes"), s.routes, (r) => {
    const tr = el("tr");
    tr.dataset.route = r.route;
    const pct = r.requests ? `${((r.refused * 100) / r.requests).toFixed(1)}%` : "–";
    const none = !r.requests;
    const p95 = none ? "–" : r.p95_ms_at_most === null ? "> 2.5 s" : `≤ ${r.p95_ms_at_most} ms`;
    const mean = none ? "–" : `${r.mean_ms.toFixed(1)} ms`;
    tr.append(
      el("td", r.route, "mono route"), el("td", r.upstream || "Moat", r.upstream ? "mono" : "kind"),
      el("td", r.requests, "num requests"), el("td", r.refused, "num refused"), el("td", pct, "num"),
      el("td", mean, "num mean"), el("td", p95, "num p95"),
    );
    return tr;
  });
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
  $("status").textContent = `${s.from} to ${s.to} (${s.time_zone} days), updated ${utc(s.generated_at)} ${s.time_zone}`;
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
      el("td", d.status, "status"), el("td", utc(d.last_used_at)), action,
    );
    return tr;
  });
}

async function loadAudit() {
  const { events } = await api("/admin/v1/audit?limit=20");
  fillTable($("audit"), events, (e) => {
    const tr = el("tr");
    tr.append(el("td", utc(e.at)), el("td", e.kind), el("td", e.actor, "mono"),
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
