"""The implicit PRM on a task with exactly known step correctness (prefkit.process.synthetic).

    python benchmarks/prm_synthetic.py                        # 8-17 minutes on two busy cores
    python benchmarks/prm_synthetic.py --reference-p-error 0  # a reference of right answers only
    python benchmarks/prm_synthetic.py --cli        # trained and evaluated by `prefkit prm`

1. A reference LM (a tiny Llama, char-level) is fitted on the generator's own samples of
   fresh problems (half with an error, as the training samples; ``--reference-p-error``):
   the paper's pi_ref is the model whose samples are labelled.
2. A generator's samples -- K = 4 solutions per training problem, half of them with an
   error, a fifth of those *lucky* (a second error brings the answer back) -- are labelled by
   their **final answer only** and train the policy through prefkit.align.align: unpaired
   rows with APO-zero (``apo_zero_unpaired``: pushes ``beta * log(pi/pi_ref)`` up for right
   answers and down for wrong ones, anchored at 0, like the paper's cross-entropy loss), or
   right/wrong pairs with ``--loss dpo``. No step label is used in training.
3. ProcessBench F1 on fresh test solutions, two readings of the log-ratios on a 0-1 scale:
   sigmoid of the step reward r_k (the log-ratio over the step's tokens: ImplicitPRM.score)
   and sigmoid of the prefix value q_k = r_1 + ... + r_k (the paper's q_t), each
   at the fixed 0.5 (r_k < 0, q_k < 0: no step labels at all) and at a threshold tuned on 400
   training solutions' step labels; with the baselines.
4. Best-of-N on fresh test problems (N candidates from the same generator): the implicit PRM
   (min over steps, of q_k and of r_k), its outcome reward (the sum of all r_k = the last q_k:
   the reward of the whole solution, i.e. an outcome reward model trained on the same
   labels), majority voting and PRM-weighted voting; accuracy with 95% bootstrap intervals
   over problems, and paired bootstrap intervals of the differences.

Measured 2026-12-05, 6,000 outcome rows (589 right answers reached through a wrong step,
labelled right); ProcessBench on 600 fresh solutions, best-of-4 on 300 problems (generator
error rate 0.7; any candidate right 0.873 [0.833, 0.910]). Runs are deterministic (each
figure came out the same in two runs); wall times are of two busy cores.

Defaults (reference = the generator; wall 967 s, CPU 197 s): F1 (acc. erroneous, correct)
  r_k at 0.5    0.998 (1.000, 0.997)    r_k tuned (0.500)  0.997 (1.000, 0.993)
  q_k at 0.5    0.997 (0.997, 0.997)    q_k tuned (0.486)  0.997 (0.997, 0.997)
  baselines never flags, first step, position prior: 0.000
  best-of-4: PRM min r_k 0.807 [0.760, 0.850], PRM min q_k 0.790 [0.743, 0.833], outcome RM
  0.790 [0.743, 0.833], majority vote 0.530 [0.473, 0.587], PRM-weighted vote 0.803
  [0.760, 0.847]; PRM (min r_k) - majority +0.277 [+0.223, +0.333], - outcome RM +0.017
  [+0.003, +0.033]; PRM (min q_k) - majority +0.260 [+0.200, +0.317], - outcome RM +0.000
  [+0.000, +0.000] (the same picks).

``--cli`` (trained by ``prefkit prm train --kind implicit`` on ProcessBench rows with
final_answer_correct, 5,412 outcome rows after a tenth of the prompts is held out; wall
993 s, CPU 215 s): threshold 0.500 tuned on 588 held-out solutions (held-out F1 1.000 at
0.5 and tuned); ``prefkit prm eval`` on the test solutions: F1 0.993 (0.993, 0.993) at 0.5,
baselines 0.000; q_k at 0.5 0.993, both tuned 0.997. Best-of-4: PRM min r_k 0.813 [0.770,
0.857], PRM-weighted vote 0.817 [0.773, 0.860], PRM min q_k = outcome RM 0.793 [0.747,
0.837], majority 0.530; PRM (min r_k) - outcome RM +0.020 [+0.007, +0.037], - majority
+0.283 [+0.230, +0.340].

``--reference-p-error 0`` (a reference fitted on right solutions only; wall 938 s, CPU 180 s):
  q_k at 0.5    0.561 (0.737, 0.453)    q_k tuned (0.458)  0.932 (0.891, 0.977)
  r_k at 0.5    0.467 (0.724, 0.345)    r_k tuned (0.462)  0.939 (0.901, 0.980)
  best-of-4: PRM min q_k 0.733 [0.683, 0.783], PRM min r_k 0.750 [0.700, 0.797], outcome RM
  0.707 [0.657, 0.753], majority vote 0.530 [0.473, 0.587]; PRM (min r_k) - outcome RM
  +0.043 [+0.020, +0.070], PRM (min q_k) - outcome RM +0.027 [+0.003, +0.050].

Why the fixed threshold failed before: a reference that writes right solutions with
probability near 1 leaves the policy no room to raise them (``log pi <= 0``, so ``r <= -beta
* log pi_ref(y)``, about 0): right solutions sit at r = q = 0 +- 0.01..0.05 and errors at
about -1.2, so 0 (0.5) cuts through the noise of right steps and flags most right solutions,
whichever reading; a threshold tuned a little below 0 works. With pi_ref the generator (the
paper's setting), right answers are raised above 0 and wrong ones pushed below, and 0.5 is
the boundary the loss put there.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


def _sigmoid(r: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-r))


def _prefix_value(r: np.ndarray) -> np.ndarray:
    """sigmoid(q_k), q_k = r_1 + ... + r_k."""
    return _sigmoid(np.cumsum(r))


def _train_by_cli(args: argparse.Namespace, model: Any, tok: Any, train: Any,
                  outcome: list[bool], out: Path) -> Any:
    """The reference saved as a model folder, the training solutions as ProcessBench rows
    with final_answer_correct, `prefkit prm train --kind implicit`; the PRM it wrote."""
    from prefkit.process import load_prm

    lm = WORK / "prm_synthetic_reference"
    shutil.rmtree(lm, ignore_errors=True)
    model.save_pretrained(str(lm))
    tok.save_pretrained(str(lm))
    data = WORK / "prm_synthetic_train.json"
    data.write_text(json.dumps([
        {"problem": p, "steps": st, "label": f, "final_answer_correct": ok}
        for p, st, f, ok in zip(train.prompts, train.steps, train.first_error, outcome)]))
    cmd = [sys.executable, "-m", "prefkit.cli.main", "prm", "train", str(data), "--kind",
           "implicit", "--model", str(lm), "--output", str(out), "--loss", args.loss,
           "--beta", str(args.beta), "--learning-rate", str(args.learning_rate),
           "--batch-size", "16", "--epochs", str(args.epochs), "--val-fraction", "0.1",
           "--json"]
    got = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if got.returncode:
        raise SystemExit(got.stderr)
    s = json.loads(got.stdout)
    nan = float("nan")
    print(f"prefkit prm train --kind implicit: {s['n_train_rows']} outcome rows, threshold "
          f"{s['threshold']:.3f} ({s['threshold_source']}); held-out F1 at 0.5 "
          f"{s.get('val_f1_fixed', nan):.3f}, tuned {s.get('val_f1_tuned', nan):.3f} "
          f"({s['seconds']:.0f} s)", flush=True)
    return load_prm(out)


def _eval_by_cli(out: Path, test: Any) -> None:
    """`prefkit prm eval` on the fresh test solutions (both thresholds, the baselines)."""
    data = WORK / "prm_synthetic_test.json"
    data.write_text(json.dumps([{"problem": p, "steps": st, "label": f} for p, st, f in
                                zip(test.prompts, test.steps, test.first_error)]))
    got = subprocess.run([sys.executable, "-m", "prefkit.cli.main", "prm", "eval", str(out),
                          str(data), "--json"], capture_output=True, text=True, check=False)
    if got.returncode:
        raise SystemExit(got.stderr)
    r = json.loads(got.stdout)
    print(f"prefkit prm eval: F1 {r['f1']:.3f} at {r['threshold']:.3f} "
          f"({r['threshold_source']}), {r['at_0.5']['f1']:.3f} at 0.5; baselines "
          + ", ".join(f"{k} {v['f1']:.3f}" for k, v in r["baselines"].items()))


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
    ap.add_argument("--reference-p-error", type=float, default=0.5,
                    help="error rate of the solutions the reference is fitted on (0.5: the "
                    "generator's own samples, as the training samples; 0: correct ones only)")
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
    ap.add_argument("--cli", action="store_true", help="train through `prefkit prm train "
                    "--kind implicit` (ProcessBench rows with final_answer_correct; a tenth of "
                    "the prompts held out) and evaluate with `prefkit prm eval` too")
    args = ap.parse_args()
    torch.manual_seed(0)
    t0, c0 = time.perf_counter(), time.process_time()

    # -- 1. the reference: a tiny LM fitted on the generator's samples ------------------------
    tok = char_tokenizer()
    model = tiny_llama(len(tok), seed=0, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                       num_hidden_layers=args.layers, num_attention_heads=4,
                       num_key_value_heads=4)
    pre, _ = make_solutions(args.pretrain, np.random.default_rng(5),
                            p_error=args.reference_p_error)
    hist = fit_lm(model, tok, [p + response_text(s) for p, s in zip(pre.prompts, pre.steps)],
                  epochs=args.pretrain_epochs, batch_size=32, learning_rate=3e-3)
    print(f"reference LM (fitted on solutions with error rate {args.reference_p_error}): "
          f"loss per token {hist[0]:.3f} -> {hist[-1]:.3f} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)

    # -- 2. outcome labels only -> align -------------------------------------------------------
    rng = np.random.default_rng(0)
    train, outcome = make_solutions(args.problems * 4, rng, per_problem=4)
    from prefkit.align import ALIGN_LOSSES

    if ALIGN_LOSSES[args.loss].kind == "unpaired":
        pairs = outcome_rows(train.prompts, train.steps, outcome)
    else:
        pairs = outcome_pairs(train.prompts, train.steps, outcome, rng)
    out = WORK / ("prm_synthetic_cli" if args.cli else "prm_synthetic")
    shutil.rmtree(out, ignore_errors=True)
    if args.cli:
        prm = _train_by_cli(args, model, tok, train, outcome, out)
    else:
        cfg = AlignConfig(loss=args.loss, loss_kwargs={"beta": args.beta},
                          learning_rate=args.learning_rate, batch_size=16, epochs=args.epochs)
        prm = train_implicit_prm(model, tok, pairs, out, align_config=cfg)
    n_lucky = sum(ok and f >= 0 for ok, f in zip(outcome, train.first_error))
    print(f"implicit PRM ({args.loss}): "
          + ("" if args.cli else f"{len(pairs)} outcome rows ")
          + f"from {len(train)} samples "
          f"({n_lucky} right answers through a wrong step, labelled right) "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)

    # -- 3. ProcessBench F1 on fresh solutions ---------------------------------------------------
    # two readings of the same log-ratios on a 0-1 scale: the step's own reward r_k, and the
    # prefix value q_k = r_1 + ... + r_k (the paper's q_t: an estimate of the outcome reward
    # of the prefix's continuations), each through a sigmoid: 0.5 is r_k = 0 or q_k = 0
    test, _ = make_solutions(600, np.random.default_rng(99))
    tune = train.subset(range(400))
    r_test = prm.step_rewards(test.prompts, test.steps)
    r_tune = prm.step_rewards(tune.prompts, tune.steps)
    rows = {}
    for name, fn in (("step reward r_k", _sigmoid), ("prefix value q_k", _prefix_value)):
        scores, tune_scores = [fn(r) for r in r_test], [fn(r) for r in r_tune]
        th = tune_threshold(tune_scores, tune.first_error)
        rows[f"{name}, 0.5"] = evaluate_steps(scores, test.first_error)
        rows[f"{name}, tuned"] = evaluate_steps(scores, test.first_error, threshold=th)
    rows.update(baselines([len(s) for s in test.steps], test.first_error,
                          train_n_steps=[len(s) for s in train.steps],
                          train_labels=train.first_error))
    print(f"\nProcessBench on {len(test)} fresh solutions (tuned: on {len(tune)} training "
          "solutions' step labels)")
    print(f"{'predictor':26} {'threshold':>9} {'F1':>6} {'acc_err':>8} {'acc_cor':>8}")
    for name, r in rows.items():
        th_text = "-" if r.threshold is None else f"{r.threshold:.3f}"
        print(f"{name:26} {th_text:>9} {r.f1:6.3f} {r.accuracy_erroneous:8.3f} "
              f"{r.accuracy_correct:8.3f}")
    used = evaluate_steps(prm.score(test.prompts, test.steps), test.first_error,
                          threshold=prm.threshold)
    print(f"ImplicitPRM.score at its threshold {prm.threshold:.3f}: F1 {used.f1:.3f}")
    if args.cli:
        _eval_by_cli(out, test)

    # -- 4. best-of-N ---------------------------------------------------------------------------
    n = args.n
    bon, bon_ok = make_solutions(args.bon_problems * n, np.random.default_rng(7),
                                 p_error=args.p_error, per_problem=n)
    rewards = prm.step_rewards(bon.prompts, bon.steps)
    picks = {"PRM min q_k (prefix value)": lambda r: aggregate_steps(_prefix_value(r), "min"),
             "PRM min r_k (step reward)": lambda r: aggregate_steps(r, "min"),
             "outcome RM (sum r_k = last q_k)": lambda r: float(np.sum(r))}
    hits: dict[str, list[float]] = {k: [] for k in [*picks, "majority vote",
                                                      "PRM-weighted vote (min r_k)",
                                                      "oracle (any right)"]}
    for q in range(args.bon_problems):
        sl = slice(q * n, (q + 1) * n)
        r, ok = rewards[sl], bon_ok[sl]
        answers = [s[-1] for s in bon.steps[sl]]
        right = next(a for a, o in zip(answers, ok) if o) if any(ok) else None
        for name, agg in picks.items():
            hits[name].append(float(ok[int(np.argmax([agg(x) for x in r]))]))
        w = [aggregate_steps(_sigmoid(x), "min") for x in r]
        hits["majority vote"].append(float(weighted_vote(answers) == right))
        hits["PRM-weighted vote (min r_k)"].append(float(weighted_vote(answers, w) == right))
        hits["oracle (any right)"].append(float(any(ok)))
    brng = np.random.default_rng(0)
    print(f"\nbest-of-{n} on {args.bon_problems} fresh problems (generator error rate "
          f"{args.p_error}); accuracy [95% bootstrap interval over problems]")
    arr = {k: np.asarray(v) for k, v in hits.items()}
    for k, v in arr.items():
        m, lo, hi = _interval(v, brng)
        print(f"  {k:32} {m:.3f} [{lo:.3f}, {hi:.3f}]")
    print("paired differences [95% bootstrap interval]")
    for prm_name in list(picks)[:2]:
        for other in ("majority vote", "outcome RM (sum r_k = last q_k)"):
            m, lo, hi = _interval(arr[prm_name] - arr[other], brng)
            print(f"  {prm_name} - {other}: {m:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the CLI's processes (--cli)
    cpu = time.process_time() - c0 + kids.ru_utime + kids.ru_stime
    print(f"\nwall {time.perf_counter() - t0:.0f} s, CPU {cpu:.0f} s (subprocesses included)")


if __name__ == "__main__":
    main()
