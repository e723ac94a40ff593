"""`subsetctl init NEWDIR --from-report PATH`: the spec a report's results were made with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from subsetctl.cli import main


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_a_variant_made_with_overrides_is_written_back_up_to_date(tmp_path: Path, tiny_llama: Path,
                                                                  jsonl_data_writer) -> None:
    """A variant run with overrides, its spec since overwritten: the spec written back from its
    report, in a folder holding the same data and the variant's .subsetctl, is up to date at
    every stage (the report stage rewrites only its overrides line); from a folder without
    the data, its paths lead to the files beside the report."""
    from tinymodels import tiny_project_spec

    from subsetctl.api import plan_project, run_project

    variant = tmp_path / "v7"
    variant.mkdir()
    jsonl_data_writer(variant)
    (variant / "subsetctl.yaml").write_text(yaml.safe_dump(tiny_project_spec(tiny_llama), sort_keys=False))
    run_project(variant, ["sources.a.max_examples=5", "gradients.d=8", "gradients.memory_budget_mb=64"])
    (variant / "subsetctl.yaml").write_text((variant / "subsetctl.yaml").read_text().replace("d: 16", "d: 32"))

    again = tmp_path / "again"
    again.mkdir()
    for data in variant.glob("*.jsonl"):
        shutil.copy(data, again)
    result = invoke("init", str(again), "--from-report", str(variant / "report.json"))
    assert result.exit_code == 0, result.output
    text = (again / "subsetctl.yaml").read_text()
    assert f"from {variant / 'report.json'}" in text
    written = yaml.safe_load(text)
    assert written["gradients"]["d"] == 8
    # the settings no result depends on, as the run had them (they were written at their defaults, and warned of)
    assert written["gradients"]["memory_budget_mb"] == 64 and written["meta_init"]["checkpoint_every"] == 2
    assert written["executor"] == {"backend": "sequential", "n_jobs": 1} and "at their defaults" not in result.output
    assert next(s for s in written["sources"] if s["name"] == "a")["max_examples"] == 5
    assert {s["loader"]["path"] for s in written["sources"]} == {"a.jsonl", "b.jsonl", "target.jsonl"}
    shutil.copytree(variant / ".subsetctl", again / ".subsetctl")
    _, _, statuses = plan_project(again)
    assert {s.name: s.state for s in statuses if s.name != "report"} == {
        "data": "up to date", "meta_init": "up to date", "gradients": "up to date", "verify": "disabled",
        "calibrate": "up to date", "search": "up to date", "finetune": "up to date", "evaluate": "up to date"}

    apart = tmp_path / "apart"
    result = invoke("init", str(apart), "--from-report", str(variant))
    assert result.exit_code == 0, result.output
    assert "../v7/a.jsonl" in (apart / "subsetctl.yaml").read_text()
    assert "Paths: " in result.output and "differ" not in result.output

    (variant / "b.jsonl").write_text((variant / "b.jsonl").read_text() + '{"prompt": "x", "response": "y"}\n')
    result = invoke("init", str(tmp_path / "edited"), "--from-report", str(variant))
    assert result.exit_code == 0
    assert "the data files differ" in result.output and "b: its files' sha256" in result.output


def test_compact_source_settings_are_written_out_per_source() -> None:
    """``sources[*]`` and ``sources[{name}]`` keys become each source's settings; a list of
    strategies, and a list of plain values, come back as lists."""
    from subsetctl.spec.from_report import spec_data

    data = spec_data({"sources[*].loader.type": "jsonl", "sources[{name}].loader.path": "pool/{name}.jsonl",
                      "sources[0].name": "a", "sources[1].name": "b", "sources[1].max_examples": 3,
                      "search.strategies[0].name": "greedy", "search.strategies[1].name": "exhaustive",
                      "calibrate.lambda_grid": [0.1, 1.0], "target.name": "t", "target.label_map.v1.2": "yes",
                      "sources[1].loader.where.task[0]": "x"})
    assert data["sources"] == [{"loader": {"path": "pool/a.jsonl", "type": "jsonl"}, "name": "a"},
                               {"loader": {"path": "pool/b.jsonl", "type": "jsonl", "where": {"task[0]": "x"}},
                                "max_examples": 3, "name": "b"}]
    assert data["target"] == {"name": "t", "label_map": {"v1.2": "yes"}}
    assert data["search"] == {"strategies": [{"name": "greedy"}, {"name": "exhaustive"}]}
    assert data["calibrate"] == {"lambda_grid": [0.1, 1.0]}
    assert list(data) == ["target", "sources", "calibrate", "search"]


def test_a_loader_options_or_config_key_holding_dots_is_written_back_as_one_key(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    """A plugin loader's ``options`` (or reasoning_gym's ``config``) key holding dots (a
    Hugging Face ``data_files`` split, ``train.v2``) was written to report.json's settings as
    ``options.train.v2``, which --from-report split into nested keys: another option, and the
    data stage's fingerprint another. report.json writes such a key in quotes, as an
    override names it; a nested mapping stays nested, and a label_map's name holding dots
    is one name, quoted or not (reports written before)."""
    from types import SimpleNamespace

    from subsetctl.report import build
    from subsetctl.spec.from_report import spec_data

    loader = {"type": "plugin", "name": "hf", "options": {"train.v2": "t.json", "nested": {"a": 1}}}
    gym = {"type": "reasoning_gym", "task": "x", "config": {"min.digits": 2}}
    recorded = {"target": {"name": "t", "loader": loader, "label_map": {"v1.2": "yes"}},
                "sources": [{"name": "a", "loader": gym}]}
    stage = SimpleNamespace(settings_not_read=lambda recorded: ())
    monkeypatch.setattr(build, "_shown_results", lambda project, skip: iter([(stage, {"inputs": {"slice": recorded}})]))
    settings = build.results_settings(SimpleNamespace(root=tmp_path))
    assert settings["target.loader.options.\"train.v2\""] == "t.json", settings
    data = spec_data(settings)
    assert data["target"] == recorded["target"] and data["sources"] == recorded["sources"], data
    assert spec_data({"target.label_map.v1.2": "yes"})["target"]["label_map"] == {"v1.2": "yes"}


def test_a_setting_calibrate_recorded_unread_is_taken_from_the_stage_that_read_it(tmp_path: Path,
                                                                                  monkeypatch) -> None:
    """Without verify, calibrate records the estimator settings at their defaults (it builds no
    estimator); report.json's settings took them from it, the first stage, and said
    ``estimate.max_iter: 50`` where the search ran with 77 (`init --from-report` then wrote 50);
    likewise verify's learning rate of a kind it does not run. The search's value is taken; a
    setting no stage read stays as recorded."""
    from types import SimpleNamespace

    from subsetctl.report import build
    from subsetctl.stages.calibrate import CalibrateStage
    from subsetctl.stages.search import SearchStage
    from subsetctl.stages.verify import VerifyStage

    def calibrate(verify: bool) -> dict:
        return {"inputs": {"slice": {"verify.enabled": verify, "estimate": {"estimator": "exact", "max_iter": 50},
                                     "calibrate": {"lambda_grid": [0.1, 1.0]}}}}

    search = {"inputs": {"slice": {"estimate": {"estimator": "exact", "max_iter": 77}}}}
    for verify, max_iter in ((False, 77), (True, 50)):  # (verify on: calibrate read it, first in order)
        shown = [(CalibrateStage(), calibrate(verify)), (SearchStage(), search)]
        monkeypatch.setattr(build, "_shown_results", lambda project, skip, shown=shown: iter(shown))
        settings = build.results_settings(SimpleNamespace(root=tmp_path))
        assert settings["estimate.max_iter"] == max_iter and settings["calibrate.lambda_grid"] == [0.1, 1.0], settings
    # verify of kinds [ce] records lr_surrogate at its default; a linear_sgd search read it
    shown = [(VerifyStage(), {"inputs": {"slice": {"verify": {"kinds": ["ce"], "lr_ce": 1e-4, "lr_surrogate": 0.01}}}}),
             (SearchStage(), {"inputs": {"slice": {"verify.lr_surrogate": 0.5}}})]
    monkeypatch.setattr(build, "_shown_results", lambda project, skip: iter(shown))
    settings = build.results_settings(SimpleNamespace(root=tmp_path))
    assert settings["verify.lr_surrogate"] == 0.5 and settings["verify.lr_ce"] == 1e-4, settings


def test_verify_budget_a_model_backed_search_read_is_reported_as_it_ran(tmp_path: Path, monkeypatch) -> None:
    """With verify on, `estimate.estimator: true_finetune` and `verify.kinds: [ce]`, verify and
    calibrate (which evaluates ``fast`` in its place) both record ``verify.lr_surrogate`` at its
    default, unread; report.json's ``settings`` took calibrate's 0.002 where the search's real
    fine-tunes ran with 0.5. Each stage's slice as it records it."""
    from types import SimpleNamespace

    from subsetctl.report import build
    from subsetctl.spec import Spec
    from subsetctl.stages.calibrate import CalibrateStage
    from subsetctl.stages.search import SearchStage
    from subsetctl.stages.verify import VerifyStage

    for extra in ([], ["linear_sgd"]):  # (calibrating linear_sgd too, calibrate reads it itself)
        spec = Spec.model_validate({
            "target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
            "sources": [{"name": "s", "loader": {"type": "jsonl", "path": "s.jsonl"}}],
            "verify": {"enabled": True, "kinds": ["ce"], "lr_surrogate": 0.5, "steps": 7},
            "estimate": {"estimator": "true_finetune"}, "calibrate": {"estimators": extra}})
        shown = [(stage, {"inputs": {"slice": stage.spec_slice(spec)}})
                 for stage in (VerifyStage(), CalibrateStage(), SearchStage())]
        monkeypatch.setattr(build, "_shown_results", lambda project, skip, shown=shown: iter(shown))
        settings = build.results_settings(SimpleNamespace(root=tmp_path))
        assert settings["verify.lr_surrogate"] == 0.5 and settings["verify.steps"] == 7, (extra, settings)


