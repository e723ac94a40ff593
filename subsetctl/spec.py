"""The YAML spec: pydantic v2 models that are the single source of truth of a run.

Everything a run does is decided by one ``subsetctl.yaml``. This module defines its
schema (``subsetctl schema`` prints it), loads it safely, applies ``key=value``
overrides and turns validation errors into messages that name the file, the line and
the key path (``sources[3].loader.path``). It imports nothing heavy (no torch), so
``validate``, ``schema`` and ``plan`` start fast.
"""

from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import os
import re
import types
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue

from subsetctl.errors import SpecError, SpecFileError, printable, unexpanded_variable_note
from subsetctl.globbing import glob_without_loops

SPEC_FILENAME = "subsetctl.yaml"

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
#: names a source (or the target) cannot take: the data stage keeps one folder per source
#: next to these files of its own
RESERVED_SOURCE_NAMES = frozenset({"manifest.json", "resolved_spec.json", "work.json", "data.json"})


#: a quoted whole number as validate takes it (pydantic's lax mode: spaces around, a sign,
#: ``_`` between digits, ``.0`` after): ``steps: "5"``
QUOTED_INTEGER_PATTERN = r"^\s*[+-]?[0-9]+(_[0-9]+)*(\.0+)?\s*$"
#: a quoted number as validate takes it: ``lr: "1e-4"`` (and ``lr: 1e-4``, which YAML 1.1
#: and so PyYAML read as text: a float needs a dot there). A little wider than pydantic
#: about ``_``: the schema must not flag a spec validate accepts.
QUOTED_NUMBER_PATTERN = r"^\s*[+-]?([0-9][0-9_]*\.?[0-9_]*|\.[0-9][0-9_]*)([eE][+-]?[0-9_]*[0-9][0-9_]*)?\s*$"


