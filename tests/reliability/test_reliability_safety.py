"""Safety: safe YAML only, trust_remote_code off by default and shown by `plan`, plugins
only from entry points or explicit `module:attr` strings, data paths relative to the
spec file, nothing written outside the project, a disk-space check before the gradient
store."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest
import relfixtures as rf
import yaml
from click.testing import CliRunner

from subsetctl.api import run_project
from subsetctl.cli import main
from subsetctl.errors import SpecError
from subsetctl.spec import Spec, read_yaml


def _write_spec(project: Path, spec: dict) -> None:
    (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")


@pytest.fixture
def data_project(tmp_path: Path) -> Path:
    return rf.make_project(tmp_path / "p", rf.data_spec())


@pytest.mark.parametrize("tag", [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
    "!!python/object:subsetctl.spec.Spec {{}}",
    "!!python/name:os.system",
])
def test_python_yaml_tags_are_refused(data_project: Path, tag: str) -> None:
    marker = data_project.parent / "executed"
    text = (data_project / "subsetctl.yaml").read_text() + f"extra: {tag.format(marker=marker)}\n"
    (data_project / "subsetctl.yaml").write_text(text)
    with pytest.raises(SpecError, match="malformed YAML"):
        read_yaml(data_project / "subsetctl.yaml")
    for args in (["validate", str(data_project)], ["run", str(data_project), "--until", "data", "-q"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1 and "python/" in result.output, result.output
    assert not marker.exists()


def test_trust_remote_code_is_off_by_default_and_plan_shows_it_when_on(data_project: Path) -> None:
    assert Spec.model_validate(rf.data_spec()).model.trust_remote_code is False
    plain = CliRunner().invoke(main, ["plan", str(data_project)])
    assert plain.exit_code == 0 and "runs code from outside subsetctl" not in plain.output
    result = CliRunner().invoke(main, ["plan", str(data_project), "model.trust_remote_code=true"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "runs code from outside subsetctl" in text and "model.trust_remote_code: the Python files" in text


PLUGIN_MODULE = '''
"""A third-party plugin: one strategy and one loader, registered on import."""
from datasets import Dataset

from subsetctl.registry import LOADERS, STRATEGIES
from subsetctl.search.base import Strategy, StrategyParams, StrategyResult


@STRATEGIES.register("relplug_first_source", "test plugin: keep the first source")
class FirstSource(Strategy):
    name = "relplug_first_source"
    description = "test plugin: keep the first source"
    Params = StrategyParams

    def run(self, estimator, context, params):
        chosen = [context.sources[0]]
        loss = float(estimator.estimate(estimator.masks_for([chosen])).loss[0])
        return StrategyResult(strategy=self.name, selected=chosen, estimated_loss=loss)


@LOADERS.register("relplug_counting", "test plugin: n arithmetic examples")
def counting(options, ctx):
    n = int(options.get("n", 12))
    return Dataset.from_list([{"prompt": f"{i}+3=", "response": str(i + 3)} for i in range(n)])


REGISTERED = True
'''


def _importable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, source: str) -> None:
    """Write ``source`` as module ``module`` into a folder put on sys.path for the test."""
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(plugins))


def test_plugin_module_registers_a_strategy_and_a_loader(
    tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _importable(tmp_path, monkeypatch, "relplug_module", PLUGIN_MODULE)
    spec = rf.small_spec(tiny_llama)
    spec["plugins"] = ["relplug_module:REGISTERED"]
    spec["sources"].append({"name": "counting", "loader": {"type": "plugin", "name": "relplug_counting",
                                                            "options": {"n": 12}}})
    spec["search"] = {"strategies": [{"name": "relplug_first_source", "label": "first"}, {"name": "exhaustive"}]}
    project = rf.make_project(tmp_path / "p", spec)
    result = CliRunner().invoke(main, ["validate", str(project)])
    assert result.exit_code == 0, result.output
    run_project(project, until="search")
    data = json.loads((project / ".subsetctl" / "data" / "manifest.json").read_text())
    assert data["summary"]["counts"]["counting"]["train"] == 12
    selections = json.loads((project / ".subsetctl" / "search" / "selections.json").read_text())
    assert selections["strategies"]["first"]["selected"] == ["a"]
    assert selections["final"] == "first"
    listed = CliRunner().invoke(main, ["ls", str(project), "--format", "json"])
    names = {row["name"] for row in json.loads(listed.output)["strategies"]}
    assert "relplug_first_source" in names
    listed = CliRunner().invoke(main, ["ls", "--format", "json"])  # not the project's: not its plugins
    names = {row["name"] for row in json.loads(listed.output)["strategies"]}
    assert "relplug_first_source" not in names and "exhaustive" in names


BAD_PLUGIN_MODULE = '''
"""Strategies that go wrong in the ways a plugin author's do, and one not decorated."""
from subsetctl.registry import STRATEGIES
from subsetctl.search.base import Strategy, StrategyParams, StrategyResult


