"""Helpers shared by the model stages: examples from the data stage, the base model
with a fresh LoRA adapter, training configs and progress wiring."""

from __future__ import annotations

import contextlib
import errno
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from subsetctl.errors import UserError, as_typed, shell_arg
from subsetctl.library_imports import MODEL_LIBRARIES
from subsetctl.pipeline import Stage, StageContext
from subsetctl.plan_reasons import before_last_clause
from subsetctl.project import Project
from subsetctl.reporter import AboutThisRun, resume_at
from subsetctl.spec import Spec, TrainSpec


class ModelStage(Stage):
    """A stage that loads the base model: a local model folder's files are among its inputs,
    so replacing the checkpoint at ``model.source`` makes it stale (see
    :func:`subsetctl.modeling.resolve.model_fingerprint_inputs`). So is, for a causal LM
    whose tokenizer marks a text's first word (SentencePiece-style), that its answers are
    tokenized after the prompt (:func:`subsetctl.modeling.resolve.answer_tokenization_inputs`):
    results computed before, on other ids, are stale."""

    imports_first = MODEL_LIBRARIES

    def spec_slice(self, spec: Spec) -> dict[str, Any]:
        """The slice, with ``model.revision`` as the commit it resolves to (:func:`model_at_commit`)."""
        sliced = super().spec_slice(spec)
        if isinstance(sliced.get("model"), dict):
            sliced["model"] = model_at_commit(sliced["model"], spec)
        return sliced

    def extra_inputs(self, spec: Spec, project: Project) -> dict[str, Any]:
        from subsetctl.modeling.resolve import answer_tokenization_inputs, model_fingerprint_inputs

        return {**model_fingerprint_inputs(spec.model.source, project.root),
                **answer_tokenization_inputs(spec.model.source, project.root, spec.model.kind)}

    def memory_estimate(self, spec: Spec, project: Project) -> tuple[int, str] | None:
        """:func:`subsetctl.modeling.footprint.estimate` of this stage."""
        from subsetctl.modeling.footprint import estimate

        return estimate(self.name, spec, project.root)

    def memory_note(self, spec: Spec, project: Project) -> str | None:
        """:func:`subsetctl.modeling.footprint.no_estimate_note` of this stage."""
        from subsetctl.modeling.footprint import no_estimate_note

        return no_estimate_note(self.name, spec, project.root)

    def time_estimate(self, spec: Spec, project: Project) -> tuple[float, str] | None:
        """:func:`subsetctl.modeling.duration.rough_time` of this stage, with its
        :meth:`rough_rows`."""
        from subsetctl.modeling.duration import rough_time

        return rough_time(self.name, spec, project.root, self.rough_rows(spec, project))

    def rough_rows(self, spec: Spec, project: Project) -> int | None:
        """The rows this stage works through, for its rough time, where they are what the
        data stage prepared (:data:`~subsetctl.modeling.duration.ROW_STAGES`); None here."""
        return None


