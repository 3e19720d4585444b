"""`prefkit judge`: run an LLM judge over answer pairs; measure recorded verdicts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from prefkit.cli._common import (
    _clip,
    fail,
    flag_words,
    input_errors,
    interrupt_exits,
    no_such_input,
    note,
    out,
    print_json,
    report_skipped,
)
from prefkit.runs import plural

judge_app = typer.Typer(
    help="LLM judges: judge answer pairs with a model in both presentation orders (cached), "
         "and measure recorded verdicts' consistency, bias and agreement with people.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    epilog="Examples:\n\n  prefkit judge analyze judgments/ --json\n\n"
           "  prefkit judge run pairs.jsonl --model qwen --both-orders --output verdicts.jsonl\n",
)

_ANALYZE_EXAMPLES = """Examples:

  prefkit judge analyze ../shared/data/judge/mtbench_repro/judgments/qwen/judge_14B

  prefkit judge analyze judgments/ --json > consistency.json

  prefkit judge analyze gpt-3.5-turbo-testset-v1.json --gold testset-v1.json

  prefkit judge analyze gpt4_pair.jsonl --gold human.jsonl   # MT-Bench's human judgments

  prefkit judge analyze gpt-4_pair.jsonl gpt-4_single.jsonl --k 4 --k 5

  prefkit judge analyze mtbench_repro/judgments --answers mtbench_repro/answers
