"""What validating a spec checks beyond its schema: the errors of a spec the schema took
(:func:`semantic_issues`: files, names, plugins, settings that cannot work with the model),
the strategy problems of one it refused (:func:`param_issues_of_an_invalid_spec`), its
warnings (:func:`spec_warnings`: valid settings that will not do what they likely mean),
and the code from outside subsetctl it runs (:func:`code_the_spec_runs`).

:func:`subsetctl.api.validate_spec_file` runs them and turns what they find into a
:class:`~subsetctl.api.ValidationReport`; none of them needs a model. Heavy packages
(torch, dask, the data libraries) are imported only by the checks that need them, so
validating stays fast.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Protocol

from subsetctl.errors import (
    PluginNotImported,
    UserError,
    as_typed,
    count_agreeing,
    joined_names,
    name_too_long_problem,
    shell_arg,
)
from subsetctl.spec import JsonlLoader, SourceSpec, Spec, SpecIssue, format_path, key_lines
from subsetctl.user_paths import expand_home


def code_the_spec_runs(spec: Spec, imported: bool = True) -> list[str]:
    """What ``spec`` makes run besides subsetctl and the libraries it uses, one line each:
    its ``plugins:`` modules (imported by validate, plan, ls, doctor, report and run alike: their registrations
    are what the checks look up), a model's own code (``model.trust_remote_code``), and a
    Dask cluster named by ``executor.address``, whose results this process unpickles.
    validate and plan say it, so that a spec from someone else is not run unread; the
    installed plugins of the environment are the user's own choice, not the spec's.
    ``imported``: False when the plugins were not imported (``--no-plugins``), which is said."""
    from subsetctl.plugin_loading import module_file, no_plugins_option

    notes = []
    for i, plugin in enumerate(spec.plugins):
        module = plugin.partition(":")[0]
        file = getattr(sys.modules.get(module), "__file__", None) or module_file(module)
        how = ("which validate, plan, ls, doctor, report and run import" if imported else
               f"not imported now ({no_plugins_option()}); validate, plan, ls and doctor without it, and report and run, import it")
        notes.append(f"plugins[{i}]: the Python module {module!r}{f' ({file})' if file else ''}, {how}")
    if spec.model.trust_remote_code:
        notes.append(f"model.trust_remote_code: the Python files of the model {as_typed(spec.model.source)}, whenever a "
                     "stage loads it")
    if spec.executor.backend == "dask" and spec.executor.address:
        notes.append(f"executor.address: the Dask cluster at {spec.executor.address!r} computes the search's estimates "
                     "and sends them back pickled, which can run any code here: name only a cluster you trust")
    return notes


class _AddIssue(Protocol):
    """How the checks below add an issue (or a warning) for a key: :func:`_issue_collector`'s
    function; ``plugin_traceback``, a failed plugin import's own frames (:attr:`SpecIssue.plugin_traceback`)."""

    def __call__(self, loc: tuple[Any, ...], message: str, *, plugin_traceback: str = "") -> None: ...


def _issue_collector(spec_path: Path, text: str, found: list[SpecIssue], note: bool = False) -> _AddIssue:
    """A function that appends one SpecIssue for a key (its line looked up in the YAML
    ``text``) to ``found``; shared by the error and the warning checks (``note``: the
    warnings' notes, :attr:`SpecIssue.note`)."""
    from subsetctl.spec import format_path, line_of_key

    lines = key_lines(text) if text else {}

    def add(loc: tuple[Any, ...], message: str, plugin_traceback: str = "") -> None:
        # (a key the YAML leaves out: its section's line)
        found.append(SpecIssue(file=str(spec_path), line=line_of_key(loc, lines), key=format_path(loc),
                               message=message, note=note, plugin_traceback=plugin_traceback))

    return add


def _parse_strategy_params(cls: Any, params: Any, index: int, label: str | None = None) -> Any:
    """The validated params of the strategy at ``search.strategies[index]`` (``label``: its
    label in the spec, which an error names)."""
    from subsetctl.search.base import parse_params

    return parse_params(cls, params, f"search.strategies[{index}].params", label)


def listed_parts_issues(data: Any, path: Path, text: str) -> list[SpecIssue]:
    """The target's and the listed sources' own problems (a missing file, a column a file
    lacks), for a spec whose ``source_files`` groups could not be expanded (a pattern
    matching no file): the checks ran only once every group was, so a user fixing the
    group's problem met these in a second round. Nothing for a spec the schema refuses,
    and no problem of the sources as a whole (their number, what a strategy takes), which
    the groups' sources would change."""
    from pydantic import ValidationError

    try:
        whole = Spec.model_validate(data)
    except ValidationError:
        return []
    if not whole.source_files:
        return []
    listed = whole.model_copy(update={"source_files": []})
    return [i for i in semantic_issues(listed, path, text) if i.key.startswith(("target", "sources["))]


def param_issues_of_an_invalid_spec(data: Any, path: Path, text: str) -> list[SpecIssue]:
    """Strategy name and parameter problems, for a spec the schema already refused: they
    are otherwise checked only once the rest is valid, so a user fixing the listed problems
    would meet them in a second round. Unknown names only when every plugin the spec
    lists could be imported (one that failed may be what registers them)."""
    from subsetctl.plugin_loading import load_plugin_string
    from subsetctl.registry import STRATEGIES

    found: list[SpecIssue] = []
    issue = _issue_collector(path, text, found)
    search = data.get("search") if isinstance(data, dict) else None
    strategies = search.get("strategies") if isinstance(search, dict) else None
    if not isinstance(strategies, list):
        return found
    plugins = data.get("plugins") if isinstance(data, dict) else None
    all_imported = plugins is None or isinstance(plugins, list)
    for i, plugin in enumerate(plugins if isinstance(plugins, list) else []):
        try:
            load_plugin_string(str(plugin), path.parent)
        except PluginNotImported as exc:  # import_plugins=False: not checked, which validate says
            issue(("plugins", i), str(exc))
            all_imported = False
        except UserError:  # said once the spec is valid enough to check its plugins
            all_imported = False
    for i, entry in enumerate(strategies):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        if name not in STRATEGIES.names():
            if all_imported:
                try:
                    STRATEGIES.get(name)
                except UserError as exc:
                    issue(("search", "strategies", i, "name"), str(exc))
            continue
        if not isinstance(entry.get("params"), dict | None):  # the schema's message says it already
            continue
        try:
            _parse_strategy_params(STRATEGIES.get(name), entry.get("params"), i, entry.get("label"))
        except UserError as exc:
            issue(("search", "strategies", i, "params"), str(exc))
    return found


def semantic_issues(spec: Spec, spec_path: Path, text: str = "") -> list[SpecIssue]:
    """The errors of a spec the schema took, found without a model: plugins that fail to
    import, the model folder and max_length, the sources' files and columns
    (:func:`subsetctl.data.checks.check_sources`), strategy names and parameters, the Dask
    address, a linear_sgd lambda that diverges, evaluate settings the model cannot use, and
    strategy labels, estimator and projector names."""
    from subsetctl.data.checks import check_sources

    found: list[SpecIssue] = []
    issue = _issue_collector(spec_path, text, found)
    failed_plugins = _plugin_issues(spec, spec_path, issue)
    _model_source_issues(spec, spec_path, issue)
    # check_sources loads the plugins too (it needs them for plugin loaders): list a broken one once
    found.extend(i for i in check_sources(spec, spec_path, text) if i not in found)
    _strategy_issues(spec, issue, failed_plugins)
    _dask_address_issues(spec, issue)
    unstable = unstable_linear_sgd(spec, [spec.estimate.lam]) if spec.estimate.estimator == "linear_sgd" else []
    for message in unstable:  # the search's estimate: found before any gradient is computed
        issue(("estimate", "lam"), f"{message}.")
    _evaluate_issues(spec, issue)
    _strategy_label_issues(spec, issue)
    _estimator_and_projector_issues(spec, issue, failed_plugins)
    return found


def _plugin_issues(spec: Spec, spec_path: Path, issue: _AddIssue) -> list[str]:
    """Import the spec's plugins (what they register counts for the checks after this);
    one that fails is an issue. The failed ones, as ``plugins[i] (name)``: an unknown
    strategy, estimator or projector name may be one that plugin would have registered."""
    from subsetctl.plugin_loading import load_plugin_string

    failed_plugins: list[str] = []
    for i, plugin in enumerate(spec.plugins):
        try:
            load_plugin_string(plugin, spec_path.parent)
        except UserError as exc:
            issue(("plugins", i), str(exc), plugin_traceback=getattr(exc, "plugin_traceback", ""))
            failed_plugins.append(f"plugins[{i}] ({plugin})")
    return failed_plugins


def _model_source_issues(spec: Spec, spec_path: Path, issue: _AddIssue) -> None:
    """A local model folder that is not one (a mistyped path shows here, not after the
    data stage has run), a model.revision for a source that is no hub id, and a
    model.max_length beyond what that folder's model takes."""
    from subsetctl.modeling.resolve import (
        check_max_length_fits_folder,
        check_model_folder,
        classify_model_source,
        model_location,
        revision_refused,
    )

    too_long = name_too_long_problem(spec_path.parent / expand_home(spec.model.source))
    if too_long is not None:  # (every look at it would raise "File name too long")
        issue(("model", "source"), f"folder {too_long}")
        return
    try:  # a mistyped local folder shows here, not after the data stage has run
        check_model_folder(spec.model.source, spec_path.parent, spec.model.kind, spec.model.revision,
                           spec.model.trust_remote_code)
    except UserError as exc:
        issue(("model", "source"), str(exc))
    if spec.model.revision is not None:  # a packaged model or a local folder has no revisions
        try:
            origin = classify_model_source(model_location(spec.model.source, spec_path.parent))
        except UserError:  # (said under model.source above)
            origin = "hub"
        if origin != "hub":
            issue(("model", "revision"), revision_refused(spec.model.source, origin))
    try:
        check_max_length_fits_folder(spec.model.source, spec_path.parent, spec.model.max_length, spec.model.revision)
    except UserError as exc:
        issue(("model", "max_length"), str(exc))


