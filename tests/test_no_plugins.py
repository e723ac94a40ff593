"""`--no-plugins` (and SUBSETCTL_NO_PLUGINS=1): validate, plan, ls and doctor check a spec
from someone else without running the code its `plugins:` name. Each plugin here writes a
marker file when it is imported: with the option the file never appears."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from subsetctl.cli import main

_PLUGIN = """
from pathlib import Path

Path({marker!r}).write_text("imported")

from subsetctl.registry import STRATEGIES
from subsetctl.search.base import Strategy


@STRATEGIES.register("stranger_pick", "a stranger's strategy")
class StrangerPick(Strategy):
    def run(self, estimator, context, params):
        return None
"""


@pytest.fixture
def stranger_project(jsonl_project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose spec names a plugin package (``noplug_pkg.strategy``, on PYTHONPATH)
    and uses the strategy it registers; importing the package's ``__init__`` or the module
    writes ``marker`` in the project folder."""
    package = jsonl_project / "plugins" / "noplug_pkg"
    package.mkdir(parents=True)
    marker = jsonl_project / "marker"
    (package / "__init__.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('package')\n")
    (package / "strategy.py").write_text(_PLUGIN.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(jsonl_project / "plugins"))
    spec_path = jsonl_project / "subsetctl.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["plugins"] = ["noplug_pkg.strategy:StrangerPick"]
    spec["search"] = {"strategies": [{"name": "exhaustive"}, {"name": "stranger_pick"}]}
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return jsonl_project


def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_validate_no_plugins_runs_none_of_their_code_and_says_what_it_left_unchecked(stranger_project: Path) -> None:
    marker = stranger_project / "marker"
    code, out = _cli("validate", "--no-plugins", str(stranger_project))
    assert not marker.exists()  # neither the module nor its package's __init__.py ran
    assert code == 0, out
    text = " ".join(out.split())
    assert "is valid (except what its plugins provide: see below)" in text
    assert ("plugins not imported (--no-plugins): their code did not run, and what they register is not checked; a "
            "plain `subsetctl validate` imports them, which runs their code") in text
    module_file = stranger_project / "plugins" / "noplug_pkg" / "strategy.py"
    assert (f"plugins[0]: not checked: the plugin module 'noplug_pkg.strategy' ({module_file}) was not imported "
            "(--no-plugins)") in text
    assert ("search.strategies[1].name: not checked: the strategy 'stranger_pick' is not built in or installed: "
            "provided by a plugin not imported (--no-plugins)") in text

    code, out = _cli("validate", str(stranger_project))  # a plain validate imports it: the marker shows that
    assert code == 0, out
    assert marker.read_text() == "imported"


def test_the_environment_variable_does_as_the_option_and_json_says_what_was_not_checked(stranger_project: Path) -> None:
    code, out = _cli("validate", str(stranger_project), "--format", "json", env={"SUBSETCTL_NO_PLUGINS": "1"})
    assert not (stranger_project / "marker").exists()
    assert code == 0, out
    (report,) = json.loads(out)
    assert report["valid"] is True and report["errors"] == [] and report["plugins_imported"] is False
    assert [item["key"] for item in report["not_checked"]] == ["plugins[0]", "search.strategies[1].name"]
    assert "not imported now (--no-plugins)" in report["runs_code"][0]


def test_the_exit_code_still_counts_what_was_checked(stranger_project: Path) -> None:
    """A name no plugin may provide (the spec without plugins), and a problem elsewhere,
    are errors all the same."""
    code, out = _cli("validate", "--no-plugins", str(stranger_project), "sources[0].loader.path=missing.jsonl")
    assert code == 1 and "missing.jsonl" in out
    assert "not checked: the strategy 'stranger_pick'" in " ".join(out.split())
    code, out = _cli("validate", "--no-plugins", str(stranger_project), "gradients.d=abc")  # the schema refuses it
    assert code == 1 and "plugins[0]: not checked: the plugin module 'noplug_pkg.strategy'" in " ".join(out.split())
    assert "plugins not imported (--no-plugins)" in out
    code, out = _cli("validate", "--no-plugins", str(stranger_project), "plugins=[]")
    assert code == 1 and "Unknown strategy 'stranger_pick'" in " ".join(out.split())
    assert not (stranger_project / "marker").exists()


