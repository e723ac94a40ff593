"""The data stage prepares only the sources whose inputs changed: the others are reused
from a run stopped partway, or from the stage's results of other inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_helpers import qa_rows, run_data_as_counted_before, write_jsonl

import subsetctl.data.stage as data_stage
from subsetctl.data.stage import load_all, run_data_stage
from subsetctl.project import stat_stamp
from subsetctl.spec import Spec


def _spec(tmp_path: Path, n_sources: int, kind: str = "causal-lm") -> Spec:
    if not (tmp_path / "target.jsonl").is_file():
        write_jsonl(tmp_path / "target.jsonl", qa_rows(12, "t"))
    for i in range(n_sources):
        if not (tmp_path / f"s{i}.jsonl").is_file():
            write_jsonl(tmp_path / f"s{i}.jsonl", qa_rows(6, f"s{i}"))
    model = {"kind": kind}
    if kind == "classifier":
        for name, n in [("target", 12), *((f"s{i}", 6) for i in range(n_sources))]:
            if not (tmp_path / f"{name}.labeled").exists():  # written once (over the question-answer files)
                (tmp_path / f"{name}.labeled").touch()
                write_jsonl(tmp_path / f"{name}.jsonl", [{"prompt": f"{name} {j}", "y": f"c{(j + len(name)) % 3}"}
                                                         for j in range(n)])
    label = {"label_field": "y"} if kind == "classifier" else {}
    return Spec.model_validate({
        "project": {"seed": 3},
        "model": model,
        "target": {"name": "tgt", "loader": {"type": "jsonl", "path": "target.jsonl", **label}},
        "sources": [{"name": f"s{i}", "loader": {"type": "jsonl", "path": f"s{i}.jsonl", **label}}
                    for i in range(n_sources)],
    })


@pytest.fixture
def prepared_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = data_stage.prepare_source

    def counting(source, ctx, warnings=None):
        calls.append(source.name)
        return real(source, ctx, warnings)

    monkeypatch.setattr(data_stage, "prepare_source", counting)
    return calls


def _rows(out: Path, spec: Spec) -> dict[str, dict[str, list]]:
    return {name: {split: ds.to_list() for split, ds in splits.items()} for name, splits in load_all(out, spec).items()}


def test_adding_a_source_prepares_only_that_one(tmp_path: Path, prepared_calls: list[str]) -> None:
    earlier = tmp_path / "earlier"
    run_data_stage(_spec(tmp_path, 3), tmp_path, earlier)
    assert prepared_calls == ["tgt", "s0", "s1", "s2"]
    prepared_calls.clear()
    kept = earlier / "s0" / "train" / "data-00000-of-00001.arrow"
    stamp = stat_stamp(kept)
    spec = _spec(tmp_path, 4)
    out = tmp_path / "out"
    summary = run_data_stage(spec, tmp_path, out, reuse_from=[tmp_path / "missing", earlier])
    assert prepared_calls == ["s3"] and summary["reused"] == ["tgt", "s0", "s1", "s2"]
    fresh = tmp_path / "fresh"
    assert {**run_data_stage(spec, tmp_path, fresh), "reused": summary["reused"]} == summary
    assert _rows(out, spec) == _rows(fresh, spec)
    assert (out / "data.json").read_bytes() == (fresh / "data.json").read_bytes()  # the same output digest
    # copied, not hard-linked: a link changes the kept file's change time, and so its checksum stamp
    # (every later `plan` hashed the kept results and the new ones again)
    assert stat_stamp(kept) == stamp and (out / "s0" / "train" / "data-00000-of-00001.arrow").stat().st_nlink == 1


def test_the_keys_of_earlier_versions_are_worked_out_only_for_a_source_a_folder_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """reuse_keys (the keys an earlier subsetctl wrote) is called for a source whose folder holds
    a record under another key (s0, its file edited), not for one no folder holds (s1, added):
    0.15-0.33 ms each source of a fresh run of thousands, for nothing to find."""
    earlier = tmp_path / "earlier"
    run_data_stage(_spec(tmp_path, 1), tmp_path, earlier)
    write_jsonl(tmp_path / "s0.jsonl", qa_rows(7, "s0"))
    asked: list[str] = []
    real = data_stage.reuse_keys
    monkeypatch.setattr(data_stage, "reuse_keys", lambda spec, source, *a, **k: asked.append(source.name)
                        or real(spec, source, *a, **k))
    summary = run_data_stage(_spec(tmp_path, 2), tmp_path, tmp_path / "out", reuse_from=[earlier])
    assert summary["reused"] == ["tgt"] and asked == ["s0"]


def test_a_changed_file_or_setting_prepares_that_source_again(tmp_path: Path, prepared_calls: list[str]) -> None:
    earlier = tmp_path / "earlier"
    run_data_stage(_spec(tmp_path, 3), tmp_path, earlier)
    prepared_calls.clear()
    write_jsonl(tmp_path / "s1.jsonl", qa_rows(6, "edited"))
    raw = _spec(tmp_path, 3).model_dump(mode="json")
    raw["sources"][2]["max_examples"] = 4
    spec = Spec.model_validate(raw)
    summary = run_data_stage(spec, tmp_path, tmp_path / "out", reuse_from=[earlier])
    assert prepared_calls == ["s1", "s2"] and summary["reused"] == ["tgt", "s0"]
    assert summary["counts"]["s2"]["train"] == 4
    # another seed changes every source's shuffle
    prepared_calls.clear()
    raw["project"]["seed"] = 4
    run_data_stage(Spec.model_validate(raw), tmp_path, tmp_path / "out2", reuse_from=[earlier, tmp_path / "out"])
    assert prepared_calls == ["tgt", "s0", "s1", "s2"]


def test_a_plugin_added_for_another_stage_prepares_no_source_again(tmp_path: Path, prepared_calls: list[str],
                                                                    monkeypatch) -> None:
    """Every source's key held the spec's whole plugins: list, so adding a strategy plugin
    loaded every source again. Sources prepared with such a key (by an earlier subsetctl)
    are reused too, and recorded under today's key."""
    (tmp_path / "strategy_only_plugin.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    earlier = tmp_path / "earlier"
    spec = _spec(tmp_path, 2)
    run_data_stage(spec, tmp_path, earlier)
    for name in ("tgt", "s0", "s1"):  # as an earlier subsetctl recorded them
        record = json.loads((earlier / name / data_stage.SOURCE_FILE).read_text())
        source = next(s for s in [spec.target, *spec.sources] if s.name == name)
        record["key"] = data_stage.source_key(spec, source, tmp_path, before_plugins_left_out=True)
        (earlier / name / data_stage.SOURCE_FILE).write_text(json.dumps(record))
    prepared_calls.clear()
    out = tmp_path / "out"
    run_data_stage(spec, tmp_path, out, reuse_from=[earlier])
    assert prepared_calls == []
    assert json.loads((out / "s0" / data_stage.SOURCE_FILE).read_text())["key"] == \
        data_stage.source_key(spec, spec.sources[0], tmp_path)
    with_plugin = Spec.model_validate({**spec.model_dump(mode="json"), "plugins": ["strategy_only_plugin:X"]})
    summary = run_data_stage(with_plugin, tmp_path, tmp_path / "again", reuse_from=[out])
    assert prepared_calls == [] and summary["reused"] == ["tgt", "s0", "s1"]


class _Killed(Exception):
    """Stands for a kill (pytest takes a real KeyboardInterrupt for the user's)."""


def _killed_once_at(monkeypatch, name: str) -> list[str]:
    """Have the data stage killed the first time it prepares source ``name``; returns the
    names of the sources it starts to prepare, in order."""
    real = data_stage.prepare_source
    calls: list[str] = []
    killed: list[bool] = []

    def interrupted(source, ctx, warnings=None):
        calls.append(source.name)
        if source.name == name and not killed:
            killed.append(True)
            raise _Killed
        return real(source, ctx, warnings)

    monkeypatch.setattr(data_stage, "prepare_source", interrupted)
    return calls


def test_a_run_stopped_partway_resumes_after_the_sources_it_saved(tmp_path: Path, monkeypatch) -> None:
    spec = _spec(tmp_path, 3)
    out = tmp_path / "out"
    calls = _killed_once_at(monkeypatch, "s1")
    with pytest.raises(_Killed):
        run_data_stage(spec, tmp_path, out)
    summary = run_data_stage(spec, tmp_path, out)
    assert calls == ["tgt", "s0", "s1", "s1", "s2"] and summary["reused"] == ["tgt", "s0"]
    calls.clear()
    run_data_stage(spec, tmp_path, out, reuse=False)  # forced: everything again
    assert calls == ["tgt", "s0", "s1", "s2"]


def test_warnings_of_a_reused_source_are_given_again(tmp_path: Path) -> None:
    """A source whose preparation warned (here: rows without a response dropped) warns
    each time the data stage runs, reused or not."""
    spec = _spec(tmp_path, 2)
    rows = qa_rows(6, "s0") + [{"prompt": "no answer", "response": ""}]
    write_jsonl(tmp_path / "s0.jsonl", rows)
    first = run_data_stage(spec, tmp_path, tmp_path / "a")
    again = run_data_stage(spec, tmp_path, tmp_path / "b", reuse_from=[tmp_path / "a"])
    assert again["reused"] == ["tgt", "s0", "s1"]
    assert again["warnings"] == first["warnings"] and any("s0" in w for w in first["warnings"]), first["warnings"]


def test_a_classifier_reuses_sources_in_the_new_label_vocabulary(tmp_path: Path, prepared_calls: list[str]) -> None:
    earlier = tmp_path / "earlier"
    run_data_stage(_spec(tmp_path, 1, "classifier"), tmp_path, earlier)
    prepared_calls.clear()
    write_jsonl(tmp_path / "s1.jsonl", [{"prompt": f"new {j}", "y": "a_new_class"} for j in range(4)])
    (tmp_path / "s1.labeled").touch()
    spec = _spec(tmp_path, 2, "classifier")
    summary = run_data_stage(spec, tmp_path, tmp_path / "out", reuse_from=[earlier])
    assert prepared_calls == ["s1"] and "a_new_class" in summary["labels"]
    for splits in load_all(tmp_path / "out", spec).values():
        for ds in splits.values():
            assert all(summary["labels"][label] == text for label, text in zip(ds["label"], ds["label_text"]))
    assert json.loads((earlier / "data.json").read_text())["labels"] != summary["labels"]


def test_a_moved_project_reuses_its_sources_and_names_their_files_where_they_are(tmp_path: Path) -> None:
    """Warnings kept with a reused source named the data file where the project was
    before it moved, and made the data differ from a fresh run's (its digest)."""
    first, moved = tmp_path / "first", tmp_path / "moved"
    first.mkdir()
    spec = _spec(first, 1)
    write_jsonl(first / "s0.jsonl", qa_rows(6, "s0") + [{"prompt": "no answer", "response": ""}])
    warned = run_data_stage(spec, first, first / "out")["warnings"]
    assert any(str(first) in w for w in warned), warned
    first.rename(moved)
    again = run_data_stage(spec, moved, moved / "again", reuse_from=[moved / "out"])
    fresh = run_data_stage(spec, moved, moved / "fresh")
    assert again["reused"] == ["tgt", "s0"] and again["warnings"] == fresh["warnings"]
    assert not any(str(first) in w for w in again["warnings"]) and any(str(moved) in w for w in again["warnings"])
    for name in ("data.json", "s0/.source.json"):
        assert (moved / "again" / name).read_bytes() == (moved / "fresh" / name).read_bytes(), name


def test_a_plugin_registered_under_a_built_in_type_is_part_of_the_key(tmp_path: Path, monkeypatch) -> None:
    """A plugin replacing the jsonl loader changed its output; adding a source reused the
    others as the old plugin code had loaded them, mixing both versions."""
    plugin = tmp_path / "override_plugin.py"

    def write_plugin(suffix: str) -> None:
        plugin.write_text(
            "from subsetctl.registry import LOADERS\n"
            "from subsetctl.data.loaders import load_jsonl\n"
            "@LOADERS.register('jsonl')\n"
            "def suffixed(options, ctx):\n"
            f"    return load_jsonl(options, ctx).map(lambda r: {{'response': r['response'] + '{suffix}'}})\n")

    import sys

    from subsetctl.registry import LOADERS

    LOADERS.get("jsonl")
    monkeypatch.setitem(LOADERS._entries, "jsonl", LOADERS._entries["jsonl"])  # the built-in back afterwards
    write_plugin("v1")
    monkeypatch.syspath_prepend(str(tmp_path))
    raw = _spec(tmp_path, 2).model_dump(mode="json")
    raw["plugins"] = ["override_plugin:suffixed"]
    calls: list[str] = []
    real = data_stage.prepare_source
    monkeypatch.setattr(data_stage, "prepare_source", lambda s, c, w=None: calls.append(s.name) or real(s, c, w))
    run_data_stage(Spec.model_validate(raw), tmp_path, tmp_path / "v1")
    assert load_all(tmp_path / "v1", Spec.model_validate(raw))["s0"]["train"][0]["response"].endswith("v1")
    write_plugin("v2")
    monkeypatch.delitem(sys.modules, "override_plugin")  # as a new process imports it
    calls.clear()
    run_data_stage(Spec.model_validate(raw), tmp_path, tmp_path / "v2", reuse_from=[tmp_path / "v1"])
    assert calls == ["tgt", "s0", "s1"]
    assert load_all(tmp_path / "v2", Spec.model_validate(raw))["s0"]["train"][0]["response"].endswith("v2")


def test_plan_says_how_many_sources_a_stopped_run_prepared(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from subsetctl.stages.data import DataStage

    spec = _spec(tmp_path, 2)
    out = tmp_path / "data"
    run_data_stage(spec, tmp_path, out)
    project = SimpleNamespace(stage_dir=lambda name: tmp_path / name)
    assert "after preparing 3 sources" in (DataStage().unfinished_note(project) or "")
    assert DataStage().unfinished_note(SimpleNamespace(stage_dir=lambda name: tmp_path / "none")) is None


def test_plan_counts_no_half_written_source_folders(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from subsetctl.stages.data import DataStage

    folder = tmp_path / "data"
    for name in ("a", ".tmp-b-1234", ".old-a-5678"):
        (folder / name).mkdir(parents=True)
        (folder / name / ".source.json").write_text("{}")
    note = DataStage().unfinished_note(SimpleNamespace(stage_dir=lambda name: folder)) or ""
    assert "after preparing 1 source;" in note, note


def test_a_run_stopped_by_a_bad_row_keeps_the_sources_it_prepared_once_the_file_is_fixed(
        jsonl_project: Path, monkeypatch) -> None:
    """The fix (the file edited, or the spec pointed elsewhere) changes the stage's inputs:
    the sources prepared before the bad one were discarded with the unfinished work."""
    import yaml

    from subsetctl.api import plan_project, run_project
    from subsetctl.errors import UserError

    spec_file = jsonl_project / "subsetctl.yaml"
    raw = yaml.safe_load(spec_file.read_text())
    raw["sources"].insert(1, {"name": "gone", "loader": {"type": "jsonl", "path": "a.jsonl"}, "max_examples": 3})
    spec_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    write_jsonl(jsonl_project / "b.jsonl", [{"prompt": "p", "response": "r"}, {"prompt": "q", "response": None}])
    with pytest.raises(UserError, match="line 2"):
        run_project(jsonl_project, until="data")
    write_jsonl(jsonl_project / "b.jsonl", [{"prompt": "p", "response": "r"}, {"prompt": "q", "response": "s"}])
    raw["sources"].pop(1)  # and a source it prepared is no longer in the spec
    spec_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    _, _, statuses = plan_project(jsonl_project)
    assert "keeps what still applies" in " ".join(next(s for s in statuses if s.name == "data").reasons)
    calls: list[str] = []
    real = data_stage.prepare_source
    monkeypatch.setattr(data_stage, "prepare_source", lambda s, *a, **k: calls.append(s.name) or real(s, *a, **k))
    run_project(jsonl_project, until="data")
    assert calls == ["b"]
    data = jsonl_project / ".subsetctl" / "data"
    assert sorted(p.name for p in data.iterdir() if p.is_dir()) == ["a", "b", "target"]
    assert json.loads((data / "data.json").read_text())["counts"]["b"]["train"] == 2


def test_a_plugin_added_for_another_stage_leaves_the_data_stage_up_to_date(
        jsonl_project: Path, same_jsonl_plugin) -> None:
    """The stage's spec keys held the whole ``plugins:`` list: adding a strategy plugin
    made it stale (every source reused, but the stage ran and `plan` said "spec changed:
    plugins"). A plugin that replaces a built-in loader the spec uses still makes it stale."""
    import sys

    import yaml

    from subsetctl.api import plan_project, run_project

    spec_file = jsonl_project / "subsetctl.yaml"
    run_project(jsonl_project, until="data")
    (jsonl_project / "other_stage_plugin.py").write_text(
        "from subsetctl.registry import STRATEGIES\n"
        "from subsetctl.search.baselines import TargetOnly\n"
        "@STRATEGIES.register('nothing_new', 'the target alone')\n"
        "class NothingNew(TargetOnly):\n"
        "    pass\n")
    jsonl_plugin = same_jsonl_plugin(jsonl_project)  # (the project's folder on sys.path)
    raw = yaml.safe_load(spec_file.read_text())

    def data_status(plugins: list[str]):
        spec_file.write_text(yaml.safe_dump({**raw, "plugins": plugins}, sort_keys=False))
        _, _, statuses = plan_project(jsonl_project)
        return next(s for s in statuses if s.name == "data")

    try:
        assert data_status(["other_stage_plugin:NothingNew"]).state == "up to date"
        status = data_status(["other_stage_plugin:NothingNew", jsonl_plugin])
        assert status.state == "stale" and "a plugin now used as loader jsonl" in " ".join(status.reasons), \
            status.reasons
        assert "input files changed" not in " ".join(status.reasons)  # no file changed: a plugin came
    finally:
        sys.modules.pop("other_stage_plugin", None)


def test_a_classifier_run_stopped_partway_keeps_the_sources_it_prepared(tmp_path: Path, monkeypatch) -> None:
    """Classifier sources were saved only at the end, once the shared label vocabulary was
    known: a run stopped at the last source prepared every one again."""
    spec = _spec(tmp_path, 3, "classifier")
    out = tmp_path / "out"
    calls = _killed_once_at(monkeypatch, "s2")
    with pytest.raises(_Killed):
        run_data_stage(spec, tmp_path, out)
    summary = run_data_stage(spec, tmp_path, out)
    assert calls == ["tgt", "s0", "s1", "s2", "s2"] and summary["reused"] == ["tgt", "s0", "s1"]
    fresh = run_data_stage(spec, tmp_path, tmp_path / "fresh", reuse=False)
    assert fresh["labels"] == summary["labels"]
    assert _rows(out, spec) == _rows(tmp_path / "fresh", spec)  # labels in the shared vocabulary, as in one go


def test_a_data_stage_recorded_with_the_plugins_list_stays_up_to_date(jsonl_project: Path, monkeypatch) -> None:
    """Its spec keys held ``plugins:`` before: such a project re-ran the data stage once, and
    that run recorded this version's warnings (a copy with Windows line ends now warned
    about), a new output digest that re-ran meta_init, gradients and every stage after."""
    from subsetctl.api import plan_project, run_project
    from subsetctl.stages.data import DataStage

    with monkeypatch.context() as before:
        before.setattr(DataStage, "spec_keys", (*DataStage.spec_keys, "plugins"))
        run_project(jsonl_project, until="data")
    manifest = json.loads((jsonl_project / ".subsetctl" / "data" / "manifest.json").read_text())
    assert "plugins" in manifest["inputs"]["slice"]
    (data,) = plan_project(jsonl_project, until="data")[2][:1]
    assert data.state == "up to date", data.reasons


def test_a_plugin_module_next_to_the_spec_is_named_by_the_data_stage_too(tmp_path: Path) -> None:
    """Called directly (the Python API), the data stage imported the spec's plugins without
    the spec's folder, so a module lying next to it got "Install the package that provides
    it" instead of the folder to put on PYTHONPATH, as validate and run say."""
    from subsetctl.errors import UserError

    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "nearby_loader_xyz.py").write_text("x = 1\n")
    spec = _spec(tmp_path, 1).model_copy(update={"plugins": ["nearby_loader_xyz:x"]})
    with pytest.raises(UserError, match=rf"put {tmp_path}/plugins on PYTHONPATH"):
        run_data_stage(spec, tmp_path, tmp_path / "out")


def test_a_classifier_source_whose_label_ids_stay_is_copied_not_saved_again(tmp_path: Path, monkeypatch) -> None:
    """Adding a source with no new class saved every classifier source again (and hashed its
    files), although the vocabulary, and so each source's label ids, stayed the same; a
    source whose ids do change (a new class sorted before its own) is still saved again."""
    earlier, out = tmp_path / "earlier", tmp_path / "out"
    run_data_stage(_spec(tmp_path, 2, "classifier"), tmp_path, earlier)
    saved: list[str] = []
    real = data_stage._write_source
    monkeypatch.setattr(data_stage, "_write_source", lambda o, name, *a: (saved.append(name), real(o, name, *a)))
    spec = _spec(tmp_path, 3, "classifier")  # s2's classes are c0-c2, as the others'
    summary = run_data_stage(spec, tmp_path, out, reuse_from=[earlier])
    assert saved == ["s2"] and summary["reused"] == ["tgt", "s0", "s1"]
    assert (out / "s0" / ".source.json").read_bytes() == (earlier / "s0" / ".source.json").read_bytes()
    run_data_stage(spec, tmp_path, tmp_path / "fresh", reuse=False)
    assert _rows(out, spec) == _rows(tmp_path / "fresh", spec)
    saved.clear()
    write_jsonl(tmp_path / "s3.jsonl", [{"prompt": f"new {j}", "y": "a0"} for j in range(4)])  # sorts first
    (tmp_path / "s3.labeled").touch()
    spec = _spec(tmp_path, 4, "classifier")
    run_data_stage(spec, tmp_path, tmp_path / "again", reuse_from=[out])
    assert sorted(saved) == ["s0", "s1", "s2", "s3", "tgt"]  # s3 when prepared (its id 0 is a0's in both)
    run_data_stage(spec, tmp_path, tmp_path / "fresh4", reuse=False)
    assert _rows(tmp_path / "again", spec) == _rows(tmp_path / "fresh4", spec)


def test_a_classifier_source_kept_as_prepared_saves_as_one_saved_again_would(tmp_path: Path) -> None:
    """A source whose own label ids were already the shared vocabulary's was kept as first
    saved, with the fingerprint of how it was prepared in its state.json, while the same
    rows re-encoded from an earlier run were saved with a fingerprint of their content: a
    fresh `run --force data` gave another output digest for the same data than the re-run
    (and so made meta_init and every stage after it stale)."""
    from subsetctl.project import artifact_checksums, artifact_contents

    spec = _spec(tmp_path, 1, "classifier")  # the target's classes c0-c2; s0 has all three too
    write_jsonl(tmp_path / "s0.jsonl", [{"prompt": f"s0 {j}", "y": f"c{1 + j % 2}"} for j in range(6)])
    run_data_stage(spec, tmp_path, tmp_path / "earlier")  # s0's c1, c2: ids 0, 1 then 1, 2 (saved again)
    write_jsonl(tmp_path / "target.jsonl", [{"prompt": f"tgt {j}", "y": f"c{1 + j % 2}"} for j in range(12)])
    run_data_stage(spec, tmp_path, tmp_path / "again", reuse_from=[tmp_path / "earlier"])  # s0: 1, 2 -> 0, 1
    run_data_stage(spec, tmp_path, tmp_path / "fresh", reuse=False)  # s0 as prepared: 0, 1 kept
    assert _rows(tmp_path / "again", spec) == _rows(tmp_path / "fresh", spec)
    assert (artifact_contents(artifact_checksums(tmp_path / "again"))
            == artifact_contents(artifact_checksums(tmp_path / "fresh")))


def _repo_copy_project(tmp_path: Path, plugin: bool = False) -> Path:
    """A project whose sources a and b read the configurations a and b of one local copy
    of a hub dataset (``repo/``, its README.md's ``configs:`` naming each one's files);
    ``plugin``: through a ``type: plugin`` loader naming the built-in ``huggingface``."""
    import yaml

    repo = tmp_path / "repo"
    for config in ("a", "b"):
        (repo / config).mkdir(parents=True, exist_ok=True)
        write_jsonl(repo / config / "train.jsonl", qa_rows(6, config))
    (repo / "README.md").write_text("---\nconfigs:\n" + "".join(
        f"- config_name: {c}\n  data_files:\n  - split: train\n    path: {c}/train.jsonl\n" for c in "ab") + "---\n")
    write_jsonl(tmp_path / "t.jsonl", qa_rows(8, "t"))
    spec = {"target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"},
                       "split": {"train": 4, "validation": 2, "test": 2}},
            "sources": [{"name": c, "loader": {"type": "plugin", "name": "huggingface",
                                               "options": {"path": "./repo", "name": c}} if plugin else
                         {"type": "huggingface", "path": "./repo", "name": c}} for c in "ab"]}
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return repo