def _strategy_issues(spec: Spec, issue: _AddIssue, failed_plugins: list[str]) -> None:
    """Each search strategy's name (unknown, perhaps for a plugin that failed to import),
    parameters, and the strategy's own check of the spec (``check_spec``; with an
    estimator that fine-tunes for real, its ``max_subsets`` is called too, so a plugin's
    mistake there shows now rather than in the search)."""
    from subsetctl.plugin_guard import strategy_hook
    from subsetctl.plugin_loading import unknown_after_failed_imports
    from subsetctl.registry import STRATEGIES, fine_tunes_for_real

    for i, strategy in enumerate(spec.search.strategies):
        try:
            cls = STRATEGIES.get(strategy.name)
        except UserError as exc:
            issue(("search", "strategies", i, "name"), unknown_after_failed_imports(exc, STRATEGIES, failed_plugins))
            continue
        try:
            params = _parse_strategy_params(cls, strategy.params, i, strategy.label)
        except UserError as exc:
            issue(("search", "strategies", i, "params"), str(exc))
            continue
        earlier = [s.label or s.name for s in spec.search.strategies[:i]]
        origin = STRATEGIES.described(strategy.name)
        try:
            problem = strategy_hook(cls, strategy.name, origin, "check_spec", params, len(spec.sources), earlier)
            if fine_tunes_for_real(spec.estimate.estimator):  # a spec warning then; here the plugin's mistakes
                strategy_hook(cls, strategy.name, origin, "max_subsets", params, len(spec.sources))
        except UserError as exc:
            issue(("search", "strategies", i, "name"), str(exc))
            continue
        if problem:
            issue(("search", "strategies", i, "params"), problem)


def _dask_address_issues(spec: Spec, issue: _AddIssue) -> None:
    """A malformed executor.address for dask (when dask is importable here): it would
    otherwise be found only after the gradients stage."""
    from subsetctl.doctor import dask_importable

    if spec.executor.backend == "dask" and spec.executor.address is not None and dask_importable():  # "" too
        from subsetctl.estimate.dask_backend import check_dask_address

        try:  # a malformed address would only be found after the gradients stage
            check_dask_address(spec.executor.address)
        except UserError as exc:  # (said under the key: "executor.address: '' is not ...", not the key twice)
            issue(("executor", "address"), str(exc).removeprefix("executor.address "))


def _evaluate_issues(spec: Spec, issue: _AddIssue) -> None:
    """Evaluate settings that cannot work with the model: max_new_tokens leaving no room
    for the prompt, and a metric of the other kind of model."""
    metric = spec.evaluate.metric
    if spec.model.kind == "causal-lm" and spec.evaluate.max_new_tokens >= spec.model.max_length:
        issue(("evaluate", "max_new_tokens"), f"{spec.evaluate.max_new_tokens} new tokens leave no room for the "
                                               f"prompt in model.max_length={spec.model.max_length} (prompts are "
                                               "cut to max_length - max_new_tokens tokens, at least 1, so every "
                                               "test prompt would be cut to its last token). Lower "
                                               "evaluate.max_new_tokens or raise model.max_length.")
    if spec.model.kind == "classifier" and metric in ("exact_match", "reasoning_gym"):
        issue(("evaluate", "metric"), f"{metric!r} scores generated answers; a classifier (model.kind) is "
                                      "scored with 'accuracy' (or 'auto').")
    if spec.model.kind == "causal-lm" and metric == "accuracy":
        issue(("evaluate", "metric"), "'accuracy' is for classifiers; a causal LM (model.kind) is scored with "
                                      "'exact_match', 'reasoning_gym' or 'auto'.")


def _strategy_label_issues(spec: Spec, issue: _AddIssue) -> None:
    """The names the strategies' results are reported under: two alike, one alike a
    fine-tune baseline's (their results would be mixed up), and a search.final that names
    none of them."""
    labels = [s.label or s.name for s in spec.search.strategies]
    for label in dict.fromkeys(x for x in labels if labels.count(x) > 1):  # each name given twice, said once
        at = [f"search.strategies[{i}]" for i, x in enumerate(labels) if x == label]
        which = f"{joined_names(at)} are {'both' if len(at) == 2 else 'all'}"
        count = {2: "two", 3: "three", 4: "four"}.get(len(at), str(len(at)))
        issue(("search", "strategies"), f"{count} strategies share a name: {which} reported as {label!r}; give "
                                        f"{'one' if len(at) == 2 else 'all but one'} a distinct `label` "
                                        f"(e.g. `label: {label}-2` on {at[-1]})")
    for i, label in enumerate(labels):
        if label in spec.finetune.baselines:
            issue(("search", "strategies", i), f"reported as {label!r}, like the {label} baseline in "
                                               "finetune.baselines: their results would be mixed up. Give the "
                                               "strategy another `label`.")
    if spec.search.final is not None and spec.search.final not in labels:
        issue(("search", "final"), _unknown_final(spec.search.final, spec.search.strategies, labels))


def _unknown_final(final: str, strategies: list[Any], labels: list[str]) -> str:
    """What to say of a ``search.final`` that is no strategy's label: the labels there are,
    those of the entries of that strategy name (``final: random_ensemble`` where both are
    labelled), and what to do."""
    named = [label for entry, label in zip(strategies, labels) if entry.name == final]
    also = (f"; the {final} strateg{'ies are' if len(named) > 1 else 'y is'} labelled {', '.join(named)}"
            if named else "")
    return (f"{final!r} is not one of the strategies ({', '.join(labels)}): search.final names a strategy by its "
            f"label (its name where it has none){also}. Set it to one of them, or leave it out to make the first "
            "strategy's pick the final one.")


def _estimator_and_projector_issues(spec: Spec, issue: _AddIssue, failed_plugins: list[str]) -> None:
    """Calibrating an estimator that fine-tunes for real (nothing to calibrate), and
    estimator and projector names no registry knows (perhaps a failed plugin's)."""
    from subsetctl.plugin_loading import unknown_after_failed_imports
    from subsetctl.registry import ESTIMATORS, PROJECTORS, fine_tunes_for_real

    for i, name in enumerate(spec.calibrate.estimators):
        if fine_tunes_for_real(name):
            issue(("calibrate", "estimators", i), f"{name!r} fine-tunes for real: its estimates are real losses, "
                                                  "so there is nothing to calibrate or choose. Remove it here (as "
                                                  "estimate.estimator it is used as it is).")
    for registry, loc, name in (
        (ESTIMATORS, ("estimate", "estimator"), spec.estimate.estimator),
        *((ESTIMATORS, ("calibrate", "estimators", i), n) for i, n in enumerate(spec.calibrate.estimators)),
        (PROJECTORS, ("gradients", "projector"), spec.gradients.projector),
    ):
        try:
            registry.get(name)
        except UserError as exc:
            issue(loc, unknown_after_failed_imports(exc, registry, failed_plugins))


def unreachable_hub_ids(spec: Spec, spec_dir: Path) -> list[tuple[tuple[Any, ...], str]]:
    """The hub ids (model and datasets) the spec needs that the local Hugging Face cache
    does not hold, when the hub cannot be reached (a dataset's also when ``HF_DATASETS_OFFLINE``
    is set: datasets then asks no hub), and a hub model it holds only in part then
    (:func:`~subsetctl.modeling.resolve.partly_cached_hub_model`: the data stage ran before
    meta_init stopped on it): ``(key, message)`` pairs. The network is probed only
    when there is such an id it is asked for (a TCP connect, at most 3 s)."""
    from subsetctl.data.checks import uncached_hub_datasets
    from subsetctl.hub import (
        cache_looked_in,
        cached_model_guess,
        datasets_offline_reason,
        hub_reachable,
        unreachable_reason,
    )
    from subsetctl.modeling.resolve import partly_cached_hub_model, revision_not_cached, uncached_hub_model

    needed: list[tuple[tuple[Any, ...], str, str]] = []
    revision = spec.model.revision
    model = uncached_hub_model(spec.model.source, spec_dir, revision)
    if model is not None:
        needed.append((("model", "source" if revision is None else "revision"), model, "model"))
    partial = partly_cached_hub_model(spec.model.source, spec_dir, revision) if model is None else None
    needed += [(loc, path, "dataset") for loc, path in uncached_hub_datasets(spec, spec_dir)]
    datasets_offline = datasets_offline_reason()  # (datasets asks no hub then; a model still does)
    reasons = {"dataset": datasets_offline} if datasets_offline else {}
    if (partial or any(what not in reasons for _, _, what in needed)) and not hub_reachable():
        reasons.setdefault("dataset", unreachable_reason())
        reasons["model"] = unreachable_reason()
    instead = {"model": "a packaged model (`subsetctl ls`) or a local model folder",
               "dataset": "a local copy (a save_to_disk folder, or its files with the jsonl, csv or parquet loader)"}
    issues = [(loc, revision_not_cached(name, revision)) if what == "model" and revision is not None else
              (loc, (f"{name!r} is a Hugging Face hub id that is not in the local Hugging Face cache "
                     f"({cache_looked_in(what)}), and "
                     f"{reasons[what]}: a stage that still has to load it will fail. Use "
                     f"{(_packaged_copy(name) if what == 'model' else None) or instead[what]}, or "
                     f"{'unset HF_DATASETS_OFFLINE and ' if reasons[what] == datasets_offline else ''}"
                     "run once where the hub is reachable (it then loads offline from the cache)."
                     f"{cached_model_guess(name) if what == 'model' else ''}"))
              for loc, name, what in needed if what in reasons]
    if partial is not None and "model" in reasons:
        name, snapshot, lacks = partial
        issues.insert(0, (("model", "source"), (
            f"{name!r} is in the local Hugging Face cache only in part: its copy there, {snapshot}, lacks {lacks} "
            f"(a download cut short, or blobs deleted from the cache), and {reasons['model']}: a stage that still "
            "has to load it will fail. Load it once where the hub is reachable to download the rest, or use "
            f"{_packaged_copy(name) or instead['model']}.")))
    return issues


