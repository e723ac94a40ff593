"""Cell formatting shared by the terminal report and report.md (same content, two renderings)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from subsetctl.errors import joined_names, shown_text
from subsetctl.report import BASELINES, OTHER_ANSWERS, class_of_key


def fmt(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; "–" for a missing value; negative zero
    is "0", never "-0" (a score that is exactly zero is no sign of harm)."""
    if value is None:
        return "–"
    if isinstance(value, float):
        text = f"{value:.{digits}g}"
        return "0" if text in ("-0", "-0.0") else text
    return str(value)


def loss_cell(value: Any, digits: int = 4) -> str:
    """A loss with ``digits`` significant digits, trailing zeros kept so a column lines up
    (1.400, not 1.4); "–" for a missing value."""
    return f"{value:#.{digits}g}" if isinstance(value, float) else fmt(value)


def loss_digits(values: list[Any], most: int = 7) -> int:
    """Significant digits (4 to ``most``) a column of losses needs so that values that
    differ look different: estimates of selections often differ in the 4th or 5th digit,
    and those differences decided which one was picked."""
    distinct = {round(v, 12) for v in values if isinstance(v, float) and math.isfinite(v)}
    for digits in range(4, most + 1):
        if len({f"{v:#.{digits}g}" for v in distinct}) == len(distinct):
            return digits
    return most


def selection_loss_digits(report: dict[str, Any]) -> tuple[int, int]:
    """:func:`loss_digits` of the raw and of the calibrated column of the selections table."""
    rows = [*report.get("strategies", {}).values(), *report.get("baselines", {}).values()]
    return (loss_digits([r.get("estimated_loss_raw") for r in rows]),
            loss_digits([r.get("estimated_loss_calibrated") for r in rows]))


def percent_cell(value: Any) -> str:
    """A fraction as a percentage with two significant digits (0.0391 -> 3.9%; 2.1e-05
    -> 0.0021%, trailing zeros kept so a column reads alike: 0.0020%, not 0.002%)."""
    if not isinstance(value, float) or math.isnan(value):
        return "–"
    percent = value * 100
    if abs(float(f"{percent:.2g}")) >= 10:  # 12%, 100% (and 9.996% rounded): no exponent, no decimal point
        return f"{percent:.0f}%"
    return f"{percent:#.2g}%"


def calibrated_loss_cell(row: dict[str, Any], calibrated: bool, digits: int = 4) -> str:
    """The calibrated estimate, or "–" when calibration is off (the map is the identity
    then, and repeating the raw value under "calibrated" would suggest otherwise)."""
    return loss_cell(row.get("estimated_loss_calibrated"), digits) if calibrated else "–"


def test_loss_digits(report: dict[str, Any]) -> int:
    """:func:`loss_digits` of the test-loss column (selections' test losses differ in the
    4th digit too)."""
    return loss_digits([m.get("loss_mean") for m in report.get("test_metrics", {}).values()])


def test_metric_cells(metrics: dict[str, Any], loss_digits: int = 4) -> tuple[str, str]:
    """The score and test-loss cells of one selection: mean, and ± std over seeds when
    there are several (a std of 0 is shown too: the seeds agreed)."""
    score = fmt(metrics["score_mean"], 3)
    loss = loss_cell(metrics["loss_mean"], loss_digits)
    if metrics.get("score_std") is not None:  # same decimals on both sides: 0.000 ± 0.000, not 0 ± 0.000
        score = f"{metrics['score_mean']:.3f} ± {metrics['score_std']:.3f}"
    if metrics.get("loss_std") is not None:  # as many decimals as the mean: 0.6661 ± 0.0003, not ± 0.000
        loss += f" ± {metrics['loss_std']:.{_decimals(loss, 3)}f}"
    return score, loss


def _decimals(number: str, otherwise: int) -> int:
    """How many decimals the formatted ``number`` shows (``otherwise`` for one in
    exponent notation, or not a number): a ± std beside a mean takes the mean's."""
    if "e" in number.lower() or not number.replace(".", "", 1).lstrip("-").isdigit():
        return otherwise
    return len(number.partition(".")[2])


def macro_f1_cell(metrics: dict[str, Any]) -> str:
    """A classifier selection's macro-F1 (mean, ± std over seeds), "–" when not computed."""
    mean = metrics.get("macro_f1_mean")
    if mean is None:
        return "–"
    std = metrics.get("macro_f1_std")
    return f"{mean:.3f} ± {std:.3f}" if std is not None else fmt(mean, 3)


def verify_k_cell(verify_entry: dict[str, Any]) -> str:
    """How many subsets verify fine-tuned, as "usable of k" when some were excluded: a
    diverged run has no true loss, and a subset the estimator gave no finite estimate for
    (a plugin's NaN) is left out of the fit as well, so neither counts as usable."""
    k = len(verify_entry["subsets"])
    true = verify_entry.get("true", [])
    raw = verify_entry.get("raw") or [0.0] * len(true)  # (older reports: no raw estimates stored)
    usable = sum(t is not None and r is not None and math.isfinite(r) for t, r in zip(true, raw))
    return f"{usable} of {k}" if usable < k else str(k)


def calibration_state(cal: dict[str, Any], against: str | None) -> str:
    """ "calibrated against ce" or "raw estimates", for report headers."""
    if not cal.get("enabled"):
        return "raw estimates"
    return f"calibrated against the {against} fine-tunes" if against else "calibrated"


def calibration_notes(report: dict[str, Any]) -> list[str]:
    """The primary calibration's notes, each naming the other verify kinds whose calibration
    says the same sentence (verify_notes leaves those out: one fact, said once)."""
    against = report.get("calibration_against")
    out = []
    for note in report.get("calibration", {}).get("notes", []):
        also = [kind for kind, v in report.get("verify", {}).items()
                if kind != against and note in v["calibration"].get("notes", [])]
        if not also:
            out.append(note)
            continue
        same = f"the same goes for verify's {' and '.join(also)} fine-tunes."
        out.append(f"{note} {same[0].upper()}{same[1:]}" if note.endswith(".") else f"{note}; {same}")
    return out


def verify_notes(report: dict[str, Any]) -> list[str]:
    """Every verify kind's calibration notes (diverged runs excluded, ...), prefixed with the
    kind, except those the primary calibration shows already (calibration_notes names the
    other kinds that say the same sentence)."""
    shown = set(report.get("calibration", {}).get("notes", []))
    return [f"{kind}: {note}" for kind, v in report.get("verify", {}).items()
            for note in v["calibration"].get("notes", []) if note not in shown]


def stage_warning_lines(report: dict[str, Any]) -> dict[str, list[str]]:
    """Each stage's recorded warnings (report.json's ``stage_warnings``: what it warned of
    while `run` ran, other than what its results show already), each line starting with
    the stage's name (``meta_init: ...`` as it was said; ``search: greedy: ...`` for one
    that named something else), in pipeline order (report.json keeps its keys sorted)."""
    from subsetctl.stages import stage_names

    order = {name: i for i, name in enumerate(stage_names())}
    recorded = sorted((report.get("stage_warnings") or {}).items(), key=lambda item: order.get(item[0], len(order)))
    return {stage: [w if w.startswith((f"{stage}:", f"{stage} ")) else f"{stage}: {w}" for w in warnings]
            for stage, warnings in recorded if warnings}