def test_a_relative_model_folder_found_neither_in_newdir_nor_beside_the_report_is_warned_of(tmp_path: Path) -> None:
    """A relative ``model.source`` (a model folder inside the report's project) that leads to
    no folder from NEWDIR, nor beside the report, was kept silently: `run` from NEWDIR then
    failed on it, or took ``models/tiny`` for a hub id. It is warned of, with the path to
    write; a folder found, a packaged model and a hub id (no local files recorded) are not."""
    from subsetctl.spec.from_report import model_source_not_found

    origin, newdir = tmp_path / "v7", tmp_path / "new"
    (origin / "kept").mkdir(parents=True)
    newdir.mkdir()
    local = {"input_files": {"model": {"model_files": {"config.json": {"sha256": "0"}}}}}
    warning = model_source_not_found({"model": {"source": "models/tiny"}}, local, origin, newdir)
    assert warning is not None and "model.source 'models/tiny'" in warning, warning
    assert str(newdir / "subsetctl.yaml") in warning and str(origin / "models/tiny") in warning, warning
    assert model_source_not_found({"model": {"source": "tiny"}}, {}, origin, newdir) is not None
    assert model_source_not_found({"model": {"source": "org/name"}}, {}, origin, newdir) is None  # a hub id
    assert model_source_not_found({"model": {"source": "kept"}}, local, origin, newdir) is None
    (newdir / "models" / "tiny").mkdir(parents=True)
    assert model_source_not_found({"model": {"source": "models/tiny"}}, local, origin, newdir) is None
    assert model_source_not_found({"model": {"source": "smollm2-135m-instruct"}}, {}, origin, newdir) is None


