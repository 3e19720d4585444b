"""prefkit.rl on several processes: a real 2-process run (torchrun, gloo on CPU) makes the
same updates as one process sampling the same shards (``sample_shards=2``); the split, the
shard seeds, joining samples and the refusals by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prefkit.align.tiny import char_tokenizer, tiny_llama
from prefkit.rl.config import RLConfig
from prefkit.rl.distributed import (
    SHARD_STRIDE,
    Processes,
    check_supported,
    concat_samples,
    local_shards,
    shard_seed,
    shard_slices,
)
from prefkit.rl.generate import SamplingConfig, sample
from prefkit.rl.train import train_rl

PROMPTS = [f"{a}+{b}=" for a in range(4) for b in range(4)]
#: the runs compared: GRPO (dapo) with a KL to the reference, RLOO whitened over the batch
#: (its advantages need every process's rewards), online DPO (the mean over all pairs),
#: REINFORCE++ and PPO (advantages whitened over every process's tokens; PPO's value head),
#: GRPO with a process reward (dense step advantages per group)
CONFIGS = {
    "dapo": {"num_generations": 4, "batch_size": 4, "max_new_tokens": 4, "max_steps": 3,
             "learning_rate": 1e-3, "beta": 0.04, "seed": 3},
    "rloo": {"algo": "rloo", "num_generations": 4, "batch_size": 4, "max_new_tokens": 4,
             "max_steps": 3, "learning_rate": 1e-3, "normalize_advantages": True,
             "micro_batch_size": 3, "seed": 5},
    "online_dpo": {"algo": "online_dpo", "num_generations": 4, "batch_size": 4,
                   "max_new_tokens": 4, "max_steps": 3, "learning_rate": 1e-3, "seed": 7},
    "reinforce_pp": {"algo": "reinforce_pp", "num_generations": 2, "batch_size": 4,
                     "max_new_tokens": 4, "max_steps": 3, "learning_rate": 1e-3, "beta": 0.04,
                     "seed": 9},
    "ppo": {"algo": "ppo", "num_generations": 2, "batch_size": 4, "max_new_tokens": 4,
            "max_steps": 3, "learning_rate": 1e-3, "beta": 0.04, "seed": 11},
    "process": {"num_generations": 4, "batch_size": 4, "max_new_tokens": 6, "max_steps": 3,
                "learning_rate": 1e-3, "stop": ("\n\n",), "process": True, "seed": 17},
}
#: DAPO's refill: each process refills its own share, so no 1-process run to equal
REFILL = {"num_generations": 2, "batch_size": 4, "max_new_tokens": 4, "max_steps": 3,
          "learning_rate": 1e-3, "drop_zero_std_groups": True, "max_resample_rounds": 4,
          "seed": 13}
#: two processes sum their gradients in another order than one process: float32 rounding,
#: carried through three AdamW steps (measured: max 1.5e-8 dapo, 1.6e-7 rloo, 6.3e-8 online
#: DPO, 1.9e-7 PPO, 2.0e-7 with a process reward; a 1-process run with sample_shards=1 --
#: other draws -- differs by 4e-3)
PARAM_ATOL = 1e-5
#: REINFORCE++ whitens over every token, so its advantages sum to 0 and many gradients are
#: cancellation residues of float32 rounding size, which AdamW (dividing by |g| + 1e-8)
#: turns into visible updates: measured 6.9e-5 (lr 1e-3; other draws differ by 4e-3). Checked
#: after one step: the largest difference (4.8e-5) sits where |g| / (|g| + 1e-8) is 0.003 in
#: one run and 0.046 in the other (|g| ~ 1e-11..1e-10); entries with real gradients agree
#: to 9e-10
ATOL = {"reinforce_pp": 2e-4}


def step_digits(prompts, steps):
    """A process reward: each step's share of digits."""
    return [[sum(ch.isdigit() for ch in st) / max(len(st), 1) for st in s] for s in steps]


