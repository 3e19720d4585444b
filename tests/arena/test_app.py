"""The arena's JSON API against a real server on 127.0.0.1 and a real database (SQLite, and
PostgreSQL where ``PREFKIT_TEST_POSTGRES`` names one: always in CI)."""

from __future__ import annotations

import json

import httpx
import pytest
from arena_helpers import MODELS, api, prefkit, wait_caught_up, write_outputs


def _no_identity(text: str) -> None:
    for m in MODELS:
        assert m not in text.lower(), f"model name {m!r} leaked: {text[:300]}"


def test_battle_vote_reveal_idempotent(db, servers, tmp_path):
    prefkit("arena", "add-outputs", str(write_outputs(tmp_path / "o.jsonl", leak=False)),
            "--db", db)
    s = servers(db, "--rounds", "20")
    c = api(s, "voter-1")
    r = c.post("/api/battles")
    assert r.status_code == 200
    b = r.json()
    assert set(b) == {"battle_id", "prompt", "outputs"}
    assert [o["slot"] for o in b["outputs"]] == ["a", "b"]
    # no identity in the body, the headers or the battle id (the URL of the vote)
    _no_identity(r.text)
    _no_identity(json.dumps(dict(r.headers)))
    _no_identity(b["battle_id"])
    assert r.headers["cache-control"] == "no-store"
    v = c.post(f"/api/battles/{b['battle_id']}/vote", json={"winner": "a"})
    assert v.status_code == 200, v.text
    res = v.json()
    assert res["duplicate"] is False and res["vote_seq"] == 1
    revealed = {m["slot"]: m["model"] for m in res["models"]}
    assert set(revealed) == {"a", "b"} and set(revealed.values()) <= set(MODELS)
    assert revealed["a"] != revealed["b"]
    # the same battle again: the first answer, not a second vote
    again = c.post(f"/api/battles/{b['battle_id']}/vote", json={"winner": "b"}).json()
    assert again["duplicate"] is True and again["vote_seq"] == 1
    assert again["models"] == res["models"]
    # errors say what to send
    assert c.post("/api/battles/nope/vote", json={"winner": "a"}).status_code == 404
    b2 = c.post("/api/battles").json()
    bad = c.post(f"/api/battles/{b2['battle_id']}/vote", json={"winner": "left"})
    assert bad.status_code == 400 and "'a', 'b', 'tie' or 'both_bad'" in bad.json()["error"]
    other = api(s, "voter-2").post(f"/api/battles/{b2['battle_id']}/vote", json={"winner": "a"})
    assert other.status_code == 403 and "another voter" in other.json()["error"]
    lb = wait_caught_up(s, 1)
    assert {r["item"] for r in lb["leaderboard"]} == set(revealed.values())
    assert lb["leaderboard"][0]["item"] == revealed["a"]  # one vote for a: a leads


def test_identity_words_set_votes_aside(db, servers, tmp_path):
    prefkit("arena", "add-outputs", str(write_outputs(tmp_path / "o.jsonl")), "--db", db)
    s = servers(db, "--rounds", "20", "--voter-rate", "0")
    c = api(s, "v")
    flagged = clean = 0
    for _ in range(200):
        b = c.post("/api/battles").json()
        leak = any("OpenAI" in o["output"] for o in b["outputs"])
        res = c.post(f"/api/battles/{b['battle_id']}/vote", json={"winner": "a"}).json()
        assert res["flags"] == (["identity"] if leak else [])
        flagged += leak
        clean += not leak
        if flagged >= 1 and clean >= 5:
            break
    assert flagged >= 1
    flags = httpx.get(s.url + "/api/admin/flags", headers=s.admin()).json()
    assert [f["reason"] for f in flags] == ["identity"] * flagged
    assert flags[0]["detail"] == "openai"
    lb = wait_caught_up(s, flagged + clean)
    assert lb["arena"]["rows_set_aside"] == flagged
    assert sum(r["votes"] for r in lb["leaderboard"]) == 2 * clean


def test_csrf_admin_and_cookies(sqlite_db, servers, tmp_path):
    prefkit("arena", "add-outputs", str(write_outputs(tmp_path / "o.jsonl")), "--db", sqlite_db)
    s = servers(sqlite_db, "--rounds", "20")
    # a browser-like client: cookies, no X-Voter
    c = httpx.Client(base_url=s.url, timeout=30)
    r = c.post("/api/battles")
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    token = c.get("/api/session").json()["csrf"]
    assert c.cookies.get("prefkit_csrf") == token and c.cookies.get("prefkit_voter")
    r = c.post("/api/battles", headers={"X-CSRF-Token": "wrong"})
    assert r.status_code == 403
    b = c.post("/api/battles", headers={"X-CSRF-Token": token}).json()
    assert c.post(f"/api/battles/{b['battle_id']}/vote", json={"winner": "tie"},
                  headers={"Origin": "http://evil.example"}).status_code == 403
    ok = c.post(f"/api/battles/{b['battle_id']}/vote", json={"winner": "tie"},
                headers={"Origin": s.url})
    assert ok.status_code == 200
    # admin routes need the token
    assert httpx.get(s.url + "/api/admin/audit").status_code == 401
    assert httpx.get(s.url + "/api/admin/audit",
                     headers={"Authorization": "Bearer nope"}).status_code == 401
    audit = httpx.get(s.url + "/api/admin/audit", headers=s.admin()).json()
    assert [a["action"] for a in audit] == ["add_outputs", "start"]


