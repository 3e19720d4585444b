"""Several processes for prefkit's training loops (``accelerate launch`` / ``torchrun``).

    procs, device = join_processes()          # one process: Processes(0, 1), no process group
    acc = training_accelerator(procs)         # None for one process; DDP, FSDP2 or ZeRO-3
    prepared = prepare_model(model, acc)      # accelerate's DDP wrapper, or FSDP2 shards
    prepared.attach(opt, grad_clip=1.0)       # ZeRO-3: DeepSpeed's engine (else nothing)
    with prepared.no_sync():                  # a micro-batch whose gradients stay local
        loss = loss_of(prepared(lambda m: response_logps(m, batch)))
        prepared.backward(loss)               # loss.backward(), or the engine's
    grad_norm = prepared.step(opt, params, 1.0)  # clip + AdamW, or the engine's step

:func:`join_processes` joins the process group the launcher describes (accelerate's
``PartialState``: NCCL on GPUs, gloo on CPUs) and says which process this is
(:class:`Processes`: ``rank`` of ``world``, the few collective calls the loops make). One
process makes no distributed call: every method answers locally when ``world == 1``.
Launchers: ``accelerate launch --multi_gpu --num_processes N`` or ``torchrun
--nproc_per_node N`` on GPUs; on CPUs ``torchrun`` (accelerate launches several CPU
processes only through ``mpirun``).

:func:`prepare_model` hands the model to ``Accelerator.prepare_model``: several
processes get ``DistributedDataParallel``, which all-reduces (averages) the gradients,
bucketed and overlapped with the backward pass, in the backward of every call made outside
:meth:`PreparedModel.no_sync` -- so gradient accumulation reduces once per optimizer step,
in the last micro-batch. prefkit's log-prob engine calls the model's backbone and output
embedding itself, never the model's ``forward``, so the wrapper runs a *call*:
``prepared(fn)`` is ``fn(model)`` made as the wrapper's forward (:class:`ModelCall`), and
DDP's hooks see every parameter that call uses. ``broadcast_buffers`` is off: processes may
make different numbers of forward passes in a step (uneven shares), and a causal LM's
buffers (rotary frequencies) never change. Precision is the loop's own (autocast); a launch
with accelerate's ``--mixed_precision`` is refused with the fix.

FSDP2 (weights, gradients and optimizer state sharded over the processes) is chosen as
accelerate chooses it: ``accelerate launch --use_fsdp --fsdp_version 2`` (or an accelerate
config file saying so), i.e. the environment ``ACCELERATE_USE_FSDP=true FSDP_VERSION=2``,
which a ``torchrun`` launch sets by hand (the only way on CPUs: accelerate turns FSDP on
for GPUs only). accelerate's plugin reads the rest (``FSDP_RESHARD_AFTER_FORWARD``,
``FSDP_OFFLOAD_PARAMS``, ``FSDP_AUTO_WRAP_POLICY``, ``FSDP_TRANSFORMER_CLS_TO_WRAP``); prefkit
then applies torch's ``fully_shard`` itself -- each transformer layer (the model's
``_no_split_modules`` unless the config names the classes; ``NO_WRAP``: none), then the
:class:`ModelCall` as the root, which holds the embeddings, final norm and LM head -- because
accelerate's own FSDP2 preparation hooks ``model.forward`` and the embedding / head modules'
forwards, which the log-prob engine does not call. Every call then goes through the root
(also without gradients: the root gathers its weights in its forward), processes make the
same number of calls (the loops pad with passes of weight 0), and gradients are
reduce-scattered (averaged) in every micro-batch's backward, so no unsharded gradient is
kept between micro-batches. Loading without N whole copies, and none on an accelerator
(what accelerate's ``cpu_ram_efficient_loading`` and torch recommend): every process builds
the model on the meta device and :func:`prepare_model` shards it;
:meth:`PreparedModel.load_full` then allocates the shards and fills them from the main
process's whole copy, which sits on the host (CPU memory): one tensor at a time is moved to
the process group's device (NCCL: the GPU; gloo: the CPU), broadcast, and each process
keeps its shard -- so the main process's device holds its shards and one full tensor at
most, never the whole model -- with the non-persistent buffers (rotary frequencies) and
tied embeddings. What needs the whole model afterwards runs through the root like training
(prefkit.align scores its reference cache that way, every process a share).
:meth:`PreparedModel.full_state` gathers the full weights and the optimizer state (in
``torch.optim``'s own index-keyed layout) onto the main process's CPU for
:mod:`prefkit.runs`' one-file checkpoint and the saved model folder;
:meth:`PreparedModel.loaders` broadcasts them back into the shards when resuming (only the
main process reads the checkpoint). FSDP1 is refused with the fix.

DeepSpeed ZeRO-3 (weights, gradients and AdamW state partitioned over the processes) is
chosen as accelerate chooses it: ``accelerate launch --use_deepspeed --zero_stage 3`` (or
its config file), i.e. ``ACCELERATE_USE_DEEPSPEED=true ACCELERATE_DEEPSPEED_ZERO_STAGE=3``
(a DeepSpeed JSON in ``ACCELERATE_DEEPSPEED_CONFIG_FILE`` gives the rest of
``zero_optimization``), which a ``torchrun`` launch sets by hand (``accelerate launch
--use_deepspeed --zero_stage 3 --num_processes 2`` also starts CPU processes). DeepSpeed is
not installed with prefkit (``pip install deepspeed``). accelerate's own DeepSpeed preparation runs on GPUs
only (its state turns DeepSpeed on only when not on the CPU) and would take accelerate's
loss scaling and accumulation, so prefkit reads accelerate's plugin and calls
``deepspeed.initialize`` itself (:mod:`prefkit._zero3`), on the :class:`ModelCall` root and
the loop's AdamW, once the optimizer exists (:meth:`PreparedModel.attach`). ZeRO-3 gathers
a module's weights in that module's own forward; the log-prob engine uses the LM head's
weight outside it (the chunked log-softmax), so that weight is registered on the root
(``deepspeed.zero.register_external_parameter``: gathered for every call) and gathered for
the backward (``GatheredParameters`` around the engine's backward: DeepSpeed's backward
hooks cannot see into the root's output). The loop's backward and step go through
:meth:`PreparedModel.backward` / :meth:`PreparedModel.step` (the engine's: gradients
reduce-scattered into the partitions in every backward, averaged; :meth:`~PreparedModel.no_sync`
tells it the micro-batch is not the step's last; it clips and steps AdamW on the
partitions), and prefkit's LR schedule keeps stepping the AdamW it built. As with FSDP2
every call is collective (processes make the same number of passes), the reference cache
and the log-prob engine's once-per-model checks are made on the whole model before it is
partitioned, and :meth:`PreparedModel.full_state` gathers the full weights and AdamW state
for the one-file checkpoint and the model folder; resuming, only the main process reads
the checkpoint and :meth:`PreparedModel.loaders` broadcasts it into the partitions, so a
resumed run continues exactly (bit for bit on CPUs). Refused with the fix: ZeRO stages
1-2, offload (CPU / NVMe), DeepSpeed's or accelerate's fp16/bf16 (prefkit's ``precision``
instead), batch sizes, accumulation, clipping, optimizer or scheduler set in DeepSpeed's
config (prefkit's own), and ``torch_compile`` (prefkit.align).
Every process loads the model whole before ``deepspeed.initialize`` partitions it (no
``zero.Init`` / meta-device loading as with FSDP2), and a live reference stays whole on each.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

__all__ = ["FSDP2", "ModelCall", "PreparedModel", "Processes", "ZeRO3", "join_processes",
           "prepare_model", "training_accelerator"]

T = TypeVar("T")


@dataclass(frozen=True)
class Processes:
    """This process's place in the run: ``rank`` of ``world`` (1: no distributed call)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def all_reduce_(self, t: Tensor) -> Tensor:
        """Sum ``t`` over processes, in place (returned)."""
        if self.world > 1:
            torch.distributed.all_reduce(t)
        return t

    def min_int(self, x: int) -> int:
        """The smallest ``x`` over processes."""
        if self.world == 1:
            return x
        t = torch.tensor([x], dtype=torch.int64)
        if torch.distributed.get_backend() == "nccl":
            t = t.cuda()
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        return int(t.item())

    def sum_ints(self, xs: Sequence[int]) -> list[int]:
        """``xs`` summed element-wise over processes."""
        if self.world == 1:
            return list(xs)
        return [sum(v) for v in zip(*self.gather(list(xs)), strict=True)]

    def local(self, t: Tensor) -> Tensor:
        """This process's equal share (rank order) of a gathered ``t`` (first dim)."""
        return t if self.world == 1 else t.view(self.world, -1, *t.shape[1:])[self.rank]

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (one process: ``[obj]``)."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def gather_cat(self, t: Tensor) -> Tensor:
        """The processes' equal-length 1-D ``t`` concatenated in rank order."""
        if self.world == 1:
            return t
        parts = [torch.empty_like(t) for _ in range(self.world)]
        torch.distributed.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    def sum_grads(self, params: Sequence[nn.Parameter], scale: float = 1.0) -> None:
        """Every gradient summed over processes (missing ones as zeros), times ``scale``;
        one flat all-reduce. (For loops that do not train through :func:`prepare_model`.)"""
        if self.world == 1:
            if scale != 1.0:
                for p in params:
                    if p.grad is not None:
                        p.grad.mul_(scale)
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        torch.distributed.all_reduce(flat)
        if scale != 1.0:
            flat.mul_(scale)
        pos = 0
        for p in params:
            n = p.grad.numel()
            p.grad.copy_(flat[pos:pos + n].view_as(p.grad))
            pos += n