def char_reward(prompts, completions, **kwargs):
    """Pays for digits (TRL's signature): varied rewards from an untrained model."""
    return [float(sum(ch.isdigit() for ch in c)) for c in completions]


_SCRIPT = """
import json, sys, torch
sys.path.insert(0, {tests!r})
from test_distributed import CONFIGS, PROMPTS, REFILL, char_reward, step_digits
from prefkit.align.tiny import char_tokenizer, tiny_llama
from prefkit.rl.config import RLConfig
from prefkit.rl.train import train_rl
out = sys.argv[1]
for name, cfg in [*CONFIGS.items(), ("refill", REFILL)]:
    tok = char_tokenizer()
    model = tiny_llama(len(tok))
    res = train_rl(model, PROMPTS, char_reward, tokenizer=tok, output_dir=f"{{out}}/{{name}}",
                   config=RLConfig(**{{k: v for k, v in cfg.items() if k != "process"}}),
                   progress=False, process_reward=step_digits if "process" in cfg else None)
    rank = torch.distributed.get_rank()
    torch.save(model.state_dict(), f"{{out}}/{{name}}-weights{{rank}}.pt")
"""


def test_two_processes_equal_one_sampling_the_same_shards(tmp_path: Path) -> None:
    """torchrun --nproc_per_node 2 (gloo): each process samples and scores 2 of the step's 4
    prompts; the weights after 3 steps equal a 1-process run with sample_shards=2 on both
    processes, and process 0's metrics equal the 1-process run's."""
    script = tmp_path / "two.py"
    script.write_text(_SCRIPT.format(tests=str(Path(__file__).parent)))
    two = tmp_path / "two"
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node", "2", str(script), str(two)], check=True, timeout=600,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    for name, cfg in CONFIGS.items():
        tok = char_tokenizer()
        one = tiny_llama(len(tok))
        train_rl(one, PROMPTS, char_reward, tokenizer=tok, output_dir=tmp_path / name,
                 config=RLConfig(**{k: v for k, v in cfg.items() if k != "process"},
                                 sample_shards=2), progress=False,
                 process_reward=step_digits if "process" in cfg else None)
        w0 = torch.load(two / f"{name}-weights0.pt", weights_only=True)
        w1 = torch.load(two / f"{name}-weights1.pt", weights_only=True)
        start = tiny_llama(len(tok)).state_dict()
        moved = max(float((v - start[k]).abs().max()) for k, v in one.state_dict().items())
        assert moved > 1e-4, "the run must change the weights"
        for k, v in one.state_dict().items():
            torch.testing.assert_close(w0[k], w1[k], atol=0, rtol=0)  # processes agree
            torch.testing.assert_close(v, w0[k], atol=ATOL.get(name, PARAM_ATOL), rtol=0,
                                       msg=k)
        rows1 = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").open()]
        rows2 = [json.loads(x) for x in (two / name / "metrics.jsonl").open()]
        assert len(rows1) == len(rows2) == 3
        for a, b in zip(rows1, rows2, strict=True):
            assert a["episodes"] == b["episodes"]
            extra = {"dapo": ("kl",), "online_dpo": ("pairs", "margin"),
                     "ppo": ("kl", "value_loss", "value_mean"),
                     "process": ("process_reward",)}.get(name, ())
            for key in ("reward", "reward_std", "completion_length", "frac_reward_zero_std",
                        "loss", "grad_norm", *extra):
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (name, key)
        assert (two / name / "model.safetensors").is_file()  # process 0 wrote the model
    # the refill: processes agree; every step keeps 4 groups (2 a process) or says fewer
    w0 = torch.load(two / "refill-weights0.pt", weights_only=True)
    w1 = torch.load(two / "refill-weights1.pt", weights_only=True)
    for k, v in w0.items():
        torch.testing.assert_close(v, w1[k], atol=0, rtol=0)
    rows = [json.loads(x) for x in (two / "refill" / "metrics.jsonl").open()]
    assert len(rows) == 3
    for r in rows:
        assert r["groups_drawn"] == 4 * (r["resample_rounds"] + 1)  # both processes' groups
        assert r["groups_kept"] in (0, 2, 4) and r["groups_dropped"] <= r["groups_drawn"]
        assert r["groups_kept"] < 4 or r["frac_reward_zero_std"] == 0
    assert sum(r["resample_rounds"] for r in rows) > 0  # some step refilled
    assert rows[-1]["episodes"] == 2 * sum(r["groups_drawn"] for r in rows)


