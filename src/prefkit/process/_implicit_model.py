"""The implicit PRM's model side (:mod:`prefkit.process.implicit` explains the math and
re-exports every name here): the response a solution is written as, outcome rows and pairs
for :func:`prefkit.align.align`, a reference fitted on unlabelled solutions, and
:class:`ImplicitPRM`, the step rewards ``beta * log(pi / pi_ref)`` of a trained policy."""

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

__all__ = ["ImplicitPRM", "fit_lm", "outcome_pairs", "outcome_rows", "response_text"]


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