"""


@judge_app.command(epilog=_ANALYZE_EXAMPLES)
def analyze(
    files: Annotated[list[Path], typer.Argument(help="Verdict and grade files (JSON, JSONL, .gz), or folders of them.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="Verdict format of every file (see `prefkit formats`); auto-detected per file by default.")] = "auto",
    k: Annotated[Optional[list[int]], typer.Option("--k", help="Also report NTR_k over k-answer sets (repeatable; default 4).")] = None,
    conflict_turn: Annotated[Optional[int], typer.Option(help="Compare pairwise verdicts with the single grades of this turn, one the grade files hold (default: the turn each verdict judged).")] = None,
    scale: Annotated[float, typer.Option(help="Top grade of the single grades' scale (1..SCALE; MT-Bench's single-v1: 10) where a grade file does not say its own; a grade outside it is counted, shown and left out of the conflict ratio. At least 1.")] = 10,
    gold: Annotated[Optional[Path], typer.Option(help="Human labels of the same pairs: MT-Bench's human judgments (majority per pair and turn), an annotations file (e.g. PandaLM's testset-v1.json), or the pairs file judged by prefkit judge run with a label column (e.g. LLMBar): agreement before and after the Bradley-Terry repair.")] = None,
    answers: Annotated[Optional[list[Path]], typer.Option(help="FastChat answer files (or a folder) for the length bias of verdict files without the answers (mt_bench_repro's answers/).")] = None,
    repair: Annotated[str, typer.Option(help="Measure repaired verdicts: 'likelihood' (sum both orders' verdict probabilities, TrustJudge) or 'bradley-terry' (per prompt); 'none' as recorded.")] = "none",
    tolerance: Annotated[float, typer.Option(help="--repair likelihood: a tie when the two most likely verdicts differ by less than 2 x this (TrustJudge's tolerance gap); 0 or more.")] = 0.0,
    show_unparsed: Annotated[int, typer.Option(help="Show this many error/unparsed verdicts per judge with their rows (0 or more).")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print {\"judges\": [...]} as JSON on stdout.")] = False,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Skip bad rows (each is reported) instead of stopping.")] = False,
) -> None:
    """Measure recorded LLM-judge verdicts: position consistency, first-position rate, score-comparison conflicts and non-transitivity, per judge.

    Position consistency: share of pairs judged in both orders whose verdicts agree after
    mapping back to the models (pairs with an error in either order left out, counted).
    First-position rate: share of non-tie verdicts that pick the answer shown first.
    Conflict ratio: among pairs with a consistent non-tie verdict, the share whose winner
    has a strictly lower single grade from the same judge for the same turn.
    Non-transitivity: per prompt, the share of triads of answers (all three pairs
    consistent) that no weak order explains. Fractions in [0, 1]; null where a metric does
    not apply.
    """
    from prefkit.judge.analyze import analyze as run
    from prefkit.judge.io import read_verdicts

    _in_range("--scale", scale, 1, what="the top grade of a 1..SCALE scale")
    _in_range("--tolerance", tolerance, 0)
    _in_range("--show-unparsed", show_unparsed, 0)
    if repair not in ("none", "likelihood", "bradley-terry"):
        fail(f"--repair must be none, likelihood or bradley-terry, got {repair!r}")
    for f in files:
        if not f.exists():
            no_such_input(f, "verdicts", "verdicts.jsonl", noun="file or folder")
    if any(x < 3 for x in k or []):
        fail(f"--k {min(k or [])}: NTR_k needs sets of at least 3 answers (a triad); give "
             "--k 3 or more, e.g. --k 4")
    with input_errors(also=(ValueError, FileNotFoundError)):
        data = read_verdicts(files, format=fmt, skip_invalid=skip_invalid)
    report_skipped(", ".join(map(str, files)), data.skipped, len({(p.file, p.line)
                                                                 for p in data.skipped}))
    if gold is not None and (data.verdicts is None or not len(data.verdicts)):
        fail(f"--gold {gold}: human labels are compared with pairwise verdicts, and "
             f"{', '.join(map(str, files))} hold single grades only; add the judge's pairwise "
             "verdict files, or leave --gold out")
    labels = _gold(gold, quiet=as_json, skip_invalid=skip_invalid) if gold is not None else None
    if answers and data.verdicts is not None:
        from prefkit.judge.io import answer_lengths, with_lengths

        with input_errors("--answers", also=(ValueError, FileNotFoundError)):
            data.verdicts = with_lengths(data.verdicts, answer_lengths(answers))
    if repair != "none" and data.verdicts is not None:
        data.verdicts = _repaired(data.verdicts, repair, tolerance, quiet=as_json)
    try:
        reports = run(data.verdicts, data.grades, ks=tuple(k or [4]),
                      conflict_turn=conflict_turn, gold=labels, show_unparsed=show_unparsed,
                      scale=scale)
    except ValueError as e:  # a --conflict-turn that no grade has
        fail(flag_words(str(e), {"conflict_turn": "--conflict-turn"}))
    if as_json:
        print_json({"judges": [r.to_dict() for r in reports]})
        return
    out.print(_table(reports, len(data.files)))
    _notes(reports, conflict_turn)


def _repaired(v: Any, repair: str, tolerance: float, quiet: bool) -> Any:
    from prefkit.judge.repair import bradley_terry_repair, likelihood_aggregate

    if repair == "likelihood":
        if not v.has_probabilities:
            fail("--repair likelihood needs verdict probabilities in both orders, and these "
                 "files have none (record them with prefkit judge run --top-logprobs 5 on a "
                 "server that returns logprobs)")
        v, n = likelihood_aggregate(v, tolerance=tolerance)
        if not quiet:
            note(f"likelihood-aware aggregation repaired {n:,} of {plural(len(v), 'pair')} (the rest "
                 "lack probabilities in both orders and are measured as recorded)", style="")
        return v
    if not quiet:
        note("measuring the Bradley-Terry repair: per prompt, the order of the strengths "
             "fitted to every verdict (transitive by construction)", style="")
    return bradley_terry_repair(v)


def _gold(path: Path, quiet: bool, skip_invalid: bool = False) -> dict[tuple[Any, ...], int]:
    from prefkit.judge.inputs import read_gold

    if path.is_dir():
        fail(f"--gold {path} is a folder; give the labels file in it")
    with input_errors(f"--gold {path}", also=(ValueError, FileNotFoundError)):
        gold = read_gold(path, skip_invalid)
    if not quiet:
        note(f"--gold {path}: {gold.summary}", style="")
    return gold.labels


def _in_range(flag: str, value: float, low: float, high: float | None = None, *,
              what: str = "") -> None:
    """Refuse a number outside [low, high] in our own words: on whole lines at any terminal
    width (typer's min=/max= errors print in a panel wrapped at $COLUMNS, which splits the
    flag's name in a narrow terminal)."""
    if math.isfinite(value) and low <= value and (high is None or value <= high):
        return
    bound = f"at least {low:g}" if high is None else f"from {low:g} to {high:g}"
    bound = bound if math.isfinite(value) or math.isnan(value) else f"a finite number {bound}"
    fail(f"{flag} must be {bound}" + (f" ({what})" if what else "") + f", got {value:g}")


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _table(reports: list[Any], n_files: int) -> Any:
    from rich.table import Table
    from rich.text import Text

    t = Table(title=f"judge consistency — {plural(len(reports), 'judge')}, {plural(n_files, 'file')}",
              title_justify="left", header_style="bold")
    for col in ("judge", "pairs", "position consistency", "first position", "conflict ratio",
                "non-transitive triads", "errors"):
        t.add_column(col, justify="left" if col == "judge" else "right", no_wrap=col == "judge")
    for r in reports:
        c = r.counts
        pc = r.position_consistency
        nt = r.non_transitivity
        t.add_row(Text(_clip(r.judge)),
                  f"{c.get('pairs', 0):,}",
                  "—" if pc is None else f"{_pct(pc.value)} ({pc.count:,}/{pc.total:,})",
                  _pct(r.first_position_rate.value if r.first_position_rate else None),
                  "—" if r.conflict_ratio is None else
                  f"{_pct(r.conflict_ratio.value)} ({r.conflict_ratio.count}/{r.conflict_ratio.total})",
                  "—" if nt is None else f"{_pct(nt.ratio.value)} ({nt.ratio.count}/{nt.ratio.total})",
                  f"{c.get('errors', 0):,}")
    return t


def _notes(reports: list[Any], conflict_turn: int | None) -> None:
    for r in reports:
        c = r.counts
        lines = []
        if r.conflict_ratio is not None:
            turn = c.get("conflict_turn")
            lines.append(f"conflict ratio compares with single grades of turn {turn}"
                         + (" (the turn the pairwise verdicts judged)" if conflict_turn is None
                            else " (--conflict-turn)"))
        if c.get("grades_missing"):
            lines.append(f"{c['grades_missing']:,} of {plural(c['grades'], 'single grade')} "
                         f"{'is' if c['grades_missing'] == 1 else 'are'} missing or not a grade (null, NaN, FastChat's -1 for a grade the "
                         "judge did not give)")
        if r.conflict_ratio is not None and conflict_turn is None and c.get(
                "conflict_turn") in (0, [0]):
            lines.append("the verdicts name no turn (no turn column: turn 0), and grades are "
                         "per turn: give --conflict-turn 1 (or 2) to compare them with the "
                         "grades of that turn")
        if c.get("conflict_no_grade"):
            lines.append(f"{plural(c['conflict_no_grade'], 'pair')} without a single grade of both "
                         "answers for the turn compared, left out of the conflict ratio")
        if c.get("grades_out_of_scale"):
            top = c["grade_scale_top"]
            shown = ", ".join(f"{src} ({x:g} of 1..{t:g})" for src, x, t in r.out_of_scale)
            lines.append(f"{plural(c['grades_out_of_scale'], 'single grade')} outside the scale 1.."
                         f"{top if isinstance(top, list) else f'{top:g}'} (--scale), left out "
                         f"of the conflict ratio as not grades of that scale"
                         + (f" ({plural(c['conflict_out_of_scale'], 'pair')})"
                            if "conflict_out_of_scale" in c else "") + f": {shown}"
                         + (", ..." if len(r.out_of_scale) < c["grades_out_of_scale"] else ""))
        if c.get("verdict_orders") == "any":
            lines.append("judged in one order only: position consistency does not apply; "
                         "transitivity over the one-order verdicts")
        if r.non_transitivity is not None:
            v = c["violations"]
            lines.append(f"violations: {plural(v['cycle'], 'cycle')}, {plural(v['tie_chain'], 'tie chain')} "
                         f"(A=B, B=C, A>C), {plural(v['tie_split'], 'tie split')} (A=B, A>C, "
                         "C>B); triads left "
                         f"out: {c['triads_left_out_inconsistent']:,} with an inconsistent "
                         f"pair, {c['triads_left_out_not_compared']:,} not all compared")
        for key in sorted(x for x in c if x.startswith("ntr_")):
            n = key[4:]
            sets = c.get("sets_" + n, 0)
            lines.append(f"NTR_{n}: {_pct(c[key])} of {plural(sets, f'{n}-answer set')}" if sets
                         else f"NTR_{n}: no set of {n} answers to one question whose pairs "
                         "all have a consistent verdict")
        if "prefers_longer" in c:
            lines.append(f"prefers the longer answer: {_pct(c['prefers_longer'])} of "
                         f"{plural(c['length_compared'], 'verdict')}")
        if "agreement" in c:
            lines.append(f"agreement with --gold on {plural(c['agreement_pairs'], 'pair')}: "
                         f"{_pct(c['agreement'])} (without ties {_pct(c['agreement_without_ties'])})"
                         f"; after the Bradley-Terry repair {_pct(c['agreement_bt_repair'])} "
                         f"({_pct(c['agreement_bt_repair_without_ties'])})")
            if not c["agreement_pairs"]:
                lines.append("no --gold label matches a verdict of this judge: the two are "
                             "joined on question_id, model_a, model_b (either order) and, "
                             "where the gold has one, turn; check that both name the same "
                             "questions, models and turns")
        if lines:
            note(f"{_clip(r.judge)}:", style="bold")
            for line in lines:
                note("  " + line, style="")
        if r.unparsed:
            note(f"  {plural(c.get('errors', 0), 'error/unparsed verdict')}; the first ones:")
            for source, order, raw in r.unparsed:
                text = raw.replace("\n", " ")
                note(f"    {source} (order {order}): {text[:160] or '(empty output)'}", style="")


_RUN_EXAMPLES = """Examples:

  prefkit judge run pairs.jsonl --model qwen2.5-7b --base-url http://127.0.0.1:8000/v1 --output verdicts.jsonl

  prefkit judge run llmbar_natural.json --model gpt-4o-mini --template arena_hard --cache judge.sqlite --output v.jsonl

  prefkit judge run answers.jsonl --kind single --template mtbench_single --model m --output grades.jsonl

  prefkit judge run pairs.jsonl --local ./my-llama --template alpaca_eval --output v.jsonl --json

  prefkit judge run pairs.jsonl --model m --cache judge.sqlite --output v.jsonl --overwrite
"""


@judge_app.command(epilog=_RUN_EXAMPLES)
def run(
    data: Annotated[Path, typer.Argument(help="Pairs (or answers, or answer sets) to judge: JSON, JSONL, CSV or Parquet.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Verdict file to write (JSONL); prefkit judge analyze and prefkit rank read it.")],
    model: Annotated[str, typer.Option(help="Model name sent to the server.", envvar="PREFKIT_JUDGE_MODEL")] = "",
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible server (default $OPENAI_BASE_URL, else api.openai.com with $OPENAI_API_KEY).")] = None,
    local: Annotated[Optional[Path], typer.Option(help="Judge with a local transformers causal LM folder instead of a server.")] = None,
    template: Annotated[str, typer.Option(help="mtbench_pair, mtbench_single, arena_hard, alpaca_eval, listwise, or a template file (.json or Jinja text).")] = "mtbench_pair",
    kind: Annotated[str, typer.Option(help="pairwise, single or listwise (default: the template's).")] = "",
    both_orders: Annotated[bool, typer.Option("--both-orders/--one-order", help="Judge each pair in both presentation orders.")] = True,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once (at least 1).")] = 16,
    cache: Annotated[Optional[Path], typer.Option(help="SQLite cache: a rerun makes no calls, an interrupted run resumes.")] = None,
    top_logprobs: Annotated[int, typer.Option(help="Alternatives per token to ask for (verdict probabilities), 0..20; 0: none.")] = 5,
    scale: Annotated[int, typer.Option(help="Top grade of a single rating (1..SCALE), at least 2.")] = 10,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an --output file that exists (with --cache, the answers cached are not asked again).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a summary as JSON on stdout.")] = False,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Skip bad input rows (each is reported) instead of stopping.")] = False,
) -> None:
    """Judge answer pairs (or single answers, or answer sets) with an LLM and write the verdicts.

    Pairwise verdicts are asked in both presentation orders (--one-order: once), with
    verdict probabilities from the judge's label-token log-probabilities where the server
    gives them; a failed request or an unparsed answer is written as an error verdict with
    its reason and counted, never replaced by a default.
    """
    from prefkit.judge.inputs import read_judge_inputs
    from prefkit.judge.templates import load_template

    _in_range("--concurrency", concurrency, 1, what="requests in flight at once")
    _in_range("--top-logprobs", top_logprobs, 0, 20, what="alternatives per token")
    _in_range("--scale", scale, 2, what="the top grade of a 1..SCALE rating")
    try:
        tpl = load_template(template, kind=kind or None)  # type: ignore[arg-type]
    except (ValueError, OSError) as e:
        fail(f"--template: {e}")
    k = kind or tpl.kind
    if k != tpl.kind:
        fail(f"--kind {k} does not match template {tpl.name!r}, which is {tpl.kind}")
    if not data.exists():
        no_such_input(data, "the pairs to judge", "pairs.jsonl")
    if cache is not None and cache.is_dir():
        fail(f"--cache {cache} is a folder; give a file name, e.g. {cache}/judge.sqlite")
    if output.exists() and output.is_dir():
        fail(f"--output {output} is a folder; give a file name, e.g. {output}/verdicts.jsonl")
    check_written("--output", output, data, cache)
    if output.exists() and not overwrite:
        fail(f"--output {output} already exists; pass --overwrite to replace it, or choose "
             "another --output" + (f" (the answers in --cache {cache} are not asked again)"
                                   if cache is not None else
                                   " (add --cache judge.sqlite so that a rerun asks again only "
                                   "what is not cached)"))
    with input_errors(also=()):
        items, skipped = read_judge_inputs(data, k, skip_invalid=skip_invalid)
    report_skipped(data, skipped, len({p.line for p in skipped}))
    backend = _backend(model, base_url, local, cache, concurrency)
    try:  # the output's folder before any request, not after the last
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"--output {output}: cannot write it ({e.strerror or e}); choose another path")
    stopped = (f"interrupted: nothing written to {output}; "
               + (f"rerun the same command to resume from --cache {cache}" if cache else
                  "rerun with --cache judge.sqlite to keep answers across interruptions"))
    # interrupt_exits installs its own SIGINT handler: Ctrl-C ends the run even when the
    # process started with SIGINT ignored (a background job of a non-interactive shell, as
    # `make test &`), where Python and asyncio.run install none and the run would go on
    # waiting on its server (tests/judge/test_interrupt.py)
    try:
        with interrupt_exits(stopped):
            records = _judge(backend, items, tpl, k, both_orders, model, top_logprobs,
                             concurrency, scale, progress=not as_json)
    except KeyboardInterrupt:
        fail(stopped, code=130)
    _refuse_unreachable(records, k, getattr(getattr(backend, "backend", backend), "base_url",
                                            base_url or ""), output)
    import json

    replaced = output.exists()
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                   encoding="utf-8")
    tmp.replace(output)
    summary = _summary(records, k, output, backend)
    if as_json:
        print_json(summary)
        return
    note(f"wrote {plural(len(records), f'{k} record')} to {output}"
         + (" (--overwrite: the file that was there is replaced)" if replaced else "")
         + f": {summary['errors']:,} error or unparsed "
         f"{'verdict' if summary['errors'] == 1 else 'verdicts'} of {summary['verdicts']:,}"
         + (f"; {plural(summary['cached'], 'answer')} from the cache"
            if summary.get("cached") else ""),
         style="")
    for source, reason in summary["error_examples"]:
        note(f"  {source}: {reason}")
    if summary.get("out_of_scale"):
        note(f"  {summary['out_of_scale']:,} of the errors are grades outside the scale 1.."
             f"{scale} (written with score null, the grade in the record's error and output; "
             "a judge that grades on another scale needs --scale or its template)")


