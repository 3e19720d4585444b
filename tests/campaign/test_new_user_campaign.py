"""The new-user bad-input campaign, kept as tests: one test per run of the campaign.

``../shared/campaigns/new_user_bad_input/observed.jsonl`` holds 292 runs of prefkit's
commands (``rank``, ``diagnose``, ``propose``, ``reward train/eval/score/finetune``,
``align``) on bad or unusual input, as a new user typed them. Each row becomes one test:
the command is run in-process (typer's ``CliRunner``, cwd the rebuilt ``inputs/`` folder of
conftest.py) and must end as :data:`EXPECT` says, for the row's input class and command:

* never a traceback: ``result.exception`` is None or SystemExit;
* a refusal (exit 2) prints ``error``, names the file (and its line/field where the input
  has one) or the option at fault, and says how to fix it -- in the command line's words
  (a Python keyword such as ``skip_invalid=True`` only next to a ``--flag``);
* an accepted unusual input (exit 0) says what was done with it (rows skipped, items
  provisional, responses cut, ...) and gives the right result;
* no file outside the command's own ``--output``/``--csv``/``--plot`` is created, changed or
  removed, and a refused command creates nothing at all.

Rows whose fix belongs to code being changed elsewhere are listed in :data:`PENDING` with
what happens now; they are left out (not skipped, not xfailed) until the fix lands: delete
the row from PENDING to run it. ``test_pending_rows_are_known`` keeps the list honest.

A subprocess smoke test per command (a bad input and a good one, ``prefkit`` as installed)
checks what the in-process runner cannot: the console script, real stdout/stderr.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from shared_paths import SHARED

CAMPAIGN = SHARED / "campaigns" / "new_user_bad_input"
OBSERVED = CAMPAIGN / "observed.jsonl"
ROWS: list[dict[str, Any]] = (
    [json.loads(line) for line in OBSERVED.read_text(encoding="utf-8").splitlines()]
    if OBSERVED.is_file() else [])
OUTPUT_FLAGS = ("--output", "-o", "--csv", "--plot")

#: id -> (text in the command, replacement, why). The campaign ran each command in a tree of
#: its own time; here they share one tree (and one session's time), so a few are adapted.
REWRITES: dict[str, list[tuple[str, str, str]]] = {
    "rtrain.good": [("--output rt_good", "--output rt_good_again",
                     "rt_good is the fixture's model, trained by this same command")],
    "align.model_is_ft_encoder": [("--model ft_emoji", "--model ft_model",
                                   ("the fixture's fine-tuned reward model (rft.emoji "
                                    "writes ft_emoji)"))],
    "rank.plot_nodir": [("/nonexistent/dir/p.png", "../nonexistent_plot/dir/p.png",
                         "a missing folder inside the test tree, not at /")],
    "rank.csv_nodir": [("/nonexistent/dir/p.csv", "../nonexistent_csv/dir/p.csv",
                        "a missing folder inside the test tree, not at /")],
    "propose.n_huge": [("--n 100000", "--n 2000",
                        ("the same class (n far above the 15 pairs of 6 items); 100000 "
                         "greedy picks take 20-40 s"))],
}
#: extra arguments for speed only (the input class is unchanged)
EXTRA: dict[str, list[str]] = {
    # the linear head trains 20 epochs, not 200 (the embedding is the same)
    **{r["id"]: ["--epochs", "20"] for r in ROWS
       if r["id"].startswith("rtrain.") and "--epochs" not in r["command"]},
}


# -- expectations ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Expect:
    """What a user should get. ``exit`` 2: a refusal whose message contains each of
    ``names`` (literal: the file, flag or value at fault) and matches each of ``says``
    (regular expressions: what is wrong and how to fix it). ``exit`` 0: correct handling;
    stdout+stderr match ``says`` (what was done), ``check`` looks at the result."""

    exit: int
    names: tuple[str, ...] = ()
    says: tuple[str, ...] = ()
    why: str = ""
    check: Callable[[Any, Path], None] | None = None


def refuse(*names: str, says: tuple[str, ...] = (), why: str = "") -> Expect:
    return Expect(2, names, says, why)


def accept(*says: str, why: str = "", check: Callable[[Any, Path], None] | None = None
           ) -> Expect:
    return Expect(0, (), says, why, check)


def _json_out(result: Any, _: Path) -> None:
    json.loads(result.stdout)


def _file(path: str) -> Callable[[Any, Path], None]:
    def check(result: Any, cwd: Path) -> None:
        assert (cwd / path).is_file() and (cwd / path).stat().st_size > 0, f"{path} not written"
    return check


def _model_folder(folder: str) -> Callable[[Any, Path], None]:
    def check(result: Any, cwd: Path) -> None:
        assert (cwd / folder / "config.json").is_file(), f"no model in {folder}"
    return check


def _no_flood(limit: int = 20_000) -> Callable[[Any, Path], None]:
    def check(result: Any, _: Path) -> None:
        assert len(result.stdout) < limit, f"{len(result.stdout):,} characters printed"
    return check


def _equal_ratings(result: Any, _: Path) -> None:
    ratings = re.findall(r"│\s+\d+ │ \w+\s+│\s+([\d.]+) │", result.stdout)
    assert len(ratings) == 6 and len(set(ratings)) == 1, ratings


def _bridges_components(result: Any, _: Path) -> None:
    first = result.stdout.splitlines()[0].split("  vs  ")
    assert {first[0] in "AB", first[1] in "AB"} == {True, False}, first


EXPECT: dict[str, Expect] = {}


def _for(commands: str, cls: str, e: Expect) -> None:
    for c in commands.split():
        key = f"{c}.{cls}"
        assert key not in EXPECT, key
        EXPECT[key] = e


# votes in: rank, diagnose, propose -- one expectation per input class
V = "rank diagnose propose"
SKIP = r"--skip-invalid"
_for(V, "missing", refuse("nofile.csv", says=(r"no such file",)))
_for(V, "dir", refuse("../data", says=(r"is a folder", r"votes.csv")))
_for(V, "empty", refuse("empty.csv", says=(r"no rows|empty", r"add at least one")))
_for("rank", "empty_jsonl", refuse("empty.jsonl", says=(r"no rows|empty", r"add at least one")))
_for(V, "parquet0", refuse("empty.parquet", says=(r"no rows|empty", r"add at least one")))
_for(V, "trunc_json", refuse("truncated_mid.jsonl", says=(r"line 3", r"malformed JSON", SKIP)))
_for(V, "latin1", refuse("latin1.csv", says=(r"not UTF-8", r"line 2", r"re-save|iconv")))
_for(V, "unknown_label", refuse("unknown_label.csv",
                                says=(r"line 22", r"'winner'", r"expected one of", SKIP)))
_for(V, "self", refuse("self.csv", says=(r"line 22", r"compared with itself", r"fix|drop")))
_for(V, "w_nan", refuse("w_nan.csv", says=(r"line 22", r"'weight'", r"finite numbers")))
_for(V, "w_neg", refuse("w_neg.csv", says=(r"line 22", r"negative weight", r">= 0")))
_for(V, "w_huge", refuse("w_huge.csv", says=(r"line 22", r"too large", r"at most")))
_for("rank", "w_inf", refuse("w_inf.csv", says=(r"line 22", r"infinite weight", r"finite")))
_for("rank", "w_text", refuse("w_text.csv", says=(r"line 22", r"not a number", r"finite")))
_for(V, "w_zero_all", refuse("w_zero_all.csv", says=(r"weight 0", r"positive weights")))
_for("rank", "no_winner", refuse("no_winner.csv", says=(r"columns: model_a, model_b",
                                                       r"--format")))
_for(V, "misspelled", refuse("misspelled.csv", says=(r"winnr", r"--format")))
_for(V, "dup_cols", refuse("dup_cols.csv", says=(r"duplicate column", r"rename or drop")))
_for("rank", "dup_keys", refuse("dup_keys.jsonl", says=(r"duplicate key", r"line \d+",
                                                       r"keep one")))
_for(V, "mixed", refuse("mixed.jsonl", says=(r"line 8", r"'model_b'", r"names of both items")))
_for("rank", "mixed_num", accept(r"23 votes", r"unbounded",
                                 why="a/b/tie and 0/1/2 labels are both outcome labels; the "
                                     "unbounded bootstrap intervals are explained"))
_for("rank", "long", accept(r"provisional", r"1,000,000 characters", check=_no_flood(),
                            why="the 1 MB name is clipped; it only won: provisional"))
_for("diagnose", "long", accept(r"only won or only lost", check=_no_flood()))
_for("propose", "long", accept(check=_no_flood(), why="names clipped as in the tables"))
_for("rank", "emoji", accept(r"模型-α", r"🤖 bot"))
_for("diagnose", "emoji", accept(r"7 items|items"))
_for("propose", "emoji", accept(r"🤖 bot"))
_for(V, "header_only", refuse("header_only.csv", says=(r"no rows", r"below the header")))
_for("rank", "bom", accept(r"format generic", check=lambda r, _: (
    "\ufeff" not in r.stdout and "│ A " in r.stdout) or pytest.fail("BOM kept in a name")))
_for("rank", "blank_winner", refuse("blank_winner.csv", says=(r"line 22", r"missing outcome")))
_for("rank", "blank_item", refuse("blank_item.csv", says=(r"line 22", r"missing item name")))
_for("rank", "disconnected", refuse(says=(r"2 components", r"--largest-component"),
                                    why="no common scale: rank each component or connect"))
_for("diagnose", "disconnected", accept(r"2 components"))
_for("propose", "disconnected", accept(check=_bridges_components,
                                       why="the first proposal connects the components"))
_for("rank", "single", accept(r"provisional"))
_for("diagnose", "single", accept(r"2 items, 1 vote,", r"1 of 1 pair compared", r"only won or only lost"))
_for("propose", "single", accept(r"only 1 different pairs", r"repeat"))
_for("rank", "obj_json", refuse("obj.json", says=(r"columns: hello", r"--format")))
_for("rank", "notjson", refuse("notjson.json", says=(r"cannot tell the format", r"--format")))
_for("rank", "wrongcols_pq", refuse("wrongcols.parquet", says=(r"columns: x", r"--format")))
_for("rank", "garbage", refuse("garbage.csv", says=(r"not UTF-8", r"re-save")))
_for("rank", "gz_as_csv", refuse("gz_as_csv.csv", says=(r"gzip", r"\.gz"),
                                 why="a gzip file named .csv: say so (iconv would not help)"))
_for("rank", "all_ties", accept(r"6 items", check=_equal_ratings,
                                why="all ties: every rating equal"))
_for("diagnose", "all_ties", accept(r"0 cyclic of 0 decided triads"))
_for("propose", "all_ties", accept())
_for("rank", "counts_bad", refuse("counts_bad.json", says=(r"pair 1", r"'Y\[0\]'",
                                                          r"wins_i, wins_j")))
_for("rank", "many_bad", refuse("many_bad.csv", says=(r"line \d+", r"and \d+ more", SKIP)))
# --format, --column and the other options
_for(V, "fmt_football", refuse("good.csv", says=(r"missing column 'home_team'", r"--column")))
_for("rank", "fmt_counts", refuse("good.csv", says=(r"JSON",)))
_for("rank", "fmt_llmfao", refuse("good.csv", says=(r"missing column 'left'", r"--column")))
_for("rank", "fmt_bogus", refuse("xlsx", says=(r"unknown format", r"known formats")))
_for("rank", "fmt_arena_hard_on_crowd", refuse("../crowd.csv", says=(r"missing column",
                                                                    r"--column")))
_for("rank", "elo_davidson", refuse("--ties davidson", says=(r"bradley-terry",)))
_for("rank", "none_cluster", refuse("--cluster annotator", says=(r"--intervals none",)))
_for("rank", "cluster_missing", refuse("annotator", says=(r"--column annotator=",)))
_for("rank", "rounds0", refuse("rounds", says=(r"at least 2",)))
_for("rank", "rounds_neg", refuse("rounds", says=(r"at least 2",)))
_for("rank", "conf_1.5", refuse("confidence", says=(r"\(0, 1\)",)))
_for("rank", "conf_0", refuse("confidence", says=(r"\(0, 1\)",)))
_for("rank", "top0", refuse("--top", says=(r"greater than or equal to 1|at least 1",)))
_for("rank", "top_neg", refuse("--top", says=(r"greater than or equal to 1|at least 1",)))
_for("rank", "anchor_unknown", refuse("--anchor", "ZZZ", says=(r"pin one of",)))
_for("rank", "anchor_bad", refuse("--anchor", says=(r"ITEM=RATING",)))
_for("rank", "prior_bad", refuse("--prior", "banana", says=(r"variance",)))
_for("rank", "prior_neg", refuse("--prior", says=(r"> 0",)))
_for("rank", "style_missing", refuse("--style home", says=(r"home_a",)))
_for("rank", "column_bad", refuse("good.csv", "nosuch", says=(r"--column",)))
_for("rank", "column_badkey", refuse("zzz", says=(r"maps 'a', 'b'",)))
_for("rank", "column_noeq", refuse("--column", says=(r"KEY=VALUE",)))
_for("rank", "plot_badext", refuse("--plot out.xyz", says=(r"\.png",)))
_for("rank", "plot_nodir", accept(r"plot written to", check=_file(
    "../nonexistent_plot/dir/p.png"), why="the folder is made, and the path said"))
_for("rank", "csv_nodir", accept(r"written to", check=_file("../nonexistent_csv/dir/p.csv"),
                                 why="the folder is made, and the path said"))
_for("rank", "pl_on_pairs", refuse("--model plackett-luce", says=(r"rankings",)))
_for("rank", "thurstone_davidson", refuse("--ties davidson", says=(r"--model bradley-terry",)))
_for("rank", "weng_lin_sandwich", refuse("--model weng-lin", says=(r"--intervals hessian",)))
_for("rank", "skip_invalid_unknown", accept(r"skipped 2 invalid row", r"line 22", r"line 23"))
_for("rank", "skip_invalid_trunc", accept(r"skipped 1 invalid row", r"line 3"))
_for("rank", "skip_invalid_many", accept(r"skipped \d+ invalid row", r"and \d+ more"))
_for("rank", "good", accept(r"6 items, 60 votes"))
_for("rank", "good_parquet", accept(r"6 items"))
_for("rank", "stdin", refuse("standard input", says=(r"save them to a file",)))
_for("diagnose", "influence_bad", refuse("--influence-by", says=(r"'annotator', 'prompt' or",)))
_for("diagnose", "influence_annot_missing", accept(r"no per-vote 'annotator' column: "
                                                   r"influence not computed"))
_for("diagnose", "sims_neg", refuse("--simulations", says=(r"greater than or equal to\W+0",)))
_for("diagnose", "json", accept(check=_json_out))
_for("propose", "k0", refuse("--k", says=(r"at least 2",)))
_for("propose", "k1", refuse("--k", says=(r"at least 2",)))
_for("propose", "k_gt_items", refuse("--k 10", says=(r"6 items",)))
_for("propose", "n0", refuse("--n", says=(r"at least 1",)))
_for("propose", "n_neg", refuse("--n", says=(r"at least 1",)))
_for("propose", "strategy_bad", refuse("--strategy", "banana", says=(r"information",)))
_for("propose", "explore_2", refuse("--explore", says=(r"\[0, 1\]",)))
_for("propose", "explore_neg", refuse("--explore", says=(r"\[0, 1\]",)))
_for("propose", "json", accept(check=_json_out))
_for("propose", "n_huge", accept(r"proposals repeat", check=lambda r, _: (
    len(r.stdout.splitlines()) == 2000) or pytest.fail("not 2000 proposals")))

# pairs in: reward train / finetune / eval, align (score reads responses: below)
P = "rtrain rft reval align"
_for(P + " rscore", "missing", refuse("nofile.jsonl", says=(r"no such file",)))
_for(P + " rscore", "dir", refuse("../data", says=(r"folder",),
                                  why="a folder that is no saved dataset: say what to give"))
_for(P + " rscore", "empty", refuse("p_empty.jsonl", says=(r"no rows|empty", r"add")))
_for(P + " rscore", "parquet0", refuse("p_empty.parquet", says=(r"no rows|empty", r"add")))
_for(P, "trunc", refuse("p_trunc.jsonl", says=(r"line 6", r"malformed JSON", SKIP)))
_for(P, "latin1", refuse("p_latin1.csv", says=(r"UTF-8", r"line \d+", r"re-save|iconv")))
_for(P, "same", refuse("p_same.jsonl", says=(r"line 4", r"identical", SKIP)))
_for(P, "emptyfields", accept(r"2 pairs with an empty response, kept",
                             why="an empty answer is data: kept, and counted"))
_for(P, "misspelled", refuse("p_misspelled.jsonl", says=(r"rejectd", r"--column|--format")))
_for(P, "dupcols", refuse("p_dupcols.csv", says=(r"duplicate column", r"rename or drop")))
_for(P, "mixed", refuse("p_mixed.jsonl", says=(r"line 4", r"both be text or both be messages")))
_for("align", "long", accept(r"cut from \d+ to \d+ tokens", check=_model_folder("al_long")))
_for("rtrain rft reval", "long", accept(r"cut|truncat",
                                        why="say that the 1 MB response was cut to the "
                                            "encoder's length"))
_for(P, "emoji", accept())
_for(P, "header", refuse("p_header.csv", says=(r"no rows",)))
_for("rtrain", "single", accept(r"1 training pair\b", r"no validation pairs"))
_for("rft", "single", accept(r"fine-tuned 1 pair for 1 step", check=_model_folder("ft_single")))
_for("reval", "single", accept(r"\b1\s+1\.000\s+\[0\.207, 1\.000\]",
                               why="one pair: accuracy 1 with its wide interval"))
_for("align", "single", refuse("p_single.jsonl", says=(r"no example left", r"--max-length")))
_for("align rtrain", "votes_csv", refuse("good.csv", says=(r"model_a, model_b, winner",
                                                          r"--format|--column|prefkit rank")))
# reward train
_for("rtrain", "allsame", refuse("p_allsame.jsonl", says=(r"identical", r"and \d+ more")))
_for("rtrain", "nocol", refuse("p_nocol.jsonl", says=(r"chosen, prompt", r"--column|--format")))
_for("rtrain", "rowmissing", refuse("p_rowmissing.jsonl", says=(r"line 11", r"'rejected'")))
_for("rtrain", "margin", refuse("p_margin.jsonl", says=(r"line 6", r"line 7", r"'margin'")))
_for("rtrain", "obj", accept(r"1 training pair\b", r"no validation pairs"))
_for("rtrain", "three", accept(r"3 training pairs", r"no validation pairs"))
_for("rtrain", "good", accept(r"validation accuracy", check=_model_folder("rt_good_again")))
_for("rtrain", "fmt_llmbar", refuse("p_good.jsonl", says=(r"missing column 'output_2'",
                                                         r"--column")))
_for("rtrain", "fmt_hh", refuse("p_good.jsonl", says=(r"Assistant:", r"--format|--skip")))
_for("rtrain", "fmt_bogus", refuse("banana", says=(r"unknown format", r"known formats")))
_for("rtrain", "loss_margin_nomargin", refuse("bradley_terry_margin", says=(r"margin",
                                                                           r"--loss")))
_for("rtrain", "loss_bogus", refuse("banana", says=(r"choose one of",)))
_for("rtrain", "valfrac_0", accept(r"no validation pairs"))
_for("rtrain", "valfrac_1", refuse(says=(r"val(idation)?[_-]fraction", r"\[0, 1\)")))
_for("rtrain", "valfrac_neg", refuse(says=(r"val(idation)?[_-]fraction", r"\[0, 1\)")))
_for("rtrain", "val_and_frac", accept(r"--validation-fraction",
                                      why="--validation-fraction is unused with --validation: "
                                          "say so (or refuse the pair)"))
_for("rtrain", "val_missing", refuse("nofile.jsonl", says=(r"no such file",)))
_for("rtrain", "resume_overwrite", refuse("--resume", "--overwrite", says=(r"pass one",)))
_for("rtrain", "existing_output", refuse("rt_good", says=(r"--resume", r"--overwrite")))
_for("rtrain", "output_is_file", refuse("good.csv", says=(r"is a file", r"folder")))
_for("rtrain", "batch0", refuse(says=(r"batch[_-]size", r">= 1")))
_for("rtrain", "epochs0", refuse(says=(r"epochs", r">= 1")))
_for("rtrain", "lr_neg", refuse(says=(r"learning[_-]rate", r"> 0|positive")))
_for("rtrain", "split_test_small", accept(r"1 training pair\b", r"test split",
                                          r"no validation pairs"))
_for("rtrain", "column_bad", refuse("p_good.jsonl", "nosuch", says=(r"--column",)))
# reward finetune
_for("rft", "backbone_missing", refuse("./nope", says=(r"backbone", r"folder")))
_for("rft", "backbone_is_file", refuse("good.csv", says=(r"backbone", r"folder")))
_for("rft", "backbone_is_datadir", refuse("data", says=(r"--backbone",
                                                                r"not a model|no config\.json")))
_for("rft", "backbone_tinyllama", accept(r"fine-tuned 40 pairs", check=_model_folder("ft_bb4")))
_for("rft", "precision_bad", refuse("fp8", says=(r"precision", r"fp32")))
_for("rft", "maxlen0", refuse(says=(r"max[_-]length", r">= 1")))
_for("rft", "maxsteps0", refuse(says=(r"max[_-]steps", r">= 1|at least 1")))
_for("rft", "batch0", refuse(says=(r"batch[_-]size", r">= 1")))
_for("rft", "resume_fresh", accept(r"fine-tuned 40 pairs", check=_model_folder(
    "ft_resume_fresh"), why="--resume on a new folder starts the run"))
_for("rft", "output_is_file", refuse("good.csv", says=(r"is a file", r"folder")))
_for("rft", "val_missing", refuse("nofile.jsonl", says=(r"no such file",)))
# reward eval
_for("reval", "good", accept(r"accuracy \d\.\d+ \[95%"))
_for("reval", "model_missing", refuse("no_such_model", says=(r"no such model folder",
                                                            r"prefkit reward train")))
_for("reval", "model_is_file", refuse("good.csv", says=(r"is a file", r"model folder"),
                                      why="not 'no such folder' for a file that exists"))
_for("reval", "model_is_datadir", refuse("../data", says=(r"not a reward-model folder",
                                                         r"prefkit reward train")))
_for("reval", "model_is_alignrun", refuse("../runs/dpo", says=(r"prefkit align",
                                                              r"prefkit reward train")))
_for("reval", "model_is_llama", refuse("../my-llama", says=(r"not a reward-model folder",)))
_for("reval", "model_partial", refuse("partial_rm", says=(r"lacks model\.safetensors",)))
_for("reval", "args_swapped", refuse("p_good.jsonl", says=(
    r"DIR DATA|model folder first|swapped|order",),
                                     why="a data file where the model goes: say the order"))
_for("reval", "fmt_wrong", refuse("p_good.jsonl", says=(r"missing column", r"--column")))
_for("reval", "plot_badext", refuse("--plot", says=(r"\.png",)))
_for("reval", "split_test_1row", refuse("p_single.jsonl", says=(r"test split", r"empty",
                                                                r"--split all")))
# reward score (responses in)
_for("rscore", "trunc", refuse("s_trunc.jsonl", says=(r"line 4", r"malformed JSON", SKIP)))
_for("rscore", "latin1", refuse("s_latin1.csv", says=(r"UTF-8", r"re-save|iconv")))
_for("rscore", "noresp", refuse("s_noresp.jsonl", says=(r"missing column 'response'",
                                                       r"columns present: prompt, answer",
                                                       r"--column response=")))
_for("rscore", "mixed", refuse("s_mixed.jsonl", says=(r"line 3", r"'response'", SKIP)))
_for("rscore", "empty_resp", accept(r"empty response",
                                    why="an empty answer is data: scored, and counted"))
_for("rscore", "long", accept(r"cut|truncat", why="say that the 1 MB response was cut"))
_for("rscore", "emoji", accept(r"best of 2"))
_for("rscore", "header", refuse("s_header.csv", says=(r"no responses|no rows",)))
_for("rscore", "txt_noprompt", accept(r"third answer", r"empty line|blank line|skipped",
                                      why="the blank line 2 is skipped: say so"))
_for("rscore", "txt_empty", refuse("s_empty.txt", says=(r"no rows|empty", r"add|one response")))
_for("rscore", "pairs_file", refuse("p_good.jsonl", says=(r"chosen|pairs|prefkit reward eval",),
                                    why="a pairs file: point to `reward eval`"))
_for("rscore", "good", accept(r"rewards from rt_good"))
_for("rscore", "model_missing", refuse("no_such_model", says=(r"no such model folder",)))
_for("rscore", "model_is_llama", refuse("../my-llama", says=(r"not a reward-model folder",)))
_for("rscore", "prompt_and_prompts", accept(r"--prompt",
                                            why="every record has its prompt: say that "
                                                "--prompt was not used"))
_for("rscore", "txt_prompt", accept(r"Q\?", r"empty line|blank line|skipped"))
# align
_for("align", "chat_bad", refuse("c_badmsgs.jsonl", says=(r"line 3", r"malformed messages",
                                                         SKIP)))
_for("align", "chat_good", accept(r"aligned on 4 pairwise examples"))
_for("align", "kto_badlabel", refuse("u_badlabel.jsonl", says=(r"line 4", r"'label'", SKIP)))
_for("align", "kto_alltrue", accept(r"aligned on \d+ unpaired examples", r"desirable|all",
                                    why="KTO with no undesirable example: say so"))
_for("align", "listwise_bad", refuse("l_bad.jsonl", says=(r"line 3", r"'ranks'", SKIP)))
_for("align", "kto_on_listwise", refuse("l_bad.jsonl", says=(r"line \d+",)))
_for("align", "dpo_on_unpaired", refuse("u_alltrue.jsonl", says=(r"unpaired", r"--loss|kto")))
_for("align", "model_missing", refuse("--model ./nope", says=(r"no such folder",)))
_for("align", "model_is_file", refuse("--model good.csv", says=(r"is a file|not a model",
                                                               r"folder")))
_for("align", "model_is_rm", refuse("--model rt_good", says=(r"reward model",
                                                            r"causal|language model")))
_for("align", "model_is_ft_encoder", refuse("--model ft_model", says=(
    r"reward model", r"causal|language model")))
_for("align", "model_hubid_offline", refuse("--model gpt2", says=(r"cache|offline|connect",)))
_for("align", "no_model", refuse("--model", says=(r"missing",)))
_for("align", "no_output", refuse("--output", says=(r"missing",)))
_for("align", "loss_bogus", refuse("banana", says=(r"choose one of",)))
_for("align", "beta_neg", refuse("beta", says=(r"\(0, inf\)|> 0",)))
_for("align", "param_unknown", refuse("foo", says=(r"it takes",)))
_for("align", "param_badval", refuse("label_smoothing", "abc", says=(r"number",)))
_for("align", "param_noeq", refuse("--param", says=(r"KEY=VALUE",)))
_for("align", "batch0", refuse(says=(r"batch[_-]size", r">= 1")))
_for("align", "maxsteps0", refuse(says=(r"max[_-]steps", r">= 1|at least 1")))
_for("align", "maxlen1", refuse(says=(r"max[_-]length", r"at least 2")))
_for("align", "lr_neg", refuse(says=(r"--lr|learning[_-]rate", r"> 0|positive")))
_for("align", "precision_bad", refuse("fp8", says=(r"fp32",)))
_for("align", "resume_overwrite", refuse("--resume", "--overwrite", says=(r"pass one",)))
_for("align", "resume_fresh", accept(r"aligned on 18", check=_model_folder("al_resume_fresh")))
_for("align", "output_is_file", refuse("good.csv", says=(r"is a file", r"folder")))
_for("align", "kind_bogus", refuse("banana", says=(r"auto, pairwise, unpaired or listwise",)))
_for("align", "validation_missing", refuse("nofile.jsonl", says=(r"no such file",)))
_for("align", "eval_every_noval", accept(r"--eval-every|--validation",
                                         why="--eval-every without --validation evaluates "
                                             "nothing: say so"))
_for("align", "stop_after_gt", accept(r"--stop-after",
                                      why="--stop-after 10 past the 2 steps of the run: say "
                                          "it has no effect"))
_for("align", "warmup_2", refuse("warmup", says=(r"\[0, 1\)",)))
_for("align", "lora_neg", refuse("--lora-r", says=(r">= 0",)))
_for("align", "good_json", accept(check=_json_out))


#: rows left out until the fix in code owned elsewhere lands: id -> what happens now.
#: Delete a row here when its fix is in; its test then runs as EXPECT says.
PENDING: dict[str, str] = {}


# -- running a row ---------------------------------------------------------------------------
def parse(command: str) -> tuple[list[str], str | None]:
    """The arguments after ``prefkit`` (shell redirections and pipes dropped; the set-up
    before ``&&`` is the fixture's) and the file piped to it by ``cat FILE |``, if any."""
    part = command.split("&&")[-1].strip()
    stdin = None
    if part.startswith("cat "):
        source, part = part.split("|", 1)
        stdin = shlex.split(source)[1]
    tokens = shlex.split(part)
    for i, t in enumerate(tokens):
        if t in (">", ">>", "|", "2>", "2>&1"):
            tokens = tokens[:i]
            break
    assert tokens[0] == "prefkit", command
    return tokens[1:], stdin


def command_of(row: dict[str, Any]) -> str:
    command = row["command"]
    for old, new, _ in REWRITES.get(row["id"], []):
        assert old in command, (row["id"], old)
        command = command.replace(old, new)
    return command


def outputs(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a in OUTPUT_FLAGS]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    files: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            p = Path(dirpath, name)
            st = p.lstat()
            files[str(p.relative_to(root))] = (st.st_size if p.is_file() else -1,
                                               st.st_mtime_ns if p.is_file() else 0)
    return files


def _words(text: str) -> str:
    """Messages compared as words: rich may wrap a long line anywhere."""
    return " ".join(text.split())


def _python_words_only(message: str) -> bool:
    """A Python keyword (skip_invalid=True, format='...', columns={...}) with no --flag."""
    return bool(re.search(r"skip_invalid=True|format='|columns=\{", message)) and \
        "--" not in message


def check_row(row_id: str, result: Any, cwd: Path, before: dict[str, tuple[int, int]],
              after: dict[str, tuple[int, int]], named: list[str], root: Path) -> None:
    e = EXPECT[row_id]
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        tb = "".join(traceback.format_exception(exc))
        pytest.fail(f"{row_id}: uncaught {type(exc).__name__} (a traceback for the user):\n"
                    f"{tb[-3000:]}")
    err, out = _words(result.stderr), _words(result.stdout)
    said = f"stdout: {out[-1500:]}\nstderr: {err[-2500:]}"
    assert result.exit_code == e.exit, f"{row_id}: exit {result.exit_code}, expected " \
        f"{e.exit} ({e.why or 'see EXPECT'})\n{said}"
    assert "Traceback" not in result.stderr, f"{row_id}: a traceback printed\n{said}"
    if e.exit == 2:
        assert re.search(r"error|Invalid value", err), f"{row_id}: no error message\n{said}"
        for name in e.names:
            assert name in err, f"{row_id}: the message does not name {name!r}\n{said}"
        assert not _python_words_only(err), \
            f"{row_id}: the fix is in Python words (no --flag) for a command line\n{said}"
    for pattern in e.says:
        assert re.search(pattern, f"{out}\n{err}"), \
            f"{row_id}: nothing matches {pattern!r} ({e.why or 'see EXPECT'})\n{said}"
    if e.check is not None:
        e.check(result, cwd)
    # files: nothing outside the named outputs; a refusal creates nothing at all
    allowed = set()
    if e.exit == 0:
        for o in named:
            rel = str((cwd / o).resolve().relative_to(root.resolve()))
            if rel not in before:
                allowed.add(rel)
    def mine(path: str) -> bool:
        return any(path == a or path.startswith(a + os.sep) for a in allowed) or \
            any(a.startswith(path + os.sep) for a in allowed)
    created = sorted(p for p in after if p not in before and not mine(p))
    changed = sorted(p for p in before if p in after and after[p] != before[p] and not mine(p)
                     and after[p][0] != -1)
    removed = sorted(p for p in before if p not in after)
    assert not (created or changed or removed), \
        f"{row_id}: files touched outside its outputs {sorted(allowed)}: created " \
        f"{created[:10]}, changed {changed[:10]}, removed {removed[:10]}"


ACTIVE = [r for r in ROWS if r["id"] not in PENDING]


@pytest.mark.parametrize("row", ACTIVE, ids=[r["id"] for r in ACTIVE])
def test_campaign_row(row: dict[str, Any], campaign_tree: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    args, stdin = parse(command_of(row))
    args += EXTRA.get(row["id"], [])
    cwd = campaign_tree / "inputs"
    monkeypatch.chdir(cwd)
    before = snapshot(campaign_tree)
    from typer.testing import CliRunner

    from prefkit.cli.main import app

    result = CliRunner().invoke(app, args, input=(cwd / stdin).read_text(encoding="utf-8") if stdin else None)
    after = snapshot(campaign_tree)
    check_row(row["id"], result, cwd, before, after, outputs(args), campaign_tree)


def test_every_row_has_an_expectation() -> None:
    assert len(ROWS) == 292, f"{OBSERVED} has {len(ROWS)} rows, the campaign ran 292"
    ids = [r["id"] for r in ROWS]
    assert len(set(ids)) == len(ids), "duplicate ids"
    assert sorted(set(ids) - set(EXPECT)) == [], "rows without an expectation"
    assert sorted(set(EXPECT) - set(ids)) == [], "expectations without a row"
    assert sorted(set(PENDING) - set(ids)) == [], "pending ids that are no row"
    for e in EXPECT.values():
        assert e.exit in (0, 2)
        assert e.exit == 0 or e.names or e.says


def test_pending_rows_are_known() -> None:
    """Each pending row says what happens now (the defect), for whoever fixes it."""
    for row_id, reason in PENDING.items():
        assert len(reason) > 20, row_id


# -- one real process per command ------------------------------------------------------------
PREFKIT = Path(sys.executable).with_name("prefkit")
SMOKE = {
    "rank": (["rank", "w_nan.csv"], ["rank", "good.csv", "--rounds", "20"]),
    "diagnose": (["diagnose", "latin1.csv"], ["diagnose", "good.csv", "--simulations", "20"]),
    "propose": (["propose", "good.csv", "--n", "0"], ["propose", "good.csv", "--n", "3"]),
    "reward train": (["reward", "train", "p_same.jsonl", "--output", "smoke_rt_bad"],
                     ["reward", "train", "p_3.jsonl", "--epochs", "5", "--output", "smoke_rt"]),
    "reward eval": (["reward", "eval", "good.csv", "p_good.jsonl"],
                    ["reward", "eval", "rt_good", "p_3.jsonl"]),
    "reward score": (["reward", "score", "rt_good", "s_empty.txt"],
                     ["reward", "score", "rt_good", "s_emoji.jsonl"]),
    "reward finetune": (["reward", "finetune", "p_trunc.jsonl", "--output", "smoke_ft_bad"],
                        ["reward", "finetune", "p_3.jsonl", "--max-steps", "1", "--batch-size",
                         "2", "--max-length", "32", "--output", "smoke_ft"]),
    "align": (["align", "--model", "../my-llama", "--data", "u_badlabel.jsonl", "--loss", "kto",
               "--output", "smoke_al_bad"],
              ["align", "--model", "../my-llama", "--data", "c_good.jsonl", "--max-steps", "1",
               "--batch-size", "2", "--max-length", "128", "--output", "smoke_al"]),
}


@pytest.mark.parametrize("command", list(SMOKE))
def test_subprocess_smoke(command: str, campaign_tree: Path) -> None:
    if not PREFKIT.is_file():
        pytest.fail(f"{PREFKIT}: the console script is not installed (pip install -e .)")
    cwd = campaign_tree / "inputs"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    bad, good = SMOKE[command]
    for args, code in ((bad, 2), (good, 0)):
        p = subprocess.run([str(PREFKIT), *args], cwd=cwd, env=env, capture_output=True,
                           text=True, timeout=300, check=False)
        said = f"prefkit {' '.join(args)}: exit {p.returncode}\n{p.stdout[-1500:]}\n" \
               f"{p.stderr[-1500:]}"
        assert p.returncode == code, said
        assert "Traceback" not in p.stderr, said
        if code == 2:
            assert "error" in p.stderr and p.stdout == "", said
        else:
            assert p.stdout.strip(), said
