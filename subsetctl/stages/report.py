"""The report stage: report.json, report.md and PNG plots in the project directory."""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path
from typing import Any

from subsetctl.pipeline import Stage, StageContext
from subsetctl.project import (
    Project,
    atomic_write_text,
    compact_json_file_text,
    keep_as_backup,
    naming_os_errors,
    sha256_file,
)

#: how report.md begins (:func:`~subsetctl.report.markdown.render_markdown`)
MARKDOWN_HEADING = b"# subsetctl report"


class ReportStage(Stage):
    name = "report"
    description = "write report.md, report.json and plots"
    after = ("search", "calibrate", "evaluate")
    spec_keys = ("project.name", "report")
    keeps_results = False  # report.md, report.json and plots/ are in the project folder: always rewritten
    shows_stage_seconds = True  # its time table: rewritten after any stage runs, whatever that stage's output

    def extra_inputs(self, spec: Any, project: Project) -> dict[str, Any]:
        """The switched-off stages whose kept results the spec has moved past (the report
        shows their results only until their settings change, so a change re-runs it), the
        command-line overrides the results were made with, the library versions that computed
        them when not all the same, the order of the selections in its tables, the model folder
        the spec names anew where the results recorded another path for its files
        (:func:`~subsetctl.report.build.models_named_anew`), the model folder outside the project
        that the spec's relative path leads to now where the results recorded reading it elsewhere
        (:func:`~subsetctl.report.build.models_moved_outside`), the adapters trained from another
        commit of a hub model (:func:`~subsetctl.report.build.finetune_commits_noted`), and what
        report.json and report.md hold (:data:`~subsetctl.report.build.REPORT_FORMAT`)."""
        from subsetctl.report.build import (
            REPORT_FORMAT,
            finetune_commits_noted,
            models_moved_outside,
            models_named_anew,
            results_overrides,
            results_versions,
            selection_order,
            switched_off_moved_past,
        )

        moved = switched_off_moved_past(project, spec)
        # results replaced or put back to the same output digests (so nothing upstream
        # re-runs the report) may have been made with other command-line overrides
        overrides = results_overrides(project, spec=spec)
        # likewise the library versions they were computed with (the report's note on them)
        versions = results_versions(project)
        # the tables' order (reordering the baselines re-runs nothing else)
        # the verify table's figures for each lambda of the grid, left out of calibrate's output digest
        grid = _calibrate_grid_figures(project)
        # the adapters trained from another commit of the hub model, left out of finetune's output digest
        commits = finetune_commits_noted(project)
        anew = models_named_anew(project, spec)  # (the model folder moved: nothing else re-runs)
        outside = models_moved_outside(project)  # (the project moved with it: its report names it anew)
        return {"report_format": REPORT_FORMAT, "selection_order": selection_order(spec),
                **({"calibrate_grid_figures": grid} if grid else {}),
                **({"finetune_commits_noted": commits} if commits else {}),
                **({"switched_off_moved_past": moved} if moved else {}), **({"model_named_anew": anew} if anew else {}),
                **({"model_moved_outside": outside} if outside else {}),
                **({"overrides": overrides} if overrides else {}), **({"library_versions": versions} if versions else {})}

    def missing_outputs(self, project: Project, manifest: dict[str, Any]) -> list[str]:
        """report.md, report.json and the plots the last run wrote, if deleted since; report.json
        also when it is there but no report (cut short to ``{``, emptied): a script reading it
        failed while `plan` said the report was up to date and `report` showed it whole, from the
        stage's own copy; and a plot whose bytes are not those it drew (its summary's
        ``plot_sha256``): report.md shows it as the results' figure, so one replaced or edited by
        hand (another run's copied in) went unnoticed. Hashing the few PNGs (tens of kB each) is
        cheap; a summary without the digests (an earlier subsetctl's) checks only that they are
        there. (report.md is the user's to annotate: an edit there is no damage.)"""
        summary = manifest.get("summary", {})
        written = ["report.md", "report.json", *summary.get("plots", []), *summary.get("files", [])]
        digests = summary.get("plot_sha256") if isinstance(summary.get("plot_sha256"), dict) else {}

        def drawn_otherwise(name: str) -> bool:
            try:
                return name in digests and sha256_file(project.root / name) != digests[name]
            except OSError:  # (unreadable: what it drew cannot be told there)
                return True

        return [name for name in written if not (project.root / name).is_file()
                or (name == "report.json" and not _written_by_subsetctl(project.root / name))
                or drawn_otherwise(name)]

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from subsetctl.report import plots
        from subsetctl.report.build import build_report, mark_switched_off, outdated_stages, selection_order
        from subsetctl.report.cells import SOURCES_FILE
        from subsetctl.report.markdown import render_markdown, sources_csv

        # results an upstream change made outdated (finetune switched off after a new search,
        # `run --until search`) are left out, as `subsetctl report` leaves them out
        outdated = set(outdated_stages(ctx.project, ctx.spec))
        report = build_report(ctx.project, skip=outdated, name=ctx.spec.project.name, order=selection_order(ctx.spec),
                              spec=ctx.spec)
        mark_switched_off(report["stages"], ctx.spec)
        if outdated:
            from subsetctl.stages import all_stages

            stages = [stage for stage in all_stages() if stage.name in outdated]  # in pipeline order
            report["left_out"] = [stage.name for stage in stages]
            switched_off = [stage.name for stage in stages if not stage.enabled(ctx.spec)]
            if switched_off:  # `run` does not bring these up to date
                report["left_out_switched_off"] = switched_off
        written: dict[str, str] = {}
        folder = ctx.project.inside(ctx.project.root / "plots")
        drawn = (
            ("per-source scores", "source_scores.png", plots.source_scores),
            ("estimated vs. true", "estimated_vs_true.png", plots.estimated_vs_true),
            ("test metric by selection", "test_metric.png", plots.test_metric),
        )
        try:
            if ctx.spec.report.plots:
                folder.mkdir(exist_ok=True)
                plots.import_matplotlib(ctx.project.state_dir / "cache" / "matplotlib")  # HOME read-only: no noise
                for title, name, fn in drawn:
                    if (folder / name).is_symlink():  # (a copied project's) replaced, not written through: it may
                        (folder / name).unlink()      # point at any file of the user's, outside the project
                    with naming_os_errors(folder / name):  # (matplotlib's write on a full disk names no file)
                        if fn(report, folder / name):
                            written[title] = f"plots/{name}"
            for _, name, _ in drawn:  # an earlier run's plot of results no longer shown (or plots switched off)
                if f"plots/{name}" not in written.values():
                    (folder / name).unlink(missing_ok=True)
        finally:  # (Ctrl-C before the first plot, or nothing to plot, left an empty plots/ behind)
            _remove_if_empty(folder)
        for name in ("report.json", "report.md"):
            _keep_a_file_of_the_users(ctx, ctx.project.root / name)
        text = compact_json_file_text(report)  # (thousands of sources: one line a small record)
        atomic_write_text(ctx.project.root / "report.json", text)
        atomic_write_text(ctx.project.root / "report.md", render_markdown(report, written, ctx.project.root.name))
        atomic_write_text(ctx.out_dir / "report.json", text)
        # every source's scores of a report of hundreds, beside report.md (its table: the highest and lowest)
        table, path = sources_csv(report), ctx.project.root / SOURCES_FILE
        if table is not None:
            if path.is_symlink():  # (a copied project's) replaced, not written through, as a plot
                path.unlink()      # (a link where none is written is the user's: left alone)
            _keep_a_file_of_the_users(ctx, path)
            atomic_write_text(path, table)
        elif path.is_file() and _written_by_subsetctl(path):  # an earlier run's, of more sources than now
            path.unlink()
        return {"plots": list(written.values()), **({"files": [SOURCES_FILE]} if table is not None else {}),
                "plot_sha256": {name: sha256_file(ctx.project.root / name) for name in written.values()}}


