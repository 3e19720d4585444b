"""Whole processes, imports included: `prefkit rank` vs its peers on the 1.67M Arena votes.

``arena_speed.py`` times the library calls in one warm process, imports excluded. A user
runs a command: Python starts, imports, reads, fits, prints, exits. Here every contestant
is a fresh ``subprocess`` timed from start to exit:

* ``prefkit rank FILE --intervals none`` (read + fit, the leaderboard printed);
* ``prefkit rank FILE --rounds 1000`` (the default run: + 1,000 bootstrap rounds);
* ``prefkit --help``;
* choix and evalica run exactly as ``arena_speed.py`` runs them (its ``run_choix``: pandas
  reads the Parquet file, two crosstabs into a dense win matrix, ``ilsr_pairwise_dense``;
  its ``run_evalica``: ``evalica.bradley_terry`` on the Parquet columns), each in
  ``python -c`` that imports ``arena_speed`` and calls the one function;
* floors: ``python -c pass``; a bare typer app's ``--help`` (typer + click + rich, the same
  settings as prefkit's app); the imports a fit cannot avoid today (numpy, scipy.special,
  scipy.linalg, scipy.sparse.csgraph, pyarrow.parquet, typer with its pydantic coercion,
  rich).

Contestants run interleaved, round by round, after one untimed warm-up round, so background
load hits all alike; best and median count. Each run's wall time and its CPU time (user +
system, all threads) are recorded: on a shared machine the CPU time is the steadier figure.
Ratios: the fastest peer's time over prefkit's fit-only time (goal >= 5x), and prefkit's
default run over the fastest peer's fit (goal <= 1x); ``prefkit --help`` in absolute
seconds (goal < 0.3 s).

``--engines`` adds the DuckDB question: pair counts from the Parquet table by prefkit's
pyarrow stream (``read_votes(aggregate=True)``) or by one DuckDB SQL ``GROUP BY``
(:func:`duckdb_pair_counts`), each followed by the same fit, each a fresh process with its
imports, on the Arena table and on ``memory.py``'s 10M-vote, 1,000-item table.

Usage:
    python benchmarks/cli_speed.py                # 7 rounds, ~5 minutes on a busy 2-core machine
    python benchmarks/cli_speed.py --engines --json benchmarks/_work/cli_speed.json
    python benchmarks/cli_speed.py --engines-only --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

HERE = Path(__file__).resolve().parent
GOAL_FIT = 5.0  # fastest peer / prefkit fit-only
GOAL_DEFAULT = 1.0  # prefkit default (1,000 bootstrap rounds) / fastest peer
GOAL_HELP = 0.3  # seconds

PEER = "import sys; sys.path.insert(0, {here!r}); import arena_speed as A; from pathlib import Path; r = A.{fn}(Path({path!r})); print(len(r))"
TYPER_FLOOR = """
import typer
app = typer.Typer(name="floor", help="A bare typer app.", no_args_is_help=True,
                  add_completion=False, rich_markup_mode="markdown", pretty_exceptions_enable=False)
@app.command()
def one(x: int = 0) -> None:
    \"\"\"One command.\"\"\"
@app.command()
def two(y: str = "") -> None:
    \"\"\"Another command.\"\"\"
