"""End to end on a task with a checkable rule: a small model first taught the task format, then
aligned from its own preference pairs with prefkit's trainer (DPO, ORPO, SimPO, listwise).

The task (``benchmarks/_align_task.py``): sort 4-6 digits, ``"sort: 7 2 9 4\\n"`` ->
``"2 4 7 9"``. An answer obeys the rule iff it is exactly the sorted list.

1. **Taught the format** (a plain supervised loop; SFT is not the feature under test): a
   character-level Llama (:func:`prefkit.align.tiny.tiny_llama`, hidden 64, 2 layers, 145k
   parameters) is fine-tuned on answers that are correct with probability ``--p-correct``
   (0.3). The wrong ones are well formed: mostly (``--p-systematic`` 0.85) one habitual
   mistake -- the last two different digits swapped -- else a random swap, wrong digit or
   dropped last digit. The SFT model writes the format every time, obeys the rule about a
   third of the time, and its likeliest answer is often the habitual mistake, so even its
   own length-normalised likelihood prefers the wrong answer of most held-out pairs.
2. **On-policy preferences**: 8 answers sampled from the SFT model (temperature 1, the full
   distribution) per training prompt, labelled by the rule. Pairs (TRL's
   ``prompt/chosen/rejected``): chosen a correct sample, rejected one of the wrong samples
   at random. Rankings (prefkit's listwise form ``prompt/completions/scores``): up to 4
   samples with distinct graded scores (minus the edit distance to the sorted list), the
   correct one first, so no ties. Held-out pairs and rankings are built the same way from
   prompts never trained on. Empty samples and samples cut before EOS are left out.
3. **Alignment** with :func:`prefkit.align.trainer.align` from the SFT folder, once per
   loss (settings in ``LOSSES``: 400 steps of 32 prompts, AdamW, 5% warmup then linear
   decay; beta and learning rate per loss chosen by a small grid -- beta in {1, 2, 5, 10}
   for DPO and listwise, lr in {1e-4, 3e-4}; SimPO (beta, gamma) in {(2, 0.5), (2, 1),
   (10, 5)} and lr in {1e-5, 3e-5, 1e-4}; ORPO's default lambda 0.1 -- scored on the rule
   share of prompts drawn apart from the ones reported here). ``sft`` (the chosen answers
   alone, no preference term) runs as a control.
4. **Measured**: the share of sampled answers obeying the rule on 2,000 held-out prompts
   (one sample each, temperature 1, the same seed before and after), SFT model vs aligned
   model, with Wilson 95% intervals; and the held-out implicit-reward accuracy -- the share
   of held-out pairs whose chosen answer gets the higher implicit reward (``beta (log pi -
   log pi_ref)`` for DPO and listwise, ``beta log pi / |y|`` for ORPO, SimPO and the SFT
   control), computed here independently of the trainer (ties count one half, so the
   reference-based rewards, all zero before training, score 0.5), with its Wilson interval.
   The trainer's own validation accuracy is stored beside it in the JSON (on the held-out
   pairs; for listwise on the held-out rankings: the top answer above all the others).

    .venv/bin/python benchmarks/align_synthetic.py            # ~4 min on one busy CPU core
    .venv/bin/python benchmarks/align_synthetic.py --quick    # ~2 min, smaller everything
    .venv/bin/python benchmarks/align_synthetic.py --losses dpo listwise

Measured here (torch 2.13 CPU, one thread; 456 held-out pairs)::

    loss      rule share: SFT -> aligned              reward accuracy: SFT -> aligned
    dpo       .325 [.305, .346] -> .878 [.863, .892]   .500 [.454, .546] -> .993 [.981, .998]
    orpo      .325 [.305, .346] -> .991 [.986, .994]   .373 [.330, .418] -> 1.00 [.992, 1.00]
    simpo     .325 [.305, .346] -> .667 [.647, .688]   .373 [.330, .418] -> .993 [.981, .998]
    listwise  .325 [.305, .346] -> .855 [.838, .869]   .500 [.454, .546] -> .991 [.978, .997]
    sft       .325 [.305, .346] -> .991 [.985, .994]   .373 [.330, .418] -> 1.00 [.992, 1.00]

ORPO and the SFT control imitate the correct answers (ORPO's loss contains the SFT term) and
end highest; DPO and listwise raise the rule share from a third to ~0.86-0.88 from the
preference signal alone; SimPO, with neither a reference nor an SFT term, gains least (its
policy drifts off the task format at larger learning rates). Every loss orders > 99% of the
held-out pairs right.

Prints that table and writes ``benchmarks/_work/align_synthetic.json`` (``--quick``:
``align_synthetic_quick.json``) and a ``.png`` beside it when matplotlib is installed.
Everything is seeded: a rerun gives the same numbers on the same machine and library
versions. Work folders (SFT model, data, one run folder per loss) go to
``benchmarks/_work/align_synthetic/`` and are replaced by each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _align_task as task  # noqa: E402

WORK = Path(__file__).resolve().parent / "_work"

#: The model of stage 1 (overrides of ``tiny_llama``'s config).
MODEL = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=4)

#: Per loss: the registry name, its options, the data it trains on and its learning rate
#: (chosen by the small grid described in the module docstring).
LOSSES = {
    "dpo": dict(loss="dpo", loss_kwargs={"beta": 2.0}, data="pairs", lr=3e-4),
    "orpo": dict(loss="orpo", loss_kwargs={"beta": 0.1}, data="pairs", lr=3e-4),
    "simpo": dict(loss="simpo", loss_kwargs={"beta": 10.0, "gamma": 5.0}, data="pairs", lr=3e-5),
    "listwise": dict(loss="listwise", loss_kwargs={"beta": 1.0}, data="rankings", lr=3e-4),
    "sft": dict(loss="sft", loss_kwargs={}, data="pairs", lr=3e-4),
}
#: Run by default: DPO, one reference-free loss, the listwise loss, and SFT on the chosen
#: answers alone as a control (how much comes from imitating the correct samples).
DEFAULT_LOSSES = ("dpo", "orpo", "simpo", "listwise", "sft")


def sizes(quick: bool) -> dict[str, int]:
    """How much of everything: the full run, or ``--quick``."""
    if quick:
        return dict(sft_prompts=10000, sft_steps=500, pref_prompts=1000, heldout_prompts=300,
                    eval_prompts=1000, samples=8, eval_samples=1, align_steps=200)
    return dict(sft_prompts=20000, sft_steps=1000, pref_prompts=4000, heldout_prompts=500,
                eval_prompts=2000, samples=8, eval_samples=1, align_steps=400)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def fmt(w: dict[str, float]) -> str:
    return f"{w['share']:.3f} [{w['low']:.3f}, {w['high']:.3f}]"


#: Losses whose implicit reward is the (scaled) length-normalised log-probability.
REFERENCE_FREE = ("simpo", "orpo", "sft")


def implicit_rewards(name: str, kwargs: dict, policy: tuple, reference: tuple) -> np.ndarray:
    """The loss's implicit reward of each response from (summed log-probs, lengths):
    ``beta * log pi / |y|`` for reference-free losses (``beta`` 1 for SFT), else
    ``beta * (log pi - log pi_ref)``."""
    beta = kwargs.get("beta", 1.0)
    if name in REFERENCE_FREE:
        return beta * policy[0] / np.maximum(policy[1], 1.0)
    return beta * (policy[0] - reference[0])


def pair_accuracy(rc: np.ndarray, rr: np.ndarray) -> dict[str, float]:
    """Share of pairs with chosen reward > rejected (ties: one half), Wilson interval."""
    wins = float(np.sum(rc > rr) + 0.5 * np.sum(rc == rr))
    return task.wilson(wins, len(rc))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller everything (~2 min)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--p-correct", type=float, default=0.3,
                    help="share of correct answers in the SFT data")
    ap.add_argument("--p-systematic", type=float, default=0.85,
                    help="share of the SFT data's wrong answers that are the habitual mistake")
    ap.add_argument("--losses", nargs="+", default=list(DEFAULT_LOSSES), choices=list(LOSSES))
    ap.add_argument("--align-steps", type=int, help="optimizer steps per loss")
    ap.add_argument("--batch-size", type=int, default=32, help="prompts per alignment step")
    ap.add_argument("--no-trainer-val", action="store_true",
                    help="do not pass the held-out data to the trainer as validation")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--json", type=Path, help="where to write the report (default: "
                    "benchmarks/_work/align_synthetic.json, or align_synthetic_quick.json)")
    args = ap.parse_args()

    import torch

    from prefkit.align.tiny import char_tokenizer, tiny_llama
    from prefkit.align.trainer import AlignConfig, align
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    size = sizes(args.quick)
    args.json = args.json or WORK / ("align_synthetic_quick.json" if args.quick
                                     else "align_synthetic.json")
    steps = args.align_steps or size["align_steps"]
    work = WORK / ("align_synthetic_quick" if args.quick else "align_synthetic")
    if work.exists():
        shutil.rmtree(work)
    rng = np.random.default_rng(args.seed)
    t_start = time.perf_counter()

    # -- prompts: four disjoint sets ------------------------------------------------------
    sft_prompts = task.make_prompts(size["sft_prompts"], rng)
    pref_prompts = task.make_prompts(size["pref_prompts"], rng, exclude=sft_prompts)
    heldout_prompts = task.make_prompts(size["heldout_prompts"], rng,
                                        exclude=sft_prompts + pref_prompts)
    eval_prompts = task.make_prompts(size["eval_prompts"], rng,
                                     exclude=sft_prompts + pref_prompts + heldout_prompts)

    # -- stage 1: teach the format on partly correct answers --------------------------------
    print(f"stage 1: SFT on {size['sft_prompts']} prompts, answers correct w.p. "
          f"{args.p_correct} ({size['sft_steps']} steps)", flush=True)
    tok = char_tokenizer()
    model = tiny_llama(len(tok), seed=args.seed, **MODEL)
    examples = task.sft_examples(sft_prompts, rng, p_correct=args.p_correct,
                                 p_systematic=args.p_systematic)
    t0 = time.perf_counter()
    sft_losses = task.sft(model, tok, examples, steps=size["sft_steps"], batch_size=64,
                          lr=3e-3, seed=args.seed, log_every=size["sft_steps"] // 5)
    sft_time = time.perf_counter() - t0
    sft_dir = work / "stage1_sft"
    model.save_pretrained(sft_dir)
    tok.save_pretrained(sft_dir)
    eval_seed = args.seed + 1000  # the same sampling seed before and after alignment
    before = task.rule_share(task.sample_answers(model, tok, eval_prompts,
                                                 n=size["eval_samples"], seed=eval_seed))
    print(f"  SFT model obeys the rule in {fmt(before)} of sampled answers "
          f"({sft_time:.0f}s)", flush=True)

    # -- stage 2: preferences from the SFT model's own samples -----------------------------
    t0 = time.perf_counter()
    train_samples = task.sample_answers(model, tok, pref_prompts, n=size["samples"],
                                        seed=args.seed + 1)
    held_samples = task.sample_answers(model, tok, heldout_prompts, n=size["samples"],
                                       seed=args.seed + 2)
    train_rows = {"pairs": task.build_pairs(train_samples, rng),
                  "rankings": task.build_rankings(train_samples, rng, k=4)}
    held_rows = {"pairs": task.build_pairs(held_samples, rng),
                 "rankings": task.build_rankings(held_samples, rng, k=4)}
    files = {k: write_jsonl(work / f"{k}.jsonl", v) for k, v in train_rows.items()}
    held_files = {k: write_jsonl(work / f"heldout_{k}.jsonl", v) for k, v in held_rows.items()}
    counts = {k: len(v) for k, v in train_rows.items()}
    counts.update({f"heldout_{k}": len(v) for k, v in held_rows.items()})
    sample_share = task.rule_share(train_samples)
    print(f"stage 2: {size['samples']} samples x {len(pref_prompts)} prompts "
          f"({fmt(sample_share)} correct) -> {counts} ({time.perf_counter() - t0:.0f}s)",
          flush=True)
    hp, hc, hr = ([r[k] for r in held_rows["pairs"]] for k in ("prompt", "chosen", "rejected"))
    ref_c, ref_r = (task.sequence_logps(model, tok, hp, x) for x in (hc, hr))

    # -- stage 3: align, once per loss, then measure --------------------------------------
    results = []
    for name in args.losses:
        spec = LOSSES[name]
        config = AlignConfig(loss=spec["loss"], loss_kwargs=spec["loss_kwargs"],
                             learning_rate=spec["lr"], batch_size=args.batch_size,
                             max_steps=steps, warmup=0.05, max_length=64, seed=args.seed,
                             log_every=max(1, steps // 5), eval_batch_size=128)
        print(f"stage 3: {name} ({spec['loss']}, {spec['loss_kwargs']}, {steps} steps of "
              f"{args.batch_size} prompts, lr {spec['lr']})", flush=True)
        t0 = time.perf_counter()
        res = align(str(sft_dir), str(files[spec["data"]]), config=config,
                    output_dir=work / "runs" / name,
                    validation=None if args.no_trainer_val else str(held_files[spec["data"]]),
                    progress=False)
        train_time = time.perf_counter() - t0
        aligned = AutoModelForCausalLM.from_pretrained(work / "runs" / name,
                                                       dtype=torch.float32).eval()
        after = task.rule_share(task.sample_answers(aligned, tok, eval_prompts,
                                                    n=size["eval_samples"], seed=eval_seed))
        pol_c, pol_r = (task.sequence_logps(aligned, tok, hp, x) for x in (hc, hr))
        kw = spec["loss_kwargs"]
        acc = pair_accuracy(implicit_rewards(name, kw, pol_c, ref_c),
                            implicit_rewards(name, kw, pol_r, ref_r))
        acc_before = pair_accuracy(implicit_rewards(name, kw, ref_c, ref_c),
                                   implicit_rewards(name, kw, ref_r, ref_r))
        row = {"loss": name, "registry_name": spec["loss"], "loss_kwargs": kw,
               "data": spec["data"], "pairs_or_rankings": counts[spec["data"]],
               "rule_share_before": before, "rule_share_after": after,
               "heldout_reward_accuracy": acc, "heldout_reward_accuracy_before": acc_before,
               "trainer_val_accuracy": (res.validation or {}).get("val_accuracy"),
               "trainer_final_train": res.metrics, "train_time_s": round(train_time, 1),
               "steps": res.step}
        results.append(row)
        print(f"  rule share {fmt(before)} -> {fmt(after)}; held-out implicit-reward "
              f"accuracy {fmt(acc_before)} -> {fmt(acc)} (trainer's val accuracy "
              f"{row['trainer_val_accuracy']}); {train_time:.0f}s", flush=True)

    # -- report ---------------------------------------------------------------------------
    total_time = time.perf_counter() - t_start
    print(f"\nSort-the-digits, {len(eval_prompts)} held-out prompts x {size['eval_samples']} "
          f"samples (temperature 1); implicit-reward accuracy on {len(hp)} held-out pairs; "
          "Wilson 95% intervals")
    head = (f"{'loss':<10} {'rule share: SFT':<22} {'-> aligned':<22} "
            f"{'reward acc.: SFT':<22} {'-> aligned':<22} {'train s':>7}")
    print(head + "\n" + "-" * len(head))
    for r in results:
        print(f"{r['loss']:<10} {fmt(r['rule_share_before']):<22} "
              f"{fmt(r['rule_share_after']):<22} "
              f"{fmt(r['heldout_reward_accuracy_before']):<22} "
              f"{fmt(r['heldout_reward_accuracy']):<22} {r['train_time_s']:>7.0f}")
    print(f"total {total_time:.0f}s (SFT {sft_time:.0f}s)")

    import transformers

    report = {
        "task": "sort 4-6 digits; rule: the answer is exactly the sorted list",
        "quick": args.quick, "seed": args.seed, "p_correct": args.p_correct,
        "p_systematic": args.p_systematic, "sizes": size,
        "model": MODEL, "sft": {"steps": size["sft_steps"], "batch_size": 64, "lr": 3e-3,
                                "final_loss": float(np.mean(sft_losses[-50:])),
                                "time_s": round(sft_time, 1)},
        "losses": {n: LOSSES[n] for n in args.losses},
        "alignment": {"steps": steps, "batch_size": args.batch_size,
                      "warmup": 0.05, "schedule": "linear decay"},
        "sampled_share_of_pref_data": sample_share, "counts": counts,
        "results": results, "total_time_s": round(total_time, 1),
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "transformers": transformers.__version__, "threads": args.threads},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")
    plot(results, args.json.with_suffix(".png"))


def plot(results: list[dict], path: Path) -> None:
    """Rule share before/after per loss with Wilson intervals (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(5, 3.2))
    x = np.arange(len(results))
    for off, key, label in ((-0.18, "rule_share_before", "SFT"),
                            (0.18, "rule_share_after", "aligned")):
        w = [r[key] for r in results]
        mid = np.array([v["share"] for v in w])
        err = np.array([[m - v["low"] for m, v in zip(mid, w)],
                        [v["high"] - m for m, v in zip(mid, w)]])
        ax.bar(x + off, mid, width=0.36, yerr=err, capsize=3, label=label)
    ax.set_xticks(x, [r["loss"] + (" (control)" if r["loss"] == "sft" else "")
                      for r in results])
    ax.set_ylim(0, 1)
    ax.set_ylabel("sampled answers obeying the rule")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