def test_plan_ls_and_doctor_take_no_plugins_too(stranger_project: Path) -> None:
    marker = stranger_project / "marker"
    code, out = _cli("plan", "--no-plugins", str(stranger_project), "--format", "json")
    assert code == 0, out
    states = {row["stage"]: row for row in json.loads(out)}
    assert states["data"]["state"] == "never run" and states["data"]["will_run"] is True
    assert states["search"]["state"] == "not checked" and states["search"]["will_run"] is False
    assert "it uses the strategy 'stranger_pick'" in states["search"]["reasons"][0]
    assert states["finetune"]["state"] == "not checked"  # after the search: its inputs are not known either
    code, out = _cli("plan", "--no-plugins", str(stranger_project))
    assert code == 0 and "A plain `subsetctl plan` imports them" in " ".join(out.split())

    code, out = _cli("ls", "--no-plugins", str(stranger_project), "--format", "json")
    assert code == 0, out
    listed = json.loads(out)
    assert "stranger_pick" not in {row["name"] for row in listed["strategies"]}
    (row,) = listed["not imported"]
    assert row["name"] == "noplug_pkg.strategy:StrangerPick"
    assert row["origin"] == str(stranger_project / "plugins" / "noplug_pkg" / "strategy.py")

    code, out = _cli("doctor", "--no-plugins", str(stranger_project))
    assert "project spec" in out and "its plugins were not imported (--no-plugins): 2 items not checked" in " ".join(
        out.split())
    assert not marker.exists()


def test_each_commands_help_and_the_code_lines_say_what_it_does(stranger_project: Path) -> None:
    """`ls --help` said its --no-plugins reports what the plugins register "as not checked"
    (it lists them as "not imported", registering nothing), `doctor --help` that it lists
    them with their files (it counts what is not checked), and validate's lines on the code
    a spec runs left out `ls` and `doctor` among the commands that import its plugins."""
    said = {command: " ".join(_cli(command, "--help")[1].split()) for command in ("validate", "plan", "ls", "doctor")}
    assert 'list them, with their files, as "not imported" instead of what they register' in said["ls"]
    assert "not checked" not in said["ls"]
    assert "count what they would register as not checked (`validate --no-plugins` lists them)" in said["doctor"]
    assert "with their files" not in said["doctor"]  # its project check counts them, and names no file
    assert "and call the stages that use what they would register" in said["plan"]
    assert "and report what they would register as not checked" in said["validate"]
    (report,) = json.loads(_cli("validate", "--no-plugins", str(stranger_project), "--format", "json")[1])
    assert "validate, plan, ls and doctor without it, and report and run, import it" in report["runs_code"][0]
    assert not (stranger_project / "marker").exists()


def test_plan_no_plugins_cannot_tell_about_data_a_plugin_loader_reads(jsonl_project: Path, monkeypatch) -> None:
    """A `type: plugin` loader's code is part of the data stage's inputs: every stage is
    then "not checked" (it was "never run"/"up to date" as if the loader had no code)."""
    (jsonl_project / "noplug_loader.py").write_text(
        f"from pathlib import Path\nPath({str(jsonl_project / 'marker')!r}).write_text('imported')\n"
        "from subsetctl.registry import LOADERS\n\n@LOADERS.register('noplug_tsv', 'x')\n"
        "def load(options, ctx):\n    return []\n")
    monkeypatch.syspath_prepend(str(jsonl_project))
    overrides = ["plugins=[noplug_loader:load]", "sources[1].loader={type: plugin, name: noplug_tsv}"]
    code, out = _cli("plan", "--no-plugins", str(jsonl_project), *overrides, "--format", "json")
    assert code == 0, out
    states = {row["stage"]: row["state"] for row in json.loads(out)}
    assert states["data"] == states["gradients"] == states["report"] == "not checked"
    assert not (jsonl_project / "marker").exists()


