"""Reference log-probabilities, computed once for a whole data set and cached on disk.

    ref = cached_reference_logps(model, data, "runs/dpo/reference_logps.pt")
    ref.logps[i, k]          # log pi_ref(response k | prompt i), float32 (N, K_max)

The reference of DPO-style losses never changes during training, so its log-probabilities
are computed before the first step (no gradients, eval mode, one batched pass over the
data) and the training loop runs the reference zero times per step.

**Cache.** One ``torch.save`` file holding the log-probabilities and the *key* they were
computed under: a fingerprint of the model (:func:`model_fingerprint`: its config and a
SHA-256 of its weights), of the tokenized data (:func:`data_fingerprint`), the
precision (bf16 autocast changes the numbers) and, for KTO, the mismatched pairs. A later
run -- or a resumed one -- with the same key loads the file; any change recomputes it.

**Several processes.** A model sharded over processes (FSDP2) is scored through its shards,
every process a share of the batches (:func:`sharded_reference_logps`); the main process
keys the cache by its whole copy on the host, so a file written by one process serves a
sharded run and vice versa (weights over 16M elements are fingerprinted by exact integer
sums, the same on any device).

**LoRA.** With a peft model the reference is the *same* model with its adapter disabled
(``reference=model.disable_adapter``): no second copy is held, and the fingerprint skips
the adapter's weights (it is the base model's), so a run that starts from a fresh adapter
shares the cache of a run on the base model.

**KTO's mismatched pairs** (:func:`mismatched_examples`): prompt ``i`` with its own
``kl_completion``, the KL partner fixed when the data was prepared
(:func:`~prefkit.align.data.add_kl_completions`, as TRL's KTO does) -- so their reference
log-probabilities can be cached too.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from prefkit.align.logprobs import _unwrap, packed_sequence_logps, sequence_logps
from prefkit.processes import PreparedModel, Processes

__all__ = ["ReferenceLogps", "cached_reference_logps", "compute_reference_logps",
           "data_fingerprint", "mismatched_examples", "model_fingerprint",
           "sharded_reference_logps"]

_FORMAT = 1
_FULL_HASH_NUMEL = 1 << 24  # larger weights get a sampled digest (see _tensor_digest)
_SUM_CHUNK = 1 << 24  # words summed at a time (in int64, exact: below 2^55 a chunk)
_ONE = Processes()  # a single process: no distributed call
_Call = Callable[[Callable[[nn.Module], Any]], Any]  # call(fn) runs fn(model) (PreparedModel)
_CONFIG_SKIP = {"_name_or_path", "transformers_version", "torch_dtype", "dtype",
                "_commit_hash", "use_cache"}


@dataclass
class ReferenceLogps:
    """Reference log-probs of a data set, aligned with its examples.

    logps: (N, K_max) float32; 0 where an example has fewer responses.
    kl:    (N,) float32 log-probs of the mismatched pairs (KTO), or None.
    key:   what they were computed from (see the module docstring).
    loaded: True when they came from the cache file rather than a model pass.
    """

    logps: Tensor
    kl: Tensor | None
    key: dict[str, Any]
    loaded: bool = False

    def __len__(self) -> int:
        return int(self.logps.shape[0])

    def take(self, indices: Sequence[int], num_responses: int, device: Any = None
             ) -> tuple[Tensor, Tensor | None]:
        """``(reference (b, K), kl_reference (b,) or None)`` for examples ``indices``."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        ref = self.logps[idx, :num_responses].to(device)
        return ref, (None if self.kl is None else self.kl[idx].to(device))


