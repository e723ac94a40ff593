"""The search-strategy interface: what a strategy receives, returns and is configured by.

A strategy decides which auxiliary sources to keep. It sees the world only through a
:class:`~subsetctl.estimate.base.SubsetEstimator` (``estimate(masks) -> L_hat``), a
:class:`SearchContext` (source names, seed, optional cached features, earlier picks) and
its own validated ``Params``. It returns a :class:`StrategyResult`.

Score convention, for every strategy: **a higher score means a more helpful source**
(including the source is expected to lower the target's validation loss).

Strategies talk to the estimator through :class:`SubsetMemo`, which batches requests,
never asks the estimator twice for the same subset within one run, and records every
evaluated subset in the result's trace. Keeping all estimator traffic in whole batches
lets a caching or parallel estimator wrapper (or an expensive real fine-tune estimator)
do its work efficiently.
"""

from __future__ import annotations

import math
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import ConfigDict, ValidationError

from subsetctl.errors import UserError
from subsetctl.estimate.base import FeatureSet, SubsetEstimator
from subsetctl.spec import NoBooleansForNumbers, plain_error_message

#: ``progress(message, done, total)``: called by strategies as batches finish.
ProgressFn = Callable[[str, int, int], None]


@dataclass
class SearchContext:
    """Everything a strategy may use besides the estimator and its params.

    Attributes:
        sources: auxiliary source names, in mask order (must equal ``estimator.sources``).
        seed: seed for every random choice the strategy makes, so runs are reproducible.
        features: cached gradient features; only the similarity baselines read them.
        other_selections: picks of strategies that ran earlier in the same search,
            keyed by the name under which each was recorded; ``random`` can size its
            pick like one of them.
        progress: optional callback ``progress(message, done, total)``; nothing else
            is ever reported to the terminal.
    """

    sources: list[str]
    seed: int = 0
    features: FeatureSet | None = None
    other_selections: dict[str, list[str]] = field(default_factory=dict)
    progress: ProgressFn | None = None

    def report(self, message: str, done: int, total: int) -> None:
        """Forward a progress event to the callback, if there is one."""
        if self.progress is not None:
            self.progress(message, done, total)


def _json_float(value: float | None) -> float | None:
    """``None`` for missing or non-finite numbers, so results stay valid JSON."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _json_value(value: Any) -> Any:
    """Convert numpy scalars/arrays and non-finite floats into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_value(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _json_float(float(value))
    return value


@dataclass
class StrategyResult:
    """What a strategy found.

    Attributes:
        strategy: registered name of the strategy that produced this.
        selected: chosen sources, in the estimator's source order.
        scores: per-source scores, **higher = more helpful**; empty when the strategy
            does not score sources (``all``, ``target_only``, ``random``).
        estimated_loss: ``L_hat`` of the selected subset, ``None`` if not estimated or
            the estimator failed on it.
        trace: every subset the strategy evaluated, in order, as
            ``{"subset": [names], "loss": float | None}`` (``None``: estimator failed).
        notices: short sentences about anything the user should know (caps, failures).
        diagnostics: strategy-specific figures (fit quality, counts), JSON-friendly.
    """

    strategy: str
    selected: list[str]
    scores: dict[str, float] = field(default_factory=dict)
    estimated_loss: float | None = None
    trace: list[dict[str, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, trace_limit: int | None = None) -> dict[str, Any]:
        """A JSON-serializable dict (non-finite floats become ``None``). With more than
        ``trace_limit`` entries, the trace keeps the ``trace_limit`` subsets with the lowest
        loss (in evaluation order) and ``trace_total`` says how many there were: an
        exhaustive search over 20 sources made a 287 MB selections.json of names, when every
        estimate is in the search cache anyway."""
        trace = [{"subset": list(t["subset"]), "loss": _json_float(t["loss"])} for t in self.trace]
        out: dict[str, Any] = {
            "strategy": self.strategy,
            "selected": list(self.selected),
            "scores": {k: _json_float(v) for k, v in self.scores.items()},
            "estimated_loss": _json_float(self.estimated_loss),
            "trace": trace,
            "notices": list(self.notices),
            "diagnostics": _json_value(self.diagnostics),
        }
        if trace_limit is not None and len(trace) > trace_limit:
            ranked = sorted(range(len(trace)), key=lambda i: (trace[i]["loss"] is None, trace[i]["loss"] or 0.0, i))
            out["trace"] = [trace[i] for i in sorted(ranked[:trace_limit])]
            out["trace_total"] = len(trace)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StrategyResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            strategy=str(data["strategy"]),
            selected=list(data["selected"]),
            scores={k: (float("nan") if v is None else float(v)) for k, v in data.get("scores", {}).items()},
            estimated_loss=(None if data.get("estimated_loss") is None else float(data["estimated_loss"])),
            trace=[
                {"subset": list(t["subset"]), "loss": None if t["loss"] is None else float(t["loss"])}
                for t in data.get("trace", [])
            ],
            notices=list(data.get("notices", [])),
            diagnostics=dict(data.get("diagnostics", {})),
        )


class StrategyParams(NoBooleansForNumbers):
    """Base for strategy parameter models: unknown keys are errors, not silently ignored;
    infinite and NaN numbers and booleans for numbers are refused (YAML reads `.inf`,
    `.nan` and `yes`/`on`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Strategy(ABC):
    """A way of choosing sources from subset-loss estimates.

    Subclasses set ``Params`` (a :class:`StrategyParams` subclass whose fields all have a
    default and a description) and implement :meth:`run`; :meth:`check_spec` may report
    problems the spec alone shows, so that `validate` finds them before any stage runs. Register with
    ``@STRATEGIES.register(name, description)``, which also sets the class's ``name`` and
    ``description`` (one line, shown by ``subsetctl ls``), or through the
    ``subsetctl.strategies`` entry-point group.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type[StrategyParams]] = StrategyParams

    @abstractmethod
    def run(
        self, estimator: SubsetEstimator, context: SearchContext, params: StrategyParams
    ) -> StrategyResult:
        """Search and return the selection; estimator traffic goes through :class:`SubsetMemo`."""

    @classmethod
    def check_spec(cls, params: StrategyParams, n_sources: int, earlier: list[str]) -> str | None:
        """A problem with these params that the spec already shows (``earlier``: the labels
        of the strategies listed before this one), said by `validate` before any stage
        runs; None when there is none. :meth:`run` still checks at run time."""
        return None

    @classmethod
    def max_subsets(cls, params: StrategyParams, n_sources: int) -> int | None:
        """At most how many distinct subsets :meth:`run` asks the estimator about (None:
        not known). With an estimator that fine-tunes for real (``true_finetune``) each one
        is a fine-tune, so `validate` adds these up to say what a search would cost."""
        return None


