"""PRM-guided beam search on the synthetic task: the proposer is the task's noisy generator
(40% of steps wrong, 8 proposals per beam), the scorer checks each step exactly (a perfect
PRM), so beam search must end on the right answer where single samples often do not."""

from __future__ import annotations

import numpy as np
import pytest

from prefkit.process.search import beam_search
from prefkit.process.synthetic import continue_solution, make_problem, parse_problem


def _exact_scores(prompts, solutions):  # type: ignore[no-untyped-def]
    out = []
    for p, steps in zip(prompts, solutions):
        prob = parse_problem(p)
        v, s = prob.start, []
        for step in steps:
            if step.startswith("The answer is"):
                s.append(float(int(step.split()[-1]) == v and (not s or min(s) > 0)))
                continue
            a, op, x, _, c = step.split()
            right = int(a) == v and int(c) == (int(a) + int(x) if op == "+" else int(a) - int(x))
            s.append(float(right and (not s or min(s) > 0)))
            v = int(c)
        out.append(np.array(s))
    return out


def test_beam_search_finds_the_right_answer() -> None:
    rng = np.random.default_rng(0)

    def propose(prompt: str, steps, n: int):  # type: ignore[no-untyped-def]
        outs = []
        for _ in range(n):
            full = continue_solution(prompt, list(steps), rng, p_error=0.4)
            outs.append(full[len(steps)])
        return outs

    n_right_beam = n_right_sample = 0
    for _ in range(30):
        prob = make_problem(rng)
        res = beam_search(prob.text, propose, _exact_scores,
                          lambda s: s.startswith("The answer is"), beam_width=2, expand=8)
        assert res.solutions and res.n_scored > 0
        n_right_beam += res.solutions[0][-1] == f"The answer is {prob.answer}"
        sample = continue_solution(prob.text, [], rng, p_error=0.4)
        n_right_sample += sample[-1] == f"The answer is {prob.answer}"
    assert n_right_beam >= 28 and n_right_sample < 20
    with pytest.raises(ValueError):
        beam_search("Compute 1 + 1.", propose, _exact_scores, lambda s: True, beam_width=0)


def test_lm_proposer_and_candidates_use_the_shared_sampler() -> None:
    # a tiny Llama fitted on one solution proposes steps a line at a time, reproducibly; the
    # candidates are the sampler's completions split into lines
    import torch

    from prefkit.align.tiny import char_tokenizer, tiny_llama
    from prefkit.llm.sampling import SamplingConfig, sample
    from prefkit.process.implicit import fit_lm, response_text
    from prefkit.process.search import lm_proposer, sample_candidates

    tok = char_tokenizer()
    model = tiny_llama(len(tok), seed=0)
    prompt, steps = "Compute 1 + 2.", ["1 + 2 = 3", "The answer is 3"]
    fit_lm(model, tok, [prompt + response_text(steps)] * 64, epochs=25, batch_size=16,
           learning_rate=1e-2)
    got = lm_proposer(model, tok, max_new_tokens=20, temperature=0.5)(prompt, steps[:1], 4)
    assert got == lm_proposer(model, tok, max_new_tokens=20, temperature=0.5)(
        prompt, steps[:1], 4)
    assert len(got) == 4 and all("\n" not in g for g in got)
    assert got.count("The answer is 3") >= 3  # the memorised next line
    res = beam_search(prompt, lm_proposer(model, tok, max_new_tokens=20, temperature=0.5),
                      lambda ps, sols: [np.ones(len(s)) for s in sols],
                      lambda s: s.startswith("The answer is"), beam_width=2, expand=3,
                      max_steps=4)
    assert steps in res.solutions
    cands = sample_candidates(model, tok, [prompt, prompt + " "], 3, max_new_tokens=40,
                              seed=5)
    raw = sample(model, tok, [prompt, prompt + " "],
                 SamplingConfig(num_generations=3, max_new_tokens=40), seed=5)
    assert [len(c) for c in cands] == [3, 3]
    flat = [c for cs in cands for c in cs]
    assert flat == [[x.strip() for x in t.split("\n") if x.strip()] or [t.strip()]
                    for t in raw.texts]
    assert cands[0].count(steps) >= 2
    assert torch.is_tensor(raw.completion_ids)