def test_editing_one_configuration_of_a_dataset_folder_leaves_the_others_source_up_to_date(
        tmp_path: Path, prepared_calls: list[str]) -> None:
    """A local dataset folder with several configurations was fingerprinted whole: editing
    configuration b's file made source a (configuration a) stale too, and prepared it again.
    Each source counts the files its configuration and split read."""
    from subsetctl.api import plan_project, run_project
    from subsetctl.reporter import SilentReporter

    repo = _repo_copy_project(tmp_path)
    run_project(tmp_path, until="data", reporter=SilentReporter())
    assert sorted(prepared_calls) == ["a", "b", "t"]
    write_jsonl(repo / "b" / "train.jsonl", qa_rows(7, "b"))
    data = {s.name: s for s in plan_project(tmp_path)[2]}["data"]
    assert data.reasons == ["input files changed: b"]
    prepared_calls.clear()
    run_project(tmp_path, until="data", reporter=SilentReporter())
    assert prepared_calls == ["b"]


@pytest.mark.parametrize("plugin", [False, True])
def test_a_data_stage_that_counted_the_whole_dataset_folder_stays_up_to_date(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prepared_calls: list[str], plugin: bool) -> None:
    """A data stage run while a dataset folder counted whole (an earlier subsetctl) stays up
    to date while the folder is as it was, and its sources are reused when another changes
    (read by the built-in loader, or by a plugin loader naming it)."""
    from subsetctl.api import plan_project, run_project
    from subsetctl.reporter import SilentReporter

    _repo_copy_project(tmp_path, plugin)
    recorded = run_data_as_counted_before(tmp_path, monkeypatch)

    def inputs(extra: dict) -> dict:  # (a plugin loader's: under "builtin")
        return extra["builtin"] if plugin else extra

    assert "README.md" in inputs(recorded["a"])["path"]["files"] and "b/train.jsonl" in inputs(recorded["a"])[
        "path"]["files"]
    assert not {s.name: s for s in plan_project(tmp_path)[2]}["data"].will_run
    write_jsonl(tmp_path / "t.jsonl", qa_rows(9, "t"))  # another source changes: a and b are reused
    prepared_calls.clear()
    run_project(tmp_path, until="data", reporter=SilentReporter())
    assert prepared_calls == ["t"]
    assert "b/train.jsonl" not in inputs(json.loads((tmp_path / ".subsetctl" / "data" / "manifest.json").read_text())[
        "inputs"]["extra"]["a"])["path"]["files"]


