"""The evaluate stage: every fine-tuned adapter on the target's held-out test split:
the loss and the task metric (reasoning-gym's own scorer, exact match, or accuracy and
macro-F1), with mean ± std over seeds. Each adapter's result is also kept in
``.subsetctl/cache/evaluate/``, keyed by the adapter's checksums, the data, the model and
the evaluate settings, so re-running the stage evaluates only adapters it has not seen."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from subsetctl import RESULTS_VERSION
from subsetctl.pipeline import StageContext
from subsetctl.project import MANIFEST, Project, atomic_write_json, fingerprint, read_json_object, touch
from subsetctl.reporter import ShownInResults
from subsetctl.row_metadata import is_reasoning_gym_row
from subsetctl.spec import Spec, fingerprint_dump
from subsetctl.stages import common
from subsetctl.stages.finetune import adapter_relpath

RESULT_CACHE = ("cache", "evaluate")
#: the stage's record of the test results a run finished so far (a stopped run's are kept)
PER_RUN = "per_run.json"
#: the extra input saying results hold their per-row test losses (:meth:`EvaluateStage.extra_inputs`)
ROW_LOSSES = "per_row_test_losses"
#: the extra input saying a causal LM's answers were compared in Unicode NFKC, other scripts'
#: sentence-final marks dropped (:func:`~subsetctl.modeling.answers.normalize_answer`): results
#: scored before ('東京。' not '東京') are not up to date, and `plan` says why
ANSWERS_COMPARED = "exact_match_answers"
#: what every test result has, of these types (a cached or recorded one without them is
#: damaged: evaluated again); ``loss_ce`` is null where it was not finite
RESULT_KEYS = {"score": common.NUMBER, "loss_ce": common.NUMBER_OR_NULL, "metric": str, "n": int,
               "metrics": dict, "warnings": list}


def exact_match_scores(spec: Spec, project: Project) -> bool:
    """Whether exact match scores any of the target's test rows (so comparing answers in
    Unicode NFKC, :data:`ANSWERS_COMPARED`, can change a result): a causal LM's, with
    ``evaluate.metric`` exact_match, or auto where a test row carries no reasoning-gym
    ``rg_task`` (:func:`~subsetctl.row_metadata.is_reasoning_gym_row`), as the data stage's
    results hold them (read from its files, no loader run); reasoning_gym scores every row
    with reasoning-gym's scorer (a run refuses rows without rg_task). True where the data
    stage's test split cannot be read yet: the stage's inputs are taken again once it has run."""
    if spec.model.kind == "classifier" or spec.evaluate.metric == "reasoning_gym":
        return False
    if spec.evaluate.metric != "auto":
        return True
    data = project.stage_dir("data")
    if not (data / spec.target.name).is_dir():
        return True
    return not _every_test_row_reasoning_gym(str(data), spec.target.name,
                                             _files_stamps(data / spec.target.name / "test"))


def _files_stamps(folder: Path) -> tuple[tuple[str, int, int, int], ...]:
    """Each file in ``folder`` with its size and :func:`~subsetctl.project.stamp_of` (empty
    where there is no such folder): what a split saved there changes when written again."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        return tuple((e.name, (st := e.stat()).st_size, st.st_mtime_ns, st.st_ino) for e in entries if e.is_file())
    except OSError:
        return ()


@functools.lru_cache(maxsize=8)
def _every_test_row_reasoning_gym(data: str, target: str, stamps: tuple[tuple[str, int, int, int], ...]) -> bool:
    """Whether every row of the data stage's test split of ``target`` (in the stage folder
    ``data``) carries reasoning-gym's ``rg_task``: read once while its files (``stamps``, the
    key) are unchanged, not at each of the several calls a `plan` or `run` makes of
    :func:`exact_match_scores` (its inputs, the cache keys, the results to score again)."""
    from subsetctl.data.saving import plain_split_columns
    from subsetctl.errors import UserError

    test = Path(data) / target / "test"
    # (read with pyarrow alone where it can: the data stage's module imports datasets, a second
    # that `plan`, and a `run` with nothing to do, did not take)
    columns = plain_split_columns(test) if test.exists() else {}  # (an empty split is not saved)
    if columns is None:
        from subsetctl.data.stage import split_columns

        try:
            columns = split_columns(Path(data), target, "test")
        except (UserError, OSError, ValueError):  # damaged: the run says so; until then, as exact match would
            return False
    n = len(next(iter(columns.values()), []))
    return all(is_reasoning_gym_row({"metadata": raw}) for raw in columns.get("metadata", [None] * n))