def _packaged_copy(hub_id: str) -> str | None:
    """For a model hub id whose name is a packaged model's (`HuggingFaceTB/SmolLM2-135M-Instruct`
    and `smollm2-135m-instruct`): the packaged model to name instead, which needs no hub."""
    from subsetctl.modeling.resolve import packaged_names

    name = hub_id.rsplit("/", 1)[-1].lower()
    if name not in packaged_names():
        return None
    return f"the packaged model {name!r} (`model.source: {name}`), the same model shipped on PyPI"


#: More real fine-tunes than this in one search get a warning (``true_finetune``).
MANY_REAL_FINE_TUNES = 20


def _real_fine_tunes_of_the_search(spec: Spec) -> str | None:
    """What the search costs when its estimator fine-tunes for real (``true_finetune``):
    one fine-tune per distinct subset the strategies estimate, which the spec bounds
    (:meth:`Strategy.max_subsets`); None up to :data:`MANY_REAL_FINE_TUNES` or for an
    estimator that does not fine-tune."""
    from subsetctl.registry import fine_tunes_for_real
    from subsetctl.search.base import count_text
    from subsetctl.stages.search import search_subset_bounds

    if not fine_tunes_for_real(spec.estimate.estimator):
        return None
    total, parts, _ = search_subset_bounds(spec)
    if total <= MANY_REAL_FINE_TUNES:
        return None
    return (f"{spec.estimate.estimator!r} fine-tunes for real every subset the search estimates: up to {count_text(total)} "
            f"fine-tunes here ({parts}; subsets the strategies share are fine-tuned once), each as long as one "
            "fine-tune at the estimate's budget. Search with 'fast' or 'linear_sgd' and check a few subsets for "
            "real with verify, or narrow the search (fewer sources, a smaller m, forward with max_steps).")


def unstable_linear_sgd(spec: Spec, lambdas: list[float]) -> list[str]:
    """Why ``linear_sgd`` diverges at each of ``lambdas`` with the spec's simulated
    learning rate (none for the lambdas where it is stable)."""
    from subsetctl.estimate.dynamics import unstable_weight_decay
    from subsetctl.stages.features import simulated_finetune

    lr = simulated_finetune(spec)["lr"]
    return [m for m in (unstable_weight_decay(lr, lam) for lam in lambdas) if m]


def lambda_left_out_warning(reason: str) -> str:
    """The warning that linear_sgd leaves a ``calibrate.lambda_grid`` value out, ``reason``
    being why it diverges there (:func:`unstable_linear_sgd`): the spec's checks say it as a
    run begins, and the calibrate stage, finding it among the spec's checked warnings, does
    not say it again."""
    return f"linear_sgd leaves this lambda out: {reason}."


def spec_warnings(spec: Spec, spec_path: Path, text: str = "") -> list[SpecIssue]:
    """Valid settings that will not do what they likely mean, said by ``validate``,
    ``plan`` and ``run`` before any fine-tune is spent on them (the stages concerned say
    it again when they run)."""
    found: list[SpecIssue] = []
    warn = _issue_collector(spec_path, text, found)
    _warn_model_settings(spec, spec_path, warn)
    _warn_max_length_past_trained_positions(spec, spec_path, warn)
    _warn_unreadable_model_files(spec, spec_path, warn)
    _warn_model_folder_without_weights(spec, spec_path, warn)
    _warn_hub_data(spec, spec_path, warn)
    _warn_dask_missing(spec, warn)
    _warn_packaged_model_unavailable(spec, warn)
    _warn_device_missing(spec, warn)
    _warn_dtype_on_cpu(spec, warn)
    _warn_reasoning_gym_metric(spec, warn)
    _warn_executor_settings(spec, warn)
    costly = _real_fine_tunes_of_the_search(spec)
    if costly:
        warn(("estimate", "estimator"), costly)
    _warn_replaced_built_ins(spec, warn)
    _warn_plugins_registering_nothing(spec, warn)
    _warn_top_k_beyond_the_sources(spec, warn)
    _warn_few_random_subsets(spec, warn)
    _warn_source_named_as_a_baseline(spec, warn)
    _warn_names_windows_refuses(spec, warn)
    _warn_split_of_one(spec, warn)
    _note_max_examples_above_the_rows(spec, spec_path, _issue_collector(spec_path, text, found, note=True))
    _note_dataset_dict_split_by_default(spec, spec_path, _issue_collector(spec_path, text, found, note=True))
    found += _note_editor_schema_of_another_version(spec_path, text)
    _warn_label_map_of_class_ids(spec, spec_path, warn)
    _warn_file_bytes(spec, spec_path, warn)
    _warn_label_map_labels(spec, spec_path, warn, _issue_collector(spec_path, text, found, note=True))
    _warn_adamw_lr_slips(spec, warn)
    _warn_shared_generated_entries(spec, warn)
    if spec.verify.enabled:
        _warn_verify_settings(spec, warn)
    _warn_unused_calibrate_settings(spec, warn)
    for g, note in [*spec.left_out_rows, *spec.left_to_others]:
        warn(("source_files", g, "by"), note)
    return found


def _warn_model_settings(spec: Spec, spec_path: Path, warn: _AddIssue) -> None:
    """A model.source that will be fetched from the hub though a local folder of (almost)
    that name exists, or that names by an absolute path a model folder inside another
    project's folder where this one holds its own copy (a `cp -r` of a project), classifier settings a causal LM ignores (model.num_labels, a
    loader's label_field: most likely a classifier spec without model.kind; a label_map
    renames a causal LM's answers), causal-LM settings a classifier ignores (a
    response_field, as it reads its label_field instead; evaluate.max_new_tokens, as it
    generates nothing), and a ``corrupt.shuffle_responses`` that changes nothing (texts
    read whole, with no prompt)."""
    from subsetctl.modeling.resolve import folder_a_hub_id_shadows, model_in_another_project_note

    copied = model_in_another_project_note(spec.model.source, spec_path.parent)
    if copied is not None:
        warn(("model", "source"), copied)
    folder = folder_a_hub_id_shadows(spec.model.source, spec_path.parent)
    if folder is not None:
        try:
            inside = ", ".join(sorted(p.name for p in folder.iterdir() if p.is_dir())[:8]) or "no folders"
        except OSError:
            inside = "contents unreadable"
        warn(("model", "source"), f"{as_typed(spec.model.source)} is not a folder, so it will be fetched from the "
                                  f"Hugging Face hub as an 'org/name' id, but {folder} is a local folder "
                                  f"(holding {inside}): if you meant a model in it, fix the name.")
    if spec.model.kind == "causal-lm" and spec.model.num_labels is not None:
        warn(("model", "num_labels"), "is for classifiers only: a causal-lm model ignores it (and so does "
                                      "every stage). Remove it, or set model.kind: classifier if that is meant.")
    if spec.model.kind == "classifier" and "max_new_tokens" in spec.evaluate.model_fields_set:
        warn(("evaluate", "max_new_tokens"), "is for causal LMs only: a classifier predicts a class and generates "
                                             "nothing, so the bound is never used. Remove it, or set model.kind: "
                                             "causal-lm if that is meant.")
    for loc, source in _target_and_sources(spec):
        if source.corrupt.shuffle_responses and getattr(source.loader, "text_field", None) is not None:
            warn(loc + ("corrupt", "shuffle_responses"),
                 "does nothing to a source read with loader.text_field: its rows have no prompt, so its texts "
                 "shuffled are the same texts, and it is no harmful source. Plant one with prompt and response "
                 "columns (its answers shuffled), or remove it.")
        test_loader = getattr(source, "test_loader", None)  # the target's, read with the same options
        for at, loader in [(loc + ("loader",), source.loader),
                           *([(loc + ("test_loader",), test_loader)] if test_loader is not None else [])]:
            _warn_unread_answer_column(spec, at, loader, warn)


def _warn_max_length_past_trained_positions(spec: Spec, spec_path: Path, warn: _AddIssue) -> None:
    """A model.max_length past the positions a rotary model was trained on, read from the
    config.json validate sees (a local folder's, a cached hub model's); the first stage that
    loads the model says it again, for every model (:func:`~subsetctl.stages.common.base_model`)."""
    from subsetctl.modeling.resolve import max_length_note_for_folder

    note = max_length_note_for_folder(spec.model.source, spec_path.parent, spec.model.max_length,
                                      spec.model.revision)
    if note is not None:
        warn(("model", "max_length"), note)


def _warn_unreadable_model_files(spec: Spec, spec_path: Path, warn: _AddIssue) -> None:
    """A local model folder holding files this user may not read (another user's checkpoint,
    ``chmod 600``): `plan` and `run` stop on it, and `validate` said the spec was valid. A
    warning, not an error, as for a packaged model's missing package: the files' owner may
    fix it, or the spec be meant for another user."""
    from subsetctl.modeling.resolve import unreadable_model_files_note

    note = unreadable_model_files_note(spec.model.source, spec_path.parent)
    if note is not None:
        what, advice = note
        warn(("model", "source"), f"{what}. {advice}: `plan` and `run` here stop on them.")