def test_a_report_too_old_to_hold_settings_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "report.json"
    old.write_text(json.dumps({"report_format": 7, "final": {}}))
    result = invoke("init", str(tmp_path / "new"), "--from-report", str(old))
    assert result.exit_code == 1
    assert "format 7" in result.output and "settings" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "new").exists()
    result = invoke("init", str(tmp_path / "new"), "--from-report", str(tmp_path / "nowhere"))
    assert result.exit_code == 1 and "does not exist" in result.output
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"report_format": 17, "settings": {"target.name": "t", "model.max_length": -1}}))
    result = invoke("init", str(tmp_path / "new"), "--from-report", str(invalid))
    assert result.exit_code == 1 and "do not make a valid spec" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "new").exists()
    result = CliRunner().invoke(main, ["init", str(tmp_path / "new"), "-t", "minimal", "--from-report", str(old)])
    assert result.exit_code == 2 and "pass one of them" in result.output


def test_a_list_items_setting_at_the_default_lists_value_is_kept() -> None:
    """A strategy named as the default list's first one (``search.strategies[0].name``) is
    kept: left out as "at its default", the strategy had no name and the spec was refused."""
    from subsetctl.spec import SearchSpec
    from subsetctl.spec.from_report import without_defaults

    first = SearchSpec().strategies[0]
    settings = {"search.strategies[0].name": first.name, "search.strategies[0].label": first.label,
                "calibrate.lambda_grid": [0.5], "project.seed": 0}
    assert without_defaults(settings) == {"search.strategies[0].name": first.name,
                                          "search.strategies[0].label": first.label, "calibrate.lambda_grid": [0.5]}