def _refuse_unreachable(records: list[dict[str, Any]], kind: str, url: str,
                        output: Path | None) -> None:
    """Exit 2, writing nothing, when no request got an answer from a chat-completions API:
    the connection could not be made, or every request failed the same way that asking
    again cannot mend (no such path, a refused key, a web page instead of the API). The
    output would hold only errors."""
    keys = ("error_ab", "error_ba") if kind == "pairwise" else ("error",)
    reasons = [r.get(key) for r in records for key in keys
               if key == "error" or r.get("winner_" + key[-2:]) is not None]
    if not reasons or not all(isinstance(x, str) and x.startswith("request failed: ")
                              for x in reasons):
        return
    why = reasons[0].removeprefix("request failed: ")
    nothing = "nothing was written" + (f" to {output}" if output is not None else "")
    if all("cannot connect to " in x for x in reasons):
        fail(f"--base-url {url}: no request reached the server: {why}. Start the server (or "
             f"check --base-url and its port), then run the command again; {nothing}")
    for start, fix in _SERVER_FIXES:
        if all(x.removeprefix("request failed: ").startswith(start) for x in reasons):
            fail(f"--base-url {url}: every request failed the same way: {why}. {fix}; {nothing}")


# a failure that every request meets alike, and what the user can change
_SERVER_FIXES = (
    ("HTTP 404", "Check --base-url (an OpenAI-compatible server's ends in /v1, e.g. "
     "http://127.0.0.1:8000/v1; prefkit posts to it + /chat/completions) and --model (the "
     "name the server serves)"),
    ("HTTP 405", "Check --base-url: an OpenAI-compatible server's ends in /v1, e.g. "
     "http://127.0.0.1:8000/v1"),
    ("HTTP 401", "Set OPENAI_API_KEY to the key the server expects"),
    ("HTTP 403", "Set OPENAI_API_KEY to a key allowed to use --model"),
    ("a web page", "Check --base-url: it should be an OpenAI-compatible API (ending in /v1, "
     "e.g. http://127.0.0.1:8000/v1), not a web site"),
)