def _ascii_form(text: str) -> str:
    """``text`` in ASCII letters: é -> e; what has no ASCII form (中文, emoji) is dropped."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _or_quoted(schema: dict[str, Any], pattern: str) -> dict[str, Any]:
    """``schema`` (a number's) or text that validate reads as that number."""
    return {"anyOf": [schema, {"type": "string", "pattern": pattern}]}


class NoBooleansForNumbers(BaseModel):
    """Base for models read from YAML: a boolean is no number (see the validator)."""

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        """pydantic takes ``true`` as 1 for a number, and YAML reads ``yes``/``on`` as true:
        ``seed: yes`` or ``n_jobs: on`` would pass as 1. A number field gets the boolean
        wrapped instead, so its own validation refuses it at the field's key and line, and
        :func:`issues_from_validation` says what happened."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for key, value in data.items():
            field = cls.model_fields.get(key)
            if field is None:
                continue
            if isinstance(value, bool) and _is_number_type(field.annotation):
                out[key] = _BooleanForNumber(value)
            elif isinstance(value, list) and get_origin(field.annotation) is list \
                    and _is_number_type(get_args(field.annotation)[0]):  # lambda_grid: [yes]
                out[key] = [_BooleanForNumber(v) if isinstance(v, bool) else v for v in value]
        return out


class StrictModel(NoBooleansForNumbers):
    """Base for every spec section: unknown keys are errors, values are validated on
    assignment so overrides are type-checked too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class _BooleanForNumber:
    """A boolean given for a number field: no number type accepts it."""

    def __init__(self, value: bool) -> None:
        self.value = value

    def __repr__(self) -> str:
        return str(self.value).lower()


def _is_number_type(annotation: Any) -> bool:
    """int or float, optionally ``| None`` (bool itself, a subclass of int, is not a number here)."""
    if get_origin(annotation) is Annotated:
        return _is_number_type(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        return bool(members) and all(_is_number_type(a) for a in members)
    return annotation in (int, float)


# --------------------------------------------------------------------------- project


class ProjectSpec(StrictModel):
    name: str = Field("subsetctl-project", description="Project name, shown in reports.")
    # torch takes seeds below 2**64, and fine-tunes add their seed index (`finetune.seeds` at most 100,
    # `verify.repeats` 10): 2**63 and above ran, so projects seeded there stay valid
    seed: int = Field(0, ge=0, le=2**64 - 100, description="Global seed; stages derive their seeds from it.")
    keep_previous: bool = Field(
        True,
        description="Keep each stage's previous results (one set per stage, under .subsetctl/.previous) when a "
        "run with other inputs replaces them, so that going back to those inputs (gradients.d: 32, then 16 "
        "again) puts them back instead of recomputing them. Costs up to one more copy of each stage's "
        "files on disk; false deletes them when `run` next starts.",
    )
    cache_limit_gb: float | None = Field(
        None,
        gt=0,
        description="Most disk the caches under .subsetctl/cache (finished fine-tunes, verify runs, test "
        "results, subset estimates) may take: after each `run`, the entries used least recently are "
        "deleted until they fit (never those this run used). A deleted entry is only computed again if "
        "asked for. Unset: no limit (`plan` says how much they take).",
    )

    @field_validator("name")
    @classmethod
    def _one_printable_line(cls, name: str) -> str:
        """The name heads report.md and the adapter's README and names the project in `ls`
        and every report: a newline, tab or other control character would break those lines."""
        bad = sorted({repr(c) for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp")})
        if bad:
            raise ValueError(f"the project name must be one line of printable text; it holds {', '.join(bad)}. "
                             "Write it without line breaks, tabs or other control characters")
        return name


# ----------------------------------------------------------------------------- model


class LoraSpec(StrictModel):
    r: int = Field(8, ge=1, le=1024, description="LoRA rank.")
    alpha: float = Field(16.0, gt=0, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout during training.")
    target_modules: list[str] | None = Field(
        None,
        min_length=1,
        description="Module names to adapt (linear layers); leave the key out for the default per architecture "
        "(Llama: q_proj, v_proj; BERT: query, value): subsetctl's own, else peft's for the model type.",
    )


class ModelSpec(StrictModel):
    source: str = Field(
        "smollm2-135m-instruct",
        min_length=1,
        description="A packaged model name (see `subsetctl ls`), a local folder, or a "
        "Hugging Face hub id (needs network access).",
    )
    kind: Literal["causal-lm", "classifier"] = Field(
        "causal-lm", description="causal-lm: prompt -> response; classifier: text -> label."
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Weights dtype (float32 on CPU)."
    )
    max_length: int = Field(
        128, ge=8, le=32768, description=("Max tokens per example. A causal LM's prompt is cut from the left (its "
                                  "answer is kept whole when it fits); a classifier's text is cut at its end. "
                                  "meta_init and gradients warn, by source, about what was cut.")
    )
    num_labels: int | None = Field(
        None, ge=2, description="Classifier only: number of classes (default: from the data)."
    )
    trust_remote_code: bool = Field(
        False, description="Allow model code from the model folder/hub. Off unless you trust it."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto = CUDA when available, else CPU."
    )
    lora: LoraSpec = Field(default_factory=LoraSpec, description="LoRA adapter settings.")


# ------------------------------------------------------------------------------ data


class LoaderBase(StrictModel):
    """Options shared by file loaders: which columns hold the prompt and the answer."""

    prompt_field: str = Field("prompt", description="Column holding the prompt / input text.")
    response_field: str | None = Field(
        "response", description="Column holding the gold response (causal-lm)."
    )
    label_field: str | None = Field(
        None, description="Column holding the class label (classifier)."
    )


class JsonlLoader(LoaderBase):
    """A local JSON Lines file, one example per line."""

    type: Literal["jsonl"] = Field(description="Loader type: a local JSON Lines file.")
    path: str = Field(description="Path to the .jsonl file (UTF-8; may be gzip-compressed, e.g. .jsonl.gz), "
                                  "relative to the spec file.")


def _delimiter_schema(schema: dict[str, Any]) -> None:
    """The delimiter's schema: one character, or a spelling of tab the validator below reads
    as one (``tab``, ``\\t``); editors flagged those, which the description offers, as errors."""
    one = {"minLength": schema.pop("minLength"), "maxLength": schema.pop("maxLength")}
    schema["anyOf"] = [one, {"pattern": r"^\s*([Tt][Aa][Bb]|\\[Tt])\s*$"}]


class Delimited(BaseModel):
    """The delimiter option of the CSV loaders (a listed source's and a group's)."""

    delimiter: str = Field(
        ",", min_length=1, max_length=1, json_schema_extra=_delimiter_schema,
        description='Field delimiter, one character. A tab is "\\t" in double quotes (or tab, or \\t unquoted).',
    )

    @field_validator("delimiter", mode="before")
    @classmethod
    def _tab(cls, value: Any) -> Any:
        """`delimiter: '\\t'` (single quotes keep the backslash) and `tab` mean a tab."""
        return "\t" if isinstance(value, str) and value.strip().lower() in ("\\t", "tab") else value


class CsvLoader(LoaderBase, Delimited):
    """A local CSV file with a header row."""

    type: Literal["csv"] = Field(description="Loader type: a local CSV file with a header row.")
    path: str = Field(description="Path to the .csv file (UTF-8; may be gzip-compressed, e.g. .csv.gz), "
                                  "relative to the spec file.")


class ParquetLoader(LoaderBase):
    """A local Parquet file."""

    type: Literal["parquet"] = Field(description="Loader type: a local Parquet file.")
    path: str = Field(description="Path to the .parquet file, relative to the spec file.")


class HuggingFaceLoader(LoaderBase):
    """Any dataset `datasets.load_dataset` can read: a hub id or a local folder/script."""

    type: Literal["huggingface"] = Field(description="Loader type: datasets.load_dataset on a hub id or a local folder.")
    path: str = Field(description="Hub dataset id or local path given to datasets.load_dataset.")
    name: str | None = Field(None, description="Dataset configuration name.")
    split: str = Field("train", description="Which split to read.")
    data_files: list[str] | None = Field(None, description="Explicit data files, if any.")


class ReasoningGymLoader(StrictModel):
    """A reasoning-gym procedural task generator (offline, seeded, with answer checkers)."""

    type: Literal["reasoning_gym"] = Field(description="Loader type: a reasoning-gym task generator.")
    task: str = Field(description="reasoning-gym dataset name, e.g. basic_arithmetic.")
    size: int = Field(100, ge=1, le=1_000_000, description="How many examples to generate.")
    seed: int | None = Field(None, ge=0, description="Generator seed (default: the source seed).")
    config: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword options for the generator."
    )


class EvalsLoader(StrictModel):
    """A task shipped in the `evals` package (chat-format input with an `ideal` answer)."""

    type: Literal["evals"] = Field(description="Loader type: a task from the `evals` package.")
    name: str = Field(description="Folder under evals/registry/data, e.g. 'born_first'.")
    file: str | None = Field(None, description="JSONL file inside it (default: samples.jsonl when present, else the first).")


class PluginLoader(StrictModel):
    """A third-party loader: registered by a module the spec's `plugins:` list names
    (`@LOADERS.register("name")`), or by an installed package under the `subsetctl.loaders`
    entry-point group."""

    type: Literal["plugin"] = Field(description="Loader type: a third-party loader registered by a plugin.")
    name: str = Field(description="Registered loader name (see `subsetctl ls`).")
    options: dict[str, Any] = Field(default_factory=dict, description="Options for the loader.")

    @field_validator("options")
    @classmethod
    def _json_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Options are saved in the resolved spec and fingerprinted as JSON: a YAML set
        (its order changes from run to run, so the data stage never stayed up to date), a
        date, or .inf/.nan (all written as null, so a change went unseen) would not
        round-trip."""
        import math

        def check(value: Any, where: str) -> None:
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise ValueError(f"options{where}: key {key!r} is not text; JSON keys are strings")  # noqa: TRY004 - pydantic reports ValueErrors
                    check(item, f"{where}.{key}")
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    check(item, f"{where}[{i}]")
            elif isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"options{where}: {value} cannot be saved as JSON; give a finite number or text")
            elif not isinstance(value, str | int | float | bool | type(None)):
                raise ValueError(f"options{where}: a {type(value).__name__} ({value!r}) cannot be saved as JSON; "
                                 "use a list, a mapping, text or a number")

        check(options, "")
        return options


LoaderSpec = Annotated[
    JsonlLoader | CsvLoader | ParquetLoader | HuggingFaceLoader | ReasoningGymLoader | EvalsLoader | PluginLoader,
    Field(discriminator="type"),
]

SplitSize = Union[Annotated[int, Field(ge=0)], Annotated[float, Field(ge=0.0, le=1.0)]]  # noqa: UP007


class SplitSpec(StrictModel):
    """Split sizes: an int is a count, a float in [0, 1] a fraction of the examples."""

    train: SplitSize = Field(1.0, description="Training examples (count or fraction).")
    validation: SplitSize = Field(0, description="Validation examples (count or fraction).")
    test: SplitSize = Field(0, description="Held-out test examples (count or fraction).")

    @model_validator(mode="after")
    def _fractions_sum(self) -> SplitSpec:
        sizes = {"train": self.train, "validation": self.validation, "test": self.test}
        fractions = {k: v for k, v in sizes.items() if isinstance(v, float)}
        if sum(fractions.values()) > 1.0 + 1e-9:
            raise ValueError("split fractions add up to more than 1.0")
        counts = [k for k, v in sizes.items() if isinstance(v, int) and v > 0]
        if counts and abs(sum(fractions.values()) - 1.0) < 1e-9:
            if "train" not in self.model_fields_set:
                taken = "train, not given, defaults to the fraction 1.0, which already takes"
            else:
                taken = f"the fractions {' + '.join(f'{k} {v}' for k, v in fractions.items())} already take"
            raise ValueError(
                f"{taken} every example, so the count for "
                f"{' and '.join(counts)} asks for more rows than there are; give every split as a "
                "fraction (e.g. train: 0.9, validation: 0.1) or as a count"
            )
        return self


class CorruptSpec(StrictModel):
    """Deliberate corruption, e.g. a negative control that should be dropped."""

    shuffle_responses: bool = Field(
        False,
        description="Shuffle responses (labels) across examples: the source keeps its "
        "prompts but its answers become wrong. A planted harmful source.",
    )


class SourceSettings(StrictModel):
    """How a source's examples are sampled and split (shared by listed sources and groups)."""

    split: SplitSpec = Field(
        default_factory=SplitSpec,
        description="Split sizes. Only a source's train rows are used (meta-init, gradients, estimates, "
        "fine-tunes); its validation and test rows are set aside and read by no stage, so a train "
        "fraction or count below the whole source is how to use part of it.",
    )
    max_examples: int | None = Field(
        None, ge=1, description="Keep at most this many examples (after shuffling by seed)."
    )
    seed: int | None = Field(None, ge=0, description="Seed for shuffling/splitting (default: project seed).")
    corrupt: CorruptSpec = Field(default_factory=CorruptSpec, description="Planted corruption.")


class SourceSpec(SourceSettings):
    name: str = Field(description="Unique name of the source.", pattern=NAME_PATTERN)
    loader: LoaderSpec = Field(description="Where the examples come from.")


class JsonlFiles(LoaderBase):
    """Each file is a JSON Lines file."""

    type: Literal["jsonl"] = Field(description="Loader type: a local JSON Lines file.")


class CsvFiles(LoaderBase, Delimited):
    """Each file is a CSV file with a header row."""

    type: Literal["csv"] = Field(description="Loader type: a local CSV file with a header row.")


class ParquetFiles(LoaderBase):
    """Each file is a Parquet file."""

    type: Literal["parquet"] = Field(description="Loader type: a local Parquet file.")


FilesLoaderSpec = Annotated[JsonlFiles | CsvFiles | ParquetFiles, Field(discriminator="type")]


class SourceFilesSpec(SourceSettings):
    """Many sources at once: one source per file matching ``files``, named after the file
    (its path below the glob's fixed folder, without the extension; ``/`` becomes ``.``).
    For dozens to thousands of candidate datasets kept as files in a folder. The settings
    (split, max_examples, seed, corrupt) apply to each source."""

    files: str = Field(
        description="Glob relative to the spec file (or absolute), e.g. data/sources/*.jsonl ('**' "
        "matches folders at any depth; hidden files are skipped). Files are taken in sorted order; a "
        "file added later is a new source (the data stage becomes stale).",
        min_length=1,
    )
    loader: FilesLoaderSpec = Field(
        description="How to read each file: the jsonl, csv or parquet loader's options, without path."
    )
    name_prefix: str = Field(
        "", pattern=r"^[A-Za-z0-9_.\-]{0,32}$", description="Put before each file's name to make the source name."
    )

    def matching_files(self, spec_dir: Path) -> list[Path]:
        """The files the glob matches, sorted: relative to ``spec_dir`` as written (``..``
        included), or absolute for an absolute pattern; hidden files are skipped."""
        matches = glob_without_loops(str(Path(self.files).expanduser()), Path(spec_dir))
        return sorted(Path(m) for m in matches if (Path(spec_dir) / m).is_file())

    def source_name(self, relative: Path) -> str:
        """The source name of one matched file: prefix + its path below the glob's fixed
        leading folders (``data/sources`` for ``data/sources/**/*.jsonl``), without the
        extension (and a ``.gz`` after it), ``/`` as ``.``; characters a name cannot hold become ``_``."""
        fixed: list[str] = []
        for part in Path(self.files).expanduser().parts[:-1]:
            if any(c in part for c in "*?["):
                break
            fixed.append(part)
        parts = list(relative.parts)
        if parts[: len(fixed)] == fixed:
            parts = parts[len(fixed):]
        # A file name's bytes as UTF-8, bytes that are not UTF-8 as surrogate escapes: the same
        # text under any locale (LC_ALL=C reads é as two escapes), and hashable (encoded back with
        # surrogateescape) where `.encode()` raised UnicodeEncodeError.
        parts = [os.fsencode(part).decode("utf-8", "surrogateescape") for part in parts]
        file_id = hashlib.sha1(os.fsencode(relative.as_posix())).hexdigest()[:8]  # stable, distinct per file
        base = Path(parts[-1])
        file_stem = _ascii_form((base.with_suffix("") if base.suffix == ".gz" else base).stem)  # x.jsonl.gz -> x
        if not re.search(r"[A-Za-z0-9]", file_stem):  # nothing left of the name (中文.jsonl)
            file_stem = f"file-{file_id}"
        def folder_part(text: str) -> str:  # 中文/ -> dir-<hash>: dropped, 中文/a and 日本/a were both 'a'
            folded = _ascii_form(text)
            if re.search(r"[A-Za-z0-9]", folded):
                return folded
            return "dir-" + hashlib.sha1(unicodedata.normalize("NFC", text).encode("utf-8", "surrogateescape")).hexdigest()[:8]

        stem = ".".join([*(folder_part(p) for p in parts[:-1]), file_stem])
        name = re.sub(r"[^A-Za-z0-9_.\-]", "_", self.name_prefix + stem).lstrip("_.-")
        if len(name) > 64:  # long names that share their first characters must stay distinct
            name = f"{name[:55]}-{file_id}"
        return name

    def expand(self, spec_dir: Path) -> list[dict[str, Any]]:
        """One source entry (a dict ready for :class:`SourceSpec`) per matching file."""
        settings = self.model_dump(mode="json", include={"split", "max_examples", "seed", "corrupt"})
        loader = self.loader.model_dump(mode="json")
        return [{"name": self.source_name(rel), "loader": {**loader, "path": rel.as_posix()}, **settings}
                for rel in self.matching_files(spec_dir)]


def _default_target_split() -> SplitSpec:
    return SplitSpec(train=0.5, validation=0.25, test=0.25)


#: what the target's split must hold besides a SplitSpec's rules, for editors: train,
#: validation and test rows (validate refuses a split without them; 0 and 0.0 alike are
#: none, and validation and test default to 0)
_TARGET_SPLIT_SCHEMA: dict[str, Any] = {
    "required": ["validation", "test"],
    "properties": {name: {"not": {"const": 0}} for name in ("train", "validation", "test")},
}


class TargetSpec(SourceSpec):
    split: SplitSpec = Field(
        default_factory=_default_target_split,
        json_schema_extra=_TARGET_SPLIT_SCHEMA,
        description="Split sizes; the target needs train, validation and test examples.",
    )

    @model_validator(mode="after")
    def _needs_validation(self) -> TargetSpec:
        if self.split.validation == 0:
            raise ValueError("the target needs validation examples (split.validation > 0)")
        return self


# ---------------------------------------------------------------------------- stages


class TrainSpec(StrictModel):
    """Settings shared by every LoRA training run."""

    steps: int = Field(40, ge=1, description="Optimizer steps.")
    batch_size: int = Field(8, ge=1, description="Examples per micro-batch.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    lr: float = Field(1e-3, gt=0, description="Learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    checkpoint_every: int = Field(10, ge=1, description="Save a resumable checkpoint every N steps.")


class MetaInitSpec(TrainSpec):
    """Multitask LoRA training on target + all sources: theta*."""

    eval_every: int = Field(10, ge=1, description="Evaluate target validation loss every N steps.")


class GradientsSpec(StrictModel):
    d: int = Field(
        128, ge=1, le=65536,
        description="Projection dimension: each example's LoRA gradient is projected to d numbers. At most "
        "the number of trainable LoRA parameters (the gradients stage names it when d is larger).",
    )
    projector: str = Field("rademacher", description="Registered projector name.")
    batch_size: int = Field(8, ge=1, description="Examples per gradient batch.")
    memory_budget_mb: float = Field(
        256, gt=0, description="Most memory the projection matrix may hold at once."
    )
    seed: int | None = Field(None, ge=0, description="Projection seed (default: project seed).")


class SimulatedFinetuneSpec(StrictModel):
    """The fine-tune the ``linear_sgd`` estimator simulates (default: verify's surrogate run)."""

    steps: int | None = Field(None, ge=1, description="SGD steps (default: verify.steps).")
    batch_size: int | None = Field(None, ge=1, description="Batch size (default: verify.batch_size).")
    lr: float | None = Field(None, gt=0, description="SGD learning rate (default: verify.lr_surrogate).")
    replay: bool = Field(
        True,
        description="Replay the real fine-tune's batch sequence (true) or take full-batch steps "
        "(false: no batch-sampling noise).",
    )


class EstimateSpec(StrictModel):
    estimator: str = Field(
        "fast", description="Registered estimator: fast, exact, linear_sgd, true_finetune."
    )
    lam: float = Field(
        1.0, gt=0, description="L2 regularization lambda (replaced by calibration when on)."
    )
    max_iter: int = Field(50, ge=1, description="Exact solver: max Newton-CG iterations.")
    sgd: SimulatedFinetuneSpec = Field(
        default_factory=SimulatedFinetuneSpec,
        description="linear_sgd estimator: the fine-tune it simulates.",
    )


#: Calibration needs at least this many usable real fine-tunes (verify.k); with fewer it is off.
MIN_CALIBRATION_K = 4


class CalibrateSpec(StrictModel):
    enabled: bool = Field(True, description="Choose lambda and an affine map from verify's fine-tunes.")
    lambda_grid: list[float] = Field(
        [0.01, 0.1, 0.3, 1.0, 3.0, 10.0], min_length=1,
        json_schema_extra={"items": _or_quoted({"type": "number", "exclusiveMinimum": 0},  # as _positive checks
                                               QUOTED_NUMBER_PATTERN)},
        description="Lambdas to choose from (one value pins lambda); estimate.lam is kept when lambda "
                    "cannot be chosen (verify off, or fewer than 4 usable fine-tunes).",
    )
    against: Literal["ce", "surrogate"] = Field(
        "ce", description="Which verify fine-tune to calibrate against."
    )
    estimators: list[str] = Field(
        default_factory=list,
        description="Estimators to choose from together with lambda, by the same rank agreement "
        "(e.g. [fast, linear_sgd]); empty: only estimate.estimator.",
    )

    @field_validator("lambda_grid")
    @classmethod
    def _positive(cls, grid: list[float]) -> list[float]:
        bad = [v for v in grid if not v > 0]
        if bad:
            raise ValueError(f"lambda_grid values must be positive, got {', '.join(map(str, bad))}")
        return grid


class StrategySpec(StrictModel):
    name: str = Field(description="Registered strategy name (see `subsetctl ls`).")
    params: dict[str, Any] = Field(default_factory=dict, description="Strategy parameters.")
    label: str | None = Field(
        None, description="Name to report it under (default: name).", pattern=NAME_PATTERN
    )


def _default_strategies() -> list[StrategySpec]:
    return [StrategySpec(name="random_ensemble")]


class SearchSpec(StrictModel):
    strategies: list[StrategySpec] = Field(
        default_factory=_default_strategies, min_length=1, description="Strategies to run."
    )
    final: str | None = Field(
        None,
        description="The strategy (by label) whose pick is the final one (default: the first): the "
        "search summary's `selected`, the adapter the report points to, and the order of the report's "
        "per-source score table. Every strategy's pick is fine-tuned and evaluated either way.",
    )


class FinetuneSpec(TrainSpec):
    enabled: bool = Field(True, description="Fine-tune the base model on each selection.")
    baselines: list[Literal["all", "target_only"]] = Field(
        ["all", "target_only"], description="Baseline selections fine-tuned with the same budget."
    )
    seeds: int = Field(
        1, ge=1, le=100, description="Fine-tune each selection with this many seeds (mean ± std)."
    )


class EvaluateSpec(StrictModel):
    max_new_tokens: int = Field(16, ge=1, le=4096, description="Greedy generation bound.")
    batch_size: int = Field(
        16, ge=1, description="Test rows per batch, for every evaluation pass: the test loss, a classifier's "
        "predictions and the generated answers (one knob: a generation batch also holds up to max_new_tokens "
        "more tokens per row, so lower it if generation runs out of memory)."
    )
    metric: Literal["auto", "exact_match", "reasoning_gym", "accuracy"] = Field(
        "auto", description="Task metric; auto picks accuracy for a classifier, else reasoning_gym when every "
        "test row has reasoning-gym metadata, exact_match when none has, and 'mixed' (each row by its own) "
        "otherwise. exact_match compares answers stripped, lowercased, with whitespace collapsed and one "
        "trailing period dropped, and numbers by value (4.0 = 4, 1,000 = 1000)."
    )


class VerifySpec(StrictModel):
    enabled: bool = Field(False, description="Fine-tune k random subsets for real from theta*.")
    k: int = Field(8, ge=1, le=1000, description="Number of random subsets (empty and all included).")
    steps: int = Field(15, ge=1, description="Optimizer steps per real fine-tune.")
    batch_size: int = Field(
        8, ge=1, description="Examples per step of a real fine-tune (one batch a step: "
        "meta_init.grad_accum does not apply, as the linear_sgd replay assumes)."
    )
    kinds: list[Literal["ce", "surrogate"]] = Field(
        ["ce", "surrogate"],
        min_length=1,
        json_schema_extra={"uniqueItems": True},  # as _distinct_kinds checks
        description="ce: AdamW on cross-entropy, of the response tokens (causal LM) or of the class "
        "(classifier): what users run; surrogate: SGD on mean softplus(-f) (what the estimate models).",
    )
    lr_ce: float = Field(5e-4, gt=0, description="AdamW learning rate of the ce fine-tune.")
    lr_surrogate: float = Field(
        0.002,
        gt=0,
        description="SGD learning rate of the surrogate fine-tune. Small on purpose: this run checks "
        "the estimate in the regime it models (measured on SmolLM2: at 0.01 x 15 steps the real run "
        "already drops the loss a quarter less than its linearization; at 0.002 the drops agree within "
        "10% and rank subsets alike).",
    )
    repeats: int = Field(
        1,
        ge=1,
        le=10,
        description="Fine-tune each subset this many times, with batch-order seeds project.seed, ..., project.seed + r - 1. "
        "Calibration fits the mean over repeats, and the report shows how well the repeats rank the "
        "subsets alike: the ceiling for any estimate's Spearman against one run.",
    )

    @field_validator("kinds")
    @classmethod
    def _distinct_kinds(cls, kinds: list[str]) -> list[str]:
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"each kind at most once, got {', '.join(map(repr, kinds))} (use verify.repeats to fine-tune again)")
        return kinds


class ReportSpec(StrictModel):
    plots: bool = Field(True, description="Write PNG plots next to report.md.")


class ExecutorSpec(StrictModel):
    backend: Literal["loky", "threading", "dask", "sequential"] = Field(
        "loky", description="Parallel backend for estimating subsets."
    )
    n_jobs: int = Field(2, ge=1, le=4096, description="Parallel workers.")
    address: str | None = Field(
        None, description="Dask scheduler address; none starts a LocalCluster."
    )
    batch_size: int | None = Field(None, ge=1, description="Subsets per task (default: automatic).")
    connect_timeout: float = Field(
        5.0, gt=0, le=3600,
        description="Dask with an address: seconds to wait for the scheduler to answer, and again for "
        "at least one worker to be connected to it (raise it for a cluster whose workers take longer to join).",
    )


# ------------------------------------------------------------------------------ spec


class Spec(StrictModel):
    """A subsetctl project: base model, target task, auxiliary sources, stage settings."""

    # what _names checks first, for editors: at least one source, listed or in a group
    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["sources"], "properties": {"sources": {"minItems": 1}}},
        {"required": ["source_files"], "properties": {"source_files": {"minItems": 1}}},
    ]})

    project: ProjectSpec = Field(default_factory=ProjectSpec, description="Name and seed.")
    model: ModelSpec = Field(default_factory=ModelSpec, description="Base model and LoRA.")
    target: TargetSpec = Field(description="The task to fine-tune for.")
    sources: list[SourceSpec] = Field(
        default_factory=list, description="Candidate auxiliary sources (with source_files: at least one in all)."
    )
    source_files: list[SourceFilesSpec] = Field(
        default_factory=list,
        description="Groups of sources read from files matching a glob, one source per file; they "
        "are added after `sources` when the spec is loaded (resolved specs list them one by one).",
    )
    meta_init: MetaInitSpec = Field(default_factory=MetaInitSpec, description="Meta-initialization.")
    gradients: GradientsSpec = Field(default_factory=GradientsSpec, description="Gradient store.")
    estimate: EstimateSpec = Field(default_factory=EstimateSpec, description="Subset estimator.")
    verify: VerifySpec = Field(default_factory=VerifySpec, description="Real fine-tunes of k subsets.")
    calibrate: CalibrateSpec = Field(default_factory=CalibrateSpec, description="Calibration.")
    search: SearchSpec = Field(default_factory=SearchSpec, description="Search strategies.")
    finetune: FinetuneSpec = Field(
        default_factory=lambda: FinetuneSpec(steps=40, lr=1e-3), description="Final fine-tunes."
    )
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec, description="Test evaluation.")
    report: ReportSpec = Field(default_factory=ReportSpec, description="Report output.")
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec, description="Parallelism.")
    plugins: list[str] = Field(
        default_factory=list, description="Extra plugins to import, as 'module:attr' strings."
    )
    #: index in ``sources`` -> (source_files group, file) for sources expanded from a group
    _source_origins: dict[int, tuple[int, str]] = PrivateAttr(default_factory=dict)

    @property
    def source_origins(self) -> dict[int, tuple[int, str]]:
        """Which ``source_files`` group and file each expanded source came from, by its
        index in ``sources`` (empty for a spec without groups): to blame its problems there."""
        return self._source_origins

    @model_validator(mode="after")
    def _names(self) -> Spec:
        """Every name problem at once: reserved names, names taken twice, the target's name."""
        if not self.sources and not self.source_files:
            raise ValueError("no sources: list at least one under `sources` (or a `source_files` group)")
        problems: list[str] = []
        # each name is a folder next to the reserved files: on a case-insensitive file system
        # (macOS by default) names that differ only in case are the same folder
        reserved = {name.casefold() for name in RESERVED_SOURCE_NAMES}
        if self.target.name.casefold() in reserved:
            problems.append(f"the target's name {self.target.name!r} is reserved (the data stage keeps a file "
                            "of that name); rename it")
        seen: dict[str, int] = {}
        folded: dict[str, int] = {}
        for i, source in enumerate(self.sources):
            if source.name.casefold() in reserved:
                problems.append(f"sources[{i}] is named {source.name!r}, a name the data stage keeps for its own "
                                "file; rename it")
            if source.name in seen:
                problems.append(f"duplicate source name {source.name!r} (sources[{seen[source.name]}] and "
                                f"sources[{i}]); names must be unique")
            elif source.name.casefold() in folded:
                other = folded[source.name.casefold()]
                problems.append(f"source names {self.sources[other].name!r} (sources[{other}]) and {source.name!r} "
                                f"(sources[{i}]) differ only in case: they would share one folder on a "
                                "case-insensitive file system (macOS by default); rename one")
            seen.setdefault(source.name, i)
            folded.setdefault(source.name.casefold(), i)
            if source.name == self.target.name:
                problems.append(f"sources[{i}] has the target's name {source.name!r}; the target is always "
                                "included and must not also be listed as a source")
            elif source.name.casefold() == self.target.name.casefold():
                problems.append(f"sources[{i}] is named {source.name!r}, the target {self.target.name!r}: names "
                                "that differ only in case would share one folder on a case-insensitive file "
                                "system (macOS by default); rename one")
        if problems:
            raise ValueError("; ".join(problems))
        return self


