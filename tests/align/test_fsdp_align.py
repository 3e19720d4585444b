"""prefkit.align with FSDP2 (accelerate's config: ``ACCELERATE_USE_FSDP=true FSDP_VERSION=2``,
as ``accelerate launch --use_fsdp --fsdp_version 2`` sets it): a real 2-process run (torchrun,
gloo on CPU) shards the weights (every decoder layer's and the root's parameters are DTensor
halves) and makes the same updates as one process with twice the gradient accumulation --
DPO with validation, KTO (its step pass and validation padded to equal passes per process)
and a LoRA adapter, over 1-prompt steps where process 1 has no prompt; the checkpoint holds
the full weights and optimizer state gathered in the one-process layout (compared with one
process's checkpoint); a run stopped and resumed from it equals an uninterrupted one; the
model folder loads with ``AutoModelForCausalLM.from_pretrained`` and holds the trained
weights; FSDP version 1 and DeepSpeed are refused with the fix. A model given as a folder
is loaded whole by process 0 only: process 1 builds it on the meta device and receives its
shards (never loads the model, peaks lower by most of it), a live reference likewise, and
the training equals one process's. Not run here: NCCL (no GPU) and CPU offload.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")
pytest.importorskip("torch.distributed.fsdp")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # importlib mode: the DDP test's data

from test_distributed_align import BASE, CONFIGS, PARAM_ATOL, STEPS, _rows, data_for

from prefkit.align.tiny import char_tokenizer, tiny_llama
from prefkit.align.trainer import AlignConfig, align

FSDP_ENV = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}
#: measured max |FSDP2 - one process| after 5 steps: weights 1.2e-7 (DPO), 2.3e-7 (KTO),
#: 1.5e-8 (LoRA); AdamW moments <= 7.5e-9 -- the DDP test's PARAM_ATOL (1e-5) holds for both

_SCRIPT = """
import os, sys, torch
sys.path.insert(0, {tests!r})
from test_distributed_align import BASE, CONFIGS, data_for
from prefkit.align.tiny import char_tokenizer, tiny_llama
from prefkit.align.trainer import AlignConfig, align
out = sys.argv[1]
tok = char_tokenizer()
rank = int(os.environ["RANK"])
for name, cfg in CONFIGS.items():
    data = data_for(name, tok)
    model = tiny_llama(len(tok))
    align(model, data, config=AlignConfig(**BASE, **cfg, grad_accum=2), validation=data,
          output_dir=f"{{out}}/{{name}}", progress=False)
    shards = {{n: (type(p).__name__, tuple(p.to_local().shape) if hasattr(p, "to_local")
                  else None, tuple(p.shape)) for n, p in model.named_parameters()}}
    torch.save(shards, f"{{out}}/{{name}}-shards-{{rank}}.pt")
cfg = AlignConfig(**BASE, **CONFIGS["dpo"], grad_accum=2)
data = data_for("dpo", tok)
first = align(tiny_llama(len(tok)), data, config=cfg, validation=data,
              output_dir=f"{{out}}/resumed", progress=False, stop_after=3)
assert not first.finished and first.step == 3
second = align(tiny_llama(len(tok)), data, config=cfg, validation=data,
               output_dir=f"{{out}}/resumed", progress=False, resume=True)
assert second.finished and second.step == {steps} and second.reference_cached
# FSDP version 1 and DeepSpeed: refused before the model is touched
from accelerate.state import AcceleratorState
for what, env in (("fsdp1", {{"FSDP_VERSION": "1"}}), ("deepspeed", {{"ACCELERATE_USE_DEEPSPEED": "true"}})):
    AcceleratorState._reset_state()
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        align(tiny_llama(len(tok)), data, config=cfg, output_dir=f"{{out}}/{{what}}",
              progress=False)
    except ValueError as e:
        open(f"{{out}}/{{what}}-{{rank}}.txt", "w").write(str(e))
    os.environ.clear()
    os.environ.update(saved)
