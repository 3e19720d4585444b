"""The new-user campaign of session 7 (2026-12-05): folders written by ``datasets``'
``save_to_disk`` given to the vote verbs, odd CSV dialects and Parquet nulls, the verbs'
warnings and ``--json`` outputs.

The rows are written and checked as in ``test_session6.py`` (``cli_table.check_row``): one run
per row, in-process, in a tree of small inputs; the exit code and the words the output must
hold; no traceback; a refusal (exit 2) changes no file of the tree. Each row failed before its
fix (``# was:`` says what it did then).
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cli_table import check_row
from cli_table import invoke as _invoke

#: Two outputs of arena add-outputs, written in each layout the shared reader takes.
AO_ROWS = [{"prompt_id": "p1", "prompt": "Say hi", "model": "a", "output": "hi"},
           {"prompt_id": "p1", "prompt": "Say hi", "model": "b", "output": "hello"}]
VOTES = [("A", "B", "model_a"), ("B", "C", "tie"), ("C", "A", "model_b"), ("A", "C", "model_a"),
         ("B", "A", "model_b"), ("C", "B", "model_a")]


def _jsonl(path: Path, rows: list) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    datasets = pytest.importorskip("datasets")
    root = tmp_path_factory.mktemp("session7")
    rows = [{"model_a": a, "model_b": b, "winner": w} for a, b, w in VOTES]
    # folders written by datasets' save_to_disk: one Dataset, a DatasetDict, a bad row
    ds = datasets.Dataset.from_list(rows)
    ds.save_to_disk(str(root / "votes_ds"))
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(root / "votes_dd"))
    datasets.Dataset.from_list(rows + [{"model_a": "A", "model_b": "B", "winner": "maybe"}]) \
        .save_to_disk(str(root / "votes_bad"))
    # one pair labelled by PandaLM's 3 annotators (prefkit inspect on a single pair)
    _jsonl(root / "pl1.jsonl", [{"idx": 0, "cmp_key": "m1_m2", "instruction": "q", "input": "",
                                 "response1": "a", "response2": "b", "annotator1": 1,
                                 "annotator2": 2, "annotator3": 0}])
    datasets.Dataset.from_list([{"prompt": "1+1="}, {"prompt": "2+2="}]).save_to_disk(
        str(root / "rl_ds"))
    (root / "ahtml.html").mkdir()  # a folder named as a report
    (root / "plain").mkdir()  # a folder of files, not a saved dataset
    _jsonl(root / "plain" / "v.jsonl", rows)
    # PandaLM's layout, saved as a dataset (prefkit inspect)
    datasets.Dataset.from_list([
        {"idx": i, "cmp_key": "m1_m2", "instruction": f"q{i}", "input": "",
         "response1": "a" * (i + 1), "response2": "b", "annotator1": 1,
         "annotator2": 1 + i % 2, "annotator3": 0} for i in range(4)]
    ).save_to_disk(str(root / "ann_ds"))
    # CSV dialects: Excel's in a locale whose decimal mark is a comma (';'), a TSV file
    (root / "semi.csv").write_text("model_a;model_b;winner\n" + "".join(
        f"{a};{b};{w}\n" for a, b, w in VOTES), encoding="utf-8")
    (root / "semi_bad.csv").write_text("model_a;model_b;winner\nA;B;model_a\nB;C\n",
                                       encoding="utf-8")
    (root / "tab.tsv").write_text("model_a\tmodel_b\twinner\n" + "".join(
        f"{a}\t{b}\t{w}\n" for a, b, w in VOTES), encoding="utf-8")
    (root / "caps.csv").write_text("Model_A, Model_B ,Winner\nA,B,model_a\n", encoding="utf-8")
    (root / "two.csv").write_text("model_a,model_b,winner\nA,B,model_a\n", encoding="utf-8")
    (root / "w0.csv").write_text("model_a,model_b,winner,weight\nA,B,model_a,1\n"
                                 "B,C,tie,0\nC,A,model_b,1\n", encoding="utf-8")
    _jsonl(root / "v1.jsonl", [{"question_id": 1, "model_a": "m1", "model_b": "m2",
                                "judge_id": "j", "winner_ab": "A", "winner_ba": "B",
                                "turn": 1}])
    turn = [{"role": "user", "content": "q"}]
    _jsonl(root / "conv_bad.jsonl", [{"chosen": turn + [{"role": "assistant", "content": "a"},
                                                        {"role": "assistant", "content": "b"}],
                                      "rejected": turn + [{"role": "assistant",
                                                           "content": "c"}]}])
    pa = pytest.importorskip("pyarrow")
    import pyarrow.feather as feather

    feather.write_feather(pa.Table.from_pylist(rows), root / "votes.arrow")
    _jsonl(root / "pairs.jsonl", [{"question_id": 1, "prompt": "hi", "response_a": "good",
                                   "response_b": "bad", "model_a": "m1", "model_b": "m2"}])
    _jsonl(root / "rp.jsonl", [{"prompt": "hi", "chosen": "good", "rejected": "bad"}])
    # arena add-outputs through the shared reader: the same two outputs in every layout
    _jsonl(root / "ao.jsonl", AO_ROWS)
    (root / "ao_semi.csv").write_text("prompt_id;prompt;model;output\n" + "".join(
        f"{r['prompt_id']};{r['prompt']};{r['model']};{r['output']}\n" for r in AO_ROWS),
        encoding="utf-8")
    (root / "ao_bom.csv").write_text("\ufeffprompt_id,prompt,model,output\n" + "".join(
        f"{r['prompt_id']},{r['prompt']},{r['model']},{r['output']}\n" for r in AO_ROWS),
        encoding="utf-8")
    with gzip.open(root / "ao_gz.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in AO_ROWS))
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(AO_ROWS), root / "ao.parquet")
    pq.write_table(pa.Table.from_pylist([AO_ROWS[0], {**AO_ROWS[1], "output": None}]),
                   root / "ao_bad.parquet")
    datasets.Dataset.from_list(AO_ROWS).save_to_disk(str(root / "ao_ds"))
    (root / "ao_ragged.csv").write_text("prompt_id,prompt,model,output\np1,Say hi,a,hi\n"
                                        "p1,Say hi,b,hello,there\n", encoding="utf-8")
    (root / "ao_dupkey.jsonl").write_text(
        '{"prompt_id": "p1", "prompt": "q", "model": "a", "output": "x", "output": "y"}\n',
        encoding="utf-8")
    return root


class _Answers(BaseHTTPRequestHandler):
    """A server on 127.0.0.1 that answers every POST badly, by the path's first part: a web
    page (``/html``), 404 (``/e404``: a --base-url without /v1), 401 (``/e401``)."""

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kind = self.path.split("/")[1]
        code, ctype, body = {
            "html": (200, "text/html", b"<html><body>Welcome to nginx</body></html>"),
            "e401": (401, "application/json",
                     b'{"error": {"message": "Incorrect API key provided"}}'),
        }.get(kind, (404, "application/json", b'{"detail": "Not Found"}'))
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def bad_server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


# id, command (split on spaces), exit code, words the output must hold
CASES: list[tuple[str, str, int, list[str]]] = [
    # -- a folder written by datasets' save_to_disk (the vote verbs read it as reward does)
    # was: "votes_ds is a folder; give a votes file (CSV, JSONL, JSON or Parquet) in it"
    ("ds.rank", "rank votes_ds --json", 0, ['"rows_read": 6']),
    ("ds.diagnose", "diagnose votes_ds", 0, ["3 items, 6 votes"]),
    ("ds.propose", "propose votes_ds --n 2", 0, ["vs"]),
    ("ds.simulate", "simulate votes_ds --runs 1 --max-votes 200", 0, ["active"]),
    ("ds.inspect", "inspect ann_ds", 0, ["4 pairs"]),
    ("ds.split_folder", "rank votes_dd/train --json", 0, ['"rows_read": 6']),
    # rl --task: the prompts of a saved dataset (the model check comes after the prompts)
    # was: "'rl_ds' is a folder; give a file of prompts (JSONL, CSV or Parquet) in it"
    ("ds.rl_task", "rl --model ./no-model --reward length:10 --output o_rl --task rl_ds", 2,
     ["--model ./no-model: no such folder"]),
    # a refusal of a flag's file names the flag (was: '1 problem in plain' alone)
    ("ds.rl_watch_plain", "rl --model ./no-model --reward length:10 --output o_rl --task "
     "rl_ds --watch plain", 2, ["--watch plain: 1 problem in plain", "v.jsonl"]),
    # the same checks and errors as a file
    ("ds.dict", "rank votes_dd", 2, ["DatasetDict with splits train, test",
                                     "votes_dd/train"]),
    ("ds.bad_row", "rank votes_bad", 2, ["'maybe'", "votes_bad row 7", "--skip-invalid"]),
    ("ds.bad_row_skipped", "rank votes_bad --skip-invalid", 0, ["votes_bad row 7"]),
    # a folder that is not a saved dataset names the data files in it
    ("ds.plain", "rank plain", 2, ["is a folder, not a data file", "v.jsonl"]),
    ("ds.plain_inspect", "inspect plain", 2, ["is a folder, not a data file", "v.jsonl"]),
    # -- simulate: the fit of the truth warns as the other verbs note
    # was: "/work/main/src/prefkit/cli/matchmaking.py:137: ProvisionalWarning: ..." and the
    # source line, Python's warning format
    ("sim.provisional", "simulate votes_ds --runs 1 --max-votes 400 --json", 0,
     ["note: the simulated truth: 1 item", "(A)"]),
    # was: matplotlib's ValueError traceback ('Format 'xyz' is not supported') / a
    # FileNotFoundError traceback / a folder 'plain' written as plain.png without a word
    ("sim.plot_suffix", "simulate votes_ds --runs 1 --plot s.xyz", 2,
     ["--plot s.xyz: the file name must end in one of .png"]),
    ("sim.plot_folder", "simulate votes_ds --runs 1 --plot plain", 2,
     ["--plot plain: the file name must end in one of .png"]),
    ("sim.plot_unwritable", "simulate votes_ds --runs 1 --max-votes 400 --plot /proc/x/s.png",
     2, ["--plot /proc/x/s.png: cannot write it"]),
    # the refusal comes before the fit (was: after a ProvisionalWarning about 2 items)
    ("sim.two_items", "simulate two.csv", 2, ["two.csv: 2 items", "at least 3"]),
    # -- arena: --db a folder; export to Parquet
    # was: "cannot open the database (unable to open database file); check the path or URL
    # and that the server is running" / "no such database"
    ("arena.db_folder_import", "arena import semi.csv --db plain", 2,
     ["--db plain is a folder", "plain/arena.db"]),
    ("arena.db_folder_export", "arena export --db plain x.csv", 2,
     ["--db plain is a folder", "plain/arena.db"]),
    # -- reward score: --column (its own refusal named it), a pairs file; the responses are
    # read before the model (no model here: a row that reaches it read them)
    # was: "No such option: --column"
    ("rscore.column", "reward score no_model rp.jsonl --column response=chosen", 2,
     ["no_model: no such model folder"]),
    # was: the missing 'response' column only, after loading the model
    ("rscore.pairs", "reward score no_model rp.jsonl", 2,
     ["missing column 'response'", "this file holds pairs (chosen, rejected)",
      "prefkit reward eval DIR FILE", "--column response=chosen"]),
    # -- counts agree with their nouns where 1 is common (was: '1 item(s)', '1 pairs',
    # 'skipped 1 invalid row(s)', 'these items are marked provisional' of one item)
    ("one.rank", "rank votes_ds --rounds 10", 0,
     ["note: 1 item only won or only lost against the rest (A)", "it is marked provisional",
      "prior-regularised fit for 1 item the bootstrap cannot resolve"]),
    ("one.diagnose", "diagnose votes_ds", 0, ["1 item only won or only lost"]),
    # was: '129 items, 1.67025e+06 votes, 3460 of 8256 pairs compared' (the embedded votes)
    ("diag.thousands", "diagnose --simulations 0 --influence-by none", 0,
     ["129 items, 1,670,250 votes, 3,460 of 8,256 pairs compared", "max 161,827"]),
    ("one.skipped", "rank votes_bad --skip-invalid --rounds 10", 0,
     ["skipped 1 invalid row of votes_bad:"]),
    ("one.inspect", "inspect pl1.jsonl --rounds 5", 0,
     ["read 1 pair, 3 annotators", "pl1.jsonl — 1 pair, 3 annotators, 3 labels"]),
    # was: the weight-0 vote left out without a word
    ("arena.import_weight_0", "arena import w0.csv --db w0.db", 0,
     ["imported 2 votes into w0.db", "left out 1 vote of w0.csv with weight 0"]),
    # was: "No such option: --json" (add-outputs has it)
    ("arena.import_json", "arena import semi.csv --db j.db --json", 0, ['"imported": 6']),
    ("arena.export_json", "arena export --db j.db j.csv --json", 0, ['"votes": 6']),
    ("arena.import_json_refused", "arena import nofile.csv --db j.db --json", 2,
     ["nofile.csv"]),
    # was: "NTR_4: — of 0 4-answer sets" (a judge of two models)
    ("ja.ntr_none", "judge analyze v1.jsonl", 0,
     ["NTR_4: no set of 4 answers to one question whose pairs all have a consistent verdict"]),
    # was: 'after their 1 shared turns chosen has 2 and rejected 1 messages'
    ("one.messages", "reward train conv_bad.jsonl -o o_rt", 2,
     ["after their 1 shared turn chosen has 2 messages and rejected 1 message",
      "conv_bad.jsonl line 1"]),
    # was: "--html ahtml.html is a folder; give a file name (e.g. ahtml.html/leaderboard.png)"
    ("in.html_folder", "inspect pl1.jsonl --rounds 5 --html ahtml.html", 2,
     ["--html ahtml.html is a folder", "ahtml.html/report.html"]),
    # '-' (standard input) as rank and inspect say it; was: "-: no such file"
    ("stdin.reward_train", "reward train - -o o_rt", 2,
     ["-: pairs are read from a file, not from standard input", "cat > pairs.jsonl"]),
    ("stdin.reward_score", "reward score no_model -", 2, ["responses are read from a file"]),
    ("stdin.judge_analyze", "judge analyze -", 2, ["verdicts are read from a file"]),
    ("stdin.judge_run", "judge run - -o o.jsonl --model m", 2,
     ["the pairs to judge are read from a file"]),
    ("stdin.arena_import", "arena import - --db s.db", 2, ["votes are read from a file"]),
    ("stdin.rl_task", "rl --model x --reward length:10 -o o_rl --task -", 2,
     ["--task -: prompts are read from a file"]),
    # another command's input says which command reads it; was: the known formats only
    ("family.pairs_to_rank", "rank rp.jsonl", 2,
     ["these columns are text pairs", "(format trl), read by prefkit reward train"]),
    ("family.votes_to_reward", "reward train semi.csv -o o_rt", 2,
     ["these columns are votes, counts and rankings (format generic), read by prefkit rank"]),
    # -- CSV dialects and Arrow
    # was: "cannot tell the format of this CSV file from its header (columns:
    # model_a;model_b;winner)"
    ("csv.semicolon", "rank semi.csv --json", 0, ['"rows_read": 6']),
    ("csv.tsv", "rank tab.tsv --json", 0, ['"rows_read": 6']),
    # was: "quote fields that contain commas" in a file without a comma
    ("csv.semicolon_ragged", "rank semi_bad.csv", 2,
     ["semi_bad.csv line 3", "expected 3 fields, got 2", "quote fields that contain semicolons"]),
    # was: the known formats only; the near miss was the user's to see
    ("csv.caps", "rank caps.csv", 2,
     ["'Model_A' -> 'model_a'", "' Model_B ' -> 'model_b'", "'Winner' -> 'winner'"]),
    # was: "not UTF-8 text at line 1 ... iconv -f latin1 -t utf-8 votes.arrow"
    ("arrow.file", "rank votes.arrow", 2,
     ["an Arrow IPC (Feather) file", "pq.write_table(f.read_table('votes.arrow'), "
      "'votes.parquet')"]),
    # -- arena add-outputs reads through the shared reader (prefkit.data.table), as every
    # other verb does; was its own JSONL/CSV reader
    # was: "missing column(s) prompt_id, prompt, model, output (columns: prompt_id;prompt;...)"
    ("ao.semicolon", "arena add-outputs ao_semi.csv --db ao1.db", 0,
     ["added or updated 2 outputs of 2 models on 1 prompt"]),
    # was: "missing column(s) prompt_id" (the header's first name held the byte-order mark)
    ("ao.bom", "arena add-outputs ao_bom.csv --db ao2.db", 0,
     ["added or updated 2 outputs of 2 models on 1 prompt"]),
    # was: "not a JSONL or CSV file (its name ends in '.gz')"
    ("ao.gzip", "arena add-outputs ao_gz.jsonl.gz --db ao3.db", 0,
     ["added or updated 2 outputs of 2 models on 1 prompt"]),
    # was: "not a JSONL or CSV file (its name ends in '.parquet')"
    ("ao.parquet", "arena add-outputs ao.parquet --db ao4.db", 0,
     ["added or updated 2 outputs of 2 models on 1 prompt"]),
    # was: "ao_ds: is a folder, not a file"
    ("ao.saved_dataset", "arena add-outputs ao_ds --db ao5.db", 0,
     ["added or updated 2 outputs of 2 models on 1 prompt"]),
    # was: "not a JSONL or CSV file (its name ends in '.parquet')"
    ("ao.bad_row", "arena add-outputs ao_bad.parquet --db ao6.db", 2,
     ["missing or empty output in field 'output' at ao_bad.parquet row 2",
      "give every row a non-empty output"]),
    # was: accepted, the field 'there' dropped without a word
    ("ao.ragged", "arena add-outputs ao_ragged.csv --db ao7.db", 2,
     ["expected 4 fields, got 5 at ao_ragged.csv line 3", "quote fields that contain commas"]),
    # was: accepted, the last 'output' kept without a word
    ("ao.duplicate_key", "arena add-outputs ao_dupkey.jsonl --db ao8.db", 2,
     ["duplicate key 'output' in one JSON object in field 'output' at ao_dupkey.jsonl line 1"]),
    # was: "-: no such file"
    ("stdin.arena_add_outputs", "arena add-outputs - --db ao9.db", 2,
     ["-: outputs are read from a file, not from standard input ('-')",
      "`cat > outputs.jsonl`"]),
]


@pytest.mark.parametrize("cid,cmd,code,words", CASES, ids=[c[0] for c in CASES])
def test_row(tree: Path, cid: str, cmd: str, code: int, words: list[str],
             monkeypatch: pytest.MonkeyPatch) -> None:
    check_row(tree, cmd, code, words, monkeypatch, unset=("PREFKIT_JUDGE_URL",))


# judge run / reward eval --judge against a server that answers every request badly; was: exit
# 0 and a file of error verdicts (a web page after 7 attempts each, 'malformed response:
# Expecting value: line 1 column 1 (char 0)')
SERVER_CASES = [
    ("srv.html", "judge run pairs.jsonl -o o.jsonl --model m --base-url {url}/html/v1", 2,
     ["every request failed the same way", "a web page, not a chat completion",
      "Welcome to nginx", "(1 attempt)", "not a web site", "nothing was written to o.jsonl"]),
    ("srv.404", "judge run pairs.jsonl -o o.jsonl --model m --base-url {url}/e404", 2,
     ["HTTP 404: Not Found", "ends in /v1", "nothing was written to o.jsonl"]),
    ("srv.401", "judge run pairs.jsonl -o o.jsonl --model m --base-url {url}/e401/v1", 2,
     ["HTTP 401: Incorrect API key provided", "Set OPENAI_API_KEY"]),
    ("srv.eval_404", "reward eval --judge m rp.jsonl --base-url {url}/e404 --json", 2,
     ["HTTP 404: Not Found", "ends in /v1", "nothing was written"]),
]


@pytest.mark.parametrize("cid,cmd,code,words", SERVER_CASES, ids=[c[0] for c in SERVER_CASES])
def test_server_row(tree: Path, bad_server: str, cid: str, cmd: str, code: int,
                    words: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    check_row(tree, cmd.format(url=bad_server), code, words, monkeypatch,
              unset=("OPENAI_BASE_URL", "OPENAI_API_KEY", "PREFKIT_JUDGE_MODEL"))


def test_arena_exports_parquet_that_ranks_as_the_csv(tree: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """arena export votes.parquet (pandas and pyarrow users' format; was refused: 'must end
    in .csv or .jsonl'): the same votes as the CSV export, so the same leaderboard."""
    monkeypatch.chdir(tree)
    assert _invoke(["arena", "import", "semi.csv", "--db", "ex.db"]).exit_code == 0
    for name in ("ex.csv", "ex.parquet"):
        r = _invoke(["arena", "export", "--db", "ex.db", name])
        assert r.exit_code == 0, r.stderr
        assert "wrote 6 votes to " + name in r.stderr
    boards = [json.loads(_invoke(["rank", name, "--json", "--seed", "0", "--rounds", "20"]
                                 ).stdout) for name in ("ex.csv", "ex.parquet")]
    assert boards[0]["leaderboard"] == boards[1]["leaderboard"]
    assert boards[1]["input"]["rows_read"] == 6


def test_formats_says_what_reads_a_saved_dataset() -> None:
    # was: only the refusal of a plain folder mentioned save_to_disk
    r = _invoke(["formats"])
    assert r.exit_code == 0
    assert "folder written by datasets' save_to_disk" in r.stdout


def test_arena_outputs_read_alike_in_every_layout(tree: Path) -> None:
    """add-outputs stores the same rows from JSONL, semicolon CSV, CSV with a byte-order
    mark, gzip JSONL, Parquet and a saved dataset folder (the JSONL rows: the old reader's)."""
    from prefkit.arena.content import read_outputs

    want = [(r["prompt_id"], r["prompt"], r["model"], r["output"], "") for r in AO_ROWS]
    for name in ("ao.jsonl", "ao_semi.csv", "ao_bom.csv", "ao_gz.jsonl.gz", "ao.parquet",
                 "ao_ds"):
        assert read_outputs(tree / name) == want, name
