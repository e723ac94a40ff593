"""The rich terminal report, from report.json's content."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.markup import escape
from rich.text import Text

from subsetctl.report.cells import (
    SELECTED_SHOWN,
    SOURCES_FILE,
    baseline_cell,
    calibrated_loss_cell,
    calibration_notes,
    calibration_state,
    class_balance_line,
    diverged_finetunes_line,
    estimate_figures_lines,
    estimates_checked,
    few_rows_notes,
    final_vs_baselines_line,
    loss_cell,
    macro_f1_cell,
    overrides_line,
    percent_cell,
    plugins_line,
    repeats_cell,
    reproduce_facts,
    rows_cell,
    score_meaning_notes,
    score_ranking,
    score_table_rows,
    selected_cell,
    selection_loss_digits,
    shared_finetune_line,
    sources_listed_apart,
    stage_warning_lines,
    strategy_notes,
    test_figures_lines,
    test_loss_digits,
    test_metric_cells,
    threads_line,
    token_table,
    verify_k_cell,
    verify_notes,
    verify_subset_table,
    versions_line,
)
from subsetctl.report.cells import fmt as _f
from subsetctl.report.paired import paired_lines

DATA_WARNINGS_SHOWN = 5
"""Data-stage warnings the terminal report prints before it counts the rest."""

STAGE_WARNINGS_SHOWN = 5
"""Warnings of one stage (report.json's ``stage_warnings``) the terminal report prints
before it counts the rest."""

SOURCE_COLUMN_KEPT = 16
"""Characters of a source name the score table keeps on one line before it moves
strategies to a second table (longer names fold)."""


#: the widest a strategy's label is kept unfolded in the terminal's selections table
LABEL_WIDTH_KEPT = 30
#: the selections table's loss columns: their headers wrap ("est. loss" over "raw"), their
#: numbers (five significant digits) fit, and the names beside them get the room
LOSS_COLUMN_WIDTH = 9


def score_column_groups(strategies: int, score_width: int, rows: Sequence[str | None], width: int) -> list[list[int]]:
    """The strategy columns of the per-source score table, split into consecutive groups
    that each fit ``width`` terminal columns with their scores on one line. rich folds a
    column that does not fit, and a score folded across two lines ("-0.88" over "4")
    reads as two numbers; a second table is clearer. Each column costs its width plus
    two of padding and one of border; the source column keeps up to
    :data:`SOURCE_COLUMN_KEPT` characters of the longest row label (``rows`` as shown, the
    "… N more" row among them) or its header."""
    source = min(SOURCE_COLUMN_KEPT, max([len("source"), *(cell_len(s) for s in rows if s is not None)]))
    fits = max(1, (width - 1 - (source + 3)) // (score_width + 3))
    per_table = -(-strategies // -(-strategies // fits))  # balanced: 4 + 3 columns, not 5 + 2
    return [list(range(i, min(i + per_table, strategies))) for i in range(0, strategies, per_table)]


def render_full_report(report: dict[str, Any], console: Any, all_sources: bool = False,
                       root: Path | None = None, stale: list[str] | None = None) -> None:
    """Print the selections, per-source scores, verify and test tables. With many sources,
    long selections are summarized and the score table shows the highest and lowest
    scoring sources only, unless ``all_sources`` (report.md and report.json list all).
    ``root``: the project folder, so that the final adapter's path (relative to it in the
    report) is printed as one that works from the current directory. ``stale``: the stages
    whose spec or inputs changed since they ran, whose warnings are said to be of their last
    run before they are listed (the data stage's: of the last run's inputs)."""
    from rich.table import Table

    stale = stale or []
    if isinstance(report.get("project"), str):  # pasted output says which project's report it is, as report.md's heading
        console.print(f"[bold]subsetctl report: {escape(report['project'])}[/bold]"
                      + (f" [dim]({escape(str(root))})[/dim]" if root is not None and root.name != report["project"] else ""))
    overrides = overrides_line(report)
    if overrides:
        console.print(f"[yellow]results {escape(overrides)}[/yellow]")
    plugins = plugins_line(report)
    if plugins:
        console.print(f"results {escape(plugins)}")
    versions = versions_line(report)
    if versions:  # results reused from the caches, or kept, from before a library upgrade
        console.print(f"[yellow]{escape(versions)}[/yellow]")
    threads = threads_line(report)
    if threads:  # stages run with different torch thread counts
        console.print(f"[yellow]{escape(threads)}[/yellow]")
    # a cause the user fixed since must not read as a problem of now
    _print_warnings(console, "data", [f"data: {w}" for w in report.get("data_warnings", [])], DATA_WARNINGS_SHOWN,
                    "data: the warnings below are of the last run's inputs; the spec or its input files changed "
                    "since (`subsetctl run` checks them again)" if "data" in stale else None)
    for stage, warnings in stage_warning_lines(report).items():
        if report.get("stages", {}).get(stage, {}).get("switched_off"):  # (report.md marks them so too)
            earlier = f"{stage}: the warnings below are of an earlier run; the stage is switched off in the spec"
        elif stage in stale:
            earlier = (f"{stage}: the warnings below are of its last run; the spec or its inputs changed since "
                       "(`subsetctl run` runs it again)")
        else:
            earlier = None
        _print_warnings(console, stage, warnings, STAGE_WARNINGS_SHOWN, earlier)
    _print_token_table(console, report)
    if "strategies" in report:
        cal = report.get("calibration", {})
        long = not all_sources and any(len(r["selected"]) > SELECTED_SHOWN for r in report["strategies"].values())
        listed_apart = f" (or {SOURCES_FILE})" if sources_listed_apart(report) else ""
        table = Table(title=f"selections (final: {report['final']}; {cal.get('estimator') or 'estimator'} "
                            f"lambda={_f(cal.get('lam'))}, "
                            f"{calibration_state(cal, report.get('calibration_against'))})", title_justify="left",
                      caption=(f"a selection of more than {SELECTED_SHOWN} sources names {SELECTED_SHOWN}, its "
                               "highest scoring where its strategy scores sources; `subsetctl report --all-sources`, "
                               f"report.md{listed_apart} and report.json list all") if long else None,
                      caption_justify="left")
        raw_digits, cal_digits = selection_loss_digits(report)
        enabled = bool(cal.get("enabled"))
        selection_rows = [
            (label, selected_cell(r["selected"], None if all_sources else SELECTED_SHOWN, r.get("scores")),
             loss_cell(r["estimated_loss_raw"], raw_digits), calibrated_loss_cell(r, enabled, cal_digits))
            for label, r in report["strategies"].items()
        ] + [
            (f"[dim]{escape(label)} (baseline)[/dim]", f"[dim]{baseline_cell(r['selected'])}[/dim]",
             loss_cell(r["estimated_loss_raw"], raw_digits), calibrated_loss_cell(r, enabled, cal_digits))
            for label, r in report.get("baselines", {}).items()
        ]
        for col, width in zip(("strategy", "selected", "est. loss raw", "est. loss cal."),
                              _selection_column_widths(selection_rows, console.width)):
            table.add_column(col, justify="left" if col in ("strategy", "selected") else "right",
                             overflow="fold", **width)  # fold long names, never cut them
        for row in selection_rows:
            table.add_row(*row)
        console.print(table)
        console.print(f"[dim]{escape(' '.join(estimate_figures_lines(report)))}[/dim]")
        for note in calibration_notes(report):
            console.print(f"[dim]calibration: {escape(note)}[/dim]")
        for note in strategy_notes(report):
            console.print(f"[dim]search {escape(note)}[/dim]")
        scored = {k: v for k, v in report["strategies"].items() if v["scores"]}
        if scored:
            ranking = score_ranking(report, scored)
            rows, left_out = score_table_rows(report["sources"], scored[ranking]["scores"], everything=all_sources)
            listing = SOURCES_FILE if sources_listed_apart(report) else "report.md"
            caption = (f"{left_out} sources in between are left out (the highest and lowest by {ranking} are "
                       f"shown); `subsetctl report --all-sources` or {listing} lists all") if left_out else None
            names = list(scored)
            selected = [set(v["selected"]) for v in scored.values()]  # not a list scan per source and strategy
            cells = {s: [_f(v["scores"].get(s)) + (" ✓" if s in chosen else "  ")
                         for v, chosen in zip(scored.values(), selected)]
                     for s in rows if s is not None}
            score_width = max((cell_len(c) for row_cells in cells.values() for c in row_cells), default=1)
            labels = [f"… {left_out} more" if s is None else s for s in rows]  # as the source column shows them
            counted = bool(report.get("train_rows"))  # a rows column: what each score rests on
            row_cells = {s: rows_cell(report, s) for s in rows if s is not None} if counted else {}
            rows_width = max([len("rows"), *map(len, row_cells.values())]) + 3 if counted else 0
            groups = score_column_groups(len(names), score_width, labels, console.width - rows_width)
            for number, group in enumerate(groups, 1):
                which = (f"strategies {group[0] + 1}–{group[-1] + 1}" if len(group) > 1
                         else f"strategy {group[0] + 1}")
                part = f"; {which} of {len(names)}" if len(groups) > 1 else ""
                t = Table(title=f"per-source scores (higher = more helpful; ✓ selected{part})", title_justify="left",
                          caption=caption if number == len(groups) else None, caption_justify="left")
                t.add_column("source", overflow="fold")  # fold long names, never cut them (…_v1 and …_v2 looked alike)
                if counted:
                    t.add_column("rows", justify="right", no_wrap=True)
                for i in group:  # scores never fold ("-0.88" / "4"): too many columns go to another table
                    t.add_column(names[i], justify="right", overflow="fold", min_width=score_width)
                for s in rows:
                    if s is None:
                        t.add_row(f"[dim]… {left_out} more[/dim]", *["[dim]…[/dim]"] * (len(group) + counted))
                    else:
                        t.add_row(s, *([row_cells[s]] if counted else []), *[cells[s][i] for i in group])
                console.print(t)
            for note in [*score_meaning_notes(report, scored), *few_rows_notes(report)]:
                console.print(f"[dim]scores: {escape(note)}[/dim]")
    if report.get("verify"):
        t = Table(title="estimated vs. true (verify)", title_justify="left")
        t.caption = ("LOO: leave-one-out median relative error of the calibrated estimate; "
                     "+choice: with the choice of estimator and lambda held out too")
        t.caption_justify = "left"
        # the repeats column only when some subset was fine-tuned more than once (a column of
        # "1" took the room that kept 80 columns from splitting "estimator" as "estimato r")
        repeated = any(int(v.get("repeats") or 1) > 1 for v in report["verify"].values())
        for col in ("fine-tune", "estimator", "lambda", "Spearman (raw)", "LOO", "LOO +choice", "k",
                    *(["repeats (Spearman)"] if repeated else [])):
            # narrow terminals: fold values, never "linear_…"; headers wrap between words only
            t.add_column(col, no_wrap=col == "fine-tune", overflow="fold", min_width=max(map(len, col.split())))
        for kind, v in report["verify"].items():
            c = v["calibration"]
            t.add_row(kind, str(v.get("estimator") or "-"), _f(c["lam"]), _f(c["spearman"], 3),
                      percent_cell(c["loo_median_rel_err"]), percent_cell(v.get("loo_median_rel_err_with_selection")),
                      verify_k_cell(v), *([repeats_cell(v)] if repeated else []))
        console.print(t)
        for note in verify_notes(report):
            console.print(f"[dim]verify {escape(note)}[/dim]")
        subsets = verify_subset_table(report)
        if subsets is not None and subsets[1]:
            header, rows, more = subsets
            t = Table(title="verify subsets", title_justify="left")
            for col in header:
                t.add_column(col, justify="left" if col in ("fine-tune", "subset") else "right", overflow="fold",
                             min_width=max(map(len, col.split())))  # (headers wrap between words only)
            for row in rows:
                t.add_row(*map(escape, row))
            if more:
                t.caption = f"{more:,} more in report.json's verify"
                t.caption_justify = "left"
            console.print(t)
    if report.get("test_metrics"):
        held_out = ("target.test_loader's rows" if report.get("target_test_from") == "test_loader"
                    else "target's held-out split")
        t = Table(title=f"test metrics ({held_out})", title_justify="left")
        f1 = any("macro_f1_mean" in m for m in report["test_metrics"].values())
        for col in ("selection", "metric", "score", *(["macro-F1"] if f1 else []), "test loss", "seeds"):
            t.add_column(col, overflow="fold")
        test_digits = test_loss_digits(report)
        for label, m in report["test_metrics"].items():
            cells = [*test_metric_cells(m, test_digits), *([macro_f1_cell(m)] if f1 else [])]
            if not _encodes(console, "±"):  # (printed as "+-", a column wider than rich measured)
                cells = [cell.replace("±", "+-") for cell in cells]
            score, loss, *f1_cell = cells
            t.add_row(label, m["metric"], score, *f1_cell, loss, str(m["seeds"]))
        console.print(t)
        console.print(f"[dim]{escape(' '.join(test_figures_lines(report)))}[/dim]")
        for warning in report.get("test_warnings", []):
            console.print(f"[yellow]test metrics: {escape(warning)}[/yellow]")
        diverged = diverged_finetunes_line(report)
        if diverged:
            console.print(f"[yellow]{escape(diverged)}[/yellow]")
        shared = shared_finetune_line(report)
        if shared:
            console.print(f"[dim]{escape(shared)}[/dim]")
        comparison = report.get("final_vs_baselines")
        verdict = final_vs_baselines_line(comparison, estimates_checked(report))
        if verdict:
            style = "yellow" if comparison["below"] else "dim"
            console.print(f"[{style}]{escape(verdict)}[/{style}]")
        for line in paired_lines(comparison):
            console.print(f"[dim]{escape(line)}[/dim]")
        balance = class_balance_line(report)
        if balance:
            console.print(f"[dim]{escape(balance)}[/dim]")
    final = report.get("final")
    if final and report.get("adapters", {}).get(final):
        others = len(report["adapters"][final]) - 1
        console.print(f"adapter of the final pick ({escape(final)}): "
                      f"{escape(_from_here(report['adapters'][final][0], root))}"
                      + (f" (+{others} more seed{'s' if others > 1 else ''})" if others else "")
                      + " [dim](report.md lists every selection's)[/dim]")
    facts, tables = reproduce_facts(report)
    if facts:  # for a reviewer given the folder: what produced the selection (the files' sha256 in report.md)
        files = " and ".join(_files_possessive(len(rows) + more, title.split(" (")[0]) for title, rows, more in tables)
        console.print("[dim]reproducing: " + escape("; ".join(f for f in facts if f.startswith(("seeds", "estimator", "model"))))
                      + (f" ({escape(files)} sha256 in report.md)" if files else "") + "[/dim]")


def _print_token_table(console: Any, report: dict[str, Any]) -> None:
    """report.md's "Token lengths by source" table (:func:`token_table`), printed only when
    ``model.max_length`` cut some source's rows: the stages' warnings count the cuts, this
    shows each source's lengths beside them (a source of books at 100% beside tweets)."""
    from rich.table import Table

    table = token_table(report)
    if table is None:
        return
    header, rows, more, max_length = table
    cut = header.index("cut by max_length")  # (not the last column where rows had no token to score)
    if all(row[cut].startswith("0 ") for row in rows):
        return
    t = Table(title=f"token lengths by source, as trained (model.max_length={max_length})", title_justify="left")
    for i, col in enumerate(header):
        t.add_column(col, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        t.add_row(*(escape(cell) for cell in row))
    console.print(t)
    if more:
        console.print(f"[dim]... {more:,} more sources, cut less (report.md, report.json's tokens_by_source)[/dim]")


def _files_possessive(count: int, what: str) -> str:
    """"1 model file's", "12 data files'": whose sha256 report.md lists ("1 model files'" read wrong)."""
    return f"{count:,} {what}'s" if count == 1 else f"{count:,} {what}s'"


def _selection_column_widths(rows: list[tuple[str, str, str, str]], width: int) -> list[dict[str, int]]:
    """The selections table's column widths when its rows do not fit ``width`` on one line
    each: a strategy's label (up to :data:`LABEL_WIDTH_KEPT`) is kept whole and the loss
    columns' headers wrap ("est. loss" over "raw"), so the selected names fold first. On 80
    columns "representation_similarity" folded mid-word beside a two-name selection."""
    natural = [max((cell_len(Text.from_markup(cells[i]).plain) for cells in rows), default=1) for i in range(4)]
    headers = (len("strategy"), len("selected"), len("est. loss raw"), len("est. loss cal."))
    needed = sum(max(cell, header) for cell, header in zip(natural, headers)) + 3 * 4 + 1  # padding, rules
    if needed <= width:
        return [{}, {}, {}, {}]
    label = min(max(natural[0], len("strategy")), LABEL_WIDTH_KEPT)
    return [{"min_width": label}, {}, {"max_width": LOSS_COLUMN_WIDTH}, {"max_width": LOSS_COLUMN_WIDTH}]


def _encodes(console: Any, text: str) -> bool:
    """Whether ``console``'s stream can encode ``text`` (not in an ASCII locale, where the
    CLI prints a mark it cannot encode as ASCII: see cli._ASCII_MARKS)."""
    try:
        text.encode(console.encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _print_warnings(console: Any, name: str, lines: list[str], shown: int, stale_note: str | None) -> None:
    """Warning ``lines`` (each starting with ``name``), the first ``shown`` of them and a
    count of the rest, after ``stale_note`` (they are of the last run's inputs) if any."""
    if lines and stale_note:
        console.print(f"[yellow]{escape(stale_note)}[/yellow]")
    for line in lines[:shown]:
        console.print(f"[yellow]{escape(line)}[/yellow]")
    if len(lines) > shown:
        console.print(f"[yellow]{name}: {len(lines) - shown} more warnings (report.md lists them all)[/yellow]")


def _from_here(relpath: str, root: Path | None) -> str:
    """A path relative to the project folder ``root`` as one that works from the current
    directory: relative when the project is below it, else absolute."""
    if root is None:
        return relpath
    path = (Path(root) / relpath).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
