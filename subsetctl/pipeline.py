"""The stage graph: plan what is stale and why, run it in order, resume. (How `plan` words
the why is :mod:`subsetctl.plan_reasons`'s.)

A stage's fingerprint hashes its spec slice, the *output digests* of its upstream stages
(a hash of their artifact checksums), extra inputs (e.g. data file hashes) and the
package version. A stage is up to date when its manifest holds the same fingerprint
and its artifacts still match their checksums. Re-running an upstream stage that
produces identical artifacts therefore does not cascade (as in DVC).

Work in progress lives in the stage folder next to a ``work.json`` naming the
fingerprint it belongs to: a killed run with an unchanged spec resumes from it; a
changed spec wipes it first.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
import os
import shutil
import socket
import stat
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from subsetctl import RESULTS_VERSION, __version__
from subsetctl.errors import (
    LockedError,
    UserError,
    as_os_error,
    as_typed,
    out_of_memory_error,
    run_command,
    shell_arg,
    worded,
)
from subsetctl.plan_reasons import (
    as_recorded,
    before_last_clause,
    changed_inputs,
    changed_keys,
    listed_briefly,
    model_known_by_name,
    outputs_gone,
    overrides_note,
    report_format_change,
    typed_overrides,
    without_shared_last_clause,
    without_trailing_breakdown,
)
from subsetctl.project import (
    RESOLVED_SPEC,
    WORK_MARKER,
    CommandMemo,
    Project,
    artifact_checksums,
    artifact_contents,
    atomic_write_json,
    fingerprint,
    replace_dir,
    size_text,
    verify_checksums,
)
from subsetctl.reporter import Reporter, SilentReporter, StageWarnings
from subsetctl.spec import Spec, as_written, fingerprint_dump, neutralized, with_neutral_values_of
from subsetctl.user_paths import expand_home

#: how `plan` names a stage's kept results (:meth:`Pipeline._kept_candidates`), by where they wait
KEPT_WHAT = {
    "set-aside": "its results, set aside by a run with other inputs that stopped before finishing,",
    "previous": "its results from an earlier run with these inputs (kept when a run with other inputs replaced them)",
}
#: what `plan` says of a stage whose kept results (:meth:`Pipeline._kept_matching`) `run` puts back
KEPT_REASONS = {
    "set-aside": f"{KEPT_WHAT['set-aside']} match the spec again; `run` puts them back",
    "previous": f"{KEPT_WHAT['previous']} match the spec again; `run` puts them back instead of recomputing them",
}


def _dig(data: Any, dotted: str) -> Any:
    """The value at the dotted key ``dotted`` (``estimate.lam``) in nested dicts; None where a
    part is missing."""
    node = data
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


#: what `plan` says of gradients whose shards (some) are for other inputs than the spec's
_SHARDS_REFUSED = ("gradient shards computed so far are for other inputs: `run` refuses rather than discard their "
                   "rows (run with the spec and overrides they were started with to merge them, or --force gradients "
                   "to discard them)")


def _shards_of_other_settings(project: Project, spec: Spec) -> dict[str, str]:
    """The gradient shards a merge with ``spec`` would pass over (:func:`subsetctl.stages.gradients.shards_of_other_settings`)."""
    from subsetctl.stages.gradients import shards_of_other_settings

    return shards_of_other_settings(project, spec)


def _computed_shards(project: Project) -> list[tuple[str, int]]:
    """The gradient shards holding computed rows (:func:`subsetctl.stages.gradients.computed_shards`)."""
    from subsetctl.stages.gradients import computed_shards

    return computed_shards(project)


def _keys_no_longer_read(stage: Stage, recorded_slice: Any) -> dict[tuple[str, ...], Any]:
    """Where in the recorded slice (a slice key, or a slice key and a key inside it) each
    of the stage's :attr:`Stage.spec_keys_no_longer_read` is, -> its recorded value: a key
    of the slice itself (``plugins``, ``executor.backend``) or of a section the slice holds
    whole (``estimate.lam`` in ``estimate``)."""
    found: dict[tuple[str, ...], Any] = {}
    if not isinstance(recorded_slice, dict):
        return found
    for key in stage.spec_keys_no_longer_read:
        section, _, inner = key.partition(".")
        if key in recorded_slice:
            found[(key,)] = recorded_slice[key]
        elif inner and isinstance(recorded_slice.get(section), dict) and inner in recorded_slice[section]:
            found[(section, inner)] = recorded_slice[section][inner]
    return found


def _with_values(sliced: dict[str, Any], values: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    """``sliced`` with the places of ``values`` (:func:`_keys_no_longer_read`) set to them."""
    out = dict(sliced)
    for path, value in values.items():
        if len(path) == 1:
            out[path[0]] = value
        elif isinstance(out.get(path[0]), dict):
            out[path[0]] = {**out[path[0]], path[1]: value}
    return out


def _without_keys(sliced: dict[str, Any], paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """``sliced`` without the keys inside its sections at ``paths`` (``("estimate", "lam")``)."""
    out = dict(sliced)
    for section, inner in paths:
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k != inner}
    return out


#: while :func:`run_checks_reused` is on: (stage, id(spec), project root, upstream digests) -> (the spec,
#: the stage's fingerprint and inputs), and ("checksums", stage, id(manifest)) -> (the manifest, None)
#: for the manifests whose artifacts `run` found intact
_run_checks: CommandMemo[tuple[Any, ...], tuple[Any, Any]] = CommandMemo()


def run_checks_reused() -> contextlib.AbstractContextManager[dict[tuple[Any, ...], tuple[Any, Any]]]:
    """Within it, :meth:`Pipeline.plan` takes what :meth:`Pipeline.run` worked out for a
    stage instead of working it out again: its fingerprint and inputs (for the same spec
    object, project and upstream digests: the data stage's fingerprints every source file)
    and that the artifacts of the manifest it read (the same parsed manifest, under
    :func:`~subsetctl.project.manifests_read_once`) pass their checksums. For `run`'s
    terminal report, which checks the results against the spec with a plan: a run with
    nothing to do did it all twice (40% of its time at 10,000 sources). Clear the dict it
    yields when a stage ran (or results were put back): what the stages read has changed
    since. Not for shard runs, which plan between their stages."""
    return _run_checks.scope()


@dataclass
class StageContext:
    """What a stage gets when it runs."""

    spec: Spec
    project: Project
    reporter: Reporter
    out_dir: Path
    #: run options: ``shard`` (i, N) for the gradients stage; ``forced`` when the stage runs
    #: because of --force, so stages that reuse results across runs (the data stage's prepared
    #: sources, the search's estimates, the fine-tunes and test results of finetune, evaluate
    #: and verify) compute them again instead
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def spec_dir(self) -> Path:
        """The project folder, which the spec's relative paths (data files, a model folder) start from."""
        return self.project.root

    def upstream_dir(self, stage: str) -> Path:
        """The folder of ``stage``'s results, which this stage reads."""
        return self.project.stage_dir(stage)

    def upstream_manifest(self, stage: str) -> dict[str, Any]:
        """``stage``'s manifest; a UserError when it has not run yet (its results are needed)."""
        manifest = self.project.read_manifest(stage)
        if manifest is None:
            raise UserError(f"Stage {stage!r} has not run yet; run `subsetctl run {shell_arg(self.project.root)}`.")
        return manifest


class Stage(ABC):
    """One step of the pipeline. Subclasses set the class attributes and ``run``."""

    #: the stage's name: its folder under ``.subsetctl``, and what --force and --until take
    name: str = ""
    #: one line on what it computes, shown as `run` starts it
    description: str = ""
    #: the stages whose results it reads: their output digests are among its inputs
    after: tuple[str, ...] = ()
    #: the spec keys it reads (sections or dotted keys): its spec slice, :meth:`spec_slice`
    spec_keys: tuple[str, ...] = ()
    #: spec keys an earlier subsetctl also read for this stage, though they cannot change its
    #: results (what they stood for is among its other inputs): a run recorded with them, at
    #: whatever value, and the same inputs otherwise is up to date, not re-run once (the data
    #: stage's ``plugins``: a re-run would also record the warnings of this version's checks,
    #: a new output digest for meta_init, gradients and every stage after them); a key of a
    #: section is written with a dot (the search's ``estimate.lam``)
    spec_keys_no_longer_read: tuple[str, ...] = ()
    #: top-level folders of the stage's own folder that hold work in progress (resumable
    #: checkpoints, half-done runs): left out of its checksums and output digest
    scratch: tuple[str, ...] = ()
    #: artifacts (paths in the stage's folder) that say where things were, not what was
    #: computed (an adapter config naming the base model's absolute path): checksummed, but
    #: left out of the output digest, so the same results made from a model folder under
    #: another path, or on another machine, leave the stages after it up to date
    #: (``fnmatch`` patterns: ``runs/*/adapter/adapter_config.json``)
    describes_only: tuple[str, ...] = ()
    #: whether its finished results can wait out of its folder and be put back (set aside while a
    #: run with other inputs re-runs it, kept as previous once that run finishes): not for a
    #: stage that also writes files outside its folder, which a put-back would not restore
    keeps_results: bool = True
    #: whether it shows how long the stages before it took (the report's time table): `run`
    #: then runs it again after any stage before it runs, also one whose output comes out
    #: unchanged (``--force search``), which leaves its fingerprint as it was
    shows_stage_seconds: bool = False
    #: the large libraries it imports, imported whole before it runs, a notebook's interrupt
    #: held back until they are (:func:`subsetctl.library_imports.import_whole`)
    imports_first: tuple[str, ...] = ()
    #: the spec key that switches the stage on and off (stages that can be switched off)
    switch: str | None = None
    #: the spec settings that bound the stage's memory (batch sizes, lengths): named, with
    #: their values, when it runs out of memory, as what to lower
    memory_keys: tuple[str, ...] = ()
    #: for a stage that trains in micro-batches: its batch size key and its ``grad_accum``
    #: key, for the out-of-memory advice to say how to lower the batch size and keep the
    #: examples per optimizer step (the run's results) as they are
    accumulation_keys: tuple[str, str] | None = None
    #: whether its :meth:`extra_inputs` are taken again once it has run, and the results not
    #: committed when they changed meanwhile: a stage that reads input files as it goes (the
    #: data stage), whose results would otherwise be recorded as made from the files as they
    #: were when the run started
    inputs_rechecked: bool = False
    #: whether the work a run stopped partway left in its folder is kept when the next run has
    #: other inputs (a fix to the file or setting that stopped it), for the stage to take what
    #: still applies: only for a stage each piece of whose work records the inputs it was made
    #: from and is checked against them (the data stage's sources); other stages start over
    partial_work_keyed: bool = False
    #: the work it keeps as it goes, which a run with the same inputs resumes, in words
    #: ("its checkpoints ..."), for the out-of-memory message (:func:`out_of_memory_error`); None: none
    resumable_work: ClassVar[str | None] = None
    #: the upstream stages of which it reads a part only (one of their :meth:`output_parts`),
    #: -> that part's name: its inputs hold that part's digest (:func:`output_digest`), so a
    #: change to the rest of their output leaves it up to date (meta_init reads no test rows:
    #: editing ``target.test_loader``'s file re-runs data and evaluate, not the training stages)
    reads_parts: ClassVar[dict[str, str]] = {}

    def memory_settings(self, spec: Spec) -> tuple[str, ...]:
        """The spec keys that bound this stage's memory with ``spec``: :attr:`memory_keys`,
        unless the stage's work (and so what to lower) depends on the spec."""
        return self.memory_keys

    def enabled(self, spec: Spec) -> bool:
        """Whether ``spec`` switches this stage on (``verify.enabled``; ``finetune.enabled`` for
        finetune and evaluate); a stage switched off is skipped by `run`, "disabled" in `plan`."""
        return True

    def work(self, spec: Spec, forced: bool = False) -> str | None:
        """How much work a run of this stage does with ``spec``, in the spec's own counts
        (optimizer steps, fine-tunes): what ``plan`` shows beside a stage it would run, so
        the cost of a run is seen before it starts. None when there is nothing to count.
        ``forced``: the stage runs because of ``--force``, which reuses nothing earlier runs
        computed (:func:`~subsetctl.stages.common.reused_unless_forced` says so)."""
        return None

    def planned_work(self, spec: Spec, forced: bool, project: Project, rerun: set[str],
                     resumes: bool = False, inputs: dict[str, Any] | None = None) -> str | None:
        """:meth:`work`, with what ``project``'s earlier results of stages not in ``rerun``
        (those the run does again) tell of its size (the gradients stage: how many rows the
        data stage prepared); ``resumes``: `run` resumes the work a run that stopped partway
        left in the stage's folder (the finished fine-tunes it recorded count as done);
        ``inputs``: the stage's inputs as ``plan`` worked them out (its fingerprint's, with the
        ``extra`` ones: the data stage's files counted), not to count them again.
        ``plan`` shows this."""
        return self.work(spec, forced)

    def last_work(self, spec: Spec, summary: Any) -> str | None:
        """How much work the run of this stage that ran with ``spec`` did, ``summary`` the
        summary its manifest records: what ``plan`` says its last run's seconds were for.
        :meth:`work` of ``spec`` here; a stage whose summary counts what the spec alone only
        bounds (finetune's fine-tunes, one per distinct pick) says that count instead."""
        return self.work(spec)

    def memory_estimate(self, spec: Spec, project: Project) -> tuple[int, str] | None:
        """The peak memory a run of this stage is estimated to take with ``spec``, in bytes,
        and what that is in words, for ``plan`` and ``doctor``; None when it is not
        estimated (a stage that loads no model, or a model whose weights cannot be read
        without loading it: see :mod:`subsetctl.modeling.footprint`)."""
        return None

    def memory_note(self, spec: Spec, project: Project) -> str | None:
        """Why :meth:`memory_estimate` gives this stage no estimate with ``spec`` and what
        gives it one, where that is worth saying (a model stage's hub id not in the local
        cache: :func:`subsetctl.modeling.footprint.no_estimate_note`); None otherwise."""
        return None

    def time_estimate(self, spec: Spec, project: Project) -> tuple[float, str] | None:
        """A rough duration of a run of this stage with ``spec``, in seconds, and what it
        assumes, for ``plan`` before the stage's first run (after it, the last run's seconds
        say more); None when it is not estimated (see :mod:`subsetctl.modeling.duration`)."""
        return None

    def imports_for(self, ctx: StageContext) -> tuple[str, ...]:
        """The large libraries this run of the stage (``ctx``) is to import whole before it
        starts (:func:`subsetctl.library_imports.import_whole`): :attr:`imports_first`, or
        fewer where the run will not use them (evaluate only re-scoring kept answers loads
        no model: importing transformers whole took 7 s of its 8)."""
        return self.imports_first

    def extra_inputs(self, spec: Spec, project: Project) -> dict[str, Any]:
        """Inputs outside the spec that should invalidate the stage (file hashes...)."""
        return {}

    def missing_outputs(self, project: Project, manifest: dict[str, Any]) -> list[str]:
        """Files this stage writes outside its state folder (e.g. report.md in the project
        root) that are gone; a stage with any missing is re-run rather than up to date."""
        return []

    def output_parts(self, outputs: dict[str, str], summary: dict[str, Any]) -> dict[str, Any]:
        """Named parts of the stage's output that stages after it may read alone (their
        :attr:`reads_parts`), -> what each part's digest hashes: from ``outputs`` (artifact
        path -> sha256, as the output digest counts them) and the run's ``summary``. None here."""
        return {}

    def parts_as_before(self, spec: Spec, project: Project, manifest: dict[str, Any],
                        inputs: dict[str, Any]) -> dict[str, str]:
        """The parts of its output (:meth:`output_parts`) that a re-run with ``inputs`` is known,
        before it runs, to produce as the results of ``manifest`` hold them, -> their digests
        (the manifest's ``output_digests``): what changed since is read by the rest of its output
        alone. `plan` then finds the stages reading only those parts (their :attr:`reads_parts`)
        up to date, as `run` will once the stage has run. None here."""
        return {}

    def parts_change_note(self, spec: Spec, project: Project, manifest: dict[str, Any],
                          inputs: dict[str, Any]) -> dict[str, str]:
        """Part -> when a re-run with ``inputs`` changes it, where :meth:`parts_as_before`
        cannot know that before the stage runs but what changed seldom reaches it: `plan` says
        so beside the stages reading that part alone, which a bare "if its output changes"
        made look as likely to re-run as any. None here."""
        return {}

    def unfinished_note(self, project: Project, spec: Spec | None = None) -> str | None:
        """What ``plan`` says of this stage's unfinished work, when a generic "a run
        stopped partway" would mislead (gradient shards computed on purpose); ``spec``, the
        spec the next run runs with, when known."""
        return None

    def spec_slice(self, spec: Spec) -> dict[str, Any]:
        """The part of the spec the stage depends on, as its fingerprint counts it (settings
        that cannot change its results at their defaults: :func:`subsetctl.spec.fingerprint_dump`)."""
        dumped = fingerprint_dump(spec)
        return {key: _dig(dumped, key) for key in self.spec_keys}

    def raw_spec_slice(self, spec: Spec) -> dict[str, Any]:
        """The spec slice as subsetctl recorded it before :meth:`spec_slice` counted some
        settings at their defaults (to recognise a project computed then)."""
        from subsetctl.spec.dumps import spec_json

        dumped = spec_json(spec)
        return {key: _dig(dumped, key) for key in self.spec_keys}

    def settings_not_read(self, recorded_slice: dict[str, Any]) -> tuple[str, ...]:
        """The dotted settings (or sections: ``calibrate``) that :meth:`spec_slice` recorded in
        ``recorded_slice`` at their defaults because the stage did not read them then: report.json's
        ``settings`` take such a setting from a stage that read it (none here)."""
        return ()

    def earlier_spec_slices(self, spec: Spec) -> list[dict[str, Any]]:
        """The slice as an earlier subsetctl counted it where that differs from
        :meth:`spec_slice` in a way :meth:`raw_spec_slice` does not cover (none here): a
        project computed then stays up to date."""
        return []

    def earlier_extra_inputs(self, spec: Spec, project: Project) -> list[dict[str, Any]]:
        """:meth:`extra_inputs` as an earlier subsetctl counted them where that differs (none
        here): a project computed then from the same files stays up to date."""
        return []

    def settings_moved_past(self, spec: Spec, manifest: dict[str, Any]) -> list[str]:
        """The spec keys this stage reads whose values changed since the run that made
        ``manifest`` (its switch aside): for a switched-off stage, whose results `run` no
        longer updates, these say the results no longer match the spec."""
        old = manifest.get("inputs", {}).get("slice")
        if not isinstance(old, dict):
            return []
        new = self.spec_slice(spec)
        shared = set(old) & set(new)  # a key another subsetctl version read or not is no change of the spec
        old = neutralized({k: v for k, v in old.items() if k in shared}, spec.model.kind)  # as recorded before
        return [key for key in changed_keys(old, {k: v for k, v in new.items() if k in shared}) if key != self.switch]

    def settings_not_taken(self, manifest: dict[str, Any]) -> tuple[str, ...]:
        """Spec keys in the stage's recorded slice that the results of ``manifest`` did not
        take, by what they record (a fallback the stage did not fall back to): the report's
        "made with command-line overrides" line does not credit their overrides to it."""
        return ()

    @abstractmethod
    def run(self, ctx: StageContext) -> dict[str, Any]:
        """Do the work, write artifacts into ``ctx.out_dir``, return a JSON summary."""


#: the version of what `plan --format json` prints (:meth:`StageStatus.to_dict`'s ``plan_format``),
#: raised whenever a subsetctl changes its keys or their meaning: a script checks it has the keys
#: it reads, as report.json's ``report_format`` lets it. 1: the first numbered; 2: each model
#: stage's estimated peak memory, ``memory_bytes`` and ``memory`` (keys added raise it too); 3: a
#: rough duration before a stage's first run, ``rough_seconds`` and ``rough``; 4: why a model
#: stage's memory is not estimated, ``memory_note``; 5: the spec keys edited since a live `run`
#: started, ``spec_edited_since_run`` (on the stage that run computes)
PLAN_FORMAT = 5


@dataclass
class StageStatus:
    """What `plan` finds of one stage (:meth:`Pipeline.plan`): its state, why, and whether `run`
    would run it; ``plan --format json`` prints :meth:`to_dict`."""

    name: str
    #: "up to date" | "stale" | "never run" | "unfinished" | "disabled" | "corrupt" | "not checked"
    #: (``plan --no-plugins``) | "running" (a live `run` computes it: :func:`subsetctl.api.plan_project`)
    state: str
    reasons: list[str]
    will_run: bool
    fingerprint: str | None = None
    #: runs only if an upstream stage that re-runs produces something different (its own
    #: inputs are unchanged): `run` skips it when that output comes out the same
    conditional: bool = False
    #: up to date through results kept out of its folder (set aside by a failed run with other
    #: inputs, or previous ones): `run` puts them back
    put_back: bool = False
    #: where those results wait: "set-aside" (the report shows them already) or "previous"
    #: (the stage's folder holds results of other inputs until `run` swaps them)
    put_back_from: str | None = None
    #: files the stage wrote that were deleted since (report.md, a plot): a reason it runs
    missing_outputs: list[str] = field(default_factory=list)
    #: what ``fingerprint`` hashes (the spec slice, upstream digests, extra inputs, version)
    inputs: dict[str, Any] | None = None
    #: how much work running it is (:meth:`Stage.work`), for a stage `run` would run
    work: str | None = None
    #: the seconds its last finished run took (its manifest's), for a stage `run` would run
    #: again; None when it never finished one, or when that run resumed work stopped partway
    #: or merged shards (its seconds are the rest's only). A hint of the cost, not a promise:
    #: a run with other settings, or one taking results from the cache, takes another time
    last_seconds: float | None = None
    #: how much work that last run was (:meth:`Stage.work` of the spec it ran with), where it
    #: differs from ``work``: a run shrunk with overrides (fewer steps, subsets, seeds) took
    #: ``last_seconds`` for this much, which is what scaling its time up to ``work`` needs
    last_work: str | None = None
    #: after the ``until`` of a plan and not up to date: `run --until` leaves it so (plan's
    #: text says so in its last line; its JSON, a list of stages, in this field)
    left_stale_by_until: bool = False
    #: stale only because stages before it will run and its time table shows their seconds
    #: (:attr:`Stage.shows_stage_seconds`): nothing of its own changed, nor, necessarily, of
    #: the spec (those stages may run because their results are damaged)
    for_time_table: bool = False
    #: the peak memory a run of it is estimated to take, in bytes (:meth:`Stage.memory_estimate`),
    #: and that in words, for a stage `run` would run; None where it is not estimated
    memory_bytes: int | None = None
    memory: str | None = None
    #: why ``memory`` is None, and what gives an estimate (:meth:`Stage.memory_note`): plan's
    #: text says it once, below its stages; None where there is nothing to say
    memory_note: str | None = None
    #: a rough duration of a run of it, in seconds (:meth:`Stage.time_estimate`), and what that
    #: assumes, for a stage `run` would run that has no last run's seconds; None where not estimated
    rough_seconds: float | None = None
    rough: str | None = None
    #: on the stage a live `run` computes ("running"), the spec keys in which the spec planned
    #: now differs from the one that run read as it started (edited since, or other overrides:
    #: only the `run` after it uses them; :func:`subsetctl.api.spec_edits_since_run_started`),
    #: empty where none or not known; None on every other stage
    spec_edited_since_run: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The status as ``plan --format json`` prints it (numbered by :data:`PLAN_FORMAT`)."""
        return {"stage": self.name, "state": self.state, "reasons": self.reasons, "will_run": self.will_run,
                "conditional": self.conditional, "put_back": self.put_back, "work": self.work,
                "last_seconds": self.last_seconds, "last_work": self.last_work,
                "memory_bytes": self.memory_bytes, "memory": self.memory, "memory_note": self.memory_note,
                "rough_seconds": self.rough_seconds, "rough": self.rough,
                "left_stale_by_until": self.left_stale_by_until,
                "spec_edited_since_run": self.spec_edited_since_run, "plan_format": PLAN_FORMAT}


#: the key of a manifest listing, by part (:meth:`Stage.output_parts`), the whole output digests of
#: earlier results that held the same part and recorded no parts: the stages after them recorded
#: those as the part they read (:func:`_parts_as_before`)
PARTS_AS_BEFORE = "output_digests_as_before"


def output_digest(manifest: dict[str, Any] | None, part: str | None = None) -> str | None:
    """The digest of a stage's results (its manifest's) that a stage reading ``part`` of
    them (:attr:`Stage.reads_parts`; None: the whole) depends on: that part's, or the whole
    output's where the manifest records no parts (results of a subsetctl before parts, which
    the stages after them recorded as their input)."""
    if not manifest:
        return None
    parts = manifest.get("output_digests")
    if part is not None and isinstance(parts, dict) and isinstance(parts.get(part), str):
        return parts[part]
    digest = manifest.get("output_digest")
    return digest if isinstance(digest, str) else None


def _outputs(stage: Stage, artifacts: dict[str, Any]) -> dict[str, Any]:
    """What ``stage``'s output digest is taken over, of its ``artifacts`` (a manifest's):
    their checksums less the stamps, the stored spec and work marker (a folder of an earlier
    subsetctl has its own copy) and the files that say where things were (:attr:`Stage.describes_only`)."""
    return {k: v for k, v in artifact_contents(artifacts).items()
            if k not in (RESOLVED_SPEC, WORK_MARKER)
            and not any(fnmatch.fnmatchcase(k, pattern) for pattern in stage.describes_only)}


def _parts_as_before(stage: Stage, parts: dict[str, str], replaced: dict[str, Any] | None) -> dict[str, list[str]]:
    """Part -> the whole output digests that stood for it before (:data:`PARTS_AS_BEFORE`):
    those of ``replaced`` (the results a run replaces) where they record no parts (an
    earlier subsetctl's, which the stages after them recorded as their input) and that part
    of them is the same as this run's ``parts`` (part -> digest); and those ``replaced``
    carried for a part that stays the same. An edit of the test rows alone after an upgrade
    then re-runs no stage that reads the train side only."""
    if not parts or not isinstance(replaced, dict) or replaced.get("corrupt"):
        return {}
    recorded = replaced.get("output_digests")
    if isinstance(recorded, dict):  # parts of its own: what stood for the same ones before carries over
        before = replaced.get(PARTS_AS_BEFORE)
        before = before if isinstance(before, dict) else {}
        return {part: list(before[part]) for part, digest in parts.items()
                if recorded.get(part) == digest and isinstance(before.get(part), list)}
    whole, artifacts, summary = replaced.get("output_digest"), replaced.get("artifacts"), replaced.get("summary")
    if not isinstance(whole, str) or not isinstance(artifacts, dict) or not isinstance(summary, dict):
        return {}
    then = stage.output_parts(_outputs(stage, artifacts), summary)
    return {part: [whole] for part, digest in parts.items() if part in then and fingerprint(then[part]) == digest}


def digests_standing_for(manifest: dict[str, Any] | None, part: str | None = None) -> list[str]:
    """The digests a stage after ``manifest``'s results recorded them by when it reads
    ``part`` of them (None: the whole), if they are the results it read: :func:`output_digest`,
    then the whole output digests of earlier results with the same part (:data:`PARTS_AS_BEFORE`)."""
    digest = output_digest(manifest, part)
    if digest is None or manifest is None or part is None:
        return [digest] if digest is not None else []
    before = manifest.get(PARTS_AS_BEFORE)
    earlier = before.get(part) if isinstance(before, dict) else None
    return [digest, *(d for d in (earlier if isinstance(earlier, list) else []) if isinstance(d, str))]


def _digests_of(stage: str, manifest: dict[str, Any] | None) -> dict[str, str | None]:
    """The entries of :meth:`Pipeline._current`'s ``digests`` for ``stage``'s results
    ``manifest`` (None: none yet, or it re-runs): its whole output's digest under its name,
    each part's under ``name:part``."""
    parts = (manifest or {}).get("output_digests")
    return {stage: output_digest(manifest),
            **{f"{stage}:{part}": output_digest(manifest, part) for part in (parts if isinstance(parts, dict) else {})}}


def _outputs_named(stages: list[str]) -> str:
    """The output of ``stages`` as a plan reason names it: "the data stage's output", "the
    output of data or meta_init"."""
    return f"the {stages[0]} stage's output" if len(stages) == 1 else f"the output of {' or '.join(stages)}"


def _upstream_inputs(stage: Stage, spec: Spec, digests: dict[str, str | None],
                     by_name: dict[str, Stage]) -> dict[str, str | None]:
    """The ``upstream`` of ``stage``'s inputs: for each stage before it that ``spec`` switches
    on (of ``by_name``), the digest (of ``digests``, :func:`_digests_of`'s entries) of the
    part of its results it reads (:attr:`Stage.reads_parts`), else of the whole."""
    def digest(name: str) -> str | None:
        part = stage.reads_parts.get(name)
        return digests.get(f"{name}:{part}", digests.get(name)) if part else digests.get(name)

    return {name: digest(name) for name in stage.after if by_name[name].enabled(spec)}


def _inputs(stage: Stage, spec: Spec, project: Project, upstream: dict[str, str | None]) -> dict[str, Any]:
    """The inputs `run` records for ``stage`` (its fingerprint's), its upstream digests ``upstream``."""
    return {"slice": stage.spec_slice(spec), "upstream": upstream,
            "extra": stage.extra_inputs(spec, project), "version": RESULTS_VERSION}


def inputs_as_results_stand(stage: Stage, spec: Spec, project: Project, stages: list[Stage]) -> dict[str, Any]:
    """The inputs `run` would record for ``stage`` now (of the pipeline ``stages``) were the
    stages before it left as they are: those :meth:`Pipeline._current` computes from their
    results' manifests as they stand (a stage that reads a part of them runs over that part's digest)."""
    by_name = {s.name: s for s in stages}
    digests: dict[str, str | None] = {}
    for name in stage.after:
        digests.update(_digests_of(name, project.read_manifest(name)))
    return _inputs(stage, spec, project, _upstream_inputs(stage, spec, digests, by_name))


def _rerun_reaching(stage: Stage, rerun: set[str], inputs: dict[str, Any]) -> list[str]:
    """The stages before ``stage`` that `run` re-runs (``rerun``, as `plan` found them so far)
    whose re-run may change what it reads (``inputs``, :meth:`Pipeline._current`'s): all
    but those of whose output it reads a part known to come out as before
    (:meth:`Stage.parts_as_before`), whose digest its inputs already hold."""
    return [up for up in stage.after if up in rerun and inputs["upstream"].get(up, "") is None]


def _is_seconds(value: Any) -> bool:
    """Whether a manifest's ``seconds`` is a duration (a hand-edited or damaged one is not shown)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _folder_identity(folder: Path) -> tuple[int, int] | None:
    """``folder``'s device and inode (the same while it is not deleted and made anew); None
    when it is not a folder there."""
    try:
        st = folder.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def same_model_folder_as_recorded(inputs: dict[str, Any], manifest: dict[str, Any]) -> str | None:
    """The ``model.source`` a stage's run recorded when it names another path than the
    spec now but the model folder's files (sizes and sha256, see
    :func:`subsetctl.modeling.resolve.model_fingerprint_inputs`) are the same; None
    otherwise (not a local folder, or a stage that does not read the model)."""
    recorded = manifest.get("inputs", {})
    files = inputs.get("extra", {}).get("model_files") if isinstance(inputs.get("extra"), dict) else None
    old_model = recorded.get("slice", {}).get("model") if isinstance(recorded.get("slice"), dict) else None
    new_model = inputs["slice"].get("model")
    if (files is None or not isinstance(old_model, dict) or not isinstance(new_model, dict)
            or not isinstance(recorded.get("extra"), dict) or recorded["extra"].get("model_files") != files):
        return None
    source = old_model.get("source")
    return source if isinstance(source, str) and source != new_model.get("source") else None


#: the key of :func:`library_versions` naming the git commit a checkout of subsetctl ran from:
#: which build ran, not a library computing differently, so :func:`versions_differing` does not
#: compare it (every commit and local edit of a checkout would have noted all results as computed
#: with "other library versions", and kept the report's note on them)
SUBSETCTL_COMMIT = "subsetctl_commit"


def library_versions() -> dict[str, str]:
    """Versions saved with every artifact, for reproducibility; ``subsetctl_commit`` too when
    subsetctl runs from a git checkout (:func:`~subsetctl.checkout.source_commit`: its commit, and
    "+dirty"), whose builds all say the same version number. Not an input of any stage: like the
    versions, it describes how results came about."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from subsetctl.checkout import source_commit

    out = {"subsetctl": __version__, "python": platform.python_version()}
    if (commit := source_commit()) is not None:
        out[SUBSETCTL_COMMIT] = commit
    # what computes the results: tokenization (tokenizers), weights (safetensors), the
    # estimators (numpy, scipy), data files (pyarrow) and the search's executors (joblib,
    # dask, distributed; absent ones are left out)
    for name in ("torch", "transformers", "tokenizers", "peft", "safetensors", "datasets", "pyarrow", "numpy",
                 "scipy", "joblib", "dask", "distributed", "reasoning-gym"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def thread_counts() -> dict[str, int | str]:
    """The thread counts this process computes with, saved with each stage's results next to
    the library versions: torch's results differ in the last bits between thread counts (its
    float reductions split the work by thread), so the same spec run with another
    ``OMP_NUM_THREADS`` or ``torch.set_num_threads`` trains other θ*, gradients and adapters.
    ``torch``: torch's intra-op threads, only when this process has loaded torch (a stage that
    did not load it computed nothing with it; loading it here would cost seconds);
    ``OMP_NUM_THREADS``: the environment variable as set (the BLAS under numpy follows it)."""
    import sys

    out: dict[str, int | str] = {}
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        out["torch"] = int(torch.get_num_threads())
    if os.environ.get("OMP_NUM_THREADS"):
        out["OMP_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"]
    return out


def versions_differing(then: Any, now: dict[str, str]) -> dict[str, dict[str, str | None]] | str | None:
    """How the library versions ``then`` that computed a result (a manifest's or a cache
    entry's ``versions``) differ from ``now``: ``{name: {"then": ..., "now": ...}}`` (None for
    a library uninstalled since); ``"unknown"`` when ``then`` is not a record of versions (an
    entry an earlier subsetctl cached without them); None when they are the same. A library
    installed only since (dask, reasoning-gym) took no part in the result: not a difference."""
    if not isinstance(then, dict) or not all(isinstance(v, str) for v in then.values()):
        return "unknown"
    changed = {name: {"then": then[name], "now": now.get(name)}
               for name in sorted(then) if name != SUBSETCTL_COMMIT and then[name] != now.get(name)}
    return changed or None


def compared_versions(versions: Any) -> Any:
    """A record of library versions as :func:`versions_differing` compares it: without the
    commit of a subsetctl checkout (:data:`SUBSETCTL_COMMIT`); anything else as it is."""
    return {k: v for k, v in versions.items() if k != SUBSETCTL_COMMIT} if isinstance(versions, dict) else versions


def _option(name: str, value: str) -> str:
    """A stage option as the caller gives it: `--until data` on the command line, until='data' in Python."""
    return worded(f"--{name} {value}", f"{name}={value!r}")


def forced_after_until(force: list[str] | tuple[str, ...], until: str | None, order: list[str]) -> str | None:
    """The problem of a stage forced after the one runs stop at (`--until data --force
    search`: it would not run), in the words of the command line or of the API as the caller
    is; None when there is none. `run` and `plan` check it before reading the project, as a
    usage error (exit 2); the pipeline again, for the API."""
    late = [n for n in sorted(force, key=order.index) if n in order and until in order
            and order.index(n) > order.index(until)]
    if not late or until is None:
        return None
    return (f"{_option('force', late[0])}: it comes after {_option('until', until)}, so it would not run. Stop at "
            f"{late[0]} or later, or leave out {worded('--until', 'until')}.")


class Pipeline:
    """Plans and runs a list of stages on one project."""

    def __init__(self, project: Project, spec: Spec, stages: list[Stage], reporter: Reporter | None = None,
                 overrides: list[str] | None = None):
        self.project = project
        self.spec = spec
        self.stages = stages
        self.by_name = {s.name: s for s in stages}
        self.reporter = reporter or SilentReporter()
        #: the command line's key=value overrides, recorded in each manifest so that `plan`
        #: can say a later "spec changed" comes from them (they are in ``spec`` already)
        self.overrides = list(overrides or [])
        #: the digest of the resolved spec, once a run has stored it (:meth:`_resolved_spec_digest`)
        self._run_spec: str | None = None

    def stage_names(self) -> list[str]:
        """The stages' names, in the order they run."""
        return [s.name for s in self.stages]

    def _check_stage(self, name: str | None, optional: bool = True) -> None:
        """A UserError unless ``name`` is a stage's (or None, for no stage, when ``optional``)."""
        if (name is not None or not optional) and name not in self.by_name:
            raise UserError(f"Unknown stage {name!r}. Stages: {', '.join(self.stage_names())}.")

    def _check_stage_options(self, until: str | None, force: set[str]) -> None:
        """``--until`` and ``--force`` name stages that exist and are switched on: a stage
        the spec switches off is skipped, so ``--until verify`` ran every stage after it
        (every real fine-tune) and ``--force verify`` did nothing, both without a word."""
        # (each forced name checked before any is compared: force=["data", 3] or [None] from a notebook
        # raised TypeError or ValueError; key=str sorts them all the same)
        for name in sorted(force, key=str):
            self._check_stage(name, optional=False)
        self._check_stage(until)
        for which, name in [*(("force", n) for n in sorted(force)), ("until", until)]:
            stage = self.by_name.get(name) if name else None
            if stage is not None and not stage.enabled(self.spec):
                switch = f" ({stage.switch}: false)" if stage.switch else ""
                raise UserError(
                    f"{_option(which, name)}: the {name} stage is switched off in the spec{switch}, so it never runs. "
                    + (f"Switch it on (`{stage.switch}=true` {worded('on the command line', 'in overrides')}, or "
                       "in the spec) or name another stage." if stage.switch else "Name another stage.")
                )
        late = forced_after_until(force, until, self.stage_names())
        if late:
            raise UserError(late)

    def _current(self, stage: Stage, digests: dict[str, str | None],
                 reuse: bool = False) -> tuple[str | None, dict[str, Any]]:
        """The fingerprint a stage would have now (None when an upstream has no output yet),
        and its inputs. Kept while :func:`run_checks_reused` is on; ``reuse``: taken from
        there when held (:meth:`plan`)."""
        upstream = _upstream_inputs(stage, self.spec, digests, self.by_name)
        held = _run_checks.held
        key = (stage.name, id(self.spec), str(self.project.root), tuple(upstream.items()))
        if reuse and held is not None and key in held and held[key][0] is self.spec:
            return held[key][1]
        inputs = _inputs(stage, self.spec, self.project, upstream)
        current = (None if any(v is None for v in upstream.values()) else fingerprint(inputs)), inputs
        if held is not None:
            held[key] = (self.spec, current)
        return current

    def _fingerprint_matches(self, stage: Stage, manifest: dict[str, Any], fp: str | None,
                             inputs: dict[str, Any]) -> bool:
        """Whether the fingerprint a stage's manifest records is its current one, or the one
        an earlier subsetctl computed from the same inputs before settings that cannot change
        a result (:data:`subsetctl.spec.RESULT_NEUTRAL`) counted at their defaults: a project
        computed then with ``checkpoint_every: 2`` stays up to date. Likewise a local model
        folder named by another path (moved, or written ``ckpt/`` for ``ckpt``) whose files
        are the same, byte for byte, as the run recorded: meta_init is not trained again. And
        extra inputs as an earlier subsetctl counted them (:meth:`Stage.earlier_extra_inputs`)."""
        recorded = manifest.get("fingerprint")
        if fp is None or recorded is None:
            return False
        if recorded == fp:
            return True
        raw = stage.raw_spec_slice(self.spec)
        slices = [inputs["slice"]]
        if raw != inputs["slice"]:  # the neutral settings as that run recorded them (they change nothing)
            slices.append(with_neutral_values_of(raw, manifest.get("inputs", {}).get("slice"), self.spec.model.kind))
        slices += [s for s in stage.earlier_spec_slices(self.spec) if s != inputs["slice"]]
        source = same_model_folder_as_recorded(inputs, manifest)
        if source is not None:  # the same model files under another path: `model.source` as recorded
            slices += [{**s, "model": {**s["model"], "source": source}} for s in slices]
        dropped = _keys_no_longer_read(stage, manifest.get("inputs", {}).get("slice"))
        if dropped:  # as an earlier subsetctl recorded the slice, with keys that change nothing here
            slices += [_with_values(s, dropped) for s in slices]
        if any(recorded == fingerprint({**inputs, "slice": s}) for s in slices[1:]):
            return True
        # (extra inputs as the run recorded them: no earlier form of them gives its fingerprint, and working
        # those out counts the files again, a save_to_disk folder's whole)
        if manifest.get("inputs", {}).get("extra") != inputs["extra"] and any(
                recorded == fingerprint({**inputs, "slice": s, "extra": extra})
                for extra in stage.earlier_extra_inputs(self.spec, self.project) for s in slices):
            return True
        return any(recorded == fingerprint({**inputs, "upstream": upstream, "slice": s})
                   for upstream in self._upstream_as_before(stage, inputs) for s in slices)

    def _upstream_as_before(self, stage: Stage, inputs: dict[str, Any]) -> list[dict[str, Any]]:
        """``inputs``'s upstream digests with the part of an upstream stage's output the stage
        reads (:attr:`Stage.reads_parts`) given as an earlier subsetctl recorded it: the whole
        output digest of the results that stage replaced, where they held the same part
        (:func:`digests_standing_for`). meta_init made before parts stays up to date when an
        edit of the test rows alone re-ran the data stage."""
        out = []
        for name, part in stage.reads_parts.items():
            digest = inputs["upstream"].get(name)
            standing = digests_standing_for(self.project.read_results_manifest(name), part) if digest else []
            if standing[:1] == [digest]:  # the results the inputs were taken from
                out += [{**inputs["upstream"], name: whole} for whole in standing[1:]]
        return out

    def _model_folder_gone(self, old_inputs: Any, new: dict[str, Any]) -> Path | None:
        """Where ``model.source`` points when the local model folder a model stage's run read
        (``old_inputs``: the inputs its manifest recorded) is no longer there (a project
        copied or moved without it, a folder renamed); None when the run read no local
        folder, one is there now, or ``model.source`` names another place than the run's
        did (changed on purpose, to a hub id say)."""
        old = old_inputs.get("extra") if isinstance(old_inputs, dict) else None
        if not isinstance(old, dict) or "model_files" not in old or "model_files" in new:
            return None

        def where(source: str) -> Path:
            path = expand_home(source)
            return path if path.is_absolute() else self.project.root / path

        slice_ = old_inputs.get("slice")
        recorded = slice_.get("model", {}).get("source") if isinstance(slice_, dict) else None
        path = where(self.spec.model.source)
        if isinstance(recorded, str) and where(recorded) != path:
            return None
        return path

    def _model_stage_forced(self, force: set[str]) -> bool:
        """Whether ``force`` names a stage that loads the model: the way to say the hub id
        is meant (:meth:`_refuse_a_hub_id_for_a_gone_folder`). Forcing another stage (the
        data, the search) says nothing about where the model is."""
        from subsetctl.stages.common import ModelStage

        return any(isinstance(stage, ModelStage) and stage.name in force for stage in self.stages)

    def _refuse_a_hub_id_for_a_gone_folder(self, stage: Stage, manifest: dict[str, Any],
                                           inputs: dict[str, Any]) -> None:
        """Stop before ``stage`` runs when its results were made from a local model folder
        that is gone and ``model.source`` (``models/base``) would now be fetched from the
        Hugging Face hub as an 'org/name' id: a project copied or moved without its model
        folder, whose run otherwise failed with a hub error that never named the folder
        (or, online, trained from whatever the hub holds under that name)."""
        from subsetctl.modeling.resolve import classify_model_source, model_location

        gone = self._model_folder_gone(manifest.get("inputs"), inputs["extra"])
        if gone is None:
            return
        try:
            hub = classify_model_source(model_location(self.spec.model.source, self.project.root)) == "hub"
        except UserError:
            return  # no model source at all: validation says so
        if hub:
            raise UserError(f"{self.project.spec_path}: model.source: {stage.name}'s results were made from a local "
                            f"model folder, and {gone} holds none now (model.source: {as_typed(self.spec.model.source)}, "
                            "which would be fetched from the Hugging Face hub as an 'org/name' id). Copy the "
                            "folder there, or set model.source to where it is now. Nothing was computed for "
                            f"{stage.name}; to fetch {as_typed(self.spec.model.source)} from the hub instead, run with "
                            f"--force {stage.name}.")

    def plan(self, force: set[str] | None = None, until: str | None = None) -> list[StageStatus]:
        """Status of every stage and whether `run` would run it. Nothing changes on disk but
        the file stamps recorded for artifacts found intact after hashing them (a copied
        project), and only while no `run` holds the lock (:meth:`Project.restamp_manifest_when_idle`,
        which creates ``.subsetctl/lock`` if it is missing), and the file-hash cache."""
        force = force or set()
        self._check_stage_options(until, force)
        with self.project.as_if_put_back() as put_back_manifests:
            return self._plan(force, until, put_back_manifests)

    def _plan(self, force: set[str], until: str | None, put_back_manifests: dict[str, Any]) -> list[StageStatus]:
        """:meth:`plan`, with ``put_back_manifests`` filled with the kept results `run` will
        put back as they are found (later stages' inputs are read as if they were)."""
        statuses: list[StageStatus] = []
        digests: dict[str, str | None] = {}
        rerun: set[str] = set()
        reached_until = False
        #: stages after ``until`` that are not up to date: `run --until` leaves them so, and
        #: the results of the stages after them, made from theirs, are as outdated
        left_stale: set[str] = set()
        last_specs: dict[str, Spec | None] = {}  # the specs stages last ran with, by digest: parsed once
        not_checked: set[str] = set()  # stages whose inputs hold the code of a plugin not imported (--no-plugins)
        part_notes: dict[str, str] = {}  # "stage:part" -> when a re-run of the stage changes it (Stage.parts_change_note)
        # a stage that will re-run -> the stages sure to re-run whose output decides whether it does (itself
        # where it is sure to; those upstream where it re-runs only if their output changes)
        deciding: dict[str, set[str]] = {}
        order = list(self.by_name)
        for stage in self.stages:
            if not stage.enabled(self.spec):
                statuses.append(self._disabled_status(stage))
                continue
            manifest = self.project.read_manifest(stage.name)
            last_seconds = (manifest.get("seconds") if manifest and not manifest.get("corrupt")
                            and not manifest.get("resumed") else None)
            last_spec_digest = manifest.get("resolved_spec") if manifest and _is_seconds(last_seconds) else None
            last_summary = manifest.get("summary") if last_spec_digest is not None else None
            fp, inputs = self._current(stage, digests, reuse=True)
            unknown = self._not_checked(stage, inputs, not_checked, manifest)
            if unknown:  # its status is not known: nor are those of the stages after it
                not_checked.add(stage.name)
                digests[stage.name] = None
                statuses.append(StageStatus(stage.name, "not checked", unknown, False, inputs=inputs))
                reached_until = reached_until or stage.name == until
                continue
            reasons = []
            missing: list[str] = []
            conditional_aside = False
            kept = self._kept_matching(stage, fp, inputs) if stage.name not in force else None  # (where, manifest, folder)
            if kept is not None:  # `run` puts them back instead of running the stage
                manifest = kept[1]
                state, reasons = "up to date", [KEPT_REASONS[kept[0]]]
            elif (manifest is None and stage.name not in force
                  and (waiting := self._kept_if_upstream_as_before(stage, inputs, rerun))):
                where, ups = waiting
                state, conditional_aside = "stale", True
                reasons = [(f"{KEPT_WHAT[where]} match the spec if what upstream {', '.join(ups)} will re-run to produce is "
                            "what they were made from: `run` then puts them back, else runs it")]
            elif manifest is None:
                state, reasons = self._never_run(stage, fp, inputs)
            elif manifest.get("corrupt"):
                state, reasons = "corrupt", ["manifest.json is unreadable"]
            else:
                state, reasons, missing, conditional_aside = self._results_state(stage, manifest, fp, inputs, rerun,
                                                                                 force)
            if reached_until and state == "up to date" and kept is None:
                behind = [u for u in stage.after if u in left_stale]
                if behind:  # its inputs are the outdated results of a stage `run --until` does not reach
                    state = "stale"
                    one = len(behind) == 1
                    reasons = [(f"upstream {', '.join(behind)} {'is' if one else 'are'} not up to date and "
                                f"{worded(f'`run --until {until}`', f'until={until!r}')} stops before "
                                f"{'it' if one else 'them'}")]
            if reached_until and state != "up to date":
                left_stale.add(stage.name)
            if stage.name in force:
                reasons.append(worded("forced with --force", "forced (named in force)"))
            reaching = _rerun_reaching(stage, rerun, inputs)
            will_run = not reached_until and (state != "up to date" or stage.name in force or bool(reaching))
            if will_run and state == "up to date":
                state = "stale"
            upstream_only = [f"upstream {u} will re-run" for u in reaching]
            conditional = conditional_aside or (will_run and state == "stale" and set(reasons) <= set(upstream_only))
            unsure = [u for u in reaching if deciding.get(u, {u}) != {u}]  # upstream that re-run only if others' output changes
            sure_of = sorted(set().union(*(deciding.get(u, {u}) for u in reaching)), key=order.index)
            if conditional and not conditional_aside:  # nothing of its own changed: re-runs if that upstream's output does
                whose = "its" if len(reaching) == 1 else "their"
                notes = [f"{u}'s {note}" if len(reaching) > 1 else note for u in reaching
                         if (note := part_notes.get(f"{u}:{stage.reads_parts.get(u)}"))]
                if unsure:  # (they too are skipped unless that output changes: "will re-run" overstated it)
                    sure = [u for u in reaching if u not in unsure]
                    said = [*([f"upstream {', '.join(sure)} will re-run"] if sure else []),
                            f"{'' if sure else 'upstream '}{', '.join(unsure)} only if it does"]
                    reasons = [f"re-runs only if {_outputs_named(sure_of)} changes ({'; '.join([*said, *notes])})"]
                else:
                    reasons = [f"upstream {', '.join(reaching)} will re-run (skipped if {whose} output is unchanged"
                               + "".join(f"; {note}" for note in notes) + ")"]
                if stage.name not in force and self._kept_if_upstream_as_before(stage, inputs, rerun):
                    reasons[0] += (f"; if {whose} output comes out as the one this stage's previous results were "
                                   "made from, `run` puts those back instead")
            elif unsure:  # runs anyway: its upstream that re-run only if others' output changes said so
                worded_as = {f"upstream {u} will re-run":
                             f"upstream {u} re-runs only if {_outputs_named(sorted(deciding[u], key=order.index))} changes"
                             for u in unsure}
                reasons = [worded_as.get(reason, reason) for reason in reasons]
            for_time_table = False
            if stage.shows_stage_seconds and rerun and not reached_until and (conditional or not will_run):
                # its time table shows how long they took this time, whatever their output
                will_run, state, conditional, for_time_table = True, "stale", False, True
                certain = [s.name for s in statuses if s.will_run and not s.conditional] or sorted(rerun)
                reasons = [(f"{', '.join(certain)} will run, and its time table shows how long "
                            f"{'it takes' if len(certain) == 1 else 'they take'} (rewritten even when the output "
                            "is unchanged)")]
            if will_run:
                rerun.add(stage.name)
                deciding[stage.name] = set(sure_of) if conditional and reaching else {stage.name}
                digests[stage.name] = None
                if state == "stale" and kept is None and manifest and stage.name not in force:
                    # what a re-run gives again: the stages reading those parts alone stay as they are
                    digests.update({f"{stage.name}:{part}": digest for part, digest
                                    in stage.parts_as_before(self.spec, self.project, manifest, inputs).items()})
                if state == "stale" and kept is None and manifest:  # (forced too: what counts of it is the same)
                    part_notes.update({f"{stage.name}:{part}": note for part, note
                                       in stage.parts_change_note(self.spec, self.project, manifest, inputs).items()})
            else:
                digests.update(_digests_of(stage.name, manifest))
            put_back = kept is not None and not reached_until  # `run --until` stops before it
            if put_back and kept is not None:
                put_back_manifests[stage.name] = kept[1]
            shown_seconds = will_run and _is_seconds(last_seconds)
            planned = (stage.planned_work(self.spec, stage.name in force, self.project, rerun,
                                          resumes=state == "unfinished", inputs=inputs) if will_run else None)
            statuses.append(StageStatus(stage.name, state, reasons, will_run, fp, conditional, put_back,
                                        kept[0] if put_back and kept else None, missing, inputs, planned,
                                        float(last_seconds) if shown_seconds else None,
                                        self._last_work(stage, last_spec_digest, last_summary, last_specs, planned)
                                        if shown_seconds else None,
                                        reached_until and state != "up to date", for_time_table))
            if will_run:
                statuses[-1].memory_bytes, statuses[-1].memory = (stage.memory_estimate(self.spec, self.project)
                                                                  or (None, None))
                if statuses[-1].memory is None:
                    statuses[-1].memory_note = stage.memory_note(self.spec, self.project)
                if statuses[-1].last_seconds is None:  # (a last run's seconds say more)
                    statuses[-1].rough_seconds, statuses[-1].rough = (stage.time_estimate(self.spec, self.project)
                                                                      or (None, None))
            if until is not None and stage.name == until:
                reached_until = True
        return statuses

    def _disabled_status(self, stage: Stage) -> StageStatus:
        """The status :meth:`plan` gives a stage the spec switches off: "disabled", and whether its
        results from an earlier run (which the report may still show) no longer match the spec."""
        reasons = ["switched off in the spec"]
        manifest = self.project.read_results_manifest(stage.name)  # also set aside: the report shows them
        moved = stage.settings_moved_past(self.spec, manifest) if manifest else []
        if moved:
            reasons.append(f"its results from an earlier run no longer match the spec ({listed_briefly(moved)} "
                           "changed since); the report leaves them out")
        return StageStatus(stage.name, "disabled", reasons, False)

    def _results_state(self, stage: Stage, manifest: dict[str, Any], fp: str | None, inputs: dict[str, Any],
                       rerun: set[str], force: set[str]) -> tuple[str, list[str], list[str], bool]:
        """What :meth:`plan` finds of ``stage``'s committed results (``manifest``, readable): the
        state ("corrupt", "stale" or "up to date"), its reasons, the outputs missing, and whether
        kept results would be put back if upstream output comes out as before (see :meth:`_changes`).
        Artifacts found intact by hashing (a copied project) get their stamps recorded."""
        restamped: dict[str, list[int]] = {}
        held = _run_checks.held
        intact = ("checksums", stage.name, id(manifest))  # the run found this manifest's artifacts intact
        problems = ([] if held is not None and held.get(intact, (None,))[0] is manifest else
                    verify_checksums(self.project.stage_dir(stage.name), manifest.get("artifacts", {}), restamped))
        if restamped and not problems:  # a copied project: hashed once, not by every plan and report
            self.project.restamp_manifest_when_idle(stage.name, restamped)
        if problems:
            return "corrupt", problems, [], False
        if self._fingerprint_matches(stage, manifest, fp, inputs):
            missing = stage.missing_outputs(self.project, manifest)
            if missing:
                return "stale", [outputs_gone(self.project, missing)], missing, False
            return "up to date", [], [], False
        reasons, missing, conditional_aside = self._changes(stage, manifest, inputs, rerun, force)
        return "stale", reasons, missing, conditional_aside

    def _not_checked(self, stage: Stage, inputs: dict[str, Any], not_checked: set[str],
                     manifest: dict[str, Any] | None) -> list[str]:
        """Why ``stage``'s status cannot be known while the spec's plugins are not imported
        (``plan --no-plugins``): its inputs hold the code of a plugin not imported (see
        :func:`~subsetctl.plugin_loading.code_not_imported`), its last run (``manifest``) used
        a plugin's code under a name that is a built-in's without the plugins (a plugin's own
        ``jsonl`` loader), or it comes after a stage in ``not_checked``; [] when it can be known."""
        from subsetctl.plugin_loading import codes_not_imported, no_plugins_option, plugins_skipped

        codes = codes_not_imported(inputs.get("extra"))
        if codes:
            return [(f"it uses {', '.join(codes)}, not built in or installed: provided by a plugin not "
                     f"imported ({no_plugins_option()}), so whether `run` would run it is not known")]
        extra = (manifest or {}).get("inputs", {}).get("extra")
        recorded = extra.get("plugin code") if plugins_skipped() and isinstance(extra, dict) else None
        if isinstance(recorded, dict) and recorded and recorded != inputs["extra"].get("plugin code"):
            return [(f"its last run used a plugin's code for the {', '.join(recorded)}, from a plugin not imported "
                     f"({no_plugins_option()}), so whether `run` would run it is not known")]
        behind = [u for u in stage.after if u in not_checked]
        return [f"upstream {', '.join(behind)} {'is' if len(behind) == 1 else 'are'} not checked"] \
            if behind else []

    def _last_work(self, stage: Stage, digest: Any, summary: Any, specs: dict[str, Spec | None],
                   planned: str | None) -> str | None:
        """How much work ``stage``'s last finished run was (:meth:`Stage.last_work` of the
        resolved spec its manifest names by ``digest`` and of the ``summary`` it records), when
        that differs from ``planned`` (the work `plan` says a run does now, or :meth:`Stage.work`
        of the spec); None when it is the same, or the spec it ran with is missing or no
        longer reads as a spec (one of an earlier subsetctl). ``specs`` caches the parsed
        specs by digest: the stages of one run share theirs, which with thousands of sources
        is a large file."""
        from pydantic import ValidationError

        if not isinstance(digest, str):
            return None
        if digest not in specs:
            stored = self.project.stored_spec(digest)
            try:
                specs[digest] = Spec.model_validate(stored) if stored is not None else None
            except ValidationError:
                specs[digest] = None
        last_spec = specs[digest]
        if last_spec is None:
            return None
        then, now = stage.last_work(last_spec, summary), stage.work(self.spec)
        if not then or then == now or (planned is not None and then == before_last_clause(planned)):
            return None  # (a count from the last run's summary has no reuse clause; the planned one has)
        brief = without_shared_last_clause(then, now)
        # (the search's subsets by strategy only: another stage's parenthesis says why, "(verify is off)")
        return without_trailing_breakdown(brief, now) if stage.name == "search" else brief

    def _never_run(self, stage: Stage, fp: str | None, inputs: dict[str, Any]) -> tuple[str, list[str]]:
        """The state ("never run" or "unfinished") and reasons :meth:`plan` gives a stage
        with no results: a swap cut short, results set aside, work a stopped run left."""
        state, reasons = "never run", []
        if self.project.swap_cut_short(stage.name):
            reasons.append("a run was stopped while it swapped this stage's results with its previous ones; "
                           "`run` completes the swap first (nothing is lost), then re-checks the stage")
        # a marker alone is a run that failed before computing anything: nothing to resume or discard
        work = self._work_fingerprint(stage) if self.project.holds_work(stage.name) else None
        resumes = work is not None and self._work_matches(stage, fp, inputs)  # stopped partway (Ctrl-C, a crash)
        if self.project.read_set_aside_manifest(stage.name) is not None:
            # the results the stopped run replaced; "computes it anew" would belie the resumed work below
            # (not "results set aside ... are of other inputs", which read as the stopped work being of other inputs)
            reasons.append("the stage's last finished results, of other inputs, were set aside by the run that "
                           "stopped before finishing: "
                           + ("they stay set aside until the resumed work finishes" if resumes
                              else "`run` computes it anew (they stay set aside until it finishes)"))
        if resumes:
            state = "unfinished"
            reasons.append(stage.unfinished_note(self.project, self.spec) or "a run stopped partway; `run` resumes its work")
        elif (work is None and stage.name == "gradients" and (shards := _computed_shards(self.project))
              and any(label in _shards_of_other_settings(self.project, self.spec) for label, _ in shards)):
            reasons.append(_SHARDS_REFUSED)  # copied in without work.json, some of other settings
        elif (work is None and self.project.holds_work(stage.name)
              and (note := stage.unfinished_note(self.project, self.spec))):  # e.g. shards copied in from other machines
            state = "unfinished"
            reasons.append(note)
        elif (work is not None and fp is not None and stage.name == "gradients"
              and self._shards_outlive_work_marker(stage, inputs)):  # an older run's marker beside this spec's shards
            state = "unfinished"
            reasons.append(stage.unfinished_note(self.project, self.spec) or "gradient shards for this run's inputs")
        elif work is not None and fp is not None and stage.name == "gradients" and _computed_shards(self.project):
            reasons.append(_SHARDS_REFUSED)
        elif work is not None and fp is not None:
            whose = ("was begun by an older subsetctl, which recorded its inputs otherwise (they may be the same)"
                     if self._work_of_an_older_subsetctl(stage) else "was for other inputs")
            reasons.append(f"earlier unfinished work {whose}; `run` "
                           + ("keeps what still applies and does the rest" if stage.partial_work_keyed
                              else "starts over"))
        elif work is not None:  # its inputs are known only once the stages before it re-run
            reasons.append("earlier unfinished work is resumed only if the stages before it that re-run come out "
                           "as before; else `run` "
                           + ("keeps what still applies and does the rest" if stage.partial_work_keyed
                              else "discards it and starts over"))
        return state, reasons

    def _spec_keys_changed(self, stage: Stage, manifest: dict[str, Any], inputs: dict[str, Any],
                           old_slice: dict[str, Any], unshared: list[str]) -> list[str]:
        """The spec keys whose values differ from those the run that made ``manifest``
        recorded (``old_slice``, without the keys ``unshared`` that only one subsetctl reads):
        as the fingerprint counts them now, and as the spec writes them, both. An earlier
        subsetctl recorded settings as written that this one counts at their defaults
        (``meta_init.checkpoint_every: 2``; ``verify.steps`` of a search no estimator of which
        reads it): such a key is no change of the spec, though its recorded value differs
        from the counted one."""
        counted, written = inputs["slice"], stage.raw_spec_slice(self.spec)
        source = same_model_folder_as_recorded(inputs, manifest)
        if source is not None:  # the same model files under another path: not a change, as for `run`
            counted, written = ({**s, "model": {**s["model"], "source": source}} if isinstance(s.get("model"), dict)
                                else s for s in (counted, written))
        old = {k: v for k, v in old_slice.items() if k not in unshared}

        def changed(new: dict[str, Any], recorded: dict[str, Any]) -> list[str]:
            return changed_keys(recorded, {k: v for k, v in new.items() if k not in unshared})

        as_written = set(changed(written, old))
        return [key for key in changed(counted, neutralized(old, self.spec.model.kind)) if key in as_written]

    def _changes(
        self, stage: Stage, manifest: dict[str, Any], inputs: dict[str, Any], rerun: set[str], force: set[str]
    ) -> tuple[list[str], list[str], bool]:
        """Why :meth:`plan` finds a stage's results stale (their fingerprint does not match):
        the reasons (spec keys changed, upstream changes, version, outputs missing ...), the
        outputs missing, and whether kept results would be put back if upstream comes out
        as before (then the re-run is conditional)."""
        reasons: list[str] = []
        old = manifest.get("inputs", {})
        old_slice = old.get("slice", {})
        nested = [path for path in _keys_no_longer_read(stage, old_slice) if len(path) == 2]  # estimate.lam
        old_slice = _without_keys(old_slice, nested)
        dropped = sorted([*(set(old_slice) - set(inputs["slice"])), *map(".".join, nested)])  # a newer subsetctl reads less
        added = sorted(set(inputs["slice"]) - set(old_slice)) if old_slice else []  # ... or more
        keys = self._spec_keys_changed(stage, manifest, inputs, old_slice, dropped + added)
        new_model, old_model = inputs["slice"].get("model"), old_slice.get("model")
        if ("model.revision" in keys and isinstance(new_model, dict) and isinstance(old_model, dict)
                and new_model.get("revision") != self.spec.model.revision):  # counted as the commit it resolves to
            keys = [key for key in keys if key != "model.revision"]  # (the spec's words may be as they were)
            reasons.append(f"model.revision {self.spec.model.revision} is commit {new_model.get('revision')} in the "
                           f"local Hugging Face cache now, and these results were made from "
                           f"{old_model.get('revision') or 'no model.revision'} (a branch or tag that moved, or "
                           "another revision set)")
        if keys:
            reasons.append(f"spec changed: {listed_briefly(keys)}" + overrides_note(manifest.get("overrides"), keys,
                                                                            written=typed_overrides(manifest))
                           + overrides_note(self.spec.command_line_overrides, keys, planned=True,
                                            written=self.spec.overrides_as_written))
        if dropped:
            reasons.append(f"this subsetctl no longer reads {listed_briefly(dropped)} for this stage (the spec "
                           "did not change)")
        if added:
            reasons.append(f"this subsetctl also reads {listed_briefly(added)} for this stage (the spec did "
                           "not change)")
        old_upstream = old.get("upstream", {})
        reaching = _rerun_reaching(stage, rerun, inputs)
        for up in stage.after:
            if up in reaching:
                reasons.append(f"upstream {up} will re-run")
            elif up in old_upstream and up not in inputs["upstream"]:  # its output no longer counts
                reasons.append(f"upstream {up} switched off in the spec")
            elif old_upstream and up not in old_upstream and up in inputs["upstream"]:
                reasons.append(f"upstream {up} switched on in the spec")
            elif old_upstream.get(up) != inputs["upstream"].get(up):
                reasons.append(f"upstream {up} changed")
        lacking: frozenset[str] = frozenset()  # (a classifier's data prepared by an earlier subsetctl, kept: no class counts)
        if stage.name == "report" and self.spec.model.kind == "classifier" and "data" not in rerun:
            from subsetctl.report.build import data_counts_classes

            lacking = frozenset() if data_counts_classes(self.project) else frozenset({"classes"})
        extra_now = as_recorded(old.get("extra"), inputs["extra"],
                                lambda: stage.earlier_extra_inputs(self.spec, self.project))
        extra = changed_inputs(old.get("extra"), extra_now,
                               model_known_by_name(old, manifest, self.spec.model.source, self.project.root),
                               len(self.spec.sources), self.spec.model.kind, lacking, report_format_apart=True)
        if extra:
            reasons.append(extra)
        # a reason of its own: `report` tells it from one saying this subsetctl reads the inputs otherwise
        written_by = report_format_change(old.get("extra"), extra_now, len(self.spec.sources), self.spec.model.kind,
                                          lacking)
        if written_by:
            reasons.append(written_by)
        gone = self._model_folder_gone(old, inputs["extra"])
        if gone is not None:  # said as such: the spec's text may be as it was ("inputs changed")
            reasons.append(f"the model folder it was made from is not there any more: {gone} holds no "
                           f"model (model.source: {as_typed(self.spec.model.source)}). Copy the folder there, "
                           "or set model.source to where it is now")
        missing = stage.missing_outputs(self.project, manifest)
        if missing:  # runs whatever its upstream produces: not conditional
            reasons.append(outputs_gone(self.project, missing))
        if old.get("version") != inputs["version"]:
            reasons.append(f"this subsetctl computes results otherwise than the one that made these "
                           f"(results version {old.get('version')} -> {RESULTS_VERSION})")
        if not reasons:
            reasons.append("inputs changed")
        own = not set(reasons) <= {f"upstream {u} will re-run" for u in reaching}
        waiting = (self._kept_if_upstream_as_before(stage, inputs, rerun)
                   if own and stage.name not in force else None)
        if waiting:  # as `run` does: kept results made from what upstream will produce again go back
            # (a stage with no change of its own is conditional anyway, said below)
            where, ups = waiting
            reasons.append(f"{KEPT_WHAT[where]} match the spec if what upstream {', '.join(ups)} will "
                           "re-run to produce is what they were made from: `run` then puts them back")
        return reasons, missing, waiting is not None

    def run(
        self,
        until: str | None = None,
        force: set[str] | None = None,
        options: dict[str, Any] | None = None,
        on_stage: Callable[[str, str], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Run every stale stage in order (up to ``until``) under the project lock, then delete
        the stored specs no results name and keep the caches and previous result sets within
        their limits. Returns what each stage did: ``{"stage", "action", "seconds"}``, the
        action "ran", "up to date" (with ``"put_back": True`` for kept results put back),
        "partial" (its work continues in a later run) or "disabled".

        With ``options["shard"] = (i, N)`` only shard i of N of the gradients stage is
        computed (see :meth:`_run_shard`)."""
        from subsetctl.modeling.resolve import forget_notices_given
        from subsetctl.project import check_arrow_can_open

        force = force or set()
        options = options or {}
        self._run_spec = None  # stored afresh by each run (the last one's copy may have been pruned since)
        self._check_stage_options(until, force)
        check_arrow_can_open(self.project.root)
        forget_notices_given()  # said once per run, not once per process (a notebook's second run)
        if (hidden := self.project.umask_hides_from_team()) is not None:  # (a `--shard` run's too)
            self.reporter.warn(hidden)
        if options.get("shard") is not None:
            return self._run_shard(until, force, options, on_stage)
        with self.project.lock(notice=self.reporter.warn):
            started = self._cache_clock()
            results = self._run_stages(until, force, options, on_stage)
            self._trim_kept(started)
            return results

    def _cache_clock(self) -> int | None:
        """When this run started, by the cache's clock (:meth:`Project.cache_clock`), where
        ``project.cache_limit_gb`` asks for the caches to be trimmed (None: they are not)."""
        return self.project.cache_clock() if self.spec.project.cache_limit_gb is not None else None

    def _trim_kept(self, started_ns: int | None) -> None:
        """Once a run's stages are done, under the exclusive lock: what the project keeps
        besides its results within the spec's limits. The oldest previous sets beyond
        ``project.keep_previous`` (a lowered number: after the sets the spec matches were
        put back), the caches within ``cache_limit_gb`` (``started_ns``: :meth:`_cache_clock`),
        the previous sets within ``keep_previous_gb``; last, the stored specs no kept
        results name any more."""
        limits = self.spec.project
        self.project.limit_all_previous(limits.sets_to_keep)
        if limits.cache_limit_gb is not None and started_ns is not None:
            self._trim_caches(limits.cache_limit_gb, started_ns)
        if limits.keep_previous_gb is not None:
            self._trim_previous(limits.keep_previous_gb)
        self.project.prune_resolved_specs()  # those of results no longer kept

    def _trim_previous(self, limit: float) -> None:
        """Keep the earlier result sets within ``project.keep_previous_gb``: those kept least
        recently go first (a set put back by this run is no longer among them)."""
        removed, freed = self.project.prune_previous(int(min(limit * 1e9, 2.0**63)))
        if removed:
            self.reporter.info(f"[dim]previous results: deleted the {removed} set{'' if removed == 1 else 's'} kept "
                               f"least recently ({size_text(freed)}) to stay within project.keep_previous_gb="
                               f"{limit:g}[/dim]")

    def _trim_caches(self, limit: float, started_ns: int) -> None:
        """Keep the caches within ``project.cache_limit_gb``: the entries used least
        recently go first, never those this run used or wrote."""
        # a limit of 1e300 GB or more is infinite in bytes, which int() refuses: no practical limit
        removed, freed = self.project.prune_caches(int(min(limit * 1e9, 2.0**63)), keep_since_ns=started_ns)
        if removed:
            self.reporter.info(f"[dim]caches: deleted {removed} entr{'y' if removed == 1 else 'ies'} used least "
                               f"recently ({size_text(freed)}) to stay within project.cache_limit_gb={limit:g}[/dim]")

    def _run_shard(
        self, until: str | None, force: set[str], options: dict[str, Any],
        on_stage: Callable[[str, str], None] | None,
    ) -> list[dict[str, Any]]:
        """`run --shard i/N`: the stages before gradients (when one must run) under the
        exclusive lock, which also readies the gradients folder; then shard i of the
        gradient rows under the shared lock, so that shards started at once on several
        GPUs or machines sharing the project directory run side by side. A plain `run`
        afterwards merges the complete shards. ``until`` before gradients is refused: a
        shard run always goes as far as its shard (``--until gradients`` or later changes
        nothing)."""
        self._refuse_shard_options(until, force)
        names = self.stage_names()
        before = names[names.index("gradients") - 1]
        gradients = self.stages[names.index("gradients")]
        upstream = names[: names.index("gradients")]
        results: list[dict[str, Any]] = []

        def planned() -> dict[str, StageStatus]:
            return {s.name: s for s in self.plan(until="gradients")}

        def puts_back(statuses: dict[str, StageStatus]) -> bool:
            return any(statuses[name].put_back for name in (*upstream, "gradients"))

        def prepares(statuses: dict[str, StageStatus]) -> bool:
            status = statuses["gradients"]
            ready = status.state != "corrupt" and (
                not status.will_run or self._work_fingerprint(gradients) == status.fingerprint)
            return not ready or any(statuses[name].will_run for name in upstream)

        statuses = planned()
        if puts_back(statuses) and (held := self._shard_preparation_lock(lambda: puts_back(planned()))) is not None:
            with held:  # shard runs never move folders themselves
                self.project.finish_interrupted_moves(self.spec.project.sets_to_keep)
                self._put_back_kept_until(until="gradients")
            statuses = planned()
        if prepares(statuses) and (held := self._shard_preparation_lock(lambda: prepares(planned()))) is not None:
            with held:
                results = self._run_stages(before, set(), {}, on_stage)
                status = {s.name: s for s in self.plan(until="gradients")}["gradients"]
                if status.state == "corrupt":  # never resume shards next to damaged artifacts
                    self.project.reset_stage(gradients.name)
                if status.will_run and self._work_fingerprint(gradients) != status.fingerprint:
                    self._refuse_discarding_shards(gradients, status.fingerprint, status.inputs or {}, shard_run=True)
                    self._prepare_work_dir(gradients, status.fingerprint, status.inputs or {})
        with self.project.lock(notice=self.reporter.warn, shared=True, shard=True, waiting=self.reporter.info):
            started = self._cache_clock()  # (written under the lock: the state folder's links refused first)
            shard_results = self._run_stages("gradients", set(), options, on_stage, shared=True)
        self._trim_kept_after_shard(started)
        done = {r["stage"] for r in results}
        return results + [r for r in shard_results if r["stage"] not in done]

    def _trim_kept_after_shard(self, started_ns: int | None) -> None:
        """After a shard run's shard: :meth:`_trim_kept`, as a plain run does, under the
        exclusive lock taken as a shard run takes it (shard runs starting meanwhile wait), so
        never while other shard runs compute theirs (the last one to finish trims) nor
        while a plain run holds the project (it trims itself)."""
        try:
            held = self._shard_preparation_lock(lambda: False)
        except LockedError:  # a plain `run` took the project since: it keeps the limits
            return
        if held is not None:  # None: other shard runs still hold the project
            with held:
                self._trim_kept(started_ns)

    def _run_command(self, options: str = "") -> str:
        """The `subsetctl run` command a message advises: this project, ``options`` and this run's
        overrides, as typed (without them it would run another variant, the spec's alone). The
        project as the command line named it (the CLI's own advice names it so too); its
        absolute folder for a caller of the API, whose relative path was from its own folder."""
        named = self.project.named_as
        shown = str(self.project.root) if named is None else worded(named, str(self.project.root))
        typed = [as_written(item, self.spec.overrides_as_written) for item in self.overrides]
        return run_command(shown, options, typed)

    def _refuse_shard_options(self, until: str | None, force: set[str]) -> None:
        """A UserError for what a shard run cannot do (:meth:`_run_shard`): a pipeline without
        gradients, an ``until`` before gradients, any ``force`` (forcing a stage while other
        shards run would delete their work), each saying what to run instead."""
        names = self.stage_names()
        if "gradients" not in names:
            raise UserError("--shard splits the gradients stage, which this pipeline does not have.")
        before = names[names.index("gradients") - 1]
        # the options as the caller gave them: `--shard` on the command line, options["shard"] in Python
        shard_option = worded("--shard", "options['shard']")
        if until is not None and names.index(until) < names.index("gradients"):
            raise UserError(
                f"{worded(f'--until {until}', f'until={until!r}')} stops before the gradients stage, of which "
                f"{shard_option} computes a shard, so the two cannot be combined. `{self._run_command(f'--until {until}')}` "
                "(without --shard) runs the stages up to it; or leave "
                f"out {worded('--until', 'until')} to compute the shard."
            )
        if force:
            # a stage before gradients can be forced in a run that stops before it; gradients and
            # later stages only in a plain run (--until before gradients would refuse them)
            forced = sorted(force, key=names.index)
            earlier = [name for name in forced if names.index(name) < names.index("gradients")]
            later = [name for name in forced if name not in earlier]
            advice = []
            if earlier:
                forced_first = " ".join([*(f"--force {n}" for n in earlier), f"--until {before}"])
                advice.append(f"Run `{self._run_command(forced_first)}` first, then the shards")
            if later:
                several = len(later) > 1
                advice.append(f"{', '.join(f'--force {n}' for n in later)} {'go' if several else 'goes'} with a plain "
                              f"`{self._run_command()}` (without --shard), which computes {'them' if several else 'it'} "
                              "itself")
            raise UserError(
                f"{worded('--force', f'force={forced!r}')} cannot be combined with {shard_option} (forcing a stage "
                f"while other shards run would delete their work). {'; '.join(advice)}."
            )

    def _refuse_discarding_shards(self, stage: Stage, fp: str | None, inputs: dict[str, Any], shard_run: bool) -> None:
        """A run whose inputs differ from those of the gradient shards already computed
        (another spec or other overrides than theirs: a shard run's on one machine, or the
        plain run meant to merge them) would discard their rows to start its own: refused,
        naming the shards, what differs and what to do (`--force gradients` discards them).
        Shards all of this run's settings beside an older run's work marker (shards copied in
        from other machines, or computed since with this spec) are kept for the merge instead,
        and the rest of that run's work discarded."""
        if self.project.read_manifest(stage.name) is not None or self._work_matches(stage, fp, inputs):
            return
        shards = _computed_shards(self.project)
        if not shards:
            return
        other = _shards_of_other_settings(self.project, self.spec)
        marker = self._work_fingerprint(stage)
        if marker is None and not any(label in other for label, _ in shards):
            return  # copied in from other machines without work.json: the merge checks each shard's full info
        if marker is not None and self._shards_outlive_work_marker(stage, inputs, shards, other):
            self.reporter.info(f"[dim]{stage.name}: the earlier run's work was for other inputs; the shards here are "
                               "for this run's and are kept to be merged[/dim]")
            out_dir = self.project.stage_dir(stage.name)
            for path in out_dir.iterdir():  # the marker and that run's own rows: _prepare_work_dir starts afresh
                if path.name == "shards":
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            return
        ours = [label for label, _ in shards if label not in other]
        old = self.project.read_work_marker(stage.name).get("inputs")
        old = old if isinstance(old, dict) else {}
        old_slice, new_slice = old.get("slice"), inputs.get("slice")
        keys = changed_keys(old_slice, new_slice) if isinstance(old_slice, dict) and isinstance(new_slice, dict) else []
        ups = [up for up in stage.after if (old.get("upstream") or {}).get(up) != (inputs.get("upstream") or {}).get(up)]
        what = [f"settings {listed_briefly(keys)}"] if keys else []
        what += [f"the results of {listed_briefly(ups)}"] if ups else []
        what += [] if what else ["their model or data files"]
        if marker is None:  # no earlier run's inputs to compare: each shard's own record says what differs
            what = [f"shard {label}: {other[label]}" for label, _ in shards if label in other]
        held = ", ".join(f"shard {label}: {rows:,} row{'s' if rows != 1 else ''}" for label, rows in shards)
        raise UserError(
            f"The gradient shards computed so far ({held}) are for other inputs than this run's (differing: "
            f"{'; '.join(what)}), and this {'shard run' if shard_run else 'run'} would discard their rows to start "
            + ("over. Start every shard with the spec and overrides the others were started with. To discard those "
               f"rows and start the shards over with this spec, delete {shell_arg(self.project.stage_dir(stage.name) / 'shards')} "
               "first, then start the shards again." if shard_run else
               "over instead of merging them. Run with the spec and overrides the shards were started with to merge "
               f"them; or add --force {stage.name} to discard those rows and compute the stage with this spec.")
            + (f" Shard{'s' if len(ours) > 1 else ''} {', '.join(ours)} {'are' if len(ours) > 1 else 'is'} of this "
               f"run's settings: to merge {'them' if len(ours) > 1 else 'it'} and discard only the others, delete "
               + " and ".join(shell_arg(self.project.stage_dir(stage.name) / "shards" / "shard-{}-of-{}".format(
                   *label.split("/"))) for label, _ in shards if label in other) + " first."
               if ours and len(ours) < len(shards) else "")  # (none of other settings: nothing to delete)
        )

    def _shards_outlive_work_marker(self, stage: Stage, inputs: dict[str, Any],
                                    shards: list[tuple[str, int]] | None = None,
                                    other: dict[str, str] | None = None) -> bool:
        """Whether every gradient shard holding rows is of this run's inputs (``inputs``)
        though the stage's work marker is of others': its data results this run's (the
        marker's, or, where the data changed since, those the shard records it was computed
        from: shards computed elsewhere since), and its settings and meta_init's adapter as
        the spec and meta_init tell them (the merge checks each shard's full info again). An older run's marker left beside
        shards copied in from other machines is no reason to refuse, or to discard them.
        ``shards`` and ``other``: :func:`_computed_shards` and :func:`_shards_of_other_settings`
        when the caller has read them already (each reads every shard's files)."""
        from subsetctl.stages.gradients import shards_data

        old = self.project.read_work_marker(stage.name).get("inputs")
        old_data = (old.get("upstream") or {}).get("data") if isinstance(old, dict) else None
        data = (inputs.get("upstream") or {}).get("data")
        shards = _computed_shards(self.project) if shards is None else shards
        if old_data is None or old_data != data:  # each shard must say it was computed from this run's data
            recorded = shards_data(self.project)
            if data is None or not shards or any(recorded.get(label) != data for label, _ in shards):
                return False
        other = _shards_of_other_settings(self.project, self.spec) if other is None else other
        return not any(label in other for label, _ in shards)

    def _shard_preparation_lock(self, needed: Callable[[], bool]) -> contextlib.ExitStack | None:
        """The exclusive lock for what a shard run does before its shard (the stages before
        gradients, putting kept results back), taken as a shard run takes it: it waits while
        another shard run holds it for the same work, which leaves nothing to do here (the
        caller's block finds everything up to date). None, holding nothing, when shard runs
        already hold the lock shared: that work was done before they started, unless
        ``needed()`` (asked again now) says otherwise, e.g. the spec changed since, and
        then the LockedError stands."""
        held = contextlib.ExitStack()
        try:
            held.enter_context(self.project.lock(notice=self.reporter.warn, shard=True, waiting=self.reporter.info))
        except LockedError as exc:
            if exc.holder != "shards":
                raise
            if needed():  # the running shards' work was prepared for other inputs than this run's
                from subsetctl.stages.gradients import running_shards

                running = ", ".join(running_shards(self.project)) or "other shards"
                raise LockedError(
                    f"Shard runs ({running}) are computing the gradients of {self.project.root} now, for other inputs "
                    "than this run's: its spec, overrides or data files differ from theirs, and it would have to change what "
                    "they rely on (a stage before gradients, the gradients folder). Start every shard with the spec "
                    "and overrides the running ones were started with; `plan` and `report` work meanwhile.",
                    holder="shards") from exc
            return None
        return held

    def _run_stages(
        self,
        until: str | None,
        force: set[str],
        options: dict[str, Any],
        on_stage: Callable[[str, str], None] | None,
        shared: bool = False,
    ) -> list[dict[str, Any]]:
        """The stage loop of :meth:`run`, under a lock the caller holds. ``shared`` (shard
        runs, holding the lock shared): stages before ``until`` must already be up to
        date, and ``until``'s folder is used as it is, never reset."""
        results: list[dict[str, Any]] = []
        digests: dict[str, str | None] = {}
        ran = False  # whether a stage ran in this run (a stage showing their seconds runs again)
        if not shared:
            self.project.finish_interrupted_moves(self.spec.project.sets_to_keep)
            if not self.spec.project.sets_to_keep:  # switched off: the disk they take is wanted back
                self.project.drop_previous()
        for stage in self.stages:
            if not stage.enabled(self.spec):
                results.append({"stage": stage.name, "action": "disabled", "seconds": 0.0})
                continue
            fp, inputs = self._current(stage, digests)
            put_back = not shared and stage.name not in force and self._put_back_kept(stage, fp, inputs)
            manifest = self.project.read_manifest(stage.name)
            if (not (stage.shows_stage_seconds and ran)
                    and self._still_up_to_date(stage, manifest, fp, inputs, force, until, shared)):
                assert manifest is not None
                digests.update(_digests_of(stage.name, manifest))
                results.append({"stage": stage.name, "action": "up to date", "seconds": 0.0,
                                **({"put_back": True} if put_back else {})})
            else:
                manifest = self._run_again(stage, manifest, fp, inputs, force, options, on_stage, shared, digests)
                if manifest is None:
                    results.append({"stage": stage.name, "action": "partial", "seconds": 0.0})
                    break
                digests.update(_digests_of(stage.name, manifest))
                results.append({"stage": stage.name, "action": "ran", "seconds": manifest["seconds"]})
                ran = True
            if until is not None and stage.name == until:
                break
        return results

    def _still_up_to_date(self, stage: Stage, manifest: dict[str, Any] | None, fp: str | None,
                          inputs: dict[str, Any], force: set[str], until: str | None, shared: bool) -> bool:
        """Whether :meth:`_run_stages` can keep ``stage``'s results as they are: its
        manifest matches the current inputs, it is not forced, its artifacts pass their
        checksums and no output is missing. On the way, a corrupt manifest or artifacts
        failing their checksums are discarded (with a warning) so the run starts the stage
        afresh, never resuming from them; a shard run (``shared``) refuses instead, since
        the other shards rely on what came before the sharded stage."""
        up_to_date = (
            manifest is not None
            and not manifest.get("corrupt")
            and self._fingerprint_matches(stage, manifest, fp, inputs)
            and stage.name not in force
        )
        if shared and not up_to_date and stage.name != until:
            raise UserError(
                f"Stage {stage.name} changed while shards were starting (another `run` on this project?). "
                "Start the shard again."
            )
        if shared and manifest is not None and manifest.get("corrupt"):
            raise UserError(f"Stage {stage.name}'s manifest.json became unreadable while shards were "
                            "starting; start the shard again.")
        if manifest is not None and manifest.get("corrupt"):
            # nothing it lists can be verified: never resume from those artifacts
            self.reporter.warn(
                f"Stage {stage.name}: its manifest.json is unreadable (corrupt); discarding the "
                "stage's artifacts and re-running it."
            )
            self.project.reset_stage(stage.name)
        if not up_to_date:
            return False
        assert manifest is not None
        if not self._checksums_hold(stage, manifest, until, shared):
            return False
        missing = stage.missing_outputs(self.project, manifest)
        if missing:
            from rich.markup import escape

            self.reporter.info(f"[dim]{stage.name}: {escape(outputs_gone(self.project, missing))}; running it again[/dim]")
            return False
        return True

    def _checksums_hold(self, stage: Stage, manifest: dict[str, Any], until: str | None, shared: bool) -> bool:
        """Whether the artifacts of ``stage``'s up-to-date results pass their checksums
        (file stamps of a copied or older project are recorded, so they are hashed once).
        Damaged ones are discarded with a warning (a resume would reuse the damaged rows);
        a shard run (``shared``) refuses instead, naming the ``run --until`` that redoes
        them: resetting the stage would pull the ground from under the other shards."""
        restamped: dict[str, list[int]] = {}
        problems = verify_checksums(self.project.stage_dir(stage.name), manifest.get("artifacts", {}), restamped)
        if restamped and not problems and not shared:  # copied or older: hashed once, not every time
            self.project.restamp_manifest(stage.name, restamped)
        elif not problems and (held := _run_checks.held) is not None:  # (restamped: read again, checked again)
            held[("checksums", stage.name, id(manifest))] = (manifest, None)
        if problems and shared:  # resetting it would pull the ground from under the other shards
            # a stage before the sharded one: a run up to the stage just before it redoes
            # whatever that needs; the sharded stage itself (committed): a run up to it
            names = self.stage_names()
            redo = stage.name if stage.name == until else names[names.index(str(until)) - 1]
            raise UserError(
                f"Stage {stage.name}: artifacts fail their checksums ({'; '.join(problems[:3])}). Stop the "
                f"shard runs, then `{self._run_command(f'--until {redo}')}` recomputes "
                "it; start the shards again."
            )
        if problems:
            self.reporter.warn(
                f"Stage {stage.name}: artifacts fail their checksums ({'; '.join(problems[:3])}); "
                "discarding them and re-running the stage."
            )
            self.project.reset_stage(stage.name)  # a resume would reuse the damaged rows
            return False
        return True

    def _run_again(self, stage: Stage, manifest: dict[str, Any] | None, fp: str | None, inputs: dict[str, Any],
                   force: set[str], options: dict[str, Any], on_stage: Callable[[str, str], None] | None,
                   shared: bool, digests: dict[str, str | None]) -> dict[str, Any] | None:
        """Run ``stage``, whose results are not up to date (``manifest``: what its folder
        held, if anything): first refuse a hub id standing for a model folder that is gone;
        with ``--force``, keep results of other inputs as previous ones and start from an
        empty folder (no resume, no cached results). The new manifest, or None when the
        stage stopped partway (a shard)."""
        if fp is None:
            fp, inputs = self._current(stage, digests)
        replaced = (manifest if manifest is not None and not manifest.get("corrupt")
                    else self.project.read_set_aside_manifest(stage.name))  # (set aside by a run that stopped)
        stage_options = options
        if manifest is not None and not manifest.get("corrupt") and not self._model_stage_forced(force):
            self._refuse_a_hub_id_for_a_gone_folder(stage, manifest, inputs)
        if stage.name in force:  # --force means recompute: not resume, nor reuse cached results
            self._keep_other_inputs_results(stage, fp, inputs)
            self.project.reset_stage(stage.name)
            stage_options = {**options, "forced": True}
        return self._run_stage(stage, fp, inputs, stage_options, on_stage, shared, replaced)

    def _kept_candidates(self, stage: Stage, fp: str | None,
                         inputs: dict[str, Any]) -> list[tuple[str, dict[str, Any], Path]]:
        """The finished results of ``stage`` kept out of its folder that could stand for it:
        set-aside ones ("set-aside") when it has no committed results of its own, previous
        sets ("previous", the most recent first) when it has none matching ``fp``, each with
        its manifest and folder."""
        out: list[tuple[str, dict[str, Any], Path]] = []
        if not stage.keeps_results:
            return out
        own = self.project.read_committed_manifest(stage.name)  # a damaged manifest is no commit
        aside = self.project.read_set_aside_manifest(stage.name) if own is None else None
        if aside is not None:
            out.append(("set-aside", aside, self.project.set_aside_dir(stage.name)))
        own_matches = own is not None and self._fingerprint_matches(stage, own, fp, inputs)
        # with keep_previous off, `run` deletes them before it starts: they never come back
        wanted = bool(self.spec.project.sets_to_keep) and not own_matches
        out += [("previous", manifest, folder)
                for folder, manifest in (self.project.read_previous_manifests(stage.name) if wanted else [])]
        return out

    def _keep_other_inputs_results(self, stage: Stage, fp: str | None, inputs: dict[str, Any]) -> None:
        """Before a forced run: the stage's finished results of other inputs, in its folder
        or set aside by a failed run, become its previous ones (as a plain run keeps the
        results it replaces), not deleted; set-aside results of these very inputs are
        dropped (forced means recomputed, and an interrupted forced run must not have
        them put back over its partial work)."""
        keep = self.spec.project.sets_to_keep if stage.keeps_results else 0
        own = self.project.read_committed_manifest(stage.name)
        if keep and own is not None and not self._fingerprint_matches(stage, own, fp, inputs):
            self.project.add_previous(stage.name, self.project.stage_dir(stage.name), keep)
        aside = self.project.read_set_aside_manifest(stage.name)
        if keep and aside is not None and not self._fingerprint_matches(stage, aside, fp, inputs):
            self.project.keep_as_previous(stage.name, keep)
        else:
            self.project.drop_set_aside(stage.name)

    def _kept_matching(self, stage: Stage, fp: str | None,
                       inputs: dict[str, Any]) -> tuple[str, dict[str, Any], Path] | None:
        """Where (``"set-aside"`` or ``"previous"``) kept results of ``stage`` made with the
        current inputs are, their manifest and folder; None when there are none, or their
        files fail their checksums."""
        if fp is None:
            return None
        for where, manifest, folder in self._kept_candidates(stage, fp, inputs):
            if self._kept_usable(stage, folder, manifest, fp, inputs):
                return where, manifest, folder
        return None

    def _kept_usable(self, stage: Stage, folder: Path, manifest: dict[str, Any], fp: str,
                     inputs: dict[str, Any]) -> bool:
        """Whether kept results (in ``folder``) were made with inputs ``fp`` and their files pass their checksums."""
        return (self._fingerprint_matches(stage, manifest, fp, inputs)
                and not verify_checksums(folder, manifest.get("artifacts", {})))

    def _kept_if_upstream_as_before(self, stage: Stage, inputs: dict[str, Any],
                                    rerun: set[str]) -> tuple[str, list[str]] | None:
        """Where kept results of ``stage`` (set aside when it has no finished results of its
        own, or previous) are that match the spec provided the upstream stages that will
        re-run produce the outputs those results were made from, and those upstream stages
        (e.g. a change that re-ran data, then failed in meta_init, was undone: data re-runs,
        and its output is the one meta_init's set-aside results were made from); else None."""
        waiting = _rerun_reaching(stage, rerun, inputs)
        if not waiting:
            return None
        for where, manifest, folder in self._kept_candidates(stage, None, inputs):
            recorded = manifest.get("inputs", {}).get("upstream", {})
            supposed = {**inputs, "upstream": {**inputs["upstream"], **{up: recorded.get(up) for up in waiting}}}
            if any(v is None for v in supposed["upstream"].values()):
                continue
            if self._kept_usable(stage, folder, manifest, fingerprint(supposed), supposed):
                return where, waiting
        return None

    def _put_back_kept_until(self, until: str) -> None:
        """Put back the kept results (set aside, or previous) of every stage up to ``until``
        that match the spec, in order (a stage's inputs include its upstream stages' outputs)."""
        digests: dict[str, str | None] = {}
        for stage in self.stages:
            if stage.enabled(self.spec):
                fp, inputs = self._current(stage, digests)
                self._put_back_kept(stage, fp, inputs)
                manifest = self.project.read_manifest(stage.name)
                digests.update(_digests_of(stage.name, manifest))
            if stage.name == until:
                return

    def _put_back_kept(self, stage: Stage, fp: str | None, inputs: dict[str, Any]) -> bool:
        """Put back the finished results a run with other inputs set aside and did not
        replace (it stopped with an error, or was interrupted), or the stage's previous
        results, when the spec has come back to their inputs: nothing already computed is
        lost to a failed change or recomputed when going back. True when it put some back."""
        kept = self._kept_matching(stage, fp, inputs)
        if kept is None:
            return False
        if kept[0] == "set-aside":
            replace_dir(self.project.set_aside_dir(stage.name), self.project.stage_dir(stage.name))
            self.project.tidy_set_aside()
            self.reporter.info(f"[dim]{stage.name}: its earlier results match the spec again; put back (set aside "
                               "when a run with other inputs stopped before finishing)[/dim]")
            return True
        own = self.project.read_manifest(stage.name)
        keep = self.spec.project.sets_to_keep
        partial = own is None and self.project.stage_dir(stage.name).exists()
        self.project.swap_in_previous(stage.name, kept[2], keep_current=bool(keep) and own is not None
                                      and not own.get("corrupt"), keep=keep)
        if keep and own is None:  # finished results a failed run set aside are previous ones now
            self.project.keep_as_previous(stage.name, keep)
        self.reporter.info(f"[dim]{stage.name}: its results from an earlier run match the spec again; put back instead of "
                           "recomputed" + ("; discarding earlier partial work for other inputs" if partial else "")
                           + "[/dim]")
        return True

    def _work_fingerprint(self, stage: Stage) -> str | None:
        """The inputs fingerprint of the partial work in ``stage``'s folder (work.json), if any."""
        return self.project.read_work_marker(stage.name).get("fingerprint")

    def _work_of_an_older_subsetctl(self, stage: Stage) -> bool:
        """Whether the partial work in ``stage``'s folder is marked as an older subsetctl marked
        it: with a fingerprint of its inputs as that one counted them, not the inputs. When it
        does not match, "for other inputs" would be a guess (often they are the same spec and
        files, recorded otherwise: before the model folder's files were)."""
        return "inputs" not in self.project.read_work_marker(stage.name)

    def _work_matches(self, stage: Stage, fp: str | None, inputs: dict[str, Any]) -> bool:
        """Whether the partial work in ``stage``'s folder was computed from these inputs:
        its work marker records ``fp``, or records inputs that
        :meth:`_fingerprint_matches` takes as these (the same local model folder under
        another path, neutral settings as an earlier version counted them). Markers of
        earlier versions record the fingerprint only: that of the spec's settings as written
        (before neutral settings counted at their defaults), which is tried too."""
        marker = self.project.read_work_marker(stage.name)
        if fp is None or marker.get("fingerprint") is None:
            return False
        if marker["fingerprint"] == fp:
            return True
        return isinstance(marker.get("inputs", {}), dict) and self._fingerprint_matches(stage, marker, fp, inputs)

    def _prepare_work_dir(self, stage: Stage, fp: str | None, inputs: dict[str, Any]) -> bool:
        """Ready ``stage``'s folder for a run with inputs ``fp``: partial work for other
        inputs is discarded (work for the same inputs under another fingerprint, e.g. from
        a model folder since moved, is resumed), the commit point removed, and the inputs
        recorded (work.json). Whether the run resumes unfinished work (an earlier run's
        stopped partway, or shards'): it then takes only the time the rest takes."""
        self.project.keep_lock_in_place()
        out_dir = self.project.stage_dir(stage.name)
        work_marker = out_dir / WORK_MARKER
        if work_marker.exists() and not work_marker.is_file():  # damaged (e.g. a folder): start clean
            self.project.reset_stage(stage.name)
        unfinished = work_marker.is_file() and self.project.read_manifest(stage.name) is None
        if work_marker.is_file() and not self._work_matches(stage, fp, inputs):
            manifest = self.project.read_manifest(stage.name)
            if manifest is None and stage.partial_work_keyed:  # the stage takes what still applies
                self.reporter.info(f"[dim]{stage.name}: inputs changed since a run stopped partway; the work it "
                                   "did that still applies is kept[/dim]")
            elif manifest is None:  # an unfinished run, not a finished stage
                if self.project.holds_work(stage.name):  # not a run that failed before computing anything
                    why = ("begun by an older subsetctl, which recorded its inputs otherwise"
                           if self._work_of_an_older_subsetctl(stage) else "inputs changed")
                    self.reporter.info(f"[dim]{stage.name}: {why}, discarding earlier partial work[/dim]")
                self.project.reset_stage(stage.name)
            elif manifest.get("corrupt") or not stage.keeps_results:
                self.project.reset_stage(stage.name)
            else:  # finished results: kept until the new run commits (a failure must not lose them)
                aside = self.project.set_aside_dir(stage.name)
                aside.parent.mkdir(parents=True, exist_ok=True)
                replace_dir(out_dir, aside)
        self.project.invalidate(stage.name)
        out_dir.mkdir(parents=True, exist_ok=True)
        resumes = unfinished and self.project.holds_work(stage.name)
        atomic_write_json(work_marker, {"fingerprint": fp, "inputs": inputs,  # pid: `plan` says "running"
                                        "pid": os.getpid(), "host": socket.gethostname(),
                                        # the spec this run read as it started: `plan` names what was edited since
                                        "resolved_spec": self._resolved_spec_digest()})
        return resumes

    def _resolved_spec_digest(self) -> str:
        """The digest of the resolved spec this run works with, stored as
        ``specs/<digest>.json`` (:meth:`~subsetctl.project.Project.keep_resolved_spec`), as
        each stage's work marker and manifest name it, and named in the lock file for `plan`
        (:meth:`~subsetctl.project.Project.note_run_spec`). Stored once a run (again only
        where the copy went missing since): each stage's start and end stored it, its 860 KB
        text made and the copy read and compared, ~0.27 s each at 2,000 sources, ~5 s a run."""
        from subsetctl.spec.dumps import spec_json

        if self._run_spec is None or not self.project.holds_stored_spec(self._run_spec):
            self._run_spec = self.project.keep_resolved_spec(spec_json(self.spec))
            self.project.note_run_spec(self._run_spec)
        return self._run_spec

    def _out_of_memory(self, stage: Stage, exc: BaseException) -> UserError | None:
        """The user error for ``stage`` when ``exc`` says it ran out of memory (see
        :func:`out_of_memory_error`), naming its memory settings as they are (and
        ``model.dtype: bfloat16`` for a 16-bit checkpoint held in float32) and what of its
        work a run resumes; else None."""
        dumped = self.spec.model_dump(mode="json")
        settings = {key: value for key in stage.memory_settings(self.spec) if (value := _dig(dumped, key)) is not None}
        accumulation = None
        if stage.accumulation_keys is not None:
            batch_key, accum_key = stage.accumulation_keys
            accumulation = (batch_key, accum_key, _dig(dumped, accum_key))
        from subsetctl.modeling.footprint import loads_model, stored_in_16_bits
        from subsetctl.spec.fingerprints import RESULT_NEUTRAL

        half_dtype = loads_model(stage.name, self.spec) and stored_in_16_bits(self.spec, self.project.root)
        resumable = None
        if stage.resumable_work is not None:  # the settings that leave its work's inputs as they are
            neutral = tuple(f"{section}.{key}" for section, keys in RESULT_NEUTRAL.items() for key in keys)
            resumable = (stage.resumable_work, neutral)
        return out_of_memory_error(exc, stage.name, settings, accumulation, half_dtype, resumable)

    def _project_gone(self, stage: Stage, before: tuple[int, int] | None) -> UserError | None:
        """The user error for the project's state folder gone while ``stage`` ran (the project
        deleted, moved or its disk unmounted); None while the folder it had when it started
        (``before``, :func:`_folder_identity`) is there. The stage then failed on a missing
        file with advice to re-run an upstream stage, or, when it finished, its results'
        writes made the folders anew and it was recorded as done in a project holding
        nothing else. A write after the deletion makes the folder anew: another folder,
        gone as much."""
        now = _folder_identity(self.project.state_dir)
        if now is not None and (before is None or now == before):
            return None
        return UserError(
            f"Stage {stage.name}: the project's state folder {self.project.state_dir} is gone while it ran (the "
            "project deleted or moved, or its disk unmounted), so there is nowhere to save its results. Put the "
            "project back where it was (or run it where it is now) and run again."
        )

    def _run_stage(
        self,
        stage: Stage,
        fp: str | None,
        inputs: dict[str, Any],
        options: dict[str, Any],
        on_stage: Callable[[str, str], None] | None,
        shared: bool = False,
        replaced: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Run ``stage`` in its folder (readied by :meth:`_prepare_work_dir`, resuming work of
        the same inputs ``fp``; ``shared``: a shard run's, used as it is; ``replaced``: the
        manifest of the finished results it replaces, if any) and commit it: its
        manifest (fingerprint, inputs, checksums, summary, warnings, versions) is written last.
        Returns the manifest; None when the run computed only part (one shard of the gradients).
        A failure is said as the user's where it is (the project folder gone, out of memory,
        inputs changed while it ran), else raised with the stage and folder noted."""
        out_dir = self.project.stage_dir(stage.name)
        if not shared and stage.name == "gradients":
            self._refuse_discarding_shards(stage, fp, inputs, shard_run=False)
        resumed = False if shared else self._prepare_work_dir(stage, fp, inputs)
        if shared and self._work_fingerprint(stage) != fp:
            raise UserError(
                f"Stage {stage.name}'s inputs changed while shards were starting (another `run` on this "
                "project?). Start the shard again."
            )
        if on_stage:
            on_stage(stage.name, stage.description)
        start = time.perf_counter()
        state_folder = _folder_identity(self.project.state_dir)
        recorder = StageWarnings(self.reporter)  # what it warns of goes into its manifest: the report shows it
        ctx = StageContext(self.spec, self.project, recorder, out_dir, options)
        try:
            if libraries := stage.imports_for(ctx):  # (a notebook's interrupt while they import leaves them half imported)
                from subsetctl.library_imports import import_whole

                import_whole(libraries)
            summary = stage.run(ctx)
        except Exception as exc:  # (torch's OutOfMemoryError is a RuntimeError)
            if (gone := self._project_gone(stage, state_folder)) is not None:  # whatever failed for want of its files
                raise gone from exc
            out_of_memory = (self._out_of_memory(stage, exc) if isinstance(exc, (OSError, MemoryError, RuntimeError, ImportError))
                             else None)
            if out_of_memory is not None:
                raise out_of_memory from exc
            if as_os_error(exc) is not None:  # a full disk often names no file: say which stage was writing where
                exc.add_note(f"stage {stage.name}, under {out_dir}")
            raise
        seconds = time.perf_counter() - start
        if (gone := self._project_gone(stage, state_folder)) is not None:  # writing its results would make the folder anew
            raise gone
        if summary.get("incomplete"):
            return None  # e.g. one shard of the gradients: nothing to commit yet
        if stage.inputs_rechecked and (now := stage.extra_inputs(self.spec, self.project)) != inputs.get("extra"):
            changed = changed_inputs(inputs.get("extra"), now) or "input files changed"
            raise UserError(
                f"Stage {stage.name}: its inputs changed while it ran ({changed}), so its results are not saved as "
                f"made from them as they were when the run started. Run `{self._run_command()}` again (what it "
                "prepared from unchanged files is reused)."
            )
        if (sliced := stage.spec_slice(self.spec)) != inputs["slice"]:
            # (a model.revision the hub cache did not hold when the stage started, downloaded by it: recorded
            # as the commit it resolves to now, as the next plan counts it, not left stale by the download)
            inputs = {**inputs, "slice": sliced}
            fp = fingerprint(inputs) if fp is not None else None
        resolved_spec = self._resolved_spec_digest()
        artifacts = artifact_checksums(out_dir, stage.scratch)
        outputs = _outputs(stage, artifacts)
        parts = {part: fingerprint(held) for part, held in stage.output_parts(outputs, summary).items()}
        as_before = _parts_as_before(stage, parts, replaced)
        # each override that named a search strategy or a source, as typed (the report shows it so)
        typed = {item: self.spec.overrides_as_written[item] for item in self.overrides
                 if item in self.spec.overrides_as_written}
        manifest = {
            "stage": stage.name,
            "fingerprint": fp,
            "inputs": inputs,
            "output_digest": fingerprint(outputs),
            **({"output_digests": parts} if parts else {}),
            **({PARTS_AS_BEFORE: as_before} if as_before else {}),
            "summary": summary,
            # (not an input of anything: a stage recorded before warnings were is as up to date)
            **({"warnings": recorder.warnings} if recorder.warnings else {}),
            "seconds": round(seconds, 3),
            # (its seconds are the rest's only: `plan` does not give them as the stage's time)
            **({"resumed": True} if resumed else {}),
            "overrides": self.overrides,  # (as recorded: a strategy or source named in a key, with its index)
            **({"overrides_as_written": typed} if typed else {}),
            "versions": library_versions(),
            "threads": thread_counts(),  # (not an input either: results differ in the last bits by it)
            "resolved_spec": resolved_spec,  # .subsetctl/specs/<this>.json
        }
        self.project.write_manifest(stage.name, manifest, artifacts)
        if self.spec.project.sets_to_keep and stage.keeps_results:  # the results this run replaced: put back if the spec returns to them
            self.project.keep_as_previous(stage.name, self.spec.project.sets_to_keep)
        else:
            self.project.drop_set_aside(stage.name)
        return manifest
