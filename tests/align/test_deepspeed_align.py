"""prefkit.align with DeepSpeed ZeRO-3 (accelerate's config: ``ACCELERATE_USE_DEEPSPEED=true
ACCELERATE_DEEPSPEED_ZERO_STAGE=3``, as ``accelerate launch --use_deepspeed --zero_stage 3``
sets it; here with ``ACCELERATE_DEEPSPEED_CONFIG_FILE`` naming a DeepSpeed config whose
``stage3_param_persistence_threshold`` is 0, so that even the tiny model's small tensors are
partitioned): a real 2-process run (torchrun, gloo on CPU) trains through DeepSpeed's engine
-- every weight partitioned (each process holds half of each, the LM head's too, which the
log-prob engine uses outside the head's forward) -- and makes the same updates as one
process with twice the gradient accumulation (DPO with validation, KTO, LoRA), over 1-prompt
steps where process 1 has no prompt; the gradient norm before clipping and the losses alike;
the checkpoint holds the full weights and AdamW state gathered in the one-process layout
(compared with one process's checkpoint); a run stopped and resumed from it equals an
uninterrupted one bit for bit; the model folder loads with
``AutoModelForCausalLM.from_pretrained``. A model given as a folder with tied embeddings,
with a cached and a live reference (TDPO), trains the same as one process too.
ZeRO stage 2, offload, accelerate's mixed precision and ``torch_compile`` are refused
with the fix. Skipped when DeepSpeed is not installed (it does not come with prefkit). Not
run here: NCCL, and the first run on a machine also JIT-builds DeepSpeed's CPU shared-memory
collective (~2 min with a C++ compiler; cached in ~/.cache/torch_extensions).
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
pytest.importorskip("deepspeed")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # importlib mode: the DDP test's data

from test_distributed_align import (
    BASE,
    CONFIGS,
    PARAM_ATOL,
    STEPS,
    _rows,
    check_same_run,
    data_for,
    load_folder,
)

from prefkit.align.tiny import char_tokenizer, tiny_llama
from prefkit.align.trainer import AlignConfig, align

#: measured max |ZeRO-3 - one process| after 5 steps: weights 1.8e-7 (DPO), 2.5e-7 (KTO),
#: 2.2e-8 (LoRA); AdamW moments <= 7.5e-9 -- the DDP test's PARAM_ATOL (1e-5) holds for both

#: DeepSpeed's config for the test: ZeRO-3, and every tensor partitioned (the default
#: threshold, 1e5 elements, would keep all of the tiny model's tensors whole on each process)
DS_CONFIG = {"zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
             "gradient_accumulation_steps": "auto", "gradient_clipping": "auto",
             "train_micro_batch_size_per_gpu": "auto", "train_batch_size": "auto"}

_SCRIPT = """
import json, os, sys, torch
sys.path.insert(0, {tests!r})
from test_distributed_align import BASE, CONFIGS, data_for
import prefkit.align.trainer as trainer
from prefkit.align.tiny import char_tokenizer, tiny_llama
from prefkit.align.trainer import AlignConfig, align
out = sys.argv[1]
tok = char_tokenizer()
rank = int(os.environ["RANK"])
seen = {{}}
setup = trainer._setup
def spy(*args, **kwargs):  # what each process holds of the weights once the engine runs
    st = setup(*args, **kwargs)
    seen["engine"] = type(st.prepared.engine).__name__
    seen["local"] = {{n: [int(p.ds_tensor.numel()), int(p.ds_numel), int(p.numel())]
                     for n, p in st.model.named_parameters()}}
    return st
trainer._setup = spy
for name, cfg in CONFIGS.items():
    data = data_for(name, tok)
    model = tiny_llama(len(tok))
    align(model, data, config=AlignConfig(**BASE, **cfg, grad_accum=2), validation=data,
          output_dir=f"{{out}}/{{name}}", progress=False)
    open(f"{{out}}/{{name}}-seen-{{rank}}.json", "w").write(json.dumps(seen))
