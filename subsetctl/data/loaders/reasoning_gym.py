"""The ``reasoning_gym`` loader: procedurally generated tasks (its rows carry ``rg_task``
for the reasoning-gym scorer).
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from subsetctl.data.loaders.common import LoadContext, build_common, close_names
from subsetctl.errors import UserError
from subsetctl.registry import LOADERS
from subsetctl.spec import ReasoningGymLoader

if TYPE_CHECKING:
    from datasets import Dataset


def import_reasoning_gym() -> ModuleType:
    """``reasoning_gym``, imported with matplotlib given a folder of its own where HOME cannot be
    written (:func:`subsetctl.report.plots.import_matplotlib`): reasoning-gym imports
    matplotlib.pyplot (through cellpylib), so with a read-only HOME, or none, `validate`,
    `plan` and `run` of a spec with a reasoning-gym source (the quickstart's) printed
    matplotlib's "mkdir -p failed ... it is highly recommended to set the MPLCONFIGDIR
    environment variable" into the log, ahead of the report stage that keeps it quiet."""
    from subsetctl.report.plots import import_matplotlib

    import_matplotlib()
    import reasoning_gym

    return reasoning_gym


def reasoning_gym_tasks() -> list[str]:
    """Names of reasoning-gym's registered task generators."""
    import_reasoning_gym()  # (importing registers the generators)
    from reasoning_gym.factory import DATASETS

    return sorted(DATASETS)


def reasoning_gym_task_hint(tasks: list[str]) -> str:
    """How to see every reasoning-gym task (`subsetctl ls` lists loaders, not tasks)."""
    return (
        f"The installed reasoning-gym has {len(tasks)} tasks; list them with "
        "`python -c \"import reasoning_gym; print(*sorted(reasoning_gym.factory.DATASETS))\"`."
    )


@LOADERS.register("reasoning_gym")
def load_reasoning_gym(options: ReasoningGymLoader, ctx: LoadContext) -> Dataset:
    """A reasoning-gym task generator: question -> prompt, answer -> response.

    Each row's metadata is the generator's metadata plus ``rg_task``, ``rg_seed``,
    ``rg_size``, ``rg_index`` and ``rg_config``: enough to rebuild the exact entry
    (``reasoning_gym.create_dataset(rg_task, size=rg_size, seed=rg_seed,
    **rg_config)[rg_index]``) and score an answer with its ``score_answer``."""
    reasoning_gym = import_reasoning_gym()
    tasks = reasoning_gym_tasks()
    if options.task not in tasks:
        raise UserError(
            f"Source {ctx.source_name!r}: loader.task {options.task!r} is not a reasoning-gym "
            f"task. {close_names(options.task, tasks)} {reasoning_gym_task_hint(tasks)}"
        )
    seed = options.seed if options.seed is not None else ctx.seed
    try:
        generator = reasoning_gym.create_dataset(options.task, size=options.size, seed=seed, **options.config)
    except Exception as exc:  # noqa: BLE001 - third-party code refusing the config (assert, TypeError, ...)
        raise UserError(
            f"Source {ctx.source_name!r}: reasoning-gym task {options.task!r} rejected "
            f"loader.config {options.config!r}: {_exception_text(exc)}. Fix loader.config."
        ) from None
    records = []
    for index in range(options.size):
        try:
            entry = generator[index]
        except Exception as exc:  # noqa: BLE001 - a generator giving up (maze: "Could not find ...")
            raise UserError(
                f"Source {ctx.source_name!r}: reasoning-gym task {options.task!r} failed to generate entry "
                f"{index} (seed {seed}, loader.config {options.config!r}): {_exception_text(exc)}. "
                + ("Loosen loader.config or try another loader.seed." if options.config
                   else "Try another loader.seed or task.")
            ) from None
        meta = dict(entry.get("metadata") or {})
        meta.update(
            rg_task=options.task, rg_seed=seed, rg_size=options.size, rg_index=index, rg_config=options.config
        )
        records.append({"question": entry["question"], "answer": entry["answer"], "metadata": meta})
    if all(record["answer"] is None for record in records):
        # boxnet, graph_color, propositional_logic, rubiks_cube, rush_hour: no seed or config helps
        raise UserError(
            f"Source {ctx.source_name!r}: reasoning-gym task {options.task!r} gives no answers (its "
            "entries' answer is null: they are scored by the task's checker alone), and every row "
            "needs a gold response. Choose a task with answers."
        )
    where = f"reasoning-gym task {options.task!r}"
    return build_common(
        records,
        "question",
        "answer",
        None,
        ctx,
        where,
        lambda i: f"entry {i}",
        ["question", "answer", "metadata"],
        fix="The generator made an unusable entry: try another loader.seed or loader.config.",
        draw=True,
    )


def _exception_text(exc: BaseException) -> str:
    """``exc``'s message, or its type's name where it has none (a bare ``assert``)."""
    return str(exc) or type(exc).__name__
