"""Ctrl-C (SIGINT) ends a judge that waits on a server, also when the process was started
with SIGINT ignored.

The hang of the last sessions' full-suite runs (one SIGINT left ``prefkit judge run``
waiting past 60 s; it passed alone): a background job of a non-interactive shell (``make
test &``, ``nohup ... &``) starts with SIGINT set to *ignore*, every child inherits it, and
Python then installs no ``KeyboardInterrupt`` handler (nor does ``asyncio.run``, which only
replaces the default one). The kernel dropped the test's SIGINT, and the judge went on
waiting for the server that never answers (60 s an attempt). Reproduced here
deterministically by starting the command with SIGINT ignored; the unwinding itself (the
requests cancelled, their connections closed) takes a fraction of a second, so no cancellation
is swallowed in prefkit.llm (tests/llm/test_cancel.py checks that in-process, many times).

The server is a real socket on 127.0.0.1 that accepts connections and never answers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

#: Ctrl-C must end the command well before this (the watchdog of cli._common.interrupt_exits
#: ends it at 5 s whatever the unwinding does; the unwinding takes well under 1 s here).
WITHIN = 30.0


class Silent:
    """A server that accepts every connection and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.accepted = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


#: ``prefkit ARGS`` started with SIGINT ignored, as a background job of a non-interactive
#: shell starts (set, then exec: the disposition survives exec, as the shell's does)
IGNORING = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
            "os.execv(sys.executable, [sys.executable, '-m', 'prefkit.cli.main', *sys.argv[1:]])")


def _interrupt(args: list[str], cwd: Path, sigint: str) -> tuple[int, str, float]:
    """Run ``prefkit ARGS`` against a silent server, SIGINT it once a request is on the
    wire; (exit code, stderr, seconds from the signal to the exit)."""
    srv = Silent()
    start = ["-c", IGNORING] if sigint == "ignored" else ["-m", "prefkit.cli.main"]
    p = subprocess.Popen(
        [sys.executable, *start, *args, "--base-url", f"http://127.0.0.1:{srv.port}/v1"],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert srv.accepted.wait(120), "the judge never sent a request"
        time.sleep(0.3)
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        try:
            _, err = p.communicate(timeout=WITHIN)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
            pytest.fail(f"SIGINT (inherited disposition: {sigint}) did not end the command "
                        f"within {WITHIN:g} s: {err[-1000:]}")
        return p.returncode, err, time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
        srv.close()


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_judge_run_ctrl_c(tmp_path: Path, sigint: str) -> None:
    (tmp_path / "pairs.jsonl").write_text("".join(
        json.dumps({"prompt": f"q{i}", "response_a": "x", "response_b": "y"}) + "\n"
        for i in range(2)))
    code, err, took = _interrupt(["judge", "run", "pairs.jsonl", "--output", "o.jsonl",
                                  "--model", "m", "--cache", "c.sqlite"], tmp_path, sigint)
    assert code == 130, err[-2000:]
    said = " ".join(err.split())
    assert "Traceback" not in err and "interrupted: nothing written to o.jsonl" in said
    assert "rerun the same command to resume from --cache c.sqlite" in said
    assert not (tmp_path / "o.jsonl").exists()
    print(f"[judge run, SIGINT {sigint}] exit 130 {took:.2f} s after the signal")


def test_reward_eval_judge_ctrl_c(tmp_path: Path) -> None:
    """``prefkit reward eval --judge`` judges through the same client: Ctrl-C is 130 and a
    resume hint (was: 130 with nothing said, and no end at all when SIGINT was inherited
    as ignored)."""
    (tmp_path / "pairs.jsonl").write_text("".join(
        json.dumps({"prompt": f"q{i}", "chosen": "x", "rejected": "y"}) + "\n"
        for i in range(2)))
    code, err, took = _interrupt(["reward", "eval", "pairs.jsonl", "--judge", "m"], tmp_path,
                                 "ignored")
    assert code == 130, err[-2000:]
    said = " ".join(err.split())
    assert "Traceback" not in err and "interrupted: nothing written" in said
    assert "--cache judge.sqlite" in said
    print(f"[reward eval --judge, SIGINT ignored] exit 130 {took:.2f} s after the signal")
