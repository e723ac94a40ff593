"""PNG plots referenced from report.md (matplotlib figures drawn without pyplot: the
process's backend, a notebook's among them, and its open figures are left alone)."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

from subsetctl.project import atomic_write
from subsetctl.report.cells import percent_cell, ranked_by_score


def import_matplotlib(fallback: Path | None = None) -> None:
    """Import matplotlib with ``fallback`` as its config and cache folder where its own
    (``$MPLCONFIGDIR``, else ``$XDG_CONFIG_HOME``/``$XDG_CACHE_HOME`` or ``~/.config``/``~/.cache``,
    ``/matplotlib``) cannot be written: a batch job whose HOME is read-only got matplotlib's
    "mkdir -p failed ... Matplotlib created a temporary cache directory ... it is highly
    recommended to set the MPLCONFIGDIR environment variable" in its log, and rebuilt the
    font cache in a temporary folder each run. matplotlib reads the variable once, as it is
    imported: it is set for the import only. Nothing is done once matplotlib is imported.
    Without ``fallback`` (a command that writes nothing into the project: validate, plan), a
    temporary folder deleted as the process exits, as matplotlib makes itself, without its words."""
    if "matplotlib" in sys.modules or os.environ.get("MPLCONFIGDIR") or _own_dirs_writable():
        return
    if fallback is None:
        import atexit
        import shutil
        import tempfile

        fallback = Path(tempfile.mkdtemp(prefix="subsetctl-matplotlib-"))
        atexit.register(shutil.rmtree, fallback, ignore_errors=True)
    fallback.mkdir(parents=True, exist_ok=True)
    os.environ["MPLCONFIGDIR"] = str(fallback)
    try:
        import matplotlib.figure  # noqa: F401 - reads its config and font cache folders now
    finally:
        del os.environ["MPLCONFIGDIR"]


def _own_dirs_writable() -> bool:
    """Whether matplotlib's default config and cache folders can be made and written."""
    try:
        home = Path.home()
    except RuntimeError:  # no HOME and no user entry
        return False
    for variable, default in (("XDG_CONFIG_HOME", home / ".config"), ("XDG_CACHE_HOME", home / ".cache")):
        folder = Path(os.environ.get(variable) or default) / "matplotlib"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        if not os.access(folder, os.W_OK):
            return False
    return True


def _figure(**kwargs: Any) -> Any:
    """A figure outside pyplot (saved with Agg whatever the backend): ``matplotlib.use("Agg")``
    switched the backend of a notebook that ran a project, and its plots no longer showed."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


LABELLED_SOURCES = 40
"""Up to this many sources, the score plot names every bar; beyond it, bars are sorted by
score, and a panel beside each strategy's names its top ones (:func:`named_sources`)."""

NAMED_HIGHEST, NAMED_MOST = 10, 20
"""With more than :data:`LABELLED_SOURCES` sources, the score plot names each strategy's
``NAMED_HIGHEST`` highest scoring sources, and its selected ones, ``NAMED_MOST`` in all at
most (:func:`named_sources`)."""


def named_sources(ranked: list[str], selected: set[str]) -> tuple[list[str], int]:
    """The sources a score plot of many sources names for one strategy, from ``ranked``
    (highest score first): its :data:`NAMED_HIGHEST` highest and those it selected, in rank
    order, at most :data:`NAMED_MOST`; and how many selected ones that leaves unnamed.
    Above 40 sources the plot named none: which sources a strategy picked, and which it
    rated highest, was to be looked up in report.md's table of thousands of rows."""
    named = [s for rank, s in enumerate(ranked) if rank < NAMED_HIGHEST or s in selected][:NAMED_MOST]
    return named, len(selected & set(ranked)) - len(selected & set(named))


def _save(fig: Any, path: Path) -> None:
    """``fig.savefig(path)`` as a whole file: drawn into a temporary file beside it, then
    renamed over it (:func:`~subsetctl.project.atomic_write`). Drawn in place over the last
    run's plot, it was half a PNG for a moment to an image viewer, or a preview of report.md,
    showing it while a run's report step drew it again."""
    atomic_write(path, lambda handle: fig.savefig(handle, dpi=110, format="png"), mode="wb")


