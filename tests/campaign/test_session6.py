"""The new-user campaign of session 6 (2026-12-05) on the newest surface: ``prefkit rl``'s
prompt files and flags, ``prefkit inspect``'s model options, the readers' unknown-format
message and the README's commands.

The rows are written and checked as in ``test_new_surface.py``: one run per row, in-process
(typer's ``CliRunner``) in a tree of small inputs; the exit code and the words the output must
hold; no traceback; a refusal (exit 2) changes no file of the tree. Each row failed before its
fix (``# was:`` says what it did then).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_table import check_row
from cli_table import invoke as _invoke


def _jsonl(path: Path, rows: list) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("session6")
    (root / "adir").mkdir()
    # prompt files for prefkit rl --task
    _jsonl(root / "rl_ok.jsonl", [{"prompt": "1+1="}, {"prompt": "2+2="}])
    _jsonl(root / "rl_gsm.jsonl", [{"question": "1+1=", "answer": "#### 2"}])
    (root / "rl_bom.csv").write_bytes(b"\xef\xbb\xbfprompt\r\n1+1=\r\n2+2=\r\n")  # Excel's CSV
    (root / "rl_latin1.csv").write_bytes("prompt\n1+1=\ncaf\xe9\n".encode("latin1"))
    (root / "rl_dup.csv").write_text("prompt,prompt\n1+1=,2+2=\n", encoding="utf-8")
    (root / "rl_extra.csv").write_text('prompt\n1+1=\n"2+2=",extra\n', encoding="utf-8")
    (root / "rl_dupkey.jsonl").write_text('{"prompt": "a", "prompt": "b"}\n', encoding="utf-8")
    (root / "rl_list.json").write_text(json.dumps([{"prompt": "1+1="}]), encoding="utf-8")
    _jsonl(root / "rl_num.jsonl", [{"prompt": "1+1="}, {"prompt": 5}])
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"prompt": "1+1=", "extra": 1},
                                         {"prompt": "2+2=", "extra": 2}]),
                   root / "rl.parquet")
    (root / "xyz.csv").write_text("x,y,z\n1,2,3\n", encoding="utf-8")  # no format's columns
    # the long layout with a gold column: pair 1's two rows disagree on it
    (root / "long_gold.csv").write_text("pair_id,annotator,label,gold\n1,w1,a,a\n1,w2,b,b\n"
                                        "2,w1,a,a\n2,w2,a,a\n", encoding="utf-8")
    (root / "long_gold_blank.csv").write_text("pair_id,annotator,label,gold\n1,w1,a,a\n"
                                              "1,w2,b,\n2,w1,a,\n2,w2,a,b\n",
                                              encoding="utf-8")
    odd = "left,right,choice\nA,B,a\nB,C,b\nC,A,a\nA,C,a\nB,A,b\nC,B,tie\n"
    (root / "odd.csv").write_text(odd, encoding="utf-8")  # votes under columns no format names
    (root / "odd_bad.csv").write_text(odd + "A,B,maybe\n", encoding="utf-8")
    _jsonl(root / "rp.jsonl", [{"prompt": f"q{i}", "chosen": "good", "rejected": "bad"}
                               for i in range(2)])
    (root / "two.csv").write_text("model_a,model_b,winner\nA,B,a\nB,A,b\n", encoding="utf-8")
    # PandaLM's layout (prefkit inspect): 3 annotators' labels of 4 pairs
    _jsonl(root / "pl.jsonl", [{"idx": i, "cmp_key": "m1_m2", "instruction": f"q{i}",
                                "input": "", "response1": "a" * (i + 1), "response2": "b",
                                "annotator1": 1, "annotator2": 1 + i % 2, "annotator3": 0}
                               for i in range(4)])
    # pandas writes an integer column with a blank as floats: 1.0, 2.0, ''
    (root / "wide_float.csv").write_text(
        "pair_id,gpt4,human\n0,1.0,1\n1,2.0,2\n2,0.0,2\n3,,1\n", encoding="utf-8")
    pl = [json.loads(x) for x in (root / "pl.jsonl").read_text().splitlines()]
    pl[2]["annotator2"] = "x"
    (root / "pl_one_line.json").write_text(json.dumps(pl), encoding="utf-8")
    (root / "pl_indented.json").write_text(
        "[\n" + ",\n".join(json.dumps(r) for r in pl) + "\n]\n", encoding="utf-8")
    pytest.importorskip("transformers")
    from prefkit.align.tiny import char_tokenizer, tiny_llama

    tok = char_tokenizer()  # a tiny Llama: a policy and reference for inspect, align's model
    tiny_llama(len(tok), seed=0).save_pretrained(root / "llama")
    tok.save_pretrained(root / "llama")
    # judge verdicts in both orders (mt_bench_repro's layout), line 3 not JSON
    good = [json.dumps({"question_id": q, "model_a": "m1", "model_b": "m2", "judge_id": "j",
                        "winner_ab": "A", "winner_ba": "B", "turn": 1}) for q in range(1, 5)]
    (root / "v_bad_line.jsonl").write_text("\n".join(good[:2] + ["{oops"] + good[2:]) + "\n",
                                           encoding="utf-8")
    return root


# the model check comes after the prompts are read: a run that reaches it read them
RL = "rl --model ./no-model --reward length:10 --output o_rl --task"
# id, command (split on spaces), exit code, words the output must hold
CASES: list[tuple[str, str, int, list[str]]] = [
    # -- prefkit rl: prompt files
    # was: "no prompt column" (the header read as '\ufeffprompt')
    ("rl.bom_csv", f"{RL} rl_bom.csv", 2, ["--model ./no-model: no such folder"]),
    # was: "'utf-8' codec can't decode byte 0x94 in position 262" (Parquet read as text)
    ("rl.parquet", f"{RL} rl.parquet", 2, ["--model ./no-model: no such folder"]),
    # was: "'utf-8' codec can't decode byte 0xe9 in position 10" (no line, no fix)
    ("rl.latin1", f"{RL} rl_latin1.csv", 2,
     ["rl_latin1.csv", "not UTF-8 text at line 3", "iconv -f latin1 -t utf-8"]),
    # was: "task file 'adir' does not exist" (it does: a folder)
    ("rl.folder", f"{RL} adir", 2, ["--task adir", "adir: is a folder, not a data file"]),
    ("rl.watch_folder", f"{RL} rl_ok.jsonl --watch adir", 2,
     ["--watch adir", "is a folder"]),
    # was: "the 'prompt' field is missing or empty" for the number 5
    ("rl.number_prompt", f"{RL} rl_num.jsonl", 2,
     ["rl_num.jsonl line 2", "'prompt' field is not text (int 5)"]),
    # was: IndexError traceback (str.format with a positional field)
    ("rl.template_positional", f"{RL} rl_gsm.jsonl --template Q:{{0}}", 2,
     ["--template 'Q:{0}'", "{0} is a position, not a column"]),
    ("rl.template_empty_braces", f"{RL} rl_gsm.jsonl --template Q:{{}}", 2,
     ["--template 'Q:{}'", "is a position"]),
    # was: "--task rl_gsm.jsonl: expected '}' before end of string" (the wrong flag, no fix)
    ("rl.template_unclosed", f"{RL} rl_gsm.jsonl --template Q:{{question", 2,
     ["--template 'Q:{question'", "expected '}'", "double a literal brace"]),
    ("rl.template_ok", f"{RL} rl_gsm.jsonl --template Q:{{question}}", 2,
     ["--model ./no-model: no such folder"]),
    # was: "the file holds no rows" (it holds one); --limit -1 dropped the last prompt silently
    ("rl.limit_0", f"{RL} rl_gsm.jsonl --limit 0", 2,
     ["--limit must be at least 1 (prompts), got 0"]),
    ("rl.limit_neg", f"{RL} rl_ok.jsonl --limit -1", 2,
     ["--limit must be at least 1 (prompts), got -1"]),
    # was: the second 'prompt' column silently won (csv.DictReader keeps the last)
    ("rl.dup_column", f"{RL} rl_dup.csv", 2,
     ["rl_dup.csv line 1", "duplicate column name 'prompt'"]),
    # was: the row's extra field silently dropped
    ("rl.extra_field", f"{RL} rl_extra.csv", 2,
     ["rl_extra.csv line 3", "expected 1 fields, got 2"]),
    # was: the second value silently won (json.loads keeps the last)
    ("rl.dup_key", f"{RL} rl_dupkey.jsonl", 2,
     ["rl_dupkey.jsonl line 1", "duplicate key 'prompt'"]),
    # was: "line 1: not a JSON object" (a JSON list of prompts, as json.dump writes it)
    ("rl.json_list", f"{RL} rl_list.json", 2, ["--model ./no-model: no such folder"]),
    # -- prefkit rl: the config's words in the command line's
    # was: "micro_--batch-size must be >= 1, got 0"
    ("rl.micro_batch_0", f"{RL} rl_ok.jsonl --micro-batch-size 0", 2,
     ["--micro-batch-size must be >= 1, got 0"]),
    # was: "algo must be one of ['grpo', 'online_dpo', ...]" (not --algo's spelling)
    ("rl.algo_bogus", f"{RL} rl_ok.jsonl --algo bogus", 2,
     ["--algo must be one of", "'online-dpo'", "'reinforce-pp'"]),
    # was: "precision must be 'fp32' or 'bf16'"
    ("rl.precision", f"{RL} rl_ok.jsonl --precision fp16", 2, ["--precision must be 'fp32'"]),
    # was: "online_dpo uses the DPO loss; leave loss unset"
    ("rl.odpo_loss", f"{RL} rl_ok.jsonl --algo online-dpo --loss grpo", 2,
     ["online-dpo uses the DPO loss; leave --loss unset"]),
    # -- prefkit rl --reward
    # was: re.error traceback
    ("rl.reward_regex", f"{RL} rl_ok.jsonl --reward format:[", 2,
     ["reward 'format:[': '[' is not a regular expression", "format:^\\[ANSWER\\]"]),
    # was: "could not convert string to float: 'abc'" (which reward, what to give: not said)
    ("rl.reward_length_text", f"{RL} rl_ok.jsonl --reward length:abc", 2,
     ["reward 'length:abc': the scale must be a number of characters > 0, e.g. length:100"]),
    # was: accepted (a reward that is 0 for every completion)
    ("rl.reward_length_inf", f"{RL} rl_ok.jsonl --reward length:inf", 2,
     ["reward 'length:inf': the scale must be"]),
    # was: "name the checker, exact:gsm8k or exact:math" (it was named: an unknown one)
    ("rl.reward_checker", f"{RL} rl_ok.jsonl --reward exact:bogus", 2,
     ["unknown checker 'bogus'", "exact:gsm8k", "exact:math"]),
    # was: accepted; the model loaded and the first step sampled before the reward raised
    ("rl.reward_code_column", f"{RL} rl_ok.jsonl --reward code", 2,
     ["--reward 'code' reads the task's column 'tests', which --task rl_ok.jsonl lacks",
      "(columns: prompt)"]),
    ("rl.reward_ref_column", f"{RL} rl_ok.jsonl --reward logsigmoid(length:10;ref=nope)", 2,
     ["reads the task's column 'nope'"]),
    ("rl.reward_ref_number", f"{RL} rl_ok.jsonl --reward logsigmoid(length:10;ref=0.5)", 2,
     ["--model ./no-model: no such folder"]),
    # -- prefkit simulate
    # was: --top 0 ignored (all 129 models of the embedded votes simulated)
    ("sim.top_0", "simulate --top 0", 2, ["--top must be at least 3", "got 0"]),
    # was: ValueError traceback ('need >= 3 items, batch >= 1, ...')
    ("sim.top_1", "simulate --top 1", 2, ["--top must be at least 3", "got 1"]),
    ("sim.runs_0", "simulate --runs 0", 2, ["--runs must be at least 1, got 0"]),
    ("sim.max_votes", "simulate --max-votes 10", 2,
     ["--max-votes must be at least --batch (200), got 10"]),
    ("sim.two_items", "simulate two.csv", 2, ["two.csv: 2 items", "at least 3"]),
    # was: accepted: a tau of 2 (or nan) is never reached, every run spent its whole budget
    ("sim.target_2", "simulate --target 2", 2, ["--target must be a Kendall tau in (0, 1]"]),
    ("sim.target_nan", "simulate --target nan", 2, ["--target must be a Kendall tau"]),
    # was: accepted (a tie rate of 1: no vote ever decides)
    ("sim.ties_1", "simulate --ties 1", 2, ["--ties must be a rate in [0, 1), got 1.0"]),
    # -- flags spelled as the other commands spell them
    # was: "No such option: -m" / "-o" (align, prm train and reward train take them)
    ("rl.short_flags", "rl -m ./no-model --task rl_ok.jsonl -o o_rl --reward length:10", 2,
     ["--model ./no-model: no such folder"]),
    # was: "No such option: --column" (rank, diagnose and propose take it)
    ("sim.column", "simulate odd.csv --column a=left --column b=right --column winner=choice "
     "--runs 1 --max-votes 200 --batch 100 --json", 0, ['"random"']),
    ("sim.skip_invalid", "simulate odd_bad.csv --column a=left --column b=right --column "
     "winner=choice --runs 1 --max-votes 200 --batch 100 --skip-invalid", 0,
     ["skipped 1 invalid row", "line 8"]),
    # -- --column
    # was: the last a= silently won
    ("col.key_twice", "rank odd.csv -c a=left -c a=right -c b=right -c winner=choice", 2,
     ["--column a= given twice (a=left and a=right); give it once"]),
    ("col.key_repeated_same", "rank odd.csv -c a=left -c a=left -c b=right -c winner=choice "
     "--rounds 10", 0, ["6 votes"]),
    # was: one 'compared with itself' error per row
    ("col.value_twice", "rank odd.csv -c a=left -c b=left -c winner=choice", 2,
     ["--column a=left and b=left name the same column for two roles"]),
    # -- reward eval --judge with no server listening
    # was: every pair's failure listed, then 'the judge gave no valid verdict on any of the
    # 2 pairs ... see the errors above' (judge run says the server was never reached)
    ("re.no_server", "reward eval --judge m rp.jsonl --base-url http://127.0.0.1:9/v1", 2,
     ["--base-url http://127.0.0.1:9/v1: no request reached the server", "Start the server"]),
    ("re.no_server_verdicts", "reward eval --judge m rp.jsonl --base-url http://127.0.0.1:9/v1 "
     "--verdicts v_none.jsonl", 2, ["nothing was written to v_none.jsonl"]),
    # -- prefkit inspect: the ranking accuracy's options
    # was: accepted, --beta read and never used, nothing said
    ("in.beta_alone", "inspect pl.jsonl --rounds 0 --beta 0.1", 2,
     ["needs --policy DIR, --reference DIR and --beta B together"]),
    # was: accepted (then the idealized ranking accuracy of beta nan)
    ("in.beta_nan", "inspect pl.jsonl --rounds 0 --policy adir --reference adir --beta nan", 2,
     ["--beta must be a positive finite number, got nan"]),
    ("in.beta_inf", "inspect pl.jsonl --rounds 0 --policy adir --reference adir --beta inf", 2,
     ["--beta must be a positive finite number, got inf"]),
    ("in.ok", "inspect pl.jsonl --rounds 0", 0, ["Krippendorff"]),
    # was: '0 pairs' in the table and nothing on why (pairs 1 and 3 are ties by majority)
    ("in.ranking_left_out",
     "inspect pl.jsonl --rounds 0 --policy llama --reference llama --beta 0.1 --max-length 2", 0,
     ["ranking accuracy on 0 of 4 pairs; left out: 2 without a winner",
      "2 longer than max_length=2 tokens (--max-length)"]),
    ("in.ranking_ties", "inspect pl.jsonl --rounds 0 --policy llama --reference llama --beta 0.1",
     0, ["ranking accuracy on 2 of 4 pairs; left out: 2 without a winner (a tie, or no "
         "majority)"]),
    # was: "unknown label '1.0' in field 'gpt4'" for every row (nothing read)
    ("in.float_labels",
     "inspect wide_float.csv --rounds 0 --column annotators=gpt4,human --json", 0,
     ['"n_pairs": 4', '"n_labels": 7']),
    # -- a JSONL line that is not JSON, in the readers that took only the readable records
    # was: 4 pairs analysed / ranked, line 3 dropped without a word
    ("bad_line.judge", "judge analyze v_bad_line.jsonl", 2,
     ["v_bad_line.jsonl line 3", "malformed JSON", "--skip-invalid"]),
    ("bad_line.judge_skip", "judge analyze v_bad_line.jsonl --skip-invalid", 0,
     ["skipped 1 invalid row", "line 3", "100.0% (4/4)"]),
    ("bad_line.rank", "rank v_bad_line.jsonl --rounds 10", 2,
     ["v_bad_line.jsonl line 3", "malformed JSON"]),
    # -- a JSON list written on one line (json.dump, pandas' to_json): records by number
    # was: "at pl_one_line.json line 1" for every record
    ("one_line.inspect", "inspect pl_one_line.json --rounds 0", 2,
     ["pl_one_line.json record 3", "unknown label 'x'"]),
    ("one_line.indented", "inspect pl_indented.json --rounds 0", 2,
     ["pl_indented.json line 4", "unknown label 'x'"]),
    # was: accepted, the pair's first gold used and the other dropped without a word
    ("in.gold_conflict", "inspect long_gold.csv --rounds 0", 2,
     ["pair '1' has another gold here than at line 2", "long_gold.csv line 3",
      "give each pair one gold label"]),
    # a blank gold on a later row repeats the first; a first blank one is filled later:
    # gold a, b; labels (a, b), (a, a) -> right 1 of 4 (was: pair 2's gold missing: 1 of 2)
    ("in.gold_blank", "inspect long_gold_blank.csv --rounds 0 --json", 0,
     ['"with_ties": 0.25', '"n": 4']),
    # was: accepted: one annotator counted twice, agreement with itself (kappa inflated)
    ("in.annotators_twice",
     "inspect wide_float.csv --rounds 0 --column annotators=gpt4,gpt4", 2,
     ["annotator column 'gpt4' is named twice", "--column annotators=COL1,COL2"]),
    # was: ignored (the columns guessed instead)
    ("in.annotators_empty", "inspect wide_float.csv --rounds 0 --column annotators=", 2,
     ["annotators= names no column"]),
    # -- the unknown-format message names the command line's --column (was: Python's only)
    ("fmt.rank", "rank xyz.csv", 2,
     ["cannot tell the format", "--column a=NAME --column b=NAME --column winner=NAME"]),
    ("fmt.reward", "reward train xyz.csv --output rr", 2,
     ["--column prompt=NAME --column chosen=NAME --column rejected=NAME"]),
    ("fmt.inspect", "inspect xyz.csv", 2,
     ["--column pair=NAME --column annotator=NAME --column label=NAME"]),
]


@pytest.mark.parametrize(("cmd", "code", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_session6(tree: Path, cmd: str, code: int, words: list[str],
                  monkeypatch: pytest.MonkeyPatch) -> None:
    check_row(tree, cmd, code, words, monkeypatch, json_ok=False, json_refused=False,
              unset=("OPENAI_BASE_URL", "OPENAI_API_KEY", "PREFKIT_JUDGE_MODEL", "PREFKIT_SEED"))


def test_rl_reads_bom_csv_and_parquet_prompts(tree: Path) -> None:
    """The prompts of a CSV with a byte-order mark and of a Parquet file are the file's."""
    from prefkit.rl.tasks import read_task

    bom = read_task(tree / "rl_bom.csv")
    assert bom.prompts == ["1+1=", "2+2="] and bom.layout == "prompt"
    par = read_task(tree / "rl.parquet")
    assert par.prompts == ["1+1=", "2+2="] and par.columns["extra"] == [1, 2]


