"""Voting without JavaScript: plain HTML forms against a real server, driven by a real HTTP
client that keeps cookies and follows redirects as a browser does (no script runs). The
JSON API's guards hold: CSRF by the form's token, a battle only for its voter, one vote
per battle, no model name in any page before the vote, the rate limit and the daily cap."""

from __future__ import annotations

import re
from html import unescape

import httpx
import pytest
from arena_helpers import MODELS, prefkit, wait_caught_up, write_outputs

from prefkit.arena.store import open_store


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _browser(server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30, follow_redirects=True)


def _no_model(html: str) -> None:
    for m in MODELS:
        assert m not in html.lower(), f"{m} visible before the vote"


def _start(c: httpx.Client, k: int = 2) -> tuple[str, str]:
    page = c.get("/vote")
    assert page.status_code == 200
    r = c.post("/vote/battles", data={"csrf": _csrf(page.text), "k": str(k)})
    assert r.status_code == 200 and r.history[0].status_code == 303, r.text
    return str(r.url).rsplit("/", 1)[1], r.text


def test_vote_with_plain_forms(db, servers, tmp_path):
    prefkit("arena", "add-outputs", str(write_outputs(tmp_path / "o.jsonl", leak=False)),
            "--db", db)
    s = servers(db, "--rounds", "20")
    c = _browser(s)
    battle_id, page = _start(c)
    assert c.cookies.get("prefkit_voter") and c.cookies.get("prefkit_csrf")
    _no_model(page)
    _no_model(battle_id)
    assert 'name="winner" value="a"' in page and 'id="out-a">Answer' in page
    assert "<script" not in page
    # the vote: the same page, now with the models
    r = c.post(f"/vote/battles/{battle_id}", data={"csrf": _csrf(page), "winner": "a"})
    assert r.status_code == 200 and "Vote recorded." in r.text
    shown = dict(re.findall(r'id="reveal-([ab])">Model [AB]: ([^<]+)<', r.text))
    assert set(shown) == {"a", "b"} and set(shown.values()) <= set(MODELS)
    assert 'name="winner"' not in r.text  # no second vote offered
    # again: the first vote stands, nothing counted twice
    again = c.post(f"/vote/battles/{battle_id}", data={"csrf": _csrf(page), "winner": "b"})
    assert "already had your vote" in again.text
    assert c.get(f"/vote/battles/{battle_id}").text.count("Model A: " + shown["a"]) == 1
    lb = wait_caught_up(s, 1)
    assert [r["item"] for r in lb["leaderboard"]] == [shown["a"], shown["b"]]
    store = open_store(db)
    assert store.vote_count() == 1
    store.close()


def test_plain_forms_keep_the_guards(sqlite_db, servers, tmp_path):
    prefkit("arena", "add-outputs", str(write_outputs(tmp_path / "o.jsonl", leak=False)),
            "--db", sqlite_db)
    s = servers(sqlite_db, "--rounds", "20", "--daily-cap", "2", "--voter-rate", "0")
    c = _browser(s)
    battle_id, page = _start(c)
    token = _csrf(page)
    # CSRF: no token, a wrong token, a cross-site form (its Origin) without the token
    for data, headers in (({"winner": "a"}, {}), ({"winner": "a", "csrf": "x"}, {}),
                          ({"winner": "a"}, {"Origin": "http://evil.example"})):
        r = c.post(f"/vote/battles/{battle_id}", data=data, headers=headers)
        assert r.status_code == 403 and "CSRF check failed: reload the page" in r.text
    assert c.post("/vote/battles", data={"k": "2"}).status_code == 403
    # another voter (another browser) sees nothing of this battle and cannot vote on it
    other = _browser(s)
    other_token = _csrf(other.get("/vote").text)
    assert other.get(f"/vote/battles/{battle_id}").status_code == 404
    r = other.post(f"/vote/battles/{battle_id}", data={"csrf": other_token, "winner": "a"})
    assert r.status_code == 403 and "another voter" in r.text
    # a bad field says what to send
    r = c.post(f"/vote/battles/{battle_id}", data={"csrf": token, "winner": "left"})
    assert r.status_code == 400 and "'a', 'b', 'tie' or 'both_bad'" in unescape(r.text)
    r = c.post("/vote/battles", data={"csrf": token, "k": "9"})
    assert r.status_code == 400 and "field 'k' must be an integer from 2 to 4" in unescape(r.text)
    # the daily cap is the JSON path's: 2 votes, the third refused
    codes = []
    for _ in range(3):
        bid, pg = _start(c)
        codes.append(c.post(f"/vote/battles/{bid}", data={"csrf": _csrf(pg), "winner": "tie"}))
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert "daily cap of 2 votes" in codes[2].text and codes[2].headers["retry-after"]