def strategy_notes(report: dict[str, Any]) -> list[str]:
    """Each strategy's notices from the search (unconverged solves, too few distinct
    subsets, ...), prefixed with its label: they were said while `run` ran and belong
    in every report, not in report.json alone."""
    from subsetctl.search.base import shown_notices

    return [note for label, r in report.get("strategies", {}).items()
            for note in [*shown_notices(label, list(r.get("notices", []))),
                         *(f"{label}: {fit}" for fit in _surrogate_fit(r))]]


#: a source with fewer train rows than this is noted under the per-source scores (as the data
#: stage warns of a target with fewer than 10 validation rows)
FEW_ROWS = 10
FEW_ROWS_SHOWN = 5


def unscored_rows(report: dict[str, Any], source: str) -> int:
    """A source's train rows with no token to score (a causal LM's text of one token with no
    BOS and no EOS), which the gradients stage left out: report.json's ``tokens_by_source``
    counts them apart (a source's rows there are its train rows; the target's, its
    validation rows too, but ``train_rows`` holds no target)."""
    record = report.get("tokens_by_source")
    stats = (record.get("sources") or {}).get(source) if isinstance(record, dict) else None
    count = stats.get("no_token_to_score") if isinstance(stats, dict) else None
    return count if isinstance(count, int) else 0


def used_train_rows(report: dict[str, Any], source: str) -> int | None:
    """A source's train rows that its score rests on: the data stage's, less those with no
    token to score (:func:`unscored_rows`); None where the data stage's counts are not in
    the report."""
    rows = (report.get("train_rows") or {}).get(source)
    return rows - unscored_rows(report, source) if isinstance(rows, int) else None


def rows_cell(report: dict[str, Any], source: str) -> str:
    """A source's train rows for the per-source score tables, those used (:func:`used_train_rows`),
    with the rows left out for having no token to score counted apart ("–" where the data
    stage's counts are not in the report)."""
    rows, left_out = used_train_rows(report, source), unscored_rows(report, source)
    if rows is None:
        return "–"
    return f"{rows:,}" + (f" (+{left_out:,} left out: no token to score)" if left_out else "")


#: what each built-in strategy's per-source score is (README's "Strategies and what their
#: per-source scores mean"), in L_hat's raw terms: the strategies rank by the raw estimates
SCORE_MEANINGS = {
    "random_ensemble": "the mean raw L_hat (nats) of its random subsets without the source minus that of those with it",
    "surrogate": "minus the source's coefficient in a ridge fit of raw L_hat (nats) on which sources each subset holds",
    "forward": "the drop in raw L_hat (nats) from adding the source, at the last step that considered it (0 if none "
               "did)",
    "backward": "the rise in raw L_hat (nats) from removing the source, at the last step that considered it (0 if "
                "none did)",
    "exhaustive": "the Banzhaf value, the mean drop in raw L_hat (nats) from adding the source over every subset of "
                  "the others",
    "gradient_similarity": "the cosine of the source's mean gradient with the target's (-1 to 1; no estimate of L_hat)",
    "representation_similarity": "the cosine of the source's mean representation with the target's (-1 to 1; no "
                                 "estimate of L_hat)",
}


def score_meaning_notes(report: dict[str, Any], scored: dict[str, Any]) -> list[str]:
    """What each column of the per-source scores is, one note a strategy of ``scored`` (label
    -> its report.json entry) that is built in: the heading said only "higher = more
    helpful", and a Banzhaf value of -0.001 sat beside a cosine of 0.8. Differences of L_hat
    are of the raw estimates, in nats."""
    named = [(label, entry.get("strategy") or label) for label, entry in scored.items()]
    return [f"{label}: {SCORE_MEANINGS[name]}." for label, name in named
            if name in SCORE_MEANINGS and not ran_plugin(report, "strategy", name)]


def ran_plugin(report: dict[str, Any], kind: str, name: str) -> bool:
    """Whether the shown results were made with a plugin ``kind`` (``strategy``, ``estimator``)
    called ``name``, as report.json's ``plugins`` records it: one registered under a built-in's
    name replaces it, and got the built-in's description of its figures in the report's notes
    (a plugin ``exhaustive``'s scores called Banzhaf values)."""
    plugins = report.get("plugins")
    return isinstance(plugins, dict) and f"{kind} {name}" in plugins


def few_rows_notes(report: dict[str, Any]) -> list[str]:
    """A note naming the sources of fewer than :data:`FEW_ROWS` train rows: each source
    weighs in the estimates by its rows, so such a source's score rests on one or a few
    rows (how adding them moves the estimate), which says little of the data it stands
    for; a pick of one is read so too."""
    rows = {s: used_train_rows(report, s) for s in report.get("sources", [])}
    few = [s for s in report.get("sources", []) if isinstance(rows.get(s), int) and rows[s] < FEW_ROWS]
    if not few or not any(v.get("scores") for v in report.get("strategies", {}).values()):
        return []
    named = ", ".join(f"'{s}' ({rows[s]:,} row{'s' if rows[s] != 1 else ''})" for s in few[:FEW_ROWS_SHOWN])
    more = f" and {len(few) - FEW_ROWS_SHOWN} more" if len(few) > FEW_ROWS_SHOWN else ""
    final = (report.get("strategies", {}).get(report.get("final") or "") or {}).get("selected") or []
    picked = [s for s in few if s in final]
    target = report.get("target_train_rows")
    beside = f" (the target has {target:,})" if isinstance(target, int) else ""
    return [(f"{len(few)} source{'s' if len(few) != 1 else ''} with fewer than {FEW_ROWS} train rows: {named}{more}. "
             f"Every train row weighs the same in the estimates and the fine-tunes{beside}, so such a source's "
             "score measures what its few rows do, which says little of the data the source stands for"
             + (f"; the final pick ({report.get('final')}) takes {', '.join(repr(s) for s in picked)}" if picked else "")
             + ". Give such a source more rows or leave it out (README: how sources of different sizes weigh).")]


def _surrogate_fit(result: dict[str, Any]) -> list[str]:
    """How well a surrogate's linear fit predicts the subsets its ``holdout`` kept out (R² and
    Spearman, from its diagnostics): what ``holdout`` is for, which only report.json held."""
    diag = result.get("diagnostics") or {}
    if "n_holdout" not in diag:
        return []
    r2, rho = diag.get("holdout_r2"), diag.get("holdout_spearman")
    return [(f"the linear surrogate, fitted on {diag.get('n_train')} subsets, predicts the {diag['n_holdout']} held "
            f"out with R² {'–' if r2 is None else f'{r2:.3g}'} and Spearman {'–' if rho is None else f'{rho:.3g}'} "
            "(near 1: its per-source scores, the coefficients of a refit on all subsets, describe the estimates "
            "well; low: sources interact, compare with exhaustive or forward).")]


def repeats_cell(verify_entry: dict[str, Any]) -> str:
    """How many times verify fine-tuned each subset, and (with more than one) the mean
    Spearman between repeats: the ceiling for any estimate's Spearman against one run."""
    repeats = int(verify_entry.get("repeats") or 1)
    agreement = verify_entry.get("repeat_spearman")
    return f"{repeats} ({fmt(agreement, 3)})" if repeats > 1 else "1"


SELECTED_SHOWN = 8
"""Source names a terminal selection cell lists before it summarizes the rest."""


def baseline_cell(names: list[str]) -> str:
    """A baseline's sources by count ("(none)" for target_only, as for an empty selection)."""
    if not names:
        return "(none)"
    return f"{len(names)} source{'s' if len(names) != 1 else ''}"


