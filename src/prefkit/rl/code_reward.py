"""Code rewards: run a completion's Python code against tests in a subprocess.

    reward = code_tests_reward        # TRL's signature; the task's ``tests`` column
    reward(prompts, completions, tests=["assert add(2, 3) == 5"] * len(completions))

The code is the completion's last fenced block (```` ```python ... ``` ````, or any
```` ``` ```` block), else the whole completion. It runs, followed by the row's tests, in a
fresh ``python -I`` (isolated mode: no user site-packages, no ``PYTHON*`` variables, the
script's folder not on ``sys.path``) with:

* a **timeout** (``timeout`` seconds of wall time; the process group is killed) and a CPU
  time limit (``RLIMIT_CPU``);
* a **memory cap** (``RLIMIT_AS``, ``memory_mb``), a cap on file size (``RLIMIT_FSIZE``,
  16 MiB) and on open files;
* a **scratch directory** (a new temporary folder as the working directory, deleted after)
  and an environment holding only ``PATH``, ``LANG`` and ``HOME`` = the scratch folder;
* **no network, as far as Python goes**: before the code runs, ``socket.socket``'s
  ``connect`` / ``connect_ex`` / ``sendto`` / ``sendmsg``, ``socket.create_connection`` and
  ``socket.getaddrinfo`` are replaced by functions that raise.

The reward is 1.0 when the process exits 0 (every test passed), else 0.0.

**What this does not give.** It is not a sandbox. The code runs as the same user, with the
same file-system permissions: it can read any file the trainer can and write outside the
scratch folder by absolute path. The network block is a Python-level patch that ``ctypes``,
``_socket`` or a spawned program (``os.system("curl ...")``) gets around; the limits are
per process, so ``fork`` multiplies them (``RLIMIT_NPROC`` is per user and not set, as it
would count the trainer's own threads). For untrusted model output at scale, run the
trainer (or this function's subprocess) in a container or VM without network (Docker
``--network none``, gVisor, Firecracker), as the code-RL stacks do.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

__all__ = ["CodeResult", "code_tests_reward", "extract_code", "run_code_tests"]

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PRELUDE = """\
import socket as _s
def _no_network(*a, **k):
    raise OSError("network access is disabled in this reward's subprocess")
for _name in ("connect", "connect_ex", "sendto", "sendmsg"):
    setattr(_s.socket, _name, _no_network)
_s.create_connection = _no_network
_s.getaddrinfo = _no_network
del _name
del _s
"""


def extract_code(completion: str) -> str:
    """The last fenced code block (a ``python``/``py`` one preferred), else the whole text."""
    blocks = _FENCE.findall(completion)
    if not blocks:
        return completion
    py = [code for lang, code in blocks if lang.lower() in ("python", "py", "python3")]
    return (py or [code for _, code in blocks])[-1]


@dataclass(frozen=True)
class CodeResult:
    """How a run ended: ``passed`` (exit 0), ``timed_out``, the exit code and the last
    lines of standard error."""

    passed: bool
    timed_out: bool
    returncode: int | None
    stderr: str


#: the child first sets its own limits, then replaces itself with the script (limits hold
#: across exec); no ``preexec_fn``, which is unsafe when the caller runs threads
_LIMITER = """\
import os, resource, sys
script, mem, cpu = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 2**20, 16 * 2**20))
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
os.execv(sys.executable, [sys.executable, "-I", script])
"""


def run_code_tests(code: str, tests: str, *, timeout: float = 5.0, memory_mb: int = 512
                   ) -> CodeResult:
    """Run ``code`` then ``tests`` in a limited subprocess (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="prefkit_code_") as scratch:
        script = os.path.join(scratch, "main.py")
        with open(script, "w") as f:
            f.write(_PRELUDE + "\n" + code + "\n\n" + tests + "\n")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
               "HOME": scratch}
        cmd = [sys.executable, "-I", "-c", _LIMITER, script, str(memory_mb * 2**20),
               str(max(1, int(timeout) + 1))]
        proc = subprocess.Popen(cmd, cwd=scratch, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)  # its own group: killed whole
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass
            _, err = proc.communicate()
            return CodeResult(False, True, None, (err or b"").decode(errors="replace")[-500:])
        return CodeResult(proc.returncode == 0, False, proc.returncode,
                          (err or b"").decode(errors="replace")[-500:])


def code_tests_reward(prompts: Sequence[str], completions: Sequence[str], *,
                      tests: Sequence[str], timeout: float = 5.0, memory_mb: int = 512,
                      workers: int = 4, **_: Any) -> list[float]:
    """1.0 where the completion's code passes its row's ``tests`` (all of them), else 0.0;
    ``workers`` subprocesses at once."""
    jobs = [(extract_code(c), str(t)) for c, t in zip(completions, tests, strict=True)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(lambda job: run_code_tests(
            job[0], job[1], timeout=timeout, memory_mb=memory_mb), jobs))
    return [float(r.passed) for r in results]