def prepared_counts(project: Project) -> dict[str, dict[str, int]] | None:
    """The rows the data stage last prepared, by the target and each source and then split
    (``{"target": {"train": 10, "validation": 5, "test": 5}, ...}``, from its data.json, read
    without importing the data stage's module: it imports datasets, which plan must not);
    None where it has not prepared any, or the file is damaged."""
    import json

    try:
        counts = json.loads((project.stage_dir("data") / "data.json").read_text(encoding="utf-8"))["counts"]
        return {str(name): {str(split): int(n) for split, n in splits.items()} for name, splits in counts.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


#: the share of the free disk above which `plan` names the disk a stage's LoRA weights take
#: (:func:`lora_disk_note`): below it, a note on every plan would say nothing worth reading
DISK_NOTE_SHARE = 0.01


class LoraRoom(NamedTuple):
    """The disk a LoRA stage's weights ask for on one filesystem (:func:`lora_disk_left`)."""

    need: int  #: bytes
    free: int  #: bytes free there
    where: Path  #: the folder its free disk was measured in
    cache: bool  #: whether this is the adapter cache's disk alone (a link to another disk than the stage folder's)


def lora_disk_left(stage: str, spec: Spec, root: Path, folder: Path, fine_tunes: int | None = None,
                   resumes: bool = True) -> list[LoraRoom] | None:
    """The disk `run` checks stage ``stage`` (meta_init, finetune) has room for before it begins
    (:func:`check_lora_disk`), one :class:`LoraRoom` a filesystem, each with the free disk there:
    its LoRA checkpoints and adapters (:func:`~subsetctl.modeling.footprint.disk_shares`, finetune's
    for the ``fine_tunes`` it has yet to train, else as many as it may train), less the checkpoints in
    ``folder`` (its folder) of a run stopped partway where ``resumes`` (the stage resumes from and
    replaces them), measured in ``folder``; and finetune's adapters in the project's cache, measured
    there: the cache may link to another disk (README), which then gets a room of its own, second
    (all was measured against the stage folder's disk, so `run` refused for room the cache's disk
    had, or began with the cache's disk full). ``plan`` and ``doctor`` say `run` would stop where a
    need is over its free disk, so the three agree. None where the model's shape cannot be read
    without loading it."""
    from subsetctl.modeling.footprint import disk_shares, model_shape
    from subsetctl.project import STATE_DIRNAME, filesystem_of, free_disk_at
    from subsetctl.stages.finetune import ADAPTER_CACHE

    shape = model_shape(spec, root)
    if shape is None:
        return None
    in_folder, in_cache = disk_shares(stage, spec, shape, fine_tunes)
    held = sum(f.stat().st_size for f in folder.rglob("*")
               if f.is_file() and "checkpoints" in f.relative_to(folder).parts) if resumes and folder.is_dir() else 0
    rooms = [LoraRoom(in_folder - held, *free_disk_at(folder), cache=False)]
    if stage == "finetune":
        cache = LoraRoom(in_cache, *free_disk_at((root / STATE_DIRNAME).joinpath(*ADAPTER_CACHE)), cache=True)
        device = filesystem_of(cache.where)
        if device is not None and device == filesystem_of(rooms[0].where):
            rooms[0] = rooms[0]._replace(need=rooms[0].need + in_cache)
        else:
            rooms.append(cache)
    return rooms


def check_lora_disk(ctx: StageContext, name: str, fine_tunes: int | None = None) -> None:
    """Refuse to begin stage ``name`` (meta_init, finetune), running in ``ctx``, where a disk holding its folder
    or its adapter cache lacks room for its LoRA checkpoints and adapters (:func:`lora_disk_left`: finetune's
    for the ``fine_tunes`` it has yet to train, checkpoints of a run stopped partway counted as room), as
    the gradients stage refuses to begin its store: plan said `run` would stop there until there
    is room, but the stage began and failed partway with "no space left". Nothing is checked where
    the model's shape cannot be read without loading it."""
    from subsetctl.project import size_text

    rooms = lora_disk_left(name, ctx.spec, ctx.project.root, ctx.out_dir, fine_tunes)
    short = next((room for room in rooms or [] if room.need > room.free), None)
    if short is None:
        return
    what = ("checkpoints and adapter" if name == "meta_init" else
            "adapters in the cache" if short.cache else "adapters and checkpoints")
    raise UserError(
        f"The {name} stage's LoRA {what} need up to {size_text(short.need)} of disk but only {size_text(short.free)} "
        f"is free in {short.where}. Free disk space there and run again (finished stages, and the {name} stage's work "
        "so far, are kept), or lower model.lora.r (the model stages then run again)."
    )


def disk_note(needs: str, need: int, free: int, where: Path, lower: str, counted: str = "",
              left: int | None = None) -> str:
    """What plan says of the disk a stage asks for: "; {needs} {need} of disk" ("its store
    needs about 1.2 GB of disk"), and where less is ``free`` in ``where``, that `run` would
    stop at this stage until there is room, and what frees it (the setting to ``lower``): a
    run stopped there for want of room, maybe days in, that the plan could have named.
    ``counted`` (" (an adapter of ...)"), how the need was counted, follows the size.
    ``left``: what `run` checks against the free disk where that is less than ``need`` (a LoRA
    stage's, :func:`lora_disk_left`: the fine-tunes still to train, a stopped run's checkpoints
    as room), so that "would stop" is said only where `run` stops."""
    from subsetctl.project import size_text

    note = f"; {needs} {size_text(need)} of disk{counted}"
    check = need if left is None else left
    if free >= check:
        return note
    if check < need:
        note += f", {size_text(check)} of it still to take"
    return (f"{note}, and only {size_text(free)} is free in {where}: `run` would stop at this stage until there is "
            f"room (free disk space there, or lower {lower})")


def lora_disk_note(stage: str, spec: Spec, project: Project, fine_tunes: int | None = None,
                   resumes: bool = False) -> str:
    """What plan says of the disk ``stage``'s LoRA weights take at most (:func:`lora_disk_left`
    of every fine-tune, no checkpoint counted as room), where it
    is over :data:`DISK_NOTE_SHARE` of the free disk (:func:`disk_note`): "; its adapters and
    checkpoints need up to 3.1 GB of disk (an adapter of 0.6 GB in its folder and one in the
    cache for each of up to 5 fine-tunes ...)", saying how it counts
    (:func:`~subsetctl.modeling.footprint.disk_counted`: "up to" counts alike picks apart, which
    are trained once), and where less is free than `run` checks for (:func:`lora_disk_left`, with
    finetune's ``fine_tunes`` still to train where plan knows them, and a stopped run's
    checkpoints as room where ``resumes``), that `run` would stop there (a large model's
    fine-tunes, 0.6 GB an adapter, found it hours in); "" otherwise.
    Where the cache links to another disk, its adapters get a note of their own, measured there."""
    folder = project.stage_dir(stage)
    rooms = lora_disk_left(stage, spec, project.root, folder, resumes=False)
    if rooms is None or all(room.need <= DISK_NOTE_SHARE * room.free for room in rooms):
        return ""
    from subsetctl.modeling.footprint import disk_counted, model_shape

    shape = model_shape(spec, project.root)  # (read as lora_disk_left read it: its counted text)
    apart = any(room.cache for room in rooms)  # (the cache on a disk of its own: its share said apart)
    counted = f" ({disk_counted(stage, spec, shape, cache_apart=apart)})" if shape is not None else ""
    lefts = rooms if fine_tunes is None and not resumes else lora_disk_left(stage, spec, project.root, folder,
                                                                              fine_tunes, resumes)
    notes = []
    for at, room in enumerate(rooms):  # (the same filesystems each time: the rooms pair up)
        if room.need <= DISK_NOTE_SHARE * room.free:
            continue
        left = lefts[at].need if lefts is not None and at < len(lefts) else None
        what = ("its adapters in the cache" if room.cache else
                "its checkpoints and adapter" if stage == "meta_init" else "its adapters and checkpoints")
        notes.append(disk_note(f"{what} need up to", room.need, room.free, room.where, lower="model.lora.r",
                               counted="" if room.cache else counted, left=left))
    return "".join(notes)


def model_at_commit(model: dict[str, Any], spec: Spec) -> dict[str, Any]:
    """``model`` (the spec's model settings as dumped for a fingerprint or cache key) with
    ``revision`` as the commit the local Hugging Face cache resolves ``model.revision`` to (a
    branch or tag through its ``refs``; a commit as itself), where it is set and the cache
    holds it: the commit is what the stages load. ``main`` and the sha it points to were
    different inputs (changing one for the other re-ran every model stage), and a branch that
    moved (a newer ``main`` downloaded) left the stages up to date on the old weights. A
    revision the cache does not hold yet stays as written: the stage that downloads it records
    the commit once it has run (:meth:`subsetctl.pipeline.Pipeline._run_stage` takes its inputs again).
    Unset, it stays unset: the cache's ``main`` then, whose moves plan and run warn of."""
    from subsetctl.hub import cached_revision

    revision = spec.model.revision
    if revision is None or model.get("revision") != revision:
        return model
    try:
        commit = cached_revision(spec.model.source, revision)
    except (OSError, ValueError):  # (a cache that cannot be read: the revision as written)
        commit = None
    return {**model, "revision": commit} if commit is not None else model


#: What a cache key holds in place of a local model folder's path: the folder is known
#: by its files (``model_files``), so the same checkpoint under another path finds it.
LOCAL_MODEL_SOURCE = "a local folder, known by its files"


def model_key(ctx: StageContext) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The model's part of a cache key, and the parts the caches used before (keyed by path).

    The first is the spec's model settings (:func:`subsetctl.spec.fingerprint_dump`) plus,
    for a local folder, its files' sizes and sha256, with ``model.source`` replaced by
    :data:`LOCAL_MODEL_SOURCE`: moving or renaming the folder (or spelling its path another
    way) keeps every finished fine-tune, verify run and test result. The second is that
    part with the path in it, as subsetctl wrote keys before; the caches look entries up by
    it too when the first finds nothing, so what was cached then is not trained again.
    Packaged models and hub ids are known by name: nothing changed for them (no earlier part).
    Both hold, for a causal LM whose tokenizer marks a text's first word, the marker of its
    answers tokenized after the prompt (:func:`subsetctl.modeling.resolve.answer_tokenization_inputs`):
    runs cached before, trained and measured on other ids, are not found."""
    from subsetctl.modeling.resolve import answer_tokenization_inputs, model_fingerprint_inputs
    from subsetctl.spec import fingerprint_dump

    model = model_at_commit(fingerprint_dump(ctx.spec)["model"], ctx.spec)
    files = model_fingerprint_inputs(ctx.spec.model.source, ctx.project.root)
    answers = answer_tokenization_inputs(ctx.spec.model.source, ctx.project.root, ctx.spec.model.kind)
    by_path = {"model": model, **files, **answers}
    if "model_files" not in files:  # a packaged model (with its plugin package's version) or a hub id
        return by_path, []
    return {"model": {**model, "source": LOCAL_MODEL_SOURCE}, **files, **answers}, [by_path]


def adopt_legacy_entry(entry: Path, legacy: list[Path]) -> None:
    """Move the first existing of ``legacy`` (a cache entry, file or folder, under a key an
    earlier subsetctl wrote) to ``entry`` when ``entry`` does not exist: found once, it is
    kept under today's key, so it is still found after the model folder moves."""
    if entry.exists():
        return
    for old in legacy:
        if old != entry and old.exists():
            with contextlib.suppress(OSError):  # taken already (by another process): read where it is now
                os.replace(old, entry)
            return


#: the errors of a cache that cannot take an entry (a teammate's folder, a read-only or full disk)
_CACHE_REFUSALS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, getattr(errno, "EDQUOT", 122))


