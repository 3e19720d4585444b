"""Online RL from rewards: the policy samples, a reward scores, the policy updates (GRPO and
its Dr. GRPO / DAPO / BNPO variants, RLOO, REINFORCE++). Needs torch. Every name is imported
from its submodule on first use (PEP 562).

* :mod:`prefkit.rl.types` -- what every RL loss takes (:class:`TokenLogps`);
* :mod:`prefkit.rl.advantages` -- group, leave-one-out and REINFORCE++ advantages;
* :mod:`prefkit.rl.losses` -- the policy losses, by name from :data:`RL_LOSSES`;
* :mod:`prefkit.rl.generate` -- G samples per prompt, the prompt's prefill shared;
* :mod:`prefkit.rl.rewards` -- TRL-signature rewards, rule rewards, reward models, LLM
  judges, weights and the log-sigmoid transform; :mod:`prefkit.rl.code_reward` -- code run
  against tests in a limited subprocess; :mod:`prefkit.rl.process_rewards` -- dense step
  rewards from a PRM; :mod:`prefkit.rl.tasks` -- prompt sets;
* :mod:`prefkit.rl.train` -- :func:`train_rl`, the loop; :class:`RLConfig`;
* :mod:`prefkit.rl.watch` -- :class:`Watch`, held-out checker success while training and
  an over-optimisation flag.

    from prefkit.rl import RLConfig, train_rl
    train_rl("models/tiny", "gsm8k/train.jsonl.gz", "exact", output_dir="runs/grpo",
             config=RLConfig(algo="grpo", num_generations=8, max_steps=200))
"""

from __future__ import annotations

from prefkit import _lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:
    from prefkit.rl.advantages import (
        group_advantages,
        kl_penalised_rewards,
        reinforce_pp_advantages,
        rloo_advantages,
    )
    from prefkit.rl.config import RLConfig
    from prefkit.rl.generate import Samples, SamplingConfig, sample
    from prefkit.rl.losses import RL_LOSSES, RLLoss, get_rl_loss
    from prefkit.rl.rewards import CombinedReward, parse_reward
    from prefkit.rl.tasks import Task, read_task
    from prefkit.rl.train import RLResult, train_rl
    from prefkit.rl.types import TokenLogps
    from prefkit.rl.watch import Watch

_EXPORTS = {
    "prefkit.rl.advantages": ["group_advantages", "kl_penalised_rewards",
                              "reinforce_pp_advantages", "rloo_advantages"],
    "prefkit.rl.config": ["RLConfig"],
    "prefkit.rl.generate": ["Samples", "SamplingConfig", "sample"],
    "prefkit.rl.losses": ["RL_LOSSES", "RLLoss", "get_rl_loss"],
    "prefkit.rl.rewards": ["CombinedReward", "parse_reward"],
    "prefkit.rl.tasks": ["Task", "read_task"],
    "prefkit.rl.train": ["RLResult", "train_rl"],
    "prefkit.rl.types": ["TokenLogps"],
    "prefkit.rl.watch": ["Watch"],
}
__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)

__all__ = [
    "RL_LOSSES",
    "CombinedReward",
    "RLConfig",
    "RLLoss",
    "RLResult",
    "Samples",
    "SamplingConfig",
    "Task",
    "TokenLogps",
    "Watch",
    "get_rl_loss",
    "group_advantages",
    "kl_penalised_rewards",
    "parse_reward",
    "read_task",
    "reinforce_pp_advantages",
    "rloo_advantages",
    "sample",
    "train_rl",
]
