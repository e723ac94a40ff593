"""Registering a class labels it with the registered name and description, once."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from subsetctl.registry import ESTIMATORS, STRATEGIES, Registry
from subsetctl.reporter import SilentReporter


class _Base:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""


def test_register_sets_empty_name_and_description_but_keeps_declared_ones() -> None:
    registry: Registry[type] = Registry("thing", "subsetctl.test_things", ())

    @registry.register("plain", "a plain thing")
    class Plain(_Base):
        pass

    @registry.register("declared", "registered text")
    class Declared(_Base):
        name = "own_name"

    registry.add("added", type("Added", (_Base,), {}), "added by hand")
    assert (Plain.name, Plain.description) == ("plain", "a plain thing")
    assert (Declared.name, Declared.description) == ("own_name", "registered text")
    assert registry.get("added").name == "added"
    assert _Base.name == ""  # the base class is untouched


def test_built_in_strategies_carry_their_registered_names() -> None:
    for entry in STRATEGIES.entries():
        if entry.origin == "built-in":
            assert entry.obj.name == entry.name and entry.obj.description == entry.description


class _EntryPoint:
    """Stands in for an installed importlib.metadata entry point."""

    def __init__(self, name: str, value: str, obj: object = None, error: Exception | None = None,
                 dist: str | None = None) -> None:
        self.name, self.value, self._obj, self._error = name, value, obj, error
        if dist is not None:  # "name version": the installed package that declares it
            from types import SimpleNamespace

            self.dist = SimpleNamespace(name=dist.split()[0], version=dist.split()[1])

    def load(self) -> object:
        if self._error is not None:
            raise self._error
        return self._obj


def test_an_interrupt_while_the_built_ins_import_leaves_them_to_import_on_the_next_call(
        tmp_path, monkeypatch) -> None:
    """A notebook's interrupt while a registry first imported its built-in modules left it
    marked loaded, with none of them registered: "Unknown estimator 'fast'. Registered
    estimators: (none)" for every later call in that kernel."""
    import subsetctl.registry as registry_module

    monkeypatch.setattr(registry_module, "entry_points", lambda group: [])
    (tmp_path / "interrupted_builtins.py").write_text(
        "import os\nfrom subsetctl.registry import _TEST_THINGS as THINGS\n"
        "if not os.environ.get('BUILTINS_GO_ON'):\n    raise KeyboardInterrupt\n"
        "@THINGS.register('fast')\nclass Fast:\n    'A built-in.'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "interrupted_builtins", raising=False)
    registry: Registry[type] = Registry("thing", "subsetctl.test_things", ("interrupted_builtins",))
    monkeypatch.setattr(registry_module, "_TEST_THINGS", registry, raising=False)  # (the module registers there)
    with pytest.raises(KeyboardInterrupt):
        registry.get("fast")
    monkeypatch.setenv("BUILTINS_GO_ON", "1")
    assert registry.get("fast").__name__ == "Fast"


def test_a_broken_installed_plugin_is_skipped_and_named_only_when_asked_for(monkeypatch) -> None:
    import pytest

    import subsetctl.registry as registry_module
    from subsetctl.errors import UnknownPluginError, UserError

    class Good:
        """A working third-party thing."""

    installed = [_EntryPoint("broken", "fakeplug_mod:Broken", error=ModuleNotFoundError("No module named 'x'")),
                 _EntryPoint("good", "goodplug:Good", obj=Good)]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: installed)
    registry: Registry[type] = Registry("thing", "subsetctl.test_things", ())
    assert registry.get("good") is Good  # the broken one does not stop the others
    assert registry.origin("good") == "entry point goodplug:Good"
    assert list(registry.broken()) == ["broken"]
    with pytest.raises(UserError, match="'broken' .*fakeplug_mod:Broken.* failed to import: ModuleNotFoundError"):
        registry.get("broken")
    with pytest.raises(UnknownPluginError, match=r"@THINGS.register\('nope'\)"):
        registry.get("nope")


def test_an_installed_plugin_is_named_with_its_package_and_version(monkeypatch) -> None:
    """`ls`, and every message naming a plugin, said only "entry point mod:Attr": not which
    installed package to upgrade or uninstall when two register one name or one fails to
    import, nor which version made the results."""
    import pytest

    import subsetctl.registry as registry_module
    from subsetctl.errors import UserError

    class A:
        """one"""

    installed = [_EntryPoint("good", "pkg_a.mod:A", obj=A, dist="pkg-a 1.2.0"),
                 _EntryPoint("twice", "pkg_a.mod:A", obj=A, dist="pkg-a 1.2.0"),
                 _EntryPoint("twice", "pkg_b:B", obj=A, dist="pkg-b 0.3"),
                 _EntryPoint("broken", "pkg_c:C", error=ImportError("no numpy"), dist="pkg-c 2.0")]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: installed)
    registry: Registry[type] = Registry("thing", "subsetctl.test_things", ())
    assert registry.origin("good") == "entry point pkg_a.mod:A of pkg-a 1.2.0"
    with pytest.raises(UserError, match=r"\(entry points 'pkg_a.mod:A' of pkg-a 1.2.0, 'pkg_b:B' of pkg-b 0.3; group "
                                        r"'subsetctl.test_things'\). Uninstall one of them \(`pip uninstall pkg-a` or "
                                        r"`pip uninstall pkg-b`\)."):
        registry.get("twice")
    with pytest.raises(UserError, match=r"\(entry point 'pkg_c:C' of pkg-c 2.0 in group .*: ImportError: no numpy. "
                                        r"Fix or uninstall that package \(`pip uninstall pkg-c`\)."):
        registry.get("broken")


def test_an_installed_plugin_keeps_the_description_its_decorator_gave(monkeypatch) -> None:
    """`ls` showed an entry point's plugin with no description when it had one only from its
    ``@STRATEGIES.register(name, description)`` (README's strategy example): registering the
    entry point took the docstring's, which such a class or loader function need not have."""
    import subsetctl.registry as registry_module

    registry: Registry[type] = Registry("thing", "subsetctl.test_things", ())

    class Top(_Base):
        pass

    def tsv(options: dict, ctx: object) -> None:
        return None

    class _Importing(_EntryPoint):
        def load(self) -> object:  # importing the entry point's module runs its decorator
            return registry.register(self.name, f"{self.name}, from its decorator")(self._obj)

    installed = [_Importing("top", "pkg.strategies:Top", obj=Top), _Importing("tsv", "pkg.loaders:tsv", obj=tsv)]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: installed)
    assert [(e.name, e.description, e.origin) for e in registry.entries()] == [
        ("top", "top, from its decorator", "entry point pkg.strategies:Top"),
        ("tsv", "tsv, from its decorator", "entry point pkg.loaders:tsv"),
    ]


def test_ls_lists_a_broken_plugin_with_its_reason(monkeypatch) -> None:
    from subsetctl.api import list_plugins
    from subsetctl.registry import STRATEGIES

    monkeypatch.setattr(STRATEGIES, "_broken", {"broken": "The strategy plugin 'broken' failed to import: boom."})
    rows = list_plugins()["strategies"]
    assert {"name": "broken", "description": "failed to import", "origin": "entry point",
            "error": "The strategy plugin 'broken' failed to import: boom."} in rows
    assert any(r["name"] == "forward" and r["origin"] == "built-in" for r in rows)


