"""The spec's pydantic v2 models: the single source of truth of a run and of the JSON
schema `subsetctl schema` prints (numbers written as text accepted, booleans refused
as numbers).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import types
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    StrictInt,
    StrictStr,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue

from subsetctl.globbing import glob_without_loops
from subsetctl.user_paths import expand_home

SPEC_FILENAME = "subsetctl.yaml"

#: the built-in names of the registries a spec names from, which editors offer as the keys'
#: ``examples`` (not an enum: a plugin may register more); the registries import torch, so
#: they are written out here, and a test keeps them equal to the registries'
BUILTIN_PACKAGED_MODELS = ("smollm2-135m-instruct", "all-minilm-l6-v2")
BUILTIN_PROJECTORS = ("rademacher", "gaussian")
BUILTIN_ESTIMATORS = ("fast", "exact", "linear_sgd", "true_finetune")
BUILTIN_STRATEGIES = ("random_ensemble", "surrogate", "forward", "backward", "exhaustive", "gradient_similarity",
                      "representation_similarity", "random", "all", "target_only")

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
#: a boolean written as text, as validate takes it (pydantic's lax mode, any case): YAML 1.1,
#: and so PyYAML, reads ``enabled: yes`` (``no``, ``on``, ``off``) as a boolean, where an
#: editor's YAML 1.2 reads the text "yes"
QUOTED_BOOLEAN_PATTERN = r"^([01]|[Tt]([Rr][Uu][Ee])?|[Ff]([Aa][Ll][Ss][Ee])?|[Yy]([Ee][Ss])?|[Nn][Oo]?|[Oo]([Nn]|[Ff][Ff]))$"


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


#: the earlier result sets a stage keeps with ``project.keep_previous: true``
DEFAULT_PREVIOUS_SETS = 3


def _without_unset(dumped: Any, keys: tuple[str, ...]) -> Any:
    """``dumped`` (a model's dump) without those of ``keys`` it holds as None: options added
    after projects were computed, left out while unset, so that the spec's dumps (which feed
    fingerprints and source keys) stay as they were before the options existed."""
    if isinstance(dumped, dict):
        for key in keys:
            if key in dumped and dumped[key] is None:
                del dumped[key]
    return dumped


class ProjectSpec(StrictModel):
    name: str = Field("subsetctl-project", description="Project name, shown in reports.")
    # torch takes seeds below 2**64, and fine-tunes add their seed index (`finetune.seeds` at most 100,
    # `verify.repeats` 10): 2**63 and above ran, so projects seeded there stay valid
    seed: int = Field(0, ge=0, le=2**64 - 100, description="Global seed; stages derive their seeds from it.")
    keep_previous: bool | Annotated[int, Field(ge=0, le=100)] = Field(
        True,
        description="How many earlier result sets each stage keeps (under .subsetctl/.previous, by their inputs) "
        "when runs with other inputs replace them, so that going back to any of those inputs (gradients.d: 32, "
        "then 16, then 8, then 32 again) puts them back instead of computing them again: a number, the oldest "
        f"dropped first; true is {DEFAULT_PREVIOUS_SETS}, false (or 0) keeps none and deletes those kept when "
        "`run` next starts. Each set costs up to one more copy of the stage's files on disk (the gradient store "
        "can take gigabytes; `plan` says how much they take).",
    )
    keep_previous_gb: float | None = Field(
        None,
        gt=0,
        description="Most disk the earlier result sets kept under .subsetctl/.previous (keep_previous) may take: "
        "after each `run`, the sets kept least recently, of any stage, are deleted until they fit (a file "
        "linked into the current results counts nothing). Unset: no limit but keep_previous's count.",
    )
    cache_limit_gb: float | None = Field(
        None,
        gt=0,
        description="Most disk the caches under .subsetctl/cache (finished fine-tunes, verify runs, test "
        "results, subset estimates) may take: after each `run`, the entries used least recently are "
        "deleted until they fit (never those this run used). A deleted entry is only computed again if "
        "asked for. Unset: no limit (`plan` says how much they take).",
    )

    @field_validator("keep_previous", mode="before")
    @classmethod
    def _true_false_or_a_count(cls, value: Any) -> Any:
        """One clear problem for a value that is neither a boolean nor a count (pydantic
        named one per member of the union, "keep_previous.bool: Input should be a valid
        boolean" for -1); a count written as text ("1") is that count, not true. A boolean
        written as text (``"yes"``, ``"off"``: :data:`QUOTED_BOOLEAN_PATTERN`) is that boolean, as
        every other boolean key takes it and the JSON schema does: an editor's YAML 1.2 reads
        ``keep_previous: yes`` as that text, so the schema cannot refuse it."""
        if isinstance(value, str) and re.fullmatch(r"\s*[0-9]+\s*", value):
            value = int(value)
        elif isinstance(value, str) and re.fullmatch(QUOTED_BOOLEAN_PATTERN, value):
            value = value.lower() in ("t", "true", "y", "yes", "on")
        if isinstance(value, bool) or (isinstance(value, int) and 0 <= value <= 100):
            return value
        raise ValueError(f"keep_previous must be true, false or how many earlier result sets each stage keeps, "
                         f"a whole number from 0 to 100 (got {value!r})")

    @model_serializer(mode="wrap")
    def _dump_without_unset_keep_previous_gb(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The dump without ``keep_previous_gb`` when it is unset (:func:`_without_unset`)."""
        return _without_unset(handler(self), ("keep_previous_gb",))

    @property
    def sets_to_keep(self) -> int:
        """How many earlier result sets each stage keeps (``keep_previous``: a number, or true
        for :data:`DEFAULT_PREVIOUS_SETS`, false for none). (Not named like
        :meth:`subsetctl.project.Project.previous_sets`, the folders of those kept.)"""
        if isinstance(self.keep_previous, bool):
            return DEFAULT_PREVIOUS_SETS if self.keep_previous else 0
        return self.keep_previous

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
        "Hugging Face hub id (read from the local Hugging Face cache where the hub cannot be reached).",
        examples=[*BUILTIN_PACKAGED_MODELS, "TinyLlama/TinyLlama-1.1B-Chat-v1.0"],
    )
    kind: Literal["causal-lm", "classifier"] = Field(
        "causal-lm", description="causal-lm: prompt -> response; classifier: text -> label."
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description=("Weights dtype, used as set on every device: bfloat16 or float16 for a GPU; on a "
                                "CPU float32 (float16 there is many times slower, as is bfloat16 without bfloat16 "
                                "instructions: validate warns).")
    )
    max_length: int = Field(
        128, ge=8, le=32768, description=("Max tokens per example. A causal LM's prompt is cut from the left (its "
                                  "answer is kept whole when it fits); a classifier's text is cut at its end. "
                                  "meta_init, gradients and evaluate warn, by source, about what was cut; "
                                  "report.md's 'Token lengths by source' table shows each source's lengths. "
                                  "Past the model's positions: an error (learned positions) or a warning "
                                  "(rotary: past max_position_embeddings, or as far as its rope_scaling stretches them).")
    )
    num_labels: int | None = Field(
        None, ge=2, description="Classifier only: number of classes (default: from the data)."
    )
    revision: str | None = Field(
        None, min_length=1, pattern=r"^\S+$",
        description="Hub ids only: the revision to load, a commit sha or a branch or tag name (resolved through "
        "the local Hugging Face cache's refs where the hub cannot be reached). Part of the model stages' inputs "
        "when set. Unset: the cache's main (offline) or the hub's latest.",
    )
    trust_remote_code: bool = Field(
        False, description="Allow model code from the model folder/hub. Off unless you trust it."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto = CUDA when available, else CPU."
    )
    lora: LoraSpec = Field(default_factory=LoraSpec, description="LoRA adapter settings.")

    @model_serializer(mode="wrap")
    def _dump_without_unset_revision(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The dump without ``revision`` when it is unset (:func:`_without_unset`): the model
        stages of a project computed before it existed stay up to date."""
        return _without_unset(handler(self), ("revision",))


# ------------------------------------------------------------------------------ data


#: ``prompt_field``: one column's name, or a list of one or more distinct column names, none
#: empty (checked by ``LoaderBase._prompt_columns``). A value is validated as the one or the
#: other by its type, so that a wrong one is one issue (a number: "expected text", as before
#: lists were allowed), not one per member of the union; the tags are left out of an issue's
#: key (:func:`subsetctl.spec.issues._clean_loc`)
PromptField = Annotated[
    Annotated[str, Field(min_length=1), Tag("one-column")]
    | Annotated[list[Annotated[str, Field(min_length=1)]],
                Field(json_schema_extra={"minItems": 1, "uniqueItems": True}), Tag("column-list")],
    Discriminator(lambda value: "column-list" if isinstance(value, list) else "one-column"),
]


class PlainText(BaseModel):
    """The ``text_field`` option of the file loaders: a causal LM's source of plain text (a
    corpus of documents, code files, a pretraining shard), each row's text trained on whole,
    with no prompt (see :class:`subsetctl.data.loaders.text.TextColumns`). Its field comes
    before the loader's own (a base of :class:`LoaderBase`), so that the prompt's and the
    response's validators below see it."""

    text_field: str | None = Field(
        None, min_length=1,
        description="Causal-lm sources only: column holding plain text (a document, a code file) to train on "
        "whole, loss on every token and no prompt, instead of prompt_field and response_field. A text longer "
        "than model.max_length is cut at its end, as a long answer is. Not for a classifier, nor for the "
        "target (its test metric scores answers generated for prompts).",
    )

    @field_validator("text_field")
    @classmethod
    def _text_or_chats(cls, value: Any, info: ValidationInfo) -> Any:
        """A text is no chat: ``text_field`` beside ``messages_field`` would leave one unread."""
        messages_field = info.data.get("messages_field")
        if value is not None and messages_field is not None:
            raise ValueError(f"cannot be combined with messages_field ({messages_field!r}): a row is either a chat "
                             "or a text trained on whole. Remove one of them")
        return value

    @field_validator("prompt_field", "response_field", check_fields=False)
    @classmethod
    def _text_or_columns(cls, value: Any, info: ValidationInfo) -> Any:
        """A text trained on whole has no prompt and no response column: one written next
        to ``text_field`` would be ignored. (Run for a value written only, not a default.)"""
        text_field = info.data.get("text_field")
        if text_field is not None:
            raise ValueError(
                f"cannot be combined with text_field ({text_field!r}): each row's text is trained on whole, with "
                f"no prompt. Remove {info.field_name}, or remove text_field to read a prompt and a response")
        return value


