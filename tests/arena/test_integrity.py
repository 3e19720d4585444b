"""Integrity checks: FastChat's sequential outlier test reproduced number for number, the
favouritism (anomalous agreement), timing and influence checks on planted riggers, and the
whole path through a real server (admin route flags a rigger, the leaderboard sets its votes
aside)."""

from __future__ import annotations

import json
import re

import httpx
import numpy as np
import pandas as pd
import pytest
from arena_helpers import api, prefkit, wait_caught_up

from prefkit.arena.integrity import (
    VoteTable,
    bot_timing,
    favouritism,
    influence_removal,
    sequential_test,
    with_and_without,
)


# -- reference: FastChat's outlier_detect, transcribed from lm-sys/FastChat (main, after
# v0.2.36, which does not ship it) fastchat/serve/monitor/elo_analysis.py: get_model_pair_stats
# and outlier_detect with randomized=False, prints removed; returns the flagged users and the
# votes read when each was flagged. Loops as written there (slow, independent).
def _fastchat_pair_stats(battles: pd.DataFrame) -> dict:
    stats: dict = {}
    for _, row in battles.iterrows():
        pair = tuple(sorted([row["model_a"], row["model_b"]]))
        stats.setdefault(pair, {"win": 0, "loss": 0, "tie": 0})
        if row["winner"] in ["tie", "tie (bothbad)"]:
            stats[pair]["tie"] += 1
        elif row["winner"] == "model_a" and row["model_a"] == min(pair):  # noqa: SIM114
            stats[pair]["win"] += 1
        elif row["winner"] == "model_b" and row["model_b"] == min(pair):
            stats[pair]["win"] += 1
        else:
            stats[pair]["loss"] += 1
    return stats


def _fastchat_outlier_detect(stats, battles, max_vote=100, alpha=0.05) -> dict:
    counts = battles["judge"].value_counts()
    users = counts[counts >= 5].index.tolist()
    bad = {}
    for user in users:
        p_upper, p_lower = [], []
        for _, row in battles[battles["judge"] == user].iterrows():
            if len(p_upper) >= max_vote:
                break
            pair = tuple(sorted([row["model_a"], row["model_b"]]))
            if row["winner"] in ["tie", "tie (bothbad)"]:
                vote = 0.5
            elif row["winner"] == "model_a" and row["model_a"] == pair[0]:  # noqa: SIM114
                vote = 1
            elif row["winner"] == "model_b" and row["model_b"] == pair[0]:
                vote = 1
            else:
                vote = 0
            s = stats[pair]
            ratings = np.array([1] * s["win"] + [0] * s["loss"])
            with np.errstate(all="ignore"):
                p_upper += [(ratings <= vote).mean()]
                p_lower += [(ratings >= vote).mean()]
                m_upper = np.prod(1 / (2 * np.array(p_upper)))
                m_lower = np.prod(1 / (2 * np.array(p_lower)))
            if m_upper > 1 / alpha or m_lower > 1 / alpha:
                bad[user] = len(p_upper)
                break
    return bad


def _simulate(rng, n_honest=40, n_fav=3, n_random=3, n_votes=30, n_models=6):
    """Honest Bradley-Terry voters, voters who always pick model 0 (the weakest) when it is
    shown, and coin-flip voters; seconds to vote: people ~ lognormal(2.5), bots 0.4 s."""
    strength = np.linspace(-1.5, 1.5, n_models)
    names = tuple(f"m{k}" for k in range(n_models))
    rows = []
    kinds = ["honest"] * n_honest + ["favour"] * n_fav + ["random"] * n_random
    for v, kind in enumerate(kinds):
        for _ in range(n_votes):
            a, b = rng.choice(n_models, 2, replace=False)
            if kind == "favour":
                a = 0 if rng.random() < 0.8 else a
                b = b if b != a else (a + 1) % n_models
                out = 0 if a == 0 else (1 if b == 0 else int(rng.random() < 0.5))
            elif kind == "random":
                out = int(rng.random() < 0.5)
            else:
                p = 1 / (1 + np.exp(-(strength[a] - strength[b])))
                u = rng.random()
                out = 0 if u < p * 0.9 else (1 if u < 0.9 else 2)
            secs = 0.4 if kind != "honest" else float(rng.lognormal(2.5, 0.5))
            rows.append((a, b, out, f"{kind}-{v}", secs))
    order = rng.permutation(len(rows))  # interleaved in time
    rows = [rows[k] for k in order]
    a, b, o, vo, e = map(np.asarray, zip(*rows))
    return VoteTable(names, a.astype(np.int64), b.astype(np.int64), o.astype(np.int64),
                     vo.astype(object), e.astype(float))


