"""Load on a real arena server: acknowledged votes per second and the latency of
``POST /api/battles/{id}/vote`` (battle creation measured separately) with 32 concurrent
voters over loopback, the load generator on the same machine; and the live refit of the
1.67M-vote Chatbot Arena counts.

The server is ``prefkit arena serve`` in its own process (rate limits and daily caps off,
everything else default: WAL with synchronous=NORMAL on SQLite, the live board refitting
and bootstrapping in the background). The load generator is a minimal asyncio HTTP/1.1
keep-alive client (one connection per voter), so that the client costs little CPU.
Phase 1: every voter creates its battles; phase 2: every voter votes on them. Latency is
per request, from sending to the last byte of the answer. After the run the database is
read back: the votes stored must equal the votes acknowledged.

Refit: the board's path after one new vote — per-pair counts to ``PairCounts``
(129 models, 1.67M votes), a warm-started Bradley-Terry fit, and the matchmaking posterior —
timed over repeated single-vote updates (median and p99), next to a cold fit.

Flags: the board's update after a flag on one voter and after its lift, on a SQLite arena
of ``--flag-votes`` imported votes (the counts move incrementally: only the flagged voter's
rows), next to the update after one new vote.

PostgreSQL: ``source tests/arena/ci_services.sh`` (as ``.ci/run`` does; it installs and starts
PostgreSQL 15 on a free port, exports ``PREFKIT_TEST_POSTGRES`` and stops the server when the
calling shell exits), or ``--postgres URL``; each run creates a throwaway database on it.
To compare with another version of the code, put its ``src`` first on ``PYTHONPATH`` (the
server subprocesses inherit it).

Usage:
    python benchmarks/arena_load.py                         # SQLite (+ PostgreSQL if
                                                             # PREFKIT_TEST_POSTGRES is set)
    python benchmarks/arena_load.py --battles 100 --json benchmarks/_work/arena_load.json
    python benchmarks/arena_load.py --only load --engine postgresql   # battles and votes
    python benchmarks/arena_load.py --only flags --flag-votes 300000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

GOAL_VOTES_PER_S = 500
GOAL_P99_MS = 50
GOAL_REFIT_MS = 100


# -- a tiny HTTP/1.1 client ----------------------------------------------------------------
class Conn:
    def __init__(self, host: str, port: int, voter: str) -> None:
        self.host, self.port, self.voter = host, port, voter

    async def open(self) -> None:
        self.r, self.w = await asyncio.open_connection(self.host, self.port)

    async def post(self, path: str, body: bytes = b"") -> tuple[int, bytes]:
        self.w.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                     f"X-Voter: {self.voter}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self.r.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line[15:])
        return status, await self.r.readexactly(length)

    def close(self) -> None:
        self.w.close()


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) * 1000 if xs else float("nan")


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


async def _phase(conns, make_request, rate: float = 0.0) -> tuple[list[float], int, float]:
    """Every connection sends its requests back to back (``rate`` 0: as fast as the server
    answers), or paced so that all together offer ``rate`` requests per second; a paced
    request's latency counts from when it was due (no coordinated omission)."""
    lat: list[float] = []
    ok = 0
    t0 = time.perf_counter()
    gap = len(conns) / rate if rate > 0 else 0.0

    async def one(c, k):
        nonlocal ok
        due = t0 + gap * k / len(conns)
        for path, body in make_request(c, k):
            if gap:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                start = due
                due += gap
            else:
                start = time.perf_counter()
            status, payload = await c.post(path, body)
            lat.append(time.perf_counter() - start)
            if status == 200:
                ok += 1
                c.last = payload

    await asyncio.gather(*(one(c, k) for k, c in enumerate(conns)))
    return lat, ok, time.perf_counter() - t0


def _summary(lat: list[float], ok: int, wall: float) -> dict:
    return {"n": ok, "per_s": ok / wall, "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
            "wall_s": wall}


