"""Templates, parsing and the judging protocols end to end: a real OpenAI-compatible server
on 127.0.0.1 (prefkit.llm.server, uvicorn) answering from a scripted judge with
log-probabilities, and a tiny Llama built in the test (read directly, and served over HTTP)."""

from __future__ import annotations

import gzip
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from shared_paths import SHARED
from typer.testing import CliRunner

from prefkit.cli.main import app
from prefkit.judge.analyze import analyze
from prefkit.judge.io import read_verdicts
from prefkit.judge.parse import label_probabilities, parse_pairwise, parse_rating
from prefkit.judge.protocols import judge_pairs, rank_answers, rate_answers
from prefkit.judge.templates import TEMPLATES, load_template
from prefkit.llm.server import Faults, Reply, serve_responder
from prefkit.llm.types import TokenLogprob

runner = CliRunner()
JUDGE = SHARED / "data" / "judge"
QUALITY = {"good": 3, "fair": 2, "poor": 1}  # the scripted judge prefers the better word
P_WIN, P_LOSE, P_TIE = 0.7, 0.2, 0.05  # its label probabilities at the verdict token
GRADE = {"good": 8, "fair": 5, "poor": 9}  # its single grades: 'poor' overrated (conflicts)

def _gz(path: object) -> str:
    """A gzip file's text."""
    with gzip.open(path, "rt", encoding="utf-8") as f:  # type: ignore[call-overload]
        return f.read()



def _answers(text: str) -> tuple[str, str]:
    a = text.split("[The Start of Assistant A's Answer]\n")[1].split("\n[The End")[0]
    b = text.split("[The Start of Assistant B's Answer]\n")[1].split("\n[The End")[0]
    return a, b


def scripted_judge(request) -> Reply | str:
    """Answers pair-v2 prompts: the answer whose first word is better wins ([[A]]/[[B]]),
    with top_logprobs at the verdict token; 'unsure' questions get no verdict; single-v1
    prompts get [[7]] with probabilities over 6, 7, 8."""
    text = request.messages[-1]["content"]
    if "[[rating]]" in text:
        answer = text.split("[The Start of Assistant's Answer]\n")[1].split("\n[The End")[0]
        grade = str(GRADE.get(answer.split()[0], 7))
        alts = ("8", "6") if grade == "7" else ("2", "3")  # never the grade itself
        top = ((grade, math.log(0.6)), (alts[0], math.log(0.25)), (alts[1], math.log(0.1)))
        return Reply(f"Rating: [[{grade}]]", (TokenLogprob("Rating: [[", -0.01),
                                              TokenLogprob(grade, math.log(0.6), top),
                                              TokenLogprob("]]", -0.01)))
    if "unsure" in text:
        return "I cannot decide between them."
    a, b = _answers(text)
    qa, qb = QUALITY[a.split()[0]], QUALITY[b.split()[0]]
    label = "A" if qa > qb else "B" if qb > qa else "C"
    other = {"A": "B", "B": "A", "C": "A"}[label]
    top = ((label, math.log(P_WIN)), (other, math.log(P_LOSE)),
           ("C" if label != "C" else "B", math.log(P_TIE)))
    toks = (TokenLogprob("Verdict: ", -0.1), TokenLogprob("[[", -0.01),
            TokenLogprob(label, math.log(P_WIN), top), TokenLogprob("]]", -0.01))
    return Reply(f"Verdict: [[{label}]]", toks)


def _pairs(tmp_path: Path) -> Path:
    rows = []
    for q in ("q1", "q2", "unsure q3"):
        for (ma, wa), (mb, wb) in [(("m1", "good"), ("m2", "fair")),
                                   (("m2", "fair"), ("m3", "poor")),
                                   (("m1", "good"), ("m3", "poor"))]:
            rows.append({"question_id": q, "question": f"{q}?", "model_a": ma, "model_b": mb,
                         "answer_a": f"{wa} answer of {ma}" + "!" * len(ma),
                         "answer_b": f"{wb} answer by {mb}"})
    p = tmp_path / "pairs.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


@pytest.fixture
def server():
    s = serve_responder(scripted_judge, model="scripted")
    yield s
    s.close()


