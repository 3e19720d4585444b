"""`prefkit rl`: train a causal language model online from rewards (GRPO, RLOO,
REINFORCE++, PPO, online DPO).

A thin command over :func:`prefkit.rl.train.train_rl` (the loop),
:func:`prefkit.rl.tasks.read_task` (the prompts, read here so a bad file stops before the
model loads) and :func:`prefkit.rl.rewards.parse_reward` (the reward specs); no math here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from prefkit.cli._common import (
    check_output,
    fail,
    input_errors,
    no_such_input,
    note,
    print_json,
    run_errors,
)
from prefkit.runs import plural

_EXAMPLES = """Examples:

  prefkit rl --algo grpo --model ./my-llama --task gsm8k/train.jsonl.gz --reward exact --output runs/grpo

  prefkit rl --algo grpo --model ./my-llama --task prompts.jsonl --reward my_rewards.py:correct --reward "0.2*format:^\\<think>" --output runs/grpo --beta 0.04 --lora-r 16

  prefkit rl --algo rloo --model ./my-llama --task game24/24.csv --reward game24 --output runs/rloo --num-generations 4

  prefkit rl --algo online-dpo --model ./my-llama --task prompts.jsonl --reward model:runs/hh --output runs/odpo

  prefkit rl --algo grpo --model ./my-llama --task gsm8k/train.jsonl.gz --reward model:runs/rm --watch gsm8k/test.jsonl --output runs/grpo

  prefkit rl --algo grpo --model ./my-llama --task prompts.jsonl --reward exact --output runs/grpo --resume

  prefkit rl --list-losses
