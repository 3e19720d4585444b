"""Online RL: sample, score, update -- one flat loop, read top to bottom.

    result = train_rl("models/tiny", "gsm8k/train.jsonl.gz", "exact",
                      config=RLConfig(algo="grpo", num_generations=8), output_dir="runs/grpo")

Each step (:func:`train_rl`):

1. **prompts** -- the next ``batch_size`` prompts of the task, in a seeded order per epoch;
2. **sample** -- ``num_generations`` completions each (:func:`prefkit.rl.generate.sample`:
   KV cache, the prompt's prefill shared by its samples), drawn from a stream seeded by
   ``(seed, step)``, so a resumed run draws what an uninterrupted one draws; the sampling
   policy's per-token log-probs come with them;
3. **score** -- the reward (:mod:`prefkit.rl.rewards`) of every completion, each term kept;
4. **reference** -- when needed (``beta > 0``, online DPO), the reference's per-token
   log-probs of the completions, once per batch (LoRA: the adapter disabled);
5. **advantages** -- the estimator the loss names (GRPO group, RLOO leave-one-out with
   the KL in the reward, REINFORCE++ per token, PPO's GAE against a value head;
   :mod:`prefkit.rl.advantages`), plus dense step advantages from a process reward
   (:mod:`prefkit.rl.process_rewards`) when one is given;
6. **update** -- ``num_iterations`` optimizer steps on the batch, each over micro-batches:
   per-token log-probs through align's chunked head, each prompt run once for its
   completions (:mod:`prefkit.rl.logprobs`), the
   loss from :data:`~prefkit.rl.losses.RL_LOSSES`, ``sum(losses)`` backpropagated and the
   gradients divided by the step's summed normalisers (so micro-batching changes nothing;
   ``bnpo``: by each micro-batch's own, then averaged), clipped, AdamW, linear schedule.
   ``online_dpo`` labels each prompt's best and worst sample by the reward and takes
   prefkit.align's ``dpo`` loss on that pair instead (ties skipped);
7. **log / checkpoint** -- a row of ``metrics.jsonl``; ``checkpoint.pt`` (prefkit.runs'
   format) every ``checkpoint_every`` steps, every few minutes and at SIGINT/SIGTERM.

Metrics (one row per logged step, ``kind="train"``): ``reward`` / ``reward_std`` (mean and
standard deviation of the combined reward over the step's completions), ``rewards/<term>``
(each term's mean), ``frac_reward_zero_std`` (groups whose rewards are all equal: no
signal for GRPO), ``completion_length`` / ``completion_length_max`` (tokens, EOS counted),
``truncated`` (fraction without EOS or stop), ``kl`` (mean over tokens of the k3 estimate
of KL(policy || reference) at the first inner update; with a reference), ``clip_low`` /
``clip_high`` / ``clip_region`` (fraction of tokens whose ratio was clipped, over all inner
updates), ``loss``, ``grad_norm`` (before clipping, last inner update), ``lr``,
``episodes`` (completions sampled so far), ``sample_s`` / ``update_s`` / ``elapsed_s``
(seconds generating, updating, in all); online DPO: ``pairs`` (prompts whose samples were
not all tied) and ``margin`` (the DPO margin); PPO: ``value_loss``, ``value_clipped``
(fraction of tokens whose clipped value term was the larger), ``value_mean`` (the value
head's mean estimate at sampling); with a process reward, ``process_reward`` (the mean step
score); with a watch, ``watch/*`` (:mod:`prefkit.rl.watch`); with DAPO's refill
(``max_resample_rounds``), ``groups_drawn`` / ``groups_dropped`` / ``groups_kept`` /
``resample_rounds`` (:mod:`prefkit.rl.dynamic`).

Several processes (``accelerate launch`` / ``torchrun``): each samples, scores and
updates on its share of every step's prompts, gradients summed across processes, process 0
writing (:mod:`prefkit.rl.distributed`).

The output folder: ``prefkit_run.json`` (kind ``rl``), ``metrics.jsonl``,
``checkpoint.pt``, and at the end the model (``save_pretrained``; LoRA: the adapter), its
tokenizer, ``prefkit_rl.json`` (config, reward terms, summary) and, for PPO,
``value_head.pt``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from prefkit.align.model import prepare_causal_lm
from prefkit.rl._update import update
from prefkit.rl.config import RLConfig
from prefkit.rl.distributed import (
    Processes,
    check_supported,
    concat_samples,
    gather_for_metrics,
    join_processes,
    local_shards,
    shard_seed,
)
from prefkit.rl.dynamic import ROUND_STRIDE, refill
from prefkit.rl.generate import Samples, SamplingConfig, sample
from prefkit.rl.losses import RLLoss, get_rl_loss
from prefkit.rl.process_rewards import ProcessReward
from prefkit.rl.rewards import CombinedReward, parse_reward
from prefkit.rl.tasks import Task, as_task, prompt_inputs
from prefkit.runs import (
    CHECKPOINT_SECONDS,
    Checkpointing,
    Metrics,
    RunFolder,
    adamw,
    json_num,
    linear_schedule,
    package_versions,
    progress_bar,
    write_json,
)

__all__ = ["RLResult", "train_rl"]

KIND = "rl"


@dataclass(frozen=True)
class RLResult:
    """What a run did: ``finished`` False when stopped at ``stop_after`` (resume it);
    ``metrics`` the last train row; ``history`` every row of ``metrics.jsonl``."""

    output_dir: Path
    step: int
    finished: bool
    metrics: dict[str, Any]
    history: list[dict[str, Any]]


@dataclass(eq=False)
class RLState:
    """What the loop's phases share (set up once by :func:`_setup`)."""

    config: RLConfig
    run: RunFolder
    device: torch.device
    model: nn.Module
    tokenizer: Any
    source: str | None
    peft: bool
    reference: Any  # a frozen model, peft's disable_adapter, or None
    task: Task
    reward: CombinedReward
    loss: RLLoss | None  # None for online DPO
    params: list[nn.Parameter]
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    data_gen: torch.Generator
    perm: Tensor
    metrics: Metrics
    fingerprints: dict[str, Any]
    step: int = 0
    epoch: int = 0
    pos: int = 0  # prompts of this epoch used
    episodes: int = 0
    process: ProcessReward | None = None  # dense step rewards, or None
    value_head: nn.Module | None = None  # PPO's, or None
    procs: Processes = field(default_factory=Processes)  # rank, world (distributed.py)
    generator: Any = None  # a VLLMGenerator (vllm_generate.py), or None: transformers


