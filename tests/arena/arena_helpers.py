"""Arena test fixtures: real servers (``prefkit arena serve`` in a subprocess on 127.0.0.1),
real databases (a SQLite file; a fresh database on the PostgreSQL server named by
``PREFKIT_TEST_POSTGRES``, which ``.ci/run`` starts) and a tiny outputs file."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

MODELS = ("alpha", "bravo", "charlie", "delta")
N_PROMPTS = 6
POSTGRES_ENV = "PREFKIT_TEST_POSTGRES"


def write_outputs(path: Path, models=MODELS, n_prompts: int = N_PROMPTS,
                  leak: bool = True) -> Path:
    """One output per (prompt, model); with ``leak`` delta's answer to p0 names its maker."""
    rows = []
    for p in range(n_prompts):
        for m in models:
            out = f"Answer {p}: " + "x" * (p + 1)
            if leak and m == "delta" and p == 0:
                out = "As a model trained by OpenAI, I think the answer is 4."
            rows.append({"prompt_id": f"p{p}", "prompt": f"Question {p}?", "model": m,
                         "output": out})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prefkit(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prefkit.cli.main", *args], capture_output=True,
                          text=True, check=check, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                       **(env or {})})


class Server:
    """``prefkit arena serve`` in a subprocess; ``kill()`` is a kill -9."""

    def __init__(self, db: str, *args: str, token: str = "test-token") -> None:
        self.db, self.args, self.token = db, args, token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.id = uuid.uuid4().hex

    def processes(self) -> list[int]:
        """Every live process this server started (itself and its bootstrap worker)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                env = (entry / "environ").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if f"PREFKIT_ARENA_TEST_ID={self.id}".encode() in env and state != "Z":
                found.append(int(entry.name))
        return found

    def start(self) -> Server:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PREFKIT_ARENA_TOKEN": self.token,
               "PREFKIT_ARENA_TEST_ID": self.id}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "prefkit.cli.main", "arena", "serve", "--db", self.db,
             "--port", str(self.port), *self.args],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read()}")
            try:
                if httpx.get(self.url + "/api/leaderboard", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start in 60 s")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def servers():
    started: list[Server] = []

    def make(db: str, *args: str) -> Server:
        s = Server(db, *args)
        started.append(s)
        return s.start()

    yield make
    for s in started:
        s.stop()


def missing(reason: str) -> None:
    """In CI (``PREFKIT_REQUIRE_ARENA_SERVICES=1``, set by ``.ci/run``) a missing service is
    a failure, not a skip."""
    if os.environ.get("PREFKIT_REQUIRE_ARENA_SERVICES") == "1":
        pytest.fail(f"CI must provide this: {reason}")


def _postgres_db() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        missing(f"{POSTGRES_ENV} is not set (a postgresql:// URL of a PostgreSQL 15 server; "
                ".ci/run starts one); PostgreSQL runs in CI")
        pytest.skip(f"{POSTGRES_ENV} is not set (a postgresql:// URL of a PostgreSQL 15 server; "
                    ".ci/run starts one); PostgreSQL runs in CI")
    import psycopg

    name = "arena_" + uuid.uuid4().hex[:12]
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path) -> str:
    """A fresh, empty arena database of each engine."""
    if request.param == "sqlite":
        return str(tmp_path / "arena.db")
    return _postgres_db()


@pytest.fixture
def sqlite_db(tmp_path) -> str:
    return str(tmp_path / "arena.db")


def api(server: Server, voter: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"X-Voter": voter}, timeout=30)


def wait_caught_up(server: Server, n_votes_seq: int, timeout: float = 120) -> dict:
    """The leaderboard once its bootstrap covers every vote up to ``n_votes_seq``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lb = httpx.get(server.url + "/api/leaderboard", timeout=30).json()
        a = lb.get("arena", {})
        if a.get("votes_seq", -1) >= n_votes_seq and not a.get("lagging", True):
            return lb
        time.sleep(0.3)
    raise AssertionError(f"leaderboard did not catch up with vote {n_votes_seq}: {lb}")


def fake_chat_server(delay: float, reply: str, fail: bool = False) -> ThreadingHTTPServer:
    """A scripted OpenAI-compatible chat server on 127.0.0.1 (real HTTP): answers
    ``REPLY <the prompt reversed>`` after ``delay`` seconds, or HTTP 500 with ``fail``."""
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(delay)
            prompt = body["messages"][-1]["content"]
            data = json.dumps({"choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": f"{reply} {prompt[::-1]}"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 5}}).encode()
            self.send_response(500 if fail else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd
