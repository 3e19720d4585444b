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
``stop_after`` and ``resume``), the threshold.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prefkit.process.processbench import DEFAULT_THRESHOLD, evaluate_steps, tune_threshold
from prefkit.runs import ConfigIO, RunFolder, config_diff, package_versions, write_json

__all__ = ["ImplicitPRM", "ImplicitPRMConfig", "fit_implicit_prm", "fit_lm", "outcome_pairs",
           "outcome_rows", "response_text", "train_implicit_prm"]

KIND = "prm-implicit"
FIXED = "fixed 0.5 (r_k = 0; no step labels)"


def response_text(steps: Sequence[str]) -> str:
    """The response a solution is written as: each step on its own line after the prompt."""
    return "".join("\n" + s for s in steps)


def outcome_pairs(prompts: Sequence[str], steps: Sequence[Sequence[str]],
                  outcomes: Sequence[bool], rng: np.random.Generator, *,
                  max_pairs_per_prompt: int = 4) -> list[dict[str, str]]:
    """DPO rows ``{prompt, chosen, rejected}`` from outcome labels only: per prompt, solutions
    with a right final answer paired with ones with a wrong answer (at most
    ``max_pairs_per_prompt``, drawn with ``rng``)."""
    by_prompt: dict[str, tuple[list[str], list[str]]] = {}
    for p, st, ok in zip(prompts, steps, outcomes):
        by_prompt.setdefault(p, ([], []))[0 if ok else 1].append(response_text(st))
    rows = []
    for p, (good, bad) in by_prompt.items():
        pairs = [(g, b) for g in dict.fromkeys(good) for b in dict.fromkeys(bad)]
        for j in rng.permutation(len(pairs))[:max_pairs_per_prompt]:
            rows.append({"prompt": p, "chosen": pairs[j][0], "rejected": pairs[j][1]})
    return rows


def outcome_rows(prompts: Sequence[str], steps: Sequence[Sequence[str]],
                 outcomes: Sequence[bool]) -> list[dict[str, Any]]:
    """Unpaired rows ``{prompt, completion, label}`` (label = the final answer is right) for
    the unpaired losses of :mod:`prefkit.align` (``kto``, ``apo_zero_unpaired``)."""
    return [{"prompt": p, "completion": response_text(st), "label": bool(ok)}
            for p, st, ok in zip(prompts, steps, outcomes)]


