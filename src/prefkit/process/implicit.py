"""The implicit PRM (Yuan et al. 2024, "Free Process Rewards without Process Labels",
arXiv:2412.01981): a causal LM trained on **outcome labels only** whose reward, read token by
token, is a process reward.

With the outcome reward parameterised as ``r(y) = beta * log(pi(y|x) / pi_ref(y|x))`` and
trained with a preference loss on whole solutions (here DPO on (right-outcome,
wrong-outcome) pairs of the same problem, through :func:`prefkit.align.align`), the reward of
step ``k`` is

    r_k = beta * sum_{t in step k} log(pi(y_t | x, y_<t) / pi_ref(y_t | x, y_<t))

computed by :func:`prefkit.align.logprobs.sequence_logps` (one row per step, the step's
tokens in the loss mask, the reference in the same call). A step looks wrong when ``r_k``
is negative: the trained model finds it less likely than the reference did. :meth:`score`
returns ``sigmoid(r_k)`` so that the fixed ProcessBench threshold 0.5 is ``r_k = 0`` (it is no
calibrated probability).

``pi_ref`` is the model before the outcome training: :func:`fit_lm` fits one on unlabelled
solutions (the generator's own samples), standing in for a pretrained LM on small tasks.
A folder holds ``policy/`` (align's run, the trained model), ``reference/`` and
``config.json`` (kind ``"implicit"``, ``beta``, the threshold).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prefkit.process.processbench import DEFAULT_THRESHOLD
from prefkit.runs import write_json

__all__ = ["ImplicitPRM", "fit_lm", "outcome_pairs", "outcome_rows", "response_text",
           "train_implicit_prm"]


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
        self.config = {"beta": beta}
        self.train_stats: dict[str, list[int]] = {}

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
                got = sequence_logps(self.policy, ids, attn, mask, reference=self.reference)
                ratio = (got["policy"] - got["reference"]).double().numpy()
                for (i, k, _, _), v in zip(part, ratio):
                    out[i][k] = self.beta * v
                bar.advance(len(part))
        bar.close()
        return out

    def score(self, prompts: Sequence[str], steps: Sequence[Sequence[str]], *,
              progress: bool = False) -> list[np.ndarray]:
        """``sigmoid(r_k)`` per step: 0.5 where the step reward is 0."""
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
        return cls(policy, reference, tok, beta=info["beta"],
                   threshold=float(info.get("threshold", DEFAULT_THRESHOLD)))


def train_implicit_prm(model: nn.Module, tokenizer: Any, pairs: Sequence[dict[str, Any]],
                       output_dir: str | Path, *, beta: float = 0.1, loss: str = "dpo",
                       align_config: Any = None, progress: bool = False,
                       overwrite: bool = False) -> ImplicitPRM:
    """Train the implicit PRM: ``model`` (the reference, saved first under ``reference/``)
    is aligned on outcome ``pairs`` (:func:`outcome_pairs`; or unpaired
    :func:`outcome_rows` with an unpaired loss such as ``kto``) with ``loss`` by
    :func:`prefkit.align.align` into ``policy/``; returns the PRM (also written as a folder
    :func:`~prefkit.process.load_prm` reads)."""
    import copy

    from prefkit.align import AlignConfig, align

    out = Path(output_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; choose a new folder or overwrite=True")
    out.mkdir(parents=True, exist_ok=True)
    reference = copy.deepcopy(model).eval()
    reference.save_pretrained(str(out / "reference"))
    tokenizer.save_pretrained(str(out / "reference"))
    data = out / "outcome_pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in pairs))
    config = align_config or AlignConfig(loss=loss, loss_kwargs={"beta": beta},
                                         learning_rate=1e-3, batch_size=16, epochs=2)
    align(model, str(data), config=config, output_dir=out / "policy", tokenizer=tokenizer,
          reference_model=reference, progress=progress, overwrite=overwrite,
          device="cpu")
    beta_used = dict(config.loss_kwargs).get("beta", beta)
    write_json(out / "config.json", {"kind": "implicit", "beta": beta_used,
                                     "threshold": DEFAULT_THRESHOLD, "loss": config.loss})
    return ImplicitPRM(model, reference, tokenizer, beta=beta_used)
