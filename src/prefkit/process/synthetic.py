"""A synthetic reasoning task whose step correctness is known exactly.

A problem (``"Compute 7 + 2 - 5."``) starts from a number and applies a few additions and
subtractions; a solution writes one step per operation, ``"7 + 2 = 9"``, each starting from
the value the previous step wrote, and ends with ``"The answer is 4"``. The exact values stay
in 0..``max_value`` (:data:`MAX_VALUE`, single digits, by default; operations are drawn so).
A generator with errors:

* a **correct** solution computes every step right;
* an **erroneous** solution computes step ``k`` wrong (the result off by 1 or 2) and the later
  steps right from the wrong value, so its final answer is wrong;
* a **lucky** solution errs at step ``k`` and errs again later so that the final answer is
  right again: its outcome is right but its first wrong step is ``k``, so the final answer
  alone cannot give the step labels away.

Step labels follow ProcessBench: 1 before the first wrong step, 0 at it, NaN after (the steps
after an error are not judged); the last line ("The answer is ...") is a step too.
:func:`make_solutions` returns :class:`~prefkit.data.StepSolutions` and the outcome of each
(``final_correct``), everything drawn from the ``numpy.random.Generator`` passed in.

>>> rng = np.random.default_rng(0)
>>> data, outcome = make_solutions(3, rng, p_error=0.0)
>>> data.steps[0][-1].startswith("The answer is"), data.first_error, outcome
(True, [-1, -1, -1], [True, True, True])
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from prefkit.data.steps import StepSolutions

__all__ = ["MAX_VALUE", "Problem", "continue_solution", "make_problem", "make_solutions",
           "parse_problem", "solve"]

MAX_VALUE = 9
_OPS = ("+", "-")


@dataclass(frozen=True)
class Problem:
    """A start value and operations ``(op, operand)``; ``answer`` is the exact result."""

    start: int
    ops: tuple[tuple[str, int], ...]

    @property
    def text(self) -> str:
        return f"Compute {self.start}" + "".join(f" {op} {x}" for op, x in self.ops) + "."

    @property
    def answer(self) -> int:
        v = self.start
        for op, x in self.ops:
            v = _apply(v, op, x)
        return v


def _apply(v: int, op: str, x: int) -> int:
    return v + x if op == "+" else v - x


def make_problem(rng: np.random.Generator, n_ops: tuple[int, int] = (3, 5), *,
                 max_value: int = MAX_VALUE) -> Problem:
    """A problem with ``n_ops`` operations (inclusive range) whose exact values stay in
    0..``max_value``."""
    n = int(rng.integers(n_ops[0], n_ops[1] + 1))
    v = int(rng.integers(1, max_value + 1))
    start, ops = v, []
    for _ in range(n):
        op = _OPS[int(rng.integers(2))]
        if op == "-" and v < 1:
            op = "+"
        if op == "+" and v >= max_value:
            op = "-"
        room = min(9, max_value - v) if op == "+" else min(9, v)
        x = int(rng.integers(1, room + 1))
        ops.append((op, x))
        v = _apply(v, op, x)
    return Problem(start, tuple(ops))


def solve(problem: Problem, errors: dict[int, int] | None = None) -> tuple[list[str], int]:
    """The steps of a solution that adds ``errors[k]`` to the result of step ``k``, and its
    final answer."""
    errors = errors or {}
    v, steps = problem.start, []
    for k, (op, x) in enumerate(problem.ops):
        w = _apply(v, op, x) + errors.get(k, 0)
        steps.append(f"{v} {op} {x} = {w}")
        v = w
    steps.append(f"The answer is {v}")
    return steps, v


def make_solutions(n: int, rng: np.random.Generator, *, p_error: float = 0.5,
                   p_lucky: float = 0.2, n_ops: tuple[int, int] = (3, 5),
                   per_problem: int = 1, max_value: int = MAX_VALUE
                   ) -> tuple[StepSolutions, list[bool]]:
    """``n`` solutions, ``per_problem`` to each fresh problem (in a row): with probability
    ``p_error`` one has an error (and of those, ``p_lucky`` a compensating second error);
    returns the solutions and whether each final answer is right."""
    out, outcome = StepSolutions(), []
    prob = make_problem(rng, n_ops, max_value=max_value)
    for i in range(n):
        if i % per_problem == 0:
            prob = make_problem(rng, n_ops, max_value=max_value)
        errors: dict[int, int] = {}
        m = len(prob.ops)
        if rng.random() < p_error:
            lucky = m >= 2 and rng.random() < p_lucky
            k = int(rng.integers(m - 1 if lucky else m))
            delta = int(rng.choice([-2, -1, 1, 2]))
            errors[k] = delta
            if lucky:
                errors[int(rng.integers(k + 1, m))] = -delta  # back on track: right answer
        steps, final = solve(prob, errors)
        first = min(errors) if errors else -1
        labels = [1.0] * len(steps) if first < 0 else \
            [1.0] * first + [0.0] + [float("nan")] * (len(steps) - first - 1)
        out.add(i + 1, prob.text, steps, labels, id_=f"synthetic-{i}")
        outcome.append(final == prob.answer)
    return out, outcome


def parse_problem(prompt: str) -> Problem:
    """The problem a :attr:`Problem.text` describes (``"Compute 7 + 2 - 5."``)."""
    m = re.fullmatch(r"Compute (\d+)((?: [+-] \d+)+)\.", prompt.strip())
    if m is None:
        raise ValueError(f"not a synthetic problem: {prompt!r}")
    ops = re.findall(r"([+-]) (\d+)", m.group(2))
    return Problem(int(m.group(1)), tuple((op, int(x)) for op, x in ops))


def continue_solution(prompt: str, steps: list[str], rng: np.random.Generator, *,
                      p_error: float = 0.0) -> list[str]:
    """The synthetic generator rolled out from a partial solution: the remaining operations
    computed from the last value written, each wrong by 1 or 2 with probability ``p_error``
    (the rollouts of Monte-Carlo step labels)."""
    prob = parse_problem(prompt)
    done = [s for s in steps if not s.startswith("The answer is")]
    v = int(done[-1].split()[-1]) if done else prob.start
    out = list(steps)
    if len(done) < len(steps):  # already finished
        return out
    for op, x in prob.ops[len(done):]:
        w = _apply(v, op, x) + (int(rng.choice([-2, -1, 1, 2])) if rng.random() < p_error else 0)
        out.append(f"{v} {op} {x} = {w}")
        v = w
    return out + [f"The answer is {v}"]
