"""The live leaderboard of an arena.

:class:`LiveBoard` keeps it current: a warm-started Bradley-Terry point fit on the aggregated
counts (:mod:`prefkit.arena.tally`) after every batch of votes (milliseconds, also for the
1.67M-vote Chatbot Arena counts), and the full :func:`prefkit.rank.rank` (bootstrap
intervals, rank ranges, tiers) in a background worker process. While the bootstrap lags
behind the votes, the JSON says so (``arena.bootstrap_lag_votes``) and shows the fresh
ratings with the last bootstrap's interval widths, rank ranges and tiers.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from prefkit.arena.store import Store
from prefkit.arena.tally import EXPORT_COLUMNS, Tally, export_rows, finite
from prefkit.runs import plural

_log = logging.getLogger("prefkit.arena")

#: How long a vote number skipped by a read is asked for again (a vote's transaction is
#: one statement, or a few with its flags: far shorter).
GAP_SECONDS = 30.0

# EXPORT_COLUMNS, Tally, export_rows and finite are re-exported from prefkit.arena.tally
__all__ = ["EXPORT_COLUMNS", "BoardConfig", "LiveBoard", "Tally", "export_rows", "finite",
           "full_rank"]

def _watch_parent(parent: int) -> None:
    """In the bootstrap worker: exit as soon as the server is gone (a ``kill -9`` of the
    server leaves no orphan worker behind)."""
    import os

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def full_rank(counts: Any, rounds: int, seed: int) -> dict[str, Any]:
    """``prefkit rank``'s leaderboard of ``counts`` (default options, ``rounds``, ``seed``)
    as a dict; an unrankable state gives ``{"error", "leaderboard": []}``. Picklable: the
    server runs it in a worker process, away from the requests' interpreter lock."""
    import warnings

    from prefkit.rank import rank

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return rank(counts, rounds=rounds, rng=np.random.default_rng(seed)).to_dict()
        except Exception as e:  # noqa: BLE001 - an unrankable state is shown, not raised
            return {"error": str(e), "leaderboard": []}


def _provisional(counts: Any, why: str) -> dict[str, Any]:
    """A leaderboard while the data cannot be ranked (e.g. a disconnected comparison graph):
    MAP scores under a N(0, 1) prior (:meth:`MatchState.fit`), every row provisional."""
    from prefkit.rank.leaderboard import to_elo
    from prefkit.rank.matchmaking import MatchState

    try:
        scores = MatchState.fit(counts, prior=1.0).scores
    except Exception as e:  # noqa: BLE001 - shown, not raised
        return {"error": f"{why}; {e}", "leaderboard": []}
    ratings = to_elo(scores)
    m = counts.matrix("half")
    votes = (m + m.T).sum(1)
    order = np.argsort(-scores, kind="stable")
    rows = [{"rank": r + 1, "item": counts.items.names[k], "rating": round(float(ratings[k]), 4),
             "score": float(scores[k]), "votes": float(votes[k]), "provisional": True}
            for r, k in enumerate(order)]
    return {"model": "bradley_terry (MAP, prior variance 1)", "leaderboard": rows,
            "provisional_reason": why}


@dataclass(frozen=True)
class BoardConfig:
    """How the live leaderboard is computed (the same options reproduce it with
    ``prefkit rank EXPORT --rounds R --seed S --json``)."""

    rounds: int = 1000
    seed: int = 0
    policy: str = "exclude"
    both_bad: str = "tie"
    refresh: float = 0.25  # seconds between checks for new votes
    bootstrap_process: bool = True  # bootstrap in a worker process (else a thread)


