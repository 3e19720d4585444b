"""Answer checkers for tasks with verifiable answers (GSM8K, MATH, Game of 24).

Shared by process rewards (Monte-Carlo step labels, best-of-N accuracy) and online RL
(rule-based rewards); nothing here knows about reward models.

* :func:`extract_boxed` -- the content of the last ``\\boxed{...}`` (nested braces kept);
* :func:`final_answer` -- the answer a solution ends with: ``\\boxed{}``, else GSM8K's
  ``#### N``, else "the answer is X", else the last number;
* :func:`gsm8k_reference` -- the ``#### N`` answer of a GSM8K worked solution;
* :func:`normalize_math` -- the string normalisation of MATH's grader (Hendrycks et al.
  2021, ``math_equivalence.py``): the same rules, written here from their description;
* :func:`numbers_equal`, :func:`symbolic_equal` -- numeric equality (exact rationals, or
  a relative tolerance for decimals) and equality decided by sympy (``None`` when sympy
  cannot parse or decide);
* :func:`math_equal` -- MATH equivalence: normalised strings equal, else numbers equal,
  else sympy says so; tuples and intervals compared element by element;
* :func:`check_answer` -- one call: does ``response`` reach ``reference`` (``kind`` =
  ``"gsm8k"`` numeric or ``"math"``);
* :func:`check_24` -- a Game of 24 expression uses each number once with ``+ - * /``
  and equals 24 exactly (rational arithmetic).

>>> extract_boxed(r"so $x = \\boxed{\\frac{1}{2}}$.")
'\\\\frac{1}{2}'
>>> math_equal(r"\\frac12", "0.5"), math_equal(r"\\dfrac{\\sqrt{8}}{2}", r"\\sqrt{2}")
(True, True)
>>> check_answer("She pays 3 * 4 = 12 dollars.\\n#### 12", "12.00", kind="gsm8k")
True
>>> check_24("(10 - 4) * (13 - 9)", [4, 9, 10, 13])
True
"""

from __future__ import annotations

import ast
import math
import re
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

__all__ = [
    "check_24",
    "check_answer",
    "extract_boxed",
    "final_answer",
    "game24_numbers",
    "gsm8k_reference",
    "math_equal",
    "normalize_math",
    "numbers_equal",
    "parse_number",
    "symbolic_equal",
]

#: relative tolerance for decimals that are not exact rationals of one another
REL_TOL = 1e-6
_KINDS = ("gsm8k", "math")


# -- extracting answers -----------------------------------------------------------------------
def _braced(text: str, start: int) -> tuple[str, int] | None:
    """The content of the brace group opening at ``text[start] == "{"`` and the index after."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i], i + 1
    return None


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``, or ``\\boxed 5``) in
    ``text``, nested braces included; None when there is none (or it is unclosed)."""
    found: str | None = None
    for m in re.finditer(r"\\(?:boxed|fbox)\s*", text):
        j = m.end()
        if j < len(text) and text[j] == "{":
            got = _braced(text, j)
            if got is not None:
                found = got[0].strip()
        elif m.group(0)[-1].isspace():
            tail = re.match(r"[^\s$]+", text[j:])
            if tail:
                found = tail.group(0)
    return found


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def gsm8k_reference(solution: str) -> str:
    """The final answer of a GSM8K worked solution: what follows ``####``, commas removed.

    >>> gsm8k_reference("72 / 2 = 36 clips\\n#### 1,080")
    '1080'
    """
    if "####" not in solution:
        raise ValueError("a GSM8K answer ends with '#### <number>'; this one has no '####'")
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


