"""Online ratings against the real references: FastChat's online Elo and the openskill
package's Weng-Lin models, on real vote sequences and on simulated K-wise rankings."""

from __future__ import annotations

import ast
import collections
import csv
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from shared_paths import SHARED

from prefkit.choice.plackett_luce import sample_plackett_luce
from prefkit.data.records import ItemIndex, PairwiseVotes, Rankings
from prefkit.rank.bradley_terry import fit_bradley_terry
from prefkit.rank.online import WengLinRatings, elo, weng_lin

#: Same arithmetic in the same order as FastChat: identical up to the Elo-scale round trip.
ELO_TOL = 1e-9
#: openskill and prefkit evaluate the same formulas in a slightly different order.
OPENSKILL_TOL = 1e-9

DATA = SHARED / "data" / "arena"
MODELS = ("bradley_terry_full", "plackett_luce", "thurstone_mosteller_full")


# -- real vote sequences (read with the stdlib: the project's readers are separate) ----------
def _arena_hard() -> tuple[PairwiseVotes, list[dict]]:
    """lmarena/arena-hard-auto judge battles (1,348 rows, 4 models, 23 ties), in file order."""
    path = DATA / "arena_hard_battles.jsonl"
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    label = {"model_a": "a", "model_b": "b", "tie": "tie", "tie (bothbad)": "both_bad"}
    votes = PairwiseVotes.from_names(
        [r["model_a"] for r in rows],
        [r["model_b"] for r in rows],
        [label[r["winner"]] for r in rows],
    )
    return votes, rows


def _llmfao() -> tuple[PairwiseVotes, list[dict]]:
    """dustalov/llmfao crowd comparisons (8,931 votes, 59 models, 3,471 ties), in file order."""
    path = DATA / "llmfao_crowd_comparisons.csv"
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    label = {"left": "a", "right": "b", "tie": "tie"}
    votes = PairwiseVotes.from_names(
        [r["left"] for r in rows], [r["right"] for r in rows], [label[r["winner"]] for r in rows]
    )
    fastchat = [
        {"model_a": r["left"], "model_b": r["right"],
         "winner": {"left": "model_a", "right": "model_b", "tie": "tie"}[r["winner"]]}
        for r in rows
    ]
    return votes, fastchat


# -- Elo ---------------------------------------------------------------------------------------
def _fastchat_online_elo():  # type: ignore[no-untyped-def]
    """FastChat's own function, compiled from the installed ``fschat`` source
    (``fastchat/serve/monitor/elo_analysis.py``) without importing the module, whose
    imports (plotly, pytz, the model registry) are not test dependencies. fschat 0.2.36
    calls it ``compute_elo``; later versions ``compute_online_elo``."""
    spec = importlib.util.find_spec("fastchat")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("fschat is not installed (pip install fschat==0.2.36 --no-deps)")
    path = Path(spec.submodule_search_locations[0], "serve", "monitor", "elo_analysis.py")
    tree = ast.parse(path.read_text())
    fns = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    fn = fns.get("compute_online_elo") or fns["compute_elo"]
    namespace = {"defaultdict": collections.defaultdict}
    exec(compile(ast.Module([fn], []), str(path), "exec"), namespace)
    return namespace[fn.name]


def _restated_online_elo(
    battles: list[dict], k: float = 4, scale: float = 400, base: float = 10, init: float = 1000
) -> dict[str, float]:
    """An independent re-statement of the online Elo in FastChat's
    ``compute_online_elo`` (https://github.com/lm-sys/FastChat/blob/main/fastchat/serve/
    monitor/elo_analysis.py), used when fschat is not installed: each side's expected
    score from the current gap, then ``R += K (S - E)``, ties scoring one half."""
    ratings: dict[str, float] = {}
    score = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}
    for battle in battles:
        a, b = battle["model_a"], battle["model_b"]
        ra, rb = ratings.get(a, init), ratings.get(b, init)
        sa = score[battle["winner"]]
        ratings[a] = ra + k * (sa - 1 / (1 + base ** ((rb - ra) / scale)))
        ratings[b] = rb + k * (1 - sa - 1 / (1 + base ** ((ra - rb) / scale)))
    return ratings


