"""The new-user bad-input campaign for the newer commands: ``judge analyze|run``,
``inspect``, ``prm train|eval|score|best-of-n`` and ``arena serve|add-outputs|export|import``.

One row per run, as a new user typed it (run in-process with typer's ``CliRunner``, cwd a
tree of small inputs built once per module): the exit code it must end with and the words
its output must hold. For every row: no traceback (``result.exception`` is None or
SystemExit); a refusal (exit 2) names the file, line, field or flag at fault and the fix
(the ``words``), changes no file of the tree, and with ``--json`` leaves stdout empty or
valid JSON. Rows marked ``# was:`` failed before their fix (what they did then).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cli_table import check_row
from cli_table import invoke as _invoke
from shared_paths import SHARED

JUDGE = SHARED / "data" / "judge"
PRM = SHARED / "data" / "prm" / "processbench_gsm8k.json"
NO_SERVER = "http://127.0.0.1:9/v1"  # nothing listens: no command here reaches a judge


def _jsonl(path: Path, rows: list) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small inputs, a PRM trained on 12 ProcessBench solutions and an arena with 2 votes."""
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("new_verbs")
    (root / "adir").mkdir()
    (root / "empty.jsonl").write_text("")
    (root / "empty.json").write_text("")
    (root / "header.csv").write_text("a,b,c\n")
    _jsonl(root / "wrongcols.jsonl", [{"foo": 1, "bar": 2}])
    (root / "listshape.json").write_text("[1, 2, 3]")
    (root / "notgz.jsonl.gz").write_text('{"a": 1}\n')  # a .gz name over plain text
    (root / "notgz.json.gz").write_text("[1]")
    (root / "zero.jsonl.gz").write_bytes(b"")
    (root / "bad.jinja").write_text("{{ question \n{% if %}")
    (root / "bad.json").write_text("{not json")
    (root / "no_answers.txt").write_text("Judge this. Answer [[A]] or [[B]].")
    v = [{"question_id": i, "model_a": "m1", "model_b": "m2", "judge_id": "j",
          "winner_ab": "A", "winner_ba": "B", "turn": 1} for i in range(3)]
    _jsonl(root / "verdicts.jsonl", v)
    _jsonl(root / "verdicts_null.jsonl", v + [dict(v[0], question_id=9, model_a=None)])
    _jsonl(root / "verdicts_long.jsonl", [dict(x, model_a="模型😀", judge_id="j" * 100_000)
                                          for x in v])
    _jsonl(root / "one_verdict.jsonl", v[:1])
    many = "".join(json.dumps(dict(v[0], question_id=i, judge_id=f"j{i * 7919 % 10007}"))
                   + "\n" for i in range(20_000)).encode()
    whole = gzip.compress(many)
    (root / "cut_early.jsonl.gz").write_bytes(whole[:40])  # ends inside the first line
    (root / "cut_late.jsonl.gz").write_bytes(whole[: len(whole) // 2])  # inside line ~10,000
    _jsonl(root / "pairs.jsonl", [{"prompt": f"q{i}", "response_a": "x", "response_b": "y"}
                                  for i in range(2)])
    pandalm = json.loads((JUDGE / "pandalm" / "testset-v1.json").read_text())[:30]
    (root / "pandalm.json").write_text(json.dumps(pandalm))
    (root / "pandalm_one.json").write_text(json.dumps(pandalm[:1]))
    bad = [dict(x) for x in pandalm[:3]]
    bad[0]["annotator1"], bad[1]["annotator2"] = None, "x"
    (root / "pandalm_bad.json").write_text(json.dumps(bad))
    pb = json.loads(PRM.read_text())
    mix = [x for x in pb if x["label"] == -1][:6] + [x for x in pb if x["label"] != -1][:6]
    (root / "pb.json").write_text(json.dumps(mix))
    (root / "pb_one.json").write_text(json.dumps(mix[:1]))
    _jsonl(root / "cands.jsonl", [{"prompt": "1+1?", "candidates": [["1+1=2", "so 2"], "2"],
                                   "answer": "2"}])
    _jsonl(root / "cands_empty.jsonl", [{"prompt": "1+1?", "candidates": [], "answer": "2"}])
    _jsonl(root / "outputs.jsonl", [{"prompt_id": f"p{i}", "prompt": "hi", "model": m,
                                     "output": "o"} for i in range(2) for m in "ab"])
    (root / "outputs_dup.jsonl").write_text((root / "outputs.jsonl").read_text() * 2)
    (root / "outputs.csv").write_text("prompt_id,prompt\n")
    (root / "votes.csv").write_text("model_a,model_b,winner\na,b,model_a\nb,a,tie\n")
    old = Path.cwd()
    os.chdir(root)
    try:
        for args in (["prm", "train", "pb.json", "--output", "prm1", "--epochs", "2",
                      "--json"],
                     ["arena", "import", "votes.csv", "--db", "votes.db"],
                     ["arena", "import", "votes.csv", "--db", "twice.db"]):
            r = _invoke(args)
            assert r.exit_code == 0, (args, r.stdout, r.stderr, r.exception)
    finally:
        os.chdir(old)
    (root / "partial").mkdir()  # a PRM folder with only its config.json
    shutil.copy(root / "prm1" / "config.json", root / "partial" / "config.json")
    return root


# id, command (split on spaces), exit code, words the output must hold
CASES: list[tuple[str, str, int, list[str]]] = [
    # -- judge analyze
    ("ja.missing", "judge analyze nope.jsonl", 2, ["nope.jsonl", "no such file"]),
    ("ja.dir", "judge analyze adir", 2, ["adir", "folder"]),
    ("ja.empty", "judge analyze empty.jsonl", 2, ["empty.jsonl", "no rows", "add at least"]),
    ("ja.header", "judge analyze header.csv", 2, ["header.csv", "below the header"]),
    ("ja.wrongcols", "judge analyze wrongcols.jsonl", 2, ["wrongcols.jsonl", "--format"]),
    ("ja.list", "judge analyze listshape.json", 2, ["listshape.json", "record 1", "object"]),
    # was: gzip.BadGzipFile traceback (every reader over data/table.py)
    ("ja.notgz", "judge analyze notgz.jsonl.gz", 2,
     ["notgz.jsonl.gz", "not gzip-compressed", "mv notgz.jsonl.gz notgz.jsonl"]),
    # was: 'Aborted.' and exit 1 (click reads the EOFError of a cut gzip stream as Ctrl-D)
    ("ja.cut_early", "judge analyze cut_early.jsonl.gz", 2,
     ["cut_early.jsonl.gz", "damaged gzip", "gzip -t"]),
    ("ja.cut_late", "judge analyze cut_late.jsonl.gz", 2, ["cut_late.jsonl.gz", "damaged gzip"]),
    ("ja.zero_gz", "judge analyze zero.jsonl.gz", 2, ["zero.jsonl.gz", "no rows"]),
    ("ja.null", "judge analyze verdicts_null.jsonl", 2,
     ["verdicts_null.jsonl line 4", "model_a", "--skip-invalid"]),
    ("ja.one", "judge analyze one_verdict.jsonl", 0, ["100.0% (1/1)"]),
    # was: the 100,000-character judge name printed whole, the table's columns crushed
    ("ja.long", "judge analyze verdicts_long.jsonl", 0, ["(100,000 characters)", "(3/3)"]),
    # was: ValueError traceback 'k must be at least 3'
    ("ja.k0", "judge analyze verdicts.jsonl --k 0", 2, ["--k 0", "at least 3", "--k 4"]),
    ("ja.kneg", "judge analyze verdicts.jsonl --k -1", 2, ["--k -1", "at least 3"]),
    ("ja.json_bad", "judge analyze empty.jsonl --json", 2, ["empty.jsonl", "no rows"]),
    ("ja.gold_missing", "judge analyze verdicts.jsonl --gold nope.json", 2,
     ["nope.json", "no such file"]),
    ("ja.repair", "judge analyze verdicts.jsonl --repair foo", 2, ["--repair", "likelihood"]),
    # -- judge run (nothing reaches a server: each is refused first)
    ("jr.missing", "judge run nope.jsonl --output o.jsonl --model m", 2,
     ["nope.jsonl", "no such file"]),
    # was: 'adir: no such file' for a folder
    ("jr.dir", "judge run adir --output o.jsonl --model m", 2, ["adir: is a folder"]),
    ("jr.empty", f"judge run empty.jsonl --output o.jsonl --model m --base-url {NO_SERVER}", 2,
     ["empty.jsonl", "no rows"]),
    ("jr.wrongcols", (f"judge run wrongcols.jsonl --output o.jsonl --model m --base-url "
                      f"{NO_SERVER}"), 2, ["wrongcols.jsonl", "question column"]),
    ("jr.notgz", f"judge run notgz.jsonl.gz --output o.jsonl --model m --base-url {NO_SERVER}",
     2, ["notgz.jsonl.gz", "not gzip-compressed"]),
    ("jr.concurrency0", "judge run pairs.jsonl --output o.jsonl --model m --concurrency 0", 2,
     ["--concurrency"]),
    ("jr.output_dir", "judge run pairs.jsonl --output adir --model m", 2,
     ["--output adir is a folder", "adir/verdicts.jsonl"]),
    ("jr.no_model", "judge run pairs.jsonl --output o.jsonl", 2, ["--model", "PREFKIT_JUDGE"]),
    ("jr.template", "judge run pairs.jsonl --output o.jsonl --model m --template nope", 2,
     ["--template", "nope", "mtbench_pair"]),
    # was: judged every pair first, then a FileNotFoundError traceback from mkdir
    ("jr.output_unwritable", (f"judge run pairs.jsonl --output /proc/nope/o.jsonl --model m "
                              f"--base-url {NO_SERVER}"), 2,
     ["--output /proc/nope/o.jsonl", "cannot write"]),
    ("jr.template_jinja", ("judge run pairs.jsonl --output o.jsonl --model m --template "
                           "bad.jinja"), 2,
     ["--template", "bad.jinja", "not a valid Jinja template", "line 2"]),
    # was: '--template: Expecting property name ...' (no file, no fix)
    ("jr.template_json", "judge run pairs.jsonl --output o.jsonl --model m --template bad.json",
     2, ["bad.json", "malformed JSON", '{"user": "..."}']),
    # was: accepted: every pair sent as the same prompt (the answers never shown)
    ("jr.template_no_answers", ("judge run pairs.jsonl --output o.jsonl --model m --template "
                                "no_answers.txt"), 2,
     ["no_answers.txt", "never reads answer_a, answer_b",
                           "{{ answer_a }}"]),
    # was: 'Pass base_url=' (Python's word)
    ("jr.no_server", "judge run pairs.jsonl --output o.jsonl --model m", 2,
     ["no server", "Pass --base-url", "OPENAI_BASE_URL"]),
    # was: sqlite3.OperationalError traceback 'unable to open database file'
    ("jr.cache_dir", (f"judge run pairs.jsonl --output o.jsonl --model m --cache adir "
                      f"--base-url {NO_SERVER}"), 2,
     ["--cache adir is a folder", "adir/judge.sqlite"]),
    # -- inspect
    ("in.missing", "inspect nope.json", 2, ["nope.json", "no such file"]),
    ("in.dir", "inspect adir", 2, ["adir: is a folder, not a data file"]),
    ("in.empty", "inspect empty.json", 2, ["empty.json", "no rows"]),
    ("in.header", "inspect header.csv", 2, ["header.csv", "below the header"]),
    ("in.wrongcols", "inspect wrongcols.jsonl", 2, ["annotations_long", "--format"]),
    ("in.notgz", "inspect notgz.json.gz", 2, ["notgz.json.gz", "not gzip-compressed"]),
    ("in.cut_early", "inspect cut_early.jsonl.gz", 2, ["cut_early.jsonl.gz", "damaged gzip"]),
    ("in.bad_labels", "inspect pandalm_bad.json --rounds 5", 2,
     ["pandalm_bad.json record 1", "record 2", "annotator1", "annotator2", "--skip-invalid"]),
    ("in.one_pair", "inspect pandalm_one.json --rounds 5", 0, ["alpha is undefined"]),
    ("in.rounds_neg", "inspect pandalm.json --rounds -1", 2, ["--rounds"]),
    ("in.plot_suffix", "inspect pandalm.json --plot r.xyz", 2, ["--plot r.xyz", ".png"]),
    # was: FileNotFoundError traceback from matplotlib (and from write_text for --html)
    ("in.plot_unwritable", "inspect pandalm.json --rounds 5 --plot /proc/nope/r.png", 2,
     ["--plot /proc/nope/r.png", "cannot write", "another path"]),
    ("in.html_unwritable", "inspect pandalm.json --rounds 5 --html /proc/nope/r.html", 2,
     ["--html /proc/nope/r.html", "cannot write"]),
    ("in.json_bad", "inspect empty.json --json", 2, ["empty.json", "no rows"]),
    ("in.column", "inspect pandalm.json --column pair", 2, ["--column", "KEY=VALUE"]),
    # was: "unknown key(s) 'foo' in columns=" (Python's word)
    ("in.column_key", "inspect pandalm.json --column foo=bar", 2,
     ["pandalm.json", "'foo' in --column", "'pair'"]),
    ("pt.column_key", "prm train pb.json --output p3 --column foo=bar", 2,
     ["pb.json", "'foo' in --column"]),
    ("in.reward_model", "inspect pandalm.json --reward-model adir", 2,
     ["adir", "reward-model folder"]),
    # -- prm train
    ("pt.again", "prm train pb.json --output prm1 --epochs 2", 2,
     ["prm1 already holds a run", "--resume", "--overwrite"]),
    ("pt.missing", "prm train nope.json --output p2", 2, ["nope.json", "no such file"]),
    ("pt.dir", "prm train adir --output p2", 2, ["adir", "folder"]),
    ("pt.empty", "prm train empty.json --output p2", 2, ["empty.json", "no rows"]),
    ("pt.notgz", "prm train notgz.json.gz --output p2", 2, ["not gzip-compressed"]),
    # was: ValueError traceback 'too few solutions to hold out a validation part'
    ("pt.one", "prm train pb_one.json --output p2 --epochs 1", 2,
     ["pb_one.json", "too few solutions (1)", "two erroneous or two correct"]),
    # was: "--epochs and batch_size must be >= 1 and --learning-rate > 0" (for any of them)
    ("pt.epochs0", "prm train pb.json --output p3 --epochs 0", 2,
     ["--epochs must be >= 1, got 0"]),
    ("pt.lr0", "prm train pb.json --output p3 --learning-rate 0", 2,
     ["--learning-rate must be > 0, got 0.0"]),
    ("pt.val0", "prm train pb.json --output p3 --val-fraction 0", 2, ["--val-fraction"]),
    # was: accepted (exit 0, a linear head)
    ("pt.hidden_neg", "prm train pb.json --output p3 --hidden -1", 2, ["--hidden"]),
    ("pt.output_file", "prm train pb.json --output pb.json", 2, ["pb.json is a file"]),
    # was: FileNotFoundError traceback from mkdir
    ("pt.output_unwritable", "prm train pb.json --output /proc/nope/run --epochs 1", 2,
     ["--output /proc/nope/run", "cannot write", "another folder"]),
    # was: an OSError from the encoder reported as '--output p3: cannot write the run there'
    ("pt.backbone", "prm train pb.json --output p3 --backbone nope --epochs 1", 2,
     ["--backbone 'nope'", "neither a folder nor a Hub model", "no --backbone"]),
    # -- prm eval
    # was: "[Errno 2] No such file or directory: 'partial/backbone.json'"
    ("pe.partial_model", "prm eval partial pb.json", 2,
     ["partial: not a finished PRM folder", "backbone.json is missing", "prm train"]),
    ("pe.model_missing", "prm eval nope pb.json", 2, ["nope", "prm train"]),
    ("pe.model_file", "prm eval pb.json pb.json", 2, ["pb.json is a file"]),
    ("pe.data_dir", "prm eval prm1 adir", 2, ["adir", "folder"]),
    ("pe.one_kind", "prm eval prm1 pb_one.json", 2, ["pb_one.json", "both erroneous and"]),
    ("pe.notgz", "prm eval prm1 notgz.json.gz --json", 2, ["not gzip-compressed"]),
    # was: accepted (exit 0): nan flags nothing, 2 flags every step
    ("pe.threshold_nan", "prm eval prm1 pb.json --threshold nan", 2, ["--threshold", "[0, 1]"]),
    ("pe.threshold_2", "prm eval prm1 pb.json --threshold 2 --json", 2, ["--threshold 2.0"]),
    ("pe.good", "prm eval prm1 pb.json --json", 0, ['"f1"']),
    # -- prm score / best-of-n
    ("ps.missing", "prm score prm1 nope.jsonl", 2, ["nope.jsonl", "no such file"]),
    ("ps.empty_candidates", "prm score prm1 cands_empty.jsonl", 2,
     ["cands_empty.jsonl line 1", "candidates", "--skip-invalid"]),
    ("ps.notgz", "prm score prm1 notgz.jsonl.gz", 2, ["not gzip-compressed"]),
    # was: 'cands.jsonl: unicodeescape codec can't decode' (blamed the file)
    ("ps.separator", "prm score prm1 cands.jsonl --separator \\x", 2,
     ["--separator", "not a valid escape", "new line"]),
    ("ps.cut_late", "prm score prm1 cut_late.jsonl.gz", 2, ["cut_late.jsonl.gz", "damaged"]),
    ("bn.empty", "prm best-of-n prm1 empty.jsonl --json", 2, ["empty.jsonl", "no rows"]),
    ("bn.notgz", "prm best-of-n prm1 notgz.jsonl.gz", 2, ["not gzip-compressed"]),
    ("bn.good", "prm best-of-n prm1 cands.jsonl", 0, ["accuracy on 1 prompts"]),
    # -- arena serve (each refused before a server starts)
    # was: no check; uvicorn hung on port 99999
    ("as.port_big", "arena serve --db a.db --port 99999", 2, ["--port", "65535"]),
    ("as.port_neg", "arena serve --db a.db --port -1", 2, ["--port"]),
    # was: accepted
    ("as.rate_neg", "arena serve --db a.db --voter-rate -1", 2, ["--voter-rate"]),
    ("as.reasons", "arena serve --db a.db --auto-flag-reasons x", 2,
     ["--auto-flag-reasons", "outlier"]),
    # -- arena add-outputs
    ("ao.missing", "arena add-outputs nope.jsonl --db b.db", 2, ["nope.jsonl", "no such file"]),
    # was: 'adir: no such file'
    ("ao.dir", "arena add-outputs adir --db b.db", 2, ["adir", "is a folder"]),
    ("ao.empty", "arena add-outputs empty.jsonl --db b.db", 2, ["empty.jsonl", "no rows"]),
    ("ao.header", "arena add-outputs outputs.csv --db b.db", 2,
     ["outputs.csv: missing columns model, output (columns: prompt_id, prompt)"]),
    # was: '... pass --skip-invalid', an option add-outputs does not have
    ("ao.wrongcols", "arena add-outputs wrongcols.jsonl --db b.db", 2,
     ["wrongcols.jsonl line 1", "prompt_id", "non-empty"]),
    # records of a one-line JSON list are named by their number (the shared reader's words)
    ("ao.list", "arena add-outputs listshape.json --db b.db", 2,
     ["expected a JSON object, got int at listshape.json record 1", '"prompt_id": "p1"']),
    # was: read as CSV: "missing column(s) ... (columns: {"a": 1})"; then "not a JSONL or CSV
    # file", as a real .gz was (read since add-outputs reads through prefkit.data.table)
    ("ao.gz", "arena add-outputs notgz.jsonl.gz --db b.db", 2,
     ["notgz.jsonl.gz: named .gz but not gzip-compressed", "mv notgz.jsonl.gz notgz.jsonl"]),
    ("ao.db_not_db", "arena add-outputs outputs.jsonl --db pb.json", 2,
     ["--db pb.json", "not a database"]),
    # -- arena import / export
    ("ai.missing", "arena import nope.csv --db c.db", 2, ["nope.csv", "no such file"]),
    ("ai.dir", "arena import adir --db c.db", 2, ["adir", "folder"]),
    ("ai.wrongcols", "arena import wrongcols.jsonl --db c.db", 2, ["generic", "--format"]),
    ("ai.cut_late", "arena import cut_late.jsonl.gz --db c.db", 2, ["damaged gzip"]),
    ("ai.notgz", "arena import notgz.jsonl.gz --db c.db", 2, ["not gzip-compressed"]),
    # was: created nope.db, then 'nope.db has no votes to export'
    ("ax.db_missing", "arena export --db nope.db ex.csv", 2, ["--db nope.db", "no such database"]),
    # was: wrote CSV into ex.xyz
    ("ax.suffix", "arena export --db votes.db ex.xyz", 2, ["ex.xyz", ".csv, .jsonl or .parquet"]),
    # was: IsADirectoryError traceback
    ("ax.output_dir", "arena export --db votes.db adir", 2, ["adir is a folder"]),
    # was: FileNotFoundError traceback
    ("ax.output_unwritable", "arena export --db votes.db /proc/nope/ex.csv", 2,
     ["/proc/nope/ex.csv", "cannot write"]),
    ("ax.good", "arena export --db votes.db ex.jsonl", 0, ["wrote 2 votes to ex.jsonl"]),
    ("ao.good", "arena add-outputs outputs.jsonl --db outputs.db", 0,
     ["added or updated 4 outputs of 2 models on 2 prompts"]),
    # was: 'added 4 outputs' again (they replace the first ones)
    ("ao.again", "arena add-outputs outputs.jsonl --db outputs.db", 0,
     ["added or updated 4 outputs"]),
    ("ao.dup_rows", "arena add-outputs outputs_dup.jsonl --db outputs.db", 2,
     ["outputs_dup.jsonl line 5", "a second output of model 'a'", "one output per prompt"]),
    # was: silent (the votes counted twice)
    ("ai.again", "arena import votes.csv --db twice.db", 0,
     ["imported 2 votes", "already held 2 votes", "counts its votes twice"]),
]


@pytest.mark.parametrize(("cmd", "code", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_new_verb(tree: Path, cmd: str, code: int, words: list[str],
                  monkeypatch: pytest.MonkeyPatch) -> None:
    check_row(tree, cmd, code, words, monkeypatch, flat=False, json_ok=False,
              unset=("OPENAI_BASE_URL", "OPENAI_API_KEY", "PREFKIT_JUDGE_MODEL"))


def test_export_reads_back(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exported votes are the imported ones (a second export into the same file
    replaces it, row for row)."""
    monkeypatch.chdir(tree)
    for _ in range(2):
        assert _invoke(["arena", "export", "--db", "votes.db", "again.csv"]).exit_code == 0
    rows = (tree / "again.csv").read_text().splitlines()
    assert len(rows) == 3, rows  # the header and the 2 imported votes, written once


def _prefkit(args: list[str], cwd: Path, **kw):  # the console script, real stdout/stderr
    exe = Path(sys.executable).with_name("prefkit")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([str(exe), *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_subprocess_streams(tree: Path) -> None:
    """As installed: a refusal with --json leaves stdout empty; a scoring run prints only
    JSON lines on stdout (progress and notes on stderr)."""
    p = _prefkit(["judge", "analyze", "empty.jsonl", "--json"], tree)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2 and out == "" and "empty.jsonl" in err and "Traceback" not in err
    p = _prefkit(["prm", "score", "prm1", "cands.jsonl"], tree)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["candidate"] for r in rows] == [0, 1] and len(rows[0]["step_scores"]) == 2


def test_judge_run_ctrl_c(tree: Path) -> None:
    """Ctrl-C while requests are in flight (a real server on 127.0.0.1 that accepts and
    never answers): exit 130, a message on how to resume, no traceback, no output file."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    accepted = threading.Event()

    def accept() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)
            accepted.set()

    threading.Thread(target=accept, daemon=True).start()
    port = srv.getsockname()[1]
    p = _prefkit(["judge", "run", "pairs.jsonl", "--output", "ctrl_c.jsonl", "--model", "m",
                  "--base-url", f"http://127.0.0.1:{port}/v1", "--cache", "ctrl_c.sqlite"],
                 tree)
    try:
        assert accepted.wait(120), "the judge never sent a request"
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill() if p.poll() is None else None
        srv.close()
        for c in held:
            c.close()
    assert p.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err and "--cache ctrl_c.sqlite" in err
    assert not (tree / "ctrl_c.jsonl").exists()


def test_arena_serve_port_in_use(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A port another server listens on (a real socket): refused before the database and
    the admin token are made. Was: uvicorn's 'address already in use', exit 3, a new
    database and a printed admin token."""
    monkeypatch.chdir(tree)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = _invoke(["arena", "serve", "--db", "busy.db", "--port", str(port)])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == 2, r.stderr
    assert f"--port {port}" in r.stderr and "another --port" in r.stderr
    assert not (tree / "busy.db").exists() and "admin token" not in r.stderr
