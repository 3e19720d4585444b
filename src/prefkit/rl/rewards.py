"""Rewards for online RL: functions with TRL's signature, rule rewards, prefkit reward
models, weighted and transformed.

A reward function is what TRL's ``GRPOTrainer`` takes::

    def reward(prompts: list[str], completions: list[str], **columns) -> list[float | None]

called by keyword, as TRL calls it; ``columns`` are the task's other columns, one value per
completion (GSM8K's ``answer``, a Game of 24 puzzle's ``numbers``), plus ``completion_ids``
from the loop; a function that does not take ``**kwargs`` gets only the keywords it names.
For conversational prompts (message lists), such a function gets each completion as TRL
does, ``[{"role": "assistant", "content": text}]`` (read ``completions[i][0]["content"]``);
the built-in rewards below always read the text. ``None`` means "cannot score this one" (NaN:
left out of the group statistics, advantage 0, as TRL).

Built in (:func:`parse_reward` names):

=======================  =============================================================
spec                     reward
=======================  =============================================================
``exact[:gsm8k|math]``   1 if the completion reaches the ``answer`` column
                         (:func:`prefkit.answers.check_answer`), else 0
``format:REGEX``         1 if ``re.search(REGEX, completion)`` (DOTALL), else 0
``game24``               1 if the completion's last line is a valid Game of 24 solution of
                         the ``numbers`` column (:func:`prefkit.answers.check_24`), else 0
``length:SCALE``         ``len(completion) / SCALE`` (characters): a planted, exploitable
                         reward for testing a watch, never a real objective
``model:DIR``            a prefkit reward model folder (``prefkit reward train`` /
                         ``finetune``): ``RewardModel.load(DIR).score(prompts, completions)``
``judge:MODEL[@URL]``    an LLM judge on any OpenAI-compatible server (``URL``, else
                         ``$OPENAI_BASE_URL``): :data:`JUDGE_TEMPLATE` asks for a 1-10
                         rating, the last number of the reply scaled to [0, 1]; requests
                         concurrent and cached on disk (:mod:`prefkit.llm`); a failed or
                         unparsable reply is None
``PATH.py:NAME``         the function ``NAME`` of the Python file ``PATH.py``
=======================  =============================================================

**Combining** (:class:`CombinedReward`): ``r = sum_k w_k r_k`` over the terms a
completion has (NaN terms skipped; all NaN: NaN), TRL's ``reward_weights``. A spec may
start with a weight, ``0.5*format:^<think>``.

**Transforming** (Wang et al. 2024, "Transforming and Combining Rewards for Aligning Large
Language Models", arXiv:2402.00742): ``logsigmoid(SPEC;ref=COLUMN)`` replaces a reward
``r(x, y)`` by ``log sigmoid(r(x, y) - r(x, y_ref))``, with ``y_ref`` the reference response
in ``COLUMN`` (scored by the same reward) or, with ``ref=NUMBER``, a fixed reference value.
The transformed reward saturates at 0 once ``y`` beats the reference clearly, so a policy
gains little from pushing one reward far past it (the paper's remedy for reward hacking)
and the sum of transformed rewards behaves like a logical AND of "better than the
reference on every property".
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from prefkit.answers import check_24, check_answer
from prefkit.runs import plural

__all__ = [
    "JUDGE_TEMPLATE",
    "CombinedReward",
    "RewardFn",
    "RewardTerm",
    "as_messages",
    "call_reward",
    "exact_answer_reward",
    "format_reward",
    "game24_reward",
    "judge_reward",
    "length_reward",
    "load_function",
    "logsigmoid_centred",
    "parse_reward",
    "reward_model_reward",
    "task_columns_read",
]

RewardFn = Callable[..., Sequence[float | None]]


# -- the rule rewards ---------------------------------------------------------------------------
def exact_answer_reward(prompts: Sequence[str], completions: Sequence[str], *,
                        answer: Sequence[str], kind: str = "gsm8k", **_: Any) -> list[float]:
    """1.0 where the completion reaches ``answer`` (:func:`prefkit.answers.check_answer`,
    ``kind`` ``"gsm8k"`` numeric or ``"math"``), else 0.0."""
    return [float(check_answer(c, str(a), kind=kind))
            for c, a in zip(completions, answer, strict=True)]


def format_reward(prompts: Sequence[str], completions: Sequence[str], *, pattern: str,
                  **_: Any) -> list[float]:
    """1.0 where ``re.search(pattern, completion, re.DOTALL)`` matches, else 0.0."""
    rx = re.compile(pattern, re.DOTALL)
    return [float(rx.search(c) is not None) for c in completions]


def _last_expression(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if any(ch.isdigit() for ch in ln)]
    return lines[-1] if lines else ""


def game24_reward(prompts: Sequence[str], completions: Sequence[str], *,
                  numbers: Sequence[str | Sequence[int]], **_: Any) -> list[float]:
    """1.0 where the completion's last line holding a digit is a valid solution of the
    puzzle (each number once, ``+ - * /``, exactly 24; :func:`prefkit.answers.check_24`)."""
    return [float(check_24(_last_expression(c), n))
            for c, n in zip(completions, numbers, strict=True)]


def length_reward(prompts: Sequence[str], completions: Sequence[str], *, scale: float = 100.0,
                  **_: Any) -> list[float]:
    """``len(completion) / scale``: pays for length alone (a planted exploitable reward)."""
    return [len(c) / scale for c in completions]


def reward_model_reward(folder: str | Path) -> RewardFn:
    """A prefkit reward model folder as a reward function (loaded once)."""
    from prefkit.reward.model import RewardModel

    model = RewardModel.load(folder)

    def reward(prompts: Sequence[str], completions: Sequence[str], **_: Any) -> list[float]:
        return [float(v) for v in model.score(list(prompts), list(completions))]

    reward.__name__ = f"model:{Path(folder).name}"
    return reward


#: the judge's prompt: ``{prompt}`` and ``{completion}`` are filled in
JUDGE_TEMPLATE = (
    "Rate how well the response answers the prompt, from 1 (useless or wrong) to 10 "
    "(correct, complete and clear).\n\n[Prompt]\n{prompt}\n\n[Response]\n{completion}\n\n"
    "Reply with the rating only, as 'Rating: N'.")
_RATING = re.compile(r"-?\d+(?:\.\d+)?")


def judge_reward(model: str, *, base_url: str | None = None, template: str = JUDGE_TEMPLATE,
                 low: float = 1.0, high: float = 10.0, cache: str | Path | None = "default",
                 concurrency: int = 16, max_tokens: int = 16) -> RewardFn:
    """An LLM judge as a reward: each (prompt, completion) sent as ``template`` to ``model``
    on an OpenAI-compatible server (temperature 0), the last number of the reply mapped
    from ``[low, high]`` to ``[0, 1]`` (clipped); an error or a reply without a number gives
    None. Requests run concurrently (``concurrency``) and are cached in SQLite (``cache``:
    a file; ``"default"``: ``$PREFKIT_CACHE_DIR/rl_judge.sqlite``; None: no cache), so a
    completion sampled twice is judged once."""
    import os

    from prefkit.llm.batch import run_requests
    from prefkit.llm.cache import CachedBackend
    from prefkit.llm.client import OpenAIClient
    from prefkit.llm.types import ChatRequest

    if cache == "default":
        root = os.environ.get("PREFKIT_CACHE_DIR") or Path.home() / ".cache" / "prefkit"
        cache = Path(root) / "rl_judge.sqlite"
    OpenAIClient(base_url=base_url, model=model)  # a missing server or key fails now

    def reward(prompts: Sequence[str], completions: Sequence[str], **_: Any
               ) -> list[float | None]:
        backend: Any = OpenAIClient(base_url=base_url, model=model, concurrency=concurrency)
        if cache is not None:
            backend = CachedBackend(backend, cache)
        requests = [ChatRequest.of(template.format(prompt=p, completion=c), model=model,
                                   temperature=0.0, max_tokens=max_tokens)
                    for p, c in zip(prompts, completions, strict=True)]
        try:
            results = run_requests(backend, requests, progress=False, description="judge")
        finally:
            if cache is not None:
                backend.close()
        out: list[float | None] = []
        for r in results:
            nums = _RATING.findall(r.text or "") if r.ok else []
            out.append(None if not nums else
                       min(1.0, max(0.0, (float(nums[-1]) - low) / (high - low))))
        return out

    reward.__name__ = f"judge:{model}"
    return reward


# -- calling any reward function ----------------------------------------------------------------
def call_reward(fn: RewardFn, prompts: Sequence[str], completions: Sequence[str],
                columns: Mapping[str, Sequence[Any]] | None = None,
                name: str | None = None) -> NDArray[np.float64]:
    """``fn(prompts, completions, **columns)`` as a float array ``(N,)`` (None -> NaN);
    a function without ``**kwargs`` gets only the keywords it names. A wrong length or a
    non-number is an error naming the function."""
    kwargs = {**dict(columns or {}), "prompts": list(prompts), "completions": list(completions)}
    name = name or getattr(fn, "__name__", repr(fn))
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = None
    if params is not None and not any(p.kind is inspect.Parameter.VAR_KEYWORD
                                      for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    out = fn(**kwargs)  # by keyword, as TRL calls reward functions
    values = list(out)
    if len(values) != len(completions):
        raise ValueError(f"reward {name!r} returned {plural(len(values), 'value')} for "
                         f"{plural(len(completions), 'completion')}; return one per completion")
    arr = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if v is None:
            arr[i] = np.nan
            continue
        try:
            arr[i] = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"reward {name!r} returned {v!r} for completion {i}; return "
                            "numbers (or None for 'cannot score')") from None
    return arr


def logsigmoid_centred(fn: RewardFn, *, reference: str | float) -> RewardFn:
    """``log sigmoid(r(x, y) - r(x, y_ref))`` (Wang et al. 2024): ``reference`` names the
    column of reference responses (scored by ``fn`` too) or is a fixed reference value."""
    def transformed(prompts: Sequence[str], completions: Sequence[str], **columns: Any
                    ) -> list[float]:
        r = call_reward(fn, prompts, completions, columns)
        if isinstance(reference, str):
            if reference not in columns:
                raise ValueError(f"logsigmoid: the task has no column {reference!r} of "
                                 "reference responses; name one with ref=COLUMN or give a "
                                 "number, ref=0.5")
            refs = [str(c) for c in columns[reference]]
            if completions and not isinstance(completions[0], str):  # TRL's message form
                refs = [[{"role": "assistant", "content": c}] for c in refs]
            r_ref = call_reward(fn, prompts, refs, columns)
        else:
            r_ref = np.full_like(r, float(reference))
        d = r - r_ref
        return list(np.where(np.isnan(d), np.nan, -np.logaddexp(0.0, -d)))  # log sig(d)

    transformed.__name__ = f"logsigmoid({getattr(fn, '__name__', 'reward')})"
    return transformed


# -- combining ----------------------------------------------------------------------------------
@dataclass
class RewardTerm:
    """One weighted reward function; ``name`` labels its metrics. ``messages``: the
    function is the user's (TRL's signature), so for conversational prompts it gets each
    completion as TRL 1.16's ``GRPOTrainer`` passes it, ``[{"role": "assistant",
    "content": text}]``; prefkit's own rewards read the text."""

    name: str
    fn: RewardFn
    weight: float = 1.0
    messages: bool = False