def test_rate_limit_daily_cap_and_forwarded_for(sqlite_db, servers, tmp_path):
    prefkit("arena", "add-outputs", str(write_outputs(tmp_path / "o.jsonl")), "--db", sqlite_db)
    s = servers(sqlite_db, "--rounds", "20", "--voter-rate", "0.01", "--voter-burst", "3",
                "--daily-cap", "2", "--ip-rate", "0")
    c = api(s, "fast")
    codes = [c.post("/api/battles").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = c.post("/api/battles")
    assert int(r.headers["retry-after"]) >= 1 and "retry in" in r.json()["error"]
    # daily cap: 2 votes, the third refused
    s2 = servers(sqlite_db, "--rounds", "20", "--voter-rate", "0", "--daily-cap", "2",
                 "--ip-rate", "0")
    c2 = api(s2, "capped")
    got = []
    for _ in range(3):
        b = c2.post("/api/battles").json()
        got.append(c2.post(f"/api/battles/{b['battle_id']}/vote", json={"winner": "a"}))
    assert [g.status_code for g in got] == [200, 200, 429]
    assert "daily cap of 2 votes" in got[2].json()["error"]
    # X-Forwarded-For: ignored unless the peer is a trusted proxy
    untrusted = servers(sqlite_db, "--voter-rate", "0", "--ip-rate", "0.01", "--ip-burst", "20")
    trusted = servers(sqlite_db, "--voter-rate", "0", "--ip-rate", "0.01", "--ip-burst", "20",
                      "--trust-proxy", "127.0.0.1")
    for srv, expect in ((untrusted, 429), (trusted, 200)):
        codes = []
        for k in range(25):
            codes.append(httpx.post(srv.url + "/api/battles", headers={
                "X-Voter": f"x{k}", "X-Forwarded-For": f"10.0.0.{k}"}).status_code)
        assert codes[-1] == expect, (srv.args, codes[-5:])


def test_export_reproduces_leaderboard(db, servers, tmp_path):
    """``prefkit rank`` on the export (same seed and rounds) prints the live leaderboard."""
    prefkit("arena", "add-outputs", str(write_outputs(tmp_path / "o.jsonl")), "--db", db)
    s = servers(db, "--rounds", "60", "--seed", "7", "--voter-rate", "0")
    c = api(s, "v")
    n = 0
    for k in range(40):
        b = c.post("/api/battles").json()
        vote = c.post(f"/api/battles/{b['battle_id']}/vote", json={"winner": "a"}).json()
        names = {m["slot"]: m["model"] for m in vote["models"]}
        n += 1
        if k % 3 == 0:  # a mix of outcomes; the stronger side wins otherwise
            continue
        b = c.post("/api/battles").json()
        # a second battle: vote after looking at no identity, by slot; the reveal comes after
        res = c.post(f"/api/battles/{b['battle_id']}/vote",
                     json={"winner": ["a", "b", "tie", "both_bad"][k % 4]}).json()
        n += 1
        assert names and res["vote_seq"] == n
    # an imported vote too
    (tmp_path / "imp.csv").write_text("item_a,item_b,winner,annotator\nalpha,delta,a,old\n")
    prefkit("arena", "import", str(tmp_path / "imp.csv"), "--db", db)
    n += 1
    live = wait_caught_up(s, n)
    out = tmp_path / "export.csv"
    prefkit("arena", "export", "--db", db, str(out))
    lines = out.read_text().splitlines()
    assert lines[0] == "item_a,item_b,winner,weight,annotator,prompt,flags,battle_id,vote_seq"
    assert len(lines) == n + 1
    cli = json.loads(prefkit("rank", str(out), "--rounds", "60", "--seed", "7", "--json").stdout)
    drop = ("input", "seconds", "arena")
    assert {k: v for k, v in live.items() if k not in drop} == \
        {k: v for k, v in cli.items() if k not in drop}
    assert live["leaderboard"][0]["lower"] < live["leaderboard"][0]["rating"]
    # the set-aside votes: weight 0 in the export, still listed with their flags
    flagged = [ln for ln in lines[1:] if ",identity," in ln]
    assert all(ln.split(",")[3] == "0" for ln in flagged)
    assert live["arena"]["rows_set_aside"] == len(flagged)


def test_k_wise_ranking(sqlite_db, servers, tmp_path):
    prefkit("arena", "add-outputs", str(write_outputs(tmp_path / "o.jsonl", leak=False)),
            "--db", sqlite_db)
    s = servers(sqlite_db, "--rounds", "20")
    c = api(s, "k")
    b = c.post("/api/battles", json={"k": 3}).json()
    assert [o["slot"] for o in b["outputs"]] == ["a", "b", "c"]
    assert c.post(f"/api/battles/{b['battle_id']}/vote",
                  json={"winner": "a"}).status_code == 400
    res = c.post(f"/api/battles/{b['battle_id']}/vote", json={"ranking": ["c", ["a", "b"]]})
    assert res.status_code == 200, res.text
    names = {m["slot"]: m["model"] for m in res.json()["models"]}
    lb = wait_caught_up(s, 1)
    assert lb["leaderboard"][0]["item"] == names["c"]
    assert sum(r["votes"] for r in lb["leaderboard"]) == 6  # 3 pairs
    assert c.post("/api/battles", json={"k": 9}).status_code == 400


@pytest.mark.parametrize("bad, message", [
    ('{"prompt_id": "p1", "prompt": "q", "model": "m"}\n', "missing or empty output in field 'output' at {f} line 1"),
    ('{"prompt_id": "p1", "prompt": "q", "model": "m", "output": "o"}\nnot json\n', "malformed JSON"),
])
def test_add_outputs_errors_name_file_line_field(tmp_path, bad, message):
    f = tmp_path / "bad.jsonl"
    f.write_text(bad)
    r = prefkit("arena", "add-outputs", str(f), "--db", str(tmp_path / "a.db"), check=False)
    assert r.returncode == 2
    assert message.format(f=f) in " ".join(r.stderr.split())
