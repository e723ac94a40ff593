"""The YAML spec: pydantic v2 models that are the single source of truth of a run.

Everything a run does is decided by one ``subsetctl.yaml``. This package defines its
schema (``subsetctl schema`` prints it), loads it safely, applies ``key=value``
overrides and turns validation errors into messages that name the file, the line and
the key path (``sources[3].loader.path``). It imports nothing heavy (no torch), so
``validate``, ``schema`` and ``plan`` start fast.

The package holds one module per concern: :mod:`.models` (the pydantic models and the
JSON schema `subsetctl schema` prints), :mod:`.issues` (key lines and validation
messages), :mod:`.reading` (loading a spec file), :mod:`.overrides` (``key=value`` on
the command line) and :mod:`.fingerprints` (the spec as stages' fingerprints see it).
Every name is importable from :mod:`subsetctl.spec` itself.
"""

from __future__ import annotations

from subsetctl.spec.fingerprints import (  # noqa: F401
    _SECTION_MODELS,
    RESULT_NEUTRAL,
    _with_neutral_settings,
    fingerprint_dump,
    neutralized,
    with_neutral_values_of,
)
from subsetctl.spec.issues import (  # noqa: F401
    _MERGE_TAG,
    ISSUES_SHOWN,
    SpecIssue,
    _as_written_hint,
    _clean_loc,
    _deepest_written,
    _describe_value,
    _key_lines_of,
    _keys_at,
    _LineLoader,
    _merge_note,
    _models_in,
    _tagged,
    format_path,
    issues_from_validation,
    issues_text,
    key_lines,
    line_of_key,
    merged_keys,
    more_issues_line,
    plain_error_message,
    warnings_shown,
)
from subsetctl.spec.models import (  # noqa: F401
    _TARGET_SPLIT_SCHEMA,
    BUILTIN_ESTIMATORS,
    BUILTIN_PACKAGED_MODELS,
    BUILTIN_PROJECTORS,
    BUILTIN_STRATEGIES,
    MIN_CALIBRATION_K,
    NAME_PATTERN,
    QUOTED_BOOLEAN_PATTERN,
    QUOTED_INTEGER_PATTERN,
    QUOTED_NUMBER_PATTERN,
    RESERVED_SOURCE_NAMES,
    SPEC_FILENAME,
    CalibrateSpec,
    CorruptSpec,
    CsvFiles,
    CsvLoader,
    Delimited,
    EstimateSpec,
    EvalsLoader,
    EvaluateSpec,
    ExecutorSpec,
    FilesLoaderSpec,
    FinetuneSpec,
    GradientsSpec,
    HuggingFaceLoader,
    JsonlFiles,
    JsonlLoader,
    LoaderBase,
    LoaderSpec,
    LoraSpec,
    MetaInitSpec,
    ModelSpec,
    NoBooleansForNumbers,
    ParquetFiles,
    ParquetLoader,
    PluginLoader,
    ProjectSpec,
    ReasoningGymLoader,
    ReportSpec,
    SearchSpec,
    SimulatedFinetuneSpec,
    SourceFilesSpec,
    SourceSettings,
    SourceSpec,
    Spec,
    SplitSize,
    SplitSpec,
    StrategySpec,
    StrictModel,
    TargetSpec,
    TrainSpec,
    VerifySpec,
    _ascii_form,
    _BooleanForNumber,
    _default_strategies,
    _default_target_split,
    _delimiter_schema,
    _is_number_type,
    _or_quoted,
    _SchemaWithFactoryDefaults,
    json_schema,
    where_text,
)
from subsetctl.spec.overrides import (  # noqa: F401
    _TOKEN,
    _not_a_mapping,
    _selects_meaning_of,
    _typed_text,
    _yaml_drops_a_comment,
    apply_overrides,
    as_written,
    attribute_overrides,
    indexed_overrides,
    override_keys,
    override_value,
    overrides_that_change,
    overrides_under,
    parse_key_path,
    same_branch,
    split_override,
)
from subsetctl.spec.reading import (  # noqa: F401
    _MAX_ALIAS_EXPANSION,
    _DuplicateKeyError,
    _line_of,
    _UniqueKeyLoader,
    blame_source_files,
    expand_source_files,
    load_spec,
    read_yaml,
    validate_data,
)
from subsetctl.spec.yaml_depth import _expanded_size  # noqa: F401