def test_rank_three_with_plain_forms(sqlite_db, servers, tmp_path):
    prefkit("arena", "add-outputs", str(write_outputs(tmp_path / "o.jsonl", leak=False)),
            "--db", sqlite_db)
    s = servers(sqlite_db, "--rounds", "20")
    c = _browser(s)
    battle_id, page = _start(c, k=3)
    _no_model(page)
    assert all(f'name="rank_{x}"' in page for x in "abc") and 'name="winner"' not in page
    r = c.post(f"/vote/battles/{battle_id}",
               data={"csrf": _csrf(page), "rank_a": "2", "rank_b": "1", "rank_c": "2"})
    assert r.status_code == 200, r.text
    shown = dict(re.findall(r'id="reveal-([abc])">Model [ABC]: ([^<]+)<', r.text))
    lb = wait_caught_up(s, 1)
    assert lb["leaderboard"][0]["item"] == shown["b"]
    assert sum(x["votes"] for x in lb["leaderboard"]) == 6  # b>a, b>c, a=c
    bad = c.post(f"/vote/battles/{battle_id}", data={"csrf": _csrf(page), "rank_a": "x"})
    assert bad.status_code == 200 and "already had your vote" in bad.text


def test_leaderboard_page_rendered_on_the_server(sqlite_db, servers, tmp_path):
    """``GET /leaderboard`` holds the table (rank, model, rating, interval, rank range,
    tier, votes) and the win rates as the script draws them from ``/api/leaderboard`` and
    ``/api/winrates``: a browser without JavaScript reads them (it read 'loading…' and an
    empty table)."""
    prefkit("arena", "add-outputs", str(write_outputs(tmp_path / "o.jsonl", leak=False)),
            "--db", sqlite_db)
    s = servers(sqlite_db, "--rounds", "20", "--voter-rate", "0")
    c = _browser(s)
    empty = c.get("/leaderboard").text
    assert "no votes yet — 0 models" in empty and "<tbody></tbody>" in empty
    for _ in range(3):  # three plain-form votes, A each time
        battle_id, page = _start(c)
        r = c.post(f"/vote/battles/{battle_id}", data={"csrf": _csrf(page), "winner": "a"})
        assert r.status_code == 200
    lb = wait_caught_up(s, 3)
    wr = httpx.get(s.url + "/api/winrates").json()
    page = c.get("/leaderboard")
    assert page.headers["cache-control"] == "no-store"
    body = page.text.split("<tbody>")[1].split("</tbody>")[0]
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>",
                                                                          body)]

    def f(x):
        return "–" if x is None else f"{x:.1f}"

    want = [[str(r["rank"]), r["item"], f(r["rating"]), f"{f(r['lower'])} – {f(r['upper'])}",
             "–" if r.get("rank_lower") is None else (
                 str(r["rank_lower"]) if r["rank_lower"] == r["rank_upper"]
                 else f"{r['rank_lower']}–{r['rank_upper']}"),
             "–" if r.get("tier") is None else str(r["tier"]), str(round(r["votes"]))]
            for r in lb["leaderboard"]]
    assert rows == want and len(rows) >= 2
    n = len(lb["leaderboard"])
    status = unescape(re.search(r'<p id="status">([^<]*)</p>', page.text).group(1))
    assert f"— {n} models; as of" in status
    heat = page.text.split('<table id="heatmap">')[1].split("</table>")[0]
    cells = re.findall(r'<td style="background: [^"]+">([^<]*)</td>', heat)
    idx = {m: k for k, m in enumerate(wr["items"])}
    order = [r["item"] for r in lb["leaderboard"]]
    assert cells == ["" if (v := wr["win_rate"][idx[a]][idx[b]]) is None else f"{v:.2f}"
                     for a in order for b in order]
    assert 'id="noscript"' in page.text


@pytest.mark.parametrize("seeded", [True, False])
def test_serve_seed_makes_the_battles_reproducible(tmp_path, servers, seeded):
    """``serve --seed S``: two servers on equal databases show the same battles (prompt and
    the model in each slot, revealed by voting once every battle was drawn); without it
    they differ."""
    shown = []
    for run in range(2):
        db = str(tmp_path / f"a{run}.db")
        prefkit("arena", "add-outputs", str(write_outputs(tmp_path / "o.jsonl", leak=False)),
                "--db", db)
        s = servers(db, "--voter-rate", "0", *(["--seed", "11"] if seeded else []))
        c = httpx.Client(base_url=s.url, headers={"X-Voter": "v"}, timeout=30)
        battles = [c.post("/api/battles").json() for _ in range(12)]
        seen = []
        for b in battles:
            v = c.post(f"/api/battles/{b['battle_id']}/vote", json={"winner": "tie"}).json()
            seen.append((b["prompt"], tuple(m["model"] for m in v["models"])))
        shown.append(seen)
        s.stop()
    assert (shown[0] == shown[1]) is seeded