# -- the loop --------------------------------------------------------------------------------------
def train_rl(model: nn.Module | str | Path, task: Any, reward: Any, *,
             config: RLConfig | None = None, output_dir: str | Path, tokenizer: Any = None,
             resume: bool = False, overwrite: bool = False, progress: bool = True,
             stop_after: int | None = None, device: str | torch.device | None = None,
             checkpoint_seconds: float | None = CHECKPOINT_SECONDS,
             on_step: Callable[[RLState, dict[str, Any]], dict[str, Any] | None] | None = None,
             process_reward: Any = None) -> RLResult:
    """Train ``model`` (a causal LM or its folder) online on ``task`` (a file,
    :class:`~prefkit.rl.tasks.Task`, a list of prompts or ``{"prompt": [...], ...}``) with
    ``reward`` (reward specs, functions or a :class:`~prefkit.rl.rewards.CombinedReward`);
    write ``output_dir`` (a new or empty folder; an earlier run needs ``resume`` or
    ``overwrite``). ``stop_after`` stops after that many steps with a checkpoint.
    ``on_step(state, row)`` may add values to each metrics row (a watch).
    ``process_reward``: dense step rewards added to the advantages (a prefkit PRM folder, a
    :class:`~prefkit.rl.process_rewards.ProcessReward`, or ``f(prompts, steps) -> per
    completion an array of step scores``; token-level losses only)."""
    config = config or RLConfig()
    st = _setup(model, task, reward, config, output_dir=output_dir, tokenizer=tokenizer,
                resume=resume, overwrite=overwrite, device=device,
                process_reward=process_reward)
    bar = progress_bar(config.max_steps, f"rl {config.algo}", st.step,
                       enabled=progress and st.procs.main)
    due = Checkpointing(config.checkpoint_every, checkpoint_seconds,
                        clock=st.procs.world == 1)  # processes agree on every checkpoint
    t0 = time.perf_counter()
    with due:
        while st.step < config.max_steps:
            idx = _next_prompts(st)  # 1. prompts
            t_sample = time.perf_counter()
            # 2. sample, 3. score: this process's share of the prompts (all of them in one)
            samples, rewards, parts, mine, counts = _draw_batch(st, idx)
            t_update = time.perf_counter()
            prompts = [st.task.prompts[i] for i in mine for _ in range(config.num_generations)]
            row = update(st, samples, rewards, prompts)  # 4.-6. reference, advantages, update
            st.step += 1
            # every completion sampled, all processes (groups_drawn: over all already)
            st.episodes += counts.get("groups_drawn", len(mine) * st.procs.world) \
                * config.num_generations
            row.update(_sample_metrics(*gather_for_metrics(st.procs, samples, rewards, parts),
                                       config.num_generations))
            row.update(counts)
            row.update({"sample_s": round(t_update - t_sample, 3),
                        "update_s": round(time.perf_counter() - t_update, 3)})
            # -- 7. log, checkpoint ------------------------------------------------------------
            if on_step is not None and st.procs.main:  # a watch: the main process
                row.update(on_step(st, row) or {})
            last = st.step == config.max_steps
            stopping = stop_after is not None and st.step >= stop_after
            if st.step % config.log_every == 0 or last or stopping:
                st.metrics.log({"kind": "train", "step": st.step, "epoch": st.epoch,
                                "episodes": st.episodes, **row,
                                "lr": st.sched.get_last_lr()[0],
                                "elapsed_s": round(time.perf_counter() - t0, 3)})
            bar.update(st.step, f"rl {config.algo} reward {row['reward']:.3f}")
            if due(st.step):
                _checkpoint(st)
                due.raise_if_interrupted(st.step, st.run.path, bar)
            if stopping and not last:
                _checkpoint(st)
                bar.close()
                return _result(st, finished=False)
    bar.close()
    return _finish(st)