def test_a_plugin_option_named_where_or_label_map_is_split_as_any_other_key() -> None:
    """The rest of a key after the first ``.where.`` or ``.label_map.`` anywhere in it was
    taken as one name: a plugin loader's option named so, holding a mapping (``options.where.a.b``),
    came back as ``where: {"a.b": ...}``, another option. Only a loader's ``where`` and a
    source's ``label_map`` are names to the end of the key."""
    from subsetctl.spec.from_report import spec_data

    settings = {"target.name": "t", "target.loader.type": "plugin", "target.loader.name": "hf",
                "target.loader.options.where.a.b": 1, "target.loader.options.label_map.c.d": 2,
                "sources[0].name": "s", "sources[0].loader.type": "jsonl", "sources[0].loader.path": "s.jsonl",
                "sources[0].loader.where.task.v1": "x", "sources[0].label_map.v1.2": "yes"}
    data = spec_data(settings)
    assert data["target"]["loader"]["options"] == {"where": {"a": {"b": 1}}, "label_map": {"c": {"d": 2}}}
    source = data["sources"][0]
    assert source["loader"]["where"] == {"task.v1": "x"} and source["label_map"] == {"v1.2": "yes"}


def test_code_running_settings_a_report_never_holds_are_left_out(tmp_path: Path) -> None:
    """A report.json is data a teammate shares; subsetctl records no ``plugins``, ``executor``
    or ``report`` settings in it. One holding them (edited by hand) had them written into the
    new spec, a module to import and a Dask cluster whose pickled results `run` loads, while
    the warning said they were written at their defaults: they are left out, and named."""
    from subsetctl.spec.from_report import NOT_IN_SETTINGS

    settings = {"target.name": "t", "target.loader.type": "jsonl", "target.loader.path": "t.jsonl",
                "sources[0].name": "a", "sources[0].loader.type": "jsonl", "sources[0].loader.path": "a.jsonl",
                "plugins": ["evil_mod"], "plugins[0]": "evil_mod", "executor.backend": "dask",
                "executor.address": "tcp://203.0.113.5:8786", "report.plots": False}
    shared = tmp_path / "report.json"
    shared.write_text(json.dumps({"report_format": 17, "settings": settings}))
    result = invoke("init", str(tmp_path / "new"), "--from-report", str(shared))
    assert result.exit_code == 0, result.output
    written = yaml.safe_load((tmp_path / "new" / "subsetctl.yaml").read_text())
    assert not set(written) & set(NOT_IN_SETTINGS), written
    assert "left out: report.json's settings hold plugins, plugins[0], executor.backend, executor.address" in (
        " ".join(result.output.split())), result.output


def test_the_dask_clusters_address_in_run_settings_is_left_out_and_named(tmp_path: Path) -> None:
    """report.json's ``run_settings`` give the new spec the executor the report's run had, but
    not its Dask cluster's address: `run` loads what a cluster sends back, and a shared report
    must not choose one; the warning names it, to be written by hand."""
    said = _init_from_run_settings(tmp_path, {"executor.backend": "dask", "executor.address": "tcp://203.0.113.5:8786",
                                              "executor.n_jobs": 3})
    assert "left out: executor.address 'tcp://203.0.113.5:8786'" in said, said


def _init_from_run_settings(tmp_path: Path, ran: dict) -> str:
    """`init --from-report` of a report.json of a two-source spec whose ``run_settings`` are
    ``ran`` (an executor with n_jobs 3 and a Dask cluster): checks the spec written takes
    n_jobs and no address, and gives what init printed, on one line."""
    settings = {"target.name": "t", "target.loader.type": "jsonl", "target.loader.path": "t.jsonl",
                "sources[0].name": "a", "sources[0].loader.type": "jsonl", "sources[0].loader.path": "a.jsonl"}
    shared = tmp_path / "report.json"
    shared.write_text(json.dumps({"report_format": 18, "settings": settings, "run_settings": ran}))
    result = invoke("init", str(tmp_path / "new"), "--from-report", str(shared))
    assert result.exit_code == 0, result.output
    written = yaml.safe_load((tmp_path / "new" / "subsetctl.yaml").read_text())
    assert written["executor"]["n_jobs"] == 3 and "address" not in written["executor"], written
    return " ".join(result.output.split())