def selected_cell(names: list[str], limit: int | None = SELECTED_SHOWN,
                  scores: dict[str, float | None] | None = None) -> str:
    """The selected sources of one strategy: all names up to ``limit`` (None: no limit),
    else the count, ``limit`` names and how many more, so one selection of a thousand
    sources does not fill the terminal. With ``scores`` (the strategy's per-source
    scores), the names shown are the selection's highest scoring, the ones a reader looks
    for: its first in the spec's order were whichever files sort first (``a, bad,
    pool-add_0000, ...`` of 272), telling nothing about the pick."""
    if not names:
        return "(none)"
    if limit is None or len(names) <= limit:
        return ", ".join(names)
    if scores:
        shown = ranked_by_score(names, scores)[:limit]
        return f"{len(names)} sources, highest scores first: {', '.join(shown)}, … (+{len(names) - limit} more)"
    return f"{len(names)} sources: {', '.join(names[:limit])}, … (+{len(names) - limit} more)"


def ranked_by_score(sources: list[str], scores: dict[str, float | None]) -> list[str]:
    """``sources`` from the highest score to the lowest, those without a score last (the
    order of both the terminal's score table and the score plot with many sources)."""
    return sorted(sources, key=lambda s: (scores.get(s) is None, -(scores.get(s) or 0.0)))


#: a per-source score table of more sources than these shows the ``top`` highest and ``bottom``
#: lowest scores (:func:`score_table_rows`), ranked; of fewer, all in the spec's order
SCORE_ROWS_TOP, SCORE_ROWS_BOTTOM = 20, 10

#: report.md's per-source score table lists every source up to these many; of more, it has the
#: ``top`` highest and ``bottom`` lowest, and :data:`SOURCES_FILE` beside it lists them all
SOURCES_IN_REPORT_MD = 200

#: the file beside report.md with every source's scores and picks, of more than
#: :data:`SOURCES_IN_REPORT_MD` sources (:func:`~subsetctl.report.markdown.sources_csv`)
SOURCES_FILE = "report_sources.csv"


def sources_listed_apart(report: dict[str, Any]) -> bool:
    """Whether :data:`SOURCES_FILE` lists ``report``'s sources (the report stage writes it):
    more than :data:`SOURCES_IN_REPORT_MD`, and a strategy that scores them (without one,
    report.md's selections list every pick, and there is no per-source table to cut)."""
    return len(report.get("sources") or []) > SOURCES_IN_REPORT_MD and any(
        isinstance(entry, dict) and entry.get("scores") for entry in (report.get("strategies") or {}).values())


def score_ranking(report: dict[str, Any], scored: dict[str, Any]) -> str:
    """The strategy (of ``scored``, those with scores) whose scores rank a per-source score
    table of many sources: the final pick's, else the first with scores; the terminal's
    table and report.md's are in the same order."""
    return report["final"] if report.get("final") in scored else next(iter(scored))


def score_table_rows(sources: list[str], scores: dict[str, float | None], top: int = SCORE_ROWS_TOP,
                     bottom: int = SCORE_ROWS_BOTTOM, everything: bool = False) -> tuple[list[str | None], int]:
    """The sources a per-source score table shows, and how many it leaves out.

    Up to ``top + bottom`` sources, all are shown in spec order. Beyond that, the ``top``
    highest and ``bottom`` lowest by ``scores`` (missing scores count as lowest), with
    ``None`` marking the gap between them: the sources a user decides on are the extremes;
    or, with ``everything``, all of them in that same order.
    """
    if len(sources) <= top + bottom:
        return list(sources), 0
    ranked = ranked_by_score(sources, scores)
    if everything:
        return list(ranked), 0
    return [*ranked[:top], None, *ranked[-bottom:]], len(sources) - top - bottom


def overrides_line(report: dict[str, Any]) -> str | None:
    """The command-line overrides the shown results were made with, and by which stages'
    runs ("finetune.steps=3 (finetune, evaluate)"); None when the spec alone made them."""
    overrides = report.get("overrides") or {}
    if not overrides:
        return None
    return "made with command-line overrides, not the spec alone: " + "; ".join(
        f"{item} ({', '.join(stages)})" for item, stages in overrides.items())


def plugins_line(report: dict[str, Any]) -> str | None:
    """The plugins the shown results were made with, their packages and the stages that ran
    them ("made with plugins: estimator plugged (plugpkg 1.0; calibrate, search)"); None
    when built-ins alone made them."""
    plugins = report.get("plugins") or {}
    if not isinstance(plugins, dict) or not plugins:
        return None
    return "made with plugins: " + "; ".join(
        f"{name} ({'; '.join(filter(None, [entry.get('package'), ', '.join(entry.get('stages', []))]))})"
        for name, entry in plugins.items() if isinstance(entry, dict))


def versions_line(report: dict[str, Any]) -> str | None:
    """A short note when some shown results were computed with other library versions than
    the current ones (report.json's ``other_library_versions``): whose, and what changed;
    None when all were computed with these."""
    other = report.get("other_library_versions")
    if not isinstance(other, dict):
        return None
    changes: dict[str, None] = {}  # "torch 2.1.0, now 2.2.0", in order, once each

    def note(diff: dict[str, Any]) -> None:
        for name, pair in diff.items():
            if isinstance(pair, dict):
                changes[f"{name} {pair.get('then') or 'absent'}, now {pair.get('now') or 'absent'}"] = None

    parts: list[str] = []
    stages = other.get("stages") if isinstance(other.get("stages"), dict) else {}
    for diff in stages.values():
        if isinstance(diff, dict):
            note(diff)
    if stages:
        parts.append(f"the results of {', '.join(stages)}")
    unknown = unknown_shards = 0
    for stage, results in (other.get("reused") or {}).items():
        known = [diff for diff in results.values() if isinstance(diff, dict)]
        for diff in known:
            note(diff)
        if stage == "gradients":  # rows merged from `run --shard` ("shard i/N", or "shard i/N (run k of m)")
            shards = {key.split(" (")[0]: None for key, diff in results.items() if isinstance(diff, dict)}
            unknown_shards += len({key.split(" (")[0] for key, diff in results.items() if not isinstance(diff, dict)})
            if shards:
                parts.append(f"the gradient rows of {len(shards)} shard(s) merged ({', '.join(shards)})")
            continue
        unknown += len(results) - len(known)
        if known:
            parts.append(f"{len(known)} result(s) {stage} took from the cache")
    for stage, groups in (other.get("reused_estimates") or {}).items():
        known_count = 0
        for group in groups:
            if isinstance(group.get("versions"), dict):
                note(group["versions"])
                known_count += group.get("count", 0)
            else:
                unknown += group.get("count", 0)
        if known_count:
            parts.append(f"{known_count} subset estimate(s) {stage} took from the cache")
    if not parts and not unknown and not unknown_shards:
        return None
    text = "Computed with other library versions than the current ones: " + "; ".join(parts)
    text += f" ({'; '.join(changes)})" if changes else ""
    if unknown:
        text += (f"{'; ' if parts else ''}{unknown} result(s) taken from the cache were computed with library versions "
                 "not recorded (cached by an earlier subsetctl)")
    if unknown_shards:
        text += (f"{'; ' if parts or unknown else ''}{unknown_shards} gradient shard(s) merged were computed with "
                 "library versions not recorded (begun by an earlier subsetctl)")
    return text + ". report.json's other_library_versions lists them."


