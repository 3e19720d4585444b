"""Shared CLI helpers: reading input with clear errors, printing tables and JSON."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

# messages (errors with paths, lines and fixes) print on whole lines at any terminal width:
# rich must not insert line breaks into them
console = Console(stderr=True, soft_wrap=True)
# piped output (a file, a test, CI) gets a wide table instead of truncated item names
out = Console(width=None if sys.stdout.isatty() else 140)


def note(text: str, style: str = "yellow") -> None:
    """Print ``text`` to stderr in ``style``, as is: brackets in paths, item names or
    values are never read as rich markup."""
    from rich.text import Text

    console.print(Text(text, style=style))


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error (to stderr) and exit with ``code``; the message as is (rich's
    ``escape`` let a backslash before a bracket vanish: ``\\[x\\]`` printed ``[x\\]``)."""
    from rich.text import Text

    console.print(Text.assemble(("error:", "bold red"), " ", message))
    raise typer.Exit(code)


@contextlib.contextmanager
def interrupt_exits(message: str, *, grace: float = 5.0) -> Iterator[None]:
    """Ctrl-C inside the block raises ``KeyboardInterrupt`` (for the caller to report), and
    the process exits with 130 and ``message`` at most ``grace`` seconds later even if the
    unwinding hangs. The handler is installed even where SIGINT was inherited as ignored (a
    background job of a non-interactive shell, ``make test &``): Python and ``asyncio.run``
    then install none, and a run waiting on a server that never answers did not stop at
    Ctrl-C (tests/judge/test_interrupt.py). Work already committed (a SQLite cache) is kept
    either way."""
    import os
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum: int, frame: Any) -> None:
        def deadline() -> None:
            import time

            time.sleep(grace)
            sys.stderr.write(f"error: {message}\n")
            sys.stderr.flush()
            os._exit(130)

        threading.Thread(target=deadline, name="prefkit-interrupt", daemon=True).start()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: at once
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def flag_words(message: str, flags: dict[str, str]) -> str:
    """A config's error in the command line's words: each field name that ``flags`` maps
    (``{"total_steps": "--max-steps"}``) replaced by its flag, as a whole word."""
    import re

    if not flags:
        return message
    pattern = r"(?<![\w-])(" + "|".join(sorted(map(re.escape, flags), key=len, reverse=True)) \
        + r")(?![\w-])"
    return re.sub(pattern, lambda m: flags[m.group(1)], message)


#: Image formats a plot can be written as (matplotlib picks the format by extension).
PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def no_such_input(path: Path, what: str, example: str, *, flag: str = "",
                  noun: str = "file") -> NoReturn:
    """Exit 2 for an input ``path`` that is not there; ``-`` (standard input, which no
    command reads) says how to give ``what`` instead."""
    head = f"{flag} {path}" if flag else str(path)
    if str(path) == "-":
        fail(f"{head}: {what} are read from a file, not from standard input ('-'); save them "
             f"to a file first (e.g. `cat > {example}`) and pass its path")
    fail(f"{head}: no such {noun}")


def check_plot(plot: Path | None) -> None:
    """Refuse a --plot whose extension names no image format, before any slow work."""
    if plot is not None and plot.suffix.lower() not in PLOT_SUFFIXES:
        fail(f"--plot {plot}: the file name must end in one of {', '.join(PLOT_SUFFIXES)} "
             "(the extension picks the image format)")


def check_output(output: Path, kind: str, resume: bool, overwrite: bool) -> None:
    """Refuse an --output that a ``kind`` training run may not write (a file, a folder that
    is not a prefkit run, a used one without --resume/--overwrite), before any slow set-up."""
    from prefkit.runs import RunError
    from prefkit.runs import check_output as check

    try:
        check(output, kind, resume=resume, overwrite=overwrite)
    except RunError as e:
        fail(e.for_cli())


@contextlib.contextmanager
def run_errors() -> Iterator[None]:
    """Run-folder errors and interruptions (Ctrl-C: exit 130) in the command line's words."""
    from prefkit.runs import RunError, RunInterrupted

    try:
        yield
    except RunError as e:
        fail(e.for_cli())
    except RunInterrupted as e:
        fail(e.for_cli(), code=130)