def _warn_model_folder_without_weights(spec: Spec, spec_path: Path, warn: _AddIssue) -> None:
    """A local model folder with config.json and tokenizer files but no weights file (or a
    shard its index names missing): `validate` passed it, and `run` stopped at meta_init
    after the data stage with transformers' words. A warning, not an error: the weights may
    still be on their way (a copy in progress)."""
    from subsetctl.modeling.resolve import model_folder_without_weights_note

    note = model_folder_without_weights_note(spec.model.source, spec_path.parent)
    if note is not None:
        warn(("model", "source"), note)


def _warn_unread_answer_column(spec: Spec, loc: tuple[Any, ...], loader: Any, warn: _AddIssue) -> None:
    """A loader's answer column of the other kind of model, which nothing reads: a
    ``label_field`` for a causal LM, a ``response_field`` written for a classifier that
    has a ``label_field`` (without one, validate's error at label_field already names the
    column response_field names: a warning to remove it said the same mistake twice, with
    other advice)."""
    field = getattr(loader, "label_field", None)
    if spec.model.kind == "causal-lm" and field:  # a classifier spec without model.kind, most likely
        answers = getattr(loader, "response_field", None)
        reads = f"response_field ({answers!r})" if answers else "response_field"
        if getattr(loader, "messages_field", None) is not None:
            reads = f"messages_field ({loader.messages_field!r})"
        if getattr(loader, "text_field", None) is not None:
            reads = f"text_field ({loader.text_field!r})"
        warn(loc + ("label_field",),
             f"is for classifiers only: a causal-lm reads its answers from {reads} and ignores label_field "
             f"({field!r}). Set model.kind: classifier if that is meant, or remove it.")
    answers = getattr(loader, "response_field", None)
    if (spec.model.kind == "classifier" and answers is not None and field
            and "response_field" in loader.model_fields_set):  # written, not the default
        warn(loc + ("response_field",),
             f"is for causal LMs only: a classifier reads its classes from label_field ({field!r}) and ignores "
             f"response_field ({answers!r}). Remove it, or set model.kind: causal-lm if that is meant.")


def _warn_hub_data(spec: Spec, spec_path: Path, warn: _AddIssue) -> None:
    """Data paths that look like hub ids, and hub ids (model and datasets) neither cached
    here nor reachable."""
    from subsetctl.data.checks import hub_lookalike_warnings

    for loc, message in hub_lookalike_warnings(spec, spec_path.parent):
        warn(loc, message)
    # a warning, not an error: a project whose data (and model stages) ran online stays
    # plannable and reportable offline; the loaders fail at once when one is still needed
    for loc, message in unreachable_hub_ids(spec, spec_path.parent):
        warn(loc, message)
    _warn_saved_folder_options(spec, spec_path, warn)


def _warn_saved_folder_options(spec: Spec, spec_path: Path, warn: _AddIssue) -> None:
    """A ``huggingface`` loader on a folder written by ``save_to_disk`` with ``name`` or
    ``data_files``: it is read whole with ``load_from_disk``, which takes neither, and they
    were ignored without a word (a configuration or files that were meant to pick rows)."""
    from subsetctl.data.loaders import is_saved_to_disk, resolve_path
    from subsetctl.spec import HuggingFaceLoader

    for loc, source in _target_and_sources(spec):
        test_loader = getattr(source, "test_loader", None)
        for at, loader in [(loc + ("loader",), source.loader),
                           *([(loc + ("test_loader",), test_loader)] if test_loader is not None else [])]:
            if not isinstance(loader, HuggingFaceLoader) or not (loader.name or loader.data_files):
                continue
            folder = resolve_path(loader.path, spec_path.parent)
            if not is_saved_to_disk(folder):
                continue
            for key in ("name", "data_files"):
                if getattr(loader, key):
                    warn(at + (key,), f"is ignored: {folder} was written by save_to_disk and is read whole "
                                      "(datasets.load_from_disk takes no configuration or data files; loader.split "
                                      "picks a DatasetDict's split). Remove it, or point loader.path at the "
                                      "folder of the dataset meant.")


def _warn_dask_missing(spec: Spec, warn: _AddIssue) -> None:
    """executor.backend: dask without dask installed here: the search would stop only
    after the stages before it have run."""
    from subsetctl.doctor import check_dask, dask_missing

    dask = check_dask(spec)
    if not dask.ok:  # executor.backend: dask without dask installed here
        warn(("executor", "backend"), f"{dask_missing()} here, so the search stage would stop with an "
                                      f"error after the stages before it have run: {dask.advice}")


def _warn_packaged_model_unavailable(spec: Spec, warn: _AddIssue) -> None:
    """model.source a packaged model whose PyPI package is not installed here (the
    quickstart's SmolLM2 after installing subsetctl alone), or whose first conversion has
    no cache it can write (a batch job's read-only HOME, or none): `run` would stop at
    meta_init, after the data stage, and `validate` said the spec was valid. A warning,
    not an error, as for Dask: the spec may be meant for another machine."""
    from subsetctl.doctor import conversion_cache_problem
    from subsetctl.modeling.packaged import conversion_pending, package_missing

    missing = package_missing(spec.model.source)
    if missing is not None:
        warn(("model", "source"), f"{missing} Without it, `run` here would stop at meta_init, after the data "
                                  "stage.")
        return
    try:  # its conversion's cache: a batch job's read-only HOME (or none) stopped `run` at meta_init as well
        target = conversion_pending(spec.model.source)
        problem = conversion_cache_problem(target) if target is not None else None
    except UserError as exc:  # no home folder is known
        warn(("model", "source"), f"{exc} Without it, `run` here would stop at meta_init, after the data stage.")
        return
    if problem is not None:
        warn(("model", "source"), f"{spec.model.source} is converted once, by the first run's meta_init, into "
                                  f"{target}, but {problem[0]}: `run` here would stop there, after the data stage. "
                                  f"{problem[1]}")


def _warn_device_missing(spec: Spec, warn: _AddIssue) -> None:
    """model.device: cuda where this torch sees no CUDA GPU (`doctor` fails on it): `run`
    here would stop at its first model stage. A warning, not an error: the spec may be
    meant for another machine. torch is imported (about 2 s) only for a spec naming cuda,
    so validating any other stays as fast as before."""
    if not spec.model.device.startswith("cuda"):
        return
    from subsetctl.doctor import check_device

    device = check_device(spec)
    if device is not None and not device.ok:
        warn(("model", "device"), f"{spec.model.device}, but this torch sees no CUDA GPU, so `run` here would stop "
                                  f"at its first model stage, after the data stage. {device.advice} (A spec meant "
                                  "for another machine, one with a GPU, can ignore this.)")


def _warn_dtype_on_cpu(spec: Spec, warn: _AddIssue) -> None:
    """model.dtype float16 (or bfloat16 without bfloat16 instructions) where the model
    stages would run on the CPU: a GPU spec copied to a machine without one ran every
    model stage many times slower, unwarned. torch is imported (about 2 s) only for such a
    dtype with ``device: auto``, to tell whether there is a GPU."""
    if spec.model.dtype == "float32" or spec.model.device not in ("auto", "cpu"):
        return  # model.device: cuda without a GPU is _warn_device_missing's
    from subsetctl.modeling.precision import slow_dtype_on_cpu

    if spec.model.device == "auto":
        try:
            import torch
        except ImportError:  # no torch: doctor says so
            return
        if torch.cuda.is_available():
            return
    message = slow_dtype_on_cpu(spec.model.dtype, spec.model.device)
    if message:
        warn(("model", "dtype"), message)


def _warn_reasoning_gym_metric(spec: Spec, warn: _AddIssue) -> None:
    """The reasoning_gym metric for a causal LM's target whose test rows' loader (its
    ``test_loader``, else its ``loader``) writes no reasoning-gym metadata: evaluate would
    stop after every fine-tune."""
    tested = spec.target.test_loader or spec.target.loader
    if (spec.evaluate.metric == "reasoning_gym" and tested.type not in ("reasoning_gym", "plugin")
            and spec.model.kind == "causal-lm"):  # a classifier's is an error already, with its own advice
        whose = f"a {tested.type} target" if tested is spec.target.loader else f"a {tested.type} test_loader"
        warn(("evaluate", "metric"), f"'reasoning_gym' scores rows that carry reasoning-gym metadata (rg_task), "
                                     f"which the reasoning_gym loader writes; {whose} "
                                     "has none unless its rows do, and evaluate would stop after every fine-tune. "
                                     "Use 'exact_match' or 'auto'.")


def usable_cores() -> tuple[int, int]:
    """``(cores this process may run on, cores of the machine)``. A batch job (Slurm's
    ``--cpus-per-task``, ``taskset``) is confined to some of a node's cores: ``os.cpu_count()``
    counts them all, so 64 workers on a 4-core allocation of a 128-core node went unwarned.
    Where the affinity cannot be read (macOS, Windows) both are the machine's count."""
    machine = os.cpu_count() or 1
    try:
        return len(os.sched_getaffinity(0)) or machine, machine
    except (AttributeError, OSError):
        return machine, machine


def _warn_executor_settings(spec: Spec, warn: _AddIssue) -> None:
    """More local workers than twice the cores (the estimates are CPU-bound), an
    executor.address that a backend other than dask does not use, and Dask's own
    ``DASK_SCHEDULER_ADDRESS`` set where the spec names no address (:func:`_warn_dask_address_unread`)."""
    cores, machine = usable_cores()
    local = spec.executor.backend in ("loky", "threading") or (spec.executor.backend == "dask"
                                                               and not spec.executor.address)
    if local and spec.executor.n_jobs > 2 * cores:
        each = "" if spec.executor.backend == "threading" else " (each a process with its own copy of the features)"
        where = (f"a machine with {cores} cores" if cores == machine else
                 f"{cores} of this machine's {machine} cores (those this process may use: a batch job's allocation)")
        warn(("executor", "n_jobs"), f"{spec.executor.n_jobs} workers on {where}: the estimates "
                                     f"are CPU-bound, so workers beyond the cores only add start-up time and "
                                     f"memory{each}. Use at most {cores} on this machine (a spec meant for "
                                     "another machine, one with more cores, can ignore this).")
    if spec.executor.address and spec.executor.backend != "dask":
        warn(("executor", "address"), f"is only used by executor.backend: dask; with "
                                      f"{spec.executor.backend!r} the estimates run on this machine.")
    _warn_dask_address_unread(spec, warn)


