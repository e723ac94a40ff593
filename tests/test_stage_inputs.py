"""Which spec settings make which stages stale: each stage's fingerprint (its spec slice)
must follow every setting its results depend on, and none that cannot change them."""

from __future__ import annotations

from typing import Any

import pytest

from subsetctl.spec import Spec, apply_overrides, fingerprint_dump
from subsetctl.stages import all_stages

BASE = {
    "target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
    "sources": [{"name": "s", "loader": {"type": "jsonl", "path": "s.jsonl"}}],
    "verify": {"enabled": True},
}


def stages_changed_by(override: str, base: dict[str, Any] = BASE) -> set[str]:
    """The stages whose spec slice differs once ``override`` is applied."""
    before = Spec.model_validate(base)
    after = Spec.model_validate(apply_overrides(base, [override]))
    return {stage.name for stage in all_stages() if stage.spec_slice(before) != stage.spec_slice(after)}


@pytest.mark.parametrize("override", ["verify.lr_surrogate=0.02", "verify.steps=7", "verify.batch_size=3"])
def test_the_budget_linear_sgd_replays_reaches_calibrate_and_search(override: str) -> None:
    # calibrate builds linear_sgd estimators from verify's budget: a stale calibration kept
    # the old lambda and map while the search re-ran at the new learning rate
    choosing = {**BASE, "calibrate": {"estimators": ["fast", "linear_sgd"]}}
    assert {"verify", "calibrate", "search"} <= stages_changed_by(override, choosing)
    searching = {**BASE, "verify": {"enabled": False}, "estimate": {"estimator": "linear_sgd"}}
    assert stages_changed_by(override, searching) - {"verify"} == {"search"}  # verify off: calibrate builds none
    assert stages_changed_by(override, {**BASE, "estimate": {"estimator": "true_finetune"}}) >= {"verify", "search"}


@pytest.mark.parametrize("override", ["verify.lr_surrogate=0.02", "verify.steps=7", "verify.batch_size=3",
                                      "estimate.max_iter=7", "estimate.sgd.steps=3", "estimate.sgd.lr=0.1",
                                      "estimate.sgd.batch_size=2", "estimate.sgd.replay=false"])
def test_estimator_settings_no_estimator_takes_make_nothing_stale(override: str) -> None:
    # the fast estimator (and calibration without verify) reads neither the exact solver's
    # iterations nor the simulated fine-tune: calibrate and search re-ran for them
    off = {**BASE, "verify": {"enabled": False}}
    assert stages_changed_by(override, off) - {"verify"} == set()  # (verify is off)
    changed = stages_changed_by(override)  # verify on: its own settings re-run verify only
    assert changed == ({"verify"} if override.startswith("verify.") else set())


def test_the_learning_rate_of_a_kind_verify_does_not_run_leaves_verify_up_to_date() -> None:
    """With ``verify.kinds: [ce]``, changing verify.lr_surrogate (the default learning rate
    of linear_sgd's replay) re-ran verify, loading the model to fine-tune nothing new."""
    ce_only = {**BASE, "verify": {"enabled": True, "kinds": ["ce"]}}
    assert stages_changed_by("verify.lr_surrogate=0.02", ce_only) == set()
    assert stages_changed_by("verify.lr_ce=0.002", ce_only) == {"verify"}
    surrogate_only = {**BASE, "verify": {"enabled": True, "kinds": ["surrogate"]}}
    assert stages_changed_by("verify.lr_ce=0.002", surrogate_only) == set()
    assert stages_changed_by("verify.lr_surrogate=0.02", surrogate_only) == {"verify"}
    assert stages_changed_by("verify.kinds=[ce,surrogate]", ce_only) == {"verify"}


def test_the_exact_solver_iterations_reach_the_search_that_uses_them() -> None:
    exact = {**BASE, "verify": {"enabled": False}, "estimate": {"estimator": "exact"}}
    assert stages_changed_by("estimate.max_iter=7", exact) == {"search"}
    choosing = {**BASE, "calibrate": {"estimators": ["fast", "exact"]}}
    assert stages_changed_by("estimate.max_iter=7", choosing) == {"calibrate", "search"}


@pytest.mark.parametrize("override", ["meta_init.checkpoint_every=3", "finetune.checkpoint_every=3",
                                      "gradients.memory_budget_mb=1024"])
