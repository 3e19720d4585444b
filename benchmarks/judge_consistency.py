"""The consistency of the recorded LLM judges in ``shared/data/judge``, and what the repairs do
to their agreement with people.

1. **Consistency** of every recorded judge (``prefkit judge analyze``'s numbers): four
   judges x 1,200 MT-Bench pairs in both orders with single grades (mt_bench_repro), GPT-4
   pair-v2 (FastChat), AlpacaEval's weighted GPT-4-turbo (one order, recovered from its
   token log-probabilities), PandaLM's GPT-3.5 and PandaLM-7B (one order).
2. **Definitions side by side**: the non-transitivity ratio as the issue defines it
   (triads with an inconsistent pair left out and counted) and as TrustJudge's code computes
   its consistency-only baseline (``NonTransitivityCalculator.get_pairwise_result``: a pair
   whose two orders disagree is forced to "equal"); the same verdicts, two numbers.
3. **Repairs judged by people** (PandaLM's three annotators, majority of at least 2): the
   agreement of each PandaLM judge before and after the Bradley-Terry repair, on the same
   pairs, with the non-transitivity before and after.
4. **AlpacaEval's length-controlled win rate** of alpaca-7b against its package's own GLM
   (``length_controlled_minimal``; reference printed by alpaca_eval 0.6.6).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/judge_consistency.py`` (about 15 s on
2 shared cores; wall and CPU time printed per part).
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from shared_paths import SHARED

from prefkit.judge import (
    agreement,
    analyze,
    bradley_terry_repair,
    gold_from_annotations,
    judge_verdict,
    length_controlled_win_rate,
    non_transitivity,
    read_verdicts,
)
from prefkit.judge.consistency import consistent_verdict
from prefkit.judge.io import answer_lengths, with_lengths
from prefkit.judge.records import NOT_JUDGED, TIE, identity

JUDGE = SHARED / "data" / "judge"
#: alpaca_eval 0.6.6's get_length_controlled_winrate(glm_name="length_controlled_minimal")
#: on alpaca-7b_weighted_gpt4_turbo_annotations (see tests/judge/test_consistency.py)
ALPACA_REFERENCE = {"win_rate": 2.591450540223603, "length_controlled": 19.549396078011164}

def _gz(path: object) -> str:
    """A gzip file's text."""
    with gzip.open(path, "rt", encoding="utf-8") as f:  # type: ignore[call-overload]
        return f.read()



class Clock:
    def __init__(self, label: str) -> None:
        self.label = label

    def __enter__(self) -> Clock:  # noqa: PYI034
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        print(f"  [{self.label}: wall {time.perf_counter() - self.w:.2f} s, "
              f"CPU {time.process_time() - self.c:.2f} s]")


def pct(x: float | None) -> str:
    return "   —  " if x is None else f"{100 * x:5.1f}%"


def part1() -> None:
    print("1. consistency of the recorded judges")
    sources = [JUDGE / "mtbench_repro" / "judgments", JUDGE / "fastchat_gpt4_pair.jsonl.gz",
               JUDGE / "alpaca_eval" / "alpaca-7b_weighted_gpt4_turbo_annotations.json.gz",
               JUDGE / "pandalm" / "gpt-3.5-turbo-testset-v1.json",
               JUDGE / "pandalm" / "pandalm-7b-testset-v1.json"]
    print(f"  {'judge':34s} {'pairs':>6s} {'pos.cons':>8s} {'first':>7s} {'conflict':>8s} "
          f"{'NTR_3':>7s} {'NTR_4':>7s} {'longer':>7s}")
    with Clock("read + analyze, all files"):
        for src in sources:
            d = read_verdicts(src)
            if src.name == "judgments":  # mt_bench_repro's answers give the length bias
                d.verdicts = with_lengths(d.verdicts, answer_lengths(src.parent / "answers"))
            for r in analyze(d.verdicts, d.grades):
                j, c = r.to_dict(), r.counts
                print(f"  {r.judge[:34]:34s} {c.get('pairs', 0):6d} "
                      f"{pct(j['position_consistency']):>8s} {pct(j['first_position_rate']):>7s} "
                      f"{pct(j['conflict_ratio']):>8s} {pct(j['non_transitivity']):>7s} "
                      f"{pct(c.get('ntr_4')):>7s} {pct(c.get('prefers_longer')):>7s}")