def result_cache_keys(ctx: StageContext, runs: list[str], compared: bool = True) -> dict[str, list[str]]:
    """run -> the keys of its result in the cache, today's first, then those earlier
    versions wrote (with the adapter's config, and keyed by the model folder's path, see
    :func:`common.model_key`): everything one adapter's test result depends on, i.e. the
    adapter's weights (their checksums in the finetune manifest; the model card and the
    config, which name where the model was, aside), the target's data (its test split is
    what is scored), the model and the evaluate settings. ``compared=False``: the keys a
    subsetctl comparing answers before Unicode NFKC kept a causal LM's results by, whose
    kept answers are scored again (:func:`rescored_entry`)."""
    artifacts = ctx.upstream_manifest("finetune").get("artifacts", {})
    base = {"data": common.DataFiles(ctx).of([ctx.spec.target.name]),  # the target's test split is read
            "evaluate": fingerprint_dump(ctx.spec)["evaluate"], "version": RESULTS_VERSION}  # a classifier's max_new_tokens aside
    if ctx.spec.model.kind == "classifier":  # macro-F1 over the gold classes: results kept before are not reused,
        base["macro_f1"] = "gold classes"  # and test texts cut by max_length are warned about
        base["texts_cut"] = "warned"
    else:  # exact_match compares numbers exactly (a float tolerance matched 1234567891 to 1234567890): likewise,
        base["numbers"] = "exact"  # and generation's prompt cut is warned about
        if compared and exact_match_scores(ctx.spec, ctx.project):
            base["answers"] = "NFKC"  # and answers are compared in Unicode NFKC ('１２' = '12', '東京。' = '東京')
    today, earlier = common.model_key(ctx)

    def adapter(run: str, with_config: bool) -> dict[str, str]:
        """The adapter's files; its config only as earlier keys had it (peft writes the base
        model's absolute path there; the LoRA settings in it are the spec's, in the key)."""
        prefix = f"{adapter_relpath(run)}/"
        return {p[len(prefix):]: a["sha256"] for p, a in artifacts.items()
                if p.startswith(prefix) and not p.endswith("README.md")
                and (with_config or not p.endswith("adapter_config.json"))}

    def keys(run: str) -> list[str]:
        now = fingerprint({**base, **today, "adapter": adapter(run, with_config=False)})
        return [now, *(fingerprint({**base, **model, "adapter": adapter(run, with_config=True)})
                       for model in [today, *earlier])]

    return {run: keys(run) for run in runs}


def _test_rows_bound(spec: Spec, project: Project) -> str:
    """At most how many test rows the data stage reads from ``target.test_loader``'s file,
    where that is cheap to know (:func:`~subsetctl.data.checks.rows_in_file`: a JSON Lines
    file's non-blank lines, a Parquet file's rows), "at most 6 rows: file test.jsonl has 6
    non-blank lines"; "" otherwise (no test_loader, or another kind of file)."""
    from subsetctl.data.checks import rows_in_file

    counted = rows_in_file(spec.target.test_loader, project.root) if spec.target.test_loader is not None else None
    if counted is None:
        return ""
    n, what = counted
    return f"at most {_rows_text(n)}: {what}"


def _rows_text(n: Any) -> str:
    """``n`` test rows as evaluate's work line says them, "5 rows"; "" when ``n`` is not a count."""
    return f"{n:,} row{'s' if n != 1 else ''}" if isinstance(n, int) and not isinstance(n, bool) else ""