def test_settings_that_cannot_change_results_make_nothing_stale(override: str) -> None:
    assert stages_changed_by(override) == set()


def test_meta_init_optimizer_settings_do_not_reach_verify() -> None:
    # a real fine-tune takes neither weight decay nor gradient accumulation from meta_init
    assert "verify" not in stages_changed_by("meta_init.weight_decay=0.1")
    assert "verify" not in stages_changed_by("meta_init.grad_accum=2")
    assert "meta_init" in stages_changed_by("meta_init.grad_accum=2")


def test_num_labels_counts_for_a_classifier_only() -> None:
    assert stages_changed_by("model.num_labels=5") == set()
    classifier = {**BASE, "model": {"kind": "classifier", "source": "m"}}
    assert {"meta_init", "gradients", "finetune", "evaluate"} <= stages_changed_by("model.num_labels=5", classifier)


def test_max_new_tokens_counts_for_a_causal_lm_only() -> None:
    """A classifier generates nothing: evaluate.max_new_tokens (which validate warns of) re-ran
    its evaluate stage and missed the test results cached for every adapter."""
    assert stages_changed_by("evaluate.max_new_tokens=64") == {"evaluate"}
    classifier = {**BASE, "model": {"kind": "classifier", "source": "m"}}
    assert stages_changed_by("evaluate.max_new_tokens=64", classifier) == set()
    assert fingerprint_dump(Spec.model_validate(apply_overrides(classifier, ["evaluate.max_new_tokens=64"]))) \
        == fingerprint_dump(Spec.model_validate(classifier))  # the test results' cache keys too


def test_label_map_counts_for_the_data_and_unset_changes_no_key() -> None:
    """A source's label_map renames a classifier's classes and a causal LM's answers: the
    data stage (and so every stage after it) re-runs when it changes. Unset, it is left out
    of the dumped spec, so projects computed before the option existed stay up to date."""
    classifier = {**BASE, "model": {"kind": "classifier", "source": "m"}}
    assert stages_changed_by("sources[0].label_map.0=neg", classifier) == {"data"}
    assert stages_changed_by("sources[0].label_map.0=neg") == {"data"}
    spec = Spec.model_validate(classifier)
    assert "label_map" not in spec.model_dump(mode="json")["sources"][0]
    # an empty map renames nothing: as unset, it prepares nothing again
    assert stages_changed_by("sources[0].label_map={}", classifier) == set()


def test_fingerprint_dump_keeps_defaults_as_they_were() -> None:
    # projects computed before these rules keep their fingerprints and cache keys
    spec = Spec.model_validate(BASE)
    assert fingerprint_dump(spec) == spec.model_dump(mode="json")


def test_the_results_chunk_gives_every_worker_a_task_of_the_asked_batch_size() -> None:
    from subsetctl.stages.search import RESULTS_CHUNK, results_chunk_size

    def chunk(**executor: Any) -> int:
        return results_chunk_size(Spec.model_validate({**BASE, "executor": executor}))

    assert chunk() == RESULTS_CHUNK
    assert chunk(batch_size=1000, n_jobs=4) == 4000  # a chunk of 256 capped executor.batch_size at 256
    assert chunk(batch_size=10, n_jobs=2) == RESULTS_CHUNK


def test_readme_says_n_jobs_still_counts_with_a_dask_address_and_a_batch_size() -> None:
    """README said n_jobs was the cluster's to decide with an address; with batch_size set,
    the search hands out batch_size x n_jobs subsets at a time, whatever the cluster."""
    import re
    from pathlib import Path

    from subsetctl.stages.search import results_chunk_size

    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8").split())
    assert "`n_jobs` is then theirs to decide" not in readme
    said = re.search(r"`batch_size: (\d+)` with the default `n_jobs: 2` kept (\d+) of (\d+) workers busy", readme)
    assert said is not None
    batch, busy, workers = map(int, said.groups())
    chunk = results_chunk_size(Spec.model_validate({**BASE, "executor": {
        "backend": "dask", "address": "tcp://s:8786", "batch_size": batch}}))
    assert chunk // batch == busy < workers