# -- set-up ----------------------------------------------------------------------------------------
def _load(model: Any, tokenizer: Any, config: RLConfig, device: torch.device
          ) -> tuple[nn.Module, Any, str | None, bool]:
    """The policy (:func:`prefkit.align.model.prepare_causal_lm`: seeded, LoRA on every linear
    layer unless ``lora_target_modules`` names others, dropout always off -- the ratio must be
    1 on-policy), its tokenizer (padding with EOS when it has no pad token), source, peft."""
    model, source, tokenizer, peft = prepare_causal_lm(
        model, tokenizer, device=device, seed=config.seed, lora_r=config.lora_r,
        lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        lora_target_modules=config.lora_target_modules or "all-linear", disable_dropout=True)
    if tokenizer is None:
        raise ValueError("pass tokenizer= with a model object (or give the model as a folder "
                         "holding its tokenizer)")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, source, peft


def _fingerprint(task: Task, reward: CombinedReward, process: ProcessReward | None
                 ) -> dict[str, Any]:
    h = hashlib.sha256()
    for p in task.prompts:
        h.update((p if isinstance(p, str) else json.dumps(p, sort_keys=True)).encode("utf-8")
                 + b"\x00")
    return {"task": h.hexdigest()[:16], "prompts": len(task),
            "reward": [[t.name, t.weight] for t in reward.terms],
            "process": None if process is None else process.name}


def _value_head(model: nn.Module, config: RLConfig, device: torch.device) -> nn.Module:
    """PPO's value head: a linear layer on the last hidden state, zero-initialised (the
    first values are 0), float32."""
    cfg = model.config
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    head = nn.Linear(int(cfg.hidden_size), 1)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head.to(device)


def _process(process_reward: Any, config: RLConfig) -> ProcessReward | None:
    if process_reward is None:
        return None
    if config.algo == "online_dpo" or get_rl_loss(config.loss_name).advantage == "rloo":
        raise ValueError(f"a process reward gives per-token advantages, which the "
                         f"{config.loss_name!r} loss does not take; use grpo (dapo, grpo, "
                         "dr_grpo, bnpo) or reinforce_pp")
    if isinstance(process_reward, ProcessReward):
        return process_reward
    if isinstance(process_reward, (str, Path)):
        return ProcessReward.load(process_reward)
    return ProcessReward(process_reward, name=getattr(process_reward, "__name__", "process"))