def _adapters_text(n: int) -> str:
    """``n`` adapters as evaluate's work line names them: "the 3 fine-tuned adapters"."""
    return f"the {n} fine-tuned adapter{'s' if n != 1 else ''}"


def _cached_result(entry: Path) -> dict[str, Any] | None:
    """The test result the cache entry ``entry`` holds; None when there is none there, or
    it is damaged (cut short, garbled, not a result, a folder), which is evaluated again."""
    if not entry.is_file():
        return None
    try:
        result = json.loads(entry.read_text())
    except (ValueError, UnicodeDecodeError):  # (a JSONDecodeError is a ValueError)
        return None
    return result if common.is_record(result, RESULT_KEYS) else None


def rescored_entry(cache: Path, keys: list[str]) -> dict[str, Any] | None:
    """The first test result the cache entries ``keys`` (:func:`result_cache_keys` with
    ``compared=False``) hold, its kept answers scored again as exact match compares them now
    (:func:`~subsetctl.modeling.answers.rescored_answers`); None when none holds one."""
    from subsetctl.modeling.answers import rescored_answers

    for key in keys:
        result = _cached_result(cache / f"{key}.json")
        if result is not None and (rescored := rescored_answers(result)) is not None:
            return rescored
    return None


def kept_result(cache: Path, keys: list[str], before: dict[str, Any] | None,
                earlier: list[str] | None) -> tuple[dict[str, Any] | None, str]:
    """The test result an adapter's evaluation is kept in, and where (what `plan` counts as
    cached, what decides whether the run loads the model, and what the run reuses):
    ``"cache"``, the first existing of its cache entries ``keys`` (:func:`result_cache_keys`;
    one damaged is evaluated again); else ``"before"``, ``before`` (the stage's own results an
    earlier subsetctl made with these inputs but for the per-row losses or NFKC, set aside as
    the run starts); else ``"rescored"``, the result a cache entry of the keys ``earlier``
    (``compared=False``) holds, its kept answers scored again. ``(None, "")`` where none."""
    entry = next((path for path in (cache / f"{k}.json" for k in keys) if path.exists()), None)
    if entry is not None and (result := _cached_result(entry)) is not None:
        return result, "cache"
    if before is not None:
        return before, "before"
    if earlier and (result := rescored_entry(cache, earlier)) is not None:
        return result, "rescored"
    return None, ""


def _holds_row_losses(result: dict[str, Any]) -> bool:
    """Whether a test result holds a loss (a number, or null where not finite) for each of
    its test rows, as this subsetctl records them: one an earlier subsetctl kept has none."""
    losses = result.get("losses")
    return (isinstance(losses, list) and len(losses) == result["n"]
            and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in losses))


def results_before_row_losses(ctx: StageContext) -> dict[str, Any]:
    """run -> the test result the stage's own set-aside results hold (per_run.json), where
    those were made with this run's inputs but for the per-row test losses
    (:func:`results_without_row_losses`): a cache deleted before the upgrade left them the
    only copy, so the adapters were evaluated again, generating, though `plan` said one
    loss pass. Likewise those scored before answers were compared in NFKC, scored again."""
    return results_without_row_losses(ctx.project.set_aside_dir(ctx.out_dir.name),
                                      ctx.project.read_work_marker(ctx.out_dir.name).get("inputs"))