def _saved_to_disk_project(tmp_path: Path, rows: int = 6, data_files: bool = False) -> Path:
    """A project whose source ``s`` reads a folder written by ``save_to_disk`` (``j``: a JSON Lines file);
    ``data_files``: with ``data_files`` naming its .arrow file (ignored: the folder is read whole)."""
    import datasets
    import yaml

    folder = tmp_path / "saved"
    datasets.Dataset.from_list(qa_rows(rows, "s")).save_to_disk(str(folder))
    write_jsonl(tmp_path / "t.jsonl", qa_rows(8, "t"))
    write_jsonl(tmp_path / "j.jsonl", qa_rows(6, "j"))
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump({
        "target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"},
                   "split": {"train": 4, "validation": 2, "test": 2}},
        "sources": [{"name": "s", "loader": {"type": "huggingface", "path": "./saved", **(
                        {"data_files": ["saved/data-00000-of-00001.arrow"]} if data_files else {})}},
                    {"name": "j", "loader": {"type": "jsonl", "path": "j.jsonl"}}]}, sort_keys=False))
    return folder


def _saved_to_disk_project_ran_then_target_edited(tmp_path: Path) -> None:
    """:func:`_saved_to_disk_project` with its data stage run, then the target's split edited:
    the data stage runs again, the target alone prepared again."""
    import yaml

    from subsetctl.api import run_project
    from subsetctl.reporter import SilentReporter

    _saved_to_disk_project(tmp_path)
    run_project(tmp_path, until="data", reporter=SilentReporter())
    spec = yaml.safe_load((tmp_path / "subsetctl.yaml").read_text())
    spec["target"]["split"] = {"train": 0.6, "validation": 0.2, "test": 0.2}
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def _counted_as_before(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the sources whose inputs are worked out as an earlier subsetctl counted them
    (``whole_files`` or ``saved_whole`` of :func:`~subsetctl.data.fingerprint.source_fingerprint_inputs`),
    appended to the list returned as they are."""
    from subsetctl.data import fingerprint

    counted = fingerprint.source_fingerprint_inputs
    earlier: list[str] = []

    def as_counted(source, spec_dir, whole_files=False, saved_whole=False):  # type: ignore[no-untyped-def]
        if whole_files or saved_whole:
            earlier.append(source.name)
        return counted(source, spec_dir, whole_files=whole_files, saved_whole=saved_whole)

    monkeypatch.setattr(fingerprint, "source_fingerprint_inputs", as_counted)
    return earlier


def _new_save_fingerprint(folder: Path) -> None:
    """``folder``'s ``state.json`` as ``save_to_disk`` writes it on saving the same rows of a
    dataset whose history it cannot hash: a new ``_fingerprint``."""
    state = json.loads((folder / "state.json").read_text())
    state["_fingerprint"] = "0123456789abcdef" if state["_fingerprint"] != "0123456789abcdef" else "fedcba9876543210"
    (folder / "state.json").write_text(json.dumps(state, indent=2))


def test_a_save_to_disk_folder_saved_again_with_the_same_rows_is_not_prepared_again(
        tmp_path: Path, prepared_calls: list[str]) -> None:
    """save_to_disk writes a new ``_fingerprint`` in state.json at each save of a dataset whose
    history it cannot hash: its source was prepared again though no row changed. Its rows (the
    .arrow files) count, not the fingerprint; changed rows still prepare it again."""
    from subsetctl.api import plan_project, run_project
    from subsetctl.reporter import SilentReporter

    folder = _saved_to_disk_project(tmp_path)
    run_project(tmp_path, until="data", reporter=SilentReporter())
    assert sorted(prepared_calls) == ["j", "s", "t"]
    _new_save_fingerprint(folder)
    assert not {s.name: s for s in plan_project(tmp_path)[2]}["data"].will_run
    prepared_calls.clear()
    run_project(tmp_path, until="data", reporter=SilentReporter())
    assert prepared_calls == []
    import datasets

    datasets.Dataset.from_list(qa_rows(7, "s")).save_to_disk(str(tmp_path / "other"))  # other rows, saved there
    import shutil

    shutil.rmtree(folder)
    shutil.move(tmp_path / "other", folder)
    assert {s.name: s for s in plan_project(tmp_path)[2]}["data"].reasons == ["input files changed: s"]
    run_project(tmp_path, until="data", reporter=SilentReporter())
    assert prepared_calls == ["s"]


def test_plan_after_a_target_edit_counts_no_save_to_disk_folder_as_an_earlier_subsetctl_did(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`plan` after the target's split was edited worked out, for every save_to_disk source, the
    inputs and key an earlier subsetctl counted (the folder whole), though the data stage
    recorded today's: 200 such sources took 1.68 s of CPU, not 1.45 s. They are worked out only
    where today's do not match: none here."""
    from subsetctl.api import plan_project

    _saved_to_disk_project_ran_then_target_edited(tmp_path)
    earlier = _counted_as_before(monkeypatch)
    data = {s.name: s for s in plan_project(tmp_path)[2]}["data"]
    assert data.will_run and "(1 of 3 prepared again (t), 2 reused;" in str(data.work), data.work
    assert earlier == [], earlier


def test_the_data_stage_counts_no_save_to_disk_folder_as_an_earlier_subsetctl_did_when_today_s_key_is_held(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prepared_calls: list[str]) -> None:
    """The data stage worked out, for every source it reuses, the keys an earlier subsetctl
    wrote before looking for today's, counting each save_to_disk folder a second time, whole:
    only where no folder holds the source under today's key now, as
    `plan` does. The source is reused all the same."""
    from subsetctl.api import run_project
    from subsetctl.reporter import SilentReporter

    _saved_to_disk_project_ran_then_target_edited(tmp_path)
    earlier = _counted_as_before(monkeypatch)
    prepared_calls.clear()
    run_project(tmp_path, until="data", reporter=SilentReporter())
    assert prepared_calls == ["t"] and earlier == [], (prepared_calls, earlier)


@pytest.mark.parametrize("data_files", [False, True])
def test_a_save_to_disk_source_prepared_while_its_fingerprint_counted_is_reused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prepared_calls: list[str], data_files: bool) -> None:
    """A data stage run while state.json counted whole (an earlier subsetctl) stays up to date,
    and its save_to_disk source is reused when another source changes (with data_files too, which
    such a folder ignores)."""
    from subsetctl.api import plan_project, run_project
    from subsetctl.reporter import SilentReporter

    _saved_to_disk_project(tmp_path, data_files=data_files)
    recorded = run_data_as_counted_before(tmp_path, monkeypatch)
    assert "sha256" in recorded["s"]["path"]["files"]["state.json"]
    assert not {s.name: s for s in plan_project(tmp_path)[2]}["data"].will_run
    write_jsonl(tmp_path / "t.jsonl", qa_rows(9, "t"))
    prepared_calls.clear()
    run_project(tmp_path, until="data", reporter=SilentReporter())
    assert prepared_calls == ["t"]