class LoaderBase(StrictModel, PlainText):
    """Options shared by file loaders: which columns hold the prompt and the answer."""

    prompt_field: PromptField = Field(
        "prompt",
        description="Column holding the prompt / input text (a classifier's text). Or a list of columns (Alpaca's "
        "[instruction, input], NLI's [premise, hypothesis]): the prompt is their values that are not missing, "
        "null or blank, in the order listed, joined by a blank line; a row where every one is missing or null is "
        "an error, as a missing prompt is.",
    )
    response_field: str | None = Field(
        "response", description="Column holding the gold response (causal-lm)."
    )
    label_field: str | None = Field(
        None, description="Column holding the class label (classifier)."
    )

    @field_validator("prompt_field")
    @classmethod
    def _prompt_columns(cls, value: Any) -> Any:
        """A list ``prompt_field`` names at least one column, and each column once (a
        column named twice would be its text twice over in every prompt)."""
        if isinstance(value, list):
            if not value:
                raise ValueError("an empty list names no column: give a column name, or a list of column names")
            twice = [name for i, name in enumerate(value) if name in value[:i]]
            if twice:
                raise ValueError(f"names {', '.join(repr(n) for n in dict.fromkeys(twice))} more than once; "
                                 "list each column once")
        return value

    @field_validator("response_field", "label_field")
    @classmethod
    def _answer_not_the_prompt(cls, value: Any, info: ValidationInfo) -> Any:
        """The answer's column is not one the prompt is read from: every answer would be
        (part of) its own prompt, which a fine-tune learns to copy (no warning said so)."""
        prompt = info.data.get("prompt_field")
        if value is not None and value in ([prompt] if isinstance(prompt, str) else prompt or []):
            raise ValueError(f"names {value!r}, a column prompt_field reads too: every answer would be its own "
                             f"prompt's text; set {info.field_name} to the column holding the answer")
        return value

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The options as written: without ``messages_field``, ``text_field`` and a Parquet
        loader's ``where`` when they are unset (so that a source's dump, its resolved spec and its fingerprint stay as
        they were before the options existed), and without the ``prompt_field`` and
        ``response_field`` one of them replaces when it is set (so that a dump read again,
        as ``source_files`` groups are, is not taken as setting them). One serializer for
        both (pydantic uses one a model), here, since CSV loaders have no chats."""
        dumped: dict[str, Any] = _without_unset(handler(self), ("where",))  # (a file loader's row filter)
        replaced = False
        for option in ("messages_field", "text_field"):
            if dumped.get(option) is None:
                dumped.pop(option, None)
            else:
                replaced = True
        if replaced:
            dumped.pop("prompt_field", None)
            dumped.pop("response_field", None)
        return dumped


class ChatMessages(BaseModel):
    """The ``messages_field`` option of the loaders whose cells can hold a list (JSON Lines,
    Parquet, Hugging Face datasets; not CSV, whose cells are text): a causal LM's example
    read from a chat, one conversation per row (see
    :mod:`subsetctl.data.loaders.chat`)."""

    messages_field: str | None = Field(
        None, min_length=1,
        description="Causal-lm only: column holding each row's chat, a list of messages ({role, content}, or "
        "ShareGPT's {from, value}), instead of prompt_field and response_field. The last message is the "
        "gold response (the assistant's, or gpt's); the user message before it is the prompt; the messages "
        "before that (system messages, earlier turns) are its context, rendered with the model's chat template "
        "before it. Rows that are no such chat (not ending with a user message and the answer, turns that do "
        "not alternate, content that is not text) are left out with a warning.",
    )

    @field_validator("prompt_field", "response_field", check_fields=False)
    @classmethod
    def _messages_or_columns(cls, value: Any, info: ValidationInfo) -> Any:
        """A chat holds both the prompt and the response: a ``prompt_field`` or
        ``response_field`` written next to ``messages_field`` would be ignored. (Run for a
        value written only, not a default; ``messages_field`` is validated first, being
        this class's field, which comes before the loader's own.)"""
        messages_field = info.data.get("messages_field")
        if messages_field is not None:
            raise ValueError(
                f"cannot be combined with messages_field ({messages_field!r}): the prompt and the response are "
                f"read from each row's messages. Remove {info.field_name}, or remove messages_field to read "
                "them from their own columns"
            )
        return value

#: a value a loader's ``where`` picks rows by: text or a whole number, as the column
#: holds it (strict: the YAML ``1`` and ``"1"`` are different values, as in the file)
RowValue = Annotated[StrictStr | StrictInt, Field(union_mode="left_to_right")]


def where_text(where: dict[str, str | int]) -> str:
    """A loader's ``where`` as messages name its rows: ``(task = 'cola')``."""
    (column, value), = where.items()
    return f"({column} = {value!r})"