class CacheWrites:
    """Writes of finished results into a stage's re-run cache, which warn (once per stage
    run) instead of stopping the run when the cache cannot take them: the result is already
    recorded in the stage's folder, and the cache only spares later runs the work, so a
    teammate's cache folder, a read-only or a full cache disk stopped a run for nothing."""

    def __init__(self, reporter: Any, folder: Path) -> None:
        self.reporter = reporter
        self.folder = folder
        self.refused = False

    def __call__(self, write: Callable[[], Any]) -> None:
        """Run ``write``; a refusal of the cache (:data:`_CACHE_REFUSALS`) is warned of, and
        later writes are not tried (each would be refused alike). A refusal ``shutil.copytree``
        gathered into a ``shutil.Error`` (a fine-tune's adapter copied into a full cache disk),
        which carries its errno as text only, is read by :func:`~subsetctl.errors.as_os_error`."""
        from subsetctl.errors import as_os_error, teammate_note

        if self.refused:
            return
        try:
            write()
        except OSError as error:
            exc = as_os_error(error) or error
            if exc.errno not in _CACHE_REFUSALS:
                raise
            self.refused = True
            where = exc.filename or self.folder
            self.reporter.warn(AboutThisRun(
                f"The re-run cache {self.folder} cannot take results ({where}: {exc.strerror}{teammate_note(exc)}). "
                "This run's results are kept in the project all the same, but are not cached: a later run whose "
                "results change back computes them again. Fix the cache folder's permissions or free space there "
                f"(or delete it: {shell_arg(str(self.folder))} is safe to delete)."))


def drop_misshapen_entry(reporter: Any, entry: Path, folder: bool) -> None:
    """Delete a cache entry that is a file where a folder belongs (``folder``), or a folder
    where a file belongs (a hand edit, a bad copy), with a notice: the cache is safe to
    delete, so what it held is computed again. Such an entry stopped every later `run` with
    an error asking to move it aside by hand. One deleted meanwhile by someone else (the
    cache deleted by hand while a run uses it) is gone as asked: that was an internal error
    (FileNotFoundError)."""
    import shutil

    from subsetctl.reporter import AboutThisRun

    if not entry.exists() or entry.is_dir() == folder:
        return
    found, wanted = ("a file", "a folder") if folder else ("a folder", "a file")
    reporter.warn(AboutThisRun(f"The cache entry {entry} is {found} where subsetctl keeps {wanted}; "
                               "it is deleted and computed again."))
    if entry.is_dir():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


#: what a record's value may be (:func:`is_record`): a JSON number, or a number or null
NUMBER = (int, float)
NUMBER_OR_NULL = (int, float, type(None))


