"""Monte-Carlo step labels (rollouts of the synthetic generator, checked exactly), the
consensus filter, and Step-DPO / RISE rows that prefkit align's reader accepts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from prefkit.data import read_alignment_data
from prefkit.process.pairs import (
    consensus,
    first_error_of,
    inject_error,
    monte_carlo_values,
    rise_rows,
    step_dpo_rows,
)
from prefkit.process.synthetic import continue_solution, make_solutions, parse_problem


def _roller(p_error: float, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)

    def complete(prompt: str, steps: list[str], n: int) -> list[list[str]]:
        return [continue_solution(prompt, steps, rng, p_error=p_error) for _ in range(n)]

    return complete


def test_monte_carlo_values_find_the_first_error() -> None:
    data, _ = make_solutions(60, np.random.default_rng(1), p_error=0.7, p_lucky=0.3)
    for prompt, steps, first in zip(data.prompts, data.steps, data.first_error):
        answer = f"The answer is {parse_problem(prompt).answer}"

        def right(s: list[str], answer: str = answer) -> bool:
            return s[-1] == answer

        vals = monte_carlo_values(prompt, steps, _roller(0.0), right, n=2)
        assert first_error_of(vals) == first  # exact rollouts: a wrong prefix never recovers
        noisy = monte_carlo_values(prompt, steps, _roller(0.3), right, n=16)
        assert all(0.0 <= v <= 1.0 for v in noisy)
        if first >= 0:
            assert noisy[first] < 0.5  # after an error only a lucky rollout is right


def test_consensus_keeps_agreeing_solutions() -> None:
    vals = [[1.0, 0.0, 0.0], [1.0, 0.5, 1.0], [0.2, 0.0]]
    assert [first_error_of(v) for v in vals] == [1, -1, 1]
    assert first_error_of(vals[2], hard=False) == 0
    assert consensus(vals, [1, 2, 1]) == [0, 2]


def test_step_dpo_and_rise_rows_feed_align(tmp_path: Path) -> None:
    cands = [["a = 1", "b = 2", "c = 3"], ["a = 1", "b = 5", "c = 6"], ["a = 2", "b = 2"]]
    scores = [[0.9, 0.8, 0.9], [0.9, 0.1, 0.4], [0.2, 0.9]]
    rows = step_dpo_rows("q", cands, scores)
    assert {(r["wrong_step_index"], r["rejected_step"]) for r in rows} == {(1, "b = 5"),
                                                                          (0, "a = 2")}
    data, _ = make_solutions(20, np.random.default_rng(2), p_error=0.0)
    rise = rise_rows(data.prompts, data.steps, np.random.default_rng(0))
    assert len(rise) == 20
    for r in rise:
        k = r["wrong_step_index"]
        assert r["rejected_step"] != r["steps"][k]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows + rise))
    res = read_alignment_data(path)
    assert res.format == "step_dpo" and len(res.prompts) == len(rows) + len(rise)
    assert res.response_prefix is not None and res.responses[0] == ["b = 2", "b = 5"]
    assert inject_error("no digits", np.random.default_rng(0)) is None
    assert inject_error("2 + 3 = 5", np.random.default_rng(0)) != "2 + 3 = 5"


def test_monte_carlo_with_a_language_model_sampler() -> None:
    """Rollouts from a real (tiny, briefly fitted) Llama through the shared sampler, checked
    with prefkit.answers: values are shares of n rollouts and the draw is reproducible."""
    from prefkit.align.tiny import char_tokenizer, tiny_llama
    from prefkit.answers import final_answer
    from prefkit.process.implicit import fit_lm, response_text
    from prefkit.process.pairs import lm_completer

    tok = char_tokenizer()
    model = tiny_llama(len(tok), seed=0)
    data, _ = make_solutions(64, np.random.default_rng(0), p_error=0.0)
    fit_lm(model, tok, [p + response_text(s) for p, s in zip(data.prompts, data.steps)],
           epochs=2)
    prompt, steps = data.prompts[0], data.steps[0]
    answer = str(parse_problem(prompt).answer)

    def check(text: str) -> bool:
        return final_answer(text.split("</s>")[0]) == answer

    vals = monte_carlo_values(prompt, steps, lm_completer(model, tok, max_new_tokens=40),
                              check, n=4)
    again = monte_carlo_values(prompt, steps, lm_completer(model, tok, max_new_tokens=40),
                               check, n=4)
    assert vals == again and len(vals) == len(steps)
    assert all(v in (0.0, 0.25, 0.5, 0.75, 1.0) for v in vals)
    rolls = lm_completer(model, tok, max_new_tokens=10)(prompt, steps[:1], 3)
    assert len(rolls) == 3 and all(r.startswith(prompt + "\n" + steps[0]) for r in rolls)
