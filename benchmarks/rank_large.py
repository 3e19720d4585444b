"""Large sparse comparison graphs: `prefkit rank` vs choix, whole processes side by side.

A reproducible table of ``--votes`` votes (default 400,000) among ``n`` items (default
10,000 and 4,000) on a sparse comparison graph is written as Parquet (FastChat columns
``model_a, model_b, winner``) to ``benchmarks/_work/``. Then, for each size, every
contestant runs as **its own process**, from the file path to Elo ratings, timed from
spawn to exit (wall clock) with the process's peak RSS (``ru_maxrss`` from ``wait4``):

* ``prefkit``: the CLI, ``prefkit rank FILE --intervals none --json`` (the Parquet streamed
  into pair counts, then Bradley-Terry by Newton on the sparse Hessian);
* ``choix``: ``python -c ...``: ``pyarrow`` reads the same file, names become ids, and
  ``choix.ilsr_pairwise(n, [(winner, loser), ...])`` (its sparse-data interface; it builds
  a dense ``n x n`` Markov chain every iteration);
* ``prefkit dense`` (``--dense``): ``python -c ...`` running what ``prefkit rank
  --intervals none`` ran before the sparse path: ``read_votes(aggregate=True)`` +
  ``fit_bradley_terry(counts, solver="dense", covariance=True)``.

Ratings are compared after removing the constant offset (max |dElo|). Votes have no ties,
so every contestant fits the same plain Bradley-Terry MLE (choix's pairwise data cannot
express a half win).

The graph: strengths ``s ~ N(0, 1)``; each item draws ``NEAR`` partners among the
``WINDOW`` items nearest in strength on either side (matchmaking pairs similar items)
and ``FAR`` partners uniformly at random (which keeps the graph an expander); a vote
picks a uniform item, one of its partners uniformly, which side is ``model_a`` by a fair
coin, and the winner by a Bradley-Terry draw. All from ``numpy.random.Generator(PCG64(
SEED + n))``. The script checks that the win graph is strongly connected (the MLE exists).

``ru_maxrss`` note: Linux records the pre-exec address space's high-water mark into the
exec'd child (``setmax_mm_hiwater_rss`` at exec), so the driver keeps itself small (the
tables are built in a child process) and prints its own RSS at spawn time: a contestant's
figure is only meaningful well above it.

Usage:
    python benchmarks/rank_large.py                        # 10,000 and 4,000 items (choix: minutes)
    python benchmarks/rank_large.py --sizes 4000 --dense   # + the dense Newton of before
    python benchmarks/rank_large.py --sizes 10000 20000 40000 100000 --votes-per-item 40 --choix-max 0
    python benchmarks/rank_large.py --json benchmarks/_work/rank_large.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

NEAR, WINDOW, FAR = 12, 100, 8
GOAL_SPEEDUP = 20.0  # at 10,000 items: prefkit at least 20x faster than choix
SAME_RATINGS_ELO = 0.01

MAKE = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
import _common as C
from pathlib import Path
n, m, seed, path = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
NEAR, WINDOW, FAR = int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
rng = np.random.Generator(np.random.PCG64(seed))
s = rng.normal(0.0, 1.0, n)
order = np.argsort(s)                       # rank -> item
rank = np.empty(n, np.int64); rank[order] = np.arange(n)
off = rng.integers(1, WINDOW + 1, (n, NEAR)) * rng.choice([-1, 1], (n, NEAR))
near = order[np.clip(rank[:, None] + off, 0, n - 1)]
far = (np.arange(n)[:, None] + rng.integers(1, n, (n, FAR))) % n
partners = np.concatenate([near, far], axis=1)
a = rng.integers(0, n, m)
b = partners[a, rng.integers(0, partners.shape[1], m)]
same = a == b                                # clipped at the ends: use a random partner
b[same] = (a[same] + rng.integers(1, n, same.sum())) % n
swap = rng.random(m) < 0.5
a, b = np.where(swap, b, a), np.where(swap, a, b)
p_a = 1.0 / (1.0 + np.exp(s[b] - s[a]))
outcome = np.where(rng.random(m) < p_a, 0, 1)
names = [f"item-{k:05d}" for k in range(n)]
C.write_votes_parquet(path, names, names, a, b, outcome)
# the MLE must exist: the win digraph strongly connected
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
w, l = np.where(outcome == 0, a, b), np.where(outcome == 0, b, a)
g = coo_matrix((np.ones(m), (l, w)), shape=(n, n))
ns = connected_components(g, directed=True, connection="strong")[0]
pairs = np.unique(np.minimum(a, b) * n + np.maximum(a, b)).size
print(f"{pairs} {ns}")
"""