# ---------------------------------------------------------------------- loading


class _SchemaWithFactoryDefaults(GenerateJsonSchema):
    """Pydantic leaves a field built by ``default_factory`` without a ``default`` in the
    schema; the schema is the spec's reference, so those defaults are written out too.

    A number may be given as text (``steps: "5"``, ``lr: 1e-4``, which PyYAML reads as
    text): validate takes it, so the schema takes text that reads as a number too, or
    editors would flag specs that are valid (its range is left to validate)."""

    def int_schema(self, schema: Any) -> JsonSchemaValue:
        return _or_quoted(super().int_schema(schema), QUOTED_INTEGER_PATTERN)

    def float_schema(self, schema: Any) -> JsonSchemaValue:
        return _or_quoted(super().float_schema(schema), QUOTED_NUMBER_PATTERN)

    def default_schema(self, schema: Any) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            schema = {**schema, "default": factory()}
            del schema["default_factory"]
        return super().default_schema(schema)


def json_schema() -> dict[str, Any]:
    """The JSON schema of the spec (what `subsetctl schema` prints)."""
    schema = Spec.model_json_schema(schema_generator=_SchemaWithFactoryDefaults)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "subsetctl spec"
    return schema


class _LineLoader(yaml.SafeLoader):
    """Safe loader (no arbitrary objects) used only to read line numbers."""


