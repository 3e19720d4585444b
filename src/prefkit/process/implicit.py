"""The implicit PRM (Yuan et al. 2024, "Free Process Rewards without Process Labels",
arXiv:2412.01981): a causal LM trained on **outcome labels only** whose reward, read token by
token, is a process reward.

With the outcome reward parameterised as ``r(y) = beta * log(pi(y|x) / pi_ref(y|x))`` and
trained with a loss on whole solutions and their outcomes (through
:func:`prefkit.align.align`: an unpaired loss on (solution, right?) rows, or DPO on
(right-outcome, wrong-outcome) pairs of one problem), the reward of step ``k`` is

    r_k = beta * sum_{t in step k} log(pi(y_t | x, y_<t) / pi_ref(y_t | x, y_<t))

computed by :func:`prefkit.align.logprobs.sequence_logps` (one row per step, the step's
tokens in the loss mask, the reference in the same call).

**What a score means.** The paper's Proposition: ``q_k = r_1 + ... + r_k``, the log-ratio
summed over every token up to the end of step ``k``, equals
``beta * log E_{pi_ref}[exp(r(y) / beta) | the prefix]`` -- the (soft) expected outcome
reward of the solutions the reference would write from that prefix, a Q value
(:meth:`ImplicitPRM.values`); the step reward is its change, ``r_k = q_k - q_{k-1}``.
Trained with a loss anchored at 0 (the paper's cross-entropy ``sigmoid(r(y)) = P(right)``;
here ``apo_zero_unpaired`` or ``kto``, which push ``r`` above 0 for right outcomes and below
for wrong ones), a right step raises the prefix's value and a wrong one drops it far below.
:meth:`ImplicitPRM.score` returns ``sigmoid(r_k)``, whose 0.5 (``r_k = 0``) is the fixed
ProcessBench threshold; ``sigmoid(q_k)`` at 0.5 ("the prefix more likely ends wrong") flags
the same first errors on the synthetic task (F1 0.997 both), and the step reward's minimum
picks better best-of-N candidates (0.81 against 0.79, which equals the outcome reward's).
The 0 is a boundary only when ``pi_ref`` is the model whose samples were labelled (the
paper's setting: it writes right and wrong solutions, and the training moves them apart
around 0). A reference that already writes right solutions with probability near 1 leaves
no room to raise them (``r <= -beta * log pi_ref(y)``, about 0): right steps then sit at 0
with small noise, errors far below, and 0.5 flags most right solutions, in either reading
-- F1 at 0.5 is 0.47 (0.56 for ``q_k``) with a reference fitted on right solutions only,
0.94 at a tuned threshold (benchmarks/prm_synthetic.py). A pairwise loss (DPO) fixes only
differences of ``r`` between solutions of one prompt, so its 0 is no boundary: tune the
threshold there.

``pi_ref`` is the model before the outcome training: :func:`fit_lm` fits one on unlabelled
solutions (the generator's own samples), standing in for the generator on small tasks.
A folder holds ``policy/`` (align's run, the trained model), ``reference/`` and
``config.json`` (kind ``"implicit"``, ``beta``, the threshold). :func:`fit_implicit_prm` is
the whole run from solutions and their outcomes (``prefkit prm train --kind implicit``):
seeded split of the prompts, outcome rows, :func:`prefkit.align.align` (its checkpoints:
``stop_after`` and ``resume``), the threshold. Its input is
:class:`~prefkit.data.StepSolutions` whose ``outcomes`` the step readers read
(``read_steps(..., require_outcome=True)``), or parallel lists.

This module holds the run; the model side (:class:`ImplicitPRM`, :func:`response_text`,
:func:`outcome_rows`, :func:`outcome_pairs`, :func:`fit_lm`) lives in
``prefkit.process._implicit_model`` and is re-exported here.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from prefkit.data.steps import StepSolutions
from prefkit.process._implicit_model import (
    ImplicitPRM,
    fit_lm,
    outcome_pairs,
    outcome_rows,
    response_text,
)
from prefkit.process.processbench import DEFAULT_THRESHOLD, evaluate_steps, tune_threshold
from prefkit.runs import ConfigIO, RunFolder, config_diff, package_versions, write_json

__all__ = ["ImplicitPRM", "ImplicitPRMConfig", "fit_implicit_prm", "fit_lm", "outcome_pairs",
           "outcome_rows", "response_text", "train_implicit_prm"]

KIND = "prm-implicit"
FIXED = "fixed 0.5 (r_k = 0; no step labels)"


def train_implicit_prm(model: nn.Module, tokenizer: Any, pairs: Sequence[dict[str, Any]],
                       output_dir: str | Path, *, beta: float = 0.1, loss: str = "dpo",
                       align_config: Any = None, progress: bool = False,
                       overwrite: bool = False) -> ImplicitPRM:
    """Train the implicit PRM: ``model`` (the reference, saved first under ``reference/``)
    is aligned on outcome ``pairs`` (:func:`outcome_pairs`; or unpaired
    :func:`outcome_rows` with an unpaired loss such as ``kto``) with ``loss`` by
    :func:`prefkit.align.align` into ``policy/``; returns the PRM (also written as a folder
    :func:`~prefkit.process.load_prm` reads, threshold 0.5). ``output_dir``: a new or empty
    folder, or an earlier such run with ``overwrite=True``."""
    from prefkit.align import AlignConfig

    out = Path(output_dir)
    run = RunFolder(out, KIND, overwrite=overwrite)
    config = align_config or AlignConfig(loss=loss, loss_kwargs={"beta": beta},
                                         learning_rate=1e-3, batch_size=16, epochs=2)
    beta_used = dict(config.loss_kwargs).get("beta", beta)
    run.start({"loss": config.loss, "beta": beta_used})
    reference = _save_reference(model, tokenizer, out)
    _align_policy(model, tokenizer, reference, pairs, None, out, config, resume=False,
                  stop_after=None, progress=progress, device="cpu")
    info = {"kind": "implicit", "beta": beta_used, "threshold": DEFAULT_THRESHOLD,
            "threshold_source": FIXED, "loss": config.loss}
    write_json(out / "config.json", info)
    run.finish({"loss": config.loss, "beta": beta_used})
    return ImplicitPRM(model, reference, tokenizer, beta=beta_used)


def _save_reference(model: nn.Module, tokenizer: Any, out: Path) -> nn.Module:
    """A frozen copy of ``model`` as it is now, saved (with the tokenizer) in
    ``out/reference``."""
    reference = copy.deepcopy(model).eval()
    reference.save_pretrained(str(out / "reference"))
    tokenizer.save_pretrained(str(out / "reference"))
    return reference


def _align_policy(model: nn.Module, tokenizer: Any, reference: nn.Module,
                  rows: Sequence[dict[str, Any]], val_rows: Sequence[dict[str, Any]] | None,
                  out: Path, config: Any, *, resume: bool, stop_after: int | None,
                  progress: bool, device: Any) -> Any:
    """``model`` aligned on the outcome rows (written to ``out/outcome_rows.jsonl``, and
    ``outcome_rows_val.jsonl`` for align's validation) into ``out/policy``."""
    from prefkit.align import align

    data = out / "outcome_rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    val = None
    if val_rows:
        val = out / "outcome_rows_val.jsonl"
        val.write_text("".join(json.dumps(r) + "\n" for r in val_rows))
    return align(model, str(data), config=config, output_dir=out / "policy",
                 tokenizer=tokenizer, reference_model=reference,
                 validation=None if val is None else str(val), progress=progress,
                 resume=resume, stop_after=stop_after, device=device)


# -- the whole run from solutions and outcomes (prefkit prm train --kind implicit) -------------
@dataclass(frozen=True)
class ImplicitPRMConfig(ConfigIO):
    """An implicit-PRM run (saved in ``config.json``): the causal LM ``model`` (a folder or a
    cached Hub id; it is also the reference), the align ``loss`` (unpaired losses train on
    every solution, pairwise ones on right/wrong pairs of a prompt, at most
    ``max_pairs_per_prompt``) with its ``beta``, AdamW ``learning_rate``, ``batch_size``
    rows per step, ``epochs``, ``max_length`` tokens per solution; ``val_fraction`` of the
    prompts held out (align's validation, and the threshold when step labels are given);
    ``checkpoint_every`` optimizer steps (0: by time only)."""

    model: str = ""
    loss: str = "apo_zero_unpaired"
    beta: float = 0.1
    learning_rate: float = 1e-6
    batch_size: int = 8
    epochs: int = 1
    max_length: int | None = 1024
    max_pairs_per_prompt: int = 4
    val_fraction: float = 0.1
    checkpoint_every: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        from prefkit.align.losses import get_align_loss

        spec = get_align_loss(self.loss)
        if spec.kind not in ("pairwise", "unpaired") or not spec.needs_reference:
            raise ValueError(
                f"loss {self.loss!r} cannot train an implicit PRM: its reward must be beta * "
                "log(pi/pi_ref) of whole solutions (a reference-based pairwise or unpaired "
                "loss); use apo_zero_unpaired (default), kto or dpo")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        for name, ok, rule in (("epochs", self.epochs >= 1, ">= 1"),
                               ("batch_size", self.batch_size >= 1, ">= 1"),
                               ("learning_rate", self.learning_rate > 0, "> 0"),
                               ("beta", self.beta > 0, "> 0"),
                               ("max_pairs_per_prompt", self.max_pairs_per_prompt >= 1, ">= 1"),
                               ("checkpoint_every", self.checkpoint_every >= 0, ">= 0")):
            if not ok:
                raise ValueError(f"{name} must be {rule}, got {getattr(self, name)}")

    def align_config(self) -> Any:
        from prefkit.align import AlignConfig

        return AlignConfig(loss=self.loss, loss_kwargs={"beta": self.beta},
                           learning_rate=self.learning_rate, batch_size=self.batch_size,
                           epochs=self.epochs, max_length=self.max_length, seed=self.seed,
                           checkpoint_every=self.checkpoint_every)


def _split_prompts(prompts: Sequence[str], fraction: float, seed: int
                   ) -> tuple[list[int], list[int]]:
    """Seeded (train, validation) solution indices: whole prompts are held out, so no
    problem is on both sides."""
    unique = list(dict.fromkeys(prompts))
    n_val = min(len(unique) - 1, max(1, round(fraction * len(unique)))) \
        if fraction > 0 and len(unique) > 1 else 0
    held = {unique[j] for j in np.random.default_rng(seed).permutation(len(unique))[:n_val]}
    tr = [i for i, p in enumerate(prompts) if p not in held]
    va = [i for i, p in enumerate(prompts) if p in held]
    return tr, va


def _take(idx: Sequence[int], xs: Sequence[Any]) -> list[Any]:
    return [xs[i] for i in idx]


def _rows_for(loss: str, prompts: Sequence[str], steps: Sequence[Sequence[str]],
              outcomes: Sequence[bool], seed: int, max_pairs: int) -> list[dict[str, Any]]:
    from prefkit.align.losses import get_align_loss

    if get_align_loss(loss).kind == "unpaired":
        return outcome_rows(prompts, steps, outcomes)
    return outcome_pairs(prompts, steps, outcomes, np.random.default_rng(seed),
                         max_pairs_per_prompt=max_pairs)


def fit_implicit_prm(config: ImplicitPRMConfig, output_dir: str | Path,
                     prompts: Sequence[str] | StepSolutions,
                     steps: Sequence[Sequence[str]] | None = None,
                     outcomes: Sequence[bool] | None = None, *,
                     first_error: Sequence[int] | None = None, resume: bool = False,
                     overwrite: bool = False, progress: bool = True,
                     stop_after: int | None = None, device: Any = None) -> dict[str, Any]:
    """Train an implicit PRM from solutions and their **outcomes** (the final answer right
    or not); write ``output_dir``; return the summary.

    The solutions are :class:`~prefkit.data.StepSolutions` with an outcome each (as
    ``read_steps(..., require_outcome=True)`` reads them; its ``first_error`` is used as
    below), or three parallel lists ``prompts, steps, outcomes``.

    ``first_error`` (ProcessBench labels, when the data has them) is never trained on: it
    tunes the threshold on the held-out prompts' solutions and feeds the position-prior
    baseline of ``prefkit prm eval``; without it the threshold is the fixed 0.5 (``r_k =
    0``). ``stop_after`` stops after that many optimizer steps with a checkpoint (the
    summary says ``finished: False``); ``resume=True`` continues it, equal to an
    uninterrupted run (align's checkpoints); a finished run is left as it is."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(prompts, StepSolutions):
        prompts, steps, outcomes, first_error = _from_solutions(prompts, steps, outcomes,
                                                                first_error)
    if steps is None or outcomes is None:
        raise ValueError("give the solutions as StepSolutions, or prompts, steps and outcomes")
    n = len(prompts)
    if not (len(steps) == len(outcomes) == n) or (first_error is not None
                                                   and len(first_error) != n):
        raise ValueError("prompts, steps, outcomes (and first_error) need one entry per "
                         "solution")
    out = Path(output_dir)
    run = RunFolder(out, KIND, resume=resume, overwrite=overwrite)
    saved = _saved_run(out) if resume and run.existing == KIND else None
    if saved is not None and config_diff(saved["config"], config.to_dict()):
        raise ValueError(f"{out} was started with other settings (fields "
                         f"{config_diff(saved['config'], config.to_dict())}); resume with the "
                         "same settings, or start again with overwrite")
    if saved is not None and saved["status"] == "finished" and (out / "config.json").is_file():
        return {**json.loads((out / "config.json").read_text())["summary"], "resumed": True}

    # -- data: held-out prompts, outcome rows --------------------------------------------------
    tr, va = _split_prompts(prompts, config.val_fraction, config.seed)
    rows = _rows_for(config.loss, _take(tr, prompts), _take(tr, steps), _take(tr, outcomes),
                     config.seed, config.max_pairs_per_prompt)
    val_rows = _rows_for(config.loss, _take(va, prompts), _take(va, steps), _take(va, outcomes),
                         config.seed + 1, config.max_pairs_per_prompt) if va else []
    if not rows:
        raise ValueError("no training pair: a pairwise loss needs prompts with both a right "
                         "and a wrong solution; give several solutions per prompt, or use "
                         "an unpaired loss (apo_zero_unpaired, kto)")
    n_right = sum(bool(outcomes[i]) for i in tr)
    if n_right in (0, len(tr)):
        which = "right" if n_right else "wrong"
        raise ValueError(f"every training solution's outcome is {which}; the implicit PRM "
                         "learns from the difference: give solutions with right and with "
                         "wrong final answers")

    # -- the model, its reference (saved first), align ----------------------------------------
    resuming = saved is not None and (out / "policy" / "checkpoint.pt").is_file() \
        and (out / "reference").is_dir()
    tokenizer = AutoTokenizer.from_pretrained(config.model)  # before the folder is touched
    model = AutoModelForCausalLM.from_pretrained(config.model)
    if not resuming:
        run.start(config.to_dict())
    if resuming:
        reference = AutoModelForCausalLM.from_pretrained(str(out / "reference")).eval()
    else:
        reference = _save_reference(model, tokenizer, out)
    result = _align_policy(model, tokenizer, reference, rows, val_rows, out,
                           config.align_config(), resume=resuming, stop_after=stop_after,
                           progress=progress, device=device)
    summary: dict[str, Any] = {
        "finished": bool(result.finished), "steps": result.step, "loss": config.loss,
        "beta": config.beta, "n_train_solutions": len(tr), "n_val_solutions": len(va),
        "n_train_rows": len(rows), "n_right_outcomes": int(sum(map(bool, outcomes))),
        "n_lucky": None if first_error is None else
        int(sum(bool(o) and f != -1 for o, f in zip(outcomes, first_error))),
        "metrics": result.metrics, "validation": result.validation}
    if not result.finished:
        return summary

    # -- the threshold: fixed, or tuned on the held-out solutions' step labels -------------------
    model.eval()
    prm = ImplicitPRM(model, reference.to(next(model.parameters()).device), tokenizer,
                      beta=config.beta)
    threshold, source = DEFAULT_THRESHOLD, FIXED
    if first_error is not None and va:
        val_first = _take(va, list(first_error))
        val_scores = prm.score(_take(va, prompts), _take(va, steps), progress=progress)
        if -1 in val_first and any(x != -1 for x in val_first):
            threshold = tune_threshold(val_scores, val_first)
            source = f"tuned on {len(va)} held-out training solutions' step labels"
            summary["val_f1_fixed"] = evaluate_steps(val_scores, val_first).f1
            summary["val_f1_tuned"] = evaluate_steps(val_scores, val_first,
                                                     threshold=threshold).f1
    summary.update(threshold=threshold, threshold_source=source)
    write_json(out / "config.json", {
        "kind": "implicit", "beta": config.beta, "threshold": threshold,
        "threshold_source": source, "loss": config.loss, "config": config.to_dict(),
        "train_stats": None if first_error is None else {
            "n_steps": [len(s) for s in steps], "labels": [int(x) for x in first_error]},
        "versions": package_versions(), "summary": summary})
    run.finish(config.to_dict(), summary)
    return summary


def _from_solutions(data: StepSolutions, steps: Any, outcomes: Any, first_error: Any
                    ) -> tuple[list[str], list[list[str]], list[bool], list[int]]:
    """Prompts, steps, outcomes and first errors of ``data``; every outcome right or wrong."""
    if steps is not None or outcomes is not None:
        raise ValueError("with StepSolutions, steps and outcomes come from it: give neither")
    bad = [id_ for id_, o in zip(data.ids, data.outcomes) if not isinstance(o, bool)]
    if bad:
        raise ValueError(f"{len(bad)} solution(s) have no right/wrong outcome (ids "
                         f"{', '.join(map(str, bad[:10]))}{', ...' if len(bad) > 10 else ''});"
                         " the implicit PRM trains on whether each final answer is right: read "
                         "the solutions with require_outcome=True (--skip-invalid skips them)")
    return (list(data.prompts), [list(s) for s in data.steps], [bool(o) for o in data.outcomes],
            list(data.first_error) if first_error is None else list(first_error))


def _saved_run(out: Path) -> dict[str, Any] | None:
    """The marker of an earlier run in ``out`` (its config and status), if readable."""
    try:
        marker = json.loads((out / "prefkit_run.json").read_text())
    except (OSError, ValueError):
        return None
    return {"config": marker.get("config", {}), "status": marker.get("status")}