TINY = r"""
import sys
sys.path.insert(0, sys.argv[1])
import _common as C
from pathlib import Path
C.write_votes_parquet(Path(sys.argv[2]), ["x", "y", "z"], ["x", "y", "z"], [0, 1, 2, 0],
                      [1, 2, 0, 2], [0, 0, 0, 1])
"""

CHOIX = r"""
import json, sys, numpy as np, pyarrow as pa, pyarrow.parquet as pq, pyarrow.compute as pc, choix
t = pq.read_table(sys.argv[1], columns=["model_a", "model_b", "winner"])
names = pc.unique(pa.concat_arrays([t["model_a"].combine_chunks(), t["model_b"].combine_chunks()]))
a = pc.index_in(t["model_a"], value_set=names).to_numpy(zero_copy_only=False)
b = pc.index_in(t["model_b"], value_set=names).to_numpy(zero_copy_only=False)
a_won = pc.equal(t["winner"], "model_a").to_numpy(zero_copy_only=False)
w, l = np.where(a_won, a, b), np.where(a_won, b, a)
data = list(zip(w.tolist(), l.tolist()))
params = choix.ilsr_pairwise(len(names), data)
elo = 1000 + 400 / np.log(10) * (params - params.mean())
json.dump(dict(zip(names.to_pylist(), elo.tolist())), sys.stdout)
"""

DENSE = r"""
import json, sys
from prefkit.data import read_votes
from prefkit.rank import fit_bradley_terry
counts = read_votes(sys.argv[1], aggregate=True).votes
lb = fit_bradley_terry(counts, solver="dense", covariance=True)
json.dump(dict(zip(lb.items.names, lb.ratings.tolist())), sys.stdout)
"""


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _vm_hwm(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def run_process(cmd: list[str], out_path: Path, timeout: float) -> dict[str, object]:
    """Spawn ``cmd`` with stdout to ``out_path``; wall seconds (spawn to exit) and peak RSS.

    Peak RSS: ``ru_maxrss`` from ``wait4`` when it exceeds the driver's RSS at spawn (it
    is then the child's own); otherwise it may be the driver's pages inherited at fork,
    and the child's ``VmHWM`` (its exec'd address space's high-water mark), read every
    5 ms until exit, is used (both are kept in the JSON)."""
    err_path = out_path.with_suffix(".err")
    driver = rss_now()
    hwm = None
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err)
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                break
            hwm = _vm_hwm(p.pid) or hwm
            time.sleep(0.005)
        seconds = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    maxrss = ru.ru_maxrss * 1024
    peak = maxrss if maxrss > driver or hwm is None else hwm
    res: dict[str, object] = {"seconds": seconds, "peak_rss": peak, "ru_maxrss": maxrss,
                              "vm_hwm_polled": hwm, "driver_rss_at_spawn": driver,
                              "returncode": p.returncode}
    if p.returncode != 0:
        res["error"] = err_path.read_text(errors="replace").strip().splitlines()[-3:]
    return res


def ratings_of(kind: str, path: Path) -> dict[str, float]:
    text = path.read_text()
    if kind == "prefkit":  # "score" at full precision ("rating" is rounded to 1e-4)
        d = json.loads(text)
        return {r["item"]: C.ELO_SCALE * float(r["score"]) for r in d["leaderboard"]}
    return {k: float(v) for k, v in json.loads(text).items()}