def join_processes() -> tuple[Processes, torch.device]:
    """Join the process group when launched by ``accelerate launch`` / ``torchrun``
    (accelerate's ``PartialState``: NCCL on GPUs, gloo on CPUs); the process's place and
    its device (one process: the GPU if there is one, else the CPU; no process group).
    Without a GPU the state is accelerate's CPU one (``cpu=True``, as ``accelerate launch
    --cpu``), so its ``Accelerator`` prepares DDP there too."""
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    dist = torch.distributed
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    return Processes(dist.get_rank() if world > 1 else 0, world), state.device


class ModelCall(nn.Module):
    """``ModelCall(model)(fn)`` is ``fn(model)``, made as this module's forward, so a
    wrapper around it (DDP) sees a call that never goes through ``model.forward``."""

    def __init__(self, model: nn.Module, reference: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        if reference is not None:  # FSDP2: a live reference, sharded in the same root
            self.reference = reference

    def forward(self, fn: Callable[[nn.Module], T]) -> T:
        return fn(self.model)


@dataclass(frozen=True)
class FSDP2:
    """Sharding asked for by accelerate's config (:func:`training_accelerator`): torch's
    ``fully_shard`` on every module whose class is named in ``layers`` (None: the model's
    ``_no_split_modules``; ``()``: none, the root holds everything), then on the root."""

    reshard_after_forward: bool = True
    cpu_offload: bool = False
    layers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ZeRO3:
    """DeepSpeed ZeRO-3 asked for by accelerate's config (:func:`training_accelerator`):
    ``config`` is the DeepSpeed config prefkit hands to ``deepspeed.initialize`` (its
    ``zero_optimization`` section as accelerate's plugin reads it; :meth:`PreparedModel.attach`
    adds clipping and the batch counts)."""

    config: Mapping[str, Any]


@dataclass(eq=False)
class PreparedModel:
    """``model`` ready for training on the run's processes: ``prepared(fn)`` is ``fn(model)``
    -- through accelerate's DDP wrapper on several processes (gradients averaged over them in
    the backward of every call outside :meth:`no_sync`), through the FSDP2 root when
    ``sharded`` (gradients averaged and sharded in every backward; ZeRO-3: through DeepSpeed's
    ``engine``, once :meth:`attach` made it), directly in one process. The loop's backward
    and optimizer step go through :meth:`backward` and :meth:`step`."""

    model: nn.Module
    wrapped: nn.Module | None = None  # DDP / FSDP2 / ZeRO-3's engine around ModelCall(model)
    accelerator: Any = None
    sharded: bool = False  # FSDP2: DTensor shards; ZeRO-3: DeepSpeed's partitions
    cpu_offload: bool = False  # FSDP2: the shards live on the CPU
    reference: nn.Module | None = None  # FSDP2: a frozen model sharded with it (in the root)
    zero3: ZeRO3 | None = None  # DeepSpeed ZeRO-3: the engine comes with the optimizer
    engine: Any = None  # ZeRO-3: DeepSpeed's engine around ModelCall(model) (:meth:`attach`)
    outside: list[nn.Parameter] = field(default_factory=list)  # ZeRO-3: used outside forwards
    order: list[list[nn.Parameter]] = field(default_factory=list)  # ZeRO-3: optimizer groups

    def __call__(self, fn: Callable[[nn.Module], T]) -> T:
        """``fn(model)``; through DDP only when it builds a graph (a pass without gradients
        has nothing to synchronise, and processes may make different numbers); through the
        FSDP2 root or ZeRO-3's engine always (its forward gathers the sharded weights)."""
        if self.wrapped is None or not (self.sharded or torch.is_grad_enabled()):
            return fn(self.model)
        return self.wrapped(fn)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Calls whose gradients stay local (accumulated) until a call outside this. FSDP2
        reduce-scatters in every backward all the same: keeping the micro-batches' gradients
        unsharded would cost a whole model's worth of memory per process. ZeRO-3 likewise
        (its partitions accumulate); the engine is told these are not the step's last
        micro-batches (its gradient-accumulation boundary)."""
        if self.engine is not None:
            self.engine.set_gradient_accumulation_boundary(False)
            try:
                yield
            finally:
                self.engine.set_gradient_accumulation_boundary(True)
            return
        if self.wrapped is None or self.sharded:
            yield
            return
        with self.accelerator.no_sync(self.wrapped):
            yield

    def attach(self, optimizer: torch.optim.Optimizer, *, grad_clip: float | None) -> None:
        """ZeRO-3 (else nothing): hand the model and ``optimizer`` (built on the whole
        model's parameters) to ``deepspeed.initialize``, which partitions the weights,
        gradients and ``optimizer``'s state over the processes; ``optimizer`` itself then
        steps the partitions (an LR schedule built on it keeps working). The LM head's
        weight, which the log-prob engine uses outside the head's forward, is registered as
        the root's (gathered for every call). Clipping at ``grad_clip`` (None: none) is the
        engine's, in :meth:`step`."""
        if self.zero3 is None:
            return
        from prefkit._zero3 import initialize

        self.engine = self.wrapped = initialize(self, optimizer, grad_clip=grad_clip)

    def backward(self, loss: Tensor) -> None:
        """``loss.backward()``; ZeRO-3: through the engine (gradients reduce-scattered into
        the partitions as the backward goes; ``loss`` already carries the loop's scaling),
        with the weights used outside their modules' forwards (the LM head's) gathered for
        the whole backward, as DeepSpeed gathers a module's own in the module's backward."""
        if self.engine is None:
            loss.backward()
            return
        import deepspeed

        with deepspeed.zero.GatheredParameters(self.outside):
            self.engine.backward(loss, scale_wrt_gas=False)

    def step(self, optimizer: torch.optim.Optimizer, params: Sequence[nn.Parameter],
             grad_clip: float | None) -> Tensor:
        """The gradients clipped to norm ``grad_clip`` (None: not clipped) and ``optimizer``
        stepped; returns the gradient norm before clipping. ZeRO-3: the engine's step (it
        clips, steps ``optimizer`` on the partitions and clears the gradients; a step whose
        gradients are not finite it skips, where one process would apply them)."""
        if self.engine is not None:
            self.engine.step()
            norm = self.engine.get_global_grad_norm()  # None: no step made yet
            return torch.tensor(math.nan if norm is None else float(norm))
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip or math.inf)
        if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor (replicated)
            norm = norm.full_tensor()
        optimizer.step()
        return norm

    @property
    def averaged(self) -> bool:
        """Whether the backward averages gradients over processes (so a loop that wants
        their sum multiplies its loss by the number of processes)."""
        return self.wrapped is not None

    def full_state(self, optimizer: torch.optim.Optimizer, *, trainable_only: bool = True
                   ) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The model's full weights (the trainable ones, or all; names as
        ``model.named_parameters()``) and ``optimizer``'s full state (``torch.optim``'s
        index-keyed ``state_dict`` layout, as one process writes it), on the CPU of the main
        process -- gathered from the shards, so every process must call it (the others get
        empty dicts). Only for a ``sharded`` model."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        if self.engine is not None:
            from prefkit._zero3 import full_state

            return full_state(self, trainable_only=trainable_only)
        assert self.sharded and self.wrapped is not None
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        # the model's own (a sharded reference beside it is not gathered); the frozen
        # weights only when asked
        weights = get_model_state_dict(self.model, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True, ignore_frozen_params=trainable_only))
        optim = get_optimizer_state_dict(self.wrapped, optimizer, options=opts)
        keep = {n for n, p in self.model.named_parameters() if p.requires_grad or
                not trainable_only}
        weights = {k: v for k, v in weights.items() if k in keep}
        if not optim:  # not the main process
            return weights, {}
        index: dict[str, int] = {}  # FQN -> torch.optim's number: groups' order, then params'
        for group in optim["param_groups"]:
            for fqn in group["params"]:
                index[fqn] = len(index)
        return weights, {"state": {index[k]: v for k, v in optim["state"].items()},
                         "param_groups": [{**g, "params": [index[k] for k in g["params"]]}
                                          for g in optim["param_groups"]]}

    def load_full(self, full: nn.Module | None, device: torch.device,
                  reference: nn.Module | None = None) -> None:
        """Fill a ``sharded`` model that was built on the meta device (no memory) with the
        weights of ``full``, the same model loaded whole by the main process only (None on
        the others), on the host -- and its sharded reference (:func:`prepare_model`) with
        the main process's whole ``reference``: the shards are allocated on ``device`` (the
        CPU with CPU offload), the full state dict is broadcast from the main process one
        tensor at a time, each moved to the process group's device for the broadcast (NCCL
        needs device tensors) and dropped once each process has kept its shard
        (torch.distributed.checkpoint's ``set_model_state_dict``, ``broadcast_from_rank0``);
        the buffers a state dict leaves out (non-persistent: rotary ``inv_freq``) are
        broadcast too, and tied embeddings tied again. So no other process ever holds a
        whole model, and no device does. Every process must call it, right after
        :func:`prepare_model`."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
        )

        assert self.sharded and self.wrapped is not None
        main = torch.distributed.get_rank() == 0
        parts = {"model": (self.model, full)}
        if self.reference is not None:
            parts["reference"] = (self.reference, reference)
        if any((whole is not None) != main for _, whole in parts.values()):
            raise ValueError("load_full takes the whole model (and reference) on the main "
                             "process only")
        self.wrapped.to_empty(device=torch.device("cpu") if self.cpu_offload else device)
        if self.cpu_offload:  # offloaded shards stay on the CPU, buffers go to the device
            for module in self.wrapped.modules():
                for key, buf in module._buffers.items():
                    if buf is not None:
                        module._buffers[key] = buf.to(device)
        state = {f"{prefix}.{k}": v for prefix, (_, whole) in parts.items() if whole is not None
                 for k, v in whole.state_dict().items()}
        set_model_state_dict(self.wrapped, state, options=StateDictOptions(
            full_state_dict=True, broadcast_from_rank0=True, strict=True))
        for built, whole in parts.values():
            for name, module in built.named_modules():  # buffers no state dict holds
                for key in sorted(module._non_persistent_buffers_set):
                    buf = module._buffers.get(key)
                    if buf is None:
                        continue
                    if whole is not None:
                        buf.copy_(whole.get_submodule(name).get_buffer(key))
                    torch.distributed.broadcast(buf, src=0)
            _tie(built)
        left = [n for n, t in (*self.wrapped.named_parameters(),
                               *self.wrapped.named_buffers()) if t.is_meta]
        if left:
            raise RuntimeError(f"FSDP: after loading, {left[:3]} are still on the meta device")

    def reshard(self) -> None:
        """FSDP2: the root's weights back to their shards. The root keeps them gathered
        from its forward to the backward, so a pass without gradients leaves them gathered
        (and ``model.parameters()`` would give the gathered tensors, not the shards an
        optimizer must hold)."""
        if self.sharded and self.wrapped is not None and self.engine is None:
            self.wrapped.reshard()  # type: ignore[operator]

    def loaders(self, optimizer: torch.optim.Optimizer) -> tuple[Any, Any]:
        """What :meth:`prefkit.runs.RunFolder.restore` loads a checkpoint into: the model and
        ``optimizer`` themselves, or for a ``sharded`` model two objects whose
        ``load_state_dict`` broadcasts the main process's full weights / :meth:`full_state`'s
        optimizer layout into the shards, one tensor at a time: only the main process reads
        the checkpoint's weights and optimizer state, the others pass empty dicts."""
        if not self.sharded:
            return self.model, optimizer
        if self.engine is not None:
            from prefkit._zero3 import ModelLoader, OptimizerLoader

            return ModelLoader(self), OptimizerLoader(self)
        return _ShardedModelLoader(self), _ShardedOptimizerLoader(self, optimizer)