app()
"""
FIT_FLOOR = ("import numpy, scipy.special, scipy.linalg, scipy.sparse.csgraph, pyarrow.parquet, "
             "typer, typer._adapters, rich.console, rich.table")


@dataclass
class Run:
    name: str
    argv: list[str]
    role: str  # "prefkit-fit", "prefkit-default", "prefkit-help", "peer", "floor"
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # user + system seconds, children included
    error: str | None = None

    @property
    def best(self) -> float:
        return min(self.times) if self.times else float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")


def prefkit_command() -> list[str]:
    """The installed console script next to this interpreter (what a user runs)."""
    script = Path(sys.executable).with_name("prefkit")
    if script.exists():
        return [str(script)]
    found = shutil.which("prefkit")
    return [found] if found else [sys.executable, "-m", "prefkit.cli.main"]


def clean_env() -> dict[str, str]:
    """The caller's environment without prefkit's settings, and with bytecode caches on: a
    user's Python writes them, so with ``PYTHONDONTWRITEBYTECODE`` inherited (some shells
    and containers set it) every run would recompile each module edited since its last
    cache (~20 ms for a large one) and the contestant with the freshest edits would lose.
    Thread counts are left as the caller set them: each program chooses its own default."""
    drop = ("PREFKIT_", "PYTHONDONTWRITEBYTECODE")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_once(run: Run, env: dict[str, str]) -> None:
    c0, t0 = _children_cpu(), time.perf_counter()
    p = subprocess.run(run.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                       cwd=C.ROOT)
    dt, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if p.returncode != 0:
        run.error = f"exit {p.returncode}: {p.stderr.decode(errors='replace')[-500:]}"
    else:
        run.times.append(dt)
        run.cpu.append(cpu)


def check_agreement(prefkit: list[str], path: Path, env: dict[str, str]) -> str:
    """Untimed: prefkit's --json ratings vs choix's, after removing the offset."""
    out = subprocess.run([*prefkit, "rank", str(path), "--intervals", "none", "--json"],
                         capture_output=True, env=env, check=True, cwd=C.ROOT).stdout
    ours = {r["item"]: r["rating"] for r in json.loads(out)["leaderboard"]}
    code = ("import sys, json; sys.path.insert(0, %r); import arena_speed as A; "
            "from pathlib import Path; print(json.dumps(A.run_choix(Path(%r))))" % (str(HERE), str(path)))
    theirs = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                       env=env, check=True, cwd=C.ROOT).stdout)
    return f"max|dElo| prefkit vs choix = {C.max_elo_diff(ours, theirs):.2g}"



def duckdb_pair_counts(path: Path) -> Any:
    """What prefkit's ``[io]`` extra declared DuckDB for, as a contestant: the Parquet
    votes counted per (a, b, outcome) by one SQL ``GROUP BY`` (the shape a Spark job would
    take), item ids and the fold into unordered pairs ``i < j`` in SQL too, only the
    counts back in Python as ``PairCounts``. Equal to ``read_votes(path, aggregate=True)``
    (checked before timing). A clean table is assumed (no validation by row)."""
    import duckdb
    import numpy as np

    from prefkit.data.records import ItemIndex, PairCounts
    from prefkit.data.stream import OUTCOME_LABELS

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    src = "read_parquet('" + str(path).replace("'", "''") + "')"
    outcome = " ".join(f"WHEN '{k}' THEN {v}" for k, v in OUTCOME_LABELS.items())
    con.execute(f"""
        CREATE TEMP TABLE g AS
        SELECT CAST(model_a AS VARCHAR) AS a, CAST(model_b AS VARCHAR) AS b,
               CASE CAST(winner AS VARCHAR) {outcome} END AS o, count(*) AS n
        FROM {src} GROUP BY ALL""")
    bad = con.execute("SELECT count(*) FROM g WHERE a IS NULL OR b IS NULL OR o IS NULL "
                      "OR a = b").fetchone()[0]
    if bad:
        raise ValueError(f"{path}: invalid rows; this contestant assumes a clean table")
    res = con.execute("""
        WITH ids AS (SELECT name, (row_number() OVER (ORDER BY name)) - 1 AS id
                     FROM (SELECT a AS name FROM g UNION SELECT b FROM g))
        SELECT least(ia.id, ib.id) AS i, greatest(ia.id, ib.id) AS j,
               CASE WHEN ia.id > ib.id AND g.o < 2 THEN 1 - g.o ELSE g.o END AS o,
               sum(g.n) AS n
        FROM g JOIN ids ia ON g.a = ia.name JOIN ids ib ON g.b = ib.name
        GROUP BY ALL""").fetchnumpy()
    names = [r[0] for r in con.execute(
        "SELECT name FROM (SELECT a AS name FROM g UNION SELECT b FROM g) ORDER BY name").fetchall()]
    n = len(names)
    pairs, pinv = np.unique(np.asarray(res["i"], np.int64) * n + np.asarray(res["j"], np.int64),
                            return_inverse=True)
    c4 = np.zeros((pairs.size, 4))
    np.add.at(c4, (pinv, np.asarray(res["o"], np.int64)), np.asarray(res["n"], np.float64))
    return PairCounts(ItemIndex(tuple(names)), pairs // n, pairs % n, c4)


def child(engine: str, path: Path) -> int:
    """One contestant of ``--engines``: counts from ``path`` by ``engine``, then the fit;
    prints the in-process seconds (imports of the engine included in ``count_s``)."""
    t0 = time.perf_counter()
    if engine == "duckdb":
        counts = duckdb_pair_counts(path)
    else:
        from prefkit.data import read_votes

        counts = read_votes(path, aggregate=True).votes
    t1 = time.perf_counter()
    from prefkit.rank import fit_bradley_terry

    fit_bradley_terry(counts)
    print(json.dumps({"count_s": t1 - t0, "fit_s": time.perf_counter() - t1,
                      "pairs": len(counts), "votes": float(counts.counts.sum())}))
    return 0


def compare_engines(tables: list[Path], repeats: int, env: dict[str, str]) -> dict[str, object]:
    """pyarrow stream vs DuckDB SQL, each a fresh process (imports included), interleaved."""
    import numpy as np

    from prefkit.data import read_votes

    out: dict[str, object] = {}
    for path in tables:
        ref = read_votes(path, aggregate=True).votes
        duck = duckdb_pair_counts(path)
        same = (ref.items == duck.items and np.array_equal(ref.i, duck.i)
                and np.array_equal(ref.j, duck.j) and np.array_equal(ref.counts, duck.counts))
        walls: dict[str, list[float]] = {"pyarrow": [], "duckdb": []}
        cpus: dict[str, list[float]] = {"pyarrow": [], "duckdb": []}
        inner: dict[str, list[float]] = {"pyarrow": [], "duckdb": []}
        for r in range(repeats + 1):  # the first round warms the page cache, untimed
            for engine in walls:
                c0, t0 = _children_cpu(), time.perf_counter()
                p = subprocess.run([sys.executable, __file__, "--child", engine, str(path)],
                                   capture_output=True, env=env, check=True, cwd=C.ROOT)
                if r:
                    walls[engine].append(time.perf_counter() - t0)
                    cpus[engine].append(_children_cpu() - c0)
                    inner[engine].append(json.loads(p.stdout)["count_s"])
        rows = {e: {"wall_best": min(w), "wall_median": statistics.median(w),
                    "cpu_best": min(cpus[e]), "cpu_median": statistics.median(cpus[e]),
                    "count_best": min(inner[e]), "count_median": statistics.median(inner[e])}
                for e, w in walls.items()}
        print(f"\ncounts + fit, whole process: {path.name} ({ref.n_votes:,.0f} votes, "
              f"{ref.n_items} items; identical counts: {same})")
        print(f"  {'engine':<10} {'wall best':>10} {'median':>7} {'cpu best':>9} {'median':>7} "
              f"{'counting wall best':>19} {'median':>7}")
        for e, v in rows.items():
            print(f"  {e:<10} {v['wall_best']:10.3f} {v['wall_median']:7.3f} {v['cpu_best']:9.3f} "
                  f"{v['cpu_median']:7.3f} {v['count_best']:19.3f} {v['count_median']:7.3f}")
        d, a = rows["duckdb"], rows["pyarrow"]
        ratio = d["wall_best"] / a["wall_best"]
        print(f"  duckdb / pyarrow, whole process: wall {ratio:.2f}x (best), "
              f"{d['wall_median'] / a['wall_median']:.2f}x (median); "
              f"cpu {d['cpu_best'] / a['cpu_best']:.2f}x (best)")
        out[path.name] = {"identical": same, "engines": rows, "ratio_best": ratio,
                          "ratio_median": d["wall_median"] / a["wall_median"],
                          "ratio_cpu": d["cpu_best"] / a["cpu_best"]}
    return out

def compare_commands(path: Path, repeats: int, env: dict[str, str], check: bool) -> dict[str, object]:
    """prefkit's commands, the floors and the peers, each a fresh process, interleaved."""
    pk = prefkit_command()
    py = sys.executable
    peer = lambda fn: [py, "-c", PEER.format(here=str(HERE), fn=fn, path=str(path))]  # noqa: E731
    runs = [
        Run("python -c pass", [py, "-c", "pass"], "floor"),
        Run("bare typer app --help", [py, "-c", TYPER_FLOOR, "--help"], "floor"),
        Run("prefkit --help", [*pk, "--help"], "prefkit-help"),
        Run("imports a fit needs", [py, "-c", FIT_FLOOR], "floor"),
        Run("prefkit rank --intervals none", [*pk, "rank", str(path), "--intervals", "none"],
            "prefkit-fit"),
        Run("prefkit rank (1000 bootstrap)", [*pk, "rank", str(path), "--rounds", "1000"],
            "prefkit-default"),
        Run("choix (dense matrix)", peer("run_choix"), "peer"),
        Run("evalica", peer("run_evalica"), "peer"),
    ]
    print(f"prefkit = {' '.join(pk)}")
    for run in runs:  # untimed warm-up: byte-code written, file in the page cache
        time_once(run, env)
        run.times.clear()
        run.cpu.clear()
    for r in range(repeats):
        for run in runs:
            if run.error is None:
                time_once(run, env)
        print(f"  round {r + 1}/{repeats} done", flush=True)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    print(f"\n{'whole process (fresh subprocess, start to exit)':<40} {'wall best':>9} "
          f"{'median':>7} {'cpu best':>9} {'median':>7} {'runs':>5}")
    for run in runs:
        if run.error:
            print(f"{run.name:<40} FAILED: {run.error}")
        else:
            print(f"{run.name:<40} {run.best:9.3f} {run.median:7.3f} {min(run.cpu):9.3f} "
                  f"{statistics.median(run.cpu):7.3f} {len(run.times):5d}")
    print("(seconds; cpu = user + system time of the process and its threads: less sensitive "
          "to other load than wall time)")

    result: dict[str, object] = {
        "runs": {run.name: {"times": run.times, "cpu": run.cpu, "best": run.best,
                            "median": run.median, "error": run.error} for run in runs},
    }
    if check:
        try:
            note = check_agreement(pk, path, env)
        except (subprocess.CalledProcessError, ValueError, KeyError) as e:
            note = f"agreement check failed: {e}"
        print(note)
        result["agreement"] = note
    by_role = {run.role: run for run in runs if run.role.startswith("prefkit") and run.times}
    peers = [run for run in runs if run.role == "peer" and run.times]
    if not peers or len(by_role) < 3:
        return result
    fastest = min(peers, key=lambda r: r.best)
    fastest_med = min(peers, key=lambda r: r.median)
    fit, dflt, hlp = by_role["prefkit-fit"], by_role["prefkit-default"], by_role["prefkit-help"]
    g1, g1m = fastest.best / fit.best, fastest_med.median / fit.median
    g2, g2m = dflt.best / fastest.best, dflt.median / fastest_med.median
    cpu_fastest = min(min(r.cpu) for r in peers)
    g1c, g2c = cpu_fastest / min(fit.cpu), min(dflt.cpu) / cpu_fastest
    print()
    print(f"fit only: fastest peer {fastest.name} {fastest.best:.3f} s / prefkit {fit.best:.3f} s "
          f"= {g1:.2f}x (medians: {g1m:.2f}x; cpu: {g1c:.2f}x); goal >= {GOAL_FIT:.0f}x -> "
          f"{'PASS' if g1 >= GOAL_FIT else 'FAIL'}")
    print(f"default run: prefkit + 1000 bootstrap {dflt.best:.3f} s / fastest peer's fit "
          f"{fastest.best:.3f} s = {g2:.2f}x (medians: {g2m:.2f}x; cpu: {g2c:.2f}x); "
          f"goal <= {GOAL_DEFAULT:.0f}x -> {'PASS' if g2 <= GOAL_DEFAULT else 'FAIL'}")
    print(f"prefkit --help: {hlp.best:.3f} s best, {hlp.median:.3f} s median "
          f"(cpu {min(hlp.cpu):.3f} s); goal < {GOAL_HELP} s -> "
          f"{'PASS' if hlp.best < GOAL_HELP else 'FAIL'}")
    result.update(fit_ratio=g1, fit_ratio_median=g1m, fit_ratio_cpu=g1c, default_ratio=g2,
                  default_ratio_median=g2m, default_ratio_cpu=g2c, help_best=hlp.best,
                  help_cpu=min(hlp.cpu), fastest_peer=fastest.name)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7, help="rounds; every contestant once per round")
    ap.add_argument("--rebuild", action="store_true", help="rewrite the Parquet file")
    ap.add_argument("--skip-check", action="store_true", help="skip the rating agreement check")
    ap.add_argument("--engines", action="store_true",
                    help="also: pair counts by the pyarrow stream vs DuckDB SQL, on the Arena "
                    "table and the 10M-vote, 1,000-item table of memory.py (needs duckdb)")
    ap.add_argument("--engines-only", action="store_true", help="only the --engines comparison")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--child", nargs=2, metavar=("ENGINE", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child[0], Path(args.child[1]))

    path = C.make_arena_parquet(force=args.rebuild)
    env = clean_env()
    repeats = max(1, args.repeats)
    n_votes = int(__import__("pyarrow.parquet").parquet.ParquetFile(path).metadata.num_rows)
    print(f"data: {path.relative_to(C.ROOT)} ({n_votes:,} votes)")
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs")
    result: dict[str, object] = {"n_votes": n_votes, "cpu_count": os.cpu_count(),
                                 "loadavg_start": os.getloadavg()}
    if not args.engines_only:
        result.update(compare_commands(path, repeats, env, check=not args.skip_check))
    if args.engines or args.engines_only:
        import importlib.util

        if importlib.util.find_spec("duckdb") is None:
            print("\n--engines: duckdb is not installed (pip install -r requirements/bench.txt)")
        else:
            import memory

            result["engines"] = compare_engines([path, memory.make_synthetic()], repeats, env)
    result["loadavg_end"] = os.getloadavg()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