# -- templates and parsing ---------------------------------------------------------------
@pytest.mark.skipif(not JUDGE.is_dir(), reason="shared data missing")
def test_mtbench_pair_renders_the_prompt_gpt4_saw() -> None:
    """FastChat's recorded GPT-4 judgments hold the exact user prompts of both games; the
    template rebuilt from the question and answers gives them back, byte for byte."""
    rows = [json.loads(line) for line in _gz(JUDGE / "fastchat_gpt4_pair.jsonl.gz").splitlines()]
    checked = 0
    for r in rows:
        if r["judge"] != ["gpt-4", "pair-v2"]:
            continue
        p1 = r["g1_user_prompt"]
        q = p1.split("[User Question]\n", 1)[1].split("\n\n[The Start of Assistant A")[0]
        a, b = _answers(p1)
        msgs = TEMPLATES["mtbench_pair"].render(question=q, answer_a=a, answer_b=b)
        assert msgs[1]["content"] == p1
        assert TEMPLATES["mtbench_pair"].render(question=q, answer_a=b, answer_b=a)[1][
            "content"] == r["g2_user_prompt"]
        assert msgs[0]["content"].endswith('"[[C]]" for a tie.')
        checked += 1
    assert checked == 50


def test_templates_refuse_missing_fields_and_load_user_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="answer_b"):
        TEMPLATES["mtbench_pair"].render(question="q", answer_a="x")
    f = tmp_path / "mine.jinja"
    f.write_text("Q: {{ question }}\n1: {{ answer_a }}\n2: {{ answer_b }}\nSay [[A]] or [[B]].")
    t = load_template(f)
    assert t.kind == "pairwise" and t.verdict == "ab"
    assert t.render(question="q", answer_a="x", answer_b="y")[0]["content"].startswith("Q: q")
    j = tmp_path / "mine.json"
    j.write_text(json.dumps({"user": "{{ question }} {{ answer }}", "kind": "single",
                             "verdict": "json", "labels": ["1", "2", "3"]}))
    assert load_template(j).labels == ("1", "2", "3")
    with pytest.raises(ValueError, match="unknown template"):
        load_template("nope")


def test_parsing_counts_what_it_cannot_read() -> None:
    assert parse_pairwise("[[A]]").value == 0 and parse_pairwise("[[C]]").value == 2
    assert not parse_pairwise("A is better").ok
    assert not parse_pairwise("[[A>B]] then [[B>A]]", "arena").ok
    assert parse_pairwise("[[A>B]] ... again [[A>B]]", "arena").value == 0
    assert parse_pairwise("M", "token").value == 1 and not parse_pairwise("x", "token").ok
    assert parse_rating("[[3]] and [[3]]").value == 3 and not parse_rating("[[3]] [[4]]").ok
    assert not parse_rating("no rating").ok
    assert parse_rating('{"rating": 4}', style="json").value == 4


def test_label_probabilities_are_not_renormalised() -> None:
    toks = (TokenLogprob("x [[", -0.1),
            TokenLogprob("B", math.log(0.5), (("B", math.log(0.5)), (" A", math.log(0.3)),
                                               ("zz", math.log(0.15)))),
            TokenLogprob("]]", -0.01))
    probs, pos = label_probabilities(toks, ("A", "B", "C"))
    assert pos == 1 and probs == pytest.approx([0.3, 0.5, 0.0])  # mass 0.8, kept as is
    assert label_probabilities(toks[:1], ("A", "B", "C")) is None


# -- protocols over HTTP -------------------------------------------------------------------
def test_pairwise_both_orders_over_http(server, tmp_path: Path) -> None:
    from prefkit.judge.inputs import read_judge_inputs
    from prefkit.llm.client import OpenAIClient

    items, _ = read_judge_inputs(_pairs(tmp_path))
    client = OpenAIClient(base_url=server.base_url, model="scripted", concurrency=4)
    recs = judge_pairs(client, items, TEMPLATES["mtbench_pair"], concurrency=4)
    assert server.stats.requests == 18  # 9 pairs x 2 orders
    good = [r for r in recs if not r["question_id"].startswith("unsure")]
    for r in good:
        assert r["winner"] == r["model_a"] and r["winner_ab"] == "A" and r["winner_ba"] == "B"
        assert r["probs_ab"] == pytest.approx({"A": P_WIN, "B": P_LOSE, "tie": P_TIE,
                                               "mass": P_WIN + P_LOSE + P_TIE})
        assert r["probs_ba"]["B"] == pytest.approx(P_WIN)
    bad = [r for r in recs if r["question_id"].startswith("unsure")]
    assert all(r["winner_ab"] == r["winner_ba"] == "error" for r in bad)
    assert all("no verdict in the answer" in r["error_ab"] for r in bad)
    assert bad[0]["output_ab"] == "I cannot decide between them."


