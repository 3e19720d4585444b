"""prefkit's reward fine-tuning loop in two source trees (e.g. before and after a refactor),
each through that tree's own ``benchmarks/reward_finetune.py`` part-(b) contestant
(``_run_prefkit``: the same fixed batches of the HH harmless train split, 8 steps x 8 pairs,
max_length 128). Prints one JSON line: pairs/s over the loop and the process's CPU seconds.

    # interleave the two trees a few times on a quiet machine:
    git worktree add /tmp/before d4bd5d3
    PYTHONPATH=/tmp/before/src python benchmarks/reward_finetune_trees.py /tmp/before fp32 2
    PYTHONPATH=$PWD/src        python benchmarks/reward_finetune_trees.py $PWD fp32 2

Measured 2026-12-05 01:03 UTC (load 1.0-1.5), before the spine (d4bd5d3) vs after (5d58406),
fp32, 2 threads, three rounds each: 8.934 / 8.976 / 8.970 vs 8.952 / 8.976 / 8.662 pairs/s
(medians 8.970 vs 8.952: no regression).
"""
import argparse
import json
import os
import resource
import sys

tree = sys.argv[1]
sys.path.insert(0, os.path.join(tree, "benchmarks"))
import torch
import reward_finetune as RF
from prefkit.data.text import hh_harmless_split
torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
train, _ = hh_harmless_split(RF.HH)
args = argparse.Namespace(lr=5e-5, precision=sys.argv[2], attention="auto", no_buckets=False,
                          bucket_overhead=64)
steps, bs = 8, 8
pairs = RF._same_batches(train, bs * steps, seed=0)
r0 = resource.getrusage(resource.RUSAGE_SELF)
res = RF._run_prefkit(args, pairs, steps=steps, bs=bs, max_length=128, warmup=0.0,
                      out=__import__("pathlib").Path(f"/tmp/rfp_{os.path.basename(tree)}"))
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"tree": tree, "pairs_per_s": round(res["pairs_per_s"], 3),
                  "loop_s": round(res["loop_s"], 2),
                  "cpu_s_process": round(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime, 2),
                  "load": os.getloadavg()[0]}))
