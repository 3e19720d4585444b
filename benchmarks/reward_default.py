"""The default `prefkit reward train` against "the longer answer wins" and a frozen-MiniLM
logistic regression, on human preference labels it was not tuned on.

The default (``RewardTrainConfig()``): a linear Bradley-Terry head on
``features=("joint", "stats")`` -- the MiniLM embedding of prompt + response and eleven
surface statistics of the response (``prefkit.reward.features``) -- lr 1e-2, batch 64, up to
200 epochs, patience 10 on a seeded 10% validation split. ``--old`` adds the previous
default (``features=("joint",)``, the same optimiser settings) as a fourth column.

Held-out sets (every one with human labels; nothing here is tuned on the test part):

* **HH harmless** -- the fixed 20% split of ``hh_rlhf_harmless_base_test`` (1,850 train /
  462 test; :func:`prefkit.data.text.hh_harmless_split`).
* **PandaLM human** -- ``judge/pandalm/testset-v1.json``: the 894 pairs on which at least 2
  of the 3 annotators agree on a winner (ties and identical answers dropped), prompt =
  instruction + input. 5-fold cross-fitting **grouped by instruction** (fold = MD5 of the
  prompt mod 5): each pair is scored by a model trained on the four folds without its
  prompt, so the 894 predictions are all held out.
* **MT-Bench human** -- LLMBar's ``processed_mt-bench.json`` (200 pairs, expert labels),
  the same grouped 5-fold cross-fitting by question.
* **Transfer** -- a model trained on all of PandaLM scored on other data: MT-Bench human,
  FairEval (66), LLMBar Natural (100) and LLMBar Adversarial (319, built so that the worse
  answer looks better on the surface).

For each set: accuracy with Wilson 95% intervals (ties count 0.5); McNemar's exact test
(two-sided binomial test on the discordant pairs; a tie counts as wrong) of the default
against the better baseline on that set; accuracy on the pairs whose answers differ in
length by under 10% of the longer one (there "longer wins" is close to a coin flip, so a
length detector would score about 0.5); and training time per fit (embeddings come from the
cache at ``--cache-dir``; the first run embeds every text once, minutes on 2 CPU cores).

    .venv/bin/python benchmarks/reward_default.py            # ~5 min warm on 2 busy cores
    .venv/bin/python benchmarks/reward_default.py --old --json benchmarks/_work/reward_default.json
"""

from __future__ import annotations

import argparse
import collections
import functools
import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(__file__).resolve().parent / "_work"
DATA = ROOT.parent / "shared" / "data"
LLMBAR_ADV = ["llmbar_adversarial_neighbor", "llmbar_adversarial_gptinst",
              "llmbar_adversarial_gptout", "llmbar_adversarial_manual"]


# -- data ---------------------------------------------------------------------------------------
def _user(prompts):
    return [[{"role": "user", "content": p}] for p in prompts]


def llmbar(stems):
    from prefkit.data.text import TextPairs
    from prefkit.data.text_readers import read_preferences

    parts = [read_preferences(DATA / "reward" / "llmbar" / f"{s}.json", format="llmbar").data
             for s in stems]
    p = [x for q in parts for x in q.prompt]
    return TextPairs(p, [x for q in parts for x in q.chosen],
                     [x for q in parts for x in q.rejected], messages_prompt=_user(p))


def pandalm():
    """The pairs on which >= 2 of 3 annotators name a winner (identical responses left out),
    read through the format registry (``pandalm``)."""
    from prefkit.inspect import read_annotations

    path = DATA / "judge" / "pandalm" / "testset-v1.json"
    return read_annotations(path, format="pandalm").to_text_pairs(min_votes=2)


# -- statistics ---------------------------------------------------------------------------------
def credit(c, r):
    return np.where(c > r, 1.0, np.where(c == r, 0.5, 0.0))


def lengths(pairs):
    return (np.array([len(x) for x in pairs.chosen], float),
            np.array([len(x) for x in pairs.rejected], float))


def close_in_length(pairs):
    lc, lr = lengths(pairs)
    return np.abs(lc - lr) < 0.1 * np.maximum(np.maximum(lc, lr), 1)


