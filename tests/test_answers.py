"""prefkit.answers: answer extraction, MATH normalisation (its rules, expected outputs written
out by hand), equivalence checked against Hugging Face's math-verify (a maintained verifier,
installed from PyPI) on MATH-500, numeric / symbolic equality and Game of 24 validation, on
the real GSM8K, MATH-500 and Game of 24 files."""

from __future__ import annotations

import csv
import gzip
import itertools
import json
from fractions import Fraction

import pytest
from shared_paths import SHARED

from prefkit.answers import (
    check_24,
    check_answer,
    extract_boxed,
    final_answer,
    game24_numbers,
    gsm8k_reference,
    math_equal,
    normalize_math,
    numbers_equal,
    parse_number,
    symbolic_equal,
)

RL = SHARED / "data" / "rl"


def _math500() -> list[dict]:
    path = RL / "math500" / "test.jsonl"
    if not path.is_file():
        pytest.skip(f"shared data missing: {path}")
    return [json.loads(line) for line in path.open()]


def _verify(prediction: str, gold: str) -> bool:
    """math-verify's verdict (Hugging Face, PyPI math-verify 0.9.0)."""
    mv = pytest.importorskip("math_verify")
    return bool(mv.verify(mv.parse("$" + gold + "$"), mv.parse("$" + prediction + "$")))


# MATH's normalisation (hendrycks/math, modeling/math_equivalence.py: _strip_string), each
# expected output worked out by hand from its rules -- quirks included: "\\sqrt 2" braces
# the space before spaces are removed ("\\sqrt{}2"), "\\frac{a}b" is left alone
NORMALISED = [
    ("\\dfrac{1}{2}", "\\frac{1}{2}"), ("\\tfrac12", "\\frac{1}{2}"),
    ("\\frac12", "\\frac{1}{2}"), ("\\frac1{72}", "\\frac{1}{72}"),
    ("\\frac{a}b", "\\frac{a}b"), ("0.5", "\\frac{1}{2}"), (".5", "\\frac{1}{2}"),
    ("3/4", "\\frac{3}{4}"), ("3/x", "3/x"), ("x = 3", "3"), ("xyz = 3", "xyz=3"),
    ("\\sqrt3", "\\sqrt{3}"), ("2\\sqrt 2", "2\\sqrt{}2"), ("10\\%", "10"),
    ("50%", "50"), ("90^\\circ", "90"), ("90^{\\circ}", "90"), ("\\$5", "5"),
    ("5 \\text{ cm}", "5"), ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
    ("a\\!b", "ab"), ("{.5}", "{0.5}"), ("1\\\\2", "1\\2"), ("", ""),
]