def _warn_dask_address_unread(spec: Spec, warn: _AddIssue) -> None:
    """``DASK_SCHEDULER_ADDRESS`` set (Dask's own way to name a scheduler, which a bare
    ``distributed.Client()`` reads) with executor.backend: dask and no executor.address:
    subsetctl reads the address from the spec alone, so the search started a local cluster
    on this machine without a word, the scheduler named there left idle."""
    named = os.environ.get("DASK_SCHEDULER_ADDRESS", "").strip()
    if spec.executor.backend != "dask" or spec.executor.address or not named:
        return
    warn(("executor", "backend"), f"dask without executor.address starts a local cluster of {spec.executor.n_jobs} "
                                  f"process(es) on this machine; DASK_SCHEDULER_ADDRESS ({named!r}) is set but not "
                                  "read (the scheduler comes from the spec alone). To use that scheduler, set "
                                  f"executor.address: {named} (or executor.address={named} on the command line).")


def _warn_replaced_built_ins(spec: Spec, warn: _AddIssue) -> None:
    """Each built-in loader, strategy, estimator, projector or packaged model a plugin
    replaces (it registered the same name): wherever a spec names it, the plugin's code runs.
    A module of the spec's ``plugins:`` is blamed there; an installed package's entry point
    under the key that names the built-in (:func:`_replaced_built_in_by_an_installed_package`).
    Likewise an installed plugin a module of the spec's ``plugins:`` registers again: for
    this spec the module's code runs, not the installed package's (said of neither before)."""
    from subsetctl.plugin_scoping import is_plugin
    from subsetctl.registry import ALL_REGISTRIES, entry_point_origin, installed_entry_points

    for registry in ALL_REGISTRIES.values():
        for name, origin in registry.replaced().items():
            if origin.startswith("entry point"):
                _replaced_built_in_by_an_installed_package(spec, registry, name, origin, warn)
                continue
            warn(("plugins",), f"{origin} replaces the built-in {registry.kind} {name!r}: wherever a spec names "
                               f"{name!r}, that plugin's code runs instead of subsetctl's")
        modules = [entry for entry in registry.entries() if is_plugin(entry)]
        installed = installed_entry_points(registry.group) if modules else {}  # (read only then: ~6 ms a kind)
        for entry in modules:
            ep = installed.get(entry.name)
            if ep is not None and ep.value.partition(":")[0] != getattr(entry.obj, "__module__", None):
                warn(("plugins",), f"{entry.origin} registers the {registry.kind} {entry.name!r}, which the installed "
                                   f"{entry_point_origin(ep)} also registers: for this spec the module's code runs, "
                                   "not the installed package's. Rename one of them to use both")


def _warn_plugins_registering_nothing(spec: Spec, warn: _AddIssue) -> None:
    """Each ``plugins:`` entry whose module, imported, registered nothing
    (:func:`~subsetctl.plugin_loading.registers_nothing`): a class not derived from
    Strategy or SubsetEstimator, a function without its decorator, a module whose decorators
    sit in a file it never imports. It passed validate without a word, and a spec naming what
    it meant to register was then told of an unknown name, with the plugin not suspected."""
    from subsetctl.plugin_loading import registers_nothing

    for i, plugin in enumerate(spec.plugins):
        if not registers_nothing(plugin):
            continue
        module_name = plugin.partition(":")[0]
        file = getattr(sys.modules.get(module_name), "__file__", None)
        warn(("plugins", i), f"{plugin!r} registers nothing: importing {module_name!r}{f' ({file})' if file else ''} "
                             "added no loader, strategy, estimator, projector or packaged model, so the spec can name "
                             "nothing of it. A plugin module registers each with a decorator run when it is imported, "
                             "`@STRATEGIES.register(\"my_strategy\")` (or LOADERS, ESTIMATORS, PROJECTORS, from "
                             "subsetctl.registry), or names under plugins: a Strategy or SubsetEstimator subclass with "
                             "a `name` attribute, which is registered under that name (README's Plugins); or remove "
                             "the entry")


def _replaced_built_in_by_an_installed_package(spec: Spec, registry: Any, name: str, origin: str,
                                               warn: _AddIssue) -> None:
    """The built-in ``name`` that an installed package's entry point (``origin``) replaces, said
    under the first key of the spec that names it (``search.strategies[0].name``), the others
    listed: the package is in this Python environment, not in the spec, whose ``plugins:`` (often
    absent) was blamed before. Nothing is said for a spec that does not name it, whose results it
    does not change (``subsetctl ls`` shows it: its origin is the entry point)."""
    keys = _keys_naming(spec, registry.kind, name)
    if not keys:
        return
    package = registry.package(name)
    uninstall = (f"`pip uninstall {package.split()[0]}`" if package else "uninstalling the package that declares it")
    also = f" (and at {joined_names([format_path(k) for k in keys[1:]])})" if keys[1:] else ""
    warn(keys[0], f"{name!r}{also} runs the installed {origin}, not subsetctl's built-in {registry.kind}: a package "
                  f"installed in this Python environment (not listed under plugins:) replaces it under that name. "
                  f"`subsetctl ls` shows where each {registry.kind} comes from; {uninstall} brings back the "
                  "built-in")


def _keys_naming(spec: Spec, kind: str, name: str) -> list[tuple[Any, ...]]:
    """The keys of ``spec`` that name the ``kind`` of plugin ``name`` (a loader by its type, a
    packaged model by model.source), in the order of the spec."""
    named: list[tuple[tuple[Any, ...], str | None]] = []
    if kind == "loader":
        named += [(("target", "loader", "type"), spec.target.loader.type)]
        if spec.target.test_loader is not None:
            named += [(("target", "test_loader", "type"), spec.target.test_loader.type)]
        named += [(("sources", i, "loader", "type"), s.loader.type) for i, s in enumerate(spec.sources)]
    elif kind == "strategy":
        named += [(("search", "strategies", i, "name"), s.name) for i, s in enumerate(spec.search.strategies)]
    elif kind == "estimator":
        named += [(("estimate", "estimator"), spec.estimate.estimator)]
        named += [(("calibrate", "estimators", i), n) for i, n in enumerate(spec.calibrate.estimators)]
    elif kind == "projector":
        named += [(("gradients", "projector"), spec.gradients.projector)]
    elif kind == "packaged model":
        named += [(("model", "source"), spec.model.source)]
    return [key for key, value in named if value == name]


def _warn_verify_settings(spec: Spec, warn: _AddIssue) -> None:
    """With verify on: calibration lambdas where linear_sgd diverges, a verify.k beyond
    the distinct subsets or too small to calibrate, and a calibrate.against that verify
    does not fine-tune."""
    from subsetctl.spec import MIN_CALIBRATION_K

    verify = spec.verify
    if spec.calibrate.enabled and "linear_sgd" in [spec.estimate.estimator, *spec.calibrate.estimators]:
        for message in unstable_linear_sgd(spec, [lam for lam in spec.calibrate.lambda_grid
                                                   if lam != spec.estimate.lam]):
            warn(("calibrate", "lambda_grid"), lambda_left_out_warning(message))
    distinct = 2 ** len(spec.sources)
    if verify.k > distinct:
        warn(("verify", "k"), f"{verify.k} subsets asked for, but {count_agreeing(len(spec.sources), 'source', 'has', 'have')} only "
                              f"{distinct} distinct subsets; verify will fine-tune {distinct}.")
    if spec.calibrate.enabled and min(verify.k, distinct) < MIN_CALIBRATION_K:
        warn(("verify", "k"), f"{count_agreeing(min(verify.k, distinct), 'real fine-tune', 'per kind is', 'per kind are')} too few to "
                              "calibrate "
                              f"(at least {MIN_CALIBRATION_K} are needed): calibration will be off and the "
                              "estimates stay raw. Use verify.k >= 4 (6-10 is typical) or set "
                              "calibrate.enabled: false.")
    # (not the default against: a `kinds: [surrogate]` project, which calibrates against the one kind it
    # runs, was warned on every command of a key it never wrote)
    if spec.calibrate.against not in verify.kinds and "against" in spec.calibrate.model_fields_set:
        warn(("calibrate", "against"), f"{spec.calibrate.against!r} is not among verify.kinds "
                                       f"({', '.join(verify.kinds)}): calibration will use the "
                                       f"{verify.kinds[0]!r} fine-tunes. Add it to verify.kinds or change "
                                       "calibrate.against.")


def _warn_unused_calibrate_settings(spec: Spec, warn: _AddIssue) -> None:
    """Calibrate settings written in the spec that nothing reads: any of them with verify off
    (nothing to calibrate against: the search uses estimate.lam and estimate.estimator), and
    calibrate.estimators with calibration off. Both ran with the spec's lambda and estimator
    without a word until the report's header said which."""
    written = [key for key in ("lambda_grid", "estimators", "against") if key in spec.calibrate.model_fields_set]
    kept = f"the search uses estimate.lam ({spec.estimate.lam:g}) and estimate.estimator ({spec.estimate.estimator})"
    if not spec.verify.enabled:
        for key in written:
            warn(("calibrate", key), f"is not used: verify is off, so there are no real fine-tunes to calibrate "
                                     f"against and {kept}. Set verify.enabled: true, or remove it.")
    elif not spec.calibrate.enabled and "estimators" in written and spec.calibrate.estimators:
        warn(("calibrate", "estimators"), f"is not used: calibrate.enabled is false, so nothing chooses among them "
                                          f"and {kept}. Set calibrate.enabled: true, or remove it.")