cfg = AlignConfig(**BASE, **CONFIGS["dpo"], grad_accum=2)
data = data_for("dpo", tok)
first = align(tiny_llama(len(tok)), data, config=cfg, validation=data,
              output_dir=f"{{out}}/resumed", progress=False, stop_after=3)
assert not first.finished and first.step == 3
second = align(tiny_llama(len(tok)), data, config=cfg, validation=data,
               output_dir=f"{{out}}/resumed", progress=False, resume=True)
assert second.finished and second.step == {steps} and second.reference_cached
# what prefkit does not run: refused before the model is touched
from accelerate.state import AcceleratorState
refusals = {{"stage2": {{"ACCELERATE_DEEPSPEED_CONFIG_FILE": "", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}},
            "offload": {{"ACCELERATE_DEEPSPEED_CONFIG_FILE": "", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3",
                         "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "cpu"}},
            "amp": {{"ACCELERATE_MIXED_PRECISION": "bf16"}}}}
for what, env in refusals.items():
    AcceleratorState._reset_state()
    saved = dict(os.environ)
    os.environ.update(env)
    if env.get("ACCELERATE_DEEPSPEED_CONFIG_FILE") == "":
        del os.environ["ACCELERATE_DEEPSPEED_CONFIG_FILE"]
    try:
        align(tiny_llama(len(tok)), data, config=cfg, output_dir=f"{{out}}/{{what}}",
              progress=False)
    except ValueError as e:
        open(f"{{out}}/{{what}}-{{rank}}.txt", "w").write(str(e))
    os.environ.clear()
    os.environ.update(saved)
AcceleratorState._reset_state()
try:  # torch.compile would trace DeepSpeed's hooks
    align(tiny_llama(len(tok)), data, config=AlignConfig(**BASE, torch_compile=True),
          output_dir=f"{{out}}/compiled", progress=False)
except ValueError as e:
    open(f"{{out}}/compiled-{{rank}}.txt", "w").write(str(e))
"""


def test_zero3_two_processes_equal_one_with_twice_the_accumulation(tmp_path):
    """torchrun --nproc_per_node 2, ZeRO-3 (gloo): 2 processes partitioned x accumulation 2
    == 1 process x 4, saved weights to 1e-5 after 5 steps (the DDP test's PARAM_ATOL),
    losses and gradient norms alike; checkpoint's full AdamW state == one process's
    (index-keyed, same layout); resumed == uninterrupted; stage 2 / offload refused."""
    ds_config = tmp_path / "ds_config.json"
    ds_config.write_text(json.dumps(DS_CONFIG))
    script = tmp_path / "two.py"
    script.write_text(_SCRIPT.format(tests=str(Path(__file__).parent), steps=STEPS))
    two = tmp_path / "two"
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node", "2", str(script), str(two)], check=True, timeout=900,
                   env={**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_DEEPSPEED": "true",
                        "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(ds_config)})
    tok = char_tokenizer()
    start = tiny_llama(len(tok)).state_dict()
    for name, cfg in CONFIGS.items():
        # partitioned: each process holds half of every trainable and frozen weight
        for r in (0, 1):
            seen = json.loads((two / f"{name}-seen-{r}.json").read_text())
            assert seen["engine"] == "DeepSpeedEngine"
            for key in ("model.layers.0.mlp.up_proj.weight", "lm_head.weight"):
                local, full, gathered = next(v for k, v in seen["local"].items()
                                             if k.endswith(key))
                assert gathered == 0 and local == (full + 1) // 2, (name, key, local, full)
        one = tiny_llama(len(tok))
        data = data_for(name, tok)
        align(one, data, config=AlignConfig(**BASE, **cfg, grad_accum=4), validation=data,
              output_dir=tmp_path / name, progress=False)
        mine = one.state_dict()
        # the folder process 0 wrote, gathered, its checkpoint and metrics
        got = check_same_run(tmp_path, two, name, mine, start, (
            "loss", "margins", "accuracy", "kl", "grad_norm", "lr", "val_loss"))
        if name != "lora":  # the LM head (used outside its forward) trained like the rest
            assert float((got["lm_head.weight"] - start["lm_head.weight"]).abs().max()) > 1e-4
    # resumed from the gathered checkpoint (weights and AdamW state broadcast back into the
    # partitions): the same run, bit for bit
    whole = load_folder(two / "dpo", "dpo")
    resumed = load_folder(two / "resumed", "dpo")
    for k, v in whole.items():
        torch.testing.assert_close(resumed[k], v, atol=0, rtol=0, msg=k)
    assert [r["loss"] for r in _rows(two / "resumed", "train")] == \
        [r["loss"] for r in _rows(two / "dpo", "train")]
    for r in (0, 1):
        assert "ZeRO stage 3 only" in (two / f"stage2-{r}.txt").read_text()
        assert "offload" in (two / f"offload-{r}.txt").read_text()
        assert "DeepSpeed ZeRO-3" in (two / f"compiled-{r}.txt").read_text()
        assert "--mixed_precision no" in (two / f"amp-{r}.txt").read_text()
    for what in ("stage2", "offload", "compiled", "amp"):
        assert not (two / what).exists(), what


_FOLDER_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_distributed_align import BASE, data_for
from prefkit.align.tiny import char_tokenizer
from prefkit.align.trainer import AlignConfig, align
out, folder = sys.argv[1:3]
data = data_for("dpo", char_tokenizer())
for loss in ("dpo", "tdpo"):
    align(folder, data, config=AlignConfig(**BASE, loss=loss, grad_accum=2), validation=data,
          output_dir=f"{{out}}/{{loss}}", progress=False)
"""


def test_zero3_from_a_folder_with_tied_embeddings_and_a_live_reference(tmp_path):
    """A model given as a folder whose LM head is its input embedding (tied: the one weight
    is used inside the embedding's forward and outside the head's), ZeRO-3 on 2 processes:
    DPO (cached reference) and TDPO (a live reference, a whole copy on each process) equal
    one process with twice the accumulation (measured max 1.4e-6 and 1.6e-6 after 5 steps),
    and the saved folder keeps the embeddings tied."""
    tok = char_tokenizer()
    folder = tmp_path / "tied"
    lm = tiny_llama(len(tok), tie_word_embeddings=True)
    lm.save_pretrained(folder)
    tok.save_pretrained(folder)
    ds_config = tmp_path / "ds_config.json"
    ds_config.write_text(json.dumps(DS_CONFIG))
    script = tmp_path / "folder.py"
    script.write_text(_FOLDER_SCRIPT.format(tests=str(Path(__file__).parent)))
    two = tmp_path / "two"
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node", "2", str(script), str(two), str(folder)], check=True,
                   timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1",
                                     "ACCELERATE_USE_DEEPSPEED": "true",
                                     "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(ds_config)})
    from transformers import AutoModelForCausalLM

    start = lm.state_dict()
    data = data_for("dpo", tok)
    for loss in ("dpo", "tdpo"):
        align(str(folder), data, config=AlignConfig(**BASE, loss=loss, grad_accum=4),
              validation=data, output_dir=tmp_path / loss, progress=False)
        mine = AutoModelForCausalLM.from_pretrained(tmp_path / loss).state_dict()
        saved = AutoModelForCausalLM.from_pretrained(two / loss)
        assert saved.lm_head.weight is saved.model.embed_tokens.weight
        got = saved.state_dict()
        assert float((mine["lm_head.weight"] - start["lm_head.weight"]).abs().max()) > 1e-4
        for k, v in mine.items():
            torch.testing.assert_close(got[k], v, atol=PARAM_ATOL, rtol=0, msg=f"{loss} {k}")
