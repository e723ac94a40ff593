"""How `plan` words why a stage is stale: the spec keys that changed (sources and strategies
by name, not by list position), the input files or plugins that changed, the outputs gone,
and what an earlier run's results were made from. :class:`subsetctl.pipeline.Pipeline`
decides *whether* a stage is stale; this module only says *why*, in the words `plan`, `run`
and `report` show.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from subsetctl.errors import UserError, worded
from subsetctl.project import Project


def flatten(data: Any, prefix: str = "", quoted: bool = False) -> dict[str, Any]:
    """{'a': {'b': [1, 2]}} -> {'a.b[0]': 1, 'a.b[1]': 2}. ``quoted``: a key that would not read
    back as one part of an override's key (``v1.2``) is written in quotes, as such a key is
    (``label_map."v1.2"``, not ``label_map.v1.2``, which reads as two keys); the top level's
    keys are not (a stage's spec slice is keyed by paths, ``gradients.d``)."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            part = _key_part(str(key)) if quoted and prefix else str(key)  # (a slice's own keys are paths)
            out.update(flatten(value, f"{prefix}.{part}" if prefix else part, quoted))
    elif isinstance(data, list):
        if not data:
            out[prefix] = []
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}[{i}]", quoted))
    else:
        out[prefix] = data
    return out


def quoted_key(key: str) -> str:
    """An override's (or a spec's) dotted ``key`` as :func:`flatten` with ``quoted`` writes a
    setting's: each name in quotes only where it holds a dot, bracket or the like
    (``label_map."v1.2"``; ``label_map."v1"`` as ``label_map.v1``), so the two compare as keys
    (unquoted, ``label_map.v1.2`` lay under ``label_map.v1``). A key that does not parse is
    returned as it is."""
    from subsetctl.errors import SpecError
    from subsetctl.spec.overrides import parse_key_path

    try:
        parts = parse_key_path(key)
    except SpecError:
        return key
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + _key_part(str(part))
    return out


def _key_part(key: str) -> str:
    """``key`` as a part of an override's key (:func:`~subsetctl.spec.overrides.name_in_key`:
    in quotes where it holds a dot, bracket or the like; digits stay bare, a name there)."""
    from subsetctl.spec.overrides import name_in_key

    return key if key.isdigit() else name_in_key(key) or key


#: the ``[i]`` (or ``[i][j]``) that ends the flattened key of a plain value in a list
_LIST_ITEM = re.compile(r"(\[\d+\])+$")


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two spec slices.

    Sources are compared by name, not by list position: adding or removing one would
    otherwise shift every later index and list all their keys as changed. They are
    described as ``sources: renamed d -> e (...); added a; removed b; changed c`` (or
    ``reordered``); a source removed and one added with the same settings are a rename.
    The search strategies likewise, by label (``search.strategies: added forward``): a
    strategy added at position 2 was "search.strategies[2].label, search.strategies[2].name".
    A key that holds a dot is in quotes, as an override writes it (``label_map."v1.2"``).
    A list of plain values is named once, as a whole (``calibrate.lambda_grid``)."""
    old_sources, new_sources = old.get("sources"), new.get("sources")
    described: list[str] = []
    if isinstance(old_sources, list) and isinstance(new_sources, list) and old_sources != new_sources:
        described = [_describe_sources(old_sources, new_sources)]
        old = {k: v for k, v in old.items() if k != "sources"}
        new = {k: v for k, v in new.items() if k != "sources"}
    old_search, new_search = old.get("search"), new.get("search")
    if isinstance(old_search, dict) and isinstance(new_search, dict):
        old_list, new_list = old_search.get("strategies"), new_search.get("strategies")
        if isinstance(old_list, list) and isinstance(new_list, list) and old_list != new_list:
            described.append(_describe_strategies(old_list, new_list))
            old = {**old, "search": {k: v for k, v in old_search.items() if k != "strategies"}}
            new = {**new, "search": {k: v for k, v in new_search.items() if k != "strategies"}}
    a, b = flatten(old, quoted=True), flatten(new, quoted=True)
    keys = {k for k in set(a) | set(b) if a.get(k, "<unset>") != b.get(k, "<unset>")}
    # a list of plain values is one setting, as the report's settings show it: a new lambda grid
    # is "calibrate.lambda_grid", not "calibrate.lambda_grid[0], ..., calibrate.lambda_grid[5]"
    keys = {_LIST_ITEM.sub("", k) for k in keys}
    # an empty list on one side is a key of its own: `plugins` stands for `plugins[0]` etc.
    return described + sorted(k for k in keys if not any(k.startswith((p + "[", p + ".")) for p in keys))


def listed_briefly(items: list[str], limit: int = 6) -> str:
    """``a, b, c (+4 more)``: the first ``limit`` items of a plan reason's list."""
    return ", ".join(items[:limit]) + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _describe_sources(old: list[Any], new: list[Any]) -> str:
    """``sources: renamed v -> u (...); added x, y; removed z; changed w`` from two lists of
    source dicts (a removed and an added source alike but for the name: renamed)."""
    return "sources: " + _describe_named(
        old, new, "name",
        renamed_note="same settings; loaded again under the new name{s}: prepared sources are kept by name",
        reordered="reordered (their order is meta_init's multitask pool and the search's: what follows re-runs; "
                  "putting the order back puts the kept results back)")


