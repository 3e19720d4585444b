"""The implicit PRM on a task with exactly known step correctness (prefkit.process.synthetic).

    python benchmarks/prm_synthetic.py           # about 15 minutes on two busy CPU cores

1. A reference LM (a tiny Llama, char-level) is fitted on correct solutions of fresh
   problems: the stand-in for a pretrained model that can do arithmetic.
2. A generator's samples -- K = 4 solutions per training problem, half of them with an
   error, a fifth of those *lucky* (a second error brings the answer back) -- are labelled by
   their **final answer only** and train the policy through prefkit.align.align: unpaired
   rows with APO-zero (``apo_zero_unpaired``: pushes ``beta * log(pi/pi_ref)`` up for right
   answers and down for wrong ones, anchored at 0, like the paper's cross-entropy loss), or
   right/wrong pairs with ``--loss dpo``. No step label is used in training.
3. ProcessBench F1 on fresh test solutions from the step rewards beta*log(pi/pi_ref): at the
   fixed threshold (r_k < 0 flags the step, no step labels at all) and at a threshold tuned
   on training solutions' step labels; with the baselines.
4. Best-of-N on fresh test problems (N candidates from the same generator): the implicit PRM
   (min over steps), its outcome reward (the sum over all steps: the DPO reward of the whole
   solution, i.e. an outcome reward model trained on the same labels), majority voting and
   PRM-weighted voting; accuracy with 95% bootstrap intervals over problems, and paired
   bootstrap intervals of the differences.

Measured 2026-12-04 (defaults; wall 311 s, CPU 180 s): 6,000 outcome rows (589 right answers
reached through a wrong step, labelled right); ProcessBench on 600 fresh solutions: F1 0.919
(acc. erroneous 0.853, correct 0.997) at the threshold tuned on 400 training solutions' step
labels, 0.528 at the fixed r_k < 0; baselines 0.000. Best-of-4 on 300 problems (error rate
0.7): implicit PRM (min) 0.750 [0.700, 0.797], outcome reward (sum) 0.713 [0.660, 0.763],
majority vote 0.530 [0.473, 0.583], PRM-weighted vote 0.730 [0.680, 0.780], any right
0.873; PRM - majority +0.220 [+0.160, +0.277], PRM - outcome +0.037 [+0.013, +0.063].
"""

from __future__ import annotations

import argparse
import shutil
import time

import numpy as np
import torch
from _common import WORK

from prefkit.align import AlignConfig
from prefkit.align.tiny import char_tokenizer, tiny_llama
from prefkit.process import (
    aggregate_steps,
    baselines,
    evaluate_steps,
    tune_threshold,
    weighted_vote,
)
from prefkit.process.implicit import (
    fit_lm,
    outcome_pairs,
    outcome_rows,
    response_text,
    train_implicit_prm,
)
from prefkit.process.synthetic import make_solutions