def _backend(model: str, base_url: str | None, local: Path | None, cache: Path | None,
             concurrency: int) -> Any:
    if local is not None:
        from prefkit.llm.local import LocalModelBackend

        if not (local / "config.json").is_file():
            fail(f"--local {local}: not a transformers model folder (no config.json)")
        backend: Any = LocalModelBackend(str(local), name=model or local.name)
    else:
        from prefkit.llm.client import OpenAIClient

        if not model:
            fail("--model: name the judge model the server should answer with "
                 "(or set PREFKIT_JUDGE_MODEL)")
        try:
            backend = OpenAIClient(base_url=base_url, model=model, concurrency=concurrency)
        except ValueError as e:
            fail(flag_words(str(e), {"base_url=": "--base-url"}))
    if cache is not None:
        import sqlite3

        from prefkit.llm.cache import CachedBackend

        try:
            backend = CachedBackend(backend, cache)
        except sqlite3.Error as e:
            fail(f"--cache {cache}: cannot open it as an SQLite cache ({e}); give a file in "
                 "a folder that exists and that you can write, e.g. --cache judge.sqlite")
    return backend


def _judge(backend: Any, items: list[dict[str, Any]], tpl: Any, kind: str, both_orders: bool,
           model: str, top_logprobs: int, concurrency: int, scale: int,
           progress: bool) -> list[dict[str, Any]]:
    from prefkit.judge.protocols import judge_pairs, rank_answers, rate_answers

    if kind == "pairwise":
        return judge_pairs(backend, items, tpl, both_orders=both_orders, model=model,
                           top_logprobs=top_logprobs, concurrency=concurrency, progress=progress)
    if kind == "single":
        return rate_answers(backend, items, tpl, scale=scale, model=model,
                            top_logprobs=top_logprobs, concurrency=concurrency,
                            progress=progress)
    return rank_answers(backend, items, tpl, model=model, concurrency=concurrency,
                        progress=progress)


