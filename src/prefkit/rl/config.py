"""What decides an online RL run: :class:`RLConfig` (saved in the run folder), and the
algorithms the loop knows (:data:`ALGORITHMS`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prefkit.rl.advantages import SCALES
from prefkit.rl.losses import get_rl_loss
from prefkit.runs import ConfigIO

__all__ = ["ALGORITHMS", "RLConfig"]

#: algorithm -> its default loss (TRL 1.16's defaults: GRPO's loss_type "dapo"); the
#: ``online_dpo`` family labels pairs of its own samples and uses prefkit.align's DPO loss
ALGORITHMS: dict[str, str | None] = {
    "grpo": "dapo",
    "rloo": "rloo",
    "reinforce_pp": "reinforce_pp",
    "ppo": "ppo",
    "online_dpo": None,
}


@dataclass(frozen=True)
class RLConfig(ConfigIO):
    """Everything that decides an online RL run; saved in ``prefkit_rl.json``.

    One **step**: ``batch_size`` prompts, ``num_generations`` (G) completions each,
    scored, advantages formed, then ``num_iterations`` optimizer steps on that batch (TRL's
    ``num_iterations``, the K inner updates; 1 = on-policy), each over micro-batches of
    ``micro_batch_size`` completions (None: all at once). ``max_steps`` steps in all (the
    LR schedule's length).

    ``algo``: ``grpo`` / ``rloo`` / ``reinforce_pp`` / ``online_dpo``; ``loss`` overrides
    the algorithm's loss with another of :data:`~prefkit.rl.losses.RL_LOSSES` (``grpo``,
    ``bnpo``, ``dr_grpo``, ``dapo``; None: :data:`ALGORITHMS`). ``beta``: the KL
    coefficient (in the loss for GRPO's variants, k3 per token; in the reward for RLOO
    and REINFORCE++; online DPO's DPO beta is ``dpo_beta``). ``epsilon`` /
    ``epsilon_high``: the clip range (clip-higher: ``epsilon_high`` 0.28).
    ``scale_rewards``: GRPO's ``group`` / ``batch`` / ``none``. ``normalize_advantages``:
    RLOO's whitening. ``drop_zero_std_groups``: DAPO's dynamic sampling, groups whose
    rewards are all equal are left out of the loss (their tokens do not count either);
    ``max_resample_rounds`` > 0 also refills the batch with informative groups from more
    prompts, at most that many extra rounds per step (:mod:`prefkit.rl.dynamic`).
    ``mask_truncated``: completions without EOS or stop string are left out (DAPO).
    ``process_weight``: with a process reward (``train_rl(process_reward=...)``), each
    token's advantage is the outcome advantage plus this times the process advantage
    (:mod:`prefkit.rl.process_rewards`; 0 outcome reward terms: process only).
    Sampling: ``max_new_tokens``, ``temperature``, ``top_p``, ``top_k``, ``stop``,
    ``share_prefill`` (each prompt's forward pass run once for its G samples; False runs it
    G times, as plain ``generate`` does -- the same draws, for comparison).
    ``sample_shards``: a step's prompts are sampled in this many equal shards, each seeded
    on its own (None: one per process; :mod:`prefkit.rl.distributed`), so a 1-process run
    with ``sample_shards=W`` draws what a ``W``-process run draws. ``generator``:
    ``transformers`` (:mod:`prefkit.rl.generate`) or ``vllm`` (:mod:`prefkit.rl.vllm_generate`:
    GPU only, weights synced after each update; untested on these machines).
    ``precision="bf16"``: sampling and forward passes under bfloat16 autocast (fp32
    weights, optimizer and log-prob reductions), as prefkit align's.
    PPO (``algo="ppo"``): a value head (a linear layer on the policy's last hidden state,
    zero-initialised) trained with it; GAE with ``gamma`` / ``lam``, the value loss with
    ``value_clip`` and weight ``vf_coef``; the KL (``beta``) in the per-token reward.
    ``lora_r > 0`` trains a LoRA adapter; the reference is then the adapter disabled,
    otherwise a frozen copy of the initial weights (only made when ``beta > 0`` or for
    online DPO).
    """

    algo: str = "grpo"
    loss: str | None = None
    loss_kwargs: Mapping[str, Any] = field(default_factory=dict)
    num_generations: int = 8
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    share_prefill: bool = True
    sample_shards: int | None = None
    generator: str = "transformers"
    batch_size: int = 4
    micro_batch_size: int | None = None
    num_iterations: int = 1
    max_steps: int = 100
    beta: float = 0.0
    epsilon: float = 0.2
    epsilon_high: float | None = None
    scale_rewards: str = "group"
    normalize_advantages: bool = False
    drop_zero_std_groups: bool = False
    max_resample_rounds: int = 0
    mask_truncated: bool = False
    dpo_beta: float = 0.1
    process_weight: float = 1.0
    gamma: float = 1.0
    lam: float = 0.95
    value_clip: float = 0.2
    vf_coef: float = 0.1
    learning_rate: float = 1e-6
    weight_decay: float = 0.0
    warmup: float = 0.0
    grad_clip: float | None = 1.0
    lora_r: int = 0
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_target_modules: tuple[str, ...] | None = None
    seed: int = 0
    precision: str = "fp32"
    chunk_size: int | None = None
    log_every: int = 1
    checkpoint_every: int = 0
    shuffle: bool = True

    def __post_init__(self) -> None:
        if self.algo not in ALGORITHMS:
            raise ValueError(f"algo must be one of {sorted(ALGORITHMS)}, got {self.algo!r}")
        if self.loss is not None and self.algo == "online_dpo":
            raise ValueError("online_dpo uses the DPO loss; leave loss unset")
        if self.algo != "online_dpo":
            spec = get_rl_loss(self.loss_name)
            spec.resolve(**self.rl_hyper())  # names and ranges checked now
        for name in ("num_generations", "max_new_tokens", "batch_size", "num_iterations",
                     "max_steps", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.algo in ("grpo", "rloo", "online_dpo") and self.num_generations < 2:
            raise ValueError(f"{self.algo} compares the samples of a prompt: num_generations "
                             f"must be >= 2, got {self.num_generations}")
        if self.sample_shards is not None and not (
                self.sample_shards >= 1 and self.batch_size % self.sample_shards == 0):
            raise ValueError(f"sample_shards must be >= 1 and divide batch_size="
                             f"{self.batch_size}, got {self.sample_shards}")
        if self.generator not in ("transformers", "vllm"):
            raise ValueError(f"generator must be 'transformers' or 'vllm', got "
                             f"{self.generator!r}")
        if self.max_resample_rounds < 0 or (self.max_resample_rounds
                                            and not self.drop_zero_std_groups):
            raise ValueError("max_resample_rounds refills the groups drop_zero_std_groups "
                             "leaves out: set drop_zero_std_groups=True, and rounds >= 0, got "
                             f"{self.max_resample_rounds}")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, got {self.micro_batch_size}")
        if self.scale_rewards not in SCALES:
            raise ValueError(f"scale_rewards must be one of {SCALES}, got "
                             f"{self.scale_rewards!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ValueError(f"gamma and lam must be in [0, 1], got {self.gamma}, {self.lam}")
        if not (math.isfinite(self.process_weight) and self.process_weight >= 0):
            raise ValueError(f"process_weight must be >= 0, got {self.process_weight}")
        for name in ("learning_rate", "temperature", "dpo_beta"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be > 0, got {v}")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be >= 0 (0: no KL term), got {self.beta}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 (None: no clipping), got {self.grad_clip}")
        if self.lora_r < 0:
            raise ValueError(f"lora_r must be >= 0 (0: full fine-tuning), got {self.lora_r}")
        object.__setattr__(self, "loss_kwargs", dict(self.loss_kwargs))
        object.__setattr__(self, "stop", (self.stop,) if isinstance(self.stop, str)
                           else tuple(self.stop))
        if self.lora_target_modules is not None:
            mods = self.lora_target_modules
            object.__setattr__(self, "lora_target_modules",
                               (mods,) if isinstance(mods, str) else tuple(mods))

    @property
    def loss_name(self) -> str:
        return self.loss or ALGORITHMS[self.algo] or "dpo"

    def rl_hyper(self) -> dict[str, Any]:
        """The RL loss's hyper-parameters: the clip range, ``beta`` when the loss takes the
        KL (GRPO's variants), Dr. GRPO's constant, then ``loss_kwargs``."""
        spec = get_rl_loss(self.loss_name)
        hyper: dict[str, Any] = {"epsilon": self.epsilon, "epsilon_high": self.epsilon_high}
        if spec.kl_in == "loss":
            hyper["beta"] = self.beta
        if "max_tokens" in spec.defaults:
            hyper["max_tokens"] = self.max_new_tokens
        if "value_clip" in spec.defaults:
            hyper.update(value_clip=self.value_clip, vf_coef=self.vf_coef)
        return {**hyper, **self.loss_kwargs}

    @property
    def needs_reference(self) -> bool:
        return self.beta > 0 or self.algo == "online_dpo"