def _computed_nothing_itself(stage: str, entry: dict[str, Any], report: dict[str, Any]) -> bool:
    """Whether ``stage``'s summary says its last run took every result from the re-run cache
    (or merged gradient shards) and computed none: its own thread count then made none of the
    results shown, and naming it beside theirs ("evaluate with 1 thread") told of results of
    two counts where all were of one."""
    summary = entry.get("summary") if isinstance(entry.get("summary"), dict) else {}
    if stage == "finetune":
        return summary.get("trained_now") == 0
    if stage == "gradients":
        return summary.get("computed") == 0
    if stage == "search":  # every subset estimate taken from its store (the strategies only rank them)
        return summary.get("computed_now") == 0
    if stage == "verify":
        return isinstance(summary.get("runs"), int) and summary.get("reused") == summary["runs"]
    if stage == "evaluate":  # one test result per fine-tuned adapter folder
        adapters = report.get("adapters") if isinstance(report.get("adapters"), dict) else {}
        folders = {folder for listed in adapters.values() if isinstance(listed, list) for folder in listed}
        return bool(folders) and summary.get("reused") == len(folders)
    return False


def threads_line(report: dict[str, Any]) -> str | None:
    """A short note when the shown stages' results were computed with different torch thread
    counts (report.json's ``stages.<stage>.threads``, and ``reused_threads`` for the results a
    stage took from the re-run cache or merged from gradient shards: "finetune (2 from the
    cache)"): torch's results differ in the last bits between thread counts, so such results
    are not what one run of the spec with either count gives (a project run in steps from
    shells with other ``OMP_NUM_THREADS``, on two machines, or reusing a cache filled so).
    None when they were all computed with one count, or none was recorded."""
    from subsetctl.stages import stage_names

    stages = report.get("stages") or {}
    order = {name: i for i, name in enumerate(stage_names())}
    by_count: dict[int, list[str]] = {}
    unknown: list[str] = []  # results taken from the caches that an earlier subsetctl computed, by stage
    for stage in sorted(stages, key=lambda name: order.get(name, len(order))):  # in run order
        entry = stages[stage] if isinstance(stages[stage], dict) else {}
        threads = entry.get("threads")
        count = threads.get("torch") if isinstance(threads, dict) else None
        computed = isinstance(count, int) and not _computed_nothing_itself(stage, entry, report)
        if computed:
            by_count.setdefault(count, []).append(stage)
        reused: dict[int, int] = {}  # torch's count -> results taken with it (a shard: each run of it)
        not_recorded = 0
        for taken in (entry.get("reused_threads") or {}).values() if isinstance(entry.get("reused_threads"), dict) else ():
            for record in taken if isinstance(taken, list) else [taken]:
                n = 1
                if isinstance(record, dict) and "count" in record:  # the search's: counts, with the estimates of them
                    n = record["count"] if isinstance(record["count"], int) else 0
                    record = record.get("threads")
                if isinstance(record, dict) and isinstance(record.get("torch"), int):
                    reused[record["torch"]] = reused.get(record["torch"], 0) + n
                elif record is None:
                    not_recorded += n
        for other, n in reused.items():  # (of the stage's own count: said by its name, where it computed any)
            if other != count or not computed:
                by_count.setdefault(other, []).append(f"{stage} ({n:,} from the cache or shards)")
        if not_recorded:
            unknown.append(f"{stage} ({not_recorded:,})")
    line = None
    if len(by_count) >= 2:
        parts = [f"{', '.join(stages)} with {count} thread{'s' if count != 1 else ''}"
                 for count, stages in sorted(by_count.items())]
        line = ("Computed with different torch thread counts, whose results differ in the last bits: "
                f"{'; '.join(parts)}. To have the results of one run, re-run the stages of the other count with the "
                "same one (`OMP_NUM_THREADS=N subsetctl run DIR --force STAGE`, STAGE the first of them); each stage's "
                "`threads` in report.json lists them (`reused_threads`, those of its results from the cache or shards).")
    if unknown:  # said, not left out: their results may have been computed with another count
        line = " ".join(filter(None, [line, (
            f"Results taken from the cache or shards that an earlier subsetctl computed, with no record of their "
            "thread counts: "
            f"{', '.join(unknown)}; they may differ in the last bits from results computed with this run's count "
            "(`run --force STAGE` computes them again).")]))
    return line


def _by_finetune(labels: Iterable[str], adapters: dict[str, Any]) -> list[list[str]]:
    """``labels`` grouped by the fine-tunes they share (report.json's ``adapters``: selections
    that picked the same sources are fine-tuned once), in their order; a label without recorded
    adapters in a group of its own."""
    groups: dict[Hashable, list[str]] = {}
    for label in labels:
        groups.setdefault(tuple(adapters[label]) if adapters.get(label) else label, []).append(label)
    return list(groups.values())


def shared_finetune_line(report: dict[str, Any]) -> str | None:
    """Which selections of the test metrics table picked the same sources and so share one
    fine-tune (the finetune stage trains identical picks once, and their rows repeat one
    run's figures), from report.json's ``adapters``; None when every row is a run of its own.
    Without it, two strategies showing the very same test loss read as a coincidence."""
    metrics, adapters = report.get("test_metrics") or {}, report.get("adapters") or {}
    groups = _by_finetune([label for label in metrics if adapters.get(label)], adapters)
    shared = [labels for labels in groups if len(labels) > 1]
    if not shared:
        return None
    return ("Selections of the same sources are fine-tuned once and share that run's figures: "
            + "; ".join(", ".join(labels) for labels in shared) + ".")


#: what each task metric's score is, for :func:`test_figures_lines`
METRIC_MEANINGS = {
    "exact_match": "the share of test rows whose generated answer matches the reference (0 to 1)",
    "accuracy": "the share of test rows given the right class (0 to 1)",
    "reasoning_gym": "the mean of the reasoning-gym scorer's score of each test row (0 to 1)",
    "mixed": "the mean of each test row's own score, reasoning-gym's or exact match (0 to 1)",
}


#: what trains the theta* that every estimate starts from, named where a note says which raw
#: estimates are on one scale (:func:`estimate_figures_lines`, `report --compare`'s note): another
#: `project.seed`, model or meta_init setting trains another adapter, and so another scale
THETA_STAR_SETTINGS = "theta* (project.seed, model or meta_init)"


def estimate_figures_lines(report: dict[str, Any]) -> list[str]:
    """What the selections table's estimated losses are and what to compare them with, a
    sentence an item (report.md writes them as one quoted paragraph, a line each; the terminal
    as one line): the table gave "est. loss raw" and "cal." with no unit or split, beside a test
    loss of another split and another fine-tune that a reader set them against. Every built-in
    estimate, and verify's real loss that calibration maps it onto (of its ce fine-tunes as of
    its surrogate ones: the kinds differ in how they train, not in what they measure), is the
    surrogate loss; a plugin estimator's is in its own terms (one replacing a built-in too,
    :func:`ran_plugin`)."""
    from subsetctl.spec.models import BUILTIN_ESTIMATORS

    cal = report.get("calibration") or {}
    estimator = cal.get("estimator")
    surrogate = "the mean softplus of minus each row's gold log-odds, in nats"
    compare = ("Compare the rows with one another (target_only's above all), not with the test loss: another split, "
               "another loss (cross-entropy), fine-tunes from the base model.")
    built_in = estimator is None or (estimator in BUILTIN_ESTIMATORS and not ran_plugin(report, "estimator", estimator))
    if estimator == "true_finetune" and built_in:
        return [(f"est. loss: each selection's real loss on the target's validation rows ({surrogate}) after a "
                 "fine-tune from theta* (meta_init's adapter) on the target's train rows plus the selection's "
                 "(true_finetune, verify's settings); lower is better."), compare]
    raw = (f"Raw: {surrogate}, on one scale only within one {THETA_STAR_SETTINGS}, gradients and lambda setting."
           if built_in else f"Raw: in the {estimator} estimator's terms.")
    parts = [("est. loss: L_hat, the estimated loss on the target's validation rows after a fine-tune from theta* "
              "(meta_init's adapter) on the target's train rows plus the selection's; lower is better."), raw]
    if cal.get("enabled"):
        against = report.get("calibration_against")
        parts.append(f"Calibrated: {fmt(cal.get('slope'))} x raw + {fmt(cal.get('intercept'))}, fitted to "
                     f"{'that loss' if built_in else f'the real loss ({surrogate})'} as measured after verify's "
                     f"{f'{against} ' if against else ''}fine-tunes.")
    return [*parts, compare]


