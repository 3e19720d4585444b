"""prefkit.align.model: the model both training loops (align, rl) start from."""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from prefkit.align.model import is_peft_model, load_causal_lm, prepare_causal_lm


def _adapted(model: torch.nn.Module) -> set[str]:
    """The names of the modules that carry a LoRA adapter (their last name part)."""
    return {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if hasattr(m, "lora_A")}


def test_folder_loads_seeded_with_its_tokenizer_and_absolute_source(tiny_model_dir, tmp_path,
                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, source, tok, peft = prepare_causal_lm("tiny-llama", device="cpu", seed=3)
    assert source == os.path.abspath(tmp_path / "tiny-llama")
    assert tok is not None and tok.eos_token == "</s>"
    assert not peft and model.training
    assert next(model.parameters()).dtype == torch.float32


def test_lora_targets_peft_default_or_all_linear(tiny_model_dir):
    # None: peft's default for Llama (q_proj, v_proj); "all-linear": every linear layer
    # but the output head (what prefkit.rl asks for)
    default, *_ = prepare_causal_lm(tiny_model_dir, device="cpu", lora_r=2)
    every, _, _, peft = prepare_causal_lm(tiny_model_dir, device="cpu", lora_r=2,
                                          lora_target_modules="all-linear")
    named, *_ = prepare_causal_lm(tiny_model_dir, device="cpu", lora_r=2,
                                  lora_target_modules=("o_proj",))
    assert _adapted(default) == {"q_proj", "v_proj"}
    assert _adapted(every) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                               "up_proj", "down_proj"}
    assert _adapted(named) == {"o_proj"}
    assert peft and is_peft_model(every)


def test_adapter_weights_come_from_the_seed(tiny_model_dir):
    def lora_a(seed: int) -> torch.Tensor:
        model, *_ = prepare_causal_lm(tiny_model_dir, device="cpu", seed=seed, lora_r=2)
        return next(p for n, p in model.named_parameters() if "lora_A" in n).detach()

    assert torch.equal(lora_a(1), lora_a(1))
    assert not torch.equal(lora_a(1), lora_a(2))


def test_dropout_off_and_adapter_twice_refused(tiny_model):
    tiny_model.model.extra_dropout = torch.nn.Dropout(0.5)  # Llama has none of its own
    kept, *_ = prepare_causal_lm(tiny_model, device="cpu", disable_dropout=False)
    assert kept.model.extra_dropout.p == 0.5
    model, source, tok, peft = prepare_causal_lm(tiny_model, device="cpu", lora_r=2)
    assert source is None and tok is None and peft
    assert model.base_model.model.model.extra_dropout.p == 0.0
    with pytest.raises(ValueError, match="already has a peft adapter"):
        prepare_causal_lm(model, device="cpu", lora_r=2)


def test_a_file_or_unknown_name_is_refused(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="is a file"):
        load_causal_lm(f)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="cannot load a causal LM"):
        load_causal_lm(tmp_path / "empty")
