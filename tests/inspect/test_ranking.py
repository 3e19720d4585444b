"""Ranking accuracy and idealized ranking accuracy (Chen et al. 2024) with tiny Llama
policy and reference models built in the test; log-probs through prefkit.align's scoring
engine, checked against a plain forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prefkit.align.tiny import char_tokenizer, tiny_llama
from prefkit.inspect import Annotations
from prefkit.inspect.ranking import (
    idealized_ranking_accuracy,
    load_causal_lm,
    pair_logps,
    ranking_accuracy,
    ranking_of_annotations,
)

PROMPTS = ["Say hi.", "Add 2 and 3.", "Name a colour.", "Spell cat.", "Count to 3."]
A = ["Hi!", "5", "Blue.", "c-a-t", "1, 2, 3"]
B = ["Goodbye, see you later.", "It is 6.", "Seven.", "dog", "3 2 1"]
# three annotators per pair (0 = a, 1 = b, 2 = tie): unanimous, 2-1, 1-1 with a tie, ...
LABELS = [[0, 0, 0], [0, 0, 1], [1, 1, 0], [0, 2, 2], [1, 1, 1]]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory):
    tok = char_tokenizer()
    out = []
    for name, seed in (("policy", 1), ("reference", 0)):
        folder = tmp_path_factory.mktemp(name)
        tiny_llama(len(tok), seed=seed).save_pretrained(folder)
        tok.save_pretrained(folder)
        out.append(folder)
    return out


def _manual_logp(model, tok, prompt: str, response: str) -> float:
    """log pi(response | prompt) by one plain forward pass: BOS + prompt + response + EOS,
    response tokens (EOS included) scored by the logits one position earlier."""
    p_ids = tok(prompt)["input_ids"]
    r_ids = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([p_ids + r_ids])
    with torch.no_grad():
        logits = model(ids).logits[0].double()
    lp = torch.log_softmax(logits, -1)
    return float(sum(lp[t - 1, ids[0, t]] for t in range(len(p_ids), ids.shape[1])))


def test_logps_equal_a_plain_forward_pass(models) -> None:
    model, tok = load_causal_lm(models[0])
    lp, lens, kept = pair_logps(model, tok, PROMPTS, A, B, batch_size=2)
    assert kept.tolist() == list(range(5))
    for i in range(5):
        assert lp[i, 0] == pytest.approx(_manual_logp(model, tok, PROMPTS[i], A[i]), abs=1e-4)
        assert lp[i, 1] == pytest.approx(_manual_logp(model, tok, PROMPTS[i], B[i]), abs=1e-4)
    assert lens[:, 0].tolist() == [len(a) + 1 for a in A]  # characters + EOS


def test_ranking_accuracy_by_hand() -> None:
    lp = np.array([[-1.0, -2.0], [-3.0, -2.0], [-4.0, -4.0]])  # right, wrong, a tie (wrong)
    assert ranking_accuracy(lp)["summed"] == pytest.approx(1 / 3)
    # per token: -1/1 > -2/4; -3/6 > -2/2; -4/2 < -4/1 is false -> 2 of 3
    r = ranking_accuracy(lp, np.array([[1, 4], [6, 2], [2, 1]]))
    assert r["length_normalised"] == pytest.approx(2 / 3)


def test_idealized_by_the_theorem() -> None:
    ref = np.array([[-5.0, -1.0], [-1.0, -2.0], [-3.0, -2.5]])
    # alpha = 1/2: pi* = pi_ref, so idealized = the reference's ranking accuracy
    half = idealized_ranking_accuracy(ref, np.full(3, 0.5), beta=0.1)
    assert half["summed"] == ranking_accuracy(ref)["summed"] == pytest.approx(1 / 3)
    # alpha = 2/3, beta = 1: shift log 2 = 0.69 > 0.5 fixes pair 3 only; beta = 0.1: all
    assert idealized_ranking_accuracy(ref, np.full(3, 2 / 3), beta=1.0)["summed"] == \
        pytest.approx(2 / 3)
    assert idealized_ranking_accuracy(ref, np.full(3, 2 / 3), beta=0.1)["summed"] == 1.0
    # unanimous pairs: alpha clipped to 1 - 1e-3, shift log(999) / beta
    assert idealized_ranking_accuracy(ref, np.ones(3), beta=1.0)["summed"] == 1.0
    assert idealized_ranking_accuracy(np.array([[-10.0, -1.0]]), np.ones(1),
                                      beta=1.0)["summed"] == 0.0  # 9 > log 999 = 6.9
    with pytest.raises(ValueError, match="beta must be positive"):
        idealized_ranking_accuracy(ref, np.ones(3), beta=0)


def test_ranking_of_annotations_end_to_end(models) -> None:
    policy, tok = load_causal_lm(models[0])
    reference, _ = load_causal_lm(models[1])
    ann = Annotations(np.array(LABELS), ("x", "y", "z"), [str(i) for i in range(5)], PROMPTS,
                      A, B)
    res = ranking_of_annotations(ann, policy, reference, tok, beta=0.1)
    # majority winners: a, a, b, tie (left out), b
    assert res["n_pairs"] == 4 and res["n_left_out"] == 1 and res["prompt"] == "chat template"
    msgs = [[{"role": "user", "content": p}] for p in PROMPTS]
    idx, win_a = [0, 1, 2, 4], [True, True, False, False]
    c = [A[i] if w else B[i] for i, w in zip(idx, win_a)]
    r = [B[i] if w else A[i] for i, w in zip(idx, win_a)]
    ref_lp, lens, _ = pair_logps(reference, tok, [msgs[i] for i in idx], c, r)
    pol_lp, _, _ = pair_logps(policy, tok, [msgs[i] for i in idx], c, r)
    assert res["policy"] == ranking_accuracy(pol_lp, lens)
    assert res["reference"] == ranking_accuracy(ref_lp, lens)
    alpha = np.array([1.0, 2 / 3, 2 / 3, 1.0])  # the winners' share of non-tie labels
    want = idealized_ranking_accuracy(ref_lp, alpha, 0.1, lengths=lens)
    assert res["idealized"] == want
    # the reference scored as the policy: the same ranking accuracy
    same = ranking_of_annotations(ann, reference, reference, tok, beta=0.1)
    assert same["policy"] == same["reference"]