def test_figures_lines(report: dict[str, Any]) -> list[str]:
    """What the test metrics table's score and test loss are (the unit, the rows, mean over
    what, over the seeds where there are several), a sentence an item as
    :func:`estimate_figures_lines`: the table said "score" and "test loss" alone."""
    metrics = report.get("test_metrics") or {}
    names = sorted({m.get("metric") for m in metrics.values() if isinstance(m.get("metric"), str)})
    scores = "; ".join(f"{name}, {METRIC_MEANINGS[name]}" if name in METRIC_MEANINGS else name for name in names)
    n_tests = sorted({m["n_test"] for m in metrics.values() if isinstance(m.get("n_test"), int)})
    rows = (f"the {n_tests[0]:,} test row{'' if n_tests[0] == 1 else 's'}" if len(n_tests) == 1 else "the test rows")
    per_row = ("cross-entropy of its gold class" if report.get("adapter_classes")
               else "mean cross-entropy over its response's tokens and the EOS token after it")
    several = any(isinstance(m.get("seeds"), int) and m["seeds"] > 1 for m in metrics.values())
    return [f"score: {scores or 'the task metric'}; higher is better.",
            f"test loss: the mean over {rows} of each row's {per_row}, in nats; lower is better.",
            *(["Each figure is the mean over the seeds' fine-tunes ± their standard deviation (ddof 0)."]
              if several else [])]


#: after a test loss of fine-tunes one of which diverged, where a table has no room to say more
#: (`ls`, `report --compare`; a line under the table says what it means)
DIVERGED_MARK = " (diverged)"


#: the report.json format (:data:`~subsetctl.report.build.REPORT_FORMAT`) from which ``test_metrics``
#: names the seeds whose fine-tunes diverged (``diverged_seeds``): an earlier one's rows have no such key
DIVERGED_RECORDED_FROM = 19


def diverged_recorded(report: dict[str, Any], label: str) -> bool | None:
    """Whether a fine-tune of ``label`` diverged, as ``report`` (report.json's content) records
    it in its ``test_metrics``' ``diverged_seeds``; None (unknown) for a report.json before
    format :data:`DIVERGED_RECORDED_FROM`, which did not record it: without the key, its rows
    read as those of fine-tunes known not to have diverged."""
    row = (report.get("test_metrics") or {}).get(label) or {}
    if row.get("diverged_seeds"):
        return True
    recorded = report.get("report_format")
    if not isinstance(recorded, int) or recorded < DIVERGED_RECORDED_FROM:
        return None
    return False


def diverged_unrecorded_line(whose: str, one: bool, how_to_tell: str) -> str:
    """The line under a table that marks test losses :data:`DIVERGED_MARK` (`ls`, `report
    --compare`), for the reports (``whose``, e.g. "A's" or "P1's and P2's"; ``one``: a single
    report.json) older than :data:`DIVERGED_RECORDED_FROM`, which did not record diverged
    fine-tunes (:func:`diverged_recorded` None): their losses went unmarked, read as those of
    finished fine-tunes beside a newer report's marked ones of the very same runs.
    ``how_to_tell``: the command that says whether one diverged."""
    return (f"{whose} report.json {'is' if one else 'are'} older than report format {DIVERGED_RECORDED_FROM}, which "
            f"records the fine-tunes that diverged: {'its' if one else 'their'} test losses are not marked "
            f"{DIVERGED_MARK.strip()} even where one did; {how_to_tell} says whether any did.")


def diverged_finetunes_line(report: dict[str, Any]) -> str | None:
    """Which rows of the test metrics table come from fine-tunes that diverged (report.json's
    ``test_metrics``' ``diverged_seeds``), and what their figures are; None when none did.
    The finetune stage's warning was the only word of it, far above the table, whose rows
    read as those of finished fine-tunes. Selections that picked the same sources share their
    fine-tunes (report.json's ``adapters``, as :func:`shared_finetune_line` groups them) and are
    named together, each fine-tune once: four names read as four runs that diverged, of two."""
    metrics = report.get("test_metrics") or {}
    groups = _by_finetune([label for label, m in metrics.items() if m.get("diverged_seeds")],  # the table's order
                          report.get("adapters") or {})
    if not groups:
        return None

    def fine_tunes(labels: list[str]) -> str:
        seeds = metrics[labels[0]]["diverged_seeds"]
        several = len(seeds) > 1
        shared = f"the same fine-tune{'s' if several else ''}: " if len(labels) > 1 else ""
        return f"{joined_names(labels)} ({shared}seed{'s' if several else ''} {', '.join(map(str, seeds))})"

    named = "; ".join(map(fine_tunes, groups))
    return (f"Fine-tunes that diverged (the loss or an update became NaN or infinite): {named}. Their figures are "
            "those of the adapter kept before the divergence (the untrained start where none was kept), not of a "
            "finished fine-tune (the finetune stage's warnings say what to change).")


#: the most classes :func:`class_balance_line` names for one set of rows; it sums the rest
CLASSES_SHOWN = 6


def _class_shares(counts: dict[str, int], name: Callable[[str], str] = str) -> str:
    """Rows per class as shares ("'negative' 30%, 'positive' 70% of 40 rows"), the most
    common :data:`CLASSES_SHOWN` first when there are more (the others summed); two classes
    differing only in Unicode form told apart (:func:`~subsetctl.errors.shown_text`); the others'
    answers' count (:data:`~subsetctl.report.OTHER_ANSWERS`) unquoted, a class so named quoted."""
    total = sum(counts.values())
    if not total:
        return "no rows"
    ranked = sorted(counts.items(), key=lambda item: -item[1]) if len(counts) > CLASSES_SHOWN else list(counts.items())
    shown = ", ".join(f"{label if label == OTHER_ANSWERS else name(shown_text(class_of_key(label)))} "
                      f"{percent_cell(n / total)}"
                      for label, n in ranked[:CLASSES_SHOWN])
    rest = sum(n for _, n in ranked[CLASSES_SHOWN:])
    if rest:
        shown += f", {len(ranked) - CLASSES_SHOWN} other classes {percent_cell(rest / total)}"
    return f"{shown} of {total:,} rows"


