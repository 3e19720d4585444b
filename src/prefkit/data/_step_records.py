"""The records of family ``"steps"`` (:mod:`prefkit.data.steps` reads them): step-labelled
solutions with their outcomes, tasks with reference answers, candidates to score; and
:func:`write_steps`, which writes step-labelled solutions in a layout the readers read back.

A solution's **outcome** says whether its final answer is right: ``True``/``False``, a
probability in [0, 1] (a soft outcome), or ``None`` when the source does not say. It is the
only label the implicit PRM trains on (:mod:`prefkit.process.implicit`), and the one online
RL rewards; the step labels say where a solution went wrong.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Candidates", "SolutionOutcome", "StepSolutions", "Tasks", "write_steps"]

#: a solution's outcome: right/wrong, a probability of right, or None (not given)
SolutionOutcome = bool | float | None


@dataclass
class StepSolutions:
    """Solutions split into steps, with one label per step and the solution's outcome.

    prompts:  the problems.
    steps:    each solution's steps (a list of strings, at least one).
    labels:   per step, 1.0 right, 0.0 wrong, in between soft, NaN unlabelled.
    ids:      an id per solution (the file's ``id`` or the line).
    lines:    the line (or row) each solution was read from.
    outcomes: per solution, whether its final answer is right (``True``/``False``, a
              probability in [0, 1], or ``None`` when the source does not say).
    soft:     whether any label is soft.
    """

    prompts: list[str] = field(default_factory=list)
    steps: list[list[str]] = field(default_factory=list)
    labels: list[list[float]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    outcomes: list[SolutionOutcome] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompts)

    def add(self, line: int, prompt: str, steps: list[str], labels: list[float],
            id_: str | None = None, outcome: SolutionOutcome = None) -> None:
        self.prompts.append(prompt)
        self.steps.append(steps)
        self.labels.append(labels)
        self.ids.append(str(line) if id_ is None else str(id_))
        self.lines.append(line)
        self.outcomes.append(outcome)

    @property
    def soft(self) -> bool:
        return any(0.0 < x < 1.0 for row in self.labels for x in row if not math.isnan(x))

    @property
    def first_error(self) -> list[int]:
        """ProcessBench's ``label`` per solution: the first step labelled below 0.5, else -1."""
        return [next((i for i, x in enumerate(row) if x < 0.5), -1)  # NaN < 0.5 is False
                for row in self.labels]

    @property
    def has_outcomes(self) -> bool:
        """Whether every solution has an outcome (none is ``None``)."""
        return all(o is not None for o in self.outcomes)

    def subset(self, index: Sequence[int]) -> StepSolutions:
        """The solutions at ``index``, in that order (outcomes kept)."""
        out = StepSolutions()
        for i in index:
            out.add(self.lines[i], self.prompts[i], self.steps[i], self.labels[i], self.ids[i],
                    self.outcomes[i])
        return out

    @classmethod
    def concatenate(cls, parts: Iterable[StepSolutions]) -> StepSolutions:
        """The solutions of ``parts`` one after the other (lines, ids and outcomes kept:
        ``lines`` then say the line in each part's own file)."""
        out = cls()
        for part in parts:
            for i in range(len(part)):
                out.add(part.lines[i], part.prompts[i], part.steps[i], part.labels[i],
                        part.ids[i], part.outcomes[i])
        return out


@dataclass
class Tasks:
    """Problems with a reference answer a checker can verify (:mod:`prefkit.answers`).

    kind: ``"gsm8k"`` (numeric), ``"math"`` (MATH equivalence) or ``"game24"`` (the answer
    is the puzzle's four numbers; any valid expression is right)."""

    kind: str
    prompts: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompts)


@dataclass
class Candidates:
    """Solutions to score: per prompt, one or more candidates, each a list of steps; the
    reference ``answers`` when the file gives them (None otherwise)."""

    prompts: list[str] = field(default_factory=list)
    candidates: list[list[list[str]]] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompts)


# -- writing ------------------------------------------------------------------------------------
def _processbench_label(labels: Sequence[float]) -> int | None:
    """The first wrong step when ``labels`` are ProcessBench-shaped (1 up to it, 0 at it,
    NaN after; or all 1: -1), else None."""
    for i, x in enumerate(labels):
        if x == 1.0:
            continue
        if x == 0.0 and all(math.isnan(y) for y in labels[i + 1:]):
            return i
        return None
    return -1


def write_steps(data: StepSolutions, path: str | Path) -> str:
    """Write ``data`` as JSONL that :func:`~prefkit.data.steps.read_steps` reads back to the
    same solutions (prompts, steps, labels, ids, outcomes); returns the layout written.

    ``"processbench"`` when every solution's labels have ProcessBench's shape (right up to
    the first wrong step, unlabelled after): ``id, problem, steps, label`` and the outcome as
    ``final_answer_correct``; otherwise the soft layout ``id, prompt, steps, values,
    outcome`` (format ``math_shepherd``), an unlabelled step written ``null``. A solution
    without an outcome is written without the field."""
    shapes = [_processbench_label(row) for row in data.labels]
    pb = all(s is not None for s in shapes)
    with Path(path).open("w", encoding="utf-8") as f:
        for i in range(len(data)):
            if pb:
                row: dict[str, Any] = {"id": data.ids[i], "problem": data.prompts[i],
                                       "steps": data.steps[i], "label": shapes[i]}
                key = "final_answer_correct"
            else:
                row = {"id": data.ids[i], "prompt": data.prompts[i], "steps": data.steps[i],
                       "values": [None if math.isnan(x) else x for x in data.labels[i]]}
                key = "outcome"
            if data.outcomes[i] is not None:
                row[key] = data.outcomes[i]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return "processbench" if pb else "math_shepherd"
