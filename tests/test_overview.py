"""`subsetctl ls FOLDER` of a folder of projects (a sweep's variants): one row per project."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from subsetctl.cli import main
from subsetctl.project import Project


def _sweep(tmp_path: Path, tiny_project_ran) -> Path:
    """A sweep's folder: v2 (run, its spec edited since), v10 (run with an override), fresh
    (never run), broken (a spec that is no YAML) and a folder that is no project."""
    sweep = tmp_path / "sweep"
    v2, v10 = tiny_project_ran(into=sweep / "v2"), tiny_project_ran(into=sweep / "v10")
    spec = yaml.safe_load((v2 / "subsetctl.yaml").read_text())
    spec["finetune"]["steps"] += 1
    (v2 / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    from subsetctl.api import run_project

    run_project(v10, overrides=[f"finetune.steps={spec['finetune']['steps']}"])
    shutil.copytree(v2, sweep / "fresh", ignore=shutil.ignore_patterns(".subsetctl", "report*", "plots"))
    (sweep / "broken").mkdir()
    (sweep / "broken" / "subsetctl.yaml").write_text("project: [\n")
    (sweep / "notes").mkdir()
    return sweep


def test_ls_of_a_folder_of_projects_is_one_row_each(tmp_path: Path, tiny_project_ran) -> None:
    """`ls sweep` of a folder holding project copies was an error ("v0, v1, v2 and 3 more are
    projects"): it lists each (v2 before v10) with its state, final pick, test figures, the
    overrides its results were made with and when it last ran; a broken spec is its row's
    error, not the command's."""
    sweep = _sweep(tmp_path, tiny_project_ran)
    result = CliRunner().invoke(main, ["ls", str(sweep), "--format", "json"], catch_exceptions=False)
    # a row in error fails the command (a sweep's script saw exit 0), the list still printed in full
    assert result.exit_code == 1, result.output
    assert "1 of 4 projects" in result.stderr and "(broken)" in result.stderr
    rows = {row["project"]: row for row in json.loads(result.stdout)}
    assert list(rows) == ["broken", "fresh", "v2", "v10"]
    assert all(row["json_format"] == 1 for row in rows.values())
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8").split())
    listed = readme[readme.index("subsetctl ls sweep [--format json]"):].split("}", 1)[0] + ","
    assert [key for key in rows["v2"] if f" {key}," not in listed and f"{{{key}," not in listed] == [], listed
    broken = rows["broken"]
    assert broken["state"] == "error" and "malformed YAML" in broken["error"] and "\n" not in broken["error"]
    assert rows["fresh"]["state"] == "not run" and rows["fresh"]["final"] is None and rows["fresh"]["last_run"] is None
    v2, v10 = rows["v2"], rows["v10"]
    report = json.loads((sweep / "v2" / "report.json").read_text())
    final = report["final"]
    assert v2["state"] == "stale" and v2["stale"] == ["finetune", "evaluate", "report"] and v2["overrides"] == {}
    assert v2["final"] == final and v2["test_loss"] == report["test_metrics"][final]["loss_mean"]
    assert v2["score"] == report["test_metrics"][final]["score_mean"] and v2["metric"] == "exact_match"
    assert v2["sources"] == {**report["strategies"], **report["baselines"]}[final]["selected"]
    assert v2["last_run"] == Project(sweep / "v2").read_manifest("report")["written_at"]  # the last stage's
    # its results are the override's: the spec file holds other values (stale without them, as `report` says)
    assert list(v10["overrides"]) == ["finetune.steps=3"] and v10["state"] == "stale"
    assert v10["last_run"] > v2["last_run"]

    text = CliRunner().invoke(main, ["ls", str(sweep)], env={"COLUMNS": "200"})
    assert text.exit_code == 1, text.output
    lines = text.output.splitlines()
    row_of = {name: next(line for line in lines if line.startswith(f"│ {name} ")) for name in rows}
    assert "up to date" not in text.output  # (none of them is)
    assert "stale: finetune, evaluate, report" in row_of["v2"] and "finetune.steps=3" in row_of["v10"]
    assert "not run" in row_of["fresh"] and "error" in row_of["broken"]
    assert any(line.startswith("broken: ") and "malformed YAML" in line for line in lines)


def test_ls_of_a_folder_of_projects_says_up_to_date(tmp_path: Path, tiny_project_ran) -> None:
    """A project as its run left it is "up to date", with its final pick's figures in the row."""
    tiny_project_ran(into=tmp_path / "sweep" / "v0")
    result = CliRunner().invoke(main, ["ls", str(tmp_path / "sweep")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("│ v0 "))
    assert "up to date" in row and "exact_match" in result.output


def test_ls_finds_a_nested_sweep_and_lists_the_projects_of_the_current_folder(
        tmp_path: Path, tiny_project_ran, monkeypatch) -> None:
    """A nested sweep (sweep/lam0.1/seed0) was not found: `ls sweep` said nothing of it, and
    `ls` with no argument in a folder of projects listed the registries. Each project is named
    by its path in the folder (seed2 before seed10); `--registries` lists the registries."""
    sweep = tmp_path / "sweep"
    for name in ("lam0.1/seed10", "lam0.1/seed2", "lam1/seed0"):
        tiny_project_ran(into=sweep / name)
    (sweep / "notes").mkdir()
    result = CliRunner().invoke(main, ["ls", str(sweep), "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [row["project"] for row in rows] == ["lam0.1/seed2", "lam0.1/seed10", "lam1/seed0"]
    assert all(row["state"] == "up to date" for row in rows)
    assert rows[0]["path"] == str(sweep / "lam0.1" / "seed2")

    monkeypatch.chdir(sweep / "lam0.1")
    text = CliRunner().invoke(main, ["ls"], env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    assert any(line.startswith("│ seed10 ") for line in text.output.splitlines()), text.output
    assert "`subsetctl ls --registries`" in text.output and "random_ensemble" not in text.output
    registries = CliRunner().invoke(main, ["ls", "--registries"], env={"COLUMNS": "200"})
    assert registries.exit_code == 0 and "random_ensemble" in registries.output and "seed10" not in registries.output
    # `ls` alone looks right inside the current folder only: a checkout's examples/quickstart is no sweep
    monkeypatch.chdir(sweep)
    assert "random_ensemble" in CliRunner().invoke(main, ["ls"], env={"COLUMNS": "200"}).output


def test_ls_of_a_folder_says_how_many_entries_were_not_looked_at(
        tmp_path: Path, tiny_project_ran, monkeypatch) -> None:
    """Only the first entries of a folder are looked at (a home folder may hold thousands):
    the rest were left out silently; the table now says how many."""
    from subsetctl import overview

    monkeypatch.setattr(overview, "LOOKED_AT", 2)
    sweep = tmp_path / "sweep"
    for name in ("v0", "v1", "v2", "v3"):
        tiny_project_ran(into=sweep / name)
    result = CliRunner().invoke(main, ["ls", str(sweep)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert result.output.count("up to date") == 2
    assert "2 more entries of" in result.output and "not looked at" in result.output
    as_json = CliRunner().invoke(main, ["ls", str(sweep), "--format", "json"])
    assert len(json.loads(as_json.stdout)) == 2 and "2 more entries" in as_json.stderr


def test_ls_of_a_project_being_run_shows_its_last_finished_figures(
        tmp_path: Path, tiny_project_ran, monkeypatch) -> None:
    """A run redoing an early stage (its spec's meta_init edited) leaves the stages after it
    without current results: its row showed "–" for the pick and its figures until the run
    ended; it shows the last finished report's, with the stage being run."""
    from subsetctl.api import run_project

    v0 = tiny_project_ran(into=tmp_path / "sweep" / "v0")
    report = json.loads((v0 / "report.json").read_text())
    spec = yaml.safe_load((v0 / "subsetctl.yaml").read_text())
    spec["meta_init"]["steps"] += 2
    (v0 / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    run_project(v0, until="meta_init")  # as a run is while it computes gradients
    monkeypatch.setattr(Project, "run_in_progress", lambda self: "4242")
    monkeypatch.setattr(Project, "stage_in_progress", lambda self, pid: "gradients")
    result = CliRunner().invoke(main, ["ls", str(tmp_path / "sweep"), "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["state"] == "running" and row["running"] == "gradients"
    final = report["final"]
    assert row["final"] == final and row["test_loss"] == report["test_metrics"][final]["loss_mean"]
    shown = " ".join(CliRunner().invoke(main, ["ls", str(tmp_path / "sweep")], env={"COLUMNS": "200"}).output.split())
    assert "running now: gradients" in shown and final in shown, shown  # (the old pick beside "running now" read
    assert ("(v0 is running now: its final pick, test loss and score are those of its last finished run, not of the "
            "run in progress") in shown, shown  # as that run's)


_LONG_NAMES = ["multilingual-qa-finetune-ablation-2026", "tiny", "sentiment-classifier-baseline-xl",
               "reasoning-gym-arith-sweep", "code-completion-python-v3", "medical-qa-subset-search",
               "project-with-a-very-long-name-indeed", "ja-東京-qa-プロジェクト"]


def _overview_text(names: list[str], width: int) -> str:
    """`ls`'s table of projects named ``names`` (all run, one with an override) on a terminal ``width`` wide."""
    import io

    from rich.console import Console

    from subsetctl.overview import print_overview

    rows = [{"project": name, "state": "stale" if i % 3 else "up to date", "stale": ["search", "finetune"],
             "not_run": [], "running": None, "error": None, "final": "gradient_similarity" if i % 2 else "all",
             "sources": ["a", "b"], "test_loss": 1.2345, "score": 0.5, "metric": "exact_match", "diverged": False,
             "overrides": ["finetune.steps=5"] if i == 2 else [], "last_run": "2026-12-05T10:02:52+00:00"}
            for i, name in enumerate(names)]
    out = io.StringIO()
    print_overview(rows, Path("sweep"), Console(file=out, width=width, force_terminal=False, soft_wrap=True))  # (as cli's)
    return out.getvalue()


def test_ls_keeps_project_names_whole_beside_the_other_columns() -> None:
    """The project column has priority: at 80 and 120 columns 8 long names are each whole on
    one line (the other columns fold, and at 80 those that leave no room for them are left
    out, which a line says); at 60 the header is whole and the table is not cut at the right
    edge. A fixed 6-wide column made "projec/t" and broke every name mid-word at 80."""
    from rich.cells import cell_len

    for width in (60, 80, 120):
        text = _overview_text(_LONG_NAMES, width)
        lines = text.splitlines()
        assert all(cell_len(line.rstrip()) <= width for line in lines), text
        table = [line for line in lines if line[:1] in "┏┃┡│└"]
        assert all(line.rstrip()[-1] in "┓┃┩│┘" for line in table), text  # (its right border drawn: not cropped)
        assert any(line.startswith("┃ project ") for line in table), text
        if width >= 80:
            assert all(any(f"│ {name} " in line for line in table) for name in _LONG_NAMES), text
        if width == 80:
            assert " ".join(text.split()).count("Left out for the project names and the columns' words to fit whole in "
                                                "80 terminal columns: sources, overrides, last run") == 1, text
    short = _overview_text(["v1", "v2", "v3"], 160)  # (names that fit beside every column)
    assert "Left out" not in short and short.splitlines()[1].count("┳") == 7  # (all 8 columns)


@pytest.mark.parametrize("width", [60, 80, 120])
def test_ls_of_a_sweep_with_short_names_folds_its_cells_between_words(width: int) -> None:
    """At 80 columns a sweep of 6 short-named projects broke words mid-word ("gradien/t_simil/arity",
    "overri/des", "2026-12/-05", "finetun/e"): each text column folded to a fixed least width.
    Every column is now as wide as its widest word, header's included, and where those do not
    fit the columns `ls` leaves out first go (a line says which, and why: not "for the project
    names" beside names this short, and folded at the width, not one 150-character line); the
    table stays within the terminal's width."""
    from rich.cells import cell_len

    text = _overview_text(["v0", "v1", "v2", "lam0.1", "lam1", "seeds3"], width)
    lines = text.splitlines()
    assert all(cell_len(line.rstrip()) <= width for line in lines), text
    table = [line for line in lines if line[:1] in "┏┃┡│└"]
    header = [word for line in table if line.startswith("┃") for cell in line.strip("┃").split("┃")
              for word in cell.split()]
    shown = {name for name in ("project", "state", "final", "pick", "sources", "test", "loss", "score", "overrides",
                               "last", "run") if name in header}
    assert {"project", "state", "final", "pick", "score"} <= shown, text  # (each header word whole)
    words = {"gradient_similarity", "search,", "finetune", "up", "date"}
    words |= {"finetune.steps=5"} if "overrides" in shown else set()
    words |= {"2026-12-05", "10:02"} if "last" in shown else set()
    cells = {cell.strip() for line in table if line.startswith("│") for cell in line.strip("│").split("│")}
    found = {word for cell in cells for word in cell.split()}
    assert words <= found, (sorted(words - found), text)
    if width == 120:
        assert "Left out" not in text and {"sources", "overrides", "last"} <= shown, text
    else:  # (the names are short: the columns' words alone leave no room)
        assert "(Left out for the columns to fit with their words whole in " in text, text
        assert "project names" not in text, text


def test_ls_json_says_diverged_is_unknown_where_there_is_no_test_loss(jsonl_project: Path) -> None:
    """`ls --format json` gave `"diverged": false`, "known not to have diverged", for a project
    not run yet and for a final pick not evaluated yet (a run stopped or still going before
    evaluate), with no fine-tune of it finished: null (unknown) there, as for an old report.json."""
    from subsetctl.overview import _pick, project_row

    row = project_row(jsonl_project)
    assert row["state"] == "not run" and row["test_loss"] is None and row["diverged"] is None, row
    picked = {"report_format": 19, "final": "forward", "strategies": {"forward": {"selected": ["a"]}}}
    assert _pick(picked)["final"] == "forward" and _pick(picked)["diverged"] is None
    evaluated = {**picked, "test_metrics": {"forward": {"metric": "exact_match", "loss_mean": 4.6, "score_mean": 0.0}}}
    assert _pick(evaluated)["diverged"] is False


def test_ls_marks_the_test_loss_of_a_final_pick_whose_fine_tune_diverged() -> None:
    """A sweep variant run with `finetune.lr: 1e38` showed its final pick's test loss and score
    among the others', which its fine-tune's divergence made those of an untrained adapter:
    `ls` said nothing of it (report.json's test_metrics now has diverged_seeds)."""
    import io

    from rich.console import Console

    from subsetctl.overview import _pick, print_overview

    report = {"final": "forward", "strategies": {"forward": {"selected": ["a"]}},
              "test_metrics": {"forward": {"metric": "exact_match", "loss_mean": 4.672, "score_mean": 0.0,
                                           "diverged_seeds": [0]}}}
    assert _pick(report)["diverged"] is True
    del report["test_metrics"]["forward"]["diverged_seeds"]
    assert _pick({**report, "report_format": 19})["diverged"] is False
    # a report.json before format 19 records no diverged_seeds: unknown, not "none diverged"
    assert _pick({**report, "report_format": 18})["diverged"] is None and _pick(report)["diverged"] is None
    rows = [{"project": name, "state": "up to date", "stale": [], "not_run": [], "running": None, "error": None,
             "final": "forward", "sources": ["a"], "test_loss": 4.672, "score": 0.0, "metric": "exact_match",
             "diverged": name == "lr1e38", "overrides": [], "last_run": None} for name in ("lr1e-3", "lr1e38")]
    out = io.StringIO()
    print_overview(rows, Path("sweep"), Console(file=out, width=160, force_terminal=False))
    text = out.getvalue()
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if line.startswith("│")}
    assert "4.672 (diverged)" in lines["lr1e38"] and "diverged" not in lines["lr1e-3"], text
    assert "(diverged): a fine-tune of the final pick diverged" in text, text
    assert "older than report format" not in text, text
    # shown from a report.json before format 19 (a project stale for more than its report's format): said so
    rows[0]["diverged"] = None
    out = io.StringIO()
    print_overview(rows, Path("sweep"), Console(file=out, width=160, force_terminal=False))
    text = " ".join(out.getvalue().split())
    assert ("lr1e-3's report.json is older than report format 19, which records the fine-tunes that diverged: its "
            "test losses are not marked (diverged) even where one did; `subsetctl report DIR` says whether any "
            "did.") in text, text


def _report_of_an_earlier_subsetctl(project: Path) -> None:
    """The report stage's manifest as an earlier subsetctl wrote it: a lower report_format."""
    from subsetctl.project import fingerprint
    from subsetctl.report.build import REPORT_FORMAT

    manifest_file = project / ".subsetctl" / "report" / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["inputs"]["extra"]["report_format"] = REPORT_FORMAT - 1
    manifest["fingerprint"] = fingerprint(manifest["inputs"])
    manifest_file.write_text(json.dumps(manifest))


def _overrides_the_spec_file_holds_since(project: Path) -> None:
    """Results of `run finetune.steps=S`, then ``steps: S`` written into the spec file."""
    from subsetctl.api import run_project

    spec = yaml.safe_load((project / "subsetctl.yaml").read_text())
    spec["finetune"]["steps"] += 1
    run_project(project, overrides=[f"finetune.steps={spec['finetune']['steps']}"])
    (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


@pytest.mark.parametrize("outdated_text", [_report_of_an_earlier_subsetctl, _overrides_the_spec_file_holds_since])
def test_ls_lists_the_report_plan_and_run_write_again(tmp_path: Path, tiny_project_ran, outdated_text) -> None:
    """A report only whose own text is outdated (written by an earlier subsetctl, or naming
    overrides the spec file holds since, nothing else changed): `ls` said "up to date" while
    `plan` listed the report stage to redo and `run` wrote it again. `ls` lists it as `plan`
    does; `report` still shows it as this subsetctl writes it, nothing stale."""
    from subsetctl.api import plan_project, run_project

    v0 = tiny_project_ran(into=tmp_path / "sweep" / "v0")
    outdated_text(v0)
    assert [s.name for s in plan_project(v0)[2] if s.will_run] == ["report"]
    result = CliRunner().invoke(main, ["ls", str(tmp_path / "sweep"), "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["state"] == "stale" and row["stale"] == ["report"], row
    text = CliRunner().invoke(main, ["ls", str(tmp_path / "sweep")], env={"COLUMNS": "200"}).output
    assert "stale: report" in text and "up to date" not in text, text
    shown = json.loads(CliRunner().invoke(main, ["report", str(v0), "--format", "json"]).output)
    assert shown["stale"] == [] and shown["outdated"] == [], shown  # `report`'s own view is unchanged

    assert [r["stage"] for r in run_project(v0) if r["action"] == "ran"] == ["report"]
    [row] = json.loads(CliRunner().invoke(main, ["ls", str(tmp_path / "sweep"), "--format", "json"]).output)
    assert row["state"] == "up to date" and row["stale"] == [], row


@pytest.mark.parametrize("damaged", ["search/provenance.json", "search/manifest.json"])
def test_ls_lists_the_stages_after_a_damaged_one_as_plan_does(tmp_path: Path, tiny_project_ran, damaged: str) -> None:
    """A stage whose files fail their checksums (or whose manifest is unreadable): `plan` and
    `run` redo it and every stage after it, while `ls`'s row said "stale: search" alone of the
    damaged file (of the unreadable manifest it listed them already: their results count as
    outdated). The row lists what `plan` lists; `report`'s own view is unchanged."""
    from subsetctl.api import plan_project

    v0 = tiny_project_ran(into=tmp_path / "sweep" / "v0")
    (v0 / ".subsetctl" / damaged).write_bytes(b"garbage")
    planned = [s.name for s in plan_project(v0)[2] if s.will_run]
    assert planned == ["search", "finetune", "evaluate", "report"]
    result = CliRunner().invoke(main, ["ls", str(tmp_path / "sweep"), "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["state"] == "stale" and row["stale"] == planned, row
    text = CliRunner().invoke(main, ["ls", str(tmp_path / "sweep")], env={"COLUMNS": "200"}).output
    assert "stale: search, finetune, evaluate, report" in text, text
    shown = json.loads(CliRunner().invoke(main, ["report", str(v0), "--format", "json"]).output)
    assert shown["damaged"] == ["search"] and shown["stale"] == [], shown
