"""One report of an annotated preference source: agreement, quality, and (when models are
given) reward-ensemble preference strength and a policy's ranking accuracy; as JSON
(:meth:`InspectReport.to_dict`), a rich table (:meth:`InspectReport.tables`), a figure
(:meth:`InspectReport.plot`: confusion heatmap, agreement of each annotator with the
consensus, biases, coefficients with intervals, preference strength) and a self-contained
HTML page (:meth:`InspectReport.write_html`)."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prefkit.inspect.agreement import Agreement, measure_agreement
from prefkit.inspect.quality import Quality, quality
from prefkit.runs import plural

__all__ = ["InspectReport", "inspect_annotations"]


@dataclass
class InspectReport:
    """Everything :func:`inspect_annotations` measured."""

    source: str
    format: str
    agreement: Agreement
    quality: Quality
    strength: dict[str, Any] | None = None
    ranking: dict[str, Any] | None = None
    n_skipped: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON: ``krippendorff_alpha``, ``fleiss_kappa`` / ``cohen_kappa`` (the other
        ``null``), ``accuracy`` (``null`` without gold) at the top, then the rest."""
        a = self.agreement.to_dict()
        return {"source": self.source, "format": self.format, "n_skipped": self.n_skipped,
                **a, **self.quality.to_dict(), "preference_strength": self.strength,
                "ranking_accuracy": self.ranking, "notes": self.notes}

    # -- rich ------------------------------------------------------------------------------
    def tables(self) -> list[Any]:
        """Rich tables: the headline numbers, then the flagged annotators."""
        from rich.table import Table

        a, q = self.agreement, self.quality
        t = Table(title=f"{self.source} — {plural(a.n_pairs, 'pair')}, "
                  f"{plural(a.n_annotators, 'annotator')}, {plural(a.n_labels, 'label')} "
                  f"(format {self.format})", title_justify="left",
                  header_style="bold")
        t.add_column("measure")
        t.add_column("value", justify="right")
        t.add_column(f"{a.confidence:.0%} interval / note", justify="right")
        for row in _rows(self):
            t.add_row(*row)
        out = [t]
        if a.per_category:
            c = Table(title="by category (the largest 15)", title_justify="left",
                      header_style="bold")
            gold = a.accuracy is not None
            for col in ("category", "pairs", f"alpha ({a.level})", "kappa",
                        *(("accuracy",) if gold else ())):
                c.add_column(col, justify="left" if col == "category" else "right")
            cats = sorted(a.per_category.items(), key=lambda kv: -kv[1]["n_pairs"])[:15]
            for name, v in cats:
                kappa = v["fleiss_kappa"] or v["cohen_kappa"]
                acc = v["accuracy"]["with_ties"] if v["accuracy"] else None
                c.add_row(str(name)[:40], f"{v['n_pairs']:,}",
                          _num(v["krippendorff_alpha"]["value"]),
                          _num(kappa["value"] if kappa else None),
                          *((_pct(acc),) if gold else ()))
            out.append(c)
        ann = q.annotators
        if ann["flagged"]:
            f = Table(title=f"annotators below the consensus ({ann['correction']})",
                      title_justify="left", header_style="bold")
            for c in ("annotator", "agreement", "others", "labels", "Holm p"):
                f.add_column(c, justify="right" if c != "annotator" else "left")
            for name in ann["flagged"]:
                r = ann["annotators"][name]
                f.add_row(name, _pct(r["agreement"]), _pct(r["others"]), f"{r['n']:,}",
                          f"{r['p_holm']:.2g}")
            out.append(f)
        return out

    # -- figure ----------------------------------------------------------------------------
    def plot(self, path: str | Path) -> Path:
        """Write the figure (format from the extension: png, svg, pdf, jpg)."""
        fig = _figure(self)
        path = Path(path)
        fig.savefig(path, dpi=120, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(fig)
        return path

    def write_html(self, path: str | Path) -> Path:
        """A self-contained page: the figure inline, the headline table, flagged annotators,
        contradictory pairs and the weakest pairs of the reward ensemble."""
        import matplotlib.pyplot as plt

        fig = _figure(self)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        img = base64.b64encode(buf.getvalue()).decode()
        path = Path(path)
        path.write_text(_html(self, img), encoding="utf-8")
        return path


# -- the numbers as rows -------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _ci(d: dict[str, Any] | None, fmt: Any = _num) -> str:
    if not d or d.get("lower") is None:
        return ""
    return f"{fmt(d['lower'])} – {fmt(d['upper'])}"


def _rows(rep: InspectReport) -> list[tuple[str, str, str]]:
    a, q = rep.agreement, rep.quality.to_dict()
    rows = [(f"Krippendorff's alpha ({a.level})", _num(a.krippendorff_alpha["value"]),
             _ci(a.krippendorff_alpha))]
    if a.fleiss_kappa:
        rows.append(("Fleiss' kappa", _num(a.fleiss_kappa["value"]), _ci(a.fleiss_kappa)))
    if a.cohen_kappa:
        rows.append((f"Cohen's kappa ({a.cohen_kappa['between']})",
                     _num(a.cohen_kappa["value"]), _ci(a.cohen_kappa)))
    if a.accuracy:
        rows.append(("accuracy vs gold, ties a class", _pct(a.accuracy["with_ties"]),
                     plural(a.accuracy['n'], 'label')))
        rows.append(("accuracy vs gold, without ties", _pct(a.accuracy["without_ties"]),
                     plural(a.accuracy['n_without_ties'], 'label')))
    pb = q["position_bias"]
    rows.append(("chose the response shown first", _pct(pb["first_rate"]),
                 f"{_ci({'lower': pb['interval'][0], 'upper': pb['interval'][1]}, _pct)}; "
                 f"p = {pb['p_value']:.2g}" if pb["n"] else ""))
    rows.append(("ties among labels", _pct(pb["tie_rate"]), ""))
    lb = q["length_bias"]
    if lb.get("applies"):
        rows.append(("chose the longer response", _pct(lb["longer_rate"]),
                     f"{_ci({'lower': lb['interval'][0], 'upper': lb['interval'][1]}, _pct)}"
                     f"; p = {lb['p_value']:.2g}" if lb["n_labels"] else ""))
    d = q["duplicates"]
    if d.get("applies"):
        rows.append(("duplicate pairs (groups)", f"{d['pairs']:,} ({d['groups']:,})",
                     f"{plural(d['swapped_groups'], 'group')} in both orders"))
        rows.append(("contradictory pairs (groups)",
                     f"{d['contradictory_pairs']:,} ({d['contradictory_groups']:,})", ""))
    ct = q["cyclic_triads"]
    pp = ct.get("per_prompt", {})
    if pp.get("applies"):
        rows.append(("cyclic triads within prompts", f"{pp['cyclic_triads']:,}",
                     f"of {pp['decided_triads']:,} decided"))
    m = ct.get("models")
    if m and m.get("applies"):
        p = "" if m["p_value"] is None else f"; p = {m['p_value']:.2g}"
        rows.append(("cyclic triads across models", f"{m['cyclic_triads']:,}",
                     f"of {m['decided_triads']:,}; {m['expected']:.1f} expected{p}"))
    ann = q["annotators"]
    rows.append(("agreement with leave-one-out majority", _pct(ann["overall"]),
                 f"{len(ann['flagged'])} of {plural(ann['tested'], 'annotator')} flagged"))
    s = rep.strength
    if s and s.get("n_pairs"):
        amb = "" if s["ambiguous_share"] is None else f"; {_pct(s['ambiguous_share'])} ambiguous"
        rows.append((f"reward-ensemble strength ({plural(s['n_models'], 'model')})",
                     _num(s["mean"]),
                     f"{_pct(s['negative_share'])} negative{amb}"))
    r = rep.ranking
    if r:
        rows.append(("ranking accuracy, policy (summed / per token)",
                     f"{_pct(r['policy']['summed'])} / {_pct(r['policy']['length_normalised'])}",
                     plural(r['n_pairs'], 'pair')))
        ref, ideal = r["reference"], r["idealized"]
        rows.append(("ranking accuracy, reference",
                     f"{_pct(ref['summed'])} / {_pct(ref['length_normalised'])}", ""))
        rows.append((f"idealized ranking accuracy (beta {ideal['beta']:g})",
                     f"{_pct(ideal['summed'])} / {_pct(ideal['length_normalised'])}",
                     r["alpha_from"]))
    return rows


# -- the figure ------------------------------------------------------------------------------------
def _figure(rep: InspectReport) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, q = rep.agreement, rep.quality.to_dict()
    extra = int(bool(rep.strength and rep.strength.get("n_pairs"))) + int(bool(rep.ranking))
    wide = extra > 0
    fig, axes = plt.subplots(2, 3 if wide else 2, figsize=(16 if wide else 12, 9.5))
    axes = axes.ravel()
    fig.suptitle(f"{Path(rep.source).name}: {plural(a.n_pairs, 'pair')}, "
                 f"{plural(a.n_annotators, 'annotator')}, {plural(a.n_labels, 'label')}",
                 fontsize=14, x=0.01, ha="left")
    _confusion(axes[0], a)
    _annotators(axes[1], q["annotators"])
    _biases(axes[2], q)
    _coefficients(axes[3], a)
    if wide:
        if rep.strength and rep.strength.get("n_pairs"):
            _strength(axes[4], rep.strength)
        else:
            axes[4].axis("off")
        _ranking(axes[5], rep.ranking)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def _confusion(ax: Any, a: Agreement) -> None:
    m = np.asarray(a.confusion["matrix"], dtype=float)
    ax.imshow(m, cmap="Blues")
    labels = a.confusion["labels"]
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    kind = a.confusion["kind"]
    names = {"coincidence": ("label", "label (coincidences)"),
             "gold x label": ("label", "gold")}.get(kind, tuple(reversed(kind.split(" x "))))
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(f"confusion ({kind})")
    top = m.max() or 1
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j]:,.0f}", ha="center", va="center",
                    color="white" if m[i, j] > top / 2 else "black")