def mcnemar(a, b):
    """Exact two-sided McNemar p of credit vectors a vs b (a tie counts as wrong)."""
    from scipy.stats import binomtest

    ra, rb = a == 1.0, b == 1.0
    n01, n10 = int(np.sum(ra & ~rb)), int(np.sum(~ra & rb))
    p = binomtest(n01, n01 + n10, 0.5).pvalue if n01 + n10 else 1.0
    return n01, n10, float(p)


def acc(x):
    from prefkit.reward.evaluate import wilson_interval

    if x.size == 0:
        return {"accuracy": float("nan"), "n": 0, "interval": [float("nan")] * 2}
    lo, hi = wilson_interval(float(x.mean()), int(x.size))
    return {"accuracy": float(x.mean()), "n": int(x.size), "interval": [lo, hi]}


def fmt(d):
    return f"{d['accuracy']:.3f} [{d['interval'][0]:.3f}, {d['interval'][1]:.3f}]"


# -- models -------------------------------------------------------------------------------------
class Models:
    def __init__(self, cache_dir: Path, old: bool) -> None:
        from prefkit.reward.backbones import FrozenEncoder
        from prefkit.reward.train import RewardTrainConfig

        self.cache_dir = cache_dir
        self.default = RewardTrainConfig()
        self.configs = {"default": self.default}
        if old:
            self.configs["old default (joint only)"] = RewardTrainConfig(features=("joint",))
        self.encoders = {f: FrozenEncoder(cache_dir=cache_dir, features=f)
                         for f in {c.features for c in self.configs.values()} | {("joint",)}}
        self.fit_seconds: dict[str, list[float]] = collections.defaultdict(list)
        self._feats: dict[tuple[int, tuple[str, ...]], object] = {}

    def feats(self, pairs, features):
        from prefkit.reward.heads import embed_pairs

        key = (id(pairs), features)
        if key not in self._feats:
            self._feats[key] = (pairs, embed_pairs(pairs, self.encoders[features], batch_size=64))
        return self._feats[key][1]

    def fit_predict(self, train, tests):
        """{model: [credit on each test set]} for the BT configs and logistic regression."""
        import torch

        from prefkit.reward.model import RewardModel
        from prefkit.reward.train import train_reward_model

        out = {}
        for name, cfg in self.configs.items():
            f = self.feats(train, cfg.features)
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                train_reward_model(cfg, d, f, progress=False)
                self.fit_seconds[name].append(time.perf_counter() - t0)
                model = RewardModel.load(d, cache_dir=self.cache_dir)
            res = []
            for t in tests:
                g = self.feats(t, cfg.features)
                with torch.no_grad():
                    res.append(credit(model.score_embeddings(g.chosen.numpy()),
                                      model.score_embeddings(g.rejected.numpy())))
            out[name] = res
        out["logistic regression (frozen MiniLM)"] = self.logistic(train, tests)
        return out

    def logistic(self, train, tests):
        """benchmarks/reward_hh.py's baseline: LogisticRegressionCV on e(x+y_c) - e(x+y_r)."""
        from sklearn.linear_model import LogisticRegressionCV

        f = self.feats(train, ("joint",))
        d = (f.chosen - f.rejected).numpy().astype(np.float64)
        x, y = np.concatenate([d, -d]), np.r_[np.ones(len(d)), np.zeros(len(d))]
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lr = LogisticRegressionCV(Cs=np.logspace(-3, 2, 11), cv=5, fit_intercept=False,
                                      scoring="neg_log_loss", max_iter=5000).fit(x, y)
        self.fit_seconds["logistic regression (frozen MiniLM)"].append(time.perf_counter() - t0)
        res = []
        for t in tests:
            g = self.feats(t, ("joint",))
            res.append(credit((g.chosen - g.rejected).numpy().astype(np.float64) @ lr.coef_[0],
                              np.zeros(len(t))))
        return res


def cross_fit(models, pairs, k=5):
    """Grouped k-fold: every pair scored by a model trained without its prompt."""
    fold = np.array([int(hashlib.md5(p.encode()).hexdigest(), 16) % k for p in pairs.prompt])
    out: dict[str, np.ndarray] = {}
    for i in range(k):
        tr, te = np.flatnonzero(fold != i), np.flatnonzero(fold == i)
        res = models.fit_predict(pairs.select(tr), [pairs.select(te)])
        for name, (c,) in res.items():
            out.setdefault(name, np.zeros(len(pairs)))[te] = c
    return out


