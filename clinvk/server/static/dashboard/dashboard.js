// The usage page: asks for an API key, keeps it in sessionStorage, sends it as X-Api-Key
// to /api/v1/usage (never in a URL) and draws the answer as plain SVG bars.
"use strict";

const KEY_SLOT = "clinvk.dashboard.key";
const SVG = "http://www.w3.org/2000/svg";
const api = (path) => new URL("api/v1/" + path, document.baseURI).toString();

function say(text, isError) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = isError ? "error" : "";
}

async function fetchUsage(key, groupBy, recent) {
  const params = new URLSearchParams({ group_by: groupBy, since: "7d", recent: String(recent) });
  const response = await fetch(api("usage?" + params), { headers: { "X-Api-Key": key } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = (body.error && (body.error.message || body.error)) || response.statusText;
    const error = new Error(String(detail));
    error.status = response.status;
    throw error;
  }
  return body.data || body;
}

function bars(svgId, items) {
  const svg = document.getElementById(svgId);
  svg.replaceChildren();
  const max = Math.max(1, ...items.map((item) => item.value));
  const width = 600 / Math.max(items.length, 1);
  items.forEach((item, index) => {
    const height = Math.max(2, (item.value / max) * 160);
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("x", String(index * width + 4));
    rect.setAttribute("y", String(180 - height));
    rect.setAttribute("width", String(Math.max(width - 8, 2)));
    rect.setAttribute("height", String(height));
    svg.appendChild(rect);
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", String(index * width + 4));
    label.setAttribute("y", "195");
    label.textContent = item.label + " (" + item.value + ")";
    svg.appendChild(label);
  });
}

function fillRecent(rows) {
  const body = document.querySelector("#recent tbody");
  body.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement("tr");
    const cells = [row.at, row.key_id || "local", row.backend, row.model || "", row.origin,
      row.status, row.input_tokens + row.output_tokens,
      row.cost_usd === null ? "" : "$" + row.cost_usd.toFixed(4)];
    cells.forEach((value, index) => {
      const td = document.createElement("td");
      td.textContent = String(value);
      if (index === 5) td.className = "status-" + row.status;
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }
}

const tokens = (group) => group.input_tokens + group.output_tokens;

async function show() {
  const key = sessionStorage.getItem(KEY_SLOT) || "";
  const charts = document.getElementById("charts");
  if (!key) {
    charts.hidden = true;
    say("Enter an API key to see its usage (an admin key sees every key).", true);
    return;
  }
  say("Loading…", false);
  try {
    const [hours, backends, keys] = await Promise.all([
      fetchUsage(key, "hour", 20), fetchUsage(key, "backend", 0), fetchUsage(key, "key", 0)]);
    bars("runs-chart", hours.groups.map((g) => ({ label: g.hour.slice(11, 16), value: g.runs })));
    bars("backend-chart", backends.groups.map((g) => ({ label: g.backend, value: tokens(g) })));
    bars("key-chart", keys.groups.map((g) => ({ label: (g.key || "local").slice(0, 8),
      value: tokens(g) })));
    fillRecent(hours.recent);
    charts.hidden = false;
    const runs = hours.groups.reduce((sum, g) => sum + g.runs, 0);
    say(runs ? runs + " runs in the last 7 days" + (hours.sees_all ? " (all keys)" : "")
      : "No runs in the last 7 days yet.", false);
  } catch (error) {
    charts.hidden = true;
    if (error.status === 401) {
      say("The server refused this API key (" + error.message + "). Enter a valid key.", true);
    } else {
      say("Could not load usage: " + error.message, true);
    }
  }
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("key");
  sessionStorage.setItem(KEY_SLOT, input.value.trim());
  input.value = "";
  show();
});
document.getElementById("forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_SLOT);
  show();
});
show();