def _annotators(ax: Any, ann: dict[str, Any]) -> None:
    rows = [(k, v) for k, v in ann["annotators"].items() if v["agreement"] is not None]
    rows.sort(key=lambda kv: kv[1]["agreement"])
    shown = rows[:25]
    y = np.arange(len(shown))
    colors = ["#d62728" if v["flagged"] else "#7f7f7f" for _, v in shown]
    ax.barh(y, [v["agreement"] for _, v in shown], color=colors)
    for yi, (_, v) in zip(y, shown):
        ax.text(v["agreement"] - 0.01, yi, f"{v['agreement']:.1%}", va="center", ha="right",
                fontsize=7, color="white")
    ax.set_yticks(y, [f"{str(k)[:18]} ({v['n']:,})" for k, v in shown], fontsize=8)
    if ann["overall"] is not None:
        ax.axvline(ann["overall"], color="black", ls="--", lw=1, label="everybody")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(0, 1)
    more = f" (lowest {len(shown)} of {len(rows)})" if len(rows) > len(shown) else ""
    ax.set_title(f"agreement with the leave-one-out majority{more}\n(labels compared); red: "
                 f"flagged (Holm, {ann['alpha']:g})", fontsize=10)


def _biases(ax: Any, q: dict[str, Any]) -> None:
    names, vals, lo, hi = [], [], [], []
    pb = q["position_bias"]
    if pb["first_rate"] is not None:
        names.append("chose first shown")
        vals.append(pb["first_rate"])
        lo.append(pb["interval"][0])
        hi.append(pb["interval"][1])
    lb = q["length_bias"]
    if lb.get("applies") and lb["longer_rate"] is not None:
        names.append("chose longer")
        vals.append(lb["longer_rate"])
        lo.append(lb["interval"][0] if lb["interval"][0] is not None else lb["longer_rate"])
        hi.append(lb["interval"][1] if lb["interval"][1] is not None else lb["longer_rate"])
    y = np.arange(len(names))
    v = np.array(vals)
    ax.barh(y, v - 0.5, left=0.5, color="#1f77b4", height=0.5)
    ax.set_ylim(-0.8, max(len(v), 2) - 0.2)
    ax.errorbar(v, y, xerr=[v - np.array(lo), np.array(hi) - v], fmt="none", color="black",
                capsize=4)
    ax.set_yticks(y, names)
    ax.axvline(0.5, color="black", lw=1)
    ax.set_xlim(0.25, 0.75) if len(v) == 0 or np.all(np.abs(v - 0.5) < 0.25) else ax.set_xlim(0, 1)
    for yi, vi in zip(y, v):
        ax.text(vi, yi + 0.32, f"{vi:.1%}", ha="center", fontsize=10)
    ax.set_title("biases among non-tie labels (no bias: 50%)")