def _warn_top_k_beyond_the_sources(spec: Spec, warn: _AddIssue) -> None:
    """A strategy's ``top_k`` (or the built-in ``random`` baseline's ``k``) above the number
    of sources keeps every source: valid (the same spec may later list more sources), but
    likely not what was meant; the search says so again when it runs."""
    from subsetctl.registry import STRATEGIES

    n = len(spec.sources)
    for i, strategy in enumerate(spec.search.strategies):
        try:  # (an unknown strategy or invalid params are errors, said by validate already)
            params = _parse_strategy_params(STRATEGIES.get(strategy.name), strategy.params, i)
        except UserError:
            continue
        key = "k" if strategy.name == "random" and STRATEGIES.origin("random") == "built-in" else "top_k"
        k = getattr(params, key, None)
        if isinstance(k, int) and k > n:
            warn(("search", "strategies", i, "params", key),
                 f"{key}={k} exceeds the {n} source{'s' if n != 1 else ''}, so {strategy.label or strategy.name} "
                 f"will keep all of them. Lower {key} to at most {n}.")


def _warn_source_named_as_a_baseline(spec: Spec, warn: _AddIssue) -> None:
    """A source named ``all`` or ``target_only``, the baselines' names: the report lists a
    selection's sources by name beside the baselines' rows, so a pick of that source reads
    as the baseline (`target_only, b` for the source target_only and b)."""
    for i, source in enumerate(spec.sources):
        if source.name in ("all", "target_only"):
            warn(("sources", i, "name"),
                 f"the source {source.name!r} has a baseline's name: the report lists the sources a strategy "
                 f"picked by name beside the {source.name!r} baseline's row, so a pick of this source reads as "
                 "that baseline. Rename the source.")


#: names Windows keeps for devices, in any letter case and with any extension (``nul.v2``)
_WINDOWS_DEVICE_NAMES = frozenset({"con", "prn", "aux", "nul", *(f"{port}{i}" for port in ("com", "lpt")
                                                                  for i in range(10))})


def _warn_names_windows_refuses(spec: Spec, warn: _AddIssue) -> None:
    """A target or source name that is a Windows device name (``CON``, ``nul``, ``aux.v2``).
    Valid here: the data stage keeps each source in ``.subsetctl/data/<name>/``, which Linux
    and macOS make without a word, but Windows cannot make or copy a folder of that name, so
    a project copied, synced or shared to Windows breaks there, and nothing said why. For a
    ``source_files`` group (names from its files) said per file, as each name differs.
    A name ending in a dot (``wiki.``) too: Windows drops the dot from a folder's name, so
    the folder is read back under another name (or as another source's: ``wiki``)."""
    for path, source in _target_and_sources(spec):
        who = "the target" if path == ("target",) else "the source"
        if source.name.endswith("."):
            warn((*path, "name"),
                 f"{who} {source.name!r} ends in a dot: it is kept in the folder .subsetctl/data/{source.name}/, and "
                 f"Windows drops a folder name's trailing dot, so a copy of the project there holds "
                 f"{source.name.rstrip('.')!r} instead and does not find it. It works on Linux and macOS; drop the "
                 "dot if the project may be used on Windows.")
        device = source.name.split(".", 1)[0]
        if device.casefold() not in _WINDOWS_DEVICE_NAMES:
            continue
        warn((*path, "name"),
             f"{who} {source.name!r} is kept in the folder .subsetctl/data/{source.name}/, which Windows cannot "
             f"make or copy: {device!r} is a device name there (CON, PRN, AUX, NUL, COM0-9, LPT0-9, in any case, "
             "with or without an extension). It works on Linux and macOS, but the project cannot be copied, synced "
             "or shared to Windows. Rename it if the project may be used there.")


def _warn_few_random_subsets(spec: Spec, warn: _AddIssue) -> None:
    """``random_ensemble`` or ``surrogate`` with ``m`` (the random subsets estimated) below the
    number of sources (as listed and expanded from ``source_files``): each source is then
    scored from few subsets, and its pick varies with ``project.seed``."""
    from subsetctl.registry import STRATEGIES
    from subsetctl.search.ensemble import clamped_subset_size

    n = len(spec.sources)
    for i, strategy in enumerate(spec.search.strategies):
        if strategy.name not in ("random_ensemble", "surrogate") or STRATEGIES.origin(strategy.name) != "built-in":
            continue  # (the figures below were measured with the built-in strategies)
        try:  # (an unknown strategy or invalid params are errors, said by validate already)
            params = _parse_strategy_params(STRATEGIES.get(strategy.name), strategy.params, i)
        except UserError:
            continue
        m = getattr(params, "m", None)
        label = strategy.label or strategy.name
        who = label if label == strategy.name else f"{label} ({strategy.name})"
        default = "" if "m" in params.model_fields_set else " (the default)"
        alpha = getattr(params, "alpha", None)
        if isinstance(m, int) and isinstance(alpha, float) and n >= 2 and not default:  # m set, not the default
            size = clamped_subset_size(n, alpha)
            if m > (total := math.comb(n, size)):
                warn(("search", "strategies", i, "params", "m"),
                     f"m={m} is more than the {total:,} distinct subsets of {size} of the {n} sources "
                     f"(alpha={alpha:g}) that exist: {who} estimates all {total:,} (the search's notice says so), "
                     f"and a larger m adds nothing. Set m to {total:,} or less to say what runs.")
                continue
        if not isinstance(m, int) or m >= n:
            continue
        warn(("search", "strategies", i, "params", "m"),
             f"m={m}{default} is below the number of sources ({n:,}), so {who} scores each source from few random "
             "subsets and its pick depends on project.seed. Measured at 1,000 sources, m=200 ranked the sources "
             "alike between two seeds at a Spearman of only 0.20 (m=1000: 0.47 for random_ensemble, 0.96 for "
             f"surrogate). Set m to at least {n:,}, the number of sources.")


def _target_and_sources(spec: Spec) -> list[tuple[tuple[Any, ...], SourceSpec]]:
    """The target and each source (listed or expanded from a ``source_files`` group), with
    its key in the spec: ``("target",)``, ``("sources", i)``."""
    return [(("target",), spec.target), *((("sources", i), s) for i, s in enumerate(spec.sources))]


def _named(spec: Spec, path: tuple[Any, ...], source: SourceSpec) -> str:
    """How a warning names the target or source at ``path`` (:func:`_target_and_sources`): a
    source of a ``source_files`` group as one of the group's (:func:`blame_source_files`
    merges their warnings into one)."""
    if path == ("target",):
        return "the target"
    return "each source of the group" if path[1] in spec.source_origins else f"source {source.name!r}"


def _warn_split_of_one(spec: Spec, warn: _AddIssue) -> None:
    """A split entry given as the whole number 1 (``train: 1``) is a count, one example,
    where every example (the fraction ``1.0``) is the likely meaning: valid, and the data
    stage would quietly keep one row. Said for the target and each listed source; for a
    ``source_files`` group once (:func:`blame_source_files` merges its sources' warnings)."""
    for path, source in _target_and_sources(spec):
        split, who = source.split, _named(spec, path, source)
        for key in ("train", "validation", "test"):
            value = getattr(split, key)
            if key in split.model_fields_set and isinstance(value, int) and value == 1:
                warn((*path, "split", key),
                     f"{key}: 1 is a count, so {who} gets one {key} example; a fraction is written with a "
                     f"decimal point ({key}: 1.0 is every example). Write {key}: 1.0 if every example was meant.")


#: the modeline yaml-language-server (VS Code's YAML extension) reads a spec's schema from, on
#: any comment line: ``# yaml-language-server: $schema=subsetctl.schema.json`` (what `init` writes)
_SCHEMA_MODELINE = re.compile(r"^#\s+yaml-language-server\s*:.*?\$schema=(\S+)")

#: the largest file that line may name that is read to compare with this version's schema (which is
#: about 100 kB): a larger one is no copy of it
_SCHEMA_BYTES_AT_MOST = 16 * 1024 * 1024


def _note_editor_schema_of_another_version(spec_path: Path, text: str) -> list[SpecIssue]:
    """A note where the spec's modeline points editors at a local copy of subsetctl's schema
    that is not this version's: `init` writes the schema beside the spec, and after an upgrade
    editors go on checking the spec against the old one, flagging keys this version takes
    (or passing ones it refuses) with nothing to say why. A schema that is not subsetctl's,
    a URL or a file that cannot be read is left alone, and so is what is no regular file or
    is larger than :data:`_SCHEMA_BYTES_AT_MOST` (``$schema=/dev/zero``, or a FIFO, a link to
    one, which validate, plan and run read without end or waited on)."""
    from subsetctl.spec import json_schema

    for number, line in enumerate(text.splitlines(), 1):
        found = _SCHEMA_MODELINE.match(line)
        if found is None:
            continue
        named = found.group(1)
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", named):  # a URL (http:, file:): not fetched here
            return []
        path = spec_path.parent / expand_home(named)
        try:
            if not path.is_file() or path.stat().st_size > _SCHEMA_BYTES_AT_MOST:
                return []
            schema = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):  # (RecursionError: arrays nested past Python's depth)
            return []
        if not isinstance(schema, dict) or schema.get("title") != "subsetctl spec" or schema == json_schema():
            return []
        return [SpecIssue(file=str(spec_path), line=number, key="(file)", note=True, message=(
            f"the schema this line points editors at, {named}, is not this subsetctl version's (another version's "
            "`init` or `subsetctl schema` wrote it, or it was edited): editors check the spec against it, and may "
            f"flag keys this version takes or pass ones it refuses. `subsetctl schema > {shell_arg(path)}` writes "
            "this version's. A note, not a problem (validate passes)."))]
    return []