class LiveBoard:
    """The leaderboard kept current in two background threads (point fit, bootstrap)."""

    def __init__(self, store: Store, config: BoardConfig = BoardConfig()) -> None:
        self.store = store
        self.config = config
        self.tally = Tally()
        self._lock = threading.Lock()
        self._update_lock = threading.Lock()
        self._cells: dict[tuple[str, str], list[float]] = {}
        self._flag_sig: tuple[int, ...] = ()  # the store's flag_version() last applied
        self._flag_version = 0  # how many times the flags in force changed
        self._gaps: dict[int, float] = {}  # seq numbers skipped by a read -> when
        self.point: dict[str, Any] | None = None  # the fast fit
        self.point_seq = 0
        self.full: dict[str, Any] | None = None  # the full rank() of some state
        self.full_key: tuple[int, int, int] = (-1, -1, -1)  # (last seq, flags, rows)
        self.counts: Any = None
        self.scores: dict[str, float] = {}
        self.last_refit_seconds = float("nan")
        self.listeners: list[Any] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool: Any = None

    # -- state ---------------------------------------------------------------------------------
    def update(self) -> bool:
        """Read new votes and flags; refit the point estimate if anything changed."""
        with self._update_lock:
            return self._update()

    def _update(self) -> bool:
        rows = self.store.votes_since(self.tally.last_seq, also=sorted(self._gaps))
        sig = self.store.flag_version()
        flags_changed = sig != self._flag_sig
        if not rows.seq and not flags_changed:
            return False
        flags, lifts = (self.store.flags(), self.store.flag_lifts()) if flags_changed else ([],
                                                                                            [])
        t0 = time.perf_counter()
        cfg = self.config
        with self._lock:
            self._note_gaps(rows.seq)
            start = len(self.tally.a)
            self.tally.extend(rows)
            changed = self.tally.apply_flags(flags, lifts) if flags_changed else []
            if flags_changed:
                self._flag_sig = sig
                self._flag_version += 1
            if not self.tally.a:
                return False
            # rows whose flags changed move from their old weight to their new one
            old = [(k, r) for k, r in changed if k < start]
            if old:
                idx = [k for k, _ in old]
                w_old = self.tally.weights([r for _, r in old], cfg.policy, cfg.both_bad,
                                           rows=idx)
                w_new = self.tally.weights([self.tally.row_reasons[k] for k in idx],
                                           cfg.policy, cfg.both_bad, rows=idx)
                moved = w_new != w_old
                self.tally.add_cells(self._cells, (w_new - w_old)[moved],
                                     rows=[k for k, m in zip(idx, moved.tolist()) if m])
            w = self.tally.weights(self.tally.row_reasons[start:], cfg.policy, cfg.both_bad,
                                   start)
            self.tally.add_cells(self._cells, w, start)
            counts = self.tally.cells_to_counts(self._cells)
            self.counts = counts
            key = (self.tally.last_seq, self._flag_version, len(self.tally.a))
        self._point_fit(counts, key)
        self.last_refit_seconds = time.perf_counter() - t0
        for listener in list(self.listeners):
            listener(self)
        return True

    def _note_gaps(self, seqs: list[int]) -> None:
        """Remember vote numbers a read skipped: on PostgreSQL concurrent votes can commit
        out of ``seq`` order (and a refused duplicate uses up a number), so the next reads
        also ask for the missing numbers, for :data:`GAP_SECONDS`."""
        now = time.monotonic()
        for s in seqs:
            self._gaps.pop(s, None)
        if seqs:
            have = set(seqs)
            top = max(seqs)
            low = self.tally.last_seq + 1
            if top - low < 100_000:
                for s in range(low, top):
                    if s not in have:
                        self._gaps[s] = now
        for s in [s for s, at in self._gaps.items() if now - at > GAP_SECONDS]:
            del self._gaps[s]
        while len(self._gaps) > 10_000:
            self._gaps.pop(next(iter(self._gaps)))

    def _point_fit(self, counts: Any, key: tuple[int, int, int]) -> None:
        import warnings

        from prefkit.rank import fit_bradley_terry

        init = np.array([self.scores.get(n, 0.0) for n in counts.items.names])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                lb = fit_bradley_terry(counts, init=init if self.scores else None)
            except Exception as e:  # noqa: BLE001 - an unrankable state is shown, not raised
                self.point, self.point_seq = _provisional(counts, str(e)), key[0]
                return
        self.scores = dict(zip(lb.items.names, lb.scores.tolist()))
        self.point, self.point_seq = lb.to_dict(), key[0]
        self.point_key = key

    def full_fit(self) -> None:
        """The full :func:`prefkit.rank.rank` of the current counts (what ``prefkit rank``
        does with the default options, ``rounds`` and ``seed``)."""
        with self._lock:
            counts = self.counts
            key = (self.tally.last_seq, self._flag_version, len(self.tally.a))
            n_rows = len(self.tally.a)
            n_aside = sum(1 for r in self.tally.row_reasons if r)
        if counts is None or key == self.full_key:
            return
        t0 = time.perf_counter()
        if self._pool is not None:
            d = self._pool.submit(full_rank, counts, self.config.rounds, self.config.seed).result()
        else:
            d = full_rank(counts, self.config.rounds, self.config.seed)
        d["input"] = {"file": self.store.describe(), "format": "arena", "rows_read": n_rows,
                      "rows_skipped": 0, "items_dropped": []}
        d["seconds"] = round(time.perf_counter() - t0, 4)
        d["arena"] = {"rows_set_aside": n_aside, "flag_policy": self.config.policy}
        self.full, self.full_key = d, key

    def leaderboard(self) -> dict[str, Any]:
        """The JSON of ``GET /api/leaderboard``: ``prefkit rank --json``'s, plus ``arena``
        (votes counted, bootstrap lag)."""
        point, full = self.point, self.full
        if point is None:
            return {"leaderboard": [], "arena": {"votes_seq": 0, "bootstrap_lag_votes": 0,
                                                 "lagging": False, "message": "no votes yet"}}
        if full is None:
            return finite({**point, "arena": {
                "votes_seq": self.point_seq, "bootstrap_lag_votes": self.point_seq,
                "lagging": True, "message": "ratings are current; the first bootstrap "
                                            "(intervals, rank ranges, tiers) is running"}})
        lag = self.point_seq - self.full_key[0]
        if "error" in full and "error" not in point and lag <= 0:
            out = {**point, "input": full["input"]}
            out["arena"] = {**full["arena"], "votes_seq": self.point_seq,
                            "bootstrap_lag_votes": 0, "lagging": False,
                            "message": f"point estimates only (no intervals): {full['error']}"}
            return finite(out)
        if lag <= 0 or "error" in point or "error" in full:
            out = dict(full)
            out["arena"] = {**full["arena"], "votes_seq": self.full_key[0],
                            "bootstrap_lag_votes": 0, "lagging": False}
            return finite(out)
        old = {r["item"]: r for r in full.get("leaderboard", [])}
        rows = []
        for r in point["leaderboard"]:
            r = dict(r)
            o = old.get(r["item"])
            if o is not None and "lower" in o:
                shift = r["rating"] - o["rating"]
                r["lower"], r["upper"] = o["lower"] + shift, o["upper"] + shift
                for k in ("rank_lower", "rank_upper", "tier"):
                    if k in o:
                        r[k] = o[k]
            rows.append(r)
        out = {**full, "leaderboard": rows}
        out["arena"] = {**full["arena"], "votes_seq": self.point_seq,
                        "bootstrap_lag_votes": lag, "lagging": True,
                        "message": f"ratings are current; intervals, rank ranges and tiers are "
                                   f"from the bootstrap of {plural(lag, 'vote')} ago and are being "
                                   "recomputed"}
        return finite(out)

    def win_rates(self) -> dict[str, Any]:
        """Observed win rates (ties as half) between every pair of items, for the heatmap."""
        c = self.counts
        if c is None:
            return {"items": [], "win_rate": [], "votes": []}
        W = c.matrix("half")
        n = W + W.T
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(n > 0, W / n, np.nan)
        return finite({"items": list(c.items.names), "win_rate": rate.tolist(),
                       "votes": n.tolist()})

    def snapshot(self) -> tuple[Tally, list[str], np.ndarray]:
        """The tally, reasons and weights as they are now (for export and integrity)."""
        self.update()
        with self._lock:
            reasons = list(self.tally.row_reasons)
            w = self.tally.weights(reasons, self.config.policy, self.config.both_bad)
            return self.tally, reasons, w

    # -- threads ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start refitting in the background; the bootstrap in a worker process (spawned,
        so that it shares no lock with the server) unless ``bootstrap_process`` is off."""
        if self.config.bootstrap_process:
            import multiprocessing
            import os
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_watch_parent, initargs=(os.getpid(),))
        for target in (self._point_loop, self._full_loop):
            t = threading.Thread(target=target, daemon=True, name=f"arena-{target.__name__}")
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=30)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def poke(self) -> None:
        """A vote arrived: refit soon."""
        self._wake.set()

    def _point_loop(self) -> None:
        """Refit when votes arrive, at most every ``refresh`` seconds."""
        while not self._stop.is_set():
            self._wake.wait(self.config.refresh)
            self._wake.clear()
            try:
                self.update()
            except Exception:  # noqa: BLE001 - a database hiccup must not stop the thread
                _log.exception("arena: refit failed; retrying")
            self._stop.wait(self.config.refresh)

    def _full_loop(self) -> None:
        """Bootstrap the newest counts; rest three times as long as the last bootstrap
        took, so that it uses at most a quarter of a core while votes stream in."""
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                self.full_fit()
            except Exception:  # noqa: BLE001 - as above
                _log.exception("arena: bootstrap failed; retrying")
            self._stop.wait(max(self.config.refresh, 3.0 * (time.perf_counter() - t0)))
