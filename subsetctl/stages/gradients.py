"""The gradients stage: f_i(theta*) and x_i = P^T grad f_i for every train and
validation row of the target and every train row of the sources (what the estimates
read), in a resumable memmap store.

``run --shard i/N`` computes only shard i of N (disjoint rows, e.g. one per GPU or
machine) into ``shards/``; a later plain ``run`` takes every row the shards computed
(shards of any count, finished or not) and computes whatever rows are still missing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from subsetctl.errors import UserError, joined_names
from subsetctl.pipeline import StageContext
from subsetctl.project import Project, fingerprint, free_disk_at, size_text
from subsetctl.reporter import resume_at
from subsetctl.spec import Spec
from subsetctl.stages import common

#: the splits whose rows get gradients: the estimates fit on train rows and score the
#: target's validation rows; a source's validation and test rows are used by no stage
TARGET_SPLITS = ("train", "validation")
SOURCE_SPLITS = ("train",)


def row_table(ctx: StageContext) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The store's rows (source, split, index) and the matching examples, in order: each
    split's examples as :func:`~subsetctl.stages.common.examples` gives them, read together
    (:func:`~subsetctl.stages.common.examples_of`)."""
    target = ctx.spec.target.name
    wanted = [(name, split) for name in [target, *common.source_names(ctx.spec)]
              for split in (TARGET_SPLITS if name == target else SOURCE_SPLITS)]
    rows: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    for (name, split), examples in zip(wanted, common.examples_of(ctx, wanted)):
        rows.extend({"source": name, "split": split, "index": i} for i in range(len(examples)))
        items.extend(examples)
    return rows, items


class BatchMaker:
    """Encodes rows into the batches the gradient engine takes; counts truncations.

    Each row is counted once, when it is first encoded; :meth:`count_rest` counts the rows
    this process never encoded (kept from a run that stopped partway, or taken from
    shards), so the count describes every row of the store however it was computed."""

    def __init__(self, tokenizer: Any, items: list[dict[str, Any]], kind: str, max_length: int, device: str):
        self.tokenizer = tokenizer
        self.items = items
        self.kind = kind
        self.max_length = max_length
        self.device = device
        from subsetctl.modeling.encoding import TruncationCounts

        self.truncation = TruncationCounts()
        self.counted = bytearray(len(items))  # 1 for a row whose truncation is counted

    def __call__(self, indices: list[int]) -> dict[str, Any]:
        from subsetctl.modeling.encoding import encode_rows, make_batch

        chosen = [self.items[i] for i in indices]
        encoded = encode_rows(self.tokenizer, chosen, self.kind, self.max_length)
        self._count(indices, encoded)
        batch = make_batch(self.tokenizer, encoded, self.kind, self.max_length)
        return {k: v.to(self.device) for k, v in batch.items()}

    def count_rest(self, progress: Callable[[int], None] | None = None, block: int = 4096) -> None:
        """Count the truncation of every row not counted yet: those whose gradients an
        earlier run or a shard computed. Only tokenizes, ``block`` rows at a time so the
        memory stays bounded (about as long as a run's own tokenizing of those rows);
        ``progress`` gets the rows counted so far after each block."""
        from subsetctl.modeling.encoding import encode_rows

        rest = [i for i, counted in enumerate(self.counted) if not counted]
        for start in range(0, len(rest), block):
            chunk = rest[start:start + block]
            # (a classifier's rows are counted from their text: encoding them too would tokenize them twice)
            encoded = (encode_rows(self.tokenizer, [self.items[i] for i in chunk], self.kind, self.max_length)
                       if self.kind == "causal-lm" else [])
            self._count(chunk, encoded)
            if progress is not None:
                progress(start + len(chunk))

    def _count(self, indices: list[int], encoded: list[Any]) -> None:
        """Add the rows ``indices`` (``encoded`` by :func:`encode_rows`, in the same order;
        unused for a classifier) not counted before to :attr:`truncation`."""
        fresh = [k for k, i in enumerate(indices) if not self.counted[i]]
        if not fresh:
            return
        rows = [self.items[indices[k]] for k in fresh]
        if self.kind == "causal-lm":
            self.truncation.add([encoded[k] for k in fresh], rows)
        else:
            self.truncation.add_classifier(self.tokenizer, rows, self.max_length)
        for k in fresh:
            self.counted[indices[k]] = 1


def _room_note(room: tuple[int, int, Path] | None) -> str:
    """What plan says of the disk the gradients stage asks for (:func:`planned_room`): "; its
    store needs about 1.2 GB of disk", and where less is free, that `run` stops there: a run
    of days stopped at its gradients stage for want of room the plan could have named
    (:func:`~subsetctl.stages.common.disk_note`); "" where it asks for none."""
    if room is None or not room[0]:
        return ""
    return common.disk_note("its store needs about", *room, lower="gradients.d")


#: the largest sources plan names with their rows (the rest counted together)
LARGEST_NAMED = 4


def _largest_rows(spec: Spec, rows: dict[str, int]) -> str:
    """The largest of ``rows`` (the target and each source, as the data stage prepared them)
    with their counts, the first saying whether its ``max_examples`` cut it to that: of
    sources of 1 to 20,000 rows, naming the largest alone left unsaid how the rest compare
    and whether the cap the user set is what bounds the stage."""
    caps = {spec.target.name: spec.target.max_examples, **{s.name: s.max_examples for s in spec.sources}}
    ranked = sorted(rows, key=lambda name: -rows[name])  # stable: the spec's order among equals
    named = [f"{name!r}: {rows[name]:,}" + (", its max_examples" if caps.get(name) == rows[name] else "")
             for name in ranked[:LARGEST_NAMED]]
    rest = ranked[LARGEST_NAMED:]
    more = f", and {len(rest):,} more with {sum(rows[name] for name in rest):,}" if rest else ""
    return f"the most from {named[0]}" + (f"; then {', '.join(named[1:])}{more}" if len(named) > 1 else "")