def key_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Map each key path in a YAML document to its 1-based line number. A key a merge
    (``<<: *base``) brings in has the line where the anchored mapping writes it, since
    that is where its value is to be fixed (:func:`merged_keys` says where it was merged).

    Memoized on the text: `validate` and `run` ask for the same spec's lines from
    several checks, and each compose with the pure-Python parser took about a second for
    a spec of 3,000 sources (three quarters of `validate`). A copy is returned."""
    return dict(_key_lines_of(text)[0])


def merged_keys(text: str) -> dict[tuple[Any, ...], int]:
    """Map each key path a merge (``<<: *base``) brought in to the line of that ``<<``."""
    return dict(_key_lines_of(text)[1])


_MERGE_TAG = "tag:yaml.org,2002:merge"


@functools.lru_cache(maxsize=4)
def _key_lines_of(text: str) -> tuple[dict[tuple[Any, ...], int], dict[tuple[Any, ...], int]]:
    """(:func:`key_lines`, :func:`merged_keys`), computed (callers get copies: these are shared)."""
    lines: dict[tuple[Any, ...], int] = {}
    merged: dict[tuple[Any, ...], int] = {}
    try:
        root = yaml.compose(text, Loader=_LineLoader)
    except (yaml.YAMLError, RecursionError):
        return lines, merged

    def record(sub: tuple[Any, ...], mark_node: Any, value_node: Any, merged_at: int | None) -> None:
        """The line of ``sub`` (where ``mark_node`` starts), then the lines under it."""
        if merged_at is not None and sub in lines:  # given beside the merge (or merged earlier): that one counts
            return
        lines[sub] = mark_node.start_mark.line + 1
        if merged_at is not None:
            merged[sub] = merged_at
        walk(value_node, sub, merged_at)

    def walk(node: Any, path: tuple[Any, ...], merged_at: int | None = None) -> None:
        """Record the lines under ``node`` at ``path``; ``merged_at``: the line of the
        ``<<`` that brought it in, whose keys a mapping's own keys (and earlier merges) win over."""
        if isinstance(node, yaml.MappingNode):
            merges = []
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    merges.append((key_node.start_mark.line + 1, value_node))
                else:
                    record(path + (key_node.value,), key_node, value_node, merged_at)
            for line, value_node in merges:  # as YAML merges: the first mapping named wins
                for base in value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]:
                    walk(base, path, merged_at if merged_at is not None else line)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                record(path + (i,), item, item, merged_at)

    try:
        if root is not None:
            walk(root, ())
    except RecursionError:  # absurdly deep nesting: the issues simply carry no line
        return {}, {}
    return lines, merged


