"""The verify stage: fine-tune from theta* for real on k random subsets and measure
the true value of what the estimator predicts (mean softplus(-f_j) over the target's
validation rows), for each kind of fine-tune the spec asks for:

- ``ce``: AdamW on the usual token cross-entropy (what users run);
- ``surrogate``: SGD on mean softplus(-f_i) (what the linearized estimate models).

Every kind uses the same subsets, the same seed (batch sequence) and the same steps.
With ``verify.repeats`` > 1 every (kind, subset) is fine-tuned again with batch-order
seeds project.seed + r; calibration fits the mean over repeats and the stage reports how
well the repeats rank the subsets alike (the ceiling for any estimate's Spearman against
a single run). Each finished run is recorded at once, so a killed stage resumes at the
next run.

Every finished run is also kept in ``.subsetctl/cache/verify/`` under a key of all it
depends on (theta*, the prepared data, the model, kind, subset, seed and budget), and
reused from there: raising ``verify.k`` or ``verify.repeats``, or changing one kind's
learning rate, re-runs only the fine-tunes whose inputs changed.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from subsetctl import RESULTS_VERSION
from subsetctl.pipeline import StageContext, output_digest
from subsetctl.project import Project, atomic_write_json, fingerprint, touch
from subsetctl.spec import Spec
from subsetctl.stages import common

RESULTS = "results.json"
#: Where finished runs are kept across changes of the verify settings (under .subsetctl/).
RUN_CACHE = ("cache", "verify")
#: what every fine-tune's result has, of these types (a cached or recorded one without them
#: is damaged: trained again); ``true`` is null for a run that diverged
RESULT_KEYS = {"true": common.NUMBER_OR_NULL, "diverged": bool}


def verify_subsets(sources: list[str], k: int, seed: int) -> list[list[str]]:
    """k distinct subsets (all of them when fewer exist): the empty one, all sources, then
    random subsets whose sizes cycle through 1..n-1 so that small and large subsets are
    both represented. A size whose subsets have all been chosen gives its turn to the next
    size in the cycle that has some left (the subsets before that point, and so those of a
    smaller k, are unchanged)."""
    n = len(sources)
    rng = np.random.default_rng(seed)
    chosen: list[tuple[str, ...]] = [(), tuple(sources)] if sources else [()]  # (no sources: one subset)
    sizes = list(range(1, n)) or [0]
    attempts = 0
    while len(chosen) < k and attempts < 100 * k:
        size = _size_with_room(sizes, (len(chosen) - 2) % len(sizes), chosen, n)
        if size is None:  # every subset is chosen
            break
        pick = tuple(sources[i] for i in sorted(rng.choice(n, size=size, replace=False)))
        if pick not in chosen:
            chosen.append(pick)
        attempts += 1
    return [list(s) for s in chosen[:k]]


def _size_with_room(sizes: list[int], turn: int, chosen: list[tuple[str, ...]], n: int) -> int | None:
    """The first size from ``sizes[turn]`` on (cyclically) of which fewer than all
    C(n, size) subsets are in ``chosen``; None when every size is used up."""
    for step in range(len(sizes)):
        size = sizes[(turn + step) % len(sizes)]
        if sum(len(c) == size for c in chosen) < math.comb(n, size):
            return size
    return None


class VerifyStage(common.ModelStage):
    name = "verify"
    scratch = ("work",)  # the real fine-tune under way
    description = "real fine-tunes of k random subsets from theta*"
    after = ("data", "meta_init")
    reads_parts = common.TRAIN_SIDE  # no test rows: editing them re-runs it not
    memory_keys = ("verify.batch_size", "model.max_length")
    # not meta_init's optimizer settings: a real fine-tune takes only its schedule from them
    # (no weight decay, no gradient accumulation, verify's steps, batch and learning rates)
    spec_keys = ("project.seed", "model", "verify")
    # which results came from the cache, computed with which library versions: not a result
    describes_only = (common.PROVENANCE,)

    switch = "verify.enabled"

    def work(self, spec: Spec, forced: bool = False) -> str:
        """The real fine-tunes `run` does: one per subset, kind and repeat, the subsets those
        :func:`verify_subsets` gives (distinct, so no two are alike; all there are when
        ``verify.k`` asks for more, which validate warns of), each once; the spec tells them
        all, so the count is exact, not "up to"."""
        v = spec.verify
        sources = common.source_names(spec)
        k = len(verify_subsets(sources, v.k, spec.project.seed))
        runs = k * len(v.kinds) * v.repeats
        subsets = (f"all {k} subsets of {len(sources)} source{'s' if len(sources) != 1 else ''}" if k < v.k
                   else f"{k} subset{'s' if k != 1 else ''}")
        return (f"{runs} real fine-tune{'s' if runs != 1 else ''} ({subsets} × "
                f"{len(v.kinds)} kind{'s' if len(v.kinds) > 1 else ''}"
                f"{f' × {v.repeats} repeats' if v.repeats > 1 else ''}) of {common.steps_work(v.steps, v.batch_size)}; "
                + common.reused_unless_forced(forced, "those in the cache are reused"))

    def planned_work(self, spec: Spec, forced: bool, project: Project, rerun: set[str],
                     resumes: bool = False, inputs: dict[str, Any] | None = None) -> str | None:
        """:meth:`work`, saying how many of its fine-tunes the cache holds ("3 of 8 cached,
        reused") when the stages that key them (data, meta_init) are not re-run: `plan` said
        "those in the cache are reused", which told nothing of the hours the rest take; and
        those a run that stopped partway finished (its results.json, which `run` keeps when it
        resumes). Nothing on disk changes (no entry adopted, dropped or dated)."""
        def count(ctx: StageContext) -> tuple[int, int, int]:
            cache = RunCache(ctx)  # (a UserError or OSError: the model's files cannot be read now)
            v = spec.verify
            subsets = verify_subsets(common.source_names(spec), v.k, spec.project.seed)
            done = {_run_of(r) for r in _finished(ctx)} if ctx.options.get("resumes") else set()
            keys = [(kind, index, repeat) for repeat in range(v.repeats) for kind in v.kinds
                    for index in range(len(subsets))]
            cached = sum(cache.holds(kind, subsets[index], spec.project.seed + repeat)
                         for kind, index, repeat in keys if (kind, index, repeat) not in done)
            return sum(key in done for key in keys), cached, len(keys)

        return common.cached_count_work(self, spec, forced, project, rerun, count, resumes)

    def enabled(self, spec: Any) -> bool:
        return bool(spec.verify.enabled)

    def spec_slice(self, spec: Any) -> dict[str, Any]:
        """The slice, with the learning rate of a kind ``verify.kinds`` does not run at its
        default: no fine-tune reads it (``verify.lr_surrogate`` is also the default of
        ``estimate.sgd.lr``, which a ``kinds: [ce]`` project may tune without re-running
        verify)."""
        from subsetctl.spec import VerifySpec

        sliced = super().spec_slice(spec)
        verify = sliced.get("verify")
        if isinstance(verify, dict):
            unused = {f"lr_{kind}" for kind in ("ce", "surrogate") if kind not in spec.verify.kinds}
            defaults = VerifySpec().model_dump(mode="json")
            sliced["verify"] = {k: defaults[k] if k in unused else v for k, v in verify.items()}
        return sliced

    def settings_not_read(self, recorded_slice: dict[str, Any]) -> tuple[str, ...]:
        """The learning rates of the kinds the recorded ``verify.kinds`` does not run, recorded at
        their defaults (:meth:`spec_slice`): ``verify.lr_surrogate`` is read by a ``linear_sgd``
        search too, whose value report.json's ``settings`` then take."""
        verify = recorded_slice.get("verify")
        kinds = verify.get("kinds") if isinstance(verify, dict) else None
        if not isinstance(kinds, list):
            return ()
        return tuple(f"verify.lr_{kind}" for kind in ("ce", "surrogate") if kind not in kinds)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from subsetctl.modeling.train import evaluate_loss
        from subsetctl.stages.real_finetune import RealFinetuner

        spec = ctx.spec
        v = spec.verify
        subsets = verify_subsets(common.source_names(spec), v.k, spec.project.seed)
        path = ctx.out_dir / RESULTS
        done = _finished(ctx)
        finished = {_run_of(r): r for r in done}

        def say_diverged(kind: str, subset: list[str], seed: int) -> None:
            lr_key = "verify.lr_ce" if kind == "ce" else "verify.lr_surrogate"
            ctx.reporter.warn(f"verify: the {kind} fine-tune of subset {common.subset_label(subset)} (seed {seed}) "
                              f"diverged; it is excluded. If many do, lower {lr_key}.")

        finetuner: RealFinetuner | None = None
        cache = RunCache(ctx)
        cache_writes = common.CacheWrites(ctx.reporter, cache.folder)
        provenance = common.Provenance(ctx)
        reused = 0
        total = len(subsets) * len(v.kinds) * v.repeats
        with ctx.reporter.progress("verify fine-tunes", total=total) as task:
            task.update(len(finished))
            # one full pass over kinds x subsets per repeat, so a stopped stage has whole passes first
            for repeat in range(v.repeats):
                seed = spec.project.seed + repeat
                for kind in v.kinds:
                    for index, subset in enumerate(subsets):
                        if (kind, index, repeat) in finished:  # by a run stopped partway: said again, so
                            if finished[(kind, index, repeat)].get("diverged"):  # the manifest records it
                                say_diverged(kind, subset, seed)
                            continue
                        out = None if ctx.options.get("forced") else cache.get(kind, subset, seed)
                        run = f"{kind}-{index}-{repeat}"
                        computed = out is None
                        if out is None:
                            if finetuner is None:
                                finetuner = RealFinetuner(ctx, kind)
                            finetuner.kind = kind
                            out = finetuner.run(subset, ctx.out_dir / "work" / run, seed=seed)
                            provenance.computed(run)
                        else:
                            provenance.reused(run, *common.take_versions(out))
                            reused += 1
                        if out["diverged"]:
                            say_diverged(kind, subset, seed)
                        done.append({"kind": kind, "index": index, "repeat": repeat, "seed": seed,
                                     "subset": subset, **out})
                        atomic_write_json(path, done)
                        if computed:  # after its record: a cache that cannot take it (a teammate's) loses nothing
                            cache_writes(lambda: cache.put(kind, subset, seed, out))  # noqa: B023
                        task.update(len(done))
        shutil.rmtree(ctx.out_dir / "work", ignore_errors=True)
        seconds = [r["seconds"] for r in done if isinstance(r.get("seconds"), (int, float))]
        # the results without their wall-clock times: the same fine-tunes give the same file (and
        # output digest), however they were timed, resumed or taken from the cache
        atomic_write_json(path, [{k: v for k, v in r.items() if k != "seconds"} for r in done])
        if finetuner is None:
            finetuner = RealFinetuner(ctx, v.kinds[0])
        from subsetctl.modeling.lora import load_adapter_weights

        load_adapter_weights(finetuner.model, finetuner.theta_star)
        theta = evaluate_loss(finetuner.model, finetuner.tokenizer, finetuner.validation, spec.model.kind,
                              spec.model.max_length, batch_size=16, objective="surrogate")
        atomic_write_json(ctx.out_dir / "subsets.json", {"subsets": subsets, "theta_star_loss": theta})
        provenance.write()
        agreement = {kind: repeat_agreement(done, kind) for kind in v.kinds} if v.repeats > 1 else {}
        if reused:
            ctx.reporter.info(f"verify: reused {reused} fine-tune(s) finished by an earlier run with the same inputs.")
        if finished:
            ctx.reporter.info(f"verify: resumed with {len(finished)} fine-tune(s) an interrupted run had finished.")
        return {"k": len(subsets), "kinds": list(v.kinds), "repeats": v.repeats, "runs": len(done), "reused": reused,
                "resumed": len(finished),
                "repeat_spearman": agreement,
                "diverged": sum(bool(r["diverged"]) for r in done), "theta_star_val_loss": theta,
                "seconds_per_finetune": float(np.mean(seconds)) if seconds else None}


def _finished(ctx: StageContext) -> list[dict[str, Any]]:
    """The fine-tunes a run that stopped partway finished (the stage folder's results.json):
    `run` keeps them when it resumes."""
    return common.read_work_record(ctx, ctx.out_dir / RESULTS, list,
                                   {"kind": str, "index": int, "subset": list, **RESULT_KEYS})


def _run_of(record: dict[str, Any]) -> tuple[str, int, int]:
    """Which fine-tune a record of :func:`_finished` is: (kind, subset index, repeat)."""
    return record["kind"], record["index"], record.get("repeat", 0)


class RunCache:
    """Finished verify fine-tunes, one JSON file each, keyed by everything the result
    depends on, in the project's state folder (outside the stage folder, which is reset
    when the verify settings change)."""

    def __init__(self, ctx: StageContext) -> None:
        spec = ctx.spec
        upstream = ctx.upstream_manifest  # (`plan`'s: those `run` will find, :func:`common.cached_count_work`)
        self.reporter = ctx.reporter
        self.folder = ctx.project.state_dir.joinpath(*RUN_CACHE)
        self.spec = spec
        model, earlier = common.model_key(ctx)
        self.base = {
            "theta_star": upstream("meta_init")["output_digest"],
            "data": output_digest(upstream("data"), common.TRAIN_SIDE["data"]),  # its train side: no test rows
            **model,
            "grad_accum": 1,  # always 1 now; kept so runs cached before stay found
            "steps": spec.verify.steps,
            "batch_size": spec.verify.batch_size,
            "version": RESULTS_VERSION,
        }
        # runs an earlier subsetctl kept, keyed by the model folder's path and without its
        # files (theta*'s digest stood for them)
        by_path = {k: v for k, v in self.base.items() if k != "model_files"}
        self.legacy_bases = [{**by_path, "model": old["model"]} for old in earlier]
        # and keyed by the data stage's whole output (its test rows too), as an earlier subsetctl did
        self.legacy_bases = [{**b, "data": whole} for whole in common.data_keys_before(upstream("data"))
                             for b in [self.base, *self.legacy_bases]] + self.legacy_bases

    def _path(self, kind: str, subset: list[str], seed: int, base: dict[str, Any] | None = None) -> Path:
        lr = self.spec.verify.lr_ce if kind == "ce" else self.spec.verify.lr_surrogate
        key = fingerprint({**(base or self.base), "kind": kind, "subset": list(subset), "seed": seed, "lr": lr})
        return self.folder / f"{key}.json"

    def _paths(self, kind: str, subset: list[str], seed: int) -> list[Path]:
        """The entry's path under today's key, then under each key an earlier subsetctl wrote."""
        return [self._path(kind, subset, seed), *(self._path(kind, subset, seed, b) for b in self.legacy_bases)]

    def holds(self, kind: str, subset: list[str], seed: int) -> bool:
        """Whether :meth:`get` would take this fine-tune from the cache, changing nothing:
        for `plan`. The entry :meth:`get` reads (today's key's, else the first an earlier
        subsetctl wrote) must hold a result: a damaged one (cut short, garbled, a folder),
        which :meth:`get` passes over, does not count, so `plan` promises no reuse that
        `run` then trains again."""
        entry = next((path for path in self._paths(kind, subset, seed) if path.exists()), None)
        try:
            return entry is not None and _cached_result(entry) is not None
        except OSError:  # a folder where the file belongs (dropped by get), or unreadable now
            return False

    def get(self, kind: str, subset: list[str], seed: int) -> dict[str, Any] | None:
        path, *legacy = self._paths(kind, subset, seed)
        common.adopt_legacy_entry(path, legacy)
        common.drop_misshapen_entry(self.reporter, path, folder=False)
        try:
            result = _cached_result(path)
        except FileNotFoundError:
            return None
        if result is None:  # damaged: trained again
            return None
        touch(path)  # used: the last to go when the caches are trimmed (project.cache_limit_gb)
        return result

    def put(self, kind: str, subset: list[str], seed: int, result: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(kind, subset, seed)
        common.drop_misshapen_entry(self.reporter, path, folder=False)  # (not looked up when forced)
        atomic_write_json(path, common.versioned(result))


def _cached_result(path: Path) -> dict[str, Any] | None:
    """The fine-tune's result the cache entry ``path`` holds; None when it is damaged (cut
    short, garbled, not a result), which is trained again. Raises OSError when the file
    cannot be read (FileNotFoundError: there is none)."""
    try:
        result = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return result if common.is_record(result, RESULT_KEYS) else None


def mean_over_repeats(runs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """One row per subset of ``kind`` (by index): ``true`` is the mean over the repeats that
    did not diverge (None when every repeat diverged); ``true_repeats`` lists each repeat's
    value (None for a diverged one), in repeat order."""
    by_index: dict[int, list[dict[str, Any]]] = {}
    for r in runs:
        if r["kind"] == kind:
            by_index.setdefault(r["index"], []).append(r)
    rows = []
    for index in sorted(by_index):
        reps = sorted(by_index[index], key=lambda r: r.get("repeat", 0))
        values = [r["true"] for r in reps]
        finite = [x for x in values if x is not None and np.isfinite(x)]
        rows.append({"kind": kind, "index": index, "subset": reps[0]["subset"],
                     "true": float(np.mean(finite)) if finite else None, "true_repeats": values,
                     "diverged": not finite})
    return rows


def repeat_agreement(runs: list[dict[str, Any]], kind: str) -> float | None:
    """Mean Spearman, over pairs of repeats, between the true losses two repeats give the
    same subsets (subsets finite in both): how reproducible the ranking of one real
    fine-tune is. None with fewer than two repeats or three shared subsets."""
    from subsetctl.estimate.calibrate import spearman

    by_repeat: dict[int, dict[int, float]] = {}
    for r in runs:
        if r["kind"] == kind and r["true"] is not None and np.isfinite(r["true"]):
            by_repeat.setdefault(r.get("repeat", 0), {})[r["index"]] = r["true"]
    repeats = sorted(by_repeat)
    scores = []
    for i, a in enumerate(repeats):
        for b in repeats[i + 1:]:
            shared = sorted(set(by_repeat[a]) & set(by_repeat[b]))
            if len(shared) >= 3:
                scores.append(spearman(np.array([by_repeat[a][j] for j in shared]),
                                       np.array([by_repeat[b][j] for j in shared])))
    scores = [x for x in scores if np.isfinite(x)]
    return float(np.mean(scores)) if scores else None
