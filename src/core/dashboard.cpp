#include "core/dashboard.hpp"

#include "core/model.hpp"
#include "core/render.hpp"

namespace anomaly {

namespace {

constexpr std::string_view kPage = R"HTML(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Anomaly detection</title>
<style>
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: #111827; background: #f3f4f6; }
  header { background: #1f2937; color: #f9fafb; padding: 10px 20px; display: flex; gap: 24px; align-items: baseline; }
  header h1 { font-size: 18px; margin: 0; }
  header span { color: #d1d5db; }
  main { display: grid; grid-template-columns: 260px 1fr; gap: 16px; padding: 16px 20px; }
  nav, section { background: #fff; border: 1px solid #e5e7eb; border-radius: 6px; padding: 12px; }
  nav input { width: 100%; box-sizing: border-box; padding: 6px; margin-bottom: 8px; }
  nav ul { list-style: none; margin: 0; padding: 0; max-height: 70vh; overflow-y: auto; }
  nav li { padding: 5px 8px; border-radius: 4px; cursor: pointer; display: flex; justify-content: space-between; }
  nav li:hover { background: #f3f4f6; }
  nav li.active { background: #dbeafe; }
  nav li small { color: #6b7280; }
  .row { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; margin-bottom: 10px; }
  table { border-collapse: collapse; }
  td { padding: 2px 12px 2px 0; color: #374151; }
  img { max-width: 100%; border: 1px solid #e5e7eb; }
  .muted { color: #6b7280; }
  button { padding: 4px 10px; }
  h2 { font-size: 15px; margin: 16px 0 8px; }
  section.wide { grid-column: 1 / -1; }
  #anomalies th { text-align: left; padding: 2px 12px 2px 0; color: #6b7280; font-weight: normal; }
  #anomalies td.num { text-align: right; font-variant-numeric: tabular-nums; }
</style>
</head>
<body>
<header><h1>Anomaly detection</h1><span id="health">&nbsp;</span></header>
<main>
  <nav>
    <input id="filter" placeholder="Filter series" aria-label="Filter series">
    <ul id="series"></ul>
    <button id="more" hidden>Load more</button>
  </nav>
  <section>
    <div class="row">
      <strong id="title">Select a series</strong>
      <label id="version-label">Version <select id="version" disabled></select></label>
    </div>
    <table id="details"></table>
    <p id="message" class="muted"></p>
    <img id="plot" alt="" hidden>
    <div id="stream" hidden>
      <h2>Stream</h2>
      <table id="stream-details"></table>
      <img id="stream-plot" alt="">
    </div>
  </section>
  <section class="wide" id="anomalies">
<!--anomalies-->
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let after = null, current = null, versions = [], stream = null;

async function json(url) {
  const res = await fetch(url);
  const body = await res.json();
  if (!res.ok) throw new Error(body.detail || res.statusText);
  return body;
}

async function health() {
  try {
    const h = await json("healthcheck");
    $("health").textContent = h.series_trained + " series" +
      (h.streams ? " \u00b7 " + h.streams.count + " streams" : "") + " \u00b7 predict p95 " +
      h.inference_latency_ms.p95.toFixed(3) + " ms \u00b7 fit p95 " + h.training_latency_ms.p95.toFixed(1) + " ms";
  } catch (e) { $("health").textContent = "healthcheck: " + e.message; }
}

async function loadSeries() {
  const page = await json("series?limit=500" + (after ? "&after=" + encodeURIComponent(after) : ""));
  for (const s of page.series) {
    const li = document.createElement("li");
    li.dataset.id = s.series_id;
    const name = document.createElement("span");
    name.textContent = s.series_id;
    const latest = document.createElement("small");
    // What the series has: its latest version, its stream, or both.
    const parts = [];
    if (s.latest_version) parts.push(s.latest_version + " \u00b7 " + s.detector);
    if (s.stream) parts.push("stream \u00b7 " + s.stream.detector);
    // The anomaly history's anomaly rate of the series, once it has scored points.
    let text = parts.join(" + ");
    if (s.points_scored) text += " \u00b7 " + (100 * s.anomaly_rate).toFixed(1) + "%";
    latest.textContent = text;
    latest.title = s.points_scored ? "anomaly rate: " + s.anomalies + " anomalies in " + s.points_scored + " points scored" : "";
    li.append(name, latest);
    li.onclick = () => select(s.series_id);
    $("series").append(li);
  }
  const items = [...$("series").children].sort((a, b) => a.dataset.id.localeCompare(b.dataset.id, undefined, {numeric: true}));
  $("series").replaceChildren(...items);
  after = page.next_after;
  $("more").hidden = !after;
  applyFilter();
  // #series_id in the URL opens that series: links can be shared.
  const wanted = decodeURIComponent(location.hash.slice(1));
  if (!current && items.length) select(items.some((li) => li.dataset.id === wanted) ? wanted : items[0].dataset.id);
  if (!page.series.length && !current) $("message").textContent = "No series yet: POST /fit/{series_id} to train one, or POST /observe/{series_id} to stream one.";
}

function applyFilter() {
  const f = $("filter").value.toLowerCase();
  for (const li of $("series").children) li.hidden = !li.dataset.id.toLowerCase().includes(f);
}

async function select(id) {
  current = id;
  history.replaceState(null, "", "#" + encodeURIComponent(id));
  for (const li of $("series").children) li.classList.toggle("active", li.dataset.id === id);
  $("title").textContent = id;
  let page;
  try {
    // The newest 1000 versions: a page costs the same however long the history.
    page = await json("series/" + encodeURIComponent(id) + "?order=newest&limit=1000");
  } catch (e) { $("message").textContent = e.message; return; }
  if (id !== current) return;  // another series was chosen meanwhile
  versions = page.versions;
  const sel = $("version");
  sel.replaceChildren();
  for (const v of versions) {
    const o = document.createElement("option");
    o.value = v.version;
    o.textContent = v.version + " \u00b7 " + v.detector + " \u00b7 " + v.trained_at.replace("T", " ").slice(0, 19);
    sel.append(o);
  }
  sel.disabled = !versions.length;
  $("version-label").hidden = !versions.length;
  if (versions.length) show(sel.value);
  else {
    $("details").replaceChildren();
    $("plot").hidden = true;
    $("message").textContent = page.stream ? "No versions: this series is a stream (POST /fit/" + id + " trains one)." : "";
  }
  showStream(page.stream);
}

function rowsOf(rows) {
  return rows.map(([k, val]) => {
    const tr = document.createElement("tr");
    const a = document.createElement("td"), b = document.createElement("td");
    a.textContent = k; b.textContent = val;
    tr.append(a, b);
    return tr;
  });
}

// The series' stream: its detector, what it has learned, and its recent points.
function showStream(st) {
  stream = st || null;
  $("stream").hidden = !stream;
  if (!stream) return;
  const params = ["alpha", "hourly", "trees", "sample", "shingle", "decay"]
    .filter((k) => k in stream).map((k) => [k, stream[k]]);
  const age = stream.checkpoint_age_seconds;
  const rows = [["detector", stream.detector], ["points processed", stream.points_processed],
                ["stage", stream.stage], ...params,
                ["last point", stream.last_timestamp === null ? "none yet" : new Date(stream.last_timestamp * 1000).toISOString()],
                ["created at", stream.created_at],
                ["checkpoint", age === null ? "none yet" : age.toFixed(1) + " s ago"],
                ["state bytes", stream.state_bytes]];
  $("stream-details").replaceChildren(...rowsOf(rows));
  const img = $("stream-plot");
  img.alt = "Recent points of the stream of " + current;
  img.src = "plot?series_id=" + encodeURIComponent(current) + "&stream=1&at=" + Date.now();
}

// A stream learns as points arrive: its numbers and plot are fetched again.
async function refreshStream() {
  if (!current || !stream) return;
  const id = current;
  try {
    const page = await json("series/" + encodeURIComponent(id) + "?order=newest&limit=1");
    if (id === current) showStream(page.stream);
  } catch (e) { /* shown again at the next refresh */ }
}

function show(version) {
  const v = versions.find((x) => x.version === version);
  // The detector and what it learned: whichever of these fields the version has.
  const learned = ["mean", "std", "median", "spread", "sigma", "tail", "season", "trees", "sample", "contamination"]
    .filter((k) => k in v).map((k) => [k, v[k]]);
  const rows = [["detector", v.detector], ["points", v.points], ...learned, ["model bytes", v.model_bytes],
                ["trained at", v.trained_at],
                ["from", new Date(v.first_timestamp * 1000).toISOString()],
                ["to", new Date(v.last_timestamp * 1000).toISOString()]];
  $("details").replaceChildren(...rowsOf(rows));
  $("message").textContent = "";
  const img = $("plot");
  img.hidden = false;
  img.alt = "Training data of " + current + " " + version;
  img.src = "plot?series_id=" + encodeURIComponent(current) + "&version=" + encodeURIComponent(version);
}

$("version").onchange = (e) => show(e.target.value);
$("filter").oninput = applyFilter;
$("more").onclick = loadSeries;
health();
setInterval(() => { health(); refreshStream(); }, 5000);
loadSeries().catch((e) => { $("message").textContent = e.message; });
</script>
</body>
</html>
)HTML";

}  // namespace

namespace {

constexpr std::string_view kMarker = "<!--anomalies-->";

void append_html(std::string *out, std::string_view s) {
    for (char c : s) {
        switch (c) {
        case '<': *out += "&lt;"; break;
        case '>': *out += "&gt;"; break;
        case '&': *out += "&amp;"; break;
        case '"': *out += "&quot;"; break;
        case '\'': *out += "&#39;"; break;
        default: *out += c;
        }
    }
}

std::string number(double v) {
    std::string out;
    append_double(&out, v);
    return out;
}

// 2023-11-14 22:13:20 (UTC)
std::string when(std::int64_t unix_ms) {
    std::string t = iso8601_ms(unix_ms).substr(0, 19);
    t[10] = ' ';
    return t;
}

std::string anomalies_panel(const DashboardData &d) {
    std::string out = "    <h2>Recent anomalies</h2>\n    <p class=\"muted\">";
    out += std::to_string(d.points_scored) + " points scored, " + std::to_string(d.anomalies) + " anomalies";
    if (d.points_scored > 0) out += " (anomaly rate " + number(100.0 * anomaly_rate(d.anomalies, d.points_scored)) + "%)";
    out += " since the shared zone started; times in UTC.</p>\n";
    if (d.recent.empty()) {
        out += "    <p class=\"muted\">No anomaly recorded yet.</p>\n";
        return out;
    }
    out += "    <table>\n      <tr><th>recorded at</th><th>series</th><th>timestamp</th><th>value</th>"
           "<th>anomaly score</th><th>detector</th></tr>\n";
    for (const HistoryEvent &e : d.recent) {
        out += "      <tr><td>" + when(e.recorded_ms) + "</td><td>";
        append_html(&out, e.series_id());
        out += "</td><td>" + when(e.timestamp * 1000) + "</td><td class=\"num\">" + number(e.value) +
               "</td><td class=\"num\">" + number(e.anomaly_score) + "</td><td>";
        out += detector_name(static_cast<DetectorKind>(e.detector));
        if (e.version != 0) out += " v" + std::to_string(e.version);
        out += "</td></tr>\n";
    }
    out += "    </table>\n";
    return out;
}

}  // namespace

std::string_view dashboard_html() noexcept { return kPage; }

std::string render_dashboard(const DashboardData &data) {
    std::string page(kPage);
    const std::size_t at = page.find(kMarker);
    if (at != std::string::npos) page.replace(at, kMarker.size(), anomalies_panel(data));
    return page;
}

}  // namespace anomaly
