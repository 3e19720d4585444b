"""The arena's two pages and their small vanilla JavaScript (no framework, no build step).

Asset names are neutral (``/static/arena.js``, ``/static/arena.css``); the battle page holds
no model names until a vote has been cast (it learns them from the vote's answer). The
leaderboard page comes with its table rendered on the server (:func:`leaderboard_page`), so
that it reads without JavaScript too.
"""

from __future__ import annotations

import math
import time
from html import escape
from typing import Any

from prefkit.runs import plural

__all__ = ["BATTLE", "CSS", "JS", "LEADERBOARD", "NOSCRIPT", "leaderboard_page"]

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

#: Shown by a browser without JavaScript: the plain-form path (:mod:`prefkit.arena.plain`).
NOSCRIPT = """<noscript><style>#prompt, #votes, #ask { display: none; }</style>
<p id="noscript">JavaScript is off: <a href="/vote">vote with plain HTML forms</a>.</p>
</noscript>"""

BATTLE = _HEAD.format(title="Arena: vote") + """
<h1>Which answer is better?</h1>
""" + NOSCRIPT + """
<p>Anonymous models answered the same prompt (two, or K with <code>?k=3</code>). Vote; then
you see which models they were.</p>
<div class="prompt" id="prompt">loading…</div>
<div class="sides" id="sides"></div>
<div id="votes">
  <button data-vote="a">A is better</button><button data-vote="b">B is better</button>
  <button data-vote="tie">Tie</button><button data-vote="both_bad">Both are bad</button>
</div>
<form id="rank" hidden><p>Rank the answers (1 = best; the same rank for a tie):</p>
<span id="rank-slots"></span><button type="submit">Submit ranking</button></form>
<p id="result"></p>
<button id="next" hidden>Next battle</button>
<form id="ask"><p><label for="own">Or ask your own question (answered by two anonymous
models when this arena has model endpoints):</label></p>
<textarea id="own" name="prompt" rows="3" cols="80"></textarea><br>
<button type="submit">Ask</button></form>
<script src="/static/arena.js"></script><script>arenaBattle();</script>
</body></html>"""

#: The leaderboard page; ``{status}``, ``{rows}`` and ``{heatmap}`` are filled on the server
#: (:func:`leaderboard_page`), so that a browser without JavaScript shows the table as of
#: loading; the script refreshes them every 2 s.
LEADERBOARD = _HEAD.format(title="Arena: leaderboard") + """
<h1>Leaderboard</h1>
<noscript><p id="noscript">JavaScript is off: the table is as of loading the page; reload it
for the latest.</p></noscript>
<p id="status">{status}</p>
<table id="board"><thead><tr><th>rank</th><th class="item">model</th><th>rating</th>
<th>95% interval</th><th>rank range</th><th>tier</th><th>votes</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>Observed win rates (row beats column; ties as half)</h2>
<table id="heatmap">{heatmap}</table>
<script src="/static/arena.js"></script><script>arenaLeaderboard();</script>
</body></html>"""


def _fmt(x: Any) -> str:  # the script's fmt()
    return "–" if x is None else f"{float(x):.1f}"


def _heat(rate: float | None) -> str:  # the script's heat()
    if rate is None:
        return "#eee"
    r, g = math.floor(255 * (1 - rate) + 0.5), math.floor(255 * rate + 0.5)
    return f"rgb({155 + int(r * 0.4)},{155 + int(g * 0.4)},170)"


