"""Process reward models: step-level labels in, a PRM that scores each step, ProcessBench
evaluation, best-of-N with step aggregation, and the implicit PRM (needs torch for the
models; the records, metrics and aggregation are numpy only).

* :mod:`prefkit.process.processbench` -- ProcessBench's F1, thresholds, baselines;
* :mod:`prefkit.process.aggregate` -- min/last/product/mean, best-of-N, weighted voting;
* :mod:`prefkit.process.losses` -- step losses in the shared contract (``PROCESS_LOSSES``);
* :mod:`prefkit.process.frozen` -- a PRM on a frozen encoder (fast CPU training);
* :mod:`prefkit.process.finetune` -- a fine-tuned backbone scoring at step separators;
* :mod:`prefkit.process.model` -- load any PRM folder and score steps;
* :mod:`prefkit.process.synthetic` -- arithmetic with injected errors, known step labels;
* :mod:`prefkit.process.implicit` -- the implicit PRM from outcome labels (log-ratios).

Records and readers live in :mod:`prefkit.data` (family ``"steps"``): :class:`StepSolutions`,
:class:`Tasks`, :func:`read_steps`, :func:`read_tasks`.
"""

from __future__ import annotations

from prefkit import _lazy_exports
from prefkit.data.steps import StepSolutions, Tasks, read_steps, read_tasks

__getattr__, __dir__ = _lazy_exports(__name__, {
    "prefkit.process.processbench": ["ProcessBenchReport", "baselines", "evaluate_steps",
                                     "first_flagged", "processbench_f1", "tune_threshold"],
    "prefkit.process.aggregate": ["AGGREGATES", "aggregate_steps", "best_of_n",
                                  "weighted_vote"],
    "prefkit.process.losses": ["PROCESS_LOSSES", "get_process_loss"],
    "prefkit.process.frozen": ["FrozenPRM", "FrozenPRMConfig", "prefix_texts",
                               "train_frozen_prm"],
    "prefkit.process.model": ["load_prm", "split_steps"],
    "prefkit.process.finetune": ["FinetunePRMConfig", "FinetunedPRM", "finetune_prm"],
    "prefkit.process.implicit": ["ImplicitPRM", "ImplicitPRMConfig", "fit_implicit_prm",
                                 "outcome_pairs", "outcome_rows", "train_implicit_prm"],
    "prefkit.process.search": ["BeamResult", "beam_search"],
    "prefkit.process.pairs": ["consensus", "monte_carlo_values", "rise_rows", "step_dpo_rows"],
})

__all__ = [
    "AGGREGATES",
    "PROCESS_LOSSES",
    "BeamResult",
    "FinetunePRMConfig",
    "FinetunedPRM",
    "FrozenPRM",
    "FrozenPRMConfig",
    "ImplicitPRM",
    "ImplicitPRMConfig",
    "ProcessBenchReport",
    "StepSolutions",
    "Tasks",
    "aggregate_steps",
    "baselines",
    "beam_search",
    "best_of_n",
    "consensus",
    "evaluate_steps",
    "finetune_prm",
    "first_flagged",
    "fit_implicit_prm",
    "get_process_loss",
    "load_prm",
    "monte_carlo_values",
    "outcome_pairs",
    "outcome_rows",
    "prefix_texts",
    "processbench_f1",
    "read_steps",
    "read_tasks",
    "rise_rows",
    "split_steps",
    "step_dpo_rows",
    "train_frozen_prm",
    "train_implicit_prm",
    "tune_threshold",
    "weighted_vote",
]
