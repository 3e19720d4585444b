"""Comparison-graph connectivity: is the ranking identified by the data at all?

* The *comparison graph* (an edge wherever two items met) must be connected: otherwise
  items in different components have no common scale, and prefkit refuses to fit.
* The *win digraph* (an edge i -> j wherever i took any win, or tie, from j) must be
  strongly connected for the Bradley-Terry MLE to exist (Hunter 2004, assumption 1; Ford
  1957). Items that only win or only lose would get infinite ratings; with a Gaussian
  prior they get finite ones and are flagged *provisional*.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from prefkit.data.records import ItemIndex, PairwiseVotes
from prefkit.runs import plural

__all__ = ["Connectivity", "DisconnectedGraphError", "connectivity", "largest_component"]


def _clip(name: str, limit: int = 60) -> str:
    """A name as messages quote it: at most ``limit`` characters."""
    return name if len(name) <= limit else f"{name[: limit - 24]}… ({len(name):,} characters)"


class DisconnectedGraphError(ValueError):
    """The comparison graph has more than one component."""


@dataclass(frozen=True)
class Connectivity:
    n_components: int
    components: tuple[tuple[str, ...], ...]  # largest first
    strongly_connected: bool
    provisional: NDArray[np.bool_]  # items outside the largest strong component

    def describe(self) -> str:
        if self.n_components == 1:
            return "comparison graph is connected"
        parts = "; ".join(
            f"[{', '.join(map(_clip, c[:6]))}{', ...' if len(c) > 6 else ''}] "
            f"({plural(len(c), 'item')})"
            for c in self.components
        )
        return f"comparison graph has {self.n_components} components: {parts}"


def _reaches_all(n: int, src: NDArray[np.integer], dst: NDArray[np.integer],
                 max_rounds: int = 64) -> bool:
    """Whether every item is reached from item 0 along the edges ``src -> dst`` (breadth
    first, one vectorised pass over the edges per level). False also when the search
    needs more than ``max_rounds`` levels (long chains): the caller then asks csgraph."""
    seen = np.zeros(n, bool)
    seen[0] = True
    count = 1
    for _ in range(max_rounds):
        seen[dst[seen[src]]] = True
        new = int(np.count_nonzero(seen))
        if new == n:
            return True
        if new == count:
            return False
        count = new
    return False


def _strongly_connected(n: int, src: NDArray[np.integer], dst: NDArray[np.integer]) -> bool:
    """A directed graph is strongly connected iff item 0 reaches every item and every item
    reaches item 0 (a search along the edges and one against them)."""
    if n == 0 or src.size == 0:
        return n == 1
    return _reaches_all(n, src, dst) and _reaches_all(n, dst, src)


def connectivity(
    items: ItemIndex,
    i: NDArray[np.integer],
    j: NDArray[np.integer],
    counts: NDArray[np.float64],
) -> Connectivity:
    """``counts[:, 0]`` wins of i, ``[:, 1]`` wins of j, ``[:, 2:]`` ties (any number of
    tie columns). Items never compared form their own components."""
    n = len(items)
    total = counts.sum(axis=1)
    met = total > 0
    tie = counts[:, 2:].sum(axis=1) if counts.shape[1] > 2 else np.zeros(len(i))
    fwd = (counts[:, 0] + tie) > 0  # i took something from j: edge j -> i? use i beats j
    bwd = (counts[:, 1] + tie) > 0
    src = np.concatenate([i[fwd], j[bwd]])
    dst = np.concatenate([j[fwd], i[bwd]])
    if _strongly_connected(n, src, dst):
        # the common case, settled in numpy without importing scipy.sparse.csgraph (and
        # with it scipy.linalg, ~0.2 s): one component, one strongly connected set
        return Connectivity(1, (tuple(items.names),), True, np.zeros(n, bool))

    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = coo_matrix((np.ones(met.sum()), (i[met], j[met])), shape=(n, n))
    nc, lab = connected_components(g, directed=False)
    comps = [tuple(items.names[k] for k in np.flatnonzero(lab == c)) for c in range(nc)]
    comps.sort(key=len, reverse=True)
    d = coo_matrix((np.ones(src.size), (src, dst)), shape=(n, n))
    ns, slab = connected_components(d, directed=True, connection="strong")
    sizes = np.bincount(slab, minlength=ns)
    # items outside the largest strongly connected set rest on the prior; if that set is
    # a single item or not unique (e.g. A beat B three times: {A}, {B}), every item does
    largest = int(np.argmax(sizes))
    if sizes[largest] < 2 or (sizes == sizes[largest]).sum() > 1:
        provisional = np.full(n, ns > 1)
    else:
        provisional = slab != largest
    return Connectivity(nc, tuple(comps), ns == 1, provisional)


def largest_component(votes: PairwiseVotes) -> tuple[PairwiseVotes, tuple[str, ...]]:
    """Keep the votes inside the largest component of the comparison graph, re-indexed to
    its items; returns them and the names of the items left out (to be reported)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = votes.n_items
    g = coo_matrix((np.ones(len(votes)), (votes.a, votes.b)), shape=(n, n))
    nc, lab = connected_components(g, directed=False)
    counts = np.bincount(lab[np.concatenate([votes.a, votes.b])], minlength=nc)
    main = int(np.argmax(counts))
    keep_items = np.flatnonzero(lab == main)
    dropped = tuple(votes.items.names[k] for k in np.flatnonzero((lab != main) & (np.bincount(
        np.concatenate([votes.a, votes.b]), minlength=n) > 0)))
    return votes.restrict(keep_items), dropped