def _remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` (``plots/``) when it holds nothing: an interrupted report stage, or
    one with no plot to draw, left the empty folder it had made; one holding any file (a
    plot, a user's) stays."""
    with contextlib.suppress(OSError):  # (not empty, gone, or not a folder: left as it is)
        folder.rmdir()


def _calibrate_grid_figures(project: Project) -> str | None:
    """The checksum of the calibrate stage's :data:`~subsetctl.stages.calibrate.GRID_FIGURES`
    as its manifest records it; None when it has none (not run, or run by an older version)."""
    from subsetctl.stages.calibrate import GRID_FIGURES

    manifest = project.read_manifest("calibrate") or {}
    entry = (manifest.get("artifacts") or {}).get(GRID_FIGURES)
    return entry.get("sha256") if isinstance(entry, dict) else None


def _written_by_subsetctl(path: Path) -> bool:
    """Whether ``path`` (report.md, report.json or report_sources.csv in the project folder) is
    a report some subsetctl wrote: report.md under its heading, report.json an object with
    ``stages``, report_sources.csv headed ``source,<label>,<label> selected``."""
    try:
        if path.suffix == ".md":
            with path.open("rb") as handle:
                return handle.read(len(MARKDOWN_HEADING)) == MARKDOWN_HEADING
        if path.suffix == ".csv":
            with path.open(encoding="utf-8", newline="") as handle:
                header = next(csv.reader(handle), [])
            return len(header) >= 3 and header[0] == "source" and header[2] == f"{header[1]} selected"
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # (UnicodeDecodeError and JSONDecodeError are ValueErrors)
        return False
    return isinstance(data, dict) and "stages" in data


def _keep_a_file_of_the_users(ctx: StageContext, path: Path) -> None:
    """A report.md, report.json or report_sources.csv of the user's own (notes next to the
    spec, a project folder made before subsetctl used it) is copied to ``NAME.bak`` before the report
    replaces it, and the run says so: it was overwritten without a word."""
    if path.is_file() and not path.is_symlink() and not _written_by_subsetctl(path):
        backup = keep_as_backup(path)
        ctx.reporter.warn(f"{path} was not a subsetctl report it could read (a file of your own, or one damaged): "
                          f"kept as {backup.name} before the report replaced it.")