class GradientsStage(common.ModelStage):
    name = "gradients"
    description = "per-example f and projected gradients at theta*"
    after = ("data", "meta_init")
    reads_parts = common.TRAIN_SIDE  # no test rows: editing them re-runs it not
    #: the shards merged and the library versions their `run --shard` computed them with
    describes_only = (common.PROVENANCE,)
    memory_keys = ("gradients.batch_size", "model.max_length", "gradients.memory_budget_mb")
    resumable_work = "the rows computed so far, stored batch by batch"
    spec_keys = ("project.seed", "model", "gradients")

    def work(self, spec: Spec, forced: bool = False) -> str:
        n = len(spec.sources)
        return (f"one gradient per example of the target and the {n:,} source{'' if n == 1 else 's'}, in batches of "
                f"{spec.gradients.batch_size}, projected to d = {spec.gradients.d}")

    def planned_work(self, spec: Spec, forced: bool, project: Project, rerun: set[str],
                     resumes: bool = False, inputs: dict[str, Any] | None = None) -> str | None:
        """:meth:`work`, with the number of rows the data stage prepared when it is up to
        date: the stage costs a fixed time per row, and a large source taken whole (no
        ``max_examples``) makes it run for hours, which the count shows before it starts;
        where ``resumes``, how many of them the store of the run that stopped partway holds,
        which `run` keeps ("16 of 40 done by the run that stopped partway, kept", as `run`
        then says "resuming; 16 of 40 rows are computed already")."""
        work = self.work(spec, forced)
        rows = prepared_rows(spec, project) if "data" not in rerun else None  # (else its rows are yet to be prepared)
        if rows is None:
            return work
        total = sum(rows.values())
        kept = self._rows_kept(project, total) if resumes and not forced else 0
        return (f"{work}: {total:,} rows ({_largest_rows(spec, rows)}; `max_examples` on a source caps its rows)"
                + (f"; {kept:,} of {total:,} done by the run that stopped partway, kept" if kept else "")
                + _room_note(planned_room(spec, project, total, forced)))

    def rough_rows(self, spec: Spec, project: Project) -> int | None:
        """The rows the data stage last prepared for it (:func:`prepared_rows`), all of them."""
        rows = prepared_rows(spec, project)
        return sum(rows.values()) if rows is not None else None

    def _rows_kept(self, project: Project, total: int) -> int:
        """The rows the store a run that stopped partway left holds, which `run` resumes
        from; 0 when there is none, or it is damaged or of another row count (recreated)."""
        import numpy as np

        from subsetctl.gradients.store import GradientStore

        try:
            store = GradientStore.open(project.stage_dir(self.name) / "store", writable=False)
            written = int(np.count_nonzero(store.written))
        except (UserError, OSError, ValueError):
            return 0
        return written if store.n_rows == total else 0

    def extra_inputs(self, spec: Spec, project: Project) -> dict[str, Any]:
        """The model folder's files, and the file of a plugin projector."""
        from subsetctl.plugin_loading import plugin_code_inputs
        from subsetctl.registry import PROJECTORS

        return {**super().extra_inputs(spec, project),
                **plugin_code_inputs(spec.plugins, [(PROJECTORS, spec.gradients.projector)], project.root)}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        """Compute f_i and the projected gradient of every row of :func:`row_table` at
        theta* (the base model with meta_init's adapter) into the store, or, with
        ``--shard i/N``, shard i's rows into ``shards/`` (see the module docstring),
        holding the shard's lock from the start, so that two runs never fill the same shard
        and `plan` names the shard as being computed while its model loads too."""
        from subsetctl.file_locks import exclusive_file_lock
        from subsetctl.gradients.store import shard_dir

        shard = ctx.options.get("shard")
        if shard is None:
            return self._compute(ctx)
        index, count = shard
        path = shard_dir(ctx.out_dir / "shards", index, count)
        busy = (f"Shard {index}/{count} of the gradients is already being computed by another "
                f"`subsetctl run --shard {index}/{count}` on {ctx.project.root}; start a different shard.")
        with exclusive_file_lock(path.with_name(path.name + ".lock"), busy):
            table = row_table(ctx)  # (once: every example of every source, read for each check below)
            finished = self._empty_shard(ctx, shard, len(table[0])) or self._finished_shard(ctx, shard, path, table[0])
            return finished if finished is not None else self._compute(ctx, table)

    def _empty_shard(self, ctx: StageContext, shard: tuple[int, int], total: int) -> dict[str, Any] | None:
        """:meth:`_compute_shard`'s answer for a shard dealt no rows (more shards than
        batches of ``gradients.batch_size``), said before loading the model (which such a run
        only loaded to find nothing to do); None where the shard holds rows."""
        from subsetctl.gradients.store import shard_rows

        index, count = shard
        batch_size = ctx.spec.gradients.batch_size
        if shard_rows(total, index, count, batch_size):
            return None
        ctx.reporter.info(
            f"Shard {index}/{count} holds no rows (more shards than the {-(-total // batch_size):,} batches of "
            f"gradients.batch_size = {batch_size}): nothing to compute, and no `run --shard` is needed for it."
        )
        return {"incomplete": True, "shard": [index, count], "rows": 0}

    def _finished_shard(self, ctx: StageContext, shard: tuple[int, int], path: Path,
                        rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        """:meth:`_compute_shard`'s answer for a shard an earlier ``run --shard`` finished, of
        what this run's would be as far as it is known without the model (:meth:`_known_info`),
        said without loading the model: loading it (25 s for SmolLM2-135M on a CPU, minutes for
        a large one) only to find "0 rows computed" was the whole of such a run. None where a
        row is left, or the shard differs, or cannot be read: :meth:`_compute` sees to it (the
        merge checks every shard against the model too)."""
        from subsetctl.gradients.store import GradientStore
        from subsetctl.modeling.resolve import model_location

        try:
            store = GradientStore.open(path, writable=False)
        except (UserError, OSError, ValueError):
            return None
        if not store.complete:
            return None
        info, earlier = self._known_info(ctx, {"source": model_location(ctx.spec.model.source, ctx.project.root)},
                                         ctx.upstream_dir("meta_init") / "adapter", rows)
        if store.info_differences(*_with_data(info, earlier, ctx.upstream_manifest("data"))):
            return None
        index, count = shard
        ctx.reporter.info(
            f"Shard {index}/{count}: 0 rows computed, {store.n_rows} already there (an earlier run finished it; "
            "the model was not loaded). Run without --shard once every shard is done to merge them."
        )
        return {"incomplete": True, "shard": [index, count], "rows": store.n_rows}

    def _compute(self, ctx: StageContext,
                 table: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None) -> dict[str, Any]:
        """The work of :meth:`run` (``table``: :func:`row_table`'s, where the caller read it)."""
        from subsetctl.gradients.engine import PerExampleGradientEngine
        from subsetctl.gradients.projectors import make_projector
        from subsetctl.modeling.lora import count_trainable

        spec = ctx.spec
        seed = spec.gradients.seed if spec.gradients.seed is not None else spec.project.seed
        adapter = ctx.upstream_dir("meta_init") / "adapter"
        rows, items = table or row_table(ctx)
        model, tokenizer, model_info = common.lora_model(ctx, adapter_dir=adapter, trainable=True)
        model.eval()
        p = count_trainable(model)
        if spec.gradients.d > p:
            raise UserError(
                f"gradients.d={spec.gradients.d} exceeds the number of trainable LoRA parameters "
                f"p={p}; lower gradients.d (e.g. {min(128, p)}) or raise model.lora.r."
            )
        d = spec.gradients.d
        device = common.device_for(spec)
        hidden = self._repr_width(model, tokenizer, items, spec.model.kind, spec.model.max_length, device)
        info, earlier = self._store_info(ctx, model_info, adapter, rows, p, seed)
        info["h"] = hidden  # a store (or shard) sized for other repr rows is recreated, not written into
        self._check_disk(ctx.out_dir, len(rows), d, hidden)
        projector = make_projector(spec.gradients.projector, p, d, seed, spec.gradients.memory_budget_mb)
        engine = PerExampleGradientEngine(model, projector, kind=spec.model.kind)
        make_batch = BatchMaker(tokenizer, items, spec.model.kind, spec.model.max_length, device)
        shard = ctx.options.get("shard")
        if shard is not None:
            return self._compute_shard(ctx, shard, engine, make_batch, rows, info, earlier, d, hidden)
        return self._compute_store(ctx, engine, make_batch, rows, info, earlier, d, hidden, p)

    def _store_info(self, ctx: StageContext, model_info: dict[str, Any], adapter: Path, rows: list[dict[str, Any]],
                    p: int, seed: int) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        """What the store's rows were computed with (its info.json: model, adapter,
        projector and its plugin code, seed, sizes, the row table's digest), and the model
        names earlier versions wrote in its place: a store (or shard) whose info differs
        is recreated, not resumed."""
        known, earlier = self._known_info(ctx, model_info, adapter, rows)
        return {**known, "model_config": model_info.get("config_hash"), "p": p}, earlier

    def _known_info(self, ctx: StageContext, model_info: dict[str, Any], adapter: Path,
                    rows: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        """The part of :meth:`_store_info` known without loading the model (all but the
        model's config hash and the count of LoRA parameters, which meta_init's adapter
        follows from): ``model_info`` needs only its ``source``."""
        from subsetctl.modeling.lora import adapter_fingerprint
        from subsetctl.registry import PROJECTORS

        spec = ctx.spec
        model_identity, earlier_identities = self._model_identity(ctx, model_info)
        info = {
            "model": model_identity,
            "adapter_fingerprint": adapter_fingerprint(adapter),
            **self._settings_info(spec),
            # which rows, in which order: a partial store of another row table (an earlier
            # version's, with sources' validation rows) must be recreated, not filled by position
            "rows_digest": fingerprint(rows),
        }
        projector_code = PROJECTORS.code_fingerprint(spec.gradients.projector, ctx.project.root)
        if projector_code is not None:  # rows of an edited plugin projector must not mix with the old ones
            info["projector_code"] = projector_code
        return info, {"model": earlier_identities}

    @staticmethod
    def _settings_info(spec: Spec) -> dict[str, Any]:
        """The part of the store's info.json the spec's settings give alone (no model loaded)."""
        return {
            "projector": spec.gradients.projector,
            "seed": spec.gradients.seed if spec.gradients.seed is not None else spec.project.seed,
            "d": spec.gradients.d,
            "kind": spec.model.kind,
            "max_length": spec.model.max_length,
        }

    def _compute_shard(self, ctx: StageContext, shard: tuple[int, int], engine: Any, make_batch: BatchMaker,
                       rows: list[dict[str, Any]], info: dict[str, Any], earlier: dict[str, list[Any]],
                       d: int, hidden: int) -> dict[str, Any]:
        """``run --shard i/N``: compute shard i's rows into ``shards/`` (resuming its own
        partial work), under the shard's lock :meth:`run` holds; the stage stays
        incomplete until a plain ``run`` merges the shards. The shard records the library
        versions computing its rows (another machine's may differ from the merging run's)."""
        from subsetctl import pipeline
        from subsetctl.gradients.store import create_shard_store, shard_dir

        batch_size = ctx.spec.gradients.batch_size
        shards_dir = ctx.out_dir / "shards"
        index, count = shard
        info, earlier = _with_data(info, earlier, ctx.upstream_manifest("data"))
        store = self._open_or_create(shard_dir(shards_dir, index, count), info, earlier, lambda: create_shard_store(
            shards_dir, rows, d, hidden, info, index, count, batch_size))
        if not store.complete:
            store.add_versions(pipeline.library_versions(), pipeline.thread_counts())
        counts = self._fill(ctx, engine, make_batch, store, batch_size, f"gradients shard {index}/{count}")
        ctx.reporter.info(
            f"Shard {index}/{count}: {counts.computed} rows computed, {counts.skipped} already there. "
            "Run without --shard once every shard is done to merge them."
        )
        return {"incomplete": True, "shard": [index, count], "rows": store.n_rows}

    def _compute_store(self, ctx: StageContext, engine: Any, make_batch: BatchMaker, rows: list[dict[str, Any]],
                       info: dict[str, Any], earlier: dict[str, list[Any]], d: int, hidden: int,
                       p: int) -> dict[str, Any]:
        """A plain ``run``: open the store (or create it anew), take the rows usable shards
        computed, compute the rest, then count model.max_length's cuts in every row (kept
        ones too, for the warning) and remove the merged shards; the stage's summary. Its
        provenance.json names the shards whose rows it took, with their library versions."""
        import shutil

        import numpy as np

        from subsetctl.gradients.store import GradientStore

        spec = ctx.spec
        shards_dir = ctx.out_dir / "shards"
        store_dir = ctx.out_dir / "store"
        store = self._open_or_create(store_dir, info, earlier, lambda: GradientStore.create(store_dir, rows, d, hidden, info))
        provenance = common.Provenance(ctx)  # (resumed: the shards an earlier try of this run took rows from)
        if not np.any(store.written):  # a new store: a record left from before is of other rows
            provenance.clear()
        data = ctx.upstream_manifest("data")
        shards, passed_over = self._usable_shards(shards_dir, *_with_data(info, earlier, data)) if not store.complete \
            else ([], [])
        for name, why in passed_over:  # its rows are computed here: say so, it may be hours of work
            ctx.reporter.warn(f"gradients: shard {shard_label(name)} is not merged ({why}); its rows are computed here, "
                              "and its folder is deleted with the merged shards once they are (copy it aside now "
                              "to keep it).")
        if shards:
            taken = self._take_shards(ctx, shards, store, provenance)
            ctx.reporter.info(f"Merged {len(shards)} gradient shards: {taken:,} of {store.n_rows:,} rows taken from them.")
        provenance.write()
        counts = self._fill(ctx, engine, make_batch, store, spec.gradients.batch_size, "gradients")
        if counts.skipped:  # rows kept or taken from shards, never encoded here: the warning is of every row
            with ctx.reporter.progress("gradients: what model.max_length cuts in the rows kept",
                                       total=counts.skipped) as task:
                make_batch.count_rest(progress=task.update)
        if shards_dir.exists():  # merged (or recomputed): a second full copy of the store, and not an output
            shutil.rmtree(shards_dir, ignore_errors=True)
        truncation = make_batch.truncation.notice(spec.model.max_length)
        if truncation:
            ctx.reporter.warn(f"gradients: {truncation}")
        unscored = make_batch.truncation.unscored_notice(
            "rows", ("its f and gradient are 0, and the search leaves it out of its source",
                     "their f and gradient are 0, and the search leaves them out of their source"))
        if unscored:
            ctx.reporter.warn(f"gradients: {unscored}")
        if not self._any_gradient(store):
            ctx.reporter.warn(
                f"gradients: the projected gradient of every one of the {store.n_rows:,} rows is zero: at meta_init's "
                "adapter the model's output does not change with the LoRA weights (it is saturated), so every "
                "subset gets the same estimate and the search cannot tell them apart. A meta_init.lr far too "
                f"high (here {spec.meta_init.lr:g}) is the usual cause: lower it and run again.")
        return {
            "rows": store.n_rows,
            "computed": counts.computed,
            "reused": counts.skipped,
            "d": d,
            "p": p,
            "projector": spec.gradients.projector,
            "truncated": make_batch.truncation.cut,
            # each source's token lengths as trained and model.max_length's cuts (the report's table)
            "tokens_by_source": make_batch.truncation.by_source(),
            "max_length": spec.model.max_length,
            "mean_f": float(np.mean(store.outputs)),
            "adapter_fingerprint": info["adapter_fingerprint"],
        }

    def unfinished_note(self, project: Project, spec: Spec | None = None) -> str | None:
        """With shards computed by ``run --shard i/N``: those being computed now, how many
        are done, and what is next; with ``spec``, the shards the merge would pass over
        (damaged, or of other settings than the spec's) and why."""
        note = self._shards_note(project, spec)
        running = running_shards(project)
        if not running:
            return note
        now = (f"shard{'s' if len(running) > 1 else ''} {', '.join(running)} being computed now by `run --shard` "
               "(a plain `run` is refused until the shard runs finish)")
        return f"{now}; {note}" if note else now

    def _shards_note(self, project: Project, spec: Spec | None = None) -> str | None:
        """How many of the shards under ``shards/`` are done, and which are not, each named
        once: those stopped partway (with their rows computed), those never started, and
        what to run for them; with ``spec``, the shards the merge would pass over (damaged,
        or of other settings than the spec's) are named with why, and count as not done.
        Shards being computed now (:func:`running_shards`, said by :meth:`unfinished_note`)
        are not told to be computed."""
        import numpy as np

        from subsetctl.gradients.store import GradientStore

        shards_dir = project.stage_dir(self.name) / "shards"
        passed_over = self._passed_over(project, spec, shards_dir) if spec is not None else []
        running = set(running_shards(project))  # one being written may not open yet: not damaged
        passed_over = [(name, why) for name, why in passed_over if shard_label(name) not in running]
        left_out = {name for name, _ in passed_over}
        found: dict[int, dict[int, str | None]] = {}  # count -> index -> what is left ("" done; None passed over)
        covered: dict[int, Any] = {}  # total rows -> the rows some shard has written (shards of any count)
        spans: dict[int, dict[int, tuple[int, int, int]]] = {}  # count -> index -> (total rows, start, stop)
        for path in sorted(shards_dir.glob("shard-*-of-*")):
            numbers = shard_numbers(path.name)
            if not path.is_dir() or numbers is None:
                continue
            index, count = numbers
            if path.name in left_out:
                found.setdefault(count, {})[index] = None
                continue
            try:
                store = GradientStore.open(path, writable=False)
                written = int(np.count_nonzero(store.written))
                left = "" if store.complete else f"{written:,} of {store.n_rows:,} rows computed"
            except (UserError, OSError, ValueError):
                left = "its files are damaged or incomplete"
            else:
                try:
                    total = int(store.info["shard"]["total_rows"])
                    rows = covered.setdefault(total, np.zeros(total, dtype=bool))
                    rows[store.row_offset:store.row_offset + store.n_rows] |= np.asarray(store.written, dtype=bool)
                    spans.setdefault(count, {})[index] = (total, store.row_offset, store.row_offset + store.n_rows)
                except (KeyError, TypeError, ValueError):  # a shard that does not say its rows: not counted
                    pass
            found.setdefault(count, {})[index] = left
        if not found:
            return None
        count, states = max(found.items(), key=lambda item: len(item[1]))
        done = sum(1 for left in states.values() if left == "")
        left = [i for i in range(count) if states.get(i, "not started") and f"{i}/{count}" not in running]
        # a shard dealt no rows (more shards than batches): `run --shard` for it computes nothing
        empty = [i for i in left if _holds_no_rows(i, count, spans.get(count, {}), spec)]
        named, one = [f"{i}/{count}" for i in empty], len(empty) == 1
        no_rows = (f"{joined_names(named)} need{'s' if one else ''} "
                   f"no `run --shard`: {'it holds' if one else 'they hold'} no rows (more shards than batches "
                   "of gradients)") if empty else ""
        if done == count:
            note = f"all {count} gradient shards done; `run` merges them"
        elif done + len(empty) == count:
            note = f"all {done} gradient shards with rows of {count} done; {no_rows}; `run` merges them"
        elif any(rows.all() for rows in covered.values()):  # e.g. 0/2 done, then 1/3 and 2/3
            note = "the gradient shards (of different counts) have computed every row between them; `run` merges them"
        else:
            # a shard whose rows the others have (0/3 beside a finished 0/2): `run --shard` would
            # compute them again, as it takes no rows from other shards; the merge takes them
            have = {i for i in left if i not in empty and _rows_held_elsewhere(i, count, spans.get(count, {}),
                                                                                covered, spec)}
            to_compute = [(i, states.get(i, "not started")) for i in left if i not in have and i not in empty]
            note = f"{done} of {count} gradient shards done"
            if empty:
                note += f"; {no_rows}"
            if have:
                named = [f"{i}/{count}" for i in sorted(have)]
                one = len(named) == 1
                note += (f"; {joined_names(named)} need"
                         f"{'s' if one else ''} no `run --shard`: shards of another count have "
                         f"{'its' if one else 'their'} rows, which the merge takes")
            if to_compute:
                one, commands = len(to_compute) == 1, [f"`run --shard {i}/{count}`" for i, _ in to_compute]
                note += (f"; left: {', '.join(f'{i}/{count} ({left})' for i, left in to_compute)}; "
                         + joined_names(commands)
                         + f" compute{'s it' if one else ' them'}, then `run` merges them (it computes any rows still "
                         "missing itself)")
            else:
                note += "; `run` merges them"
        for name, why in passed_over:  # as the merge's warning says it
            note += f"; shard {shard_label(name)} is not merged ({why}): `run` computes its rows itself"
        return note

    def _passed_over(self, project: Project, spec: Spec, shards_dir: Path) -> list[tuple[str, str]]:
        """The shards under ``shards_dir`` the merge would pass over, as :meth:`_usable_shards`
        tells them, checked against what is known without loading the model: the spec's
        settings and meta_init's adapter (its fingerprint as meta_init's manifest records it,
        without loading torch; not compared before meta_init has run)."""
        info = self._settings_info(spec)
        summary = (project.read_results_manifest("meta_init") or {}).get("summary")
        if isinstance(summary, dict) and isinstance(summary.get("adapter_fingerprint"), str):
            info["adapter_fingerprint"] = summary["adapter_fingerprint"]
        return self._usable_shards(shards_dir, *_with_data(info, {}, project.read_results_manifest("data")))[1]

    @staticmethod
    def _model_identity(ctx: StageContext, model_info: dict[str, Any]) -> tuple[str, list[str]]:
        """The base model as the store's info names it, and the names earlier versions wrote.

        A local folder is named by its files (as the caches key it, :func:`common.model_key`),
        not its path: gradients re-run or resumed from a moved folder keep their rows and
        write the same info.json, so what follows the stage is not computed again. Earlier
        versions wrote the folder's path; a store with it is accepted (and re-described)."""
        key, _ = common.model_key(ctx)
        if "model_files" not in key:  # packaged model or hub id: known by its name
            return str(model_info.get("source")), []
        return (f"{common.LOCAL_MODEL_SOURCE} ({fingerprint(key['model_files'])})",
                [str(model_info.get("source"))])

    @staticmethod
    def _usable_shards(shards_dir: Path, info: dict[str, Any],
                       earlier: dict[str, list[Any]]) -> tuple[list[Any], list[tuple[str, str]]]:
        """The shard stores under ``shards_dir`` computed with today's settings, finished or
        not and of any count (``run --shard i/N``), and the others, passed over: (folder name,
        why: damaged, or computed with other settings) each."""
        from subsetctl.gradients.store import GradientStore

        usable, passed_over = [], []
        for path in sorted(shards_dir.glob("shard-*-of-*")):
            if not path.is_dir():  # (a shard's lock file, shard-<i>-of-<N>.lock)
                continue
            try:
                shard = GradientStore.open(path, writable=False)
            except (UserError, OSError, ValueError):
                passed_over.append((path.name, "its files are damaged or incomplete"))
                continue
            differences = shard.info_differences(info, earlier)
            if differences:
                passed_over.append((path.name, "computed with other settings or another model, adapter or data: "
                                               + "; ".join(differences)))
                continue
            if "shard" in shard.info:
                usable.append(shard)
        return usable, passed_over

    @staticmethod
    def _take_shards(ctx: StageContext, shards: list[Any], store: Any, provenance: common.Provenance) -> int:
        """Copy into ``store`` the rows of ``shards`` it lacks; each shard that gives rows
        goes into ``provenance`` with the library versions that computed them ("shard i/N";
        "shard i/N (run k of m)" for a shard resumed by runs of other versions). A shard
        computed with other versions than this run's is merged all the same (a version
        difference makes nothing stale), and said. Returns the number of rows copied."""
        from subsetctl import pipeline
        from subsetctl.gradients.store import take_shard_rows

        now = pipeline.library_versions()
        taken = 0
        for shard in shards:
            copied = take_shard_rows([shard], store)
            if not copied:
                continue
            taken += copied
            name = f"shard {shard.info['shard']['index']}/{shard.info['shard']['count']}"
            records = shard.versions
            for k, versions in enumerate(records):  # (its thread counts, with its first record: one list for the shard)
                provenance.reused(name if len(records) == 1 else f"{name} (run {k + 1} of {len(records)})", versions,
                                  shard.threads if k == 0 else None)
            changes: dict[str, None] = {}  # "torch 2.1.0, now 2.2.0", once each
            for diff in (pipeline.versions_differing(versions, now) for versions in records):
                if diff == "unknown":
                    changes["versions not recorded (an earlier subsetctl)"] = None
                for library, pair in (diff.items() if isinstance(diff, dict) else ()):
                    changes[f"{library} {pair['then'] or 'absent'}, now {pair['now'] or 'absent'}"] = None
            if changes:
                ctx.reporter.info(f"gradients: {name} was computed with other library versions than this run's "
                                  f"({'; '.join(changes)}); its rows are merged all the same, and provenance.json "
                                  "and the report say so.")
        return taken

    @staticmethod
    def _any_gradient(store: Any, block: int = 4096) -> bool:
        """Whether some row of the finished ``store`` has a nonzero feature: read a block of
        rows at a time, stopping at the first such block (the first, unless theta* is flat)."""
        import numpy as np

        return any(np.any(store.features[start:start + block]) for start in range(0, store.n_rows, block))

    @staticmethod
    def _open_or_create(path: Path, info: dict[str, Any], earlier: dict[str, list[Any]], create: Any) -> Any:
        from subsetctl.gradients.store import GradientStore

        try:
            store = GradientStore.open(path, writable=True)
            store.check_info(info, earlier)
            store.adopt_info(info)
            return store
        except (UserError, OSError, ValueError):
            return create()

    @staticmethod
    def _fill(ctx: StageContext, engine: Any, make_batch: Any, store: Any, batch_size: int, label: str) -> Any:
        import torch

        from subsetctl.gradients.store import compute_store

        done = int(store.written.sum())
        if 0 < done < store.n_rows:  # rows of a run stopped partway, or taken from shards: kept, not computed again
            ctx.reporter.info(f"{label}: resuming; {done:,} of {store.n_rows:,} rows are computed already (by a "
                              f"run that stopped partway, or by shards), computing the other {store.n_rows - done:,}")
        with ctx.reporter.progress(label, total=store.n_rows) as task, torch.enable_grad():
            return compute_store(engine, make_batch, store, batch_size, progress=lambda done, total: task.update(done),
                                 resumed=lambda done: resume_at(task, done))

    @staticmethod
    def _repr_width(model: Any, tokenizer: Any, items: list[dict[str, Any]], kind: str, max_length: int,
                    device: str) -> int:
        """Width of the store's ``repr`` rows: that of the last hidden state the engine averages,
        from a forward pass of the first row. Not ``config.hidden_size``: a model whose last
        hidden state is projected to another width (OPT-350m's ``word_embed_proj_dim``, 512
        where ``hidden_size`` is 1024) made every write of the rows' means fail."""
        import torch

        from subsetctl.modeling.encoding import encode_rows, make_batch
        from subsetctl.modeling.modes import in_eval_mode

        if not items:
            return 0
        batch = make_batch(tokenizer, encode_rows(tokenizer, items[:1], kind, max_length), kind, max_length)
        with in_eval_mode(model), torch.no_grad():
            out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                        output_hidden_states=True)
        states = getattr(out, "hidden_states", None)
        return int(states[-1].shape[-1]) if states else 0

    @staticmethod
    def _check_disk(folder: Path, n_rows: int, d: int, hidden: int) -> None:
        """Refuse to begin when the disk holding ``folder`` lacks room for the store (twice
        over: room for a merge copy). What the store there already holds counts: a run
        resumed on a disk others filled since was refused for the whole store again (a
        store days in the making, which takes nothing more), and told to lower gradients.d,
        which computes every row again."""
        import shutil

        from subsetctl.gradients.store import held_bytes

        held = held_bytes(folder / "store")
        need = room_needed(n_rows, d, hidden, held)
        folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder).free
        if free < need:
            kept = f" ({size_text(held)} of it is there already: the rows computed so far are kept)" if held else ""
            raise UserError(
                f"The gradient store needs about {size_text(need)}{' more' if held else ''} but only "
                f"{size_text(free)} is free in {folder}{kept}. Free disk space there and run again (finished stages are kept), or lower "
                "gradients.d, which computes every row again."
            )