@pytest.mark.parametrize("source", ["arena_hard", "llmfao"])
def test_elo_equals_fastchat_on_real_votes(source: str) -> None:
    pd = pytest.importorskip("pandas")
    votes, battles = _arena_hard() if source == "arena_hard" else _llmfao()
    reference = _fastchat_online_elo()(pd.DataFrame(battles))
    lb = elo(votes)
    assert set(reference) == set(votes.items.names)
    for name, rating in reference.items():
        assert lb.rating(name) == pytest.approx(rating, abs=ELO_TOL)
        assert lb.info["elo"][votes.items.id(name)] == rating  # the raw ratings: bit for bit
    restated = _restated_online_elo(battles)
    assert max(abs(lb.rating(m) - r) for m, r in restated.items()) < ELO_TOL


def test_elo_by_hand_and_tie_kinds() -> None:
    v = PairwiseVotes.from_names(["x"], ["y"], ["a"])
    assert elo(v).info["elo"] == [1002.0, 998.0]  # E = 1/2, K = 4
    # a tie and a both-bad tie both score 1/2: from 1002 vs 998, E_x = 1 / (1 + 10^(-4/400))
    v = PairwiseVotes.from_names(["x", "x", "x"], ["y", "y", "y"], ["a", "tie", "both_bad"])
    ex = 1 / (1 + 10 ** (-0.01))
    r = elo(v).info["elo"]
    second = 1002.0 + 4 * (0.5 - ex)
    third = second + 4 * (0.5 - 1 / (1 + 10 ** ((2000 - 2 * second) / 400)))
    assert r[0] == pytest.approx(third, abs=1e-12)
    assert sum(r) == pytest.approx(2000.0, abs=1e-9)  # Elo moves points, it does not make them
    # the Leaderboard view: mean-zero log-strengths on the Elo scale
    lb = elo(v)
    assert lb.scores.sum() == pytest.approx(0.0, abs=1e-12)
    assert lb.scores[0] - lb.scores[1] == pytest.approx((r[0] - r[1]) * math.log(10) / 400)


def test_elo_weights_scale_k_and_runs_continue() -> None:
    votes, _ = _arena_hard()
    half = len(votes) // 2
    first, rest = votes.select(np.arange(half)), votes.select(np.arange(half, len(votes)))
    whole = elo(votes, k=8.0)
    resumed = elo(rest, k=8.0, init=elo(first, k=8.0).info["elo"])
    np.testing.assert_allclose(resumed.info["elo"], whole.info["elo"], atol=1e-9)
    doubled = PairwiseVotes(votes.items, votes.a, votes.b, votes.outcome, np.full(len(votes), 2.0))
    np.testing.assert_allclose(elo(doubled, k=4.0).info["elo"], whole.info["elo"], atol=1e-9)
    # a custom scale reads back as standard Elo-scale ratings; raw values stay in info
    lb = elo(votes, scale=200.0, base=math.e)
    raw = np.asarray(lb.info["elo"])
    np.testing.assert_allclose(lb.scores, (raw - raw.mean()) / 200.0, atol=1e-12)


# -- Weng-Lin against openskill ----------------------------------------------------------------
def _openskill(model: str, votes_or_rankings, **params):  # type: ignore[no-untyped-def]
    """Replay the games through openskill's own rate(); returns (mu, sigma) per item."""
    models = pytest.importorskip("openskill.models")
    cls = {
        "bradley_terry_full": models.BradleyTerryFull,
        "plackett_luce": models.PlackettLuce,
        "thurstone_mosteller_full": models.ThurstoneMostellerFull,
    }[model]
    m = cls(**params)
    players = [m.rating() for _ in range(votes_or_rankings.n_items)]
    if isinstance(votes_or_rankings, PairwiseVotes):
        v = votes_or_rankings
        rank_a = np.where(v.outcome == 1, 1, 0).tolist()
        rank_b = np.where(v.outcome == 0, 1, 0).tolist()
        games = [
            ([a, b], [ra, rb])
            for a, b, ra, rb in zip(v.a.tolist(), v.b.tolist(), rank_a, rank_b)
        ]
    else:
        r = votes_or_rankings
        games = [
            (r.members[s:e].tolist(), r.levels[s:e].tolist())
            for s, e in zip(r.offsets[:-1], r.offsets[1:])
        ]
    for members, ranks in games:
        out = m.rate([[players[i]] for i in members], ranks=ranks)
        for i, team in zip(members, out):
            players[i] = team[0]
    return np.array([p.mu for p in players]), np.array([p.sigma for p in players])