def test_unknown_verdicts_format_names_format_only(tree: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """judge analyze maps no columns: the message says --format only (was: 'or map your
    columns with columns=(none: name the format with --format)')."""
    monkeypatch.chdir(tree)
    r = _invoke(["judge", "analyze", "xyz.csv"])
    text = " ".join((r.stdout + r.stderr).split())
    assert r.exit_code == 2, text
    assert "pass format='<name>' (CLI: --format <name>)" in text
    assert "columns=" not in text and "(none" not in text, text


def test_readme_formats_line_matches_prefkit_formats() -> None:
    """The README's comment on ``prefkit formats`` says no count the command does not print
    (was: 'the nine input formats'; it lists 33)."""
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    line = next(x for x in readme.splitlines() if x.startswith("prefkit formats"))
    r = _invoke(["formats"])
    assert r.exit_code == 0, r.stderr
    n = sum(1 for x in r.stdout.splitlines() if re.match(r"  \w+: ", x))
    words = {"nine": 9, "ten": 10, "twelve": 12}
    said = [int(t) if t.isdigit() else words[t] for t in re.findall(r"\b(\d+|nine|ten|twelve)\b",
                                                                    line.split("#", 1)[1])]
    assert all(s == n for s in said), f"README says {said} formats, prefkit formats lists {n}"


def test_rank_reads_winners_written_as_floats(tree: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    """Winner codes written as floats ('1.0': pandas' CSV of an integer column with a blank)
    are the codes: the same leaderboard as the integers, in CSV and streamed Parquet (was:
    "unknown outcome label '1.0'" on every such row)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.chdir(tree)
    rows = [("A", "B", "1"), ("B", "C", "2"), ("C", "A", "0"), ("A", "C", "1"), ("B", "A", "0")]
    boards = []
    for name, code in (("w_int", lambda w: w), ("w_float", lambda w: w + ".0")):
        Path(f"{name}.csv").write_text("model_a,model_b,winner\n" + "".join(
            f"{a},{b},{code(w)}\n" for a, b, w in rows), encoding="utf-8")
        pq.write_table(pa.table({"model_a": [r[0] for r in rows], "model_b": [r[1] for r in rows],
                                 "winner": [code(r[2]) for r in rows]}), f"{name}.parquet")
        for ext in ("csv", "parquet"):
            r = _invoke(["rank", f"{name}.{ext}", "--rounds", "10", "--json"])
            assert r.exit_code == 0, r.stderr
            d = json.loads(r.stdout)
            assert d["input"]["rows_read"] == 5
            boards.append([(x["item"], round(x["rating"], 6)) for x in d["leaderboard"]])
    assert boards[0] == boards[1] == boards[2] == boards[3], boards


def test_align_reads_unpaired_labels_written_as_floats(tree: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """KTO labels 1.0/0.0 as text (a CSV) are true/false, as the numbers 1.0/0.0 in JSON are
    (was: "unknown label '1.0'", the run refused)."""
    monkeypatch.chdir(tree)
    Path("u_float.csv").write_text("prompt,completion,label\nq,a,1.0\nq,b,0.0\nr,c,1\nr,d,0.0\n",
                                   encoding="utf-8")
    r = _invoke(["align", "--loss", "kto", "--model", "llama", "--data", "u_float.csv",
                 "--output", "o_kto", "--max-steps", "1", "--batch-size", "4",
                 "--max-length", "32", "--json"])
    assert r.exit_code == 0, r.stdout + r.stderr
    d = json.loads(r.stdout)
    assert d["kind"] == "unpaired" and d["n_train"] == 4 and d["finished"]


def test_rl_help_example_keeps_its_regex() -> None:
    """The --help example's format reward shows its whole regex (was: '0.2*format:^': the
    help's Markdown took '<think>' for an HTML tag and dropped it, leaving a regex that
    matches every completion)."""
    r = _invoke(["rl", "--help"])
    assert r.exit_code == 0
    flat = "".join(r.stdout.split())  # the example wraps at the terminal's width
    assert '--reward"0.2*format:^<think>"' in flat, r.stdout


def test_dataset_dict_folder_names_the_split_folder(tree: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A DatasetDict saved with save_to_disk: the fix is a split's folder (was: '(CLI:
    --split)', and reward train's --split is the fixed hash split, not the dataset's)."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.chdir(tree)
    ds = datasets.Dataset.from_dict({"prompt": ["q"], "chosen": ["a"], "rejected": ["b"]})
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk("ds_dict")
    r = _invoke(["reward", "train", "ds_dict", "--output", "rr"])
    text = " ".join((r.stdout + r.stderr).split())
    assert r.exit_code == 2, text
    assert "give one split's folder (e.g. ds_dict/train)" in text and "CLI: --split" not in text


def test_rl_summary_rounds_the_reward(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The closing line gives the reward to 4 significant digits (was: float32 noise,
    'reward 0.4000000059604645 at the first step -> 0.4000000059604645 at the last')."""
    import re

    monkeypatch.chdir(tree)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = _invoke(["rl", "-m", "llama", "--task", "rl_ok.jsonl", "--reward", "length:10",
                 "--num-generations", "2", "--batch-size", "1", "--max-new-tokens", "4",
                 "--max-steps", "1", "-o", "o_rl_run"])
    assert r.exit_code == 0, r.stdout + r.stderr
    m = re.search(r"reward (\S+) at the first step -> (\S+) at the last", r.stdout)
    assert m, r.stdout
    for x in m.groups():
        assert x == f"{float(x):.4g}", m.group(0)


def test_a_prm_folder_given_as_a_reward_model(tree: Path, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    """A folder of prefkit prm train given where a reward model is read (reward score,
    inspect --reward-model) is named for what it is (was: "cannot load the reward model:
    'head'", a KeyError's text)."""
    from shared_paths import SHARED

    monkeypatch.chdir(tree)
    monkeypatch.setenv("PREFKIT_CACHE_DIR", str(tmp_path / "cache"))
    pb = json.loads((SHARED / "data" / "prm" / "processbench_gsm8k.json").read_text())
    rows = [r for r in pb if r["label"] == -1][:3] + [r for r in pb if r["label"] != -1][:3]
    Path("pb6.json").write_text(json.dumps(rows), encoding="utf-8")
    r = _invoke(["prm", "train", "pb6.json", "--output", "prm6", "--epochs", "1"])
    assert r.exit_code == 0, r.stdout + r.stderr
    # responses to score (reward score reads them before the model)
    Path("resp6.jsonl").write_text('{"prompt": "q", "response": "a"}\n', encoding="utf-8")
    for args in (["reward", "score", "prm6", "resp6.jsonl"],
                 ["inspect", "pl.jsonl", "--rounds", "0", "--reward-model", "prm6"]):
        r = _invoke(args)
        text = " ".join((r.stdout + r.stderr).split())
        assert r.exit_code == 2, text
        assert "prm6 is not a reward-model folder: it was written by prefkit prm train" in text
        assert "prefkit reward train" in text


def test_inspect_says_pairs_left_out_of_the_strength(tree: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """--reward-model: the report says how many pairs the preference strength left out
    (pairs 1 and 3 of pl.jsonl have no majority; was: nothing said, the JSON alone had it)."""
    monkeypatch.chdir(tree)
    monkeypatch.setenv("PREFKIT_CACHE_DIR", str(tmp_path / "cache"))
    _jsonl(Path("rp10.jsonl"), [{"prompt": f"q{i}", "chosen": "a good answer " * (i + 1),
                                 "rejected": "bad"} for i in range(10)])
    r = _invoke(["reward", "train", "rp10.jsonl", "--output", "rm10", "--epochs", "1"])
    assert r.exit_code == 0, r.stdout + r.stderr
    r = _invoke(["inspect", "pl.jsonl", "--rounds", "0", "--reward-model", "rm10"])
    assert r.exit_code == 0, r.stdout + r.stderr
    assert ("preference strength on 2 of 4 pairs; left out: 2 without a winner"
            in " ".join((r.stdout + r.stderr).split()))


def test_inspect_reward_model_error_comes_last(tree: Path, tmp_path: Path) -> None:
    """A reward model that cannot be loaded: the error is the last line of the output (was:
    the progress bar's last frame printed after it, in a real process)."""
    import os
    import subprocess
    import sys

    bad = tree / "not_rm"
    bad.mkdir(exist_ok=True)
    for name in ("config.json", "backbone.json"):
        (bad / name).write_text("{}", encoding="utf-8")
    (bad / "model.safetensors").write_bytes(b"")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PREFKIT_CACHE_DIR=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-m", "prefkit.cli.main", "inspect", "pl.jsonl",
                        "--rounds", "0", "--reward-model", "not_rm"], cwd=tree, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=300)
    lines = [x for x in r.stdout.splitlines() if x.strip()]
    assert r.returncode == 2, r.stdout
    assert lines[-1].startswith("error: not_rm: cannot load the reward model"), r.stdout


def test_step_data_of_the_wrong_kind_is_named_in_words(tmp_path: Path) -> None:
    """``prm eval`` on solutions without step labels said "this is candidates data
    (Candidates), not step-labelled solutions" (a Python class name); now what the rows are,
    what is missing and the other command."""
    from shared_paths import SHARED

    from prefkit.data.errors import InvalidInputError
    from prefkit.process import read_steps

    pb = json.loads((SHARED / "data" / "prm" / "processbench_gsm8k.json").read_text())[:3]
    for r in pb:
        del r["label"]
    (tmp_path / "nolabel.json").write_text(json.dumps(pb), encoding="utf-8")
    with pytest.raises(InvalidInputError) as e:
        read_steps(tmp_path / "nolabel.json")
    text = " ".join(str(e.value).split())
    assert "these rows are solutions without step labels (candidates to score), not " \
        "step-labelled solutions" in text, text
    assert "prefkit prm score" in text and "(Candidates)" not in text


def test_a_reward_model_folder_given_as_a_prm(tree: Path, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    """``rl --process-reward runs/rm`` (load_prm) on a folder of prefkit reward train said
    "config.json is not a PRM's config (kind None)"; now what the folder is and how to give
    it."""
    from prefkit.process import load_prm

    monkeypatch.chdir(tree)
    monkeypatch.setenv("PREFKIT_CACHE_DIR", str(tmp_path / "cache"))
    r = _invoke(["reward", "train", "rp.jsonl", "--output", str(tmp_path / "rm")])
    assert r.exit_code == 0, r.stdout + r.stderr
    with pytest.raises(ValueError) as e:
        load_prm(tmp_path / "rm")
    text = str(e.value)
    assert "is not a process reward model's folder: it was written by prefkit reward train" \
        in text and f"--reward model:{tmp_path / 'rm'}" in text, text
    assert "kind None" not in text