def _setup(model: Any, task: Any, reward: Any, config: RLConfig, *, output_dir: str | Path,
           tokenizer: Any, resume: bool, overwrite: bool, device: Any,
           process_reward: Any = None) -> RLState:
    """The run folder, the model (LoRA), the reference, the task and reward, AdamW and its
    schedule, the data order -- and a checkpoint's state when resuming."""
    run = RunFolder(Path(output_dir), KIND, resume=resume, overwrite=overwrite)
    procs, default_device = join_processes()  # accelerate launch / torchrun: the group
    check_supported(config, procs, process_reward=process_reward is not None)
    if config.generator == "vllm":  # refused now, before anything is loaded or written
        from prefkit.rl.vllm_generate import logprobs_mode, require_vllm

        logprobs_mode(sampling_config(config))
        require_vllm()
    device = torch.device(device) if device is not None else default_device
    procs.barrier()  # every process has looked before the main one writes anything
    data = as_task(task)
    if not len(data):
        raise ValueError("the task holds no prompts")
    combined = reward if isinstance(reward, CombinedReward) else parse_reward(
        reward, answer_kind=data.answer_kind)
    process = _process(process_reward, config)
    model, tokenizer, source, peft = _load(model, tokenizer, config, device)
    ref: Any = None
    if config.needs_reference:
        ref = model.disable_adapter if peft else copy.deepcopy(model).eval()
        if isinstance(ref, nn.Module):
            ref.requires_grad_(False)
    fingerprints = _fingerprint(data, combined, process)
    ck = run.load_checkpoint(config, fingerprints, main=procs.main) if run.resuming else None
    if ck is None and procs.main:
        run.start(config.to_dict(), versions=package_versions(("peft",)))
    procs.barrier()
    value_head = _value_head(model, config, device) \
        if config.algo != "online_dpo" and get_rl_loss(config.loss_name).advantage == "gae" \
        else None
    params = [p for p in model.parameters() if p.requires_grad]
    if value_head is not None:
        params += list(value_head.parameters())
    opt = adamw(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    total = config.max_steps * config.num_iterations  # optimizer steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_schedule(
        total, round(config.warmup * total)))
    data_gen = torch.Generator().manual_seed(config.seed + 1)
    st = RLState(config=config, run=run, device=device, model=model, tokenizer=tokenizer,
                 source=source, peft=peft, reference=ref, task=data, reward=combined,
                 loss=None if config.algo == "online_dpo" else get_rl_loss(config.loss_name),
                 params=params, opt=opt, sched=sched, data_gen=data_gen,
                 perm=torch.arange(len(data)),
                 metrics=Metrics(run.metrics_path, 0 if ck is None else ck["metrics_rows"],
                                 write=procs.main),
                 fingerprints=fingerprints, process=process, value_head=value_head,
                 procs=procs)
    if ck is not None:
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        if trainable - set(ck["model"]):
            raise ValueError(f"{run.checkpoint_path} lacks trainable weights")
        run.restore(ck, model, opt, sched, data_gen, strict=False)
        if value_head is not None:
            value_head.load_state_dict(ck["value_head"])
        st.step, st.epoch, st.pos = ck["step"], ck["epoch"], ck["step_in_epoch"]
        st.perm, st.episodes = ck["rng"]["perm"], ck["episodes"]
    elif config.shuffle:
        st.perm = torch.randperm(len(data), generator=data_gen)
    if config.generator == "vllm":
        from prefkit.rl.vllm_generate import VLLMGenerator

        st.generator = VLLMGenerator(source, sampling_config(config), rank=procs.rank,
                                     world=procs.world, local_rank=device.index or 0)
    return st


# -- 1. prompts, 2. sample, 3. score ---------------------------------------------------------------
def _next_prompts(st: RLState) -> list[int]:
    """The next ``batch_size`` prompts; a new seeded order each epoch."""
    out: list[int] = []
    n = len(st.task)
    while len(out) < st.config.batch_size:
        if st.pos >= n:
            st.epoch, st.pos = st.epoch + 1, 0
            st.perm = torch.randperm(n, generator=st.data_gen) if st.config.shuffle \
                else torch.arange(n)
        take = min(st.config.batch_size - len(out), n - st.pos)
        out.extend(st.perm[st.pos:st.pos + take].tolist())
        st.pos += take
    return out


def sampling_config(config: RLConfig) -> SamplingConfig:
    return SamplingConfig(num_generations=config.num_generations,
                          max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                          top_p=config.top_p, top_k=config.top_k, stop=config.stop,
                          share_prefill=config.share_prefill)


def _draw_batch(st: RLState, idx: list[int]
                ) -> tuple[Samples, Tensor, dict[str, np.ndarray], list[int], dict[str, int]]:
    """The step's batch and, with ``max_resample_rounds``, DAPO's refill (rounds after the
    first take the next prompts of the data order; :func:`prefkit.rl.dynamic.refill`)."""
    if not st.config.max_resample_rounds:
        return (*_sample_and_score(st, idx), {})
    (samples, rewards, parts, mine), counts = refill(
        lambda r: _sample_and_score(st, idx if r == 0 else _next_prompts(st), r),
        len(idx) // st.procs.world, st.config.max_resample_rounds, st.tokenizer.pad_token_id,
        st.procs)
    return samples, rewards, parts, mine, counts