def _note_max_examples_above_the_rows(spec: Spec, spec_path: Path, note: _AddIssue) -> None:
    """A ``max_examples`` above the rows the target's or a source's file holds (a Parquet
    file's rows, of its ``where`` value's; a JSON Lines file's non-blank lines: the most that
    can be kept) cuts nothing: every row is kept. Valid, and said once, as a note (``note``
    adds one, printed "note:"; validate and plan exit 0 on it; there is no strict mode that
    warnings fail), in case a cap was meant to apply; the rows are known cheaply only for
    those files, and a JSON Lines file's only within what validate reads through in all
    (:func:`~subsetctl.data.checks.files_read_through`)."""
    from subsetctl.data.checks import files_read_through, rows_in_file
    from subsetctl.data.loaders import resolve_path

    read_through = files_read_through(spec, spec_path.parent)[0]
    for path, source in _target_and_sources(spec):
        if source.max_examples is None:
            continue
        if (isinstance(source.loader, JsonlLoader) and source.loader.where is None
                and resolve_path(source.loader.path, spec_path.parent) not in read_through):
            continue  # (its lines counted by the data stage alone: the source checks' note says so)
        counted = rows_in_file(source.loader, spec_path.parent)
        if counted is not None and counted[0] < source.max_examples:
            note((*path, "max_examples"),
                 f"max_examples is {source.max_examples}, more than {_named(spec, path, source)} can keep "
                 f"({counted[1]}): every row is kept and it cuts none. A note, not a problem (validate passes), "
                 "in case a cap was meant: lower it to cap the rows, or remove it.")


#: the sources a warning on a file read by several names (the rest are counted)
_READERS_NAMED = 5

#: what :func:`_warn_file_bytes` adds to the data stage's words on a file several sources read: who reads it
_READ_BY = re.compile(r" Read by sources? [^\n]*\.$")


def data_stage_words(message: str) -> str:
    """A warning of validate's as the data stage words it: a file's problem without the sources
    :func:`_warn_file_bytes` names (the data stage, which reads one source at a time, says it of
    the file alone), so that a run prints it once, as it begins, not again as the stage ends."""
    return _READ_BY.sub("", message)


#: rows of each JSON Lines, CSV or Parquet file whose labels validate reads to check a classifier's
#: ``label_map`` against (:func:`_warn_label_map_labels`): a bounded read, about a second per 100k rows
LABEL_MAP_ROWS_READ = 100_000

#: rows of all those files together (:data:`LABEL_MAP_ROWS_READ` each): 200 sources' files of 100,000 rows
#: took 189 s to validate (20 s with it); past these (about 10 s) the sources left are not read, a note says so
LABEL_MAP_ROWS_TOTAL = 1_000_000


def _warn_label_map_labels(spec: Spec, spec_path: Path, warn: _AddIssue, note: _AddIssue) -> None:
    """A classifier's ``label_map`` typos that the data stage warns of, minutes in, said by
    validate in its words (once; a ``source_files`` group's merged): a key that no row's label
    is (:func:`~subsetctl.data.prepare.map_labels`), and a label of a source the target lacks
    that the source's map does not name (:func:`~subsetctl.data.prepare.labels_the_target_lacks`).
    Labels are read as the loaders read them, from the first :data:`LABEL_MAP_ROWS_READ` rows
    of JSON Lines, CSV and Parquet files (their ``where`` value's); where rows are left unread
    the warning says so, as a later row may hold the key, and the target's labels are then
    not taken as all its classes (no "labels the target never uses" from its first rows).
    The files are read in the spec's order, the target's first, up to :data:`LABEL_MAP_ROWS_TOTAL`
    rows in all: the sources left past them are not read, which a note says (``note``), naming
    them, as the data stage checks their maps as it reads them."""
    if spec.model.kind != "classifier":
        return
    entries = _target_and_sources(spec)
    if not any(source.label_map for _, source in entries):
        return
    from subsetctl.data.checks import ReadTotal, head_label_texts
    from subsetctl.data.loaders import resolve_path
    from subsetctl.data.prepare import (
        UNMAPPED_LABELS,
        group_label_map_warnings,
        labels_the_target_lacks,
        unused_keys_warning,
    )

    total = ReadTotal(LABEL_MAP_ROWS_TOTAL)  # (the sources with a label_map read, and those left unread)

    def read(loader: Any, path: tuple[Any, ...], name: str) -> tuple[list[str], int | None] | None:
        """A loader's labels as a prepared split holds them, and the rows read where rows were
        left unread (None where every row was read); None where none are read."""
        if getattr(loader, "type", None) not in ("jsonl", "csv", "parquet") or not getattr(loader, "label_field", None):
            return None
        file = resolve_path(loader.path, spec_path.parent)
        if not file.is_file():
            return None  # (the file checks say so)
        at_most = total.take(path, name, LABEL_MAP_ROWS_READ)
        if not at_most:
            return None
        texts, rows = head_label_texts(loader, file, at_most)
        total.spend(rows)
        return texts, at_most if rows >= at_most else None

    def mapped(texts: list[str], label_map: dict[str, str | None]) -> list[str]:
        """The labels as :func:`~subsetctl.data.prepare.map_labels` leaves them (a label mapped to
        null: its row dropped), from the texts alone: validate imports no datasets."""
        return [label for label in (label_map.get(text, text) for text in texts) if label is not None]

    def unread(more: int | None) -> str:
        return (f" Validate read the first {more:,} rows of its file: a later row may have it (the "
                "data stage reads them all).") if more else ""

    target_labels: set[str] | None = set()
    found_here: list[tuple[tuple[Any, ...], str]] = []  # (key, warning)
    for path, source in entries:
        if path != ("target",) and not source.label_map:
            continue
        found = read(source.loader, path, source.name)
        if found is None:
            if path == ("target",):
                target_labels = None  # (not read here: the target's classes are not known)
            continue
        texts, more = found
        label_map = source.label_map or {}
        said = unused_keys_warning(source, texts, texts) if label_map else None
        found_here += [((*path, "label_map"), said + unread(more))] if said is not None else []
        if path == ("target",):
            test = read(spec.target.test_loader, path, source.name) if spec.target.test_loader is not None else None
            if more or (spec.target.test_loader is not None and (test is None or test[1])):
                target_labels = None
            else:
                target_labels = set(mapped(texts, label_map)) | (
                    set(mapped(test[0], label_map)) if test is not None else set())
        elif target_labels:  # (a label the map leaves out, beside others it renames: "a data label matching no key")
            found_here += [((*path, "label_map"), warning + unread(more)) for warning in labels_the_target_lacks(
                source.name, mapped(texts, label_map), target_labels, label_map) if UNMAPPED_LABELS in warning]
    # a source_files group's map, the same for each of its sources (a `by` group's every task): one warning, as
    # the data stage merges them (group_label_map_warnings), at the group's label_map
    where = {warning: path for path, warning in found_here}
    groups = {f"source_files[{g}]: ": g for g in {g for g, _ in spec.source_origins.values()}}
    # (a group the row limit stopped in says how many of its sources it speaks of: the data stage's speaks of all)
    left_unread = [name for _, name in total.not_read]
    for warning in group_label_map_warnings(spec, [warning for _, warning in found_here], left_unread):
        g = next((g for head, g in groups.items() if warning.startswith(head)), None)
        warn(where.get(warning, ("source_files", g, "label_map")), warning)
    if total.not_read:
        note((*total.not_read[0][0], "label_map"),
             f"validate checked the label_map of {len(total.read)} source{'s' if len(total.read) != 1 else ''} against the labels of their files' first "
             f"rows, {LABEL_MAP_ROWS_TOTAL:,} rows in all, and stopped there: the label_map of {total.left_out()} "
             "is checked by the data stage, which warns of a key no label is as it reads their rows. A note, not a "
             "problem (validate passes).")


def _note_dataset_dict_split_by_default(spec: Spec, spec_path: Path, note: _AddIssue) -> None:
    """A ``huggingface`` loader of the target or a listed source that writes no ``split`` on a
    ``DatasetDict`` folder written by ``save_to_disk`` holding several splits reads its
    ``train`` split (the default), which nothing said: a target's own validation and test
    splits are then not read (its ``split`` settings cut train's rows: into train and validation
    beside a ``test_loader``, whose split is read), and a source's other
    splits are left out. Said once, as a note naming how many more sources read so (500 such
    sources would be 500 lines); a ``source_files`` group's sources, whose ``split`` cannot be
    told written or not, are left out."""
    from subsetctl.data.loaders import resolve_path, saved_dict_splits
    from subsetctl.plan_reasons import listed_briefly
    from subsetctl.spec import HuggingFaceLoader

    found = []
    for path, source in _target_and_sources(spec):
        loader = source.loader
        if (not isinstance(loader, HuggingFaceLoader) or "split" in loader.model_fields_set
                or (path[0] == "sources" and path[1] in spec.source_origins)):
            continue
        folder = resolve_path(loader.path, spec_path.parent)
        try:
            splits = saved_dict_splits(folder)
        except (OSError, ValueError, KeyError, TypeError):  # (not such a folder; a broken one is an error of its own)
            continue
        if len(splits) > 1 and loader.split in splits:
            found.append((path, source, folder, splits))
    target = [entry for entry in found if entry[0] == ("target",)]
    sources = [entry for entry in found if entry[0] != ("target",)]
    for path, _, folder, splits in target:
        test_loader = spec.target.test_loader
        if test_loader is None:
            note((*path, "loader"),
                 f"loader.split is not set, so the target reads the split {spec.target.loader.split!r} of the DatasetDict "
                 f"saved in {folder} (its splits: {', '.join(splits)}), and its split settings cut that split's rows "
                 "into train, validation and test: the DatasetDict's other splits are not read. A note, not a problem "
                 "(validate passes): write `split: train` to say so; target.test_loader with the same path and "
                 "`split: test` reads the test rows from its test split.")
            continue
        # with a test_loader its split settings cut train and validation only: "train, validation and
        # test" and the advice to add a test_loader were wrong; a split that test_loader reads is read
        read_by_test = (test_loader.split if isinstance(test_loader, HuggingFaceLoader)
                        and resolve_path(test_loader.path, spec_path.parent) == folder else None)
        unread = [split for split in splits if split not in (spec.target.loader.split, read_by_test)]
        note((*path, "loader"),
             f"loader.split is not set, so the target reads the split {spec.target.loader.split!r} of the DatasetDict "
             f"saved in {folder} (its splits: {', '.join(splits)}), and its split settings cut that split's rows "
             "into train and validation (its test rows are target.test_loader's)"
             + (f": the DatasetDict's {listed_briefly(unread, 3)} split{'s are' if len(unread) > 1 else ' is'} "
                "not read" if unread else "")
             + ". A note, not a problem (validate passes): write `split: train` to say so.")
    if sources:
        path, source, folder, splits = sources[0]
        more = "" if len(sources) == 1 else (f"; {count_agreeing(len(sources) - 1, 'more source', 'reads', 'read')} a DatasetDict's "
                                            f"{source.loader.split!r} split so too ("
                                            f"{listed_briefly([s.name for _, s, _, _ in sources[1:]], 3)})")
        note((*path, "loader"),
             f"loader.split is not set, so source {source.name!r} reads the split {source.loader.split!r} of the "
             f"DatasetDict saved in {folder} (its splits: {', '.join(splits)}){more}. A note, not a problem "
             "(validate passes): write `split: train` to say so, or name the split meant.")


