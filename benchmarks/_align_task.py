"""The synthetic task of ``align_synthetic.py``: sort a short list of digits.

Nothing here is part of prefkit; the benchmark (and ``tests/align/test_synthetic_task.py``)
import it as a sibling module. It holds the pieces that do not need a trainer:

* the task -- :func:`make_prompts` draws ``sort: 7 2 9 4\\n`` prompts, :func:`target` is the
  one answer that obeys the rule (``2 4 7 9``), :func:`obeys_rule` checks an answer and
  :func:`rule_score` grades it (minus the edit distance to the target, 0 when correct);
* stage 1 data -- :func:`sft_examples`: answers in the right format that are only *partly*
  correct -- a habitual mistake (:func:`systematic_mistake`, the last two different digits
  swapped) or a random one (:func:`corrupt`: a swap, a wrong digit, a digit dropped) -- so
  a model fine-tuned on them learns the format but obeys the rule only some of the time;
* stage 2 data -- :func:`build_pairs` (chosen = a correct sample, rejected = a wrong one) and
  :func:`build_rankings` (``K`` samples with distinct grades, best first) from a model's own
  samples;
* the model side -- :func:`sft` (a plain supervised loop), :func:`sample_answers` (temperature
  1, the full distribution, a seeded generator) and :func:`sequence_logps` (summed
  log-probabilities of the answer and its EOS given the prompt, for implicit rewards).

Random choices take a ``numpy.random.Generator`` or a seed; nothing uses global random state
(model initialisation is seeded by :func:`prefkit.align.tiny.tiny_llama`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

#: List lengths drawn for prompts (inclusive).
MIN_LEN, MAX_LEN = 4, 6
PREFIX = "sort: "


# ----------------------------------------------------------------------------- the task
def make_prompts(n: int, rng: np.random.Generator, *, exclude: Sequence[str] = ()) -> list[str]:
    """``n`` distinct prompts ``"sort: d d d\\n"`` (4-6 digits 0-9, repeats allowed), none
    in ``exclude`` -- so training and held-out prompts never overlap."""
    seen, out = set(exclude), []
    while len(out) < n:
        k = int(rng.integers(MIN_LEN, MAX_LEN + 1))
        prompt = PREFIX + " ".join(str(d) for d in rng.integers(0, 10, size=k)) + "\n"
        if prompt not in seen:
            seen.add(prompt)
            out.append(prompt)
    return out


def digits_of(prompt: str) -> list[str]:
    """The digits a prompt asks to sort."""
    return prompt[len(PREFIX):].split()


def target(prompt: str) -> str:
    """The only answer that obeys the rule: the prompt's digits sorted, space separated."""
    return " ".join(sorted(digits_of(prompt)))


def obeys_rule(prompt: str, answer: str) -> bool:
    """True iff ``answer`` is exactly the prompt's digits in non-decreasing order."""
    return answer == target(prompt)


def _edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two token lists (insert, delete, substitute: cost 1)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def rule_score(prompt: str, answer: str) -> int:
    """A graded rule: minus the edit distance between the answer's space-separated tokens
    and the target's (0 exactly when :func:`obeys_rule`; malformed text scores low)."""
    return -_edit_distance(answer.split(" "), target(prompt).split(" "))


# ----------------------------------------------------------------------------- stage 1 data
def corrupt(answer: str, rng: np.random.Generator) -> str:
    """A well-formed but wrong version of a sorted ``answer``: one of an adjacent swap, a
    swap of two positions, one digit replaced, or the last digit dropped (stopped early).
    Falls back to replacing a digit when a swap would change nothing (equal digits)."""
    toks = answer.split(" ")
    kind = int(rng.integers(4))
    if kind in (0, 1):
        if kind == 0:
            i = int(rng.integers(len(toks) - 1))
            j = i + 1
        else:
            i, j = sorted(rng.choice(len(toks), size=2, replace=False).tolist())
        if toks[i] != toks[j]:
            toks[i], toks[j] = toks[j], toks[i]
            return " ".join(toks)
        kind = 2
    if kind == 2:
        i = int(rng.integers(len(toks)))
        toks[i] = str((int(toks[i]) + int(rng.integers(1, 10))) % 10)
        return " ".join(toks)
    return " ".join(toks[:-1])


def systematic_mistake(answer: str) -> str | None:
    """The one habitual error of the SFT data: the last two *different* adjacent digits of a
    sorted ``answer`` swapped (``0 2 5 8`` -> ``0 2 8 5``); None when all digits are equal."""
    toks = answer.split(" ")
    for i in range(len(toks) - 2, -1, -1):
        if toks[i] != toks[i + 1]:
            toks[i], toks[i + 1] = toks[i + 1], toks[i]
            return " ".join(toks)
    return None