@contextlib.contextmanager
def input_errors(what: object = None,
                 also: tuple[type[Exception], ...] = (ValueError, KeyError)) -> Iterator[None]:
    """Errors reading an input, in the command line's words (exit 2): an
    :class:`~prefkit.data.errors.InvalidInputError` as its rows say (file, line, field, fix);
    an error of a type in ``also`` as ``what: message`` (the message alone when ``what`` is
    None); ``what`` that names a flag (``"--task t.jsonl"``) heads both, so that the user
    sees which input was read. Other errors pass through.

        with input_errors(path):
            result = read_votes(path)
    """
    from prefkit.data.errors import InvalidInputError

    try:
        yield
    except InvalidInputError as e:
        flag = isinstance(what, str) and what.startswith("--")
        fail(f"{what}: {e.for_cli()}" if flag else e.for_cli())
    except also as e:
        fail(str(e) if what is None else f"{what}: {e}")


def parse_mapping(pairs: list[str] | None, what: str) -> dict[str, str]:
    """``["a=model_x", "b=model_y"]`` -> ``{"a": "model_x", "b": "model_y"}``. A key given
    twice with two values is refused (the last one silently won), and for ``--column`` one
    column named for two keys too (``a=left`` and ``b=left``: every row compared with
    itself)."""
    result: dict[str, str] = {}
    for p in pairs or []:
        if "=" not in p:
            fail(f"{what} expects KEY=VALUE, got {p!r} (e.g. {what} a=model_x)")
        k, v = (x.strip() for x in p.split("=", 1))
        if k in result and result[k] != v:
            fail(f"{what} {k}= given twice ({k}={result[k]} and {k}={v}); give it once")
        result[k] = v
    if what == "--column":
        seen: dict[str, str] = {}
        for k, v in result.items():
            if v and k != "annotators" and v in seen:
                fail(f"--column {seen[v]}={v} and {k}={v} name the same column for two "
                     "roles; map each role to its own column")
            seen.setdefault(v, k)
    return result


def read_input(
    path: Path | None,
    *,
    fmt: str,
    columns: dict[str, str],
    skip_invalid: bool,
    quiet: bool = False,
    aggregate: bool = False,
) -> Any:
    """Read votes (or the embedded Chatbot Arena counts when ``path`` is None) and report
    skipped rows on stderr. Returns the ``ReadResult``."""
    from prefkit.data.readers import read_votes

    if path is None:
        from prefkit.datasets import ARENA_COUNTS

        path, fmt = ARENA_COUNTS, "counts_json"
        if not quiet:
            console.print(
                "[dim]no FILE given: ranking the embedded Chatbot Arena votes of 2024-08-14 "
                "(1,670,250 votes, 129 models)[/]"
            )
    # a folder: read as a dataset when datasets' save_to_disk wrote it, else refused by the
    # reader (which names the data files in it), as every other command reads a folder
    if not path.exists():
        fail(f"{path}: no such file")
    with input_errors(path):
        result = read_votes(path, format=fmt, columns=columns or None, skip_invalid=skip_invalid,
                            aggregate=aggregate)
    report_skipped(path, result.skipped, len(result.skipped))
    for w in getattr(result, "warnings", ()):
        note(f"note: {path}: {w.reason}")
    total = _total_weight(result.votes)
    if total is not None and total <= 0:
        fail(f"{path}: every vote has weight 0, so there is nothing to rank; give the votes "
             "positive weights (1 = one vote) or drop the weight column")
    return result


def _total_weight(data: Any) -> float | None:
    w = getattr(data, "weight", None)
    if w is not None:
        return float(w.sum())
    counts = getattr(data, "counts", None)
    return None if counts is None else float(counts.sum())


