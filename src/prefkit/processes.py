"""Several processes for prefkit's training loops (``accelerate launch`` / ``torchrun``).

    procs, device = join_processes()          # one process: Processes(0, 1), no process group
    acc = training_accelerator(procs)         # None for one process; refuses FSDP/DeepSpeed
    prepared = prepare_model(model, acc)      # accelerate's DDP wrapper on several processes
    with prepared.no_sync():                  # a micro-batch whose gradients stay local
        loss = loss_of(prepared(lambda m: response_logps(m, batch)))
        loss.backward()

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
with accelerate's ``--mixed_precision`` is refused with the fix. FSDP and DeepSpeed
(accelerate's config) are refused as well: their sharded weights and optimizer state need
gathering into :mod:`prefkit.runs`' one-file checkpoint, which is not written yet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

__all__ = ["ModelCall", "PreparedModel", "Processes", "join_processes", "prepare_model",
           "training_accelerator"]

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

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn: Callable[[nn.Module], T]) -> T:
        return fn(self.model)


@dataclass(eq=False)
class PreparedModel:
    """``model`` ready for training on the run's processes: ``prepared(fn)`` is ``fn(model)``
    -- through accelerate's DDP wrapper on several processes (gradients averaged over them in
    the backward of every call outside :meth:`no_sync`), directly in one process."""

    model: nn.Module
    wrapped: nn.Module | None = None  # accelerate's prepared ModelCall(model); None: one process
    accelerator: Any = None

    def __call__(self, fn: Callable[[nn.Module], T]) -> T:
        """``fn(model)``; through the wrapper only when it builds a graph (a pass without
        gradients has nothing to synchronise, and processes may make different numbers)."""
        if self.wrapped is None or not torch.is_grad_enabled():
            return fn(self.model)
        return self.wrapped(fn)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Calls whose gradients stay local (accumulated) until a call outside this."""
        if self.wrapped is None:
            yield
            return
        with self.accelerator.no_sync(self.wrapped):
            yield

    @property
    def averaged(self) -> bool:
        """Whether the backward averages gradients over processes (so a loop that wants
        their sum multiplies its loss by the number of processes)."""
        return self.wrapped is not None


def training_accelerator(procs: Processes) -> Any:
    """accelerate's ``Accelerator`` for training on these processes, checked for what
    prefkit's loops support (DDP, ``broadcast_buffers=False``); None for one process (no
    ``Accelerator``, no distributed call). Call it before loading anything, so a launch it
    refuses fails at once: FSDP / DeepSpeed configs, and accelerate's ``mixed_precision``."""
    if procs.world == 1:
        return None
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import DistributedType

    acc = Accelerator(device_placement=False, kwargs_handlers=[
        DistributedDataParallelKwargs(broadcast_buffers=False)])
    if acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise ValueError(
            f"accelerate is configured for {acc.distributed_type.value}, which prefkit's "
            "training loops do not run yet (sharded weights and optimizer state are not "
            "gathered into prefkit's checkpoint): launch with DDP (accelerate launch "
            "--multi_gpu, or torchrun), or train a LoRA adapter (lora_r > 0) to fit the model")
    if acc.mixed_precision != "no":
        raise ValueError(
            f"accelerate is configured with mixed_precision={acc.mixed_precision!r}; prefkit "
            "sets precision itself: launch with --mixed_precision no and give the run's "
            "precision (AlignConfig.precision='bf16', --precision bf16)")
    return acc


def prepare_model(model: nn.Module, accelerator: Any) -> PreparedModel:
    """``model`` as ``accelerator`` (:func:`training_accelerator`) prepares it: DDP around
    :class:`ModelCall` ``(model)``; with no accelerator (one process) or nothing to train,
    the model itself. The model must already sit on its device."""
    if accelerator is None or not any(p.requires_grad for p in model.parameters()):
        return PreparedModel(model)
    wrapped = accelerator.prepare_model(ModelCall(model), device_placement=False)
    return PreparedModel(model, wrapped, accelerator)