def test_sequential_test_equals_fastchat_outlier_detect():
    t = _simulate(np.random.default_rng(3))
    label = {0: "model_a", 1: "model_b", 2: "tie", 3: "tie (bothbad)"}
    battles = pd.DataFrame({"model_a": np.asarray(t.names)[t.a],
                            "model_b": np.asarray(t.names)[t.b],
                            "winner": [label[o] for o in t.outcome], "judge": t.voter})
    ref = _fastchat_outlier_detect(_fastchat_pair_stats(battles), battles)
    ours = sequential_test(t)
    assert {v for v, r in ours.items() if r["flagged"]} == set(ref)
    assert {v: r["votes"] for v, r in ours.items() if r["flagged"]} == ref
    assert len(ours) == 46 and len(ref) >= 3  # everyone has >= 5 votes; some are caught
    assert all(v.startswith(("favour", "random")) or ours[v]["votes"] > 5 for v in ref)


def test_favouritism_and_timing_find_the_planted_voters():
    t = _simulate(np.random.default_rng(5))
    fav = favouritism(t)
    assert {v for v in fav} == {"favour-40", "favour-41", "favour-42"}
    assert all(r["model"] == "m0" and r["z"] > 4 for r in fav.values())
    bots = bot_timing(t)
    assert set(bots) == {f"{k}-{v}" for k, v in [("favour", 40), ("favour", 41),
                                                  ("favour", 42), ("random", 43),
                                                  ("random", 44), ("random", 45)]}
    keep = ~np.isin(t.voter, list(fav))
    board = {r["item"]: r for r in with_and_without(t, keep)}
    # the favoured weakest model is lifted by the riggers and falls back without them
    assert board["m0"]["rating_all"] > board["m0"]["rating_kept"] + 10
    assert board["m0"]["rank_kept"] == 6


def test_influence_removal_moves_close_neighbours():
    # three items: x and y nearly tied, z far behind
    a, b, o = [], [], []
    for _ in range(30):
        a += [0, 1, 0, 1]
        b += [1, 0, 2, 2]
        o += [0, 0, 0, 0]
    a += [0]
    b += [1]
    o += [0]  # x leads y by one vote
    t = VoteTable(("x", "y", "z"), np.array(a), np.array(b), np.array(o),
                  np.array(["v"] * len(a), object))
    res = {r["k"]: r for r in influence_removal(t, ks=(1, 10))}
    assert res[1]["pair"] == ["x", "y"] and res[1]["models_moved"] == 2
    assert res[1]["max_places"] == 1 and res[10]["votes_removed"] >= 2


def _rigged_votes(s, rng) -> int:
    """12 honest voters x 12 votes by the shown quality, then a rigger's 60 votes for the
    quality-0 model whenever it is shown; returns the number of votes."""

    def quality(o):
        return int(re.search(r"quality (\d)", o["output"]).group(1))

    n = 0
    for v in range(12):
        c = api(s, f"honest-{v}")
        for _ in range(12):
            b = c.post("/api/battles").json()
            qa, qb = (quality(o) for o in b["outputs"])
            p = 1 / (1 + np.exp(-(qa - qb)))
            c.post(f"/api/battles/{b['battle_id']}/vote",
                   json={"winner": "a" if rng.random() < p else "b"})
            n += 1
    r = api(s, "rigger")
    for _ in range(60):
        b = r.post("/api/battles").json()
        qa, qb = (quality(o) for o in b["outputs"])
        win = "a" if qa == 0 else ("b" if qb == 0 else ["a", "b"][int(rng.random() < 0.5)])
        r.post(f"/api/battles/{b['battle_id']}/vote", json={"winner": win})
        n += 1
    return n


