"""The new-user bad-input campaign for the surface added on 2026-12-05: ``arena serve --seed
/ --max-media-mb``, ``arena add-outputs --max-media-mb``, the no-JavaScript vote pages and
``POST /api/admin/flags/lift`` (against a real ``prefkit arena serve`` on 127.0.0.1 with
SQLite), ``judge analyze --scale / --conflict-turn / --gold`` (MT-Bench human judgments'
layout), ``judge run --overwrite``, ``reward eval --verdicts --overwrite`` and ``prefkit
rank`` on 'tie (inconsistent)' winners (JSONL, CSV, Parquet).

The rows are written and checked as in ``test_new_verbs.py``: one run per row, in-process
(typer's ``CliRunner``) in a tree of small inputs; the exit code and the words the output
must hold; no traceback; a refusal (exit 2) changes no file of the tree. Rows marked
``# was:`` failed before their fix (what they did then).
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_table import check_row
from cli_table import invoke as _invoke

NO_SERVER = "http://127.0.0.1:9/v1"  # nothing listens: every judge command is refused first


def _jsonl(path: Path, rows: list) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("new_surface")
    (root / "adir").mkdir()
    outs = [{"prompt_id": f"p{i}", "prompt": "hi", "model": m, "output": "o"}
            for i in range(2) for m in "ab"]
    _jsonl(root / "outputs.jsonl", outs)
    (root / "small.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 64)
    _jsonl(root / "media.jsonl", [dict(outs[0], media="small.png")])
    _jsonl(root / "media_dir.jsonl", [dict(outs[0], media="adir")])
    # MT-Bench-like verdicts (both orders) and single grades of two models on two questions
    _jsonl(root / "v.jsonl", [{"question_id": q, "model_a": "m1", "model_b": "m2",
                               "judge_id": "j", "winner_ab": "A", "winner_ba": "B",
                               "turn": t} for q in (81, 82) for t in (1, 2)])
    _jsonl(root / "v_no_turn.jsonl", [{"question_id": q, "model_a": "m1", "model_b": "m2",
                                       "judge_id": "j", "winner_ab": "A", "winner_ba": "B"}
                                      for q in (81, 82)])
    grades = [{"question_id": q, "model_id": m, "judge_id": "j", "score_turn1": s1,
               "score_turn2": s2} for q in (81, 82) for m, s1, s2 in (("m1", 8, 7),
                                                                       ("m2", 3, 9))]
    _jsonl(root / "g.jsonl", grades)
    (root / "g_nan.jsonl").write_text("".join(json.dumps(dict(r, score_turn1=math.nan)) + "\n"
                                              for r in grades))
    # MT-Bench human judgments (lmsys/mt_bench_human_judgments, split human): 2 experts agree
    human = [{"question_id": q, "model_a": "m1", "model_b": "m2", "winner": "model_a",
              "judge": f"expert_{i}", "turn": t} for q in (81, 82) for t in (1, 2)
             for i in range(2)]
    _jsonl(root / "h.jsonl", human)
    with open(root / "h.csv", "w", newline="") as f:  # a CSV holds the turn as text
        w = csv.DictWriter(f, fieldnames=list(human[0]))
        w.writeheader()
        w.writerows(human)
    for name, turn in (("nan", math.nan), ("inf", math.inf), ("0", 0), ("3", 3)):
        (root / f"h_turn_{name}.jsonl").write_text(
            "".join(json.dumps(dict(r, turn=turn)) + "\n" for r in human))
    _jsonl(root / "h_qid_null.jsonl", [dict(r, question_id=None) for r in human])
    _jsonl(root / "h_no_qid.jsonl", [{k: x for k, x in r.items() if k != "question_id"}
                                     for r in human])
    _jsonl(root / "h_mixed.jsonl", [dict(r, winner="A") if i == 2 else r
                                    for i, r in enumerate(human)])
    _jsonl(root / "h_one.jsonl", human[:1])
    # judge run / reward eval inputs
    _jsonl(root / "pairs.jsonl", [{"prompt": "q1", "response_a": "x", "response_b": "y"}])
    _jsonl(root / "rp.jsonl", [{"prompt": f"q{i}", "chosen": "good", "rejected": "bad"}
                               for i in range(2)])
    (root / "judge.sqlite").write_bytes(b"")
    # votes with 'tie (inconsistent)' (MT-Bench's gpt4_pair split), JSONL and Parquet
    votes = [{"question_id": 81, "model_a": "a", "model_b": "b", "winner": w,
              "judge": "gpt4_pair", "turn": 1}
             for w in ("model_a", "model_b", "tie", "tie (inconsistent)",
                       "tie (inconsistent)", "model_a")]
    _jsonl(root / "r.jsonl", votes)
    _jsonl(root / "r_one.jsonl", votes[3:4])
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(votes), root / "r.parquet")
    return root


J = f"--base-url {NO_SERVER}"
# id, command (split on spaces), exit code, words the output must hold
CASES: list[tuple[str, str, int, list[str]]] = [
    # -- arena add-outputs / serve
    # was: OverflowError traceback (int(inf * 2**20))
    ("ao.cap_inf", "arena add-outputs outputs.jsonl --db t.db --max-media-mb inf", 2,
     ["--max-media-mb inf", "finite size in MiB"]),
    ("ao.cap_1e400", "arena add-outputs outputs.jsonl --db t.db --max-media-mb 1e400", 2,
     ["--max-media-mb inf", "finite"]),
    # was: typer's panel, wrapped at the terminal's width ('--max-media' / '-mb' when narrow)
    ("ao.cap_0", "arena add-outputs outputs.jsonl --db t.db --max-media-mb 0", 2,
     ["--max-media-mb 0: give at least 0.001 (MiB)"]),
    ("ao.cap_nan", "arena add-outputs outputs.jsonl --db t.db --max-media-mb nan", 2,
     ["--max-media-mb nan: give at least 0.001"]),
    ("ao.cap_tiny", "arena add-outputs media.jsonl --db t.db --max-media-mb 0.00001", 2,
     ["--max-media-mb 1e-05: give at least 0.001"]),
    ("ao.cap_min", "arena add-outputs media.jsonl --db t.db --max-media-mb 0.001", 0,
     ["added or updated 1 output of 1 model on 1 prompt"]),
    # was: 'no such media file (/.../adir)' for a folder that exists
    ("ao.media_dir", "arena add-outputs media_dir.jsonl --db t.db", 2,
     ["media_dir.jsonl line 1", "'media'", "is a folder", "one image, audio or video file"]),
    # was: accepted; the server then died at start-up with numpy's 'expected non-negative
    # integer' traceback
    ("as.seed_neg", "arena serve --db s.db --seed -1", 2,
     ["--seed -1: give a whole number from 0"]),
    # was: accepted; the live leaderboard then said 'rounds must be at least 2' for ever
    ("as.rounds_1", "arena serve --db s.db --rounds 1", 2,
     ["--rounds 1", "at least 2 rounds", "--rounds 1000"]),
    ("as.rounds_neg", "arena serve --db s.db --rounds -5", 2, ["--rounds -5"]),
    ("as.cap_0", "arena serve --db s.db --max-media-mb 0", 2, ["--max-media-mb 0: give at"]),
    # was: OverflowError traceback, after the database was made
    ("as.cap_inf", "arena serve --db s.db --max-media-mb inf", 2,
     ["--max-media-mb inf", "finite"]),
    # -- judge analyze --scale / --conflict-turn
    # was: accepted (a 1..inf scale: no grade is ever out of it)
    ("ja.scale_inf", "judge analyze v.jsonl g.jsonl --scale inf", 2,
     ["--scale must be a finite number at least 1"]),
    ("ja.scale_nan", "judge analyze v.jsonl g.jsonl --scale nan", 2, ["--scale", "nan"]),
    ("ja.scale_half", "judge analyze v.jsonl g.jsonl --scale 0.5", 2, ["--scale", "at least 1"]),
    ("ja.tolerance_inf", "judge analyze v.jsonl --tolerance inf", 2, ["--tolerance", "finite"]),
    ("ja.turn_0", "judge analyze v.jsonl g.jsonl --conflict-turn 0", 2,
     ["--conflict-turn 0", "turns 1 and 2 only"]),
    ("ja.turn_huge", "judge analyze v.jsonl g.jsonl --conflict-turn 99999999999999999999", 2,
     ["--conflict-turn 99999999999999999999"]),
    ("ja.turn_2", "judge analyze v.jsonl g.jsonl --conflict-turn 2", 0,
     ["single grades of turn 2 (--conflict-turn)"]),
    # was: 'compares with single grades of turn 0' and every pair left out, no way out said
    ("ja.verdicts_no_turn", "judge analyze v_no_turn.jsonl g.jsonl", 0,
     ["the verdicts name no turn", "give --conflict-turn 1"]),
    ("ja.verdicts_no_turn_1", "judge analyze v_no_turn.jsonl g.jsonl --conflict-turn 1", 0,
     ["single grades of turn 1 (--conflict-turn)", "0.0% (0/2)"]),
    # was: said nothing of the grades it could not read nor of the pairs it left out
    ("ja.grades_nan", "judge analyze v.jsonl g_nan.jsonl", 0,
     ["4 of 8 single grades are missing or not a grade",
      "2 pairs without a single grade of both answers"]),
    # -- judge analyze --gold (MT-Bench human judgments)
    ("jg.good", "judge analyze v.jsonl --gold h.jsonl", 0,
     ["8 votes by 2 judges on 4 pairs and turns", "agreement with --gold on 4 pairs: 100.0%"]),
    ("jg.one_vote", "judge analyze v.jsonl --gold h_one.jsonl", 0,
     ["1 gold label", "agreement with --gold on 1 pair: 100.0%"]),
    # was: every row refused: "turn '1' is not a whole number" (a CSV holds text)
    ("jg.csv", "judge analyze v.jsonl --gold h.csv", 0, ["agreement with --gold on 4 pairs"]),
    # was: '--gold h_turn_nan.jsonl: cannot convert float NaN to integer' (no line, no field)
    ("jg.turn_nan", "judge analyze v.jsonl --gold h_turn_nan.jsonl", 2,
     ["h_turn_nan.jsonl line 1", "'turn'", "turn is 1 or 2"]),
    # was: OverflowError traceback
    ("jg.turn_inf", "judge analyze v.jsonl --gold h_turn_inf.jsonl", 2,
     ["h_turn_inf.jsonl line 1", "'turn'"]),
    # was: accepted: gold labels of turn 0 that match no verdict
    ("jg.turn_0", "judge analyze v.jsonl --gold h_turn_0.jsonl", 2,
     ["h_turn_0.jsonl line 1", "turn 0 is not a whole number from 1"]),
    # was: 'agreement with --gold on 0 pairs: —' and nothing on why
    ("jg.turn_3", "judge analyze v.jsonl --gold h_turn_3.jsonl", 0,
     ["on 0 pairs", "no --gold label matches a verdict", "turns"]),
    # was: accepted: every vote keyed by question 'None', matching nothing
    ("jg.qid_null", "judge analyze v.jsonl --gold h_qid_null.jsonl", 2,
     ["h_qid_null.jsonl line 1", "missing question_id"]),
    # was: 'no question column (one of question, prompt, instruction, input)' (another
    # reader's words)
    ("jg.no_qid", "judge analyze v.jsonl --gold h_no_qid.jsonl", 2,
     ["h_no_qid.jsonl", "no question_id column"]),
    # was: accepted, the --gold read and never used (no agreement line, nothing said)
    ("jg.grades_only", "judge analyze g.jsonl --gold h.jsonl", 2,
     ["--gold h.jsonl", "single grades only", "pairwise verdict files"]),
    ("jg.mixed", "judge analyze v.jsonl --gold h_mixed.jsonl", 2,
     ["h_mixed.jsonl line 3", "unknown winner 'A'", "--skip-invalid"]),
    # was: --skip-invalid (the fix the error names) did not reach the gold reader
    ("jg.mixed_skip", "judge analyze v.jsonl --gold h_mixed.jsonl --skip-invalid", 0,
     ["7 votes", "1 invalid vote skipped", "line 3", "agreement with --gold on 4 pairs"]),
    # -- judge run --output / --cache / --overwrite
    # was: accepted with --overwrite: the pairs file replaced by its own verdicts
    ("jr.output_is_data", f"judge run pairs.jsonl --output pairs.jsonl --model m --overwrite {J}",
     2, ["--output pairs.jsonl is the pairs file being judged", "--output verdicts.jsonl"]),
    ("jr.output_is_data_rel", f"judge run pairs.jsonl --output ./pairs.jsonl --model m {J}", 2,
     ["pairs file being judged"]),
    # was: the SQLite cache made at o.jsonl, then replaced by the verdicts
    ("jr.output_is_cache", f"judge run pairs.jsonl --output o.jsonl --cache o.jsonl --model m {J}",
     2, ["--output o.jsonl is also the --cache file", "--cache judge.sqlite"]),
    ("jr.cache_is_data",
     f"judge run pairs.jsonl --output o.jsonl --cache pairs.jsonl --model m {J}", 2,
     ["--cache pairs.jsonl is the pairs file being judged"]),
    ("jr.output_unwritable", (f"judge run pairs.jsonl --output /proc/nope/o.jsonl --overwrite "
                              f"--model m {J}"), 2,
     ["--output /proc/nope/o.jsonl", "cannot write"]),
    # -- reward eval --judge --verdicts / --overwrite
    # was: accepted: rp.jsonl (the pairs) replaced by the verdicts, even of a failed run
    ("re.verdicts_is_data", f"reward eval --judge m rp.jsonl --verdicts rp.jsonl --overwrite {J}",
     2, ["--verdicts rp.jsonl is the pairs file being judged"]),
    # was: '--verdicts . already exists; pass --overwrite' (with --overwrite: a traceback)
    ("re.verdicts_dir", f"reward eval --judge m rp.jsonl --verdicts adir --overwrite {J}", 2,
     ["--verdicts adir is a folder", "adir/verdicts.jsonl"]),
    # was: FileNotFoundError traceback from mkdir, after every request
    ("re.verdicts_unwritable", f"reward eval --judge m rp.jsonl --verdicts /proc/nope/v.jsonl {J}",
     2, ["--verdicts /proc/nope/v.jsonl", "cannot write"]),
    ("re.verdicts_is_cache", (f"reward eval --judge m rp.jsonl --verdicts judge.sqlite --cache "
                              f"judge.sqlite --overwrite {J}"), 2, ["also the --cache file"]),
    ("re.verdicts_exists", f"reward eval --judge m rp.jsonl --verdicts pairs.jsonl {J}", 2,
     ["--verdicts pairs.jsonl already exists", "--overwrite"]),
    # was: accepted and ignored (nothing is written without --verdicts)
    ("re.overwrite_alone", f"reward eval --judge m rp.jsonl --overwrite {J}", 2,
     ["--overwrite replaces a --verdicts file", "give --verdicts FILE"]),
    # -- rank on 'tie (inconsistent)' winners
    ("rk.jsonl", "rank r.jsonl --rounds 10", 0,
     ["2 rows with winner 'tie (inconsistent)' read as ties", "6 votes"]),
    ("rk.parquet", "rank r.parquet --rounds 10", 0,
     ["2 rows with winner 'tie (inconsistent)' read as ties", "6 votes"]),
    ("rk.parquet_json", "rank r.parquet --rounds 10 --json", 0, ["read as ties", '"rows_read": 6']),
    ("rk.one_vote", "rank r_one.jsonl --rounds 10", 0, ["read as ties", "2 items, 1 vote "]),
]


@pytest.mark.parametrize(("cmd", "code", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_new_surface(tree: Path, cmd: str, code: int, words: list[str],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    check_row(tree, cmd, code, words, monkeypatch,
              unset=("OPENAI_BASE_URL", "OPENAI_API_KEY", "PREFKIT_JUDGE_MODEL",
                     "PREFKIT_ARENA_DB", "PREFKIT_ROUNDS"))


def test_gold_csv_equals_jsonl(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same human judgments as CSV (turn as text) and JSONL give the same agreement."""
    monkeypatch.chdir(tree)
    got = []
    for gold in ("h.jsonl", "h.csv"):
        r = _invoke(["judge", "analyze", "v.jsonl", "--gold", gold, "--json"])
        assert r.exit_code == 0, r.stderr
        got.append(json.loads(r.stdout)["judges"][0]["counts"])
    assert got[0]["agreement_pairs"] == got[1]["agreement_pairs"] == 4
    assert got[0]["agreement"] == got[1]["agreement"] == 1.0