def prepared_rows(spec: Spec, project: Project) -> dict[str, int] | None:
    """The rows the gradients stage computes, by the target and each source, as the data
    stage last prepared them; None where it has not (or prepared other sources)."""
    counts = common.prepared_counts(project)
    try:
        return {name: sum(counts[name][split] for split in
                          (TARGET_SPLITS if name == spec.target.name else SOURCE_SPLITS))
                for name in [spec.target.name, *(source.name for source in spec.sources)]} if counts else None
    except KeyError:
        return None


def room_needed(n_rows: int, d: int, hidden: int, held: int) -> int:
    """The free disk the gradients stage asks for before it begins (:meth:`GradientsStage._check_disk`):
    the store of ``n_rows`` rows of ``d`` projected and ``hidden`` hidden-state floats (and
    f and the written flag), twice over (room for a merge copy), less the ``held`` bytes the
    store there already holds (:func:`~subsetctl.gradients.store.held_bytes`)."""
    return 2 * max(0, n_rows * (d + hidden + 2) * 4 - held)


def planned_room(spec: Spec, project: Project, n_rows: int, forced: bool) -> tuple[int, int, Path] | None:
    """For ``plan`` and ``doctor``, before the model loads: the free disk the gradients stage
    of ``n_rows`` rows will ask for (:func:`room_needed`, with the hidden size config.json
    gives), the free disk there and where that is; None where the model's shape cannot be
    read without loading it. ``forced``: the store there is made anew, its room counted again."""
    from subsetctl.gradients.store import held_bytes
    from subsetctl.modeling.footprint import model_shape

    shape = model_shape(spec, project.root)
    if shape is None:
        return None
    folder = project.stage_dir("gradients")
    held = 0 if forced else held_bytes(folder / "store")
    return (room_needed(n_rows, spec.gradients.d, shape.hidden, held), *free_disk_at(folder))