def results_without_row_losses(folder: Path, now: Any) -> dict[str, Any]:
    """run -> the test result the stage's results in ``folder`` hold (per_run.json), where
    they were made with the inputs ``now`` but for the per-row test losses (:data:`ROW_LOSSES`,
    which an earlier subsetctl did not record), or but that a causal LM's answers were
    compared in Unicode NFKC (:data:`ANSWERS_COMPARED`: those results' kept answers are scored
    again, :func:`~subsetctl.modeling.answers.rescored_answers`, those without them left
    out): what a run with ``now`` would compute, less the losses where they lack them. Empty
    otherwise (other inputs, or none there). Each with the ``versions`` and ``threads`` that
    computed it, as a cache entry has them: its provenance's, else that run's."""
    from subsetctl.modeling.answers import rescored_answers

    manifest = read_json_object(folder / MANIFEST) or {}
    old = manifest.get("inputs")
    if not isinstance(old, dict) or not isinstance(now, dict) or not isinstance(old.get("extra"), dict) \
            or not isinstance(now.get("extra"), dict):
        return {}
    added = {key for key in (ROW_LOSSES, ANSWERS_COMPARED) if key in now["extra"] and key not in old["extra"]}
    extra = {key: value for key, value in now["extra"].items() if key not in added}
    if not added or {**now, "extra": extra} != old:
        return {}
    results, provenance = (read_json_object(folder / name) or {} for name in (PER_RUN, common.PROVENANCE))
    computed_with, threads = (provenance.get(key) if isinstance(provenance.get(key), dict) else {}
                              for key in ("computed_with", "threads"))
    if ANSWERS_COMPARED in added:
        results = {run: rescored_answers(result) if common.is_record(result, RESULT_KEYS) else None
                   for run, result in results.items()}
    return {run: {**result, "versions": computed_with.get(run, manifest.get("versions")),
                  "threads": threads.get(run, None if run in computed_with else manifest.get("threads"))}
            for run, result in results.items() if common.is_record(result, RESULT_KEYS)}