class Undecorated(Strategy):
    """Keep the last source (registered by being named under plugins:)."""

    name = "relplug_undecorated"

    def run(self, estimator, context, params):
        chosen = [context.sources[-1]]
        loss = float(estimator.estimate(estimator.masks_for([chosen])).loss[0])
        return StrategyResult(strategy=self.name, selected=chosen, estimated_loss=loss)


@STRATEGIES.register("relplug_crash", "raises")
class Crash(Strategy):
    def run(self, estimator, context, params):
        estimator.estimate(estimator.masks_for([[context.sources[0]]]))
        return {}["nope"]


@STRATEGIES.register("relplug_list", "returns a list")
class ReturnsList(Strategy):
    def run(self, estimator, context, params):
        return [context.sources[0]]


@STRATEGIES.register("relplug_ghost", "selects a source the project lacks")
class Ghost(Strategy):
    def run(self, estimator, context, params):
        return StrategyResult(strategy=self.name, selected=["zzz"])


@STRATEGIES.register("relplug_stray_score", "scores a source the project lacks, by an int key")
class StrayScore(Strategy):
    def run(self, estimator, context, params):
        return StrategyResult(strategy=self.name, selected=[], scores={0: 1.0, context.sources[0]: 0.5})


@STRATEGIES.register("relplug_none_scores", "scores=None")
class NoneScores(Strategy):
    def run(self, estimator, context, params):
        return StrategyResult(strategy=self.name, selected=[], scores=None)


@STRATEGIES.register("relplug_unordered", "no estimated_loss, selection in reverse order")
class Unordered(Strategy):
    def run(self, estimator, context, params):
        return StrategyResult(strategy=self.name, selected=list(reversed(context.sources)))
