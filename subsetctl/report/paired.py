"""The final pick against each baseline row by row on the test split: every selection is
scored on the same test rows, so the difference of their per-row test losses (and task
scores) is a paired comparison, and a bootstrap over the rows says whether a gap of
0.015 in mean test loss is more than the test rows' own noise, which one seed leaves
unknown (with several seeds, the seed-to-seed spread of :mod:`subsetctl.report.cells`
says it for the seeds, not for the rows)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from subsetctl.report import BASELINES

#: bootstrap resamples of the test rows (numpy only; milliseconds at thousands of rows)
RESAMPLES = 2000
#: the most row indices drawn at once (8 bytes each): the bootstrap's memory, whatever the test rows
CELLS = 2_000_000
#: the interval's coverage
LEVEL = 0.95
#: fewer test rows than this (the evaluate stage's MIN_TEST_EXAMPLES, which it warns of) make a
#: bootstrap interval too narrow to go by: five rows gave 0.0005 to 0.0062, "clearly better"
FEWEST_ROWS = 10


def paired_difference(gain: np.ndarray, seed: int, resamples: int = RESAMPLES) -> dict[str, Any]:
    """The paired figures of ``gain``, one value a test row, positive where the pick did
    better (a baseline's loss minus the pick's, the pick's score minus a baseline's):
    ``mean``, the bootstrap ``low`` and ``high`` of its :data:`LEVEL` interval (percentiles
    of the means of ``resamples`` resamples of the rows drawn with replacement, from
    ``numpy.random.default_rng(seed)``: the same figures every time), the shares of rows
    where the pick did ``better`` and ``worse``, and ``n``, the rows."""
    return paired_differences([gain], seed, resamples)[0]


def paired_differences(gains: list[np.ndarray], seed: int, resamples: int = RESAMPLES) -> list[dict[str, Any]]:
    """:func:`paired_difference` of each of ``gains`` (as many values each), from one draw of
    the resamples' rows: each figure is what :func:`paired_difference` of it alone with
    ``seed`` gives, as each draws the same rows from the same seed, and the rows are drawn
    once, not once a figure (the loss and the score against two baselines drew 2,000
    resamples of 100,000 test rows four times, 6 s each on a busy machine)."""
    stacked = np.asarray(gains, dtype=float).reshape(len(gains), -1)
    n = stacked.shape[1]
    rng = np.random.default_rng(seed)
    # drawn a block of resamples at a time: 2,000 resamples of 100,000 test rows at once held 3 GB;
    # as int32 (half the memory and time of numpy's int64, the same numbers from the same seed)
    block = max(1, min(resamples, CELLS // max(n, 1)))
    index = np.int32 if n <= np.iinfo(np.int32).max else np.int64
    means = np.empty((len(stacked), resamples))
    for start in range(0, resamples, block):
        rows = rng.integers(0, n, size=(min(block, resamples - start), n), dtype=index)
        for gain, each in zip(stacked, means):
            each[start:start + len(rows)] = gain[rows].mean(axis=1)
    tail = (1.0 - LEVEL) / 2 * 100
    figures = []
    for gain, each in zip(stacked, means):
        low, high = np.percentile(each, [tail, 100 - tail])
        figures.append({"mean": float(gain.mean()), "low": float(low), "high": float(high),
                        "better": float(np.mean(gain > 0)), "worse": float(np.mean(gain < 0)), "n": n})
    return figures


def _per_row(per_run: dict[str, Any], runs: list[str], key: str) -> np.ndarray | None:
    """One selection's per-test-row figure, the mean over its fine-tunes (seeds): ``"loss"``
    the test loss each row had (``losses``, which results of an earlier subsetctl lack),
    ``"score"`` its task score (``predictions``' ``score``); None when a fine-tune's
    result lacks them, they differ in length, or a value is not finite; a row's loss that is
    None (a row with no token to score has none) is NaN, that row left out of the comparison."""
    rows = []
    for run in runs:
        result = per_run.get(run)
        if not isinstance(result, dict):
            return None
        if key == "loss":
            values = result.get("losses")
        else:
            predictions = result.get("predictions")
            values = ([p.get("score") if isinstance(p, dict) else None for p in predictions]
                      if isinstance(predictions, list) else None)
        if key == "loss" and isinstance(values, list):
            values = [math.nan if v is None else v for v in values]
        if not isinstance(values, list) or not values or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and (math.isfinite(v) or key == "loss")
                for v in values):
            return None
        rows.append(np.asarray(values, dtype=float))
    if not rows or len({len(r) for r in rows}) != 1:
        return None
    return np.mean(rows, axis=0)


def paired_comparison(comparison: dict[str, Any], finetuned: Any, per_run: Any, seed: int,
                      resamples: int = RESAMPLES) -> dict[str, Any] | None:
    """``final_vs_baselines``' ``paired``: {``resamples``, ``seed``, ``level``, ``vs``:
    baseline -> {``loss``, ``score``: :func:`paired_difference` of the baseline's loss minus
    the pick's, of the pick's score minus the baseline's}}, each selection's per-row
    figure the mean over its seeds. A figure the evaluate stage's results do not hold for
    both (test losses an earlier subsetctl did not record) is left out; None when none is
    there. A baseline whose fine-tunes are the pick's (it picked the same sources: the finetune
    stage trains them once) has ``same_finetune`` true and no bootstrap: its figures are the
    same on every row by construction, which no interval over the rows adds to.
    ``comparison`` is :func:`~subsetctl.report.cells.final_vs_baselines`' result."""
    labels = finetuned.get("labels") if isinstance(finetuned, dict) else None
    if not isinstance(labels, dict) or not isinstance(per_run, dict):
        return None
    final = comparison["final"]

    def rows(label: str, key: str) -> np.ndarray | None:
        runs = labels.get(label)
        return _per_row(per_run, runs, key) if isinstance(runs, list) and runs else None

    picked = {key: rows(final, key) for key in ("loss", "score")}  # (the pick's, once for every baseline)
    gains: dict[tuple[str, str], np.ndarray] = {}
    shared: dict[str, Any] = {}
    for baseline in comparison["scores"]:
        if baseline == final:
            continue
        if isinstance(labels.get(final), list) and labels[final] and sorted(labels[final]) == sorted(
                labels.get(baseline) or []):
            shared[baseline] = {"same_finetune": True}
            n = next((len(r) for r in picked.values() if r is not None), None)
            if n is not None:
                shared[baseline]["n"] = n
            continue
        for key in ("loss", "score"):
            pick, other = picked[key], rows(baseline, key)
            if pick is None or other is None or len(pick) != len(other):
                continue
            gain = other - pick if key == "loss" else pick - other
            if np.isfinite(gain).any():  # (rows without a loss left out)
                gains[baseline, key] = gain[np.isfinite(gain)]
    vs: dict[str, Any] = {}
    for n in sorted({len(gain) for gain in gains.values()}):  # (each figure's rows drawn once for all of that many)
        same = [figure for figure, gain in gains.items() if len(gain) == n]
        for (baseline, key), figures in zip(same, paired_differences([gains[f] for f in same], seed, resamples)):
            vs.setdefault(baseline, {})[key] = figures
    vs = {baseline: shared.get(baseline) or dict(sorted(vs[baseline].items()))
          for baseline in comparison["scores"] if baseline in vs or baseline in shared}
    if not vs:
        return None
    return {"resamples": resamples, "seed": seed, "level": LEVEL, "vs": vs}


def _verdict(figures: dict[str, Any]) -> str:
    """Whether the interval leaves out no difference: above 0 the pick is clearly better,
    below clearly worse, else not clearly either; nothing is said of fewer than
    :data:`FEWEST_ROWS` rows."""
    if figures["n"] < FEWEST_ROWS:
        return f"too few test rows (under {FEWEST_ROWS}) for the interval to tell"
    if figures["low"] > 0:
        return "clearly better"
    if figures["high"] < 0:
        return "clearly worse"
    return "not clearly better or worse"


def _decimals(*values: float) -> int:
    """Decimals (3 to 7) that show each nonzero value as no zero: a tiny model's losses
    differ by 0.0004, which three decimals write as 0.000."""
    digits = 3
    while digits < 7 and any(0 < abs(v) < 0.5 * 10 ** -digits for v in values):
        digits += 1
    return digits


def _difference(figures: dict[str, Any], more: str, less: str) -> str:
    """"lower by 0.015 (95% interval ...: -0.004 to 0.034" for one paired figure: the
    interval of the difference as the sentence words it (the pick's ``more`` or ``less``),
    so its sign reads with the words."""
    mean, low, high = figures["mean"], figures["low"], figures["high"]
    word = more if mean >= 0 else less
    if mean < 0:
        mean, low, high = -mean, -high, -low
    d = _decimals(mean, low, high)
    return f"{word} by {mean:.{d}f} ({{percent}}% interval{{over}}: {low:.{d}f} to {high:.{d}f}"


def _one_row_difference(figure: dict[str, Any], more: str, less: str) -> str:
    """"higher by 0.003 on its one test row: too few test rows (under 10) for an interval":
    the difference on a test split of one row, with no interval, as every resample of one row
    is that row: the bootstrap's "interval" was the difference again ("0.003 to 0.003"), read
    beside the verdict that the rows were too few for it to tell."""
    mean = figure["mean"]
    value = abs(mean)
    return (f"{more if mean >= 0 else less} by {value:.{_decimals(value)}f} on its one test row: too few test rows "
            f"(under {FEWEST_ROWS}) for an interval")


def _on_every_row(n: Any) -> str:
    """" on every one of the 12 test rows", or " on its one test row" (a target split of a
    single test row read "every one of the 1 test rows")."""
    return " on its one test row" if n == 1 else f" on every one of the {n} test rows"


def _diverged(comparison: dict[str, Any], baseline: str) -> bool:
    """Whether the pick's or ``baseline``'s fine-tune diverged (``final_vs_baselines``'
    ``diverged``): :func:`paired_lines` gives that pair no line, and says nothing of its figures."""
    return bool({comparison["final"], baseline} & set(comparison.get("diverged") or []))


def paired_lines(comparison: dict[str, Any] | None, name: Callable[[str], str] = str) -> list[str]:
    """The sentences for ``final_vs_baselines``' ``paired`` figures, one a baseline, e.g.
    "Row by row, all against target_only: the pick's test loss is lower by 0.015 (95% interval
    over the 200 test rows: -0.004 to 0.034; lower on 58% of them, higher on 42%): not
    clearly better or worse"; the task score's difference follows. [] without them (a
    report.json of an earlier subsetctl); none for a baseline where it or the pick has a
    fine-tune that diverged (``diverged``: the line above says so and draws no verdict).
    ``name`` writes a selection's label (Markdown's escapes its underscores)."""
    paired = (comparison or {}).get("paired")
    if not isinstance(paired, dict):
        return []
    final = name(comparison["final"])
    percent = round(paired.get("level", LEVEL) * 100)
    metric = comparison.get("metric") or "score"
    lines = []
    vs = paired.get("vs", {})
    for baseline in sorted(vs, key=lambda b: BASELINES.index(b) if b in BASELINES else len(BASELINES)):
        figures, parts = vs[baseline], []
        if figures.get("same_finetune"):
            rows = _on_every_row(figures["n"]) if isinstance(figures.get("n"), int) else ""
            lines.append(f"Row by row, {final} against {name(baseline)}: the same fine-tune ({final} picked the "
                         f"same sources as {name(baseline)}, and a subset is fine-tuned once), so its test loss and "
                         f"{metric} are {name(baseline)}'s{rows}: no interval to give.")
            continue
        if _diverged(comparison, baseline):
            continue  # an adapter kept before a divergence: its rows tell nothing of what the selection is worth
        loss, score = figures.get("loss"), figures.get("score")
        for key, figure in (("loss", loss), ("score", score)):
            if not figure:
                continue
            what = "the pick's test loss" if key == "loss" else f"its {metric}"
            if not figure["better"] and not figure["worse"]:
                parts.append(f"{what} is the same{_on_every_row(figure['n'])}")
                continue
            words = ("lower", "higher") if key == "loss" else ("higher", "lower")
            if figure["n"] == 1:  # every resample is that row: its "interval" is the difference itself
                parts.append(f"{what} is {_one_row_difference(figure, *words)}")
                continue
            over = f" over the {figure['n']} test rows" if key == "loss" or not loss else ""
            text = _difference(figure, *words).format(percent=percent, over=over)
            better, worse = ("lower", "higher") if key == "loss" else ("better", "worse")
            parts.append(f"{what} is {text}; {better} on {figure['better']:.0%} of them, {worse} on "
                         f"{figure['worse']:.0%}): {_verdict(figure)}")
        if parts:
            lines.append(f"Row by row, {final} against {name(baseline)}: " + "; ".join(parts) + ".")
    if any("loss" not in figures and not figures.get("same_finetune") and not _diverged(comparison, baseline)
           for baseline, figures in vs.items()):  # (of the pairs given a line above)
        lines.append("The test results were evaluated by an earlier subsetctl, which kept no per-row test losses: "
                     "`subsetctl run --force evaluate` records them (the fine-tunes are not redone).")
    return lines