def sft_examples(prompts: Sequence[str], rng: np.random.Generator, *, p_correct: float,
                 p_systematic: float) -> list[tuple[str, str]]:
    """``(prompt, answer)`` pairs: the target with probability ``p_correct``; otherwise the
    :func:`systematic_mistake` with probability ``p_systematic`` (when it exists), else a
    random :func:`corrupt` version. With a habitual mistake more frequent than the correct
    answer, the fine-tuned model's likeliest answer is often wrong -- so even its own
    (length-normalised) likelihood does not yet tell right from wrong."""
    out = []
    for p in prompts:
        t = target(p)
        if rng.random() < p_correct:
            out.append((p, t))
            continue
        habit = systematic_mistake(t) if rng.random() < p_systematic else None
        out.append((p, habit if habit is not None else corrupt(t, rng)))
    return out


# ----------------------------------------------------------------------------- stage 2 data
#: Marks a sampled answer that hit the length cap before its EOS (see :func:`sample_answers`).
NO_EOS = "<no-eos>"


def usable(answer: str) -> bool:
    """Whether a sample can be a training response: non-empty (the data readers refuse empty
    responses) and finished with EOS (the trainer appends EOS, so a cut answer would be
    trained as a finished one)."""
    return bool(answer) and not answer.endswith(NO_EOS)


def build_pairs(samples: dict[str, list[str]], rng: np.random.Generator) -> list[dict[str, str]]:
    """One ``{prompt, chosen, rejected}`` per prompt that has both a correct and a wrong
    sample: chosen a correct one, rejected one of the wrong samples drawn at random (so a
    mistake the model makes often is drawn often). Prompts in the order given; prompts
    whose samples are all right or all wrong are skipped. Only :func:`usable` samples take
    part."""
    rows = []
    for prompt, answers in samples.items():
        answers = [a for a in answers if usable(a)]
        good = [a for a in answers if obeys_rule(prompt, a)]
        bad = [a for a in answers if not obeys_rule(prompt, a)]
        if good and bad:
            rows.append({"prompt": prompt, "chosen": good[0],
                         "rejected": bad[int(rng.integers(len(bad)))]})
    return rows


def build_rankings(samples: dict[str, list[str]], rng: np.random.Generator, *,
                   k: int) -> list[dict[str, Any]]:
    """Up to ``k`` samples per prompt with *distinct* :func:`rule_score` grades, ranked best
    first (``{prompt, completions, scores}``): one answer per grade, drawn at random among
    the distinct answers of that grade, the best grades kept. Only prompts whose best answer
    obeys the rule and that have at least two grades are kept, so the top of every ranking
    is correct (the same prompts as :func:`build_pairs`). No ties, so no tie-breaking.
    Only :func:`usable` samples take part."""
    rows = []
    for prompt, answers in samples.items():
        by_grade: dict[int, list[str]] = {}
        for a in sorted({a for a in answers if usable(a)}):
            by_grade.setdefault(rule_score(prompt, a), []).append(a)
        grades = sorted(by_grade, reverse=True)[:k]
        if len(grades) < 2 or grades[0] != 0:
            continue
        picks = [by_grade[g][int(rng.integers(len(by_grade[g])))] for g in grades]
        rows.append({"prompt": prompt, "completions": picks, "scores": grades})
    return rows


def wilson(successes: float, n: int) -> dict[str, float]:
    """``{share, low, high, n}``: a proportion with its Wilson 95% interval."""
    from prefkit.reward.evaluate import wilson_interval

    share = successes / n if n else math.nan
    low, high = wilson_interval(share, n)
    return {"share": share, "low": low, "high": high, "n": n}


# ----------------------------------------------------------------------------- model side
def encode(tok: Any, prompt: str, answer: str | None = None) -> tuple[list[int], int]:
    """Token ids of ``<s> prompt [answer </s>]`` and the number of prompt tokens (with BOS)."""
    ids = tok(prompt).input_ids
    n_prompt = len(ids)
    if answer is not None:
        ids = ids + tok(answer, add_special_tokens=False).input_ids + [tok.eos_token_id]
    return ids, n_prompt


def _batch(tok: Any, prompts: Sequence[str], answers: Sequence[str]):
    """Right-padded ids, attention mask and a mask of the scored (answer + EOS) tokens."""
    import torch

    enc = [encode(tok, p, a) for p, a in zip(prompts, answers)]
    width = max(len(ids) for ids, _ in enc)
    ids = torch.full((len(enc), width), tok.pad_token_id, dtype=torch.long)  # (B, T)
    attn = torch.zeros((len(enc), width), dtype=torch.long)
    scored = torch.zeros((len(enc), width), dtype=torch.bool)
    for i, (row, n_prompt) in enumerate(enc):
        ids[i, :len(row)] = torch.tensor(row)
        attn[i, :len(row)] = 1
        scored[i, n_prompt:len(row)] = True
    return ids, attn, scored