def fit_lm(model: nn.Module, tokenizer: Any, texts: Sequence[str], *, epochs: int = 10,
           batch_size: int = 32, learning_rate: float = 3e-3, seed: int = 0,
           progress: bool = False) -> list[float]:
    """Fit a causal LM to ``texts`` (next-token loss on every token; the stand-in for a
    pretrained reference on small tasks); returns the mean loss of each epoch."""
    from prefkit.runs import progress_bar

    enc = [tokenizer(t)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    pad = tokenizer.pad_token_id or 0
    model.train()
    history = []
    n_batches = math.ceil(len(enc) / batch_size)
    bar = progress_bar(epochs * n_batches, "fitting the reference LM", enabled=progress)
    for _ in range(epochs):
        perm = torch.randperm(len(enc), generator=gen).tolist()
        total = 0.0
        for b in range(n_batches):
            part = [enc[j] for j in perm[b * batch_size:(b + 1) * batch_size]]
            width = max(map(len, part))
            ids = torch.full((len(part), width), pad, dtype=torch.long)
            attn = torch.zeros_like(ids)
            for r, x in enumerate(part):
                ids[r, :len(x)] = torch.tensor(x)
                attn[r, :len(x)] = 1
            labels = ids.masked_fill(attn == 0, -100)
            loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
            bar.advance(1)
        history.append(total / n_batches)
    bar.close()
    model.eval()
    return history


class ImplicitPRM:
    """Step rewards ``beta * log(pi / pi_ref)`` of a policy trained on outcome labels."""

    def __init__(self, policy: nn.Module, reference: nn.Module, tokenizer: Any, *,
                 beta: float, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.policy, self.reference = policy.eval(), reference.eval()
        self.tokenizer, self.beta, self.threshold = tokenizer, float(beta), threshold
        self.config: dict[str, Any] = {"beta": beta}
        self.train_stats: dict[str, list[int]] = {}
        self.threshold_source: str | None = None

    def _rows(self, prompt: str, steps: Sequence[str]) -> tuple[list[int], list[tuple[int, int]]]:
        ids = self.tokenizer(prompt)["input_ids"]
        spans, text = [], prompt
        for s in steps:
            text += "\n" + s
            new = self.tokenizer(text)["input_ids"]
            spans.append((len(ids), len(new)))
            ids = new
        return ids, spans

    def step_rewards(self, prompts: Sequence[str], steps: Sequence[Sequence[str]], *,
                     batch_size: int = 64, progress: bool = False) -> list[np.ndarray]:
        """``r_k`` per step of each solution (module docstring)."""
        from prefkit.align.logprobs import sequence_logps
        from prefkit.runs import progress_bar

        rows: list[tuple[int, int, list[int], tuple[int, int]]] = []
        for i, (p, st) in enumerate(zip(prompts, steps)):
            ids, spans = self._rows(p, st)
            rows += [(i, k, ids, sp) for k, sp in enumerate(spans)]
        out = [np.full(len(st), np.nan) for st in steps]
        pad = self.tokenizer.pad_token_id or 0
        bar = progress_bar(len(rows), "scoring steps", enabled=progress)
        dev = next(self.policy.parameters()).device
        with torch.no_grad():
            for b in range(0, len(rows), batch_size):
                part = rows[b:b + batch_size]
                width = max(len(r[2]) for r in part)
                ids = torch.full((len(part), width), pad, dtype=torch.long)
                attn = torch.zeros_like(ids)
                mask = torch.zeros_like(ids, dtype=torch.bool)
                for r, (_, _, x, (s, e)) in enumerate(part):
                    ids[r, :len(x)] = torch.tensor(x)
                    attn[r, :len(x)] = 1
                    mask[r, s:e] = True  # (R, T): the step's tokens
                got = sequence_logps(self.policy, ids.to(dev), attn.to(dev), mask.to(dev),
                                     reference=self.reference)
                ratio = (got["policy"] - got["reference"]).double().cpu().numpy()
                for (i, k, _, _), v in zip(part, ratio):
                    out[i][k] = self.beta * v
                bar.advance(len(part))
        bar.close()
        return out

    def values(self, prompts: Sequence[str], steps: Sequence[Sequence[str]], *,
               batch_size: int = 64, progress: bool = False) -> list[np.ndarray]:
        """``q_k = r_1 + ... + r_k`` per step: the log-ratio of everything up to the end of
        step ``k``, the implicit Q value of the prefix (module docstring)."""
        return [np.cumsum(r) for r in
                self.step_rewards(prompts, steps, batch_size=batch_size, progress=progress)]

    def score(self, prompts: Sequence[str], steps: Sequence[Sequence[str]], *,
              progress: bool = False) -> list[np.ndarray]:
        """``sigmoid(r_k)`` per step: below 0.5 where the trained policy finds the step less
        likely than the reference did (module docstring)."""
        return [1.0 / (1.0 + np.exp(-r)) for r in
                self.step_rewards(prompts, steps, progress=progress)]

    @classmethod
    def load(cls, folder: str | Path) -> ImplicitPRM:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = Path(folder)
        info = json.loads((folder / "config.json").read_text())
        policy = AutoModelForCausalLM.from_pretrained(str(folder / "policy"))
        reference = AutoModelForCausalLM.from_pretrained(str(folder / "reference"))
        tok = AutoTokenizer.from_pretrained(str(folder / "reference"))
        prm = cls(policy, reference, tok, beta=info["beta"],
                  threshold=float(info.get("threshold", DEFAULT_THRESHOLD)))
        prm.config = {"beta": info["beta"], **info.get("config", {})}
        prm.train_stats = info.get("train_stats") or {}
        prm.threshold_source = info.get("threshold_source")
        return prm


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
                     prompts: Sequence[str], steps: Sequence[Sequence[str]],
                     outcomes: Sequence[bool], *, first_error: Sequence[int] | None = None,
                     resume: bool = False, overwrite: bool = False, progress: bool = True,
                     stop_after: int | None = None, device: Any = None) -> dict[str, Any]:
    """Train an implicit PRM from solutions and their **outcomes** (the final answer right
    or not); write ``output_dir``; return the summary.

    ``first_error`` (ProcessBench labels, when the data has them) is never trained on: it
    tunes the threshold on the held-out prompts' solutions and feeds the position-prior
    baseline of ``prefkit prm eval``; without it the threshold is the fixed 0.5 (``r_k =
    0``). ``stop_after`` stops after that many optimizer steps with a checkpoint (the
    summary says ``finished: False``); ``resume=True`` continues it, equal to an
    uninterrupted run (align's checkpoints); a finished run is left as it is."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

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


def _saved_run(out: Path) -> dict[str, Any] | None:
    """The marker of an earlier run in ``out`` (its config and status), if readable."""
    try:
        marker = json.loads((out / "prefkit_run.json").read_text())
    except (OSError, ValueError):
        return None
    return {"config": marker.get("config", {}), "status": marker.get("status")}