def _coefficients(ax: Any, a: Agreement) -> None:
    items = [("alpha", a.krippendorff_alpha)]
    if a.fleiss_kappa:
        items.append(("Fleiss kappa", a.fleiss_kappa))
    if a.cohen_kappa:
        items.append(("Cohen kappa", a.cohen_kappa))
    cats = sorted(a.per_category.items(), key=lambda kv: -kv[1]["n_pairs"])[:12]
    names = [n for n, _ in items] + [f"alpha: {c[:20]} ({v['n_pairs']})" for c, v in cats]
    vals = [d["value"] for _, d in items] + [v["krippendorff_alpha"]["value"] for _, v in cats]
    y = np.arange(len(names))[::-1]
    v = np.array([np.nan if x is None else x for x in vals], dtype=float)
    ax.barh(y, np.nan_to_num(v), color=["#2ca02c"] * len(items) + ["#98df8a"] * len(cats),
            height=0.6)
    ends = [d["upper"] if d.get("upper") is not None else d["value"] for _, d in items]
    for k, (yi, vi) in enumerate(zip(y, v)):
        if np.isfinite(vi):
            at = ends[k] if k < len(ends) and ends[k] is not None else vi
            ax.text(max(at, 0) + 0.01, yi, f"{vi:.3f}", va="center", fontsize=8)
    for k, (_, d) in enumerate(items):
        if d.get("lower") is not None:
            ax.errorbar(d["value"], y[k], xerr=[[d["value"] - d["lower"]],
                                                [d["upper"] - d["value"]]],
                        fmt="none", color="black", capsize=4)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlim(min(0.0, float(np.nanmin(v)) if np.isfinite(v).any() else 0.0), 1)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_title(f"agreement ({a.level}); by category below")