class SubsetMemo:
    """Batched, de-duplicated access to an estimator for the length of one strategy run.

    ``losses(masks)`` sends only subsets not seen before in this run, in one
    ``estimate`` call (or a few, of at most ``chunk_size`` rows, so long batches report
    progress), and records every newly evaluated subset in :attr:`trace`. Failed
    estimates (NaN loss) are recorded as ``None`` in the trace and counted.
    """

    def __init__(
        self,
        estimator: SubsetEstimator,
        context: SearchContext,
        label: str,
        chunk_size: int = 1024,
    ) -> None:
        self.estimator = estimator
        self.context = context
        self.label = label
        self.chunk_size = max(1, int(chunk_size))
        self.sources = list(estimator.sources)
        self._losses: dict[bytes, float] = {}
        self.trace: list[dict[str, Any]] = []
        self.n_failed = 0
        self.n_not_converged = 0
        self.n_calls = 0

    @property
    def n_evaluated(self) -> int:
        """Distinct subsets estimated so far in this run."""
        return len(self._losses)

    def names(self, mask: np.ndarray) -> list[str]:
        """Source names of one mask, in source order."""
        return [s for s, keep in zip(self.sources, mask) if keep]

    def mask(self, names: list[str]) -> np.ndarray:
        """The mask of one subset given by names."""
        return self.estimator.masks_for([names])[0]

    def losses(self, masks: np.ndarray) -> np.ndarray:
        """``L_hat`` for each row of ``masks`` (NaN where the estimator failed: gave NaN or an
        infinite value)."""
        masks = np.asarray(masks, dtype=bool).reshape(-1, len(self.sources))
        keys = [row.tobytes() for row in masks]
        todo: list[int] = []
        queued: set[bytes] = set()
        for i, key in enumerate(keys):
            if key not in self._losses and key not in queued:
                queued.add(key)
                todo.append(i)
        for start in range(0, len(todo), self.chunk_size):
            rows = todo[start : start + self.chunk_size]
            batch = self.estimator.estimate(masks[rows])
            self.n_calls += 1
            loss = np.asarray(batch.loss, dtype=float).reshape(-1)
            converged = np.asarray(batch.converged, dtype=bool).reshape(-1)
            if loss.shape[0] != len(rows):
                raise RuntimeError(
                    f"Estimator {type(self.estimator).__name__} returned {loss.shape[0]} "
                    f"losses for {len(rows)} subsets."
                )
            for j, i in enumerate(rows):
                value = float(loss[j])
                failed = not math.isfinite(value)
                # NaN for every failure: an infinite estimate read as a loss made every finite
                # gain of greedy infinite, and -inf was the "lowest loss" of exhaustive and sweep
                self._losses[keys[i]] = math.nan if failed else value
                self.n_failed += int(failed)
                self.n_not_converged += int(not failed and not converged[j])
                self.trace.append({"subset": self.names(masks[i]), "loss": None if failed else value})
            self.context.report(
                f"{self.label}: estimated {start + len(rows)}/{len(todo)} subsets",
                start + len(rows),
                len(todo),
            )
        return np.array([self._losses[k] for k in keys], dtype=float)

    def loss_of(self, names: list[str]) -> float | None:
        """``L_hat`` of one subset given by names; ``None`` if the estimator failed."""
        value = float(self.losses(self.mask(names)[None, :])[0])
        return value if math.isfinite(value) else None

    def notices(self) -> list[str]:
        """Sentences about failed or unconverged estimates, if any."""
        out = []
        if self.n_failed:
            out.append(
                f"The estimator failed (NaN loss) on {self.n_failed} of {self.n_evaluated} "
                "subsets; they were left out of scores and selection."
            )
        if self.n_not_converged:
            out.append(
                f"The solver did not converge on {self.n_not_converged} of {self.n_evaluated} "
                "subsets (their estimates are kept but unreliable); "
                f"{getattr(self.estimator, 'not_converged_advice', SubsetEstimator.not_converged_advice)}."
            )
        return out

    def diagnostics(self) -> dict[str, int]:
        """Counts describing this run's estimator traffic."""
        return {
            "n_subsets_estimated": self.n_evaluated,
            "n_estimate_calls": self.n_calls,
            "n_failed": self.n_failed,
            "n_not_converged": self.n_not_converged,
        }


