"""ProcessBench on the real splits: train a PRM on one split, evaluate on the other.

    python benchmarks/prm_processbench.py            # frozen MiniLM head, both directions

For each direction the frozen-encoder PRM (``prefkit prm train`` defaults) is trained on the
whole training split (its threshold tuned on a held-out fifth of it, never on the scored
split) and scored on the other split; ProcessBench's F1 (code/run_eval.py's rule) is printed
at the tuned threshold and at 0.5 beside the baselines (never flags, always the first step,
the training split's position prior). The first run embeds every step prefix with MiniLM
(~8,600 texts, about 35 minutes on two busy CPU cores; cached by content, later runs take
seconds). Wall and CPU time are printed.

Measured 2026-12-04 (F1 / acc. erroneous / acc. correct):
  gsm8k -> math:  tuned (0.873) 0.019 / 0.199 / 0.010; at 0.5 0.003; never flags 0.000;
                  first step 0.000; position prior 0.010
  math -> gsm8k:  tuned (0.875) 0.201 / 0.126 / 0.503; at 0.5 0.000; never flags 0.000;
                  first step 0.000; position prior 0.019
A head on frozen MiniLM sentence embeddings cannot check arithmetic: it barely beats the
baselines, and a threshold tuned on one split does not carry to the other.

Fine-tuned MiniLM (``prefkit prm train processbench_gsm8k.json --finetune --output ft``: 2
epochs, 514 windows of 256 tokens, 422 s; then ``prefkit prm eval ft processbench_math.json.gz
--json``, 431 s, every step scored): gsm8k -> math F1 0.086 (acc. erroneous 0.214, correct
0.054) at the tuned 0.861; 0.000 at 0.5.
"""

from __future__ import annotations

import sys
import time

from _common import SHARED_DATA, WORK

from prefkit.process import (
    FrozenPRMConfig,
    baselines,
    evaluate_steps,
    load_prm,
    read_steps,
    train_frozen_prm,
)

SPLITS = {"gsm8k": SHARED_DATA / "prm" / "processbench_gsm8k.json",
          "math": SHARED_DATA / "prm" / "processbench_math.json.gz"}


def main() -> None:
    data = {k: read_steps(v).data for k, v in SPLITS.items()}
    print(f"{'train -> test':16} {'predictor':18} {'threshold':>9} {'F1':>6} {'acc_err':>8} "
          f"{'acc_cor':>8}")
    for train, test in (("gsm8k", "math"), ("math", "gsm8k")):
        t0, c0 = time.perf_counter(), time.process_time()
        out = WORK / f"prm_processbench_{train}"
        train_frozen_prm(FrozenPRMConfig(), out, data[train], overwrite=out.exists(),
                         progress=False)
        prm = load_prm(out)
        d = data[test]
        scores = prm.score(d.prompts, d.steps)
        rows = {"PRM (tuned)": evaluate_steps(scores, d.first_error, threshold=prm.threshold),
                "PRM (0.5)": evaluate_steps(scores, d.first_error)}
        rows.update(baselines([len(s) for s in d.steps], d.first_error,
                              train_n_steps=[len(s) for s in data[train].steps],
                              train_labels=data[train].first_error))
        for name, r in rows.items():
            th = "-" if r.threshold is None else f"{r.threshold:.3f}"
            print(f"{train + ' -> ' + test:16} {name:18} {th:>9} {r.f1:6.3f} "
                  f"{r.accuracy_erroneous:8.3f} {r.accuracy_correct:8.3f}")
        print(f"  ({len(d)} solutions; wall {time.perf_counter() - t0:.1f} s, "
              f"CPU {time.process_time() - c0:.1f} s)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
