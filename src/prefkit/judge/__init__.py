"""LLM judges with measured consistency: verdict records and readers, consistency and bias
metrics, repairs, prompt templates, parsing and the judging protocols.

    from prefkit.judge import analyze, read_verdicts

    data = read_verdicts(["judgments/"])              # any registered verdict format
    for report in analyze(data.verdicts, data.grades):
        print(report.to_dict())                        # position consistency, ...

Every name below is imported from its submodule on first use (PEP 562): ``import
prefkit.judge`` loads neither an HTTP client nor torch.
"""

from __future__ import annotations

from prefkit import _lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:
    from prefkit.judge.analyze import JudgeReport, analyze
    from prefkit.judge.bias import (
        LengthControlled,
        length_controlled_win_rate,
        position_bias,
        prefers_longer,
        self_preference,
    )
    from prefkit.judge.consistency import (
        NonTransitivity,
        Ratio,
        classify_triad,
        conflict_ratio,
        first_position_rate,
        non_transitivity,
        position_consistency,
    )
    from prefkit.judge.evaluate import JudgeScores, judge_scores, pair_items
    from prefkit.judge.inputs import GoldLabels, read_gold, read_judge_inputs
    from prefkit.judge.io import JudgeData, read_verdicts
    from prefkit.judge.parse import (
        expected_score,
        label_probabilities,
        parse_pairwise,
        parse_ranking,
        parse_rating,
    )
    from prefkit.judge.protocols import judge_pairs, rank_answers, rate_answers
    from prefkit.judge.records import Grades, Verdicts, identity
    from prefkit.judge.repair import (
        Agreement,
        agreement,
        bradley_terry_repair,
        gold_from_annotations,
        judge_verdict,
        likelihood_aggregate,
    )
    from prefkit.judge.templates import TEMPLATES, Template, load_template

__getattr__, __dir__ = _lazy_exports(__name__, {
    "prefkit.judge.analyze": ["JudgeReport", "analyze"],
    "prefkit.judge.bias": ["LengthControlled", "length_controlled_win_rate", "position_bias",
                           "prefers_longer", "self_preference"],
    "prefkit.judge.consistency": ["NonTransitivity", "Ratio", "classify_triad",
                                  "conflict_ratio", "first_position_rate",
                                  "non_transitivity", "position_consistency"],
    "prefkit.judge.evaluate": ["JudgeScores", "judge_scores", "pair_items"],
    "prefkit.judge.inputs": ["GoldLabels", "read_gold", "read_judge_inputs"],
    "prefkit.judge.io": ["JudgeData", "read_verdicts"],
    "prefkit.judge.parse": ["expected_score", "label_probabilities", "parse_pairwise",
                            "parse_ranking", "parse_rating"],
    "prefkit.judge.protocols": ["judge_pairs", "rank_answers", "rate_answers"],
    "prefkit.judge.records": ["Grades", "Verdicts", "identity"],
    "prefkit.judge.repair": ["Agreement", "agreement", "bradley_terry_repair",
                             "gold_from_annotations", "judge_verdict", "likelihood_aggregate"],
    "prefkit.judge.templates": ["TEMPLATES", "Template", "load_template"],
})

__all__ = [
    "TEMPLATES",
    "Agreement",
    "GoldLabels",
    "Grades",
    "JudgeData",
    "JudgeReport",
    "JudgeScores",
    "LengthControlled",
    "NonTransitivity",
    "Ratio",
    "Template",
    "Verdicts",
    "agreement",
    "analyze",
    "bradley_terry_repair",
    "classify_triad",
    "conflict_ratio",
    "expected_score",
    "first_position_rate",
    "gold_from_annotations",
    "identity",
    "judge_pairs",
    "judge_scores",
    "judge_verdict",
    "label_probabilities",
    "length_controlled_win_rate",
    "likelihood_aggregate",
    "load_template",
    "non_transitivity",
    "pair_items",
    "parse_pairwise",
    "parse_ranking",
    "parse_rating",
    "position_bias",
    "position_consistency",
    "prefers_longer",
    "rank_answers",
    "rate_answers",
    "read_gold",
    "read_judge_inputs",
    "read_verdicts",
    "self_preference",
]