def is_record(value: Any, keys: tuple[str, ...] | Mapping[str, type | tuple[type, ...]]) -> bool:
    """Whether ``value`` is a JSON object holding each of ``keys``: a result a stage wrote
    (one that is not, damaged or cut short, is computed again). With ``keys`` a mapping,
    each value must also be of the type(s) it maps to: a hand-edited result (a score of
    "abc") stopped the stage with an internal error when it was computed with."""
    if not isinstance(value, dict) or not all(key in value for key in keys):
        return False
    return not isinstance(keys, Mapping) or all(isinstance(value[k], t) for k, t in keys.items())


def read_work_record(ctx: StageContext, path: Path, kind: type,
                     keys: tuple[str, ...] | Mapping[str, type | tuple[type, ...]] = ()) -> Any:
    """A stage's record of the work a run stopped partway finished (verify's results.json,
    finetune's runs.json, evaluate's per_run.json): a ``kind`` (list or dict) of JSON
    objects, each with ``keys`` (see :func:`is_record`); empty when there is none. One that is unreadable or of
    another shape (a machine crash, a disk error, an edit) is not used: the stage starts
    that record afresh, with a warning (finished fine-tunes and evaluations come back from
    the cache). It stopped every later `run` with an internal error until deleted by hand."""
    import json

    if not path.is_file():
        return kind()
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    entries = record if isinstance(record, list) else record.values() if isinstance(record, dict) else None
    if (isinstance(record, kind) and entries is not None
            and all(is_record(entry, keys) for entry in entries)):
        return record
    ctx.reporter.warn(f"{ctx.out_dir.name}: {path} (the work a run stopped partway had finished) is damaged; it is "
                      "not used, and the stage computes that work again (what the cache holds is reused).")
    return kind()


#: a stage's record of the results it took from the re-run cache (``.subsetctl/cache/``) and
#: the library versions that computed them: in the stage's ``describes_only`` (how a result
#: came about, not what it is), so a version upgrade changes no output digest
PROVENANCE = "provenance.json"


def versioned(entry: dict[str, Any]) -> dict[str, Any]:
    """A cache entry as it is written: the result with the library versions and the thread
    counts (:func:`~subsetctl.pipeline.thread_counts`: torch's results differ in the last bits
    by them) computing it."""
    from subsetctl import pipeline

    return {**entry, "versions": pipeline.library_versions(), "threads": pipeline.thread_counts()}


def take_versions(entry: dict[str, Any]) -> tuple[Any, Any]:
    """Remove and return the library versions and the thread counts a cache entry was
    computed with (None for either from an entry an earlier subsetctl wrote without them:
    unknown), leaving the result alone."""
    return entry.pop("versions", None), entry.pop("threads", None)


class Provenance:
    """The stage's :data:`PROVENANCE` file: ``{"computed_with": {result: versions}}`` for
    each result (a verify fine-tune, a finetune run, an evaluation) taken from the cache,
    with the library versions that computed it (None: unknown), and ``{"threads": {result:
    thread counts}}`` for those whose thread counts were recorded (a cache entry an earlier
    subsetctl wrote has none; a gradient shard lists one record per run that computed rows
    of it). Results the stage computes itself were computed with the versions and thread
    counts in its manifest. Written as results are taken, so a run stopped partway resumes
    with it."""

    def __init__(self, ctx: StageContext) -> None:
        import json

        self.path = ctx.out_dir / PROVENANCE
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
            kept, threads = record["computed_with"], record.get("threads")
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            kept = threads = None
        self.computed_with: dict[str, Any] = kept if isinstance(kept, dict) else {}
        self.threads: dict[str, Any] = threads if isinstance(threads, dict) else {}

    def reused(self, result: str, versions: Any, threads: Any = None) -> None:
        """``result`` came from the cache, computed with ``versions`` and ``threads`` (None:
        not recorded)."""
        self.computed_with[result] = versions if isinstance(versions, dict) else None
        if isinstance(threads, (dict, list)) and threads:
            self.threads[result] = threads
        else:
            self.threads.pop(result, None)
        self.write()

    def computed(self, result: str) -> None:
        """``result`` was computed now (a resumed stage's earlier record of it is dropped)."""
        dropped = self.computed_with.pop(result, False) is not False
        if self.threads.pop(result, None) is not None or dropped:
            self.write()

    def clear(self) -> None:
        """Forget every result taken (a new gradient store: the record is of other rows)."""
        self.computed_with.clear()
        self.threads.clear()

    def write(self) -> None:
        from subsetctl.project import atomic_write_json

        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, {"computed_with": self.computed_with,
                                      **({"threads": self.threads} if self.threads else {})})


#: the libraries an adapter's model card names the versions of (the cache entry has them all)
CARD_LIBRARIES = ("subsetctl", "torch", "transformers", "peft", "datasets", "python")


def card_provenance(versions: Any, spec_digest: str | None) -> str:
    """The lines of an adapter's model card (README.md) that say what made it: the library
    ``versions`` that trained it (those of :data:`CARD_LIBRARIES` it holds; none where unknown)
    and the digest of the resolved spec the stage ran with (``.subsetctl/specs/<digest>.json``),
    so an adapter folder copied out of the project still names both. subsetctl run from a git
    checkout has its commit too (:data:`~subsetctl.pipeline.SUBSETCTL_COMMIT`): every build of a
    checkout says the same version number."""
    from subsetctl.pipeline import SUBSETCTL_COMMIT

    known = versions if isinstance(versions, dict) else {}
    commit = f" (commit {known[SUBSETCTL_COMMIT]})" if known.get(SUBSETCTL_COMMIT) else ""
    made = ", ".join(f"{name} {known[name]}{commit if name == 'subsetctl' else ''}"
                     for name in CARD_LIBRARIES if known.get(name))
    return (f"- trained with: {made}\n" if made else "") + (
        f"- resolved spec: {spec_digest} (the project's .subsetctl/specs/{spec_digest}.json)\n" if spec_digest else "")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so a stage is reproducible from the spec."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