def _pg_cpu() -> float:
    """CPU seconds of every PostgreSQL server process on this machine (0 if none)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    total += _cpu(int(entry.name))
            except OSError:
                continue
    return total


async def _load(port: int, voters: int, battles: int, rate: float, pid: int) -> dict:
    """Battles created back to back; votes back to back on half of them (saturation),
    then paced at ``rate`` votes/s on the other half. Each phase's CPU seconds of the
    server and of PostgreSQL's processes are counted beside its wall time."""
    conns = [Conn("127.0.0.1", port, f"load-{uuid.uuid4().hex[:8]}-{k}") for k in range(voters)]
    for c in conns:
        await c.open()
        c.battles = []

    def create(c, k):
        for _ in range(battles):
            yield "/api/battles", b""
            c.battles.append(json.loads(c.last)["battle_id"])

    cpu = (_cpu(pid), _pg_cpu())
    battles_ = _summary(*await _phase(conns, create))
    battles_["server_cpu_ms_each"] = (_cpu(pid) - cpu[0]) * 1000 / max(1, battles_["n"])
    battles_["postgres_cpu_ms_each"] = (_pg_cpu() - cpu[1]) * 1000 / max(1, battles_["n"])
    half = battles // 2

    def vote(part):
        def gen(c, k):
            for b in (c.battles[:half] if part == 0 else c.battles[half:]):
                yield f"/api/battles/{b}/vote", b'{"winner": "a"}'
        return gen

    saturated = _summary(*await _phase(conns, vote(0)))
    paced = _summary(*await _phase(conns, vote(1), rate=rate))
    for c in conns:
        c.close()
    return {"battles": battles_, "votes": saturated, "votes_paced": paced}