def test_rating_expected_score_and_mass(server) -> None:
    from prefkit.llm.client import OpenAIClient

    client = OpenAIClient(base_url=server.base_url, model="scripted")
    recs = rate_answers(client, [{"question_id": "1", "question": "q", "model": "m",
                                  "answer": "x"}], TEMPLATES["mtbench_single"])
    r = recs[0]
    assert r["score"] == 7 and r["label_mass"] == pytest.approx(0.95)
    # (6 * 0.1 + 7 * 0.6 + 8 * 0.25) / 0.95, the mass reported next to it
    assert r["expected_score"] == pytest.approx((0.6 + 4.2 + 2.0) / 0.95)


def test_judge_run_cli_then_analyze_and_rank(server, tmp_path: Path) -> None:
    out = tmp_path / "verdicts.jsonl"
    cache = tmp_path / "cache.sqlite"
    args = ["judge", "run", str(_pairs(tmp_path)), "--model", "scripted", "--base-url",
            server.base_url, "--cache", str(cache), "--output", str(out), "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["verdicts"] == 18 and summary["errors"] == 6  # the 'unsure' question
    assert summary["position_consistency"] == 1.0
    hits = server.stats.requests
    r = runner.invoke(app, [*args, "--overwrite"])  # a rerun: every answer from the cache
    assert r.exit_code == 0 and server.stats.requests == hits
    assert json.loads(r.stdout)["cached"] == 18
    # the verdict file is read back as verdicts with their probabilities ...
    d = read_verdicts(out)
    assert d.formats == ["judge_pairs"] and len(d.verdicts) == 9
    ok = d.verdicts.ab >= 0
    np.testing.assert_allclose(d.verdicts.prob_ab[ok], [[P_WIN, P_LOSE, P_TIE]] * int(ok.sum()))
    rep = analyze(d.verdicts)[0]
    assert rep.position_consistency.value == 1.0 and rep.counts["errors"] == 6
    assert rep.non_transitivity.ratio.value == 0.0
    # ... and as votes by prefkit rank (an error verdict is a row to skip)
    r = runner.invoke(app, ["rank", str(out), "--json", "--skip-invalid", "--intervals", "none"])
    assert r.exit_code == 0, r.output
    board = json.loads(r.stdout)
    assert [x["item"] for x in board["leaderboard"]] == ["m1", "m2", "m3"]
    assert [x["votes"] for x in board["leaderboard"]] == [8.0, 8.0, 8.0]  # 2 questions x 2 x 2


def test_judge_run_counts_failed_requests(tmp_path: Path) -> None:
    s = serve_responder(scripted_judge, faults=Faults(bad_request_every=5), model="scripted")
    try:
        out = tmp_path / "v.jsonl"
        r = runner.invoke(app, ["judge", "run", str(_pairs(tmp_path)), "--model", "scripted",
                                "--base-url", s.base_url, "--concurrency", "1",
                                "--output", str(out), "--json"])
    finally:
        s.close()
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    failed = [x for x in recs for o in ("ab", "ba") if (x[f"error_{o}"] or "").startswith(
        "request failed")]
    assert len(failed) == 18 // 5  # requests 5, 10, 15 answered 400 (not retried)
    assert json.loads(r.stdout)["errors"] == 6 + len(failed) - sum(
        x["question_id"].startswith("unsure") for x in failed)


def test_run_refuses_bad_input_in_flags_words(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"question": "q", "answer_a": "x", "answer_b": None}) + "\n")
    r = runner.invoke(app, ["judge", "run", str(p), "--model", "m", "--base-url",
                            "http://127.0.0.1:9/v1", "--output", str(tmp_path / "o.jsonl")])
    assert r.exit_code == 2 and "line 1" in r.output and "answer_b" in r.output
    r = runner.invoke(app, ["judge", "run", str(p), "--template", "nope", "--output", "o"])
    assert r.exit_code == 2 and "--template" in r.output