def _summary(records: list[dict[str, Any]], kind: str, output: Path, backend: Any
             ) -> dict[str, Any]:
    errors: list[tuple[str, str]] = []
    verdicts = 0
    for i, r in enumerate(records, 1):
        keys = ("ab", "ba") if kind == "pairwise" else ("",)
        for o in keys:
            w = r.get(f"winner_{o}") if o else True
            if o and w is None:
                continue
            verdicts += 1
            reason = r.get(f"error_{o}" if o else "error")
            if reason:
                errors.append((f"{output}:{i}" + (f" order {o}" if o else ""), reason))
    out = {"output": str(output), "kind": kind, "records": len(records), "verdicts": verdicts,
           "errors": len(errors), "error_examples": errors[:5],
           "judge": getattr(backend, "name", "")}
    if hasattr(backend, "hits"):
        out["cached"] = backend.hits
        out["calls"] = backend.calls
    if kind == "single":
        out["out_of_scale"] = sum(bool(r.get("out_of_scale")) for r in records)
    if kind == "pairwise":
        both = [r for r in records if r["winner_ba"] is not None and r["winner"] != "error"]
        out["position_consistency"] = (sum(r["winner"] != "inconsistent" for r in both)
                                       / len(both)) if both else None
    return out


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def check_written(flag: str, path: Path, data: Path, cache: Path | None,
                  example: str = "verdicts.jsonl") -> None:
    """Refuse a file a judge command would write (``--output`` / ``--verdicts``) that would
    destroy an input or cannot be written, before any request: a folder, the pairs file
    itself, the --cache file, a path under no folder one can write in (nothing is made
    here)."""
    if path.is_dir():
        fail(f"{flag} {path} is a folder; give a file name, e.g. {path}/{example}")
    if _same_file(path, data):
        fail(f"{flag} {path} is the pairs file being judged ({data}): writing it would "
             f"replace the pairs; choose another file, e.g. {flag} {example}")
    if cache is not None and _same_file(path, cache):
        fail(f"{flag} {path} is also the --cache file: the verdicts would replace the cache; "
             "give them different names, e.g. --cache judge.sqlite")
    if cache is not None and _same_file(cache, data):
        fail(f"--cache {cache} is the pairs file being judged ({data}); give the cache its "
             "own file, e.g. --cache judge.sqlite")
    import os

    parent = path.absolute().parent  # the nearest folder that exists must take new files
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        fail(f"{flag} {path}: cannot write it ({parent} is not a folder you can write in); "
             "choose another path")


