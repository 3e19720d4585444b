"""The arena's two pages and their small vanilla JavaScript (no framework, no build step).

Asset names are neutral (``/static/arena.js``, ``/static/arena.css``); pages hold no model
names until a vote has been cast (the battle page learns them from the vote's answer).
"""

from __future__ import annotations

__all__ = ["BATTLE", "CSS", "JS", "LEADERBOARD"]

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 70rem; color: #222; }
nav a { margin-right: 1rem; }
.prompt { background: #f4f4f4; padding: .8rem; border-radius: 6px; white-space: pre-wrap; }
.sides { display: grid; grid-template-columns: repeat(auto-fit, minmax(18rem, 1fr)); gap: 1rem; }
.side { border: 1px solid #ccc; border-radius: 6px; padding: .8rem; }
.side pre { white-space: pre-wrap; font-family: inherit; }
.media img, .media video { max-width: 100%; }
.reveal { font-weight: bold; color: #0a5; min-height: 1.2em; }
button { font-size: 1rem; margin: .3rem; padding: .4rem .9rem; }
table { border-collapse: collapse; margin-top: 1rem; }
td, th { padding: .25rem .6rem; border-bottom: 1px solid #ddd; text-align: right; }
td.item, th.item { text-align: left; }
#heatmap td { width: 2.2rem; height: 1.4rem; font-size: .7rem; text-align: center; border: 0; }
#status { color: #666; }
"""

_HEAD = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><link rel="stylesheet" href="/static/arena.css"></head><body>
<nav><a href="/">Vote</a><a href="/leaderboard">Leaderboard</a></nav>"""

BATTLE = _HEAD.format(title="Arena: vote") + """
<h1>Which answer is better?</h1>
<p>Two anonymous models answered the same prompt. Vote; then you see which models they were.</p>
<div class="prompt" id="prompt">loading…</div>
<div class="sides">
  <div class="side"><h2>A</h2><div class="media" id="media-a"></div><pre id="out-a"></pre><div class="reveal" id="reveal-a"></div></div>
  <div class="side"><h2>B</h2><div class="media" id="media-b"></div><pre id="out-b"></pre><div class="reveal" id="reveal-b"></div></div>
</div>
<div id="votes">
  <button data-vote="a">A is better</button><button data-vote="b">B is better</button>
  <button data-vote="tie">Tie</button><button data-vote="both_bad">Both are bad</button>
</div>
<p id="result"></p>
<button id="next" hidden>Next battle</button>
<form id="ask"><p><label for="own">Or ask your own question (answered by two anonymous
models when this arena has model endpoints):</label></p>
<textarea id="own" name="prompt" rows="3" cols="80"></textarea><br>
<button type="submit">Ask</button></form>
<script src="/static/arena.js"></script><script>arenaBattle();</script>
</body></html>"""

LEADERBOARD = _HEAD.format(title="Arena: leaderboard") + """
<h1>Leaderboard</h1>
<p id="status">loading…</p>
<table id="board"><thead><tr><th>rank</th><th class="item">model</th><th>rating</th>
<th>95% interval</th><th>rank range</th><th>tier</th><th>votes</th></tr></thead>
<tbody></tbody></table>
<h2>Observed win rates (row beats column; ties as half)</h2>
<table id="heatmap"></table>
<script src="/static/arena.js"></script><script>arenaLeaderboard();</script>
</body></html>"""

JS = r"""
"use strict";
async function arenaSession() {
  const r = await fetch("/api/session", {credentials: "same-origin"});
  return (await r.json()).csrf;
}
async function post(url, body, csrf) {
  const r = await fetch(url, {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
    body: JSON.stringify(body)});
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || r.status);
  return data;
}
function text(id, value) { document.getElementById(id).textContent = value; }
async function arenaBattle() {
  const csrf = await arenaSession();
  let battle = null;
  async function load(body) {
    for (const s of ["a", "b"]) { text("reveal-" + s, ""); }
    text("result", "");
    document.getElementById("next").hidden = true;
    document.querySelectorAll("[data-vote]").forEach(b => b.disabled = false);
    try {
      text("prompt", body && body.prompt ? "the models are answering…" : "loading…");
      battle = await post("/api/battles", body || {}, csrf);
    } catch (e) { text("prompt", "No battle: " + e.message); return; }
    text("prompt", battle.prompt);
    for (const o of battle.outputs) {
      text("out-" + o.slot, o.output);
      const box = document.getElementById("media-" + o.slot);
      box.innerHTML = "";
      if (o.media) {
        const tag = {image: "img", audio: "audio", video: "video"}[o.media_type] || "img";
        const el = document.createElement(tag);
        el.src = o.media; el.alt = "output " + o.slot.toUpperCase();
        if (tag !== "img") el.controls = true;
        box.appendChild(el);
      }
    }
    document.body.dataset.battle = "ready";
  }
  document.querySelectorAll("[data-vote]").forEach(button => {
    button.addEventListener("click", async () => {
      document.querySelectorAll("[data-vote]").forEach(b => b.disabled = true);
      try {
        const res = await post("/api/battles/" + battle.battle_id + "/vote",
                               {winner: button.dataset.vote}, csrf);
        for (const m of res.models) { text("reveal-" + m.slot, "Model " + m.slot.toUpperCase() + ": " + m.model); }
        text("result", "Vote recorded." + (res.flags.length ? " (set aside: " + res.flags.join(", ") + ")" : ""));
        document.body.dataset.battle = "voted";
      } catch (e) { text("result", "Vote failed: " + e.message); }
      document.getElementById("next").hidden = false;
    });
  });
  document.getElementById("next").addEventListener("click", () => load());
  document.getElementById("ask").addEventListener("submit", ev => {
    ev.preventDefault();
    const prompt = document.getElementById("own").value.trim();
    if (prompt) load({prompt});
  });
  await load();
}
function fmt(x) { return x === null || x === undefined ? "–" : Number(x).toFixed(1); }
function heat(rate) {
  if (rate === null) return "#eee";
  const r = Math.round(255 * (1 - rate)), g = Math.round(255 * rate);
  return "rgb(" + (155 + r * 0.4 | 0) + "," + (155 + g * 0.4 | 0) + ",170)";
}
async function arenaLeaderboard() {
  async function refresh() {
    const lb = await (await fetch("/api/leaderboard")).json();
    const a = lb.arena || {};
    text("status", (a.message || "up to date") + " — " + (lb.leaderboard || []).length +
         " models; refreshed " + new Date().toLocaleTimeString());
    const body = document.querySelector("#board tbody");
    body.innerHTML = "";
    for (const r of lb.leaderboard || []) {
      const tr = document.createElement("tr");
      const cells = [r.rank, r.item, fmt(r.rating), fmt(r.lower) + " – " + fmt(r.upper),
        r.rank_lower === undefined ? "–" : (r.rank_lower === r.rank_upper ? r.rank_lower : r.rank_lower + "–" + r.rank_upper),
        r.tier === undefined ? "–" : r.tier, r.votes === undefined ? "–" : Math.round(r.votes)];
      cells.forEach((c, k) => { const td = document.createElement("td"); td.textContent = c;
        if (k === 1) td.className = "item"; tr.appendChild(td); });
      body.appendChild(tr);
    }
    const wr = await (await fetch("/api/winrates")).json();
    const order = (lb.leaderboard || []).map(r => r.item).filter(m => wr.items.includes(m));
    const idx = Object.fromEntries(wr.items.map((m, k) => [m, k]));
    const hm = document.getElementById("heatmap");
    hm.innerHTML = "";
    const head = document.createElement("tr");
    head.appendChild(document.createElement("th"));
    order.forEach((m, k) => { const th = document.createElement("th"); th.textContent = k + 1; th.title = m; head.appendChild(th); });
    hm.appendChild(head);
    order.forEach((m, k) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th"); th.className = "item"; th.textContent = (k + 1) + " " + m; tr.appendChild(th);
      order.forEach(n => {
        const v = wr.win_rate[idx[m]][idx[n]];
        const td = document.createElement("td");
        td.textContent = v === null ? "" : v.toFixed(2);
        td.style.background = heat(v); tr.appendChild(td);
      });
      hm.appendChild(tr);
    });
  }
  await refresh();
  setInterval(refresh, 2000);
}
"""