# -- a tiny transformers model -------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_backend():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from prefkit.align.tiny import char_tokenizer, tiny_llama
    from prefkit.llm.local import LocalModelBackend

    tok = char_tokenizer()
    return LocalModelBackend(tiny_llama(len(tok), seed=0), tok, name="tiny",
                             default_max_tokens=8)


def test_local_model_label_distribution_read_directly(tiny_backend) -> None:
    pairs = [{"question_id": "1", "question": "2+2?", "model_a": "x", "model_b": "y",
              "answer_a": "4", "answer_b": "5"}]
    tpl = TEMPLATES["alpaca_eval"]
    recs = judge_pairs(tiny_backend, pairs, tpl)
    from prefkit.llm.types import ChatRequest

    for order, (a, b) in (("ab", ("4", "5")), ("ba", ("5", "4"))):
        req = ChatRequest.of(tpl.render(question="2+2?", answer_a=a, answer_b=b),
                             temperature=0.0, max_tokens=1, top_logprobs=5)
        dist = tiny_backend.label_distribution(req, ["m", "M"])
        p = recs[0][f"probs_{order}"]
        assert (p["A"], p["B"]) == pytest.approx((dist["m"], dist["M"]))
        assert p["mass"] == pytest.approx(dist.mass) and p["mass"] < 1  # not renormalised
        assert recs[0][f"winner_{order}"] == ("A" if dist["m"] > dist["M"] else "B")


def test_tiny_model_over_http_every_unparsed_answer_counted(tiny_backend, tmp_path: Path
                                                             ) -> None:
    from prefkit.llm.server import model_responder

    s = serve_responder(model_responder(tiny_backend), model="tiny")
    try:
        out = tmp_path / "v.jsonl"
        r = runner.invoke(app, ["judge", "run", str(_pairs(tmp_path)), "--model", "tiny",
                                "--base-url", s.base_url, "--output", str(out), "--json"])
    finally:
        s.close()
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    # an untrained 2-layer model writes no [[A]]: each of the 18 answers is an error
    # verdict with its reason and its text, none is defaulted to A, B or tie
    texts = [x[f"output_{o}"] for x in recs for o in ("ab", "ba")]
    parsed = [parse_pairwise(t) for t in texts]
    n_bad = sum(not p.ok for p in parsed)
    assert json.loads(r.stdout)["errors"] == n_bad
    for x in recs:
        for o in ("ab", "ba"):
            if x[f"winner_{o}"] == "error":
                assert x[f"error_{o}"] and isinstance(x[f"output_{o}"], str)
    assert all(re.fullmatch(r"A|B|tie|error", x["winner_ab"]) for x in recs)


def test_listwise_ranking(server) -> None:
    from prefkit.llm.server import canned_responder

    s = serve_responder(canned_responder("Ranking: [[2>3>1]]"), model="c")
    try:
        from prefkit.llm.client import OpenAIClient

        recs = rank_answers(OpenAIClient(base_url=s.base_url, model="c"),
                            [{"question_id": "1", "question": "q", "models": ["x", "y", "z"],
                              "answers": ["a", "b", "c"]},
                             {"question_id": "2", "question": "q", "models": ["x", "y"],
                              "answers": ["a", "b"]}], TEMPLATES["listwise"])
    finally:
        s.close()
    assert recs[0]["ranking"] == ["y", "z", "x"]
    assert recs[1]["ranking"] is None and "each of the 2 answers" in recs[1]["error"]


