"""Online RL from rewards: the policy samples, a reward scores, the policy updates (GRPO and
its Dr. GRPO / DAPO / BNPO variants, RLOO, REINFORCE++). Needs torch. Every name is imported
from its submodule on first use (PEP 562).

* :mod:`prefkit.rl.types` -- what every RL loss takes (:class:`TokenLogps`);
* :mod:`prefkit.rl.advantages` -- group, leave-one-out and REINFORCE++ advantages;
* :mod:`prefkit.rl.losses` -- the policy losses, by name from :data:`RL_LOSSES`.
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
    from prefkit.rl.losses import RL_LOSSES, RLLoss, get_rl_loss
    from prefkit.rl.types import TokenLogps

_EXPORTS = {
    "prefkit.rl.advantages": ["group_advantages", "kl_penalised_rewards",
                              "reinforce_pp_advantages", "rloo_advantages"],
    "prefkit.rl.losses": ["RL_LOSSES", "RLLoss", "get_rl_loss"],
    "prefkit.rl.types": ["TokenLogps"],
}
__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)

__all__ = [
    "RL_LOSSES",
    "RLLoss",
    "TokenLogps",
    "get_rl_loss",
    "group_advantages",
    "kl_penalised_rewards",
    "reinforce_pp_advantages",
    "rloo_advantages",
]