def test_plan_no_plugins_of_a_project_that_ran_says_only_what_it_can(tiny_project_ran, monkeypatch) -> None:
    """The stages before the one using a plugin keep their statuses; the summary does not
    say that `run` would do nothing (it may run the stages not checked)."""
    root = tiny_project_ran(until="calibrate")
    (root / "noplug_ran.py").write_text(_PLUGIN.format(marker=str(root / "marker")))
    monkeypatch.syspath_prepend(str(root))
    overrides = ["plugins=[noplug_ran:StrangerPick]", "search.strategies=[{name: stranger_pick}]"]
    code, out = _cli("plan", "--no-plugins", str(root), *overrides, "--until", "calibrate")
    assert code == 0, out
    assert "Everything up to calibrate is up to date; `run --until calibrate` would do nothing." in out
    code, out = _cli("plan", "--no-plugins", str(root), *overrides, "--format", "json")
    states = {row["stage"]: row["state"] for row in json.loads(out)}
    assert states["calibrate"] == "up to date" and states["search"] == states["report"] == "not checked"
    code, out = _cli("plan", "--no-plugins", str(root), *overrides, "--until", "search")
    assert code == 0, out
    assert ("Everything up to search but what is not checked is up to date; `run --until search` would do nothing "
            "else for certain.") in " ".join(out.split())
    assert not (root / "marker").exists()


def test_plan_no_plugins_cannot_tell_about_a_stage_that_ran_with_a_plugin_replacing_a_built_in(
        jsonl_project: Path, same_jsonl_plugin) -> None:
    """A plugin's own `jsonl` loader: without it the spec names the built-in, and the data
    stage that ran with the plugin's code was called stale ("inputs changed")."""
    from subsetctl.api import plan_project, run_project

    plugin = same_jsonl_plugin(jsonl_project)
    run_project(jsonl_project, [f"plugins=[{plugin}]"], until="data")
    _, _, statuses = plan_project(jsonl_project, [f"plugins=[{plugin}]"], until="data", import_plugins=False)
    (data,) = [s for s in statuses if s.name == "data"]
    assert data.state == "not checked", data.reasons
    assert data.reasons == [("its last run used a plugin's code for the loader jsonl, from a plugin not imported "
                             "(import_plugins=False), so whether `run` would run it is not known")]


def test_run_has_no_such_option(stranger_project: Path) -> None:
    """`run` needs the plugins' code: there is nothing to run without it."""
    code, out = _cli("run", "--no-plugins", str(stranger_project))
    assert code == 2 and "No such option '--no-plugins'" in out
    assert not (stranger_project / "marker").exists()


def test_installed_entry_points_are_still_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    """The option leaves out the spec's code, not the environment's: an installed plugin
    package is the user's own choice, and every command imports it."""
    import subsetctl.registry as registry_module
    from subsetctl.plugin_loading import plugins_not_imported
    from subsetctl.registry import Registry

    class Installed:
        """An installed thing."""

    class _EntryPoint:
        name, value = "installed", "someplug:Installed"

        def load(self) -> object:
            return Installed

    monkeypatch.setattr(registry_module, "entry_points", lambda group: [_EntryPoint()])
    with plugins_not_imported():
        assert Registry("thing", "subsetctl.test_things", ()).get("installed") is Installed


def test_run_with_the_environment_variable_set_says_it_imports_the_plugins_all_the_same(
        stranger_project: Path) -> None:
    """`run` has no --no-plugins: someone who exported SUBSETCTL_NO_PLUGINS for safety had
    the plugins imported without a word."""
    code, out = _cli("run", str(stranger_project), "--until", "data", env={"SUBSETCTL_NO_PLUGINS": "1"})
    assert code == 0, out
    assert (stranger_project / "marker").read_text() == "imported"
    assert "SUBSETCTL_NO_PLUGINS is set, but `run` imports the spec's plugins: modules all the same" in \
        " ".join(out.split())
    code, out = _cli("run", str(stranger_project), "--until", "data", env={"SUBSETCTL_NO_PLUGINS": "0"})
    assert code == 0 and "SUBSETCTL_NO_PLUGINS" not in out, out


def test_report_with_the_environment_variable_set_says_it_imports_the_plugins_all_the_same(
        stranger_project: Path) -> None:
    """`report` takes no --no-plugins either, and imports the spec's plugins to check its
    results against the spec: with SUBSETCTL_NO_PLUGINS exported for safety it did so unsaid."""
    code, out = _cli("run", str(stranger_project), "--until", "data")
    assert code == 0, out
    code, out = _cli("report", str(stranger_project), env={"SUBSETCTL_NO_PLUGINS": "1"})
    assert "SUBSETCTL_NO_PLUGINS is set, but `report` imports the spec's plugins: modules all the same" in \
        " ".join(out.split()), out