# -- a real `prefkit arena serve` on 127.0.0.1 (SQLite) ---------------------------------------
@pytest.fixture(scope="module")
def server(tree: Path):
    """The arena with 3 models' outputs on one prompt and 2 flags made before it starts
    (flag ids 1 and 2); the admin token from PREFKIT_ARENA_TOKEN. Yields (base URL, the
    process)."""
    from prefkit.arena.store import open_store

    db = tree / "served.db"
    _jsonl(tree / "served.jsonl", [{"prompt_id": "p0", "prompt": "hi", "model": m,
                                    "output": f"o {m}"} for m in "abc"])
    r = _invoke(["arena", "add-outputs", str(tree / "served.jsonl"), "--db", str(db)])
    assert r.exit_code == 0, r.stderr
    store = open_store(str(db))
    assert store.add_flags([(None, None, "outlier", "a"), (None, None, "timing", "b")]) == 2
    store.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("prefkit")
    env = {**os.environ, "PREFKIT_ARENA_TOKEN": "tok", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(exe), "arena", "serve", "--db", str(db), "--port", str(port),
                             "--seed", "3", "--rounds", "20", "--voter-rate", "0",
                             "--ip-rate", "0"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    import httpx

    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            httpx.get(url + "/api/leaderboard", timeout=5)
            break
        except httpx.TransportError:
            assert proc.poll() is None and time.time() < deadline, "the server did not start"
            time.sleep(0.2)
    try:
        yield url, proc
    finally:
        proc.terminate()
        try:
            out = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0]
        assert "Traceback" not in out, out[-3000:]  # no request ended in a 500