def test_run_settings_record_that_a_dask_cluster_was_set_not_its_address(tmp_path: Path) -> None:
    """report.json's ``run_settings`` held ``executor.address`` as the spec had it: a private
    cluster's address went into every shared report.json. They say only that one was set, and
    `init --from-report` says the spec it writes runs on none."""
    from tinymodels import tiny_project_spec

    from subsetctl.report.build import run_settings
    from subsetctl.spec import Spec

    data = tiny_project_spec(tmp_path / "model")
    data["executor"] = {"backend": "dask", "address": "tcp://10.0.3.7:8786", "n_jobs": 3}
    ran = run_settings(Spec.model_validate(data))
    assert "10.0.3.7" not in json.dumps(ran) and ran["executor.address_set"] is True, ran
    assert run_settings(Spec.model_validate({**data, "executor": {"backend": "dask"}}))["executor.address_set"] is False
    said = _init_from_run_settings(tmp_path, ran)
    assert "left out: executor.address, the Dask cluster the report's run used, which the report does not record" in (
        said), said
    assert "run_settings hold" not in said, said  # (a key subsetctl writes, not one edited in)


def test_a_plugins_list_in_run_settings_is_warned_of_even_without_plugin_code_named(tmp_path: Path) -> None:
    """report.json's ``run_settings`` give the new spec its ``plugins:`` list, a module every
    command on it imports: a hand-edited shared report naming a module there, and no plugin
    code in ``plugins``, had it written into the spec without a word."""
    settings = {"target.name": "t", "target.loader.type": "jsonl", "target.loader.path": "t.jsonl",
                "sources[0].name": "a", "sources[0].loader.type": "jsonl", "sources[0].loader.path": "a.jsonl"}
    shared = tmp_path / "report.json"
    shared.write_text(json.dumps({"report_format": 18, "settings": settings, "plugins": {},
                                  "run_settings": {"plugins": ["evil_mod"]}}))
    result = invoke("init", str(tmp_path / "new"), "--from-report", str(shared))
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "new" / "subsetctl.yaml").read_text())["plugins"] == ["evil_mod"]
    assert ("written from report.json's run_settings: plugins 'evil_mod', which every command on the new spec, "
            "validate too, imports") in " ".join(result.output.split()), result.output


def test_a_report_folder_named_with_line_breaks_writes_no_line_into_the_spec(tmp_path: Path) -> None:
    """The header names the report's path: a shared folder named ``x\\nplugins: [evil]\\n#``
    wrote a `plugins:` line into the new spec, which every command on it then imported. A path
    that is not one printable line is named escaped, in the comment."""
    shared = tmp_path / "x\nplugins: [evil_mod]\n#"
    shared.mkdir()
    (shared / "report.json").write_text(json.dumps({"report_format": 17, "settings": {
        "target.name": "t", "target.loader.type": "jsonl", "target.loader.path": "t.jsonl",
        "sources[0].name": "a", "sources[0].loader.type": "jsonl", "sources[0].loader.path": "a.jsonl"}}))
    result = invoke("init", str(tmp_path / "new"), "--from-report", str(shared))
    assert result.exit_code == 0, result.output
    text = (tmp_path / "new" / "subsetctl.yaml").read_text()
    assert "plugins" not in yaml.safe_load(text), text
    assert "\\nplugins: [evil_mod]\\n#" in text