# -- fingerprints ----------------------------------------------------------------------------------
def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 (hex) of a causal LM's config and every weight (name, dtype, shape, and its
    bytes -- for tensors over 16M elements, the exact integer sum of their 32-bit words and
    64 evenly spaced slices, so a large model is fingerprinted in seconds, the same on any
    device).

    A peft model fingerprints as its base model: adapter weights are skipped and peft's
    ``base_layer`` / ``original_module`` wrappers are read through.
    """
    lm = _unwrap(model)
    adapters = set(getattr(model, "peft_config", None) or {})
    h = hashlib.sha256(f"prefkit-model-v{_FORMAT}".encode())
    cfg = getattr(lm, "config", None)
    if cfg is not None and hasattr(cfg, "to_dict"):
        d = {k: v for k, v in cfg.to_dict().items() if k not in _CONFIG_SKIP}
        h.update(json.dumps(d, sort_keys=True, default=str).encode())
    for name, t in sorted(lm.state_dict(keep_vars=False).items()):
        parts = name.split(".")
        if adapters.intersection(parts):
            continue
        name = ".".join(p for p in parts if p not in ("base_layer", "original_module"))
        h.update(f"\x1e{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(_tensor_digest(t.detach().reshape(-1)))
    return h.hexdigest()


def _tensor_digest(flat: Tensor) -> bytes:
    """Every byte of a tensor up to :data:`_FULL_HASH_NUMEL` elements; beyond, the exact
    integer sum of its bytes read as 32-bit words (16-bit / 8-bit ones for 2-byte / 1-byte
    dtypes), added on its device a chunk at a time, and 64 evenly spaced slices of 4,096
    elements -- any training step changes those, a 70B model is not copied to the CPU, and
    an integer sum, unlike a floating-point one, does not depend on the order a device adds
    in: a copy on the host fingerprints as the same weights on a GPU (FSDP2's main process
    keys the reference cache by its host copy, :func:`sharded_reference_logps`)."""
    if flat.numel() <= _FULL_HASH_NUMEL:
        return hashlib.sha256(flat.contiguous().cpu().view(torch.uint8).numpy()).digest()
    flat = flat.contiguous()
    words = flat.view({1: torch.uint8, 2: torch.int16}.get(flat.element_size(), torch.int32))
    total = sum(int(c.sum(dtype=torch.int64)) for c in words.split(_SUM_CHUNK))
    parts = [total.to_bytes(16, "little", signed=True)]
    for start in torch.linspace(0, flat.numel() - 4096, 64).long().tolist():
        parts.append(flat[start:start + 4096].cpu().view(torch.uint8).numpy().tobytes())
    return hashlib.sha256(b"".join(parts)).digest()


def data_fingerprint(examples: Any) -> str:
    """The tokenized data's own ``fingerprint()`` when it has one, else a SHA-256 of every
    example's prompt ids, responses, label, validity and KL partner, in order."""
    if callable(getattr(examples, "fingerprint", None)):
        return str(examples.fingerprint())
    h = hashlib.sha256(b"prefkit-align-examples-v1")
    for e in examples:
        h.update(json.dumps([list(e.prompt_ids), [list(r) for r in e.responses],
                             getattr(e, "label", None), getattr(e, "valid", None)]).encode())
        if getattr(e, "kl_completion", None) is not None:  # KTO's KL partner, when set
            h.update(json.dumps(list(e.kl_completion)).encode())
    return h.hexdigest()


def mismatched_examples(examples: Sequence[Any], *, max_length: int | None = None) -> list[Any]:
    """KTO's mismatched pairs: each example's prompt with its ``kl_completion`` (its KL
    partner, see :func:`~prefkit.align.data.add_kl_completions`), as unlabelled
    one-response examples; the completion is cut at its end so that prompt + completion fit
    ``max_length``."""
    out = []
    for i, e in enumerate(examples):
        if getattr(e, "kl_completion", None) is None:
            raise ValueError(f"example {i} has no kl_completion: KTO's mismatched pairs are "
                             "fixed when the data is prepared; use tokenize_alignment(..., "
                             "kl_batch_size=) or add_kl_completions(data, batch_size)")
        resp = list(e.kl_completion)
        if max_length is not None:
            resp = resp[:max(max_length - len(e.prompt_ids), 0)]
        out.append(replace(e, responses=[resp], label=None, valid=None,
                           kl_completion=None))
    return out


# -- computing them --------------------------------------------------------------------------------
def _default_collate() -> Callable[..., Any]:
    from prefkit.align.data import collate

    return collate


