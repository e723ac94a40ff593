"""The finetune stage: LoRA fine-tune of the *base* model (not theta*) on target + the
selected sources, for every strategy and the baselines, all with the same budget
(steps, batch size, learning rate) so the comparison is fair.

Identical selections are trained once and shared. Each run resumes from its own
checkpoints; finished runs are recorded in ``runs.json`` at once, and their adapters kept
in ``.subsetctl/cache/finetune/`` under a key of all a run depends on, so that a change
upstream (another search, a new seed count, verify settings) trains only the runs whose
inputs changed.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, ClassVar

from subsetctl import RESULTS_VERSION
from subsetctl.errors import UserError
from subsetctl.pipeline import StageContext
from subsetctl.project import (
    ABANDONED_AFTER_NS,
    Project,
    artifact_checksums,
    artifacts_shape_ok,
    atomic_write_json,
    atomic_write_text,
    copy_tree_writable,
    fingerprint,
    remove_tree,
    replace_dir,
    touch,
    verify_checksums,
)
from subsetctl.reporter import AboutThisRun
from subsetctl.spec import Spec, fingerprint_dump
from subsetctl.spec.dumps import spec_json
from subsetctl.stages import common

RUNS = "runs.json"
ADAPTER_CACHE = ("cache", "finetune")
#: size and sha256 of each file of a cached adapter, checked before it is reused
CHECKSUMS = "checksums.json"


def selections(ctx: StageContext) -> dict[str, list[str]]:
    """label -> selected sources, for every strategy and baseline to fine-tune."""
    data = json.loads((ctx.upstream_dir("search") / "selections.json").read_text())
    out = {label: list(r["selected"]) for label, r in data["strategies"].items()}
    sources = data["sources"]
    for baseline in ctx.spec.finetune.baselines:
        out.setdefault(baseline, list(sources) if baseline == "all" else [])
    return out


def fine_tunes_left(spec: Spec, project: Project, resumes: bool) -> int | None:
    """The fine-tunes `run` has yet to train, for which it checks the disk before it begins
    (:func:`~subsetctl.stages.common.check_lora_disk`): one per distinct pick and seed of the
    search's selections as they stand, less those a run that stopped partway finished where
    ``resumes`` (its runs.json, which `run` keeps). None where the selections cannot be read
    now (no search results yet)."""
    ctx = common.planned_context(spec, project, FinetuneStage.name, resumes)
    try:
        jobs = {run_key(subset, seed) for subset in selections(ctx).values()
                for seed in range(spec.project.seed, spec.project.seed + spec.finetune.seeds)}
        done = common.read_work_record(ctx, ctx.out_dir / RUNS, dict) if resumes else {}
    except (UserError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return sum(key not in done for key in jobs)


def adapter_relpath(run: str) -> str:
    """Where run ``run``'s LoRA adapter lies, relative to the finetune stage's folder (read
    by evaluate and named in the report)."""
    return f"runs/{run}/adapter"


def run_key(subset: list[str], seed: int) -> str:
    return hashlib.sha256(json.dumps([sorted(subset), seed]).encode()).hexdigest()[:12]


class AdapterCache:
    """Finished fine-tunes (adapter and run record) kept outside the stage folder, which is
    reset whenever the stage's inputs change, keyed by everything one run depends on: the
    data it trains and validates on (the target's and its subset's files but their test
    splits', and the label vocabulary), the model settings, the training settings, the subset and the seed."""

    def __init__(self, ctx: StageContext) -> None:
        spec = ctx.spec
        self.reporter = ctx.reporter
        self.folder = ctx.project.state_dir.joinpath(*ADAPTER_CACHE)
        self.data = common.DataFiles(ctx)
        self.target = spec.target.name
        model, earlier = common.model_key(ctx)
        # a classifier's newly initialized layers trained with its head: in the key only when there are
        # any (runs kept before, which trained none, are still found; none trained with them is taken)
        layers = common.new_layers_trained(ctx, {})
        new_layers = {"new_layers": layers} if layers else {}

        def base(dumped: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
            train = {k: v for k, v in dumped["finetune"].items() if k not in ("enabled", "baselines", "seeds")}
            return {**model, "train": train, "version": RESULTS_VERSION, **new_layers}

        dumped = fingerprint_dump(spec)
        self.base = base(dumped, model)  # result-neutral settings at their defaults
        # keys earlier subsetctl versions wrote, still looked up: by the model folder's path,
        # and before that, before the result-neutral settings counted at their defaults
        raw = spec_json(spec)
        older = [base(dumped, m) for m in earlier or [model]]
        # (keys that held model.revision as written, a branch or tag, name no commit: one that moved since
        # trained them from other weights, so they are not looked up where it resolves to a commit now)
        if raw["model"].get("revision") == model["model"].get("revision"):
            older += [base(raw, {**m, "model": raw["model"]}) for m in earlier or [model]]
        self.legacy_bases = [b for i, b in enumerate(older) if b != self.base and b not in older[:i]]

    def _entry(self, subset: list[str], seed: int, base: dict[str, Any] | None = None,
               keyed: list[str] | None = None, test_splits: bool = False) -> Path:
        """The entry of ``subset`` (in training order: the sources' order in the project,
        which their rows are pooled in, as verify's cache keys it); ``keyed``: the subset as
        the key holds it, when not that (earlier subsetctl versions keyed it sorted);
        ``test_splits``: keyed by the test splits' files too, which a fine-tune does not read
        (earlier subsetctl versions did: an edit of the test rows alone trained every run again)."""
        data = self.data.of([self.target, *subset], test_splits)
        key = list(subset) if keyed is None else keyed
        return self.folder / fingerprint({**(base or self.base), "data": data, "subset": key, "seed": seed})

    def _locate(self, subset: list[str], seed: int) -> Path:
        """This run's entry, with what an earlier subsetctl kept for it moved there.

        Earlier versions keyed a run by its sorted subset, so an entry under a key may have
        been trained in another order of the same sources (before they were reordered);
        a run is taken only when its record shows this training order. An entry of another
        order found under this run's key (sorted subsets: old and new keys coincide) goes to
        the key of the order it was trained in, where it is still found."""
        entry = self._entry(subset, seed)
        recorded = _recorded_subset(entry)
        if recorded is not None and recorded != list(subset):
            proper = self._entry(recorded, seed)
            if proper.exists() and _intact(proper):  # a copy of that run is there already
                shutil.rmtree(entry, ignore_errors=True)
            else:
                shutil.rmtree(proper, ignore_errors=True)
                os.replace(entry, proper)
        if entry.exists():
            return entry
        common.adopt_legacy_entry(entry, [c for c in self._legacy_entries(subset, seed)
                                          if _recorded_subset(c) == list(subset)])
        return entry

    def _legacy_entries(self, subset: list[str], seed: int) -> list[Path]:
        """Where an earlier subsetctl may have kept this run: under an earlier key of its
        settings, or (a subset not in sorted order) keyed by the sorted subset, as versions
        before the training order counted did, each also keyed by the test splits' files as
        versions before the train side did. Only one whose record shows this order is it."""
        forms = [(base, tests) for tests in (False, True) for base in [self.base, *self.legacy_bases]][1:]
        candidates = [self._entry(subset, seed, base, test_splits=tests) for base, tests in forms]
        if list(subset) != sorted(subset):
            candidates += [self._entry(subset, seed, base, keyed=sorted(subset), test_splits=tests)
                           for tests in (False, True) for base in [self.base, *self.legacy_bases]]
        return candidates

    def holds(self, subset: list[str], seed: int) -> bool:
        """Whether :meth:`restore` would take this run from the cache, changing nothing: for
        `plan`. The entry :meth:`_locate` would find (under today's key unless that holds a
        run of another order, else the first an earlier subsetctl wrote for this order) must
        pass :meth:`restore`'s checks; its adapter's files untouched since they were stored
        are trusted by their stat stamps, so no weights are read."""
        entry = self._entry(subset, seed)
        if not entry.exists() or _recorded_subset(entry) not in (None, list(subset)):
            entry = next((c for c in self._legacy_entries(subset, seed)
                          if c != entry and _recorded_subset(c) == list(subset)), entry)
        return entry.is_dir() and _recorded_subset(entry) == list(subset) and _intact(entry, raises=False)

    def restore(self, subset: list[str], seed: int, run_dir: Path) -> dict[str, Any] | None:
        """Copy a cached adapter into ``run_dir``; its record, or None when not cached. An
        entry whose adapter files fail their checksums (a truncated or overwritten file, a bad
        copy; files untouched since they were stored are trusted by their stat stamps) is
        deleted with a warning, so the run is trained again instead of the damage being
        committed and every later evaluate failing on it."""
        entry = self._locate(subset, seed)
        common.drop_misshapen_entry(self.reporter, entry, folder=True)
        try:
            record = json.loads((entry / "record.json").read_text())
            if not isinstance(record, dict) or record.get("subset") != list(subset):  # a damaged record, or a
                return None  # run of another order: trained again (and stored in its place)
            problems = _adapter_problems(entry)
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:  # a file of it a folder, or garbled
            problems = [_damage(entry, exc)]
        if problems:
            self.reporter.warn(AboutThisRun(f"The cached fine-tune {entry} is damaged ({'; '.join(problems[:3])}); "
                                            "it is deleted and the run is trained again."))
            shutil.rmtree(entry, ignore_errors=True)
            return None
        with contextlib.suppress(FileNotFoundError):  # a run folder it cannot delete: the permissions message
            remove_tree(run_dir)  # naming it (ignored, it became copytree's FileExistsError, an internal error)
        copy_tree_writable(entry / "adapter", run_dir / "adapter")  # README.md is written into it next
        touch(entry)  # used: the last to go when the caches are trimmed (project.cache_limit_gb)
        return record

    def store(self, subset: list[str], seed: int, run_dir: Path, record: dict[str, Any]) -> None:
        """Keep a finished run: written aside, into a folder of this process's own, then
        renamed into place (never half an entry). Another process may store the same run
        at once (projects whose .subsetctl/cache links to one folder, run side by side on
        the same model): with one ``<entry>.partial`` for both, each deleted the other's
        half copy under it, and an entry of a record without its adapter was kept. The
        entry it finds put in place meanwhile is kept; this process's copy goes."""
        entry = self._entry(subset, seed)
        _drop_abandoned_copies(entry)
        partial = entry.with_name(f"{entry.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
        try:  # interrupted (Ctrl-C, SIGTERM) or failed: no half-written entry kept
            shutil.copytree(run_dir / "adapter", partial / "adapter")
            atomic_write_json(partial / CHECKSUMS, artifact_checksums(partial / "adapter"))
            atomic_write_json(partial / "record.json", common.versioned(record))
            common.drop_misshapen_entry(self.reporter, entry, folder=True)
            try:
                replace_dir(partial, entry)
            except OSError as exc:  # (a folder put there since replace_dir moved the old one aside)
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not entry.is_dir():
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)


def _drop_abandoned_copies(entry: Path) -> None:
    """Delete the half-written copies of ``entry`` that a killed run left beside it (each
    run writes its own, ``<entry>.<pid>-<random>.partial``, and ``<entry>.partial`` as
    earlier versions did), once they are an hour old (:data:`ABANDONED_AFTER_NS`): a
    younger one may be another process's at work (another project's run sharing the
    cache, on another machine too)."""
    import time

    for leftover in entry.parent.glob(f"{entry.name}*.partial"):
        with contextlib.suppress(OSError):
            if time.time_ns() - leftover.stat().st_mtime_ns > ABANDONED_AFTER_NS:
                shutil.rmtree(leftover, ignore_errors=True)


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; empty where there is none or it cannot be read (a
    record that only describes, lost with nothing else)."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _recorded_subset(entry: Path) -> list[str] | None:
    """The subset a cached run's record says it trained on, in its order; None if
    unreadable or not a list of names (a damaged record: the run is trained again)."""
    try:
        record = json.loads((entry / "record.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    subset = record.get("subset") if isinstance(record, dict) else None
    return subset if isinstance(subset, list) and all(isinstance(n, str) for n in subset) else None


def _adapter_problems(entry: Path) -> list[str]:
    """The files of a cached run's adapter that fail their checksums (none to check in
    entries from before checksums were kept, beyond the adapter folder being there: a
    deletion cut short can leave the record alone); raises when the checksums are unreadable."""
    path = entry / CHECKSUMS
    if path.is_file():
        recorded = json.loads(path.read_text())
        if not artifacts_shape_ok(recorded):  # an edit: not the checksums stored with the adapter
            return [f"{CHECKSUMS} is not a record of checksums"]
        return verify_checksums(entry / "adapter", recorded)
    return [] if (entry / "adapter").is_dir() else ["the adapter folder is missing"]


def _intact(entry: Path, raises: bool = True) -> bool:
    """Whether a cached run's adapter passes its checksums (:func:`_adapter_problems`).
    An entry that cannot be read raises (:func:`_damage`) unless not ``raises`` (`plan`)."""
    try:
        return not _adapter_problems(entry)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        if raises:
            _damage(entry, exc)  # (raises when the entry could not be read, which is no damage)
        return False


#: how a cached run's file that cannot be read is damaged: a folder where a file belongs, a
#: file where a folder belongs
_DAMAGE_ERRNOS = (errno.EISDIR, errno.ENOTDIR)


def _damage(entry: Path, exc: BaseException) -> str:
    """What is wrong with the cached run at ``entry``, whose files raised ``exc`` when read,
    when that is damage, for the notice deleting it (a garbled file, a folder where a file
    belongs); raises otherwise. A file this process may not read (EACCES, EPERM, EROFS) goes
    up as it is, the CLI's permissions message; any other OSError (EIO, a stale network
    mount) is a UserError keeping the entry: a finished fine-tune, hours of work maybe, was
    deleted and trained again over a problem reading it that running again would not have."""
    if not isinstance(exc, OSError) or exc.errno in _DAMAGE_ERRNOS:
        return f"{type(exc).__name__}: {exc}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        raise exc
    raise UserError(
        f"The cached fine-tune {entry} cannot be read ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
        "it is kept. Fix what keeps it from being read (the disk, the mount) and run again, or delete that "
        "folder to train the run again."
    ) from exc


#: the finetune stage's record of the base model its adapters name and the folder it was read from
BASE_MODEL_FILE = "base_model.json"

#: the key of a cached run's record (and :data:`BASE_MODEL_FILE`'s ``run_revisions``) holding
#: the commit of the hub model its adapter was trained from
RUN_REVISION = "base_model_revision"


def classifier_load_hint(classes: list[str], head_size: int | None = None) -> str:
    """How to load a classifier adapter: the head has one output per class of the target
    and all sources (not the base model's own label count), ids in this order, or
    ``model.num_labels`` outputs (``head_size``) when the spec asked for more, the rest
    unused: loading needs the head's size, not the count of classes."""
    outputs = max(head_size or 0, len(classes))
    shown = ", ".join(f"{i} = {name!r}" for i, name in enumerate(classes[:20]))
    more = f", … ({len(classes)} in all)" if len(classes) > 20 else ""
    spare = (f"; ids {len(classes)}–{outputs - 1} are unused (model.num_labels is {outputs})"
             if outputs > len(classes) else "")
    has = (f"{outputs} outputs for {len(classes)} classes" if outputs > len(classes) else f"{outputs} classes")
    return (f"The classification head has {has}, the labels of the target and every source: "
            f"build the base model with `AutoModelForSequenceClassification.from_pretrained(base, "
            f"num_labels={outputs})` before `peft.PeftModel.from_pretrained(model, folder)` (ids: {shown}{more}"
            f"{spare}).")


def model_card(label_list: list[str], subset: list[str], ctx: StageContext, record: dict[str, Any],
               classes: list[str] | None = None, versions: Any = None, spec_digest: str | None = None) -> str:
    """The adapter folder's README.md: what this one run was trained on and with, its own
    seed (``record["seed"]``: ``project.seed`` + i for the i-th of ``finetune.seeds``, not
    the project's seed, which every run's card named), the step whose weights were kept
    (the best on the target's validation rows, not always the last), the library
    ``versions`` that trained it (a cached run's own; left out where unknown) and the digest
    of the resolved spec the stage ran with (``.subsetctl/specs/<digest>.json``): an adapter
    folder copied out of the project says what made it."""
    from subsetctl.report.markdown import md_code, md_title

    spec = ctx.spec
    provenance = common.card_provenance(versions, spec_digest)
    load = (classifier_load_hint(classes, spec.model.num_labels) if classes
            else "Load with `peft.PeftModel.from_pretrained(base_model, this_folder)`.")
    seed = record.get("seed", spec.project.seed)
    best, best_loss = record.get("best_step"), record.get("best_val_loss")
    kept = (f"- weights kept: step {best}'s, the best target validation loss ({best_loss:.4g})\n"
            if best and isinstance(best_loss, float) else "")
    return (
        f"# subsetctl adapter: {', '.join(label_list)}\n\n"
        f"LoRA adapter (peft format) for {md_code(spec.model.source)}, fine-tuned by subsetctl on the target "
        f"`{spec.target.name}` plus {len(subset)} selected source(s): {', '.join(subset) or '(none)'}.\n\n"
        f"- steps: {record['steps']}, batch size: {spec.finetune.batch_size}, lr: {spec.finetune.lr}\n"
        f"- LoRA: r={spec.model.lora.r}, alpha={spec.model.lora.alpha}\n"
        f"- final train loss: {record['last_train_loss'] if record['last_train_loss'] is not None else 'n/a'}\n"
        f"{kept}"
        f"- project: {md_title(spec.project.name)}, seed {seed}\n"
        f"{provenance}\n"
        f"{load} Test metrics are in the project's report.md.\n"
    )


def _results_only(record: dict[str, Any]) -> dict[str, Any]:
    """A run record without how the run went (``resumed_from``: the checkpoint step an
    interrupted run went on from), which is not a result (the manifest's summary has it)."""
    return {k: v for k, v in record.items() if k != "resumed_from"}


def training_loss_ends(losses: list[float]) -> dict[str, float]:
    """The mean training loss of a run's first and last tenth of steps (1 to 10 steps each:
    one batch's loss is noisy), as ``train_loss_start`` and ``train_loss_end``; nothing for
    a run of fewer than 4 steps or with a non-finite loss (a divergence, said otherwise)."""
    if len(losses) < 4 or not all(math.isfinite(x) for x in losses):
        return {}
    width = min(10, max(1, len(losses) // 10))
    return {"train_loss_start": sum(losses[:width]) / width, "train_loss_end": sum(losses[-width:]) / width}


#: a training loss that ends this many times its start, and this much higher, went astray
LOSS_ROSE_RATIO, LOSS_ROSE_BY = 1.5, 0.5


def _warn_if_diverged(ctx: StageContext, job: dict[str, Any], record: dict[str, Any]) -> None:
    """Warn when a run diverged: its adapter is then an earlier checkpoint's, or the untrained
    start's, and its test metrics are not those of the fine-tune the spec asks for. Also when
    its training loss rose far above where it started while staying finite: a learning
    rate too high for the model sends the weights to a constant prediction (the loss near
    the log of the vocabulary size) without a NaN, and the test metrics, also of the
    adapter kept by validation, are then quietly those of a broken model."""
    start, end = record.get("train_loss_start"), record.get("train_loss_end")
    if (not record.get("diverged") and isinstance(start, float) and isinstance(end, float)
            and end > start * LOSS_ROSE_RATIO and end - start > LOSS_ROSE_BY):
        ctx.reporter.warn(
            f"finetune {'/'.join(job['labels'])} (seed {job['seed']}): the training loss rose from {start:.3f} to "
            f"{end:.3f} over {record.get('steps')} steps (means of its first and last steps) without becoming NaN: "
            "the fine-tune went astray, most likely with a learning rate too high for the model, and its test "
            f"metrics are not those of a working fine-tune. Lower finetune.lr (now {ctx.spec.finetune.lr:g}), "
            "then run again.")
    if not record.get("diverged"):
        return
    kept = record.get("best_step") or 0
    adapter = (f"its adapter is the one saved at step {kept}" if kept else
               "its adapter is the untrained start (no checkpoint came before the divergence)")
    ctx.reporter.warn(
        f"finetune {'/'.join(job['labels'])} (seed {job['seed']}) diverged (the loss or an update became NaN or infinite) "
        f"after {record.get('steps')} of {ctx.spec.finetune.steps} steps: {adapter}, so its test metrics are "
        "not those of a finished fine-tune. "
        + common.divergence_fix("finetune", ctx.spec.finetune.lr, ctx.spec.finetune.weight_decay))


def _counted_work(spec: Spec, picks: int, distinct: int) -> str:
    """Finetune's work for ``picks`` selections of which ``distinct`` differ: one fine-tune
    per distinct subset and seed, "2 fine-tunes (4 picks, 2 distinct) of 3 steps of 4 examples"."""
    f = spec.finetune
    runs = distinct * f.seeds
    seeds = f", × {f.seeds} seeds" if f.seeds > 1 else ""
    return (f"{runs} fine-tune{'s' if runs != 1 else ''} ({picks} pick{'s' if picks != 1 else ''}, "
            f"{distinct} distinct{seeds}) of {common.steps_work(f.steps, f.batch_size, f.grad_accum)}")


class FinetuneStage(common.ModelStage):
    name = "finetune"
    description = "fine-tune the base model on each selection and baseline"
    after = ("data", "search")
    # no test rows (editing them re-runs it not), and of the search only its picks
    reads_parts: ClassVar[dict[str, str]] = {**common.TRAIN_SIDE, **common.PICKS}
    memory_keys = ("finetune.batch_size", "model.max_length")
    accumulation_keys = ("finetune.batch_size", "finetune.grad_accum")
    resumable_work = "the fine-tunes it finished, and checkpoints every finetune.checkpoint_every steps"
    spec_keys = ("project.seed", "model", "finetune")
    # peft writes the base model's path into each adapter's config, and the model card names
    # the spec's model.source: where the model was, not what was trained (moving the project
    # or the model folder changes them); which runs came from the cache, computed with which
    # library versions; the base model's record (the report counts its note on adapters trained
    # from another commit itself: counted here, it would re-run the evaluation of the same adapters)
    describes_only = ("runs/*/adapter/adapter_config.json", "runs/*/adapter/README.md", BASE_MODEL_FILE,
                      common.PROVENANCE)

    switch = "finetune.enabled"

    def work(self, spec: Spec, forced: bool = False) -> str:
        f = spec.finetune
        selections = len(spec.search.strategies) + len(f.baselines)
        seeds = f" × {f.seeds} seeds" if f.seeds > 1 else ""
        return (f"up to {selections * f.seeds} fine-tunes ({selections} selections{seeds}; alike picks are trained "
                f"once) of {common.steps_work(f.steps, f.batch_size, f.grad_accum)}; "
                + common.reused_unless_forced(forced, "those in the cache are reused"))

    @staticmethod
    def _distinct_work(spec: Spec, picks: dict[str, list[str]]) -> str:
        """:meth:`work`'s count once the search has picked (``picks``, :func:`selections`):
        the fine-tunes `run` trains, one per distinct subset and seed, "2 fine-tunes (4 picks,
        2 distinct)", where the spec alone tells only "up to 4" (picks of the same sources are
        trained once)."""
        return _counted_work(spec, len(picks), len({tuple(sorted(subset)) for subset in picks.values()}))

    def last_work(self, spec: Spec, summary: Any) -> str | None:
        """The fine-tunes the last run (with ``spec``) trained or reused, one per distinct
        pick and seed, as its ``summary`` counts them ("2 fine-tunes (4 picks, 2 distinct)"):
        :meth:`work` of its spec said only "up to 4". That when the summary lacks them."""
        runs, labels = (summary.get("runs"), summary.get("labels")) if isinstance(summary, dict) else (None, None)
        seeds = spec.finetune.seeds
        if not isinstance(runs, int) or not isinstance(labels, dict) or runs % seeds:
            return self.work(spec)
        return _counted_work(spec, len(labels), runs // seeds)

    def planned_work(self, spec: Spec, forced: bool, project: Project, rerun: set[str],
                     resumes: bool = False, inputs: dict[str, Any] | None = None) -> str | None:
        """:meth:`work`, saying how many of its distinct fine-tunes the cache holds ("3 of 5
        cached, reused") when the stages that decide them (data, search) are not re-run, and
        those a run that stopped partway finished (its runs.json, which `run` keeps when it
        resumes), and how many fine-tunes the search's picks make: one per distinct subset
        (:meth:`_distinct_work`), and the disk its adapters and checkpoints take where that
        matters (:func:`~subsetctl.stages.common.lora_disk_note`). Nothing on disk changes."""
        def count(ctx: StageContext) -> tuple[int, int, int]:
            cache = AdapterCache(ctx)
            jobs = {run_key(subset, seed): (subset, seed) for subset in selections(ctx).values()
                    for seed in range(spec.project.seed, spec.project.seed + spec.finetune.seeds)}
            done = common.read_work_record(ctx, ctx.out_dir / RUNS, dict) if ctx.options.get("resumes") else {}
            return (sum(key in done for key in jobs), sum(cache.holds(*job) for key, job in jobs.items() if key not in done),
                    len(jobs))

        return (common.cached_count_work(self, spec, forced, project, rerun, count, resumes,
                                         lambda ctx: self._distinct_work(spec, selections(ctx)))
                + common.lora_disk_note(self.name, spec, project,
                                        None if any(name in rerun for name in self.after)
                                        else fine_tunes_left(spec, project, resumes), resumes))

    def enabled(self, spec: Any) -> bool:
        return bool(spec.finetune.enabled)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from subsetctl import pipeline
        from subsetctl.modeling.lora import name_base_model
        from subsetctl.modeling.resolve import (
            adapter_base_model_folder,
            adapter_base_model_name,
            adapter_base_model_revision,
        )
        from subsetctl.modeling.train import train_lora

        spec = ctx.spec
        base_name = adapter_base_model_name(spec.model.source, ctx.project.root)  # what the adapters name
        picks = selections(ctx)
        path = ctx.out_dir / RUNS
        # a run's record is its results only: the same fine-tune gives the same runs.json (and
        # output digest) whether it ran straight, resumed from a checkpoint or came from the
        # cache (records an earlier subsetctl wrote named the step a run resumed from)
        runs: dict[str, Any] = {k: _results_only(r) for k, r in common.read_work_record(ctx, path, dict).items()}
        resumed: dict[str, int] = {}
        target_train = common.examples(ctx, spec.target.name, "train")
        validation = common.examples(ctx, spec.target.name, "validation")
        by_key: dict[str, dict[str, Any]] = {}
        for label, subset in picks.items():
            if not subset and label != "target_only":
                ctx.reporter.warn(f"{label} selected no source: it is fine-tuned on the target only.")
            for s in range(spec.finetune.seeds):
                seed = spec.project.seed + s
                key = run_key(subset, seed)
                by_key.setdefault(key, {"subset": subset, "seed": seed, "labels": []})["labels"].append(label)
        todo = [k for k in by_key if k not in runs]
        common.check_lora_disk(ctx, self.name, len(todo))  # (those finished by a run stopped partway are kept)
        cache = AdapterCache(ctx)
        cache_writes = common.CacheWrites(ctx.reporter, cache.folder)
        provenance = common.Provenance(ctx)
        classes = cache.data.labels if spec.model.kind == "classifier" else None  # the head's classes, by id
        restored = 0
        # run key -> the hub commit its adapter was trained from (a restored one: as its cache record says; one a
        # run stopped partway finished: as that run's base-model record, written as it went, says)
        record_path = ctx.out_dir / BASE_MODEL_FILE
        earlier = _read_json(record_path).get("run_revisions") if runs else None
        run_revisions: dict[str, str] = ({k: c for k, c in earlier.items() if k in runs and isinstance(c, str)}
                                         if isinstance(earlier, dict) else {})
        spec_digest = fingerprint(spec_json(spec))  # the stage's resolved spec, as its manifest names it
        with ctx.reporter.progress("finetune runs", total=len(by_key)) as task:
            task.update(len(by_key) - len(todo))
            for key in todo:
                job = by_key[key]
                run_dir = ctx.out_dir / "runs" / key
                record = None if ctx.options.get("forced") else cache.restore(job["subset"], job["seed"], run_dir)
                if record is not None:  # trained by an earlier run with the same inputs
                    versions, threads = common.take_versions(record)
                    provenance.reused(key, versions, threads)
                    if isinstance(trained_from := record.pop(RUN_REVISION, None), str):  # (not a result)
                        run_revisions[key] = trained_from
                        atomic_write_json(record_path, {"run_revisions": run_revisions})
                    record = _results_only(record)
                    restored += 1
                    name_base_model(run_dir / "adapter", base_name)
                    atomic_write_text(run_dir / "adapter" / "README.md", model_card(
                        job["labels"], job["subset"], ctx, record, classes, versions, spec_digest))
                    runs[key] = record
                    atomic_write_json(path, runs)
                    task.update(len(runs))
                    continue
                provenance.computed(key)
                common.seed_everything(job["seed"])
                model, tokenizer, _ = common.lora_model(ctx, seed=job["seed"])
                train = list(target_train)
                for rows in common.examples_of(ctx, [(name, "train") for name in job["subset"]]):
                    train.extend(rows)
                config = common.train_config(spec.finetune, spec, objective="ce", optimizer="adamw",
                                             seed=job["seed"], eval_objective="ce")
                with common.train_progress(ctx, f"  {'/'.join(job['labels'])} (seed {job['seed']})",
                                           spec.finetune.steps) as progress:
                    result = train_lora(model, tokenizer, train, config, run_dir, kind=spec.model.kind,
                                        eval_examples=validation, progress=progress)
                # the next fine-tune loads the base model afresh: holding this one meanwhile made the
                # stage peak at two models (peft's wrappers hold reference cycles: collected now)
                del model, tokenizer
                gc.collect()
                for notice in result.notices:
                    ctx.reporter.warn(f"finetune {'/'.join(job['labels'])} (seed {job['seed']}): {notice}")
                if result.resumed_from:
                    resumed[key] = result.resumed_from
                    ctx.reporter.info(f"finetune {'/'.join(job['labels'])} (seed {job['seed']}) resumed from "
                                      f"step {result.resumed_from} of an interrupted run")
                shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
                runs[key] = {"subset": job["subset"], "seed": job["seed"], "steps": result.steps,
                             "best_step": result.best_step, "best_val_loss": result.best_eval_loss,
                             "diverged": result.diverged,
                             "last_train_loss": result.train_losses[-1] if result.train_losses else None,
                             **training_loss_ends(result.train_losses)}
                atomic_write_text(run_dir / "adapter" / "README.md",
                                  model_card(job["labels"], job["subset"], ctx, runs[key], classes,
                                             pipeline.library_versions(), spec_digest))
                atomic_write_json(path, runs)  # first: a cache that cannot take it (a teammate's) loses nothing
                trained_from = adapter_base_model_revision(spec.model.source, ctx.project.root, spec.model.revision)
                if trained_from:
                    run_revisions[key] = trained_from
                    atomic_write_json(record_path, {"run_revisions": run_revisions})  # (whole at the stage's end)
                stored = {**runs[key], **({RUN_REVISION: trained_from} if trained_from else {})}
                cache_writes(lambda: cache.store(job["subset"], job["seed"], run_dir, stored))  # noqa: B023
                task.update(len(runs))
        for key, job in by_key.items():  # trained now, earlier, or restored from the cache alike
            _warn_if_diverged(ctx, job, runs[key])
        labels = {label: [run_key(subset, spec.project.seed + s) for s in range(spec.finetune.seeds)]
                  for label, subset in picks.items()}
        head = {"classes": classes, "head_size": max(spec.model.num_labels or 0, len(classes))} if classes else {}
        provenance.write()
        atomic_write_json(ctx.out_dir / "labels.json", {"labels": labels, "selections": picks, **head})
        # the base model the adapters name, where this machine read it from, and a hub id's
        # revision in the local cache (the report says them)
        revision = adapter_base_model_revision(spec.model.source, ctx.project.root, spec.model.revision)
        # each adapter's own commit: one restored from the cache may have been trained from another than the
        # cache serves now (a newer revision downloaded since), and was recorded under the new one
        older = {k: c for k, c in run_revisions.items() if k in by_key and c != revision}
        if revision and older:
            commits = sorted(set(older.values()))
            ctx.reporter.warn(
                f"finetune: {len(older)} of the {len(by_key)} fine-tunes, reused from the cache, "
                f"{'was' if len(older) == 1 else 'were'} trained from {spec.model.source} at commit "
                f"{', '.join(commits)}, not {revision}, which the local Hugging Face cache serves now: "
                "`subsetctl run --force finetune` trains them from it (or set model.revision to the old commit).")
        atomic_write_json(record_path, {
            "name": base_name,
            "folder": adapter_base_model_folder(spec.model.source, ctx.project.root),
            **({"revision": revision} if revision else {}),
            **({"run_revisions": {k: run_revisions[k] for k in sorted(run_revisions) if k in by_key}}
               if revision and run_revisions else {})})
        kept = len(by_key) - len(todo)  # finished by a run that stopped partway (Ctrl-C): its runs.json
        if kept or restored:  # say what was trained now, as the search says what it took from its store
            taken = []
            if kept:
                taken.append(f"{kept} kept as the run that stopped partway finished {'it' if kept == 1 else 'them'}")
            if restored:
                taken.append(f"{restored} reused from the cache (trained by an earlier run with the same inputs)")
            ctx.reporter.info(f"finetune: of {len(by_key)} fine-tune{'s' if len(by_key) != 1 else ''}, "
                              f"{' and '.join(taken)}; {len(todo) - restored} trained now.")
        return {"runs": len(by_key), "trained_now": len(todo) - restored,
                "reused_runs": len(by_key) - len(todo) + restored,
                "labels": {k: len(v) for k, v in picks.items()},
                "resumed_from": resumed}
