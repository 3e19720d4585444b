"""The vLLM generator, as far as it runs without vLLM and a GPU: the refusal naming the fix,
the translation of prefkit's sampling options into vLLM's (by hand), and the assembly of a
generator's outputs into Samples (checked against transformers' own draws). The engine
itself is untested on these machines."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from prefkit.align.tiny import char_tokenizer, tiny_llama
from prefkit.rl.config import RLConfig
from prefkit.rl.distributed import concat_samples
from prefkit.rl.generate import SamplingConfig, sample
from prefkit.rl.train import train_rl
from prefkit.rl.vllm_generate import (
    VLLMGenerator,
    logprobs_mode,
    require_vllm,
    samples_from_outputs,
    sampling_params_kwargs,
)

NO_VLLM = importlib.util.find_spec("vllm") is None or not torch.cuda.is_available()


@pytest.mark.skipif(not NO_VLLM, reason="vllm and a GPU are here")
def test_without_vllm_the_error_names_the_fix(tmp_path) -> None:
    with pytest.raises(ImportError, match=r"pip install vllm.*GPU"):
        require_vllm()
    with pytest.raises(ImportError, match="pip install vllm"):
        VLLMGenerator("some/folder", SamplingConfig())
    tok = char_tokenizer()
    with pytest.raises(ImportError, match="pip install vllm"):
        train_rl(tiny_llama(len(tok)), ["1+1="], lambda prompts, completions, **k: [0.0] * len(
            completions), tokenizer=tok, output_dir=tmp_path / "run", progress=False,
            config=RLConfig(generator="vllm", num_generations=2, batch_size=1))
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.skipif(not NO_VLLM, reason="vllm and a GPU are here")
def test_cli_generator_vllm_fails_cleanly(tmp_path) -> None:
    from prefkit.cli.main import app

    task = tmp_path / "t.jsonl"
    task.write_text('{"prompt": "1+1=", "answer": "2"}\n')
    r = CliRunner().invoke(app, ["rl", "--model", str(tmp_path), "--task", str(task),
                                 "--reward", "exact", "--output", str(tmp_path / "o"),
                                 "--generator", "vllm"])
    assert r.exit_code != 0 and "--generator vllm" in r.output and "pip install vllm" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_sampling_params_by_hand() -> None:
    cfg = SamplingConfig(num_generations=4, max_new_tokens=32, temperature=0.7)
    assert sampling_params_kwargs(cfg, seed=11) == {
        "n": 4, "temperature": 0.7, "top_p": 1.0, "top_k": -1, "min_p": 0.0,
        "repetition_penalty": 1.0, "max_tokens": 32, "logprobs": 0,
        "skip_special_tokens": True, "seed": 11}
    cfg = SamplingConfig(num_generations=2, max_new_tokens=8, top_p=0.9, top_k=20,
                         stop=("\n\n", "####"))
    got = sampling_params_kwargs(cfg)
    assert got["top_p"] == 0.9 and got["top_k"] == 20 and "seed" not in got
    assert got["stop"] == ["\n\n", "####"] and got["include_stop_str_in_output"] is True


def test_logprobs_mode_by_hand() -> None:
    """log_softmax(logits / T) at the token drawn: processed when nothing is masked, raw when
    T = 1, refused otherwise."""
    assert logprobs_mode(SamplingConfig(temperature=0.7)) == "processed_logprobs"
    assert logprobs_mode(SamplingConfig(top_p=0.9)) == "raw_logprobs"
    assert logprobs_mode(SamplingConfig(top_k=5)) == "raw_logprobs"
    with pytest.raises(ValueError, match="set temperature=1 or turn top-p and top-k off"):
        logprobs_mode(SamplingConfig(temperature=0.7, top_p=0.9))
    with pytest.raises(ValueError, match="temperature=1"):
        logprobs_mode(SamplingConfig(temperature=0.5, top_k=3))
    with pytest.raises(ValueError, match="generator must be"):
        RLConfig(generator="sglang")


def test_samples_from_outputs_rebuilds_transformers_draws(sft_folder) -> None:
    """Feeding transformers' own draws (tokens up to the end, their log-probs, truncation)
    through the assembly gives back the very same Samples."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(sft_folder)
    tok = AutoTokenizer.from_pretrained(sft_folder)
    cfg = SamplingConfig(num_generations=3, max_new_tokens=3)
    prompts = ["1+1=", "2+3=", "4+4=", "12+30="]
    # the last prompt cut at one token (truncated) beside answers ending with EOS
    s = concat_samples([sample(model, tok, prompts[:3], cfg, seed=4),
                        sample(model, tok, prompts[3:], replace(cfg, max_new_tokens=1),
                               seed=5)], tok.pad_token_id)
    n = s.lengths.tolist()
    assert min(n) < max(n) and s.truncated.any() and not s.truncated.all()  # both ends
    rows = [r[:k] for r, k in zip(s.completion_ids.tolist(), n, strict=True)]
    lps = [r[:k] for r, k in zip(s.old_logps.tolist(), n, strict=True)]
    got = samples_from_outputs(tok, prompts, rows, lps, s.truncated.tolist(), cfg)
    for f in ("prompt_ids", "prompt_mask", "completion_ids", "mask", "old_logps", "truncated"):
        assert torch.equal(getattr(got, f), getattr(s, f)), f
    assert got.texts == s.texts and got.num_generations == 3 and got.temperature == 1.0