def shard_numbers(name: str) -> tuple[int, int] | None:
    """``(i, N)`` of a shard's folder or lock file name (``shard-<i>-of-<N>``, ``.lock``
    after it); None for any other name."""
    parts = name.removesuffix(".lock").split("-")
    if len(parts) == 4 and parts[0] == "shard" and parts[2] == "of" and parts[1].isdigit() and parts[3].isdigit():
        return int(parts[1]), int(parts[3])
    return None


def shard_label(folder: str) -> str:
    """``"i/N"`` for a shard's folder name ``shard-<i>-of-<N>`` (as `run --shard i/N` names
    the shard); any other name as it is."""
    numbers = shard_numbers(folder)
    return folder if numbers is None else f"{numbers[0]}/{numbers[1]}"


def shard_finished(project: Project, index: int, count: int) -> bool:
    """Whether ``run --shard index/count`` has computed every row of its shard under
    ``shards/`` (unmerged): a run of it stopped then has nothing to resume (running it again
    says so without loading the model, :meth:`GradientsStage._finished_shard`)."""
    from subsetctl.gradients.store import GradientStore, shard_dir

    try:
        store = GradientStore.open(shard_dir(project.stage_dir("gradients") / "shards", index, count), writable=False)
    except (UserError, OSError, ValueError):
        return False
    return bool(store.complete)