def run_engine(db: str, voters: int, battles: int, outputs: Path, rate: float) -> dict:
    from prefkit.arena.store import open_store

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PREFKIT_ARENA_TOKEN": "bench"}
    cli = [sys.executable, "-m", "prefkit.cli.main", "arena"]
    subprocess.run([*cli, "add-outputs", str(outputs), "--db", db], check=True, env=env,
                   capture_output=True)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([*cli, "serve", "--db", db, "--port", str(port), "--voter-rate", "0",
                             "--ip-rate", "0", "--daily-cap", "0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import httpx

        for _ in range(300):
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/leaderboard", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        cpu0, ccpu0 = _cpu(proc.pid), time.process_time()
        res = asyncio.run(_load(port, voters, battles, rate, proc.pid))
        res["server_cpu_s"] = _cpu(proc.pid) - cpu0
        res["client_cpu_s"] = time.process_time() - ccpu0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    store = open_store(db)
    res["stored_votes"] = store.vote_count()
    store.close()
    return res


def refit_timing(repeats: int = 50) -> dict:
    """The board's refit path on the 1.67M-vote counts after one new vote."""
    from prefkit.arena.tally import Tally
    from prefkit.data.readers import read_votes
    from prefkit.rank import fit_bradley_terry
    from prefkit.rank.matchmaking import MatchState

    counts = read_votes(C.ARENA_COUNTS).votes
    names = counts.items.names
    cells = {(names[i], names[j]) if names[i] < names[j] else (names[j], names[i]):
             (list(c) if names[i] < names[j] else [c[1], c[0], c[2], c[3]])
             for i, j, c in zip(counts.i, counts.j, counts.counts.tolist())}
    t = time.perf_counter()
    lb = fit_bradley_terry(Tally.cells_to_counts(cells))
    cold = time.perf_counter() - t
    scores = dict(zip(lb.items.names, lb.scores))
    rng = np.random.default_rng(0)
    keys = list(cells)
    times, match_times = [], []
    state = None
    for _ in range(repeats):
        cells[keys[rng.integers(len(keys))]][int(rng.integers(3))] += 1.0  # one new vote
        t = time.perf_counter()
        pc = Tally.cells_to_counts(cells)
        lb = fit_bradley_terry(pc, init=np.array([scores[n] for n in pc.items.names]))
        times.append(time.perf_counter() - t)
        scores = dict(zip(lb.items.names, lb.scores))
        t = time.perf_counter()
        state = MatchState.fit(pc, prior=1.0, init=None if state is None else state.scores)
        match_times.append(time.perf_counter() - t)
    return {"votes": float(counts.counts.sum()), "models": counts.n_items,
            "cold_fit_ms": cold * 1000, "refit_p50_ms": statistics.median(times) * 1000,
            "refit_p99_ms": _pct(times, 99), "matchmaking_p50_ms":
            statistics.median(match_times) * 1000}


def flag_timing(tmp: Path, n_votes: int, n_voters: int = 1000) -> dict:
    """The live board's update (wall and CPU) after a flag on one voter, after its lift and
    after one new vote, on an arena of ``n_votes`` imported votes over 20 models."""
    from prefkit.arena.board import BoardConfig, LiveBoard
    from prefkit.arena.store import open_store

    rng = np.random.default_rng(0)
    models = [f"model-{k:02d}" for k in range(20)]
    a = rng.integers(0, 20, n_votes)
    b = (a + rng.integers(1, 20, n_votes)) % 20
    outcome = rng.choice(["a", "b", "tie"], n_votes)
    store = open_store(str(tmp / "flags.db"))
    store.import_votes((models[a[k]], models[b[k]], str(outcome[k]), f"voter{k % n_voters}",
                        "p") for k in range(n_votes))
    board = LiveBoard(store, BoardConfig(bootstrap_process=False))
    board.update()

    def timed(change) -> tuple[float, float]:
        change()
        w, c = time.perf_counter(), time.process_time()
        assert board.update()
        return (time.perf_counter() - w) * 1000, (time.process_time() - c) * 1000

    out = {"votes": n_votes, "voters": n_voters}
    out["flag_ms"], out["flag_cpu_ms"] = timed(
        lambda: store.add_flags([(None, "voter7", "outlier", "")]))
    if hasattr(store, "lift_flags"):
        out["lift_ms"], out["lift_cpu_ms"] = timed(
            lambda: store.lift_flags([store.flags()[-1][0]]))
    out["vote_ms"], out["vote_cpu_ms"] = timed(
        lambda: store.import_votes([(models[0], models[1], "a", "voter1", "p")]))
    store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--voters", type=int, default=32)
    ap.add_argument("--battles", type=int, default=80, help="battles (and votes) per voter")
    ap.add_argument("--rate", type=float, default=GOAL_VOTES_PER_S,
                    help="votes/s offered by all voters together in the paced phase")
    ap.add_argument("--postgres", default=os.environ.get("PREFKIT_TEST_POSTGRES"),
                    help="postgresql:// URL of a server to create a throwaway database on")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--only", action="append", choices=["load", "refit", "flags"],
                    help="run only these parts (repeatable; default: all)")
    ap.add_argument("--engine", action="append", choices=["sqlite", "postgresql"],
                    help="load only on these engines (repeatable; default: both when a "
                         "PostgreSQL URL is given)")
    ap.add_argument("--flag-votes", type=int, default=200_000,
                    help="votes in the arena whose flag update is timed")
    args = ap.parse_args()
    parts = set(args.only or ["load", "refit", "flags"])
    out: dict = {"machine": C.machine() if hasattr(C, "machine") else os.uname().nodename}
    with tempfile.TemporaryDirectory() as tmp:
        outputs = Path(tmp) / "outputs.jsonl"
        outputs.write_text("".join(json.dumps({"prompt_id": f"p{p}", "prompt": f"Q {p}",
                                               "model": f"model-{m}", "output": f"answer {p}.{m}"})
                                   + "\n" for p in range(50) for m in range(10)))
        engines = {"sqlite": str(Path(tmp) / "arena.db")}
        if args.postgres and "load" in parts and "postgresql" in (args.engine or
                                                                  ["postgresql"]):
            import psycopg

            name = "arena_load_" + uuid.uuid4().hex[:8]
            with psycopg.connect(args.postgres, autocommit=True) as c:
                c.execute(f"CREATE DATABASE {name}")
            engines["postgresql"] = args.postgres.rpartition("/")[0] + "/" + name
        if args.engine and "sqlite" not in args.engine or "load" not in parts:
            del engines["sqlite"]
        for engine, db in engines.items():
            r = run_engine(db, args.voters, args.battles, outputs, args.rate)
            out[engine] = r
            v, b, pv = r["votes"], r["battles"], r["votes_paced"]
            ok = (v["per_s"] >= GOAL_VOTES_PER_S and pv["per_s"] >= 0.97 * args.rate
                  and pv["p99_ms"] < GOAL_P99_MS)
            print(f"{engine:10s} POST vote, {args.voters} voters back to back: {v['n']} "
                  f"acknowledged, {v['per_s']:5.0f} votes/s, p50 {v['p50_ms']:5.1f} ms, "
                  f"p99 {v['p99_ms']:5.1f} ms")
            print(f"{'':10s} POST vote, paced at {args.rate:.0f}/s offered: {pv['n']} "
                  f"acknowledged, {pv['per_s']:5.0f} votes/s, p50 {pv['p50_ms']:5.1f} ms, "
                  f"p99 {pv['p99_ms']:5.1f} ms [goal >= {GOAL_VOTES_PER_S}/s sustained, "
                  f"p99 < {GOAL_P99_MS} ms: {'PASS' if ok else 'FAIL'}]")
            print(f"{'':10s} POST battles: {b['n']}, {b['per_s']:7.0f}/s, p50 {b['p50_ms']:5.1f} "
                  f"ms, p99 {b['p99_ms']:5.1f} ms, CPU per battle: server "
                  f"{b['server_cpu_ms_each']:.2f} ms, PostgreSQL {b['postgres_cpu_ms_each']:.2f} "
                  f"ms; server CPU {r['server_cpu_s']:.1f} s, client "
                  f"CPU {r['client_cpu_s']:.1f} s over {v['wall_s'] + b['wall_s'] + pv['wall_s']:.1f} s "
                  f"wall; "
                  f"stored votes {r['stored_votes']} (= acknowledged: "
                  f"{r['stored_votes'] == v['n'] + pv['n']})")
        if "flags" in parts:
            ft = flag_timing(Path(tmp), args.flag_votes)
            out["flags"] = ft
            print(f"board update on {ft['votes']:,} votes ({ft['voters']} voters): after a flag "
                  f"on one voter {ft['flag_ms']:.1f} ms (CPU {ft['flag_cpu_ms']:.1f} ms)"
                  + (f", after its lift {ft['lift_ms']:.1f} ms (CPU {ft['lift_cpu_ms']:.1f} ms)"
                     if "lift_ms" in ft else ", lifts: not in this version")
                  + f", after one new vote {ft['vote_ms']:.1f} ms (CPU "
                  f"{ft['vote_cpu_ms']:.1f} ms)")
    if "refit" not in parts:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(out, indent=2))
        return
    rf = refit_timing()
    out["refit"] = rf
    print(f"refit of the {rf['votes']:,.0f}-vote counts ({rf['models']} models) after one vote: "
          f"p50 {rf['refit_p50_ms']:.1f} ms, p99 {rf['refit_p99_ms']:.1f} ms (cold fit "
          f"{rf['cold_fit_ms']:.1f} ms; matchmaking posterior {rf['matchmaking_p50_ms']:.1f} ms) "
          f"[goal < {GOAL_REFIT_MS} ms: {'PASS' if rf['refit_p99_ms'] < GOAL_REFIT_MS else 'FAIL'}]")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