def _quality_outputs(tmp_path, db) -> None:
    rows = [{"prompt_id": f"p{p}", "prompt": f"Q{p}", "model": f"m{q}",
             "output": f"quality {q} answer {p}"} for p in range(5) for q in range(4)]
    (tmp_path / "o.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prefkit("arena", "add-outputs", str(tmp_path / "o.jsonl"), "--db", db)


def test_auto_flag_rounds_flag_the_rigger(sqlite_db, servers, tmp_path):
    _quality_outputs(tmp_path, sqlite_db)
    s = servers(sqlite_db, "--rounds", "20", "--voter-rate", "0", "--ip-rate", "0",
                "--auto-flag", "1", "--auto-flag-reasons", "favouritism")
    _rigged_votes(s, np.random.default_rng(0))
    deadline = __import__("time").monotonic() + 60
    while True:
        flags = httpx.get(s.url + "/api/admin/flags", headers=s.admin()).json()
        if flags:
            break
        assert __import__("time").monotonic() < deadline, "no automatic flag in 60 s"
        __import__("time").sleep(0.5)
    assert {(f["voter"], f["reason"]) for f in flags} == {("rigger", "favouritism")}
    assert any(a["actor"] == "integrity" for a in
               httpx.get(s.url + "/api/admin/audit", headers=s.admin()).json())


def test_admin_integrity_flags_a_rigger(sqlite_db, servers, tmp_path):
    """Outputs carry their quality; honest voters pick the better one, a rigger always
    picks quality 0; the admin route flags the rigger and the leaderboard drops its votes."""
    _quality_outputs(tmp_path, sqlite_db)
    s = servers(sqlite_db, "--rounds", "20", "--voter-rate", "0", "--ip-rate", "0")
    n = _rigged_votes(s, np.random.default_rng(0))

    before = {x["item"]: x for x in wait_caught_up(s, n)["leaderboard"]}
    assert httpx.post(s.url + "/api/admin/integrity").status_code == 401
    # scripted voters are bots by their timing (all of them); flag by the vote patterns only
    rep = httpx.post(s.url + "/api/admin/integrity?reasons=outlier,favouritism",
                     headers=s.admin(), timeout=120).json()
    assert len(rep["timing"]) == 13
    assert rep["favouritism"]["rigger"]["model"] == "m0"
    assert not any(v.startswith("honest") for v in rep["favouritism"])
    assert rep["flags_written"] >= 1, json.dumps({k: rep[k] for k in ("outliers", "favouritism")})
    flags = httpx.get(s.url + "/api/admin/flags", headers=s.admin()).json()
    assert {f["voter"] for f in flags} >= {"rigger"}
    deadline = __import__("time").monotonic() + 60
    while True:
        after = httpx.get(s.url + "/api/leaderboard").json()
        if after["arena"].get("rows_set_aside", 0) >= 60 and not after["arena"]["lagging"]:
            break
        assert __import__("time").monotonic() < deadline, after["arena"]
    after_rows = {x["item"]: x for x in after["leaderboard"]}
    assert after_rows["m0"]["rating"] < before["m0"]["rating"]
    assert after_rows["m0"]["rank"] == 4
    audit = httpx.get(s.url + "/api/admin/audit", headers=s.admin()).json()
    assert audit[-1]["action"] == "flag"


@pytest.mark.parametrize("fn", [sequential_test, favouritism, bot_timing])
def test_checks_on_too_few_votes_flag_nobody(fn):
    t = VoteTable(("x", "y"), np.array([0, 1]), np.array([1, 0]), np.array([0, 0]),
                  np.array(["v", "v"], object), np.array([0.1, 0.1]))
    assert fn(t) == {}