def _strength(ax: Any, s: dict[str, Any]) -> None:
    dec = s["deciles"]
    x = np.arange(1, len(dec) + 1)
    ax.bar(x, [d["mean"] for d in dec], yerr=[d["std"] for d in dec], color="#9467bd",
           capsize=3)
    ax.axhline(0, color="black", lw=1)
    ax.set_xlabel("tenth of the pairs, weakest first")
    ax.set_ylabel("mean r(chosen) - r(rejected)")
    ax.set_title(f"reward-ensemble preference strength ({plural(s['n_models'], 'model')})\n"
                 f"{s['negative_share']:.1%} of pairs negative (likely mislabelled)", fontsize=10)


def _ranking(ax: Any, r: dict[str, Any] | None) -> None:
    if not r:
        ax.axis("off")
        return
    names = ["policy", "reference", "idealized"]
    summed = [r[n]["summed"] or 0 for n in names]
    norm = [r[n].get("length_normalised") or 0 for n in names]
    x = np.arange(3)
    ax.bar(x - 0.2, summed, 0.4, label="summed log-prob")
    ax.bar(x + 0.2, norm, 0.4, label="per token")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1)
    ax.axhline(0.5, color="black", lw=0.8, ls="--")
    ax.legend(fontsize=8)
    ax.set_title(f"ranking accuracy on {plural(r['n_pairs'], 'pair')}")


# -- HTML ------------------------------------------------------------------------------------------
def _html(rep: InspectReport, img: str) -> str:
    e = html.escape
    rows = "".join(f"<tr><td>{e(a)}</td><td class=n>{e(b)}</td><td class=n>{e(c)}</td></tr>"
                   for a, b, c in _rows(rep))
    q = rep.quality.to_dict()
    head = "<tr><th>measure</th><th>value</th><th>interval / note</th></tr>"
    parts = [f"<h2>Summary</h2><table>{head}{rows}</table>"]
    ann = q["annotators"]
    if ann["flagged"]:
        body = "".join(
            f"<tr><td>{e(str(n))}</td><td class=n>{_pct(ann['annotators'][n]['agreement'])}</td>"
            f"<td class=n>{ann['annotators'][n]['n']:,}</td><td class=n>"
            f"{ann['annotators'][n]['p_holm']:.2g}</td></tr>" for n in ann["flagged"])
        parts.append(f"<h2>Annotators below the consensus</h2><p>{e(ann['test'])}; "
                     f"{e(ann['correction'])}.</p><table><tr><th>annotator</th><th>agreement"
                     f"</th><th>labels</th><th>Holm p</th></tr>{body}</table>")
    d = q["duplicates"]
    if d.get("examples"):
        body = "".join(f"<tr><td>{e(', '.join(x['pair_ids']))}</td><td>"
                       f"{e(', '.join(map(str, x['lines'])))}</td></tr>" for x in d["examples"])
        parts.append(f"<h2>Contradictory pairs</h2><table><tr><th>pair ids</th><th>lines</th>"
                     f"</tr>{body}</table>")
    s = rep.strength
    if s and s.get("lowest"):
        body = "".join(f"<tr><td>{e(x['pair_id'])}</td><td class=n>{x['mean']:.3f}</td>"
                       f"<td class=n>{x['std']:.3f}</td></tr>" for x in s["lowest"])
        parts.append(f"<h2>Weakest pairs by the reward ensemble</h2><table><tr><th>pair</th>"
                     f"<th>mean</th><th>std</th></tr>{body}</table>")
    notes = "".join(f"<li>{e(n)}</li>" for n in rep.notes)
    return (f"<!doctype html><html><head><meta charset=utf-8><title>prefkit inspect: "
            f"{e(rep.source)}</title><style>body{{font-family:system-ui,sans-serif;margin:2em;"
            f"max-width:1400px}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px "
            f"solid #ccc;padding:4px 10px}}th{{background:#f3f3f3}}td.n{{text-align:right}}"
            f"img{{max-width:100%}}</style></head><body><h1>prefkit inspect: {e(rep.source)}</h1>"
            f"<p>format {e(rep.format)}; {plural(rep.n_skipped, 'row')} skipped</p>"
            f"<img alt='report figure' src='data:image/png;base64,{img}'>{''.join(parts)}"
            f"{'<ul>' + notes + '</ul>' if notes else ''}</body></html>")