def test_run_settings_keys_subsetctl_never_writes_there_are_left_out_and_plugins_warned_of(tmp_path: Path) -> None:
    """``run_settings`` is data a teammate shares too: only the keys :func:`run_settings`
    writes come back. A whole ``executor`` mapping or a quoted ``executor."address"`` wrote
    a Dask cluster's address into the new spec past the left-out check, ``model.source`` or
    ``finetune.lr`` there changed what the spec runs, all unsaid. (A ``plugins`` list written
    from there is warned of: test_a_plugins_list_in_run_settings_is_warned_of_even_without_plugin_code_named.)"""
    settings = {"target.name": "t", "target.loader.type": "jsonl", "target.loader.path": "t.jsonl",
                "sources[0].name": "a", "sources[0].loader.type": "jsonl", "sources[0].loader.path": "a.jsonl"}
    cases = {"mapping": {"executor": {"backend": "dask", "address": "tcp://203.0.113.5:8786"}},
             "quoted": {"executor.backend": "dask", 'executor."address"': "tcp://203.0.113.5:8786"},
             "results": {"model.source": "org/other", "finetune.lr": 0.5, "executor.n_jobs": 3}}
    for name, ran in cases.items():
        shared = tmp_path / name / "report.json"
        shared.parent.mkdir()
        shared.write_text(json.dumps({"report_format": 18, "settings": settings, "run_settings": ran}))
        result = invoke("init", str(tmp_path / f"new_{name}"), "--from-report", str(shared))
        assert result.exit_code == 0, result.output
        written = yaml.safe_load((tmp_path / f"new_{name}" / "subsetctl.yaml").read_text())
        assert "address" not in (written.get("executor") or {}), (name, written)
        assert "model" not in written and "finetune" not in written, (name, written)
        output = " ".join(result.output.split())
        assert "left out: report.json's run_settings hold" in output and "before report format 18" not in output
    assert written["executor"] == {"n_jobs": 3}


def test_a_report_of_installed_plugins_alone_is_not_said_to_have_written_a_plugins_list(tmp_path: Path) -> None:
    """A format-18 report whose run listed no ``plugins:`` (its plugin an installed package)
    wrote no list, but the warning told to "check the modules and files the `plugins:` list
    names", as if it had."""
    settings = {"target.name": "t", "target.loader.type": "jsonl", "target.loader.path": "t.jsonl",
                "sources[0].name": "a", "sources[0].loader.type": "jsonl", "sources[0].loader.path": "a.jsonl"}
    shared = tmp_path / "report.json"
    shared.write_text(json.dumps({"report_format": 18, "settings": settings, "run_settings": {"plugins": []},
                                  "plugins": {"strategy best": {"stages": ["search"], "package": "myplug 0.1.0"}}}))
    result = invoke("init", str(tmp_path / "new"), "--from-report", str(shared))
    assert result.exit_code == 0, result.output
    assert "plugins" not in yaml.safe_load((tmp_path / "new" / "subsetctl.yaml").read_text())
    output = " ".join(result.output.split())
    assert "the `plugins:` list names" not in output and "install the packages it names" in output, output


@pytest.mark.parametrize("report", ["rp", "rp/report.json"])
def test_plugins_from_run_settings_stay_module_names(tmp_path: Path, report: str) -> None:
    """The ``plugins:`` list names modules (PYTHONPATH finds them), never files: a package
    folder ``mypkg`` beside the report (named by its folder or its file) turned the plugin
    ``mypkg`` into ``../rp/mypkg``, which every command then refused as a plugin naming a file."""
    settings = {"target.name": "t", "target.loader.type": "jsonl", "target.loader.path": "t.jsonl",
                "sources[0].name": "a", "sources[0].loader.type": "jsonl", "sources[0].loader.path": "a.jsonl"}
    (tmp_path / "rp" / "mypkg").mkdir(parents=True)
    (tmp_path / "rp" / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "rp" / "report.json").write_text(json.dumps({
        "report_format": 18, "settings": settings, "run_settings": {"plugins": ["mypkg", "mypkg:Best"]}}))
    result = invoke("init", str(tmp_path / "new"), "--from-report", str(tmp_path / report))
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "new" / "subsetctl.yaml").read_text())["plugins"] == ["mypkg", "mypkg:Best"]


def test_from_report_given_a_projects_spec_file_reads_that_projects_report(tmp_path: Path) -> None:
    """`init new --from-report proj/subsetctl.yaml` was refused as "cannot be read as a
    report.json (not valid JSON ...)", where the other commands and `report --compare` take a
    project's spec file for its folder; now it reads proj/report.json, and where there is none
    it says the spec's folder holds none."""
    from subsetctl.errors import UserError
    from subsetctl.spec.from_report import report_json_path

    (tmp_path / "subsetctl.yaml").write_text("project: {name: p}\n")
    with pytest.raises(UserError, match="subsetctl.yaml is a spec file, and its folder holds no report.json"):
        report_json_path(tmp_path / "subsetctl.yaml")
    (tmp_path / "report.json").write_text("{}")
    assert report_json_path(tmp_path / "subsetctl.yaml") == tmp_path / "report.json"
    assert report_json_path(tmp_path) == tmp_path / "report.json"