'''


def test_plugin_strategy_mistakes_are_blamed_on_the_plugin_and_nothing_is_committed(
    tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from subsetctl.errors import UserError

    _importable(tmp_path, monkeypatch, "relplug_bad", BAD_PLUGIN_MODULE)
    spec = rf.small_spec(tiny_llama)
    spec["plugins"] = ["relplug_bad:Undecorated"]  # a class named there is registered by its `name`
    spec["search"] = {"strategies": [{"name": "relplug_undecorated"}]}
    project = rf.make_project(tmp_path / "p", spec)
    run_project(project, until="search")
    search = project / ".subsetctl" / "search"
    assert json.loads((search / "selections.json").read_text())["strategies"]["relplug_undecorated"]["selected"] == ["bad"]
    for name, needle in (("relplug_crash", r"raised KeyError: 'nope' \(at \S+relplug_bad\.py:\d+, in run\)\. This is an error in the plugin"),
                         ("relplug_list", "returned a list"),
                         ("relplug_ghost", "selected 'zzz', which is not a source"),
                         ("relplug_stray_score", "returned scores or trace subsets naming 0, which are not sources"),
                         ("relplug_none_scores", "returned scores=None; scores must map source names to numbers")):
        with pytest.raises(UserError, match=needle) as caught:
            run_project(project, [f"search.strategies[0].name={name}"], until="search")
        assert "module relplug_bad" in str(caught.value)
        assert f"{tmp_path / 'plugins' / 'relplug_bad.py'})" in str(caught.value)  # its file: where to fix it
        assert not (search / "manifest.json").exists()  # refused before the stage committed
    # a pick without an estimate gets subsetctl's own (that of the `all` baseline here), in source order
    run_project(project, ["search.strategies[0].name=relplug_unordered"], until="search")
    selections = json.loads((search / "selections.json").read_text())
    unordered = selections["strategies"]["relplug_unordered"]
    assert unordered["selected"] == selections["sources"]
    assert unordered["estimated_loss"] == pytest.approx(selections["baselines"]["all"]["estimated_loss_raw"])
    # another strategy list re-runs the search, but the estimates made so far are reused
    (store,) = (project / ".subsetctl" / "cache" / "search").iterdir()
    before = rf.subset_results(store)  # the first run's subsets, and the one relplug_crash estimated
    run_project(project, ["search.strategies=[{name: relplug_undecorated}, {name: exhaustive}]"], until="search")
    summary = rf.manifest(project, "search")["summary"]
    assert summary["subsets_store"] == store.relative_to(project).as_posix()
    assert len(before) == 4 and summary["computed_now"] == 2 ** 3 - len(before)  # exhaustive: 3 sources
    listed = CliRunner().invoke(main, ["ls", str(project), "--format", "json"])
    row = next(r for r in json.loads(listed.output)["strategies"] if r["name"] == "relplug_undecorated")
    assert row["origin"] == "plugins: relplug_bad:Undecorated"


@pytest.mark.parametrize("change, needle", [
    ({"plugins": ["no_such_module_xyz:thing"]}, "could not be imported"),
    ({"plugins": ["os"]}, "module:attr"),
    ({"plugins": ["os:no_such_attribute"]}, "no attribute"),
    # "No module named 'plugins/mystrat'" and "must look like 'package.module:attr'" did not say why
    ({"plugins": ["plugins/mystrat.py:BestSingle"]}, "names a file; plugins are named by module"),
    ({"plugins": ["./plugins/mystrat.py"]}, "put the file's folder on PYTHONPATH"),
    # the plugin module was found: what is missing is what it imports
    ({"plugins": ["relplug_missing_dep:Thing"]}, "imports 'sklearn_nonexistent_pkg_xyz', which is not installed"),
    # a name missing from an installed module is not a missing package
    ({"plugins": ["relplug_bad_name:Thing"]}, "could not be imported: cannot import name 'no_such_name'"),
    # "invalid syntax (relplug_syntax.py, line 2)": the file's name, not where it is
    ({"plugins": ["relplug_syntax:Thing"]}, "relplug_syntax.py:2). Fix the plugin"),
    ({"search": {"strategies": [{"name": "os:system"}]}}, "os:system"),
])
def test_plugins_only_from_explicit_module_attr_strings(data_project: Path, change: dict, needle: str,
                                                        monkeypatch) -> None:
    (data_project / "relplug_missing_dep.py").write_text("import sklearn_nonexistent_pkg_xyz\n")
    (data_project / "relplug_bad_name.py").write_text("from json import no_such_name\n")
    (data_project / "relplug_syntax.py").write_text("import json\ndef thing(:\n")
    monkeypatch.syspath_prepend(str(data_project))
    _write_spec(data_project, {**rf.data_spec(), **change})
    result = CliRunner().invoke(main, ["validate", str(data_project)])
    assert result.exit_code == 1 and needle in result.output, result.output


def test_data_paths_resolve_against_the_spec_file_not_the_cwd(
    data_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rf.write_jsonl(elsewhere / "target.jsonl", [{"prompt": "decoy", "response": "x"}])  # must not be read
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(main, ["run", str(data_project), "--until", "data", "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads((data_project / ".subsetctl" / "data" / "manifest.json").read_text())["summary"]
    assert summary["counts"]["target"] == {"train": 10, "validation": 5, "test": 5}
    assert sorted(p.name for p in elsewhere.iterdir()) == ["target.jsonl"]
    # a relative project path is resolved from the cwd, the data still from the spec's folder
    monkeypatch.chdir(data_project.parent)
    again = CliRunner().invoke(main, ["plan", "p", "--format", "json"])
    assert again.exit_code == 0 and json.loads(again.output)[0]["state"] == "up to date"


@pytest.mark.parametrize("path, value", [
    (("sources", 0, "name"), "../x"),
    (("sources", 0, "name"), "/abs"),
    (("sources", 0, "name"), ".hidden"),
    (("target", "name"), "../../etc"),
    (("search", "strategies"), [{"name": "exhaustive", "label": "../x"}]),
    (("search", "strategies"), [{"name": "exhaustive", "label": "a/b"}]),
])
def test_names_and_labels_cannot_escape_the_project(data_project: Path, path: tuple, value: object) -> None:
    spec = rf.data_spec()
    node = spec
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
    node[path[-1]] = value
    _write_spec(data_project, spec)
    before = sorted(p.name for p in data_project.parent.iterdir())
    for args in (["validate", str(data_project)], ["run", str(data_project), "--until", "data", "-q"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1 and "is not a valid name: use letters, digits" in result.output, result.output
    assert sorted(p.name for p in data_project.parent.iterdir()) == before
    assert not (data_project / ".subsetctl" / "data").exists()


def _leave_1000_bytes_free(monkeypatch: pytest.MonkeyPatch) -> None:
    """Have every disk report 1,000 bytes free."""
    real = shutil.disk_usage

    def little(path: object) -> object:
        usage = real(path)
        return type(usage)(usage.total, usage.total - 1000, 1000)

    monkeypatch.setattr(shutil, "disk_usage", little)


def test_low_disk_space_stops_the_gradient_store_with_the_size_needed(
    tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = rf.make_project(tmp_path / "p", rf.small_spec(tiny_llama))
    run_project(project, until="meta_init")
    _leave_1000_bytes_free(monkeypatch)
    result = CliRunner().invoke(main, ["run", str(project), "--until", "gradients", "-q"])
    assert result.exit_code == 1, result.output
    # in units that show the sizes (a small store's "about 0.00 GB" said neither)
    assert re.search(r"gradient store needs about [\d.]+ kB but only 1 kB is free", " ".join(result.output.split()))
    assert "0.00 GB" not in result.output and "Traceback" not in result.output
    assert not (project / ".subsetctl" / "gradients" / "store").exists()
    assert not (project / ".subsetctl" / "gradients" / "manifest.json").exists()


def test_a_resumed_gradient_store_needs_no_room_again(tiny_project_ran, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that holds its rows' room (a run stopped in the gradients stage after it made
    the store) resumes on a disk others filled since: it was refused for the whole store's
    size again, and told to lower gradients.d, which computes every row again."""
    project = tiny_project_ran("gradients")  # a copy of the session's run: its store is this test's own
    (project / ".subsetctl" / "gradients" / "manifest.json").unlink()  # stopped before the stage was done
    _leave_1000_bytes_free(monkeypatch)
    result = CliRunner().invoke(main, ["run", str(project), "--until", "gradients", "-q"])
    assert result.exit_code == 0, result.output
    assert (project / ".subsetctl" / "gradients" / "manifest.json").exists()