def make_table(n: int, m: int, *, force: bool) -> tuple[Path, dict[str, object]]:
    path = C.WORK / f"rank_large_{n}_{m}.parquet"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists() and not force:
        return path, json.loads(meta_path.read_text())
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", MAKE, str(Path(__file__).resolve().parent), str(n), str(m),
         str(C.SEED + n), str(path), str(NEAR), str(WINDOW), str(FAR)],
        capture_output=True, text=True, check=True)
    pairs, strong = (int(x) for x in out.stdout.split())
    meta = {"n_items": n, "n_votes": m, "pairs": pairs, "strong_components": strong,
            "seed": C.SEED + n, "seconds_to_build": time.perf_counter() - t0}
    meta_path.write_text(json.dumps(meta))
    return path, meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 4_000])
    ap.add_argument("--votes", type=int, default=400_000)
    ap.add_argument("--votes-per-item", type=int, help="instead of --votes: this many x n")
    ap.add_argument("--dense", action="store_true", help="also time the dense Newton of before")
    ap.add_argument("--choix-max", type=int, default=10_000, help="skip choix above this size")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per process, seconds")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    prefkit = shutil.which("prefkit", path=str(Path(sys.executable).parent)) or "prefkit"
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at the start; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    results: dict[str, object] = {"benchmark": "rank_large", "machine": C.machine(),
                                  "load_average": load, "sizes": {}}
    ok = True
    # the CLI's own footprint: interpreter, imports, a 3-item table
    tiny = C.WORK / "rank_large_tiny.parquet"
    subprocess.run([sys.executable, "-c", TINY, str(Path(__file__).resolve().parent), str(tiny)],
                   check=True)  # not here: pyarrow would grow the driver
    r0 = run_process([prefkit, "rank", str(tiny), "--intervals", "none", "--json"],
                     C.WORK / "rank_large_tiny.out", args.timeout)
    print(f"prefkit rank on a 3-item table (start-up and imports): {r0['seconds']:.2f} s, "
          f"peak RSS {float(r0['peak_rss']) / 2**20:.0f} MiB")  # type: ignore[arg-type]
    results["startup"] = r0
    for n in args.sizes:
        n_votes = n * args.votes_per_item if args.votes_per_item else args.votes
        path, meta = make_table(n, n_votes, force=args.rebuild)
        if meta["strong_components"] != 1:
            print(f"{n} items: the win graph has {meta['strong_components']} strong "
                  "components (an MLE would not exist); change the seed")
            return 1
        print(f"\n{n:,} items, {n_votes:,} votes, {meta['pairs']:,} compared pairs "
              f"({path.relative_to(C.ROOT)}, {path.stat().st_size / 2**20:.1f} MiB)")
        runs = {"prefkit": [prefkit, "rank", str(path), "--intervals", "none", "--json"]}
        if n <= args.choix_max:
            runs["choix"] = [sys.executable, "-c", CHOIX, str(path)]
        if args.dense:
            runs["prefkit dense"] = [sys.executable, "-c", DENSE, str(path)]
        res: dict[str, dict[str, object]] = {}
        ratings: dict[str, dict[str, float]] = {}
        for name, cmd in runs.items():
            out = C.WORK / f"rank_large_{n}_{name.replace(' ', '_')}.out"
            res[name] = run_process(cmd, out, args.timeout)
            if "error" not in res[name]:
                ratings[name] = ratings_of("prefkit" if name == "prefkit" else "json", out)
        base = res["prefkit"]
        print(f"{'contestant':<16} {'wall s':>8} {'peak RSS MiB':>13} {'max|dElo|':>10} "
              f"{'x prefkit time':>15} {'x prefkit RSS':>14}")
        for name, r in res.items():
            if "error" in r:
                print(f"{name:<16} failed: {r['error']}")
                ok = False
                continue
            d = C.max_elo_diff(ratings[name], ratings["prefkit"]) if "prefkit" in ratings else float("nan")
            r["max_abs_delo"] = d
            tx = float(r["seconds"]) / float(base["seconds"])  # type: ignore[arg-type]
            mx = float(r["peak_rss"]) / float(base["peak_rss"])  # type: ignore[arg-type]
            print(f"{name:<16} {r['seconds']:8.2f} {float(r['peak_rss']) / 2**20:13.0f} "  # type: ignore[arg-type]
                  f"{d:10.2g} {tx:15.1f} {mx:14.2f}")
        print(f"(driver RSS at spawn: {float(base['driver_rss_at_spawn']) / 2**20:.0f} MiB)")  # type: ignore[arg-type]
        if "choix" in res and "error" not in res["choix"] and "error" not in base:
            speed = float(res["choix"]["seconds"]) / float(base["seconds"])  # type: ignore[arg-type]
            same = float(res["choix"]["max_abs_delo"]) <= SAME_RATINGS_ELO  # type: ignore[arg-type]
            res["choix"]["speedup"] = speed
            line = (f"prefkit is {speed:.1f}x faster than choix with "
                    f"{float(res['choix']['peak_rss']) / float(base['peak_rss']):.1f}x less peak RSS; "  # type: ignore[arg-type]
                    f"same ratings (within {SAME_RATINGS_ELO} Elo): {'yes' if same else 'NO'}")
            if n >= 10_000:
                passed = speed >= GOAL_SPEEDUP and same
                ok &= passed
                line += f"; goal >= {GOAL_SPEEDUP:.0f}x: {'PASS' if passed else 'FAIL'}"
            print(line)
        results["sizes"][str(n)] = {"table": meta, "results": res}  # type: ignore[index]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=float))
        print(f"wrote {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