def _describe_strategies(old: list[Any], new: list[Any]) -> str:
    """``search.strategies: renamed forward -> fwd (...); added exhaustive; removed
    surrogate; changed random_ensemble (params.m)`` (or ``reordered``) from two lists of
    strategy dicts, each named by its label (its name when it has none)."""
    return "search.strategies: " + _describe_named(
        old, new, "label", renamed_note="same strategy and params, another label{s}",
        reordered="reordered (the first is the final pick unless search.final names one, and the report's "
                  "tables follow the order)")


def _describe_named(old: list[Any], new: list[Any], name_key: str, renamed_note: str, reordered: str) -> str:
    """What changed between two lists of dicts known by ``name_key`` (a strategy without a
    label by its ``name``): ``renamed v -> u (renamed_note); added x; removed z; changed w
    (keys)``, or ``reordered`` when only their order differs. ``{s}`` in ``renamed_note``
    is "s" for more than one rename."""
    def name_of(item: Any, i: int) -> str:
        if not isinstance(item, dict):
            return str(i)
        return str(item.get(name_key) or item.get("name"))

    def by_name(items: list[Any]) -> dict[str, Any]:
        return {name_of(s, i): s for i, s in enumerate(items)}

    def what_changed(name: str) -> str:  # "a (max_examples)": the keys, when few
        keys = changed_keys(a[name], b[name]) if isinstance(a[name], dict) and isinstance(b[name], dict) else []
        return f"{name} ({', '.join(keys)})" if 0 < len(keys) <= 3 else name

    def unnamed(item: Any) -> Any:
        return {k: v for k, v in item.items() if k != name_key} if isinstance(item, dict) else item

    a, b = by_name(old), by_name(new)
    added, removed = [n for n in b if n not in a], [n for n in a if n not in b]
    renamed: list[str] = []  # a source removed and one added with the same settings: likely a rename
    for name in list(added):
        was = next((n for n in removed if unnamed(a[n]) == unnamed(b[name])), None)
        if was is not None:
            added.remove(name)
            removed.remove(was)
            renamed.append(f"{was} -> {name}")
    parts = []
    if renamed:
        parts.append(f"renamed {listed_briefly(renamed, 5)} ({renamed_note.format(s='s' if len(renamed) > 1 else '')})")
    for word, names in (("added", added), ("removed", removed),
                        ("changed", [what_changed(n) for n in b if n in a and a[n] != b[n]])):
        if names:
            parts.append(f"{word} {listed_briefly(names, 5)}")
    return "; ".join(parts) if parts else reordered


def outputs_gone(project: Project, names: list[str]) -> str:
    """How `plan` words a stage's :meth:`~subsetctl.pipeline.Stage.missing_outputs` ``names``
    (paths in the project folder): "outputs missing: ..." for those deleted, "outputs
    damaged: ..." for those there but no longer what the stage wrote (a report.json cut
    short), which a deletion's words misnamed."""
    damaged = [name for name in names if (project.root / name).exists()]
    deleted = [name for name in names if name not in damaged]
    return "; ".join([*([f"outputs missing: {', '.join(deleted)}"] if deleted else []),
                      *([f"outputs damaged (not what it wrote; cut short or edited): {', '.join(damaged)}"]
                        if damaged else [])])


def _last_clause_at(text: str) -> int | None:
    """Where the last "; " outside parentheses in a work text starts (before a clause such
    as "those in the cache are reused"), or None when there is none."""
    depth, found = 0, None
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and text.startswith("; ", i):
            found = i
    return found