def format_path(loc: tuple[Any, ...]) -> str:
    """('sources', 3, 'loader', 'path') -> 'sources[3].loader.path'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's union-tag parts (e.g. 'jsonl', 'int', 'float') from a location."""
    keep: list[Any] = []
    for part in loc:
        if isinstance(part, str) and (
            part in {"jsonl", "csv", "parquet", "huggingface", "reasoning_gym", "evals", "plugin"}
            or part.startswith(("int", "float", "constrained-", "function-"))
        ):
            continue
        keep.append(part)
    return tuple(keep)


def _deepest_written(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> tuple[Any, ...] | None:
    """``loc``, or its deepest part the YAML writes; None when nothing of it is written."""
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return loc[:cut]
    return None


def line_of_key(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    """The line of ``loc``, or of its deepest part the YAML writes (a default value that is
    wrong points at the section holding it); None when nothing of it is written."""
    written = _deepest_written(loc, lines)
    return None if written is None else lines[written]


class SpecIssue(BaseModel):
    """One problem found in a spec, with where it is."""

    file: str
    line: int | None
    key: str
    message: str

    def render(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}"


def issues_from_validation(
    exc: ValidationError, file: str, lines: dict[tuple[Any, ...], int], text: str = ""
) -> list[SpecIssue]:
    """Turn pydantic errors into SpecIssues naming file, line and key path. ``text``: the
    spec file's text, for a number given for text to be quoted as it is written there."""
    found: list[SpecIssue] = []
    errors = exc.errors()
    merged = merged_keys(text) if text else {}

    def union_member(err: Any) -> tuple[Any, ...] | None:  # the key, when err is one member of a union
        loc = tuple(err["loc"])
        return _clean_loc(loc) if _clean_loc(loc) != loc else None

    # a count-or-fraction key fails once as an integer and once as a number: say it once
    number_failed = {union_member(e) for e in errors if e["type"] in ("float_parsing", "float_type")} - {None}
    # 1.5 or -0.5 fails as a count (not whole) and as a fraction (out of range): one problem
    fraction_out_of_range = {union_member(e) for e in errors if "constrained-float" in e["loc"]
                             and e["type"] in ("less_than_equal", "greater_than_equal")} - {None}
    for err in errors:
        if err["type"] in ("int_parsing", "int_type") and union_member(err) in number_failed:
            continue
        if "constrained-int" in err["loc"] and union_member(err) in fraction_out_of_range:
            continue
        loc = _clean_loc(tuple(err["loc"]))
        message = plain_error_message(err)
        if union_member(err) in fraction_out_of_range and "constrained-float" in err["loc"]:
            message = (f"expected a count (a whole number of examples, 0 or more) or a fraction from 0 to 1, "
                       f"got {_describe_value(err.get('input'))}")
        if err["type"] == "string_type" and text:
            message = _as_written_hint(message, err.get("input"), loc, line_of_key(loc, lines), text)
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, err["ctx"]["discriminator"].strip("'"))  # blame the `type:` line itself
        named = re.findall(r"sources\[(\d+)\]", message) if not loc else []
        if named:  # a whole-spec check about a source (a duplicate name): at that source
            loc = ("sources", int(named[-1]))
        message += _merge_note(loc, lines, merged)
        issue = SpecIssue(file=file, line=line_of_key(loc, lines), key=format_path(loc), message=message)
        if issue not in found:  # a union (count or fraction) fails once per member, alike
            found.append(issue)
    return found


def _merge_note(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int], merged: dict[tuple[Any, ...], int]) -> str:
    """" (brought in by the `<<` merge at line 13)" when the deepest written part of
    ``loc`` came from a merge: the issue's line is then the anchored mapping's, which
    another key path may share, so the reader is told why."""
    written = _deepest_written(loc, lines)
    return f" (brought in by the `<<` merge at line {merged[written]})" if written in merged else ""


def _as_written_hint(message: str, value: Any, loc: tuple[Any, ...], line: int | None, text: str) -> str:
    """``message`` with the quoting example written as the number is in the file, when YAML
    read it as another one: `name: 0042` is octal 34 in YAML, and the advice to write
    "34" would have renamed the source (as "2.1" would `name: 2.10`)."""
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or line is None or not loc
            or not isinstance(loc[-1], str)):
        return message
    spec_lines = text.splitlines()
    if line > len(spec_lines):
        return message
    found = re.search(rf"(?<![\w.-]){re.escape(loc[-1])}\s*:\s*([^\s,{{}}\[\]#'\"]+)", spec_lines[line - 1])
    written = found.group(1) if found else None
    if written is None or written == str(value):
        return message
    try:  # a tag (`!!int 3`) or an alias (`*n`) read alone failed (PyYAML's IndexError, an undefined alias)
        same = yaml.safe_load(written) == value
    except (yaml.YAMLError, ValueError, LookupError, AttributeError, TypeError):
        return message
    if not same:
        return message
    return message.replace(f'e.g. "{value}")', f'as written: "{written}"; unquoted, YAML reads {written} as {value})')