def final_answer(text: str) -> str | None:
    """The answer a solution ends with: the last ``\\boxed{}``, else what follows the last
    ``####``, else what follows the last "answer is", else the last number; None if none."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    if "####" in text:
        tail = text.rsplit("####", 1)[1].strip()
        return tail.splitlines()[0].strip().replace(",", "") if tail else None
    m = list(re.finditer(r"answer is[:\s]*", text, flags=re.IGNORECASE))
    if m:
        rest = text[m[-1].end():].strip()
        rest = re.split(r"\n|(?<=[^\d])\.(?:\s|$)", rest)[0].strip().rstrip(".")
        if rest:
            return rest.strip("$ ")
    nums = _NUMBER.findall(text)
    return nums[-1].replace(",", "") if nums else None


# -- numbers ------------------------------------------------------------------------------------
def parse_number(text: str | None) -> Fraction | None:
    """A number written as text, exactly: ``"1,080"``, ``"$12.50"``, ``"45%"`` (the number
    45), ``"-3/4"``, ``"\\frac{3}{4}"``, ``"\\dfrac34"``, ``"2.5\\text{ cm}"``; None when the
    text is not one number."""
    if text is None:
        return None
    s = normalize_math(str(text))
    s = re.sub(r"\\text\{[^}]*\}$", "", s).replace("\\$", "").replace("$", "")
    s = s.replace(",", "") if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s) else s
    m = re.fullmatch(r"(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}", s)
    if m:
        den = int(m.group(3))
        return None if den == 0 else (-1 if m.group(1) else 1) * Fraction(int(m.group(2)), den)
    m = re.fullmatch(r"(-?\d+)/(-?\d+)", s)
    if m:
        return None if int(m.group(2)) == 0 else Fraction(int(m.group(1)), int(m.group(2)))
    if re.fullmatch(r"-?(\d+\.?\d*|\.\d+)(e-?\d+)?", s):
        return Fraction(s)
    return None


def numbers_equal(a: str | None, b: str | None, *, rel_tol: float = REL_TOL) -> bool | None:
    """Whether two answers are the same number: exactly equal as rationals, or within
    ``rel_tol`` when either is a decimal with more than 4 places (a rounded irrational).
    None when either is not a number."""
    x, y = parse_number(a), parse_number(b)
    if x is None or y is None:
        return None
    if x == y:
        return True
    long = any(re.search(r"\.\d{5,}", str(t)) for t in (a, b))
    return long and math.isclose(float(x), float(y), rel_tol=rel_tol, abs_tol=1e-12)


# -- MATH normalisation -------------------------------------------------------------------------
def _frac_args(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1{72}`` -> ``\\frac{1}{72}``,
    ``\\frac{a}b`` -> ``\\frac{a}{b}``: both arguments braced when one is a bare character."""
    head, *parts = s.split("\\frac")
    out = [head]
    for part in parts:
        if part.startswith("{"):
            out.append("\\frac" + part)
            continue
        if len(part) < 2:
            return s
        a, rest = part[0], part[1:]
        if rest[0] == "{":
            out.append("\\frac{" + a + "}" + rest)
        else:
            out.append("\\frac{" + a + "}{" + rest[0] + "}" + rest[1:])
    return "".join(out)


def _sqrt_args(s: str) -> str:
    """``\\sqrt3`` -> ``\\sqrt{3}`` (the first character becomes the argument)."""
    return re.sub(r"\\sqrt(?!\{)(.)", r"\\sqrt{\1}", s)


