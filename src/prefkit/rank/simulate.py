"""Simulated arenas: how many votes does each matchmaking strategy need before the
leaderboard's *order* is right?

Votes are drawn from known strengths ``true_scores`` with Davidson's tie model
(Davidson 1970)::

    P(i wins) = e^{d/2} / D,   P(tie) = nu / D,   D = e^{d/2} + e^{-d/2} + nu,  d = s_i - s_j

where ``nu = 2 t / (1 - t)`` makes ``t = ties`` the tie rate of two equal items
(``ties=0`` is plain Bradley-Terry). Strategies:

* ``"active"``: :func:`~prefkit.rank.matchmaking.propose_pairs` (``"information"``) on the
  Laplace posterior of a MAP Bradley-Terry fit, refitted (warm-started) after each batch;
  ``"uncertainty"`` is the same with the own-pair criterion.
* ``"random"``: uniformly random pairs, the same MAP Bradley-Terry fit.
* ``"elo"``: the *same* random votes as ``"random"`` (common random numbers, so the two
  differ only in the estimator), rated by :func:`prefkit.rank.online.elo` (FastChat's
  online Elo) with ``K = elo_k`` (4 by default, FastChat's setting; online Elo is the
  baseline K-Sort Arena compares against), ties scoring 1/2.

The fits use a ``N(0, prior)`` prior on the log-strengths: while the votes are too sparse
for the MLE to exist (items unseen, or only winning) it keeps the fit finite; as votes
accrue it fades (MAP -> MLE). After every batch each strategy's estimate is compared
with the truth by Kendall's tau (tau-a), the fraction of correctly ordered pairs and the
overlap of the top ``top_k``; ties in an estimate are broken *against* the truth, so an
uninformed estimate earns nothing. Runs are averaged; a strategy's votes-to-target is the
first checkpoint at which its run-averaged metric reaches ``target``.

References: Chiang et al. (2024) "Chatbot Arena" (active sampling); Li et al. (2024/2025)
"K-Sort Arena" (16.3x faster convergence than Elo, there with K-wise votes);
Elo (1978) "The rating of chessplayers, past and present".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from prefkit.data.records import ItemIndex, PairwiseVotes
from prefkit.rank._design import PairRows
from prefkit.rank.leaderboard import ELO_BASE
from prefkit.rank.matchmaking import MatchState, _fit_rows, propose_pairs
from prefkit.rank.online import elo
from prefkit.runs import plural

__all__ = [
    "METRICS",
    "MatchmakingResult",
    "rank_accuracy",
    "simulate_matchmaking",
    "simulate_votes",
]

Array = NDArray[np.float64]
METRICS = ("kendall_tau", "pairs_correct", "top_k")
_ACTIVE = {"active": "information", "uncertainty": "uncertainty"}
_KNOWN = (*_ACTIVE, "random", "elo")


def rank_accuracy(estimate: Array, truth: Array, *, top_k: int = 10) -> dict[str, float]:
    """Kendall's tau-a, fraction of pairs in the right order and top-``k`` overlap of
    ``estimate`` against ``truth`` (ties in the estimate count against it).

    >>> rank_accuracy(np.array([3.0, 2.0, 1.0]), np.array([1.0, 0.5, 0.0]), top_k=1)
    {'kendall_tau': 1.0, 'pairs_correct': 1.0, 'top_k': 1.0}
    """
    e, t = np.asarray(estimate, float), np.asarray(truth, float)
    iu = np.triu_indices(t.size, 1)
    agree = (np.sign(e[:, None] - e[None, :]) * np.sign(t[:, None] - t[None, :]))[iu]
    k = min(top_k, t.size)
    est_top = np.lexsort((t, -e))[:k]  # equal estimates: the truly worse item first
    true_top = np.argsort(-t, kind="stable")[:k]
    return {
        "kendall_tau": float(agree.mean()),
        "pairs_correct": float((agree > 0).mean()),
        "top_k": float(np.intersect1d(est_top, true_top).size / k),
    }


def simulate_votes(
    true_scores: Array, i: NDArray[np.int64], j: NDArray[np.int64], *, ties: float,
    rng: np.random.Generator,
) -> NDArray[np.int8]:
    """Outcomes of votes between ``i`` and ``j``: 0 = i wins, 1 = j wins, 2 = tie
    (Davidson's model, tie rate ``ties`` between equal items)."""
    if not 0.0 <= ties < 1.0:
        raise ValueError(f"ties must lie in [0, 1), got {ties}")
    nu = 2.0 * ties / (1.0 - ties)
    d = true_scores[i] - true_scores[j]
    a, b = np.exp(0.5 * d), np.exp(-0.5 * d)
    den = a + b + nu
    u = rng.random(d.size)
    return np.where(u < a / den, 0, np.where(u < (a + b) / den, 1, 2)).astype(np.int8)


def _random_pairs(n: int, size: int, rng: np.random.Generator) -> NDArray[np.int64]:
    i = rng.integers(0, n, size)
    j = (i + rng.integers(1, n, size)) % n  # uniform over j != i
    return np.column_stack([i, j])


class _Tally:
    """Half-win counts ``W[i, j]`` and the warm-started MAP fit on them."""

    def __init__(self, n: int, prior: float) -> None:
        self.W = np.zeros((n, n))
        self.items = ItemIndex(tuple(str(x) for x in range(n)))
        self.prior = prior
        self.state = MatchState.prior(n, prior)

    def add(self, pairs: NDArray[np.int64], out: NDArray[np.int8]) -> None:
        i, j = pairs[:, 0], pairs[:, 1]
        np.add.at(self.W, (i, j), np.where(out == 0, 1.0, np.where(out == 2, 0.5, 0.0)))
        np.add.at(self.W, (j, i), np.where(out == 1, 1.0, np.where(out == 2, 0.5, 0.0)))

    def refit(self) -> MatchState:
        n = self.W.shape[0]
        i, j = np.triu_indices(n, 1)
        keep = (self.W[i, j] + self.W[j, i]) > 0
        i, j = i[keep], j[keep]
        c = np.column_stack([self.W[i, j], self.W[j, i], np.zeros(i.size)])
        rows = PairRows(self.items, i, j, c, np.zeros((i.size, 0)))
        self.state = _fit_rows(rows, prior=self.prior, init=self.state.scores)
        return self.state


@dataclass(frozen=True)
class MatchmakingResult:
    """Accuracy curves of a simulation: ``curves[strategy][metric]`` is ``(runs, T)``
    at ``votes[strategy]`` (``(T,)``, cumulative votes after each batch)."""

    strategies: tuple[str, ...]
    votes: dict[str, NDArray[np.int64]]
    curves: dict[str, dict[str, Array]]
    metric: str
    target: float
    max_votes: int
    config: dict[str, Any] = field(default_factory=dict)

    def mean_curve(self, strategy: str, metric: str | None = None) -> Array:
        return self.curves[strategy][metric or self.metric].mean(0)

    def votes_to_target(self, strategy: str, target: float | None = None) -> int | None:
        """First checkpoint at which the run-averaged metric reaches ``target`` (default:
        the simulation's); ``None`` if it never did within the votes simulated."""
        t = self.target if target is None else target
        hit = np.flatnonzero(self.mean_curve(strategy) >= t)
        return int(self.votes[strategy][hit[0]]) if hit.size else None

    def votes_to_target_runs(self, strategy: str, target: float | None = None) -> list[int | None]:
        """The same for each run on its own (noisier: a lucky run crosses early)."""
        t = self.target if target is None else target
        out: list[int | None] = []
        for run in self.curves[strategy][self.metric]:
            hit = np.flatnonzero(run >= t)
            out.append(int(self.votes[strategy][hit[0]]) if hit.size else None)
        return out

    def speedups(
        self, reference: str = "active", target: float | None = None
    ) -> dict[str, dict[str, Any]]:
        """``{"random/active": {"ratio": r, "lower_bound": bool}, ...}``: votes a baseline
        needs over votes ``reference`` needs. A baseline that never reached the target
        gives a lower bound (the votes it was run for over the reference's votes)."""
        ref = self.votes_to_target(reference, target) if reference in self.strategies else None
        out: dict[str, dict[str, Any]] = {}
        for s in self.strategies:
            if s == reference:
                continue
            v = self.votes_to_target(s, target)
            reached = v if v is not None else int(self.votes[s][-1])
            ratio = None if ref is None else reached / ref
            out[f"{s}/{reference}"] = {"ratio": ratio, "lower_bound": v is None and ref is not None}
        return out

    def table(self, targets: Sequence[float] | None = None, reference: str = "active") -> str:
        """Plain text: votes to reach each target per strategy, then the ratios over
        ``reference`` (``>=`` where a baseline never got there)."""
        ts = list(targets) if targets is not None else [self.target]
        heads = [f"{self.metric}>={t:g}" for t in ts]
        w = max(14, *(len(h) + 2 for h in heads))
        lines = [f"{'strategy':<16}" + "".join(f"{h:>{w}}" for h in heads) + f"{'final':>{w + 10}}"]
        for st in self.strategies:
            cells = []
            for t in ts:
                v = self.votes_to_target(st, t)
                cells.append(f"{v:,}" if v is not None else f"> {int(self.votes[st][-1]):,}")
            final = f"{self.mean_curve(st)[-1]:.4f} @ {int(self.votes[st][-1]):,}"
            lines.append(f"{st:<16}" + "".join(f"{c:>{w}}" for c in cells) + f"{final:>{w + 10}}")
        if reference in self.strategies:
            for st in self.strategies:
                if st == reference:
                    continue
                cells = []
                for t in ts:
                    r = self.speedups(reference, t)[f"{st}/{reference}"]
                    cells.append("n/a" if r["ratio"] is None else
                                 f"{'>=' if r['lower_bound'] else ''}{r['ratio']:.2f}x")
                lines.append(f"{st + '/' + reference:<16}" + "".join(f"{c:>{w}}" for c in cells))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "target": self.target,
            "max_votes": self.max_votes,
            "config": self.config,
            "strategies": {
                s: {
                    "votes": self.votes[s].tolist(),
                    "mean": {m: c.mean(0).tolist() for m, c in self.curves[s].items()},
                    "votes_to_target": self.votes_to_target(s),
                    "votes_to_target_runs": self.votes_to_target_runs(s),
                }
                for s in self.strategies
            },
            "speedups": self.speedups(),
        }

    def plot(  # type: ignore[no-untyped-def]
        self, path: str | None = None, *, metric: str | None = None, logx: bool = True
    ):
        """Accuracy against votes, one line per strategy (band: min-max over runs), the
        target dashed; writes ``path`` if given (Agg backend) and returns the figure."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        metric = metric or self.metric
        fig = Figure(figsize=(7, 4.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for s in self.strategies:
            c, x = self.curves[s][metric], self.votes[s]
            line = ax.plot(x, c.mean(0), label=s)[0]
            if c.shape[0] > 1:
                ax.fill_between(x, c.min(0), c.max(0), color=line.get_color(), alpha=0.15, lw=0)
            v = self.votes_to_target(s) if metric == self.metric else None
            if v is not None:
                ax.axvline(v, color=line.get_color(), ls=":", lw=1)
        if metric == self.metric:
            ax.axhline(self.target, color="grey", ls="--", lw=1, label=f"target {self.target}")
        if logx:
            from matplotlib.ticker import FuncFormatter, NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("votes")
        ax.set_ylabel(metric.replace("_", " "))
        n = self.config.get("n_items", "?")
        runs = self.curves[self.strategies[0]][metric].shape[0]
        ax.set_title(f"matchmaking on {n} items ({plural(runs, 'run')})")
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


def simulate_matchmaking(
    true_scores: Array,
    *,
    strategies: tuple[str, ...] = ("active", "random", "elo"),
    target: float = 0.9,
    metric: str = "kendall_tau",
    max_votes: int = 20_000,
    batch: int = 50,
    rng: np.random.Generator,
    n_runs: int = 1,
    ties: float = 0.0,
    prior: float = 1.0,
    elo_k: float = 4.0,
    top_k: int | None = None,
    explore: float = 0.0,
    stop_at_target: bool = False,
) -> MatchmakingResult:
    """Simulate an arena on known strengths and record each strategy's rank accuracy.

    Args:
        true_scores: ``(n,)`` log-strengths (e.g. a fitted leaderboard's ``scores``).
        strategies: any of ``"active"``, ``"uncertainty"``, ``"random"``, ``"elo"``.
        target, metric: the accuracy to reach (``metric`` in :data:`METRICS`).
        max_votes, batch: budget per run and votes between refits/checkpoints.
        rng: the only source of randomness; each run draws its own seed from it.
        n_runs: independent runs to average.
        ties: tie rate between equal items (Davidson), e.g. 0.3 for Arena-like data.
        prior: prior variance of the MAP fits.
        elo_k: Elo's K (points per vote).
        top_k: size of the top set for the ``"top_k"`` metric (default ``min(10, n // 4)``).
        explore: exploration share passed to :func:`propose_pairs`.
        stop_at_target: stop a vote stream once the run-averaged metric of each strategy
            fed by it reached the target (faster; its curves then end there; "random"
            and "elo" share one stream).
    """
    s = np.asarray(true_scores, float)
    n = s.size
    unknown = [x for x in strategies if x not in _KNOWN]
    if unknown or not strategies:
        raise ValueError(f"strategies must be among {_KNOWN}, got {strategies}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if n < 3 or batch < 1 or max_votes < batch or n_runs < 1:
        raise ValueError("need >= 3 items, batch >= 1, max_votes >= batch and n_runs >= 1")
    k = top_k or max(1, min(10, n // 4))
    seeds = rng.integers(0, 2**63, size=n_runs)
    # streams: each active strategy alone; "random" and "elo" share one vote stream
    groups = [(x,) for x in strategies if x in _ACTIVE]
    shared = tuple(x for x in strategies if x in ("random", "elo"))
    if shared:
        groups.append(shared)
    votes: dict[str, NDArray[np.int64]] = {}
    curves: dict[str, dict[str, Array]] = {}
    n_batches = max_votes // batch
    for gid, group in enumerate(groups):
        rngs = [np.random.default_rng([int(sd), gid]) for sd in seeds]
        tallies = [_Tally(n, prior) for _ in range(n_runs)]
        elos = [[ELO_BASE] * n for _ in range(n_runs)]
        rec: dict[str, dict[str, list[list[float]]]] = {
            x: {m: [[] for _ in range(n_runs)] for m in METRICS} for x in group
        }
        done = 0
        for b in range(n_batches):
            for r in range(n_runs):
                g, tally = rngs[r], tallies[r]
                if group[0] in _ACTIVE:
                    how: Any = _ACTIVE[group[0]]
                    pairs = propose_pairs(
                        tally.state, n=batch, rng=g, strategy=how, explore=explore
                    )
                else:
                    pairs = _random_pairs(n, batch, g)
                out = simulate_votes(s, pairs[:, 0], pairs[:, 1], ties=ties, rng=g)
                if group != ("elo",):
                    tally.add(pairs, out)
                for x in group:
                    if x == "elo":  # continue the online Elo run over this batch
                        batch_votes = PairwiseVotes(tally.items, pairs[:, 0], pairs[:, 1], out)
                        elos[r] = elo(batch_votes, k=elo_k, init=elos[r]).info["elo"]
                        est = np.asarray(elos[r])
                    else:
                        est = tally.refit().scores
                    for m, val in rank_accuracy(est, s, top_k=k).items():
                        rec[x][m][r].append(val)
            done = b + 1
            if stop_at_target and all(
                np.mean([rec[x][metric][r][-1] for r in range(n_runs)]) >= target for x in group
            ):
                break
        for x in group:
            votes[x] = batch * np.arange(1, done + 1, dtype=np.int64)
            curves[x] = {m: np.asarray(rec[x][m]) for m in METRICS}
    config = {
        "n_items": n, "batch": batch, "n_runs": n_runs, "ties": ties, "prior": prior,
        "elo_k": elo_k, "top_k": k, "explore": explore, "stop_at_target": stop_at_target,
        "score_sd": float(s.std()), "min_adjacent_gap": float(np.diff(np.sort(s)).min()),
    }
    return MatchmakingResult(tuple(strategies), votes, curves, metric, target, max_votes, config)
