"""N concurrent judge requests against a local OpenAI-compatible server: prefkit's
``OpenAIClient`` vs the official ``openai.AsyncOpenAI`` at the same concurrency, and the cached
path (``CachedBackend`` on a rerun).

The server (``python -m prefkit.llm.server``) runs in its own process and answers a canned
verdict after a fixed delay, so the figures measure the clients, not a model sharing the CPU
cores. Both clients run in this process, interleaved (prefkit, openai, prefkit, openai, ...),
through the same harness: a semaphore of ``--concurrency`` and one coroutine per request;
latency is timed from the moment a request holds its slot to its answer. The floor is
``concurrency / delay`` requests per second (the server's delay alone).

    .venv/bin/python benchmarks/judge_client.py                      # 2,000 requests x 3 rounds
    .venv/bin/python benchmarks/judge_client.py --n 5000 --concurrency 128 --delay 0.05
    .venv/bin/python benchmarks/judge_client.py --json benchmarks/_work/judge_client.json
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from prefkit.llm import CachedBackend, ChatRequest, OpenAIClient, run_requests

VERDICT = "[[A]]"
PROMPT = ("Please act as an impartial judge and evaluate the two answers below. Output your "
          "final verdict strictly as [[A]], [[B]] or [[C]] for a tie.\n\n"
          "[Question] {i}\n[Answer A] ...\n[Answer B] ...")


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) the server process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(delay: float) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "prefkit.llm.server", "--text", VERDICT,
                             "--delay", str(delay)], stdout=subprocess.PIPE, text=True, env=env)
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise SystemExit(f"the server did not start (said {url!r})")
    return proc, url


async def harness(call, n: int, concurrency: int) -> dict:
    """Run ``call(i)`` for i < n, ``concurrency`` at a time: wall, CPU, latencies."""
    slots = asyncio.Semaphore(concurrency)
    latencies = [0.0] * n
    wrong = 0

    async def one(i: int) -> None:
        nonlocal wrong
        async with slots:
            t = time.perf_counter()
            text = await call(i)
            latencies[i] = time.perf_counter() - t
            wrong += text != VERDICT

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    q = statistics.quantiles(latencies, n=100)
    return {"wall_s": wall, "cpu_s": cpu, "per_s": n / wall, "p50_ms": 1e3 * q[49],
            "p99_ms": 1e3 * q[98], "wrong": wrong}


def requests(n: int) -> list[ChatRequest]:
    return [ChatRequest.of(PROMPT.format(i=i), model="judge", max_tokens=16) for i in range(n)]


async def run_prefkit(url: str, n: int, concurrency: int) -> dict:
    reqs = requests(n)
    async with OpenAIClient(base_url=url, model="judge", concurrency=concurrency) as client:
        async def call(i: int) -> str | None:
            result = await client.chat(reqs[i])
            return result.text
        return await harness(call, n, concurrency)


async def run_openai(url: str, n: int, concurrency: int) -> dict:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="unused")
    try:
        async def call(i: int) -> str | None:
            r = await client.chat.completions.create(
                model="judge", messages=[{"role": "user", "content": PROMPT.format(i=i)}],
                max_tokens=16, temperature=0.0)
            return r.choices[0].message.content
        return await harness(call, n, concurrency)
    finally:
        await client.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000, help="requests per round")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--delay", type=float, default=0.02, help="server delay per request, s")
    p.add_argument("--repeats", type=int, default=3, help="rounds per client (interleaved)")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args()
    import openai

    proc, url = start_server(args.delay)
    floor = args.concurrency / args.delay
    print(f"server {url} (own process), delay {args.delay * 1e3:g} ms; {args.n} requests at "
          f"concurrency {args.concurrency}; floor {floor:,.0f} req/s; "
          f"openai {openai.__version__}; {os.cpu_count()} CPUs")
    runs: dict[str, list[dict]] = {"prefkit": [], "openai": []}
    try:
        asyncio.run(run_prefkit(url, 200, args.concurrency))  # warm-up: imports, connections
        asyncio.run(run_openai(url, 200, args.concurrency))
        for r in range(args.repeats):
            for name, fn in (("prefkit", run_prefkit), ("openai", run_openai)):
                s0 = server_cpu(proc.pid)
                out = asyncio.run(fn(url, args.n, args.concurrency))
                out["server_cpu_s"] = server_cpu(proc.pid) - s0
                runs[name].append(out)
                print(f"  round {r + 1} {name:8s} {out['per_s']:8,.0f} req/s  p50 "
                      f"{out['p50_ms']:6.1f} ms  p99 {out['p99_ms']:6.1f} ms  client CPU "
                      f"{out['cpu_s']:5.2f} s  server CPU {out['server_cpu_s']:5.2f} s  "
                      f"wall {out['wall_s']:5.2f} s  wrong {out['wrong']}")

        # the cached path: fill a cache, then a rerun that must make zero calls
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "cache.sqlite"
            reqs = requests(args.n)
            client = OpenAIClient(base_url=url, model="judge", concurrency=args.concurrency)
            t = time.perf_counter()
            first = run_requests(CachedBackend(client, path), reqs, progress=False)
            fill = time.perf_counter() - t
            backend = CachedBackend(client, path)
            cpu, t = time.process_time(), time.perf_counter()
            rerun = run_requests(backend, reqs, progress=False)
            wall, cpu = time.perf_counter() - t, time.process_time() - cpu
            assert backend.calls == 0 and all(r.cached for r in rerun)
            assert [r.text for r in rerun] == [r.text for r in first]
            cached = {"fill_s": fill, "fill_per_s": args.n / fill, "rerun_s": wall,
                      "rerun_cpu_s": cpu, "rerun_per_s": args.n / wall, "calls": backend.calls}
    finally:
        proc.terminate()
        proc.wait()

    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in runs.items()}
    ratio = {"throughput": med["prefkit"]["per_s"] / med["openai"]["per_s"],
             "p50": med["openai"]["p50_ms"] / med["prefkit"]["p50_ms"],
             "p99": med["openai"]["p99_ms"] / med["prefkit"]["p99_ms"],
             "client_cpu": med["openai"]["cpu_s"] / med["prefkit"]["cpu_s"]}
    print(f"\nmedian of {args.repeats} rounds     req/s   p50 ms   p99 ms  client CPU s")
    for k in ("prefkit", "openai"):
        m = med[k]
        print(f"  {k:22s} {m['per_s']:8,.0f} {m['p50_ms']:8.1f} {m['p99_ms']:8.1f} "
              f"{m['cpu_s']:10.2f}")
    print(f"  prefkit / openai: throughput x{ratio['throughput']:.2f}, p50 latency "
          f"x{ratio['p50']:.2f} lower, p99 x{ratio['p99']:.2f} lower, client CPU "
          f"x{ratio['client_cpu']:.2f} less")
    print(f"cached path: fill {cached['fill_per_s']:,.0f} req/s; rerun {cached['rerun_per_s']:,.0f}"
          f" verdicts/s ({cached['rerun_s']:.2f} s wall, {cached['rerun_cpu_s']:.2f} s CPU, "
          f"{cached['calls']} calls), x{cached['rerun_per_s'] / med['prefkit']['per_s']:.1f} "
          "the uncached client")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "runs": runs, "median": med, "ratio": ratio,
                                         "cached": cached, "floor_per_s": floor}, indent=1))


if __name__ == "__main__":
    main()