class EvaluateStage(common.ModelStage):
    name = "evaluate"
    description = "test-split metrics of every fine-tuned selection"
    after = ("data", "finetune")
    memory_keys = ("evaluate.batch_size", "evaluate.max_new_tokens", "model.max_length")
    spec_keys = ("model", "evaluate")
    # which results came from the cache, computed with which library versions: not a result
    describes_only = (common.PROVENANCE,)

    switch = "finetune.enabled"

    def extra_inputs(self, spec: Spec, project: Project) -> dict[str, Any]:
        """The model's files, and that each result holds its per-row test losses (``losses``,
        which the report compares the pick and the baselines on row by row): results an
        earlier subsetctl kept without them are completed once (:meth:`run`), so `plan`
        says why the stage runs again; and for a causal LM, that its answers are compared in
        Unicode NFKC (:data:`ANSWERS_COMPARED`), where exact match scores a test row
        (:func:`exact_match_scores`): results scored before are scored again. A target whose
        rows reasoning-gym's scorer scores alone keeps its results, whose scores cannot change."""
        compared = {ANSWERS_COMPARED: "NFKC"} if exact_match_scores(spec, project) else {}
        return {**super().extra_inputs(spec, project), ROW_LOSSES: "recorded", **compared}

    def memory_settings(self, spec: Spec) -> tuple[str, ...]:
        """A classifier generates nothing: its max_new_tokens bounds no memory."""
        if spec.model.kind == "classifier":
            return tuple(key for key in self.memory_keys if key != "evaluate.max_new_tokens")
        return self.memory_keys

    def work(self, spec: Spec, forced: bool = False) -> str:
        return (f"{self._head(spec, 'each fine-tuned adapter')}; "
                + common.reused_unless_forced(forced, "those in the cache are reused"))

    def last_work(self, spec: Spec, summary: Any) -> str | None:
        """The adapters the last run (with ``spec``) tested, as its ``summary`` counts them
        ("the target's test split through the 3 fine-tuned adapters"): :meth:`work` of its
        spec said only "each fine-tuned adapter". That when the summary lacks them (a run
        of an earlier subsetctl)."""
        n = summary.get("adapters") if isinstance(summary, dict) else None
        if not isinstance(n, int) or isinstance(n, bool):
            return self.work(spec)
        return self._head(spec, _adapters_text(n), _rows_text(summary.get("n_test")))

    @staticmethod
    def _head(spec: Spec, adapters: str, rows: str = "") -> str:
        """:meth:`work` before its reuse clause, through ``adapters`` ("each fine-tuned
        adapter", or "the 3 fine-tuned adapters" once finetune's are known), with the test
        ``rows`` where known ("5 rows")."""
        generate = "" if spec.model.kind == "classifier" else f", generating up to {spec.evaluate.max_new_tokens} tokens"
        return f"the target's test split{f' ({rows})' if rows else ''} through {adapters}{generate}"

    def rough_rows(self, spec: Spec, project: Project) -> int | None:
        """The target's test rows the data stage last prepared (each goes through every adapter)."""
        counts = common.prepared_counts(project)
        return counts.get(spec.target.name, {}).get("test") if counts else None

    def planned_work(self, spec: Spec, forced: bool, project: Project, rerun: set[str],
                     resumes: bool = False, inputs: dict[str, Any] | None = None) -> str | None:
        """:meth:`work`, saying how many of the adapters' test results the cache holds ("3 of
        5 cached, reused") when the stages that decide them (data, finetune) are not
        re-run, and those a run that stopped partway finished (its per_run.json, which `run`
        keeps when it resumes), and how many adapters that is ("the 3 fine-tuned adapters":
        "none cached" alone told not how many are evaluated). Nothing on disk changes."""
        from subsetctl.errors import UserError

        def adapters(ctx: StageContext) -> list[str]:
            labels = json.loads((ctx.upstream_dir("finetune") / "labels.json").read_text())["labels"]
            return sorted({run for each in labels.values() for run in each})

        def test_rows(ctx: StageContext) -> str:
            """The test rows the data stage's results hold ("5 rows"; "" where they do not say)."""
            try:
                return _rows_text(ctx.upstream_manifest("data")["summary"]["counts"][spec.target.name]["test"])
            except (UserError, KeyError, TypeError):
                return ""

        def known(ctx: StageContext) -> str:
            return self._head(spec, _adapters_text(len(adapters(ctx))), test_rows(ctx))

        if "data" in rerun and "finetune" not in rerun:
            # the data stage re-runs for the target's test rows alone (target.test_loader; its train side
            # comes out as before, or finetune would re-run): the adapters are finetune's now, the test rows
            # those the data stage reads, whose results the cache keys by them
            try:
                head = self._head(spec, _adapters_text(len(adapters(common.planned_context(spec, project, self.name,
                                                                                          resumes)))),
                                  _test_rows_bound(spec, project))
            except (UserError, OSError, ValueError, KeyError, TypeError, AttributeError):
                return self.work(spec, forced)
            return f"{head}; " + common.reused_unless_forced(forced, "results cached for those test rows are reused")

        def count(ctx: StageContext) -> tuple[int, int, int]:
            runs = adapters(ctx)
            done = (common.read_work_record(ctx, ctx.out_dir / PER_RUN, dict, RESULT_KEYS)
                    if ctx.options.get("resumes") else {})
            # (the stage's own results, made by an earlier subsetctl with these inputs but for the
            # per-row losses, which `run` completes, or for answers compared in NFKC, which it scores
            # again: set aside as it starts)
            before = {} if done else results_without_row_losses(ctx.out_dir, self.inputs_now(spec, project))
            recorded = (read_json_object(ctx.out_dir / MANIFEST) or {}).get("inputs")
            recorded_extra = recorded.get("extra") if isinstance(recorded, dict) else None
            compared = exact_match_scores(spec, project)
            before_nfkc = compared and isinstance(recorded_extra, dict) and ANSWERS_COMPARED not in recorded_extra
            cache = project.state_dir.joinpath(*RESULT_CACHE)
            cached = 0
            todo = [run for run in runs if run not in done]
            earlier = result_cache_keys(ctx, todo, compared=False) if compared else {}
            for run, keys in result_cache_keys(ctx, todo).items():
                # the entry `run` reads: today's, else an earlier key's (which it adopts as today's)
                result, where = kept_result(cache, keys, before.get(run), earlier.get(run))
                cached += result is not None
                if where == "rescored" or (where == "before" and before_nfkc):
                    rescored.append(run)  # (kept answers scored before NFKC: scored again, nothing generated)
            return sum(run in done for run in runs), cached, len(runs)

        rescored: list[str] = []
        line = common.cached_count_work(self, spec, forced, project, rerun, count, resumes, known)
        if rescored and line.endswith("cached, reused"):
            line += f" ({len(rescored)} re-scored from the kept answers, nothing generated)"
        return line

    def inputs_now(self, spec: Spec, project: Project) -> dict[str, Any]:
        """The stage's inputs as `run` would record them now, its upstream stages' results
        as they are (:meth:`planned_work` reads them only when none of those re-runs)."""
        from subsetctl.pipeline import inputs_as_results_stand
        from subsetctl.stages import all_stages

        return inputs_as_results_stand(self, spec, project, all_stages())

    def enabled(self, spec: Any) -> bool:
        return bool(spec.finetune.enabled)

    def imports_for(self, ctx: StageContext) -> tuple[str, ...]:
        """None where every adapter's test result is kept with its per-row losses (the run's
        per_run.json, the cache, or results an earlier subsetctl scored before NFKC, whose
        kept answers are re-scored): the run loads no model, and importing transformers
        whole took 7 s of its 8. The model libraries otherwise (:meth:`run` decides alike;
        where it does load the model after all, only the interrupt guard is lost)."""
        if ctx.options.get("forced"):
            return self.imports_first
        try:
            labels = json.loads((ctx.upstream_dir("finetune") / "labels.json").read_text())["labels"]
            runs = sorted({run for each in labels.values() for run in each})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return self.imports_first
        done = read_json_object(ctx.out_dir / PER_RUN) or {}
        todo = [run for run in runs if not (run in done and common.is_record(done[run], RESULT_KEYS))]
        cache = ctx.project.state_dir.joinpath(*RESULT_CACHE)
        earlier = (result_cache_keys(ctx, todo, compared=False) if todo and exact_match_scores(ctx.spec, ctx.project)
                   else {})
        before = results_before_row_losses(ctx) if todo else {}
        for run, keys in result_cache_keys(ctx, todo).items():
            result, _ = kept_result(cache, keys, before.get(run), earlier.get(run))
            if result is None or not _holds_row_losses(result):
                return self.imports_first
        return ()

    def run(self, ctx: StageContext) -> dict[str, Any]:
        spec = ctx.spec
        ft = ctx.upstream_dir("finetune")
        finetuned = json.loads((ft / "labels.json").read_text())
        labels = finetuned["labels"]
        test = common.examples(ctx, spec.target.name, "test")
        per_run_path = ctx.out_dir / PER_RUN
        per_run: dict[str, Any] = common.read_work_record(ctx, per_run_path, dict, RESULT_KEYS)
        keys = sorted({k for ks in labels.values() for k in ks})
        cache = ctx.project.state_dir.joinpath(*RESULT_CACHE)
        cache_writes = common.CacheWrites(ctx.reporter, cache)
        cache_keys = result_cache_keys(ctx, [k for k in keys if k not in per_run])
        # (a causal LM's results kept before answers were compared in NFKC: their answers scored again)
        earlier = ({} if not exact_match_scores(spec, ctx.project) or ctx.options.get("forced")
                   else result_cache_keys(ctx, [k for k in keys if k not in per_run], compared=False))
        before = results_before_row_losses(ctx)
        model = tokenizer = None
        provenance = common.Provenance(ctx)
        reused = 0
        with ctx.reporter.progress("evaluate", total=len(keys)) as task:
            task.update(sum(k in per_run for k in keys))
            for key in keys:
                if key in per_run:
                    continue
                cached, *legacy = (cache / f"{k}.json" for k in cache_keys[key])
                common.adopt_legacy_entry(cached, legacy)
                common.drop_misshapen_entry(ctx.reporter, cached, folder=False)
                # this adapter was evaluated before (a damaged result is evaluated again): in the cache,
                # else (a cache deleted) in the results an earlier subsetctl made with these inputs
                # (today's key alone: an earlier key's entry is adopted as today's above)
                result, where = ((None, "") if ctx.options.get("forced")
                                 else kept_result(cache, cache_keys[key][:1], before.get(key), earlier.get(key)))
                kept_before = where in ("before", "rescored")  # (NFKC: the answers scored again)
                if result is not None:
                    versions = common.take_versions(result)
                    if kept_before and _holds_row_losses(result):  # cached by today's key (else with the losses below)
                        entry = {**result, "versions": versions[0], "threads": versions[1]}
                        cache_writes(lambda: atomic_write_json(cached, entry))  # noqa: B023
                    provenance.reused(key, *versions)
                    if not _holds_row_losses(result):  # kept by an earlier subsetctl (or damaged): its
                        from subsetctl.modeling.evaluate import test_losses  # (torch: only for the model)
                        from subsetctl.modeling.lora import load_adapter_weights

                        if model is None:  # per-row losses, one forward pass over the rows (nothing generated)
                            model, tokenizer, _ = common.lora_model(ctx, trainable=False)
                        load_adapter_weights(model, ft / adapter_relpath(key))
                        result["losses"] = test_losses(model, tokenizer, test, spec.model.kind,
                                                       spec.model.max_length, spec.evaluate.batch_size)
                        completed = {**result, "versions": versions[0], "threads": versions[1]}
                        cache_writes(lambda: atomic_write_json(cached, completed))  # noqa: B023
                    per_run[key] = result
                    touch(cached)  # used: the last to go when the caches are trimmed
                    reused += 1
                    atomic_write_json(per_run_path, per_run)
                    task.update(sum(k in per_run for k in keys))
                    continue
                from subsetctl.modeling.evaluate import evaluate_model  # (torch: only where the model runs)
                from subsetctl.modeling.lora import load_adapter_weights

                if model is None:
                    model, tokenizer, _ = common.lora_model(ctx, trainable=False)
                load_adapter_weights(model, ft / adapter_relpath(key))
                result = evaluate_model(model, tokenizer, test, spec.model.kind, spec.model.max_length,
                                        max_new_tokens=spec.evaluate.max_new_tokens,
                                        batch_size=spec.evaluate.batch_size, metric=spec.evaluate.metric)
                per_run[key] = result
                provenance.computed(key)
                atomic_write_json(per_run_path, per_run)  # first: a cache that cannot take it (a teammate's) loses nothing
                cache_writes(lambda: atomic_write_json(cached, common.versioned(result)))  # noqa: B023
                task.update(sum(k in per_run for k in keys))
        provenance.write()
        if reused:
            ctx.reporter.info(f"evaluate: reused {reused} result(s) of adapters evaluated by an earlier run.")
        warnings = sorted({w for r in per_run.values() for w in r.get("warnings", [])})
        classes = finetuned.get("classes") if spec.model.kind == "classifier" else None
        if classes and (one_class := one_class_warning(labels, per_run, classes)):
            warnings.append(one_class)
        for w in warnings:  # (the report lists them under the test metrics)
            ctx.reporter.warn(ShownInResults(w))
        # answers in class words: macro-F1 over them, as a classifier's (per_run.json rewritten only then)
        if spec.model.kind != "classifier" and _with_answers_macro_f1(ctx, per_run, keys):
            atomic_write_json(per_run_path, per_run)
        table: dict[str, Any] = {}
        for label, ks in labels.items():
            scores = np.array([per_run[k]["score"] for k in ks], dtype=float)
            losses = np.array([per_run[k]["loss_ce"] for k in ks], dtype=float)
            table[label] = {
                "metric": per_run[ks[0]]["metric"],
                "score_mean": float(scores.mean()), "score_std": float(scores.std()) if len(ks) > 1 else None,
                "loss_mean": float(losses.mean()), "loss_std": float(losses.std()) if len(ks) > 1 else None,
                "seeds": len(ks), "n_test": per_run[ks[0]]["n"],
            }
            f1 = [per_run[k].get("metrics", {}).get("macro_f1") for k in ks]
            if all(v is not None for v in f1):  # classifiers (and answers in class words): macro-F1 beside the score
                table[label]["macro_f1_mean"] = float(np.mean(f1))
                table[label]["macro_f1_std"] = float(np.std(f1)) if len(ks) > 1 else None
        atomic_write_json(ctx.out_dir / "metrics.json", {"metrics": table, "warnings": warnings})
        # (adapters: how many it tested, which `plan` says its last run's seconds were for; the
        # summary is in no fingerprint or output digest)
        return {"metrics": {k: round(v["score_mean"], 4) for k, v in table.items()}, "n_test": len(test),
                "reused": reused, "adapters": len(keys)}


