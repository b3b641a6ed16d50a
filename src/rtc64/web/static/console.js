// rtc64 console: plain JavaScript, no build step. Reads the REST API, follows the calls
// over server-sent events, draws the traffic chart as SVG. Every text from the gateway is
// inserted with textContent (never as HTML).
"use strict";

let csrf = null;
let events = null;
let timer = null;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function famClass(f) { return f === "IPv6" ? "v6" : f === "IPv4" ? "v4" : ""; }

function fillRows(tableId, rows) {
  const body = document.querySelector("#" + tableId + " tbody");
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    for (const c of cells) {
      const td = document.createElement("td");
      if (c instanceof Node) td.appendChild(c); else td.textContent = c === null || c === undefined ? "" : String(c);
      tr.appendChild(td);
    }
    return tr;
  }));
}

async function api(path, options) {
  const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
  if (opts.method && opts.method !== "GET") opts.headers["X-CSRF-Token"] = csrf || "";
  const r = await fetch(path, opts);
  if (r.status === 401) { showLogin(); throw new Error("not logged in"); }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function showLogin() {
  stopLive();
  document.getElementById("nav").hidden = true;
  for (const p of document.querySelectorAll(".page")) p.hidden = true;
  document.getElementById("login").hidden = false;
}

function stopLive() {
  if (events) { events.close(); events = null; }
  if (timer) { clearInterval(timer); timer = null; }
}

function families(list) {
  const span = el("span");
  list.forEach((f, i) => {
    if (i) span.appendChild(document.createTextNode(" → "));
    span.appendChild(el("span", f, famClass(f)));
  });
  return span;
}

// --- pages -------------------------------------------------------------------------------

async function overview() {
  const o = await api("/api/overview");
  document.getElementById("ov-aors").textContent = o.registrations.aors;
  document.getElementById("ov-contacts").textContent = o.registrations.contacts;
  document.getElementById("ov-calls").textContent = o.calls.total;
  document.getElementById("ov-turn").textContent = o.turn_allocations;
  fillRows("ov-reg-families", Object.entries(o.registrations.by_family).map(([f, n]) => [el("span", f, famClass(f)), n]));
  fillRows("ov-call-families", Object.entries(o.calls.by_families).map(([f, n]) => [f, n]));
  fillRows("ov-errors", o.errors.map((e) => [new Date(e.time * 1000).toISOString(), e.level, e.logger, e.message]));
  const h = await api("/api/history");
  drawChart(h.samples);
}

function rates(samples, key, scale) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = samples[i].time - samples[i - 1].time;
    out.push(dt > 0 ? Math.max(0, samples[i][key] - samples[i - 1][key]) / dt / scale : 0);
  }
  return out;
}

function drawChart(samples) {
  const svg = document.getElementById("chart");
  const series = [["relay", rates(samples, "relay_packets", 1)], ["sip", rates(samples, "sip_requests", 1)], ["turn", rates(samples, "turn_bytes", 1000)]];
  const max = Math.max(1, ...series.flatMap(([, v]) => v));
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  for (const [name, values] of series) {
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("class", name);
    const n = Math.max(1, values.length - 1);
    line.setAttribute("points", values.map((v, i) => `${(i / n) * 600},${155 - (v / max) * 150}`).join(" "));
    svg.appendChild(line);
  }
  const text = document.createElementNS(ns, "text");
  text.setAttribute("x", "4"); text.setAttribute("y", "14");
  text.textContent = "max " + max.toFixed(1) + "/s";
  svg.appendChild(text);
}

function party(p) {
  if (!p) return "–";
  const span = el("span");
  span.appendChild(el("span", p.family, famClass(p.family)));
  span.appendChild(document.createTextNode(" " + [p.transport, p.address].filter((x) => x).join(" ")));
  return span;
}

function showCalls(calls) {
  document.getElementById("calls-live").textContent = "(live: " + calls.length + ")";
  fillRows("calls-table", calls.map((c) => {
    const legs = el("div");
    for (const leg of c.legs) {
      for (const s of leg.streams.filter((x) => x.component === "rtp")) {
        legs.appendChild(el("div", `${leg.family} ${s.kind} relay :${s.relay_port} ⇄ ${s.latched || s.remote || "?"} — ${s.packets} pkts, lost ${s.lost}, jitter ${s.jitter_ms} ms`));
      }
    }
    const row = [c.call_id, c.state, c.age.toFixed(0) + " s", families(c.families), party(c.caller),
      party(c.callee), c.relayed ? "yes" : "no", legs];
    return row;
  }));
  const rows = document.querySelectorAll("#calls-table tbody tr");
  rows.forEach((tr, i) => tr.setAttribute("data-call-id", calls[i].call_id));
}

function callsPage() {
  api("/api/calls").then((b) => showCalls(b.calls)).catch(() => {});
  events = new EventSource("/api/events");
  events.addEventListener("calls", (e) => showCalls(JSON.parse(e.data)));
}

async function registrations() {
  const r = await api("/api/registrations");
  const rows = [];
  for (const a of r.aors) {
    for (const c of a.contacts) {
      rows.push([a.aor, c.contact, el("span", c.family, famClass(c.family)), c.transport, c.received, c.expires_in + " s",
        c.last_keepalive ? new Date(c.last_keepalive * 1000).toISOString() : "–", c.rtt_ms === null ? "–" : c.rtt_ms + " ms"]);
    }
  }
  fillRows("reg-table", rows);
}

