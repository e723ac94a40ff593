"""The ``plugin`` loader: calls a loader a third party registered, checks what it returns,
and builds the common columns from it.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING, Any

from subsetctl.data.loaders.common import LoadContext, build_common, one_based_row
from subsetctl.data.loaders.huggingface import _class_names_of, _with_class_names
from subsetctl.errors import UserError
from subsetctl.registry import LOADERS
from subsetctl.spec import (
    CsvLoader,
    EvalsLoader,
    HuggingFaceLoader,
    JsonlLoader,
    ParquetLoader,
    PluginLoader,
    ReasoningGymLoader,
)

if TYPE_CHECKING:
    from datasets import Dataset


#: Built-in loader types and their option models (a plugin entry may name one).
BUILTIN_OPTION_MODELS: dict[str, type] = {
    "jsonl": JsonlLoader,
    "csv": CsvLoader,
    "parquet": ParquetLoader,
    "huggingface": HuggingFaceLoader,
    "reasoning_gym": ReasoningGymLoader,
    "evals": EvalsLoader,
}




def how_to_return_a_dataset(result: Any) -> str:
    """How a loader plugin that returned ``result`` (not a ``datasets.Dataset``) makes one
    of it, for its error (", e.g. ..."), or "": the rows of a list, a DataFrame, a
    ``DatasetDict``'s split, a streamed dataset or a generator (a loader using ``yield``) are
    a Dataset a line away, which "returned DatasetDict, not a datasets.Dataset" did not say."""
    import inspect

    kind = type(result)
    if kind.__name__ == "DatasetDict" and isinstance(result, dict) and result:
        return f" (its splits: {', '.join(map(str, result))}): return one of them, e.g. dataset[{next(iter(result))!r}]"
    if kind.__name__ == "IterableDataset":
        return " (a streamed one): load it without streaming=True"
    if inspect.isgenerator(result):
        return " (the loader yields rows): return datasets.Dataset.from_list(list(rows)) instead"
    if isinstance(result, (list, tuple)):
        return ": return datasets.Dataset.from_list(rows), rows a list of dicts"
    if kind.__name__ == "DataFrame" and kind.__module__.startswith("pandas"):
        return ": return datasets.Dataset.from_pandas(df, preserve_index=False)"
    if isinstance(result, dict):
        return ": return datasets.Dataset.from_dict(columns), each column a list"
    return ""


@LOADERS.register("plugin")
def load_plugin(options: PluginLoader, ctx: LoadContext) -> Dataset:
    """A loader registered by a third party, called as ``fn(options: dict, ctx)``.

    It must return a ``datasets.Dataset`` with a ``prompt`` column and a ``response``
    (causal-lm) or ``label`` (classifier) column; other columns (and a ``metadata``
    column holding objects) become the metadata."""
    from pydantic import ValidationError

    if options.name == "plugin":
        raise UserError(f"Source {ctx.source_name!r}: loader.name cannot be 'plugin' itself.")
    fn = LOADERS.get(options.name)
    # its own copy: a plugin writing into its options (options["seen"] = ...) changed the spec's, and the
    # data stage then failed every run with "its input files changed while the data stage read them"
    call_options: Any = copy.deepcopy(options.options)
    model = BUILTIN_OPTION_MODELS.get(options.name)
    if model is not None:
        try:
            call_options = model.model_validate({"type": options.name, **call_options})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(options)'}: {e['msg']}" for e in exc.errors())
            raise UserError(
                f"Source {ctx.source_name!r}: loader.options are not valid for the built-in "
                f"loader {options.name!r}: {problems}. `subsetctl schema` lists that loader's keys."
            ) from None
    from subsetctl.plugin_guard import call_loader_plugin

    # the plugin's data is drawn from after it returns (it may filter what a built-in loader gives)
    who = f"loader plugin {options.name!r} ({LOADERS.described(options.name)})"
    result = call_loader_plugin(fn, call_options, dataclasses.replace(ctx, keep_at_most=None, drawn={}),
                                who, "Fix the plugin or its options under loader.options.")
    from datasets import Dataset

    if not isinstance(result, Dataset):
        raise UserError(
            f"Source {ctx.source_name!r}: {who} returned {type(result).__name__}, not a datasets.Dataset"
            f"{how_to_return_a_dataset(result)}. Fix the plugin."
        )
    if model is not None:
        return result
    answer = "label" if ctx.kind == "classifier" else "response"
    where = f"the dataset returned by {who}"
    fix = (
        f"A loader plugin must return a dataset with a 'prompt' column and, for model.kind {ctx.kind}, "
        f"a {answer!r} column (these names are fixed; no option renames them): fix the plugin "
        f"{options.name!r} or its loader.options."
    )
    return build_common(
        _with_class_names(result.to_list(), _class_names_of(result)), "prompt", answer, None, ctx, where,
        one_based_row, result.column_names, fix, draw=True, plugin=repr(options.name)
    )
