"""Recorded verdicts in: every file through the format registry (family ``verdicts``).

>>> import tempfile, pathlib, json
>>> p = pathlib.Path(tempfile.mkdtemp()) / "pairs.jsonl"
>>> rows = [{"question_id": 1, "model_a": "x", "model_b": "y", "judge_id": "j",
...          "winner_ab": "A", "winner_ba": "B"}]
>>> _ = p.write_text("\\n".join(json.dumps(r) for r in rows))
>>> data = read_verdicts([p])
>>> data.formats, len(data.verdicts), data.verdicts.ab.tolist(), data.verdicts.ba.tolist()
(['judge_pairs'], 1, [0], [1])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefkit.judge.records import Grades, Verdicts

__all__ = ["JudgeData", "answer_lengths", "expand_paths", "read_verdicts", "with_lengths"]

#: data-file suffixes a folder argument is searched for
SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


@dataclass
class JudgeData:
    """What :func:`read_verdicts` read: pairwise verdicts and single grades (``None`` when
    the files held none), every problem of a skipped row, and the format of each file."""

    verdicts: Verdicts | None
    grades: Grades | None
    skipped: list[Any] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; a folder stands for every JSON/JSONL(.gz) file below it, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file()
                           and f.name.lower().endswith(SUFFIXES))
            if not found:
                raise FileNotFoundError(f"{p}: a folder with no JSON or JSONL files in it")
            out.extend(found)
        else:
            out.append(p)
    return out


def read_verdicts(paths: Sequence[str | Path] | str | Path, *, format: str = "auto",
                  skip_invalid: bool = False, **options: Any) -> JudgeData:
    """Read judge verdicts and grades from ``paths`` (files or folders), each file in its
    own detected format (or ``format``), and join them.

    Raises:
        InvalidInputError: a file with invalid rows (unless ``skip_invalid``), an unknown
            format or no rows, naming the file, line and field.
    """
    from prefkit.data.formats import read_format

    if isinstance(paths, (str, Path)):
        paths = [paths]
    verdicts: list[Verdicts] = []
    grades: list[Grades] = []
    data = JudgeData(None, None)
    for p in expand_paths(paths):
        fmt, parsed, _ = read_format(p, ("verdicts",), format=format,
                                     skip_invalid=skip_invalid, **options)
        data.skipped.extend(parsed.problems)
        data.formats.append(fmt.name)
        data.files.append(str(p))
        (grades if isinstance(parsed.data, Grades) else verdicts).append(parsed.data)
    data.verdicts = Verdicts.concat(verdicts) if verdicts else None
    data.grades = Grades.concat(grades) if grades else None
    return data


def answer_lengths(paths: Sequence[str | Path] | str | Path) -> dict[tuple[str, str, int], float]:
    """``(prompt, model, turn) -> characters`` from FastChat answer files (``question_id``,
    ``model_id``, ``choices[0].turns``; files or folders), for the length bias of verdict
    files that do not hold the answers (mt_bench_repro's ``answers/``)."""
    from prefkit.data.errors import InvalidInputError
    from prefkit.data.table import Table

    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: dict[tuple[str, str, int], float] = {}
    for p in expand_paths(paths):
        table = Table.of(p)
        recs = table.records()
        problems = list(recs.problems)
        for rec, line in zip(recs.rows, recs.lines):
            choices = rec.get("choices")
            turns = choices[0].get("turns") if isinstance(choices, list) and choices and \
                isinstance(choices[0], dict) else None
            if not isinstance(turns, list) or "question_id" not in rec or "model_id" not in rec:
                problems.append(table.problem(
                    line, "not a FastChat answer record", "an answer record has question_id, "
                    "model_id and choices[0].turns (a list of texts)", "wrong_shape",
                    field="choices"))
                continue
            for t, text in enumerate(turns, 1):
                if isinstance(text, str):
                    out[(str(rec["question_id"]), str(rec["model_id"]), t)] = float(len(text))
        if problems:
            raise InvalidInputError(problems)
    return out


def with_lengths(v: Verdicts, lengths: dict[tuple[str, str, int], float]) -> Verdicts:
    """``v`` with ``length_a``/``length_b`` filled from :func:`answer_lengths` where they
    are unknown (the verdict's turn; turn 0 reads turn 1)."""
    import numpy as np

    la, lb = v.length_a.copy(), v.length_b.copy()
    for k in range(len(v)):
        t = int(v.turn[k]) or 1
        if np.isnan(la[k]):
            la[k] = lengths.get((v.prompt[k], v.model_a[k], t), np.nan)
        if np.isnan(lb[k]):
            lb[k] = lengths.get((v.prompt[k], v.model_b[k], t), np.nan)
    return v.with_columns(length_a=la, length_b=lb)