def sequence_logps(model: Any, tok: Any, prompts: Sequence[str], answers: Sequence[str], *,
                   batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Summed ``log pi(answer + EOS | prompt)`` and the number of scored tokens, per row."""
    import torch

    logps, lengths = [], []
    model.eval()
    with torch.no_grad():
        for s in range(0, len(prompts), batch_size):
            ids, attn, scored = _batch(tok, prompts[s:s + batch_size], answers[s:s + batch_size])
            logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()  # (B, T-1, V)
            tok_logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
            mask = scored[:, 1:]
            logps.append((tok_logp * mask).sum(-1).numpy())
            lengths.append(mask.sum(-1).numpy())
    return np.concatenate(logps), np.concatenate(lengths).astype(float)


def sft(model: Any, tok: Any, examples: Sequence[tuple[str, str]], *, steps: int,
        batch_size: int, lr: float, seed: int, log_every: int = 0) -> list[float]:
    """Supervised fine-tuning on the answer tokens (prompt tokens are not scored): AdamW,
    linear warm-up over 5% of the steps then cosine decay, gradient clipping at 1.0.
    Returns the loss of every step; the model is left in eval mode."""
    import torch

    gen = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    losses, t0 = [], time.perf_counter()
    model.train()
    for step in range(steps):
        # --- a random batch of examples
        idx = gen.integers(len(examples), size=batch_size)
        ids, attn, scored = _batch(tok, [examples[i][0] for i in idx],
                                   [examples[i][1] for i in idx])
        # --- next-token loss on the answer (+ EOS) tokens only
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]  # (B, T-1, V)
        labels = ids[:, 1:].masked_fill(~scored[:, 1:], -100)  # (B, T-1)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 labels.reshape(-1), ignore_index=-100)
        # --- step
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            print(f"  sft step {step + 1}/{steps}  loss {np.mean(losses[-log_every:]):.4f}"
                  f"  ({time.perf_counter() - t0:.0f}s)", flush=True)
    model.eval()
    return losses


def sample_answers(model: Any, tok: Any, prompts: Sequence[str], *, n: int, seed: int,
                   batch_size: int = 512) -> dict[str, list[str]]:
    """``n`` answers per prompt sampled at temperature 1 from the model's full distribution
    (no top-k / top-p), stopped at EOS, with a ``torch.Generator`` seeded by ``seed``. An
    answer that reaches the length cap (target length + 4) without EOS is returned with a
    trailing :data:`NO_EOS` marker, so it never obeys the rule. Prompts of equal token
    length are batched together, so no padding is needed."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    model.eval()
    out: dict[str, list[str]] = {p: [] for p in prompts}
    groups: dict[int, list[str]] = {}
    for p in prompts:
        groups.setdefault(len(p), []).append(p)
    for length in sorted(groups):
        todo = [p for p in groups[length] for _ in range(n)]
        max_new = len(target(todo[0])) + 4
        for s in range(0, len(todo), batch_size):
            chunk = todo[s:s + batch_size]
            rows = _sample(model, torch.tensor([tok(p).input_ids for p in chunk]),  # (B, T)
                           max_new, tok.eos_token_id, gen)
            for p, row in zip(chunk, rows):
                if tok.eos_token_id in row:
                    text = tok.decode(row[:row.index(tok.eos_token_id)])
                else:
                    text = tok.decode(row) + NO_EOS
                out[p].append(text)
    return out


def _sample(model: Any, ids: Any, max_new: int, eos: int, gen: Any) -> list[list[int]]:
    """Ancestral sampling with the KV cache from equal-length prompts ``ids`` (B, T): the
    new tokens of each row (up to and including its EOS; rows stop separately)."""
    import torch

    with torch.no_grad():
        step = model(input_ids=ids, use_cache=True)
        new, done = [], torch.zeros(ids.shape[0], dtype=torch.bool)
        for _ in range(max_new):
            probs = torch.softmax(step.logits[:, -1].float(), dim=-1)  # (B, V)
            nxt = torch.multinomial(probs, 1, generator=gen)[:, 0]  # (B,)
            new.append(torch.where(done, eos, nxt))
            done |= nxt == eos
            if bool(done.all()):
                break
            step = model(input_ids=nxt[:, None], past_key_values=step.past_key_values,
                         use_cache=True)
    rows = torch.stack(new, dim=1).tolist()  # (B, <= max_new)
    return [r[:r.index(eos) + 1] if eos in r else r for r in rows]


def rule_share(samples: dict[str, list[str]]) -> dict[str, float]:
    """Share of sampled answers obeying the rule, with its Wilson 95% interval."""
    hits = [obeys_rule(p, a) for p, answers in samples.items() for a in answers]
    return wilson(int(sum(hits)), len(hits))
