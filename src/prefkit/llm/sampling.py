"""The shared sampler: ``G`` completions per prompt from a local causal LM, the prompt's
forward pass shared across its ``G`` samples. Online RL draws its groups with it
(:mod:`prefkit.rl.generate` re-exports it), process rewards their rollouts and candidates
(:func:`prefkit.process.pairs.lm_completer`, :func:`prefkit.process.search.lm_proposer`).

    samples = sample(model, tokenizer, ["2+3=", "7+1="], SamplingConfig(num_generations=8))
    samples.completion_ids   # (P * G, T) prompt-major: row p * G + g is prompt p's g-th
    samples.mask             # (P * G, T) the tokens that count (up to EOS / a stop string)
    samples.old_logps        # (P * G, T) the sampling policy's per-token log-probs

**Shared prefill.** The ``P`` prompts (left-padded) are run through the model once, without
their last token, filling a KV cache; the cache is repeated ``G`` times along the batch
(``DynamicCache.batch_repeat_interleave``) and handed to transformers' ``generate``, which
then runs only each row's last prompt token and the new tokens. ``generate`` itself would
run the prompt ``P * G`` times; here it runs ``P`` times (``share_prefill=False`` does the
former, for comparison and for models whose cache cannot be repeated).

**Sampling and the old log-probs.** Sampling is ``generate(do_sample=True)`` with
temperature and nucleus (top-p) and top-k warpers this module puts *after* a recorder: the
recorder sees the raw logits of every step and keeps ``log_softmax(logits / temperature)``
at the token drawn -- the log-probability TRL's GRPO uses (its ``_get_per_token_logps``
divides the logits by the temperature too; top-p and top-k only restrict the draw). So
``old_logps`` are the sampling policy's, from the generation's own forward passes, with no
extra pass; they agree with a full forward pass to float32 rounding (tested).

**Where a completion ends.** At its first EOS (kept: it is scored, so the policy learns to
stop) or after the token that completes one of ``stop`` strings (the string is kept); with
neither within ``max_new_tokens`` it is ``truncated``. ``mask`` is True up to that end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["Samples", "SamplingConfig", "sample", "tokenize_prompts"]


@dataclass(frozen=True)
class SamplingConfig:
    """How completions are drawn: ``num_generations`` per prompt (GRPO's G), at most
    ``max_new_tokens`` each, ``temperature`` (> 0), ``top_p`` (1: off), ``top_k`` (0: off),
    ``stop`` strings that end a completion as EOS does; ``share_prefill`` runs each prompt
    once for its G samples."""

    num_generations: int = 8
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    share_prefill: bool = True

    def __post_init__(self) -> None:
        if self.num_generations < 1:
            raise ValueError(f"num_generations must be >= 1, got {self.num_generations}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0: off), got {self.top_k}")
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        if any(not s for s in stop):
            raise ValueError("stop strings must not be empty")
        object.__setattr__(self, "stop", stop)


@dataclass
class Samples:
    """``G`` sampled completions for each of ``P`` prompts, prompt-major.

    prompt_ids:     (P, Lp) left-padded prompt tokens; prompt_mask (P, Lp).
    completion_ids: (N, T) right-padded (N = P * G); tokens after the end are padding.
    mask:           (N, T) bool, the completion's tokens up to and including its end.
    old_logps:      (N, T) float32 log-probs of the sampled tokens under the sampling
                    policy at ``temperature`` (0 outside ``mask``).
    texts:          the N completions decoded (special tokens skipped).
    truncated:      (N,) bool: no EOS or stop string within ``max_new_tokens``.
    """

    prompt_ids: Tensor
    prompt_mask: Tensor
    completion_ids: Tensor
    mask: Tensor
    old_logps: Tensor
    texts: list[str]
    truncated: Tensor
    num_generations: int
    temperature: float = 1.0

    @property
    def num_prompts(self) -> int:
        return int(self.prompt_ids.shape[0])

    @property
    def prompt_index(self) -> Tensor:
        """(N,) the prompt of each completion."""
        return torch.arange(self.num_prompts).repeat_interleave(self.num_generations)

    @property
    def lengths(self) -> Tensor:
        return self.mask.sum(dim=1)

    def select(self, rows: Tensor) -> Samples:
        """The completions ``rows`` (prompts kept whole; ``prompt_index`` then refers to
        the original prompts only when whole groups are kept)."""
        idx = rows.tolist()
        return Samples(self.prompt_ids, self.prompt_mask, self.completion_ids[rows],
                       self.mask[rows], self.old_logps[rows], [self.texts[i] for i in idx],
                       self.truncated[rows], self.num_generations, self.temperature)


class _Recorder:
    """A logits processor that keeps ``log_softmax(raw logits / temperature)`` of the
    previous step and, at the next call, the value at the token drawn then."""

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature
        self.prev: Tensor | None = None
        self.taken: list[Tensor] = []

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        if self.prev is not None:
            self.taken.append(self.prev.gather(1, input_ids[:, -1:]).squeeze(1))
        self.prev = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def finish(self, last: Tensor) -> Tensor:
        """(N, steps) with the last step's token ``last`` (N,)."""
        assert self.prev is not None
        self.taken.append(self.prev.gather(1, last[:, None]).squeeze(1))
        out = torch.stack(self.taken, dim=1)
        self.prev, self.taken = None, []
        return out


def _processors(cfg: SamplingConfig, recorder: _Recorder) -> Any:
    from transformers import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    procs: list[Any] = [recorder]
    if cfg.temperature != 1.0:
        procs.append(TemperatureLogitsWarper(cfg.temperature))
    if cfg.top_k:
        procs.append(TopKLogitsWarper(cfg.top_k))
    if cfg.top_p < 1.0:
        procs.append(TopPLogitsWarper(cfg.top_p))
    return LogitsProcessorList(procs)


def tokenize_prompts(tokenizer: Any, prompts: Sequence[str] | Sequence[Sequence[int]],
                     pad_id: int) -> tuple[Tensor, Tensor]:
    """(P, Lp) left-padded ids and mask; prompts are text (tokenized as is, with the
    tokenizer's special tokens, e.g. BOS) or lists of token ids."""
    rows = [list(p) if not isinstance(p, str) else tokenizer(p)["input_ids"] for p in prompts]
    if any(len(r) < 1 for r in rows):
        raise ValueError("a prompt tokenized to no tokens; every prompt needs at least one")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids, mask


def _ends(tokens: Tensor, eos: set[int], stop: tuple[str, ...], tokenizer: Any
          ) -> tuple[Tensor, Tensor]:
    """(lengths (N,), truncated (N,)): where each completion ends (EOS or stop string
    included)."""
    n, t = tokens.shape
    lengths = torch.full((n,), t, dtype=torch.long)
    truncated = torch.ones(n, dtype=torch.bool)
    rows = tokens.tolist()
    for i, row in enumerate(rows):
        end = next((j + 1 for j, tok in enumerate(row) if tok in eos), None)
        if stop:
            limit = end if end is not None else t
            text_end = _stop_end(row[:limit], stop, tokenizer)
            if text_end is not None:
                end = text_end
        if end is not None:
            lengths[i], truncated[i] = end, False
    return lengths, truncated


def _stop_end(row: list[int], stop: tuple[str, ...], tokenizer: Any) -> int | None:
    """The fewest leading tokens whose text holds a stop string, or None."""
    full = tokenizer.decode(row, skip_special_tokens=False)
    if not any(s in full for s in stop):
        return None
    lo, hi = 1, len(row)  # the shortest prefix containing a stop string
    while lo < hi:
        mid = (lo + hi) // 2
        if any(s in tokenizer.decode(row[:mid], skip_special_tokens=False) for s in stop):
            hi = mid
        else:
            lo = mid + 1
    return lo


@torch.no_grad()
def sample(model: nn.Module, tokenizer: Any, prompts: Sequence[str] | Sequence[Sequence[int]],
           config: SamplingConfig | None = None, *, generator: torch.Generator | None = None,
           seed: int | None = None) -> Samples:
    """Draw ``config.num_generations`` completions for every prompt (see the module).

    ``prompts``: texts (tokenized as given; apply a chat template before) or token-id
    lists. ``seed`` seeds the draw (torch's global RNG is forked and restored, so the
    caller's stream is untouched); ``generator`` is not supported by ``generate`` and is
    refused rather than ignored. The model is put in eval mode for the draw and restored.
    """
    if generator is not None:
        raise ValueError("transformers' generate draws from torch's global RNG; pass seed= "
                         "instead of a generator")
    cfg = config or SamplingConfig()
    g = cfg.num_generations
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
        else tokenizer.eos_token_id
    eos_ids = getattr(model, "generation_config", None)
    eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    if eos_ids is not None and eos_ids.eos_token_id is not None:
        more = eos_ids.eos_token_id
        eos |= set(more if isinstance(more, list) else [more])
    ids, mask = tokenize_prompts(tokenizer, prompts, pad_id)
    ids, mask = ids.to(device), mask.to(device)

    from transformers import GenerationConfig

    gen_cfg = GenerationConfig(
        do_sample=True, temperature=1.0, top_p=1.0, top_k=None, max_new_tokens=cfg.max_new_tokens,
        pad_token_id=pad_id, eos_token_id=sorted(eos) or None,
        stop_strings=list(cfg.stop) or None)
    recorder = _Recorder(cfg.temperature)
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if seed is not None:
            torch.manual_seed(seed)
        rows_ids = ids.repeat_interleave(g, dim=0)  # (N, Lp)
        rows_mask = mask.repeat_interleave(g, dim=0)
        kwargs: dict[str, Any] = {}
        if cfg.share_prefill and ids.shape[1] > 1:
            kwargs["past_key_values"] = _shared_prefill(model, ids, mask, g)
        out = model.generate(input_ids=rows_ids, attention_mask=rows_mask,
                             generation_config=gen_cfg, logits_processor=_processors(
                                 cfg, recorder),
                             tokenizer=tokenizer if cfg.stop else None, **kwargs)
    model.train(was_training)
    completion = out[:, ids.shape[1]:]  # (N, T)
    logps = recorder.finish(completion[:, -1])  # (N, T)
    lengths, truncated = _ends(completion.cpu(), eos, cfg.stop, tokenizer)
    t = int(lengths.max()) if len(lengths) else 0
    completion, logps = completion[:, :t], logps[:, :t]
    keep = torch.arange(t)[None, :] < lengths[:, None]  # (N, T)
    keep = keep.to(device)
    completion = torch.where(keep, completion, torch.full_like(completion, pad_id))
    logps = torch.where(keep, logps, torch.zeros_like(logps))
    texts = [tokenizer.decode(r[:n], skip_special_tokens=True)
             for r, n in zip(completion.tolist(), lengths.tolist(), strict=True)]
    return Samples(ids, mask, completion, keep, logps, texts, truncated.to(device), g,
                   cfg.temperature)


def _shared_prefill(model: nn.Module, ids: Tensor, mask: Tensor, g: int) -> Any:
    """The KV cache of every prompt but its last token, computed once per prompt and
    repeated ``g`` times along the batch (prompt-major, as the rows)."""
    from transformers import DynamicCache

    from prefkit.align.logprobs import split_lm_head

    head, head_mask = ids[:, :-1], mask[:, :-1]
    positions = (head_mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=getattr(model, "config", None))
    split = split_lm_head(model)  # the backbone alone: no (P, Lp, vocab) logits
    (split.backbone if split is not None else model)(
        input_ids=head, attention_mask=head_mask, position_ids=positions,
        past_key_values=cache, use_cache=True)
    if g > 1:
        cache.batch_repeat_interleave(g)
    return cache
