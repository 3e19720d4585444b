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

__all__ = ["JudgeData", "expand_paths", "read_verdicts"]

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