def _interval(hits: np.ndarray, rng: np.random.Generator, rounds: int = 2000
              ) -> tuple[float, float, float]:
    idx = rng.integers(0, len(hits), size=(rounds, len(hits)))
    boot = hits[idx].mean(axis=1)
    return float(hits.mean()), float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pretrain", type=int, default=2000,
                    help="correct solutions for the reference")
    ap.add_argument("--pretrain-epochs", type=int, default=12)
    ap.add_argument("--problems", type=int, default=1500,
                    help="training problems (K=4 samples each)")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--learning-rate", type=float, default=1e-3)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--loss", default="apo_zero_unpaired", help="an align loss (unpaired: "
                    "outcome rows; pairwise: right/wrong pairs)")
    ap.add_argument("--n", type=int, default=4, help="candidates per best-of-N problem")
    ap.add_argument("--bon-problems", type=int, default=300)
    ap.add_argument("--p-error", type=float, default=0.7, help="best-of-N generator error rate")
    args = ap.parse_args()
    torch.manual_seed(0)
    t0, c0 = time.perf_counter(), time.process_time()

    # -- 1. the reference: a tiny LM fitted on correct solutions ------------------------------
    tok = char_tokenizer()
    model = tiny_llama(len(tok), seed=0, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                       num_hidden_layers=args.layers, num_attention_heads=4,
                       num_key_value_heads=4)
    pre, _ = make_solutions(args.pretrain, np.random.default_rng(5), p_error=0.0)
    hist = fit_lm(model, tok, [p + response_text(s) for p, s in zip(pre.prompts, pre.steps)],
                  epochs=args.pretrain_epochs, batch_size=32, learning_rate=3e-3)
    print(f"reference LM: loss per token {hist[0]:.3f} -> {hist[-1]:.3f} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)

    # -- 2. outcome labels only -> DPO ---------------------------------------------------------
    rng = np.random.default_rng(0)
    train, outcome = make_solutions(args.problems * 4, rng, per_problem=4)
    from prefkit.align import ALIGN_LOSSES

    if ALIGN_LOSSES[args.loss].kind == "unpaired":
        pairs = outcome_rows(train.prompts, train.steps, outcome)
    else:
        pairs = outcome_pairs(train.prompts, train.steps, outcome, rng)
    out = WORK / "prm_synthetic"
    shutil.rmtree(out, ignore_errors=True)
    cfg = AlignConfig(loss=args.loss, loss_kwargs={"beta": args.beta},
                      learning_rate=args.learning_rate, batch_size=16, epochs=args.epochs)
    prm = train_implicit_prm(model, tok, pairs, out, align_config=cfg)
    n_lucky = sum(ok and f >= 0 for ok, f in zip(outcome, train.first_error))
    print(f"implicit PRM ({args.loss}): {len(pairs)} outcome rows from {len(train)} samples "
          f"({n_lucky} right answers through a wrong step, labelled right) "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)

    # -- 3. ProcessBench F1 on fresh solutions ---------------------------------------------------
    test, _ = make_solutions(600, np.random.default_rng(99))
    scores = prm.score(test.prompts, test.steps)
    tune = train.subset(range(400))
    th = tune_threshold(prm.score(tune.prompts, tune.steps), tune.first_error)
    rows = {"implicit PRM, r_k < 0": evaluate_steps(scores, test.first_error),
            "implicit PRM, tuned": evaluate_steps(scores, test.first_error, threshold=th)}
    rows.update(baselines([len(s) for s in test.steps], test.first_error,
                          train_n_steps=[len(s) for s in train.steps],
                          train_labels=train.first_error))
    print(f"\nProcessBench on {len(test)} fresh solutions")
    print(f"{'predictor':24} {'F1':>6} {'acc_err':>8} {'acc_cor':>8}")
    for name, r in rows.items():
        print(f"{name:24} {r.f1:6.3f} {r.accuracy_erroneous:8.3f} {r.accuracy_correct:8.3f}")

    # -- 4. best-of-N ---------------------------------------------------------------------------
    n = args.n
    bon, bon_ok = make_solutions(args.bon_problems * n, np.random.default_rng(7),
                                 p_error=args.p_error, per_problem=n)
    rewards = prm.step_rewards(bon.prompts, bon.steps)
    hits: dict[str, list[float]] = {k: [] for k in ("implicit PRM (min)", "outcome RM (sum)",
                                                      "majority vote", "PRM-weighted vote",
                                                      "oracle (any right)")}
    for q in range(args.bon_problems):
        sl = slice(q * n, (q + 1) * n)
        r, ok = rewards[sl], bon_ok[sl]
        answers = [s[-1] for s in bon.steps[sl]]
        right = next(a for a, o in zip(answers, ok) if o) if any(ok) else None
        prm_pick = int(np.argmax([aggregate_steps(x, "min") for x in r]))
        orm_pick = int(np.argmax([float(np.sum(x)) for x in r]))
        w = [1 / (1 + np.exp(-aggregate_steps(x, "min"))) for x in r]
        hits["implicit PRM (min)"].append(float(ok[prm_pick]))
        hits["outcome RM (sum)"].append(float(ok[orm_pick]))
        hits["majority vote"].append(float(weighted_vote(answers) == right))
        hits["PRM-weighted vote"].append(float(weighted_vote(answers, w) == right))
        hits["oracle (any right)"].append(float(any(ok)))
    brng = np.random.default_rng(0)
    print(f"\nbest-of-{n} on {args.bon_problems} fresh problems (generator error rate "
          f"{args.p_error}); accuracy [95% bootstrap interval]")
    arr = {k: np.asarray(v) for k, v in hits.items()}
    for k, v in arr.items():
        m, lo, hi = _interval(v, brng)
        print(f"  {k:22} {m:.3f} [{lo:.3f}, {hi:.3f}]")
    for other in ("majority vote", "outcome RM (sum)"):
        m, lo, hi = _interval(arr["implicit PRM (min)"] - arr[other], brng)
        print(f"  PRM - {other:16} {m:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    print(f"\nwall {time.perf_counter() - t0:.0f} s, CPU {time.process_time() - c0:.0f} s")


if __name__ == "__main__":
    main()
