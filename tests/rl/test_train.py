"""The online RL loop on a tiny Llama: GRPO raises the checker's success over the SFT start,
micro-batching changes nothing, a resumed run equals an uninterrupted one, LoRA's reference
is the adapter disabled, and GSM8K runs end to end (plumbing and checker only)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from rl_sums import ANSWERS, PROMPTS, sums_reward
from shared_paths import SHARED
from transformers import AutoModelForCausalLM, AutoTokenizer

from prefkit.rl.config import RLConfig
from prefkit.rl.generate import SamplingConfig, sample
from prefkit.rl.tasks import read_task
from prefkit.rl.train import train_rl

TASK = {"prompt": PROMPTS, "answer": ANSWERS}


def _load(folder: Path):
    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def success(model, tok, n: int = 16, seed: int = 123) -> float:
    """The checker's success rate of sampled answers (temperature 1) over the 25 sums."""
    s = sample(model, tok, PROMPTS, SamplingConfig(num_generations=n, max_new_tokens=3),
               seed=seed)
    return sum(t.strip() == ANSWERS[i // n] for i, t in enumerate(s.texts)) / len(s.texts)


def test_grpo_raises_the_checker_success_over_the_sft_start(sft_folder: Path,
                                                            tmp_path: Path) -> None:
    model, tok = _load(sft_folder)
    before = success(model, tok)
    assert 0.2 < before < 0.55  # the SFT start: the format, half the answers
    res = train_rl(model, TASK, sums_reward, tokenizer=tok, output_dir=tmp_path / "grpo",
                   progress=False, config=RLConfig(num_generations=8, batch_size=8,
                                                   max_new_tokens=3, max_steps=40,
                                                   learning_rate=5e-3))
    after = success(model, tok)
    # 400 samples each: a standard error of about 0.025; the demo (benchmarks/rl_demo.py)
    # gives the intervals over seeds
    assert after > before + 0.15, (before, after)
    rows = [r for r in res.history if r["kind"] == "train"]
    assert len(rows) == 40 and rows[-1]["episodes"] == 40 * 64
    first, last = sum(r["reward"] for r in rows[:10]), sum(r["reward"] for r in rows[-10:])
    assert last > first
    for key in ("reward_std", "frac_reward_zero_std", "completion_length", "clip_region",
                "loss", "grad_norm", "lr", "rewards/sums_reward", "sample_s", "update_s"):
        assert key in rows[-1]
    # the folder: a model transformers loads, the run's record
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "grpo")
    torch.testing.assert_close(again.lm_head.weight, model.lm_head.weight)
    info = json.loads((tmp_path / "grpo" / "prefkit_rl.json").read_text())
    assert info["loss"]["name"] == "dapo" and info["summary"]["step"] == 40
    assert json.loads((tmp_path / "grpo" / "prefkit_run.json").read_text())["status"] == \
        "finished"


@pytest.mark.parametrize("loss", ["dapo", "grpo", "dr_grpo", "rloo"])
def test_micro_batches_make_the_same_update(sft_folder: Path, tmp_path: Path,
                                            loss: str) -> None:
    # the step's loss is the sum over micro-batches over the summed normalisers: micro
    # batches of 5 completions give the loss and gradient norm of one batch of 16 (weights
    # are not compared: AdamW's first step is about lr * sign(g), which float rounding
    # flips where g is ~0)
    rows = []
    for mb in (None, 5):
        model, tok = _load(sft_folder)
        algo = "rloo" if loss == "rloo" else "grpo"
        res = train_rl(model, TASK, sums_reward, tokenizer=tok,
                       output_dir=tmp_path / f"{loss}{mb}", progress=False, config=RLConfig(
                           algo=algo, loss=None if algo == "rloo" else loss, num_generations=4,
                           batch_size=4, max_new_tokens=3, max_steps=1, learning_rate=1e-2,
                           micro_batch_size=mb, beta=0.05))
        rows.append(res.history)
    for a, b in zip(*rows, strict=True):
        for key in ("loss", "grad_norm", "kl", "reward", "clip_region"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key
    assert rows[0][0]["grad_norm"] > 0


def test_resume_equals_uninterrupted(sft_folder: Path, tmp_path: Path) -> None:
    cfg = RLConfig(num_generations=4, batch_size=4, max_new_tokens=3, max_steps=4,
                   learning_rate=5e-3, beta=0.02)
    model, tok = _load(sft_folder)
    whole = train_rl(model, TASK, sums_reward, tokenizer=tok, output_dir=tmp_path / "whole",
                     progress=False, config=cfg)
    w_whole = model.lm_head.weight.detach().clone()
    model, tok = _load(sft_folder)
    part = train_rl(model, TASK, sums_reward, tokenizer=tok, output_dir=tmp_path / "part",
                    progress=False, config=cfg, stop_after=2)
    assert not part.finished and part.step == 2
    model, tok = _load(sft_folder)  # a fresh process would start from the base model
    rest = train_rl(model, TASK, sums_reward, tokenizer=tok, output_dir=tmp_path / "part",
                    progress=False, config=cfg, resume=True)
    assert rest.finished and rest.step == 4
    torch.testing.assert_close(model.lm_head.weight, w_whole, rtol=0, atol=0)
    timing = {"elapsed_s", "sample_s", "update_s"}
    strip = [{k: v for k, v in r.items() if k not in timing} for r in rest.history]
    assert strip == [{k: v for k, v in r.items() if k not in timing} for r in whole.history]


def test_lora_reference_is_the_adapter_disabled(sft_folder: Path, tmp_path: Path) -> None:
    model, tok = _load(sft_folder)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    res = train_rl(model, TASK, sums_reward, tokenizer=tok, output_dir=tmp_path / "lora",
                   progress=False, config=RLConfig(num_generations=4, batch_size=4,
                                                   max_new_tokens=3, max_steps=3, beta=0.1,
                                                   lora_r=4, learning_rate=1e-2))
    rows = res.history
    assert abs(rows[0]["kl"]) < 1e-6  # LoRA starts at B = 0: the policy is the reference
    assert rows[-1]["kl"] > rows[0]["kl"]
    trained = dict(model.named_parameters())
    assert any("lora_" in n for n in trained)
    for n, w in base.items():  # the base weights are frozen (LoRA wraps the linear layers)
        got = trained.get(n, trained.get(n.replace(".weight", ".base_layer.weight")))
        assert got is not None and torch.equal(got.detach(), w), n
    assert (tmp_path / "lora" / "adapter_config.json").is_file()


@pytest.mark.parametrize("algo", ["rloo", "reinforce_pp", "online_dpo"])
def test_other_algorithms_train(sft_folder: Path, tmp_path: Path, algo: str) -> None:
    model, tok = _load(sft_folder)
    w0 = model.lm_head.weight.detach().clone()
    res = train_rl(model, TASK, sums_reward, tokenizer=tok, output_dir=tmp_path / algo,
                   progress=False, config=RLConfig(algo=algo, num_generations=4,
                                                   batch_size=4, max_new_tokens=3,
                                                   max_steps=3, beta=0.05,
                                                   learning_rate=5e-3))
    assert res.finished and not torch.equal(model.lm_head.weight, w0)
    assert all(r["loss"] is None or r["loss"] == r["loss"] for r in res.history)  # no NaN


def test_gsm8k_end_to_end_with_the_exact_answer_checker(sft_folder: Path,
                                                        tmp_path: Path) -> None:
    # plumbing only: a tiny model does not solve GSM8K; the reward must be the checker's
    task = read_task(SHARED / "data" / "rl" / "gsm8k" / "test.jsonl", limit=4,
                     template="Q: {question}\nA:")
    model, tok = _load(sft_folder)
    res = train_rl(model, task, "exact", tokenizer=tok, output_dir=tmp_path / "gsm8k",
                   progress=False, config=RLConfig(num_generations=2, batch_size=2,
                                                   max_new_tokens=6, max_steps=2,
                                                   stop=("\n",)))
    rows = res.history
    assert len(rows) == 2 and rows[-1]["episodes"] == 8
    assert "rewards/exact:gsm8k" in rows[-1] and rows[-1]["reward"] == 0.0
    # the same reward on the reference solutions scores every one
    from prefkit.rl.rewards import parse_reward
    total, _ = parse_reward("exact", answer_kind=task.answer_kind)(
        task.prompts, task.columns["answer"], task.columns)
    assert total.tolist() == [1.0] * 4


def test_dense_process_rewards_alone_train_the_policy(sft_folder: Path, tmp_path: Path) -> None:
    # the outcome reward pays nothing; a process reward scoring the one step (the answer)
    # right or wrong is the only signal: success must rise through the per-token advantages
    model, tok = _load(sft_folder)
    before = success(model, tok)

    def steps_right(prompts, steps):  # P(step right): the step is the sum of the prompt
        return [[float(s.strip() == str(eval(p.rstrip("=")))) for s in st]
                for p, st in zip(prompts, steps, strict=True)]

    def nothing(prompts, completions, **kw):
        return [0.0] * len(completions)

    res = train_rl(model, TASK, nothing, tokenizer=tok, output_dir=tmp_path / "prm",
                   progress=False, process_reward=steps_right,
                   config=RLConfig(num_generations=8, batch_size=8, max_new_tokens=3,
                                   max_steps=30, learning_rate=5e-3))
    assert success(model, tok) > before + 0.1
    assert all("process_reward" in r for r in res.history)
    assert json.loads((tmp_path / "prm" / "prefkit_rl.json").read_text())["task"][
        "process"] == "steps_right"
    with pytest.raises(ValueError, match="per-token advantages"):
        train_rl(model, TASK, nothing, tokenizer=tok, output_dir=tmp_path / "x",
                 progress=False, process_reward=steps_right, config=RLConfig(algo="rloo"))


def test_online_dpo_labelled_by_an_llm_judge(sft_folder: Path, tmp_path: Path,
                                             monkeypatch) -> None:
    # a judge on a real local OpenAI-compatible server labels the policy's own pairs
    from prefkit.llm.server import LocalServer, canned_responder

    monkeypatch.setenv("PREFKIT_CACHE_DIR", str(tmp_path / "cache"))

    def judge(request) -> str:
        text = request.messages[-1]["content"]
        prompt = text.split("[Prompt]\n")[1].split("\n")[0]
        answer = text.split("[Response]\n")[1].split("\n\nReply")[0]
        return "Rating: 9" if answer.strip() == str(eval(prompt.rstrip("="))) else "Rating: 2"

    server = LocalServer(canned_responder(judge))
    model, tok = _load(sft_folder)
    before = success(model, tok)
    with server as url:
        res = train_rl(model, TASK, f"judge:tiny@{url}", tokenizer=tok,
                       output_dir=tmp_path / "odpo", progress=False,
                       config=RLConfig(algo="online_dpo", num_generations=8, batch_size=8,
                                       max_new_tokens=3, max_steps=40, learning_rate=5e-3))
    assert server.stats.requests > 0
    assert all(r["pairs"] >= 0 for r in res.history)
    assert success(model, tok) > before + 0.1


def test_conversational_prompts_go_through_the_chat_template(sft_folder: Path,
                                                             tmp_path: Path) -> None:
    from prefkit.rl.tasks import prompt_inputs

    task = tmp_path / "chat.jsonl"
    task.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": q}],
                                        "answer": a}) + "\n"
                            for q, a in zip(PROMPTS[:4], ANSWERS[:4], strict=True)))
    model, tok = _load(sft_folder)
    got = read_task(task)
    assert got.prompts[0] == [{"role": "user", "content": "0+0="}]
    ids = prompt_inputs(tok, got.prompts[:1])[0]
    # the template's text, BOS once: <s><|user|>0+0=\n<|assistant|>
    assert tok.decode(ids) == "<s><|user|>0+0=\n<|assistant|>" and ids.count(tok.bos_token_id) == 1
    seen = []

    def reward(prompts, completions, answer, **kw):
        seen.extend(prompts)
        # TRL's form for chat prompts: [{"role": "assistant", "content": text}]
        return [float(c[0]["content"].strip() == a)
                for c, a in zip(completions, answer, strict=True)]

    res = train_rl(model, got, reward, tokenizer=tok, output_dir=tmp_path / "chat",
                   progress=False, config=RLConfig(num_generations=2, batch_size=2,
                                                   max_new_tokens=3, max_steps=2))
    assert res.finished and seen and all(isinstance(p, list) for p in seen)  # TRL gives lists


