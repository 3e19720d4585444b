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
                     batch_size: int | None = None, max_batch_tokens: int = 32768,
                     progress: bool = False) -> list[np.ndarray]:
        """``r_k`` per step of each solution (module docstring).

        One forward pass of each model per solution: the log-probs of a step's tokens
        depend only on the tokens before them, so the whole solution is scored once and
        its token log-ratios summed step by step (not one pass per step: ``K`` times fewer
        tokens for ``K`` steps).

        ``batch_size`` counts **solutions** (rows) per forward pass, as ``prefkit prm train
        --kind implicit --batch-size`` counts solutions (or pairs) per optimizer step -- not
        steps: a solution of ``K`` steps is one row. A batch holds at most ``batch_size``
        solutions and ``max_batch_tokens`` padded tokens, longest first; ``batch_size``
        None: 64 on a GPU, 1 on a CPU (an unpadded row takes torch's fused causal attention
        there: 1.9 s against 7.2 s of CPU time for 20 ProcessBench MATH solutions in batches
        of 8, a 2-layer Llama, one thread)."""
        from prefkit.runs import progress_bar

        encoded = [self._rows(p, st) for p, st in zip(prompts, steps)]
        out = [np.full(len(st), np.nan) for st in steps]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
        pad = self.tokenizer.pad_token_id or 0
        bar = progress_bar(sum(len(st) for st in steps), "scoring steps", enabled=progress)
        dev = next(self.policy.parameters()).device
        if batch_size is None:
            batch_size = 1 if dev.type == "cpu" else 64
        at = 0
        with torch.no_grad():
            while at < len(order):
                width = max(1, len(encoded[order[at]][0]))
                part = order[at:at + max(1, min(batch_size, max_batch_tokens // width))]
                at += len(part)
                n_steps = max(len(encoded[i][1]) for i in part)
                ids = torch.full((len(part), width), pad, dtype=torch.long)
                attn = torch.zeros_like(ids)
                step_of = torch.full_like(ids, -1)  # (B, T): the step each token is in
                for r, i in enumerate(part):
                    x, spans = encoded[i]
                    ids[r, :len(x)] = torch.tensor(x, dtype=torch.long)
                    attn[r, :len(x)] = 1
                    for k, (s, e) in enumerate(spans):
                        step_of[r, s:e] = k
                step_of[:, 0] = -1  # the first token is predicted by nothing
                row, col = (step_of >= 0).nonzero(as_tuple=True)  # (n,) scored tokens
                where = row * width + col - 1  # (n,) the output at t - 1 scores token t
                targets = ids[row, col]
                slot = row * n_steps + step_of[row, col]  # (n,) the (solution, step) cell
                ids, attn = ids.to(dev), attn.to(dev)
                ratio = (_token_logps(self.policy, ids, attn, where.to(dev), targets.to(dev))
                         - _token_logps(self.reference, ids, attn, where.to(dev),
                                        targets.to(dev))).double().cpu()
                sums = torch.zeros(len(part) * n_steps, dtype=torch.float64).index_add_(
                    0, slot, ratio).view(len(part), n_steps).numpy()
                for r, i in enumerate(part):
                    out[i][:] = self.beta * sums[r, :len(out[i])]
                    bar.advance(len(out[i]))
        bar.close()
        return out

    def values(self, prompts: Sequence[str], steps: Sequence[Sequence[str]], *,
               batch_size: int | None = None, progress: bool = False) -> list[np.ndarray]:
        """``q_k = r_1 + ... + r_k`` per step: the log-ratio of everything up to the end of
        step ``k``, the implicit Q value of the prefix (module docstring); ``batch_size``:
        solutions per forward pass (:meth:`step_rewards`)."""
        return [np.cumsum(r) for r in
                self.step_rewards(prompts, steps, batch_size=batch_size, progress=progress)]

    def score(self, prompts: Sequence[str], steps: Sequence[Sequence[str]], *,
              batch_size: int | None = None, progress: bool = False) -> list[np.ndarray]:
        """``sigmoid(r_k)`` per step: below 0.5 where the trained policy finds the step less
        likely than the reference did (module docstring); ``batch_size``: solutions per
        forward pass (:meth:`step_rewards`)."""
        return [1.0 / (1.0 + np.exp(-r)) for r in
                self.step_rewards(prompts, steps, batch_size=batch_size, progress=progress)]

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


# -- per-token log-probs at the scored positions --------------------------------------------
def _token_logps(model: nn.Module, ids: torch.Tensor, attn: torch.Tensor, where: torch.Tensor,
                 targets: torch.Tensor) -> torch.Tensor:
    """``log pi(targets | ...)`` (n,) float32 from the outputs at the flat positions
    ``where`` of the ``(B, T)`` rows: the backbone's hidden states there through the output
    embedding in chunks (:func:`prefkit.align.logprobs.chunked_token_logps`, no ``(B, T,
    V)`` logits), when that split of the model reproduces its own logits (align's check,
    once per model: :func:`prefkit.align.logprobs.checked_lm_head`); else the model's
    logits at those positions."""
    from prefkit.align.logprobs import checked_lm_head, chunked_token_logps, last_hidden_state

    head = checked_lm_head(model, ids, attn)
    if head is not None:
        hidden = last_hidden_state(head.backbone, ids, attn)  # (B, T, H)
        return chunked_token_logps(hidden.flatten(0, 1).index_select(0, where), head,
                                   targets)[0]
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits  # (B, T, V)
    logp = torch.log_softmax(logits.flatten(0, 1).index_select(0, where).float(), dim=-1)
    return logp.gather(1, targets[:, None]).squeeze(1)