def test_a_data_stage_that_counted_a_save_to_disk_folder_whole_beside_a_where_stays_up_to_date(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project whose data stage ran while a save_to_disk folder counted whole but a ``where``
    source counted its task's rows (the subsetctl just before) stays up to date: the only
    earlier inputs tried counted both whole, and plan said "input files changed: s"."""
    import yaml

    from subsetctl.api import plan_project, run_project
    from subsetctl.data import fingerprint
    from subsetctl.reporter import SilentReporter

    _saved_to_disk_project(tmp_path)
    write_jsonl(tmp_path / "w.jsonl", [{**row, "task": task} for task in ("x", "y") for row in qa_rows(4, task)])
    spec = yaml.safe_load((tmp_path / "subsetctl.yaml").read_text())
    spec["sources"].append({"name": "w", "loader": {"type": "jsonl", "path": "w.jsonl", "where": {"task": "x"}}})
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    with monkeypatch.context() as patched:  # (a save_to_disk folder not told apart: counted whole, as then)
        patched.setattr(fingerprint, "is_saved_to_disk", lambda folder: False)
        run_project(tmp_path, until="data", reporter=SilentReporter())
    recorded = json.loads((tmp_path / ".subsetctl" / "data" / "manifest.json").read_text())["inputs"]["extra"]
    assert "sha256" in recorded["s"]["path"]["files"]["state.json"] and "rows" in recorded["w"]
    assert not {s.name: s for s in plan_project(tmp_path)[2]}["data"].will_run


def test_a_targets_save_to_disk_folder_counted_whole_beside_a_where_test_loader_is_reused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prepared_calls: list[str]) -> None:
    """The same for one source, the target: its save_to_disk folder counted whole and its
    test_loader's ``where`` by its task's rows (the subsetctl just before). Neither today's
    key nor the one counting both whole was that, so it was prepared again."""
    import datasets
    import yaml

    from subsetctl.api import plan_project, run_project
    from subsetctl.data import fingerprint
    from subsetctl.reporter import SilentReporter

    _saved_to_disk_project(tmp_path)
    datasets.Dataset.from_list(qa_rows(8, "t")).save_to_disk(str(tmp_path / "tsaved"))
    write_jsonl(tmp_path / "w.jsonl", [{**row, "task": task} for task in ("x", "y") for row in qa_rows(4, task)])
    spec = yaml.safe_load((tmp_path / "subsetctl.yaml").read_text())
    spec["target"] = {"name": "t", "loader": {"type": "huggingface", "path": "./tsaved"},
                      "split": {"train": 4, "validation": 2},
                      "test_loader": {"type": "jsonl", "path": "w.jsonl", "where": {"task": "x"}}}
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    with monkeypatch.context() as patched:  # (a save_to_disk folder not told apart: counted whole, as then)
        patched.setattr(fingerprint, "is_saved_to_disk", lambda folder: False)
        run_project(tmp_path, until="data", reporter=SilentReporter())
    assert not {s.name: s for s in plan_project(tmp_path)[2]}["data"].will_run
    write_jsonl(tmp_path / "j.jsonl", qa_rows(7, "j"))
    prepared_calls.clear()
    run_project(tmp_path, until="data", reporter=SilentReporter())
    assert prepared_calls == ["j"]


def test_a_damaged_earlier_source_is_checked_once_before_it_is_prepared_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prepared_calls: list[str]) -> None:
    """The data stage looks for today's key in every earlier-results folder, then for the keys
    an earlier subsetctl wrote, today's among them: a folder holding the source under today's key
    but damaged (a byte altered, the size kept) had its files hashed twice, once in each look.
    Once now; the source is prepared again, the others reused."""
    spec = _spec(tmp_path, 2)
    run_data_stage(spec, tmp_path, tmp_path / "a")
    arrow = next((tmp_path / "a" / "s0").rglob("*.arrow"))
    data = bytearray(arrow.read_bytes())
    data[len(data) // 2] ^= 0xFF
    arrow.write_bytes(bytes(data))
    checked: list[str] = []
    intact = data_stage._intact

    def counting(folder: Path, record: dict) -> bool:
        checked.append(folder.name)
        return intact(folder, record)

    monkeypatch.setattr(data_stage, "_intact", counting)
    prepared_calls.clear()
    again = run_data_stage(spec, tmp_path, tmp_path / "b", reuse_from=[tmp_path / "a"])
    assert prepared_calls == ["s0"] and again["reused"] == ["tgt", "s1"], (prepared_calls, again["reused"])
    assert checked.count("s0") == 1, checked
