"""Rewards: TRL's signature, the rule rewards on real GSM8K / MATH-500 / Game of 24 rows,
file functions, a real prefkit reward model, weights and the log-sigmoid transform, tasks."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
from shared_paths import SHARED

from prefkit.data.errors import InvalidInputError
from prefkit.rl.rewards import (
    CombinedReward,
    RewardTerm,
    call_reward,
    game24_reward,
    logsigmoid_centred,
    parse_reward,
)
from prefkit.rl.tasks import as_task, read_task

RL = SHARED / "data" / "rl"


def test_exact_answer_on_gsm8k_rows() -> None:
    task = read_task(RL / "gsm8k" / "test.jsonl", limit=20)
    assert task.layout == "gsm8k" and task.answer_kind == "gsm8k" and len(task) == 20
    reward = parse_reward("exact", answer_kind=task.answer_kind)
    # the reference solutions reach their own answers; a wrong number does not
    good = list(task.columns["answer"])
    bad = [s.rsplit("####", 1)[0] + "#### 999999" for s in good]
    total, parts = reward(task.prompts + task.prompts, good + bad,
                          {k: v + v for k, v in task.columns.items()})
    assert total.tolist() == [1.0] * 20 + [0.0] * 20
    assert list(parts) == ["exact:gsm8k"]


def test_exact_answer_on_math500_rows() -> None:
    task = read_task(RL / "math500" / "test.jsonl", limit=30)
    assert task.layout == "math"
    reward = parse_reward("exact", answer_kind="math")
    boxed = [f"so the answer is $\\boxed{{{a}}}$" for a in task.columns["answer"]]
    total, _ = reward(task.prompts, boxed, task.columns)
    assert total.sum() == 30
    total, _ = reward(task.prompts, ["\\boxed{-12345}"] * 30, task.columns)
    assert total.sum() == 0


def test_game24_on_the_puzzles() -> None:
    task = read_task(RL / "game24" / "24.csv", limit=3)
    assert task.prompts[:2] == ["1 1 4 6", "1 1 11 11"]
    got = game24_reward(task.prompts[:2], ["Let me think.\n(1 + 1) * 4 + 6 = 14\n(1+1+4)*6",
                                           "(11 + 1) * (1 + 1) = 24"],
                        numbers=task.columns["numbers"][:2])
    assert got == [0.0, 0.0]  # the first equals 36; the second uses 11 once and 1 three times
    got = game24_reward(["1 1 4 6"], ["Answer:\n4 * 6 * (1 * 1) = 24\n(done)"],
                        numbers=["1 1 4 6"])
    assert got == [1.0]  # the last line with a digit is the solution


def test_trl_signature_none_and_keyword_filtering(tmp_path: Path) -> None:
    # TRL's own example reward (docs: "reward functions"): length of the completion
    def reward_len(completions, **kwargs):
        return [-abs(20 - len(c)) for c in completions]

    def only_named(prompts, completions, answer):  # no **kwargs: gets only `answer`
        return [None if a is None else float(c == a) for c, a in zip(completions, answer)]

    out = call_reward(reward_len, ["p"] * 2, ["x" * 20, "x" * 5], {"answer": ["a", "b"]})
    assert out.tolist() == [0.0, -15.0]
    out = call_reward(only_named, ["p"] * 3, ["a", "b", "c"],
                      {"answer": ["a", "x", None], "other": [1, 2, 3]})
    assert out[:2].tolist() == [1.0, 0.0] and math.isnan(out[2])
    with pytest.raises(ValueError, match="returned 1 value for 2"):
        call_reward(lambda prompts, completions, **k: [1.0], ["p"] * 2, ["a", "b"])
    with pytest.raises(TypeError, match="return numbers"):
        call_reward(lambda prompts, completions, **k: ["yes", 1], ["p"] * 2, ["a", "b"])
    # a file function, TRL's signature
    f = tmp_path / "my_reward.py"
    f.write_text("def has_42(prompts, completions, **kw):\n"
                 "    return [1.0 if '42' in c else 0.0 for c in completions]\n")
    reward = parse_reward([f"{f}:has_42", "0.5*format:^A"])
    total, parts = reward(["p", "p"], ["A 42", "B"], {})
    assert total.tolist() == [1.5, 0.0] and set(parts) == {"has_42", "format:^A"}
    with pytest.raises(ValueError, match="defines no function 'nope'"):
        parse_reward(f"{f}:nope")
    with pytest.raises(ValueError, match="unknown reward"):
        parse_reward("bleu")
    with pytest.raises(ValueError, match="exact:gsm8k or exact:math"):
        parse_reward("exact")


def test_combination_skips_nan_terms_like_trl() -> None:
    # TRL: rewards_per_func * weights, nansum; a row where every function gave None is NaN
    a = RewardTerm("a", lambda prompts, completions, **k: [1.0, None, None], 2.0)
    b = RewardTerm("b", lambda prompts, completions, **k: [0.5, 0.25, None], -1.0)
    total, _ = CombinedReward([a, b])(["p"] * 3, ["x", "y", "z"])
    assert total[:2].tolist() == [1.5, -0.25] and math.isnan(total[2])


def test_logsigmoid_centring_against_a_reference_response() -> None:
    # Wang et al. 2024 eq. (3): u = log sigmoid(r(x, y) - r(x, y_ref))
    def r(prompts, completions, **k):
        return [float(len(c)) for c in completions]

    fn = logsigmoid_centred(r, reference="reference")
    got = call_reward(fn, ["p"] * 3, ["aaa", "a", "aaaaaaaaaaaa"],
                      {"reference": ["aa", "aa", "aa"]})
    want = [math.log(1 / (1 + math.exp(-d))) for d in (1.0, -1.0, 10.0)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[2] > -1e-4  # saturates: nothing more to gain past the reference
    fixed = parse_reward("logsigmoid(length:1;ref=2)")
    total, parts = fixed(["p"], ["aaa"], {})
    assert math.isclose(total[0], math.log(1 / (1 + math.exp(-1.0))))
    assert list(parts) == ["logsigmoid(length:1)"]
    with pytest.raises(ValueError, match="no column 'reference'"):
        call_reward(fn, ["p"], ["a"], {})


def test_a_prefkit_reward_model_as_a_reward(tmp_path: Path, monkeypatch) -> None:
    from prefkit.data.text import TextPairs
    from prefkit.reward.train import RewardTrainConfig, train_reward_model

    monkeypatch.setenv("PREFKIT_CACHE_DIR", str(tmp_path / "cache"))
    words = ["apples", "rivers", "stones", "music", "clouds", "bread", "trains", "paper"]
    prompts = [f"Tell me about {w}." for w in words] * 2
    chosen = [f"Here is a careful, kind and correct answer about {w}." for w in words] * 2
    rejected = [f"{w}? no. go away, I will not help." for w in words] * 2
    train_reward_model(RewardTrainConfig(epochs=60), tmp_path / "rm",
                       TextPairs(prompts, chosen, rejected), progress=False)
    reward = parse_reward(f"model:{tmp_path / 'rm'}")
    total, _ = reward(["Tell me about lamps."] * 2,
                      ["Here is a careful, kind and correct answer about lamps.",
                       "lamps? no. go away, I will not help."], {})
    assert total[0] > total[1]


def test_task_files_and_their_errors(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl.gz"
    p.write_bytes(gzip.compress(b'{"prompt": "a", "x": 1}\n\n{"prompt": "b", "x": 2}\n'))
    t = read_task(p)
    assert t.prompts == ["a", "b"] and t.columns["x"] == [1, 2]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n{"prompt": ""}\n')
    with pytest.raises(InvalidInputError, match=r"bad.jsonl.*line 2.*prompt"):
        read_task(bad)
    none = tmp_path / "none.jsonl"
    none.write_text('{"text": "a"}\n')
    with pytest.raises(InvalidInputError, match="rename the prompt column"):
        read_task(none)
    t = read_task(RL / "gsm8k" / "test.jsonl", limit=2, template="Q: {question}\nA:")
    assert t.prompts[0].startswith("Q: Janet") and t.prompts[0].endswith("\nA:")
    assert as_task({"prompt": ["a"], "answer": ["1"]}).columns == {"answer": ["1"]}


def test_an_llm_judge_through_a_real_local_server(tmp_path: Path, monkeypatch) -> None:
    from prefkit.llm.server import LocalServer, canned_responder

    monkeypatch.setenv("PREFKIT_CACHE_DIR", str(tmp_path))

    def respond(request) -> str:  # the judge: 9 for answers that say 42, else 3
        text = request.messages[-1]["content"]
        if "FAIL" in text:
            return "I cannot rate this."
        return "Rating: 9" if "42" in text.split("[Response]")[1] else "Rating: 3"

    server = LocalServer(canned_responder(respond))
    with server as url:
        reward = parse_reward(f"judge:tiny@{url}")
        completions = ["it is 42", "it is 7", "FAIL", "it is 42"]
        total, _ = reward(["q"] * 4, completions, {})
        assert total[:2].tolist() == [8 / 9, 2 / 9] and math.isnan(total[2])
        assert total[3] == total[0]
        assert server.stats.requests == 3  # the repeated completion is judged once
        again, _ = reward(["q"] * 4, completions, {})  # cached: the server is not asked again
        assert np.array_equal(again[:2], total[:2]) and server.stats.requests == 3
    assert (tmp_path / "rl_judge.sqlite").is_file()