def as_messages(prompts: Sequence[Any], completions: Sequence[str]) -> list[Any]:
    """``completions`` as TRL hands them to reward functions: for conversational prompts
    (message lists) each one ``[{"role": "assistant", "content": text}]``
    (``trl/trainer/grpo_trainer.py``, the decoding of completions), else the texts."""
    if not prompts or isinstance(prompts[0], str):
        return list(completions)
    return [[{"role": "assistant", "content": c}] for c in completions]


@dataclass
class CombinedReward:
    """``sum_k w_k r_k`` over the terms (TRL's weighted sum; NaN terms skipped, all NaN:
    NaN). Calling it returns ``(total (N,), {term name: (N,)})``."""

    terms: list[RewardTerm] = field(default_factory=list)

    def __call__(self, prompts: Sequence[str], completions: Sequence[str],
                 columns: Mapping[str, Sequence[Any]] | None = None
                 ) -> tuple[NDArray[np.float64], dict[str, NDArray[np.float64]]]:
        if not self.terms:
            raise ValueError("no reward: give at least one reward function")
        chat = as_messages(prompts, completions) if any(t.messages for t in self.terms) \
            else completions
        parts = {t.name: call_reward(t.fn, prompts, chat if t.messages else completions,
                                     columns, t.name)
                 for t in self.terms}
        stacked = np.stack([parts[t.name] * t.weight for t in self.terms], axis=1)
        total = np.nansum(stacked, axis=1)
        total[np.isnan(stacked).all(axis=1)] = np.nan
        return total, parts