"""

#: config fields named as the command line names them, for error messages
CONFIG_FLAGS = {"process_weight": "--process-weight", "num_generations": "--num-generations", "max_new_tokens": "--max-new-tokens",
                "batch_size": "--batch-size", "max_steps": "--max-steps", "beta": "--beta",
                "learning_rate": "--learning-rate", "lora_r": "--lora-r",
                "temperature": "--temperature", "top_p": "--top-p",
                "num_iterations": "--num-iterations", "epsilon": "--epsilon",
                "epsilon_high": "--epsilon-high", "scale_rewards": "--scale-rewards",
                "micro_batch_size": "--micro-batch-size", "loss": "--loss",
                "algo": "--algo", "precision": "--precision", "generator": "--generator",
                "dpo_beta": "--dpo-beta", "max_resample_rounds": "--max-resample-rounds",
                "checkpoint_every": "--checkpoint-every", "online_dpo": "online-dpo",
                "reinforce_pp": "reinforce-pp"}


def _losses_table() -> str:
    from prefkit.rl.losses import RL_LOSSES

    lines = [f"{'loss':<14} {'advantage':<13} {'KL in':<7} {'reduction':<12} paper"]
    for name, spec in RL_LOSSES.items():
        if name != spec.name:
            continue
        lines.append(f"{name:<14} {spec.advantage:<13} {spec.kl_in:<7} {spec.reduction:<12} "
                     f"{spec.paper}")
    lines.append("online DPO: --algo online-dpo (prefkit align's dpo loss on best/worst samples)")
    return "\n".join(lines)


def _num(x: object) -> str:
    """A metric as people read it: 4 significant digits (float32 means print as
    0.4000000059604645), '—' when there is none."""
    return f"{x:.4g}" if isinstance(x, float) else "—" if x is None else str(x)


def _flags(message: str) -> str:
    """The config's words in the command line's: ``micro_batch_size must ...`` -> ``--micro-
    batch-size must ...``; a whole word only (``batch_size`` inside ``micro_batch_size`` stays),
    and the algorithms as --algo spells them (online-dpo)."""
    import re

    def sub(m: re.Match[str]) -> str:
        return CONFIG_FLAGS[m.group(1)] + (" " if m.group(2) == "=" else m.group(2))

    names = "|".join(sorted(map(re.escape, CONFIG_FLAGS), key=len, reverse=True))
    return re.sub(rf"(?<![\w-])({names})([ =',\]])", sub, message)


def rl_command(
    algo: Annotated[str, typer.Option(help="grpo, rloo, reinforce-pp, ppo (with a value head) or online-dpo.")] = "grpo",
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Folder of a transformers causal LM (config.json, weights, tokenizer), or a Hub id in the local cache.")] = None,
    task: Annotated[Optional[Path], typer.Option(help="Prompts: JSONL/CSV (.gz too) with a 'prompt' column, or GSM8K / MATH-500 / Game of 24 files as distributed.")] = None,
    reward: Annotated[Optional[list[str]], typer.Option(help="A reward, repeatable and weighted (W*SPEC): exact[:gsm8k|math], format:REGEX, game24, length:SCALE, model:DIR, PATH.py:FUNCTION, logsigmoid(SPEC;ref=COLUMN|NUMBER).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="New or empty folder for the run (or an earlier run, with --resume / --overwrite).")] = None,
    loss: Annotated[Optional[str], typer.Option(help="The RL loss for grpo: dapo (default, as TRL), grpo, dr_grpo, bnpo (see --list-losses).")] = None,
    num_generations: Annotated[int, typer.Option(help="Completions sampled per prompt (G).")] = 8,
    max_new_tokens: Annotated[int, typer.Option(help="Most tokens per completion.")] = 128,
    batch_size: Annotated[int, typer.Option(help="Prompts per step (each gets --num-generations completions).")] = 4,
    micro_batch_size: Annotated[Optional[int], typer.Option(help="Completions per forward pass (default: all of a step).")] = None,
    max_steps: Annotated[int, typer.Option(help="Steps (sample, score, update) in all.")] = 100,
    num_iterations: Annotated[int, typer.Option(help="Optimizer steps on each sampled batch (TRL's num_iterations).")] = 1,
    beta: Annotated[float, typer.Option(help="KL coefficient (0: no reference model). For online DPO, see --dpo-beta.")] = 0.0,
    dpo_beta: Annotated[float, typer.Option(help="Online DPO's beta.")] = 0.1,
    epsilon: Annotated[float, typer.Option(help="Clip range of the importance ratio, lower side.")] = 0.2,
    epsilon_high: Annotated[Optional[float], typer.Option(help="Upper side (DAPO's clip-higher: 0.28; default: --epsilon).")] = None,
    scale_rewards: Annotated[str, typer.Option(help="GRPO advantages divided by the group's std (group), the batch's (batch) or not (none, Dr. GRPO).")] = "group",
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling (1: off).")] = 1.0,
    stop: Annotated[Optional[list[str]], typer.Option(help="A string that ends a completion (repeatable).")] = None,
    learning_rate: Annotated[float, typer.Option(help="AdamW learning rate (linear decay to 0).")] = 1e-6,
    lora_r: Annotated[int, typer.Option(help="LoRA rank (0: full fine-tuning); the reference is then the adapter off.")] = 0,
    precision: Annotated[str, typer.Option(help="fp32, or bf16 (autocast for sampling and forward passes; fp32 weights).")] = "fp32",
    max_resample_rounds: Annotated[int, typer.Option(help="DAPO's dynamic sampling: leave out groups whose rewards are all equal and refill the batch from more prompts, at most N extra rounds a step (0: off).")] = 0,
    generator: Annotated[str, typer.Option(help="transformers, or vllm (GPU only, pip install vllm; the weights synced to the engine after each update).")] = "transformers",
    template: Annotated[Optional[str], typer.Option(help="Format each prompt from the row's columns, e.g. 'Q: {question}\\nA:'.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N prompts of --task.")] = None,
    process_reward: Annotated[Optional[Path], typer.Option(help="A process reward model folder (prefkit prm train): its step scores become dense per-token advantages (DeepSeekMath's process supervision).")] = None,
    process_weight: Annotated[float, typer.Option(help="Weight of the process advantages next to the outcome ones.")] = 1.0,
    watch: Annotated[Optional[Path], typer.Option(help="Held-out questions (a --task file) to watch the reward on: checker success, reward, length; flags over-optimisation and plots watch.png.")] = None,
    watch_reward: Annotated[Optional[str], typer.Option(help="The watch's checker (a reward spec scoring 0..1; default: exact, from the file's layout).")] = None,
    watch_pairs: Annotated[Optional[Path], typer.Option(help="Held-out human preference pairs (prompt/chosen/rejected, any format prefkit reads) on which the watch measures the reward's agreement and calibration; needs --watch.")] = None,
    watch_every: Annotated[int, typer.Option(help="Watch every N steps.")] = 5,
    watch_samples: Annotated[int, typer.Option(help="Completions per held-out question at each watch.")] = 4,
    checkpoint_every: Annotated[int, typer.Option(help="Write checkpoint.pt every N steps (0: every few minutes, at Ctrl-C and at the end).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the prompt order, the samples and any new weights.", envvar="PREFKIT_SEED")] = 0,
    stop_after: Annotated[Optional[int], typer.Option(help="Stop after N steps with a checkpoint (--resume continues).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --output from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start again in an --output that already holds a run.")] = False,
    list_losses: Annotated[bool, typer.Option("--list-losses", help="List the RL losses and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Train a causal language model online from rewards (GRPO and its Dr. GRPO / DAPO
    variants, RLOO, REINFORCE++, PPO, online DPO).

    Each step samples --num-generations completions for --batch-size prompts, scores them
    with the --reward terms, forms advantages and updates the model; a progress bar shows
    the mean reward, metrics.jsonl gets one row per step (reward per term, KL, lengths, clip
    fraction, loss) and the output folder loads with transformers' AutoModelForCausalLM
    (with --lora-r, with peft).
    """
    if list_losses:
        typer.echo(_losses_table())
        return
    missing = [f"--{n}" for n, v in (("model", model), ("task", task), ("reward", reward),
                                     ("output", output)) if not v]
    if missing:
        fail(f"missing {', '.join(missing)} (e.g. prefkit rl --algo grpo --model ./my-llama "
             "--task prompts.jsonl --reward exact --output runs/grpo)")
    assert model is not None and task is not None and reward and output is not None
    t0 = time.perf_counter()
    check_output(output, "rl", resume, overwrite)  # before anything slow

    from prefkit.rl.config import RLConfig
    from prefkit.rl.rewards import parse_reward
    from prefkit.rl.tasks import read_task
    from prefkit.rl.train import train_rl

    try:
        config = RLConfig(
            algo=algo.replace("-", "_"), loss=loss, num_generations=num_generations,
            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
            stop=tuple(stop or ()), batch_size=batch_size, micro_batch_size=micro_batch_size,
            num_iterations=num_iterations, max_steps=max_steps, beta=beta, epsilon=epsilon,
            epsilon_high=epsilon_high, scale_rewards=scale_rewards, dpo_beta=dpo_beta,
            learning_rate=learning_rate, lora_r=lora_r, seed=seed, process_weight=process_weight,
            precision=precision, generator=generator,
            max_resample_rounds=max_resample_rounds,
            drop_zero_std_groups=max_resample_rounds > 0,
            checkpoint_every=checkpoint_every)
    except (ValueError, TypeError) as e:
        fail(_flags(str(e)))
    if generator == "vllm":
        from prefkit.rl.train import sampling_config
        from prefkit.rl.vllm_generate import logprobs_mode, require_vllm

        try:
            logprobs_mode(sampling_config(config))
            require_vllm()
        except (ImportError, RuntimeError, ValueError) as e:
            fail(f"--generator vllm: {e}")
    if stop_after is not None and stop_after < 1:
        fail(f"--stop-after must be at least 1 (steps), got {stop_after}")
    if limit is not None and limit < 1:
        fail(f"--limit must be at least 1 (prompts), got {limit}")
    if template is not None:
        from prefkit.rl.tasks import check_template

        try:
            check_template(template)
        except ValueError as e:
            fail(f"--{e}")
    if not task.exists():
        no_such_input(task, "prompts", "prompts.jsonl", flag="--task")
    with input_errors(f"--task {task}", also=(ValueError, FileNotFoundError)):
        data = read_task(task, template=template, limit=limit)
    try:
        rewards = parse_reward(reward, answer_kind=data.answer_kind)
    except (ValueError, TypeError, FileNotFoundError, OSError) as e:
        fail(f"--reward: {e}")
    from prefkit.rl.rewards import task_columns_read

    for spec, col in task_columns_read(reward):
        if col not in data.columns:
            fail(f"--reward {spec!r} reads the task's column {col!r}, which --task {task} "
                 f"lacks (columns: {', '.join(sorted(data.columns)) or 'none'}); name one "
                 "of its columns")
    on_step = None
    if watch_pairs is not None and watch is None:
        fail("--watch-pairs needs --watch (held-out questions the watch samples on)")
    if watch is not None:
        from prefkit.rl.watch import Watch

        pairs = None
        if watch_pairs is not None:
            from prefkit.data import read_preferences

            with input_errors(also=()):
                pairs = read_preferences(watch_pairs).data
            if not hasattr(pairs, "chosen"):
                fail(f"--watch-pairs {watch_pairs}: not chosen/rejected pairs")
        with input_errors(f"--watch {watch}", also=(ValueError, TypeError, FileNotFoundError)):
            held = read_task(watch)
            on_step = Watch(held, parse_reward(watch_reward or "exact",
                                               answer_kind=held.answer_kind),
                            every=watch_every, samples=watch_samples, pairs=pairs)
    if process_reward is not None and not (process_reward / "config.json").is_file():
        fail(f"--process-reward {process_reward}: not a PRM folder (no config.json); give the "
             "folder of prefkit prm train")
    if not Path(model).exists() and (model.startswith((".", "/", "~")) or model.count("/") > 1):
        fail(f"--model {model}: no such folder (give a folder with config.json, the weights and "
             "the tokenizer, or a Hub id that is in the local cache)")
    if len(data) < batch_size:
        note(f"--task has {plural(len(data), 'prompt')}, fewer than --batch-size "
             f"{batch_size}: each step reuses prompts")
    try:
        with run_errors():
            result = train_rl(model, data, rewards, config=config, output_dir=output,
                              resume=resume, overwrite=overwrite, progress=not as_json,
                              stop_after=stop_after, on_step=on_step,
                              process_reward=process_reward)
    except (ValueError, TypeError, OSError) as e:
        fail(_flags(str(e)))
    import torch

    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return  # several processes (torchrun / accelerate launch): process 0 reports
    summary = {"output": str(result.output_dir), "algo": config.algo,
               "loss": None if config.algo == "online_dpo" else config.loss_name,
               "step": result.step, "finished": result.finished,
               "reward_terms": [t.name for t in rewards.terms], "metrics": result.metrics,
               "seconds": round(time.perf_counter() - t0, 2)}
    if on_step is not None:
        from prefkit.rl.watch import plot_watch

        summary["watch"] = {"flagged_at": on_step.flagged_at,
                            "evaluations": len(on_step.history)}
        if on_step.history:
            plot_watch(result.history, result.output_dir / "watch.png")
            if on_step.flagged_at is not None:
                note(f"watch: the reward rose while held-out success fell (first at step "
                     f"{on_step.flagged_at}); see {result.output_dir / 'watch.png'}",
                     style="red")
    if as_json:
        print_json(summary)
        return
    m = result.metrics
    first = next((r for r in result.history if r.get("kind") == "train"), {})
    typer.echo(f"{plural(result.step, 'step')}, {plural(m.get('episodes', 0), 'completion')}; "
               "reward "
               f"{_num(first.get('reward'))} at the first step -> {_num(m.get('reward'))} at "
               f"the last; written to {result.output_dir} ({summary['seconds']} s)")
    if not result.finished:
        note(f"stopped at step {result.step}: continue with --resume")