def _k_wise(seed: int = 0, n: int = 12, games: int = 400) -> Rankings:
    """Simulated K-wise rankings (K = 3..6, Gumbel trick) with random ties, unsorted CSR."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=n)
    mem, lev, off = [], [], [0]
    for _ in range(games):
        k = int(rng.integers(3, 7))
        ranked = sample_plackett_luce(s, rng.choice(n, (1, k), replace=False), rng)[0]
        levels = np.cumsum(rng.random(k) < 0.7) - 1  # ~30% of neighbours tie
        levels[0] = 0
        perm = rng.permutation(k)
        mem.append(ranked[perm])
        lev.append(levels[perm])
        off.append(off[-1] + k)
    return Rankings(
        ItemIndex(tuple(f"p{i}" for i in range(n))), np.concatenate(mem), np.concatenate(lev), off
    )


@pytest.mark.parametrize("model", MODELS)
def test_weng_lin_equals_openskill_on_real_pairwise_votes(model: str) -> None:
    votes, _ = _arena_hard()
    mu, sigma = _openskill(model, votes, tau=0.0)
    r = weng_lin(votes, model=model)  # type: ignore[arg-type]
    np.testing.assert_allclose(r.mu, mu, atol=OPENSKILL_TOL)
    np.testing.assert_allclose(r.sigma, sigma, atol=OPENSKILL_TOL)
    crowd, _ = _llmfao()
    crowd = crowd.select(np.arange(3000))  # 3,000 crowd votes, ~1,100 of them ties
    mu, sigma = _openskill(model, crowd, tau=25 / 300)
    r = weng_lin(crowd, model=model, tau=25 / 300)  # type: ignore[arg-type]
    np.testing.assert_allclose(r.mu, mu, atol=OPENSKILL_TOL)
    np.testing.assert_allclose(r.sigma, sigma, atol=OPENSKILL_TOL)


@pytest.mark.parametrize("model", MODELS)
def test_weng_lin_equals_openskill_on_k_wise_rankings_with_ties(model: str) -> None:
    rankings = _k_wise()
    params = {"beta": 3.0, "kappa": 1e-3, "tau": 0.2, "mu": 20.0, "sigma": 6.0}
    mu, sigma = _openskill(model, rankings, **params)
    r = weng_lin(rankings, model=model, **params)  # type: ignore[arg-type]
    np.testing.assert_allclose(r.mu, mu, atol=OPENSKILL_TOL)
    np.testing.assert_allclose(r.sigma, sigma, atol=OPENSKILL_TOL)


def test_weng_lin_kappa_floor_matches_openskill() -> None:
    # twenty players at once with a wide prior: the variance shrink hits the kappa floor
    r = Rankings.from_lists([[f"p{i}" for i in range(20)]] * 3)
    for model in MODELS:
        mu, sigma = _openskill(model, r, tau=0.0, sigma=40.0, beta=1.0)
        got = weng_lin(r, model=model, sigma=40.0, beta=1.0)  # type: ignore[arg-type]
        np.testing.assert_allclose(got.mu, mu, atol=OPENSKILL_TOL)
        np.testing.assert_allclose(got.sigma, sigma, atol=OPENSKILL_TOL)
    # in one such game Bradley-Terry-full and Thurstone-Mosteller-full hit the floor:
    # sigma *= sqrt(kappa) = 1e-2 for every player
    one = Rankings.from_lists([[f"p{i}" for i in range(20)]])
    for model in ("bradley_terry_full", "thurstone_mosteller_full"):
        got = weng_lin(one, model=model, sigma=40.0, beta=1.0)  # type: ignore[arg-type]
        np.testing.assert_allclose(got.sigma, 40.0 * 1e-2, rtol=1e-12)


def test_weng_lin_first_game_by_hand() -> None:
    v = PairwiseVotes.from_names(["x"], ["y"], ["a"])
    r = weng_lin(v)
    s2, b2 = (25 / 3) ** 2, (25 / 6) ** 2
    c = math.sqrt(2 * s2 + 2 * b2)  # p = 1/2 between equals
    assert r.mu.tolist() == pytest.approx([25 + s2 / c * 0.5, 25 - s2 / c * 0.5], abs=1e-12)
    delta = (math.sqrt(s2) / c) * s2 / c**2 * 0.25
    assert r.sigma.tolist() == pytest.approx([math.sqrt(s2 * (1 - delta))] * 2, abs=1e-12)
    assert r.ordinal().tolist() == pytest.approx((r.mu - 3 * r.sigma).tolist())


def test_weng_lin_continues_and_builds_a_leaderboard() -> None:
    votes, _ = _arena_hard()
    half = len(votes) // 2
    whole = weng_lin(votes, model="plackett_luce")
    first = weng_lin(votes.select(np.arange(half)), model="plackett_luce")
    resumed = weng_lin(
        votes.select(np.arange(half, len(votes))),
        model="plackett_luce",
        mu=first.mu,
        sigma=first.sigma,
    )
    np.testing.assert_allclose(resumed.mu, whole.mu, atol=1e-12)
    np.testing.assert_allclose(resumed.sigma, whole.sigma, atol=1e-12)
    lb = whole.to_leaderboard()
    assert lb.n_votes is not None and lb.n_votes.sum() == 2 * len(votes)
    assert lb.ratings.mean() == pytest.approx(1000.0)
    np.testing.assert_allclose(lb.scores, (whole.mu - whole.mu.mean()) / (math.sqrt(2) * 25 / 6))
    assert lb.items.names[int(np.argmax(lb.scores))] == lb.to_records()[0]["item"]
    by_ordinal = whole.to_leaderboard(by="ordinal")
    assert np.argsort(by_ordinal.scores).tolist() == np.argsort(whole.ordinal()).tolist()
    assert by_ordinal.info["sigma"] == whole.sigma.tolist()
    se = lb.standard_errors()
    assert se is not None and np.all(se > 0)
    assert weng_lin(votes, model="thurstone_mosteller_full").to_leaderboard().model == "thurstone"
    assert isinstance(whole, WengLinRatings)
    # online vs batch Bradley-Terry: the same top two (1135 vs 1132 in the batch fit, so
    # their online order depends on the vote order) and the same bottom two, in order
    online = [r["item"] for r in lb.to_records()]
    batch = [r["item"] for r in fit_bradley_terry(votes).to_records()]
    assert set(online[:2]) == set(batch[:2]) and online[2:] == batch[2:]
    # over two players (ties included) Plackett-Luce and Bradley-Terry-full updates coincide
    bt = weng_lin(votes, model="bradley_terry_full")
    np.testing.assert_allclose(bt.mu, whole.mu, atol=1e-12)
    np.testing.assert_allclose(bt.sigma, whole.sigma, atol=1e-12)


def test_weng_lin_rejects_what_it_cannot_rate() -> None:
    v = PairwiseVotes.from_names(["x"], ["y"], ["a"], weight=[2.0])
    with pytest.raises(ValueError, match="weights"):
        weng_lin(v)
    with pytest.raises(ValueError, match="unknown model"):
        weng_lin(PairwiseVotes.from_names(["x"], ["y"], ["a"]), model="glicko")  # type: ignore
    with pytest.raises(ValueError, match="soft"):
        weng_lin(PairwiseVotes.from_names(["x"], ["y"], ["a"], soft=[0.7]))


def test_weng_lin_bradley_terry_full_far_apart_ratings_do_not_overflow() -> None:
    """A mu gap of 1,000 with sigma 0.5 and beta 0.1 puts the logistic at exp(~1e3): was an
    OverflowError. Closed form: the favourite's win moves nothing (p = 1 to double
    precision); the underdog's win moves both by sigma^2 / c (its probability ~0)."""
    v = PairwiseVotes(ItemIndex(("a", "b")), np.array([0, 1]), np.array([1, 0]),
                      np.array([0, 0]))
    r = weng_lin(v, model="bradley_terry_full", mu=[1000.0, 0.0], sigma=0.5, beta=0.1)
    c = math.sqrt(2 * 0.1**2 + 2 * 0.5**2)
    assert np.isfinite(r.mu).all() and np.isfinite(r.sigma).all()
    # vote 1: a beats b, expected: no move; vote 2: b beats a, the full step
    assert r.mu[0] == pytest.approx(1000.0 - 0.25 / c, rel=1e-9)
    assert r.mu[1] == pytest.approx(0.0 + 0.25 / c, rel=1e-9)
