"""Gather every stage's results into one JSON-able report (report.json)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath
from typing import Any

from subsetctl.project import Project
from subsetctl.report.cells import SOURCES_IN_REPORT_MD, final_vs_baselines
from subsetctl.report.paired import paired_comparison

#: what report.json and report.md hold, as a number raised whenever a subsetctl writes more
#: into them (2: ``final_vs_baselines`` and the line under the test metrics; 3: its ``stds``,
#: for the note on a gap within the seed-to-seed spread; 4: report.md's per-source scores of
#: many sources ranked as the terminal ranks them; 5: the test metrics' per-seed figures); one of
#: the report stage's inputs, so a report an earlier subsetctl wrote (with none, or a lower one)
#: is written again by the next run (seconds; nothing else re-runs) instead of staying
#: without what the README documents; 7: each stage's ``written_at``, ``resolved_spec`` and
#: ``versions``, and this number itself as ``report_format``; 8: ``settings``, the settings the
#: shown results were made with; 9: each stage's ``reused_threads``, the thread counts of the
#: results it took from the re-run cache or merged from gradient shards; 10: ``input_files``,
#: the data and model files' sha256, and report.md's section on reproducing the selection; 11:
#: ``settings`` holds a setting every listed source shares once, as ``sources[*].<key>``
#: (:func:`compact_source_settings`), not once a source; 12: ``overrides`` keyed as typed (a
#: strategy or source by its name), and ``overrides_recorded``; 13: report.json shorter (each
#: source's setting that holds its name once, as ``sources[{name}].<key>``; the data stage's
#: ``counts`` and the one-file sources' ``input_files`` (``data_files``) as columns; no copies of
#: ``sources`` and the picks in the stage summaries; one line a small record): about half the
#: bytes at thousands of sources; 14: report.md's per-source
#: scores of more than 200 sources, the highest and lowest, all in report_sources.csv beside it;
#: 15: ``final_vs_baselines``' ``paired``, the pick against each baseline row by row on the test split;
#: 16: a classifier's ``class_balance``, the rows per class of its test split and of each selection's fine-tunes;
#: 17: ``train_rows`` and ``target_train_rows``, the rows each per-source score rests on (a column beside the scores);
#: 18: ``run_settings``, the settings no result depends on of the run that wrote it (:func:`run_settings`);
#: 19: ``test_metrics``' ``diverged_seeds`` and ``final_vs_baselines``' ``diverged`` (:func:`with_diverged_seeds`),
#: and the notes under the report's tables saying what its figures are (released with it)
REPORT_FORMAT = 19

#: what each :data:`REPORT_FORMAT` added, as `plan` names it for a report an earlier one wrote
FORMAT_ADDITIONS = {2: "final_vs_baselines", 3: "final_vs_baselines' stds",
                    4: "report.md's per-source scores ranked", 5: "test_metrics' score_per_seed and loss_per_seed",
                    6: "the plugins the results were made with",
                    7: "each stage's written_at (report.md's time table too), resolved_spec, versions, threads, "
                       "fingerprint and output_digest, stage_order, and report_format",
                    8: "settings (what the results were made with)",
                    9: "each stage's reused_threads (the thread counts of results taken from the cache or shards)",
                    10: "input_files (the data and model files' sha256) and report.md's section on reproducing the "
                        "selection",
                    11: "settings' sources[*] keys (a setting every listed source shares, once)",
                    12: "overrides as typed (a strategy or source by its name) and overrides_recorded",
                    13: "settings' sources[{name}] keys, input_files' data_files, the data stage's counts as "
                        "columns (about half the bytes at thousands of sources)",
                    14: "report_sources.csv (every source's scores, of more than 200)",
                    15: "final_vs_baselines' paired (the pick against each baseline row by row on the test rows)",
                    16: "a classifier's class_balance (the rows per class each selection was fine-tuned on)",
                    17: "train_rows (each source's train rows, beside its scores)",
                    18: "run_settings (the executor, report, plugins and checkpoint spacing `init --from-report` "
                        "writes back)",
                    19: "test_metrics' diverged_seeds and final_vs_baselines' diverged (the fine-tunes that diverged, "
                        "named under the test metrics), and the notes saying what the figures are (est. loss, each "
                        "strategy's score, the test score and loss)"}


#: the additions a project gets only with more sources than these (report_sources.csv: of more
#: than :data:`~subsetctl.report.cells.SOURCES_IN_REPORT_MD`), by their :data:`REPORT_FORMAT`
FORMAT_ADDITIONS_ABOVE = {14: SOURCES_IN_REPORT_MD}

#: the additions only a project of one ``model.kind`` gets, by their :data:`REPORT_FORMAT`
FORMAT_ADDITIONS_OF_KIND = {16: "classifier"}

#: the additions made from a stage's result an earlier subsetctl did not keep (data.json's ``classes``:
#: the report gets class_balance once the data stage runs again), by their :data:`REPORT_FORMAT`
FORMAT_ADDITIONS_NEED = {16: "classes"}


def data_counts_classes(project: Project) -> bool:
    """Whether the data stage's results hold a classifier's rows per class (data.json's
    ``classes``, which :func:`class_balance` reads): data an earlier subsetctl prepared does not."""
    data = _read(project.results_dir("data") / "data.json")
    return isinstance(data, dict) and isinstance(data.get("classes"), dict)


def added_since(recorded_format: Any, n_sources: int | None = None, kind: str | None = None,
                lacking: frozenset[str] = frozenset()) -> str:
    """What this subsetctl writes into report.json that one of ``recorded_format`` (None or
    not a number: before formats were recorded, 1) did not: the additions after it, newest
    first, e.g. "test_metrics' score_per_seed and loss_per_seed, final_vs_baselines' stds".
    With ``n_sources``, the project's, not those it never gets at that many
    (:data:`FORMAT_ADDITIONS_ABOVE`: `plan` named report_sources.csv to a 3-source project);
    with ``kind``, its ``model.kind``, not those only another kind gets
    (:data:`FORMAT_ADDITIONS_OF_KIND`: `plan` named a classifier's class_balance to a causal LM's);
    not those made from a result in ``lacking`` (:data:`FORMAT_ADDITIONS_NEED`: ``classes``, data
    an earlier subsetctl prepared, which a run of the report alone leaves without class_balance);
    "" when the project gets none of them."""
    since = recorded_format if isinstance(recorded_format, int) and not isinstance(recorded_format, bool) else 1
    return ", ".join(FORMAT_ADDITIONS[n] for n in sorted(FORMAT_ADDITIONS, reverse=True)
                     if n > since and (n_sources is None or n_sources > FORMAT_ADDITIONS_ABOVE.get(n, -1))
                     and (kind is None or FORMAT_ADDITIONS_OF_KIND.get(n, kind) == kind)
                     and FORMAT_ADDITIONS_NEED.get(n) not in lacking)


def stale_only_for_its_format(project: Project, current_inputs: dict[str, Any] | None) -> bool:
    """Whether the report stage's results are out of date only because an earlier subsetctl
    wrote them (its recorded :data:`REPORT_FORMAT` lower, or none): its other inputs, as its
    manifest records them, are ``current_inputs`` (what `plan` computes now). `report` then
    shows the report as this subsetctl writes it, built from the stages' results, and says
    that `run` writes it again, instead of "the spec or its input files changed"."""
    recorded = _recorded_report_inputs(project)
    if recorded is None or not isinstance(current_inputs, dict):
        return False
    (before, recorded_format), (now, _) = (_without_extra(inputs, "report_format") for inputs in (recorded, current_inputs))
    later = isinstance(recorded_format, int) and recorded_format > REPORT_FORMAT  # (going back: not supported)
    return recorded_format != REPORT_FORMAT and not later and before == now


def stale_only_for_its_overrides_line(project: Project, current_inputs: dict[str, Any] | None) -> bool:
    """Whether the report stage's results are out of date only because the command-line
    overrides they name are not those of the results now (the spec file holds an
    override's value since: :func:`results_overrides`); its other inputs, as its manifest
    records them, are ``current_inputs`` (what `plan` computes now). `report` then shows the
    report built from the stages' results, and says that `run` writes it again, instead of
    "the spec or its input files changed"."""
    recorded = _recorded_report_inputs(project)
    if recorded is None or not isinstance(current_inputs, dict):
        return False
    (before, named), (now, named_now) = (_without_extra(inputs, "overrides") for inputs in (recorded, current_inputs))
    named, named_now = named or {}, named_now or {}  # override -> stages; only some of those named left out:
    dropped_only = len(named_now) < len(named) and all(named.get(o) == stages for o, stages in named_now.items())
    return dropped_only and before == now


def _without_extra(inputs: dict[str, Any], key: str) -> tuple[dict[str, Any], Any]:
    """The report stage's ``inputs`` without the extra input ``key``, and that input's value."""
    extra = dict(inputs.get("extra") or {})
    return {**inputs, "extra": extra}, extra.pop(key, None)


def _recorded_report_inputs(project: Project) -> dict[str, Any] | None:
    """The inputs the report stage's manifest records (None without a readable one)."""
    manifest = project.read_manifest("report")
    recorded = manifest.get("inputs") if manifest and not manifest.get("corrupt") else None
    return recorded if isinstance(recorded, dict) else None


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _base_model_record(project: Project) -> Any:
    """The finetune stage's base-model record (:data:`~subsetctl.stages.finetune.BASE_MODEL_FILE`)
    in its results folder, as JSON; None where there is none, or where it cannot be read (not
    JSON, not UTF-8): `plan` and `report` stopped with an internal error (JSONDecodeError)
    reading the notes it gives, which are left out instead. (The record is left out of the
    stage's output digest only: a damaged one fails the stage's checksums, so `plan` says the
    stage is corrupt and `run` does it again.)"""
    from subsetctl.stages.finetune import BASE_MODEL_FILE

    try:
        return _read(project.results_dir("finetune") / BASE_MODEL_FILE)
    except (OSError, ValueError):
        return None


#: report.json's ``calibration`` figures where there are none to show: selections.json records
#: the search's choice alone (estimator, lambda, map), so a report rebuilt with calibrate
#: outdated (or without its results) lacked these keys, which README documents as always there
CALIBRATION_FIGURES_NONE: dict[str, Any] = {"spearman": None, "loo_median_rel_err": None, "per_lambda": [],
                                            "notes": []}


def whole_counts(value: Any) -> Any:
    """``value`` with each ``per_lambda`` row's ``n``, a count of usable subsets, an integer
    where it is a whole float: calibrations written before subsetctl wrote it as an integer
    say ``4.0``, and the report copies them (from calibration.json and selections.json)
    without re-running calibrate or search."""
    if isinstance(value, dict):
        return {key: ([{**row, "n": int(row["n"])} if isinstance(row, dict) and isinstance(row.get("n"), float)
                       and row["n"].is_integer() else row for row in item]
                      if key == "per_lambda" and isinstance(item, list) else whole_counts(item))
                for key, item in value.items()}
    if isinstance(value, list):
        return [whole_counts(item) for item in value]
    return value


def with_per_seed(table: dict[str, Any], finetuned: dict[str, Any] | None, per_run: Any) -> dict[str, Any]:
    """The test metrics ``table`` with each selection's per-seed figures beside its mean and
    std: ``score_per_seed`` and ``loss_per_seed`` (with ``macro_f1_mean``, a classifier's or a
    causal LM's answering in class words, also ``macro_f1_per_seed``), one a fine-tune in the
    order of its ``adapters`` (seeds project.seed, project.seed + 1, ...). A script pairing selections by seed, or taking another std than numpy's ddof-0
    one, needs them; they were only in the evaluate stage's per_run.json, keyed by run id.
    A selection whose runs the evaluate stage's results do not all hold is left as it is."""
    labels = finetuned.get("labels") if isinstance(finetuned, dict) else None
    if not isinstance(labels, dict) or not isinstance(per_run, dict):
        return table
    out = {}
    for label, row in table.items():
        runs = labels.get(label)
        results = [per_run.get(run) for run in runs] if isinstance(runs, list) else []
        if not results or not all(isinstance(r, dict) for r in results) or len(results) != row.get("seeds"):
            out[label] = row
            continue
        row = {**row, "score_per_seed": [r.get("score") for r in results],
               "loss_per_seed": [r.get("loss_ce") for r in results]}
        if "macro_f1_mean" in row:
            row["macro_f1_per_seed"] = [(r.get("metrics") or {}).get("macro_f1") for r in results]
        out[label] = row
    return out


def with_diverged_seeds(table: dict[str, Any], finetuned: dict[str, Any] | None, runs: Any) -> dict[str, Any]:
    """The test metrics ``table`` with ``diverged_seeds`` on each selection one of whose
    fine-tunes diverged (the finetune stage's runs.json, ``runs``: run key -> its record): the
    seeds of those fine-tunes, whose figures are of the adapter kept before the divergence (the
    untrained start where none was), not of a finished fine-tune. The stage warned once, at the
    top of the report; the table, report.json's figures and the verdict under them read as
    those of working fine-tunes."""
    labels = finetuned.get("labels") if isinstance(finetuned, dict) else None
    if not isinstance(labels, dict) or not isinstance(runs, dict):
        return table
    out = {}
    for label, row in table.items():
        records = [runs.get(key) for key in labels.get(label) or []]
        seeds = sorted(r["seed"] for r in records if isinstance(r, dict) and r.get("diverged")
                       and isinstance(r.get("seed"), int))
        out[label] = {**row, "diverged_seeds": seeds} if seeds else row
    return out


#: what a stage's manifest records of the run that made its results, copied into report.json's
#: entry of that stage: when they were written, the digest of the resolved spec they were made
#: with (``.subsetctl/specs/<digest>.json``), the library versions (subsetctl's among them), the
#: thread counts it computed with (none recorded by an earlier subsetctl), the
#: fingerprint of all its inputs (settings, input files' contents, upstream results: the same spec
#: on edited data files differs here only) and the digest of its results
PROVENANCE_KEYS = ("written_at", "resolved_spec", "versions", "threads", "fingerprint", "output_digest")


def made_by(manifest: dict[str, Any]) -> dict[str, Any]:
    """The :data:`PROVENANCE_KEYS` a stage's results ``manifest`` records (results an earlier
    subsetctl wrote may lack some): two report.json files compared stage by stage say whether
    each stage's results came from the same settings, the same libraries and the same run,
    which the figures alone do not."""
    return {key: manifest[key] for key in PROVENANCE_KEYS if manifest.get(key) is not None}


def _finished(manifest: dict[str, Any] | None) -> bool:
    """Whether a stage's results manifest stands for finished results."""
    return bool(manifest) and not manifest.get("corrupt")


def in_project_terms(value: Any, root: Path) -> Any:
    """``value`` relative to the project folder ``root`` (``model``) when it is an absolute
    path inside it, else unchanged (a relative path, a hub id, a packaged model's name, a
    folder outside the project): report.json names a model folder inside the project so,
    however the spec named it, and two runs of one spec in two folders write the same file."""
    if not isinstance(value, str) or not PurePath(value).is_absolute():
        return value
    try:
        return Path(value).resolve().relative_to(root.resolve()).as_posix()
    except (OSError, ValueError):  # outside the project (or unreadable): that is where it is
        return value


def model_folder_now(recorded: Any, named: Any, root: Path) -> Any:
    """``recorded``, the absolute folder a run read the model from, as it is now, in project
    terms (:func:`in_project_terms`): where the spec named the model by a relative path
    (``named``: ``model.source`` as the run had it, ``model`` or ``../models/base``), that
    path taken against the project folder ``root`` as it is now, when it leads to a folder
    there. A project copied (``cp -r A B``) or moved with its model folder re-runs nothing,
    and its results still record the old folder: B's report named A's model folder, which B
    never reads and which may since be deleted. Else (an absolute path, a packaged model, a
    hub id, a relative path that leads nowhere now) ``recorded`` as it is."""
    from subsetctl.modeling.resolve import model_location

    if isinstance(recorded, str) and isinstance(named, str) and named:
        now = model_location(named, root)
        if now != named:  # a relative path leading to a folder from the project as it is now
            recorded = now
    return in_project_terms(recorded, root)


def _recorded_model_source(manifest: dict[str, Any]) -> Any:
    """``model.source`` as a stage's results (``manifest``) record it in their spec slice; None
    where they record none."""
    recorded = manifest.get("inputs", {}).get("slice", {}).get("model")
    return recorded.get("source") if isinstance(recorded, dict) else None


def _recorded_model_revision(manifest: dict[str, Any]) -> Any:
    """``model.revision`` as a stage's results (``manifest``) record it in their spec slice: the
    commit it resolved to, or as the spec wrote it where an earlier subsetctl recorded them; None
    where they record none."""
    recorded = manifest.get("inputs", {}).get("slice", {}).get("model")
    return recorded.get("revision") if isinstance(recorded, dict) else None


def model_source_now(project: Project, manifest: dict[str, Any], spec: Any) -> str | None:
    """``model.source`` as ``spec`` (the spec now) names it, where a model stage's results
    (``manifest``) recorded another path for a local model folder whose files are the same
    (:func:`subsetctl.pipeline.same_model_folder_as_recorded`, which keeps them up to date):
    a project moved, its spec then set to the folder's relative path (``model``), re-runs
    nothing, and its results name the old folder, which may be gone. None otherwise (no
    spec, a ``model.source`` naming the same folder in project terms, ``models/base/`` for
    ``models/base``, not a local folder, other files)."""
    from subsetctl.modeling.resolve import model_fingerprint_inputs, model_location
    from subsetctl.pipeline import same_model_folder_as_recorded

    source = getattr(getattr(spec, "model", None), "source", None)
    named = _recorded_model_source(manifest)
    if not isinstance(source, str) or not isinstance(named, str) or len(
            {in_project_terms(model_location(name, project.root), project.root) for name in (source, named)}) == 1:
        return None  # (nothing to hash: the same folder, or no spec)
    inputs = {"slice": {"model": {"source": source}}, "extra": model_fingerprint_inputs(source, project.root)}
    return source if same_model_folder_as_recorded(inputs, manifest) is not None else None


def hub_revision_changed_note(project: Project, spec: Any) -> str | None:
    """What to say where ``spec``'s ``model.source`` is a hub id whose model stages' results were
    made from another commit than the one the local Hugging Face cache serves now (a newer
    revision downloaded since, ``refs/main`` moved): the stages stay up to date, as a hub id
    is known by its name, but a stage that runs again (a new source, ``finetune.seeds``
    raised) loads the new commit beside results of the old, and nothing said so. The
    results' commit is the first model stage's record of it (the model's ``revision`` in its
    summary, the finetune stage's base-model record), and that stage is the one to force
    (meta_init's results from before revisions were recorded may have none). None where they match, or where
    either is not known (a local folder, results from before revisions were recorded), or where ``model.revision``
    is set and the results recorded it as its commit: results of another are stale then, and plan says so. (Results
    an earlier subsetctl made recorded it as written, ``v1``, and stay up to date while the words are the same:
    they are told as an unpinned hub id's.)"""
    from subsetctl.hub import model_cache_folder
    from subsetctl.modeling.resolve import adapter_base_model_revision

    source = getattr(getattr(spec, "model", None), "source", None)
    pinned = getattr(getattr(spec, "model", None), "revision", None)
    now = adapter_base_model_revision(source, project.root, pinned) if isinstance(source, str) else None
    if now is None:  # not a hub id, or one the cache does not hold
        return None
    made_from, as_written = None, False
    for stage, manifest in _shown_results(project, frozenset()):
        summary = manifest.get("summary")
        model = summary.get("model") if isinstance(summary, dict) else None
        record = (model if isinstance(model, dict) else
                  _base_model_record(project) if stage.name == "finetune" else None)
        if isinstance(record, dict) and _recorded_model_source(manifest) == source \
                and isinstance(record.get("revision"), str):
            made_from = (stage.name, record["revision"])
            as_written = pinned is not None and _recorded_model_revision(manifest) == pinned != now
            break
    if pinned is not None and not as_written:  # counted as its commit: results of another are stale, plan says why
        return None
    if made_from is None or now == made_from[1]:
        finetuned = _base_model_record(project) if project.read_results_manifest("finetune") else None
        other = _adapters_of_other_commits(finetuned, now)
        if not other:
            return None
        verb = "was" if len(other) == 1 else "were"
        return (f"{len(other)} of the finetune stage's adapters (reused from the cache, or trained while the cache "
                f"served another commit) {verb} trained from {source!r} at commit "
                f"{', '.join(sorted(set(other.values())))}, not {now}, "
                "which the local Hugging Face cache serves now (report.json's `adapter_base_model_revisions` names "
                "them): `subsetctl run --force finetune` trains them from it.")
    stage_name, old = made_from
    folder = model_cache_folder(source) / "snapshots" / old
    keep = (f"to keep the old, set model.revision: {old} (or model.source to its snapshot folder, {folder}; the model "
            "stages then run again once, from those same files)" if folder.is_dir()
            else "the cache no longer holds the old commit")
    return (f"The {stage_name} stage's results (and those after it) were made from {source!r} at commit {old}, but "
            f"the local Hugging Face cache now serves commit {now}: the stages stay up to date ("
            + (f"they recorded model.revision {pinned} as written, as an earlier subsetctl did" if as_written else
               "a hub id is known by its name")
            + "), but one that runs again loads the new commit beside results of the old. To redo them all "
            f"from it, `subsetctl run --force {stage_name}`; {keep}.")


def finetune_commits_noted(project: Project) -> dict[str, Any] | None:
    """The commits the report's note on adapters trained from another commit of the hub model
    names (``adapter_base_model_revisions``), from the finetune stage's base-model record
    (:data:`~subsetctl.stages.finetune.BASE_MODEL_FILE`): ``{revision, adapters}`` (run key ->
    commit), None where no adapter was. The record is left out of that stage's output digest
    (the evaluation does not read it; its folder changes with a move), so a finetune re-run
    restoring the same adapters from the cache after a newer commit was downloaded re-ran
    nothing after it: the report stage counts this among its inputs instead (only where there
    is a note: a report without one is not rewritten)."""
    record = _base_model_record(project) if project.read_results_manifest("finetune") else None
    revision = record.get("revision") if isinstance(record, dict) else None
    other = _adapters_of_other_commits(record, revision) if isinstance(revision, str) else {}
    return {"revision": revision, "adapters": dict(sorted(other.items()))} if other else None


def _adapters_of_other_commits(record: Any, revision: str) -> dict[str, str]:
    """Run key -> commit, for the fine-tunes whose adapters the finetune stage's base-model
    record (:data:`~subsetctl.stages.finetune.BASE_MODEL_FILE`) says were trained from
    another commit of the hub model than ``revision`` (reused from the cache after a newer
    revision was downloaded); empty where none, or not recorded."""
    runs = record.get("run_revisions") if isinstance(record, dict) else None
    if not isinstance(runs, dict):
        return {}
    return {run: commit for run, commit in runs.items() if isinstance(commit, str) and commit != revision}


def models_named_anew(project: Project, spec: Any) -> dict[str, str]:
    """Stage -> the model folder ``spec`` names now, in project terms (``model``), for the
    stages whose results recorded another path for the same model folder
    (:func:`model_source_now`): the report names the folder as the spec does now, so a
    change of that name (a moved project's spec set to ``model``) writes it again, though no
    stage re-runs; another spelling of it (``model/``) does not."""
    from subsetctl.modeling.resolve import model_location

    return {stage.name: in_project_terms(model_location(now, project.root), project.root)
            for stage, manifest in _shown_results(project, frozenset())
            if (now := model_source_now(project, manifest, spec)) is not None}


def models_moved_outside(project: Project) -> dict[str, str]:
    """Stage -> the model folder outside the project that the spec's relative ``model.source``
    (``../models/base``) leads to now, for the model stages whose results recorded reading
    it elsewhere (meta_init's summary, the finetune stage's base-model record): a project
    moved or copied with that folder re-runs nothing, and the report written before named the
    old folder (:func:`model_folder_now` names it anew only when the report is written
    again), so a change here writes it again. A folder inside the project is named relative
    to it, right as it is; an absolute ``model.source`` still leads to the old folder."""
    base = _base_model_record(project) if project.read_results_manifest("finetune") else None
    read: dict[str, tuple[Any, Any]] = {}  # stage -> (the folder it read, model.source as it named it)
    for stage, manifest in _shown_results(project, frozenset()):
        named = _recorded_model_source(manifest)
        summary = manifest.get("summary")
        model = summary.get("model") if isinstance(summary, dict) else None
        if isinstance(model, dict) and "path" in model:
            read[stage.name] = (model["path"], named)
        elif stage.name == "finetune" and isinstance(base, dict):
            read[stage.name] = (base.get("folder"), base.get("name"))
    moved = {}
    for stage_name, (folder, named) in read.items():
        now = model_folder_now(folder, named, project.root)
        if (isinstance(folder, str) and isinstance(now, str) and PurePath(now).is_absolute()
                and os.path.realpath(now) != os.path.realpath(folder)):  # (not the same folder by another path)
            moved[stage_name] = now
    return moved


def _adapter_base_model(root: Path, adapters: dict[str, list[str]]) -> str | None:
    """The base model the fine-tuned adapters were trained on, as peft recorded it (their
    adapter_config.json's ``base_model_name_or_path``: ``model.source`` as the spec names
    it, see :func:`~subsetctl.modeling.resolve.adapter_base_model_name`; adapters saved by
    earlier versions name a local folder's or a packaged model's absolute path), from the
    first adapter that names one."""
    for folders in adapters.values():
        for folder in folders:
            try:
                config = json.loads((root / folder / "adapter_config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
            if isinstance(base, str) and base:
                return base
    return None


def _summary(project: Project, manifest: dict[str, Any], spec: Any = None) -> Any:
    """A stage's recorded ``summary``, with the loaded model's ``source`` and ``path`` (the
    folder a model stage read, absolute) where they are now, in project terms
    (:func:`model_folder_now`, against ``model.source`` as the stage's inputs record it, or
    as ``spec`` names it now where that is the same model folder: :func:`model_source_now`)."""
    from subsetctl.modeling.resolve import model_location

    summary = manifest.get("summary")
    model = summary.get("model") if isinstance(summary, dict) else None
    if not isinstance(model, dict):
        return summary
    named = _recorded_model_source(manifest)
    now = model_source_now(project, manifest, spec)
    model = {**model, **{key: model_folder_now(model[key] if now is None else model_location(now, project.root),
                                               named if now is None else now, project.root)
                         for key in ("source", "path") if key in model}}
    return {**summary, "model": model}


def switched_off_moved_past(project: Project, spec: Any) -> list[str]:
    """Switched-off stages whose results, from a run when they were on, were made with
    settings the spec has changed since (finetune switched off, then its steps changed):
    `run` no longer updates them, so they are as outdated as those of a changed upstream."""
    from subsetctl.stages import all_stages

    moved = []
    for stage in all_stages():
        manifest = project.read_results_manifest(stage.name)  # set-aside ones too: the report shows them
        if (not stage.enabled(spec) and manifest and not manifest.get("corrupt")
                and stage.settings_moved_past(spec, manifest)):
            moved.append(stage.name)
    return moved


def outdated_stages(project: Project, spec: Any = None) -> list[str]:
    """Finished stages whose results no longer follow from their upstream stages' current
    outputs: an upstream stage re-ran with different results since (e.g. `run --until
    search` after a change to the strategies leaves finetune and evaluate from the old
    search), or depends on such a stage. Read from the manifests (each records the output
    digests of its upstream stages when it ran: of the part it reads, where it reads one); with ``spec``, also switched-off stages
    whose settings changed since (:func:`switched_off_moved_past`) and what depends on them."""
    from subsetctl.pipeline import digests_standing_for
    from subsetctl.stages import all_stages

    reads_parts = {stage.name: stage.reads_parts for stage in all_stages()}  # data's train side, for meta_init
    # results a run with other inputs set aside and has not replaced (it failed, or is running) count
    # as the stage's: what follows from them is current as far as they are (`plan` says whether they are)
    manifests = {stage: project.read_results_manifest(stage) for stage in reads_parts}
    outdated: list[str] = switched_off_moved_past(project, spec) if spec is not None else []
    for stage, manifest in manifests.items():
        if not manifest or manifest.get("corrupt") or stage in outdated:
            continue
        for upstream, digest in manifest.get("inputs", {}).get("upstream", {}).items():
            current = manifests.get(upstream)
            if (upstream in outdated or not current
                    or digest not in digests_standing_for(current, reads_parts[stage].get(upstream))):
                outdated.append(stage)
                break
    return outdated


def _overrides_read_by(manifest: dict[str, Any], stage: Any = None) -> list[str]:
    """The command-line overrides of the run that made a stage's results, as far as they
    set a spec key the stage reads (every stage a command runs records all of its
    overrides, also those of keys it never reads), and the stage read them as set: a
    stage that counts a key at its default in some settings (the search's verify.steps
    with the fast estimator, which replays no fine-tune) recorded the default, not the
    override's value, and its results are not made with that override; nor with one of
    a key the ``stage`` says those results did not take (:meth:`Stage.settings_not_taken`:
    calibrate's estimate.lam when the grid chose lambda)."""
    from subsetctl.plan_reasons import flatten
    from subsetctl.spec import (
        RESULT_NEUTRAL,
        override_keys,
        override_value,
        overrides_under,
        same_branch,
        split_override,
    )

    overrides = manifest.get("overrides")
    recorded = manifest.get("inputs", {}).get("slice", {})
    if not overrides or not isinstance(overrides, list) or not isinstance(recorded, dict):
        return []  # (none: the recorded slice is not flattened, 10,000 sources' settings for each stage)
    neutral = {f"{section}.{key}" for section, keys in RESULT_NEUTRAL.items() for key in keys}
    neutral |= set(stage.settings_not_taken(manifest)) if stage is not None else set()
    settings = flatten(recorded)

    def read_as_set(key: str, item: str) -> bool:  # not: the stage recorded the default where it set another value
        default = _schema_default(key)
        return (key not in settings or default is None or settings[key] != default[0]
                or _same_setting(override_value(split_override(item)[1] or ""), default[0]))

    # each setting the stage recorded, not the sections holding them: the search records
    # `estimate` without `lam` (it takes lambda from calibrate), and `estimate.lam=0.5` was said
    # to have made its results because it lies under `estimate`
    paths = _setting_paths(recorded)
    sources = [path for path in paths if same_branch("sources", path)]
    return [item for key, item in override_keys([str(o) for o in overrides])
            if key not in neutral and read_as_set(key, item)  # not e.g. checkpoint_every
            and (overrides_under([item], paths)
                 or (key.startswith("source_files") and bool(sources)))]  # a group expands into sources


def _setting_paths(recorded: dict[str, Any]) -> list[str]:
    """The dotted path of every setting in a stage's recorded spec slice (``estimate.max_iter``,
    ``search.strategies[0].params.m``), an empty mapping or list counting as one (a
    strategy's ``params: {}``, which an override of it set)."""
    out: list[str] = []

    def walk(value: Any, path: str) -> None:
        items = (list(value.items()) if isinstance(value, dict) else
                 [(f"[{i}]", v) for i, v in enumerate(value)] if isinstance(value, list) else None)
        if not items:
            out.append(path)
            return
        for key, child in items:
            walk(child, f"{path}{key}" if str(key).startswith("[") else f"{path}.{key}" if path else str(key))

    walk(recorded, "")
    return [path for path in out if path]


def _schema_default(key: str) -> tuple[Any] | None:
    """The default of the spec setting at the dotted ``key`` (``verify.steps``), as a
    1-tuple; None for a key with none (a source's, a section without defaults)."""
    from pydantic import BaseModel

    from subsetctl.plan_reasons import flatten
    from subsetctl.spec import Spec

    section, _, rest = key.partition(".")
    field = Spec.model_fields.get(section)
    model = field.annotation if field is not None else None
    if not rest or not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    try:
        defaults = flatten(model().model_dump(mode="json"))
    except ValueError:  # a section with required settings
        return None
    return (defaults[rest],) if rest in defaults else None


def _same_setting(value: Any, default: Any) -> bool:
    """Whether an override's value (read as YAML: ``1e-3`` is text there) is the setting
    ``default``."""
    if value == default:
        return True
    try:
        return not isinstance(default, bool) and float(value) == float(default)
    except (TypeError, ValueError):
        return False


def _held_by_the_spec(stage: Any, spec: Any, manifest: dict[str, Any], override: str) -> bool:
    """Whether ``spec``'s file now sets what ``override`` set for ``stage``'s results (the
    stage's settings under the override's key, as its manifest records them, are the
    spec's now) and this command does not override that key: the results are then what
    the spec alone gives, and no longer "made with command-line overrides"."""
    from subsetctl.plan_reasons import flatten, quoted_key
    from subsetctl.spec import override_keys, same_branch, split_override

    ((key, _),) = override_keys([override]) or ((None, None),)
    if key is None or any(same_branch(key, k) for k, _ in override_keys(spec.command_line_overrides)):
        return False
    recorded = manifest.get("inputs", {}).get("slice")
    if not isinstance(recorded, dict):
        return False
    # both quoted alike: unquoted, a label `v1.2`'s key lay under the override `label_map.v1=...`'s
    quoted = quoted_key(split_override(override)[0])
    if same_branch("source_files", quoted):  # a group's setting: recorded in the sources it expands into
        quoted = "sources"

    def under_key(settings: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in flatten(settings, quoted=True).items() if same_branch(k, quoted)}

    held = under_key(recorded)
    # (none recorded under the key: nothing says the file holds it, where {} == {} said it always did)
    return bool(held) and held == under_key(stage.spec_slice(spec))


def results_plugins(project: Project, skip: frozenset[str] | set[str] = frozenset()) -> dict[str, dict[str, Any]]:
    """plugin -> what made the shown results with it, from the stages' manifests (not those
    in ``skip``): ``{"strategy best_single": {"stages": ["search"], "package": "myplug 0.1.0",
    "sha256": <its file's, 12 digits>}}``, ``"package"`` only for an installed plugin, and
    ``"packaged model"`` for a model shipped by a plugin package. Each stage records the
    plugins it ran in its inputs (editing one makes it stale); the report names them, so
    results made with third-party code say which code and release."""
    out: dict[str, dict[str, Any]] = {}
    for stage, manifest in _shown_results(project, skip):
        extra = manifest.get("inputs", {}).get("extra")
        if not isinstance(extra, dict):
            continue
        used = dict(extra.get("plugin code") or {}) | _plugin_loaders_code(manifest["inputs"].get("slice"), extra)
        if isinstance(extra.get("model_package"), str):
            used["packaged model"] = {"package": extra["model_package"]}
        for name, code in used.items():
            entry = out.setdefault(name, {"stages": []})
            entry["stages"].append(stage.name)
            if isinstance(code, dict) and isinstance(code.get("package"), str):
                entry["package"] = code["package"]
            if isinstance(code, dict) and isinstance(code.get("sha256"), str):
                entry["sha256"] = code["sha256"][:12]
    return out


def results_input_files(project: Project, skip: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """What the shown results were made from, as the data and meta_init stages recorded it
    among their inputs: ``data``, source -> its input files' sizes and sha256 (or what
    else a loader is known by: a generating package's version), and ``model``, the local
    model folder's files (``model_files``) or the packaged model's package (``model_package``;
    a built-in one's as meta_init recorded it, with the files it ships as ``model_files``,
    :func:`~subsetctl.modeling.packaged.shipped_model`); a hub id is
    known by ``model.source`` and ``adapter_base_model_revision``. Empty for stages in
    ``skip``. A reviewer given the folder checks their copies against these."""
    out: dict[str, Any] = {}
    for stage, manifest in _shown_results(project, skip):
        extra = manifest.get("inputs", {}).get("extra")
        if not isinstance(extra, dict):
            continue
        if stage.name == "data":
            loaders = _recorded_loaders(manifest["inputs"].get("slice"))
            out["data"] = {name: _rows_named(files, loaders.get(name, {}))
                           for name, files in extra.items() if name != "plugin code"}
        elif stage.name == "meta_init":
            model = {key: extra[key] for key in ("model_files", "model_package") if key in extra}
            summary = manifest.get("summary")
            loaded = summary.get("model") if isinstance(summary, dict) else None
            if not model and isinstance(loaded, dict) and isinstance(loaded.get("package"), str):
                # a built-in packaged model: known by name in the inputs; the stage recorded its package
                model = {"model_package": loaded["package"],
                         **({"model_files": loaded["package_files"]} if isinstance(loaded.get("package_files"), dict)
                            else {})}
            if model:
                out["model"] = model
    return out


#: in report.json's ``input_files``, the table of the sources that read one file each
#: (:func:`compact_input_files`), beside ``data``
DATA_FILES = "data_files"


def compact_input_files(files: dict[str, Any]) -> dict[str, Any]:
    """:func:`results_input_files`' ``files`` with the sources that read one file each (a
    record ``{"file": {"sha256": ..., "size": ...}}``) as one table of columns,
    ``data_files``: ``{"source": [...], "sha256": [...], "size": [...]}``, by name; ``data``
    keeps the others (a ``where`` source's ``rows``, a glob's ``files``, a package's version).
    A source's record was a line of 115 bytes, 570 KB at 5,000 sources.
    :func:`expand_input_files` undoes it."""
    data = files.get("data")
    if not isinstance(data, dict):
        return files
    single = {name: record["file"] for name, record in data.items() if _one_file(record)}
    if len(single) < 2:
        return files
    names = sorted(single)
    return {**files, "data": {name: record for name, record in data.items() if name not in single},
            DATA_FILES: {"source": names, "sha256": [single[name]["sha256"] for name in names],
                         "size": [single[name]["size"] for name in names]}}


def _one_file(record: Any) -> bool:
    """Whether a source's input files ``record`` is one file's sha256 and size alone."""
    return (isinstance(record, dict) and list(record) == ["file"] and isinstance(record["file"], dict)
            and sorted(record["file"]) == ["sha256", "size"])


def expand_input_files(files: dict[str, Any]) -> dict[str, Any]:
    """``files`` (report.json's ``input_files``) with its ``data_files`` table
    (:func:`compact_input_files`) written back into ``data``, a record a source, as a
    report.json before format 13 holds them; unchanged without one."""
    table = files.get(DATA_FILES)
    if not isinstance(table, dict):
        return files
    data = dict(files.get("data") or {})
    for name, sha256, size in zip(table.get("source") or [], table.get("sha256") or [], table.get("size") or []):
        data[name] = {"file": {"sha256": sha256, "size": size}}
    return {**{key: value for key, value in files.items() if key != DATA_FILES}, "data": dict(sorted(data.items()))}


def _recorded_loaders(recorded: Any) -> dict[str, dict[str, Any]]:
    """Source name -> ``{"loader": ..., "test_loader": ...}`` (those set) as a data stage's
    recorded spec slice ``recorded`` gives them; empty when it is not a slice."""
    if not isinstance(recorded, dict):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for source in [recorded.get("target"), *(recorded.get("sources") or [])]:
        if isinstance(source, dict):
            out[str(source.get("name"))] = {key: source[key] for key in ("loader", "test_loader")
                                            if isinstance(source.get(key), dict)}
    return out


def _rows_named(record: Any, loaders: dict[str, Any]) -> Any:
    """A source's data inputs ``record`` with each ``rows`` fingerprint (a file loader's
    ``where``: the sha256 of that task's rows, not of the file) given the file and the
    ``where`` it is of (``path``, ``where``) from its recorded ``loaders``: without them
    report.md listed it as a file ``<source>/rows`` whose sha256 no file has."""
    if not isinstance(record, dict):
        return record
    out = dict(record)
    for key, loader in (("", loaders.get("loader")), ("test_loader", loaders.get("test_loader"))):
        inputs = out.get(key) if key else out
        if not isinstance(inputs, dict) or not isinstance(loader, dict):
            continue
        options = loader.get("options") if loader.get("type") == "plugin" else loader  # a plugin named parquet
        inner = inputs.get("builtin") if loader.get("type") == "plugin" else inputs
        if not (isinstance(options, dict) and isinstance(inner, dict) and isinstance(inner.get("rows"), dict)):
            continue
        named = {**inner, "rows": {**inner["rows"], "path": options.get("path"), "where": options.get("where")}}
        if loader.get("type") == "plugin":
            named = {**inputs, "builtin": named}
        out = {**out, key: named} if key else {**out, **named}
    return out


def _plugin_loaders_code(recorded: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """``{"loader tsv": <its code's fingerprint>}`` for each ``type: plugin`` loader (a
    target's ``test_loader`` too) in a data stage's recorded spec slice ``recorded``: that
    stage keeps such a loader's code under its source's name in ``extra`` (beside the files
    its options name), not under ``plugin code``. Empty for any other stage."""
    out: dict[str, Any] = {}
    for name, loaders in _recorded_loaders(recorded).items():
        inputs = extra.get(name)
        inputs = inputs if isinstance(inputs, dict) else {}
        for loader, where in ((loaders.get("loader"), inputs), (loaders.get("test_loader"), inputs.get("test_loader"))):
            if (isinstance(loader, dict) and loader.get("type") == "plugin" and isinstance(where, dict)
                    and isinstance(where.get("code"), dict)):
                out[f"loader {loader.get('name')}"] = where["code"]
    return out


def results_settings(project: Project, skip: frozenset[str] | set[str] = frozenset(), spec: Any = None) -> dict[str, Any]:
    """Dotted setting -> value, as the stages whose results are shown (not in ``skip``)
    recorded them (each its spec slice: only what it reads, so nothing that cannot change a
    result), overrides included: report.json's ``settings``, which tell two variants of a
    study apart (`report --compare`). A setting two stages read is taken from the first in
    pipeline order (both ran with one value unless one's results are outdated); one a stage
    recorded at its default without reading it (:meth:`~subsetctl.pipeline.Stage.settings_not_read`:
    calibrate's estimator settings without verify) from a stage that read it, where one did. A model
    folder inside the project is named relative to it (:func:`in_project_terms`; as ``spec``,
    the spec now, names it where that is the same folder: :func:`model_source_now`), and a
    setting every listed source shares is written once (:func:`compact_source_settings`). A
    mapping's key that a dotted key would split (a loader's ``options`` or ``config`` key, a
    label holding dots) is written in quotes, as an override names it: ``options."a.b"``."""
    from subsetctl.spec import RESULT_NEUTRAL
    from subsetctl.spec.fingerprints import KIND_NEUTRAL
    from subsetctl.spec.overrides import name_in_key

    out: dict[str, Any] = {}
    unread: dict[str, Any] = {}  # settings a stage recorded at their defaults, not having read them

    def walk(value: Any, path: str, skipped: tuple[str, ...]) -> None:  # (a list of plain values stays one)
        if isinstance(value, dict) and value:
            for key, child in value.items():  # (a slice's own keys are key paths: project.seed, model)
                part = (name_in_key(str(key)) or str(key)) if path else str(key)  # (options."a.b": one key)
                walk(child, f"{path}.{part}" if path else part, skipped)
        elif isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
            for i, child in enumerate(value):
                walk(child, f"{path}[{i}]", skipped)
        else:
            # (skipped is empty for most stages: a data stage of 10,000 sources walks on at once)
            unread_here = bool(skipped) and any(path == key or path.startswith((f"{key}.", f"{key}["))
                                                for key in skipped)
            (unread if unread_here else out).setdefault(path, value)

    for stage, manifest in _shown_results(project, skip):
        recorded = manifest.get("inputs", {}).get("slice")
        if isinstance(recorded, dict):
            walk(recorded, "", stage.settings_not_read(recorded))
    for key, value in unread.items():  # (read by no stage shown: as recorded, at its default)
        out.setdefault(key, value)
    # recorded at their defaults whatever the spec says (a checkpoint's spacing, a causal LM's
    # num_labels): not what made the results
    kind = KIND_NEUTRAL.get(str(out.get("model.kind")), {})
    neutral = {f"{section}.{key}" for table in (RESULT_NEUTRAL, kind) for section, keys in table.items()
               for key in keys}
    if "model.source" in out:  # a model folder inside the project by its place there (two folders: the same)
        shown = next((m for _, m in _shown_results(project, skip)  # the stage it was taken from
                      if "source" in ((m.get("inputs", {}).get("slice") or {}).get("model") or {})), {})
        out["model.source"] = in_project_terms(model_source_now(project, shown, spec) or out["model.source"],
                                               project.root)
    return compact_source_settings({key: value for key, value in sorted(out.items()) if key not in neutral})


#: the key of :func:`run_settings` saying whether the spec set a Dask cluster's ``executor.address`` (left out)
ADDRESS_SET = "executor.address_set"


def run_settings(spec: Any) -> dict[str, Any]:
    """Dotted setting -> value of the spec ``spec`` (the run writing the report) that no
    result depends on, so ``settings`` never holds them: the ``executor`` and ``report``
    sections, the ``plugins`` list and the :data:`~subsetctl.spec.RESULT_NEUTRAL` ones (a
    checkpoint's spacing, gradients.memory_budget_mb): report.json's ``run_settings``, which
    `init --from-report` writes back (it wrote them at their defaults). The Dask cluster's
    ``executor.address`` is not among them, only whether one was set (``executor.address_set``):
    a report is shared, and a private cluster's address (``tcp://10.0.3.7:8786``) is no reader's
    business; `init --from-report` never wrote it back."""
    from subsetctl.spec import RESULT_NEUTRAL

    # (those sections alone: the whole spec's dump took 0.16 s a report at 10,000 sources)
    data = spec.model_dump(mode="json", include={"executor", "report", "plugins", *RESULT_NEUTRAL})
    out: dict[str, Any] = {f"{section}.{key}": value for section in ("executor", "report")
                           for key, value in (data.get(section) or {}).items()}
    out[ADDRESS_SET] = bool(out.pop("executor.address", None))
    out["plugins"] = data.get("plugins") or []
    for section, keys in RESULT_NEUTRAL.items():
        out.update({f"{section}.{key}": data[section][key] for key in keys if key in (data.get(section) or {})})
    return out


#: in report.json's ``settings``, the key before a setting that every listed source shares
#: (``sources[*].loader.type``), where a source of its own value has ``sources[3].loader.type``
ALL_SOURCES = "sources[*]"

#: a setting of one listed source, as :func:`results_settings` walks the sources (``sources[2].x``)
_INDEXED_SOURCE_SETTING = re.compile(r"^sources\[(\d+)\]\.(.+)$")


def compact_source_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with each setting that every listed source has written once, as
    ``sources[*].<key>``, at its most common value (when two or more sources have it);
    only a source whose value differs keeps its ``sources[i].<key>``, and each source keeps
    its ``sources[i].name``. Every source's settings written out (its resolved loader,
    split, seed, ...) were about 490 bytes a source: 2.5 MB of report.json at 5,000 sources,
    all alike but the name and the file. :func:`expand_source_settings` undoes it."""
    parsed: dict[str, tuple[str, Any]] = {}  # a source's key -> (its setting, its value as compared)
    first: dict[tuple[str, Any], Any] = {}  # (setting, value as compared) -> the value, as first met
    counts: dict[str, dict[Any, int]] = {}  # setting -> value as compared -> how many sources have it
    for key, value in settings.items():
        if (match := _INDEXED_SOURCE_SETTING.match(key)) is None:
            continue
        setting, compared = match.group(2), _compared(value)
        parsed[key] = (setting, compared)
        first.setdefault((setting, compared), value)
        counts.setdefault(setting, {})[compared] = counts.get(setting, {}).get(compared, 0) + 1
    sources = sum(counts.get("name", {}).values())
    shared: dict[str, Any] = {}  # a setting every source has -> the value most have, as compared
    for setting, values in counts.items():
        if setting == "name" or sum(values.values()) != sources:  # some sources lack it (another loader's): theirs
            continue
        compared, count = max(values.items(), key=lambda item: item[1])
        if count >= 2:
            shared[setting] = compared
    out = {key: value for key, value in settings.items()
           if key not in parsed or shared.get(parsed[key][0], _NONE) != parsed[key][1]}
    out |= {f"{ALL_SOURCES}.{setting}": first[setting, compared] for setting, compared in shared.items()}
    every = {setting for setting, values in counts.items()  # (expanded, a template gives each source the setting)
             if setting != "name" and setting not in shared and sum(values.values()) == sources}
    return _by_name_templates(out, every) if counts else settings


#: in report.json's ``settings``, the key before a setting each listed source has as a text
#: holding its name (``sources[{name}].loader.path``: ``"pool/{name}.jsonl"``), where a source
#: whose text is not that with its name has its own ``sources[3].loader.path``
BY_NAME = "sources[{name}]"

#: what stands for a source's name in a :data:`BY_NAME` setting's value
NAME_FIELD = "{name}"


def _by_name_templates(settings: dict[str, Any], every: set[str]) -> dict[str, Any]:
    """``settings`` (with ``sources[i].name`` for each listed source) with each setting of
    ``every`` (those every source has, of values not all alike) that two or more sources
    have as a text around their names alike (a group's
    ``loader.path``, ``pool/s00042.jsonl``) written once as ``sources[{name}].<key>``,
    ``"pool/{name}.jsonl"``, at the form most sources share; a source of another text keeps
    its own key. At thousands of sources from one ``source_files`` group, each file's path
    was 50 bytes a source. :func:`expand_source_settings` undoes it."""
    names = {m.group(1): value for key, value in settings.items()
             if (m := _INDEXED_SOURCE_SETTING.match(key)) and m.group(2) == "name" and isinstance(value, str)}
    forms: dict[str, dict[tuple[str, str], list[str]]] = {}  # setting -> (before, after) name -> its keys
    for key, value in settings.items():
        match = _INDEXED_SOURCE_SETTING.match(key)
        name = names.get(match.group(1)) if match is not None and match.group(2) in every else None
        if name and isinstance(value, str) and name in value:
            before, _, after = value.partition(name)
            if NAME_FIELD not in before and NAME_FIELD not in after:  # (expanded, it would be a name too)
                forms.setdefault(match.group(2), {}).setdefault((before, after), []).append(key)
    out = dict(settings)
    for setting, by_form in forms.items():
        (before, after), keys = max(by_form.items(), key=lambda item: len(item[1]))
        if len(keys) >= 2:
            for key in keys:
                del out[key]
            out[f"{BY_NAME}.{setting}"] = f"{before}{NAME_FIELD}{after}"
    return dict(sorted(out.items()))


_NONE = object()


def _compared(value: Any) -> Any:
    """``value`` as two settings' values are compared: a number, text or None with its type
    (1, 1.0 and True are three values), a list or dict as its JSON text."""
    if value is None or isinstance(value, str | int | float | bool):
        return (type(value).__name__, value)
    return ("json", json.dumps(value, sort_keys=True))


def expand_source_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with each ``sources[*].<key>`` (:func:`compact_source_settings`) written
    out as every listed source's ``sources[i].<key>`` that has none of its own: each source's
    settings, as report.json written before format 11 held them. Settings without such keys
    are returned as they are."""
    shared = {key[len(ALL_SOURCES) + 1:]: value for key, value in settings.items()
              if key.startswith(f"{ALL_SOURCES}.")}
    by_name = {key[len(BY_NAME) + 1:]: value for key, value in settings.items()
               if key.startswith(f"{BY_NAME}.") and isinstance(value, str)}
    if not shared and not by_name:
        return settings
    indices = sorted({int(match.group(1)) for key in settings if (match := _INDEXED_SOURCE_SETTING.match(key))})
    out = {key: value for key, value in settings.items()
           if not key.startswith((f"{ALL_SOURCES}.", f"{BY_NAME}."))}
    for i in indices:
        for key, value in shared.items():
            out.setdefault(f"sources[{i}].{key}", value)
        name = settings.get(f"sources[{i}].name")
        for key, value in by_name.items() if isinstance(name, str) else ():
            out.setdefault(f"sources[{i}].{key}", value.replace(NAME_FIELD, name, 1))
    return dict(sorted(out.items()))


def results_overrides(project: Project, skip: frozenset[str] | set[str] = frozenset(),
                      spec: Any = None) -> dict[str, list[str]]:
    """override -> the stages (not in ``skip``) whose finished results were made with it
    (:func:`_overrides_read_by`), in pipeline order: the report's "made with command-line
    overrides" line, and an input of the report stage, so a run that replaces or puts back
    those results also rewrites the line. With ``spec``, an override whose value the spec
    file now holds is left out (:func:`_held_by_the_spec`): after `run finetune.steps=5` and
    then ``steps: 5`` in the file, nothing re-runs, and the line said the results were not
    the spec's alone."""
    out: dict[str, list[str]] = {}
    for stage, manifest in _shown_results(project, skip):
        for override in _overrides_read_by(manifest, stage):
            if spec is None or not _held_by_the_spec(stage, spec, manifest, override):
                out.setdefault(override, []).append(stage.name)
    return out


def _as_typed(overrides: dict[str, list[str]], project: Project,
              skip: frozenset[str] | set[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """:func:`results_overrides`' ``overrides`` keyed as the user typed them, as the manifests of
    the results shown record them (``sources.wiki.max_examples=5``, not the recorded
    ``sources[2].max_examples=5``: :func:`~subsetctl.plan_reasons.typed_overrides`), and each of
    those keys that differs -> the override as recorded. (One typed form two recorded
    overrides share, a name whose index moved between runs, is kept for the first.)"""
    from subsetctl.plan_reasons import typed_overrides

    typed: dict[str, str] = {}
    for _, manifest in _shown_results(project, skip):
        for recorded, item in typed_overrides(manifest).items():
            typed.setdefault(recorded, item)
    shown: dict[str, list[str]] = {}
    recorded_as: dict[str, str] = {}
    for item, stages in overrides.items():
        key = typed.get(item, item)
        key = item if key in shown or key in overrides and key != item else key
        shown[key] = stages
        if key != item:
            recorded_as[key] = item
    return shown, recorded_as


def _shown_results(project: Project, skip: frozenset[str] | set[str]) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(stage, its results manifest) for each stage before the report whose finished
    results the report shows (not in ``skip``), in pipeline order: what
    :func:`results_overrides` and :func:`results_plugins` read."""
    from subsetctl.stages import all_stages

    for stage in all_stages():
        if stage.name == "report" or stage.name in skip:
            continue
        manifest = project.read_results_manifest(stage.name)
        if manifest and not manifest.get("corrupt"):
            yield stage, manifest


def other_versions(project: Project, stages: list[str]) -> dict[str, Any] | None:
    """The shown results computed with other library versions than the current ones
    (:func:`~subsetctl.pipeline.library_versions`): ``stages``' manifests of another run's
    versions (results kept from before an upgrade, or put back), and results a stage took from
    the re-run cache (its ``provenance.json``) that an earlier run computed with other versions
    or, cached by an earlier subsetctl, unknown ones (the search's subset estimates: counted,
    by versions). None when every result is of these."""
    from subsetctl import pipeline

    now = pipeline.library_versions()
    made: dict[str, Any] = {}
    reused: dict[str, Any] = {}
    estimates: dict[str, Any] = {}
    for stage in stages:
        manifest = project.read_results_manifest(stage) or {}
        if "versions" in manifest and (diff := pipeline.versions_differing(manifest["versions"], now)):
            made[stage] = diff
        _, computed_with, groups = _provenance(project, stage)
        differing = {result: diff for result, versions in sorted(computed_with.items())
                     if (diff := pipeline.versions_differing(versions, now))}
        if differing:
            reused[stage] = differing
        counted = [{"count": group["count"], "versions": diff} for group in groups  # the search's, counted
                   if isinstance(group.get("count"), int)
                   and (diff := pipeline.versions_differing(group.get("versions"), now))]
        if counted:
            estimates[stage] = counted
    if not made and not reused and not estimates:
        return None
    return {"now": now, **({"stages": made} if made else {}), **({"reused": reused} if reused else {}),
            **({"reused_estimates": estimates} if estimates else {})}


def results_versions(project: Project) -> dict[str, Any] | None:
    """The library versions each stage's finished results were computed with (its manifest's
    ``versions``, and its ``provenance.json``: what it took from the caches) when they are
    not all the same; None when they are. An input of the report stage: a stage recomputed
    with other versions to the same output digest (``run --force``), or results put back,
    rewrite the report's note on them, while an upgrade alone changes none of these records
    and re-runs nothing. Records that differ only in the commit of a subsetctl checkout
    (:data:`~subsetctl.pipeline.SUBSETCTL_COMMIT`) are the same here, as the note reads them."""
    from subsetctl import pipeline
    from subsetctl.stages import stage_names

    recorded: dict[str, Any] = {}
    seen: list[Any] = []  # each distinct versions record
    for stage in stage_names():
        manifest = project.read_results_manifest(stage) if stage != "report" else None
        if not manifest or manifest.get("corrupt"):
            continue
        provenance, computed_with, groups = _provenance(project, stage)
        versions = [manifest.get("versions"), *computed_with.values(), *(group.get("versions") for group in groups)]
        # (as the note compares them: results of two commits of a subsetctl checkout are not told apart)
        seen += [v for v in map(pipeline.compared_versions, versions) if v not in seen]
        recorded[stage] = {"versions": manifest.get("versions"), **({"provenance": provenance} if provenance else {})}
    return recorded if len(seen) > 1 else None


def _provenance(project: Project, stage: str) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """What ``stage``'s results took from the re-run caches: its ``provenance.json`` as
    written, each result's versions by result (``computed_with``), and the search's
    estimates counted by versions (``estimates``); empty when it has none, or the file is
    damaged (the stage is then recomputed, and not shown meanwhile)."""
    from subsetctl.stages.common import PROVENANCE

    try:
        record = _read(project.results_dir(stage) / PROVENANCE)
    except (OSError, ValueError):
        record = None
    record = record if isinstance(record, dict) else {}
    computed_with = record.get("computed_with")
    groups = record.get("estimates")
    return (record, computed_with if isinstance(computed_with, dict) else {},
            [group for group in groups if isinstance(group, dict)] if isinstance(groups, list) else [])


def selection_order(spec: Any) -> list[str]:
    """The selections in the order the spec lists them: its strategies, then the
    fine-tune baselines (stage files keep them sorted by label)."""
    return [*(s.label or s.name for s in spec.search.strategies), *spec.finetune.baselines]


def in_spec_order(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` with its per-selection tables (strategies, test metrics, adapters) in
    ``report["selection_order"]`` (labels it does not name keep their place after those
    it does); unchanged without one (report.json is written with sorted keys, so every
    renderer reorders)."""
    order = report.get("selection_order")
    if not order:
        return report
    rank = {label: i for i, label in enumerate(order)}
    out = dict(report)
    for key in ("strategies", "test_metrics", "adapters"):
        if isinstance(report.get(key), dict):
            out[key] = dict(sorted(report[key].items(), key=lambda item: rank.get(item[0], len(rank))))
    return out


def _without_copies(report: dict[str, Any]) -> None:
    """``report``'s stage summaries without their lists of sources a source (thousands of
    names each, at thousands of sources) that report.json holds elsewhere: the data stage's
    ``sources`` where they are ``sources``, the search's ``selected`` and ``strategies``
    (each label's picks) where they are the strategies' ``selected``; and the data stage's
    ``counts`` a column a split (:func:`counts_columns`). Together about 100 bytes a source."""
    stages = report["stages"]
    # (copies: a summary is the manifest's own, which a command reads once and keeps)
    data = dict(stages["data"]["summary"]) if isinstance(stages.get("data", {}).get("summary"), dict) else None
    search = dict(stages["search"]["summary"]) if isinstance(stages.get("search", {}).get("summary"), dict) else None
    if data is not None:
        if "sources" in report and data.get("sources") == report["sources"]:
            del data["sources"]
        if isinstance(data.get("counts"), dict):
            data["counts"] = counts_columns(data["counts"])
        stages["data"] = {**stages["data"], "summary": data}
    picks = {label: entry.get("selected") for label, entry in (report.get("strategies") or {}).items()}
    if search is not None and picks:
        if "selected" in search and search["selected"] == picks.get(report.get("final")):
            del search["selected"]
        if search.get("strategies") == picks:
            del search["strategies"]
        stages["search"] = {**stages["search"], "summary": search}


def counts_columns(counts: dict[str, Any]) -> dict[str, Any]:
    """The data stage's ``counts`` (source -> split -> rows) as columns: ``source``, the
    names, and each split's counts in that order (``{"source": ["target", "wiki"], "test":
    [20, 0], "train": [20, 100], "validation": [20, 0]}``), where a source was a line of 50
    bytes; unchanged when a row is not a mapping of splits (null where a row lacks one)."""
    if not counts or not all(isinstance(row, dict) for row in counts.values()):
        return counts
    splits = sorted({split for row in counts.values() for split in row})
    return {"source": list(counts), **{split: [row.get(split) for row in counts.values()] for split in splits}}


def mark_switched_off(
    stages: dict[str, dict[str, Any]], spec: Any, unless: Callable[[str], bool] = lambda name: False
) -> list[str]:
    """Mark the stages the spec switches off (``"switched_off": true``) among ``stages``
    (name -> its time and summary), but not those ``unless`` names, and return their
    names: their results on disk are an earlier run's (`run` neither updates nor deletes
    them), so their time is not this spec's cost."""
    from subsetctl.stages import all_stages

    off = [stage.name for stage in all_stages()
           if stage.name in stages and not stage.enabled(spec) and not unless(stage.name)]
    for name in off:
        stages[name]["switched_off"] = True
    return off


def class_balance(data: Any, finetuned: Any) -> dict[str, Any] | None:
    """A classifier's rows per class (report.json's ``class_balance``): ``test``, the
    target's test split's, and ``train``, selection -> those of the rows its fine-tunes
    learned from (the target's train split and its sources'), from data.json's ``classes``
    and the finetune stage's selections (a causal LM's target answering in class words has
    them too); None without both (a causal LM of free answers, data prepared by a subsetctl
    that did not count them). Training is plain cross-entropy, so a pick of
    sources labelled 95% one class teaches that balance, which accuracy alone hides."""
    classes = data.get("classes") if isinstance(data, dict) else None
    selections = finetuned.get("selections") if isinstance(finetuned, dict) else None
    target = data.get("target") if isinstance(data, dict) else None
    if not isinstance(classes, dict) or not isinstance(selections, dict) or target not in classes:
        return None

    def rows(names: list[str], split: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for name in names:
            for label, n in (classes.get(name) or {}).get(split, {}).items():
                out[label] = out.get(label, 0) + n
        return dict(sorted(out.items()))

    return {"test": rows([target], "test"),
            "train": {label: rows([target, *picked], "train") for label, picked in selections.items()}}


def build_report(
    project: Project, skip: frozenset[str] | set[str] = frozenset(), name: str | None = None,
    order: list[str] | None = None, spec: Any = None,
) -> dict[str, Any]:
    """The report's content from the stage artifacts (nothing is recomputed); the results
    of the stages in ``skip`` (outdated ones) are left out, as are the files of a stage
    with no finished results (a run stopped partway through it, or computing it now: what
    its folder holds is uncommitted, unchecked work). ``name`` is the spec's
    ``project.name`` (the report stage has it); without it, the folder's name. ``order``:
    the selections' order for the tables (:func:`selection_order`); ``spec``: the spec now,
    to leave out of the overrides line those the spec file holds (:func:`results_overrides`)."""
    from subsetctl.stages import stage_names

    skip = set(skip) | {stage for stage in stage_names() if stage != "report"
                        and not _finished(project.read_results_manifest(stage))}
    report: dict[str, Any] = {"project": name or project.root.name, "report_format": REPORT_FORMAT, "stages": {}}
    if order:
        report["selection_order"] = list(order)
    warnings: dict[str, list[str]] = {}
    seen: set[str] = set()  # a warning recorded by two stages is shown once, under the first
    for stage in stage_names():
        if stage == "report":  # the stage writing this report has no manifest yet
            continue
        manifest = project.read_results_manifest(stage)
        if manifest and not manifest.get("corrupt"):
            report["stages"][stage] = {"seconds": manifest.get("seconds"), "summary": _summary(project, manifest, spec),
                                       **made_by(manifest)}
            provenance, computed_with, _ = _provenance(project, stage)
            taken = provenance.get("threads") if isinstance(provenance.get("threads"), dict) else {}
            # results taken from the caches or merged shards: theirs; null: an earlier subsetctl recorded none
            taken = {**taken, **{result: None for result in computed_with if result not in taken}}
            if taken:
                report["stages"][stage]["reused_threads"] = taken
            if manifest.get("warnings") and stage not in skip:  # said while it ran (truncated examples, ...)
                # a model's loading notice is said by the first stage of a run that loads it: a
                # later run re-running only later stages records it again, under one of them
                said = [str(w) for w in manifest["warnings"] if str(w) not in seen]
                seen.update(said)
                if said:
                    warnings[stage] = said
    report["stage_order"] = list(report["stages"])  # the file's keys are sorted: the pipeline's order, for scripts
    if warnings:  # (stages recorded before subsetctl kept them have none)
        report["stage_warnings"] = warnings
    # what made the results, as each stage recorded it: a report.json kept aside says which variant it is
    report["settings"] = results_settings(project, skip, spec)
    if spec is not None:  # (the spec of the run writing it: `init --from-report` writes them back)
        report["run_settings"] = run_settings(spec)
    overrides = results_overrides(project, skip, spec)
    if overrides:  # results made under command-line overrides say so (not the spec alone)
        report["overrides"], recorded = _as_typed(overrides, project, skip)
        if recorded:  # a strategy or source named in a key: the form each stage recorded, with its index
            report["overrides_recorded"] = recorded
    plugins = results_plugins(project, skip)
    if plugins:  # third-party code that made results: which, and which release
        report["plugins"] = plugins
    files = results_input_files(project, skip)
    if files:  # the data and model files' contents the results were made from
        report["input_files"] = compact_input_files(files)
    gradients = report["stages"].get("gradients", {}).get("summary") if "gradients" not in skip else None
    if isinstance(gradients, dict) and gradients.get("tokens_by_source"):  # (recorded since subsetctl keeps them)
        report["tokens_by_source"] = {"max_length": gradients.get("max_length"),
                                      "sources": gradients["tokens_by_source"]}
    data = None if "data" in skip else _read(project.results_dir("data") / "data.json")
    if data and data.get("warnings"):  # leaked held-out rows, dropped blank rows, ...: true of every result
        report["data_warnings"] = data["warnings"]
    if data and isinstance(data.get("counts"), dict):  # each source's train rows: what its score rests on
        counts = {name: c["train"] for name, c in data["counts"].items()
                  if isinstance(c, dict) and isinstance(c.get("train"), int)}
        if data.get("target") in counts:
            report["target_train_rows"] = counts.pop(data["target"])
        report["train_rows"] = counts
    if data and data.get("target_test_from"):  # the test scores' rows: a test set of the target's own
        report["target_test_from"] = data["target_test_from"]
    selections = None if "search" in skip else _read(project.results_dir("search") / "selections.json")
    if selections:
        report["sources"] = selections["sources"]
        report["final"] = selections["final"]
        report["strategies"] = {
            label: {
                "strategy": r["strategy"], "selected": r["selected"], "scores": r["scores"],
                "estimated_loss_raw": r.get("estimated_loss_raw"),
                "estimated_loss_calibrated": r.get("estimated_loss_calibrated"),
                "n_evaluated": r.get("trace_total", len(r.get("trace", []))), "notices": r.get("notices", []),
                "diagnostics": r.get("diagnostics", {}),
            }
            for label, r in selections["strategies"].items()
        }
        report["baselines"] = selections["baselines"]
        report["calibration"] = whole_counts(selections["calibration"])
    calibrate = None if "calibrate" in skip else _read(project.results_dir("calibrate") / "calibration.json")
    if selections and calibrate and isinstance(calibrate.get("primary"), dict) and (
            report["calibration"].get("lam") is not None):  # (a search fine-tuning for real has no lambda: its own)
        # the calibration's figures as calibrate has them now: the search reads its choice alone (estimator,
        # lambda, map), so a new lambda grid that chose the same re-runs it not; selections.json records that
        # choice alone (one an earlier subsetctl wrote, the figures, each lambda's rows and the notes, of the
        # grid it ran with)
        report["calibration"] = whole_counts(calibrate["primary"])
    if selections:  # (calibrate outdated, or none: the search's choice alone) the keys README documents
        report["calibration"] = {**CALIBRATION_FIGURES_NONE, **report["calibration"]}
    if calibrate and calibrate.get("kinds"):
        from subsetctl.stages.calibrate import GRID_FIGURES

        # (an older calibrate stage kept each kind's figures in calibration.json)
        for kind, figures in (_read(project.results_dir("calibrate") / GRID_FIGURES) or {}).items():
            if kind in calibrate["kinds"]:
                calibrate["kinds"][kind]["spearman_raw_by_lambda"] = figures
        report["verify"] = whole_counts(calibrate["kinds"])
        report["calibration_against"] = calibrate.get("against")  # the verify kind the map was fitted to
    finetuned = None if "finetune" in skip else _read(project.results_dir("finetune") / "labels.json")
    if finetuned:  # where each selection's LoRA adapters are, one per seed (relative to the project)
        from subsetctl.stages.finetune import adapter_relpath

        folder = project.results_dir("finetune").relative_to(project.root).as_posix()
        report["adapters"] = {label: [f"{folder}/{adapter_relpath(run)}" for run in runs]
                              for label, runs in finetuned["labels"].items()}
        base = in_project_terms(_adapter_base_model(project.root, report["adapters"]), project.root)
        if base:  # the base model to load an adapter onto: README and report.md name none of their own
            report["adapter_base_model"] = base
            record = _base_model_record(project)
            named = in_project_terms(record.get("name"), project.root) if isinstance(record, dict) else None
            now = model_source_now(project, project.read_results_manifest("finetune") or {}, spec)
            if now is not None and named == base:  # the same model folder the spec names otherwise now
                from subsetctl.modeling.resolve import model_location

                record = {"name": now, "folder": model_location(now, project.root)}
                report["adapter_base_model"] = base = named = in_project_terms(now, project.root)
            folder = model_folder_now(record.get("folder"), record.get("name"), project.root) if named == base else None
            if isinstance(folder, str) and folder != base:  # where the run read it (a packaged model's folder)
                report["adapter_base_model_path"] = folder
            revision = record.get("revision") if named == base else None
            if isinstance(revision, str):  # a hub id's, as the local cache held it: from_pretrained(base, revision=)
                report["adapter_base_model_revision"] = revision
                other = _adapters_of_other_commits(record, revision)
                if other:  # reused from the cache, trained from another commit: theirs, by adapter
                    report["adapter_base_model_revisions"] = {f"{folder}/{adapter_relpath(run)}": commit
                                                              for run, commit in other.items()}
        if finetuned.get("classes"):  # a classifier's head: what loading an adapter needs
            report["adapter_classes"] = finetuned["classes"]
            head_size = finetuned.get("head_size")  # (the finetune stage records it for every classifier)
            if isinstance(head_size, int) and head_size > len(finetuned["classes"]):  # model.num_labels asked for more
                report["adapter_head_size"] = head_size
    balance = class_balance(data, finetuned)
    if balance:
        report["class_balance"] = balance
    metrics = None if "evaluate" in skip else _read(project.results_dir("evaluate") / "metrics.json")
    if metrics:
        from subsetctl.stages.finetune import RUNS

        # (not a skipped finetune stage's runs.json: a damaged one is not JSON, and is not shown)
        runs = None if "finetune" in skip else _read(project.results_dir("finetune") / RUNS)
        per_run = _read(project.results_dir("evaluate") / "per_run.json")  # (every run's per-row test losses)
        report["test_metrics"] = with_diverged_seeds(with_per_seed(metrics["metrics"], finetuned, per_run),
                                                     finetuned, runs)
        report["test_warnings"] = metrics.get("warnings", [])
        comparison = final_vs_baselines(report)
        if comparison:
            # row by row on the test split, seeded as the results were made (project.seed)
            seed = ((project.resolved_spec("evaluate") or {}).get("project") or {}).get("seed")
            paired = paired_comparison(comparison, finetuned, per_run,
                                       seed if isinstance(seed, int) and not isinstance(seed, bool) else 0)
            report["final_vs_baselines"] = {**comparison, **({"paired": paired} if paired else {})}
    _without_copies(report)
    # results computed with other library versions than the current ones: reused from the
    # caches, or kept from before an upgrade (nothing makes them stale)
    versions = other_versions(project, [stage for stage in report["stages"] if stage not in skip])
    if versions:
        report["other_library_versions"] = versions
    return in_spec_order(report)