def _tie(model: nn.Module) -> None:
    """Tied input and output embeddings (``tie_word_embeddings``) one parameter again after
    loading (transformers' ``tie_weights``)."""
    lm = model
    while callable(getattr(lm, "get_base_model", None)):  # peft
        lm = lm.get_base_model()
    cfg = getattr(lm, "config", None)
    tied = getattr(cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg,
                   "tie_word_embeddings", False)
    if not tied or not callable(getattr(lm, "get_output_embeddings", None)):
        return
    inp, out = lm.get_input_embeddings(), lm.get_output_embeddings()
    if out is not None and out.weight is not inp.weight:
        lm.tie_weights()


@dataclass(eq=False)
class _ShardedModelLoader:
    prepared: PreparedModel

    def load_state_dict(self, state: Mapping[str, Tensor], strict: bool = True) -> None:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
        )

        if torch.distributed.get_rank() != 0:
            state = {}  # received from the main process
        set_model_state_dict(self.prepared.wrapped, {f"model.{k}": v for k, v in state.items()},
                             options=StateDictOptions(full_state_dict=True, strict=strict,
                                                      broadcast_from_rank0=True))


@dataclass(eq=False)
class _ShardedOptimizerLoader:
    prepared: PreparedModel
    optimizer: torch.optim.Optimizer

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        wrapped = self.prepared.wrapped
        assert wrapped is not None
        full: dict[str, Any] = {}  # the other processes receive it from the main one
        if torch.distributed.get_rank() == 0:
            fqn = {id(p): n for n, p in wrapped.named_parameters()}
            order = [fqn[id(p)] for g in self.optimizer.param_groups for p in g["params"]]
            full = {"state": {order[i]: v for i, v in state["state"].items()},
                    "param_groups": [{**g, "params": [order[i] for i in g["params"]]}
                                     for g in state["param_groups"]]}
        set_optimizer_state_dict(wrapped, self.optimizer, full, options=StateDictOptions(
            full_state_dict=True, broadcast_from_rank0=True))