def test_a_switched_off_stage_is_not_said_to_be_moved_past_by_keys_the_spec_did_not_change() -> None:
    """A slice recorded by an earlier version (verify read meta_init.weight_decay; finetune's
    checkpoint_every raw) is no change of the spec; a changed setting is."""
    stages = {stage.name: stage for stage in all_stages()}
    spec = Spec.model_validate({**BASE, "verify": {"enabled": False}, "finetune": {"enabled": False}})
    on = Spec.model_validate({**BASE, "finetune": {"checkpoint_every": 3}})
    verify_slice = {**stages["verify"].spec_slice(spec), "meta_init.weight_decay": 0.0}
    assert stages["verify"].settings_moved_past(spec, {"inputs": {"slice": verify_slice}}) == []
    finetune_slice = stages["finetune"].raw_spec_slice(on)
    assert finetune_slice["finetune"]["checkpoint_every"] == 3
    assert stages["finetune"].settings_moved_past(spec, {"inputs": {"slice": finetune_slice}}) == []
    finetune_slice["finetune"]["steps"] = 99
    assert stages["finetune"].settings_moved_past(spec, {"inputs": {"slice": finetune_slice}}) == ["finetune.steps"]


def test_plan_says_which_input_of_a_source_changed() -> None:
    """An edited loader plugin read "input files changed: b", as if b's data file had."""
    from subsetctl.plan_reasons import changed_inputs

    old = {"b": {"code": {"sha256": "1"}}, "a": {"file": {"sha256": "1"}}, "selection_order": ["x", "y"]}
    new = {"b": {"code": {"sha256": "2"}}, "a": {"file": {"sha256": "2"}}, "selection_order": ["y", "x"]}
    assert changed_inputs(old, new) == ("input files changed: a, b (its loader plugin's code); the order of the "
                                         "search strategies and baselines in the spec changed")


def test_plan_says_a_local_folder_cannot_be_matched_to_the_hub_model_the_results_were_made_from(
        tiny_project_ran) -> None:
    """Results made from a hub id (its files not recorded: meta_init's manifest has no
    model_files, its summary the origin "hub"), model.source now a local folder: `plan`
    said the folder's files "were not recorded by the run that made these results (an
    older subsetctl)", which was not so; it names the hub model and how to keep the
    results. A packaged model (no origin recorded, as the other stages' manifests) likewise."""
    import json

    from subsetctl.api import plan_project

    project = tiny_project_ran(until="meta_init")
    path = project / ".subsetctl" / "meta_init" / "manifest.json"
    for origin, source in (("hub", "tinyorg/tinyllama"), ("packaged", "smollm2-135m-instruct")):
        manifest = json.loads(path.read_text())
        manifest["inputs"]["slice"]["model"]["source"] = source  # as a run on that model recorded them
        manifest["inputs"]["extra"].pop("model_files", None)
        manifest["fingerprint"] = "0" * 16  # that run's inputs: not the folder's
        manifest["summary"]["model"].pop("origin", None)
        if origin == "hub":
            manifest["summary"]["model"]["origin"] = "hub"
        path.write_text(json.dumps(manifest))
        meta_init = next(s for s in plan_project(project)[2] if s.name == "meta_init")
        reasons = "; ".join(meta_init.reasons)
        assert f"made from the {origin} model {source!r}, known by its name, not its files" in reasons, reasons
        assert f"set model.source back to {source!r}" in reasons and "older subsetctl" not in reasons, reasons
        assert ("offline it loads from the local Hugging Face cache" in reasons) is (origin == "hub"), reasons


def test_a_list_filled_from_empty_is_said_once_in_a_plan_reason() -> None:
    """Adding the first plugin said "spec changed: plugins, plugins[0]"."""
    from subsetctl.plan_reasons import changed_keys

    assert changed_keys({"plugins": []}, {"plugins": ["a:B"]}) == ["plugins"]
    assert changed_keys({"plugins": ["a:B"]}, {"plugins": []}) == ["plugins"]
    assert changed_keys({"plugins": ["a:B"]}, {"plugins": ["a:B", "c:D"]}) == ["plugins"]
    assert changed_keys({"x": {"a": 1, "b": [1]}}, {"x": {"a": 2, "b": []}}) == ["x.a", "x.b"]