# -- a judge as a reward model: `prefkit reward eval --judge` --------------------------------
#: the judge options of `prefkit reward eval` (declared here, next to the judge they drive)
JudgeOpt = Annotated[Optional[str], typer.Option("--judge", help="Evaluate an LLM judge instead of a reward model: the model name an OpenAI-compatible server answers with (--base-url, default $OPENAI_BASE_URL); each pair is judged pairwise and scored by the judge's preference for the chosen answer.")]
JudgeLocalOpt = Annotated[Optional[Path], typer.Option("--local", help="Evaluate a local transformers causal LM folder as the judge (its next-token distribution over the labels read directly with one-token templates, e.g. --template alpaca_eval).")]
JudgeUrlOpt = Annotated[Optional[str], typer.Option("--base-url", help="--judge: the OpenAI-compatible server (default $OPENAI_BASE_URL, else api.openai.com with $OPENAI_API_KEY).")]
JudgeTemplateOpt = Annotated[str, typer.Option("--template", help="--judge: pairwise template: mtbench_pair, arena_hard, alpaca_eval or a template file.")]
JudgeOrdersOpt = Annotated[bool, typer.Option("--both-orders/--one-order", help="--judge: judge each pair in both presentation orders and average them (--one-order: once, the chosen answer first in a fixed half of the pairs).")]
JudgeCacheOpt = Annotated[Optional[Path], typer.Option("--cache", help="--judge: SQLite cache of the judge's answers (a rerun makes no calls).")]
JudgeConcurrencyOpt = Annotated[int, typer.Option("--concurrency", help="--judge: requests in flight at once (at least 1).")]
JudgeVerdictsOpt = Annotated[Optional[Path], typer.Option("--verdicts", help="--judge: also write the judge's verdicts (JSONL, as prefkit judge run writes them; model_a/model_b are 'chosen'/'rejected').")]