def class_balance_line(report: dict[str, Any], name: Callable[[str], str] = str) -> str | None:
    """A classifier's rows per class under the test metrics (report.json's ``class_balance``):
    those of the target's test split and of the rows the final pick and the baselines were
    fine-tuned on. Fine-tuning has no class weights, so a pick whose sources are labelled
    95% one class learns that balance, and its accuracy then says little without it; the
    report said nothing of it. A causal LM's target answering in class words gets it too (its
    answers as classes, a source's other answers counted as one). Where the project gets it but
    its data was prepared by an earlier subsetctl, which did not count the rows per class
    (:func:`class_balance_lacking`), the line says so and how to get it: nothing said why an
    upgraded project never got it. None without the counts otherwise (a causal LM of free
    answers) or a final pick."""
    balance, final = report.get("class_balance"), report.get("final")
    if not isinstance(balance, dict) or not isinstance(balance.get("train"), dict) or final not in balance["train"]:
        return class_balance_lacking(report)
    rows = [f"{name(final)} (the final pick) {_class_shares(balance['train'][final], name)}"]
    rows += [f"{name(label)} {_class_shares(balance['train'][label], name)}"
             for label in BASELINES if label in balance["train"] and label != final]
    return (f"Rows per class: the target's test split {_class_shares(balance.get('test') or {}, name)}; fine-tuned on "
            f"(the target's train split and the selected sources'; no class weights, so each learns this balance): "
            f"{'; '.join(rows)}.")


def class_balance_lacking(report: dict[str, Any]) -> str | None:
    """The line saying a project's report has no rows per class because its data stage's
    results were prepared by an earlier subsetctl (data.json without ``classes``: a classifier's
    before report format 16, a causal LM's answering in class words before it counted them),
    and that `run --force data` adds them: the data stage runs again, the stages reading its
    train side stay up to date (the rows per class are no part of its output's digest),
    evaluate takes its results from its cache, and the report is written again. Told from the report alone: test metrics with macro-F1 (a classifier's, or class
    words') and the data stage's results read, but no ``class_balance``. None otherwise."""
    metrics = report.get("test_metrics")
    if report.get("class_balance") is not None or not report.get("final") or not isinstance(metrics, dict) \
            or "data" not in (report.get("stages") or {}):
        return None
    if not any(isinstance(m, dict) and m.get("macro_f1_mean") is not None for m in metrics.values()):
        return None
    return ("Rows per class: not shown, as the data stage's results were prepared by an earlier subsetctl, which "
            "did not count them; `subsetctl run --force data` adds them (it prepares the data again from its files "
            "and writes the report again; nothing is estimated, fine-tuned or generated again).")


def final_vs_baselines(report: dict[str, Any]) -> dict[str, Any] | None:
    """The final pick's test score beside the baselines' (target_only, all): {final, metric,
    scores (selection -> mean score), stds (-> the score's std over seeds, None for one
    seed), losses (-> mean test loss), seeds (fewest of any),
    n_test, below (the baselines scoring higher than the pick), and test_from ("test_loader")
    when the test rows are the target's own test set}; None without test metrics
    of the pick and a baseline other than it. The test metrics table holds the figures;
    this says in a line whether the selection paid off, which the table leaves to the reader
    (a pick below fine-tuning on the target alone is the result to act on)."""
    metrics = report.get("test_metrics") or {}
    final = report.get("final")
    if final not in metrics:
        return None
    # (a strategy may be labelled "all" or "target_only" when that baseline is not fine-tuned:
    # its test score is a strategy's pick, not fine-tuning on every source or the target alone)
    strategies = report.get("strategies") or {}
    baselines = [b for b in BASELINES if b in metrics and b != final and b not in strategies]
    if not baselines:
        return None
    shown = [final, *baselines]
    scores = {label: metrics[label].get("score_mean") for label in shown}
    if not all(isinstance(s, (int, float)) and math.isfinite(s) for s in scores.values()):
        return None
    return {
        "final": final, "metric": metrics[final].get("metric"), "scores": scores,
        "stds": {label: metrics[label].get("score_std") for label in shown},
        "losses": {label: metrics[label].get("loss_mean") for label in shown},
        "seeds": min(int(metrics[label].get("seeds") or 1) for label in shown),
        "n_test": metrics[final].get("n_test"),
        "below": [b for b in baselines if scores[b] > scores[final]],
        **({"test_from": report["target_test_from"]} if report.get("target_test_from") else {}),
        **({"diverged": diverged} if (diverged := [label for label in shown if metrics[label].get("diverged_seeds")])
           else {}),
    }


def _within_seed_noise(comparison: dict[str, Any], baseline: str) -> bool:
    """Whether the pick's gap to ``baseline`` is within twice the standard error of the
    difference of their mean scores over the seeds (each std is over the seeds, ddof 0, so the
    variance of a mean is std**2 / (seeds - 1)): a gap that seed-to-seed variation alone makes
    likely. False for equal scores (no gap to explain), with one seed (no spread known) or without the stds (a report.json written
    before they were recorded)."""
    stds, seeds = comparison.get("stds") or {}, comparison["seeds"]
    final_std, baseline_std = stds.get(comparison["final"]), stds.get(baseline)
    if seeds < 2 or not all(isinstance(s, (int, float)) and math.isfinite(s) for s in (final_std, baseline_std)):
        return False
    gap = abs(float(comparison["scores"][baseline]) - float(comparison["scores"][comparison["final"]]))
    return 0 < gap <= 2.0 * math.sqrt((final_std**2 + baseline_std**2) / (seeds - 1))


def estimates_checked(report: dict[str, Any]) -> bool:
    """Whether the search's estimates were checked against real fine-tunes: calibrated,
    compared with verify's fine-tunes (verify on, calibration off or not possible), or real
    fine-tune losses themselves (true_finetune: search records no lambda)."""
    calibration = report.get("calibration") or {}
    return bool(calibration.get("enabled") or report.get("verify")
                or ("lam" in calibration and calibration["lam"] is None))


def final_vs_baselines_line(comparison: dict[str, Any] | None, checked: bool,
                            name: Callable[[str], str] = str) -> str | None:
    """The sentence for :func:`final_vs_baselines`' comparison (None for none): the scores,
    and when the pick scored below a baseline, what to make of it (one seed and a small
    test split make a gap noisy; estimates never checked against real fine-tunes, not
    ``checked`` (:func:`estimates_checked`), may rank subsets wrongly). With several seeds,
    a gap within the seed-to-seed spread (:func:`_within_seed_noise`) is said to be one,
    above or below: the means alone read as a difference. ``name`` writes
    a selection's label (Markdown's escapes its underscores, as the tables' do)."""
    if not comparison:
        return None
    final, scores, losses = comparison["final"], comparison["scores"], comparison["losses"]
    shown = [final, *(b for b in BASELINES if b in scores and b != final)]  # (report.json sorts the keys)
    figures = ", ".join(f"{name(label)} {fmt(float(scores[label]), 3)}" for label in shown)
    read = f" from target.{comparison['test_from']}" if comparison.get("test_from") else ""
    n_test = comparison.get("n_test")
    test = f"{n_test} test example{'' if n_test == 1 else 's'}{read}, " if n_test else ""
    seeds = comparison["seeds"]
    line = (f"On the test split ({test}{seeds} seed{'s' if seeds > 1 else ''} each), {comparison['metric']}: "
            f"{figures}")
    diverged = comparison.get("diverged") or []
    if diverged:  # an untrained (or partly trained) adapter's figures say nothing of what its selection is worth
        return (line + f". {'The fine-tunes' if len(diverged) > 1 else 'A fine-tune'} of "
                f"{joined_names(list(map(name, diverged)))} diverged, so these figures do not say whether the selection "
                "paid off.")
    below = comparison["below"]
    noisy = [b for b in shown[1:] if _within_seed_noise(comparison, b)]
    spread = (f"the {'gaps' if len(noisy) > 1 else 'gap'} to {' and '.join(map(name, noisy))} "
              f"{'are' if len(noisy) > 1 else 'is'} within the seed-to-seed spread "
              f"(under twice {'their' if len(noisy) > 1 else 'its'} standard error over the {seeds} seeds), "
              "so not a clear difference")
    if not below:
        others = shown[1:]
        # a tie is no win where the baseline's test loss is lower: every selection scoring 0 (a small
        # model's exact match) read as the pick doing "at least as well" as target_only, its loss higher
        tied = [b for b in others if float(scores[b]) == float(scores[final]) and isinstance(losses.get(b), float)
                and isinstance(losses.get(final), float) and losses[b] < losses[final]]
        # (as many digits as tell the losses apart: 4.7000 and 4.6997 both read "4.700" at four)
        digits = loss_digits([losses[final], *(losses[b] for b in tied)])
        tie = (f", but ties {' and '.join(map(name, tied))} by this metric with a higher test loss "
               f"({loss_cell(losses[final], digits)} against "
               f"{' and '.join(loss_cell(losses[b], digits) for b in tied)})"
               if tied else "")
        return (line + f". The final pick ({name(final)}) scores at least as well as "
                + (f"the baseline {name(others[0])}" if len(others) == 1 else "both baselines") + tie
                + (f"; {spread}." if noisy else "."))
    alone = {"target_only": "fine-tuning on the target alone", "all": "fine-tuning on every source"}
    line += (f". The final pick ({name(final)}) scores below {' and '.join(map(name, below))}: "
             f"{' and '.join(alone[b] for b in below)} did better here")
    if all(isinstance(losses.get(b), float) and isinstance(losses.get(final), float)
           and losses[b] > losses[final] for b in below):
        line += " by this metric, though the pick's test loss is lower"
    advice = [spread] if noisy else []
    if seeds == 1:
        advice.append("with one seed a gap this size may be noise (finetune.seeds repeats each fine-tune)")
    if not checked:
        advice.append("the estimates were not checked against real fine-tunes (verify.enabled: true runs "
                      "verify.k of them and calibrates the estimates)")
    return line + (f"; {'; '.join(advice)}." if advice else ".")