def training_accelerator(procs: Processes) -> Any:
    """accelerate's ``Accelerator`` for training on these processes (DDP,
    ``broadcast_buffers=False``), or :class:`FSDP2` when accelerate's config asks for FSDP
    version 2, or :class:`ZeRO3` when it asks for DeepSpeed; None for one process (no
    ``Accelerator``, no distributed call). Call it before loading anything, so a launch it
    refuses fails at once: FSDP version 1, DeepSpeed other than ZeRO-3 (or not installed),
    FSDP / DeepSpeed settings prefkit does not run, and accelerate's ``mixed_precision``."""
    if procs.world == 1:
        return None
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import DistributedType

    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        from prefkit._zero3 import zero3_settings

        return zero3_settings()
    acc = Accelerator(device_placement=False, kwargs_handlers=[
        DistributedDataParallelKwargs(broadcast_buffers=False)])
    if acc.distributed_type == DistributedType.DEEPSPEED:
        raise ValueError(_REFUSED.format("DeepSpeed"))
    if acc.mixed_precision != "no":
        raise ValueError(
            f"accelerate is configured with mixed_precision={acc.mixed_precision!r}; prefkit "
            "sets precision itself: launch with --mixed_precision no and give the run's "
            "precision (AlignConfig.precision='bf16', --precision bf16)")
    if not (fsdp or acc.distributed_type == DistributedType.FSDP):
        return acc
    return _fsdp2_settings()