def source_scores(report: dict[str, Any], path: Path) -> Path | None:
    """Bar chart of per-source scores (higher = more helpful) for each scoring strategy.

    Up to :data:`LABELLED_SOURCES` sources, one named bar per source in spec order; with
    more (thousands of candidate sources), each strategy's scores sorted from highest to
    lowest without names, which still shows how many help and by how much, beside a panel
    of named bars: its top sources (:func:`named_sources`), each with its rank."""
    scored = {k: v for k, v in report.get("strategies", {}).items() if v.get("scores")}
    if not scored:
        return None
    sources = report["sources"]
    many = len(sources) > LABELLED_SOURCES
    # names upright once they are many: slanted, 40 of them overlapped each other (and a long one reached far left)
    rotation = 40 if len(sources) <= SLANTED_LABELS else 90
    if many:
        named = {label: named_sources(ranked_by_score(sources, r["scores"]), set(r["selected"]))
                 for label, r in scored.items()}
        heights = [max(2.6, 0.9 + 0.17 * len(names)) for names, _ in named.values()]
        fig = _figure(figsize=(11, sum(heights)))
        axes = fig.subplots(len(scored), 2, squeeze=False,
                            gridspec_kw={"width_ratios": [3, 2], "height_ratios": heights})
    else:
        fig = _figure(figsize=(8, (2.6 + _label_height(sources, rotation)) * len(scored)))
        axes = fig.subplots(len(scored), 1, squeeze=False)
    for row, (label, r) in zip(axes, scored.items()):
        ax = row[0]
        order = ranked_by_score(sources, r["scores"]) if many else sources
        values = [math.nan if r["scores"].get(s) is None else r["scores"][s] for s in order]  # no bar
        selected = set(r["selected"])
        if many:  # one filled outline per color, not a bar (an artist) per source: 4 x 1,000 took 2 s
            for color, chosen in (("tab:green", True), ("tab:gray", False)):
                ax.stairs([v if (s in selected) == chosen and not math.isnan(v) else 0.0 for s, v in zip(order, values)],
                          range(len(order) + 1), fill=True, color=color)
        else:
            ax.bar(range(len(order)), values, color=["tab:green" if s in selected else "tab:gray" for s in order])
        ax.axhline(0, color="black", linewidth=0.6)
        if many:
            ax.set_xticks([])
            ax.set_xlabel(f"{len(order)} sources, highest score first (all in report.md)", fontsize=8)
            _named_panel(row[1], label, r["scores"], order, selected, *named[label])
        else:
            ax.set_xticks(range(len(order)), order, rotation=rotation, ha="right" if rotation < 90 else "center",
                          fontsize=8)
        ax.set_title(f"{label}: per-source score (green = selected)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return path


def _named_panel(ax: Any, label: str, scores: dict[str, float | None], ranked: list[str], selected: set[str],
                 names: list[str], unnamed_selected: int) -> None:
    """One strategy's named bars beside its sorted scores: ``names`` (:func:`named_sources`),
    top down, each labelled with its rank among all sources (a selected one the strategy did
    not score, without a bar: "(no score)"); the title counts the selected ones left unnamed."""
    rank = {s: i + 1 for i, s in enumerate(ranked)}
    values = [math.nan if scores.get(s) is None else scores[s] for s in names]
    ax.barh(range(len(names)), values, color=["tab:green" if s in selected else "tab:gray" for s in names])
    ax.set_yticks(range(len(names)), [f"{s} (no score)" if scores.get(s) is None else f"#{rank[s]} {s}" for s in names],
                  fontsize=7)
    ax.set_ylim(len(names) - 0.5, -0.5)  # the highest on top
    ax.axvline(0, color="black", linewidth=0.6)
    ax.tick_params(axis="x", labelsize=7)
    more = f" (+{unnamed_selected} more selected)" if unnamed_selected else ""
    ax.set_title(f"{label}: top {min(NAMED_HIGHEST, len(ranked))} and selected{more}", fontsize=8)


SLANTED_LABELS = 20
"""Up to this many named bars, the score plot slants their names (40°); more stand upright."""


def _label_height(names: list[str], rotation: float) -> float:
    """Inches the score plot's source names (8 pt, turned ``rotation`` degrees) take below
    a panel, added to its height: in a figure of fixed height, 40 names of 50 characters
    (FLAN-style task names) left the bars a strip a few pixels high."""
    longest = max((len(name) for name in names), default=0)
    return longest * 8 * 0.6 / 72 * math.sin(math.radians(rotation))  # a character about 0.6 em wide


def estimated_vs_true(report: dict[str, Any], path: Path) -> Path | None:
    """Scatter of estimated vs. true loss per verify subset, raw and calibrated, per kind
    (the true loss is the mean over verify's repeats; a gray bar spans the repeats). A
    subset without a true loss (its fine-tune diverged) or without an estimate (the
    estimator gave NaN; calibration left it out too) has no point; a kind with no point at
    all says so in its panel, and with none in any kind there is no plot (it was a blank
    one, empty axes from 0 to 1)."""
    verify = report.get("verify")
    points = {kind: _verify_points(v) for kind, v in (verify or {}).items()}
    if not any(points.values()):
        return None
    from matplotlib.ticker import MaxNLocator

    fig = _figure(figsize=(5 * len(verify), 4.4))
    axes = fig.subplots(1, len(verify), squeeze=False)
    for ax, (kind, v) in zip(axes[0], verify.items()):
        pairs = points[kind]
        if not pairs:
            ax.set_axis_off()
            ax.text(0.5, 0.5, f"{kind}: no fine-tuned subset has both a true loss\nand an estimate "
                    "(diverged, or no finite estimate)", ha="center", va="center", fontsize=9, wrap=True)
            continue
        t, r, c = zip(*pairs)
        spans = [(min(f), max(f), raw) for reps, raw in zip(v.get("true_repeats") or [], v["raw"])
                 if raw is not None and len(f := [x for x in reps if x is not None]) > 1]
        if spans:  # the spread of the true loss over verify's repeats (seeds), at the raw estimate
            lo_t, hi_t, at = zip(*spans)
            ax.hlines(at, lo_t, hi_t, color="gray", linewidth=1.0, label="range over repeats")
        cal = v["calibration"]
        ax.scatter(t, r, label="raw", marker="o", alpha=0.7)
        shown = [t, r]
        # a map fitted while the project's estimates stay raw (calibrate.enabled: false) is what it would give
        unused = bool(cal.get("enabled")) and calibration_in_use(report) is False
        if cal.get("enabled"):  # off, the calibrated estimates are the raw ones (the identity map)
            ax.scatter(t, c, label=f"calibrated{', unused' if unused else ''} (map fitted on these {len(t)})", marker="x")
            shown.append(c)
        lo, hi = min(min(values) for values in shown), max(max(values) for values in shown)
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, label="y = x")
        ax.set_title(_estimated_vs_true_title(kind, v, unused), fontsize=9)
        ax.set_xlabel("true target validation loss")
        ax.set_ylabel("estimated")
        ax.ticklabel_format(useOffset=False)  # close losses: plain ticks, not an offset
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_major_locator(MaxNLocator(6))
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return path