def without_shared_last_clause(then: str, now: str) -> str:
    """``then``, a work text of a stage's last run, without its last clause when ``now``
    ends with the same one (which results it reuses): plan shows ``then`` after ``now``,
    and saying it twice read as if it were part of the size."""
    cut_then, cut_now = _last_clause_at(then), _last_clause_at(now)
    if cut_then is not None and cut_now is not None and then[cut_then:] == now[cut_now:]:
        return then[:cut_then]
    return then


def before_last_clause(text: str) -> str:
    """A work text without its last clause ("; those in the cache are reused", "; 2 of 4
    cached, reused"): the size of the work alone, as a last run's count is said."""
    cut = _last_clause_at(text)
    return text if cut is None else text[:cut]


def without_trailing_breakdown(then: str, now: str) -> str:
    """``then`` without the parenthesized breakdown it ends with (the search's subsets by
    strategy) when ``now`` ends with one too: plan shows ``then`` right after ``now``, and
    the last run's whole breakdown repeated what is planned for all but the strategy added.
    The figures before it (strategies, subsets) say what the seconds were for."""
    if not (then.endswith(")") and now.endswith(")")):
        return then
    depth = 0
    for i in range(len(then) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(then[i], 0)
        if depth == 0:
            return then[:i].rstrip() if i > 0 else then
    return then


def overrides_note(overrides: Any, keys: list[str], planned: bool = False,
                   written: dict[str, str] | None = None) -> str:
    """" (the last run set x=1 on the command line)" when a changed key was overridden then:
    the file did not change, the earlier run's command line did. ``planned``: the overrides
    of the command being planned (" (set on this command line: x=1)"), whose results a
    later `run` without them does not keep, quoted as they were written (``written``:
    :attr:`~subsetctl.spec.models.Spec.overrides_as_written`). A caller of the Python API
    reads of its ``overrides`` argument instead."""
    if not isinstance(overrides, list):
        return ""
    from subsetctl.spec import as_written, overrides_under

    hits = ", ".join(as_written(item, written) for item in overrides_under(overrides, keys))
    if not hits:
        return ""
    if planned:
        return f" ({worded('set on this command line', 'given in overrides')}: {hits})"
    return f" ({worded(f'the last run set {hits} on the command line', f'the last run set {hits} in its overrides')})"


def typed_overrides(manifest: dict[str, Any]) -> dict[str, str]:
    """The overrides a stage's ``manifest`` records that named a search strategy or a source,
    as recorded (with its index) -> as the user typed them (``sources.wiki.max_examples=5``):
    what `plan`'s "the last run set" and the report quote. Empty for a manifest an earlier
    subsetctl wrote, which records the first form alone."""
    typed = manifest.get("overrides_as_written")
    if not isinstance(typed, dict):
        return {}
    return {str(recorded): str(item) for recorded, item in typed.items()}


def _input_name(key: str, old: Any, new: Any) -> str:
    """What an extra input is, for `plan`: the data stage's are keyed by source (whose
    file, or whose loader plugin's code, changed, or whose CSV file of CRLF lines is read
    otherwise since: :func:`~subsetctl.data.fingerprint._cells_read`; a file of mixed line ends
    whose header's CRLF had its cells' CRLF read as LF before has them read as written now)."""
    if key == "model_files":
        return "model folder (model.source)"
    if key == "model_package":  # a packaged model's plugin package: "myplug 0.1.0"
        return f"packaged model (model.source){_package_change({'package': old}, {'package': new})}"
    if key == "selection_order":
        return "the order of the search strategies and baselines in the spec"
    if (isinstance(old, dict) and isinstance(new, dict) and "test_loader" in old.keys() | new.keys()
            and {k: v for k, v in old.items() if k != "test_loader"} == {k: v for k, v in new.items() if k != "test_loader"}):
        return f"{key} (its test_loader's: the test rows alone)"  # the stages reading the train side stay up to date
    if (isinstance(old, dict) and isinstance(new, dict) and "cells" in new and "cells" not in old
            and old.get("file") == new.get("file")):  # (a ``where``'s rows: their digests changed with it)
        return f"{key} (its CSV file's CRLF line breaks inside cells now read as LF)"
    if (isinstance(old, dict) and isinstance(new, dict) and "cells" in old and "cells" not in new
            and old.get("file") == new.get("file")):  # (a file of mixed line ends, its header's CRLF: read so before)
        return f"{key} (its CSV file has mixed line ends: the line breaks inside its cells are now read as written, not as LF)"
    if isinstance(old, dict) and isinstance(new, dict) and "code" in new and old.get("code") != new["code"]:
        return f"{key} (its loader plugin's code{_package_change(old['code'], new['code'])})"
    if key == "plugin code" and isinstance(old, dict) and isinstance(new, dict):  # {"strategy best_single": ...}
        edited = sorted(name for name in new if name in old and old[name] != new[name])
        if edited:
            packages = "".join(_package_change(old[name], new[name]) for name in edited)
            return f"the code of the {listed_briefly(edited)} plugin{'s' if len(edited) > 1 else ''}{packages}"
    return key


def _package_change(old: Any, new: Any) -> str:
    """", myplug 0.1.0 -> 0.2.0" when a plugin's code fingerprint (see
    :meth:`subsetctl.registry.Registry.code_fingerprint`) names another installed package
    release than before; "" otherwise (its file edited, or not an installed plugin)."""
    then, now = ((value.get("package") if isinstance(value, dict) else None) for value in (old, new))
    if then == now or now is None:
        return ""
    name, _, version = now.partition(" ")
    before = then.partition(" ")[2] if isinstance(then, str) and then.partition(" ")[0] == name else None
    return f", {name} {before} -> {version}" if before else f", now {now}"


def as_recorded(old: Any, new: dict[str, Any],
                earlier: Callable[[], list[dict[str, Any]]]) -> dict[str, Any]:
    """Of a stage's extra inputs now (``new``) and as an earlier subsetctl counted them
    (``earlier()``), those counted as ``old`` (a manifest's) was, by its sources' keys: what
    changed is said of the files, not of how they are counted (a `where` source's rows, its
    whole file before). ``earlier()`` is not called where ``old`` is ``new``."""
    if not isinstance(old, dict) or old == new:
        return new
    forms = [new, *earlier()]

    def counted_alike(extra: dict[str, Any]) -> int:
        return sum(1 for k in set(old) & set(extra)
                   if isinstance(old[k], dict) and isinstance(extra[k], dict) and set(old[k]) == set(extra[k]))

    return max(forms, key=counted_alike)  # (the first of the best: now's, when all count alike)


def _plugins_coming_or_going(old: Any, new: Any) -> str | None:
    """What `plan` says when a plugin the stage uses came or went (a loader registered as
    ``jsonl`` that now stands in for the built-in, or no longer does): not a file that
    changed, so not among the "input files changed"."""
    old, new = (value if isinstance(value, dict) else {} for value in (old, new))
    added, gone = sorted(set(new) - set(old)), sorted(set(old) - set(new))
    parts = ([f"a plugin now used as {listed_briefly(added)}"] if added else []) + (
        [f"no plugin used as {listed_briefly(gone)} any more"] if gone else [])
    return "; ".join(parts) or None


def changed_inputs(old: Any, new: dict[str, Any], earlier_model: tuple[str, str] | None = None,
                   n_sources: int | None = None, kind: str | None = None,
                   lacking: frozenset[str] = frozenset(), *, report_format_apart: bool = False) -> str | None:
    """Why the extra inputs differ, for `plan`: the sources whose data files changed, or
    the model folder (``model_files``, from a model stage). A source added or removed is
    left to the spec's reason; a model folder the earlier run did not record is said as
    such, not as a change: ``earlier_model`` (origin, ``model.source``) when that run read
    a hub id or a packaged model, known by name (:func:`model_known_by_name`), else it
    predates model fingerprints. ``n_sources`` and ``kind`` (``model.kind``), the spec's, leave
    out of a report's format additions those a project of that many sources or that kind never
    gets, and ``lacking`` those made from results an earlier subsetctl did not keep, which a run
    of the report alone does not add (:func:`~subsetctl.report.build.added_since`). With
    ``report_format_apart``, the report's format (:func:`report_format_change`) is left to the
    caller, which gives it as a reason of its own."""
    old = old if isinstance(old, dict) else {}
    moved = "switched_off_moved_past"  # the report stage's: switched-off stages whose settings changed
    order = "selection_order"  # the report stage's: a setting of the spec, not a file
    report_format = "report_format"  # the report stage's: what this subsetctl writes into it
    seeds = "random_seeds"  # the search's: its later random baselines' seeds, from the spec (said by its change)
    anew = "model_named_anew"  # the report stage's: the model folder by the spec's name for it now
    outside = "model_moved_outside"  # the report stage's: the outside model folder the spec's relative path leads to now
    commits = "finetune_commits_noted"  # the report stage's: finetune's adapters trained from another commit
    changed = sorted(k for k in set(old) & set(new) if old[k] != new[k]
                     and k not in (moved, order, report_format, "overrides", seeds, anew, outside, commits))
    code = "plugin code"  # present only while some plugin is used: its coming or going is a change too
    # (plugin code that only gained or lost entries is named as it is: no plugin's file was edited)
    shown = [name for name in (_input_name(k, old[k], new[k]) for k in changed) if name != code]
    parts = []
    if shown:
        parts.append(f"input files changed: {listed_briefly(shown)}")
    coming_or_going = _plugins_coming_or_going(old.get(code), new.get(code))
    if coming_or_going:
        parts.append(coming_or_going)
    if old.get(commits) != new.get(commits):
        parts.append("the finetune stage's adapters trained from another commit of the hub model than it records "
                     "now (its base_model.json, which the report names them from) are not those the report names")
    if order in old and order in new and old[order] != new[order]:
        parts.append(f"{_input_name(order, old[order], new[order])} changed")
    if "model_package" in new and "model_package" not in old:  # recorded since (or another packaged model)
        parts.append(f"the packaged model (model.source) is now known by its package too, {new['model_package']}")
    if "answer_tokenization" in new and "answer_tokenization" not in old:
        parts.append("answers are now tokenized after the prompt: an older subsetctl tokenized each alone, "
                     "and this model's SentencePiece-style tokenizer gave them other ids then")
    rescored = "exact_match_answers" in new and "exact_match_answers" not in old
    losses = "per_row_test_losses" in new and "per_row_test_losses" not in old
    if losses and not rescored:  # the evaluate stage's
        parts.append("the report now compares the final pick and the baselines row by row on the test split: "
                     "test results kept without their per-row losses get them (one pass over the test rows per "
                     "adapter, nothing generated or fine-tuned again)")
    if rescored:  # the evaluate stage's
        parts.append("exact match now compares answers in one Unicode form (NFKC: NFC and NFD 'café' alike, "
                     "full-width '１２' as '12') and drops other scripts' sentence-final marks ('東京。' = '東京'): "
                     "the test answers kept were scored otherwise: they are re-scored from the kept answers, nothing "
                     "generated (an adapter whose answers are not kept is evaluated again)"
                     + ("; those kept without their per-row test losses get them, one pass over the test rows per "
                        "adapter" if losses else ""))
    written_by = None if report_format_apart else report_format_change(old, new, n_sources, kind, lacking)
    if written_by:
        parts.append(written_by)
    if seeds in new and seeds not in old:
        parts.append("the random baselines after the first now draw with seeds of their own (from project.seed and "
                     "their labels): an earlier subsetctl drew them all from project.seed (two of one size picked "
                     "the same sources), so their picks may change")
    if "model_files" in new and "model_files" not in old:
        parts.append(_unrecorded_model_files(earlier_model))
    if old.get("overrides") != new.get("overrides"):  # the report stage's: its "made with overrides" line
        now = list(new.get("overrides") or {})
        parts.append(f"the command-line overrides the results it shows were made with are now {listed_briefly(now)}" if now
                     else "the results it shows are now the spec's alone (made without command-line overrides, or "
                          "with values the spec file now holds)")
    if old.get(anew) != new.get(anew):
        names = sorted(set((new.get(anew) or {}).values()))
        parts.append(f"the model folder, the same files, is named {listed_briefly([repr(n) for n in names])} in the spec now (its results, "
                     "up to date, recorded another path): the report names it so" if names else
                     "the spec names the model folder as the results recorded it again")
    if old.get(outside) != new.get(outside):
        folders = sorted(set((new.get(outside) or {}).values()))
        parts.append(f"the model folder outside the project that model.source leads to is {listed_briefly(folders)} now "
                     "(the results, up to date, read it elsewhere): the report names it so" if folders else
                     "the model folder outside the project is where the results read it again")
    if old.get(moved) != new.get(moved):
        parts.append(f"results it shows are of switched-off stages whose settings changed: "
                     f"{listed_briefly(new.get(moved) or [])}" if new.get(moved) else
                     "switched-off stages whose results it left out match the spec again")
    return "; ".join(parts) or None


def report_format_change(old: Any, new: dict[str, Any], n_sources: int | None = None, kind: str | None = None,
                         lacking: frozenset[str] = frozenset()) -> str | None:
    """`plan`'s reason for a report stage whose report.json and report.md another subsetctl
    wrote (its extra inputs ``old`` record another ``report_format`` than ``new``), beginning
    with :data:`REPORT_WRITTEN_BY`; None where the format is this one's. ``n_sources``, ``kind``
    and ``lacking`` as :func:`changed_inputs`'."""
    key = "report_format"
    old = old if isinstance(old, dict) else {}
    if key not in new or old.get(key) == new[key]:
        return None
    from subsetctl.report.build import added_since

    later = old.get(key)
    added = added_since(later, n_sources, kind, lacking)
    return (f"{REPORT_WRITTEN_BY} a later subsetctl (their format {later}; this "
            f"one writes {new[key]}): written again as this one writes them"
            if isinstance(later, int) and later > new[key] else
            f"{REPORT_WRITTEN_BY} an earlier subsetctl, without what this one "
            f"writes there ({added}): written again from the stages' results" if added else
            f"{REPORT_WRITTEN_BY} an earlier subsetctl (their format {later}; this "
            f"one writes {new[key]}, adding nothing this project's results give it): "
            "written again from the stages' results")


def model_known_by_name(old_inputs: Any, manifest: dict[str, Any], source_now: str,
                         project_root: Path) -> tuple[str, str] | None:
    """("hub" or "packaged", ``model.source``) when a stage's results were made from a hub
    id or a packaged model and ``model.source`` now names something else: such a model is
    known by its name, its files are not recorded, so a local folder of the same files
    cannot be matched to it. The origin meta_init recorded is taken where there is one;
    else the recorded name is classified as it stands now. None otherwise."""
    from subsetctl.modeling.resolve import classify_model_source, model_location

    slice_ = old_inputs.get("slice") if isinstance(old_inputs, dict) else None
    model = slice_.get("model") if isinstance(slice_, dict) else None
    source = model.get("source") if isinstance(model, dict) else None
    if not isinstance(source, str) or source == source_now:
        return None
    summary = manifest.get("summary")
    origin = summary.get("model", {}).get("origin") if isinstance(summary, dict) and isinstance(
        summary.get("model"), dict) else None
    if origin is None:
        try:
            origin = classify_model_source(model_location(source, project_root))
        except UserError:
            return None
    return (origin, source) if origin in ("hub", "packaged") else None


#: how `plan`'s reason for a report stage whose report.json and report.md another subsetctl
#: wrote (another report format: :func:`report_format_change`, a reason of its own) begins:
#: one :func:`said_of_another_subsetctl` leaves out
REPORT_WRITTEN_BY = "report.json and report.md were written by"


#: what `plan`'s reasons say of results another subsetctl made whose inputs this one reads
#: otherwise (:func:`said_of_another_subsetctl`)
_ANOTHER_SUBSETCTL = ("an older subsetctl", "an earlier subsetctl", "a later subsetctl", "this subsetctl also reads",
                      "this subsetctl no longer reads", "this subsetctl computes results otherwise")


def said_of_another_subsetctl(reasons: list[str]) -> bool:
    """Whether `plan`'s ``reasons`` for a stale stage name a way another subsetctl (the one
    that made its results) read its inputs otherwise than this one: after an upgrade a stage
    can be stale with nothing of the spec or its files changed, which `report` then says.
    The report stage's reason saying another subsetctl wrote report.json and report.md
    (:func:`report_format_change`, which :meth:`~subsetctl.pipeline.Pipeline.plan` gives as a
    reason of its own) does not count: `report` shows the report as this one writes
    it, from the stages' results, whatever wrote the files, so a report stale for its format
    and for a changed spec was said to be of results "this subsetctl reads otherwise" (a
    project run with overrides, then `report` after an upgrade), as if the upgrade made the
    stages before it re-run."""
    return any(mark in reason for reason in reasons if not reason.startswith(REPORT_WRITTEN_BY)
               for mark in _ANOTHER_SUBSETCTL)


def _unrecorded_model_files(earlier_model: tuple[str, str] | None) -> str:
    """`plan`'s reason when a model stage's run recorded no model folder files and one is
    read now: the run read a model known by name (``earlier_model``), or an older subsetctl
    made it."""
    if earlier_model is None:
        return ("the model folder's files were not recorded by the run that made these results "
                "(an older subsetctl), so they cannot be checked")
    origin, source = earlier_model
    back = " (offline it loads from the local Hugging Face cache, as before)" if origin == "hub" else ""
    return (f"made from the {'hub' if origin == 'hub' else 'packaged'} model {source!r}, known by its name, not "
            f"its files, so this local folder cannot be matched to it even with the same files; to keep these "
            f"results, set model.source back to {source!r}{back}")