def report_skipped(path: Any, problems: Any, n_rows: int, *, show: int = 20) -> None:
    """On stderr: how many rows of ``path`` were skipped, then the first ``show`` problems
    (file, line, field, how to fix) and how many more there are. Nothing when none were."""
    problems = list(problems)
    if not problems:
        return
    from prefkit.runs import plural

    note(f"skipped {plural(n_rows, 'invalid row')} of {path}:")
    for p in problems[:show]:
        console.print(f"  {p.describe(None) if hasattr(p, 'describe') else p}",
                      highlight=False, markup=False)
    if len(problems) > show:
        console.print(f"  ... and {len(problems) - show} more", highlight=False)


def print_json(obj: Any) -> None:
    """Strict JSON on stdout: non-finite numbers (an unbounded interval end) become null."""
    sys.stdout.write(json.dumps(_finite(obj), indent=2, default=_default, allow_nan=False) + "\n")


def _finite(o: Any) -> Any:
    import math

    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _clip(text: str, limit: int = 48) -> str:
    """At most ``limit`` characters of a name for a table (a 1 MB name must not flood it)."""
    return text if len(text) <= limit else f"{text[: limit - 24]}… ({len(text):,} characters)"


def leaderboard_table(records: list[dict[str, Any]], *, title: str, top: int | None) -> Text:
    """The leaderboard as a boxed table (rich's heavy-head box), laid out here in one pass:
    rich's ``Table`` measured and rendered every cell through its layout engine, ~60 ms for
    the 129 Arena rows (a tenth of a fit-only `prefkit rank`); this is ~2 ms. Widths are
    terminal cells (wide characters count two); lines are never wrapped (names are clipped
    by :func:`_clip`)."""
    from rich.cells import cell_len

    has = {k for r in records for k in r}
    columns: list[tuple[str, bool]] = [("rank", True), ("item", False), ("rating", True)]
    columns += [(c, True) for c, key in (("interval", "lower"), ("rank range", "rank_lower"),
                                         ("tier", "tier"), ("votes", "votes")) if key in has]
    rows: list[list[str]] = []
    provisional: list[bool] = []
    for r in records[: top or len(records)]:
        row = [str(r["rank"]), _clip(r["item"]), f"{r['rating']:.1f}"]
        if "lower" in has:
            row.append(f"{r['lower']:.1f} – {r['upper']:.1f}")
        if "rank_lower" in has:
            lo, hi = r["rank_lower"], r["rank_upper"]
            row.append(f"{lo}" if lo == hi else f"{lo}–{hi}")
        if "tier" in has:
            row.append(str(r["tier"]))
        if "votes" in has:
            row.append(f"{r['votes']:,.0f}")
        rows.append(row)
        provisional.append(bool(r.get("provisional")))
    mark = " (provisional)"
    widths = [cell_len(name) for name, _ in columns]
    for row, prov in zip(rows, provisional):
        for k, cell in enumerate(row):
            widths[k] = max(widths[k], cell_len(cell) + (len(mark) if k == 1 and prov else 0))

    def rule(left: str, fill: str, mid: str, right: str) -> str:
        return left + mid.join(fill * (w + 2) for w in widths) + right + "\n"

    def cell(text: str, k: int, extra: int = 0) -> str:
        pad = " " * (widths[k] - cell_len(text) - extra)
        return pad + text if columns[k][1] else text + pad

    t = Text(no_wrap=True, overflow="ignore")
    t.append(title + "\n", style="italic")
    t.append(rule("┏", "━", "┳", "┓"))
    t.append("┃")
    for k, (name, _) in enumerate(columns):
        t.append(" ")
        t.append(cell(name, k), style="bold")
        t.append(" ┃")
    t.append("\n" + rule("┡", "━", "╇", "┩"))
    for row, prov in zip(rows, provisional):
        t.append("│")
        for k, text in enumerate(row):
            if k == 1 and prov:  # the name as is (no markup), the mark in yellow
                t.append(" " + text)
                t.append(mark, style="yellow")
                t.append(" " * (widths[k] - cell_len(text) - len(mark)) + " │")
            else:
                t.append(f" {cell(text, k)} │")
        t.append("\n")
    t.append(rule("└", "─", "┴", "┘").rstrip("\n"))
    return t