#: at most this many files per table of report.md's section on reproducing the selection
#: (report.json's ``input_files`` lists every one)
REPRODUCE_FILES_SHOWN = 20

#: the library versions that section names (every one is in report.json's stages' ``versions``)
REPRODUCE_LIBRARIES = ("subsetctl", "torch", "transformers", "peft", "numpy", "python")


def _file_digests(record: Any, name: str = "") -> list[tuple[str, str]]:
    """(file, sha256) for each file an input record names (``{"sha256": ...}``, ``{"file":
    ...}``, ``{"files": {name: ...}}``, a folder's ``path``, a list of ``data_files``), the
    file named by its place in the record ("" for a source's single file)."""
    if isinstance(record, dict) and isinstance(record.get("sha256"), str):
        return [(name, record["sha256"])]
    if isinstance(record, dict):
        return [pair for key, value in record.items() for pair in (
            [(_rows_name(name, value), value["sha256"])] if key == "rows" and isinstance(value, dict)
            and isinstance(value.get("sha256"), str) else _file_digests(
                value, name if key in ("file", "files", "path", "data_files") else f"{name}/{key}".strip("/")))]
    if isinstance(record, list):
        return [pair for value in record for pair in _file_digests(value, name)]
    return []


def _holds_rows(record: Any) -> bool:
    """Whether an input record (or a source's within it) holds the digest of a Parquet
    ``where`` source's ``rows``, which :func:`_file_digests` names by :func:`_rows_name`."""
    if isinstance(record, dict):
        rows = record.get("rows")
        return (isinstance(rows, dict) and isinstance(rows.get("sha256"), str)) or any(map(_holds_rows, record.values()))
    return isinstance(record, list) and any(map(_holds_rows, record))


def _rows_name(name: str, rows: dict[str, Any]) -> str:
    """How the reproducing section names a Parquet ``where`` source's ``rows`` digest (of
    the task's rows, not of the file), after ``name``, its place in the record:
    "rows of all.parquet where task = 'wiki'" (the table puts its source before it)."""
    where = rows.get("where")
    if isinstance(where, dict) and len(where) == 1:
        (column, value), = where.items()
        return f"{name}/rows of {rows.get('path') or 'its file'} where {column} = {value!r}".strip("/")
    return f"{name}/its rows".strip("/")


def random_baselines_seeds(settings: dict[str, Any]) -> dict[str, int]:
    """Each ``random`` baseline's label -> the seed it drew from, as recorded ``settings``
    tell them: the first draws from project.seed, each later one from a seed of its own
    (:func:`~subsetctl.search.baselines.labelled_seed`), which ``settings`` do not list.
    Empty without one, or with a project seed not recorded."""
    from subsetctl.search.baselines import labelled_seed

    project_seed = settings.get("project.seed")
    found = [int(m.group(1)) for key, value in settings.items()
             if value == "random" and (m := re.fullmatch(r"search\.strategies\[(\d+)\]\.name", key))]
    if not found or not isinstance(project_seed, int):
        return {}
    labels = [settings.get(f"search.strategies[{i}].label") or "random" for i in sorted(found)]
    return {labels[0]: project_seed, **{label: labelled_seed(project_seed, label) for label in labels[1:]}}


def _random_baselines_seeds(settings: dict[str, Any]) -> str | None:
    """The seed each ``random`` baseline drew from, by label (:func:`random_baselines_seeds`:
    "r1 project.seed (0), r2 1234..."), when there are several; None for fewer than two."""
    seeds = random_baselines_seeds(settings)
    if len(seeds) < 2:
        return None
    (first, project_seed), *later = seeds.items()
    return ", ".join([f"{first} project.seed ({project_seed})", *(f"{label} {seed}" for label, seed in later)])


