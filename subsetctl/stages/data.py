"""The data stage: every source becomes a datasets.Dataset with common columns,
split deterministically into train/validation/test and saved in the project."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from subsetctl.library_imports import DATA_LIBRARIES
from subsetctl.pipeline import Stage, StageContext
from subsetctl.project import Project
from subsetctl.reporter import ShownInResults, waiting
from subsetctl.spec import Spec
from subsetctl.stages import common

#: data warnings printed as the stage runs; the rest are counted (report.md lists them all)
DATA_WARNINGS_LIVE = 20


class DataStage(Stage):
    name = "data"
    description = "load, shuffle and split the target and the sources"
    after = ()
    # not "plugins": what a plugin can change here is a loader's code, which extra_inputs holds
    # (adding a strategy or estimator plugin re-ran this stage, every source reused)
    spec_keys = ("project.seed", "model.kind", "target", "sources")
    spec_keys_no_longer_read = ("plugins",)  # a data stage recorded with them stays up to date
    inputs_rechecked = True  # files read source by source, for minutes: one may be edited meanwhile
    partial_work_keyed = True  # each source's folder records the key it was prepared from (.source.json)
    imports_first = DATA_LIBRARIES

    def work(self, spec: Spec, forced: bool = False) -> str:
        reused = common.reused_unless_forced(forced, "those prepared before as they are now are reused",
                                             "every one loaded again")
        tested = " (its test rows from target.test_loader)" if spec.target.test_loader is not None else ""
        return f"the target{tested} and {len(spec.sources):,} sources ({reused})"

    def planned_work(self, spec: Spec, forced: bool, project: Project, rerun: set[str],
                     resumes: bool = False, inputs: dict[str, Any] | None = None) -> str | None:
        """:meth:`work`, saying how many of the target and sources `run` prepares again and
        which, "1 of 4 prepared again (a), 3 reused", by the keys the earlier results' sources
        were prepared from (those in the stage's folder, set aside or previous, which `run`
        reuses from); the plain line when they cannot be read. Results whose prepared files
        fail their checksums (an Arrow file cut short or deleted) are not reused from, as `run`
        discards them: the stage's own then say so, "the prepared files fail their checksums
        (a/train/data-00000-of-00001.arrow has size 100, expected 1864): none reused from them"
        (`plan` counted those sources reused, and `run` prepared them again). The checksums are
        those `plan` checks anyway, by their recorded sizes and file stamps (a file is hashed only
        where its stamp changed). Each source's files are counted once, in ``inputs`` (``plan``'s:
        counting 500 ``save_to_disk`` sources again took 0.4 s of plan's 4.1 s of CPU). Nothing on disk changes."""
        from subsetctl.data.fingerprint import prepared_again
        from subsetctl.errors import UserError
        from subsetctl.project import verify_checksums

        work = self.work(spec, forced)
        if forced:
            return work
        manifest = project.read_manifest(self.name)
        damaged = (verify_checksums(project.stage_dir(self.name), manifest.get("artifacts", {}))
                   if manifest is not None and not manifest.get("corrupt") else [])
        # (`run` resets the stage when they fail: only intact earlier results are reused from)
        folders = [*([] if damaged else [project.stage_dir(self.name)]), *self._intact_earlier_results(project)]
        try:
            again = prepared_again(spec, project.root, folders, (inputs or {}).get("extra"))
        except (UserError, OSError, ValueError):  # a missing file: `run` says it
            return work
        tested = " (its test rows from target.test_loader)" if spec.target.test_loader is not None else ""
        total = len(spec.sources) + 1
        said = prepared_again_text(again, total)
        if damaged:
            more = f" and {len(damaged) - 1:,} more" if len(damaged) > 1 else ""
            failing = f"the prepared files fail their checksums ({damaged[0]}{more}): `run` discards them"
            said = (f"all {total:,} prepared again: {failing}" if len(again) == total else
                    f"{said}; {failing}, none reused from them")
        return f"the target{tested} and {len(spec.sources):,} sources ({said}; the target counted)"

    def spec_slice(self, spec: Spec) -> dict[str, Any]:
        """The spec slice, with each ``loader.label_field`` a causal LM's loaders do not read
        at its default (:func:`~subsetctl.data.fingerprint.source_dump`): setting it
        prepared every source again for nothing. (:meth:`raw_spec_slice` counts it, as
        subsetctl did before, so a data stage computed then stays up to date.)"""
        from subsetctl.data.fingerprint import source_dump

        return {**super().spec_slice(spec), "target": source_dump(spec, spec.target),
                "sources": [source_dump(spec, source) for source in spec.sources]}

    def extra_inputs(self, spec: Spec, project: Project) -> dict[str, Any]:
        """Each source's input files (or generating package), with a ``type: plugin``
        loader's code; and the code of any plugin registered under a built-in loader
        type the spec uses (a ``plugins:`` entry that replaces ``jsonl``)."""
        from subsetctl.data.fingerprint import source_fingerprint_inputs
        from subsetctl.plugin_loading import plugin_code_inputs
        from subsetctl.registry import LOADERS

        everything = [spec.target, *spec.sources]
        loaders = [s.loader for s in everything] + ([spec.target.test_loader] if spec.target.test_loader else [])
        types = sorted({loader.type for loader in loaders if loader.type != "plugin"})
        return {
            s.name: source_fingerprint_inputs(s, project.root) for s in everything
        } | plugin_code_inputs(spec.plugins, [(LOADERS, t) for t in types], project.root)  # a plugin that
        # registers a loader under a built-in type (jsonl) and changes: empty when the built-ins load

    def earlier_extra_inputs(self, spec: Spec, project: Project) -> list[dict[str, Any]]:
        """:meth:`extra_inputs` with each source reading one task of a Parquet file
        (``where``) counting the whole file, as subsetctl did before it counted that task's
        rows alone, and each reading a local dataset folder counting the whole folder, as
        it did before it counted the files of the configuration and split read
        (:func:`~subsetctl.data.fingerprint.counted_otherwise_before`): a data stage run then
        stays up to date while the files are as they were. Also, where a source reads a
        ``save_to_disk`` folder beside those, each such folder alone counted whole, the rest as
        today, as subsetctl counted them just before it left the folder's ``_fingerprint`` out
        (:func:`~subsetctl.data.fingerprint.counts_saved_to_disk`): the first alone left such a
        project's data stage stale ("input files changed") after the upgrade."""
        from subsetctl.data.fingerprint import (
            counted_otherwise_before,
            counts_saved_to_disk,
            source_fingerprint_inputs,
        )

        counted = [s for s in [spec.target, *spec.sources] if counted_otherwise_before(s, project.root)]
        if not counted:
            return []
        today = self.extra_inputs(spec, project)
        earlier = [{**today, **{s.name: source_fingerprint_inputs(s, project.root, whole_files=True) for s in counted}}]
        saved = [s for s in counted if counts_saved_to_disk(s, project.root)]
        # (else the same as the first, but for a target whose test_loader another way counted otherwise)
        if saved and (len(saved) < len(counted) or any(getattr(s, "test_loader", None) is not None for s in saved)):
            earlier.append({**today, **{s.name: source_fingerprint_inputs(s, project.root, saved_whole=True)
                                        for s in saved}})
        return earlier

    def output_parts(self, outputs: dict[str, str], summary: dict[str, Any]) -> dict[str, Any]:
        """The ``train`` part, which every stage but evaluate reads (:data:`~subsetctl.stages.common.TRAIN_SIDE`):
        the split folders but the test splits', and data.json's summary but what it says of the
        test rows (their counts, ``target_test_from``) and its warnings (a leak of test rows
        into a source is one; text no stage computes with), which sources were reused, and a
        classifier's rows per class (the report's; the split folders hold them). The
        sources' order (meta_init's multitask pool) and the label vocabulary (built over every
        split, test too: a label only the test rows hold widens a classifier's head) count."""
        from subsetctl.data.stage import SUMMARY_FILE

        counts = summary.get("counts") if isinstance(summary.get("counts"), dict) else {}
        tests = tuple(f"{name}/test/" for name in counts)
        files = {path: held for path, held in outputs.items() if path != SUMMARY_FILE and not path.startswith(tests)}
        said = {key: value for key, value in summary.items()
                if key not in ("warnings", "target_test_from", "reused", "classes")}  # (classes: the files' rows)
        said["counts"] = {name: {split: n for split, n in split_counts.items() if split != "test"}
                          if isinstance(split_counts, dict) else split_counts for name, split_counts in counts.items()}
        return {"train": {"files": files, "summary": said}}

    def parts_as_before(self, spec: Spec, project: Project, manifest: dict[str, Any],
                        inputs: dict[str, Any]) -> dict[str, str]:
        """The ``train`` part's digest as ``manifest`` records it when what changed since is
        the target's ``test_loader`` alone (its file or options): the train and validation
        rows are drawn from the rest, the same again, so `plan` finds meta_init, the
        gradients, verify and the fine-tunes up to date, as `run` does once this stage has
        run. Not for a classifier, whose label vocabulary (in the train part) is taken over
        the test rows too (:meth:`parts_change_note`)."""
        recorded = manifest.get("output_digests")
        train = recorded.get("train") if isinstance(recorded, dict) else None
        if spec.model.kind != "causal-lm" or not isinstance(train, str) or not self._test_rows_alone(spec, manifest,
                                                                                                        inputs):
            return {}
        return {"train": train}

    def parts_change_note(self, spec: Spec, project: Project, manifest: dict[str, Any],
                          inputs: dict[str, Any]) -> dict[str, str]:
        """A classifier's ``train`` part after an edit of ``test_loader`` alone: it changes only
        when the test rows add or drop a label no other row holds (the label vocabulary is
        taken over every split), which :meth:`parts_as_before` cannot tell without reading them."""
        if spec.model.kind == "causal-lm" or not self._test_rows_alone(spec, manifest, inputs):
            return {}
        return {"train": "its re-run is for the target's test rows alone (target.test_loader), which change what "
                         "this stage reads only by adding or dropping a label no other row has: a classifier's "
                         "labels are counted over every split"}

    def _test_rows_alone(self, spec: Spec, manifest: dict[str, Any], inputs: dict[str, Any]) -> bool:
        """Whether the data stage's ``inputs`` differ from those ``manifest`` recorded in the
        target's ``test_loader`` alone (its settings in the spec slice, its files among the
        extra inputs; set, changed or unset): the rest is what the train side is drawn from."""
        def train_side(recorded: Any) -> Any:
            if not isinstance(recorded, dict):
                return None
            slice_, extra = recorded.get("slice"), recorded.get("extra")
            if not isinstance(slice_, dict) or not isinstance(extra, dict):
                return None
            target = slice_.get("target")
            files = extra.get(spec.target.name)
            return {**recorded,
                    "slice": {**slice_, "target": ({k: v for k, v in target.items() if k != "test_loader"}
                                                   if isinstance(target, dict) else target)},
                    "extra": {**extra, spec.target.name: ({k: v for k, v in files.items() if k != "test_loader"}
                                                          if isinstance(files, dict) else files)}}

        then, now = train_side(manifest.get("inputs")), train_side(inputs)
        return then is not None and then == now and manifest.get("inputs") != inputs

    def unfinished_note(self, project: Project, spec: Spec | None = None) -> str | None:
        """How many sources a run that stopped partway prepared (each kept, see
        :mod:`subsetctl.data.stage`)."""
        from subsetctl.data.stage import SOURCE_FILE

        done = sum(1 for record in project.stage_dir(self.name).glob(f"*/{SOURCE_FILE}")
                   if not record.parent.name.startswith("."))  # not a killed write's .tmp-/.old- folder
        if not done:
            return None
        return (f"a run stopped partway after preparing {done} source{'s' if done != 1 else ''}; `run` resumes: "
                f"it keeps {'them' if done != 1 else 'it'} and prepares the rest")

    def _intact_earlier_results(self, project: Project) -> list[Path]:
        """The folders of this stage's results of other inputs (set aside while this run
        replaces them, and the previous sets) whose files pass their checksums: sources
        are reused from these only."""
        from subsetctl.project import verify_checksums

        kept = [(project.set_aside_dir(self.name), project.read_set_aside_manifest(self.name)),
                *project.read_previous_manifests(self.name)]
        return [folder for folder, manifest in kept
                if manifest is not None and not verify_checksums(folder, manifest.get("artifacts", {}))]

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from subsetctl.data.stage import run_data_stage

        sources = [ctx.spec.target, *ctx.spec.sources]
        with ctx.reporter.progress("data", total=len(sources)) as task:
            done = [0]  # sources done so far, for the bar's count while the next one is read

            def finished(count: int, total: int) -> None:
                done[0] = count
                task.update(count)

            summary = run_data_stage(
                ctx.spec, ctx.spec_dir, ctx.out_dir, progress=finished,
                reading=lambda name: task.update(done[0], reading=name),  # the bar (and a log) names it
                # sources prepared from the same inputs by the run whose results this one replaces, or the one before
                reuse_from=self._intact_earlier_results(ctx.project),
                reuse=not ctx.options.get("forced"),
                waiting=lambda description: waiting(ctx.reporter, description),  # (the tokenizer's load)
            )
        if ctx.spec.target.test_loader is not None:  # where the scores' rows come from, said as the stage ends
            counts = summary["counts"][ctx.spec.target.name]
            ctx.reporter.info(f"data: target {ctx.spec.target.name!r}: train {counts['train']} and validation "
                              f"{counts['validation']} rows from loader, test: {counts['test']} rows from test_loader")
        # (rows a `by` group's sources leave out, a file's lines not UTF-8: the spec's warnings said so, with
        # file and line, as the run began; data.json keeps them for the report)
        said = {f"source_files[{g}].by: {note}" for g, note in ctx.spec.left_out_rows} | set(ctx.spec.checked_warnings)
        warnings = [warning for warning in summary.get("warnings", []) if warning not in said]
        for warning in warnings[:DATA_WARNINGS_LIVE]:  # (the report lists them as data warnings, from data.json)
            ctx.reporter.warn(ShownInResults(warning))
        if len(warnings) > DATA_WARNINGS_LIVE:  # 200 sources with a small problem each: not 400 lines here
            ctx.reporter.warn(ShownInResults(f"{len(warnings) - DATA_WARNINGS_LIVE} more data warnings: report.md lists them all "
                              "(and .subsetctl/data/data.json, from this stage on)."))
        if summary["reused"]:
            n = len(summary["reused"])
            if n == len(sources):
                ctx.reporter.info(f"[dim]data: all {n:,} sources (the target counted) reused as prepared by an "
                                  "earlier run (same spec and files)[/dim]")
            else:
                from rich.markup import escape

                again = [s.name for s in sources if s.name not in summary["reused"]]
                ctx.reporter.info("[dim]" + escape(f"data: {prepared_again_text(again, len(sources), ' sources')} as an earlier "
                                                   "run prepared them (same spec and files; the target counted)")
                                  + "[/dim]")
        return summary


def prepared_again_text(again: list[str], total: int, noun: str = "") -> str:
    """How many of ``total`` sources (the target counted) are prepared again, naming them
    (``again``: the first 5, then how many more), and how many reused: "1 of 4 prepared
    again (a), 3 reused" (``noun`` " sources": "1 of 4 sources prepared again"), as `plan`
    says it before a run and `run` as the stage ends."""
    if not again:
        return f"all {total:,}{noun} reused"
    if len(again) == total:
        return f"none of the {total:,}{noun} prepared before: each loaded"
    named = ", ".join(again[:5]) + (f" and {len(again) - 5:,} more" if len(again) > 5 else "")
    return f"{len(again):,} of {total:,}{noun} prepared again ({named}), {total - len(again):,} reused"