def judge_pair_scores(pairs: Any, *, judge: str | None, local: Path | None,
                      base_url: str | None, template: str, both_orders: bool,
                      cache: Path | None, concurrency: int, verdicts: Path | None,
                      data: Path, quiet: bool) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    """Judge every chosen/rejected pair (:mod:`prefkit.judge.evaluate`) and return (the
    judged pairs, chosen scores, rejected scores, :class:`JudgeScores`, a JSON summary).
    Error verdicts are counted and the first ones shown with their pair's line; a pair with
    none valid is left out of the accuracy, and said."""
    from prefkit.judge.evaluate import judge_scores, pair_items
    from prefkit.judge.protocols import judge_pairs
    from prefkit.judge.templates import load_template

    _in_range("--concurrency", concurrency, 1, what="requests in flight at once")
    try:
        tpl = load_template(template, kind="pairwise")
    except (ValueError, OSError) as e:
        fail(f"--template: {e}")
    if tpl.kind != "pairwise":
        fail(f"--template {template}: a judge is evaluated on pairs, and {tpl.name!r} is a "
             f"{tpl.kind} template; use mtbench_pair, arena_hard or alpaca_eval")
    if verdicts is not None and verdicts.is_dir():
        fail(f"--verdicts {verdicts} is a folder; give a file name, e.g. "
             f"{verdicts}/verdicts.jsonl")
    if verdicts is not None:
        try:  # the folder before any request, not after the last
            verdicts.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            fail(f"--verdicts {verdicts}: cannot write it ({e.strerror or e}); choose another "
                 "path")
    backend = _backend(judge or "", base_url, local, cache, concurrency)
    items = pair_items(pairs, both_orders=both_orders)
    stopped = ("interrupted: nothing written; "
               + (f"rerun the same command to resume from --cache {cache}" if cache else
                  "rerun with --cache judge.sqlite to keep the judge's answers across "
                  "interruptions"))
    try:
        with interrupt_exits(stopped):
            records = judge_pairs(backend, items, tpl, both_orders=both_orders,
                                  model=judge or "", concurrency=concurrency,
                                  progress=not quiet)
    except KeyboardInterrupt:
        fail(stopped, code=130)
    if local is None:  # as judge run: a server never reached is said at once, not per pair
        _refuse_unreachable(records, "pairwise", getattr(getattr(backend, "backend", backend),
                                                         "base_url", base_url), verdicts)
    if verdicts is not None:
        import json

        replaced = verdicts.exists()
        try:
            verdicts.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                        for r in records), encoding="utf-8")
        except OSError as e:
            fail(f"--verdicts {verdicts}: cannot write it ({e.strerror or e}); the judge's "
                 "answers are " + (f"in --cache {cache}: rerun with another --verdicts"
                                   if cache else "lost: rerun with --cache judge.sqlite"))
        if not quiet:
            note(f"wrote {plural(len(records), 'verdict')} to --verdicts {verdicts}"
                 + (" (--overwrite: the file that was there is replaced)" if replaced else ""),
                 style="")
    js = judge_scores(records)
    lines = pairs.source_line if pairs.source_line is not None else range(1, len(pairs) + 1)
    name = getattr(backend, "name", "") or judge or str(local)
    summary = {"name": name, "template": tpl.name, "both_orders": both_orders, **js.counts(),
               "accuracy_with_unjudged_as_ties": js.accuracy_with_unjudged_as_ties()}
    if hasattr(backend, "hits"):
        summary |= {"cached": backend.hits, "calls": backend.calls}
    if js.errors and not quiet:
        n_err = len(js.errors)
        note(f"{n_err:,} of {plural(js.counts()['orders_asked'], 'verdict')} "
             f"{'is an error' if n_err == 1 else 'are errors'} (failed or unparsed), each left "
             "out; the first ones:")
        for i, order, reason, text in js.errors[:5]:
            shown = " ".join(text.split())[:120]
            note(f"  {data}:{lines[i]} (order {order}): {reason}"
                 + (f": {shown!r}" if shown else ""), style="")
    if js.single_order and not quiet:
        note(f"{plural(js.single_order, 'pair')} scored from the one order with a valid verdict",
             style="")
    if not js.judged.any():
        fail(f"the judge gave no valid verdict on any of the {plural(len(pairs), 'pair')} of {data}; "
             "see the errors above " + (f"(its answers are in --verdicts {verdicts})"
                                        if verdicts is not None else
                                        "(run with --verdicts FILE to keep its answers)"))
    if js.unjudged and not quiet:
        note(f"{js.unjudged:,} of {plural(len(pairs), 'pair')} "
             f"{'has' if js.unjudged == 1 else 'have'} no valid verdict and "
             f"{'is' if js.unjudged == 1 else 'are'} left out of the accuracy (counted as ties, RewardBench's generative rule: "
             f"{summary['accuracy_with_unjudged_as_ties']:.3f})")
    if not quiet and not summary["from_probabilities"]:
        note("the judge gave no verdict probabilities (label-token logprobs): each order's "
             "vote is 0, 1/2 or 1, so the calibration below describes hard votes", style="dim")
    s_c, s_r = js.scores()
    return pairs.select(js.judged), s_c, s_r, js, summary
