"""Item-level ranking: fits, uncertainty, online ratings, matchmaking, diagnostics.

Every name below is imported from its submodule on first use (PEP 562), so ``import
prefkit.rank`` is cheap and ``from prefkit.rank import fit_bradley_terry`` loads only the
fit, not ``scipy.stats`` (the diagnostics) or the bootstrap.
"""

from __future__ import annotations

from prefkit import _lazy_exports

# the one public name that is also a submodule's name: bound now, so that importing the
# submodule `prefkit.rank.connectivity` (bradley_terry does) cannot shadow the function
from prefkit.rank.connectivity import connectivity

TYPE_CHECKING = False
if TYPE_CHECKING:
    from prefkit.rank._newton import ConvergenceError
    from prefkit.rank.api import OptionError, rank
    from prefkit.rank.bradley_terry import fit_bradley_terry, fit_thurstone
    from prefkit.rank.connectivity import (
        Connectivity,
        DisconnectedGraphError,
        ProvisionalWarning,
        largest_component,
    )
    from prefkit.rank.diagnostics import (
        Diagnostics,
        Influence,
        Intransitivity,
        diagnose,
        influence,
        intransitivity,
    )
    from prefkit.rank.leaderboard import ELO_BASE, ELO_SCALE, Leaderboard, to_elo
    from prefkit.rank.matchmaking import STRATEGIES, MatchState, pair_gains, propose_pairs
    from prefkit.rank.online import WENG_LIN_MODELS, WengLinRatings, elo, weng_lin
    from prefkit.rank.plackett_luce import fit_plackett_luce, implied_pair_counts
    from prefkit.rank.simulate import (
        METRICS,
        MatchmakingResult,
        rank_accuracy,
        simulate_matchmaking,
        simulate_votes,
    )
    from prefkit.rank.uncertainty import (
        RankInference,
        bootstrap,
        rank_inference,
        sandwich_covariance,
        with_intervals,
    )

__getattr__, __dir__ = _lazy_exports(__name__, {
    "prefkit.rank._newton": ["ConvergenceError"],
    "prefkit.rank.api": ["OptionError", "rank"],
    "prefkit.rank.bradley_terry": ["fit_bradley_terry", "fit_thurstone"],
    "prefkit.rank.connectivity": ["Connectivity", "DisconnectedGraphError", "ProvisionalWarning",
                                  "largest_component"],
    "prefkit.rank.diagnostics": ["Diagnostics", "Influence", "Intransitivity", "diagnose",
                                 "influence", "intransitivity"],
    "prefkit.rank.leaderboard": ["ELO_BASE", "ELO_SCALE", "Leaderboard", "to_elo"],
    "prefkit.rank.matchmaking": ["STRATEGIES", "MatchState", "pair_gains", "propose_pairs"],
    "prefkit.rank.online": ["WENG_LIN_MODELS", "WengLinRatings", "elo", "weng_lin"],
    "prefkit.rank.plackett_luce": ["fit_plackett_luce", "implied_pair_counts"],
    "prefkit.rank.simulate": ["METRICS", "MatchmakingResult", "rank_accuracy",
                              "simulate_matchmaking", "simulate_votes"],
    "prefkit.rank.uncertainty": ["RankInference", "bootstrap", "rank_inference",
                                 "sandwich_covariance", "with_intervals"],
})

__all__ = [
    "Connectivity",
    "ConvergenceError",
    "Diagnostics",
    "DisconnectedGraphError",
    "ELO_BASE",
    "ELO_SCALE",
    "Influence",
    "Intransitivity",
    "Leaderboard",
    "METRICS",
    "MatchState",
    "MatchmakingResult",
    "OptionError",
    "STRATEGIES",
    "ProvisionalWarning",
    "RankInference",
    "WENG_LIN_MODELS",
    "WengLinRatings",
    "bootstrap",
    "connectivity",
    "diagnose",
    "elo",
    "fit_bradley_terry",
    "fit_plackett_luce",
    "fit_thurstone",
    "implied_pair_counts",
    "influence",
    "intransitivity",
    "largest_component",
    "pair_gains",
    "propose_pairs",
    "rank",
    "rank_accuracy",
    "simulate_matchmaking",
    "simulate_votes",
    "rank_inference",
    "sandwich_covariance",
    "to_elo",
    "weng_lin",
    "with_intervals",
]