def _with_answers_macro_f1(ctx: StageContext, per_run: dict[str, Any], keys: list[str]) -> bool:
    """A causal LM's results given ``macro_f1`` among their metrics, over the exact answers
    (:func:`~subsetctl.modeling.answers.answers_macro_f1`), where the target's train answers
    form a small closed set (:func:`~subsetctl.modeling.answers.answer_classes`: "positive" /
    "negative"); taken from each result's kept predictions, so a result from the cache or an
    earlier subsetctl has it too, nothing generated again. Else the results are left as they are.
    Whether it gave any result ``macro_f1``."""
    from subsetctl.modeling.answers import answer_classes, answers_macro_f1

    train = common.examples(ctx, ctx.spec.target.name, "train")
    if answer_classes([str(row.get("response", "")) for row in train]) is None:
        return False
    given = False
    for key in keys:
        predictions = per_run[key].get("predictions") or []
        if predictions and all(isinstance(p, dict) and "prediction" in p and "gold" in p for p in predictions):
            f1 = answers_macro_f1([p["prediction"] for p in predictions], [str(p["gold"]) for p in predictions])
            per_run[key]["metrics"] = {**(per_run[key].get("metrics") or {}), "macro_f1": f1}
            given = True
    return given


def one_class_warning(labels: dict[str, list[str]], per_run: dict[str, Any], classes: list[str] | None) -> str | None:
    """The warning for the classifier's selections whose every fine-tune (each seed)
    predicted one class for every test example, though the test split holds more than
    one: such a run learned only which class is common, and its accuracy is that class's
    share of the test split, so the test metric cannot tell those selections apart (the
    reference classifier spec: every selection 0.667, macro-F1 0.4, said nowhere). None
    when no selection did, or for results without their predictions."""
    constant: dict[str, set[int]] = {}
    gold: set[int] = set()
    for label, runs in labels.items():
        predicted: set[int] = set()
        for run in runs:
            predictions = per_run[run].get("predictions")
            if not isinstance(predictions, list) or not predictions:
                return None
            gold.update(p.get("gold") for p in predictions if isinstance(p, dict))
            ones = {p.get("prediction") for p in predictions if isinstance(p, dict)}
            if len(ones) != 1:
                break
            predicted |= ones
        else:
            constant[label] = predicted
    if not constant or len(gold) < 2:
        return None
    names = list(constant)
    who = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    all_classes = set().union(*constant.values())

    def class_name(i: Any) -> str:
        return repr(classes[i]) if isinstance(i, int) and classes and 0 <= i < len(classes) else repr(i)

    what = (f"predicted {class_name(next(iter(all_classes)))}" if len(all_classes) == 1
            else "each predicted a single class")
    n = per_run[labels[names[0]][0]].get("n")
    return (f"The fine-tunes of {who} {what} for every one of the {n} test examples (every seed): they learned "
            "only which class is common, and accuracy is then that class's share of the test split, which does not "
            "tell selections apart (the test losses still do). More finetune.steps, another finetune.lr or more "
            "target examples may help.")