#: what a stage reading no test split takes of the data stage (its :attr:`~subsetctl.pipeline.Stage.reads_parts`,
#: :meth:`subsetctl.stages.data.DataStage.output_parts`): the train and validation rows and the label vocabulary,
#: so that an edit to the test rows alone (``target.test_loader``'s file) does not re-run it
TRAIN_SIDE = {"data": "train"}

#: what the finetune stage takes of the search's output (:meth:`~subsetctl.stages.search.SearchStage.output_parts`):
#: each strategy's pick, not the estimates and calibration figures only the report shows
PICKS = {"search": "picks"}


def data_keys_before(data: Mapping[str, Any] | None) -> list[str]:
    """The digests an earlier subsetctl keyed results by the data stage's results ``data``
    (its manifest) under, where today's key is their train side (:data:`TRAIN_SIDE`): the
    whole output's digest (its test rows too), and the whole digests of earlier results of
    the same train side (:func:`~subsetctl.pipeline.digests_standing_for`: after an edit of
    the test rows alone, those an upgraded project's cache entries were keyed by). The
    train side's own digest left out; none twice."""
    from subsetctl.pipeline import digests_standing_for, output_digest

    train = output_digest(data, TRAIN_SIDE["data"])
    found = [output_digest(data), *digests_standing_for(dict(data) if data else None, TRAIN_SIDE["data"])[1:]]
    return [d for d in dict.fromkeys(found) if d is not None and d != train]


def examples(ctx: StageContext, name: str, split: str) -> list[dict[str, Any]]:
    """Rows of one source split as dicts (empty list when the split is empty; a damaged or
    missing source folder is an error for every split, never taken as "no rows")."""
    from subsetctl.data.stage import split_columns

    columns = split_columns(ctx.upstream_dir("data"), name, split)  # columnar: rows took 4.7 s for 200k
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def examples_of(ctx: StageContext, pairs: Sequence[tuple[str, str]]) -> list[list[dict[str, Any]]]:
    """The rows of each ``(name, split)`` of ``pairs``, in order: what :func:`examples` gives
    for each (the same rows, the same errors), read in one pass
    (:func:`~subsetctl.data.stage.splits_rows`, which turns the Arrow tables of many splits
    into rows together). A stage that reads every source's train split one at a time paid a
    conversion and a dict per column and row for each of thousands of small splits."""
    from subsetctl.data.stage import splits_rows

    return splits_rows(ctx.upstream_dir("data"), pairs)


def source_names(spec: Spec) -> list[str]:
    return [s.name for s in spec.sources]


class DataFiles:
    """Checksums of the data stage's files by source, read once from its manifest: what
    one fine-tune or evaluation reads, so that the caches of finished runs are keyed on
    the sources a run uses rather than on the whole data stage (adding or removing one
    source then leaves the other runs' cached results valid)."""

    def __init__(self, ctx: StageContext) -> None:
        manifest = ctx.upstream_manifest("data")
        self.by_source: dict[str, dict[str, str]] = {}
        self.bytes: dict[str, int] = {}  # the size of each source's files
        for path, meta in manifest.get("artifacts", {}).items():
            name, _, rest = path.partition("/")
            if rest:
                self.by_source.setdefault(name, {})[rest] = meta["sha256"]
                self.bytes[name] = self.bytes.get(name, 0) + int(meta.get("size") or 0)
        self.labels = (manifest.get("summary") or {}).get("labels")  # the classifier head's classes

    def of(self, names: list[str], test_splits: bool = True) -> dict[str, Any]:
        """The files of ``names`` (sorted) and the label vocabulary, for a cache key; without
        their test splits' files unless ``test_splits`` (a fine-tune reads none of them)."""
        def files(name: str) -> dict[str, str]:
            held = self.by_source.get(name, {})
            return held if test_splits else {rest: sha for rest, sha in held.items() if not rest.startswith("test/")}

        return {"files": {n: files(n) for n in sorted(names)}, "labels": self.labels}


def subset_label(subset: list[str]) -> str:
    """A subset as messages and the report name it: its sources joined by ``+``, or
    "(target only)" for the empty subset, which a bare ``[]`` would leave unexplained."""
    return "+".join(subset) or "(target only)"


def num_labels(ctx: StageContext) -> int | None:
    """Classifier head size: from the spec, else from the data's label vocabulary."""
    if ctx.spec.model.kind != "classifier":
        return None
    from subsetctl.data.stage import label_names

    names = label_names(ctx.upstream_dir("data"))
    asked = ctx.spec.model.num_labels
    if asked and names and asked < len(names):
        from subsetctl.errors import UserError

        raise UserError(
            f"model.num_labels is {asked}, but the target and sources use {len(names)} labels "
            f"({', '.join(map(str, names[:10]))}{', ...' if len(names) > 10 else ''}). Raise model.num_labels "
            f"to at least {len(names)}, or leave it out to size the head from the data."
        )
    if asked:
        return asked
    return len(names) if names else 2


def device_for(spec: Spec) -> str:
    import torch

    if spec.model.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.model.device.startswith("cuda") and not torch.cuda.is_available():
        from subsetctl.errors import UserError

        raise UserError(
            f"model.device is {spec.model.device!r}, but this torch ({torch.__version__}) sees no CUDA GPU. "
            f"{no_cuda_advice()}"
        )
    return spec.model.device


def no_cuda_advice(instead: str = "or use model.device: auto (GPU when there is one) or cpu") -> str:
    """Why this torch sees no CUDA GPU and what to do, for a spec naming ``cuda``: a CPU-only
    build of torch; ``CUDA_VISIBLE_DEVICES`` hiding the GPUs (a batch job given none, or a
    script that set it empty); or no GPU or driver on this machine. "Install a CUDA build of
    torch" alone sent a job with a CUDA build, started without a GPU, to reinstall torch.
    ``instead``: the other way out, ending the advice."""
    import os

    import torch

    if torch.version.cuda is None:
        return f"This torch is a CPU-only build: install a CUDA build of torch, {instead}."
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return (f"CUDA_VISIBLE_DEVICES is {visible!r} here, which hides the GPUs it does not list from torch (a batch "
                f"job given no GPU, or a script that set it): ask the scheduler for a GPU (Slurm: --gres=gpu:1) or "
                f"name a GPU there, {instead}.")
    return (f"This machine shows torch no GPU (no GPU, or no NVIDIA driver: `nvidia-smi` tells): run on a node with "
            f"a GPU (a batch job must ask for one, Slurm: --gres=gpu:1), {instead}.")