def _said(r) -> str:  # the refusal's words: JSON's error, or the HTML page's #error
    if r.headers.get("content-type", "").startswith("application/json"):
        return r.json().get("error", "")
    import html
    import re

    m = re.search(r'<p id="error">(.*?)</p>', r.text, re.DOTALL)
    return html.unescape(m.group(1)) if m else ""


def test_plain_vote_pages_bad_forms(server) -> None:
    """The no-JavaScript forms as a user (or a bot) might fill them. Was: k='²' or a rank
    '²' (str.isdigit is true, int refuses it) ended in 500 Internal Server Error with a
    traceback; a 30 MB form was read whole and accepted."""
    import httpx

    url, _ = server
    c = httpx.Client(base_url=url, follow_redirects=False, timeout=60)
    assert c.get("/vote").status_code == 200
    csrf = c.cookies.get("prefkit_csrf")
    assert csrf
    r = c.post("/vote/battles", data={"k": "2"})  # no CSRF field
    assert r.status_code == 403 and "form token" in _said(r)
    for k in ("²", "٣", "1", "", "abc", "99999999999999999999", "-2", " 2"):
        r = c.post("/vote/battles", data={"k": k, "csrf": csrf})
        assert r.status_code == 400, (k, r.status_code, r.text[-300:])
        assert "field 'k' must be an integer from 2 to" in _said(r), (k, _said(r))
    r = c.post("/vote/battles", data={"k": "4", "csrf": csrf})  # 3 models only
    assert r.status_code == 503 and "fewer than 4 models" in _said(r)
    r = c.post("/vote/battles", data={"k": "2", "csrf": csrf})
    assert r.status_code == 303
    battle = r.headers["location"]
    for form in ({"winner": "z"}, {"winner": ""}, {"winner": "A"}, {},
                 {"rank_a": "²", "rank_b": "1"}):
        r = c.post(battle, data={**form, "csrf": csrf})
        assert r.status_code == 400, (form, r.status_code, r.text[-300:])
    r = c.post(battle, data={"winner": "a", "csrf": csrf, "pad": "x" * (1 << 20)})
    assert r.status_code == 413 and "over 64 KiB" in _said(r)
    r = c.post(battle, data={"winner": "a"})
    assert r.status_code == 403
    r = c.post(battle, data={"winner": "a", "csrf": csrf})
    assert r.status_code == 200 and "Vote recorded." in r.text
    r = c.post(battle, data={"winner": "b", "csrf": csrf})  # a second vote: said, counted once
    assert r.status_code == 200 and "already had your vote; it counts once" in r.text
    other = httpx.Client(base_url=url, timeout=60)
    other.get("/vote")
    r = other.get(battle)
    assert r.status_code == 404 and "of yours" in _said(r)
    assert c.get("/vote/battles/%00%ff<script>").status_code == 404
    # three answers, ranked with the form's selects (1 = best, equal numbers tie). Was: a
    # rank left out said "field 'ranking' ... got None" (the JSON API's field, not the
    # form's); 0, 9 or 5 of 3 were recorded
    for form, words in (({"rank_a": "1", "rank_b": "2"}, "field 'rank_c'"),
                        ({"rank_a": "²", "rank_b": "1", "rank_c": "2"}, "field 'rank_a'"),
                        ({"rank_a": "1", "rank_b": "2", "rank_c": "9"}, "got '9'"),
                        ({"rank_a": "0", "rank_b": "0", "rank_c": "0"}, "got '0'"),
                        ({"winner": "a"}, "this battle has 3 outputs")):
        r = c.post("/vote/battles", data={"k": "3", "csrf": csrf})
        r = c.post(r.headers["location"], data={**form, "csrf": csrf})
        assert r.status_code == 400 and words in _said(r), (form, _said(r))
        if "rank_" in words:
            assert "from 1 to 3 (1 = best, the same number for a tie)" in _said(r)
    r = c.post("/vote/battles", data={"k": "3", "csrf": csrf})
    r = c.post(r.headers["location"], data={"rank_a": "1", "rank_b": "1", "rank_c": "1",
                                            "csrf": csrf})  # a three-way tie is a vote
    assert r.status_code == 200 and "Vote recorded." in r.text


