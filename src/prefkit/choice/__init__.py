"""Pure likelihoods and their derivatives: the links every preference model is built on.

Every name below is imported from its submodule on first use (PEP 562); the torch ones
(``log_bradley_terry``, ``log_plackett_luce``) need torch; ``gpm_logit`` (the General
Preference Model's skew-symmetric link) takes torch tensors or numpy arrays.
"""

from __future__ import annotations

from prefkit import _lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:
    from prefkit.choice.general import gpm_logit
    from prefkit.choice.pairwise import (
        LINKS,
        CellTerms,
        Link,
        bradley_terry_probability,
        get_link,
    )
    from prefkit.choice.plackett_luce import (
        RankingBlock,
        RankingDesign,
        RankingTerms,
        plackett_luce_log_likelihood,
        plackett_luce_terms,
        ranking_design,
        sample_plackett_luce,
    )
    from prefkit.choice.torch_pairwise import log_bradley_terry, log_plackett_luce

__getattr__, __dir__ = _lazy_exports(__name__, {
    "prefkit.choice.general": ["gpm_logit"],
    "prefkit.choice.pairwise": ["LINKS", "CellTerms", "Link", "bradley_terry_probability",
                                "get_link"],
    "prefkit.choice.plackett_luce": ["RankingBlock", "RankingDesign", "RankingTerms",
                                     "plackett_luce_log_likelihood", "plackett_luce_terms",
                                     "ranking_design", "sample_plackett_luce"],
    "prefkit.choice.torch_pairwise": ["log_bradley_terry", "log_plackett_luce"],
})

__all__ = [
    "log_bradley_terry",
    "log_plackett_luce",
    "gpm_logit",
    "LINKS",
    "CellTerms",
    "Link",
    "RankingBlock",
    "RankingDesign",
    "RankingTerms",
    "bradley_terry_probability",
    "get_link",
    "plackett_luce_log_likelihood",
    "plackett_luce_terms",
    "ranking_design",
    "sample_plackett_luce",
]
