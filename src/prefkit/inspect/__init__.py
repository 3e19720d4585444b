"""Inspect any preference source, human or AI, in one report: agreement between annotators
or with gold (accuracy with and without ties, Cohen's and Fleiss' kappa, Krippendorff's
alpha with bootstrap intervals, confusion matrix, per category), duplicates and
contradictory pairs, position and length bias, cyclic triads, annotators who disagree with
the consensus, preference strength from a reward-model ensemble and the ranking accuracy
of a policy.

    ann = read_annotations("testset-v1.json")          # PandaLM, 999 pairs x 3 annotators
    rep = inspect_annotations(ann, rng=np.random.default_rng(0))
    rep.to_dict()["krippendorff_alpha"]

Every name is imported from its submodule on first use (PEP 562).
"""

from __future__ import annotations

from prefkit import _lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:
    from prefkit.data.annotations import (
        FIRST,
        MISSING,
        SECOND,
        TIE,
        Annotations,
        parse_label,
        read_annotations,
    )
    from prefkit.inspect.agreement import (
        Agreement,
        accuracy,
        bootstrap_interval,
        cohen_kappa,
        coincidence_matrix,
        confusion_matrix,
        fleiss_kappa,
        krippendorff_alpha,
        label_counts,
        measure_agreement,
    )
    from prefkit.inspect.quality import (
        Quality,
        annotator_consensus,
        cyclic_triads,
        duplicates,
        holm,
        length_bias,
        position_bias,
        quality,
    )
    from prefkit.inspect.ranking import (
        idealized_ranking_accuracy,
        load_causal_lm,
        pair_logps,
        ranking_accuracy,
        ranking_of_annotations,
    )
    from prefkit.inspect.report import InspectReport, inspect_annotations
    from prefkit.inspect.strength import (
        Strength,
        load_reward_models,
        preference_strength,
        strength_of_annotations,
    )

_EXPORTS = {
    "prefkit.data.annotations": ["FIRST", "MISSING", "SECOND", "TIE", "Annotations",
                                          "parse_label", "read_annotations"],
    "prefkit.inspect.agreement": ["Agreement", "accuracy", "bootstrap_interval",
                                  "cohen_kappa", "coincidence_matrix", "confusion_matrix",
                                  "fleiss_kappa", "krippendorff_alpha", "label_counts",
                                  "measure_agreement"],
    "prefkit.inspect.quality": ["Quality", "annotator_consensus", "cyclic_triads", "duplicates",
                                "holm", "length_bias", "position_bias", "quality"],
    "prefkit.inspect.ranking": ["idealized_ranking_accuracy", "load_causal_lm", "pair_logps",
                                "ranking_accuracy", "ranking_of_annotations"],
    "prefkit.inspect.report": ["InspectReport", "inspect_annotations"],
    "prefkit.inspect.strength": ["Strength", "load_reward_models", "preference_strength",
                                 "strength_of_annotations"],
}
__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)
__all__ = [n for names in _EXPORTS.values() for n in names]