def _where_field() -> Any:
    """The ``where`` option of the loaders of one local file (JSON Lines, CSV, Parquet),
    declared last in each (after ``path``), where the Parquet loader's was: the resolved
    spec lists a loader's keys as before."""
    return Field(
        None, json_schema_extra={"minProperties": 1, "maxProperties": 1},
        description="Read only the rows whose column holds this value, as {column: value} (one column): one "
        "task of a file holding many. A source_files group with `by` writes it for each of its sources. A CSV "
        "cell is text: write a number as text ('3').",
    )


class RowPicker(BaseModel):
    """What checks a file loader's ``where`` (:func:`_where_field`, declared by each loader)."""

    @field_validator("where", check_fields=False)
    @classmethod
    def _one_column(cls, value: Any) -> Any:
        """``where`` names one column (rows are picked by one column's value)."""
        if value is not None and len(value) != 1:
            raise ValueError(f"names {len(value)} columns; give one column and its value, e.g. {{task: cola}}")
        return value


class JsonlLoader(LoaderBase, ChatMessages, RowPicker):
    """A local JSON Lines file, one example per line."""

    type: Literal["jsonl"] = Field(description="Loader type: a local JSON Lines file.")
    path: str = Field(description="Path to the .jsonl file (UTF-8; may be gzip-compressed, e.g. .jsonl.gz), "
                                  "relative to the spec file.")
    where: dict[str, RowValue] | None = _where_field()


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


class CsvLoader(LoaderBase, Delimited, RowPicker):
    """A local CSV file with a header row."""

    type: Literal["csv"] = Field(description="Loader type: a local CSV file with a header row.")
    path: str = Field(description="Path to the .csv file (UTF-8; may be gzip-compressed, e.g. .csv.gz), "
                                  "relative to the spec file.")
    where: dict[str, RowValue] | None = _where_field()


class ParquetLoader(LoaderBase, ChatMessages, RowPicker):
    """A local Parquet file."""

    type: Literal["parquet"] = Field(description="Loader type: a local Parquet file.")
    path: str = Field(description="Path to the .parquet file, relative to the spec file.")
    where: dict[str, RowValue] | None = _where_field()


def _one_file_schema(schema: dict[str, Any]) -> None:
    """``data_files``' schema: a list, or one file as text (the validator makes it a list)."""
    schema["anyOf"].insert(1, {"type": "string"})


class HuggingFaceLoader(LoaderBase, ChatMessages):
    """Any dataset `datasets.load_dataset` can read: a hub id or a local folder/script."""

    type: Literal["huggingface"] = Field(description="Loader type: datasets.load_dataset on a hub id or a local folder.")
    path: str = Field(description="Hub dataset id or local path given to datasets.load_dataset.")
    name: str | None = Field(None, description="Dataset configuration name.")
    split: str = Field("train", description="Which split to read.")
    data_files: list[str] | None = Field(
        None, json_schema_extra=_one_file_schema,
        description="Explicit data files, if any: a list of files or glob patterns (one may be given as text).",
    )

    @field_validator("data_files", mode="before")
    @classmethod
    def _one_file(cls, value: Any) -> Any:
        """`data_files: "data/*.csv"`, as load_dataset takes it: a list of that one entry
        (so the resolved spec and the fingerprint are those of `data_files: [data/*.csv]`)."""
        if isinstance(value, dict):  # load_dataset's {split: files}: one split is read, so its files are given
            raise ValueError("a mapping of splits to files is not taken here: list the files of the one split "  # noqa: TRY004 - pydantic reports ValueErrors
                             "to read (`data_files: [data/train*.csv]`, which load_dataset reads as split 'train')")
        return [value] if isinstance(value, str) else value


