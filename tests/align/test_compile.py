"""``AlignConfig(torch_compile=True)``: every transformer layer compiled (torch.compile, dynamic
shapes), the rest eager; the same training as the eager run to float rounding.

The reference here is the eager run of the same seed, data and config: the compiled kernels
only add in another order, so losses and weights agree to float rounding (measured: losses
1.5e-7, weights 1.2e-6 after 4 steps of the tiny Llama at lr 5e-3, while the weights moved by
1.3e-2) -- a layer that computed anything else would be off by the size of the update. Packed rows of changing length (packing="prefix") run
through one dynamic graph: no recompile per step.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import copy  # noqa: E402

import pytest  # noqa: E402

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from prefkit.align.data import AlignmentData, tokenize_alignment  # noqa: E402
from prefkit.align.tiny import tiny_llama  # noqa: E402
from prefkit.align.trainer import AlignConfig, align  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _pairs(n: int = 8) -> AlignmentData:
    topics = ["tea", "rain", "maths", "a cat", "python", "bread", "the sea", "chess"]
    return AlignmentData("pairwise", [f"Q: help with {topics[i % 8]} please?"[: 14 + i]
                                      for i in range(n)],
                         [[" yes, gladly" + "!" * (i % 3), " no"] for i in range(n)])


def test_compiled_layers_train_as_the_eager_ones(tmp_path, tokenizer):
    data = tokenize_alignment(_pairs(), tokenizer, max_length=48)
    base = tiny_llama(len(tokenizer))
    cfg = AlignConfig(loss="dpo", learning_rate=5e-3, batch_size=2, max_steps=4, log_every=1,
                      max_length=48, eval_batch_size=8, packing="prefix", shuffle=False)
    runs = {}
    for compiled in (False, True):
        model = copy.deepcopy(base)
        runs[compiled] = (model, align(
            model, data, config=AlignConfig(**{**cfg.to_dict(), "torch_compile": compiled}),
            output_dir=tmp_path / f"run{int(compiled)}", tokenizer=tokenizer, progress=False))
    eager, compiled = runs[False], runs[True]
    layers = compiled[0].model.layers
    assert all(getattr(layer, "_compiled_call_impl", None) is not None for layer in layers)
    assert not any(getattr(layer, "_compiled_call_impl", None) for layer in eager[0].model.layers)
    le = [r["loss"] for r in eager[1].history if r["kind"] == "train"]
    lc = [r["loss"] for r in compiled[1].history if r["kind"] == "train"]
    assert len(le) == len(lc) == 4
    assert lc == pytest.approx(le, abs=1e-5)
    moved = max(float((p - q).abs().max()) for p, q in
                zip(eager[0].parameters(), base.parameters(), strict=True))
    gap = max(float((p - q).abs().max()) for p, q in
              zip(eager[0].parameters(), compiled[0].parameters(), strict=True))
    assert moved > 1e-3 and gap < 1e-4, (moved, gap)


def test_compile_is_refused_clearly_for_a_model_without_layer_classes():
    from prefkit.align._trainer_setup import compile_layers

    with pytest.raises(ValueError, match="names no transformer layer class"):
        compile_layers(torch.nn.Linear(2, 2))