def test_samples_from_outputs_by_hand() -> None:
    tok = char_tokenizer()
    eos = tok.eos_token_id
    a, b = tok("ab", add_special_tokens=False)["input_ids"]
    cfg = SamplingConfig(num_generations=2, max_new_tokens=3)
    got = samples_from_outputs(tok, ["x"], [[a, eos], [a, b, b]], [[-0.5, -0.25], [-1, -2, None]],
                               [False, True], cfg)
    assert got.completion_ids.tolist() == [[a, eos, tok.pad_token_id], [a, b, b]]
    assert got.mask.tolist() == [[True, True, False], [True, True, True]]
    assert got.old_logps[0].tolist() == [-0.5, -0.25, 0.0]
    assert torch.isnan(got.old_logps[1, 2])  # vLLM's None (a NaN log-prob) kept as NaN
    assert got.truncated.tolist() == [False, True] and got.texts == ["a", "abb"]
    with pytest.raises(ValueError, match="1 prompts x 2 generations need 2"):
        samples_from_outputs(tok, ["x"], [[a]], [[-1.0]], [False], cfg)
    with pytest.raises(ValueError, match="completion 0: 2 tokens but 1 log-probs"):
        samples_from_outputs(tok, ["x"], [[a, b], [a]], [[-1.0], [-1.0]], [False, False], cfg)


def test_weight_names_for_vllm_are_the_checkpoints() -> None:
    """The tensors synced to vLLM carry the names of a transformers checkpoint (what its
    load_weights reads): a plain model's own, a LoRA model's merged base weights without
    peft's prefixes or adapter tensors (as TRL's _iter_named_params)."""
    import copy

    from peft import LoraConfig, get_peft_model

    from prefkit.rl.vllm_generate import _vllm_names

    tok = char_tokenizer()
    plain = tiny_llama(len(tok))
    want = {n for n, _ in plain.named_parameters()}
    assert {n for n, _ in _vllm_names(plain)} == want
    lora = get_peft_model(tiny_llama(len(tok)), LoraConfig(r=4, target_modules=["q_proj"]))
    for n, p in lora.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)  # a trained adapter (B = 0 merges to nothing)
    merged = copy.deepcopy(lora).merge_and_unload()
    lora.merge_adapter()
    got = dict(_vllm_names(lora))
    assert set(got) == want
    q = "model.layers.0.self_attn.q_proj.weight"
    torch.testing.assert_close(got[q], merged.state_dict()[q])
    assert not torch.equal(got[q], plain.state_dict()[q])
    lora.unmerge_adapter()