def plain_error_message(err: Any) -> str:
    """A pydantic error's message in the spec's terms: what is wrong and what to write."""
    kind, value, message = err["type"], err.get("input"), err["msg"]
    if kind == "extra_forbidden":
        loc = [part for part in err["loc"] if isinstance(part, (str, int))]
        allowed = sorted(_keys_at(loc[:-1]) - {str(loc[-1])}) if loc else []  # never the key just refused
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.75) if loc else []
        if close:
            return f"unknown key (did you mean {close[0]!r}? `subsetctl schema` lists the keys)"
        return "unknown key (check its spelling; `subsetctl schema` lists the keys)"
    if kind == "missing":
        return "required key is missing"
    if isinstance(value, _BooleanForNumber):
        return (f"expected a number, got the boolean {value!r} (YAML reads true/false, yes/no "
                "and on/off as booleans)")
    if kind == "union_tag_invalid":  # `type: json` on a loader
        tag, expected = err["ctx"]["tag"], [t.strip(" '") for t in err["ctx"]["expected_tags"].split(",")]
        close = difflib.get_close_matches(tag.lower(), expected, n=1, cutoff=0.5)  # JSONL -> jsonl
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        plugin = "; a loader from a plugin is `type: plugin` with its `name`" if "plugin" in expected else ""
        return f"unknown loader type {tag!r}{hint}. The types are {', '.join(expected)}{plugin}."
    if kind == "union_tag_not_found":
        types = ("jsonl, csv or parquet" if "source_files" in err["loc"]
                 else "jsonl, csv, parquet, huggingface, reasoning_gym, evals or plugin")
        return f"the loader needs a `type` ({types})"
    if kind in ("model_type", "dict_type", "model_attributes_type"):  # the last: a loader (a tagged union)
        return f"expected a mapping of keys (key: value), got {_describe_value(value)}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected a whole number, got {_describe_value(value)}"
    if kind in ("float_parsing", "float_type"):
        return f"expected a number, got {_describe_value(value)}"
    if kind == "string_type":  # `name: 2023`, `name: yes`: YAML read a number or a boolean
        if isinstance(value, bool):
            return (f"expected text, got the boolean {str(value).lower()} (YAML reads unquoted true/false, "
                    "yes/no and on/off as booleans: quote the value to keep it text)")
        if isinstance(value, (int, float)):
            return (f"expected text, got the number {value!r} (YAML reads unquoted numbers as numbers: quote "
                    f'it to keep it text, e.g. "{value}")')
        return f"expected text, got {_describe_value(value)}"
    if kind == "list_type":  # `search.strategies=exhaustive`
        return (f"expected a list, got {_describe_value(value)} (in YAML `[a, b]`, or one `- item` per "
                "line)")
    if kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == NAME_PATTERN:
        hint = ""
        if isinstance(value, str) and not value.isascii():  # 'café' is letters, but not ASCII ones
            folded = re.sub(r"[^A-Za-z0-9_.\-]", "_", _ascii_form(value)).lstrip("_.-")[:64]
            hint = "; the letters must be ASCII: no accents, other scripts or emoji" + (
                f" (e.g. {folded!r})" if re.fullmatch(NAME_PATTERN, folded) else "")
        return (f"{value!r} is not a valid name: use letters, digits, '_', '.' and '-' (no spaces or '/'), "
                f"starting with a letter or digit, at most 64 characters{hint}")
    return message.removeprefix("Value error, ")


def _keys_at(path: list[str | int]) -> set[str]:
    """The keys the spec allows in the mapping at ``path`` (a pydantic error location:
    keys, list indices and union member tags), for "did you mean"; empty if unknown."""
    models: list[Any] = [Spec]
    for part in path:
        found: list[Any] = []
        for model in models:
            if isinstance(part, int):  # a list item: the list's item type is already in hand
                found.append(model)
            elif isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
                found.extend(_models_in(model.model_fields[part].annotation))
            elif isinstance(model, type) and issubclass(model, BaseModel) and _tagged(model, part):
                found.append(model)  # a union member's tag (e.g. "jsonl"): that member only
        models = found
    return {key for model in models if isinstance(model, type) and issubclass(model, BaseModel)
            for key in model.model_fields}


def _tagged(model: type[BaseModel], tag: str | int) -> bool:
    """Whether ``tag`` is the ``type`` of the union member ``model`` (a loader's "jsonl")."""
    field_info = model.model_fields.get("type")
    return field_info is not None and tag in get_args(field_info.annotation)


def _models_in(annotation: Any) -> list[Any]:
    """The pydantic models an annotation may hold (through Optional, lists, dicts, unions
    and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _describe_value(value: Any) -> str:
    """``'a.jsonl'`` -> "the text 'a.jsonl'": what a wrong value was read as."""
    kinds = {str: "the text", list: "a list", dict: "a mapping", type(None): "nothing (null)",
             bool: "the boolean", int: "the number", float: "the number"}
    word = kinds.get(type(value), f"the {type(value).__name__}")
    return word if value is None else f"{word} {value!r}" if len(repr(value)) <= 60 else word


def read_yaml(path: Path) -> tuple[dict[str, Any], str]:
    """Read a spec file with the safe loader: its mapping and its text (for the lines of
    keys); errors name the file and line."""
    try:
        raw_bytes = path.read_bytes()
    except FileNotFoundError:
        raise SpecFileError(path, "no such spec file. Create one with `subsetctl init DIR`.") from None
    except IsADirectoryError:
        raise SpecError(f"{path} is a directory; give the spec file (usually {SPEC_FILENAME}).") from None
    except OSError as exc:
        raise SpecFileError(path, f"cannot read the spec file: {exc.strerror}.") from None
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        from subsetctl.data.loaders import utf16_note  # (the data loaders import this module)

        raise SpecFileError(path, f"the spec is not valid UTF-8 (byte {exc.start}{utf16_note(raw_bytes[:2])}). "
                                  "Save it as UTF-8.", raw_bytes.count(b"\n", 0, exc.start) + 1) from None
    if "\x00" in text:  # valid UTF-8, which YAML refuses as "unacceptable character #x0000"
        at = text.index("\x00")
        raise SpecFileError(path, f"the spec has NUL bytes (the first at byte {len(text[:at].encode())}), as UTF-16 "
                                  "text without a byte-order mark has, or a file that is not text. Save it as "
                                  "UTF-8.", text.count("\n", 0, at) + 1)
    try:
        loader = _UniqueKeyLoader(text)
        try:
            root = loader.get_single_node()
            if root is not None and _expanded_size(root) > _MAX_ALIAS_EXPANSION:
                raise SpecFileError(
                    path, f"its aliases (*name) repeat what they refer to into more than {_MAX_ALIAS_EXPANSION:,} "
                    "values, far more than any spec holds (nested aliases grow exponentially; an alias inside "
                    "its own anchor repeats without end). Use each anchor only where it is needed.")
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except _DuplicateKeyError as exc:
        raise SpecFileError(
            path, f"key {exc.key_path!r} appears twice in one mapping (lines {exc.first_line} and {exc.line}); "
            "YAML would silently keep only the last one. Merge the two into one.", exc.line) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "'\\t'" in problem:  # "found character '\t' that cannot start any token"
            problem += " (YAML does not allow tabs for indentation: indent with spaces)"
        raise SpecFileError(path, f"malformed YAML: {problem}. Fix the syntax and retry.",
                            mark.line + 1 if mark is not None else None) from None
    except RecursionError:
        raise SpecFileError(path, "the YAML is nested too deeply to be a spec. Fix the file and retry.") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecFileError(
            path, "the spec must be a YAML mapping of keys (project, model, target, "
            f"sources, ...), not a {type(data).__name__}."
        )
    return data, text


_MAX_ALIAS_EXPANSION = 1_000_000  # values a spec's aliases may add beyond those written


def _expanded_size(root: yaml.Node) -> int:
    """How many values the aliases of the document at ``root`` add beyond the nodes written:
    an alias is the node it refers to, so a few lines of nested aliases (a "billion laughs")
    stand for billions of values that every walk over the spec would visit. Counted without
    visiting them: each node's size once. An alias inside what it refers to (``a: &a [*a]``)
    repeats it without end: it counts as over any limit."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) not in sizes:
            sizes[id(node)] = _MAX_ALIAS_EXPANSION + 1  # until counted: met again inside itself, a cycle
            children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                        else node.value if isinstance(node, yaml.SequenceNode) else [])
            sizes[id(node)] = 1 + sum(size(child) for child in children)
        return sizes[id(node)]

    return size(root) - len(sizes)