def test_a_changed_list_of_plain_values_is_named_once_in_a_plan_reason() -> None:
    """A new lambda grid read "spec changed: calibrate.lambda_grid[0], ... [5]", six keys for
    one setting; a list of dicts is still named by the key inside it that changed."""
    from subsetctl.plan_reasons import changed_keys

    old, new = [0.01, 0.1, 1.0, 3.0, 10.0, 30.0], [0.5, 2.0]
    assert changed_keys({"calibrate": {"lambda_grid": old}}, {"calibrate": {"lambda_grid": new}}) == [
        "calibrate.lambda_grid"]
    assert changed_keys({"x": [[1, 2], [3]]}, {"x": [[1, 2], [4]]}) == ["x"]
    assert changed_keys({"x": [{"a": 1}, {"a": 2}]}, {"x": [{"a": 1}, {"a": 3}]}) == ["x[1].a"]


def test_a_changed_key_holding_a_dot_is_named_in_quotes_as_its_override_writes_it() -> None:
    """A label_map key v1.2 changed read "changed a (label_map.v1.2)", two keys to the eye:
    it is named as an override writes it (label_map."v1.2"), and the override behind it is
    still found for plan's "(set on this command line: ...)" note."""
    from subsetctl.plan_reasons import changed_keys, overrides_note

    def sources(value: str) -> dict:
        return {"sources": [{"name": "a", "label_map": {"v1.2": value, "2": value}}]}

    assert changed_keys(sources("y"), sources("x")) == ['sources: changed a (label_map."v1.2", label_map.2)']
    keys = changed_keys({"target": {"label_map": {"v1.2": "y"}}}, {"target": {"label_map": {"v1.2": "x"}}})
    assert keys == ['target.label_map."v1.2"']
    assert overrides_note(['target.label_map."v1.2"=x'], keys, planned=True).endswith(
        ': target.label_map."v1.2"=x)')


def test_plan_names_the_strategies_added_removed_renamed_or_reordered() -> None:
    """Adding a third strategy said "spec changed: search.strategies[2].label,
    search.strategies[2].name" (removing one said the same), and swapping the first two
    "search.strategies[0].name, search.strategies[1].name": the strategies are now named,
    by label, as the sources are."""
    from subsetctl.plan_reasons import changed_keys
    from subsetctl.spec import overrides_under

    def search(*strategies: dict) -> dict:
        return {"search": {"final": None, "strategies": [{"name": n, "params": {}, "label": None, **extra}
                                                         for n, extra in strategies]}}

    two = search(("exhaustive", {}), ("gradient_similarity", {}))
    assert changed_keys(two, search(("exhaustive", {}), ("gradient_similarity", {}), ("forward", {}))) == [
        "search.strategies: added forward"]
    assert changed_keys(search(("exhaustive", {}), ("gradient_similarity", {}), ("forward", {})), two) == [
        "search.strategies: removed forward"]
    assert changed_keys(two, search(("gradient_similarity", {}), ("exhaustive", {}))) == [
        ("search.strategies: reordered (the first is the final pick unless search.final names one, and the "
         "report's tables follow the order)")]
    assert changed_keys(two, search(("exhaustive", {"label": "ex"}), ("gradient_similarity", {}))) == [
        "search.strategies: renamed exhaustive -> ex (same strategy and params, another label)"]
    threshold = search(("exhaustive", {}), ("gradient_similarity", {"params": {"threshold": 0.5}}))
    keys = changed_keys(two, {**threshold, "search": {**threshold["search"], "final": "exhaustive"}})
    assert keys == ["search.strategies: changed gradient_similarity (params.threshold)", "search.final"]
    # plan's "(set on the command line: ...)" note still finds the override behind it
    assert overrides_under(["search.strategies[1].params.threshold=0.5"], keys[:1]) == [
        "search.strategies[1].params.threshold=0.5"]


def test_a_label_field_a_causal_lm_does_not_read_makes_nothing_stale() -> None:
    """A causal LM reads its answers from response_field: setting or changing label_field
    prepared every source again (and so recomputed the gradients) for nothing."""
    assert stages_changed_by("target.loader.label_field=y") == set()
    labeled = {**BASE, "sources": [{"name": "s", "loader": {"type": "jsonl", "path": "s.jsonl", "label_field": "y"}}]}
    assert stages_changed_by("sources[0].loader.label_field=z", labeled) == set()
    classifier = {**labeled, "model": {"kind": "classifier", "source": "m"},
                  "target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl", "label_field": "y"}}}
    assert stages_changed_by("target.loader.label_field=z", classifier) == {"data"}
    assert stages_changed_by("sources[0].loader.label_field=z", classifier) == {"data"}