def test_a_plugins_class_without_a_name_says_how_to_register_it(tmp_path, monkeypatch) -> None:
    import pytest

    from subsetctl.errors import UserError
    from subsetctl.plugin_loading import load_plugin_string

    (tmp_path / "nameless_plugin.py").write_text(
        "from subsetctl.search.base import Strategy\n\nclass Nameless(Strategy):\n"
        "    def run(self, estimator, context, params):\n        return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match=r"without a name of its own: decorate it with `@STRATEGIES.register"):
        load_plugin_string("nameless_plugin:Nameless")
    (tmp_path / "tweaked_plugin.py").write_text(  # inherits "forward": must not replace the built-in
        "from subsetctl.search.greedy import Forward as ForwardStrategy\n\nclass Tweaked(ForwardStrategy):\n    pass\n\n"
        "class Renamed(ForwardStrategy):\n    name = 'forward'\n")
    with pytest.raises(UserError, match="without a name of its own"):
        load_plugin_string("tweaked_plugin:Tweaked")
    with pytest.raises(UserError, match="is named 'forward', like the strategy from built-in"):
        load_plugin_string("tweaked_plugin:Renamed")
    from subsetctl.registry import STRATEGIES

    assert STRATEGIES.origin("forward") == "built-in"


@pytest.mark.parametrize(("base_import", "decorator", "said"), [
    ("from subsetctl.estimate.solvers import FastEstimator as Base", "STRATEGIES",
     ("is an estimator class (it derives from SubsetEstimator), but its module registers it as a strategy, "
      "'misregistered': register it with `@ESTIMATORS.register('misregistered')` instead of `@STRATEGIES.register`.")),
    ("from subsetctl.search.base import Strategy as Base", "ESTIMATORS",
     ("is a strategy class (it derives from Strategy), but its module registers it as an estimator, "
      "'misregistered': register it with `@STRATEGIES.register('misregistered')` instead of `@ESTIMATORS.register`.")),
])
def test_a_plugins_class_registered_as_the_other_kind_is_told_so(tmp_path, monkeypatch, base_import: str,
                                                                 decorator: str, said: str) -> None:
    """An estimator class decorated with ``@STRATEGIES.register`` and named under ``plugins:``
    was "a estimator class without a name of its own: decorate it with
    `@ESTIMATORS.register`": it was decorated, with the wrong kind's decorator. A strategy class
    decorated with ``@ESTIMATORS.register`` was registered silently as both: the decorator's name,
    set on the class, named it as a strategy too, and the estimator failed only where a spec used it."""
    from subsetctl.errors import UserError
    from subsetctl.plugin_loading import load_plugin_string

    (tmp_path / "misregistered_plugin.py").write_text(
        f"{base_import}\nfrom subsetctl.registry import {decorator}\n\n"
        f"@{decorator}.register('misregistered')\nclass Misregistered(Base):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(UserError, match=re.escape(said)):
            load_plugin_string("misregistered_plugin:Misregistered")
        assert [registry.kind for registry in (STRATEGIES, ESTIMATORS) if "misregistered" in registry.names()] \
            == [{"STRATEGIES": "strategy", "ESTIMATORS": "estimator"}[decorator]]
    finally:
        sys.modules.pop("misregistered_plugin", None)
        STRATEGIES._entries.pop("misregistered", None)
        ESTIMATORS._entries.pop("misregistered", None)


def test_a_plugins_class_without_a_decorator_loads_again_after_its_module_is_reloaded(tmp_path, monkeypatch) -> None:
    """The warning about an edited plugin advises importlib.reload; a class that plugins:
    names (not registered by a decorator) then failed as named "like the strategy from
    plugins: m:Cls", itself."""
    import importlib

    from subsetctl.plugin_loading import load_plugin_string
    from subsetctl.registry import STRATEGIES

    (tmp_path / "undecorated_plugin.py").write_text(
        "from subsetctl.search.baselines import AllSources\n\nclass Undecorated(AllSources):\n"
        "    name = 'undecorated_all'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        first = load_plugin_string("undecorated_plugin:Undecorated")
        importlib.reload(sys.modules["undecorated_plugin"])
        again = load_plugin_string("undecorated_plugin:Undecorated")
        assert again is not first and STRATEGIES.get("undecorated_all") is again
        assert STRATEGIES.origin("undecorated_all") == "plugins: undecorated_plugin:Undecorated"
    finally:
        sys.modules.pop("undecorated_plugin", None)
        STRATEGIES._entries.pop("undecorated_all", None)


def test_editing_a_plugin_estimator_or_strategy_makes_the_search_stale(tiny_project_ran, monkeypatch) -> None:
    """Only plugin loaders were tracked: an edited estimator left the search "up to date"
    and a re-run reused the old estimates from the search cache."""
    import yaml

    from subsetctl.api import plan_project, run_project

    tiny_project = tiny_project_ran("gradients")  # a copy: the search still runs
    plugin = tiny_project / "sizey_plugin.py"
    source = '''
import numpy as np
from subsetctl.estimate.base import SubsetEstimator
from subsetctl.estimate.solvers import FastEstimator
from subsetctl.registry import ESTIMATORS

@ESTIMATORS.register("sizey", "fast plus a size penalty")
class SizeEstimator(SubsetEstimator):
    def __init__(self, features, lam=1e-3):
        self._fast = FastEstimator(features, lam=lam)
        self._sources = list(features.sources)
    @property
    def sources(self):
        return self._sources
    def estimate(self, masks):
        b = self._fast.estimate(masks)
        b.loss = b.loss + PENALTY * np.asarray(masks).sum(axis=1)
        return b
'''
    plugin.write_text(source.replace("PENALTY", "0.001"))
    monkeypatch.syspath_prepend(str(tiny_project))
    spec = yaml.safe_load((tiny_project / "subsetctl.yaml").read_text())
    spec["plugins"] = ["sizey_plugin:SizeEstimator"]
    spec["estimate"] = {**spec.get("estimate", {}), "estimator": "sizey"}
    (tiny_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    run_project(tiny_project, until="search")
    assert all(not s.will_run for s in plan_project(tiny_project, until="search")[2])
    selections = tiny_project / ".subsetctl" / "search" / "selections.json"
    before = json.loads(selections.read_text())["baselines"]["all"]["estimated_loss_raw"]

    plugin.write_text(source.replace("PENALTY", "0.5"))
    sys.modules.pop("sizey_plugin")  # a new `subsetctl` process imports the edited file
    statuses = {s.name: s for s in plan_project(tiny_project, until="search")[2]}
    assert statuses["search"].will_run and not statuses["gradients"].will_run
    assert "input files changed: the code of the estimator sizey plugin" in "; ".join(statuses["search"].reasons)
    run_project(tiny_project, until="search")
    after = json.loads(selections.read_text())["baselines"]["all"]["estimated_loss_raw"]
    assert after > before + 0.5  # the new penalty's estimates, not the cached ones
    sys.modules.pop("sizey_plugin")


class _Recording(SilentReporter):
    """A reporter that keeps its warnings, for the tests of what a run or plan warns."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def test_the_warning_for_an_edited_file_a_plugin_class_inherits_from_names_it_as_such(tmp_path, monkeypatch) -> None:
    """The warning that a file changed after this process loaded it named a base class's file
    (a sibling module) "the plugin file" and advised reloading "the module": reloading the
    plugin's module alone keeps the old base class. It now says which file it is and to
    reload that module, then the plugin's."""
    from types import SimpleNamespace

    from subsetctl.api import warn_edited_plugins
    from subsetctl.plugin_loading import load_plugin_string
    base = tmp_path / "warned_base.py"
    base.write_text("from subsetctl.search.baselines import AllSources\n\n\nclass Base(AllSources):\n    pass\n")
    (tmp_path / "warned_plugin.py").write_text(
        "from warned_base import Base\nfrom subsetctl.registry import STRATEGIES\n\n\n"
        "@STRATEGIES.register('warned_all')\nclass Warned(Base):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        load_plugin_string("warned_plugin:Warned")
        assert "base_classes" in STRATEGIES.code_fingerprint("warned_all")  # as a stage's fingerprint takes it
        base.write_text(base.read_text() + "# edited\n")
        seen = _Recording()
        warn_edited_plugins(seen, SimpleNamespace(plugins=["warned_plugin:Warned"]))
        assert seen.warnings == [(
            f"The file {base}, which a class of the spec's plugins inherits from, changed after this Python process "
            "loaded it: it still runs the code from before the edit (Python does not import a module again), and "
            "results are recorded as that code's. Restart the process (a notebook's kernel), or importlib.reload "
            "that module, then the plugin's, to use the edit.")]
    finally:
        for name in ("warned_base", "warned_plugin"):
            sys.modules.pop(name, None)
        STRATEGIES._entries.pop("warned_all", None)


def test_a_plugin_edited_after_this_process_loaded_it_keeps_the_fingerprint_of_the_code_it_runs(
        tiny_project_ran, monkeypatch) -> None:
    """A notebook ran a project, edited a plugin and ran again: the search re-ran with the
    old code (Python does not import a module again) and recorded the edited file's
    fingerprint, so a later `subsetctl run` took the old code's results as up to date."""
    import yaml

    from subsetctl.api import plan_project, run_project

    tiny_project = tiny_project_ran("gradients")  # a copy: the search still runs
    plugin = tiny_project / "edited_strategy.py"
    source = ("from subsetctl.search.baselines import AllSources\nfrom subsetctl.registry import STRATEGIES\n"
              "@STRATEGIES.register('edited_all', 'every source (VERSION)')\nclass EditedAll(AllSources):\n"
              "    pass\n")
    plugin.write_text(source.replace("VERSION", "1"))
    monkeypatch.syspath_prepend(str(tiny_project))
    spec = yaml.safe_load((tiny_project / "subsetctl.yaml").read_text())
    spec["plugins"] = ["edited_strategy:EditedAll"]
    spec["search"] = {**spec.get("search", {}), "strategies": [{"name": "edited_all"}]}
    (tiny_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    try:
        run_project(tiny_project, until="search")
        plugin.write_text(source.replace("VERSION", "2"))  # edited; the process keeps the loaded class
        seen = _Recording()
        statuses = {s.name: s for s in plan_project(tiny_project, until="search", reporter=seen)[2]}
        assert not statuses["search"].will_run  # what this process would run is what made the results
        edited = [w for w in seen.warnings if "changed after this Python process loaded it" in w]
        assert edited == [(f"The plugin file {plugin.resolve()} changed after this Python process loaded it: it "
                          "still runs the code from before the edit (Python does not import a module again), and "
                          "results are recorded as that code's. Restart the process (a notebook's kernel), or "
                          "importlib.reload the module, to use the edit.")], seen.warnings
        sys.modules.pop("edited_strategy")  # a new process (or importlib.reload) loads the edit
        statuses = {s.name: s for s in plan_project(tiny_project, until="search", reporter=_Recording())[2]}
        assert statuses["search"].will_run
    finally:
        sys.modules.pop("edited_strategy", None)


def test_a_plugin_estimator_calibration_may_choose_is_a_search_input(tiny_project: Path, monkeypatch) -> None:
    """Calibration chose the plugin estimator, its file was edited, calibration chose it
    again (same output): the search stayed "up to date" with the old code's estimates."""
    from subsetctl.api import load_project
    from subsetctl.stages.search import SearchStage

    (tiny_project / "picked_est.py").write_text(
        "from subsetctl.estimate.solvers import FastEstimator\n"
        "from subsetctl.registry import ESTIMATORS\n"
        "@ESTIMATORS.register('picked', 'fast under another name')\n"
        "class Picked(FastEstimator):\n    pass\n")
    monkeypatch.syspath_prepend(str(tiny_project))
    overrides = ["plugins=[picked_est:Picked]", "calibrate.estimators=[fast, picked]", "verify.enabled=true"]
    project, spec = load_project(tiny_project, overrides)
    first = SearchStage().extra_inputs(spec, project)["plugin code"]
    assert spec.estimate.estimator == "fast" and set(first) == {"estimator picked"}
    (tiny_project / "picked_est.py").write_text((tiny_project / "picked_est.py").read_text() + "# edited\n")
    sys.modules.pop("picked_est")  # as a new process loads it
    project, spec = load_project(tiny_project, overrides)
    assert SearchStage().extra_inputs(spec, project)["plugin code"] != first
    for off in ("calibrate.enabled=false", "verify.enabled=false"):  # nothing to choose from: only estimate.estimator
        _, spec = load_project(tiny_project, [*overrides, off])
        assert SearchStage().extra_inputs(spec, project) == {}
    sys.modules.pop("picked_est", None)


def test_a_plugin_that_prints_or_exits_at_import(tmp_path: Path, monkeypatch, capsys) -> None:
    """A print at import went to stdout and broke every `--format json`; `sys.exit()` in a
    plugin ended the CLI with exit 0 and no word."""
    import pytest

    from subsetctl.errors import UserError
    from subsetctl.plugin_loading import load_plugin_string

    (tmp_path / "chatty_plugin.py").write_text("print('hello from the plugin')\nclass X:\n    pass\n")
    (tmp_path / "exiting_plugin.py").write_text("import sys\nsys.exit()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugin_string("chatty_plugin:X")
    out = capsys.readouterr()
    assert out.out == "" and "hello from the plugin" in out.err
    with pytest.raises(UserError, match="'exiting_plugin' raised SystemExit while being imported"):
        load_plugin_string("exiting_plugin:X")
    for name in ("chatty_plugin", "exiting_plugin"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize(("body", "says"), [
    ("raise RuntimeError('boom in estimate')", "failed while estimating subsets: RuntimeError: boom in estimate"),
    ("return np.zeros(len(masks))", "returned a ndarray from estimate(); it must return an EstimateBatch"),
    # exited with status 3 and printed nothing
    ("import sys; sys.exit(3)", "failed while estimating subsets: it called sys.exit(3)"),
])
def test_a_failing_plugin_estimator_is_blamed_not_called_a_subsetctl_bug(
        tiny_project_ran, monkeypatch, body: str, says: str) -> None:
    import yaml

    from subsetctl.api import run_project
    from subsetctl.errors import UserError

    tiny_project = tiny_project_ran("gradients")  # a copy: the search still runs
    (tiny_project / "broken_est.py").write_text(f'''
import numpy as np
from subsetctl.estimate.base import SubsetEstimator
from subsetctl.registry import ESTIMATORS

@ESTIMATORS.register("broken", "a broken estimator")
class Broken(SubsetEstimator):
    def __init__(self, features, lam=1.0):
        self._sources = list(features.sources)
    @property
    def sources(self):
        return self._sources
    def estimate(self, masks):
        {body}
''')
    monkeypatch.syspath_prepend(str(tiny_project))
    sys.modules.pop("broken_est", None)
    spec = yaml.safe_load((tiny_project / "subsetctl.yaml").read_text())
    spec["plugins"], spec["estimate"] = ["broken_est:Broken"], {"estimator": "broken"}
    spec["executor"] = {"backend": "sequential"}
    (tiny_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(UserError, match=re.escape(f"The estimator plugin 'broken' (module broken_est, {tiny_project / 'broken_est.py'}) {says}")):
        run_project(tiny_project, until="search")
    sys.modules.pop("broken_est", None)


def test_a_plugin_projector_giving_nan_is_blamed_at_the_gradients_stage(tiny_project_ran, monkeypatch) -> None:
    """NaN projections passed the gradients stage and the search then blamed meta-init."""
    import yaml

    from subsetctl.api import run_project
    from subsetctl.errors import UserError

    tiny_project = tiny_project_ran("meta_init")  # a copy: the gradients stage still runs
    (tiny_project / "nan_proj.py").write_text('''
from subsetctl.gradients.projectors import GaussianProjector
from subsetctl.registry import PROJECTORS

@PROJECTORS.register("nanny", "NaN everywhere")
class Nanny(GaussianProjector):
    def project_chunks(self, chunks):
        return super().project_chunks(chunks) * float("nan")
''')
    monkeypatch.syspath_prepend(str(tiny_project))
    sys.modules.pop("nan_proj", None)
    spec = yaml.safe_load((tiny_project / "subsetctl.yaml").read_text())
    spec["plugins"] = ["nan_proj:Nanny"]
    spec["gradients"] = {**spec.get("gradients", {}), "projector": "nanny"}
    (tiny_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(UserError, match=re.escape(f"The projector plugin 'nanny' (module nan_proj, {tiny_project / 'nan_proj.py'}) returned NaN")):
        run_project(tiny_project, until="gradients")
    sys.modules.pop("nan_proj", None)


def test_ls_without_a_folder_lists_the_plugins_of_the_spec_in_the_current_folder(jsonl_project: Path) -> None:
    """`ls` defaults to the current folder, as the other commands do: it ignored its spec."""
    import os
    import subprocess

    import yaml

    (jsonl_project / "mine_plugin.py").write_text(
        "from subsetctl.registry import STRATEGIES\nfrom subsetctl.search.base import Strategy\n\n"
        "@STRATEGIES.register('mine', 'picks mine')\nclass Mine(Strategy):\n"
        "    def run(self, estimator, context, params):\n        return None\n")
    spec_path = jsonl_project / "subsetctl.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec_path.write_text(yaml.safe_dump({**spec, "plugins": ["mine_plugin:Mine"]}))
    command = "import sys; from subsetctl.cli import main; sys.argv[0] = 'subsetctl'; main()"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(jsonl_project), *sys.path])}

    def ls() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", command, "ls", "--format", "json"], check=False, cwd=jsonl_project,
                              env=env, capture_output=True, text=True, timeout=120)

    listed = ls()
    assert listed.returncode == 0, listed.stderr
    assert "mine" in {row["name"] for row in json.loads(listed.stdout)["strategies"]}
    spec_path.write_text("target: [unclosed\n")  # a broken spec still lets ls list what is built in
    broken = ls()
    assert broken.returncode == 0 and "its plugins are not listed" in broken.stderr
    names = {row["name"] for row in json.loads(broken.stdout)["strategies"]}
    assert "forward" in names and "mine" not in names


def test_an_unknown_name_close_to_a_registered_one_gets_a_suggestion() -> None:
    from subsetctl.errors import UnknownPluginError

    with pytest.raises(UnknownPluginError, match=r"Unknown strategy 'exhaustiv' \(did you mean 'exhaustive'\?\)"):
        STRATEGIES.get("exhaustiv")
    with pytest.raises(UnknownPluginError) as far:
        STRATEGIES.get("best_single")
    assert "did you mean" not in str(far.value)


def test_a_plugin_name_clash_is_refused_and_replacing_a_built_in_is_said(jsonl_project: Path) -> None:
    """Two plugins registering `textdir` were both accepted (the later import won); a plugin
    registering `forward` was silently overwritten by the built-in, or replaced it, by
    import order."""
    import os
    import subprocess

    import yaml

    loader = ("from subsetctl.registry import LOADERS\n\n@LOADERS.register('textdir', 'reads a folder')\n"
              "def load(options, ctx):\n    raise NotImplementedError\n")
    (jsonl_project / "dupa.py").write_text(loader)
    (jsonl_project / "dupb.py").write_text(loader)
    (jsonl_project / "myfwd.py").write_text(  # imports no built-in strategy module first
        "from subsetctl.registry import STRATEGIES\nfrom subsetctl.search.base import Strategy\n\n"
        "@STRATEGIES.register('forward', 'my forward')\nclass Forward(Strategy):\n"
        "    def run(self, estimator, context, params):\n        return None\n")
    spec_path = jsonl_project / "subsetctl.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    command = "import sys; from subsetctl.cli import main; sys.argv[0] = 'subsetctl'; main()"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(jsonl_project), *sys.path])}

    def cli(*args: str, plugins: list[str]) -> subprocess.CompletedProcess:
        spec_path.write_text(yaml.safe_dump({**spec, "plugins": plugins}))
        return subprocess.run([sys.executable, "-c", command, *args], check=False, cwd=jsonl_project, env=env,
                              capture_output=True, text=True, timeout=120)

    clash = cli("validate", ".", plugins=["dupa:load", "dupb:load"])
    assert clash.returncode == 1
    assert "Two plugins register the loader 'textdir': module dupa and module dupb" in clash.stdout + clash.stderr
    # subsetctl's refusal, not an exception of the plugin's code ("raised UserError while being imported: ...")
    assert "raised UserError" not in clash.stdout + clash.stderr and ".." not in clash.stdout + clash.stderr
    replaced = cli("validate", ".", plugins=["myfwd:Forward"])
    assert replaced.returncode == 0
    assert ("module myfwd replaces the built-in strategy 'forward': wherever a spec names 'forward', that plugin's "
            "code runs instead of subsetctl's") in " ".join((replaced.stdout + replaced.stderr).split())
    listed = cli("ls", "--format", "json", plugins=["myfwd:Forward"])
    (forward,) = [row for row in json.loads(listed.stdout)["strategies"] if row["name"] == "forward"]
    assert forward["origin"] == "module myfwd" and forward["description"] == "my forward"


def test_a_plugin_of_the_wrong_kind_is_the_plugins_error_not_an_internal_one() -> None:
    """A function registered as a strategy failed with "internal error: AttributeError:
    'function' object has no attribute 'Params'" (an estimator: "'NoneType' object has no
    attribute 'sources'")."""
    from pydantic import BaseModel

    from subsetctl.errors import UserError
    from subsetctl.search.base import Strategy, parse_params

    registry: Registry[type] = Registry("strategy", "subsetctl.test_none", (), base="subsetctl.search.base:Strategy")

    @registry.register("plain")
    def plain(estimator, context, params):
        return None

    @registry.register("loose")
    class Loose(Strategy):
        class Params(BaseModel):
            k: int = 1

        def run(self, estimator, context, params):
            return None

    with pytest.raises(UserError, match=r"The strategy 'plain' \(module test_registry, \S+\.py\) is a function, not a "
                                        r"subclass of subsetctl\.search\.base\.Strategy"):
        registry.get("plain")
    with pytest.raises(UserError, match=r"Params that is not a subclass of subsetctl\.search\.base\.StrategyParams"):
        parse_params(registry.get("loose"), {"kk": 2}, "search.strategies[0].params")  # kk was dropped silently


def test_a_plugin_class_leaving_out_an_abstract_method_is_refused_by_validate() -> None:
    """A strategy without ``run`` or a projector that overrides ``project_chunks`` but not
    the abstract ``_fill`` passed validate and failed only when its stage built it, after
    the stages before it had run ("Can't instantiate abstract class")."""
    from subsetctl.errors import UserError
    from subsetctl.gradients.projectors import Projector
    from subsetctl.search.base import Strategy

    strategies: Registry[type] = Registry("strategy", "subsetctl.test_none", (), base="subsetctl.search.base:Strategy")
    projectors: Registry[type] = Registry(
        "projector", "subsetctl.test_none", (), base="subsetctl.gradients.projectors:Projector")

    @strategies.register("norun")
    class NoRun(Strategy):
        def runn(self, estimator, context, params):  # a typo
            return None

    @projectors.register("dense")
    class Dense(Projector):
        def project_chunks(self, chunks):
            return chunks[0]

    with pytest.raises(UserError, match=r"The strategy 'norun' \(module test_registry, \S+\.py\) is the class NoRun, which "
                                        r"does not define run \(an abstract method of subsetctl\.search\.base\.Strategy"):
        strategies.get("norun")
    with pytest.raises(UserError, match=r"does not define _fill \(an abstract method of "
                                        r"subsetctl\.gradients\.projectors\.Projector\), so it cannot be built"):
        projectors.get("dense")


def test_a_plugin_whose_run_or_estimate_takes_other_arguments_is_refused_by_validate() -> None:
    """A strategy with ``run(self, estimator)`` or an estimator with ``estimate(self)`` passed
    validate and failed at the search, after the model stages had run (the message named
    neither its file nor what subsetctl passes); one taking more, with defaults, still works."""
    from subsetctl.errors import UserError
    from subsetctl.registry import ESTIMATORS, STRATEGIES
    from subsetctl.search.base import Strategy

    strategies: Registry[type] = Registry("strategy", "subsetctl.test_none", (), base=STRATEGIES.base,
                                          called=STRATEGIES.called)
    estimators: Registry[type] = Registry("estimator", "subsetctl.test_none", (), base=ESTIMATORS.base,
                                          called=ESTIMATORS.called)

    @strategies.register("short")
    class Short(Strategy):
        def run(self, estimator):
            return None

    @strategies.register("roomy")
    class Roomy(Strategy):
        def run(self, estimator, context, params, extra=None, *more, **settings):
            return None

    from subsetctl.estimate.solvers import FastEstimator

    @estimators.register("blind")
    class Blind(FastEstimator):
        def estimate(self):
            return None

    with pytest.raises(UserError, match=r"The strategy 'short' \(module test_registry, \S+test_registry\.py\) is the class "
                                        r"Short, whose run\(self, estimator\) cannot be called as run\(self, "
                                        r"estimator, context, params\): too many positional arguments"):
        strategies.get("short")
    assert strategies.get("roomy") is Roomy
    with pytest.raises(UserError, match=r"whose estimate\(self\) cannot be called as estimate\(self, masks\)"):
        estimators.get("blind")


def test_a_plugin_estimator_built_without_lam_is_refused_by_validate(monkeypatch) -> None:
    """An estimator whose constructor takes no ``lam`` (``__init__(self, features)``; subsetctl
    builds it as ``cls(features, lam=..., ...)``) passed validate and failed only when
    calibrate or the search built it; one taking ``**settings`` still passes, and so does an
    estimator built from the stage context (``needs_model``)."""
    from subsetctl.errors import UserError
    from subsetctl.estimate.solvers import FastEstimator
    from subsetctl.registry import ESTIMATORS

    estimators = ESTIMATORS
    estimators.names()  # (the built-ins and entry points read first)
    monkeypatch.setattr(estimators, "_entries", dict(estimators._entries))  # put back after the test

    @estimators.register("lamless")
    class Lamless(FastEstimator):
        def __init__(self, features):
            super().__init__(features)

    @estimators.register("roomy")
    class Roomy(FastEstimator):
        def __init__(self, features, **settings):
            super().__init__(features, lam=settings.get("lam", 1.0))

    @estimators.register("model")
    class FromContext(FastEstimator):
        needs_model = True

        def __init__(self, ctx):
            self.ctx = ctx

    with pytest.raises(UserError, match=r"The estimator 'lamless' \(module test_registry, \S+test_registry\.py\) is the "
                                        r"class Lamless, whose constructor Lamless\(features\) cannot be called as "
                                        r"Lamless\(features, lam=\.\.\.\): got an unexpected keyword "
                                        r"argument 'lam'"):
        estimators.get("lamless")
    assert estimators.get("roomy") is Roomy and estimators.get("model") is FromContext


def test_a_plugin_projector_built_without_subsetctls_arguments_is_refused_by_validate(monkeypatch) -> None:
    """A projector whose constructor leaves out ``seed`` or ``memory_budget_mb`` (it is built as
    ``cls(p=, d=, seed=, memory_budget_mb=)``) passed validate and failed at the gradients stage,
    after meta-init had run."""
    from subsetctl.errors import UserError
    from subsetctl.gradients.projectors import GaussianProjector
    from subsetctl.registry import PROJECTORS

    PROJECTORS.names()  # (the built-ins and entry points read first)
    monkeypatch.setattr(PROJECTORS, "_entries", dict(PROJECTORS._entries))  # put back after the test

    @PROJECTORS.register("narrow")
    class Narrow(GaussianProjector):
        def __init__(self, p, d):
            super().__init__(p=p, d=d, seed=0)

    with pytest.raises(UserError, match=r"The projector 'narrow' \(module test_registry, \S+\) is the class Narrow, whose "
                                        r"constructor Narrow\(p, d\) cannot be called as Narrow\(p=\.\.\., d=\.\.\., "
                                        r"seed=\.\.\., memory_budget_mb=\.\.\.\): got an unexpected keyword argument"):
        PROJECTORS.get("narrow")


def test_a_plugin_strategy_that_cannot_be_built_without_arguments_is_refused_by_validate(monkeypatch) -> None:
    """A strategy is built as ``cls()``: one with ``__init__(self, k)`` passed validate and
    failed at the search ("raised TypeError: __init__() missing 1 required positional
    argument"), after the model stages had run; one whose arguments have defaults passes."""
    from subsetctl.errors import UserError
    from subsetctl.search.base import Strategy

    STRATEGIES.names()  # (the built-ins and entry points read first)
    monkeypatch.setattr(STRATEGIES, "_entries", dict(STRATEGIES._entries))  # put back after the test

    @STRATEGIES.register("needs_k")
    class NeedsK(Strategy):
        def __init__(self, k):
            self.k = k

        def run(self, estimator, context, params):
            return None

    @STRATEGIES.register("k_defaults")
    class KDefaults(NeedsK):
        def __init__(self, k=3):
            super().__init__(k)

    with pytest.raises(UserError, match=r"The strategy 'needs_k' \(module test_registry, \S+\) is the class NeedsK, whose "
                                        r"constructor NeedsK\(k\) cannot be called as NeedsK\(\): missing a required "
                                        r"argument: 'k'"):
        STRATEGIES.get("needs_k")
    assert STRATEGIES.get("k_defaults") is KDefaults


def test_a_plugin_loader_that_cannot_take_options_and_ctx_is_refused_by_validate(jsonl_project: Path,
                                                                                  monkeypatch) -> None:
    """A loader ``def load(options)`` (called as ``load(options, ctx)``) passed validate and
    failed only at the data stage; so did one registered under a built-in type, which is
    called as the built-in is, and one that is no function at all."""
    import yaml

    from subsetctl.api import validate_spec_file
    from subsetctl.registry import LOADERS

    (jsonl_project / "short_loaders_xyz.py").write_text(
        "from subsetctl.registry import LOADERS\n\n"
        "@LOADERS.register('tsv_short')\ndef load(options):\n    return None\n\n"
        "@LOADERS.register('csv')\ndef load_csv(options, ctx, extra):\n    return None\n\n"
        "class Settings:\n    pass\n\nLOADERS.register('not_callable')(Settings())\n")
    monkeypatch.syspath_prepend(str(jsonl_project))
    monkeypatch.setattr(LOADERS, "_entries", dict(LOADERS._entries))  # put back after the test
    monkeypatch.setattr(LOADERS, "_replaced", dict(LOADERS._replaced))
    spec_path = jsonl_project / "subsetctl.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["plugins"] = ["short_loaders_xyz:load"]
    spec["sources"][0]["loader"] = {"type": "plugin", "name": "tsv_short", "options": {}}
    spec["sources"][1]["loader"] = {"type": "csv", "path": "b.csv"}
    spec["sources"].append({"name": "c", "loader": {"type": "plugin", "name": "not_callable"}})
    (jsonl_project / "b.csv").write_text("prompt,response\nq,a\n")
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    checked = validate_spec_file(spec_path)
    problems = {e.key: e.message for e in checked.issues}
    file = str(jsonl_project / "short_loaders_xyz.py")
    assert problems["sources[0].loader.name"] == (
        f"The loader 'tsv_short' (module short_loaders_xyz, {file}) is the function load, whose load(options) cannot "
        "be called as load(options, ctx): too many positional arguments; README → Plugins shows one. Fix the plugin.")
    assert problems["sources[1].loader.type"].startswith(
        f"The loader 'csv' (module short_loaders_xyz, {file}) is the function load_csv, whose load_csv(options, ctx, "
        "extra) cannot be called as load_csv(options, ctx): missing a required argument: 'extra'")
    assert problems["sources[2].loader.name"].startswith(
        f"The loader 'not_callable' (module short_loaders_xyz, {file}) is a Settings object, not a function: a loader "
        "is called as load(options, ctx)")


def test_a_plugin_module_next_to_the_spec_but_not_importable_says_which_folder_to_add(tmp_path: Path) -> None:
    from subsetctl.errors import UserError
    from subsetctl.plugin_loading import load_plugin_string

    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "nearby_mod_xyz.py").write_text("x = 1\n")
    with pytest.raises(UserError, match=rf"Its file is {tmp_path}/plugins/nearby_mod_xyz\.py: put {tmp_path}/plugins "
                                        "on PYTHONPATH"):
        load_plugin_string("nearby_mod_xyz:x", tmp_path)
    with pytest.raises(UserError, match="put the module's folder on PYTHONPATH"):
        load_plugin_string("nowhere_mod_xyz:x", tmp_path)


def test_a_misspelt_plugin_attribute_gets_a_suggestion_and_the_modules_file(tmp_path: Path, monkeypatch) -> None:
    """``plugins: ["best_single:BestSingel"]`` said only "has no attribute 'BestSingel'":
    neither the name meant nor which file was imported (a stale module of that name
    elsewhere on the path) nor what the attribute should be."""
    from subsetctl.errors import UserError
    from subsetctl.plugin_loading import load_plugin_string

    (tmp_path / "typo_mod_xyz.py").write_text("class BestSingle:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(UserError, match=rf"Plugin module 'typo_mod_xyz' \({tmp_path}/typo_mod_xyz\.py\) has no "
                                            r"attribute 'BestSingel' \(did you mean 'BestSingle'\?\): write "
                                            r"'plugins: \[\"typo_mod_xyz:NAME\"\]'"):
            load_plugin_string("typo_mod_xyz:BestSingel")
    finally:
        sys.modules.pop("typo_mod_xyz", None)


def test_two_installed_packages_under_one_name_fail_only_the_specs_that_use_it(monkeypatch) -> None:
    import subsetctl.registry as registry_module
    from subsetctl.errors import UserError

    class A:
        """one"""

    class B:
        """two"""

    installed = [_EntryPoint("twice", "pkg_a:A", obj=A), _EntryPoint("twice", "pkg_b:B", obj=B),
                 _EntryPoint("once", "pkg_a:A", obj=A)]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: installed)
    registry: Registry[type] = Registry("thing", "subsetctl.test_things", ())
    assert registry.get("once") is A
    with pytest.raises(UserError, match=r"Two installed packages register the thing 'twice' \(entry points "
                                        r"'pkg_a:A', 'pkg_b:B'"):
        registry.get("twice")
    # `ls` and `doctor` say which trouble it is (`ls` said "failed to import" of a clash)
    assert registry.broken_summary("twice") == "registered twice"


def test_the_lock_names_a_shard_run_on_another_machine(tmp_path: Path, monkeypatch) -> None:
    """A shard run's preparation holding the lock was called "a running `subsetctl run`"."""
    import socket
    import subprocess

    from subsetctl.errors import LockedError
    from subsetctl.project import Project

    project = Project(tmp_path)
    project.state_dir.mkdir()
    code = ("import time; from pathlib import Path; from subsetctl.project import Project\n"
            f"with Project(Path({str(tmp_path)!r})).lock(shard=True):\n    print('locked', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        here = socket.gethostname()
        monkeypatch.setattr(socket, "gethostname", lambda: "another-machine")  # as seen from there
        with pytest.raises(LockedError, match=rf"a `subsetctl run --shard` \(PID {holder.pid} on {here}\) running "
                                              "the stages before gradients"), project.lock():
            pass
    finally:
        holder.kill()
        holder.wait()


def test_a_plugin_the_search_does_not_use_leaves_it_up_to_date(tiny_project_ran, monkeypatch) -> None:
    """The search's spec keys held the whole ``plugins:`` list: adding a plugin it does not
    use (a loader, an estimator nothing names) re-ran it, and a search recorded with that
    key must stay up to date. A plugin replacing a built-in strategy the spec uses still
    makes it stale."""
    import yaml

    from subsetctl.api import plan_project, run_project
    from subsetctl.registry import STRATEGIES
    from subsetctl.stages.search import SearchStage

    tiny_project = tiny_project_ran("gradients")  # a copy: the search still runs
    with monkeypatch.context() as before:  # as an earlier subsetctl recorded it
        before.setattr(SearchStage, "spec_keys", (*SearchStage.spec_keys, "plugins"))
        run_project(tiny_project, until="search")
    manifest = json.loads((tiny_project / ".subsetctl" / "search" / "manifest.json").read_text())
    assert "plugins" in manifest["inputs"]["slice"]
    (tiny_project / "unused_plugin.py").write_text(
        "from subsetctl.registry import ESTIMATORS\n"
        "from subsetctl.estimate.solvers import FastEstimator\n"
        "@ESTIMATORS.register('unused_fast', 'fast, under another name nothing uses')\n"
        "class UnusedFast(FastEstimator):\n"
        "    pass\n")
    (tiny_project / "own_exhaustive.py").write_text(
        "from subsetctl.registry import STRATEGIES\n"
        "from subsetctl.search.ensemble import Exhaustive\n"
        "@STRATEGIES.register('exhaustive', 'the built-in, from a plugin')\n"
        "class OwnExhaustive(Exhaustive):\n"
        "    pass\n")
    monkeypatch.syspath_prepend(str(tiny_project))
    monkeypatch.setitem(STRATEGIES._entries, "exhaustive", STRATEGIES._entries["exhaustive"])  # put back after
    spec_file = tiny_project / "subsetctl.yaml"
    raw = yaml.safe_load(spec_file.read_text())

    def search_status(plugins: list[str]):
        spec_file.write_text(yaml.safe_dump({**raw, "plugins": plugins}, sort_keys=False))
        return next(s for s in plan_project(tiny_project, until="search")[2] if s.name == "search")

    try:
        assert search_status([]).state == "up to date"
        status = search_status(["unused_plugin:UnusedFast"])
        assert status.state == "up to date", status.reasons
        status = search_status(["unused_plugin:UnusedFast", "own_exhaustive:OwnExhaustive"])
        assert status.state == "stale" and "strategy exhaustive" in " ".join(status.reasons), status.reasons
    finally:
        sys.modules.pop("unused_plugin", None)
        sys.modules.pop("own_exhaustive", None)


def test_each_project_in_one_process_sees_only_its_own_plugins(tmp_path: Path, jsonl_project: Path,
                                                               monkeypatch) -> None:
    """Plugins were registered for the whole process: in a notebook, a project whose
    ``plugins:`` register the strategy 'scoped_best' could not run after another one whose
    plugins register it too ("Two plugins register ..."), and a plugin replacing the
    built-in ``jsonl`` loader kept replacing it (with its warning) for every later project.
    Each call now sees its own spec's plugins, and a project named again gets its plugins
    back although Python does not import their modules again."""
    import shutil

    import yaml

    from subsetctl.api import list_plugins, validate_spec_file
    from subsetctl.registry import LOADERS

    spec = yaml.safe_load((jsonl_project / "subsetctl.yaml").read_text())
    plugin = ("from subsetctl.registry import STRATEGIES\nfrom subsetctl.search.base import Strategy\n\n"
              "@STRATEGIES.register('scoped_best', 'picks {0}')\nclass Best(Strategy):\n"
              "    def run(self, estimator, context, params):\n        return None\n")
    projects = {}
    for letter in "ab":
        folder = tmp_path / f"project_{letter}"
        shutil.copytree(jsonl_project, folder)
        (folder / f"scoped_{letter}.py").write_text(plugin.format(letter))
        (folder / "subsetctl.yaml").write_text(yaml.safe_dump({**spec, "plugins": [f"scoped_{letter}:Best"]}))
        monkeypatch.syspath_prepend(str(folder))
        projects[letter] = folder
    (projects["a"] / "own_jsonl.py").write_text(
        "from subsetctl.registry import LOADERS\nfrom subsetctl.data.loaders import load_jsonl\n\n"
        "@LOADERS.register('jsonl', 'my jsonl')\ndef load(options, ctx):\n    return load_jsonl(options, ctx)\n")
    (projects["a"] / "subsetctl.yaml").write_text(
        yaml.safe_dump({**spec, "plugins": ["scoped_a:Best", "own_jsonl:load"]}))
    plain = tmp_path / "plain"
    shutil.copytree(jsonl_project, plain)

    def best(folder: Path | None) -> list[str]:
        return [row["description"] for row in list_plugins(folder)["strategies"] if row["name"] == "scoped_best"]

    for _ in range(2):  # the second time round, every module is imported already
        assert best(projects["a"]) == ["picks a"]
        assert best(projects["b"]) == ["picks b"]
        assert best(plain) == [] and best(None) == []
        checked = validate_spec_file(projects["a"] / "subsetctl.yaml")
        assert checked.ok, [i.render() for i in checked.issues]
        assert any("replaces the built-in loader 'jsonl'" in w.message for w in checked.warnings)
        checked = validate_spec_file(plain / "subsetctl.yaml")
        assert checked.ok and not any("replaces the built-in" in w.message for w in checked.warnings)
        assert LOADERS.origin("jsonl") == "built-in" and "jsonl" not in LOADERS.replaced()


def test_two_projects_plugin_modules_of_one_name_are_refused_not_mixed_up(tmp_path: Path, monkeypatch) -> None:
    """Two projects each with their own ``same_name_plugin.py``: in one process, Python
    handed the second project the first one's module, so its spec ran the other project's
    strategy. Once the first folder is off the path, naming the module is refused."""
    from subsetctl.errors import UserError
    from subsetctl.plugin_loading import load_plugin_string
    from subsetctl.plugin_scoping import plugin_scope

    for letter in "ab":
        (tmp_path / letter).mkdir()
        (tmp_path / letter / "same_name_plugin.py").write_text(
            "from subsetctl.registry import STRATEGIES\nfrom subsetctl.search.base import Strategy\n\n"
            f"@STRATEGIES.register('same_{letter}', 'picks {letter}')\nclass Best(Strategy):\n"
            "    def run(self, estimator, context, params):\n        return None\n")
    with monkeypatch.context() as first:
        first.syspath_prepend(str(tmp_path / "a"))
        with plugin_scope():
            load_plugin_string("same_name_plugin:Best")
            assert STRATEGIES.origin("same_a") == "module same_name_plugin"
        with plugin_scope():  # the same file again: fine
            load_plugin_string("same_name_plugin:Best")
    monkeypatch.syspath_prepend(str(tmp_path / "b"))
    with plugin_scope(), pytest.raises(UserError, match=(
            rf"already imported 'same_name_plugin' from {tmp_path}/a/same_name_plugin.py, but this spec's is "
            rf"{tmp_path}/b/same_name_plugin.py\. Python imports a module name once")):
        load_plugin_string("same_name_plugin:Best")
    assert "same_a" not in STRATEGIES.names() and "same_b" not in STRATEGIES.names()


def test_two_projects_whose_plugins_register_one_name_both_run_in_one_process(tiny_project: Path, tmp_path: Path,
                                                                              monkeypatch) -> None:
    """A notebook running two projects, each with a plugin strategy registered as 'pick'
    (one picks every source, the other none): the second run was refused ("Two plugins
    register the strategy 'pick'"). Each run now uses its own, also when run again."""
    import shutil

    import yaml

    from subsetctl.api import plan_project, run_project

    spec = yaml.safe_load((tiny_project / "subsetctl.yaml").read_text())
    spec["search"] = {"strategies": [{"name": "pick"}]}
    projects = {}
    for letter, base in (("a", "AllSources"), ("b", "TargetOnly")):
        folder = tmp_path / f"two_{letter}"
        shutil.copytree(tiny_project, folder)
        (folder / f"pick_{letter}.py").write_text(
            f"from subsetctl.search.baselines import {base}\nfrom subsetctl.registry import STRATEGIES\n"
            f"@STRATEGIES.register('pick', 'picks as {base}')\nclass Pick({base}):\n    pass\n")
        (folder / "subsetctl.yaml").write_text(yaml.safe_dump({**spec, "plugins": [f"pick_{letter}:Pick"]}))
        monkeypatch.syspath_prepend(str(folder))
        projects[letter] = folder

    def picked(folder: Path) -> list[str]:
        selections = json.loads((folder / ".subsetctl" / "search" / "selections.json").read_text())
        return selections["strategies"]["pick"]["selected"]

    for letter in "abab":
        run_project(projects[letter], until="search")
    assert picked(projects["a"]) == ["a", "b", "bad"] and picked(projects["b"]) == []
    for letter in "ab":
        statuses = {s.name: s for s in plan_project(projects[letter], until="search")[2]}
        assert not statuses["search"].will_run
    assert "pick" not in STRATEGIES.names()


def test_an_installed_plugin_whose_module_registers_itself_stays_after_a_scoped_call(monkeypatch) -> None:
    """An installed package's module that registers its class with the decorator when the
    entry point imports it: the registration, made inside a run's plugin scope, was taken
    back when the run returned, and the entry points are imported once, so a notebook's
    second run no longer found the installed plugin."""
    import subsetctl.registry as registry_module
    from subsetctl.plugin_scoping import plugin_scope

    registry: Registry[type] = Registry("thing", "subsetctl.test_things", ())

    class Thing:
        """An installed thing."""

    class Importing(_EntryPoint):
        def load(self) -> object:  # importing the module runs its decorator
            return registry.register("self_registered")(Thing)

    monkeypatch.setattr(registry_module, "entry_points", lambda group: [Importing("installed_thing", "pkg:Thing")])
    with plugin_scope():
        assert registry.get("installed_thing") is Thing
    assert registry.get("installed_thing") is Thing and registry.get("self_registered") is Thing


def test_an_installed_plugin_also_named_under_plugins_stays_after_the_scoped_call(monkeypatch) -> None:
    """A spec that names an installed package's module under ``plugins:`` registered its
    class inside the run's scope before the entry points were read; the entry point was then
    skipped (the name was taken), and the scope took the name back on leaving: the
    installed plugin was gone for the rest of the process."""
    import subsetctl.registry as registry_module
    from subsetctl.plugin_scoping import plugin_scope

    registry: Registry[type] = Registry("thing", "subsetctl.test_things", ())

    class Thing:
        """An installed thing."""

    monkeypatch.setattr(registry_module, "entry_points",
                        lambda group: [_EntryPoint("thing", f"{Thing.__module__}:Thing", obj=Thing)])
    with plugin_scope():
        registry.register("thing")(Thing)  # the spec's plugins: imports the module first
        assert registry.get("thing") is Thing
    assert registry.get("thing") is Thing and registry.origin("thing") == f"entry point {Thing.__module__}:Thing"


def test_a_plugin_module_importing_one_another_spec_imported_first_has_its_registrations(tmp_path, monkeypatch) -> None:
    """A spec's plugin module that imports another plugin module (a shared helpers module,
    its package's __init__) gets what that one registers, as in a fresh process, also when
    an earlier spec imported it first: Python did not import it again, so nothing of it was
    registered, and the second spec's run said "unknown strategy 'shared_pick'"."""
    from subsetctl.plugin_loading import load_plugin_string
    from subsetctl.plugin_scoping import plugin_scope
    from subsetctl.registry import STRATEGIES

    monkeypatch.syspath_prepend(str(tmp_path))
    strategy = ("from subsetctl.search.baselines import AllSources\nfrom subsetctl.registry import STRATEGIES\n"
                "@STRATEGIES.register({name!r})\nclass {cls}(AllSources):\n    pass\n")
    (tmp_path / "shared_strats.py").write_text(strategy.format(name="shared_pick", cls="SharedPick"))
    (tmp_path / "uses_shared.py").write_text("import shared_strats  # noqa\n"
                                             + strategy.format(name="own_pick", cls="OwnPick"))
    (tmp_path / "kit").mkdir()
    (tmp_path / "kit" / "__init__.py").write_text(strategy.format(name="kit_pick", cls="KitPick"))
    (tmp_path / "kit" / "first.py").write_text(strategy.format(name="first_pick", cls="FirstPick"))
    (tmp_path / "kit" / "second.py").write_text(strategy.format(name="second_pick", cls="SecondPick"))
    with plugin_scope():
        load_plugin_string("shared_strats:SharedPick")
        load_plugin_string("kit.first:FirstPick")
    with plugin_scope():
        load_plugin_string("uses_shared:OwnPick")
        load_plugin_string("kit.second:SecondPick")
        assert {"shared_pick", "own_pick", "kit_pick", "second_pick"} <= set(STRATEGIES.names())
        assert "first_pick" not in STRATEGIES.names()  # kit's other module: not imported by this spec's
    assert not {"shared_pick", "own_pick", "kit_pick", "first_pick", "second_pick"} & set(STRATEGIES.names())


def test_a_plugin_module_reloaded_between_two_runs_stays_that_projects_own(tmp_path, monkeypatch) -> None:
    """A notebook edits project a's plugin and importlib.reloads it (as the warning about an
    edited plugin says to) between runs: what the reload registered, outside any run, stayed
    registered for every project, so project b, whose plugin registers the same name, was
    refused with "Two plugins register the strategy 'pick'". It is a's again, edited, for
    the next call that names a's module only."""
    import importlib

    from subsetctl.plugin_loading import load_plugin_string
    from subsetctl.plugin_scoping import plugin_scope
    from subsetctl.registry import STRATEGIES

    monkeypatch.syspath_prepend(str(tmp_path))
    for letter in "ab":
        (tmp_path / f"reloaded_pick_{letter}.py").write_text(
            "from subsetctl.search.baselines import AllSources\nfrom subsetctl.registry import STRATEGIES\n"
            "@STRATEGIES.register('pick')\nclass Pick(AllSources):\n    pass\n")
    with plugin_scope():
        before = load_plugin_string("reloaded_pick_a:Pick")
    edited = importlib.reload(importlib.import_module("reloaded_pick_a")).Pick
    assert edited is not before and "pick" not in STRATEGIES.names()
    with plugin_scope():
        assert load_plugin_string("reloaded_pick_b:Pick") is STRATEGIES.get("pick")
    with plugin_scope():
        load_plugin_string("reloaded_pick_a:Pick")
        assert STRATEGIES.get("pick") is edited
    assert "pick" not in STRATEGIES.names()
    # a notebook's own registration outside any call stays, also of a functools.partial, a
    # kind of object (of the module functools) a spec's plugin registered too
    import functools

    from subsetctl.registry import LOADERS

    (tmp_path / "partial_loader.py").write_text(
        "import functools\nfrom subsetctl.registry import LOADERS\ndef read(options, ctx, k=1):\n    pass\n"
        "LOADERS.register('partial_one')(functools.partial(read, k=2))\nclass X:\n    pass\n")
    with plugin_scope():
        load_plugin_string("partial_loader:X")
    LOADERS.register("notebook_partial")(functools.partial(lambda options, ctx, k: None, k=3))
    assert "notebook_partial" in LOADERS.names() and "partial_one" not in LOADERS.names()


def test_an_installed_plugin_whose_name_a_specs_plugin_took_first_is_there_after_the_call(monkeypatch) -> None:
    """A spec's plugin registering the name of an installed entry point of another package,
    before the entry points were read (its import comes first): the entry point was skipped,
    the name taken back after the call, and the installed plugin gone for every later
    project of the process (unknown). That spec's plugin has the name during its calls, as
    in a fresh process, also once the entry point is read; the installed one after them."""
    import subsetctl.registry as registry_module
    from subsetctl.plugin_scoping import plugin_scope

    registry: Registry[type] = Registry("thing", "subsetctl.test_things", ())

    class Installed:
        """An installed thing."""

    class Local:
        """A spec's thing."""

    Installed.__module__, Local.__module__ = "installed_pkg", "spec_plugin"
    monkeypatch.setattr(registry_module, "entry_points",
                        lambda group: [_EntryPoint("thing", "installed_pkg:Installed", obj=Installed)])
    for _ in range(2):  # the second time, the entry point is read before the plugin registers
        with plugin_scope():
            registry.register("thing")(Local)
            assert registry.get("thing") is Local and registry.replaced() == {}
        assert registry.get("thing") is Installed
        assert registry.origin("thing") == "entry point installed_pkg:Installed"


def test_an_installed_packaged_model_is_described_by_itself_and_checked_when_named(monkeypatch) -> None:
    """An entry point of `subsetctl.models` was listed by `ls` with PackagedModel's class
    docstring ("A model shipped inside a PyPI package.") for every such model, and one that
    was not a PackagedModel was taken as one: it failed later with an AttributeError, and
    broke the error message of any other packaged model that listed the causal LMs."""
    import pytest

    import subsetctl.registry as registry_module
    from subsetctl.errors import UserError
    from subsetctl.modeling.packaged import PackagedModel
    from subsetctl.modeling.resolve import _check_packaged_kind
    from subsetctl.registry import PACKAGED_MODELS, Entry

    def packaged(name: str) -> PackagedModel:
        return PackagedModel(name=name, description=f"{name}, a Llama from PyPI {name}", architecture="llama",
                             kinds=("causal-lm",), lora_targets=("q_proj",), pypi=name, locate=lambda c, p: c)

    installed = [_EntryPoint("my-model", "mypkg:MODEL", obj=packaged("my-model")),
                 _EntryPoint("junk", "mypkg:JUNK", obj=object()),
                 _EntryPoint("renamed", "mypkg:OTHER", obj=packaged("other-name"))]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: installed)
    registry: Registry = Registry("packaged model", "subsetctl.models", (),
                                  instance_of="subsetctl.modeling.packaged:PackagedModel")
    assert registry.get("my-model").name == "my-model"
    assert {e.name: e.description for e in registry.entries()}["my-model"] == "my-model, a Llama from PyPI my-model"
    with pytest.raises(UserError, match=r"'junk' \(entry point mypkg:JUNK\) is an instance of object, not a "
                                        r"subsetctl.modeling.packaged.PackagedModel"):
        registry.get("junk")
    with pytest.raises(UserError, match="'renamed' .* is a PackagedModel named 'other-name': register it under"):
        registry.get("renamed")

    # a broken one installed beside the built-ins: another model's error still lists the causal LMs
    monkeypatch.setitem(PACKAGED_MODELS._entries, "junk", Entry("junk", object(), "", "entry point mypkg:JUNK"))
    with pytest.raises(UserError, match=r"loads as a causal-lm \(smollm2-135m-instruct\)"):
        _check_packaged_kind("all-minilm-l6-v2", "causal-lm")


def _estimator_package(site: Path, name: str, value: str, version: str) -> Path:
    """An installed package ``plugpkg`` in ``site`` (a folder for sys.path) whose entry point
    ``name = value`` registers a copy of the fast estimator; returns its dist-info folder."""
    module, attr = value.split(":")
    (site / f"{module}.py").write_text("from subsetctl.estimate.solvers import FastEstimator\n\n"
                                       f"class {attr}(FastEstimator):\n    '''fast, from a package'''\n")
    info = site / f"plugpkg-{version}.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text(f"[subsetctl.estimators]\n{name} = {value}\n")
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: plugpkg\nVersion: {version}\n")
    return info


def test_a_new_release_of_an_installed_plugin_makes_the_stages_using_it_stale(
        tiny_project_ran, tmp_path_factory, monkeypatch) -> None:
    """Only the file defining an installed plugin was fingerprinted: a new release of its
    package (another helper module, other shipped data) left the search "up to date", and
    its estimates were taken from the search cache."""
    import yaml

    from subsetctl.api import plan_project, run_project
    from subsetctl.registry import ESTIMATORS

    project = tiny_project_ran("gradients")
    site = tmp_path_factory.mktemp("site")
    info = _estimator_package(site, "plugged", "plugpkg_estimators:Plugged", "1.0")

    def install(version: str) -> None:  # as a new process finds the package installed
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: plugpkg\nVersion: {version}\n")
        ESTIMATORS._entries.pop("plugged", None)
        monkeypatch.setattr(ESTIMATORS, "_loaded", False)

    monkeypatch.syspath_prepend(str(site))
    install("1.0")
    spec = yaml.safe_load((project / "subsetctl.yaml").read_text())
    spec["estimate"] = {"estimator": "plugged"}
    (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    run_project(project, until="search")
    assert ESTIMATORS.origin("plugged") == "entry point plugpkg_estimators:Plugged of plugpkg 1.0"
    assert not any(s.will_run for s in plan_project(project, until="search")[2])

    install("1.1")
    search = {s.name: s for s in plan_project(project, until="search")[2]}["search"]
    assert search.will_run
    assert "the code of the estimator plugged plugin, plugpkg 1.0 -> 1.1" in "; ".join(search.reasons)


def test_a_plugin_subclassing_a_built_in_is_named_by_its_own_registration() -> None:
    """A plugin strategy deriving from the built-in `all` kept the name "all": a mistyped
    parameter was "Invalid parameters for strategy 'all'", and README's
    `StrategyResult(strategy=self.name, ...)` recorded it as `all`."""
    import pytest

    from subsetctl.errors import UserError
    from subsetctl.registry import STRATEGIES
    from subsetctl.search.base import parse_params
    from subsetctl.search.baselines import AllSources

    @STRATEGIES.register("every_source_too")
    class EverySource(AllSources):
        """Every source, as a plugin."""

    assert EverySource.name == "every_source_too" and AllSources.name == "all"
    assert EverySource.description == "Every source, as a plugin."
    with pytest.raises(UserError, match=r"Invalid parameters for strategy 'every_source_too': params\.k: is not a "):
        parse_params(EverySource, {"k": 1}, "params")


def test_editing_a_helper_module_of_a_plugins_package_makes_the_stages_using_it_stale(
        tiny_project_ran, tmp_path_factory, monkeypatch) -> None:
    """Only the file defining a plugin was fingerprinted: a plugin package's helper module
    edited (an editable install being developed) left the search "up to date", and a re-run
    took the estimates of the old helper from the search cache."""
    import yaml
    from pluginfiles import write_package

    from subsetctl import filehash
    from subsetctl.api import plan_project, run_project

    project = tiny_project_ran("gradients")
    site = tmp_path_factory.mktemp("helper-site")
    package = write_package(site, "helperplug", {"penalty": "PENALTY = 0.001\n", "estimators": (
        "import numpy as np\nfrom subsetctl.estimate.solvers import FastEstimator\nfrom subsetctl.registry import "
        "ESTIMATORS\nfrom helperplug.penalty import PENALTY\n\n\n@ESTIMATORS.register('helped')\n"
        "class Helped(FastEstimator):\n    def estimate(self, masks):\n        batch = super().estimate(masks)\n"
        "        batch.loss = batch.loss + PENALTY * np.asarray(masks).sum(axis=1)\n        return batch\n")})
    monkeypatch.syspath_prepend(str(site))
    spec = yaml.safe_load((project / "subsetctl.yaml").read_text())
    spec["plugins"] = ["helperplug.estimators:Helped"]
    spec["estimate"] = {"estimator": "helped"}
    (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    run_project(project, until="search")
    assert not any(s.will_run for s in plan_project(project, until="search")[2])

    (package / "penalty.py").write_text("PENALTY = 0.5\n")
    for name in ("helperplug", "helperplug.penalty", "helperplug.estimators"):  # as a new process imports them
        sys.modules.pop(name)
    monkeypatch.setattr(filehash, "_PACKAGE_AS_LOADED", {}, raising=False)  # (a new process)
    search = {s.name: s for s in plan_project(project, until="search")[2]}["search"]
    assert search.will_run and "the code of the estimator helped plugin" in "; ".join(search.reasons)


def test_editing_the_module_a_plugin_class_inherits_from_makes_the_stages_using_it_stale(
        tiny_project_ran, tmp_path_factory, monkeypatch) -> None:
    """A plugin estimator subclassing a class of a sibling module (both top-level modules on
    PYTHONPATH) runs that module's ``estimate``, but only the subclass's file was
    fingerprinted: editing the base class left the search "up to date" and a re-run reused
    the old code's estimates."""
    import yaml

    from subsetctl import filehash
    from subsetctl.api import plan_project, run_project

    project = tiny_project_ran("gradients")
    site = tmp_path_factory.mktemp("base-site")
    base = ("import numpy as np\nfrom subsetctl.estimate.solvers import FastEstimator\n\n\n"
            "class Penalized(FastEstimator):\n    def estimate(self, masks):\n        batch = super().estimate(masks)\n"
            "        batch.loss = batch.loss + PENALTY * np.asarray(masks).sum(axis=1)\n        return batch\n")
    (site / "penalized_base.py").write_text(base.replace("PENALTY", "0.001"))
    (site / "penalized_plugin.py").write_text(
        "from penalized_base import Penalized\nfrom subsetctl.registry import ESTIMATORS\n\n\n"
        "@ESTIMATORS.register('penalized')\nclass Tuned(Penalized):\n    pass\n")
    monkeypatch.syspath_prepend(str(site))
    spec = yaml.safe_load((project / "subsetctl.yaml").read_text())
    spec["plugins"] = ["penalized_plugin:Tuned"]
    spec["estimate"] = {"estimator": "penalized"}
    (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    try:
        run_project(project, until="search")
        assert not any(s.will_run for s in plan_project(project, until="search")[2])

        (site / "penalized_base.py").write_text(base.replace("PENALTY", "0.5"))
        for name in ("penalized_base", "penalized_plugin"):  # as a new process imports them
            sys.modules.pop(name)
        monkeypatch.setattr(filehash, "_CODE_AS_LOADED", filehash.weakref.WeakKeyDictionary())  # (a new process)
        search = {s.name: s for s in plan_project(project, until="search")[2]}["search"]
        assert search.will_run and "the code of the estimator penalized plugin" in "; ".join(search.reasons)
    finally:
        for name in ("penalized_base", "penalized_plugin"):
            sys.modules.pop(name, None)


def test_ls_names_where_a_broken_installed_plugin_comes_from(monkeypatch) -> None:
    """`ls --format json` gave a plugin that failed to import the origin "entry point" alone,
    where a working one's names its entry point and package."""
    import subsetctl.registry as registry_module
    from subsetctl.api import list_plugins
    from subsetctl.registry import STRATEGIES

    installed = [_EntryPoint("broken_strategy", "pkg_c.strategies:C", error=ImportError("no numpy"), dist="pkg-c 2.0")]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: installed if "strateg" in group else [])
    monkeypatch.setattr(STRATEGIES, "_loaded", False)
    monkeypatch.setattr(STRATEGIES, "_broken", {})
    monkeypatch.setattr(STRATEGIES, "_broken_origins", {}, raising=False)
    row = next(r for r in list_plugins()["strategies"] if r["name"] == "broken_strategy")
    assert row["origin"] == "entry point pkg_c.strategies:C of pkg-c 2.0" and "no numpy" in row["error"]


def test_the_report_names_the_plugins_and_releases_that_made_its_results(
        tiny_project_ran, tmp_path_factory, monkeypatch) -> None:
    """The stages recorded which plugin code and package release they ran, but report.json
    and report.md never said that third-party code made the results."""
    import json

    import yaml

    from subsetctl.api import run_project
    from subsetctl.registry import ESTIMATORS

    project = tiny_project_ran("gradients")
    site = tmp_path_factory.mktemp("site")
    _estimator_package(site, "named", "plugpkg_named:Named", "2.0")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(ESTIMATORS, "_loaded", False)
    spec = yaml.safe_load((project / "subsetctl.yaml").read_text())
    spec["estimate"] = {"estimator": "named"}
    (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    run_project(project)
    plugins = json.loads((project / "report.json").read_text())["plugins"]
    assert list(plugins) == ["estimator named"]
    assert plugins["estimator named"]["package"] == "plugpkg 2.0" and "search" in plugins["estimator named"]["stages"]
    assert len(plugins["estimator named"]["sha256"]) == 12
    assert "made with plugins: estimator named (plugpkg 2.0; " in (project / "report.md").read_text()
    spec["estimate"] = {"estimator": "fast"}  # built-ins alone: nothing said
    (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    run_project(project)
    assert "plugins" not in json.loads((project / "report.json").read_text())


def test_validate_warns_of_a_spec_plugin_registering_an_installed_plugins_name(
        tiny_project, tmp_path_factory, monkeypatch) -> None:
    """A `plugins:` module registering the name of an installed entry point replaced it for
    that spec without a word (a built-in's replacement is warned of)."""
    import yaml

    from subsetctl.api import validate_spec_file
    from subsetctl.registry import ESTIMATORS

    site = tmp_path_factory.mktemp("site")
    _estimator_package(site, "shadowed", "plugpkg_shadowed:Installed", "3.0")
    (site / "spec_shadow.py").write_text(
        "from subsetctl.estimate.solvers import FastEstimator\n"
        "from subsetctl.registry import ESTIMATORS\n\n"
        "@ESTIMATORS.register('shadowed')\n"
        "class Mine(FastEstimator):\n    '''fast, the spec's own'''\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(ESTIMATORS, "_entries", dict(ESTIMATORS._entries))  # put back after the test
    monkeypatch.setattr(ESTIMATORS, "_loaded", False)
    spec = yaml.safe_load((tiny_project / "subsetctl.yaml").read_text())
    spec["plugins"] = ["spec_shadow:Mine"]
    (tiny_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    warnings = [w.render() for w in validate_spec_file(tiny_project).warnings]
    assert any("registers the estimator 'shadowed', which the installed entry point plugpkg_shadowed:Installed "
               "of plugpkg 3.0 also registers" in w for w in warnings), warnings
    spec["plugins"] = []  # without the module: nothing said
    (tiny_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert not any("also registers" in w.render() for w in validate_spec_file(tiny_project).warnings)


def test_readme_states_each_built_in_strategy_parameter_s_default() -> None:
    """README's "Strategies" section gives each built-in strategy parameter's default in prose
    (`m` (200), `alpha` 0.5, `select` (default `sign`), ...), which `subsetctl ls` reads from the
    code: a default changed in one place and not the other told a user a value the run did
    not use. Each parameter with a default is named there with its value close after it."""
    from subsetctl.api import list_plugins

    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8").split())
    section = readme[readme.index("### Strategies and what their per-source scores mean"):readme.index("### Classifiers")]
    missing = []
    for row in list_plugins()["strategies"]:
        for param in row["params"]:
            default = param["default"]
            if default is None:  # unset: nothing to state
                continue
            forms = {str(default), format(default, "g") if isinstance(default, float) else str(default)}
            if not any(re.search(rf"`{re.escape(param['name'])}`[^.;]{{0,25}}?\b{re.escape(form)}\b", section)
                       for form in forms):
                missing.append(f"{row['name']}.{param['name']}={default!r}")
    assert missing == [], missing


def test_the_report_names_a_plugin_loader_that_made_its_data() -> None:
    """"made with plugins" named the estimators and strategies of a run but never its
    ``type: plugin`` loaders: the data stage keeps their code under each source's name (with
    its files), not under ``plugin code``, so data read by third-party code went unsaid."""
    from types import SimpleNamespace

    from subsetctl.report.build import results_plugins

    code = {"package": "myplug 0.1.0", "sha256": "d19e06d239ecbae16a507447caee2a3f"}
    data = {"inputs": {
        "slice": {"target": {"name": "target", "loader": {"type": "jsonl", "path": "t.jsonl"}},
                  "sources": [{"name": "a", "loader": {"type": "jsonl", "path": "a.jsonl"}},
                              {"name": "c", "loader": {"type": "plugin", "name": "tsv", "options": {"path": "c.tsv"}}},
                              {"name": "d", "loader": {"type": "plugin", "name": "tsv", "options": {"path": "d.tsv"}}}]},
        "extra": {"target": {"file": {"sha256": "0"}}, "a": {"file": {"sha256": "1"}},
                  "c": {"code": code, "paths": {"path": {"sha256": "2"}}}, "d": {"code": code}}}}
    project = SimpleNamespace(read_results_manifest=lambda stage: data if stage == "data" else None)
    assert results_plugins(project) == {  # type: ignore[arg-type]
        "loader tsv": {"stages": ["data"], "package": "myplug 0.1.0", "sha256": "d19e06d239ec"}}


def test_an_installed_plugin_under_a_built_ins_name_replaces_it_and_validate_says_so(monkeypatch) -> None:
    """An entry point named like a built-in (``exhaustive = "myplug.strategies:Mine"``) was
    skipped without a word: the spec ran subsetctl's own strategy, where README says a plugin
    under a built-in's name replaces it and validate says so."""
    import subsetctl.registry as registry_module
    from subsetctl.search.base import Strategy

    class Mine(Strategy):
        """my own exhaustive"""

        def run(self, estimator, context, params):
            return None

    installed = [_EntryPoint("forward", "myplug.strategies:Mine", obj=Mine, dist="myplug 0.1.0")]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: installed)
    registry: Registry[type] = Registry("strategy", "subsetctl.test_things", ("subsetctl.search.strategies",),
                                        base=STRATEGIES.base, called=STRATEGIES.called)
    monkeypatch.setattr(registry, "_entries", {"forward": STRATEGIES._entries["forward"]})  # the built-in, read first
    monkeypatch.setattr(registry, "_builtins_loaded", True)
    assert registry.get("forward") is Mine
    assert registry.replaced() == {"forward": "entry point myplug.strategies:Mine of myplug 0.1.0"}


def test_a_module_registering_two_classes_under_one_name_is_refused() -> None:
    """A copy-pasted ``@STRATEGIES.register("mine")`` above a second class kept the last one
    without a word (a spec naming the first class under plugins: was then told it was "named
    like the strategy from module ...")."""
    from subsetctl.errors import UserError

    registry: Registry[type] = Registry("thing", "subsetctl.test_things", ())

    @registry.register("mine", "first")
    class First(_Base):
        pass

    # with the module's file, as every message blaming a plugins: module names it (one module name may be two files)
    file = re.escape(__file__)
    with pytest.raises(UserError, match=rf"module test_registry \({file}\) registers the thing 'mine' twice, as "
                                        r"\S*First and \S*Second: give one of them another name"):
        @registry.register("mine", "second, copy-pasted")
        class Second(_Base):
            pass

    assert registry.get("mine") is First
    again = type("First", (_Base,), {"__module__": First.__module__, "__qualname__": First.__qualname__})
    registry.register("mine", "first, its module reloaded")(again)  # the same class again: no error


@pytest.mark.parametrize("second", ["hidden_b", "hidden_a"])
def test_a_module_registering_two_classes_of_one_name_is_refused(tmp_path: Path, monkeypatch, second: str) -> None:
    """Two ``class Est`` in one module, both registered: the second hides the first at module
    level, so an estimator's first could not be pickled for loky's workers (a misleading
    "cannot be pickled ... keep lambdas out"), and under one registered name the first was
    dropped without a word (taken for its module reloaded). A reload is no error, nor are two
    strategies of one class name under two names (a loop registering ``TopN`` per size: never
    pickled)."""
    import importlib

    from subsetctl.errors import UserError

    first = "@ESTIMATORS.register('hidden_a')\nclass Est(SubsetEstimator):\n    pass\n"
    head = "from subsetctl.registry import ESTIMATORS\nfrom subsetctl.estimate.base import SubsetEstimator\n\n"
    (tmp_path / f"twice_{second}.py").write_text(f"{head}{first}\n@ESTIMATORS.register({second!r})\n"
                                                 "class Est(SubsetEstimator):\n    pass\n")
    (tmp_path / f"once_{second}.py").write_text(head + first)
    (tmp_path / f"loop_{second}.py").write_text(
        "from subsetctl.registry import STRATEGIES\nfrom subsetctl.search.base import Strategy\n\n"
        f"for n in (2, 3):\n    @STRATEGIES.register(f'loop{second}{{n}}')\n    class TopN(Strategy):\n        pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ESTIMATORS.names(), STRATEGIES.names()  # (the built-ins and entry points read first)
    monkeypatch.setattr(ESTIMATORS, "_entries", dict(ESTIMATORS._entries))  # put back after the test
    monkeypatch.setattr(STRATEGIES, "_entries", dict(STRATEGIES._entries))
    also = ", and only the second would be used" if second == "hidden_a" else ""
    with pytest.raises(UserError, match=(
            rf"module twice_{second} \({re.escape(str(tmp_path))}/twice_{second}\.py\) defines two classes named Est, "
            rf"registered as the estimator 'hidden_a' \(line 4\) and the estimator '{second}' \(line 8\): the second "
            rf"hides the first at module level, so the first cannot be named as twice_{second}:Est \(under plugins:\) "
            rf"or pickled for loky's worker processes{also}\. Give one of them another class name\.")):
        importlib.import_module(f"twice_{second}")
    ESTIMATORS._entries.pop("hidden_a", None)
    once = importlib.import_module(f"once_{second}")
    importlib.reload(once)  # the same module run again: no error
    assert ESTIMATORS._entries["hidden_a"].obj is once.Est
    importlib.import_module(f"loop_{second}")
    assert STRATEGIES._entries[f"loop{second}2"].obj is not STRATEGIES._entries[f"loop{second}3"].obj


def test_an_installed_package_replacing_a_built_in_is_blamed_on_the_key_naming_it_not_plugins(
        tiny_project, tmp_path_factory, monkeypatch) -> None:
    """The warning that an installed entry point replaces a built-in was said under the spec's
    `plugins` key, which the spec did not have: the package is in the environment. It is said
    under the key that names the built-in, with how to see and uninstall the package; a spec
    that does not name it is not warned."""
    import yaml

    from subsetctl.api import validate_spec_file
    from subsetctl.registry import ESTIMATORS

    site = tmp_path_factory.mktemp("site")
    _estimator_package(site, "exact", "plugpkg_exactly:Mine", "2.0")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(ESTIMATORS, "_entries", dict(ESTIMATORS._entries))  # put back after the test
    monkeypatch.setattr(ESTIMATORS, "_replaced", dict(ESTIMATORS._replaced))
    monkeypatch.setattr(ESTIMATORS, "_loaded", False)
    spec = yaml.safe_load((tiny_project / "subsetctl.yaml").read_text())
    assert "plugins" not in spec
    spec["estimate"] = {**spec.get("estimate", {}), "estimator": "exact"}
    (tiny_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    warnings = [w for w in validate_spec_file(tiny_project).warnings if "plugpkg" in w.message]
    assert [w.key for w in warnings] == ["estimate.estimator"], [w.render() for w in warnings]
    assert warnings[0].line is not None
    message = " ".join(warnings[0].message.split())
    assert ("'exact' runs the installed entry point plugpkg_exactly:Mine of plugpkg 2.0, not subsetctl's built-in "
            "estimator") in message, message
    assert "not listed under plugins:" in message and "`subsetctl ls`" in message, message
    assert "`pip uninstall plugpkg` brings back the built-in" in message, message
    spec["estimate"]["estimator"] = "fast"  # a spec that does not name it: its results are not changed
    (tiny_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert not [w.render() for w in validate_spec_file(tiny_project).warnings if "plugpkg" in w.message]
    # doctor, of the environment, says it too (it listed the package alone, as any plugin package)
    from subsetctl.doctor import check_installed_plugins

    (listed,) = [c for c in check_installed_plugins() if c.name == "installed plugins"]
    assert "replacing the built-in estimator 'exact' (plugpkg 2.0)" in listed.detail, listed


def test_a_plugin_named_without_its_attr_is_told_what_to_write() -> None:
    """`plugins: [badplug]` was told it "must look like 'package.module:attr'", not what the
    attr is nor an example with its own module name."""
    from subsetctl.errors import UserError
    from subsetctl.plugin_loading import load_plugin_string

    with pytest.raises(UserError, match=r"Plugin 'my\.plugs' must look like 'package\.module:attr': the module, a colon "
                                        r"and a class or function it defines \(e\.g\. 'my\.plugs:MyStrategy' for a "
                                        r"class MyStrategy in my/plugs\.py, its folder on PYTHONPATH\)\."):
        load_plugin_string("my.plugs")


def test_doctor_checks_a_project_whose_estimator_is_a_spec_plugin(tiny_project: Path, monkeypatch) -> None:
    """doctor's memory check asks whether the search's estimator loads the model, after its
    spec check's plugin scope has ended: an estimator a spec's plugin registers was unknown
    there, and doctor stopped with "Unknown estimator" (exit 1) before its last checks."""
    import yaml
    from click.testing import CliRunner

    from subsetctl.cli import main

    (tiny_project / "doctor_est_plugin.py").write_text(
        "from subsetctl.estimate.solvers import FastEstimator\n"
        "from subsetctl.registry import ESTIMATORS\n\n\n"
        "@ESTIMATORS.register('doctor_est', 'fast, as a plugin')\n"
        "class DoctorEstimator(FastEstimator):\n    pass\n")
    monkeypatch.syspath_prepend(str(tiny_project))
    spec = yaml.safe_load((tiny_project / "subsetctl.yaml").read_text())
    spec["plugins"] = ["doctor_est_plugin:DoctorEstimator"]
    spec["estimate"] = {**spec.get("estimate", {}), "estimator": "doctor_est"}
    (tiny_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    try:
        for options in ([], ["--no-plugins"]):
            result = CliRunner().invoke(main, ["doctor", *options, str(tiny_project)])
            assert "Unknown estimator" not in result.output, result.output
            assert "disk:" in result.output, result.output  # (every check ran)
    finally:
        sys.modules.pop("doctor_est_plugin", None)
        ESTIMATORS._entries.pop("doctor_est", None)


def test_the_schema_offers_the_built_in_names_of_each_registry_a_spec_names_from() -> None:
    """The schema lists each registry's built-in names as its key's `examples` (what editors
    complete a value from); they are written out in the spec's models, which import no torch,
    so a built-in added or renamed there must be here too."""
    from subsetctl.registry import PACKAGED_MODELS, PROJECTORS
    from subsetctl.spec import json_schema

    defs = json_schema()["$defs"]
    estimators = defs["EstimateSpec"]["properties"]["estimator"]["examples"]
    assert defs["CalibrateSpec"]["properties"]["estimators"]["items"]["examples"] == estimators
    for registry, examples in ((PACKAGED_MODELS, defs["ModelSpec"]["properties"]["source"]["examples"]),
                               (PROJECTORS, defs["GradientsSpec"]["properties"]["projector"]["examples"]),
                               (ESTIMATORS, estimators),
                               (STRATEGIES, defs["StrategySpec"]["properties"]["name"]["examples"])):
        built_in = {entry.name for entry in registry.entries() if entry.origin == "built-in"}
        assert built_in <= set(examples), (registry.kind, built_in - set(examples))
        assert all(name in built_in for name in examples if "/" not in name), (registry.kind, examples)


def test_a_plugin_failing_at_import_is_told_to_be_fixed_or_taken_out_of_the_plugins_list(tmp_path: Path,
                                                                                        monkeypatch) -> None:
    """The advice ended "remove it from plugins:." (a key and a colon before the full stop), for
    a plugin raising at import and for one importing a package not installed here."""
    import pytest

    from subsetctl.errors import UserError
    from subsetctl.plugin_loading import load_plugin_string

    (tmp_path / "raising_plugin.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "needy_plugin.py").write_text("import no_such_package_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name, ends in (("raising_plugin", "Fix the plugin, or remove it from the spec's `plugins` list."),
                       ("needy_plugin", "or remove the plugin from the spec's `plugins` list.")):
        with pytest.raises(UserError) as refused:
            load_plugin_string(f"{name}:X")
        assert str(refused.value).endswith(ends), str(refused.value)
        sys.modules.pop(name, None)


def test_a_plugin_that_registers_nothing_is_warned(jsonl_project: Path, monkeypatch) -> None:
    """`plugins: [nothing_plugin:Picker]`, a class derived from no Strategy (or a function
    without its decorator), passed validate without a word: a spec naming what it meant to
    register was then told of an unknown name. Plugins that register, by a decorator (in a
    module the plugin imports, too) or as a named class, are not warned of, in a second call
    (the modules imported already) either, nor with the plugins not imported."""
    import yaml

    from subsetctl.api import validate_spec_file

    (jsonl_project / "nothing_plugin.py").write_text("class Picker:\n    name = 'picker'\n")
    (jsonl_project / "helper_impl.py").write_text(
        "from subsetctl.registry import LOADERS\n\n@LOADERS.register('helper_rows', 'rows')\n"
        "def load(options, ctx):\n    raise NotImplementedError\n")
    (jsonl_project / "helper_plugin.py").write_text("from helper_impl import load\n")
    (jsonl_project / "named_plugin.py").write_text(
        "from subsetctl.search.baselines import AllSources\n\nclass Named(AllSources):\n    name = 'named_all'\n")
    monkeypatch.syspath_prepend(str(jsonl_project))
    spec_path = jsonl_project / "subsetctl.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec_path.write_text(yaml.safe_dump(
        {**spec, "plugins": ["nothing_plugin:Picker", "helper_plugin:load", "named_plugin:Named"]}))
    try:
        for _ in range(2):
            checked = validate_spec_file(spec_path)
            said = [(w.key, w.message) for w in checked.warnings if "registers nothing" in w.message]
            assert checked.ok and [key for key, _ in said] == ["plugins[0]"], said
            assert said[0][1].startswith(
                f"'nothing_plugin:Picker' registers nothing: importing 'nothing_plugin' ({jsonl_project / 'nothing_plugin.py'}) "
                "added no loader, strategy, estimator, projector or packaged model"), said
            assert "`@STRATEGIES.register(\"my_strategy\")`" in said[0][1]
        unimported = validate_spec_file(spec_path, import_plugins=False)
        assert not any("registers nothing" in w.message for w in unimported.warnings)
    finally:
        for name in ("nothing_plugin", "helper_impl", "helper_plugin", "named_plugin"):
            sys.modules.pop(name, None)


def test_a_plugin_whose_package_registers_is_not_said_to_register_nothing(tmp_path: Path, monkeypatch) -> None:
    """`plugins: ["pk_pkg.sub:X"]`, whose package's ``__init__`` imports the module that
    registers: what that registered was remembered for ``pk_pkg.sub`` before Python had put
    it in ``sys.modules``, so it counted as another import's. validate said the entry
    "registers nothing", and a second spec in the process naming it did not get the loader."""
    from subsetctl.plugin_loading import load_plugin_string, registers_nothing
    from subsetctl.plugin_scoping import plugin_scope
    from subsetctl.registry import LOADERS

    (tmp_path / "pk_pkg").mkdir()
    (tmp_path / "pk_pkg" / "__init__.py").write_text("from . import impl\n")
    (tmp_path / "pk_pkg" / "impl.py").write_text(
        "from subsetctl.registry import LOADERS\n\n@LOADERS.register('pk_pkg_rows', 'rows')\n"
        "def load(options, ctx):\n    raise NotImplementedError\n")
    (tmp_path / "pk_pkg" / "sub.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        for _ in range(2):
            with plugin_scope():
                load_plugin_string("pk_pkg.sub:X")
                assert "pk_pkg_rows" in LOADERS.names()
                assert not registers_nothing("pk_pkg.sub:X")
    finally:
        for name in ("pk_pkg", "pk_pkg.impl", "pk_pkg.sub"):
            sys.modules.pop(name, None)

