"""Set-up and bookkeeping for :func:`prefkit.align.trainer.align`, so the loop there reads top
to bottom: the data (read, tokenize, what was left out or cut), the reference (live, or its
cached log-probabilities), the optimizer and schedule, the checkpoint's weights, the metric
tally and the model folder. The run folder, the checkpoint format, AdamW, the LR
schedule and RNG states are :mod:`prefkit.runs`' (shared with the reward loops); loading the
model (seeded, LoRA, dropout) is :mod:`prefkit.align.model`'s (shared with prefkit.rl).

Private: nothing here is public API.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from prefkit.align.data import (
    AlignmentData,
    TokenizedAlignData,
    add_kl_completions,
    read_alignment_data,
    tokenize_alignment,
)
from prefkit.align.losses import AlignLoss
from prefkit.align.model import load_causal_lm, prepare_causal_lm
from prefkit.align.reference import (
    ReferenceLogps,
    cached_reference_logps,
    sharded_reference_logps,
)
from prefkit.align.types import LossOutput, SequenceLogps
from prefkit.losses import StepPass, preference_accuracy
from prefkit.processes import PreparedModel, Processes
from prefkit.runs import (
    RunFolder,
    adamw,
    json_num,
    linear_schedule,
    package_versions,
    write_json,
)

if TYPE_CHECKING:
    from prefkit.align.trainer import AlignConfig

__all__ = [
    "METRICS",
    "Tally",
    "cached_references",
    "check_checkpoint",
    "check_kind",
    "checked_step_pass",
    "compile_layers",
    "kl_only",
    "live_reference",
    "load_checkpoint",
    "make_optimizer",
    "meta_causal_lm",
    "model_checks",
    "sharded_references",
    "tokenized",
    "trainable",
    "versions",
    "write_model_folder",
]

METRICS = ("loss", "rewards/chosen", "rewards/rejected", "margins", "accuracy", "kl")
#: tokenizer notes that change what is trained on (warned about); "boundary_moved" only
#: moves a merged token from the prompt to the response, so it is counted, not warned about
_LOSSY = ("dropped", "prompt_cut", "response_cut", "unscored_first")
_ACTIONS = ("dropped", "prompt_cut", "response_cut", "boundary_moved", "unscored_first")
_SHOWN = 3  # notes quoted in a warning


# -- versions --------------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    return package_versions(("peft", "accelerate"))


# -- the model -------------------------------------------------------------------------------------
def meta_causal_lm(model: str | Path, tokenizer: Any, config: AlignConfig
                   ) -> tuple[nn.Module, str, Any, bool]:
    """The model :func:`~prefkit.align.model.prepare_causal_lm` makes of the folder / Hub id
    ``model`` (LoRA adapter, dropout, gradient checkpointing), built from its config on the
    meta device: no weight is read or allocated (FSDP2 fills the shards from the main
    process's copy, :meth:`prefkit.processes.PreparedModel.load_full`). Returns it, the
    source (an absolute path for a local folder, as the main process names it), the
    tokenizer (the folder's when none is given) and whether it is a peft model."""
    from transformers import AutoTokenizer

    local = Path(model).expanduser()
    name = os.path.abspath(local) if local.exists() else str(model)
    lm = _on_meta(name)
    if tokenizer is None:
        with contextlib.suppress(OSError, ValueError):
            tokenizer = AutoTokenizer.from_pretrained(name)
    lm, _, tokenizer, peft = prepare_causal_lm(
        lm, tokenizer, device="meta", seed=config.seed, lora_r=config.lora_r,
        lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        lora_target_modules=config.lora_target_modules, disable_dropout=config.disable_dropout,
        gradient_checkpointing=config.gradient_checkpointing)
    return lm, name, tokenizer, peft


def _on_meta(name: str) -> nn.Module:
    """The causal LM of folder / Hub id ``name`` built from its config on the meta device."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        lm_config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"cannot read a causal LM's config from {name!r}") from exc
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(lm_config, dtype=torch.float32)


@torch.no_grad()
def model_checks(model: nn.Module, data: TokenizedAlignData, config: AlignConfig,
                 device: torch.device) -> None:
    """The checks the log-prob engine (its split LM head) and packing make once per model,
    by forwards of their own, made now on the first example: several processes sharding
    the model (FSDP2) must all make them at the same moment."""
    from prefkit.align.data import collate
    from prefkit.align.logprobs import sequence_logps
    from prefkit.align.packing import resolve_packing

    resolve_packing(config.packing, model)
    one = collate(data.examples[:1], data.pad_token_id).to(device)
    sequence_logps(model, one.input_ids, one.attention_mask, one.loss_mask,
                   chunk_size=config.chunk_size)


def compile_layers(model: nn.Module) -> int:
    """Compile each transformer layer of ``model`` in place (``torch.compile``, dynamic shapes:
    packed rows change length every step without recompiling) and say how many. The layers
    are the modules of the classes the model names in ``_no_split_modules`` (what FSDP wraps;
    every transformers causal LM names its decoder layer), so the embeddings, the final norm
    and prefkit's chunked LM head stay eager. The numbers are the eager ones to float rounding
    (the compiled kernels add in another order)."""
    from prefkit.align.logprobs import _unwrap

    names = set(getattr(_unwrap(model), "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"compile: {type(_unwrap(model)).__name__} names no transformer layer "
                         "class (_no_split_modules) to compile; train without compile")
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


# -- the data --------------------------------------------------------------------------------------
def tokenized(data: Any, tokenizer: Any, config: AlignConfig, what: str,
              kl_batch_size: int | None = None
              ) -> tuple[TokenizedAlignData, dict[str, Any], list[str]]:
    """Tokenized examples from a file, records or already tokenized data; the counts of what
    reading and tokenizing left out, cut or moved (for ``prefkit_align.json``: rows per
    :class:`~prefkit.align.data.TokenNote` action, rows the reader skipped); and warnings
    for what was lost here (read or tokenized by this call), for the caller to give.

    ``kl_batch_size``: unpaired rows get their KTO KL partner (``kl_completion``) with that
    chunk size, unless every row of already tokenized data has one."""
    records: AlignmentData | None = None
    if isinstance(data, TokenizedAlignData):
        tokens = data
        if kl_batch_size and tokens.kind == "unpaired" and \
                any(e.kl_completion is None for e in tokens.examples):
            tokens = add_kl_completions(tokens, kl_batch_size)
    else:
        if isinstance(data, (str, Path)):
            data = read_alignment_data(data)
        if not isinstance(data, AlignmentData):
            raise TypeError(f"{what} must be a file, AlignmentData (read_alignment_data) or "
                            f"TokenizedAlignData (tokenize_alignment), got "
                            f"{type(data).__name__}")
        if tokenizer is None:
            raise ValueError(f"{what} is text: pass tokenizer= (or the model as a folder that "
                             "holds its tokenizer), or tokenize it first with "
                             "tokenize_alignment")
        records = data
        tokens = tokenize_alignment(
            records, tokenizer, max_length=config.max_length,
            max_prompt_length=config.max_prompt_length,
            truncation_mode=config.truncation_mode,  # type: ignore[arg-type]
            kl_batch_size=kl_batch_size if records.kind == "unpaired" else None)
    rows: dict[str, set[int]] = {a: set() for a in _ACTIONS}
    for note in tokens.report:
        rows[note.action].add(note.index)
    counts: dict[str, Any] = {
        "source": tokens.source, "examples": len(tokens), "tokenized_by_align": records is not None,
        "skipped_rows": None if records is None else records.n_skipped,
        "reader_warnings": None if records is None else len(records.warnings),
        **{a: len(r) for a, r in rows.items()}}
    messages: list[str] = []
    if records is not None and records.skipped:
        shown = "; ".join(str(p) for p in records.skipped[:_SHOWN])
        more = len(records.skipped) - _SHOWN
        messages.append(f"{what}: {records.summary()}: {shown}"
                        + (f"; ... and {more} more" if more > 0 else "")
                        + " (all in AlignmentData.skipped)")
    lossy = [n for n in tokens.report if n.action in _LOSSY]
    if records is not None and lossy:
        shown = "; ".join(str(n) for n in lossy[:_SHOWN])
        more = len(lossy) - _SHOWN
        messages.append(f"{what}: tokenization kept {tokens.summary()}: {shown}"
                        + (f"; ... and {more} more" if more > 0 else "")
                        + f" (max_length={config.max_length}, max_prompt_length="
                          f"{config.max_prompt_length}; tokenize_alignment(...).report lists "
                          "every row)")
    return tokens, counts, messages


def check_kind(loss: AlignLoss, data: TokenizedAlignData, what: str) -> None:
    if not len(data):
        raise ValueError(f"{what} holds no examples")
    want = loss.kind
    if data.kind != want:
        raise ValueError(
            f"the {loss.name!r} loss takes {want} data but {what} is {data.kind}; choose a "
            f"{data.kind} loss, or read the data as {want} "
            f"(read_alignment_data(..., kind={want!r}) converts pairs where that makes sense)")


def checked_step_pass(loss: AlignLoss, config: AlignConfig) -> StepPass | None:
    """The extra pass ``loss`` declares for every step (KTO: its reference point, the mean
    log-ratio of mismatched pairs), or None when it declares none or ``config.loss_kwargs``
    fixes its value; refused when the trainer cannot compute it or ``batch_size`` is too
    small to pair a prompt with another's completion (as TRL)."""
    step_pass = loss.step_pass if loss.step_pass and loss.step_pass.wanted(config.loss_kwargs) \
        else None
    if step_pass is None:
        return None
    if (step_pass.examples, step_pass.statistic) != ("mismatched", "mean_log_ratio"):
        raise ValueError(f"the {loss.name!r} loss needs the {step_pass.statistic!r} of "
                         f"{step_pass.examples!r} examples each step, which this trainer "
                         "does not compute")
    if config.batch_size < step_pass.min_batch_size:  # as TRL
        raise ValueError(f"the {loss.name!r} loss pairs each prompt with another completion of "
                         f"its chunk of batch_size rows for its {step_pass.hyper}: batch_size "
                         "1 would pair it with its own; use batch_size >= "
                         f"{step_pass.min_batch_size} (and grad_accum for memory), or fix the "
                         f"estimate with loss_kwargs={{{step_pass.hyper!r}: 0}}")
    return step_pass


# -- the reference ---------------------------------------------------------------------------------
def live_reference(loss: AlignLoss, config: AlignConfig, model: nn.Module,
                   reference_model: nn.Module | None, peft: bool, source: str | None,
                   device: torch.device, *, on_meta: bool = False, main: bool = True
                   ) -> tuple[Any, nn.Module | None]:
    """The reference run at every step (a frozen model, or peft's ``disable_adapter``
    context), or None when the loss reads cached reference log-probabilities (or none).
    ``on_meta`` (FSDP2, a model from a folder): a second copy from ``source`` is built on
    the meta device, to be sharded with the model, and the main process also loads it whole
    on the host (returned second, to fill the shards; else None)."""
    if not (loss.needs_reference and (loss.needs_token_kl or not config.precompute_reference)):
        return None, None
    live: Any
    whole = None
    if reference_model is not None:
        live = reference_model.to(device).eval()
    elif peft:
        live = model.disable_adapter
    elif source is not None and on_meta:
        live = _on_meta(source).eval()
        if main:
            whole = load_causal_lm(source, config.seed)[0].eval()  # on the CPU
    elif source is not None:
        live = load_causal_lm(source, config.seed)[0].to(device).eval()
    else:
        raise ValueError(
            f"the {loss.name!r} loss needs the reference model at every step "
            f"({'token-level KL' if loss.needs_token_kl else 'precompute_reference=False'}); "
            "pass reference_model=, train a LoRA adapter (lora_r > 0), give the model as "
            "a folder, or use precompute_reference=True")
    for p in (live.parameters() if isinstance(live, nn.Module) else ()):
        p.requires_grad_(False)
    return live, whole


def cached_references(model: nn.Module, reference_model: nn.Module | None, peft: bool,
                      train: TokenizedAlignData, val: TokenizedAlignData | None, out: Path, *,
                      config: AlignConfig, device: torch.device, kl_pairs: bool,
                      progress: bool, main: bool, barrier: Callable[[], None]
                      ) -> tuple[ReferenceLogps, ReferenceLogps | None]:
    """The reference's log-probabilities of ``train`` and ``val`` (and of KTO's mismatched
    pairs when ``kl_pairs``), read from the cache files in ``out`` or computed and written
    there, the main process first. The reference is ``reference_model``, else the model
    itself (with its adapter disabled under LoRA): call this before any checkpoint weights
    are loaded."""
    ref_model = reference_model.to(device) if reference_model is not None else model
    ctx = model.disable_adapter if peft and reference_model is None else None
    opts = _cache_options(train, config, ctx, kl_pairs, progress)

    def cached(data: TokenizedAlignData, name: str) -> ReferenceLogps:
        return cached_reference_logps(ref_model, data.examples, out / name,
                                      max_length=data.max_length, **opts)

    if not main:
        barrier()  # the main process computes and writes the cache first
    ref_train = cached(train, "reference_logps.pt")
    ref_val = None if val is None else cached(val, "reference_logps.validation.pt")
    if main:
        barrier()
    return ref_train, ref_val


def sharded_references(prepared: PreparedModel, whole: nn.Module | None, peft: bool,
                       train: TokenizedAlignData, val: TokenizedAlignData | None, out: Path, *,
                       config: AlignConfig, device: torch.device, kl_pairs: bool,
                       progress: bool, procs: Processes
                       ) -> tuple[ReferenceLogps, ReferenceLogps | None]:
    """:func:`cached_references` of the model itself when no process holds it whole (FSDP2,
    built on the meta device and filled by
    :meth:`~prefkit.processes.PreparedModel.load_full`): scored through the shards, every
    process a share at once (:func:`~prefkit.align.reference.sharded_reference_logps`), the
    cache keyed by the main process's whole copy on the host, ``whole`` (None on the
    others). Call it after ``load_full``, before any checkpoint weights are loaded."""
    ctx = prepared.model.disable_adapter if peft else None
    opts = _cache_options(train, config, ctx, kl_pairs, progress and procs.main)

    def cached(data: TokenizedAlignData, name: str) -> ReferenceLogps:
        return sharded_reference_logps(prepared, data.examples, out / name, procs=procs,
                                       whole=whole, device=device, max_length=data.max_length,
                                       **opts)

    return (cached(train, "reference_logps.pt"),
            None if val is None else cached(val, "reference_logps.validation.pt"))


def _cache_options(train: TokenizedAlignData, config: AlignConfig, reference: Any,
                   kl_pairs: bool, progress: bool) -> dict[str, Any]:
    return {"pad_token_id": train.pad_token_id, "reference": reference, "kl_pairs": kl_pairs,
            "precision": config.precision, "batch_size": config.eval_batch_size,
            "chunk_size": config.chunk_size, "progress": progress, "packing": config.packing}


def kl_only(ref: ReferenceLogps | None) -> ReferenceLogps | None:
    return ref if ref is not None and ref.kl is not None else None


# -- optimizer, RNG, checkpoints -------------------------------------------------------------------
def make_optimizer(model: nn.Module, config: AlignConfig, total: int) -> tuple[
        list[nn.Parameter], torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (fused; no weight decay on biases and norms), linear warmup and linear decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = adamw(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup_steps = round(config.warmup * total)
    return params, opt, torch.optim.lr_scheduler.LambdaLR(opt, linear_schedule(total,
                                                                                warmup_steps))


def trainable(model: nn.Module) -> dict[str, Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_checkpoint(run: RunFolder, config: AlignConfig, fingerprints: Mapping[str, Any],
                    model: nn.Module, procs: Processes, *, sharded: bool) -> dict[str, Any]:
    """The run's checkpoint, checked (:meth:`prefkit.runs.RunFolder.load_checkpoint`, then
    :func:`check_checkpoint`). ``sharded`` (FSDP2 on several processes): only the main
    process reads the file; the others get its counters, RNG states and scheduler, and empty
    ``model`` / ``optimizer`` entries (:meth:`prefkit.processes.PreparedModel.loaders`
    broadcasts the weights and optimizer state into their shards), or the error it raised."""
    if not sharded or procs.world == 1:
        ck = run.load_checkpoint(config, fingerprints, main=procs.main)
        check_checkpoint(ck, run.checkpoint_path, model)
        return ck
    ck, error = {}, None
    if procs.main:
        try:
            ck = run.load_checkpoint(config, fingerprints, main=True)
            check_checkpoint(ck, run.checkpoint_path, model)
        except Exception as exc:  # noqa: BLE001 -- every process raises it (else they wait)
            error = exc
    small = {k: v for k, v in ck.items() if k not in ("model", "optimizer")}
    small, error = procs.gather((small, error))[0]
    if error is not None:
        raise error
    return ck if procs.main else {**small, "model": {}, "optimizer": {}}


def check_checkpoint(ck: Mapping[str, Any], path: Path, model: nn.Module) -> None:
    """Refuse a checkpoint that lacks some trainable weights of the model (its config and
    data were checked by :meth:`prefkit.runs.RunFolder.load_checkpoint`)."""
    missing = {n for n, p in model.named_parameters() if p.requires_grad} - set(ck["model"])
    if missing:
        raise ValueError(f"{path} lacks trainable weights {sorted(missing)[:3]}...")


# -- metrics and the output folder -----------------------------------------------------------------
class Tally:
    """Sums and counts of the logged metrics, on the device (one sync when read)."""

    def __init__(self, device: torch.device) -> None:
        self.t = torch.zeros((2, len(METRICS)), dtype=torch.float64, device=device)

    def add(self, name: str, values: Tensor, mask: Tensor | None = None) -> None:
        i = METRICS.index(name)
        v = values.detach().double()
        m = torch.ones_like(v, dtype=torch.bool) if mask is None else mask.bool()
        self.t[0, i] += torch.where(m, v, torch.zeros_like(v)).sum()
        self.t[1, i] += m.sum()

    def add_output(self, out: LossOutput, losses: Tensor, logps: SequenceLogps) -> None:
        """Per-example loss, implicit rewards (best other valid response as "rejected";
        desirable/undesirable rows for unpaired data), accuracy (prefkit's rule,
        :func:`~prefkit.losses.preference_accuracy`: a tie counts 0.5) and KL."""
        self.add("loss", losses)
        r = out.rewards.float()  # (B, K)
        valid = logps.valid.bool() if logps.valid is not None else torch.ones_like(r).bool()
        if r.shape[1] >= 2:
            other = r[:, 1:].masked_fill(~valid[:, 1:], -math.inf).max(dim=1).values
            self.add("rewards/chosen", r[:, 0])
            self.add("rewards/rejected", other)
            margins = r[:, 0] - other
            self.add("margins", margins)
            self.add("accuracy", preference_accuracy(margins))  # a tie counts 0.5
        elif logps.label is not None:
            self.add("rewards/chosen", r[:, 0], logps.label.bool())
            self.add("rewards/rejected", r[:, 0], ~logps.label.bool())
        if logps.token_kl is not None:  # TDPO: the sequential KL itself
            self.add("kl", logps.token_kl, valid)
        elif logps.reference is not None:  # the mean log-ratio log pi_theta - log pi_ref
            self.add("kl", logps.policy - logps.reference, valid)

    def means(self, procs: Processes) -> dict[str, float | None]:
        """The means over every process's examples (their sums and counts all-reduced)."""
        s, c = procs.all_reduce_(self.t).tolist()
        out = {k: (s[i] / c[i] if c[i] else None) for i, k in enumerate(METRICS)}
        if out["margins"] is None and None not in (out["rewards/chosen"],
                                                    out["rewards/rejected"]):
            out["margins"] = out["rewards/chosen"] - out["rewards/rejected"]  # unpaired
        return {k: json_num(v) for k, v in out.items()}


def write_model_folder(out: Path, model: nn.Module, tokenizer: Any, *,
                       info: Mapping[str, Any], state_dict: Mapping[str, Tensor] | None = None
                       ) -> None:
    """The model as ``save_pretrained`` writes it (with LoRA: the adapter), the tokenizer,
    and ``prefkit_align.json`` (``info``); ``state_dict``: the full weights to write instead
    of the model's own (FSDP2's shards gathered)."""
    model.eval()
    if state_dict is None:
        model.save_pretrained(out)
    else:
        model.save_pretrained(out, state_dict=dict(state_dict))
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    write_json(out / "prefkit_align.json", dict(info))
