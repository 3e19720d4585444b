"""TRL parity for conversational prompts: a user's reward function gets each completion as
TRL 1.16's GRPOTrainer passes it, ``[{"role": "assistant", "content": text}]``
(trl/trainer/grpo_trainer.py, where completions are decoded), while prefkit's built-in
rewards keep reading the text; plain-text prompts still give plain-text completions."""

from __future__ import annotations

from pathlib import Path

import pytest
from trl.data_utils import is_conversational

from prefkit.align.tiny import char_tokenizer, tiny_llama
from prefkit.rl.config import RLConfig
from prefkit.rl.rewards import as_messages, parse_reward
from prefkit.rl.train import train_rl

CHAT = [[{"role": "user", "content": "1+1="}], [{"role": "user", "content": "2+2="}]]


def digit_reward(prompts, completions, **kwargs):
    """Reads completions as TRL hands them for chat prompts."""
    return [float(sum(ch.isdigit() for ch in c[0]["content"])) for c in completions]


def test_message_form_follows_trls_test_of_a_conversation() -> None:
    """prefkit wraps exactly when TRL's own is_conversational says the prompt is a chat."""
    for prompts in (CHAT, ["1+1=", "2+2="],
                    [[{"role": "system", "content": "be brief"},
                      {"role": "user", "content": "3+1="}]]):
        wrapped = as_messages(prompts, ["a"] * len(prompts))
        assert (wrapped[0] != "a") == is_conversational({"prompt": prompts[0]})
    assert as_messages(CHAT, ["x", "y"]) == [[{"role": "assistant", "content": "x"}],
                                             [{"role": "assistant", "content": "y"}]]


def test_user_functions_get_messages_builtins_get_text(tmp_path: Path) -> None:
    f = tmp_path / "my_rewards.py"
    f.write_text("def n_chars(prompts, completions, **kw):\n"
                 "    return [float(len(c[0]['content'])) for c in completions]\n")
    reward = parse_reward([digit_reward, f"{f}:n_chars", "0.5*format:^1",
                           f"logsigmoid({f}:n_chars;ref=ref)"])
    total, parts = reward(CHAT, ["12", "1x3"], {"ref": ["ab", "abcd"]})
    assert parts["digit_reward"].tolist() == [2.0, 2.0]
    assert parts["n_chars"].tolist() == [2.0, 3.0]
    assert parts["format:^1"].tolist() == [1.0, 1.0]  # the built-in read the text
    # log sigmoid(len - len(ref)): the reference column wrapped as the completions are
    lg = parts["logsigmoid(n_chars)"]
    assert lg.tolist() == pytest.approx([-0.6931471805599453, -1.3132616875182228])
    assert total.tolist() == pytest.approx([2 + 2 + 0.5 + lg[0], 2 + 3 + 0.5 + lg[1]])
    # text prompts: text completions, as TRL
    _, parts = parse_reward(lambda prompts, completions, **k: [float(len(c)) for c in
                                                              completions])(["1+1="], ["123"])
    assert parts["<lambda>"].tolist() == [3.0]


def test_train_rl_on_chat_prompts_passes_messages(tmp_path: Path) -> None:
    """One GRPO step on chat prompts: the function sees message lists whose content is
    the decoded completion, and its mean is the logged reward."""
    seen: list = []

    def spy(prompts, completions, **kwargs):
        seen.append((prompts, completions))
        return digit_reward(prompts, completions)

    tok = char_tokenizer()
    res = train_rl(tiny_llama(len(tok)), {"prompt": CHAT}, spy, tokenizer=tok,
                   output_dir=tmp_path / "run", progress=False,
                   config=RLConfig(num_generations=3, batch_size=2, max_new_tokens=4,
                                   max_steps=1))
    prompts, completions = seen[0]
    assert len(completions) == 6 and prompts[0] in CHAT
    assert all(isinstance(c, list) and c[0]["role"] == "assistant"
               and isinstance(c[0]["content"], str) for c in completions)
    want = sum(digit_reward(prompts, completions)) / 6
    assert res.metrics["reward"] == pytest.approx(want)
