"""The whole pipeline on a tiny random model: runs, resumes, skips what is up to date."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from subsetctl.api import plan_project, run_project
from subsetctl.cli import main


def test_full_run_then_noop_then_partial_rerun(tiny_project: Path) -> None:
    results = run_project(tiny_project)
    ran = [r["stage"] for r in results if r["action"] == "ran"]
    assert ran == ["data", "meta_init", "gradients", "calibrate", "search", "finetune", "evaluate", "report"]
    report = json.loads((tiny_project / "report.json").read_text())
    assert set(report["strategies"]) == {"exhaustive", "gradient_similarity"}
    assert set(report["test_metrics"]) >= {"exhaustive", "all", "target_only"}
    assert (tiny_project / "report.md").read_text().startswith("# subsetctl report")
    assert (tiny_project / "plots" / "source_scores.png").is_file()

    again = run_project(tiny_project)
    assert all(r["action"] in ("up to date", "disabled") for r in again)

    # a search-only change re-runs search and what depends on it, not the model stages
    statuses = {s.name: s for s in plan_project(tiny_project, ["search.strategies[0].name=forward"])[2]}
    assert not statuses["meta_init"].will_run and not statuses["gradients"].will_run
    assert statuses["search"].will_run and "search.strategies[0].name" in statuses["search"].reasons[0]


def test_cli_run_prints_report(tiny_project: Path) -> None:
    result = CliRunner().invoke(main, ["run", str(tiny_project), "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "selections" in result.output and "test metrics" in result.output
    report = CliRunner().invoke(main, ["report", str(tiny_project)])
    assert report.exit_code == 0 and "per-source scores" in report.output