"""


def _load_folder(folder: Path, name: str, base: Path | None = None) -> dict:
    """The saved folder as the user loads it: transformers (LoRA: peft on the base, the
    tiny model or the folder ``base``)."""
    from transformers import AutoModelForCausalLM

    if name == "lora":
        from peft import PeftModel

        tok = char_tokenizer()
        lm = tiny_llama(len(tok)) if base is None else AutoModelForCausalLM.from_pretrained(base)
        loaded = PeftModel.from_pretrained(lm, folder).state_dict()
        return {k.removeprefix("base_model.model."): v for k, v in loaded.items()}
    return AutoModelForCausalLM.from_pretrained(folder).state_dict()


def test_fsdp2_two_processes_equal_one_with_twice_the_accumulation(tmp_path):
    """torchrun --nproc_per_node 2, FSDP2 (gloo): 2 processes sharded x accumulation 2 ==
    1 process x 4, saved weights to 1e-5 after 5 steps, metrics alike; checkpoint's full
    optimizer state == one process's to 1e-5 (index-keyed, same layout); resumed ==
    uninterrupted; FSDP1 / DeepSpeed refused."""
    script = tmp_path / "two.py"
    script.write_text(_SCRIPT.format(tests=str(Path(__file__).parent), steps=STEPS))
    two = tmp_path / "two"
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node", "2", str(script), str(two)], check=True, timeout=600,
                   env={**os.environ, **FSDP_ENV, "OMP_NUM_THREADS": "1"})
    tok = char_tokenizer()
    start = tiny_llama(len(tok)).state_dict()
    for name, cfg in CONFIGS.items():
        # sharded: a decoder layer's and the root's (LM head) weights are halves on each process
        for r in (0, 1):
            shards = torch.load(two / f"{name}-shards-{r}.pt", weights_only=True)
            for key in ("model.layers.0.mlp.up_proj.weight", "lm_head.weight"):
                kind, local, full = next(v for k, v in shards.items() if k.endswith(key))
                half = (full[0] + 1) // 2 if r == 0 else full[0] // 2  # dim 0, rank 0 first
                assert kind == "DTensor" and local == (half, *full[1:]), (name, key, local, full)
        one = tiny_llama(len(tok))
        data = data_for(name, tok)
        align(one, data, config=AlignConfig(**BASE, **cfg, grad_accum=4), validation=data,
              output_dir=tmp_path / name, progress=False)
        mine = one.state_dict()
        got = _load_folder(two / name, name)  # the folder process 0 wrote from the shards
        moved = max(float((v - start[k] if k in start else v).abs().max())
                    for k, v in mine.items() if k in start or "lora_B" in k)
        assert moved > 1e-4, f"{name}: the run must change the weights"
        assert set(got) == set(mine)
        for k, v in mine.items():
            torch.testing.assert_close(got[k], v, atol=PARAM_ATOL, rtol=0, msg=k)
        # the checkpoint: full trainable weights and AdamW state, in one process's layout
        ck1 = torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)
        ck2 = torch.load(two / name / "checkpoint.pt", weights_only=True)
        assert set(ck2["model"]) == set(ck1["model"])
        for k, v in ck1["model"].items():
            torch.testing.assert_close(ck2["model"][k], v, atol=PARAM_ATOL, rtol=0, msg=k)
        o1, o2 = ck1["optimizer"], ck2["optimizer"]
        assert [g["params"] for g in o2["param_groups"]] == \
            [g["params"] for g in o1["param_groups"]]
        assert set(o2["state"]) == set(o1["state"])
        for i, s in o1["state"].items():
            for key in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(o2["state"][i][key], s[key], atol=PARAM_ATOL,
                                           rtol=1e-3, msg=f"{name} {i} {key}")
            assert float(o2["state"][i]["step"]) == float(s["step"]) == STEPS
        for kind in ("train", "val"):
            r1, r2 = _rows(tmp_path / name, kind), _rows(two / name, kind)
            assert len(r1) == len(r2) == (STEPS if kind == "train" else 1)
            for a, b in zip(r1, r2, strict=True):
                for key in ("loss", "margins", "accuracy", "kl", "grad_norm", "val_loss"):
                    if a.get(key) is not None:
                        assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), \
                            (name, kind, key)
    whole = _load_folder(two / "dpo", "dpo")
    resumed = _load_folder(two / "resumed", "dpo")
    for k, v in whole.items():
        torch.testing.assert_close(resumed[k], v, atol=0, rtol=0, msg=k)
    assert [r["loss"] for r in _rows(two / "resumed", "train")] == \
        [r["loss"] for r in _rows(two / "dpo", "train")]
    for r in (0, 1):
        assert "--fsdp_version 2" in (two / f"fsdp1-{r}.txt").read_text()
        text = (two / f"deepspeed-{r}.txt").read_text()  # installed: its default stage 2
        assert "DeepSpeed is not installed" in text or "ZeRO stage 3 only" in text
    assert not (two / "fsdp1").exists() and not (two / "deepspeed").exists()


_FOLDER_SCRIPT = """
import os, resource, sys, json, torch, transformers
sys.path.insert(0, {tests!r})
from test_distributed_align import BASE, CONFIGS, data_for
import prefkit.align.trainer as trainer
from prefkit.align.tiny import char_tokenizer
from prefkit.align.trainer import AlignConfig, align
from prefkit.processes import PreparedModel
out, tiny, big = sys.argv[1:4]
rank = int(os.environ["RANK"])
tok = char_tokenizer()
seen = {{"loads": 0, "built_on": [], "peak_mib": [], "tied": []}}
load = transformers.AutoModelForCausalLM.from_pretrained.__func__
def counted(cls, *args, **kwargs):  # every whole-model load of this process
    seen["loads"] += 1
    return load(cls, *args, **kwargs)