def _sample_and_score(st: RLState, idx: list[int], round_: int = 0
                      ) -> tuple[Samples, Tensor, dict[str, np.ndarray], list[int]]:
    """This process's shards of the step's prompts ``idx`` sampled (each shard seeded on
    its own, :func:`~prefkit.rl.distributed.shard_seed`) and scored; and which prompts."""
    config, g = st.config, st.config.num_generations
    shards = local_shards(len(idx), config.sample_shards, st.procs)
    mine = [i for _, sl in shards for i in idx[sl]]
    prompts, columns = st.task.rows(mine)
    parts_s = []
    with torch.autocast(st.device.type, dtype=torch.bfloat16,
                        enabled=config.precision == "bf16"):
        draw = sample if st.generator is None else partial(st.generator.sample, step=st.step)
        for k, sl in shards:
            parts_s.append(draw(
                st.model, st.tokenizer, prompt_inputs(st.tokenizer, st.task.rows(idx[sl])[0]),
                sampling_config(config),
                seed=shard_seed(config.seed * 1_000_003 + st.step + round_ * ROUND_STRIDE, k)))
    samples = concat_samples(parts_s, st.tokenizer.pad_token_id)
    rep = [i for i in range(len(prompts)) for _ in range(g)]  # prompt-major, as the samples
    cols = {k: [v[i] for i in rep] for k, v in columns.items()}
    cols["completion_ids"] = [r[:n] for r, n in zip(samples.completion_ids.tolist(),
                                                    samples.lengths.tolist(), strict=True)]
    total, parts = st.reward([prompts[i] for i in rep], samples.texts, cols)
    return samples, torch.tensor(total, dtype=torch.float32, device=st.device), parts, mine


def _sample_metrics(samples: Samples, rewards: Tensor, parts: dict[str, np.ndarray],
                    g: int) -> dict[str, Any]:
    r = rewards.detach().cpu().double().numpy()
    grouped = r.reshape(-1, g)
    zero_std = [bool(np.nanmax(x) == np.nanmin(x)) if not np.isnan(x).all() else True
                for x in grouped]
    lengths = samples.lengths.float()
    out = {"reward": json_num(float(np.nanmean(r))) if not np.isnan(r).all() else None,
           "reward_std": json_num(float(np.nanstd(r, ddof=1))) if r.size > 1 else 0.0,
           "frac_reward_zero_std": float(np.mean(zero_std)),
           "completion_length": float(lengths.mean()),
           "completion_length_max": float(lengths.max()),
           "truncated": float(samples.truncated.float().mean())}
    for name, v in parts.items():
        out[f"rewards/{name}"] = json_num(float(np.nanmean(v))) if not np.isnan(v).all() \
            else None
    return out


# -- checkpoints, the end --------------------------------------------------------------------------
def _checkpoint(st: RLState) -> None:
    if not st.procs.main:  # one writer
        return
    st.run.save_checkpoint(
        config=st.config.to_dict(),
        model={n: p.detach().cpu().clone() for n, p in st.model.named_parameters()
               if p.requires_grad},
        optimizer=st.opt, scheduler=st.sched,
        rng={"data": st.data_gen.get_state(), "perm": st.perm},
        step=st.step, epoch=st.epoch, step_in_epoch=st.pos, data=st.fingerprints,
        metrics_rows=len(st.metrics.history), episodes=st.episodes,
        value_head=None if st.value_head is None else st.value_head.state_dict())


def _result(st: RLState, *, finished: bool) -> RLResult:
    train = [r for r in st.metrics.history if r.get("kind") == "train"]
    return RLResult(st.run.path, st.step, finished, train[-1] if train else {},
                    list(st.metrics.history))


def _finish(st: RLState) -> RLResult:
    _checkpoint(st)
    result = _result(st, finished=True)
    st.model.eval()
    if not st.procs.main:  # one writer; the others wait for it
        st.procs.barrier()
        return result
    st.model.save_pretrained(st.run.path)
    st.tokenizer.save_pretrained(st.run.path)
    if st.value_head is not None:  # PPO's value head, beside the policy
        torch.save(st.value_head.state_dict(), st.run.path / "value_head.pt")
    summary = {"step": st.step, "episodes": st.episodes, "metrics": result.metrics}
    write_json(st.run.path / "prefkit_rl.json", {
        "kind": "prefkit-rl", "config": st.config.to_dict(), "model": st.source,
        "lora": st.peft, "reward": st.fingerprints["reward"], "task": st.fingerprints,
        "loss": None if st.loss is None else {"name": st.loss.name,
                                              "hyper": st.loss.resolve(**st.config.rl_hyper()),
                                              "paper": st.loss.paper},
        "versions": package_versions(("peft",)), "summary": summary})
    st.run.finish(st.config.to_dict(), summary)
    st.procs.barrier()
    return result