def trustjudge_baseline_ntr(v):
    """NTR_3 with TrustJudge's consistency-only rule: orders that disagree -> a tie."""
    ia, ib = identity(v.ab, "ab"), identity(v.ba, "ba")
    forced = consistent_verdict(v)
    disagree = v.both_orders & (ia >= 0) & (ib >= 0) & (ia != ib)
    forced[disagree] = TIE
    ab = forced.copy()
    ba = identity(forced, "ba")
    ab[forced < 0], ba[forced < 0] = v.ab[forced < 0], v.ba[forced < 0]
    ba[v.ba == NOT_JUDGED] = NOT_JUDGED
    return non_transitivity(v.with_columns(ab=ab, ba=ba)).ratio


def part2() -> None:
    print("\n2. non-transitivity: the issue's definition vs TrustJudge's baseline rule")
    d = read_verdicts(JUDGE / "mtbench_repro" / "judgments")
    with Clock("both definitions, 4 judges"):
        for judge in d.verdicts.judges():
            v = d.verdicts.of_judge(judge)
            ours = non_transitivity(v)
            forced = trustjudge_baseline_ntr(v)
            print(f"  {judge:22s} left out: {pct(ours.ratio.value)} of "
                  f"{ours.ratio.total:5,d} triads   forced tie (TrustJudge): "
                  f"{pct(forced.value)} of {forced.total:,}")


def part3() -> None:
    print("\n3. repairs judged by PandaLM's annotators (majority of >= 2 of 3)")
    from prefkit.data.formats import read_format

    _, parsed, _ = read_format(JUDGE / "pandalm" / "testset-v1.json", ("annotations",))
    gold = gold_from_annotations(parsed.data)
    with Clock("Bradley-Terry repair + agreement, 2 judges"):
        for name in ("gpt-3.5-turbo-testset-v1.json", "pandalm-7b-testset-v1.json"):
            v = read_verdicts(JUDGE / "pandalm" / name).verdicts
            before = judge_verdict(v)
            repaired = bradley_terry_repair(v)
            after = judge_verdict(repaired)
            same = before >= 0
            a0 = agreement(v.select(same), gold, before[same])
            a1 = agreement(v.select(same), gold, after[same])
            print(f"  {v.judge[0]:14s} on {a0.with_ties.total} pairs: agreement "
                  f"{pct(a0.with_ties.value)} -> {pct(a1.with_ties.value)} (ties a label), "
                  f"{pct(a0.without_ties.value)} -> {pct(a1.without_ties.value)} (without "
                  f"ties); NTR_3 {pct(non_transitivity(v, orders='any').ratio.value)} -> "
                  f"{pct(non_transitivity(repaired).ratio.value)}")


def part4() -> None:
    print("\n4. AlpacaEval length-controlled win rate of alpaca-7b (minimal GLM)")
    rows = json.loads(_gz(JUDGE / "alpaca_eval" /
                               "alpaca-7b_weighted_gpt4_turbo_annotations.json.gz"))
    pref = np.array([(1.5 if r["preference"] == 0 else r["preference"]) - 1 for r in rows])
    with Clock("GLM fit (5-fold CV)"):
        r = length_controlled_win_rate(pref, [len(x["output_2"]) for x in rows],
                                       [len(x["output_1"]) for x in rows])
    print(f"  prefkit: win rate {r.win_rate:.12f}, LC {r.length_controlled:.12f}")
    print(f"  alpaca_eval 0.6.6: win rate {ALPACA_REFERENCE['win_rate']:.12f}, "
          f"LC {ALPACA_REFERENCE['length_controlled']:.12f}")
    print(f"  ratio prefkit / alpaca_eval LC: "
          f"{r.length_controlled / ALPACA_REFERENCE['length_controlled']:.12f}")


if __name__ == "__main__":
    part1()
    part2()
    part3()
    part4()