#: Prior variance of log-strengths used when the MLE does not exist and prior="auto".
AUTO_PRIOR_VARIANCE = 1.0


class ProvisionalWarning(UserWarning):
    """Some items only won or only lost; their ratings rest on the prior."""


def resolve_prior(
    items: ItemIndex,
    i: NDArray[np.integer],
    j: NDArray[np.integer],
    counts: NDArray[np.float64],
    prior: float | str | None,
    *,
    lopsided: str = "only won or only lost",
    more_data: str = "collect votes between them",
) -> tuple[float | None, NDArray[np.bool_], Connectivity]:
    """Decide how a fit is identified: the one place that applies the rules of this module.

    Returns ``(prior_variance or None, provisional flags, connectivity)``. Raises
    :class:`DisconnectedGraphError` for a disconnected comparison graph, and ``ValueError``
    when the MLE does not exist and ``prior=None``; with ``prior="auto"`` it then uses
    ``N(0, AUTO_PRIOR_VARIANCE)`` and warns (:class:`ProvisionalWarning`).
    """
    prior_var: float | None = None
    if prior not in ("auto", None):
        prior_var = float(prior)  # type: ignore[arg-type]
        if not prior_var > 0:
            raise ValueError(f"prior variance must be > 0, got {prior}")
    conn = connectivity(items, i, j, counts)
    n = len(items)
    total = counts.sum(axis=1)
    unseen = (np.bincount(i, total, n) + np.bincount(j, total, n)) == 0
    # items that appear in no comparison at all are identified by a prior alone (their
    # estimate is the prior mean, as choix's MAP gives); they are never a reason to refuse
    # when a prior is given, and they are always provisional
    seen_components = conn.n_components - int(unseen.sum())
    if conn.n_components > 1 and (seen_components > 1 or prior is None):
        hint = (" (or give a prior: items never compared then rest on it)"
                if seen_components <= 1 else "")
        raise DisconnectedGraphError(
            conn.describe() + ". Items in different components share no scale: fit each "
            f"component on its own (prefkit diagnose lists them) or {more_data}{hint}."
        )
    if unseen.any() and prior_var is None:
        import warnings

        names = [items.names[k] for k in np.flatnonzero(unseen)]
        listed = ", ".join(map(_clip, names[:5])) + (", ..." if len(names) > 5 else "")
        prior_var = AUTO_PRIOR_VARIANCE
        warnings.warn(
            f"{plural(len(names), 'item')} {'appears' if len(names) == 1 else 'appear'} in no "
            f"comparison ({listed}): a N(0, {prior_var}) prior on log-strengths is used, "
            f"{'it gets' if len(names) == 1 else 'these items get'} its mean and "
            f"{'is' if len(names) == 1 else 'are'} marked provisional", ProvisionalWarning,
            stacklevel=4)
    if not conn.strongly_connected and prior_var is None:
        import warnings

        names = [items.names[k] for k in np.flatnonzero(conn.provisional)]
        listed = ", ".join(map(_clip, names[:5])) + (", ..." if len(names) > 5 else "")
        if prior != "auto":
            raise ValueError(
                f"the maximum-likelihood ratings do not exist: {listed} {lopsided} against "
                "the rest; pass prior=1.0 (a Gaussian prior) or prior='auto'"
            )
        prior_var = AUTO_PRIOR_VARIANCE
        warnings.warn(
            f"{plural(len(names), 'item')} {lopsided} against the rest ({listed}): the MLE "
            f"does not exist, so a N(0, {prior_var}) prior on log-strengths is used and "
            f"{'it is' if len(names) == 1 else 'these items are'} marked provisional",
            ProvisionalWarning,
            stacklevel=4,
        )
    provisional = conn.provisional | unseen if prior_var is not None else np.zeros(n, bool)
    return prior_var, provisional, conn