# hand variants: (prediction, reference, are they the same answer?)
VARIANTS = [
    ("\\frac12", "\\frac{1}{2}", True), ("\\dfrac{1}{2}", "\\frac{1}{2}", True),
    ("1/2", "\\frac{1}{2}", True), ("0.5", "\\frac{1}{2}", True), (".5", "\\frac12", True),
    ("x = 3", "3", True), ("\\sqrt3", "\\sqrt{3}", True), ("10\\%", "10", True),
    ("90^\\circ", "90", True), ("\\$5", "5", True), ("5 \\text{ cm}", "5", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True),
    ("3", "4", False), ("\\frac{1}{3}", "0.33", False), ("(1,2)", "[1,2)", False),
    ("0.50", "\\frac{1}{2}", True), ("2/4", "\\frac{1}{2}", True),
    ("\\frac{\\sqrt{8}}{2}", "\\sqrt{2}", True), ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("1,000", "1000", True), ("(3, \\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("x^2+2x+1", "(x+1)^2", True), ("x^2+1", "(x+1)^2", False), ("-3", "3", False),
]


@pytest.mark.parametrize(("text", "want"), NORMALISED)
def test_normalisation_follows_math_rules(text: str, want: str) -> None:
    assert normalize_math(text) == want


def test_math500_boxed_solutions_equal_their_answers() -> None:
    """Every MATH-500 solution's last \\boxed{} is its answer: math_equal and math-verify
    both say so, for all 500."""
    rows = _math500()
    for r in rows:
        boxed = extract_boxed(r["solution"])
        assert boxed is not None
        assert math_equal(boxed, r["answer"]), (boxed, r["answer"])
        assert _verify(boxed, r["answer"]), (boxed, r["answer"])
        assert math_equal(final_answer(f"so $\\boxed{{{r['answer']}}}$."), r["answer"])


def test_variants_and_pairs_against_math_verify() -> None:
    """Hand variants: math_equal gives the truth, and agrees with math-verify. Pairs of
    different MATH-500 answers: math_equal never calls equal what math-verify calls
    different; where math-verify is more lenient, the pairs are listed (it treats a tuple as
    an unordered set and ignores units; MATH's graders keep both)."""
    for pred, gold, truth in VARIANTS:
        assert math_equal(pred, gold) == truth, (pred, gold)
        assert _verify(pred, gold) == truth, (pred, gold)
    answers = sorted({r["answer"] for r in _math500()})[:60]
    pairs = list(itertools.combinations(answers, 2))
    mine = {p: math_equal(*p) for p in pairs}
    theirs = {p: _verify(*p) for p in pairs}
    assert not [p for p in pairs if mine[p] and not theirs[p]]
    lenient = {p for p in pairs if theirs[p] and not mine[p]}
    assert lenient <= {("(-2,1)", "-2,1"), ("(-2,1)", "1,-2"), ("-2,1", "1,-2"),
                       ("15", "15\\mbox{ cm}^2")}, lenient


def test_extraction() -> None:
    assert extract_boxed("a \\boxed{\\frac{a}{b^{2}}} b \\boxed{7}") == "7"
    assert extract_boxed("\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}") == \
        "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"
    assert extract_boxed("\\boxed 5 apples") == "5"
    assert extract_boxed("no box") is None and extract_boxed("\\boxed{unclosed") is None
    assert final_answer("so 3+4 = 7.\nThe answer is 7.") == "7"
    assert final_answer("He has 12 apples and 1,200 pears") == "1200"
    assert final_answer("#### 1,234") == "1234"
    assert final_answer("nothing here") is None


def test_gsm8k_reference_answers_on_the_real_file() -> None:
    """Every GSM8K test answer ends in '#### N' with N a number; the worked solution checks
    against its own answer, and a changed number does not."""
    path = RL / "gsm8k" / "test.jsonl"
    if not path.is_file():
        pytest.skip(f"shared data missing: {path}")
    rows = [json.loads(line) for line in path.open()]
    assert len(rows) == 1319
    for r in rows:
        gold = gsm8k_reference(r["answer"])
        assert parse_number(gold) is not None, gold
        assert check_answer(r["answer"], gold, kind="gsm8k")
        assert not check_answer(f"The answer is {parse_number(gold) + 1}.", gold, kind="gsm8k")
    with gzip.open(RL / "gsm8k" / "train.jsonl.gz", "rt") as f:
        first = json.loads(f.readline())
    assert gsm8k_reference(first["answer"]) == "72"
    with pytest.raises(ValueError, match="####"):
        gsm8k_reference("no marker")


def test_numbers() -> None:
    assert parse_number("-3/4") == Fraction(-3, 4)
    assert parse_number("\\dfrac34") == Fraction(3, 4)
    assert parse_number("$12.50") == Fraction(25, 2)
    assert parse_number("1/0") is None and parse_number("abc") is None
    assert numbers_equal("12", "12.000") and numbers_equal("0.333333333", "0.3333333333")
    assert numbers_equal("0.33", "1/3") is False
    assert numbers_equal("x", "1") is None


def test_symbolic() -> None:
    assert symbolic_equal("\\frac{\\pi}{2}", "\\pi/2")
    assert symbolic_equal("2\\sqrt{3}", "\\sqrt{12}")
    assert symbolic_equal("x+1", "x+2") is None or symbolic_equal("x+1", "x+2") is False
    assert symbolic_equal("\\begin{pmatrix}1\\end{pmatrix}", "1") is None
    assert symbolic_equal("1", "2") is False


def test_game24_on_the_real_puzzles() -> None:
    """Known solutions check, wrong ones do not; every puzzle of the file parses."""
    path = RL / "game24" / "24.csv"
    if not path.is_file():
        pytest.skip(f"shared data missing: {path}")
    with path.open() as f:
        puzzles = [r["Puzzles"] for r in csv.DictReader(f)]
    assert len(puzzles) == 1362 and all(len(game24_numbers(p)) == 4 for p in puzzles)
    assert "4 9 10 13" in puzzles
    assert check_24("(10 - 4) * (13 - 9) = 24", "4 9 10 13")
    assert check_24("(13 - 9) × (10 - 4)", [13, 9, 10, 4])
    assert not check_24("(10 - 4) * (13 - 9) + 0", "4 9 10 13")  # extra number
    assert not check_24("10 * 4 - 13 - 9", "4 9 10 13")          # = 18
    assert not check_24("(10 - 4) * 4", "4 9 10 13")              # numbers not as given
    assert not check_24("8 / (3 - 8 / 3)", "3 3 8 8") or check_24("8 / (3 - 8 / 3)", "3 3 8 8")
    assert check_24("8 / (3 - 8 / 3)", "3 3 8 8")                 # exact rationals: 8/(1/3)
    assert not check_24("__import__('os')", "1 2 3 4")
    assert not check_24("4 / (1 - 1) + 2", "1 1 2 4")
    with pytest.raises(ValueError):
        game24_numbers("1 2 3")
