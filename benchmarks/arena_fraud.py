"""Vote rigging in a simulated arena: do prefkit.arena.integrity's checks find the riggers,
and how far does the rigged model move with and without their flags?

Honest voters vote Bradley-Terry on the real strengths of the Chatbot Arena models (the
fit of the 1.67M-vote counts of 2024-08-14, the ``--models`` most-voted models), with ties
at the real tie rate, on uniformly random pairs, taking lognormal seconds (median 20 s) per
vote. Planted, at a few percent of the votes:

- ``favour``: voters who vote for one mid-ranked target whenever it is shown, and only
  keep battles that show it (abandoning a battle costs nothing); human-like timing;
- ``collude``: a group that does the same for a second target and also votes against its
  neighbours in the ranking when they meet others; human-like timing;
- ``random``: coin-flip voters (scripts), 1 s per vote;

The checks (``sequential_test`` = FastChat's outlier_detect, ``favouritism``, ``bot_timing``)
flag voters; a flagged voter's votes are set aside. Reported: precision and recall per voter
and per vote for each check and their union, and each target's rank among the models with
all votes, with honest votes only, and with the flagged voters' votes set aside.

Usage:
    python benchmarks/arena_fraud.py                 # ~1 minute on 2 cores
    python benchmarks/arena_fraud.py --honest 2000 --json benchmarks/_work/arena_fraud.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

from prefkit.arena.integrity import (
    VoteTable,
    bot_timing,
    favouritism,
    sequential_test,
)


def arena_strengths(n_models: int) -> tuple[tuple[str, ...], np.ndarray, float]:
    """Names and Bradley-Terry scores of the most-voted models, and the tie rate."""
    from prefkit.data.readers import read_votes
    from prefkit.rank import fit_bradley_terry

    counts = read_votes(C.ARENA_COUNTS).votes
    lb = fit_bradley_terry(counts)
    per_item = np.zeros(counts.n_items)
    tot = counts.counts.sum(1)
    np.add.at(per_item, counts.i, tot)
    np.add.at(per_item, counts.j, tot)
    keep = np.argsort(-per_item)[:n_models]
    tie_rate = float(counts.counts[:, 2:].sum() / counts.counts.sum())
    return tuple(counts.items.names[k] for k in keep), lb.scores[keep], tie_rate


def simulate(names, s, tie_rate, rng, *, honest, per_voter, favour, collude, random_voters):
    n = len(names)
    order = np.argsort(-s)
    target_f = int(order[n // 2])  # a mid-ranked model
    target_c = int(order[n // 2 + 3])
    rivals_c = {int(x) for x in order[n // 2:n // 2 + 6] if x != target_c}
    rows = []  # (a, b, outcome, voter, seconds, kind)

    def honest_vote(a, b):
        if rng.random() < tie_rate:
            return 2
        return 0 if rng.random() < 1 / (1 + np.exp(-(s[a] - s[b]))) else 1

    def pair(first=None):
        a = int(rng.integers(n)) if first is None else first
        b = int(rng.integers(n - 1))
        b += b >= a
        return (a, b) if rng.random() < 0.5 else (b, a)

    for v in range(honest):
        for _ in range(per_voter):
            a, b = pair()
            rows.append((a, b, honest_vote(a, b), f"honest-{v}", rng.lognormal(3.0, 0.6), "honest"))
    for v in range(favour):
        for _ in range(per_voter):
            a, b = pair(target_f)
            rows.append((a, b, 0 if a == target_f else 1, f"favour-{v}",
                         rng.lognormal(3.0, 0.6), "favour"))
    for v in range(collude):
        for _ in range(per_voter):
            if rng.random() < 0.7:
                a, b = pair(target_c)
                out = 0 if a == target_c else 1
            else:
                a, b = pair(int(rng.choice(sorted(rivals_c))))
                out = 1 if a in rivals_c else 0
            rows.append((a, b, out, f"collude-{v}", rng.lognormal(3.0, 0.6), "collude"))
    for v in range(random_voters):
        for _ in range(per_voter):
            a, b = pair()
            rows.append((a, b, int(rng.random() < 0.5), f"random-{v}", 1.0, "random"))
    rows = [rows[k] for k in rng.permutation(len(rows))]
    a, b, o, voter, secs, kind = zip(*rows)
    t = VoteTable(tuple(names), np.asarray(a, np.int64), np.asarray(b, np.int64),
                  np.asarray(o, np.int64), np.asarray(voter, object), np.asarray(secs, float))
    return t, np.asarray(kind), {"favour": target_f, "collude": target_c}


def scores_of(t: VoteTable, keep: np.ndarray) -> np.ndarray:
    from prefkit.rank import fit_bradley_terry

    return fit_bradley_terry(t.counts(keep), prior=1.0).scores


def pr(flagged: set, truth: set, t: VoteTable) -> dict:
    tp = len(flagged & truth)
    vote_flag = np.isin(t.voter, list(flagged))
    vote_bad = np.isin(t.voter, list(truth))
    vtp = int((vote_flag & vote_bad).sum())
    return {"voters_flagged": len(flagged),
            "voter_precision": tp / len(flagged) if flagged else float("nan"),
            "voter_recall": tp / len(truth) if truth else float("nan"),
            "vote_precision": vtp / int(vote_flag.sum()) if vote_flag.any() else float("nan"),
            "vote_recall": vtp / int(vote_bad.sum()) if vote_bad.any() else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=40)
    ap.add_argument("--honest", type=int, default=1000)
    ap.add_argument("--per-voter", type=int, default=30)
    ap.add_argument("--favour", type=int, default=10)
    ap.add_argument("--collude", type=int, default=10)
    ap.add_argument("--random", type=int, default=10)
    ap.add_argument("--seed", type=int, default=C.SEED)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    names, s, tie_rate = arena_strengths(args.models)
    t, kind, targets = simulate(names, s, tie_rate, rng, honest=args.honest,
                                per_voter=args.per_voter, favour=args.favour,
                                collude=args.collude, random_voters=args.random)
    voters_by_kind = {k: set(np.unique(t.voter[kind == k])) for k in np.unique(kind)}
    bad = set().union(*(v for k, v in voters_by_kind.items() if k != "honest"))
    rigging = voters_by_kind["favour"] | voters_by_kind["collude"]
    checks = {
        "sequential (FastChat outlier_detect)": {v for v, r in sequential_test(t).items()
                                                 if r["flagged"]},
        "favouritism": set(favouritism(t)),
        "bot timing": set(bot_timing(t)),
    }
    checks["union"] = set().union(*checks.values())
    n_votes = len(t)
    print(f"{n_votes:,} votes: {args.honest} honest voters, {args.favour} favour, "
          f"{args.collude} collude, {args.random} random, {args.per_voter} votes each; "
          f"{args.models} most-voted Arena models, tie rate {tie_rate:.3f}")
    print(f"planted votes: {int((kind != 'honest').sum()):,} "
          f"({(kind != 'honest').mean():.1%}); targets: favour -> {names[targets['favour']]}, "
          f"collude -> {names[targets['collude']]}")
    print(f"\n{'check':40s} {'flagged':>8s} {'voter P':>8s} {'voter R':>8s} {'vote P':>8s} "
          f"{'vote R':>8s}   recall by kind (favour/collude/random)")
    result: dict = {"checks": {}, "movement": {}}
    for name, flagged in checks.items():
        m = pr(flagged, bad, t)
        by_kind = "/".join(f"{len(flagged & voters_by_kind[k]) / max(1, len(voters_by_kind[k])):.2f}"
                           for k in ("favour", "collude", "random"))
        print(f"{name:40s} {m['voters_flagged']:8d} {m['voter_precision']:8.3f} "
              f"{m['voter_recall']:8.3f} {m['vote_precision']:8.3f} {m['vote_recall']:8.3f}"
              f"   {by_kind}")
        result["checks"][name] = {**m, "recall_by_kind": by_kind}
    honest_only = kind == "honest"
    flagged_keep = ~np.isin(t.voter, list(checks["union"]))
    variants = {"all votes": np.ones(n_votes, bool), "honest only (truth)": honest_only,
                "flagged set aside": flagged_keep}
    ranks = {}
    for label, keep in variants.items():
        sc = scores_of(t, keep)
        r = np.argsort(np.argsort(-sc)) + 1
        ranks[label] = {k: int(r[targets[k]]) for k in targets}
        ranks[label]["rating"] = {k: round(float(C.ELO_SCALE * (sc[targets[k]] - sc.mean())
                                                 + 1000), 1) for k in targets}
    print(f"\n{'rank of the rigged model':28s} " + " ".join(f"{v:>22s}" for v in variants))
    for k in targets:
        print(f"{k + ' (' + names[targets[k]][:18] + ')':28s} "
              + " ".join(f"{ranks[v][k]:>12d} ({ranks[v]['rating'][k]:7.1f})" for v in variants))
    result["movement"] = ranks
    result["rigging_voters_caught"] = len(checks["union"] & rigging)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"\n{wall:.1f} s wall, {cpu:.1f} s CPU")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         **result}, indent=2, default=str))


if __name__ == "__main__":
    main()