def normalize_math(s: str) -> str:
    """MATH's answer normalisation: drop line breaks, ``\\!``, ``\\left``/``\\right``,
    degrees, ``\\$``, a trailing ``\\text{ unit}``, percent signs and spaces; ``tfrac``/``dfrac``
    -> ``frac``; ``\\\\`` -> ``\\``; a leading ``.5`` -> ``0.5``; a short ``k = `` prefix
    removed; ``\\sqrt3`` / ``\\frac12`` braced; ``0.5`` -> ``\\frac{1}{2}``; ``a/b`` of two
    integers -> ``\\frac{a}{b}``."""
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "")
    if "\\text{ " in s and s.count("\\text{ ") == 1:
        s = s.split("\\text{ ")[0]
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    lhs, eq, rhs = s.partition("=")
    if eq and "=" not in rhs and len(lhs) <= 2:
        s = rhs
    s = _sqrt_args(s).replace(" ", "")
    s = _frac_args(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    m = re.fullmatch(r"(-?\d+)/(-?\d+)", s)
    if m and s == f"{int(m.group(1))}/{int(m.group(2))}":
        s = "\\frac{" + m.group(1) + "}{" + m.group(2) + "}"
    return s


# -- symbolic -----------------------------------------------------------------------------------
def _latex_to_python(s: str) -> str:
    s = s.replace("\\left", "").replace("\\right", "").replace("\\,", "").replace("\\!", "")
    s = s.replace("dfrac", "frac").replace("tfrac", "frac")
    s = re.sub(r"\\text\{[^}]*\}", "", s)
    for _ in range(8):  # nested \frac{..}{..} and \sqrt[n]{..}, innermost first
        s2 = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", s)
        s2 = re.sub(r"\\sqrt\[([^\]]*)\]\{([^{}]*)\}", r"((\2)**(1/(\1)))", s2)
        s2 = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", s2)
        s2 = re.sub(r"\^\{([^{}]*)\}", r"**(\1)", s2)
        if s2 == s:
            break
        s = s2
    s = _sqrt_args(_frac_args(s))
    s = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", s)
    s = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", s)
    s = s.replace("^", "**").replace("\\cdot", "*").replace("\\times", "*")
    s = s.replace("\\pi", "pi").replace("\\infty", "oo").replace("{", "(").replace("}", ")")
    if "\\" in s:
        raise ValueError("unsupported LaTeX")
    return s


def _sympify(s: str) -> Any:
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    tr = standard_transformations + (implicit_multiplication_application, convert_xor)
    return parse_expr(_latex_to_python(s), transformations=tr, evaluate=True)


def symbolic_equal(a: str, b: str) -> bool | None:
    """Whether sympy finds ``a - b`` simplifies to 0 (both parsed from simple LaTeX:
    ``\\frac``, ``\\sqrt``, powers, ``\\pi``, implicit products); None when either cannot
    be parsed or the simplification does not decide."""
    import sympy

    try:
        x, y = _sympify(a), _sympify(b)
        if not isinstance(x, sympy.Expr) or not isinstance(y, sympy.Expr):
            return None
        diff = sympy.simplify(x - y)
    except Exception:  # noqa: BLE001 -- anything sympy cannot read is "undecided"
        return None
    if diff == 0:
        return True
    if diff.is_number:
        scale = abs(complex(x.evalf())) if x.is_number else 1.0
        return abs(complex(diff.evalf())) < 1e-9 * max(1.0, scale)
    return None


def _split_top(s: str) -> list[str] | None:
    """Elements of a tuple/interval ``(a,b)`` / ``[a,b)`` split at top-level commas."""
    if len(s) < 2 or s[0] not in "([" or s[-1] not in ")]":
        return None
    depth, parts, cur = 0, [], ""
    for ch in s[1:-1]:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts if len(parts) > 1 else None


def math_equal(prediction: str | None, reference: str | None, *, symbolic: bool = True) -> bool:
    """MATH equivalence of a predicted and a reference answer.

    True when their :func:`normalize_math` strings are equal (MATH's own rule), or they are
    equal numbers (:func:`numbers_equal`), or -- with ``symbolic`` -- sympy decides they are
    equal (:func:`symbolic_equal`); tuples and intervals must agree in brackets and element by
    element. A missing prediction is wrong.
    """
    if prediction is None or reference is None:
        return False
    a, b = normalize_math(prediction), normalize_math(reference)
    if a == b:
        return True
    if numbers_equal(a, b):
        return True
    pa, pb = _split_top(a), _split_top(b)
    if pa is not None and pb is not None:
        return (a[0], a[-1]) == (b[0], b[-1]) and len(pa) == len(pb) and all(
            math_equal(x, y, symbolic=symbolic) for x, y in zip(pa, pb))
    if pa is not None or pb is not None or not symbolic:
        return False
    return bool(symbolic_equal(a, b))


def check_answer(response: str, reference: str, *, kind: str = "math") -> bool:
    """Whether ``response`` (a whole solution) reaches ``reference``.

    ``kind="gsm8k"``: the response's :func:`final_answer` equals the reference as a number
    (the reference may be a whole GSM8K solution ending in ``#### N``).
    ``kind="math"``: :func:`math_equal` of the response's final answer and the reference.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if kind == "gsm8k":
        ref = gsm8k_reference(reference) if "####" in reference else reference
        got = final_answer(response)
        return bool(numbers_equal(got, ref))
    return math_equal(final_answer(response), reference)


# -- Game of 24 ---------------------------------------------------------------------------------
def game24_numbers(puzzle: str) -> list[int]:
    """The four numbers of a Game of 24 puzzle written ``"4 9 10 13"``."""
    nums = puzzle.split()
    if len(nums) != 4 or not all(n.isdigit() for n in nums):
        raise ValueError(f"a Game of 24 puzzle is four whole numbers, got {puzzle!r}")
    return [int(n) for n in nums]


_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
        ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}


def _eval24(node: ast.AST, used: list[int]) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _eval24(node.left, used), _eval24(node.right, used)
        if isinstance(node.op, ast.Div) and right == 0:
            raise ZeroDivisionError
        return _OPS[type(node.op)](left, right)
    raise ValueError("only whole numbers, + - * / and parentheses are allowed")


def check_24(expression: str, numbers: Sequence[int] | str, *, target: int = 24) -> bool:
    """Whether ``expression`` (``"(10 - 4) * (13 - 9)"``; ``x`` and ``×``/``÷`` accepted,
    an ``= 24`` tail ignored) uses exactly the given numbers, each once, only ``+ - * /``
    and parentheses, and equals ``target`` in exact rational arithmetic."""
    nums = game24_numbers(numbers) if isinstance(numbers, str) else [int(n) for n in numbers]
    expr = expression.split("=")[0].replace("×", "*").replace("x", "*").replace("÷", "/")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
        used: list[int] = []
        value = _eval24(tree.body, used)
    except (SyntaxError, ValueError, ZeroDivisionError):
        return False
    return Counter(used) == Counter(nums) and value == target