transformers.AutoModelForCausalLM.from_pretrained = classmethod(counted)
prepare = trainer.prepare_model
def spy(model, acc, **kwargs):  # the model each process shards: built on the meta device?
    seen["built_on"].append(sorted({{p.device.type for p in model.parameters()}}))
    return prepare(model, acc, **kwargs)
trainer.prepare_model = spy
load_full = PreparedModel.load_full
def measured(self, *args, **kwargs):  # the peak resident memory once the shards are filled
    load_full(self, *args, **kwargs)
    seen["peak_mib"].append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
PreparedModel.load_full = measured
setup = trainer._setup
def tied(*args, **kwargs):
    st = setup(*args, **kwargs)
    lm = st.model.get_base_model() if hasattr(st.model, "get_base_model") else st.model
    seen["tied"].append(lm.get_input_embeddings().weight is lm.get_output_embeddings().weight)
    if isinstance(st.live_ref, torch.nn.Module):  # a live reference: sharded too?
        w = st.live_ref.model.layers[0].mlp.up_proj.weight
        seen["reference"] = [type(w).__name__, list(w.to_local().shape), list(w.shape)]
    return st
trainer._setup = tied
torch_load = torch.load
def reads(f, *args, **kwargs):  # the files of a run this process reads (not collectives')
    if isinstance(f, (str, os.PathLike)):
        seen.setdefault("read", []).append(os.path.basename(f))
    return torch_load(f, *args, **kwargs)
torch.load = reads
data = data_for("dpo", tok)
align(big, data, config=AlignConfig(**{{**BASE, "max_steps": 1, "batch_size": 1}}),
      output_dir=f"{{out}}/big", progress=False)  # first: the high-water mark is its own
for name, cfg in {{**CONFIGS, "tdpo": {{"loss": "tdpo"}}}}.items():  # tdpo: a live reference
    data = data_for(name if name in CONFIGS else "dpo", tok)
    align(tiny, data, config=AlignConfig(**BASE, **cfg, grad_accum=2), validation=data,
          output_dir=f"{{out}}/{{name}}", progress=False)
cfg = AlignConfig(**BASE, **CONFIGS["dpo"], grad_accum=2)  # stopped and resumed from a folder
data = data_for("dpo", tok)
assert not align(tiny, data, config=cfg, validation=data, output_dir=f"{{out}}/resumed",
                 progress=False, stop_after=3).finished
assert align(tiny, data, config=cfg, validation=data, output_dir=f"{{out}}/resumed",
             progress=False, resume=True).finished
try:  # process 0 alone reads the checkpoint: its refusal reaches every process
    align(tiny, data, config=AlignConfig(**{{**BASE, "max_steps": 7}}, **CONFIGS["dpo"]),
          output_dir=f"{{out}}/resumed", progress=False, resume=True)
except ValueError as e:
    seen["refused"] = str(e)