def _warn_label_map_of_class_ids(spec: Spec, spec_path: Path, warn: _AddIssue) -> None:
    """``label_map`` keys that are class ids (``0``, ``1``) of the answer's ``ClassLabel``
    column in a ``huggingface`` loader's ``save_to_disk`` folder: its rows are read as the
    class names (``neg``, ``pos``), so those keys rename nothing. The data stage warned so
    after reading every row, with the names but not why; said before any run, naming the
    names to write. A folder whose features cannot be read is left to the other checks."""
    from subsetctl.data.loaders import is_saved_to_disk, resolve_path
    from subsetctl.spec import HuggingFaceLoader

    for path, source in _target_and_sources(spec):
        loader, label_map = source.loader, source.label_map or {}
        if not label_map or not isinstance(loader, HuggingFaceLoader):
            continue
        folder = resolve_path(loader.path, spec_path.parent)
        if not is_saved_to_disk(folder):
            continue
        dataset = folder / loader.split if (folder / "dataset_dict.json").is_file() else folder
        column = loader.label_field if spec.model.kind == "classifier" else loader.response_field
        from datasets import ClassLabel, DatasetInfo  # (only for such a folder)

        from subsetctl.data.saving import read_saved_json

        try:
            feature = (DatasetInfo.from_dict(read_saved_json(dataset / "dataset_info.json")).features or {}).get(column)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # ([1]: the other checks say so)
            continue
        if not isinstance(feature, ClassLabel):
            continue
        ids = [key for key in label_map if key not in feature.names and key.isdecimal() and int(key) < feature.num_classes]
        if ids:
            names = {feature.int2str(int(key)): label_map[key] for key in ids}
            warn((*path, "label_map"),
                 f"{', '.join(repr(key) for key in ids)} {'is a class id' if len(ids) == 1 else 'are class ids'} of "
                 f"the ClassLabel column {column!r} of the dataset saved in {dataset}, whose rows are read as the class "
                 f"names ({', '.join(repr(n) for n in feature.names[:10])}{', ...' if feature.num_classes > 10 else ''}):"
                 f" such keys rename nothing. Write the names: label_map: {json.dumps(names)}.")


def _warn_file_bytes(spec: Spec, spec_path: Path, warn: _AddIssue) -> None:
    """A JSON Lines or CSV file of the target or a source with a few lines that are not UTF-8:
    the data stage leaves them out with a warning, said here in its words before any run (a
    file whose such lines make it refused is an error of the file checks). A CSV file's cells
    holding a byte-order mark past its start or a NUL byte are said so too, and its lines
    ending some with CRLF, some with LF alone. Each problem is said once for a file, at the
    key of its first reader: of a source reading it alone in its words, else (several sources
    or a ``where``'s tasks reading it) of the file, naming every source that reads it (the
    sources' own words differed, two warnings for one problem, and a ``where``'s named none); the
    data stage says it of the file then too (:attr:`~subsetctl.data.loaders.common.LoadContext.
    file_shared`), so that a run prints it once, as it begins (:func:`data_stage_words`); the
    target's, of it alone, as "The target 't'" (:func:`~subsetctl.data.loaders.files.of_the_target`).
    Only the files validate reads through are read (:func:`~subsetctl.data.checks.files_read_through`, up
    to a total whose note the source checks give): the data stage says these of the others."""
    from subsetctl.data.checks import (
        files_read_through,
        line_ends_notice,
        lines_not_utf8_notice,
        stray_cell_notices,
    )
    from subsetctl.data.loaders import of_the_target, resolve_path, text_file_readers

    entries = _target_and_sources(spec)
    read_through = files_read_through(spec, spec_path.parent)[0]
    for at in text_file_readers([source.loader for _, source in entries], spec_path.parent).values():
        who = [entries[i] for i in at]
        if resolve_path(who[0][1].loader.path, spec_path.parent) not in read_through:
            continue  # (one past the total, or larger than validate reads through)
        (path, source), shared = who[0], len(who) > 1 or getattr(who[0][1].loader, "where", None) is not None
        name = None if shared else source.name
        found = [lines_not_utf8_notice(source.loader, spec_path.parent, name),
                 line_ends_notice(source.loader, spec_path.parent, name),
                 *stray_cell_notices(source.loader, spec_path.parent, name)]
        if path == ("target",) and name is not None:  # (the data stage's words of the target: "The target 't'")
            found = [of_the_target(notice, name) if notice is not None else None for notice in found]
        named = [repr(s.name) for _, s in who[:_READERS_NAMED]] + (
            [f"{len(who) - _READERS_NAMED:,} more"] if len(who) > _READERS_NAMED else [])
        for notice in found:
            if notice is not None:
                # (the data stage's words, and who reads the file: data_stage_words takes them apart)
                warn((*path, "loader", "path"), f"{notice} Read by {'source' if len(who) == 1 else 'sources'} "
                                                f"{joined_names(named)}." if shared else notice)


#: above it, an AdamW learning rate is surely a slip (1e3 for 1e-3): each step moves every
#: LoRA weight by about the learning rate, whatever the gradient's size
_ADAMW_LR_SLIP = 1.0


def _warn_adamw_lr_slips(spec: Spec, warn: _AddIssue) -> None:
    """An AdamW learning rate above :data:`_ADAMW_LR_SLIP` (meta_init.lr, finetune.lr,
    verify.lr_ce): valid, but AdamW's step is about the learning rate per weight, so such a
    run learns nothing useful, and on a small model it can even finish with no divergence
    to say so (``meta_init.lr: 1e15`` did). The SGD rates (the estimate's simulated fine-tune,
    verify.lr_surrogate) scale with the gradient and are left alone."""
    rates = [(("meta_init", "lr"), spec.meta_init.lr), (("finetune", "lr"), spec.finetune.lr)]
    if spec.verify.enabled:
        rates.append((("verify", "lr_ce"), spec.verify.lr_ce))
    for key, lr in rates:
        if lr > _ADAMW_LR_SLIP:
            warn(key, f"is {lr:g}: AdamW moves every LoRA weight by about the learning rate each step, so a rate "
                      "above 1 wrecks the model rather than training it (LoRA rates are about 1e-4 to 1e-2). Check "
                      "the exponent's sign (1e-3, not 1e3).")


def _warn_shared_generated_entries(spec: Spec, warn: _AddIssue) -> None:
    """Two ``reasoning_gym`` loaders of one task and config whose seed ranges overlap: most
    tasks make entry i from seed + i, so seeds 1 and 2 (size 100) share 99 entries, which
    the data stage's check for sources with exactly the same rows does not see. Said once per
    later-listed loader, naming the first earlier one it overlaps; sources with
    ``corrupt.shuffle_responses`` (negative controls, their prompts taken on purpose) are left out."""
    from subsetctl.spec.models import ReasoningGymLoader

    by_task: dict[str, list[tuple[tuple[Any, ...], str, int, int]]] = {}
    for path, owner in _target_and_sources(spec):
        loader = owner.loader
        if not isinstance(loader, ReasoningGymLoader) or (path != ("target",) and owner.corrupt.shuffle_responses):
            continue
        who = _named(spec, path, owner)
        seed = next(s for s in (loader.seed, owner.seed, spec.project.seed) if s is not None)
        task = f"{loader.task} {json.dumps(loader.config, sort_keys=True)}"
        by_task.setdefault(task, []).append((path, who, seed, seed + loader.size))
    for task, ranges in by_task.items():
        free_seed = max(end for *_, end in ranges)
        for n, (path, who, start, end) in enumerate(ranges):
            earlier = next(((w, s, e) for _, w, s, e in ranges[:n] if s < end and start < e), None)
            if earlier is None:
                continue
            other, other_start, other_end = earlier
            shared = min(end, other_end) - max(start, other_start)
            warn((*path, "loader", "seed"),
                 f"{who} and {other} generate the reasoning-gym task {task.split(' ')[0]} from seeds "
                 f"{start}-{end - 1} and {other_start}-{other_end - 1}; most tasks make entry i from seed + i, so "
                 f"they likely share {shared:,} entr{'y' if shared == 1 else 'ies'}. Space the seeds of one task at "
                 f"least its size apart (e.g. loader.seed: {free_seed}, past every range of this task).")