def check_json_value(value: Any, where: str) -> None:
    """ValueError unless ``value`` (a loader's ``options`` or ``config``, named ``where``)
    is plain JSON: it is saved in the resolved spec and fingerprinted as JSON, and a YAML set
    (its order changes from run to run, so the data stage never stayed up to date), a date,
    or .inf/.nan (all written as null, so a change went unseen) would not round-trip."""
    import math

    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: key {key!r} is not text; JSON keys are strings")  # noqa: TRY004 - pydantic reports ValueErrors
            check_json_value(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_json_value(item, f"{where}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value} cannot be saved as JSON; give a finite number or text")
    elif not isinstance(value, str | int | float | bool | type(None)):
        raise ValueError(f"{where}: a {type(value).__name__} ({value!r}) cannot be saved as JSON; "
                         "use a list, a mapping, text or a number")


class ReasoningGymLoader(StrictModel):
    """A reasoning-gym procedural task generator (offline, seeded, with answer checkers)."""

    type: Literal["reasoning_gym"] = Field(description="Loader type: a reasoning-gym task generator.")
    task: str = Field(description="reasoning-gym dataset name, e.g. basic_arithmetic.")
    size: int = Field(100, ge=1, le=1_000_000, description="How many examples to generate.")
    seed: int | None = Field(None, ge=0, description="Generator seed (default: the source seed).")
    config: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword options for the generator."
    )

    @field_validator("config")
    @classmethod
    def _json_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The config is saved, fingerprinted and kept in each row's metadata as JSON (see
        :func:`check_json_value`)."""
        check_json_value(config, "config")
        return config


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
        """Options are saved in the resolved spec and fingerprinted as JSON (see
        :func:`check_json_value`)."""
        check_json_value(options, "options")
        return options


LoaderSpec = Annotated[
    JsonlLoader | CsvLoader | ParquetLoader | HuggingFaceLoader | ReasoningGymLoader | EvalsLoader | PluginLoader,
    Field(discriminator="type"),
]

SplitSize = Union[Annotated[int, Field(ge=0)], Annotated[float, Field(ge=0.0, le=1.0)]]  # noqa: UP007


def _listed_fractions(fractions: dict[str, float]) -> str:
    """``"validation 0.6 + test 0.5"``: split fractions as a split error lists them."""
    return " + ".join(f"{k} {v:g}" for k, v in fractions.items())


def _names_a_file(text: str) -> bool:
    """Whether a split size's text is a file's path (a folder in it, or a data file's
    extension) rather than a mistyped number (a fraction written ``1/4`` is one: it holds a
    "/" but names no file)."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d*)?\s*/\s*\d+(\.\d*)?", text):
        return False
    return "/" in text or "\\" in text or bool(
        re.search(r"\.(jsonl|json|csv|tsv|parquet|txt|gz|arrow)$", text, re.IGNORECASE))


#: for editors: validation or test rows with train left out are refused (train defaults to
#: the fraction 1.0, every row, so there are none left for them); a size written as text is
#: left to validate, as "0" is none
_SPLIT_WITHOUT_TRAIN_SCHEMA: dict[str, Any] = {
    "if": {"anyOf": [{"required": [name], "properties": {name: {"type": "number", "exclusiveMinimum": 0}}}
                     for name in ("validation", "test")]},
    "then": {"required": ["train"]},
}