def test_flag_lift_bad_bodies(server) -> None:
    """POST /api/admin/flags/lift with what an admin might send. Was: {"ids": "12"} lifted
    flags 1 and 2 (a string read as its characters); 1.7 and true were read as flag 1; a
    number past SQLite's INTEGER was a 500 with a traceback; 'why' of any JSON type was
    stored as Python's str of it; errors in Python's words ("'int' object is not
    iterable"); the answer did not say why an id was not lifted."""
    import httpx

    url, _ = server
    lift = url + "/api/admin/flags/lift"
    admin = {"Authorization": "Bearer tok"}
    assert httpx.post(lift, json={"ids": [1]}).status_code == 401  # no token
    assert httpx.post(lift, json={"ids": [1]}, headers={"Authorization": "Bearer x"}
                      ).status_code == 401
    bad = {b'{"ids": "12"}': "must be a JSON list of integers, got \"12\"",
           b'{"ids": 1}': "must be a JSON list of integers, got 1",
           b'{"ids": [1.7]}': "1.7 is not a flag id",
           b'{"ids": [true]}': "true is not a flag id",
           b'{"ids": [null]}': "null is not a flag id",
           b'{"ids": ["x"]}': '"x" is not a flag id',
           b'{"ids": [-1]}': "-1 is not a flag id",
           b'{"ids": [0]}': "0 is not a flag id",
           b'{"ids": [99999999999999999999999]}': "99999999999999999999999 is not a flag id",
           b'{"ids": [1], "why": {"a": 1}}': "field 'why' must be a string",
           b'[]': "the body has no field 'ids'",
           b'{"id": 1}': "the body has no field 'ids'",
           b'': "the body is not JSON",
           b'{': "the body is not JSON",
           b'\xff\xfe\x00': "the body is not JSON"}
    for body, words in bad.items():
        r = httpx.post(lift, content=body, headers=admin)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert words in r.json()["error"] and "GET /api/admin/flags" in r.json()["error"], \
            (body, r.json())
    r = httpx.post(lift, content=b'{"ids": [' + b"1," * 20_000 + b'1]}', headers=admin)
    assert r.status_code == 413 and "at most 10,000 ids" in r.json()["error"]
    r = httpx.post(lift, content=b'{"ids": [' + b" " * 700_000 + b"1]}", headers=admin)
    assert r.status_code == 413
    assert httpx.get(url + "/api/admin/flags", headers=admin).json()[0]["lifted"] is False
    # an empty list, a lift, the same again, a flag never made, an id twice in one request
    r = httpx.post(lift, json={"ids": []}, headers=admin)
    assert r.json() == {"lifted": [], "not_lifted": [], "already_lifted": [],
                        "no_such_flag": []}
    r = httpx.post(lift, json={"ids": [1, 1, 77], "why": "a person"}, headers=admin)
    assert r.json() == {"lifted": [1], "not_lifted": [77], "already_lifted": [],
                        "no_such_flag": [77]}
    r = httpx.post(lift, json={"ids": [1, 2]}, headers=admin)
    assert r.json() == {"lifted": [2], "not_lifted": [1], "already_lifted": [1],
                        "no_such_flag": []}
    flags = httpx.get(url + "/api/admin/flags", headers=admin).json()
    assert [(f["id"], f["lifted"]) for f in flags] == [(1, True), (2, True)]
    audit = httpx.get(url + "/api/admin/audit", headers=admin).json()
    lifts = [a["detail"] for a in audit if a["action"] == "lift_flags"]
    assert lifts == [{"flags": [1], "why": "a person"}, {"flags": [2], "why": ""}]