class _DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key_path: str, line: int, first_line: int) -> None:
        super().__init__(f"duplicate key {key_path}")
        self.key_path, self.line, self.first_line = key_path, line, first_line


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, except that a key given twice in one mapping is an error (plain
    YAML keeps the last one, so half of a spec could vanish without a word). Merge keys
    (``<<: *base``) are YAML's own: the keys they bring in may be given again beside them."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self._check_unique(node)
        flat = yaml.MappingNode(node.tag, self._merged_pairs(node), node.start_mark, node.end_mark,
                                node.flow_style)
        return yaml.constructor.BaseConstructor.construct_mapping(self, flat, deep=deep)

    def _check_unique(self, node: yaml.MappingNode) -> None:
        """Refuse a key given twice among ``node``'s own keys (as Python compares them: 1,
        1.0 and true are one key, 1 and "1" two; ``~`` and ``null`` are both None)."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:  # no value of its own: merged below
                continue
            if key_node.tag == "tag:yaml.org,2002:value":  # a plain `=` key: text, as in PyYAML
                key_node.tag = "tag:yaml.org,2002:str"
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKeyError("null" if key is None else str(key), line, seen[key])
            except TypeError:  # unhashable: the constructor refuses it
                continue
            seen[key] = line

    def _merged_pairs(self, node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
        """``node``'s pairs with its merges (``<<``) flattened in, as YAML merges: its own
        keys win, then the first mapping named (of a list, or of several ``<<``), each merged
        mapping's own merges below its keys. One pair per key: the winner.

        Not PyYAML's ``flatten_mapping``: that one rewrites the anchored mappings it merges
        (so one read later held the keys merged into it as duplicates), and PyYAML 6.0.4
        keeps a key of the first merged mapping only when the key's text is one character
        (it compares the key strings by identity): the last merged mapping's value won for
        every longer key, so a spec held another value than the line its errors name."""
        flattened = self.__dict__.setdefault("_flattened", {})  # an anchored mapping merged often: once
        if id(node) in flattened:
            return flattened[id(node)]
        merges: list[yaml.Node] = []
        own: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:  # (each node here went through _check_unique first)
            if key_node.tag != _MERGE_TAG:
                own.append((key_node, value_node))
                continue
            bases = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for base in bases:
                if not isinstance(base, yaml.MappingNode):
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"expected a mapping or list of mappings for merging, but found {base.id}",
                        base.start_mark)
                self._check_unique(base)  # one written in place (`<<: {a: 1}`) is read nowhere else
            merges.extend(bases)
        winners: dict[Any, tuple[yaml.Node, yaml.Node]] = {}
        unhashable = []  # the constructor refuses these
        for pair in own + [pair for base in merges for pair in self._merged_pairs(base)]:
            try:
                winners.setdefault(self.construct_object(pair[0], deep=True), pair)
            except TypeError:
                unhashable.append(pair)
        kept = {id(pair) for pair in winners.values()}
        in_order = [pair for base in reversed(merges) for pair in self._merged_pairs(base)] + own
        flattened[id(node)] = [pair for pair in dict.fromkeys(in_order) if id(pair) in kept] + unhashable
        return flattened[id(node)]


def validate_data(data: dict[str, Any], file: str, text: str = "") -> tuple[Spec | None, list[SpecIssue]]:
    """Validate a raw spec dict; returns the Spec or the list of issues.

    ``source_files`` groups are expanded here, against the folder of ``file``: the Spec
    returned lists every source under ``sources`` (groups' after the listed ones) and has
    no groups left, so stages, fingerprints and resolved specs see plain sources."""
    lines = key_lines(text) if text else {}
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        return None, issues_from_validation(exc, file, lines, text)
    if not spec.source_files:
        return spec, []
    return expand_source_files(spec, Path(file).parent, file, lines)


def expand_source_files(
    spec: Spec, spec_dir: Path, file: str, lines: dict[tuple[Any, ...], int]
) -> tuple[Spec | None, list[SpecIssue]]:
    """``spec`` with its ``source_files`` groups turned into sources, one per matched file.

    Problems with an expanded source (a name taken twice, a file name that makes no valid
    source name) are reported under the group's key and line, naming the file."""
    issues: list[SpecIssue] = []
    entries = [s.model_dump(mode="json") for s in spec.sources]
    origin: dict[int, tuple[int, str]] = {}  # index in the expanded list -> (group, file)
    target_path = getattr(spec.target.loader, "path", None)
    target_file = (Path(spec_dir) / Path(target_path).expanduser()).resolve() if target_path else None
    for g, group in enumerate(spec.source_files):
        # the target's own file is never also a source (it is always included): a glob over the
        # data folder may well match it
        expanded = [e for e in group.expand(spec_dir)
                    if (Path(spec_dir) / Path(e["loader"]["path"]).expanduser()).resolve() != target_file]
        if not expanded:
            issues.append(SpecIssue(
                file=file, line=lines.get(("source_files", g, "files")), key=f"source_files[{g}].files",
                message=f"{group.files!r} matches no file (a relative pattern is taken in {Path(spec_dir).resolve()}; "
                        f"'**' matches subfolders; the target's own file is left out){unexpanded_variable_note(group.files)}. "
                        "Check the pattern or remove the group."))
        for entry in expanded:
            origin[len(entries)] = (g, entry["loader"]["path"])
            entries.append(entry)
    if issues:
        return None, issues
    data = spec.model_dump(mode="json", exclude={"source_files"})
    try:
        full = Spec.model_validate({**data, "sources": entries})
    except ValidationError as exc:
        return None, blame_source_files(issues_from_validation(exc, file, lines), origin, lines)
    full._source_origins = origin
    return full, []


def _line_of(group: tuple[Any, ...], suffix: str, lines: dict[tuple[Any, ...], int]) -> int | None:
    """The line of the deepest key of ``group`` + ``suffix`` (".loader.response_field") the
    YAML has: a group's problem points at the group's own setting when it is written."""
    try:
        parts = tuple(parse_key_path(suffix.lstrip("."))) if suffix.strip(".") else ()
    except SpecError:
        parts = ()
    return line_of_key(group + parts, lines)


def blame_source_files(
    issues: list[SpecIssue], origin: dict[int, tuple[int, str]], lines: dict[tuple[Any, ...], int]
) -> list[SpecIssue]:
    """Issues about a source expanded from a ``source_files`` group, keyed by the group and
    the file (``source_files[0] (data/a.jsonl).split``) at the group's line, instead of by
    an index ``sources[i]`` the spec file does not have. The same problem in many files of
    one group (a group setting that fits none of them) is listed once, with the count."""
    out: list[SpecIssue] = []
    same: dict[tuple[int, str, str], tuple[SpecIssue, list[str]]] = {}
    for issue in issues:
        match = re.match(r"sources\[(\d+)\]", issue.key)
        if match and int(match.group(1)) in origin:
            g, path = origin[int(match.group(1))]
            suffix = issue.key[match.end():]
            issue.key, issue.line = f"source_files[{g}] ({path}){suffix}", _line_of(("source_files", g), suffix, lines)
            if (g, suffix, issue.message) in same:
                same[(g, suffix, issue.message)][1].append(path)
                continue
            same[(g, suffix, issue.message)] = (issue, [path])
        for index, (g, path) in origin.items():  # messages that name sources[i] (duplicate names)
            if re.search(rf"sources\[{index}\](?!\d)", issue.message):
                where = f"source_files[{g}] ({path})"  # a function: a backslash in a file name is not an escape
                issue.message = re.sub(rf"sources\[{index}\](?!\d)", lambda _m, w=where: w, issue.message)
                if issue.key == "(top level)":
                    issue.key, issue.line = f"source_files[{g}] ({path})", lines.get(("source_files", g))
        out.append(issue)
    for (g, suffix, _), (issue, paths) in same.items():
        if len(paths) > 1:
            issue.key = f"source_files[{g}] ({paths[0]} and {len(paths) - 1} more files){suffix}"
    return out


def load_spec(path: Path, overrides: list[str] | None = None) -> Spec:
    """Load, override and validate a spec; raise SpecError with every issue found."""
    data, text = read_yaml(path)
    if overrides:
        data = apply_overrides(data, overrides)
    spec, issues = validate_data(data, str(path), text)
    if issues:
        raise SpecError(
            f"{path} is not a valid spec:\n" + "\n".join("  " + i.render() for i in issues)
        )
    assert spec is not None
    return spec


# -------------------------------------------------------------------- overrides

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_key_path(key: str) -> list[str | int]:
    """'sources[0].max_examples' -> ['sources', 0, 'max_examples']."""
    parts: list[str | int] = []
    pos = 0
    key = key.strip()
    while pos < len(key):
        if key[pos] == ".":
            if pos == 0 or pos + 1 >= len(key) or key[pos + 1] in ".[":  # "a..b", ".a", "a.", "a.[0]"
                raise SpecError(f"Override key {key!r} is not a dotted key path like a.b[0].c (an empty part).")
            pos += 1
            continue
        match = _TOKEN.match(key, pos)
        if not match:
            raise SpecError(f"Override key {key!r} is not a dotted key path like a.b[0].c.")
        parts.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    if not parts:
        raise SpecError(f"Override key {key!r} is empty.")
    return parts


def override_value(raw_value: str) -> Any:
    """The value of an override's ``=`` side, read as YAML (``32`` a number, ``[a, b]`` a
    list, ``null`` nothing), except that text YAML would cut at a ``#`` comment (``x #1``,
    ``#1``) is kept whole as a string: on a command line a ``#`` is part of the value, and
    dropping what follows it silently changed the name or path written. Text YAML cannot
    read is a string too, and so is an empty or blank value (``x=``, ``x=' '``), as
    written: YAML read blanks as null, so ``x=`` was text and ``x=' '`` nothing (``null``
    or ``~`` say nothing), and a space, a CSV delimiter, could not be given."""
    if not raw_value.strip():
        return raw_value
    try:
        value = yaml.safe_load(raw_value)
    except yaml.YAMLError:
        return raw_value
    except RecursionError:  # `[[[[...`: as a spec file nested so deeply, a user error, not an internal one
        shown = raw_value if len(raw_value) <= 40 else raw_value[:40] + "..."
        raise SpecError(f"Override value {shown!r} is nested too deeply to be a spec value.") from None
    return raw_value if "#" in raw_value and _yaml_drops_a_comment(raw_value) else value


def _yaml_drops_a_comment(text: str) -> bool:
    """Whether YAML reads part of ``text`` as a comment: a ``#`` outside every token. (Text
    left after the last token missed the comments of a block list or map, ``- a #b`` and
    ``a: b #c``, whose closing token comes at the very end, and of a flow list's inner lines.)"""
    spans = [(token.start_mark.index, token.end_mark.index) for token in yaml.scan(text)
             if token.end_mark.index > token.start_mark.index]
    return any(char == "#" and not any(start <= i < end for start, end in spans) for i, char in enumerate(text))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides (values parsed as YAML) to a copy of ``data``."""
    out = copy.deepcopy(data)
    for item in map(_typed_text, overrides):
        if "=" not in item:
            raise SpecError(f"Override {item!r} must look like key=value (e.g. gradients.d=256).")
        key, raw_value = item.split("=", 1)
        value = override_value(raw_value)
        parts = parse_key_path(key)
        node: Any = out
        for i, part in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    raise SpecError(f"Override {item!r}: {format_path(tuple(parts[: i + 1]))} does not exist.")
                node = node[part]
            else:
                if not isinstance(node, dict):
                    raise SpecError(_not_a_mapping(item, parts[:i], node, part))
                if part not in node or node[part] is None:
                    if isinstance(nxt, int):
                        groups = (" This spec lists its sources as source_files groups: override a group's "
                                  "settings (source_files[0].max_examples=5), or list the source under sources."
                                  if i == 0 and part == "sources" and out.get("source_files") else "")
                        raise SpecError(f"Override {item!r}: {format_path(tuple(parts[: i + 1]))} does not "
                                        f"exist.{groups}")
                    node[part] = {}
                node = node[part]
        last = parts[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or last >= len(node):
                raise SpecError(f"Override {item!r}: {format_path(tuple(parts))} does not exist.")
            node[last] = value
        else:
            if not isinstance(node, dict):
                raise SpecError(_not_a_mapping(item, parts[:-1], node, last))
            node[last] = value
    return out


def _typed_text(item: str) -> str:
    """A command-line override as the text typed. Python decodes arguments with the file
    system encoding, so under LC_ALL=C (UTF-8 mode off) `project.name=café` arrives as escaped
    bytes (surrogates), which pydantic refused as "unable to parse raw data as a unicode
    string" and writing the spec's files refused (UnicodeEncodeError): they are read as UTF-8.
    Bytes that are not UTF-8 at all are refused here."""
    try:
        item.encode("utf-8")
        return item
    except UnicodeEncodeError:
        pass
    try:
        return os.fsencode(item).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        shown = printable(item)
        raise SpecError(f"Override {shown!r} is not valid UTF-8 text (the terminal sent other bytes, "
                        "shown as \ufffd). Type it again under a UTF-8 locale, or write the value into "
                        "the spec file.") from None


def _not_a_mapping(item: str, path: list[str | int], node: Any, part: str | int) -> str:
    """The error of an override whose key goes into something that is no mapping; for a
    list item written with a dot (``sources.0.max_examples``), how to write it."""
    where = format_path(tuple(path))
    if isinstance(node, list) and str(part).isdigit():
        return (f"Override {item!r}: {where} is a list, not a mapping: name an item with brackets, "
                f"{where}[{part}] (e.g. sources[0].max_examples=50).")
    return f"Override {item!r}: {where} is not a mapping."


def override_keys(overrides: list[str]) -> list[tuple[str, str]]:
    """``(key path, override)`` for each well-formed ``key=value`` override, in order
    (``sources[0].max_examples=3`` -> ``("sources[0].max_examples", ...)``)."""
    keys = []
    for item in overrides:
        try:
            keys.append((format_path(tuple(parse_key_path(str(item).split("=", 1)[0]))), str(item)))
        except SpecError:
            continue
    return keys


def overrides_under(overrides: list[str], keys: list[str]) -> list[str]:
    """The ``overrides`` that set one of ``keys`` (spec key paths, or `plan`'s
    ``sources: ...`` description of changed sources) or a key above or below one: a
    ``source_files`` override counts for ``sources``, which that group expands into."""
    return [item for key, item in override_keys(overrides)
            if any(same_branch(key, k) or (k.split(":", 1)[0] == "sources"
                                           and key.startswith(("sources", "source_files")))
                   for k in keys)]


def attribute_overrides(issues: list[SpecIssue], overrides: list[str]) -> list[SpecIssue]:
    """Point issues under an overridden key at the command-line override that set it.

    Without this, ``run . estimate.lam=-1`` would be reported at the line of the file's
    own ``lam:``, which holds a valid value; the user would look in the wrong place. An
    issue is attributed when its key is the override's, or one lies under the other."""
    blamed = override_keys(overrides)
    out = []
    for issue in issues:
        plain_key = re.sub(r"^(source_files\[\d+\]) \(.*\)(?=[.\[]|$)", r"\1", issue.key)  # a group's file named in it
        # a whole-spec check names the sources whose names it concerns (a duplicate name: both
        # of them): an override of such a name (or of the whole source) made it, not one of
        # another of their keys (`sources[0].max_examples=3`)
        named = [plain_key, *(f"{k}.name" for k in re.findall(r"sources\[\d+\]", issue.message))]
        for key, item in reversed(blamed):  # the last override of a key is the one in effect
            if any(same_branch(k, key) for k in named) or _selects_meaning_of(key, plain_key):
                issue = issue.model_copy(update={
                    "line": None, "message": f"{issue.message} (set on the command line: {item})"})
                break
        out.append(issue)
    return out


def _selects_meaning_of(override: str, key: str) -> bool:
    """Whether the override sets what decides ``key``'s meaning: a strategy's name decides
    which params are valid, a loader's type which options are, so an override
    ``search.strategies[3].name=random`` is what made its ``params`` wrong. (Other
    ``name`` keys, a source's or a dataset configuration's, decide nothing beside them.)"""
    selects = re.fullmatch(r"(search\.strategies\[\d+\])\.name|(.*\.loader)\.type", override)
    if selects is None:
        return False
    parent = selects.group(1) or selects.group(2)
    return key.startswith(parent + ".")


def same_branch(a: str, b: str) -> bool:
    """Whether key paths ``a`` and ``b`` are equal or one lies under the other (an
    override ``foo.bar=1`` makes the unknown key ``foo``)."""
    return a == b or any(long.startswith((short + ".", short + "[")) for short, long in ((a, b), (b, a)))


#: Settings that change how a stage runs but not what it produces: fingerprints and cache
#: keys count them at their defaults, so changing one re-runs nothing. (At the default,
#: not left out, so projects computed before a setting was listed here stay up to date.)
RESULT_NEUTRAL: dict[str, tuple[str, ...]] = {
    # the projection is the same bit for bit under any budget (each unit of the matrix is
    # its own matmul, whatever a block holds)
    "gradients": ("memory_budget_mb",),
    # a resumable checkpoint's spacing: a resumed run reproduces an uninterrupted one
    "meta_init": ("checkpoint_every",),
    "finetune": ("checkpoint_every",),
}


def fingerprint_dump(spec: Spec) -> dict[str, Any]:
    """The spec as JSON for fingerprints and cache keys: the settings of
    :data:`RESULT_NEUTRAL` at their defaults, and ``model.num_labels`` at its default for
    a causal LM, which ignores it."""
    return neutralized(spec.model_dump(mode="json"), spec.model.kind)


def neutralized(dumped: dict[str, Any], kind: str) -> dict[str, Any]:
    """A copy of (part of) a dumped spec with the :func:`fingerprint_dump` rules applied
    to the sections it holds (a stage's recorded spec slice, too)."""
    defaults = {section: model().model_dump(mode="json") for section, model in _SECTION_MODELS.items()}  # 256.0
    defaults["model"] = {"num_labels": ModelSpec.model_fields["num_labels"].default}
    return _with_neutral_settings(dumped, kind, defaults)


def with_neutral_values_of(sliced: dict[str, Any], recorded: Any, kind: str) -> dict[str, Any]:
    """``sliced`` (a stage's raw spec slice) with the settings :func:`neutralized` resets
    taken from ``recorded`` (the slice a run recorded): equal to ``recorded`` when only
    those settings differ."""
    return _with_neutral_settings(sliced, kind, recorded) if isinstance(recorded, dict) else sliced


def _with_neutral_settings(dumped: dict[str, Any], kind: str, values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``dumped`` whose result-neutral settings (:data:`RESULT_NEUTRAL`, and
    ``model.num_labels`` of a causal LM) are those ``values`` holds, section by section."""
    neutral = {**RESULT_NEUTRAL, **({"model": ("num_labels",)} if kind == "causal-lm" else {})}
    out = dict(dumped)
    for section, keys in neutral.items():
        if isinstance(out.get(section), dict) and isinstance(values.get(section), dict):
            out[section] = {**out[section], **{k: values[section][k] for k in keys if k in values[section]}}
    return out


#: the model class of each section :data:`RESULT_NEUTRAL` names, for its defaults
_SECTION_MODELS: dict[str, type[BaseModel]] = {
    section: Spec.model_fields[section].annotation for section in RESULT_NEUTRAL  # type: ignore[misc]
}