@torch.no_grad()
def _logps_over(model: nn.Module, examples: Sequence[Any], *, collate: Callable[..., Any],
                pad_token_id: int, batch_size: int, chunk_size: int | None,
                context: Callable[[], Any], precision: str, device: torch.device,
                bar: Any, done: list[int], packing: str = "none", call: _Call | None = None,
                procs: Processes = _ONE) -> Tensor:
    """(N, K_max) summed log-probs of ``examples`` under ``model`` (inside ``context()``),
    batched longest first (least padding); ``packing`` as :class:`AlignConfig`'s.

    ``call(fn)`` runs ``fn(model)`` (default: directly; FSDP2: through the sharded root, a
    collective call). Several ``procs``: each scores every ``world``-th batch, all make the
    same number of calls (a process with fewer repeats the shortest example, its result
    dropped), and the scores are gathered onto every process."""
    from prefkit.align.packing import pack_examples, resolve_packing

    call = call or (lambda fn: fn(model))
    n = len(examples)
    k_max = max((len(e.responses) for e in examples), default=1)
    out = torch.zeros((n, k_max), dtype=torch.float32)
    order = sorted(range(n), key=lambda i: -(len(examples[i].prompt_ids)
                                             + max(map(len, examples[i].responses))))
    mode = resolve_packing(packing, model) if n else "none"
    batches = [order[s:s + batch_size] for s in range(0, n, batch_size)]
    mine = batches[procs.rank::procs.world]
    scored: list[int] = []
    for r in range(math.ceil(len(batches) / procs.world)):  # every process: the same calls
        idx = mine[r] if r < len(mine) else order[-1:]
        chosen = [examples[i] for i in idx]
        with context(), torch.autocast(device.type, dtype=torch.bfloat16,
                                       enabled=precision == "bf16"):
            if mode != "none":
                batch = pack_examples(chosen, pad_token_id, mode=mode, kl_pairs=False)
                got = call(functools.partial(packed_sequence_logps, batch=batch.to(device),
                                             chunk_size=chunk_size))["policy"]  # (k * b,)
            else:
                batch = collate(chosen, pad_token_id)
                got = call(functools.partial(
                    sequence_logps, input_ids=batch.input_ids.to(device),
                    attention_mask=batch.attention_mask.to(device),
                    loss_mask=batch.loss_mask.to(device), chunk_size=chunk_size))["policy"]
        if r < len(mine):
            k = int(batch.num_responses)
            out[torch.as_tensor(idx)[:, None], torch.arange(k)] = got.cpu().view(k, -1).t()
            scored += idx
        # the calls are collective: every process has finished its r-th batch as well
        bar.update(done[0] + min(n, (r + 1) * procs.world * batch_size), "reference log-probs")
    done[0] += n
    for rows, values in procs.gather((scored, out[scored])):  # every process's share
        out[rows] = values
    return out


def _key(model: nn.Module, examples: Sequence[Any], precision: str, kl_pairs: bool,
         max_length: int | None) -> dict[str, Any]:
    return {"format": _FORMAT, "model": model_fingerprint(model),
            "data": data_fingerprint(examples), "precision": precision,
            "kl_pairs": bool(kl_pairs), "kl_max_length": max_length if kl_pairs else None}


def compute_reference_logps(
    model: nn.Module,
    examples: Sequence[Any],
    *,
    pad_token_id: int,
    reference: Any = None,
    kl_pairs: bool = False,
    max_length: int | None = None,
    batch_size: int = 8,
    chunk_size: int | None = None,
    precision: str = "fp32",
    collate: Callable[..., Any] | None = None,
    progress: bool = False,
    packing: str = "none",
) -> ReferenceLogps:
    """Reference log-probs of every response of ``examples`` (and of KTO's mismatched pairs
    with ``kl_pairs``), in eval mode without gradients.

    ``model`` is the reference itself, or -- with ``reference`` a context-manager factory
    such as ``peft_model.disable_adapter`` -- the policy that becomes the reference under
    it. ``collate`` defaults to :func:`prefkit.align.data.collate` (used when ``packing``
    resolves to ``"none"``; see :mod:`prefkit.align.packing`).
    """
    return _compute(model, examples, _key(model, examples, precision, kl_pairs, max_length),
                    pad_token_id=pad_token_id, reference=reference, kl_pairs=kl_pairs,
                    max_length=max_length, batch_size=batch_size, chunk_size=chunk_size,
                    precision=precision, collate=collate, progress=progress, packing=packing)