def test_serve_says_which_media_voters_would_see_broken(tree: Path) -> None:
    """serve --max-media-mb below a file added earlier, and a media file moved away since:
    both said at start-up (was: silent; voters saw a broken image, 502 or 404)."""
    (tree / "served_media").mkdir()
    big = tree / "served_media" / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 4000)
    gone = tree / "served_media" / "gone.png"
    gone.write_bytes(b"\x89PNG\r\n\x1a\n")
    rows = [{"prompt_id": "p", "prompt": "hi", "model": m, "output": "o", "media": f}
            for m, f in (("a", "big.png"), ("b", "gone.png"))]
    _jsonl(tree / "served_media" / "o.jsonl", rows)
    db = tree / "served_media" / "m.db"
    r = _invoke(["arena", "add-outputs", str(tree / "served_media" / "o.jsonl"), "--db",
                 str(db)])
    assert r.exit_code == 0, r.stderr
    gone.unlink()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("prefkit")
    proc = subprocess.Popen([str(exe), "arena", "serve", "--db", str(db), "--port", str(port),
                             "--max-media-mb", "0.001"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "1000"})
    try:
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("prefkit arena on"):
                break
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    text = " ".join("".join(lines).split())
    assert "the media files of 1 output are over --max-media-mb 0.001" in text, text
    assert f"{big.resolve()}, 4,008 bytes" in text, text
    assert "the media files of 1 output are gone" in text and str(gone.resolve()) in text, text