def longer_judge(request) -> str:
    """Prefers the longer answer, wherever it is shown."""
    a, b = _answers(request.messages[-1]["content"])
    return "[[A]]" if len(a) > len(b) else "[[B]]" if len(b) > len(a) else "[[C]]"


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared data missing")
def test_llmbar_human_agreement_of_a_live_judge(tmp_path: Path) -> None:
    """LLMBar Natural through prefkit judge run, then analyze --gold with LLMBar's own labels:
    the agreement equals the share of pairs whose gold answer is the longer one."""
    data = SHARED / "data" / "reward" / "llmbar" / "llmbar_natural.json"
    rows = json.loads(data.read_text())
    s = serve_responder(longer_judge, model="longer")
    try:
        out = tmp_path / "v.jsonl"
        r = runner.invoke(app, ["judge", "run", str(data), "--model", "longer", "--base-url",
                                s.base_url, "--output", str(out), "--json"])
        assert r.exit_code == 0, r.output
    finally:
        s.close()
    r = runner.invoke(app, ["judge", "analyze", str(out), "--gold", str(data), "--json"])
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)["judges"][0]
    hits = sum((len(x["output_1"]) > len(x["output_2"])) == (x["label"] == 1) for x in rows)
    assert j["position_consistency"] == 1.0 and j["first_position_rate"] == pytest.approx(0.5)
    assert j["counts"]["agreement_pairs"] == len(rows) == 100
    assert j["counts"]["agreement"] == pytest.approx(hits / len(rows))
    assert j["counts"]["prefers_longer"] == 1.0


def test_single_grades_and_pairs_of_one_live_judge_conflict(server, tmp_path: Path
                                                            ) -> None:
    pairs = _pairs(tmp_path)
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    answers = {(r["question_id"], m): a for r in rows
               for m, a in ((r["model_a"], r["answer_a"]), (r["model_b"], r["answer_b"]))}
    single = tmp_path / "answers.jsonl"
    single.write_text("".join(json.dumps({"question_id": q, "question": f"{q}?", "model": m,
                                          "answer": a}) + "\n" for (q, m), a in answers.items()))
    base = ["--model", "scripted", "--base-url", server.base_url]
    r1 = runner.invoke(app, ["judge", "run", str(pairs), *base, "--output",
                             str(tmp_path / "p.jsonl")])
    r2 = runner.invoke(app, ["judge", "run", str(single), "--template", "mtbench_single",
                             *base, "--output", str(tmp_path / "g.jsonl")])
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    grades = [json.loads(line) for line in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert {g["score"] for g in grades} == {8, 5, 9}
    assert all(g["label_mass"] == pytest.approx(0.95) for g in grades)
    r = runner.invoke(app, ["judge", "analyze", str(tmp_path / "p.jsonl"),
                            str(tmp_path / "g.jsonl"), "--json"])
    j = json.loads(r.stdout)["judges"][0]
    # per answerable question: m1 (8) > m2 (5) agrees; m2 (5) > m3 (9) and m1 (8) > m3 (9)
    # conflict: 4 of the 6 consistent non-tie pairs; the 'unsure' pairs have no verdict
    assert j["conflict_ratio"] == pytest.approx(4 / 6)
    assert j["counts"]["conflict_turn"] == 1 and j["counts"]["grades"] == 9


def test_judge_run_local_model_folder(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from prefkit.align.tiny import char_tokenizer, tiny_llama

    tok = char_tokenizer()
    folder = tmp_path / "tiny"
    tiny_llama(len(tok), seed=0).save_pretrained(folder)
    tok.save_pretrained(folder)
    out = tmp_path / "v.jsonl"
    r = runner.invoke(app, ["judge", "run", str(_pairs(tmp_path)), "--local", str(folder),
                            "--template", "alpaca_eval", "--output", str(out), "--json"])
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert json.loads(r.stdout)["errors"] == 0  # read from the distribution: never unparsed
    for x in recs:
        for o in ("ab", "ba"):
            p = x[f"probs_{o}"]
            assert 0 < p["mass"] < 1 and p["mass"] == pytest.approx(p["A"] + p["B"])
            assert x[f"winner_{o}"] == ("A" if p["A"] > p["B"] else "B")
    d = read_verdicts(out)
    assert d.verdicts.has_probabilities
    r = runner.invoke(app, ["judge", "analyze", str(out), "--repair", "likelihood", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["judges"][0]["position_consistency"] == 1.0
    r = runner.invoke(app, ["judge", "run", str(_pairs(tmp_path)), "--local", str(tmp_path),
                            "--output", str(tmp_path / "v2.jsonl")])
    assert r.exit_code == 2 and "no config.json" in r.output