def check_sources(estimator: SubsetEstimator, context: SearchContext) -> None:
    """Refuse to run when the context and the estimator disagree on the sources."""
    if list(estimator.sources) != list(context.sources):
        raise UserError(
            f"The estimator's sources {list(estimator.sources)} differ from the search's "
            f"sources {list(context.sources)}. Re-run the gradients stage so both come "
            "from the same spec."
        )


def parse_params(strategy_cls: type[Strategy], raw: dict[str, Any] | None, where: str) -> StrategyParams:
    """Validate ``raw`` against ``strategy_cls.Params``.

    Args:
        strategy_cls: the strategy class.
        raw: the ``params:`` mapping from the spec (``None`` means all defaults).
        where: the spec path of that mapping, e.g. ``search.strategies[0].params``; error
            messages name keys below it (``search.strategies[0].params.m``).

    Raises:
        UserError: one paragraph naming every bad key and what is expected.
    """
    raw = {} if raw is None else raw
    params_cls = getattr(strategy_cls, "Params", None)
    if not (isinstance(params_cls, type) and issubclass(params_cls, StrategyParams)):
        raise UserError(
            f"The strategy {strategy_cls.name!r} ({strategy_cls.__module__}) has a Params that is not a subclass of "
            "subsetctl.search.base.StrategyParams, so its parameters cannot be checked (a pydantic BaseModel "
            "would drop a mistyped key). Derive its Params from StrategyParams."
        )
    if not isinstance(raw, dict):
        raise UserError(
            f"{where} must be a mapping of parameter names to values, got "
            f"{type(raw).__name__}. `subsetctl ls` lists the parameters of "
            f"{strategy_cls.name!r}."
        )
    try:
        return strategy_cls.Params.model_validate(raw)
    except ValidationError as exc:
        valid = ", ".join(strategy_cls.Params.model_fields) or "(none)"
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = plain_error_message(err)
            if err["type"] == "extra_forbidden":
                msg = "is not a parameter of this strategy"
            elif msg == err["msg"].removeprefix("Value error, ") and "input" in err and err["type"] != "missing" \
                    and loc:  # pydantic's own text: say what was given
                msg = f"{msg} (got {err['input']!r})"
            problems.append(f"{where}.{loc}: {msg}" if loc else f"{where}: {msg}")
        raise UserError(
            f"Invalid parameters for strategy {strategy_cls.name!r}: "
            + "; ".join(problems)
            + f". Valid keys: {valid}. `subsetctl ls` lists their defaults."
        ) from None


def _type_name(annotation: Any) -> str:
    """A short human-readable name for a parameter's type annotation."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return "|".join(repr(a) if not isinstance(a, str) else a for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if annotation is type(None):
        return "None"
    if origin is not None:
        inner = ", ".join(_type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(annotation, "__name__", str(annotation))


def describe_params(strategy_cls: type[Strategy]) -> list[tuple[str, str, Any, str]]:
    """``(name, type, default, description)`` for each parameter, for ``subsetctl ls``."""
    rows = []
    for name, info in strategy_cls.Params.model_fields.items():
        rows.append((name, _type_name(info.annotation), info.default, info.description or ""))
    return rows


def run_strategy(
    name: str,
    estimator: SubsetEstimator,
    context: SearchContext,
    raw_params: dict[str, Any] | None = None,
    where: str = "params",
) -> StrategyResult:
    """Look up ``name`` in the strategy registry, validate its params and run it.

    Unknown names raise the registry's error, which lists the registered strategies.
    """
    from subsetctl.registry import STRATEGIES

    strategy_cls = STRATEGIES.get(name)
    params = parse_params(strategy_cls, raw_params, where)
    check_sources(estimator, context)
    result = strategy_cls().run(estimator, context, params)
    result.strategy = name
    return result