def _prefers_good(request) -> str:
    """A judge on 127.0.0.1 (prefkit.llm.server, real HTTP): the answer that starts with
    'good' wins, in either presentation order (MT-Bench's pair prompt)."""
    text = request.messages[-1]["content"]
    a = text.split("[The Start of Assistant A's Answer]\n")[1]
    return "[[A]]" if a.startswith("good") else "[[B]]"


def test_overwrite_says_what_it_replaced(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """judge run --overwrite and reward eval --verdicts --overwrite against a real server:
    the second run replaces the file and says so (was: the same 'wrote' line as a new
    file; reward eval said nothing of the --verdicts it wrote)."""
    from prefkit.llm.server import serve_responder

    monkeypatch.chdir(tree)
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "PREFKIT_JUDGE_MODEL"):
        monkeypatch.delenv(var, raising=False)
    srv = serve_responder(_prefers_good, model="m")
    try:
        url = srv.base_url
        run = ["judge", "run", "pairs.jsonl", "--output", "ow/o.jsonl", "--model", "m",
               "--base-url", url]
        r = _invoke(run)
        assert r.exit_code == 0, r.stderr
        assert "wrote 1 pairwise record to ow/o.jsonl:" in " ".join(r.stderr.split())
        r = _invoke(run)
        assert r.exit_code == 2 and "already exists; pass --overwrite" in r.stderr
        r = _invoke([*run, "--overwrite"])
        assert r.exit_code == 0, r.stderr
        assert "the file that was there is replaced" in " ".join(r.stderr.split())
        assert len((tree / "ow" / "o.jsonl").read_text().splitlines()) == 1
        ev = ["reward", "eval", "--judge", "m", "rp.jsonl", "--base-url", url, "--verdicts",
              "ow/v.jsonl", "--json"]
        r = _invoke(ev)
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["accuracy"] == 1.0  # 'good' chosen, both orders
        assert len((tree / "ow" / "v.jsonl").read_text().splitlines()) == 2
        r = _invoke(ev[:-1] + ["--overwrite"])
        assert r.exit_code == 0, r.stderr
        said = " ".join(r.stderr.split())
        assert "wrote 2 verdicts to --verdicts ow/v.jsonl (--overwrite: the file that was " \
               "there is replaced)" in said, said
    finally:
        srv.close()
