"""Reward models: evaluation against human preferences (accuracy with intervals, baselines,
calibration), RewardBench 1/2 scoring, and the models themselves.

Every name is imported from its submodule on first use (PEP 562): the evaluation needs
only numpy/scipy; the models need torch (``pip install prefkit[reward]``).
"""

from __future__ import annotations

from prefkit import _lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:
    from prefkit.reward.calibration import (
        CalibrationReport,
        ReliabilityCurve,
        TemperatureFit,
        brier_score,
        calibration_report,
        expected_calibration_error,
        fit_temperature,
        pairwise_calibration,
        reliability_curve,
    )
    from prefkit.reward.evaluate import (
        AccuracyReport,
        EvalReport,
        baselines,
        evaluate_scores,
        pairwise_accuracy,
        wilson_interval,
    )
    from prefkit.reward.rewardbench import (
        EXAMPLE_COUNTS,
        PRIOR_SETS,
        SUBSET_MAPPING,
        RewardBench2Score,
        RewardBenchScore,
        TiesScore,
        best_of_n_results,
        rewardbench2_scores,
        rewardbench_scores,
        section_scores,
        ties_score,
    )

#: public name -> the module that defines it (imported on first use)
_LAZY = {
    **dict.fromkeys(
        ["CalibrationReport", "ReliabilityCurve", "TemperatureFit", "brier_score",
         "calibration_report", "expected_calibration_error", "fit_temperature",
         "pairwise_calibration", "reliability_curve"],
        "prefkit.reward.calibration",
    ),
    **dict.fromkeys(
        ["AccuracyReport", "EvalReport", "baselines", "evaluate_scores", "pairwise_accuracy",
         "wilson_interval"],
        "prefkit.reward.evaluate",
    ),
    **dict.fromkeys(
        ["EXAMPLE_COUNTS", "PRIOR_SETS", "SUBSET_MAPPING", "RewardBench2Score",
         "RewardBenchScore", "TiesScore", "best_of_n_results", "rewardbench2_scores",
         "rewardbench_scores", "section_scores", "ties_score"],
        "prefkit.reward.rewardbench",
    ),
    **dict.fromkeys(
        ["GeneralPreferenceModel", "GPMConfig", "EmbeddingFitConfig", "gpm_logit",
         "preference_probability", "general_preference_loss", "fit_general_preference",
         "train_pairwise", "simulate_cyclic_preferences"],
        "prefkit.reward.general",
    ),
    **dict.fromkeys(
        ["FrozenEncoder", "EmbeddingCache", "default_cache_dir", "DEFAULT_ENCODER",
         "response_texts", "prompt_texts"],
        "prefkit.reward.backbones",
    ),
    **dict.fromkeys(
        ["RewardHead", "LinearHead", "MLPHead", "MultiObjectiveHead", "HEADS", "build_head",
         "score_pairs", "PairFeatures", "embed_pairs"],
        "prefkit.reward.heads",
    ),
    **dict.fromkeys(["REWARD_LOSSES", "RewardLoss", "get_reward_loss"], "prefkit.reward.losses"),
    **dict.fromkeys(
        ["HEAD_PRESETS", "RewardTrainConfig", "TrainResult", "train_reward_model",
         "package_versions"],
        "prefkit.reward.train",
    ),
    **dict.fromkeys(["RewardModel", "best_per_prompt", "scores_to_votes"],
                   "prefkit.reward.model"),
    **dict.fromkeys(["FINETUNE_PRESETS", "FinetuneConfig", "finetune_reward_model"],
                    "prefkit.reward.finetune"),
    **dict.fromkeys(["SequenceScorer", "load_scorer", "SCORER_KIND"], "prefkit.reward.scorer"),
    **dict.fromkeys(
        ["PluralisticRewardModel", "PALConfig", "fit_pluralistic", "adapt_new_user",
         "simulate_length_groups"],
        "prefkit.reward.pluralistic",
    ),
}

_by_module: dict[str, list[str]] = {}
for _name, _module in _LAZY.items():
    _by_module.setdefault(_module, []).append(_name)
__getattr__, __dir__ = _lazy_exports(__name__, _by_module)
del _by_module, _name, _module

__all__ = list(_LAZY)  # every public name, each defined in the module it maps to