def leaderboard_page(lb: dict[str, Any], wr: dict[str, Any]) -> str:
    """The leaderboard page with the table, the status line and the win rates of ``lb``
    (``/api/leaderboard``'s JSON) and ``wr`` (``/api/winrates``'), as the script draws them."""
    rows = lb.get("leaderboard") or []
    status = ((lb.get("arena") or {}).get("message") or "up to date") + \
        f" — {plural(len(rows), 'model')}; as of {time.strftime('%H:%M:%S UTC', time.gmtime())}"
    cells = []
    for r in rows:
        lo, hi = r.get("rank_lower"), r.get("rank_upper")
        span = "–" if lo is None else (str(lo) if lo == hi else f"{lo}–{hi}")
        votes = "–" if r.get("votes") is None else str(math.floor(r["votes"] + 0.5))
        tds = [r.get("rank"), r.get("item"), _fmt(r.get("rating")),
               f"{_fmt(r.get('lower'))} – {_fmt(r.get('upper'))}", span,
               "–" if r.get("tier") is None else r["tier"], votes]
        cells.append("<tr>" + "".join(('<td class="item">' if k == 1 else "<td>")
                                      + escape(str(c)) + "</td>" for k, c in enumerate(tds))
                     + "</tr>")
    idx = {m: k for k, m in enumerate(wr.get("items") or [])}
    order = [r.get("item") for r in rows if r.get("item") in idx]
    heat = []
    if order:
        heat.append("<tr><th></th>" + "".join(f'<th title="{escape(m)}">{k + 1}</th>'
                                               for k, m in enumerate(order)) + "</tr>")
        for k, m in enumerate(order):
            tds = []
            for n in order:
                v = wr["win_rate"][idx[m]][idx[n]]
                tds.append(f'<td style="background: {_heat(v)}">'
                           f'{"" if v is None else f"{v:.2f}"}</td>')
            heat.append(f'<tr><th class="item">{k + 1} {escape(m)}</th>{"".join(tds)}</tr>')
    return LEADERBOARD.replace("{status}", escape(status), 1).replace(
        "{rows}", "".join(cells), 1).replace("{heatmap}", "".join(heat), 1)

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
function side(slot) {
  const div = document.createElement("div");
  div.className = "side";
  div.innerHTML = '<h2></h2><div class="media"></div><pre></pre><div class="reveal"></div>';
  div.querySelector("h2").textContent = slot.toUpperCase();
  div.querySelector(".media").id = "media-" + slot;
  div.querySelector("pre").id = "out-" + slot;
  div.querySelector(".reveal").id = "reveal-" + slot;
  return div;
}
async function arenaBattle() {
  const csrf = await arenaSession();
  const k = Number(new URLSearchParams(location.search).get("k") || 2);
  let battle = null;
  function enable(on) {
    document.querySelectorAll("[data-vote], #rank button, #rank select")
      .forEach(b => b.disabled = !on);
  }
  async function load(body) {
    text("result", "");
    document.getElementById("next").hidden = true;
    enable(true);
    try {
      text("prompt", body && body.prompt ? "the models are answering…" : "loading…");
      battle = await post("/api/battles", Object.assign({k: k}, body || {}), csrf);
    } catch (e) { text("prompt", "No battle: " + e.message); return; }
    text("prompt", battle.prompt);
    const sides = document.getElementById("sides");
    sides.innerHTML = "";
    const ranks = document.getElementById("rank-slots");
    ranks.innerHTML = "";
    for (const o of battle.outputs) {
      sides.appendChild(side(o.slot));
      text("out-" + o.slot, o.output);
      if (o.media) {
        const tag = {image: "img", audio: "audio", video: "video"}[o.media_type] || "img";
        const el = document.createElement(tag);
        el.src = o.media; el.alt = "output " + o.slot.toUpperCase();
        if (tag !== "img") el.controls = true;
        document.getElementById("media-" + o.slot).appendChild(el);
      }
      const label = document.createElement("label");
      label.textContent = " " + o.slot.toUpperCase() + ": ";
      const select = document.createElement("select");
      select.id = "rank-" + o.slot;
      battle.outputs.forEach((_, r) => select.add(new Option(String(r + 1), String(r + 1))));
      label.appendChild(select);
      ranks.appendChild(label);
    }
    const pair = battle.outputs.length === 2;
    document.getElementById("votes").hidden = !pair;
    document.getElementById("rank").hidden = pair;
    document.body.dataset.battle = "ready";
  }
  async function cast(vote) {
    enable(false);
    try {
      const res = await post("/api/battles/" + battle.battle_id + "/vote", vote, csrf);
      for (const m of res.models) { text("reveal-" + m.slot, "Model " + m.slot.toUpperCase() + ": " + m.model); }
      text("result", "Vote recorded." + (res.flags.length ? " (set aside: " + res.flags.join(", ") + ")" : ""));
      document.body.dataset.battle = "voted";
    } catch (e) { text("result", "Vote failed: " + e.message); }
    document.getElementById("next").hidden = false;
  }
  document.querySelectorAll("[data-vote]").forEach(button => {
    button.addEventListener("click", () => cast({winner: button.dataset.vote}));
  });
  document.getElementById("rank").addEventListener("submit", ev => {
    ev.preventDefault();
    const levels = {};
    for (const o of battle.outputs) {
      const r = Number(document.getElementById("rank-" + o.slot).value);
      (levels[r] = levels[r] || []).push(o.slot);
    }
    const ranking = Object.keys(levels).map(Number).sort((x, y) => x - y)
      .map(r => levels[r].length === 1 ? levels[r][0] : levels[r]);
    cast({ranking: ranking});
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
    const n = (lb.leaderboard || []).length;
    text("status", (a.message || "up to date") + " — " + n + (n === 1 ? " model" : " models") +
         "; refreshed " + new Date().toLocaleTimeString());
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