def cpu_fallback_warning(spec: Spec) -> str | None:
    """Why ``model.device: auto`` runs the model stages on the CPU where a GPU was likely
    meant: this torch is a CUDA build but sees no GPU (a batch job given none, its
    ``CUDA_VISIBLE_DEVICES`` empty). Such a job ran on the CPU, many times slower, with
    nothing in its log saying so. None where auto finds a GPU, or torch is a CPU-only build."""
    import torch

    if spec.model.device != "auto" or torch.version.cuda is None or torch.cuda.is_available():
        return None
    return (f"model.device is auto and this CUDA build of torch ({torch.__version__}) sees no GPU, so the model "
            f"stages run on the CPU, many times slower. {no_cuda_advice('or set model.device: cpu to mean the CPU')}")


def base_model(ctx: StageContext) -> tuple[Any, Any, dict[str, Any]]:
    """The base model and tokenizer from the spec (converted once when packaged)."""
    from rich.markup import escape

    from subsetctl.modeling.resolve import (
        first_notice,
        max_length_past_trained_positions,
        model_location,
        refuse_max_length_beyond_positions,
        resolve_model,
    )

    spec = ctx.spec.model
    if (fallback := cpu_fallback_warning(ctx.spec)) and first_notice(("cpu fallback", str(ctx.project.root))):
        ctx.reporter.warn(AboutThisRun(fallback))  # said while the job runs, once; not a finding of the report
    model, tokenizer, info = resolve_model(
        model_location(spec.source, ctx.project.root),
        kind=spec.kind,
        dtype=spec.dtype,
        trust_remote_code=spec.trust_remote_code,
        num_labels=num_labels(ctx),
        progress=lambda message: ctx.reporter.info(escape(message)),  # plain text (paths), not rich markup
        warn=ctx.reporter.warn,
        revision=spec.revision,
    )
    # validate reads local folders' configs; a packaged or hub model's is known only now
    config = model.config.to_dict()
    refuse_max_length_beyond_positions(config, spec.max_length, f"the model {as_typed(spec.source)}")
    past = max_length_past_trained_positions(config, spec.max_length, f"the model {as_typed(spec.source)}")
    if past and first_notice(("max_length past trained positions", str(ctx.project.root), spec.max_length)):
        ctx.reporter.warn(past)
    if first_notice(("special token text", str(ctx.project.root))):
        _warn_special_token_text(ctx, tokenizer)
    if spec.kind == "classifier":
        from subsetctl.data.stage import label_names
        from subsetctl.modeling.resolve import reorder_head_to_classes

        reordered = reorder_head_to_classes(model, label_names(ctx.upstream_dir("data")) or [],
                                            f"The model {as_typed(spec.source)}")
        if reordered is not None and reordered[0]:
            message, done = reordered
            (ctx.reporter.info if done else ctx.reporter.warn)(escape(message))
    return model, tokenizer, info


SPECIAL_TEXT_BYTES_READ_TOGETHER = 16 * 2**20
"""The most bytes of prepared files whose rows the special-token count reads in one pass
(:func:`examples_of`), after the model has loaded: the rows, as Python objects, take about
five times their files, and the count held one source's at a time before it read many
together. Reading together saves time only on small splits (2,000 sources of 5 rows: 4.8 MiB
of files, 0.62 s read one split at a time, 0.45 s together); with 64 MiB, 24 sources of 7 MiB
raised the peak by 300 MiB over one at a time (16 MiB: 40 MiB) for no time saved."""


def _groups_of_bytes(names: list[str], sizes: Mapping[str, int], most: int) -> Iterator[list[str]]:
    """``names`` in order, in runs whose ``sizes`` add up to at most ``most`` (a name larger
    than that alone)."""
    group: list[str] = []
    total = 0
    for name in names:
        if group and total + sizes.get(name, 0) > most:
            yield group
            group, total = [], 0
        group.append(name)
        total += sizes.get(name, 0)
    if group:
        yield group


def _warn_special_token_text(ctx: StageContext, tokenizer: Any) -> None:
    """Warn, by source, about the rows whose text holds a special token's text, which the
    tokenizer reads as that token (:mod:`subsetctl.modeling.special_text`): every row of
    every source and split, once per run (by the first stage that loads the model), so the
    warning is the same whichever stages run and is not repeated by each. A source's counts
    are kept under its prepared files' checksums (:class:`~subsetctl.modeling.special_text.CountsCache`):
    one prepared as before is not read again; the others are read together (:func:`examples_of`),
    :data:`SPECIAL_TEXT_BYTES_READ_TOGETHER` of files at a time."""
    from subsetctl.data.prepare import SPLITS
    from subsetctl.modeling.special_text import COUNTS_CACHE_FILE, CountsCache, SpecialTextCounts
    from subsetctl.project import fingerprint

    counts = SpecialTextCounts(tokenizer)
    if counts.pattern is None:
        return
    files = DataFiles(ctx)
    cache = CountsCache(ctx.project.state_dir.joinpath(*COUNTS_CACHE_FILE), tokenizer)
    names = [ctx.spec.target.name, *source_names(ctx.spec)]
    # (none recorded: read each time)
    prepared = {name: fingerprint(files.by_source[name]) if files.by_source.get(name) else None for name in names}
    found = {name: kept for name in names if (kept := cache.kept_counts(name, prepared[name])) is not None}
    for group in _groups_of_bytes([name for name in names if name not in found], files.bytes,
                                  SPECIAL_TEXT_BYTES_READ_TOGETHER):
        read = iter(examples_of(ctx, [(name, split) for name in group for split in SPLITS]))
        for name in group:
            found[name] = SpecialTextCounts(tokenizer)
            for _ in SPLITS:
                found[name].add(next(read))
            cache.keep(name, prepared[name], found[name])
    for name in names:
        counts.merge(found[name])
    cache.save()
    for notice in counts.notices(ctx.spec.target.name):
        ctx.reporter.warn(notice)