def _verify_points(v: dict[str, Any]) -> list[tuple[float, float, float]]:
    """(true, raw, calibrated) of each of one verify kind's subsets that has all three."""
    return [(t, r, c) for t, r, c in zip(v.get("true") or [], v.get("raw") or [], v.get("calibrated") or [])
            if t is not None and r is not None and c is not None]


def calibration_in_use(report: dict[str, Any]) -> bool | None:
    """Whether the project's estimates are calibrated (report.json's ``calibration``, else
    the calibrate stage's summary); None when the report says neither."""
    cal = report.get("calibration")
    if isinstance(cal, dict) and "enabled" in cal:
        return bool(cal["enabled"])
    summary = (report.get("stages", {}).get("calibrate") or {}).get("summary") or {}
    calibrated = summary.get("calibrated")
    return None if calibrated is None else bool(calibrated)


def _estimated_vs_true_title(kind: str, verify_entry: dict[str, Any], unused: bool = False) -> str:
    """The scatter's title: the fine-tune, the estimator and lambda chosen, the raw
    estimates' Spearman and the held-out (leave-one-out) error of the calibrated ones, as
    the verify table shows them; the calibrated points themselves come from a map fitted
    on every point shown, so they are not held out. ``unused``: the kind's map was fitted,
    but the project's estimates are raw (``calibrate.enabled: false``), and the title says so."""
    cal = verify_entry["calibration"]
    rho = cal.get("spearman")
    state = ", calibration off" if unused else "" if cal.get("enabled") else ", uncalibrated"
    head = f"{kind} fine-tune ({verify_entry.get('estimator') or 'estimator'}, lambda={cal['lam']:g}{state})"
    figures = f"Spearman (raw) {'–' if rho is None else f'{rho:.2f}'}"
    if cal.get("enabled"):
        figures += f", held-out (LOO) error of calibrated {percent_cell(cal.get('loo_median_rel_err'))}"
    return f"{head}\n{figures}"


def test_metric(report: dict[str, Any], path: Path) -> Path | None:
    """Test metric of each strategy and baseline."""
    metrics = report.get("test_metrics")
    if not metrics:
        return None
    from matplotlib.artist import setp

    labels = list(metrics)
    means = [metrics[k]["score_mean"] for k in labels]
    stds = [metrics[k]["score_std"] or 0.0 for k in labels]
    fig = _figure(figsize=(max(5, 1.2 * len(labels)), 3.6))
    ax = fig.subplots()
    bars = ax.bar(labels, means, yerr=stds,
                  color=["tab:blue" if k not in ("all", "target_only") else "tab:gray" for k in labels])
    ax.bar_label(bars, labels=["–" if m is None else f"{m:.3g}" for m in means], fontsize=7)  # a 0 bar is visible
    ax.set_ylabel(f"test {metrics[labels[0]]['metric']}")
    tops = [m + s for m, s in zip(means, stds) if m is not None]
    if tops and min(m for m in means if m is not None) >= 0:  # scores: a zero baseline, never a negative axis
        ax.set_ylim(0, max(tops) * 1.15 if max(tops) > 0 else 1.0)
    ax.set_title(_test_metric_title(metrics), fontsize=9)
    setp(ax.get_xticklabels(), rotation=30, ha="right", fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return path


def _test_metric_title(metrics: dict[str, Any]) -> str:
    """The test-metric plot's title, saying what its whiskers (± std over the seeds) and its
    gray bars (the baselines) are: neither was said anywhere on the plot."""
    key = []
    if any(m.get("score_std") is not None for m in metrics.values()):
        seeds = {m.get("seeds") for m in metrics.values()}
        key.append(f"mean ± std over {seeds.pop()} seeds" if len(seeds) == 1 else "mean ± std over seeds")
    if any(label in ("all", "target_only") for label in metrics):
        key.append("gray: baselines")
    return "test metric by selection" + (f"\n({'; '.join(key)})" if key else "")
