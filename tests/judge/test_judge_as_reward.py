"""`prefkit reward eval --judge`: an LLM judge scored like a reward model, end to end against
prefkit.llm's real OpenAI-compatible server on 127.0.0.1 (scripted judges with and without
log-probabilities, a tiny Llama read directly) on LLMBar pairs from the shared data. Every
accuracy is checked against a count made here from the raw LLMBar rows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest
from shared_paths import SHARED
from typer.testing import CliRunner

from prefkit.cli.main import app
from prefkit.judge.evaluate import judge_scores, pair_items
from prefkit.llm.server import Faults, Reply, canned_responder, serve_responder
from prefkit.llm.types import TokenLogprob
from prefkit.reward.rewardbench import EXAMPLE_COUNTS

runner = CliRunner()
LLMBAR = SHARED / "data" / "reward" / "llmbar"
pytestmark = pytest.mark.skipif(not LLMBAR.is_dir(), reason="shared data missing")


def _answers(text: str) -> tuple[str, str]:
    a = text.split("[The Start of Assistant A's Answer]\n")[1].split("\n[The End")[0]
    b = text.split("[The Start of Assistant B's Answer]\n")[1].split("\n[The End")[0]
    return a, b


def biased_judge(request) -> str:
    """Prefers the answer shown first unless the second is over 1.5 times as long: its two
    orders disagree on many pairs (no log-probabilities)."""
    a, b = _answers(request.messages[-1]["content"])
    return "My verdict: [[B]]" if len(b) > 1.5 * len(a) else "My verdict: [[A]]"


def _biased_credit(chosen: str, rejected: str) -> float:
    """What the biased judge's two orders give the chosen answer: 1 when both pick it, 0
    when neither does, 1/2 when they disagree (the reward evaluation's tie)."""
    ab = 0.0 if len(rejected) > 1.5 * len(chosen) else 1.0  # chosen shown first
    ba = 1.0 if len(chosen) > 1.5 * len(rejected) else 0.0  # rejected shown first
    m = (ab + ba) / 2
    return 1.0 if m > 0.5 else 0.0 if m < 0.5 else 0.5


def _rows(name: str) -> list[dict]:
    return json.loads((LLMBAR / name).read_text())


def _chosen_rejected(row: dict) -> tuple[str, str]:
    return (row["output_1"], row["output_2"]) if row["label"] == 1 else (row["output_2"],
                                                                        row["output_1"])


def _eval(args: list[str]) -> dict:
    r = runner.invoke(app, ["reward", "eval", *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_judge_accuracy_equals_an_independent_count_both_orders(tmp_path: Path) -> None:
    data = LLMBAR / "llmbar_natural.json"
    rows = _rows("llmbar_natural.json")
    s = serve_responder(canned_responder(biased_judge), model="biased")
    try:
        d = _eval(["--judge", "biased", "--base-url", s.base_url, str(data),
                   "--verdicts", str(tmp_path / "v.jsonl")])
        assert s.stats.requests == 2 * len(rows) == 200
    finally:
        s.close()
    credit = [_biased_credit(*_chosen_rejected(r)) for r in rows]
    assert d["n"] == 100 and d["accuracy"] == pytest.approx(np.mean(credit))
    assert d["n_ties"] == sum(c == 0.5 for c in credit) > 10  # many inconsistent pairs
    assert d["judge"]["unjudged"] == 0 and d["judge"]["error_verdicts"] == 0
    assert d["model"] == "biased" and d["input"]["format"] == "llmbar"
    # the length baselines are the reward evaluation's, on the same pairs
    longer = np.mean([1.0 if len(c) > len(r) else 0.5 if len(c) == len(r) else 0.0
                      for c, r in map(_chosen_rejected, rows)])
    assert d["baselines"]["longer"]["accuracy"] == pytest.approx(longer)
    assert d["per_category"]["Natural"]["accuracy"] == pytest.approx(np.mean(credit))
    # the written verdicts are judge run's records: model_a is the chosen answer, shown first
    recs = [json.loads(x) for x in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert {r["model_a"] for r in recs} == {"chosen"} and len(recs) == 100


def test_probabilities_decide_where_the_text_is_position_bias(tmp_path: Path) -> None:
    """A judge that always writes [[A]] but whose label-token probabilities lean to the
    longer answer: scored from the text it would be a coin (every pair inconsistent),
    scored from its probabilities it is the longer-wins baseline; the calibration is that
    of p itself (Brier = mean (1 - p)^2, p computed here)."""
    def judge(request) -> Reply:
        a, b = _answers(request.messages[-1]["content"])
        pa, pb = (0.8, 0.15) if len(a) > len(b) else (0.55, 0.4)
        top = (("A", math.log(pa)), ("B", math.log(pb)))
        return Reply("[[A]]", (TokenLogprob("[[", -0.01), TokenLogprob("A", math.log(pa), top),
                               TokenLogprob("]]", -0.01)))

    rows = _rows("llmbar_adversarial_gptout.json")
    s = serve_responder(judge, model="leaning")
    try:
        d = _eval(["--judge", "leaning", "--base-url", s.base_url,
                   str(LLMBAR / "llmbar_adversarial_gptout.json")])
    finally:
        s.close()
    p = []
    for c, r in map(_chosen_rejected, rows):
        ab = (0.8 if len(c) > len(r) else 0.55) / 0.95  # chosen shown first: P(A)
        ba = (0.15 if len(r) > len(c) else 0.4) / 0.95  # rejected first: chosen is B
        p.append((ab + ba) / 2)
    p = np.array(p)
    assert d["n"] == len(rows) == 47
    assert d["accuracy"] == pytest.approx(np.mean(np.where(np.isclose(p, 0.5), 0.5, p > 0.5)))
    assert d["accuracy"] == pytest.approx(d["baselines"]["longer"]["accuracy"])
    assert d["calibration"]["brier"] == pytest.approx(np.mean((1 - p) ** 2))
    assert d["judge"]["from_probabilities"] == 47
    assert d["judge"]["mean_label_mass"] == pytest.approx(0.95)
    # Wilson interval of an integer count, against scipy's
    k = round(d["accuracy"] * 47)
    if d["n_ties"] == 0:
        ci = binomtest(k, 47).proportion_ci(method="wilson")
        assert d["interval"] == pytest.approx([ci.low, ci.high])


def test_errors_are_counted_single_orders_kept_unjudged_left_out(tmp_path: Path) -> None:
    """Every 7th request answered 400 and questions holding 'the' in their first 12
    characters answered without a verdict: each error order counted, a pair with one valid
    order scored from it, a pair with none left out (and its tie-count accuracy beside)."""
    rows = _rows("llmbar_adversarial_manual.json")

    def judge(request) -> str:
        text = request.messages[-1]["content"]
        q = text.split("[User Question]\n")[1]
        return "no idea" if "the" in q[:12].lower() else biased_judge(request)

    s = serve_responder(canned_responder(judge), faults=Faults(bad_request_every=7),
                        model="flaky")
    try:
        d = _eval(["--judge", "flaky", "--base-url", s.base_url, "--concurrency", "1",
                   str(LLMBAR / "llmbar_adversarial_manual.json"),
                   "--verdicts", str(tmp_path / "v.jsonl")])
    finally:
        s.close()
    recs = [json.loads(x) for x in (tmp_path / "v.jsonl").read_text().splitlines()]
    errors = [(i, o) for i, r in enumerate(recs) for o in ("ab", "ba")
              if r[f"winner_{o}"] == "error"]
    assert len(errors) == d["judge"]["error_verdicts"] > 0
    none = {i for i in range(len(recs)) if (i, "ab") in errors and (i, "ba") in errors}
    one = {i for i, _ in errors} - none
    assert d["judge"]["unjudged"] == len(none) > 0 and d["judge"]["single_order"] == len(one)
    credit = []
    for i, row in enumerate(rows):
        if i in none:
            continue
        c, r = _chosen_rejected(row)
        votes = []
        if (i, "ab") not in errors:
            votes.append(0.0 if len(r) > 1.5 * len(c) else 1.0)
        if (i, "ba") not in errors:
            votes.append(1.0 if len(c) > 1.5 * len(r) else 0.0)
        m = np.mean(votes)
        credit.append(1.0 if m > 0.5 else 0.0 if m < 0.5 else 0.5)
    assert d["n"] == len(rows) - len(none) and d["accuracy"] == pytest.approx(np.mean(credit))
    assert d["judge"]["accuracy_with_unjudged_as_ties"] == pytest.approx(
        (sum(credit) + 0.5 * len(none)) / len(rows))


def test_one_order_shows_the_chosen_answer_first_in_half_the_pairs(tmp_path: Path) -> None:
    rows = _rows("llmbar_natural.json")
    s = serve_responder(canned_responder("[[A]]"), model="first")
    try:
        d = _eval(["--judge", "first", "--base-url", s.base_url, "--one-order",
                   str(LLMBAR / "llmbar_natural.json"), "--verdicts", str(tmp_path / "v.jsonl")])
        assert s.stats.requests == len(rows)
    finally:
        s.close()
    recs = [json.loads(x) for x in (tmp_path / "v.jsonl").read_text().splitlines()]
    first = sum(r["model_a"] == "chosen" for r in recs)
    assert 35 <= first <= 65  # a fixed hash, about half
    assert d["accuracy"] == pytest.approx(first / len(rows)) and d["n_ties"] == 0
    items = pair_items(type("P", (), {"prompt": ["q"] * 4, "chosen": list("abcd"),
                                      "rejected": list("wxyz")})(), both_orders=False)
    assert [it["model_a"] for it in items] == [r["model_a"] for r in recs[:4]]  # seeded


def test_rewardbench_file_gets_section_scores(tmp_path: Path) -> None:
    """LLMBar rows written as a RewardBench file (subset = the RewardBench subset the split
    is in): the Chat Hard section is the EXAMPLE_COUNTS-weighted mean of the subsets'
    accuracies, a tie counted wrong (RewardBench's rule)."""
    subsets = {"llmbar-natural": "llmbar_natural.json",
               "llmbar-adver-GPTOut": "llmbar_adversarial_gptout.json"}
    rb, right = [], {}
    for sub, name in subsets.items():
        credit = []
        for i, row in enumerate(_rows(name)):
            c, r = _chosen_rejected(row)
            rb.append({"prompt": row["input"], "chosen": c, "rejected": r, "subset": sub,
                       "id": f"{sub}-{i}"})
            credit.append(_biased_credit(c, r))
        right[sub] = np.mean(np.array(credit) == 1.0)
    f = tmp_path / "rb.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in rb))
    s = serve_responder(canned_responder(biased_judge), model="biased")
    try:
        d = _eval(["--judge", "biased", "--base-url", s.base_url, str(f)])
        r = runner.invoke(app, ["reward", "eval", "--judge", "biased", "--base-url", s.base_url,
                                str(f)])
    finally:
        s.close()
    assert d["input"]["format"] == "rewardbench"
    bench = d["rewardbench"]
    for sub, acc in right.items():
        assert bench["subsets"][sub] == pytest.approx(acc)
    w = {k: EXAMPLE_COUNTS[k] for k in subsets}
    hard = sum(right[k] * w[k] for k in w) / sum(w.values())  # (100 a + 47 b) / 147
    assert bench["sections"]["Chat Hard"] == pytest.approx(hard)
    assert bench["score"] == pytest.approx(hard / 4)  # the three other sections score 0
    assert r.exit_code == 0 and "RewardBench score" in r.stdout and "Chat Hard" in r.stdout


def test_local_tiny_llama_judge_read_directly(tmp_path: Path) -> None:
    """--local: a tiny Llama's next-token distribution over alpaca_eval's labels (m / M),
    both orders; p recomputed here from the backend's own label distributions."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from prefkit.align.tiny import char_tokenizer, tiny_llama
    from prefkit.judge.templates import TEMPLATES
    from prefkit.llm.local import LocalModelBackend
    from prefkit.llm.types import ChatRequest

    tok = char_tokenizer()
    folder = tmp_path / "tiny"
    tiny_llama(len(tok), seed=0).save_pretrained(folder)
    tok.save_pretrained(folder)
    rows = _rows("llmbar_natural.json")[:6]
    data = tmp_path / "six.json"
    data.write_text(json.dumps([{**r, "input": r["input"][:60], "output_1": r["output_1"][:60],
                                 "output_2": r["output_2"][:60]} for r in rows]))
    d = _eval(["--local", str(folder), "--template", "alpaca_eval", str(data)])
    backend = LocalModelBackend(str(folder))
    tpl = TEMPLATES["alpaca_eval"]
    p = []
    for row in json.loads(data.read_text()):
        c, r = _chosen_rejected(row)
        q = []
        for first, second, chosen_label in ((c, r, "m"), (r, c, "M")):
            req = ChatRequest.of(tpl.render(question=row["input"], answer_a=first,
                                            answer_b=second), temperature=0.0, max_tokens=1)
            dist = backend.label_distribution(req, ["m", "M"])
            q.append(dist[chosen_label] / (dist["m"] + dist["M"]))
        p.append(np.mean(q))
    p = np.array(p)
    assert d["n"] == 6 and d["judge"]["from_probabilities"] == 6
    assert d["accuracy"] == pytest.approx(np.mean(np.where(p > 0.5, 1.0, np.where(p < 0.5,
                                                                                  0.0, 0.5))))
    assert d["calibration"]["brier"] == pytest.approx(np.mean((1 - p) ** 2))


def test_judge_scores_by_hand_and_bad_arguments(tmp_path: Path) -> None:
    recs = [{"model_a": "chosen", "model_b": "rejected", "winner_ab": "A", "winner_ba": "A",
             "probs_ab": None, "probs_ba": None},          # inconsistent: 1/2
            {"model_a": "rejected", "model_b": "chosen", "winner_ab": "tie",
             "winner_ba": None},                            # one order asked, a tie: 1/2
            {"model_a": "chosen", "model_b": "rejected", "winner_ab": "error",
             "winner_ba": "B", "probs_ba": {"A": 0.1, "B": 0.6, "tie": 0.1, "mass": 0.8}},
            {"model_a": "chosen", "model_b": "rejected", "winner_ab": "error",
             "winner_ba": "error"}]
    js = judge_scores(recs)
    np.testing.assert_allclose(js.p[:3], [0.5, 0.5, (0.6 + 0.05) / 0.8])
    assert math.isnan(js.p[3]) and js.unjudged == 1 and js.single_order == 1
    assert js.orders.tolist() == [2, 1, 1, 0] and len(js.errors) == 3
    c, r = js.scores()
    assert c.size == 3 and np.allclose(c, -r) and c[0] == 0.0
    assert js.accuracy_with_unjudged_as_ties() == pytest.approx((0.5 + 0.5 + 1 + 0.5) / 4)
    data = str(LLMBAR / "llmbar_natural.json")
    r = runner.invoke(app, ["reward", "eval", "--judge", "j", str(tmp_path), data])
    assert r.exit_code == 2 and "replace the reward-model folder" in r.output
    r = runner.invoke(app, ["reward", "eval", "--judge", "j", "--template", "mtbench_single",
                            "--base-url", "http://127.0.0.1:9/v1", data])
    assert r.exit_code == 2 and "pairs" in r.output
    r = runner.invoke(app, ["reward", "eval"])
    assert r.exit_code == 2 and "--judge NAME DATA" in r.output


def test_verdicts_file_is_never_replaced_silently(tmp_path: Path) -> None:
    """An existing --verdicts file is refused before any request (was: replaced silently);
    --overwrite replaces it; --verdicts without a judge is refused."""
    data = LLMBAR / "llmbar_natural.json"
    v = tmp_path / "v.jsonl"
    v.write_text("keep me\n")
    s = serve_responder(canned_responder(biased_judge), model="biased")
    try:
        args = ["reward", "eval", "--judge", "biased", "--base-url", s.base_url, str(data),
                "--verdicts", str(v), "--json"]
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and "already exists" in " ".join(r.output.split())
        assert v.read_text() == "keep me\n" and s.stats.requests == 0
        r = runner.invoke(app, [*args, "--overwrite"])
        assert r.exit_code == 0, r.output
        assert s.stats.requests == 200 and len(v.read_text().splitlines()) == 100  # a pair a line
    finally:
        s.close()
    r = runner.invoke(app, ["reward", "eval", str(tmp_path), str(data), "--verdicts", str(v)])
    assert r.exit_code == 2 and "--judge or --local" in " ".join(r.output.split())