def running_shards(project: Project) -> list[str]:
    """The shards (``"i/N"``, by N then i) whose ``run --shard i/N`` is computing now: those
    whose shard lock a process holds."""
    from subsetctl.file_locks import file_lock_held

    running = []
    for lock in (project.stage_dir("gradients") / "shards").glob("shard-*-of-*.lock"):
        numbers = shard_numbers(lock.name)
        if numbers is not None and file_lock_held(lock):
            running.append(numbers[::-1])
    return [f"{index}/{count}" for count, index in sorted(running)]


#: the key of a shard's info.json naming the data stage's results its rows were computed from
#: (the digest of the part of them the stage reads, :data:`~subsetctl.stages.common.TRAIN_SIDE`; shards of an
#: earlier subsetctl recorded the whole output's, still taken): a shard copied in from a machine whose data differed is passed
#: over, and one of this run's data kept beside an older run's work.json of other data
SHARD_DATA = "data"


def _with_data(info: dict[str, Any], earlier: dict[str, list[Any]],
               data: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """A shard's ``info`` and ``earlier`` (as :meth:`GradientStore.info_differences` takes
    them) with the data results it must be of, as the data stage's manifest ``data`` names
    them (:data:`SHARD_DATA`; nothing when unknown); a shard an earlier subsetctl computed,
    which records none, or the whole output's digest, is not refused for it (the run's
    work.json tells its data)."""
    from subsetctl.pipeline import output_digest

    read = output_digest(data, common.TRAIN_SIDE["data"])
    if read is None:
        return info, earlier
    return {**info, SHARD_DATA: read}, {**earlier, SHARD_DATA: [None, *common.data_keys_before(data)]}


def shards_data(project: Project) -> dict[str, str | None]:
    """The data results (:data:`SHARD_DATA`) each gradient shard under ``shards/`` records
    it was computed from, by ``"i/N"``: None for a shard that records none (an earlier
    subsetctl's) or whose info cannot be read."""
    from subsetctl.project import read_json_object

    found = {}
    for path in (project.stage_dir("gradients") / "shards").glob("shard-*-of-*"):
        if path.is_dir() and shard_numbers(path.name) is not None:
            data = (read_json_object(path / "info.json") or {}).get(SHARD_DATA)
            found[shard_label(path.name)] = data if isinstance(data, str) else None
    return found


def shards_of_other_settings(project: Project, spec: Spec) -> dict[str, str]:
    """The shards (``"i/N"`` -> why) under ``shards/`` a merge with ``spec`` would pass over,
    as far as the spec's gradients settings and meta_init's adapter tell without loading the
    model (damaged ones too): those whose rows a run for ``spec`` cannot use."""
    stage = GradientsStage()
    return {shard_label(name): why for name, why in
            stage._passed_over(project, spec, project.stage_dir(stage.name) / "shards")}


def computed_shards(project: Project) -> list[tuple[str, int]]:
    """The shards under the gradients stage's ``shards/`` that hold computed rows, as
    (``"i/N"``, rows written), by N then i: the work a `run --shard` for other inputs would
    discard. A shard whose files cannot be read counts with the rows it can say (none)."""
    import numpy as np

    from subsetctl.gradients.store import GradientStore

    found = []
    for path in (project.stage_dir("gradients") / "shards").glob("shard-*-of-*"):
        numbers = shard_numbers(path.name)
        if not path.is_dir() or numbers is None:
            continue
        try:
            rows = int(np.count_nonzero(GradientStore.open(path, writable=False).written))
        except (UserError, OSError, ValueError):
            continue
        if rows:
            found.append((numbers[::-1], rows))
    return [(f"{index}/{count}", rows) for (count, index), rows in sorted(found)]


def _shard_span(index: int, count: int, spans: dict[int, tuple[int, int, int]],
                spec: Spec | None) -> tuple[int, int, int] | None:
    """(total rows, start, stop) of shard ``index``/``count``: its own store's (``spans``:
    index -> (total rows, start, stop) of the shards of ``count`` opened), else those the
    spec's batch size deals it (:func:`shard_rows`), else at most the gap between its opened
    neighbours (shards of one count tile the rows: an empty gap holds no rows of any shard
    in it). None when no shard of ``count`` was opened (its rows are not known)."""
    from subsetctl.gradients.store import shard_rows

    if index in spans:
        return spans[index]
    if not spans:
        return None
    total = next(iter(spans.values()))[0]
    start = max((spans[i][2] for i in spans if i < index), default=0)
    stop = min((spans[i][1] for i in spans if i > index), default=total)
    if spec is not None:
        dealt = shard_rows(total, index, count, spec.gradients.batch_size)
        if start <= dealt.start and dealt.stop <= stop:  # (else the shards were dealt with another batch size)
            start, stop = dealt.start, dealt.stop
    return total, start, stop


def _rows_held_elsewhere(index: int, count: int, spans: dict[int, tuple[int, int, int]], covered: dict[int, Any],
                         spec: Spec | None) -> bool:
    """Whether every row of shard ``index``/``count`` that it lacks is one other shards have
    written (``covered``: total rows -> the rows some shard has), so `run --shard` for it
    would only compute rows the merge takes anyway; its rows as :func:`_shard_span` tells
    them, which must be covered whole where only their bounds are known. False when they are
    not known, or it has none (:func:`_holds_no_rows` says that)."""
    span = _shard_span(index, count, spans, spec)
    if span is None:
        return False
    total, start, stop = span
    rows = covered.get(total)
    return rows is not None and start < stop and bool(rows[start:stop].all())


def _holds_no_rows(index: int, count: int, spans: dict[int, tuple[int, int, int]], spec: Spec | None) -> bool:
    """Whether shard ``index``/``count`` has no rows to compute (more shards than batches of
    ``gradients.batch_size``: :func:`shard_rows` deals some none), as :func:`_shard_span`
    knows its rows; `run --shard` for it loads the model to compute nothing."""
    span = _shard_span(index, count, spans, spec)
    return span is not None and span[1] >= span[2]