_REFUSED = ("accelerate is configured for {}, which prefkit's training loops do not run: "
            "launch with FSDP2 (accelerate launch --use_fsdp --fsdp_version 2; with torchrun, "
            "ACCELERATE_USE_FSDP=true FSDP_VERSION=2), DeepSpeed ZeRO-3 (accelerate launch "
            "--use_deepspeed --zero_stage 3, with DeepSpeed installed) or DDP (accelerate "
            "launch --multi_gpu, or torchrun), or train a LoRA adapter (lora_r > 0) to fit "
            "the model")
def _fsdp2_settings() -> FSDP2:
    """accelerate's FSDP plugin as its environment gives it, checked for what prefkit runs."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin()  # reads FSDP_VERSION, FSDP_* from the environment
    if plugin.fsdp_version != 2:
        raise ValueError(_REFUSED.format(f"FSDP version {plugin.fsdp_version}"))
    if plugin.activation_checkpointing:  # (cpu_ram_efficient_loading: prefkit's way, always)
        raise ValueError("accelerate's FSDP config sets activation_checkpointing, which "
                         "prefkit does not apply: AlignConfig.gradient_checkpointing=True")
    policy = os.environ.get("FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP").upper()
    if policy not in ("TRANSFORMER_BASED_WRAP", "NO_WRAP"):
        raise ValueError(f"FSDP_AUTO_WRAP_POLICY={policy}: prefkit shards by transformer layer "
                         "(TRANSFORMER_BASED_WRAP, the default) or not at all (NO_WRAP)")
    names = plugin.transformer_cls_names_to_wrap
    layers = () if policy == "NO_WRAP" else (
        None if not names else tuple([names] if isinstance(names, str) else names))
    from torch.distributed.fsdp import CPUOffloadPolicy

    return FSDP2(reshard_after_forward=bool(plugin.reshard_after_forward),
                 cpu_offload=isinstance(plugin.cpu_offload, CPUOffloadPolicy), layers=layers)


def prepare_model(model: nn.Module, accelerator: Any, *, reference: nn.Module | None = None
                  ) -> PreparedModel:
    """``model`` as ``accelerator`` (:func:`training_accelerator`) prepares it: DDP around
    :class:`ModelCall` ``(model)``, or with :class:`FSDP2` the model's layers and then the
    ``ModelCall`` sharded in place (build the optimizer afterwards, on the sharded
    parameters), or with :class:`ZeRO3` nothing yet (build the optimizer on the whole model,
    then :meth:`PreparedModel.attach` it: DeepSpeed's engine partitions both); with no
    accelerator (one process) or nothing to train, the model itself.
    The model must already sit on its device. ``reference`` (FSDP2 only): a frozen model
    that the calls run too (a live reference), sharded the same way in the same root, so
    that it is gathered layer by layer like the model (every call must go through
    :class:`PreparedModel`)."""
    if accelerator is None or not any(p.requires_grad for p in model.parameters()):
        return PreparedModel(model)
    if isinstance(accelerator, ZeRO3):  # DeepSpeed's engine comes with the optimizer (attach)
        return PreparedModel(model, sharded=True, zero3=accelerator)
    if isinstance(accelerator, FSDP2):
        return _shard(model, accelerator, reference)
    wrapped = accelerator.prepare_model(ModelCall(model), device_placement=False)
    return PreparedModel(model, wrapped, accelerator)


def _shard(model: nn.Module, how: FSDP2, reference: nn.Module | None = None) -> PreparedModel:
    """torch's ``fully_shard`` on each transformer layer (of the model and the reference),
    then on ``ModelCall(model, reference)``."""
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    offload = CPUOffloadPolicy() if how.cpu_offload else OffloadPolicy()
    names = how.layers if how.layers is not None else \
        tuple(getattr(model, "_no_split_modules", None) or ())
    layers = [m for lm in (model, reference) if lm is not None for m in lm.modules()
              if type(m).__name__ in names]
    if names and not layers:
        raise ValueError(f"FSDP: the model has no module of the classes {list(names)} to shard "
                         "by (FSDP_TRANSFORMER_CLS_TO_WRAP names them; NO_WRAP shards the "
                         "model as one unit)")
    for layer in layers:
        fully_shard(layer, reshard_after_forward=how.reshard_after_forward,
                    offload_policy=offload)
    call = ModelCall(model, reference)
    fully_shard(call, offload_policy=offload)  # the root keeps its weights until the backward
    return PreparedModel(model, call, None, sharded=True, cpu_offload=how.cpu_offload,
                         reference=reference)