open(f"{{out}}/seen-{{rank}}.json", "w").write(json.dumps(seen))
"""


def test_fsdp2_from_a_folder_loads_the_weights_on_the_main_process_only(tmp_path):
    """A model given as a folder (FSDP2, torchrun 2 x gloo): process 0 loads the weights
    once, every process builds the model it trains on the meta device, and the shards are
    filled from process 0 (prefkit.processes.PreparedModel.load_full) -- so process 1 loads
    nothing (transformers' from_pretrained is never called there) and its peak memory when
    the shards are filled is lower than process 0's by most of the model (a 72 MiB model of
    8 layers: no tensor over 2 MiB, the largest that process 1 receives whole; measured 540
    vs 444 MiB; loading whole on both, as a model object is, they peak alike: the first
    forward passes that follow add ~100 MiB of their own on both). Tied embeddings stay one
    parameter. A live reference (TDPO's, a second copy from the folder) is built, sharded
    and filled the same way. A run stopped and resumed equals the uninterrupted one; only
    process 0 reads the checkpoint. The trained weights equal one process's with twice the
    accumulation to the same 1e-5 as the object path (DPO with validation, KTO, LoRA, TDPO;
    the big model one step)."""
    from transformers import AutoModelForCausalLM

    tok = char_tokenizer()
    tiny, big = tmp_path / "m" / "tiny", tmp_path / "m" / "big"
    for folder, model in ((tiny, tiny_llama(len(tok))), (big, tiny_llama(
            len(tok), hidden_size=512, intermediate_size=1024, num_hidden_layers=8,
            num_attention_heads=8, num_key_value_heads=4, tie_word_embeddings=True))):
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
    big_mib = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(big).parameters()
                  ) * 4 / 2**20
    assert big_mib > 70
    script = tmp_path / "folder.py"
    script.write_text(_FOLDER_SCRIPT.format(tests=str(Path(__file__).parent)))
    two = tmp_path / "two"
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node", "2", str(script), str(two), str(tiny), str(big)],
                   check=True, timeout=600, env={**os.environ, **FSDP_ENV, "OMP_NUM_THREADS": "1"})
    seen = [json.loads((two / f"seen-{r}.json").read_text()) for r in (0, 1)]
    runs = 4 + len(CONFIGS)
    # process 0: each run's model, TDPO's live reference (a second copy) and the refused
    # resume's model (loaded before the checkpoint is read); process 1: none
    assert seen[0]["loads"] == runs + 2 and seen[1]["loads"] == 0, seen
    assert seen[0]["built_on"] == seen[1]["built_on"] == [["meta"]] * runs
    # resuming, process 0 alone reads the checkpoint (its weights and AdamW state reach the
    # others' shards by broadcast); the reference cache also reaches them from process 0
    assert seen[0]["read"].count("checkpoint.pt") == 2 and "read" not in seen[1], seen
    for r in (0, 1):
        assert "different config (fields ['grad_accum', 'max_steps'])" in seen[r]["refused"]
    for r in (0, 1):  # the live reference is sharded like the model: a half on each process
        assert seen[r]["reference"] == ["DTensor", [32, 32], [64, 32]], seen[r]
    assert seen[0]["tied"][0] and seen[1]["tied"][0]  # the big model ties its embeddings
    gap = seen[0]["peak_mib"][0] - seen[1]["peak_mib"][0]
    print(f"peak RSS when the shards are filled, process 0 / 1: {seen[0]['peak_mib'][0]:.0f} / {seen[1]['peak_mib'][0]:.0f} MiB")
    assert gap > 0.6 * big_mib, (seen[0]["peak_mib"], seen[1]["peak_mib"], big_mib)
    # the same training as one process with twice the accumulation
    cases = {"big": (big, {"loss": "dpo", "max_steps": 1, "batch_size": 1}, 2)}
    cases.update({name: (tiny, cfg, 4) for name, cfg in CONFIGS.items()})
    cases["tdpo"] = (tiny, {"loss": "tdpo"}, 4)
    for name, (folder, cfg, accum) in cases.items():
        data = data_for(name if name in CONFIGS else "dpo", tok)
        config = AlignConfig(**{**BASE, **cfg}, grad_accum=accum)
        align(str(folder), data, config=config, validation=None if name == "big" else data,
              output_dir=tmp_path / name, progress=False)
        mine = _load_folder(tmp_path / name, name, folder)
        got = _load_folder(two / name, name, folder)
        start = _load_folder(folder, "dpo", folder)
        assert set(got) == set(mine)
        moved = max(float((v - start[k] if k in start else v).abs().max())
                    for k, v in mine.items() if k in start or "lora_B" in k)
        assert moved > 1e-4, f"{name}: the run must change the weights"
        for k, v in mine.items():
            torch.testing.assert_close(got[k], v, atol=PARAM_ATOL, rtol=0, msg=f"{name} {k}")
    whole, resumed = _load_folder(two / "dpo", "dpo"), _load_folder(two / "resumed", "dpo")
    for k, v in whole.items():
        torch.testing.assert_close(resumed[k], v, atol=0, rtol=0, msg=k)