# -- the whole report ------------------------------------------------------------------------------
def inspect_annotations(ann: Any, *, level: str = "nominal", rounds: int = 1000,
                        rng: np.random.Generator | None = None, confidence: float = 0.95,
                        reward_models: list[Any] | None = None,
                        reward_model_names: list[str] | None = None,
                        policy: Any = None, reference: Any = None, tokenizer: Any = None,
                        beta: float | None = None, batch_size: int = 8,
                        max_length: int | None = None) -> InspectReport:
    """Every measure of :mod:`prefkit.inspect` on ``ann``; preference strength with
    ``reward_models``, ranking accuracy with ``policy``, ``reference``, ``tokenizer`` and
    ``beta``."""
    agree = measure_agreement(ann, level=level, rounds=rounds, rng=rng,  # type: ignore[arg-type]
                              confidence=confidence)
    qual = quality(ann, rng=rng, rounds=rounds, confidence=confidence)
    strength = None
    if reward_models:
        from prefkit.inspect.strength import strength_of_annotations

        strength = strength_of_annotations(ann, reward_models, batch_size=batch_size,
                                           names=reward_model_names).to_dict()
    ranking = None
    if policy is not None:
        if reference is None or tokenizer is None or beta is None:
            raise ValueError("ranking accuracy needs policy, reference, tokenizer and beta")
        from prefkit.inspect.ranking import ranking_of_annotations

        ranking = ranking_of_annotations(ann, policy, reference, tokenizer, beta=beta,
                                         batch_size=batch_size, max_length=max_length)
    notes = []
    if rng is not None and rounds:
        notes.append(f"intervals: {confidence:.0%} percentile bootstrap over pairs, "
                     f"{plural(rounds, 'round')}")
    if ann.gold is None:
        notes.append("no gold label: accuracy is null; agreement is between annotators")
    if agree.krippendorff_alpha["value"] is None:
        notes.append("Krippendorff's alpha is undefined: no pair has two labels, or every "
                     "label falls in one category")
    if strength is not None and strength.get("n_left_out"):
        notes.append(f"preference strength on {strength['n_pairs']:,} of {len(ann):,} pairs; "
                     f"left out: {strength['n_left_out']:,} without a winner (a tie, or no "
                     "majority)")
    if ranking is not None and ranking["n_left_out"]:
        why = []
        if ranking["n_undecided"]:
            why.append(f"{ranking['n_undecided']:,} without a winner (a tie, or no majority)")
        if ranking["n_too_long"]:
            why.append(f"{ranking['n_too_long']:,} longer than max_length="
                       f"{plural(ranking['max_length'], 'token')} (--max-length)")
        notes.append(f"ranking accuracy on {ranking['n_pairs']:,} of "
                     f"{plural(len(ann), 'pair')}; left out: {', '.join(why)}")
    return InspectReport(ann.source, ann.format, agree, qual, strength, ranking,
                         len(ann.skipped), notes)