def test_a_dash_for_a_report_says_standard_input_is_not_read(tmp_path: Path, monkeypatch) -> None:
    """`init new --from-report -` and `report . --compare -` (the Unix way to read standard
    input, `cat v1.json | ...`) said only "- does not exist" / "no such file or folder": now
    that '-' is not read as standard input there, and to save the report.json as a file."""
    from subsetctl.errors import UserError
    from subsetctl.report.compare import load_side
    from subsetctl.spec.from_report import report_json_path

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"^--from-report: - does not exist \('-' is not read as standard input here"):
        report_json_path(Path("-"))
    with pytest.raises(UserError, match=r"^--compare -: no such file or folder \('-' is not read as standard input "
                                        r"here: save the report.json as a file"):
        load_side("-")


def test_run_settings_are_those_of_the_run_that_last_wrote_report_json(tiny_project_ran) -> None:
    """report.json's ``run_settings`` are the settings of the run that last wrote it, as the
    README says: an edit of ``executor.n_jobs`` alone (which changes no result) re-runs no
    stage, so report.json keeps the earlier run's; a run that re-runs the report stage
    writes its own, though the results shown were made by the earlier run."""
    from subsetctl.api import run_project

    project = tiny_project_ran()
    spec_file = project / "subsetctl.yaml"

    def ran_with(**executor_and_report: dict) -> dict:
        spec = yaml.safe_load(spec_file.read_text())
        for section, values in executor_and_report.items():
            spec[section] = {**(spec.get(section) or {}), **values}
        spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
        run_project(project)
        return json.loads((project / "report.json").read_text())["run_settings"]

    before = json.loads((project / "report.json").read_text())["run_settings"]["executor.n_jobs"]
    assert ran_with(executor={"n_jobs": before + 1})["executor.n_jobs"] == before  # no stage ran
    settings = ran_with(report={"plots": False})  # the report stage again: this run's settings
    assert (settings["executor.n_jobs"], settings["report.plots"]) == (before + 1, False)


def test_init_from_a_projects_spec_file_names_the_report_json_it_read(tmp_path: Path) -> None:
    """`init new --from-report proj/subsetctl.yaml` said "Created new/subsetctl.yaml (from
    proj/subsetctl.yaml)", as if today's spec were copied, where the settings come from
    proj/report.json (the spec may have moved on since): it names that file now."""
    settings = {"target.name": "t", "target.loader.type": "jsonl", "target.loader.path": "t.jsonl",
                "sources[0].name": "a", "sources[0].loader.type": "jsonl", "sources[0].loader.path": "a.jsonl"}
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "subsetctl.yaml").write_text("project: {name: p}\n")
    (tmp_path / "proj" / "report.json").write_text(json.dumps({"report_format": 18, "settings": settings}))
    result = invoke("init", str(tmp_path / "new"), "--from-report", str(tmp_path / "proj" / "subsetctl.yaml"))
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert f"(from {tmp_path / 'proj' / 'report.json'})" in output, output
    result = invoke("init", str(tmp_path / "new2"), "--from-report", str(tmp_path / "proj"))
    assert f"(from {tmp_path / 'proj'})" in " ".join(result.output.split()), result.output


def test_from_report_of_a_device_or_named_pipe_is_not_said_to_be_missing(tmp_path: Path) -> None:
    """`init --from-report /dev/null` (or a named pipe) said "/dev/null does not exist"; it says
    that it is neither a file nor a folder."""
    import os

    from subsetctl.errors import UserError
    from subsetctl.spec.from_report import report_json_path

    os.mkfifo(tmp_path / "pipe")
    for path in (tmp_path / "pipe", Path(os.devnull)):
        with pytest.raises(UserError) as refused:
            report_json_path(path)
        said = str(refused.value)
        assert f"{path} is neither a file nor a folder (a device or a named pipe)" in said, said
        assert "does not exist" not in said, said