def test_shards_split_the_step_contiguously() -> None:
    assert shard_slices(8, 2) == [slice(0, 4), slice(4, 8)]
    assert local_shards(8, None, Processes(1, 2)) == [(1, slice(4, 8))]
    assert local_shards(8, 4, Processes(1, 2)) == [(2, slice(4, 6)), (3, slice(6, 8))]
    assert local_shards(8, None, Processes()) == [(0, slice(0, 8))]
    assert shard_seed(7, 0) == 7 and shard_seed(7, 2) == 7 + 2 * SHARD_STRIDE
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        local_shards(8, 3, Processes(0, 2))
    with pytest.raises(ValueError, match="cannot be split into 3"):
        shard_slices(8, 3)
    assert Processes(1, 2).local(torch.arange(6)).tolist() == [3, 4, 5]


def test_concat_samples_equals_the_shards() -> None:
    """Joined shards keep every shard's tokens, masks and log-probs (padding masked)."""
    tok = char_tokenizer()
    model = tiny_llama(len(tok))
    cfg = SamplingConfig(num_generations=2, max_new_tokens=5)
    a = sample(model, tok, ["1+1=", "12+3="], cfg, seed=1)
    b = sample(model, tok, ["123+456="], cfg, seed=2)
    c = concat_samples([a, b], tok.pad_token_id)
    assert c.num_prompts == 3 and c.texts == a.texts + b.texts
    for part, rows, prows in ((a, slice(0, 4), slice(0, 2)), (b, slice(4, 6), slice(2, 3))):
        lp, t = part.prompt_ids.shape[1], part.completion_ids.shape[1]
        assert torch.equal(c.prompt_ids[prows, -lp:], part.prompt_ids)
        assert not c.prompt_mask[prows, :-lp].any()
        assert torch.equal(c.completion_ids[rows, :t], part.completion_ids)
        assert torch.equal(c.mask[rows, :t], part.mask) and not c.mask[rows, t:].any()
        assert torch.equal(c.old_logps[rows, :t], part.old_logps)
        assert torch.equal(c.truncated[rows], part.truncated)


@pytest.mark.parametrize("cfg, match", [
    ({"batch_size": 3}, "multiple of the number of processes"),
])
def test_what_two_processes_refuse(cfg, match) -> None:
    with pytest.raises(ValueError, match=match):
        check_supported(RLConfig(**cfg), Processes(0, 2), process_reward=False)
    check_supported(RLConfig(**cfg), Processes(), process_reward=False)  # one: anything


def test_sample_shards_is_checked() -> None:
    with pytest.raises(ValueError, match="sample_shards must be >= 1 and divide"):
        RLConfig(batch_size=4, sample_shards=3)


def test_process_handling_is_shared_with_align() -> None:
    """rl and align join processes through one helper (prefkit.processes), not two copies."""
    import prefkit.align.trainer as align_trainer
    import prefkit.processes as shared
    import prefkit.rl.distributed as rl_distributed

    assert rl_distributed.Processes is shared.Processes is align_trainer.Processes
    assert rl_distributed.join_processes is shared.join_processes is align_trainer.join_processes
    procs = shared.Processes()
    t = torch.ones(3)
    assert procs.main and procs.all_reduce_(t) is t and procs.gather(5) == [5]  # no group