def lora_model(
    ctx: StageContext, adapter_dir: Any = None, trainable: bool = True, seed: int | None = None,
    meta_init: bool = False,
) -> tuple[Any, Any, dict[str, Any]]:
    """Base model wrapped with LoRA: fresh (seeded) or loaded from ``adapter_dir``, said while
    it loads (:func:`loading_the_model`).

    A classifier trains its head and the layers :func:`new_layers_trained` names."""
    with loading_the_model(ctx):
        return _lora_model(ctx, adapter_dir, trainable, seed, meta_init)


def loading_the_model(ctx: StageContext) -> contextlib.AbstractContextManager[None]:
    """The reporter's status while the stage running in ``ctx`` loads the model
    (:func:`~subsetctl.reporter.waiting`: a spinner with the time elapsed, lines in a log), naming
    the stage and ``model.source``: every stage that loads it (meta_init, gradients, verify,
    the search's real fine-tunes, finetune, evaluate) says so alike, where only meta_init showed
    a bar of one step (0/1, then 1/1) and the others nothing, minutes on a large model."""
    from subsetctl.reporter import waiting

    return waiting(ctx.reporter, f"{ctx.out_dir.name}: loading the model {as_typed(ctx.spec.model.source)}")


def _lora_model(ctx: StageContext, adapter_dir: Any, trainable: bool, seed: int | None,
                meta_init: bool) -> tuple[Any, Any, dict[str, Any]]:
    """:func:`lora_model`'s work."""
    from subsetctl.modeling.lora import apply_lora, load_adapter_weights

    model, tokenizer, info = base_model(ctx)
    lora = ctx.spec.model.lora
    targets = lora.target_modules or info.get("lora_targets")
    model = apply_lora(
        model, r=lora.r, alpha=lora.alpha, dropout=lora.dropout, target_modules=targets,
        kind=ctx.spec.model.kind, seed=ctx.spec.project.seed if seed is None else seed,
        train_also=new_layers_trained(ctx, info, adapter_dir, meta_init),
    )
    from subsetctl.modeling.lora import BASE_MODEL_NAME
    from subsetctl.modeling.resolve import adapter_base_model_name

    # what every adapter saved from it names as its base model (written into adapter_config.json as it is saved:
    # peft, saving, looks the name up as a folder, else on the hub)
    setattr(model, BASE_MODEL_NAME, adapter_base_model_name(ctx.spec.model.source, ctx.project.root))
    if adapter_dir is not None:
        load_adapter_weights(model, adapter_dir)
    if not trainable:
        for p in model.parameters():
            p.requires_grad_(False)
    model.to(device_for(ctx.spec))
    return model, tokenizer, info


def new_layers_trained(ctx: StageContext, info: dict[str, Any], adapter_dir: Any = None,
                       meta_init: bool = False) -> list[str]:
    """A classifier's newly initialized layers that are trained with its head: at meta-init
    those the loaded model reports (``info["new_layers"]``); with an adapter, those it was
    trained with; otherwise (fine-tunes, evaluation) those of the project's meta-init
    adapter. So meta-init decides once, and a project whose theta* was trained before
    these layers were (its adapter saves the head only) goes on as it was."""
    from subsetctl.modeling.lora import trained_layers_of

    if ctx.spec.model.kind != "classifier":
        return []
    if meta_init:
        return list(info.get("new_layers") or [])
    if adapter_dir is None:
        adapter_dir = ctx.upstream_dir("meta_init") / "adapter"
        if not (Path(adapter_dir) / "adapter_config.json").is_file():
            return list(info.get("new_layers") or [])
    layers = trained_layers_of(adapter_dir)
    untrained = sorted(set(info.get("new_layers") or []) - set(layers))
    if untrained:
        _say_not_trained(ctx, untrained)
    return layers


def _say_not_trained(ctx: StageContext, untrained: list[str]) -> None:
    """Correct, once a run, the loading notice that ``untrained`` are trained with the head:
    this project's meta-init adapter was trained before subsetctl trained such layers, and
    the later stages follow it, so they keep their initial values here."""
    from rich.markup import escape

    from subsetctl.modeling.resolve import first_notice

    if not first_notice(("new layers not trained", str(ctx.project.root), tuple(untrained))):
        return
    one = len(untrained) == 1
    ctx.reporter.info(escape(
        f"{', '.join(untrained)} {'is' if one else 'are'} not trained in this project, against the notice: its "
        "meta-init adapter (theta*) was trained with the head alone, by a subsetctl from before such layers "
        f"were trained, and the later stages follow it, so {'it keeps its' if one else 'they keep their'} "
        f"initial values. `subsetctl run {shell_arg(ctx.project.root)} --force meta_init --force finetune` trains "
        f"{'it' if one else 'them'} "
        "(the final fine-tunes start from the base model, so meta-init alone does not make them stale)."))


def train_config(section: TrainSpec, spec: Spec, objective: str, optimizer: str, seed: int, **extra: Any) -> Any:
    from subsetctl.modeling.train import TrainConfig

    return TrainConfig(
        steps=section.steps,
        batch_size=section.batch_size,
        grad_accum=section.grad_accum,
        lr=section.lr,
        optimizer=optimizer,
        objective=objective,
        max_length=spec.model.max_length,
        seed=seed,
        checkpoint_every=section.checkpoint_every,
        weight_decay=section.weight_decay,
        **extra,
    )


