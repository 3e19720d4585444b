"""One trainer run of ``align_speed.py``, in a fresh process: prefkit's ``align`` or TRL's
``DPOTrainer`` (reference model live, or ``precompute_ref_log_probs=True``).

Nothing here is part of prefkit. The driver writes a spec (model folder, pairs file, steps,
batch size, ...), starts ``python benchmarks/_align_speed_worker.py TRAINER SPEC OUT`` and
reads ``OUT``: per-step losses and times, the timed window, end-to-end time and memory.

Memory (CPU): after the imports, the model load and the data read, the kernel's peak-RSS mark
is reset to the current RSS (``/proc/self/clear_refs`` <- 5); ``VmHWM`` at the end minus that
RSS is the peak increase of the whole trainer call (exact). A 5 ms sampling thread also
records the RSS, so the peak inside the training loop alone is known (sampled). CUDA:
``torch.cuda.max_memory_allocated`` minus the allocation after the model was moved there.

Layout (``layout`` in OUT): the attention implementation of the model (the spec's
``attention`` for the prefkit runs: ``flex`` loads it with ``attn_implementation=
"flex_attention"``; TRL's keep the default), prefkit's packing as
it resolved (``auto`` -> ``prefix`` where the model takes the 4D mask, else ``none``; TRL pads
its rows), and which SDPA kernel the calls got: every call of
``torch.nn.functional.scaled_dot_product_attention`` is counted by kind (dtype after
autocast, mask kind, causal, GQA, training or no grad), and the kind's first and largest
calls are asked ``torch._fused_sdp_choice`` after the run (flash, efficient, cudnn, math;
:class:`SdpaKernels`). On CUDA the run folder (weights, checkpoint) is removed when the run is
measured: a 1B model's checkpoint with AdamW state is 13 GB.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Self

for _k, _v in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
    os.environ.setdefault(_k, _v)

TRAINERS = ("prefkit", "trl", "trl_precompute", "prefkit_none", "prefkit_pack", "prefkit_prefix")


# -- memory --------------------------------------------------------------------------------
def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


class RssSampler(threading.Thread):
    """The process's RSS every ``period`` seconds, with wall-clock times (``time.time``)."""

    def __init__(self, period: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.period, self.samples, self._stop_evt = period, [], threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def run(self) -> None:
        while not self._stop_evt.is_set():
            self.samples.append((time.time(), self.rss()))
            time.sleep(self.period)

    def stop(self) -> None:
        self._stop_evt.set()
        self.join()

    def peak(self, start: float = 0.0, end: float = float("inf")) -> int:
        inside = [r for t, r in self.samples if start <= t <= end]
        return max(inside) if inside else 0


# -- which attention kernel ran ----------------------------------------------------------------
class SdpaKernels:
    """Which SDPA kernel the run's calls got. Inside the run each call's arguments are only
    noted (dtypes as autocast casts them, mask kind, flags, with or without gradients: ~5 us
    a call, no allocation, nothing in the measured memory) and counted by kind, keeping the
    first and the largest call of each kind; :meth:`resolve`, called after the memory figures
    are read, rebuilds empty tensors of those calls' layout and asks
    ``torch._fused_sdp_choice`` (flash, efficient, cudnn, math)."""

    def __init__(self) -> None:
        import torch.nn.functional as F

        self.F = F
        self.kinds: dict[tuple[Any, ...], list[Any]] = {}  # kind -> [calls, first, largest]
        self.orig = F.scaled_dot_product_attention

    def __enter__(self) -> Self:
        import torch

        orig = self.orig

        def spy(query: Any, key: Any, value: Any, attn_mask: Any = None, dropout_p: float = 0.0,
                is_causal: bool = False, **kw: Any) -> Any:
            dev = query.device.type
            cast = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None

            def meta(t: Any) -> Any:  # what the kernel receives after autocast's cast
                if t is None:
                    return None
                dt = cast if cast is not None and t.is_floating_point() else t.dtype
                return (tuple(t.shape), t.stride(), dt)

            grad = torch.is_grad_enabled() and any(
                t.requires_grad for t in (query, key, value))
            gqa = bool(kw.get("enable_gqa", False))
            sig = (meta(query), meta(key), meta(value), meta(attn_mask), dropout_p,
                   bool(is_causal), kw.get("scale"), gqa, grad, str(query.device))
            kind = (sig[0][2], None if attn_mask is None else attn_mask.dtype, bool(is_causal),
                    gqa, grad, query.shape[-1], sig[-1])
            got = self.kinds.get(kind)
            if got is None:
                self.kinds[kind] = [1, sig, sig]
            else:
                got[0] += 1
                if query.numel() > math.prod(got[2][0][0]):
                    got[2] = sig
            return orig(query, key, value, attn_mask, dropout_p, is_causal, **kw)

        self.F.scaled_dot_product_attention = spy
        return self

    def __exit__(self, *exc: object) -> None:
        self.F.scaled_dot_product_attention = self.orig

    def resolve(self) -> dict[str, int]:
        """``{"kernel, dtype, mask kind[, causal][, gqa], training|no grad": calls}``; the
        kernel of the kind's first and largest call ("a / b" where they differ)."""
        import torch
        from torch.nn.attention import SDPBackend

        def empty(t: Any, device: str, grad: bool = False) -> Any:
            return None if t is None else torch.empty_strided(
                t[0], t[1], dtype=t[2], device=device, requires_grad=grad)

        def choice(sig: tuple[Any, ...]) -> str:
            q, k, v, m, dropout_p, causal, scale, gqa, grad, dev = sig
            try:
                return SDPBackend(torch._fused_sdp_choice(
                    empty(q, dev, grad), empty(k, dev, grad), empty(v, dev, grad),
                    empty(m, dev), dropout_p, causal, scale=scale, enable_gqa=gqa)).name.lower()
            except Exception as e:  # noqa: BLE001 -- a record, never a failure
                return f"unknown ({e.__class__.__name__})"

        counts: dict[str, int] = {}
        for (dtype, mask, causal, gqa, grad, _, _), (n, first, largest) in self.kinds.items():
            names = dict.fromkeys([choice(first), choice(largest)])
            words = [" / ".join(names), str(dtype).replace("torch.", ""),
                     "no mask" if mask is None else "bool mask" if mask == torch.bool
                     else "additive mask"] + ["causal"] * causal + ["gqa"] * gqa
            counts[", ".join(words + ["training" if grad else "no grad"])] = n
        return counts


# -- the two trainers ----------------------------------------------------------------------
def run_prefkit(spec: dict[str, Any], model: Any, tok: Any, rows: list[dict[str, str]],
                run_dir: Path, packing: str) -> dict[str, Any]:
    from prefkit.align import trainer as tr
    from prefkit.align.data import read_alignment_data
    from prefkit.align.trainer import AlignConfig, align

    loop_cpu = [0.0]  # process CPU time inside the optimizer steps
    step = tr._train_step

    def timed_step(*a: Any, **kw: Any) -> Any:
        c0 = time.process_time()
        try:
            return step(*a, **kw)
        finally:
            loop_cpu[0] += time.process_time() - c0

    tr._train_step = timed_step

    records = read_alignment_data(spec["pairs"])
    assert len(records) == len(rows)
    cfg = AlignConfig(
        loss="dpo", loss_kwargs={"beta": spec["beta"]}, learning_rate=spec["lr"],
        batch_size=spec["batch_size"], grad_accum=spec["grad_accum"],
        max_steps=spec["steps"], warmup=0.0, weight_decay=0.0, grad_clip=1.0,
        max_length=spec["max_length"], precision=spec["precision"],
        gradient_checkpointing=spec["gradient_checkpointing"], shuffle=False,
        log_every=1, eval_every=0, checkpoint_every=0,
        eval_batch_size=spec["batch_size"],  # the reference pass batch: TRL's default
        **({"packing": packing} if packing != "auto" else {}))
    t_start = time.time()
    res = align(model, records, config=cfg, output_dir=run_dir, tokenizer=tok,
                overwrite=True, progress=False, device=spec["device"])
    t_end = time.time()
    from prefkit.align.packing import resolve_packing

    # the layout the run used (resolve_packing's check is cached per model: no new forward)
    layout = {"packing": resolve_packing(cfg.packing, model), "packing_asked": cfg.packing,
              "attn_implementation": getattr(model.config, "_attn_implementation", None)}
    train = [r for r in res.history if r.get("kind") == "train"]
    # the loop's own clock: elapsed_s from just before the first step; the last metrics
    # row is appended right after the last step, so the file's mtime dates the loop's end
    loop_end = os.path.getmtime(run_dir / "metrics.jsonl")
    return {"call_s": t_end - t_start, "t_start": t_start, "t_end": t_end,
            "loop_start": loop_end - train[-1]["elapsed_s"], "loop_end": loop_end,
            "step_end_s": [r["elapsed_s"] for r in train],
            "loss": [r["loss"] for r in train], "grad_norm": [r["grad_norm"] for r in train],
            "lr": [r["lr"] for r in train],
            "reward_margin": [r["margins"] for r in train], "loop_cpu_s": loop_cpu[0],
            "config": cfg.to_dict(), "layout": layout}


def run_trl(spec: dict[str, Any], model: Any, tok: Any, rows: list[dict[str, str]],
            run_dir: Path, precompute: bool) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    cuda = spec["device"].startswith("cuda")

    class Clock(TrainerCallback):
        """Wall-clock times of the training loop's start and of every step's end."""

        def __init__(self) -> None:
            self.begin, self.steps, self.cpu = 0.0, [], [0.0, 0.0]

        def on_train_begin(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
            self.begin = time.time()
            self.cpu[0] = time.process_time()

        def on_step_end(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
            if cuda:  # the step's kernels done (prefkit's loop syncs when it logs)
                import torch

                torch.cuda.synchronize()
            self.steps.append(time.time())
            self.cpu[1] = time.process_time()

    # TRL 1.16 DPOConfig defaults, except what must match prefkit's run (see the driver)
    changed = dict(
        output_dir=str(run_dir), per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=spec["grad_accum"], learning_rate=spec["lr"],
        max_steps=spec["steps"], max_length=spec["max_length"], beta=spec["beta"],
        bf16=spec["precision"] == "bf16", gradient_checkpointing=spec["gradient_checkpointing"],
        train_sampling_strategy="sequential", logging_steps=1, save_strategy="no",
        report_to="none", disable_tqdm=True, use_cpu=not cuda,
        precompute_ref_log_probs=precompute)
    args = DPOConfig(**changed)
    clock = Clock()
    ds = Dataset.from_list(rows)
    t_start = time.time()
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                         callbacks=[clock])
    t_init = time.time()
    trainer.train()
    t_train = time.time()
    trainer.save_model(str(run_dir))
    t_end = time.time()
    logs = [r for r in trainer.state.log_history if "loss" in r and "step" in r]
    same_ids = _same_token_ids(trainer.train_dataset, rows, tok, spec["max_length"])
    return {"call_s": t_end - t_start, "t_start": t_start, "t_end": t_end,
            "init_s": t_init - t_start, "train_s": t_train - t_init, "save_s": t_end - t_train,
            "loop_start": clock.begin, "loop_end": clock.steps[-1],
            "step_end_s": [t - clock.begin for t in clock.steps],
            "loss": [r["loss"] for r in logs], "grad_norm": [r.get("grad_norm") for r in logs],
            "lr": [r.get("learning_rate") for r in logs],
            "reward_margin": [r.get("rewards/margins") for r in logs],
            "token_ids_identical": same_ids, "loop_cpu_s": clock.cpu[1] - clock.cpu[0],
            "dpo_config_changed": {k: v for k, v in changed.items() if k != "output_dir"},
            "optim": str(args.optim), "lr_scheduler_type": str(args.lr_scheduler_type),
            "max_grad_norm": args.max_grad_norm, "weight_decay": args.weight_decay,
            "adam": [args.adam_beta1, args.adam_beta2, args.adam_epsilon],
            "loss_type": list(args.loss_type), "use_cuda_triton_compact": cuda,
            "layout": {"packing": "none" if not getattr(trainer, "padding_free", False) else "pack",
                       "packing_asked": f"padding_free={args.padding_free}",
                       "attn_implementation": getattr(trainer.model.config, "_attn_implementation",
                                                      None)}}


def _same_token_ids(prepared: Any, rows: list[dict[str, str]], tok: Any, max_length: int) -> bool:
    """Whether TRL's tokenized rows, truncated as its collator does, are prefkit's ids."""
    from prefkit.align.data import AlignmentData, tokenize_alignment

    records = AlignmentData(kind="pairwise", prompts=[r["prompt"] for r in rows],
                            responses=[[r["chosen"], r["rejected"]] for r in rows])
    ours = tokenize_alignment(records, tok, max_length=max_length)
    if len(ours) != len(prepared):
        return False
    for e, t in zip(ours.examples, prepared):
        p = list(t["prompt_ids"])
        if p != e.prompt_ids:
            return False
        for theirs, mine in ((t["chosen_ids"], e.responses[0]), (t["rejected_ids"], e.responses[1])):
            if (p + list(theirs))[:max_length] != e.prompt_ids + mine:
                return False
    return True


# -- one measured run ---------------------------------------------------------------------
def main(trainer: str, spec_path: str, out_path: str) -> int:
    if trainer not in TRAINERS:
        raise SystemExit(f"trainer must be one of {TRAINERS}, got {trainer!r}")
    spec = json.loads(Path(spec_path).read_text())
    t_process = time.time()
    import torch

    torch.set_num_threads(spec["threads"])
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import prefkit.align.trainer  # noqa: F401 -- imports done before the memory baseline
    try:  # a prefkit run goes on where TRL (or its `datasets`) does not import
        import trl
        from trl import DPOTrainer  # noqa: F401
        trl_version = trl.__version__
    except Exception as e:
        if not trainer.startswith("prefkit"):
            raise
        trl_version = f"not importable ({e.__class__.__name__}: {e})"

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    rows = [json.loads(line) for line in Path(spec["pairs"]).read_text().splitlines()]
    attention = spec.get("attention") if trainer.startswith("prefkit") else None
    from prefkit.align.model import ATTENTION

    model = AutoModelForCausalLM.from_pretrained(
        spec["model"], dtype=torch.float32,
        **({"attn_implementation": ATTENTION[attention]} if attention else {}))
    tok = AutoTokenizer.from_pretrained(spec["model"])
    cuda = spec["device"].startswith("cuda")
    if cuda:
        model.to(spec["device"])
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_base = torch.cuda.memory_allocated()
    run_dir = Path(spec["runs"]) / trainer
    shutil.rmtree(run_dir, ignore_errors=True)  # no reference cache left from an earlier run

    sampler = RssSampler()
    base_maxrss = _maxrss()
    exact = _reset_peak()
    base_rss = sampler.rss()
    sampler.start()
    load = os.getloadavg()
    with SdpaKernels() as kernels:
        if trainer.startswith("prefkit"):
            packing = trainer.split("_", 1)[1] if "_" in trainer else spec.get("packing", "auto")
            from prefkit.align.model import attention_implementation

            # the model was loaded with it; inside, align refuses (in words) FlexAttention
            # where it cannot be trained (a CPU)
            with attention_implementation(attention):
                got = run_prefkit(spec, model, tok, rows, run_dir, packing)
        else:
            got = run_trl(spec, model, tok, rows, run_dir, precompute=trainer == "trl_precompute")
    sampler.stop()
    hwm = _status_kib("VmHWM") if exact else None
    mem: dict[str, Any] = {
        "baseline_rss": base_rss, "peak_source": "VmHWM" if hwm else "ru_maxrss",
        "peak_rss": hwm if hwm else _maxrss(),
        "peak_increase": (hwm - base_rss) if hwm else _maxrss() - base_maxrss,
        "loop_peak_increase_sampled": sampler.peak(got["loop_start"], got["loop_end"]) - base_rss,
        "call_peak_increase_sampled": sampler.peak() - base_rss,
        "ru_maxrss": _maxrss(),
    }
    if cuda:
        mem["cuda_baseline_allocated"] = cuda_base
        mem["cuda_peak_increase"] = torch.cuda.max_memory_allocated() - cuda_base
        mem["cuda_peak_reserved"] = torch.cuda.max_memory_reserved()
    got["layout"]["sdpa_kernels"] = kernels.resolve()  # after the memory figures
    pairs = spec["steps"] * spec["batch_size"] * spec["grad_accum"]
    steps = got["step_end_s"]
    loop_s = steps[-1]
    steady_s = steps[-1] - steps[0] if len(steps) > 1 else loop_s
    result = {
        "trainer": trainer, "pairs": pairs, "steps": len(steps),
        "loop_s": loop_s, "pairs_per_s": pairs / loop_s,
        # without the first step (allocator warm-up, prefkit's one-row head check)
        "steady_pairs_per_s": pairs * (len(steps) - 1) / len(steps) / steady_s
        if len(steps) > 1 else pairs / loop_s,
        "call_s": got["call_s"], "end_to_end_pairs_per_s": pairs / got["call_s"],
        "setup_s": time.time() - t_process - got["call_s"],
        "memory": mem, "loadavg_start": load, "loadavg_end": os.getloadavg(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "trl": trl_version, "python": platform.python_version()},
        **({"gpu": torch.cuda.get_device_name(), "tf32_matmul":
            torch.backends.cuda.matmul.allow_tf32} if cuda else {}),
        "threads": torch.get_num_threads(),
        **{k: v for k, v in got.items() if k not in ("t_start", "t_end")},
    }
    Path(out_path).write_text(json.dumps(result, default=float) + "\n")
    if cuda:  # the disk (and /dev/shm) of a GPU machine: a 1B run folder holds 18 GB
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit("usage: _align_speed_worker.py TRAINER SPEC.json OUT.json")
    sys.exit(main(*sys.argv[1:]))