def load_function(spec: str) -> RewardFn:
    """``PATH.py:NAME`` -> the function ``NAME`` defined in the file ``PATH.py``."""
    path, _, name = spec.rpartition(":")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"reward file {path!r} does not exist (give PATH.py:FUNCTION)")
    mod_spec = importlib.util.spec_from_file_location(f"prefkit_reward_{file.stem}", file)
    if mod_spec is None or mod_spec.loader is None:
        raise ValueError(f"cannot import {path!r} as Python")
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    fn = getattr(module, name, None)
    if not callable(fn):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise ValueError(f"{path!r} defines no function {name!r}; it defines {found}")  # noqa: TRY004
    return fn


_WEIGHT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\*\s*(.+)$", re.DOTALL)


def _term(spec: str, answer_kind: str | None) -> tuple[str, RewardFn]:
    s = spec.strip()
    m = re.fullmatch(r"logsigmoid\((.+)\)", s, re.DOTALL)
    if m:
        inner, _, ref = m.group(1).rpartition(";ref=")
        if not inner:
            raise ValueError(f"reward {spec!r}: write logsigmoid(SPEC;ref=COLUMN) or "
                             "logsigmoid(SPEC;ref=NUMBER)")
        try:
            reference: str | float = float(ref)
        except ValueError:
            reference = ref.strip()
        name, fn = _term(inner, answer_kind)
        return f"logsigmoid({name})", logsigmoid_centred(fn, reference=reference)
    kind, _, arg = s.partition(":")
    if kind == "exact":
        k = arg or answer_kind
        if arg and arg not in ("gsm8k", "math"):
            raise ValueError(f"reward {spec!r}: unknown checker {arg!r}; use exact:gsm8k "
                             "(#### N answers) or exact:math (\\boxed{} answers)")
        if k not in ("gsm8k", "math"):
            raise ValueError(f"reward {spec!r}: name the checker, exact:gsm8k or exact:math "
                             "(the task's layout does not say which)")
        return f"exact:{k}", partial(exact_answer_reward, kind=k)
    if kind == "format":
        if not arg:
            raise ValueError("reward 'format' needs a pattern: format:REGEX")
        try:
            re.compile(arg)
        except re.error as e:
            raise ValueError(f"reward {spec!r}: {arg!r} is not a regular expression ({e}); "
                             "escape a literal bracket or parenthesis with a backslash, e.g. "
                             "format:^\\[ANSWER\\]") from None
        return s, partial(format_reward, pattern=arg)
    if kind == "game24" and not arg:
        return "game24", game24_reward
    if kind == "length":
        try:
            scale = float(arg) if arg else 100.0
        except ValueError:
            scale = math.nan
        if not 0 < scale < math.inf:
            raise ValueError(f"reward {spec!r}: the scale must be a number of characters "
                             "> 0, e.g. length:100")
        return s, partial(length_reward, scale=scale)
    if kind == "model":
        return s, reward_model_reward(arg)
    if kind == "code":
        from prefkit.rl.code_reward import code_tests_reward

        column = arg or "tests"

        def code(prompts: Sequence[str], completions: Sequence[str], **columns: Any
                 ) -> list[float]:
            if column not in columns:
                raise ValueError(f"reward 'code' runs the task's {column!r} column, which it "
                                 "lacks; name the column of tests with code:COLUMN")
            return code_tests_reward(prompts, completions, tests=columns[column])

        return f"code:{column}", code
    if kind == "judge":
        name, _, url = arg.partition("@")
        if not name:
            raise ValueError("reward 'judge' needs a model: judge:MODEL or judge:MODEL@URL")
        return s, judge_reward(name, base_url=url or None)
    if s.rpartition(":")[0].endswith(".py"):
        fn = load_function(s)
        return getattr(fn, "__name__", s), fn
    raise ValueError(f"unknown reward {spec!r}; use exact[:gsm8k|math], format:REGEX, game24, "
                     "code[:COLUMN], length:SCALE, model:DIR, judge:MODEL[@URL], PATH.py:FUNCTION, or "
                     "logsigmoid(SPEC;ref=...), each optionally WEIGHT*SPEC")