def test_bf16_autocast_runs(sft_folder: Path, tmp_path: Path) -> None:
    model, tok = _load(sft_folder)
    res = train_rl(model, TASK, sums_reward, tokenizer=tok, output_dir=tmp_path / "bf16",
                   progress=False, config=RLConfig(num_generations=4, batch_size=4,
                                                   max_new_tokens=3, max_steps=2, beta=0.05,
                                                   precision="bf16", learning_rate=5e-3))
    assert all(r["loss"] is not None and math.isfinite(r["loss"]) for r in res.history)
    assert next(model.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match="precision"):
        RLConfig(precision="fp16")


def test_ppo_with_a_value_head_trains_and_resumes(sft_folder: Path, tmp_path: Path) -> None:
    model, tok = _load(sft_folder)
    before = success(model, tok)
    cfg = RLConfig(algo="ppo", num_generations=8, batch_size=8, max_new_tokens=3,
                   max_steps=40, learning_rate=5e-3, beta=0.02, num_iterations=2)
    res = train_rl(model, TASK, sums_reward, tokenizer=tok, output_dir=tmp_path / "ppo",
                   progress=False, config=cfg)
    assert success(model, tok) > before + 0.1
    rows = res.history
    assert rows[0]["value_mean"] == 0.0  # zero-initialised head
    assert rows[-1]["value_mean"] > 0.1 and rows[-1]["value_loss"] < rows[0]["value_loss"]
    assert (tmp_path / "ppo" / "value_head.pt").is_file()
    # resume equals uninterrupted, value head and all
    short = RLConfig(algo="ppo", num_generations=4, batch_size=4, max_new_tokens=3,
                     max_steps=4, learning_rate=5e-3)
    model, tok = _load(sft_folder)
    whole = train_rl(model, TASK, sums_reward, tokenizer=tok, output_dir=tmp_path / "w",
                     progress=False, config=short)
    w = model.lm_head.weight.detach().clone()
    model, tok = _load(sft_folder)
    train_rl(model, TASK, sums_reward, tokenizer=tok, output_dir=tmp_path / "p",
             progress=False, config=short, stop_after=2)
    model, tok = _load(sft_folder)
    rest = train_rl(model, TASK, sums_reward, tokenizer=tok, output_dir=tmp_path / "p",
                    progress=False, config=short, resume=True)
    torch.testing.assert_close(model.lm_head.weight, w, rtol=0, atol=0)
    assert rest.history[-1]["value_loss"] == whole.history[-1]["value_loss"]
