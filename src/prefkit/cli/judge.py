"""`prefkit judge`: run an LLM judge over answer pairs; measure recorded verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from prefkit.cli._common import console, fail, note, out, print_json, report_skipped

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

  prefkit judge analyze gpt-4_pair.jsonl gpt-4_single.jsonl --k 4 --k 5
"""


@judge_app.command(epilog=_ANALYZE_EXAMPLES)
def analyze(
    files: Annotated[list[Path], typer.Argument(help="Verdict and grade files (JSON, JSONL, .gz), or folders of them.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="Verdict format of every file (see `prefkit formats`); auto-detected per file by default.")] = "auto",
    k: Annotated[Optional[list[int]], typer.Option("--k", help="Also report NTR_k over k-answer sets (repeatable; default 4).")] = None,
    conflict_turn: Annotated[Optional[int], typer.Option(help="Compare pairwise verdicts with the single grades of this turn (default: the turn each verdict judged).")] = None,
    gold: Annotated[Optional[Path], typer.Option(help="Human labels of the same pairs (an annotations file, e.g. PandaLM's testset-v1.json): agreement before and after the Bradley-Terry repair.")] = None,
    show_unparsed: Annotated[int, typer.Option(help="Show this many error/unparsed verdicts per judge with their rows.", min=0)] = 5,
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
    from prefkit.data.errors import InvalidInputError
    from prefkit.judge.analyze import analyze as run
    from prefkit.judge.io import read_verdicts

    for f in files:
        if not f.exists():
            fail(f"{f}: no such file or folder")
    try:
        data = read_verdicts(files, format=fmt, skip_invalid=skip_invalid)
    except InvalidInputError as e:
        fail(e.for_cli())
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    report_skipped(", ".join(map(str, files)), data.skipped, len({(p.file, p.line)
                                                                 for p in data.skipped}))
    labels = _gold(gold) if gold is not None else None
    reports = run(data.verdicts, data.grades, ks=tuple(k or [4]), conflict_turn=conflict_turn,
                  gold=labels, show_unparsed=show_unparsed)
    if as_json:
        print_json({"judges": [r.to_dict() for r in reports]})
        return
    out.print(_table(reports, len(data.files)))
    _notes(reports, conflict_turn)


def _gold(path: Path) -> dict[tuple[str, str, str], int]:
    from prefkit.data.errors import InvalidInputError
    from prefkit.data.formats import read_format
    from prefkit.judge.repair import gold_from_annotations

    try:
        _, parsed, _ = read_format(path, ("annotations",))
        return gold_from_annotations(parsed.data)
    except InvalidInputError as e:
        fail(e.for_cli())
    except (ValueError, FileNotFoundError) as e:
        fail(f"--gold {path}: {e}")


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _table(reports: list[Any], n_files: int) -> Any:
    from rich.table import Table
    from rich.text import Text

    t = Table(title=f"judge consistency — {len(reports)} judge(s), {n_files} file(s)",
              title_justify="left", header_style="bold")
    for col in ("judge", "pairs", "position consistency", "first position", "conflict ratio",
                "non-transitive triads", "errors"):
        t.add_column(col, justify="left" if col == "judge" else "right", no_wrap=col == "judge")
    for r in reports:
        c = r.counts
        pc = r.position_consistency
        nt = r.non_transitivity
        t.add_row(Text(r.judge),
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
        if c.get("verdict_orders") == "any":
            lines.append("judged in one order only: position consistency does not apply; "
                         "transitivity over the one-order verdicts")
        if r.non_transitivity is not None:
            v = c["violations"]
            lines.append(f"violations: {v['cycle']} cycle, {v['tie_chain']} tie chain (A=B, "
                         f"B=C, A>C), {v['tie_split']} tie split (A=B, A>C, C>B); triads left "
                         f"out: {c['triads_left_out_inconsistent']:,} with an inconsistent "
                         f"pair, {c['triads_left_out_not_compared']:,} not all compared")
        for key in sorted(x for x in c if x.startswith("ntr_")):
            n = key[4:]
            lines.append(f"NTR_{n}: {_pct(c[key])} of {c.get('sets_' + n, 0):,} {n}-answer sets")
        if "prefers_longer" in c:
            lines.append(f"prefers the longer answer: {_pct(c['prefers_longer'])} of "
                         f"{c['length_compared']:,} verdicts")
        if "agreement" in c:
            lines.append(f"agreement with --gold on {c['agreement_pairs']:,} pairs: "
                         f"{_pct(c['agreement'])} (without ties {_pct(c['agreement_without_ties'])})"
                         f"; after the Bradley-Terry repair {_pct(c['agreement_bt_repair'])} "
                         f"({_pct(c['agreement_bt_repair_without_ties'])})")
        if lines:
            console.print(f"[bold]{r.judge}[/]:", highlight=False, markup=True)
            for line in lines:
                note("  " + line, style="")
        if r.unparsed:
            note(f"  {c.get('errors', 0):,} error/unparsed verdicts; the first ones:")
            for source, order, raw in r.unparsed:
                text = raw.replace("\n", " ")
                note(f"    {source} (order {order}): {text[:160] or '(empty output)'}", style="")