async function turnPage() {
  const t = await api("/api/turn");
  fillRows("turn-table", t.allocations.map((a) => [
    `${a.client.transport} ${a.client.address}`, a.username,
    a.relays.map((x) => `${x.family} ${x.address}`).join(", "), a.peers.join(", "),
    `${a.to_peer_bytes} / ${a.from_peer_bytes}`, a.expires_in + " s"]));
}

async function tunnelPage() {
  const t = await api("/api/tunnel");
  const dl = document.getElementById("tunnel-facts");
  dl.replaceChildren();
  const facts = t.enabled
    ? [["listen", t.listen], ["prefix", t.prefix], ["backend", `${t.backend} (${t.device})`],
      ["signalling datagrams", t.signalling.datagrams], ["signalling errors", t.signalling.errors],
      ["tunnels created", t.signalling.tunnels_created], ["keepalives", t.keepalives],
      ["client to client", t.client_to_client], ["ICMPv6 errors sent", t.icmp.sent]]
    : [["tunnel", "not running (tunnel.enabled = false)"]];
  for (const [k, v] of facts) { dl.appendChild(el("dt", k)); dl.appendChild(el("dd", String(v))); }
  fillRows("tunnel-traffic", t.enabled ? [["upstream (from clients)", t.upstream.packets, t.upstream.bytes],
    ["downstream (to clients)", t.downstream.packets, t.downstream.bytes]] : []);
  fillRows("tunnel-drops", t.enabled ? Object.entries(t.dropped) : []);
}

async function blocksPage() {
  const b = await api("/api/blocks");
  fillRows("blocks-table", b.blocks.map((x) => {
    const button = el("button", "Unblock");
    button.type = "button";
    button.addEventListener("click", async () => {
      await api("/api/blocks/unblock", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ target: x.user && !x.source ? x.user : x.source }) });
      blocksPage();
    });
    return [x.kind, x.source, x.user, x.seconds_left, button];
  }));
}

const EXIT = { 0: "0 (no failure)", 1: "1 (failures)", 2: "2 (local error)", 3: "3 (unreachable)" };

async function probesPage() {
  const b = await api("/api/probes");
  fillRows("probes-table", b.runs.map((r) => {
    let report = r.error || "";
    if (r.status === "done") {
      report = el("a", "HTML report");
      report.href = "/api/probes/" + encodeURIComponent(r.id) + "/html";
      report.className = "probe-report";
    }
    return [new Date(r.started * 1000).toISOString(), r.targets.join(" "), r.families.map((f) => "IPv" + f).join("+"),
      r.status, r.exit_code === null ? "–" : (EXIT[r.exit_code] || r.exit_code), report];
  }));
}

async function startProbe(e) {
  e.preventDefault();
  const families = [];
  if (document.getElementById("probe-v6").checked) families.push(6);
  if (document.getElementById("probe-v4").checked) families.push(4);
  const targets = document.getElementById("probe-targets").value.split(/\s+/).filter((t) => t);
  const error = document.getElementById("probe-error");
  error.textContent = "";
  try {
    await api("/api/probes", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ targets, families }) });
  } catch (err) {
    error.textContent = err.message;
  }
  probesPage().catch(() => {});
}

async function statusPage() {
  const s = await api("/api/status");
  const dl = document.getElementById("status-facts");
  dl.replaceChildren();
  for (const [k, v] of [["version", s.version], ["uptime", s.uptime + " s"], ["services", s.services.join(", ")], ["SIP listeners", s.listeners.join(", ")], ["relay addresses", s.relay_addresses.join(", ")], ["TURN listeners", s.turn_listeners.join(", ")], ["tunnel", s.tunnel.join(", ") || "(not running)"], ["NAT64 prefixes", s.nat64_prefixes.join(", ") || "(none)"]]) {
    dl.appendChild(el("dt", k)); dl.appendChild(el("dd", v));
  }
  fillRows("status-config", s.config.map((c) => [c.key, c.value]));
}

const PAGES = {
  overview: [overview, 2000], calls: [callsPage, 0], registrations: [registrations, 5000],
  turn: [turnPage, 5000], tunnel: [tunnelPage, 2000], blocks: [blocksPage, 5000], probes: [probesPage, 2000], status: [statusPage, 0],
};

function route() {
  stopLive();
  const name = (location.hash || "#overview").slice(1);
  const [load, every] = PAGES[name] || PAGES.overview;
  for (const p of document.querySelectorAll(".page")) p.hidden = p.id !== "page-" + (PAGES[name] ? name : "overview");
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === "#" + name);
  const run = () => { Promise.resolve(load()).catch((e) => console.warn(e.message)); };
  run();
  if (every) timer = setInterval(run, every);
}

function showConsole(open) {
  document.getElementById("login").hidden = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("logout").hidden = open;
  route();
}

async function start() {
  const s = await (await fetch("/api/session", { credentials: "same-origin" })).json();
  csrf = s.csrf;
  if (s.authenticated) showConsole(s.open); else showLogin();
}

document.getElementById("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await fetch("/api/login", {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user: document.getElementById("user").value, password: document.getElementById("password").value }),
  });
  const body = await r.json();
  if (!r.ok) { document.getElementById("login-error").textContent = body.error; return; }
  csrf = body.csrf;
  document.getElementById("password").value = "";
  showConsole(false);
});
document.getElementById("logout").addEventListener("click", async () => {
  await api("/api/logout", { method: "POST" }).catch(() => {});
  csrf = null;
  showLogin();
});
document.getElementById("probe-form").addEventListener("submit", startProbe);
window.addEventListener("hashchange", route);
start();
