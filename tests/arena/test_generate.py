"""Battles on a voter's own prompt: answers generated through OpenAI-compatible endpoints
(scripted servers over real HTTP on 127.0.0.1, with different delays) before the battle is
shown; no identity in the answer; a failing endpoint gives no battle and names no side."""

from __future__ import annotations

import json
import time

from arena_helpers import api, fake_chat_server, prefkit


def test_own_prompt_answered_by_both_before_the_battle(sqlite_db, servers, tmp_path):
    fast, slow = fake_chat_server(0.05, "Sure:"), fake_chat_server(0.8, "Well,")
    broken = fake_chat_server(0.0, "x", fail=True)
    ep = {"quick-model": {"base_url": f"http://127.0.0.1:{fast.server_address[1]}/v1",
                          "model": "q"},
          "slow-model": {"base_url": f"http://127.0.0.1:{slow.server_address[1]}/v1",
                         "model": "s"}}
    (tmp_path / "ep.json").write_text(json.dumps(ep))
    s = servers(sqlite_db, "--rounds", "20", "--endpoints", str(tmp_path / "ep.json"))
    c = api(s, "asker")
    try:
        for _ in range(3):
            t0 = time.perf_counter()
            r = c.post("/api/battles", json={"prompt": "abc def"})
            took = time.perf_counter() - t0
            assert r.status_code == 200, r.text
            b = r.json()
            assert b["prompt"] == "abc def"
            assert sorted(o["output"] for o in b["outputs"]) == ["Sure: fed cba", "Well, fed cba"]
            assert "model" not in r.text.replace('"output"', "")  # no model name anywhere
            assert took >= 0.8  # the slow side was finished before anything was shown
            res = c.post(f"/api/battles/{b['battle_id']}/vote", json={"winner": "a"}).json()
            names = {m["slot"]: m["model"] for m in res["models"]}
            said = {o["slot"]: o["output"] for o in b["outputs"]}
            assert said["a"].startswith("Sure:") == (names["a"] == "quick-model")
        # stored as a prompt of its own: the export names the voter and the prompt key
        out = tmp_path / "v.csv"
        prefkit("arena", "export", "--db", sqlite_db, str(out))
        assert out.read_text().count(",asker,voter:") == 3
    finally:
        fast.shutdown()
        slow.shutdown()
    # an endpoint that fails: 502, no battle, no side named
    ep["slow-model"]["base_url"] = f"http://127.0.0.1:{broken.server_address[1]}/v1"
    (tmp_path / "ep2.json").write_text(json.dumps(ep))
    fast2 = fake_chat_server(0.0, "ok")
    ep["quick-model"]["base_url"] = f"http://127.0.0.1:{fast2.server_address[1]}/v1"
    (tmp_path / "ep2.json").write_text(json.dumps(ep))
    s2 = servers(str(tmp_path / "b.db"), "--endpoints", str(tmp_path / "ep2.json"))
    r = api(s2, "asker").post("/api/battles", json={"prompt": "hi"})
    assert r.status_code == 502 and "model" in r.json()["error"]
    assert "slow" not in r.text and "quick" not in r.text
    broken.shutdown()
    fast2.shutdown()
    # an arena without endpoints says how to get them
    s3 = servers(str(tmp_path / "c.db"))
    r = api(s3, "asker").post("/api/battles", json={"prompt": "hi"})
    assert r.status_code == 400 and "--endpoints" in r.json()["error"]


def test_bad_endpoints_file_is_refused(tmp_path):
    (tmp_path / "ep.json").write_text(json.dumps({"m": {"url": "x"}}))
    r = prefkit("arena", "serve", "--db", str(tmp_path / "a.db"), "--endpoints",
                str(tmp_path / "ep.json"), check=False)
    assert r.returncode == 2 and "needs at least a 'base_url'" in " ".join(r.stderr.split())