def _compute(model: nn.Module, examples: Sequence[Any], key: dict[str, Any], *,
             pad_token_id: int, reference: Any, kl_pairs: bool, max_length: int | None,
             batch_size: int, chunk_size: int | None, precision: str,
             collate: Callable[..., Any] | None, progress: bool, packing: str = "none",
             call: _Call | None = None, procs: Processes = _ONE,
             device: torch.device | None = None) -> ReferenceLogps:
    from prefkit.runs import progress_bar

    if reference is not None and (isinstance(reference, nn.Module) or not callable(reference)):
        raise TypeError("reference must be a context-manager factory here (e.g. "
                        "peft_model.disable_adapter); pass a separate reference model as model")
    kl_rows = mismatched_examples(examples, max_length=max_length) if kl_pairs else []
    bar = progress_bar(len(examples) + len(kl_rows), "reference log-probs", enabled=progress)
    run = dict(collate=collate or _default_collate(), pad_token_id=pad_token_id,
               batch_size=batch_size, chunk_size=chunk_size, precision=precision,
               device=device or next(model.parameters()).device,
               context=reference or contextlib.nullcontext, bar=bar, done=[0],
               packing=packing, call=call, procs=procs)
    was_training = model.training
    model.eval()
    try:
        logps = _logps_over(model, examples, **run)
        kl = _logps_over(model, kl_rows, **run)[:, 0] if kl_pairs else None
    finally:
        model.train(was_training)
        bar.close()
    return ReferenceLogps(logps, kl, key)


_DEFAULTS = {"batch_size": 8, "chunk_size": None, "collate": None, "progress": False,
             "packing": "none"}


def cached_reference_logps(
    model: nn.Module,
    examples: Sequence[Any],
    path: str | Path,
    *,
    pad_token_id: int,
    reference: Any = None,
    kl_pairs: bool = False,
    max_length: int | None = None,
    precision: str = "fp32",
    **kwargs: Any,
) -> ReferenceLogps:
    """:func:`compute_reference_logps`, through the cache file ``path``: loaded when its key
    matches this model, data, precision and pairs; otherwise computed and (re)written."""
    want = _key(model, examples, precision, kl_pairs, max_length)
    saved = _read(Path(path), want)
    if saved is not None:
        return saved
    ref = _compute(model, examples, want, pad_token_id=pad_token_id, reference=reference,
                   kl_pairs=kl_pairs, max_length=max_length, precision=precision,
                   **{**_DEFAULTS, **kwargs})
    _write(Path(path), ref)
    return ref


def sharded_reference_logps(
    prepared: PreparedModel,
    examples: Sequence[Any],
    path: str | Path,
    *,
    procs: Processes,
    whole: nn.Module | None,
    device: torch.device,
    pad_token_id: int,
    reference: Any = None,
    kl_pairs: bool = False,
    max_length: int | None = None,
    precision: str = "fp32",
    **kwargs: Any,
) -> ReferenceLogps:
    """:func:`cached_reference_logps` of a model sharded over the processes (FSDP2,
    :func:`prefkit.processes.prepare_model`): every process calls it at once.

    The main process keys the cache by ``whole``, its whole copy of the same model (on the
    host; None on the other processes), so the key is the one a single process computes for
    that model and a cache file written by either run serves the other. It reads the file;
    otherwise every process scores every ``world``-th batch through ``prepared`` (the
    sharded root gathers the weights layer by layer; ``reference`` as in
    :func:`compute_reference_logps`, e.g. ``prepared.model.disable_adapter``), the shares
    are gathered onto every process and the main process writes the file. The other
    processes never read it: the key and the log-probs read come from the main process."""
    if (whole is not None) != procs.main:
        raise ValueError("sharded_reference_logps takes the whole model on the main process "
                         "only")
    want = saved = None
    if whole is not None:
        want = _key(whole, examples, precision, kl_pairs, max_length)
        saved = _read(Path(path), want)
    want, saved = procs.gather((want, saved))[0]
    if saved is not None:
        return saved
    ref = _compute(prepared.model, examples, want, pad_token_id=pad_token_id,
                   reference=reference, kl_pairs=kl_pairs, max_length=max_length,
                   precision=precision, call=prepared, procs=procs, device=device,
                   **{**_DEFAULTS, **kwargs})
    if procs.main:
        _write(Path(path), ref)
    return ref


def _read(path: Path, key: dict[str, Any]) -> ReferenceLogps | None:
    """The cache file's log-probs when its key is ``key`` (None: absent, unreadable or
    another key)."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 -- an unreadable cache is recomputed
        return None
    if saved.get("key") != key:
        return None
    return ReferenceLogps(saved["logps"], saved["kl"], saved["key"], loaded=True)


def _write(path: Path, ref: ReferenceLogps) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    torch.save({"key": ref.key, "logps": ref.logps, "kl": ref.kl}, tmp)
    os.replace(tmp, path)