def divergence_fix(section: str, lr: float, weight_decay: float) -> str:
    """What to change after a fine-tune of ``section`` (meta_init, finetune) diverged: its
    weight decay when that times the lr is 1 or more (each step scales the weights by
    1 - lr * weight_decay, which then zeroes them or flips and grows them: the lr alone was
    blamed, for `weight_decay: 1e6`), else its lr or batch size."""
    if lr * weight_decay >= 1:
        return (f"{section}.weight_decay ({weight_decay:g}) times {section}.lr ({lr:g}) is {lr * weight_decay:g}, "
                f"and each step scales the weights by 1 - lr x weight_decay, which at 1 or more zeroes them or flips "
                f"and grows them. Lower {section}.weight_decay (0.01 to 0.1 is usual), then run again.")
    return f"Lower {section}.lr or raise {section}.batch_size, then run again."


@contextlib.contextmanager
def train_progress(ctx: StageContext, description: str, total: int, val_label: str = "val") -> Iterator[Any]:
    """A progress callback for train_lora showing training loss and validation loss, the
    latter as ``val_label`` (meta_init's is the surrogate softplus(-f), not the
    cross-entropy its training loss is: "val=0.27" beside "loss=3.8" read as the same measure)."""
    with ctx.reporter.progress(description, total=total) as task:

        def callback(step: int, total_steps: int, loss: float | None, eval_loss: float | None) -> None:
            if loss is None:  # train_lora's call before its first step: the step it resumes from
                resume_at(task, step)
            else:
                task.update(step, **{"loss": loss, val_label: eval_loss})

        yield callback


def reused_unless_forced(forced: bool, reused: str,
                         instead: str = "none taken from the cache, all computed again") -> str:
    """The part of a stage's ``plan`` work line saying which earlier results it takes
    (``reused``), or, when ``forced`` (``--force STAGE``), that it takes none (``instead``):
    a forced verify, finetune, evaluate, search or data stage computes everything again, and
    `plan` said "those in the cache are reused" all the same."""
    return f"--force: {instead}" if forced else reused


class _PlannedContext(StageContext):
    """A stage's context for `plan` (:func:`cached_count_work`): its upstream stages' results
    as `run` will find them, kept ones put back; a folder only once they are in it."""

    def upstream_manifest(self, stage: str) -> dict[str, Any]:
        manifest = self.project.read_results_manifest(stage)
        if not manifest or manifest.get("corrupt") or "output_digest" not in manifest:
            raise UserError(f"Stage {stage!r} has no finished results `run` would find.")
        return manifest

    def upstream_dir(self, stage: str) -> Path:
        from subsetctl.project import MANIFEST, read_json_object

        folder = self.project.results_dir(stage)
        if read_json_object(folder / MANIFEST) != self.upstream_manifest(stage):
            raise UserError(f"Stage {stage!r}'s results are not in its folder until `run` puts them back.")
        return folder


def planned_context(spec: Spec, project: Project, stage: str, resumes: bool = False) -> StageContext:
    """``stage``'s context for `plan`: it reads the upstream results as `run` will find them
    (kept ones put back) and reports nothing; ``resumes`` as :func:`cached_count_work` says."""
    from subsetctl.reporter import SilentReporter

    return _PlannedContext(spec, project, SilentReporter(), project.stage_dir(stage), {"resumes": resumes})


def cached_count_work(stage: Stage, spec: Spec, forced: bool, project: Project, rerun: set[str],
                      count: Callable[[StageContext], tuple[int, int, int]], resumes: bool = False,
                      known: Callable[[StageContext], str] | None = None) -> str:
    """``stage``'s `plan` work line (:meth:`Stage.work`) with its last clause ("those in the
    cache are reused") saying how many of its results the re-run cache holds, "3 of 8
    cached, reused", which tells how much of the stage's hours are left: ``count(ctx)``
    gives (kept, cached, all), where ``ctx`` reads the upstream results as `run` will find them
    (kept ones put back) and reports nothing; it counts only entries `run` takes, changing
    nothing on disk. ``kept``: those the stage's record of a run that stopped partway holds
    (counted where ``resumes``, ``ctx.options["resumes"]``: `run` resumes that work and keeps
    them; the cache may lack them, e.g. one a teammate's that took no writes), "3 of 8 done by
    the run that stopped partway". The plain line when an upstream stage re-runs (what the
    stage will compute is not known yet), or when what ``count`` reads is missing or
    unreadable now (`run` says why). ``known(ctx)``: the line before that clause as the
    upstream results tell it ("3 fine-tunes (4 picks, 3 distinct)", where the spec alone
    says "up to 4"); when ``forced``, that with the plain line's --force clause (the plain
    line without ``known``)."""
    work = stage.work(spec, forced)
    if any(name in rerun for name in stage.after) or (forced and known is None):
        return work
    ctx = planned_context(spec, project, stage.name, resumes)
    try:
        size = before_last_clause(work)  # the clause after it (which results are reused) outside parentheses
        head = known(ctx) if known is not None else size
        if forced:  # nothing reused: the count as the upstream results tell it, with --force's clause
            return head + work[len(size):]
        kept, cached, total = count(ctx)
    except (UserError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return work
    if kept:
        stopped = f"{kept} of {total} done by the run that stopped partway"
        return f"{head}; {stopped}, {cached} more cached, reused" if cached else f"{head}; {stopped}, kept"
    return f"{head}; {cached} of {total} cached, reused" if cached else f"{head}; none cached"


def steps_work(steps: int, batch_size: int, grad_accum: int = 1) -> str:
    """A fine-tune's size as ``plan`` shows it: "30 steps of 8 examples" (× micro-batches)."""
    per_step = f"{batch_size} examples" if grad_accum == 1 else f"{grad_accum} × {batch_size} examples"
    return f"{steps} step{'s' if steps != 1 else ''} of {per_step}"