def _user_function(spec: str) -> bool:
    """Whether ``spec`` (inside any ``logsigmoid(...)``) names a user's ``PATH.py:NAME``."""
    s = spec.strip()
    m = re.fullmatch(r"logsigmoid\((.+)\)", s, re.DOTALL)
    if m:
        return _user_function(m.group(1).rpartition(";ref=")[0])
    return s.rpartition(":")[0].endswith(".py")


def task_columns_read(specs: Sequence[str]) -> list[tuple[str, str]]:
    """``(spec, column)`` for each task column the specs read: ``code[:COLUMN]`` (default
    ``tests``) and ``logsigmoid(SPEC;ref=COLUMN)``, so a missing one is refused before any
    sampling (the rewards themselves raise only when first called)."""
    out: list[tuple[str, str]] = []
    for item in specs:
        m = _WEIGHT.match(item)
        body = (m.group(2) if m else item).strip()
        while True:
            lm = re.fullmatch(r"logsigmoid\((.+)\)", body, re.DOTALL)
            if not lm:
                break
            body, _, ref = lm.group(1).rpartition(";ref=")
            try:
                float(ref)
            except ValueError:
                out.append((item, ref.strip()))
            body = body.strip()
        kind, _, arg = body.partition(":")
        if kind == "code":
            out.append((item, arg or "tests"))
    return out


def parse_reward(specs: str | Sequence[str] | RewardFn | Sequence[RewardFn], *,
                 answer_kind: str | None = None) -> CombinedReward:
    """A :class:`CombinedReward` from specs (module docstring) or reward functions;
    ``answer_kind`` is the task's checker for a bare ``exact``."""
    items = [specs] if isinstance(specs, str) or callable(specs) else list(specs)
    terms: list[RewardTerm] = []
    for item in items:
        if callable(item):
            terms.append(RewardTerm(getattr(item, "__name__", f"reward{len(terms)}"), item,
                                    messages=True))
            continue
        m = _WEIGHT.match(item)
        weight, body = (float(m.group(1)), m.group(2)) if m else (1.0, item)
        if not math.isfinite(weight):
            raise ValueError(f"reward {item!r}: the weight must be a finite number")
        name, fn = _term(body, answer_kind)
        while name in {t.name for t in terms}:
            name += "'"
        terms.append(RewardTerm(name, fn, weight, messages=_user_function(body)))
    if not terms:
        raise ValueError("no reward: give at least one --reward")
    return CombinedReward(terms)