def test_a_data_stage_computed_while_label_field_counted_stays_up_to_date(jsonl_project, monkeypatch) -> None:
    """A causal-LM project whose loaders set label_field, computed while it counted, is not
    stale after the upgrade; and its sources are reused when the stage runs again."""
    import json

    import yaml

    import subsetctl.data.fingerprint
    from subsetctl.api import plan_project, run_project

    spec_file = jsonl_project / "subsetctl.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["sources"][0]["loader"]["label_field"] = "response"
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    def counted(spec, source, label_field_counted=False):  # type: ignore[no-untyped-def]
        return source.model_dump(mode="json")

    with monkeypatch.context() as previous_version:  # the stage's fingerprint and the sources' keys as then
        previous_version.setattr(subsetctl.data.fingerprint, "source_dump", counted)
        run_project(jsonl_project, until="data")
    data = next(s for s in plan_project(jsonl_project)[2] if s.name == "data")
    assert data.state == "up to date", data.reasons
    write = (jsonl_project / "b.jsonl").read_text() + json.dumps({"prompt": "say 10", "response": "10"}) + "\n"
    (jsonl_project / "b.jsonl").write_text(write)  # the stage runs again: source a is reused, as prepared then
    run_project(jsonl_project, until="data")
    summary = json.loads((jsonl_project / ".subsetctl" / "data" / "manifest.json").read_text())["summary"]
    assert "a" in summary.get("reused", []), summary


def test_a_gradients_seed_written_as_the_project_seed_makes_nothing_stale() -> None:
    # gradients.seed defaults to project.seed: writing that value out projects with the
    # same matrix, yet re-ran the gradients stage and every stage after it
    seeded = {**BASE, "project": {"seed": 3}}
    assert stages_changed_by("gradients.seed=3", seeded) == set()
    assert "gradients" in stages_changed_by("gradients.seed=4", seeded)
    assert stages_changed_by("project.seed=4", {**seeded, "gradients": {"seed": 3}}) >= {"data", "verify"}
    assert "gradients" in stages_changed_by("project.seed=4", {**seeded, "gradients": {"seed": 3}})


def test_answers_compared_in_nfkc_mark_evaluate_only_where_exact_match_scores_a_test_row(tiny_project) -> None:
    """evaluate's inputs say answers are compared in Unicode NFKC only where exact match can
    score a test row: metric exact_match, or auto with a row that carries no reasoning-gym
    rg_task (as the data stage's results hold them). A reasoning-gym target's scores cannot
    change, so a project an earlier subsetctl ran is not shown stale over exact match."""
    import yaml

    from subsetctl.api import load_project, run_project
    from subsetctl.stages.evaluate import ANSWERS_COMPARED, EvaluateStage

    def marked(overrides: list[str]) -> bool:
        project, spec = load_project(tiny_project, overrides)
        return ANSWERS_COMPARED in EvaluateStage().extra_inputs(spec, project)

    assert marked([])  # before the data stage ran: as exact match would
    run_project(tiny_project, until="data")
    assert marked([]) and marked(["evaluate.metric=exact_match"])  # JSONL rows: exact match scores them
    spec_file = tiny_project / "subsetctl.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["target"]["loader"] = {"type": "reasoning_gym", "task": "basic_arithmetic", "size": 20, "seed": 1}
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    run_project(tiny_project, until="data")
    assert not marked([]) and not marked(["evaluate.metric=reasoning_gym"])  # every test row reasoning-gym's
    assert marked(["evaluate.metric=exact_match"])


def test_plan_writes_thousands_of_sources_with_a_thousands_separator() -> None:
    """`plan` of 2,000 sources said "the target and the 2000 sources" beside "8,015 rows" and
    "none of the 2,001 prepared before": the count of sources is written as the other counts are."""
    spec = Spec.model_validate({**BASE, "sources": [{"name": f"s{i}", "loader": {"type": "jsonl", "path": "s.jsonl"}}
                                                    for i in range(2000)]})
    stages = {stage.name: stage for stage in all_stages()}
    assert stages["data"].work(spec).startswith("the target and 2,000 sources (")
    assert stages["gradients"].work(spec).startswith("one gradient per example of the target and the 2,000 sources,")