class SplitSpec(StrictModel):
    """Split sizes: an int is a count, a float in [0, 1] a fraction of the examples."""

    model_config = ConfigDict(json_schema_extra=_SPLIT_WITHOUT_TRAIN_SCHEMA)

    train: SplitSize = Field(1.0, description="Training examples (count or fraction).")
    validation: SplitSize = Field(0, description="Validation examples (count or fraction).")
    test: SplitSize = Field(0, description="Held-out test examples (count or fraction).")

    @field_validator("train", "validation", "test", mode="before")
    @classmethod
    def _quoted_fraction(cls, value: Any) -> Any:
        """A quoted number with a decimal point or an exponent (``train: "1.0"``) is a fraction,
        as it is unquoted: pydantic read ``"1.0"`` as the whole number 1, so one row where every
        row was meant. A file named for a split (``test: data/test.jsonl``, a dataset that comes
        with its own test file) is refused saying how such a file is read instead
        (``target.test_loader``): "expected a number" said nothing of that."""
        if isinstance(value, str) and _names_a_file(value):
            raise ValueError(
                f"{value.strip()!r} names a file, but a split is a count or a fraction of the rows the loader "
                "reads, drawn by the seed; it takes no file. To evaluate on a test file of its own (a "
                "benchmark's official test set), give the target a test_loader, e.g. target.test_loader: "
                f"{{type: jsonl, path: {value.strip()}}} (or csv, parquet, huggingface with split: test), and "
                "leave split.test out: its rows are then the target's whole test split, in file order, and the "
                "loader's rows are split into train and validation only")
        if isinstance(value, str) and re.fullmatch(QUOTED_NUMBER_PATTERN, value) and re.search(r"[.eE]", value):
            try:
                return float(value.strip())
            except ValueError:  # (a spelling float() does not take: pydantic says what is wrong)
                return value
        return value

    @model_validator(mode="after")
    def _fractions_sum(self) -> SplitSpec:
        sizes = {"train": self.train, "validation": self.validation, "test": self.test}
        fractions = {k: v for k, v in sizes.items() if isinstance(v, float)}
        total = sum(fractions.values())
        if total > 1.0 + 1e-9:
            if "train" not in self.model_fields_set:  # the user wrote only validation and/or test
                given = {k: v for k, v in fractions.items() if k != "train"}
                others = total - 1.0
                raise ValueError(
                    f"train, not given, defaults to the fraction 1.0 (every example), so with "
                    f"{_listed_fractions(given)} the fractions add up to {total:g}, "
                    "more than 1.0; " + (f"give train too (e.g. train: {1.0 - others:g})" if others < 1.0 - 1e-9
                                         else "lower those and give train too")
                )
            raise ValueError(f"split fractions {_listed_fractions(fractions)} add up to {total:g}, more than 1.0 (every example); "
                             "lower them to add up to at most 1.0")
        counts = [k for k, v in sizes.items() if isinstance(v, int) and v > 0]
        if counts and abs(sum(fractions.values()) - 1.0) < 1e-9:
            if "train" not in self.model_fields_set:
                taken = "train, not given, defaults to the fraction 1.0, which already takes"
            else:
                taken = f"the fractions {_listed_fractions(fractions)} already take"
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
    label_map: dict[str, Annotated[str | None, WithJsonSchema({"type": ["string", "number", "boolean", "null"]})]] | None = (
        Field(
            None,
            description="Renames labels of these rows (a classifier), or answers (a causal LM: an answer that is a "
            "key, whole, becomes its value), each key a label as it is read (JSON 1, 1.0 and true read '1'; a CSV cell "
            "as written, stripped) and its value the class it becomes, e.g. the target's name for it: {0: negative, "
            "1: positive}; null drops the rows with that label (a 3-class source's neutral rows beside a 2-class "
            "target: {neutral: null}). Labels it does not name keep theirs. Classes are matched across the target and "
            "the sources by name, so a source labelled 0/1 beside a target labelled negative/positive needs this to "
            "teach the target's classes; a causal-lm source answering 0/1 likewise learns the target's words.",
        ))

    @field_validator("label_map", mode="before")
    @classmethod
    def _label_map_as_labels(cls, value: Any) -> Any:
        """Keys and values as the loaders read labels (YAML's ``0:`` key is the label
        '0', ``1.0`` is '1', ``true`` is '1'), so a map matches the labels it names; a value
        that is no class (blank, a list, an object) is refused; null (drop those rows) is kept;
        an empty map is none."""
        from subsetctl.data.loaders.common import label_to_text

        if not isinstance(value, dict):
            return value
        mapped: dict[str, str | None] = {}
        for key, name in value.items():
            if isinstance(key, (list, dict)) or key is None:
                raise ValueError(f"has the key {key!r}: each key is a label, as text or a number")
            if name is None:
                mapped[label_to_text(key)] = None  # its rows are dropped
                continue
            if not isinstance(name, (str, int, float)) or not label_to_text(name):
                raise ValueError(f"maps {key!r} to {name!r}, which is no class name: give each label the class it "
                                 "becomes, as text or a number (or null to drop its rows)")
            # (one label keyed twice, 2 and '2', takes the later: a command-line override's)
            mapped[label_to_text(key)] = label_to_text(name)
        return mapped or None  # an empty map renames nothing: unset, so it changes no key

    @model_validator(mode="after")
    def _label_map_not_for_plain_text(self) -> SourceSettings:
        """A ``label_map`` beside ``loader.text_field`` (a listed source's, a group's) would
        rename nothing: its rows have no answer and no label, each text being trained on whole
        (the data stage warned, source by source, to write the keys as the answers read)."""
        text_field = getattr(getattr(self, "loader", None), "text_field", None)
        if self.label_map and text_field is not None:
            raise ValueError(
                f"label_map cannot be combined with loader.text_field ({text_field!r}): label_map renames answers "
                "(a causal LM) or labels (a classifier), and a text trained on whole has neither. Remove label_map, "
                "or read a prompt and a response (prompt_field and response_field) instead of text_field")
        return self

    @model_serializer(mode="wrap")
    def _dump_without_unset_label_map(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The dump without ``label_map`` (and a target's ``test_loader``, a ``source_files``
        group's ``by``) when it is unset (:func:`_without_unset`)."""
        return _without_unset(handler(self), ("label_map", "test_loader", "by"))


class SourceSpec(SourceSettings):
    name: str = Field(description="Unique name of the source.", pattern=NAME_PATTERN)
    loader: LoaderSpec = Field(description="Where the examples come from.")


class JsonlFiles(LoaderBase, ChatMessages):
    """Each file is a JSON Lines file."""

    type: Literal["jsonl"] = Field(description="Loader type: a local JSON Lines file.")


class CsvFiles(LoaderBase, Delimited):
    """Each file is a CSV file with a header row."""

    type: Literal["csv"] = Field(description="Loader type: a local CSV file with a header row.")


class ParquetFiles(LoaderBase, ChatMessages):
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
    by: str | None = Field(
        None, min_length=1,
        description="A column naming each row's task (FLAN, Super-Natural-Instructions, P3 kept as one file; "
        "Parquet, JSON Lines or CSV). Each file then gives one source per distinct value of the column, named name_prefix + the "
        "value, reading only that value's rows (its loader's `where`); rows whose value is null or blank are "
        "left out with a warning.",
    )

    def matching_files(self, spec_dir: Path) -> list[Path]:
        """The files the glob matches, sorted: relative to ``spec_dir`` as written (``..``
        included), or absolute for an absolute pattern; hidden files are skipped."""
        matches = glob_without_loops(str(expand_home(self.files)), Path(spec_dir))
        return sorted(Path(m) for m in matches if (Path(spec_dir) / m).is_file())

    def source_name(self, relative: Path) -> str:
        """The source name of one matched file: prefix + its path below the glob's fixed
        leading folders (``data/sources`` for ``data/sources/**/*.jsonl``), without the
        extension (and a ``.gz`` after it), ``/`` as ``.``; characters a name cannot hold become ``_``."""
        fixed: list[str] = []
        for part in expand_home(self.files).parts[:-1]:
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
        return self._safe_name(stem, file_id)

    def value_source_name(self, value: str | int) -> str:
        """The source name of one value of the ``by`` column: prefix + the value, made
        name-safe as a file's name is (é -> e, other characters a name cannot hold -> ``_``;
        a value with no ASCII letter or digit -> ``value-<hash>``). Two values may make one
        name (``a b`` and ``a_b``): :func:`subsetctl.spec.reading.expand_source_files` refuses that."""
        text = unicodedata.normalize("NFC", str(value))
        value_id = hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        stem = _ascii_form(text)
        return self._safe_name(stem if re.search(r"[A-Za-z0-9]", stem) else f"value-{value_id}", value_id)

    def _safe_name(self, stem: str, unique_id: str) -> str:
        """Prefix + ``stem`` as a source name: characters a name cannot hold as ``_``, no
        leading ``_.-``, and a long one cut, ending in ``unique_id`` so that long names
        sharing their first characters stay distinct."""
        name = re.sub(r"[^A-Za-z0-9_.\-]", "_", self.name_prefix + stem).lstrip("_.-")
        if len(name) > 64:
            name = f"{name[:55]}-{unique_id}"
        return name

    def expand(self, spec_dir: Path) -> list[dict[str, Any]]:
        """One source entry (a dict ready for :class:`SourceSpec`) per matching file: the
        group's settings and loader options as written (unset ones left to their defaults,
        so that validate's warnings about settings written know which were)."""
        settings, loader = self._as_written()
        return [{"name": self.source_name(rel), "loader": {**loader, "path": rel.as_posix()}, **settings}
                for rel in self.matching_files(spec_dir)]

    def _as_written(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The group's settings and its loader's options as written, for each source's entry."""
        settings = self.model_dump(mode="json", include={"split", "max_examples", "seed", "corrupt", "label_map"},
                                   exclude_unset=True)
        return settings, self.loader.model_dump(mode="json", exclude_unset=True)

    def expand_by_values(self, rel: Path, values: list[str | int]) -> list[dict[str, Any]]:
        """With ``by``: one source entry per value of the column in matched file ``rel``
        (``values``, as the file holds them), reading that value's rows only (its loader's
        ``where``), named :meth:`value_source_name`; settings and options as :meth:`expand`'s."""
        assert self.by is not None
        settings, loader = self._as_written()
        return [{"name": self.value_source_name(value),
                 "loader": {**loader, "path": rel.as_posix(), "where": {self.by: value}}, **settings}
                for value in values]


def _default_target_split() -> SplitSpec:
    """The target's split when the spec gives none: half its rows to train, a quarter each to
    validation and test (a source's default trains on every row)."""
    return SplitSpec(train=0.5, validation=0.25, test=0.25)


#: the target's split without a test split (``test_loader`` given and ``split`` left out):
#: the loader's rows go to train and validation, in the default split's proportions
TARGET_SPLIT_WITH_TEST_LOADER: dict[str, float] = {"train": 0.75, "validation": 0.25}

#: what the target's split must hold besides a SplitSpec's rules, for editors: train and
#: validation rows (validate refuses a split without them; 0 and 0.0 alike are none, and
#: validation and test default to 0); test rows: :data:`_TARGET_TEST_SCHEMA`
_TARGET_SPLIT_SCHEMA: dict[str, Any] = {
    "required": ["validation"],
    "properties": {name: {"not": {"const": 0}} for name in ("train", "validation")},
}

#: the target's test rows, for editors: with a test_loader, split.test is left out or 0;
#: without one, the split has test rows
_TARGET_TEST_SCHEMA: dict[str, Any] = {
    "if": {"required": ["test_loader"], "properties": {"test_loader": {"type": "object"}}},
    "then": {"properties": {"split": {"properties": {"test": {"const": 0}}}}},
    "else": {"properties": {"split": {"required": ["test"], "properties": {"test": {"not": {"const": 0}}}}}},
    # the target's rows need a prompt and an answer (TargetSpec._not_plain_text): no loader's text_field
    "allOf": [{"properties": {key: {"properties": {"text_field": {
        "type": "null", "description": "For sources only: the target's rows need a prompt and an answer."}}}
        for key in ("loader", "test_loader")}}],
}


class TargetSpec(SourceSpec):
    model_config = ConfigDict(json_schema_extra=_TARGET_TEST_SCHEMA)

    split: SplitSpec = Field(
        default_factory=_default_target_split,
        json_schema_extra=_TARGET_SPLIT_SCHEMA,
        description="Split sizes; the target needs train, validation and test examples (with test_loader: "
        "train and validation; left out, train 0.75 and validation 0.25).",
    )
    test_loader: LoaderSpec | None = Field(
        None,
        description="Where the target's test rows come from, when it has a test set of its own (a benchmark's "
        "official test split): the same options as loader, e.g. {type: huggingface, path: openai/gsm8k, name: "
        "main, split: test} or {type: jsonl, path: data/test.jsonl}. Every row it reads is a test row, in its "
        "order (max_examples and the seed apply to loader's rows only); split.test is then left out (or 0) and "
        "loader's rows are split into train and validation only.",
    )

    @model_validator(mode="before")
    @classmethod
    def _split_without_test(cls, data: Any) -> Any:
        """With a ``test_loader`` and no ``split`` written, the loader's rows are split into
        train and validation only (:data:`TARGET_SPLIT_WITH_TEST_LOADER`): the default
        split's test quarter would be drawn for nothing, or refused."""
        if isinstance(data, dict) and data.get("test_loader") is not None and "split" not in data:
            return {**data, "split": dict(TARGET_SPLIT_WITH_TEST_LOADER)}
        return data

    @field_validator("loader", "test_loader")
    @classmethod
    def _not_plain_text(cls, loader: Any) -> Any:
        """The target's rows need a prompt and an answer: its validation loss could be a
        text's, but ``evaluate`` scores the answers generated for the test prompts against
        the gold responses (exact_match, reasoning-gym's scorer), and a text trained on
        whole has neither (there is no loss-only metric)."""
        if getattr(loader, "text_field", None) is not None:
            raise ValueError(
                f"text_field ({loader.text_field!r}) is for sources only: the target's test rows are scored by the "
                "answers the model generates for their prompts (evaluate.metric: exact_match or reasoning_gym), "
                "and a text trained on whole has no prompt and no answer. Give the target prompt and response "
                "columns (prompt_field and response_field, or messages_field), or make this corpus a source")
        return loader

    @field_validator("test_loader")
    @classmethod
    def _one_test_split(cls, test_loader: Any, info: ValidationInfo) -> Any:
        """A test split drawn from ``loader`` beside a ``test_loader``'s rows would be two
        test sets in one: refused at test_loader's key and line (validated after the
        split), naming both keys."""
        split = info.data.get("split")
        if test_loader is not None and isinstance(split, SplitSpec) and split.test:
            raise ValueError(
                f"target.split.test is {split.test!r}, but target.test_loader is set: the test rows are "
                "every row test_loader reads, so none is drawn from loader. Remove target.split.test (or set "
                "it to 0), or remove target.test_loader to draw the test rows from loader")
        if test_loader is not None and test_loader == info.data.get("loader"):
            # every test row would be a train or validation row too: scores of a leaked test set
            raise ValueError(
                "reads what target.loader reads (the same options), so every test row would also be a train or "
                "validation row. Point target.test_loader at the target's test set (its test file, or the "
                "dataset's test split), or remove it to draw the test rows from loader")
        return test_loader


# ---------------------------------------------------------------------------- stages


class TrainSpec(StrictModel):
    """Settings shared by every LoRA training run."""

    steps: int = Field(40, ge=1, description="Optimizer steps.")
    batch_size: int = Field(8, ge=1, description="Examples per micro-batch.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate (LoRA rates are about 1e-4 to 1e-2; validate warns above 1).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    checkpoint_every: int = Field(10, ge=1, description="Save a resumable checkpoint every N steps.")

    @model_validator(mode="after")
    def _feasible_length(self) -> TrainSpec:
        check_training_length(self.steps, self.batch_size, self.grad_accum)
        return self


#: the most examples (steps x batch_size x grad_accum) one fine-tune (real or simulated) may train on
MAX_TRAINING_EXAMPLES = 10**9


def check_training_length(steps: int | None, batch_size: int | None, grad_accum: int | None = None) -> None:
    """Refuse a fine-tune whose steps x batch_size (x grad_accum) examples are more than
    its batch order (every step's example indices, drawn before training) can hold: a
    `batch_size: 1e15` was taken, and the run hung drawing that order until it ran out of
    memory, with nothing said. A setting left out (None: a default from elsewhere) counts as 1."""
    factors = {"steps": steps, "batch_size": batch_size, "grad_accum": grad_accum}
    examples = math.prod(v or 1 for v in factors.values())
    if examples > MAX_TRAINING_EXAMPLES:
        named = {k: v for k, v in factors.items() if v is not None}
        product = f" = {' x '.join(f'{v:,}' for v in named.values())}" if len(named) > 1 else ""
        keys = list(named)
        raise ValueError(
            f"{' x '.join(keys)}{product} = {examples:,} examples, more than the {MAX_TRAINING_EXAMPLES:,} one "
            f"fine-tune can draw its batch order for (the indices alone would not fit in memory): lower "
            + (", ".join(keys[:-1]) + " or " if len(keys) > 1 else "") + keys[-1])


class MetaInitSpec(TrainSpec):
    """Multitask LoRA training on target + all sources: theta*."""

    eval_every: int = Field(10, ge=1, description="Evaluate target validation loss every N steps.")


class GradientsSpec(StrictModel):
    d: int = Field(
        128, ge=1, le=65536,
        description="Projection dimension: each example's LoRA gradient is projected to d numbers. At most "
        "the number of trainable LoRA parameters (the gradients stage names it when d is larger).",
    )
    projector: str = Field("rademacher", description="Registered projector name: rademacher or gaussian (a plugin "
                           "may register more; `subsetctl ls` lists them).", examples=list(BUILTIN_PROJECTORS))
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

    @model_validator(mode="after")
    def _feasible_length(self) -> SimulatedFinetuneSpec:
        check_training_length(self.steps, self.batch_size)
        return self


class EstimateSpec(StrictModel):
    estimator: str = Field(
        "fast", description="Registered estimator: fast, exact, linear_sgd, true_finetune.",
        examples=list(BUILTIN_ESTIMATORS),
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
    estimators: list[Annotated[str, Field(examples=list(BUILTIN_ESTIMATORS))]] = Field(
        default_factory=list,
        description="Estimators to choose from together with lambda, by the same rank agreement "
        "(e.g. [fast, linear_sgd]); empty: only estimate.estimator.",
    )

    @field_validator("lambda_grid")
    @classmethod
    def _positive(cls, grid: list[float]) -> list[float]:
        bad = [f"{v:g}" for v in grid if not v > 0]
        if bad:
            raise ValueError(
                f"lambda_grid values must be positive, got {', '.join(bad)}: lambda is the ridge penalty of "
                "every estimate (w_S = argmin loss + lambda·|w|²), whose minimum need not exist at 0 or below. "
                f"Remove {'it' if len(bad) == 1 else 'them'}, or write a small positive value such as 0.001 "
                "(the default grid is [0.01, 0.1, 0.3, 1, 3, 10])")
        return grid


class StrategySpec(StrictModel):
    name: str = Field(description="Registered strategy name (see `subsetctl ls`).", examples=list(BUILTIN_STRATEGIES))
    params: dict[str, Any] = Field(
        default_factory=dict, description="Strategy parameters, each strategy's own (`subsetctl ls` lists them with "
        "their defaults), e.g. random_ensemble's {m: 1000, alpha: 0.5, select: sign}.")
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
        "search summary's `selected`, the adapter the report points to, and, with more than 30 sources, "
        "the order of the report's per-source score table (ranked by its scores; fewer are in the spec's order). "
        "Every strategy's pick is fine-tuned and evaluated either way.",
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
        "otherwise. exact_match compares answers in Unicode NFKC (NFC and NFD 'café' alike, full-width '１２' "
        "= '12', ligatures unfolded; superscripts, subscripts and fractions kept as written: '10²' is not '102'), "
        "stripped, lowercased, with whitespace collapsed and trailing sentence-final marks dropped (a '.', "
        "'。', '．', '！', '？', '।', '؟'; an ASCII '!' or '?' is kept: '5!' is not 5), and numbers by value "
        "(4.0 = 4, 1,000 = 1000). Beside it the report gives "
        "macro-F1 over the classes for a classifier, and for a causal LM whose train answers are a few short "
        "class words."
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

    @model_validator(mode="after")
    def _feasible_length(self) -> VerifySpec:
        check_training_length(self.steps, self.batch_size)
        return self

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
        None, description="Dask scheduler address; none starts a LocalCluster.", examples=["tcp://scheduler:8786"]
    )
    batch_size: int | None = Field(None, ge=1, description="Subsets per task (default: automatic).")
    connect_timeout: float = Field(
        5.0, gt=0, le=3600,
        description="Dask with an address: seconds to wait for the scheduler to answer, and again for "
        "at least one worker to be connected to it (raise it for a cluster whose workers take longer to join). "
        "Later requests to the scheduler and subsetctl's checks of each worker's code before it gets work are "
        "given up after twice this plus a second; a finished estimate whose fetch takes that long has the "
        "scheduler asked, and waits on if it answers.",
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

    #: (group, note) on rows a ``source_files`` group's ``by`` left out (null or blank value), one per file
    _left_out_rows: list[tuple[int, str]] = PrivateAttr(default_factory=list)

    @property
    def left_out_rows(self) -> list[tuple[int, str]]:
        """Notes on rows of ``by`` groups' files that no source takes (their value null or
        blank), one per file, with the index of the group: validate and the data stage warn with them."""
        return self._left_out_rows

    #: the spec's warnings (not its notes) as its checks wrote them, before a ``source_files`` group's alike
    #: ones are merged or an override is named in them (:func:`~subsetctl.api.validate_spec_file`)
    _checked_warnings: list[str] = PrivateAttr(default_factory=list)

    @property
    def checked_warnings(self) -> list[str]:
        """The messages of the warnings validate found in this spec (a file's lines not UTF-8, its
        cells holding a stray byte-order mark, ...), which a run prints before its first stage:
        the data stage prints none of its own warnings that is one of them again (data.json and
        the report keep it)."""
        return self._checked_warnings

    #: (group, note) naming the values of a ``by`` group's files the target or listed sources read (``where``)
    _left_to_others: list[tuple[int, str]] = PrivateAttr(default_factory=list)

    @property
    def left_to_others(self) -> list[tuple[int, str]]:
        """Notes naming, per ``by`` group, the values that make none of its sources because the
        target or a listed source reads their rows with ``where``: validate warns with them."""
        return self._left_to_others

    #: the command line's ``key=value`` overrides applied to the spec file's settings
    _command_line: list[str] = PrivateAttr(default_factory=list)

    @property
    def command_line_overrides(self) -> list[str]:
        """The ``key=value`` overrides this spec was loaded with (empty: the spec file's
        settings alone): what the report may call "made with command-line overrides"."""
        return self._command_line

    #: each of the overrides that named a search strategy or a source, as recorded (with its
    #: index) -> as the user wrote it (:func:`~subsetctl.spec.overrides.indexed_overrides`)
    _written: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def overrides_as_written(self) -> dict[str, str]:
        """Each of :attr:`command_line_overrides` that named a search strategy or a source by
        its name, with its index -> as the user wrote it: what messages quote
        (:func:`~subsetctl.spec.overrides.as_written`)."""
        return self._written

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
        taken_twice: list[tuple[str, int, int]] = []  # (name, its first source, another): said once, below
        for i, source in enumerate(self.sources):
            if source.name.casefold() in reserved:
                problems.append(f"sources[{i}] is named {source.name!r}, a name the data stage keeps for its own "
                                "file; rename it")
            if source.name in seen:
                taken_twice.append((source.name, seen[source.name], i))
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
        if taken_twice:
            problems.insert(0, _taken_twice_problem(taken_twice))
        if problems:
            raise ValueError("; ".join(problems))
        return self


#: the names taken twice that the duplicate-name problem names, with their sources (the rest are counted)
DUPLICATE_NAMES_SHOWN = 3


def _taken_twice_problem(taken_twice: list[tuple[str, int, int]]) -> str:
    """The problem of source names taken twice, ``(name, first source, another)`` each, said
    once: a ``source_files`` group matching the listed sources' files repeated "duplicate
    source name ...; names must be unique: rename one" for each of them, joined by ";". A name
    taken three times is one name, its sources listed (not two names, "rename one of each")."""
    indices: dict[str, list[int]] = {}
    for name, first, other in taken_twice:
        indices.setdefault(name, [first]).append(other)
    shown = [f"{name!r} (" + (", ".join(f"sources[{i}]" for i in found[:-1]) + f" and sources[{found[-1]}])")
             for name, found in indices.items()]
    rename = "rename one" if all(len(found) == 2 for found in indices.values()) else "rename all but one"
    if len(shown) == 1:
        return f"duplicate source name {shown[0]}; names must be unique: {rename}"
    more = len(shown) - DUPLICATE_NAMES_SHOWN
    listed = (", ".join(shown[:DUPLICATE_NAMES_SHOWN]) + f" and {more} more" if more > 0
              else ", ".join(shown[:-1]) + f" and {shown[-1]}")
    return f"duplicate source names ({len(shown)}): {listed}; names must be unique: {rename} of each"


# ------------------------------------------------------------------------ JSON schema


class _SchemaWithFactoryDefaults(GenerateJsonSchema):
    """Pydantic leaves a field built by ``default_factory`` without a ``default`` in the
    schema; the schema is the spec's reference, so those defaults are written out too.

    A number may be given as text (``steps: "5"``, ``lr: 1e-4``, which PyYAML reads as
    text): validate takes it, so the schema takes text that reads as a number too, or
    editors would flag specs that are valid (its range is left to validate). So with a
    boolean: ``yes``/``on`` (YAML 1.1's, which editors read as text), 0 and 1."""

    def int_schema(self, schema: Any) -> JsonSchemaValue:
        return _or_quoted(super().int_schema(schema), QUOTED_INTEGER_PATTERN)

    def float_schema(self, schema: Any) -> JsonSchemaValue:
        return _or_quoted(super().float_schema(schema), QUOTED_NUMBER_PATTERN)

    def bool_schema(self, schema: Any) -> JsonSchemaValue:
        # a boolean, 0 or 1, or text validate reads as one: `enabled: yes` (a boolean to
        # PyYAML, the text "yes" to an editor's YAML 1.2) is no error of the spec
        return {"anyOf": [super().bool_schema(schema), {"type": "integer", "minimum": 0, "maximum": 1},
                          {"type": "string", "pattern": QUOTED_BOOLEAN_PATTERN}]}

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
