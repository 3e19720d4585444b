"""Code rewards: real subprocesses -- passing and failing tests, a timeout, the memory cap,
the Python-level network block and the scratch folder."""

from __future__ import annotations

import time
from pathlib import Path

from prefkit.rl.code_reward import code_tests_reward, extract_code, run_code_tests
from prefkit.rl.rewards import parse_reward

TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0"


def test_extract_code() -> None:
    text = "Here:\n```text\nnot this\n```\nand\n```python\ndef f():\n    return 1\n```\nok"
    assert extract_code(text) == "def f():\n    return 1\n"
    assert extract_code("x = 1") == "x = 1"


def test_pass_fail_timeout_memory_network_scratch(tmp_path: Path) -> None:
    good = "```python\ndef add(a, b):\n    return a + b\n```"
    bad = "def add(a, b):\n    return a - b"
    got = code_tests_reward(["p"] * 2, [good, bad], tests=[TESTS] * 2)
    assert got == [1.0, 0.0]
    t0 = time.perf_counter()
    r = run_code_tests("while True:\n    pass", "", timeout=1.0)
    assert r.timed_out and not r.passed and time.perf_counter() - t0 < 10
    r = run_code_tests("x = bytearray(2 * 1024**3)", "", memory_mb=256)
    assert not r.passed and "MemoryError" in r.stderr
    r = run_code_tests("import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9')",
                       "")
    assert not r.passed and "network access is disabled" in r.stderr
    r = run_code_tests("import os\nopen('made_here.txt', 'w').write('x')\n"
                       "assert os.path.exists('made_here.txt')", "")
    assert r.passed and not Path("made_here.txt").exists()  # written in the scratch folder


def test_the_code_spec() -> None:
    reward = parse_reward("code")
    total, _ = reward(["p"], ["def add(a, b):\n    return a + b"], {"tests": [TESTS]})
    assert total.tolist() == [1.0]