def report(title, pairs, credits, rows_out):
    lc, lr = lengths(pairs)
    credits = {**credits, "longer answer wins": credit(lc, lr)}
    baselines = ["longer answer wins", "logistic regression (frozen MiniLM)"]
    best = max(baselines, key=lambda b: credits[b].mean())
    close = close_in_length(pairs)
    print(f"\n{title} (n={len(pairs)}; {int(close.sum())} pairs differ in length by <10%)")
    print(f"  {'':38s} {'accuracy [95% Wilson]':>24s}  {'<10% length diff':>24s}")
    entry = {"n": len(pairs), "n_close_length": int(close.sum()), "better_baseline": best}
    for name, c in credits.items():
        a, b = acc(c), acc(c[close])
        line = f"  {name:38s} {fmt(a):>24s}  {fmt(b):>24s}"
        entry[name] = {**a, "close_length": b}
        if name not in baselines:
            n01, n10, p = mcnemar(c, credits[best])
            line += f"   vs {best.split(' (')[0]}: {a['accuracy'] - credits[best].mean():+.3f}, " \
                    f"McNemar {n01}:{n10}, p={p:.3g}"
            entry[name] |= {"minus_better_baseline": a["accuracy"] - float(credits[best].mean()),
                            "mcnemar": {"default_only": n01, "baseline_only": n10, "p": p}}
        print(line)
    rows_out[title] = entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache-dir", type=Path, default=WORK / "embeddings")
    ap.add_argument("--old", action="store_true", help="also the previous default (joint only)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch

    import prefkit.runs as runs
    from prefkit.data.text import hh_harmless_split
    from prefkit.reward.features import text_stats

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    # package metadata is re-read at every checkpoint (0.1-0.5 s on a busy machine); read once
    runs.package_versions = functools.lru_cache(maxsize=None)(runs.package_versions)
    t_start = time.perf_counter()
    models = Models(args.cache_dir, args.old)
    print(f"default: {json.dumps({k: v for k, v in models.default.to_dict().items() if k in ('head', 'features', 'lr', 'epochs', 'batch_size', 'patience', 'weight_decay', 'val_fraction')})}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    rows: dict[str, object] = {}

    hh_train, hh_test = hh_harmless_split(DATA / "reward" / "hh_rlhf_harmless_base_test.jsonl.gz")
    t0 = time.perf_counter()
    text_stats(hh_train.prompt * 2, list(hh_train.chosen) + list(hh_train.rejected))
    t_stats = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = models.fit_predict(hh_train, [hh_test])
    report("HH harmless, fixed 20% split (trained on the 1,850 train pairs)", hh_test,
           {k: v[0] for k, v in res.items()}, rows)
    print(f"  time for the HH fits: {time.perf_counter() - t0:.1f} s; "
          f"stats block for 3,700 HH answers {t_stats:.2f} s")

    panda = pandalm()
    report("PandaLM human labels, 5-fold cross-fit grouped by instruction", panda,
           cross_fit(models, panda), rows)
    mtb = llmbar(["processed_mt-bench"])
    report("MT-Bench human labels, 5-fold cross-fit grouped by question", mtb,
           cross_fit(models, mtb), rows)

    tests = {"MT-Bench human": mtb, "FairEval": llmbar(["processed_faireval"]),
             "LLMBar Natural": llmbar(["llmbar_natural"]), "LLMBar Adversarial": llmbar(LLMBAR_ADV)}
    res = models.fit_predict(panda, list(tests.values()))
    for i, (name, t) in enumerate(tests.items()):
        report(f"transfer: trained on all of PandaLM, tested on {name}", t,
               {k: v[i] for k, v in res.items()}, rows)

    print("\ntraining time per fit (embeddings from the cache), median [min, max] seconds:")
    for name, ts in models.fit_seconds.items():
        print(f"  {name:38s} {np.median(ts):6.1f} [{min(ts):.1f}, {max(ts):.1f}] over {len(ts)} fits")
    print(f"whole benchmark: {time.perf_counter() - t_start:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": rows, "fit_seconds": models.fit_seconds},
                                        indent=2, default=float) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