def reproduce_facts(report: dict[str, Any]) -> tuple[list[str], list[tuple[str, list[tuple[str, str]], int]]]:
    """What produced the selection, for a reviewer given the project folder (report.md's
    section on reproducing it): text lines (the resolved spec the search ran with, the seeds
    set, the estimator and lambda, the model and a hub id's revision, the library versions and
    torch threads of the search's results) and tables (title, (file, sha256) rows, how many
    more) of the model's files and the data files by source (report.json: ``stages.search``,
    ``settings``, ``input_files``). Nothing without a search's results. Names are as
    recorded: the caller formats them."""
    stages = report.get("stages") or {}
    search = stages.get("search") if isinstance(stages.get("search"), dict) else None
    if search is None or "strategies" not in report:
        return [], []
    lines = []
    if search.get("resolved_spec"):
        lines.append(f"resolved spec: .subsetctl/specs/{search['resolved_spec']}.json (the search's; each "
                     "stage's is report.json's stages.<stage>.resolved_spec)")
    settings = report.get("settings") or {}
    seeds = [f"{key} {value}" for key, value in settings.items() if key.endswith("seed") and value is not None]
    if seeds:
        lines.append(f"seeds: {', '.join(seeds)}")
    drawn = _random_baselines_seeds(settings)
    if drawn:
        lines.append(f"random baselines' seeds: {drawn}")
    cal = report.get("calibration") or {}
    grid = settings.get("calibrate.lambda_grid")
    # a grid of one value pins lambda: calibrate fitted the map at it, choosing nothing
    pinned = isinstance(grid, list) and len(set(grid)) == 1
    lines.append(f"estimator {cal.get('estimator') or '-'}, lambda {fmt(cal.get('lam'))}"
                 + (" (the spec's estimate.lam)" if not cal.get("enabled") else
                    " (pinned: calibrate.lambda_grid's only value)" if pinned else " (chosen by calibrate)"))
    from subsetctl.report.build import expand_input_files

    files = expand_input_files(report.get("input_files") or {})  # (a table of the one-file sources, since format 13)
    model = files.get("model") if isinstance(files.get("model"), dict) else {}
    known = [f"revision {report['adapter_base_model_revision']}"] if report.get("adapter_base_model_revision") else []
    if isinstance(model.get("model_package"), str):
        known.append(f"package {model['model_package']}")
    shown_model = str(report.get("adapter_base_model") or settings.get("model.source") or "")
    if not known and not model and shown_model and "/" not in shown_model:  # (a packaged model's name)
        # (a packaged model's release and files, which meta_init records since report_format 10, for results
        # an earlier subsetctl's meta_init made: not recorded, which a reviewer should be told, not left to guess)
        known.append("its files' sha256 not recorded (meta_init ran with an earlier subsetctl; `subsetctl run DIR "
                     "--force meta_init` records them, training meta_init and what follows again)")
    lines.append(f"model: {report.get('adapter_base_model') or settings.get('model.source') or '-'}"
                 + (f", {', '.join(known)}" if known else ""))
    versions = search.get("versions") if isinstance(search.get("versions"), dict) else {}
    named = [f"{name} {versions[name]}" for name in REPRODUCE_LIBRARIES if versions.get(name)]
    if named:
        lines.append(f"library versions (the search's results): {', '.join(named)}")
    counts = sorted({entry["threads"]["torch"] for entry in stages.values() if isinstance(entry, dict)
                     and isinstance(entry.get("threads"), dict) and isinstance(entry["threads"].get("torch"), int)})
    if counts:
        lines.append(f"torch threads: {', '.join(map(str, counts))} (report.json's stages.<stage>.threads)")
    generated: dict[str, int] = {}  # sources known by a generating package's version (reasoning_gym), not files
    for record in (files.get("data") or {}).values():
        if isinstance(record, dict) and not _file_digests(record):
            for what in (f"{key.replace('_', '-')} {value}" for key, value in record.items() if isinstance(value, str)):
                generated[what] = generated.get(what, 0) + 1
    if _holds_rows(files.get("data")):
        lines.append("a source reading one task of a file (where): the sha256 of that task's rows as read, "
                     "not of the file (the data stage follows them alone); `subsetctl plan` with your copy of the "
                     "file in place says the data stage is up to date when they match")
    if generated:
        lines.append("generated data (their loaders' seeds above): "
                     + ", ".join(f"{what} ({n} source{'s' if n != 1 else ''})" for what, n in generated.items()))
    tables = []
    model_files = _file_digests(model.get("model_files"))
    data = [("/".join(part for part in (source, name) if part), digest)
            for source, record in (files.get("data") or {}).items() for name, digest in _file_digests(record)]
    for title, rows in (("model file", model_files), ("data file (by source)", data)):
        if rows:
            tables.append((title, rows[:REPRODUCE_FILES_SHOWN], max(0, len(rows) - REPRODUCE_FILES_SHOWN)))
    return lines, tables


#: sources the token table shows at most (those cut most first); report.json has every one
TOKEN_TABLE_ROWS = 40


def token_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]], int, Any] | None:
    """The "token lengths by source" table of report.md and the terminal: its header, one row
    of cells per source (the target first, then the spec's order; of more than
    :data:`TOKEN_TABLE_ROWS`, those cut most), how many sources are left out and
    ``model.max_length``; from report.json's ``tokens_by_source`` (the gradients stage's
    count of every row: examples as trained, mean and most tokens, mean answer tokens scored,
    how many ``max_length`` cut; and, where some are, the rows left out for having no token
    to score, which the other figures leave out). None without that record."""
    record = report.get("tokens_by_source")
    if not isinstance(record, dict) or not record.get("sources"):
        return None
    named = [n for n in report.get("sources") or [] if n in record["sources"]]  # the spec's order, the target first
    sources = {**{n: v for n, v in record["sources"].items() if n not in named},
               **{n: record["sources"][n] for n in named}}
    causal = any("mean_answer_tokens" in stats for stats in sources.values())
    unscored = any(stats.get("no_token_to_score") for stats in sources.values())
    shown = sorted(sources.items(), key=lambda item: -item[1]["cut"] / max(1, item[1]["examples"]))[:TOKEN_TABLE_ROWS] \
        if len(sources) > TOKEN_TABLE_ROWS else list(sources.items())
    header = ["source", "examples", "mean tokens", "max tokens", *(["mean answer tokens"] if causal else []),
              "cut by max_length", *(["left out: no token to score"] if unscored else [])]
    rows = [[name, f"{stats['examples']:,}", fmt(stats["mean_tokens"]), f"{stats['max_tokens']:,}",
             *([fmt(stats.get("mean_answer_tokens"))] if causal else []),
             f"{stats['cut']:,} ({100 * stats['cut'] / max(1, stats['examples']):.0f}%)",
             *([f"{stats.get('no_token_to_score', 0):,}"] if unscored else [])] for name, stats in shown]
    return header, rows, len(sources) - len(shown), record.get("max_length", "?")


#: the verify subsets report.md and the terminal list (of all kinds together); report.json's
#: ``verify`` holds every one
VERIFY_SUBSET_ROWS = 12


def verify_subset_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]], int] | None:
    """The "verify subsets" table of report.md and the terminal: its header, one row of cells
    a fine-tuned subset of each verify kind (its sources, the real loss, the raw and the
    calibrated estimate, and the calibrated one's error relative to the real loss), in the
    order verify ran them, at most :data:`VERIFY_SUBSET_ROWS` (shared among the kinds), and how
    many are left out; from report.json's ``verify``. Only the PNG scatter showed them, whose
    points on a small project fall on one another. None without verify. A kind whose
    calibration is off (fewer than 4 usable fine-tunes, a slope not positive) has "–" for the
    calibrated estimate and its error, as the selections table has: its ``calibrated`` values
    are the raw ones (the identity map), which that column showed as calibrated, and their
    error as the calibrated estimate's."""
    verify = report.get("verify")
    if not isinstance(verify, dict) or not verify:
        return None
    each = max(1, -(-VERIFY_SUBSET_ROWS // len(verify)))  # (rounded up)
    rows: list[list[str]] = []
    more = 0
    for kind, entry in verify.items():
        subsets = entry.get("subsets") or []
        true, raw, calibrated = (list(entry.get(key) or []) for key in ("true", "raw", "calibrated"))
        if (entry.get("calibration") or {}).get("enabled") is False:
            calibrated = []  # the identity map's: the raw estimates, not calibrated ones
        digits = loss_digits([*true, *raw, *calibrated])
        for i, subset in enumerate(subsets[:each]):
            real = true[i] if i < len(true) else None
            raw_i = raw[i] if i < len(raw) else None
            cal_i = calibrated[i] if i < len(calibrated) else None
            error = ((cal_i - real) / real if isinstance(cal_i, float) and isinstance(real, float) and real
                     else None)
            rows.append([kind, selected_cell(subset), loss_cell(real, digits), loss_cell(raw_i, digits),
                         loss_cell(cal_i, digits), ("+" if error is not None and error > 0 else "") + percent_cell(error)])
        more += max(0, len(subsets) - each)
    header = ["fine-tune", "subset", "real loss", "raw estimate", "calibrated estimate", "error (calibrated)"]
    return header, rows, more
