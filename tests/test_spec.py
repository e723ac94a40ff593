"""The spec schema: defaults, unknown keys, error locations, overrides, schema file."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import pytest
import yaml

from subsetctl.errors import SpecError
from subsetctl.spec import (
    Spec,
    apply_overrides,
    indexed_overrides,
    json_schema,
    key_lines,
    load_spec,
    overrides_that_change,
    parse_key_path,
    validate_data,
)

MINIMAL = {
    "target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
    "sources": [{"name": "s", "loader": {"type": "jsonl", "path": "s.jsonl"}}],
}



def test_overrides_that_change_leave_out_those_giving_the_files_own_values() -> None:
    """Only overrides that make the settings other than the file's count as overrides: one
    equal to the file's value, one a later override replaces, and a pair that ends on the
    file's value are not (the report said results made with `finetune.steps=5` on a spec
    holding ``steps: 5`` were "made with command-line overrides")."""
    data = {**MINIMAL, "finetune": {"steps": 5, "lr": 0.1}}
    assert overrides_that_change(data, ["finetune.steps=5"]) == []
    assert overrides_that_change(data, ["finetune.steps=6"]) == ["finetune.steps=6"]
    assert overrides_that_change(data, ["finetune.steps=6", "finetune.steps=5"]) == []
    assert overrides_that_change(data, ["finetune.steps=6", "finetune.steps=6"]) == ["finetune.steps=6"]
    assert overrides_that_change(data, ["finetune.steps=6", "finetune={steps: 7, lr: 0.1}"]) == [
        "finetune={steps: 7, lr: 0.1}"]
    assert overrides_that_change(data, ["sources[0].name=s", "gradients.d=8"]) == ["gradients.d=8"]
    assert overrides_that_change(data, ["sources[-1].name=u"]) == ["sources[-1].name=u"]
    assert overrides_that_change(data, ["no-equals-sign"]) == ["no-equals-sign"]  # refused elsewhere


def test_an_override_of_a_quoted_dotted_mapping_key_is_recorded_by_its_own_key() -> None:
    """`sources[0].label_map."v1.2"=q` was compared at `label_map.v1.2` read back as two keys
    (neither there), so a change was not recorded as made on the command line (no "set on this
    command line"); named by its source (`sources.a.label_map."v1.2"=x`), the key lost its quotes
    and set label_map.v1 to {'2': 'x'}: refused, where the spec's own value is no change."""
    data = {**MINIMAL, "sources": [{"name": "a", "label_map": {"v1.2": "x"}}]}
    assert overrides_that_change(data, ['sources[0].label_map."v1.2"=x']) == []
    assert overrides_that_change(data, ['sources[0].label_map."v1.2"=q']) == ['sources[0].label_map."v1.2"=q']
    assert overrides_that_change(data, ['sources[0].label_map."v1.2"=q', "sources[0].label_map.v1=r"]) == [
        'sources[0].label_map."v1.2"=q', "sources[0].label_map.v1=r"]  # (another key, not one replacing it)
    indexed = indexed_overrides(data, ['sources.a.label_map."v1.2"=x'])
    assert indexed == ['sources[0].label_map."v1.2"=x']
    assert apply_overrides(data, indexed)["sources"][0]["label_map"] == {"v1.2": "x"}


@pytest.fixture
def cli_words():
    """Messages worded as the CLI gives them ("set on the command line: ..."), which the tests
    taking this pin; from Python they name the API's arguments (test_api.py)."""
    from subsetctl.errors import cli_wording

    with cli_wording():
        yield

def test_minimal_spec_gets_defaults() -> None:
    spec = Spec.model_validate(MINIMAL)
    assert spec.gradients.d == 128
    assert spec.executor.backend == "loky"
    assert spec.model.trust_remote_code is False
    assert spec.target.split.validation == 0.25


def test_unknown_key_names_path_and_line() -> None:
    text = "target:\n  name: t\n  loader: {type: jsonl, path: t.jsonl}\nsources:\n  - name: s\n    loader:\n      type: jsonl\n      path: s.jsonl\n      colour: red\n"
    import yaml

    spec, issues = validate_data(yaml.safe_load(text), "x.yaml", text)
    assert spec is None
    assert [i.key for i in issues] == ["sources[0].loader.colour"]
    assert issues[0].line == 9
    assert "unknown key" in issues[0].message


@pytest.mark.parametrize("written, read_as", [("yes", "the boolean True"), ("1", "the number 1"), ("~", "nothing (null)")])
def test_a_key_yaml_reads_as_no_text_is_named_as_written_at_its_line(written: str, read_as: str) -> None:
    """`yes:` (a boolean to YAML), `1:` or `~:` as a key: pydantic's location held the key as a
    number (`project[1]`, also for `yes`), at the line of the section, with "Keys should be
    strings"; the issue names the key as written, at its line, and says what YAML read."""
    text = f"project:\n  name: p\n  {written}: 2\n" + yaml.safe_dump(MINIMAL)
    spec, issues = validate_data(yaml.safe_load(text), "x.yaml", text)
    assert spec is None
    assert [(i.key, i.line) for i in issues] == [(f"project.{written}", 3)]
    assert f"a key must be text, and YAML read this one as {read_as}" in issues[0].message


@pytest.mark.parametrize("written, named", [("\u00a0\u00a0seed: 1", "U+00A0 (NO-BREAK SPACE)"),
                                           ("  se\u200bed: 1", "U+200B (ZERO WIDTH SPACE)")])
def test_an_unknown_key_holding_a_character_that_prints_as_a_space_or_nothing_says_so(written: str,
                                                                                      named: str) -> None:
    """A no-break space pasted as indentation (or a zero-width space in a key) makes a key
    that prints as `  seed` or `seed`: it was refused as an unknown key with no hint of why."""
    text = "project:\n  name: p\n" + written + "\n" + yaml.safe_dump(MINIMAL)
    spec, issues = validate_data(yaml.safe_load(text), "x.yaml", text)
    assert spec is None and len(issues) == 1 and issues[0].line == 3
    assert f"it holds {named}, which YAML takes as part of the key's name" in issues[0].message


@pytest.mark.parametrize("section, settings", [("meta_init", {"batch_size": 10**15}),
                                               ("finetune", {"steps": 100_000, "grad_accum": 100_000}),
                                               ("verify", {"batch_size": 10**10}),
                                               ("estimate", {"sgd": {"steps": 10**12}})])
def test_a_training_run_too_long_to_draw_its_batch_order_for_is_refused(section: str, settings: dict) -> None:
    """`meta_init.batch_size: 1e15` passed validate, and `run` hung drawing the batch order
    (steps x batch_size indices) until memory ran out, with nothing said."""
    data = {**copy.deepcopy(MINIMAL), section: settings}
    spec, issues = validate_data(data, "x.yaml")
    assert spec is None and [i.key for i in issues] == [section if section != "estimate" else "estimate.sgd"]
    assert "examples, more than the 1,000,000,000 one fine-tune can draw its batch order for" in issues[0].message
    assert validate_data({**copy.deepcopy(MINIMAL), section: {"sgd": {"steps": 1000}} if section == "estimate"
                          else {"steps": 1000, "batch_size": 64}}, "x.yaml")[0]


def test_a_very_long_invalid_name_is_shown_cut_short() -> None:
    """A 5,000-character source name was echoed whole in its "is not a valid name" issue."""
    data = copy.deepcopy(MINIMAL)
    data["sources"][0]["name"] = "y" * 5000
    spec, issues = validate_data(data, "x.yaml")
    assert spec is None and [i.key for i in issues] == ["sources[0].name"]
    assert issues[0].message.startswith(f"{'y' * 40!r}... (5,000 characters) is not a valid name")
    assert len(issues[0].message) < 300


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda d: d["sources"].append(dict(d["sources"][0])), "sources[1]"),  # at the duplicate
        (lambda d: d["sources"].append({"name": "t", "loader": {"type": "jsonl", "path": "x"}}), "sources[1]"),
        (lambda d: d.update(gradients={"d": -3}), "gradients.d"),
        (lambda d: d.update(calibrate={"lambda_grid": [1.0, 0.0]}), "calibrate.lambda_grid"),
        (lambda d: d["target"].update(split={"train": 0.9, "validation": 0.5}), "target.split"),
    ],
)
def test_invalid_values_are_reported(mutate, key) -> None:
    import copy

    data = copy.deepcopy(MINIMAL)
    mutate(data)
    spec, issues = validate_data(data, "x.yaml")
    assert spec is None
    assert key in [i.key for i in issues]


def test_duplicate_and_target_names_messages() -> None:
    import copy

    data = copy.deepcopy(MINIMAL)
    data["sources"].append({"name": "s", "loader": {"type": "jsonl", "path": "y"}})
    _, issues = validate_data(data, "x.yaml")
    assert "duplicate source name 's'" in issues[0].message
    data = copy.deepcopy(MINIMAL)
    data["sources"][0]["name"] = "t"
    _, issues = validate_data(data, "x.yaml")
    assert "sources[0] has the target's name 't'" in issues[0].message


def test_overrides_with_indices_are_type_checked(tmp_path: Path) -> None:
    assert parse_key_path("sources[0].max_examples") == ["sources", 0, "max_examples"]
    assert parse_key_path("a[0][1].b") == ["a", 0, 1, "b"]
    with pytest.raises(SpecError, match=r"write a dot after 'sources\[0\]' \(sources\[0\]\.max_examples\)"):
        parse_key_path("sources[0]max_examples")  # was read as sources[0].max_examples
    data = apply_overrides(MINIMAL, ["sources[0].max_examples=50", "gradients.d=256"])
    spec = Spec.model_validate(data)
    assert spec.sources[0].max_examples == 50 and spec.gradients.d == 256
    assert "max_examples" not in MINIMAL["sources"][0]  # the input is not mutated
    bad = apply_overrides(MINIMAL, ["gradients.d=lots"])
    _, issues = validate_data(bad, "x")
    assert issues[0].key == "gradients.d"
    with pytest.raises(SpecError, match=r"sources\[5\] does not exist"):
        apply_overrides(MINIMAL, ["sources[5].name=x"])
    with pytest.raises(SpecError, match="must look like key=value"):
        apply_overrides(MINIMAL, ["no-equals-sign"])
    for dotted in ("sources.0.max_examples=5", "sources.0=x"):  # a list item with a dot: say how to write it
        with pytest.raises(SpecError, match=r"sources is a list, not a mapping: name an item with brackets, sources\[0\]"):
            apply_overrides(MINIMAL, [dotted])


def test_a_strategy_is_named_in_an_override_by_its_label_or_name_and_two_answering_are_refused() -> None:
    """A strategy's params were reachable by index only (`search.strategies[2].params.k=3`), which
    changes with the list's order: `search.strategies.NAME...` names it by its label, else its name,
    and is written with its index for what follows; a name two strategies answer to, or none, is
    refused saying which there are."""
    data = {**MINIMAL, "search": {"strategies": [{"name": "forward"}, {"name": "random", "params": {"k": 1}},
                                                 {"name": "random", "label": "r2"}]}}
    assert indexed_overrides(data, ["search.strategies.forward.params.max_steps=2", "search.strategies.r2.params.k=3",
                                    "gradients.d=8", "search.strategies[1].params.k=2"]) == [
        "search.strategies[0].params.max_steps=2", "search.strategies[2].params.k=3", "gradients.d=8",
        "search.strategies[1].params.k=2"]
    spec = Spec.model_validate(apply_overrides(data, indexed_overrides(data, ["search.strategies.r2.params.k=3"])))
    assert spec.search.strategies[2].params == {"k": 3} and spec.search.strategies[1].params == {"k": 1}
    # as the overrides before it leave the list: a label given on the command line names it after
    assert indexed_overrides(data, ["search.strategies[1].label=r1", "search.strategies.r1.params.k=4"])[1] == \
        "search.strategies[1].params.k=4"
    with pytest.raises(SpecError, match=r"2 strategies answer to 'random' \(search.strategies\[1\] random, "
                                        r"search.strategies\[2\] random \(label r2\)\): name one by its index, "
                                        r"search.strategies\[1\].params.k=5"):
        indexed_overrides(data, ["search.strategies.random.params.k=5"])
    with pytest.raises(SpecError, match=r"no strategy is named or labelled 'nope' \(the strategies: "
                                        r"search.strategies\[0\] forward, "):
        indexed_overrides(data, ["search.strategies.nope.params.k=5"])
    assert indexed_overrides(data, ["search.strategies.0.params.k=5"]) == ["search.strategies.0.params.k=5"]  # as was
    # a spec file listing no strategies (the default one): said so, not "expected a list, got a mapping"
    with pytest.raises(SpecError, match=r"the spec lists no search.strategies to name 'random_ensemble' among"):
        indexed_overrides(MINIMAL, ["search.strategies.random_ensemble.params.m=5"])


def test_a_source_is_named_in_an_override_and_a_name_none_or_two_answer_to_is_refused_listing_them() -> None:
    """A source's settings were reachable by index only (`sources[3].max_examples=50`), which
    changes with the list's order, and `sources.wiki.max_examples=50` said "sources is not a
    mapping": the source named wiki is set, written with its index for what follows; a name no
    source answers to is refused listing the sources (of many, the closest names and how many),
    one two answer to naming both, and a group's source says to override the group."""
    data = {**MINIMAL, "sources": [{"name": n, "loader": {"type": "jsonl", "path": f"{n}.jsonl"}} for n in ("a", "wiki", "b")]}
    assert indexed_overrides(data, ["sources.wiki.max_examples=50", "sources.b={name: b, weight: 2}",
                                    "sources[0].max_examples=3", "sources.0.max_examples=3"]) == [
        "sources[1].max_examples=50", "sources[2]={name: b, weight: 2}", "sources[0].max_examples=3",
        "sources.0.max_examples=3"]  # (as was: apply_overrides says to write [0])
    assert Spec.model_validate(apply_overrides(data, indexed_overrides(data, ["sources.wiki.max_examples=5"]))
                               ).sources[1].max_examples == 5
    # as the overrides before it leave the list: a name given on the command line names it after
    assert indexed_overrides(data, ["sources[0].name=c", "sources.c.max_examples=4"])[1] == "sources[0].max_examples=4"
    # a name close to one there is suggests it, the override written with it (as a mistyped key's "did you mean")
    with pytest.raises(SpecError, match=r"no source is named 'wik' \(the sources: sources\[0\] a, sources\[1\] wiki, "
                                        r"sources\[2\] b\); did you mean 'wiki' \(sources\.wiki\.max_examples=5\)\?$"):
        indexed_overrides(data, ["sources.wik.max_examples=5"])
    twice = {**MINIMAL, "sources": [{"name": "a"}, {"name": "a"}]}
    with pytest.raises(SpecError, match=r"2 sources answer to 'a' \(sources\[0\] a, sources\[1\] a\): name one by "
                                        r"its index, sources\[0\].max_examples=5\.$"):
        indexed_overrides(twice, ["sources.a.max_examples=5"])
    many = {**MINIMAL, "sources": [{"name": f"task_{i}"} for i in range(500)]}
    with pytest.raises(SpecError, match=r"\(the sources: sources\[42\] task_42, .*, \.\.\. \(500 sources\)\)") as refused:
        indexed_overrides(many, ["sources.task_42x.max_examples=5"])
    assert str(refused.value).count("sources[") == 10
    grouped = {**MINIMAL, "source_files": [{"path": "tasks/*.jsonl"}]}
    with pytest.raises(SpecError, match=r"override a group's settings \(source_files\[0\].max_examples=5\)"):
        indexed_overrides({**grouped, "sources": [{"name": "a"}]}, ["sources.tasks_x.max_examples=5"])
    with pytest.raises(SpecError, match=r"the spec lists no sources to name 'x' among\. This spec lists its sources "
                                        r"as source_files groups"):
        indexed_overrides({key: value for key, value in grouped.items() if key != "sources"}, ["sources.x.max_examples=5"])


def test_a_source_named_with_digits_is_named_in_an_override_unquoted_when_no_index_or_quoted() -> None:
    """A source named 2024 could not be named at all: `sources.2024.max_examples=5` was taken for
    an index written with a dot ("name an item with brackets, sources[2024]"). Unquoted, it names
    the source when no item has that index; quoted it is always a name (and may hold dots); when
    it is a name and an index both, it is refused saying how to write each."""
    data = {**MINIMAL, "sources": [{"name": n} for n in ("a", "2024", "1", "v1.2")]}
    assert indexed_overrides(data, ["sources.2024.max_examples=5", 'sources."1".max_examples=6',
                                    "sources.'v1.2'.max_examples=7", 'sources."a".weight=2']) == [
        "sources[1].max_examples=5", "sources[2].max_examples=6", "sources[3].max_examples=7", "sources[0].weight=2"]
    with pytest.raises(SpecError, match=r"^Override 'sources.1.max_examples=5': 1 is both the name of a source "
                                        r"\(sources\[2\]\) and an index of sources \(sources\[1\] is 2024\)\. Write "
                                        r"sources\[1\]\.max_examples=5 for the source at index 1, or "
                                        r"sources\.\"1\"\.max_examples=5 for the source named 1 \(in a shell, quote the "
                                        r"whole override: 'sources\.\"1\"\.max_examples=5'\)\.$"):
        indexed_overrides(data, ["sources.1.max_examples=5"])
    assert indexed_overrides(data, ["sources.0.max_examples=5"]) == ["sources.0.max_examples=5"]  # no source named 0
    at_its_index = {**MINIMAL, "sources": [{"name": n} for n in ("a", "1")]}  # named 1, at index 1: either way
    assert indexed_overrides(at_its_index, ["sources.1.max_examples=5"]) == ["sources[1].max_examples=5"]
    with pytest.raises(SpecError, match=r"no source is named '3'"):
        indexed_overrides(data, ['sources."3".max_examples=5'])
    with pytest.raises(SpecError, match=r"a quoted part is a whole name between two quotes"):
        parse_key_path('sources."2024.max_examples')
    assert parse_key_path("sources.o'brien.x") == ["sources", "o'brien", "x"]  # (a quote inside a part is the name's)


def test_a_dotted_source_or_strategy_name_written_unquoted_is_told_to_quote_it() -> None:
    """`sources.v1.2.max_examples=5` looks for a source named v1 (the key's dots split the
    name): it said only "no source is named 'v1'"; it says which quoted key names v1.2."""
    data = {**MINIMAL, "sources": [{"name": n} for n in ("a", "v1.2")],
            "search": {"strategies": [{"name": "forward", "label": "fwd.v2"}]}}
    with pytest.raises(SpecError, match=re.escape(
            "no source is named 'v1' (the sources: sources[0] a, sources[1] v1.2). 'v1.2' is a source whose name "
            'holds a dot, which an unquoted key splits: name it in quotes, sources."v1.2".max_examples=5 (in a '
            "shell, quote the whole override: 'sources.\"v1.2\".max_examples=5').")):
        indexed_overrides(data, ["sources.v1.2.max_examples=5"])
    with pytest.raises(SpecError, match=re.escape('name it in quotes, search.strategies."fwd.v2".params.k=3 ')):
        indexed_overrides(data, ["search.strategies.fwd.v2.params.k=3"])
    with pytest.raises(SpecError, match=r"\(the sources: sources\[0\] a, sources\[1\] v1\.2\)\.$"):
        indexed_overrides(data, ["sources.v1.3.max_examples=5"])  # no such name: nothing more said
    assert indexed_overrides(data, ['sources."v1.2".max_examples=5']) == ["sources[1].max_examples=5"]


def test_the_quoted_key_an_error_suggests_is_one_the_override_parser_reads_back() -> None:
    """The keys the errors suggest put every name in double quotes: for a source named
    `say "hi".v2` they gave `sources."say "hi".v2".max_examples=5`, which the parser refuses. A
    name holding a double quote is suggested in single ones (and the shell form quotes that),
    one holding both kinds by its index, one a bare key misreads (`"q"`) in quotes alone."""
    import shlex

    data = {**MINIMAL, "sources": [{"name": n} for n in ("a", 'say "hi".v2', "both'\".v3", "wiki.v2")]}
    with pytest.raises(SpecError) as told:
        indexed_overrides(data, ['sources.say "hi".v2.max_examples=5'])
    said = str(told.value)
    fixed = """sources.'say "hi".v2'.max_examples=5"""
    assert f"name it in quotes, {fixed} (in a shell, quote the whole override: {shlex.quote(fixed)})." in said, said
    assert indexed_overrides(data, [fixed]) == ["sources[1].max_examples=5"]  # what it suggests is read back
    assert "did you mean" not in said  # (the close name's key kept the split-off part: ...v2'.v2.max_examples)
    with pytest.raises(SpecError, match=re.escape("name it by its index (its name holds both kinds of quote), "
                                                  "sources[2].max_examples=5 ")):
        indexed_overrides(data, ["sources.both'\".v3.max_examples=5"])
    with pytest.raises(SpecError, match=re.escape("did you mean 'wiki.v2' (sources.\"wiki.v2\".max_examples=5)?")):
        indexed_overrides(data, ["sources.wiki_v2.max_examples=5"])  # (the close name has a dot: quoted)
    with pytest.raises(SpecError, match=re.escape('name it in quotes, sources."wiki.v2".label_map."k.j"=x ')):
        indexed_overrides(data, ['sources.wiki.v2.label_map."k.j"=x'])  # (a quoted part after it: kept quoted)
    for key, suggested in (("""sources['say "hi"'].max_examples""", """in quotes, sources.'say "hi"'.max_examples"""),
                           ("""sources['"q"'].max_examples""", """in quotes as this one's name needs, sources.'"q"'.max_examples."""),
                           ("""sources["it's \\"x\\""].max_examples""", "quote cannot be written in a key: name it by its index.")):
        with pytest.raises(SpecError) as told:
            parse_key_path(key)
        assert suggested in str(told.value), str(told.value)
    assert parse_key_path("""sources.'"q"'.max_examples""") == ["sources", '"q"', "max_examples"]


def test_an_override_yaml_cannot_read_as_a_list_is_echoed_as_typed() -> None:
    """`search.strategies=[{name: x\\y}` (no closing bracket) is text, and the error echoed it
    with each backslash doubled ('[{name: x\\\\y}'), text nobody typed: it shows it as typed."""
    data = apply_overrides(MINIMAL, ["search.strategies=[{name: x\\y}"])
    _, issues = validate_data(data, "x.yaml")
    said = " ".join(issue.message for issue in issues)
    assert "expected a list, got the text '[{name: x\\y}' (in YAML" in said, said


def test_an_override_holding_a_quote_is_echoed_as_typed_too() -> None:
    """`search.strategies=[{name: it's\\x}`: text holding a ' fell back to repr, which doubled
    each backslash ("[{name: it's\\\\x}"); it is shown in double quotes as typed. A value
    holding both quotes is still escaped, so that the message says what is there."""
    data = apply_overrides(MINIMAL, ["search.strategies=[{name: it's\\x}"])
    _, issues = validate_data(data, "x.yaml")
    said = " ".join(issue.message for issue in issues)
    assert 'expected a list, got the text "[{name: it\'s\\x}" (in YAML' in said, said
    from subsetctl.errors import as_typed

    assert as_typed("a'b\"c\\d") == repr("a'b\"c\\d")


def test_a_quoted_name_may_hold_a_slash_or_an_equals_sign() -> None:
    """A quoted part of a key holding "=" was cut there (the override was split at its first
    "="), so `sources[0].label_map."k=v"=pos` or a strategy registered as "ns=fwd" could not
    be given: the first "=" outside the quotes splits key and value. A name holding both kinds
    of quote cannot be written in a key at all: the error says how to set it instead."""
    from subsetctl.spec.overrides import override_keys, split_override

    assert split_override('sources[0].label_map."k=v"=a=b') == ('sources[0].label_map."k=v"', "a=b")
    assert split_override("o'brien.x=1") == ("o'brien.x", "1")  # (a quote inside a name opens nothing)
    assert split_override('sources."a=b"') == ('sources."a=b"', None)
    data = {**MINIMAL, "search": {"strategies": [{"name": "ns/fwd"}, {"name": "ns=fwd"}]}}
    applied = apply_overrides(data, ['sources[0].label_map."k=v"=pos', "sources[0].label_map.'x/y'=neg"])
    assert applied["sources"][0]["label_map"] == {"k=v": "pos", "x/y": "neg"}
    assert indexed_overrides(data, ['search.strategies."ns=fwd".params.k=3', 'search.strategies."ns/fwd".params.k=4']) \
        == ["search.strategies[1].params.k=3", "search.strategies[0].params.k=4"]
    assert override_keys(['sources[0].label_map."k=v"=pos']) == [("sources[0].label_map.k=v",
                                                                  'sources[0].label_map."k=v"=pos')]
    with pytest.raises(SpecError, match="must look like key=value"):
        apply_overrides(data, ['sources[0].label_map."k=v"'])
    with pytest.raises(SpecError, match=re.escape(
            "a name holding both cannot be written in a key: set the mapping that holds it whole (e.g. "
            "sources[0].label_map={...}, its value as YAML)")):
        apply_overrides(data, ["""sources[0].label_map."it's "x""=1"""])


def test_a_source_or_strategy_named_in_brackets_is_told_to_name_it_after_a_dot() -> None:
    """`report --compare` keys the settings that differ by source name, `sources[wiki].max_examples`;
    pasted as an override it said only "not a dotted key path like a.b[0].c": it says how to name one."""
    with pytest.raises(SpecError, match=re.escape(
            "Override key 'sources[wiki].max_examples' is not a dotted key path like a.b[0].c. Brackets take an "
            "index (sources[0].max_examples); a source is named after a dot, sources.wiki.max_examples, or in "
            'quotes, sources."wiki".max_examples, when its name is all digits or has dots.')):
        parse_key_path("sources[wiki].max_examples")
    with pytest.raises(SpecError, match=r"a strategy is named after a dot, search\.strategies\.fwd\.params\.k"):
        parse_key_path("search.strategies[fwd].params.k")
    for quoted in ('sources["wiki"].max_examples', "sources['wiki'].max_examples"):  # as Python indexes a dict
        with pytest.raises(SpecError, match=re.escape(
                'a source is named after a dot, sources.wiki.max_examples, or in quotes, sources."wiki".max_examples,')):
            parse_key_path(quoted)
    for other in ("a[x]", "sources[-1].name"):  # no list items are named in, or an index that is no index: as was
        with pytest.raises(SpecError, match=r"like a\.b\[0\]\.c\.$"):
            parse_key_path(other)


def test_an_override_naming_a_key_where_an_item_goes_is_told_to_name_one_item() -> None:
    """`sources.max_examples=3` (meant for every source) said only "no source is named
    'max_examples'": it is a key of each source, set on one at a time."""
    data = {**MINIMAL, "sources": [{"name": n, "loader": {"type": "jsonl", "path": f"{n}.jsonl"}} for n in ("a", "b")]}
    with pytest.raises(SpecError, match=r"no source is named 'max_examples' .*'max_examples' is a key of each source, "
                                        r"not a source's name: .*\(sources\.NAME\.max_examples=3\) or by its index "
                                        r"\(sources\[0\]\.max_examples=3\)"):
        indexed_overrides(data, ["sources.max_examples=3"])
    with pytest.raises(SpecError, match=r"'params' is a key of each strategy"):
        indexed_overrides({**MINIMAL, "search": {"strategies": [{"name": "forward"}]}}, ["search.strategies.params={}"])
    with pytest.raises(SpecError) as unknown:  # a name that is no key: no such advice
        indexed_overrides(data, ["sources.wiki=3"])
    assert "is a key of each" not in str(unknown.value)


def test_validate_and_load_spec_apply_an_override_naming_a_source(jsonl_project: Path) -> None:
    """Through validate (and so plan and run) and load_spec, as a strategy's name is."""
    from subsetctl.api import validate_spec_file

    path = jsonl_project / "subsetctl.yaml"
    checked = validate_spec_file(path, ["sources.b.max_examples=3"])
    assert checked.ok and [s.max_examples for s in checked.spec.sources] == [None, 3], checked.issues
    assert load_spec(path, ["sources.a.max_examples=2"]).sources[0].max_examples == 2
    unknown = validate_spec_file(path, ["sources.c.max_examples=3"])
    assert not unknown.ok and "no source is named 'c' (the sources: sources[0] a, sources[1] b)" in unknown.issues[0].message


def test_validate_applies_and_blames_an_override_naming_a_strategy(jsonl_project: Path) -> None:
    """Through validate (and so plan and run): the named strategy's params are set, and an issue
    in them is blamed on the override, not on a line of the file."""
    from subsetctl.api import validate_spec_file

    path = jsonl_project / "subsetctl.yaml"
    data = yaml.safe_load(path.read_text())
    data["search"] = {"strategies": [{"name": "forward"}, {"name": "random", "params": {"k": 1}}]}
    path.write_text(yaml.safe_dump(data))
    checked = validate_spec_file(path, ["search.strategies.random.params.k=2"])
    assert checked.ok and checked.spec.search.strategies[1].params == {"k": 2}, checked.issues
    bad = validate_spec_file(path, ["search.strategies.random.params.k=abc"])
    assert not bad.ok and bad.issues[0].line is None
    assert "(set on the command line" in bad.issues[0].message or "(given in overrides" in bad.issues[0].message
    # load_spec, the Python reader, takes the strategy's name as validate does (it said "not a mapping")
    assert load_spec(path, ["search.strategies.random.params.k=3"]).search.strategies[1].params == {"k": 3}


def test_messages_quote_an_override_naming_a_strategy_or_source_as_it_was_written(jsonl_project: Path) -> None:
    """An override naming a strategy or a source is written with its index for what follows, and
    the messages quoted that form (`set on the command line: search.strategies[1].params.k=abc`)
    to a user who typed the name: they quote what was written, the spec's keys keeping the index."""
    from subsetctl.api import validate_spec_file

    path = jsonl_project / "subsetctl.yaml"
    data = yaml.safe_load(path.read_text())
    data["search"] = {"strategies": [{"name": "forward"}, {"name": "random", "params": {"k": 1}}]}
    path.write_text(yaml.safe_dump(data))
    [issue] = validate_spec_file(path, ["search.strategies.random.params.k=abc"]).issues
    assert issue.key.startswith("search.strategies[1].params") and "[1].params.k=abc" not in issue.message
    assert issue.message.endswith("(given in overrides: search.strategies.random.params.k=abc)."), issue.message
    assert ". (given in overrides" not in issue.message, issue.message  # its sentence's full stop after it
    [issue] = validate_spec_file(path, ["search.strategies.random.name.x=1"]).issues  # applying it failed
    assert issue.message == ("Override 'search.strategies.random.name.x=1': search.strategies[1].name is not a "
                             "mapping."), issue.message
    [issue] = validate_spec_file(path, ["sources.b.name=007"]).issues  # the quotes to type: on what was typed
    assert "in overrides: 'sources.b.name=\"007\"'" in issue.message and issue.message.endswith(
        "(given in overrides: sources.b.name=007)"), issue.message
    with pytest.raises(SpecError, match=re.escape("Override 'sources.b.max_examples.x=1': sources[1].max_examples")):
        load_spec(path, ["sources.b.max_examples=3", "sources.b.max_examples.x=1"])


def test_an_override_of_one_source_leaves_a_source_aliasing_its_settings_alone() -> None:
    """`loader: *ld` is the anchored mapping itself, which deepcopy kept shared: the override
    `sources[0].loader.path=b.jsonl` read b.jsonl for the aliasing source too."""
    text = ("target: {name: t, loader: {type: jsonl, path: t.jsonl}}\nsources:\n"
            "  - {name: a, loader: &ld {type: jsonl, path: a.jsonl}, corrupt: &c {shuffle_responses: false}}\n"
            "  - {name: b, loader: *ld, corrupt: *c}\n")
    data = yaml.safe_load(text)
    out = apply_overrides(data, ["sources[0].loader.path=b.jsonl", "sources[1].corrupt.shuffle_responses=true"])
    assert [s["loader"]["path"] for s in out["sources"]] == ["b.jsonl", "a.jsonl"]
    assert [s["corrupt"]["shuffle_responses"] for s in out["sources"]] == [False, True]
    assert data == yaml.safe_load(text)  # the spec's data as read: not changed


def test_an_override_value_with_a_hash_is_kept_whole() -> None:
    """YAML reads ` #...` as a comment: `project.name=run #2` became "run" and
    `project.name=#2` nothing. On a command line the `#` is part of the value."""
    data = apply_overrides(MINIMAL, ["project.name=run #2", "sources[0].name=#2", "target.name=a#b"])
    assert data["project"]["name"] == "run #2" and data["sources"][0]["name"] == "#2"
    assert data["target"]["name"] == "a#b"
    data = apply_overrides(MINIMAL, ["gradients.d=32 # more", "gradients.seed=7", "model.lora.target_modules=[q, v]"])
    assert data["gradients"]["seed"] == 7 and data["model"]["lora"]["target_modules"] == ["q", "v"]
    _, issues = validate_data(data, "x")  # "32 # more" is not a number, and says so
    assert [i.key for i in issues] == ["gradients.d"]



def test_a_blank_override_value_is_text_as_an_empty_one_is() -> None:
    """`key=` gave empty text but `key=  ` nothing (YAML reads blanks as null): validate
    said "expected text, got nothing (null)", and a space could not be given as a CSV
    delimiter. A blank value is the text written; `key=null` (or `~`) still says nothing."""
    group = {"files": "*.csv", "loader": {"type": "csv"}}
    data = apply_overrides({**MINIMAL, "source_files": [group]},
                           ["project.name=", "target.name=  ", "source_files[0].loader.delimiter= ",
                            "sources[0].max_examples=~"])
    assert (data["project"]["name"], data["target"]["name"]) == ("", "  ")
    assert data["sources"][0]["max_examples"] is None
    _, issues = validate_data(data, "x")
    assert [i.key for i in issues] == ["target.name"] and "null" not in issues[0].message
    data["target"]["name"] = "t"
    assert Spec.model_validate(data).source_files[0].loader.delimiter == " "


def test_an_override_list_or_map_in_block_form_with_a_hash_is_kept_whole() -> None:
    """Only text after YAML's last token counted as a comment, and a block list's or map's
    last token ends the text: `- a #b` became ['a'] and `a: b #c` {'a': 'b'}, the '#...'
    silently dropped. Values without a '#' are read as before."""
    from subsetctl.spec import override_value

    assert override_value("- a #b") == "- a #b"
    assert override_value("q_proj: x #1") == "q_proj: x #1"
    assert override_value("[a,\n#b\n]") == "[a,\n#b\n]"
    assert override_value("- a\n- b") == ["a", "b"] and override_value("a: b") == {"a": "b"}
    assert override_value("'a #b'") == "a #b" and override_value("[a, '#b']") == ["a", "#b"]
    assert override_value("|\n  a #b") == "a #b" and override_value("x#1") == "x#1"

def test_a_data_file_given_as_the_spec_is_said_to_be_one(tmp_path: Path) -> None:
    """`subsetctl validate train.jsonl` said "malformed YAML: expected '<document start>', but
    found '{'. Fix the syntax and retry.", with no word that a data file is no spec; a JSON
    list, "not a list"; a Parquet file, its NUL bytes. A spec's own syntax error keeps its advice."""
    said = "looks like a data file, not a spec: give the spec file (usually subsetctl.yaml) or the project folder"
    for name, content in (("train.jsonl", b'{"prompt": "a", "response": "b"}\n{"prompt": "c", "response": "d"}\n'),
                          ("rows.json", b"[1, 2]\n"), ("t.parquet", b"PAR1\x00\x01"), ("t.csv", b"\xff\xfe,x\n")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(SpecError) as refused:
            load_spec(tmp_path / name)
        assert f"{name} {said}" in str(refused.value) and "Fix the syntax" not in str(refused.value), str(refused.value)
    for name, text in (("bad.yaml", "target: [unclosed\n"), ("spec.json", '{"project": {"name": "x"')):
        (tmp_path / name).write_text(text, encoding="utf-8")  # (a spec may be written in JSON, which YAML reads)
        with pytest.raises(SpecError, match="Fix the syntax and retry") as refused:
            load_spec(tmp_path / name)
        assert "data file" not in str(refused.value)
    for name, raw in (("spec.json", '{"project": {"name": "x"}}'.encode("utf-16-le")),
                      ("spec.txt", b"project:\n  name: caf\xe9\n")):
        (tmp_path / name).write_bytes(raw)  # (a spec in JSON saved as UTF-16, or Latin-1: not data)
        with pytest.raises(SpecError, match="Save it as UTF-8") as refused:
            load_spec(tmp_path / name)
        assert "data file" not in str(refused.value)


def test_a_one_line_data_file_given_as_the_spec_is_said_to_be_one(tmp_path: Path) -> None:
    """A JSON Lines file of one record (or one and a blank line) reads as YAML as one mapping:
    `subsetctl validate train.jsonl` said "prompt: unknown key", "response: unknown key",
    "target: required key is missing", where a longer one was told it is a data file. A record
    with a `target` text field, or chat `messages`, is no spec either; a spec written in JSON is."""
    said = "looks like a data file, not a spec: give the spec file (usually subsetctl.yaml) or the project folder"
    for name, text in (("train.jsonl", '{"prompt": "a", "response": "b"}\n'),
                       ("two.jsonl", '{"prompt": "a", "response": "b"}\n\n'),
                       ("row.json", '{"prompt": "a", "target": "b"}'),
                       ("chat.jsonl", '{"messages": [{"role": "user", "content": "hi"}]}\n')):
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(SpecError) as refused:
            load_spec(tmp_path / name)
        assert f"{name} {said}" in str(refused.value) and "unknown key" not in str(refused.value), str(refused.value)
    (tmp_path / "spec.json").write_text(json.dumps(MINIMAL), encoding="utf-8")
    assert load_spec(tmp_path / "spec.json").sources[0].name == "s"


def test_a_json_spec_whose_sections_are_all_misspelled_is_refused_key_by_key_not_as_a_data_file(
        tmp_path: Path) -> None:
    """The one-line data file check took any .json mapping without a spec section for a data
    record: a spec in JSON whose sections were all misspelled (`modle`, `targte`, `sourcse`) was
    told it "looks like a data file". Misspelled sections are a spec's: each is named with the
    key meant. A record whose text field is named like a section (`source`) is still a data file."""
    spec = {"modle": {"source": "m"}, "targte": MINIMAL["target"], "sourcse": MINIMAL["sources"]}
    (tmp_path / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(SpecError) as refused:
        load_spec(tmp_path / "spec.json")
    assert "data file" not in str(refused.value) and "did you mean 'model'" in str(refused.value), str(refused.value)
    (tmp_path / "upper.json").write_text(json.dumps({"MODEL": {"source": "m"}, "TARGET": MINIMAL["target"]}))
    with pytest.raises(SpecError) as refused:
        load_spec(tmp_path / "upper.json")
    assert "data file" not in str(refused.value) and "MODEL" in str(refused.value), str(refused.value)
    (tmp_path / "row.jsonl").write_text('{"source": "wiki", "text": "a"}\n', encoding="utf-8")
    with pytest.raises(SpecError, match="row.jsonl looks like a data file"):
        load_spec(tmp_path / "row.jsonl")


def test_a_json_spec_whose_sections_are_all_far_off_is_refused_key_by_key_not_as_a_data_file(
        tmp_path: Path) -> None:
    """A spec in JSON whose section names are no misspelling of a spec's (`basemodel`, `goal`,
    `datasets`) was told it "looks like a data file". A mapping of mappings, or one with a
    source's or target's shape (a mapping with a `loader`, or a list of them), is a spec's: its
    keys are named as unknown. A record with one mapping among its text is still a data file."""
    for spec in ({"basemodel": {"source": "m"}, "goal": MINIMAL["target"], "datasets": MINIMAL["sources"],
                  "title": "x"},
                 {"settings": {"seed": 1}, "goal": {"name": "t"}}):
        (tmp_path / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
        with pytest.raises(SpecError) as refused:
            load_spec(tmp_path / "spec.json")
        said = str(refused.value)
        assert "data file" not in said and "goal: unknown key" in said, said
    (tmp_path / "row.json").write_text('{"prompt": "a", "response": "b", "meta": {"from": "wiki"}}', encoding="utf-8")
    with pytest.raises(SpecError, match="row.json looks like a data file"):
        load_spec(tmp_path / "row.json")


def test_a_one_record_jsonl_file_of_mappings_is_a_data_file_not_a_spec(tmp_path: Path) -> None:
    """A JSON Lines file of one record whose values are all mappings (``{"meta": {...}, "extra":
    {...}}``) was taken for a spec in JSON with far-off section names and refused key by key
    ("meta: unknown key", "target: required key is missing"). JSON Lines holds data, never a
    spec: it is said to be a data file. The same mapping in a .json file is still a spec's."""
    record = '{"meta": {"from": "wiki"}, "extra": {"n": 1}}\n'
    (tmp_path / "one.jsonl").write_text(record, encoding="utf-8")
    with pytest.raises(SpecError) as refused:
        load_spec(tmp_path / "one.jsonl")
    said = str(refused.value)
    assert "one.jsonl looks like a data file, not a spec" in said and "unknown key" not in said, said
    assert "its keys: meta, extra" in said, said
    (tmp_path / "spec.json").write_text(record, encoding="utf-8")
    with pytest.raises(SpecError) as refused:
        load_spec(tmp_path / "spec.json")
    assert "data file" not in str(refused.value) and "meta: unknown key" in str(refused.value), str(refused.value)


def test_load_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("target: [unclosed\n", encoding="utf-8")
    with pytest.raises(SpecError, match="malformed YAML"):
        load_spec(bad)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SpecError, match="UTF-8"):
        load_spec(binary)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n", encoding="utf-8")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(scalar)


def test_yaml_tags_are_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("!!python/object/apply:os.system ['echo hacked']\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"evil.yaml:1: .*constructor for the tag .*python/object/apply"):
        load_spec(evil)


def test_yaml_merge_keys_work_and_a_key_given_beside_them_wins(tmp_path: Path) -> None:
    """`<<: *base` failed as "malformed YAML: could not determine a constructor for the tag
    'tag:yaml.org,2002:merge'": the duplicate-key check read the merge key as a plain key."""
    path = tmp_path / "subsetctl.yaml"
    path.write_text(
        "target:\n  name: t\n  loader: &base\n    type: jsonl\n    path: t.jsonl\n    prompt_field: q\n"
        "sources:\n  - name: s\n    loader:\n      <<: *base\n      path: s.jsonl\n", encoding="utf-8")
    spec = load_spec(path)
    assert spec.sources[0].loader.path == "s.jsonl" and spec.sources[0].loader.prompt_field == "q"
    path.write_text(path.read_text() + "    loader:\n      path: x.jsonl\n", encoding="utf-8")
    with pytest.raises(SpecError, match="key 'loader' appears twice"):  # a real duplicate still is one
        load_spec(path)


def test_key_lines_maps_nested_paths() -> None:
    lines = key_lines("a:\n  b:\n    - x: 1\n    - y: 2\n")
    assert lines[("a", "b", 1, "y")] == 4


def test_a_value_brought_in_by_a_merge_is_blamed_at_the_line_that_writes_it(tmp_path: Path) -> None:
    """A wrong value that `<<: *base` brought in was reported at the line of the mapping
    using it (`finetune:`), where it is not written; a key given beside the merge wins, as
    in YAML, and so does the first of several merged mappings."""
    from subsetctl.spec import merged_keys

    text = ("meta_init: &train\n  steps: 3\n  lr: -1\n"           # lines 1-3
            "other: &more\n  lr: 5\n  batch_size: 2\n"             # lines 4-6
            "finetune:\n  <<: [*train, *more]\n  steps: 2\n")      # lines 7-9
    lines = key_lines(text)
    assert lines[("finetune", "lr")] == 3 and lines[("finetune", "batch_size")] == 6  # the first merged wins
    assert lines[("finetune", "steps")] == 9  # given beside the merge
    assert merged_keys(text) == {("finetune", "lr"): 8, ("finetune", "batch_size"): 8}

    path = tmp_path / "subsetctl.yaml"
    path.write_text("target:\n  name: t\n  loader: {type: jsonl, path: t.jsonl}\n"
                    "sources:\n  - &base\n    name: a\n    loader: {type: jsonl, path: a.jsonl}\n"
                    "    max_examples: -5\n  - <<: *base\n    name: b\n", encoding="utf-8")
    with pytest.raises(SpecError) as refused:
        load_spec(path)
    message = str(refused.value)
    assert "subsetctl.yaml:8: sources[1].max_examples" in message, message
    assert "(brought in by the `<<` merge at line 9)" in message, message
    assert "subsetctl.yaml:8: sources[0].max_examples" in message and message.count("brought in") == 1, message


def test_schema_file_is_in_sync() -> None:
    """specs/subsetctl.schema.json must equal `subsetctl schema` (regenerate with
    `subsetctl schema > specs/subsetctl.schema.json`)."""
    path = Path(__file__).resolve().parents[1] / "specs" / "subsetctl.schema.json"
    assert json.loads(path.read_text()) == json_schema()


def _files_project(tmp_path: Path, groups: list[dict], sources: list[dict] | None = None) -> Path:
    folder = tmp_path / "data" / "sources"
    (folder / "sub").mkdir(parents=True)
    for rel in ("a.jsonl", "b.jsonl", "sub/c d.jsonl"):
        (folder / rel).write_text('{"prompt": "1", "response": "2"}\n' * 4)
    (tmp_path / "t.jsonl").write_text('{"prompt": "1", "response": "2"}\n' * 8)
    spec = {"target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"},
                       "split": {"train": 4, "validation": 2, "test": 2}},
            "sources": sources or [], "source_files": groups}
    path = tmp_path / "subsetctl.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_source_files_expand_to_one_source_per_file(tmp_path: Path) -> None:
    listed = [{"name": "listed", "loader": {"type": "jsonl", "path": "t.jsonl"}}]
    path = _files_project(tmp_path, [{"files": "data/sources/**/*.jsonl", "loader": {"type": "jsonl"},
                                      "max_examples": 3, "name_prefix": "f-"}], listed)
    spec = load_spec(path)
    assert [s.name for s in spec.sources] == ["listed", "f-a", "f-b", "f-sub.c_d"]
    assert spec.sources[3].loader.path == "data/sources/sub/c d.jsonl" and spec.sources[3].max_examples == 3
    assert spec.source_files == []  # resolved specs list plain sources; re-validating them is stable
    assert Spec.model_validate(spec.model_dump(mode="json")).model_dump() == spec.model_dump()
    flat = load_spec(_files_project(tmp_path / "x", [{"files": "data/sources/*.jsonl", "loader": {"type": "jsonl"}}]))
    assert [s.name for s in flat.sources] == ["a", "b"]
    pool = tmp_path / "x" / "data" / "sources"  # a pool outside the project: absolute, or through ..
    for pattern, path in ((f"{pool}/*.jsonl", f"{pool}/a.jsonl"), ("../../x/data/sources/*.jsonl", "../../x/data/sources/a.jsonl")):
        spec = load_spec(_files_project(tmp_path / "y" / str(len(pattern)), [{"files": pattern, "loader": {"type": "jsonl"}}]))
        assert (spec.sources[0].name, spec.sources[0].loader.path) == ("a", path)


def test_a_group_matching_no_file_does_not_hide_the_targets_and_listed_sources_problems(tmp_path: Path) -> None:
    """validate of a spec whose `source_files` group matched no file said that alone; the
    target's missing test file and a listed source's missing file came in a second round."""
    from subsetctl.api import validate_spec_file

    listed = [{"name": "listed", "loader": {"type": "jsonl", "path": "nowhere.jsonl"}}]
    path = _files_project(tmp_path, [{"files": "data/shards/*.jsonl", "loader": {"type": "jsonl"}}], listed)
    keys = {issue.key for issue in validate_spec_file(path).issues}
    assert keys == {"source_files[0].files", "sources[0].loader.path"}, keys


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="symbolic links")
def test_source_files_star_star_does_not_follow_a_symlink_loop(tmp_path: Path) -> None:
    """`**` followed data/sources/sub/up -> .. round and round: one link made the same
    files dozens of sources (sub.up.a, sub.up.sub.up.a, ...), a few made validate hang."""
    path = _files_project(tmp_path, [{"files": "data/sources/**/*.jsonl", "loader": {"type": "jsonl"}}])
    (tmp_path / "data" / "sources" / "sub" / "up").symlink_to("..", target_is_directory=True)
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "e.jsonl").write_text('{"prompt": "1", "response": "2"}\n' * 4)
    (tmp_path / "data" / "sources" / "pool").symlink_to(tmp_path / "pool", target_is_directory=True)
    assert [s.name for s in load_spec(path).sources] == ["a", "b", "pool.e", "sub.c_d"]  # a link out: followed


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="symbolic links")
def test_star_star_resolves_only_linked_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`**` resolved every folder it entered to check for a loop (~45% of the walk, 73-180 s
    to the folder limit below `/`): a folder reached through no link cannot loop, so only the
    start and the links are resolved, and a link back up is still not followed."""
    from subsetctl import globbing

    for i in range(20):
        (tmp_path / f"p{i % 4}" / f"s{i}").mkdir(parents=True)
        (tmp_path / f"p{i % 4}" / f"s{i}" / "f.jsonl").touch()
    (tmp_path / "p0" / "s0" / "up").symlink_to("../..", target_is_directory=True)
    (tmp_path / "p1" / "out").symlink_to(tmp_path / "p2", target_is_directory=True)
    resolved: list[str] = []
    realpath = os.path.realpath
    monkeypatch.setattr(globbing.os.path, "realpath", lambda p, **kw: resolved.append(p) or realpath(p, **kw))
    found = globbing.glob_without_loops("**/*.jsonl", tmp_path)
    assert len(found) == 20 + 5, sorted(found)  # p2's 5 files again through p1/out; none through up
    assert len(resolved) == 3, resolved  # the start, up and out


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="symbolic links")
def test_a_group_reaching_the_targets_file_through_a_linked_folder_or_a_link_leaves_it_out(tmp_path: Path) -> None:
    """A group's files are resolved folder by folder (10,000 files resolved one by one took
    seconds of every command): the target's file reached through a linked folder, or by a
    link of its own, is still the target's."""
    path = _files_project(tmp_path, [{"files": "data/sources/**/*.jsonl", "loader": {"type": "jsonl"}}])
    (tmp_path / "data" / "sources" / "top").symlink_to(tmp_path, target_is_directory=True)  # top/t.jsonl
    (tmp_path / "data" / "sources" / "sub" / "alias.jsonl").symlink_to(tmp_path / "t.jsonl")
    assert [s.name for s in load_spec(path).sources] == ["a", "b", "sub.c_d"]


def test_source_files_names_for_any_file_name_and_the_target_left_out(tmp_path: Path) -> None:
    path = _files_project(tmp_path, [{"files": "**/*.jsonl", "loader": {"type": "jsonl"}}])
    pool = tmp_path / "data" / "sources"
    for name in ("中文.jsonl", "русский.jsonl", "café.jsonl"):
        (pool / name).write_text('{"prompt": "1", "response": "2"}\n' * 4)
    names = [s.name for s in load_spec(path).sources]  # t.jsonl (the target's file) is matched, and left out
    assert "t" not in names and "data.sources.cafe" in names
    ids = [n for n in names if n.startswith("data.sources.file-")]
    assert len(ids) == 2 and len(set(ids)) == 2  # no letters to keep: distinct, stable ids
    import gzip

    (pool / "zipped.jsonl.gz").write_bytes(gzip.compress(b'{"prompt": "1", "response": "2"}\n'))
    spec_path = _files_project(tmp_path / "gz", [{"files": str(pool / "*.jsonl.gz"), "loader": {"type": "jsonl"}}])
    assert [s.name for s in load_spec(spec_path).sources] == ["zipped"]  # not "zipped.jsonl"


def test_source_files_through_a_folder_named_with_brackets_is_told_the_escaped_pattern(tmp_path: Path) -> None:
    """An absolute `files: /x/runs [v2]/data/sources/*.jsonl` matched nothing (glob reads
    `[v2]` as one of 'v' or '2'), and the message said only "matches no file" while the
    folder was there as written: it gives the pattern with `[` escaped, which matches."""
    from subsetctl.api import validate_spec_file

    project = tmp_path / "runs [v2]"
    path = _files_project(project, [{"files": f"{project}/data/sources/*.jsonl", "loader": {"type": "jsonl"}}])
    (issue,) = validate_spec_file(path).issues
    escaped = f"{tmp_path}/runs [[]v2]/data/sources/*.jsonl"
    assert "matches no file" in issue.message and f"write {escaped!r}" in issue.message, issue.message
    assert validate_spec_file(path, [f"source_files[0].files={escaped}"]).ok


def test_source_files_naming_a_folder_is_told_the_pattern_of_its_files(tmp_path: Path) -> None:
    """`files: data/sources` (a folder of shards) "matched no file", and "Check the pattern"
    did not say that a pattern matches files: the message gives the folder's pattern for the
    group's loader type, and the loader that reads the folder as one source."""
    from subsetctl.api import validate_spec_file

    path = _files_project(tmp_path, [{"files": "data/sources/", "loader": {"type": "jsonl"}}])
    (issue,) = validate_spec_file(path).issues
    assert "It is a folder, and a pattern matches files: write files: data/sources/*.jsonl" in issue.message
    assert "{type: huggingface, path: data/sources/}" in issue.message
    assert "Check the pattern" not in issue.message
    assert validate_spec_file(path, ["source_files[0].files=data/sources/*.jsonl"]).ok
    path = _files_project(tmp_path / "x", [{"files": "data/none", "loader": {"type": "csv"}}])
    (issue,) = validate_spec_file(path).issues  # no such folder: as before
    assert "It is a folder" not in issue.message and "Check the pattern or remove the group." in issue.message


def test_source_files_problems_name_the_group_and_file(tmp_path: Path) -> None:
    from subsetctl.api import validate_spec_file

    path = _files_project(tmp_path, [{"files": "data/none/*.csv", "loader": {"type": "csv"}}])
    (issue,) = validate_spec_file(path).issues
    assert issue.key == "source_files[0].files" and "matches no file" in issue.message and issue.line
    path = _files_project(tmp_path / "x", [{"files": "data/sources/*.jsonl", "loader": {"type": "jsonl"}}],
                          [{"name": "a", "loader": {"type": "jsonl", "path": "t.jsonl"}}])
    (issue,) = validate_spec_file(path).issues
    assert issue.key == "source_files[0] (data/sources/a.jsonl)" and "duplicate source name 'a'" in issue.message
    assert issue.line == key_lines(path.read_text())[("source_files", 0)]
    path = _files_project(tmp_path / "y", [{"files": "data/sources/**/*.jsonl", "loader": {"type": "jsonl"},
                                            "split": {"train": 0, "test": 1.0}}])
    (issue,) = validate_spec_file(path).issues  # one problem of every file: listed once
    assert issue.key == "source_files[0] (data/sources/a.jsonl and 2 more files).split.train"
    assert "needs training examples" in issue.message


def test_a_problem_many_files_of_a_group_share_is_said_once(tmp_path: Path) -> None:
    """A group split asking for more rows than most of its files have was one line per file
    (each message names its own file and row count, so they were not alike): 2,000 lines
    at 2,000 files. Many files are one problem, with the count, a few of the files and the
    row counts' range; a few files keep their own messages."""
    from subsetctl.api import validate_spec_file

    folder = tmp_path / "data" / "sources"
    folder.mkdir(parents=True)
    for n in range(12):  # 10 files of 3 or 4 rows, 2 of 40
        (folder / f"x_{n:02d}.jsonl").write_text('{"prompt": "1", "response": "2"}\n' * (40 if n > 9 else 3 + n % 2))
    path = _files_project(tmp_path, [{"files": "data/sources/x_*.jsonl", "loader": {"type": "jsonl"},
                                      "name_prefix": "p-", "split": {"train": 10}}])
    report = validate_spec_file(path)
    (issue,) = report.issues
    assert not report.ok
    assert issue.key == ("source_files[0] (10 of 12 files: data/sources/x_00.jsonl, data/sources/x_01.jsonl, "
                         "data/sources/x_02.jsonl and 7 more).split"), issue.key
    assert "asks for 10 examples" in issue.message and "has at most 3 to 4 (file <each file> has 3 to 4" in issue.message
    assert "lower the counts" in issue.message and issue.line == key_lines(path.read_text())[("source_files", 0, "split")]
    for n in range(2, 10):
        (folder / f"x_{n:02d}.jsonl").write_text('{"prompt": "1", "response": "2"}\n' * 40)
    few = validate_spec_file(path).issues  # 2 files: each its own message, naming its own file and rows
    assert [i.key for i in few] == ["source_files[0] (data/sources/x_00.jsonl).split",
                                    "source_files[0] (data/sources/x_01.jsonl).split"]
    assert "x_00.jsonl has 3 non-blank lines" in few[0].message and "x_01.jsonl has 4 non-blank" in few[1].message


def test_a_line_number_that_differs_between_files_is_not_merged_into_a_span_of_lines(tmp_path: Path) -> None:
    """Merging one problem of many files of a group turned their differing numbers into a
    range, fit for counts but not for places: "line 1 to 3 is not JSON" read as if lines 1
    to 3 were all bad in every file. A line number now reads "a line (1 to 3 in different
    files)"; the same line in every file stays "line 2"."""
    from subsetctl.api import validate_spec_file

    folder = tmp_path / "data" / "sources"
    folder.mkdir(parents=True)
    for n in range(7):  # the bad line after 0, 1 or 2 blank lines: line 1, 2 or 3
        (folder / f"x_{n}.jsonl").write_text("\n" * (n % 3) + "not json\n")
    path = _files_project(tmp_path, [{"files": "data/sources/x_*.jsonl", "loader": {"type": "jsonl"}}])
    (issue,) = validate_spec_file(path).issues
    assert "a line (1 to 3 in different files) is not JSON" in issue.message, issue.message
    assert "line 1 to 3" not in issue.message and issue.key.startswith("source_files[0] (all 7 files: ")
    for n in range(7):
        (folder / f"x_{n}.jsonl").write_text("\nnot json\n" + "\n" * n)  # line 2 in each (the blank lines after it: other sizes)
    (issue,) = validate_spec_file(path).issues
    assert "line 2 is not JSON" in issue.message and "different files" not in issue.message, issue.message


def test_a_message_naming_expanded_sources_names_each_file_once() -> None:
    """``sources[i]`` in a message becomes the group and file it was expanded from, each in
    one pass over the message: the message was searched and rewritten once per expanded
    source, so a file named like ``sources[1].jsonl`` was rewritten again when source 1's
    turn came, and 2,000 files that each had a problem took `validate` over 2 minutes."""
    from subsetctl.spec.issues import SpecIssue
    from subsetctl.spec.reading import blame_source_files

    origin = {1: (0, "pool/sources[2].jsonl"), 2: (0, "pool/b.jsonl"), 3: (1, "more/c.jsonl")}
    lines = {("source_files", 0): 7, ("source_files", 1): 9}
    issue = SpecIssue(file="s.yaml", line=None, key="(top level)",
                      message="duplicate source name 'x': sources[2] and sources[1] (sources[12] is listed)")
    (blamed,) = blame_source_files([issue], origin, lines)
    assert blamed.message.startswith(
        "duplicate source name 'x': source_files[0] (pool/b.jsonl) and source_files[0] (pool/sources[2].jsonl) "
        "(sources[12] is listed); a source_files group names its sources after their files")
    assert (blamed.key, blamed.line) == ("source_files[0] (pool/sources[2].jsonl)", 7)


def test_a_file_added_to_a_source_files_group_makes_the_data_stage_stale(tmp_path: Path) -> None:
    from subsetctl.api import plan_project, run_project

    _files_project(tmp_path, [{"files": "data/sources/*.jsonl", "loader": {"type": "jsonl"}}])
    run_project(tmp_path, until="data")
    assert not {s.name: s for s in plan_project(tmp_path)[2]}["data"].will_run
    (tmp_path / "data" / "sources" / "new.jsonl").write_text('{"prompt": "1", "response": "2"}\n' * 4)
    data = {s.name: s for s in plan_project(tmp_path)[2]}["data"]
    assert data.will_run and data.reasons == ["spec changed: sources: added new"]
    run_project(tmp_path, until="data")
    counts = json.loads((tmp_path / ".subsetctl" / "data" / "data.json").read_text())["counts"]
    assert set(counts) == {"t", "a", "b", "new"}


def test_source_files_folders_without_ascii_letters_keep_files_apart(tmp_path: Path) -> None:
    """A folder part with no ASCII form was dropped: 中文/train.jsonl and 日本語/train.jsonl
    were both 'train', a duplicate name the user could only fix by renaming folders."""
    from subsetctl.api import validate_spec_file

    path = _files_project(tmp_path, [{"files": "data/sources/**/*.jsonl", "loader": {"type": "jsonl"}}])
    pool = tmp_path / "data" / "sources"
    for folder in ("中文", "日本語"):
        (pool / folder).mkdir()
        (pool / folder / "train.jsonl").write_text('{"prompt": "1", "response": "2"}\n' * 4)
    assert validate_spec_file(path).ok
    names = [s.name for s in load_spec(path).sources]
    trains = [n for n in names if n.endswith(".train")]
    assert len(trains) == 2 and all(re.fullmatch(r"dir-[0-9a-f]{8}\.train", n) for n in trains)
    assert trains == [s.name for s in load_spec(path).sources if s.name.endswith(".train")]  # stable
def test_source_files_names_of_files_whose_names_are_not_utf8(tmp_path: Path) -> None:
    """A matched file or folder whose name has bytes that are not UTF-8 (a Latin-1 `café.jsonl`
    copied from an old disk, read as surrogate escapes) made `validate`, `plan` and `run` an
    internal error: its name's hash encoded it as UTF-8 (UnicodeEncodeError)."""
    from subsetctl.api import validate_spec_file

    path = _files_project(tmp_path, [{"files": "data/sources/**/*.jsonl", "loader": {"type": "jsonl"}}])
    pool = tmp_path / "data" / "sources"
    (pool / os.fsdecode(b"caf\xe9.jsonl")).write_text('{"prompt": "1", "response": "2"}\n' * 4)
    (pool / os.fsdecode(b"\xff\xfe")).mkdir()
    (pool / os.fsdecode(b"\xff\xfe") / "train.jsonl").write_text('{"prompt": "1", "response": "2"}\n' * 4)
    assert validate_spec_file(path).ok
    names = [s.name for s in load_spec(path).sources]
    assert "caf" in names and any(re.fullmatch(r"dir-[0-9a-f]{8}\.train", n) for n in names), names


def test_group_problems_point_at_the_setting_and_at_an_override(tmp_path: Path, cli_words: None) -> None:
    from subsetctl.api import validate_spec_file

    path = _files_project(tmp_path, [{"files": "data/sources/*.jsonl", "loader": {"type": "jsonl", "response_field": "x"}}])
    (issue,) = validate_spec_file(path).issues
    assert issue.key == "source_files[0] (data/sources/a.jsonl and 1 more files).loader.response_field"
    assert issue.line == key_lines(path.read_text())[("source_files", 0, "loader", "response_field")]
    (issue,) = validate_spec_file(path, ["source_files[0].loader.response_field=y"]).issues
    assert issue.line is None and issue.message.endswith("(set on the command line: source_files[0].loader.response_field=y)")
    with pytest.raises(SpecError, match="empty part"):
        apply_overrides({}, ["gradients..d=1"])


def test_source_files_edge_names_reserved_backslash_parenthesis_long(tmp_path: Path) -> None:
    from subsetctl.api import validate_spec_file

    groups = [{"files": "data/sources/*.jsonl", "loader": {"type": "jsonl"}}]
    path = _files_project(tmp_path, groups)
    pool = tmp_path / "data" / "sources"
    (pool / "data.json.jsonl").write_text('{"prompt": "1", "response": "2"}\n')  # the data stage's own file
    (issue,) = validate_spec_file(path).issues
    assert "data.json" in issue.message and "keeps for its own file" in issue.message
    (pool / "data.json.jsonl").unlink()
    (pool / "work.jsonl").write_text('{"prompt": "1", "response": "2"}\n')  # another stage's scratch name: fine
    assert validate_spec_file(path).ok
    (pool / "work.jsonl").unlink()
    (pool / "a\\1.jsonl").write_text('{"prompt": "1", "response": "2"}\n')  # a backslash: a name clash,
    (pool / "a_1.jsonl").write_text('{"prompt": "1", "response": "2"}\n')  # reported, not a crash
    (issue,) = validate_spec_file(path).issues
    assert "duplicate source name 'a_1'" in issue.message
    for name in ("a\\1.jsonl", "a_1.jsonl"):
        (pool / name).unlink()
    (pool / "x (copy).jsonl").write_text('{"q": "1", "response": "2"}\n')
    (issue,) = validate_spec_file(path, ["source_files[0].loader.response_field=response"]).issues
    assert issue.key == "source_files[0] (data/sources/x (copy).jsonl).loader.prompt_field"
    (pool / "x (copy).jsonl").unlink()
    long = ["p" * 70 + "1.jsonl", "p" * 70 + "2.jsonl"]
    for name in long:
        (pool / name).write_text('{"prompt": "1", "response": "2"}\n')
    names = [s.name for s in load_spec(path).sources]
    assert len(set(names)) == 4 and all(len(n) <= 64 for n in names)  # cut, but distinct


def test_a_boolean_for_a_number_is_refused_at_its_key_and_line(jsonl_project: Path) -> None:
    """pydantic would take `true` as 1, and YAML reads yes/on as true: `seed: yes` passed as 1."""
    from subsetctl.api import validate_spec_file

    path = jsonl_project / "subsetctl.yaml"
    path.write_text(path.read_text().replace("seed: 0", "seed: yes"))
    (issue,) = validate_spec_file(path).issues
    assert issue.key == "project.seed" and issue.line == 3
    assert issue.message.startswith("expected a number, got the boolean true")
    path.write_text(path.read_text().replace("seed: yes", "seed: 0"))
    issues = validate_spec_file(path, ["gradients.d=off", "target.split.train=on", "meta_init.lr=true",
                                       "calibrate.lambda_grid=[1, yes]"]).issues
    assert [i.key for i in issues] == ["target.split.train", "meta_init.lr", "gradients.d", "calibrate.lambda_grid[1]"]
    assert validate_spec_file(path, ["verify.enabled=yes", "report.plots=off"]).ok  # real booleans stay


def test_validate_refuses_infinite_numbers_and_random_subsets_of_one_source(jsonl_project: Path) -> None:
    """Both used to pass validate and stop `run` late: at calibrate (after verify's real
    fine-tunes) and at search."""
    from subsetctl.api import validate_spec_file

    path = jsonl_project / "subsetctl.yaml"
    issues = validate_spec_file(path, ["calibrate.lambda_grid=[.inf]", "verify.lr_ce=.nan"]).issues
    assert {i.key for i in issues} == {"calibrate.lambda_grid[0]", "verify.lr_ce"}
    (issue,) = validate_spec_file(path, ["search.strategies=[{name: random_ensemble, params: {threshold: .nan}}]"]).issues
    assert issue.key == "search.strategies[0].params" and "finite" in issue.message
    one = ["sources=[{name: a, loader: {type: jsonl, path: a.jsonl}}]"]
    for name in ("random_ensemble", "surrogate"):
        (issue,) = validate_spec_file(path, [*one, f"search.strategies=[{{name: {name}}}]"]).issues
        assert issue.key == "search.strategies[0].params" and "needs at least 2 sources" in issue.message
    assert validate_spec_file(path, [*one, "search.strategies=[{name: exhaustive}]"]).ok


def test_a_semantic_issue_on_an_unwritten_key_points_at_its_section(jsonl_project: Path) -> None:
    from subsetctl.api import validate_spec_file

    path = jsonl_project / "subsetctl.yaml"
    data = yaml.safe_load(path.read_text())
    data["sources"] = data["sources"][:1]
    data["search"] = {"strategies": [{"name": "surrogate"}]}  # no params key written
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    (issue,) = validate_spec_file(path).issues
    written = path.read_text().splitlines()
    assert issue.key == "search.strategies[0].params" and issue.line is not None
    assert "surrogate" in written[issue.line - 1]  # the strategy's own line


def test_did_you_mean_suggests_keys_of_the_loader_type_in_use_only() -> None:
    """`file:` on a jsonl loader got "did you mean 'file'?" (a key of the evals loader)."""
    text = ("target:\n  name: t\n  loader: {type: jsonl, path: t.jsonl, file: x, prompt_fild: p}\n"
            "sources:\n  - name: s\n    loader: {type: evals, name: x, fil: y}\n")
    _, issues = validate_data(yaml.safe_load(text), "x.yaml", text)
    by_key = {i.key: i.message for i in issues}
    assert "did you mean" not in by_key["target.loader.file"]
    assert "did you mean 'prompt_field'?" in by_key["target.loader.prompt_fild"]
    assert "did you mean 'file'?" in by_key["sources[0].loader.fil"]  # the evals loader has it


def test_a_name_yaml_read_as_a_number_or_boolean_says_to_quote_it() -> None:
    """`name: 2023` or `name: yes` got pydantic's "Input should be a valid string"."""
    text = ("project: {name: yes}\ntarget:\n  name: t\n  loader: {type: jsonl, path: t.jsonl}\n"
            "sources:\n  - name: 2023\n    loader: {type: jsonl, path: s.jsonl}\n")
    spec, issues = validate_data(yaml.safe_load(text), "x.yaml", text)
    assert spec is None
    by_key = {i.key: i.message for i in issues}
    assert by_key["project.name"].startswith("expected text, got the boolean true (YAML reads unquoted true/false")
    assert by_key["sources[0].name"] == ('expected text, got the number 2023 (YAML reads unquoted numbers as numbers: '
                                         'quote it to keep it text, e.g. "2023")')
    quoted = text.replace("name: 2023", 'name: "2023"').replace("{name: yes}", '{name: "yes"}')
    assert validate_data(yaml.safe_load(quoted), "x.yaml", quoted)[0] is not None


def test_a_number_yaml_reads_as_another_is_to_be_quoted_as_written() -> None:
    """`name: 0042` is octal 34 in YAML: the advice to quote it as "34" renamed the source."""
    text = ("target:\n  name: 1_000\n  loader: {type: jsonl, path: t.jsonl}\n"
            "sources:\n  - {name: 0042, loader: {type: jsonl, path: s.jsonl}}\n  - {name: 7, loader: {type: jsonl, "
            "path: u.jsonl}}\n")
    _, issues = validate_data(yaml.safe_load(text), "x.yaml", text)
    by_key = {i.key: i.message for i in issues}
    assert by_key["sources[0].name"].endswith('quote it to keep it text, as written: "0042"; unquoted, YAML reads '
                                              '0042 as 34)')
    assert 'as written: "1_000"' in by_key["target.name"]
    assert by_key["sources[1].name"].endswith('e.g. "7")')  # written as YAML reads it: as before
    decimal = text.replace("name: 7", "name: 2.10")  # a version-like name: YAML reads the float 2.1
    _, issues = validate_data(yaml.safe_load(decimal), "x.yaml", decimal)
    assert {i.key: i.message for i in issues}["sources[1].name"].endswith(
        'as written: "2.10"; unquoted, YAML reads 2.10 as 2.1)')
    quoted = text.replace("0042", '"0042"').replace("1_000", '"1_000"').replace("name: 7", 'name: "7"')
    assert validate_data(yaml.safe_load(quoted), "x.yaml", quoted)[0].sources[0].name == "0042"


def test_an_override_yaml_reads_as_a_number_is_to_be_quoted_as_typed_inside_shell_quotes(
        jsonl_project: Path, cli_words: None) -> None:
    """`project.name=007` was told to quote it as "7" (the number YAML read, not what was
    typed), and `project.name="007"` as typed in a shell loses its quotes: still the number."""
    from subsetctl.api import validate_spec_file

    path = jsonl_project / "subsetctl.yaml"
    (issue,) = validate_spec_file(path, ["project.name=007"]).issues
    assert issue.message.endswith("""quote it to keep it text; on the command line, inside the shell's quotes: \
'project.name="007"') (set on the command line: project.name=007)""")
    (issue,) = validate_spec_file(path, ["sources[1].name=no"]).issues
    assert """quote the value to keep it text; on the command line, inside the shell's quotes: \
'sources[1].name="no"')""" in issue.message
    assert validate_spec_file(path, ['project.name="007"']).spec.project.name == "007"


def test_a_wrong_boolean_and_an_empty_list_get_messages_in_the_specs_terms() -> None:
    """pydantic's own texts: `enabled: yes please` was "Input should be a valid boolean, unable
    to interpret input" (not the value, nor what to write) and `lambda_grid: []` "List should
    have at least 1 item after validation, not 0"."""
    text = ("target:\n  name: t\n  loader: {type: jsonl, path: t.jsonl}\nsources:\n  - {name: s, loader: "
            "{type: jsonl, path: s.jsonl}}\ncalibrate: {enabled: yes please, lambda_grid: []}\n"
            "verify: {enabled: [1]}\nsearch: {strategies: []}\n")
    _, issues = validate_data(yaml.safe_load(text), "x.yaml", text)
    assert {i.key: i.message for i in issues} == {
        "calibrate.enabled": "expected true or false, got the text 'yes please'",
        "calibrate.lambda_grid": "expected at least 1 item, got an empty list",
        "verify.enabled": "expected true or false, got a list [1]",
        "search.strategies": "expected at least 1 item, got an empty list",
    }


def test_sources_or_strategies_written_as_a_mapping_are_told_to_be_list_items() -> None:
    """`sources: {wiki: {loader: ...}}` (named entries, as in a docker-compose file) and one
    source written without its '- ' were "expected a list, got a mapping {'wiki': {'loader':
    {'type': ...}}}", Python's repr of it, saying nothing of the list item to write."""
    base = "target:\n  name: t\n  loader: {type: jsonl, path: t.jsonl}\n"
    named = base + "sources:\n  wiki: {loader: {type: jsonl, path: w.jsonl}}\n  code: {}\n" \
                   "search:\n  strategies:\n    exhaustive: {params: {max_sources: 3}}\n"
    _, issues = validate_data(yaml.safe_load(named), "x.yaml", named)
    assert {i.key: i.message for i in issues} == {
        "sources": ("expected a list, got a mapping of names (wiki, code): sources is a list whose items each give "
                    "their name, e.g. `- name: wiki` with the rest of its keys under it"),
        "search.strategies": ("expected a list, got a mapping of names (exhaustive): search.strategies is a list "
                              "whose items each give their name, e.g. `- name: exhaustive` with the rest of its "
                              "keys under it"),
    }
    undashed = base + "sources:\n  name: wiki\n  loader: {type: jsonl, path: w.jsonl}\n"
    (issue,) = validate_data(yaml.safe_load(undashed), "x.yaml", undashed)[1]
    assert issue.message == ("expected a list, got one mapping (name: wiki, ...): sources is a list: write '- ' "
                             "before the item's first key (`- name: wiki`), and each further item likewise")


def test_wrong_types_and_loader_types_get_messages_in_the_specs_terms() -> None:
    """pydantic's own texts ("Input tag 'json' found using 'type' does not match...", one
    message per union member, "instance of SourceSpec") said neither what to write nor where."""
    text = ("target:\n  name: t\n  loader:\n    path: t.jsonl\n    type: json\n"
            "  split: {train: half, validation: 0.25}\nsources:\n  - s.jsonl\ngradients: {d: 1.5}\n")
    spec, issues = validate_data(yaml.safe_load(text), "x.yaml", text)
    assert spec is None
    by_key = {i.key: i for i in issues}
    assert set(by_key) == {"target.loader.type", "target.split.train", "sources[0]", "gradients.d"}
    tag = by_key["target.loader.type"]
    assert tag.line == 5 and tag.message.startswith("unknown loader type 'json' (a JSON Lines file, one object a "
                                                    "line: type: jsonl; one JSON array of examples (a .json file): "
                                                    "{type: huggingface, path: json, data_files: [FILE]})")
    assert "`type: plugin`" in tag.message
    assert by_key["target.split.train"].message == "expected a number, got the text 'half'"  # once, not per member
    assert by_key["sources[0]"].message == "expected a mapping of keys (key: value), got the text 's.jsonl'"
    assert by_key["gradients.d"].message == "expected a whole number, got the number 1.5"
    data = yaml.safe_load(text.replace("    type: json\n", ""))
    data["sources"], data["target"]["split"], data["gradients"] = [], {"train": 0.5, "validation": 0.25}, {}
    data["source_files"] = [{"files": "*.jsonl", "loader": {"type": "huggingface"}}]
    _, issues = validate_data(data, "x.yaml")
    assert [(i.key, i.message) for i in issues] == [
        ("target.loader.type", ("the loader needs a `type` (jsonl, csv, parquet, huggingface, reasoning_gym, "
                                "evals or plugin)")),
        ("source_files[0].loader.type", "unknown loader type 'huggingface'. The types are jsonl, csv, parquet."),
    ]


def test_a_loader_type_named_after_a_file_format_says_which_loader_reads_it() -> None:
    """`type: json` (a JSON array) was told "did you mean 'jsonl'?", which then refused the
    array; `type: tsv` "did you mean 'csv'?", which split its rows at commas; `type: text`,
    `hf` or `arrow` nothing. Each is told the loader and options that read such a file; a
    source_files group, which has no huggingface loader, keeps the nearest name."""
    def message(loader: dict, group: bool = False) -> str:
        data = {"target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
                "sources": [] if group else [{"name": "s", "loader": loader}]}
        if group:
            data["source_files"] = [{"files": "*.jsonl", "loader": loader}]
        _, issues = validate_data(data, "x.yaml")
        [issue] = [i for i in issues if i.key.endswith("loader.type")]
        return issue.message

    assert "(a tab-separated file: {type: csv, delimiter: \"\\t\"})" in message({"type": "tsv", "path": "s.tsv"})
    assert "(type: huggingface)" in message({"type": "hf", "path": "d"})
    assert "{type: huggingface, path: FOLDER}" in message({"type": "arrow", "path": "d"})
    # (not "no loader reads plain text", which loader.text_field does)
    assert "{type: huggingface, path: text, data_files: [FILE], text_field: text}" in message({"type": "text"})
    assert "(did you mean 'jsonl'?)" in message({"type": "json"}, group=True)
    assert "(did you mean 'jsonl'?)" in message({"type": "JSONL", "path": "s.jsonl"})


def test_schema_shows_the_defaults_built_by_factories() -> None:
    """`subsetctl schema` is the reference: sections, lists and the target's own split
    default (not the general train-only one) must show their defaults."""
    schema = json_schema()
    target_split = schema["$defs"]["TargetSpec"]["properties"]["split"]["default"]
    assert target_split == {"train": 0.5, "validation": 0.25, "test": 0.25}
    assert schema["$defs"]["SearchSpec"]["properties"]["strategies"]["default"][0]["name"] == "random_ensemble"
    assert schema["properties"]["gradients"]["default"]["d"] == 128
    assert "description" in schema["$defs"]["JsonlLoader"]["properties"]["type"]


def _schema_errors(data: dict) -> list[str]:
    """What an editor checking ``data`` against `subsetctl schema` (with the draft it names) flags."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)]


def test_the_schema_takes_the_spellings_of_tab_the_delimiter_takes() -> None:
    """`delimiter: tab` (and '\\t'), which the description offers, was flagged by editors:
    the schema allowed one character only."""
    for delimiter in (",", "\t", "tab", "TAB", "\\t", " tab "):
        data = {**MINIMAL, "sources": [{"name": "s", "loader": {"type": "csv", "path": "s.csv", "delimiter": delimiter}}],
                "source_files": [{"files": "*.csv", "loader": {"type": "csv", "delimiter": delimiter}}]}
        assert Spec.model_validate(data).sources[0].loader.delimiter in (",", "\t")
        assert _schema_errors(data) == [], delimiter
    for wrong in ("", ";;", "tabs", "\\n"):
        data = {**MINIMAL, "sources": [{"name": "s", "loader": {"type": "csv", "path": "s.csv", "delimiter": wrong}}]}
        with pytest.raises(ValueError, match="delimiter"):
            Spec.model_validate(data)
        assert _schema_errors(data), wrong


def test_a_lambda_grid_with_non_positive_values_names_them_and_says_what_to_write() -> None:
    """`calibrate.lambda_grid: [0, 0.1]` was refused with "lambda_grid values must be positive,
    got 0.0": the key and the value, but not why nor what to write instead (issue #8: a
    validation error naming the key and what to do)."""
    _, issues = validate_data({**MINIMAL, "calibrate": {"lambda_grid": [0, -1, 0.1]}}, "x.yaml")
    assert [i.key for i in issues] == ["calibrate.lambda_grid"]
    message = issues[0].message
    assert message.startswith("lambda_grid values must be positive, got 0, -1: lambda is the ridge penalty"), message
    assert "Remove them, or write a small positive value such as 0.001" in message, message


def test_the_schema_flags_the_list_items_validate_refuses() -> None:
    """A lambda of 0 or below and a verify kind given twice are refused by validate; the
    schema let editors pass them."""
    for section, bad in (("calibrate", {"lambda_grid": [0.1, 0]}), ("calibrate", {"lambda_grid": [-1]}),
                         ("verify", {"kinds": ["ce", "ce"]})):
        data = {**MINIMAL, section: bad}
        with pytest.raises(ValueError, match="lambda_grid values must be positive|each kind at most once"):
            Spec.model_validate(data)
        assert _schema_errors(data), bad
    good = {**MINIMAL, "calibrate": {"lambda_grid": [0.01, 1]}, "verify": {"kinds": ["surrogate", "ce"]}}
    Spec.model_validate(good)
    assert _schema_errors(good) == []


def test_the_schema_takes_the_quoted_numbers_validate_takes() -> None:
    """validate reads a number given as text (`steps: "5"`, and `lr: 1e-4`, which PyYAML
    reads as text since it has no dot); the schema wanted a number, so editors flagged
    valid specs. Whatever spelling validate takes, the schema takes; text that is no
    number both refuse."""
    text = """
target: {name: t, loader: {type: jsonl, path: t.jsonl}, seed: " 3 ", split: {train: "0.5", validation: "10", test: 1e-1}}
sources: [{name: s, loader: {type: jsonl, path: s.jsonl}, max_examples: "1_000"}]
model: {max_length: "64", lora: {r: "8", alpha: 16e0, dropout: ".1"}}
meta_init: {steps: "5", lr: 1e-4, weight_decay: "0"}
finetune: {steps: +30, lr: "2E-3", seeds: "2.0"}
calibrate: {lambda_grid: [1e-2, "0.1", 3]}
estimate: {lam: 1e+1}
"""
    data = yaml.safe_load(text)
    assert data["meta_init"]["lr"] == "1e-4"  # as PyYAML reads it
    spec = Spec.model_validate(data)
    assert (spec.meta_init.steps, spec.meta_init.lr, spec.calibrate.lambda_grid) == (5, 1e-4, [0.01, 0.1, 3.0])
    assert _schema_errors(data) == []
    for section, key in (("meta_init", "steps"), ("meta_init", "lr"), ("target", "seed"), ("model", "max_length")):
        for spelling in ("5", " 5 ", "+5", "05", "5.0", "5.00", "1_000", "5\n", "1e-4", "1E+2", ".5", "5.", "1.5e3",
                         "five", "", "5 5", "0x10", "1e", "inf", "nan", "5,0", "٥", "2.5"):
            data = copy.deepcopy(MINIMAL)
            data.setdefault(section, {})[key] = spelling
            try:
                Spec.model_validate(data)
            except ValueError:
                if not re.search(r"\d", spelling) or spelling in ("5 5", "0x10", "5,0"):  # no number: both refuse
                    assert _schema_errors(data), (section, key, spelling)
            else:
                assert _schema_errors(data) == [], (section, key, spelling)


def test_a_quoted_split_fraction_is_a_fraction_as_it_is_unquoted() -> None:
    """`train: "1.0"` (a number quoted, which validate takes) was read as the count 1, one
    row, where `train: 1.0` is every row; a quoted whole number is still a count."""
    text = """
target: {name: t, loader: {type: jsonl, path: t.jsonl}, split: {train: "0.5", validation: " 0.25 ", test: "25e-2"}}
sources: [{name: s, loader: {type: jsonl, path: s.jsonl}, split: {train: "1.0"}},
          {name: c, loader: {type: jsonl, path: c.jsonl}, split: {train: "10", validation: 1}}]
"""
    spec = Spec.model_validate(yaml.safe_load(text))
    split = spec.target.split
    assert (split.train, split.validation, split.test) == (0.5, 0.25, 0.25)
    assert all(isinstance(v, float) for v in (split.train, split.validation, split.test))
    train = spec.sources[0].split.train
    assert (train, type(train)) == (1.0, float)  # every row, as `train: 1.0`
    counts = spec.sources[1].split
    assert (counts.train, type(counts.train), counts.validation, type(counts.validation)) == (10, int, 1, int)
    with pytest.raises(ValueError, match="less than or equal to 1"):
        Spec.model_validate(yaml.safe_load(text.replace('"1.0"', '"1.5"')))


def test_a_split_naming_a_file_says_how_split_files_are_read(tmp_path: Path) -> None:
    """A dataset that comes with its own train and test files, written `split: {train:
    data/train.jsonl, test: data/test.jsonl}`, was told only "expected a number, got the text
    'data/train.jsonl'". It is now told that a split is a count or a fraction, and that a test
    file of its own is read by target.test_loader; a folder of split files still reads as one
    (a mistyped number is told as before)."""
    from subsetctl.spec.models import SplitSpec

    for written in ("data/train.jsonl", "test.csv", " TEST.PARQUET "):
        with pytest.raises(ValueError, match=r"names a file, but a split is a count or a fraction.*"
                                             r"target\.test_loader: \{type: jsonl, path: "):
            SplitSpec.model_validate({"train": written, "validation": 0.2, "test": 0.2})
    for typo_text in ("many", "1/4", " 3 / 10 "):  # a fraction written with "/" names no file
        with pytest.raises(ValueError) as typo:
            SplitSpec.model_validate({"train": typo_text})
        assert "names a file" not in str(typo.value)
    (tmp_path / "data").mkdir()
    for split, rows in (("train", range(6)), ("test", range(6, 8))):
        (tmp_path / "data" / f"{split}.jsonl").write_text(
            "".join(json.dumps({"prompt": f"{i}?", "response": str(i)}) + "\n" for i in rows))
    from subsetctl.data.loaders import load_huggingface
    from subsetctl.data.loaders.common import LoadContext
    from subsetctl.spec import HuggingFaceLoader

    both = load_huggingface(HuggingFaceLoader(type="huggingface", path="data", split="train+test"),
                            LoadContext(source_name="t", base_dir=tmp_path, kind="causal-lm", seed=0))
    assert sorted(both["response"], key=int) == [str(i) for i in range(8)]


def test_split_fractions_over_one_are_named_and_a_left_out_train_is_said() -> None:
    """`split: {validation: 0.2, test: 0.2}` said "split fractions add up to more than 1.0":
    the user wrote 0.4; train, left out, counts as 1.0. The message names the fractions, their
    sum, and (train left out) its default and a train that fits."""
    from subsetctl.spec.models import SplitSpec

    with pytest.raises(ValueError, match=r"train, not given, defaults to the fraction 1\.0.*validation 0\.2 \+ "
                                         r"test 0\.2 the fractions add up to 1\.4.*give train too \(e\.g\. train: 0\.6\)"):
        SplitSpec.model_validate({"validation": 0.2, "test": 0.2})
    with pytest.raises(ValueError, match=r"validation 0\.6 \+ test 0\.6 .*lower those and give train too"):
        SplitSpec.model_validate({"validation": 0.6, "test": 0.6})
    with pytest.raises(ValueError, match=r"train 0\.6 \+ validation 0\.3 \+ test 0\.3 add up to 1\.2, more than 1\.0"):
        SplitSpec.model_validate({"train": 0.6, "validation": 0.3, "test": 0.3})


def test_the_schema_flags_a_spec_without_sources() -> None:
    """validate refuses a spec with no source (no `sources`, none listed, no `source_files`
    group); the schema passed it."""
    target = {"target": MINIMAL["target"]}
    for data in (target, {**target, "sources": []}, {**target, "sources": [], "source_files": []}):
        with pytest.raises(ValueError, match="no sources"):
            Spec.model_validate(data)
        assert _schema_errors(data), data
    group = {"files": "*.jsonl", "loader": {"type": "jsonl"}}
    for data in (MINIMAL, {**target, "source_files": [group]}, {**MINIMAL, "source_files": []},
                 {**target, "sources": [], "source_files": [group]}):
        assert _schema_errors(data) == [], data


def test_an_override_of_a_name_or_type_is_blamed_for_its_siblings(cli_words: None) -> None:
    """`search.strategies[3].name=random` made the file's params invalid; the issue named the
    file's line of another strategy and not the override."""
    from subsetctl.spec import SpecIssue, attribute_overrides

    params = SpecIssue(file="x.yaml", line=21, key="search.strategies[3].params", message="set exactly one")
    other = SpecIssue(file="x.yaml", line=9, key="search.strategies[30].params", message="bad")
    blamed, untouched = attribute_overrides([params, other], ["search.strategies[3].name=random"])
    assert blamed.line is None and blamed.message.endswith("(set on the command line: search.strategies[3].name=random)")
    assert untouched == other
    (loader,) = attribute_overrides([params.model_copy(update={"key": "target.loader.path"})], ["target.loader.type=csv"])
    assert loader.line is None


def test_a_duplicate_source_name_set_by_an_override_is_blamed_on_it(tmp_path: Path, cli_words: None) -> None:
    """`sources[0].name=b` named the first source like the second: the problem was put at
    the second source's line in the file, which the user had not touched, then at its key
    without the line; it is put at the key set on the command line. Where an override set the
    first one's name, "set on the command line" was said of it and again of the issue."""
    from subsetctl.api import validate_spec_file

    spec = {"target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
            "sources": [{"name": "a", "loader": {"type": "jsonl", "path": "a.jsonl"}},
                        {"name": "b", "loader": {"type": "jsonl", "path": "b.jsonl"}},
                        {"name": "c", "loader": {"type": "jsonl", "path": "c.jsonl"}}]}
    path = tmp_path / "subsetctl.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    (issue,) = validate_spec_file(path, ["sources[0].name=b"]).issues
    assert "duplicate source name 'b'" in issue.message and issue.line is None
    assert issue.message.endswith("(set on the command line: sources[0].name=b)")
    assert issue.key == "sources[0].name", issue  # the key set, not the file's sources[1].name without its line
    # an override of another source is not blamed
    (issue,) = validate_spec_file(path, ["sources[1].name=a", "sources[2].max_examples=3"]).issues
    assert issue.message.endswith("(set on the command line: sources[1].name=a)") and issue.key == "sources[1].name"
    # two overrides made the duplicate: both are named, and the first's line in the file is not given
    (issue,) = validate_spec_file(path, ["sources[1].name=x", "sources[2].name=x"]).issues
    assert issue.line is None and "the first is" not in issue.message and issue.message.count("command line") == 1
    assert issue.message.endswith("(set on the command line: sources[1].name=x, sources[2].name=x)"), issue.message
    (issue,) = validate_spec_file(path, ["sources[1].name=a", "sources[2].name=a"]).issues
    assert issue.message.endswith("(set on the command line: sources[1].name=a, sources[2].name=a)"), issue.message


def test_a_whole_number_error_beside_a_number_error_is_kept() -> None:
    """Only a count-or-fraction key's two union messages are merged: `d: abc` next to
    `memory_budget_mb: xyz` lost the error on d."""
    import copy

    data = copy.deepcopy(MINIMAL)
    data["gradients"] = {"d": "abc", "memory_budget_mb": "xyz"}
    _, issues = validate_data(data, "x.yaml")
    assert [i.key for i in issues] == ["gradients.d", "gradients.memory_budget_mb"]


def test_only_a_strategy_name_or_a_loader_type_is_blamed_for_its_siblings() -> None:
    from subsetctl.spec import SpecIssue, attribute_overrides

    path = SpecIssue(file="x.yaml", line=8, key="sources[0].loader.path", message="file does not exist")
    seed = SpecIssue(file="x.yaml", line=3, key="project.seed", message="bad")
    assert attribute_overrides([path], ["sources[0].name=alpha"]) == [path]  # a source's name decides nothing
    assert attribute_overrides([seed], ["project.name=zz"]) == [seed]
    assert attribute_overrides([path], ["sources[0].loader.name=cfg"]) == [path]  # a dataset configuration


@pytest.mark.parametrize(("value", "says"), [("!!set {a, b}", "a set"), (".inf", "cannot be saved as JSON"),
                                             ("2024-01-01", "a date"), ("{1: x}", "key 1 is not text")])
def test_plugin_loader_options_must_round_trip_through_json(value: str, says: str) -> None:
    """A set made the data stage stale on every run; .inf -> -.inf went unseen (both null)."""
    text = ("target:\n  name: t\n  loader: {type: jsonl, path: t.jsonl}\nsources:\n"
            f"  - name: s\n    loader: {{type: plugin, name: x, options: {{v: [1, {value}]}}}}\n")
    spec, issues = validate_data(yaml.safe_load(text), "x.yaml", text)
    assert spec is None and issues[0].key == "sources[0].loader.options" and says in issues[0].message


@pytest.mark.parametrize(("value", "says"), [("!!set {'+', '-'}", "config.operators: a set"),
                                             (".inf", "cannot be saved as JSON"), ("2024-01-01", "a date")])
def test_reasoning_gym_config_must_round_trip_through_json(value: str, says: str) -> None:
    """A set (polynomial_equations takes one for its operators) made the data stage stale
    on every other run (its order changes from process to process) and the rows with it."""
    text = ("target:\n  name: t\n  loader: {type: jsonl, path: t.jsonl}\nsources:\n"
            f"  - name: s\n    loader: {{type: reasoning_gym, task: polynomial_equations, config: {{operators: {value}}}}}\n")
    spec, issues = validate_data(yaml.safe_load(text), "x.yaml", text)
    assert spec is None and issues[0].key == "sources[0].loader.config" and says in issues[0].message


def test_an_override_of_a_list_item_out_of_range_says_how_many_items_there_are() -> None:
    """It said only "sources[5] does not exist", not how many sources the spec has."""
    two = {**MINIMAL, "sources": [*MINIMAL["sources"], {"name": "u", "loader": {"type": "jsonl", "path": "u.jsonl"}}]}
    for override in ("sources[5].max_examples=3", "sources[5]={}"):
        with pytest.raises(SpecError, match=r"sources\[5\] does not exist: sources has 2 items, sources\[0\] "
                                            r"to sources\[1\]\.$"):
            apply_overrides(two, [override])
    with pytest.raises(SpecError, match=r"sources\[1\] does not exist: sources has 1 item, sources\[0\]\.$"):
        apply_overrides(MINIMAL, ["sources[1].max_examples=3"])
    with pytest.raises(SpecError, match=r"search\.strategies\[0\] does not exist: search\.strategies is empty\."):
        apply_overrides({**MINIMAL, "search": {"strategies": []}}, ["search.strategies[0].name=x"])
    with pytest.raises(SpecError, match=r"gradients\[0\] does not exist \(gradients is not a list\)\."):
        apply_overrides({**MINIMAL, "gradients": {"d": 8}}, ["gradients[0].d=3"])
    grouped = {**MINIMAL, "source_files": [{"files": "pool/*.jsonl", "loader": {"type": "jsonl"}}]}
    with pytest.raises(SpecError, match=r"sources has 1 item, sources\[0\]\. The sources of this spec's "
                                        r"source_files groups are added after overrides apply"):
        apply_overrides(grouped, ["sources[1].max_examples=3"])


def test_a_sources_override_in_a_spec_of_source_files_groups_points_at_them() -> None:
    data = {"source_files": [{"files": "pool/*.jsonl", "loader": {"type": "jsonl"}}]}
    with pytest.raises(SpecError, match=r"sources does not exist\. This spec lists its sources as source_files"):
        apply_overrides(data, ["sources[0].max_examples=5"])
    with pytest.raises(SpecError) as plain:
        apply_overrides({}, ["sources[0].max_examples=5"])
    assert "source_files" not in str(plain.value)


def test_override_keys_and_items_that_name_nothing_say_which_part() -> None:
    for key, says in (("a[x]", "is not a dotted key path like a.b[0].c."), ("", "is empty.")):
        with pytest.raises(SpecError, match=re.escape(f"Override key {key!r} {says}")):
            apply_overrides(MINIMAL, [f"{key}=1"])
    with pytest.raises(SpecError, match=re.escape("Override 'sources[1]=x': sources[1] does not exist: sources has 1 item")):
        apply_overrides(MINIMAL, ["sources[1]=x"])  # one past the last item
    with pytest.raises(SpecError, match=re.escape("Override 'target.name.x=1': target.name is not a mapping.")):
        apply_overrides(MINIMAL, ["target.name.x=1"])
    replaced = apply_overrides(MINIMAL, ["sources[0]={name: r, loader: {type: jsonl, path: r.jsonl}}"])
    assert replaced["sources"][0]["name"] == "r"  # the last item, replaced whole
    assert apply_overrides(MINIMAL, ["project.name={unclosed: 1"])["project"]["name"] == "{unclosed: 1"  # as text


def test_names_that_differ_only_in_case_are_refused() -> None:
    """Each source (and the target) is a folder in the data stage: on a case-insensitive
    file system (macOS, Windows) 'Src' and 'src', or a source 'target' and the target
    'Target', would share one, the later overwriting the earlier's rows."""
    import copy

    data = copy.deepcopy(MINIMAL)
    data["sources"].append({"name": "S", "loader": {"type": "jsonl", "path": "y"}})
    spec, issues = validate_data(data, "x.yaml")
    assert spec is None and issues[0].key == "sources[1]"
    assert "'s' (sources[0]) and 'S' (sources[1]) differ only in case" in issues[0].message
    data = copy.deepcopy(MINIMAL)
    data["sources"][0]["name"] = "T"
    spec, issues = validate_data(data, "x.yaml")
    assert spec is None and "sources[0] is named 'T', the target 't'" in issues[0].message
    data = copy.deepcopy(MINIMAL)
    data["sources"][0]["name"] = "Data.JSON"  # the data stage's own data.json
    spec, issues = validate_data(data, "x.yaml")
    assert spec is None and "keeps for its own file" in issues[0].message

def test_the_targets_name_cannot_be_one_of_the_data_stages_own_files() -> None:
    import copy

    data = copy.deepcopy(MINIMAL)
    data["target"]["name"] = "data.json"
    spec, issues = validate_data(data, "x.yaml")
    assert spec is None
    assert [i.message for i in issues] == [
        "the target's name 'data.json' is reserved (the data stage keeps a file of that name); rename it"]


def test_strategies_sharing_a_name_are_named_with_the_name(jsonl_project: Path) -> None:
    """"two strategies share a name" said neither which name nor which entries (a spec listing
    random_ensemble twice with other params, or two `random` baselines), and said "two" where
    three shared it."""
    from subsetctl.api import validate_spec_file

    path = jsonl_project / "subsetctl.yaml"
    strategies = ("search.strategies=[{name: random_ensemble}, {name: random, params: {k: 1}}, "
                  "{name: random, params: {k: 2}}, {name: random_ensemble, params: {m: 9}}, {name: random_ensemble}]")
    issues = [i.message for i in validate_spec_file(path, [strategies]).issues if i.key == "search.strategies"]
    assert len(issues) == 2, issues
    assert issues[0].startswith(
        "three strategies share a name: search.strategies[0], search.strategies[3] and search.strategies[4] are all "
        "reported as 'random_ensemble'; give all but one a distinct `label` (e.g. `label: random_ensemble-2` on "
        "search.strategies[4])"), issues
    assert issues[1].startswith(
        "two strategies share a name: search.strategies[1] and search.strategies[2] are both reported as 'random'; "
        "give one a distinct `label` (e.g. `label: random-2` on search.strategies[2])"), issues


def test_validate_checks_strategy_labels_the_final_pick_and_a_dask_address_without_dask(jsonl_project: Path) -> None:
    from subsetctl.api import validate_spec_file

    path = jsonl_project / "subsetctl.yaml"
    (twice,) = validate_spec_file(path, ["search.strategies=[{name: exhaustive}, {name: exhaustive}]"]).issues
    assert twice.key == "search.strategies" and "two strategies share a name" in twice.message
    labelled = ["search.strategies=[{name: exhaustive}, {name: exhaustive, label: again}]"]
    assert validate_spec_file(path, labelled).ok
    (final,) = validate_spec_file(path, [*labelled, "search.final=nope"]).issues
    assert final.key == "search.final" and final.message.startswith("'nope' is not one of the strategies (exhaustive, again)")
    assert validate_spec_file(path, [*labelled, "search.final=again"]).ok
    # final by the strategy's name where its entries are labelled: which labels it has, and what to do
    relabelled = ["search.strategies=[{name: exhaustive, label: ex1}, {name: exhaustive, label: ex2}]"]
    (final,) = validate_spec_file(path, [*relabelled, "search.final=exhaustive"]).issues
    assert final.message.startswith(
        "'exhaustive' is not one of the strategies (ex1, ex2): search.final names a strategy by its label (its name "
        "where it has none); the exhaustive strategies are labelled ex1, ex2. Set it to one of them, or leave it out"
    ), final.message
    report = validate_spec_file(path, ["executor.address=tcp://10.0.0.1:8786"])
    assert report.ok and [w.key for w in report.warnings] == ["executor.address"]
    assert "only used by executor.backend: dask; with 'loky'" in report.warnings[0].message
    assert not validate_spec_file(path, ["executor.address=tcp://10.0.0.1:8786", "executor.backend=dask"]).warnings


def test_validate_says_dask_scheduler_address_is_not_read(jsonl_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DASK_SCHEDULER_ADDRESS (Dask's own way to name a scheduler) with backend dask and no
    executor.address: the search started a local cluster without a word, that scheduler idle."""
    from subsetctl.api import validate_spec_file
    from subsetctl.doctor import dask_importable

    if not dask_importable():
        pytest.skip("needs dask (else validate warns that it is missing)")
    path = jsonl_project / "subsetctl.yaml"
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://10.0.0.1:8786")
    report = validate_spec_file(path, ["executor.backend=dask"])
    assert report.ok and [w.key for w in report.warnings] == ["executor.backend"], report.warnings
    message = " ".join(report.warnings[0].message.split())
    assert "DASK_SCHEDULER_ADDRESS ('tcp://10.0.0.1:8786') is set but not read" in message, message
    assert "set executor.address: tcp://10.0.0.1:8786 (or executor.address=tcp://10.0.0.1:8786 on the command " \
           "line)" in message, message
    # the spec's address is the one used, and other backends use no scheduler: nothing to say
    assert not validate_spec_file(path, ["executor.backend=dask", "executor.address=tcp://10.0.0.2:8786"]).warnings
    assert not validate_spec_file(path, ["executor.backend=sequential"]).warnings


def test_a_duplicate_source_name_in_the_file_is_not_blamed_on_another_key_of_a_source(tmp_path: Path,
                                                                                       cli_words: None) -> None:
    """The message names sources[0]: an override of its max_examples did not make the clash."""
    from subsetctl.api import validate_spec_file

    spec = {"target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
            "sources": [{"name": "a", "loader": {"type": "jsonl", "path": "a.jsonl"}},
                        {"name": "a", "loader": {"type": "jsonl", "path": "b.jsonl"}}]}
    path = tmp_path / "subsetctl.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    (issue,) = validate_spec_file(path, ["sources[0].max_examples=3"]).issues
    assert "duplicate source name 'a'" in issue.message and "command line" not in issue.message
    assert issue.line is not None
    (issue,) = validate_spec_file(path, ["sources[0]={name: a, loader: {type: jsonl, path: c.jsonl}}"]).issues
    assert issue.message.endswith("(set on the command line: sources[0]={name: a, loader: {type: jsonl, path: c.jsonl}})")


@pytest.mark.parametrize("name, char", [("two\nlines", "\n"), ("tab\there", "\t"), ("bell\x07", "\x07"),
                                        ("line\u2028sep", "\u2028")])
def test_a_project_name_with_a_control_character_is_refused_at_its_key(name: str, char: str) -> None:
    """A newline in project.name broke report.md's heading; a name with spaces or
    non-ASCII letters stays valid."""
    spec, issues = validate_data({**MINIMAL, "project": {"name": name}}, "x.yaml")
    assert spec is None
    assert [i.key for i in issues] == ["project.name"]
    assert "one line of printable text" in issues[0].message and repr(char) in issues[0].message
    ok, issues = validate_data({**MINIMAL, "project": {"name": "Ärger mit Daten (v2)"}}, "x.yaml")
    assert ok is not None and not issues


def test_a_target_without_validation_rows_is_said_at_its_split_line_with_the_other_problems(tmp_path: Path) -> None:
    """A target split without validation rows was refused as "spec.yaml:1: target: the target
    needs validation examples" (the target's first line, not the split's, and no reason), by a
    schema check that also hid every other problem of the spec; one without test rows was said
    at `target.split.test` on the split's line, with why, beside the others. Both are now."""
    from subsetctl.api import validate_spec_file

    (tmp_path / "t.jsonl").write_text('{"prompt": "p", "response": "r"}\n' * 40)
    (tmp_path / "subsetctl.yaml").write_text(
        "target:\n  name: t\n  loader: {type: jsonl, path: t.jsonl}\n  split: {train: 0.5, test: 0.2}\n"
        "sources:\n  - {name: s, loader: {type: jsonl, path: t.jsonl}}\n")  # random_ensemble of 1 source: refused
    rendered = [issue.render() for issue in validate_spec_file(tmp_path / "subsetctl.yaml").issues]
    assert any(":4: target.split.validation: the target needs validation examples (split.validation > 0): it "
               "chooses the checkpoint" in issue for issue in rendered), rendered
    assert any("needs at least 2 sources" in issue for issue in rendered), rendered


def test_the_schema_flags_a_target_split_without_train_validation_or_test_rows(tmp_path: Path) -> None:
    """validate refuses a target split with no train, validation or test rows (0, 0.0, or
    validation or test left out, which default to 0); the schema passed them to editors."""
    from subsetctl.api import validate_spec_file

    for name in ("t", "s"):
        (tmp_path / f"{name}.jsonl").write_text('{"prompt": "p", "response": "r"}\n' * 40)

    def refused(data: dict) -> list[str]:
        (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump({**data, "search": {"strategies": [{"name": "exhaustive"}]}}))
        return [i.render() for i in validate_spec_file(tmp_path / "subsetctl.yaml").issues]

    for split in ({"train": 10, "validation": 0, "test": 5}, {"train": 10, "validation": 5, "test": 0.0},
                  {"train": 10, "validation": 5}, {"train": 0.5, "test": 0.5}, {"train": 0, "validation": 5,
                                                                                "test": 5}):
        data = {**MINIMAL, "target": {**MINIMAL["target"], "split": split}}
        assert any("split" in issue for issue in refused(data)), split
        assert _schema_errors(data), split
    for data in (MINIMAL, {**MINIMAL, "target": {**MINIMAL["target"], "split": {"train": 0.8, "validation": 3,
                                                                                "test": 0.1}}}):
        assert refused(data) == []
        assert _schema_errors(data) == [], data


def test_a_strategy_given_by_its_name_alone_says_how_to_write_it() -> None:
    """`strategies: [forward, random_ensemble]` said "expected a mapping of keys (key: value),
    got the text 'forward'" and not what the mapping is."""
    import copy

    data = copy.deepcopy(MINIMAL)
    data["search"] = {"strategies": ["forward", {"name": "all"}]}
    spec, issues = validate_data(data, "x.yaml")
    expected = ("expected a mapping of keys (key: value), got the text 'forward': a strategy is written "
                "`{name: forward}` (with `params:` beside it, if any)")
    assert spec is None and [(i.key, i.message) for i in issues] == [("search.strategies[0]", expected)]


def test_an_answer_column_the_prompt_reads_too_is_refused() -> None:
    """`prompt_field: text, response_field: text` (the answer's column mistyped as the
    prompt's) passed validate and the data stage without a word: every answer was its own
    prompt's text."""
    import copy

    for prompt, field in (("text", "response_field"), (["title", "text"], "response_field"), ("text", "label_field")):
        data = copy.deepcopy(MINIMAL)
        data["sources"][0]["loader"].update({"prompt_field": prompt, field: "text"})
        spec, issues = validate_data(data, "x.yaml")
        expected = (f"names 'text', a column prompt_field reads too: every answer would be its own prompt's "
                    f"text; set {field} to the column holding the answer")
        assert spec is None and [(i.key, i.message) for i in issues] == [(f"sources[0].loader.{field}", expected)]


def test_a_source_files_group_given_a_path_or_a_list_of_files_says_what_it_takes() -> None:
    """A group's `loader.path` was "unknown key (check its spelling ...)", though spelt right,
    and `files: [a.jsonl, b.jsonl]` "expected text, got a list": neither said what a group
    takes (one glob pattern in `files`, no loader path)."""
    import copy

    data = copy.deepcopy(MINIMAL)
    data["source_files"] = [{"files": "pool/*.jsonl", "loader": {"type": "jsonl", "path": "pool/a.jsonl"}}]
    _, issues = validate_data(data, "x.yaml")
    expected = ("a source_files group's loader takes no path: the group's `files` pattern names the files (one "
                "source each); remove loader.path")
    assert [(i.key, i.message) for i in issues] == [("source_files[0].loader.path", expected)]
    data["source_files"] = [{"files": ["pool/a.jsonl", "pool/b.jsonl"], "loader": {"type": "jsonl"}}]
    _, issues = validate_data(data, "x.yaml")
    assert [i.key for i in issues] == ["source_files[0].files"]
    assert issues[0].message.startswith("expected one glob pattern, got a list ['pool/a.jsonl', 'pool/b.jsonl']: "
                                        "give a pattern matching them all"), issues[0].message


@pytest.mark.parametrize("written", ["pattern", "glob", "path"])
def test_a_source_files_group_given_its_glob_under_another_name_is_told_files(written: str) -> None:
    """`pattern: "pool/*.jsonl"` (other tools' word for a glob) was "unknown key (check its
    spelling ...)", with no word of `files`, the key that takes it."""
    import copy

    data = copy.deepcopy(MINIMAL)
    data["source_files"] = [{written: "pool/*.jsonl", "loader": {"type": "jsonl"}}]
    _, issues = validate_data(data, "x.yaml")
    unknown = [i.message for i in issues if i.key == f"source_files[0].{written}"]
    assert unknown == ["unknown key (did you mean 'files'? `subsetctl schema` lists the keys)"]


def test_keys_meant_are_found_in_any_letter_case_and_under_a_loader_whatever_its_type(monkeypatch) -> None:
    """KEYS_MEANT is looked up as LIKELY_MEANT is, case aside (`Pattern:` was "check its
    spelling"), and by a place without the loader's type that pydantic's location holds
    (("sources", "loader", "jsonl")): an entry for a loader's keys was never found."""
    import copy

    from subsetctl.spec import issues

    monkeypatch.setitem(issues.KEYS_MEANT, ("sources", "loader"), {"filename": "path"})
    data = copy.deepcopy(MINIMAL)
    data["source_files"] = [{"Pattern": "pool/*.jsonl", "loader": {"type": "jsonl"}}]
    data["sources"][0]["loader"]["FileName"] = "pool/a.jsonl"
    _, issues_found = validate_data(data, "x.yaml")
    said = {i.key: i.message for i in issues_found}
    assert said["source_files[0].Pattern"] == "unknown key (did you mean 'files'? `subsetctl schema` lists the keys)"
    assert said["sources[0].loader.FileName"] == ("unknown key (did you mean 'path'? `subsetctl schema` lists "
                                                  "the keys)"), said


def test_load_dataset_options_the_huggingface_loader_takes_not_say_what_to_do_instead() -> None:
    """`revision` and `streaming` on a huggingface loader (load_dataset's own options) were
    "unknown key (check its spelling ...)", though spelt right; elsewhere a key is still unknown."""
    import copy

    data = copy.deepcopy(MINIMAL)
    data["sources"][0]["loader"] = {"type": "huggingface", "path": "org/data", "revision": "abc", "streaming": True}
    _, issues = validate_data(data, "x.yaml")
    found = {i.key: i.message for i in issues}
    assert list(found) == ["sources[0].loader.revision", "sources[0].loader.streaming"], found
    assert found["sources[0].loader.revision"].startswith("the huggingface loader takes no revision: a hub id is read "
                                                          "as the local Hugging Face cache holds it")
    assert "save_to_disk(FOLDER)`, and point loader.path at that folder" in found["sources[0].loader.revision"]
    assert found["sources[0].loader.streaming"].startswith("the huggingface loader takes no streaming:")
    data["sources"][0]["loader"] = {"type": "jsonl", "path": "a.jsonl", "revision": "abc"}
    _, issues = validate_data(data, "x.yaml")
    assert [i.message for i in issues] == ["unknown key (check its spelling; `subsetctl schema` lists the keys)"]


def test_a_key_of_another_loader_type_names_the_loaders_that_take_it() -> None:
    """`messages_field` on a csv loader (README: chats are read by jsonl, parquet and
    huggingface, not csv) was "unknown key (check its spelling ...)", though spelt right: it
    now names the loaders that take it and what to do with chats in a CSV file; so for any key
    another loader type takes, in a source_files group too; a key no loader takes is unknown."""
    import copy

    data = copy.deepcopy(MINIMAL)
    data["sources"][0]["loader"] = {"type": "csv", "path": "a.csv", "messages_field": "messages"}
    data["source_files"] = [{"files": "pool/*.jsonl", "loader": {"type": "jsonl", "delimiter": ";"}}]
    _, issues = validate_data(data, "x.yaml")
    found = {i.key: i.message for i in issues}
    assert list(found) == ["sources[0].loader.messages_field", "source_files[0].loader.delimiter"], found
    assert found["sources[0].loader.messages_field"].startswith(
        "the csv loader takes no messages_field (the jsonl, parquet and huggingface loaders take it): a CSV cell "
        "is text, not a list of messages: write the chats as JSON Lines"), found
    assert found["source_files[0].loader.delimiter"] == (
        "the jsonl loader takes no delimiter (the csv loader takes it): remove delimiter or change loader.type")
    data["sources"][0]["loader"] = {"type": "csv", "path": "a.csv", "textfield": "text"}  # no loader's key
    del data["source_files"]
    _, issues = validate_data(data, "x.yaml")
    assert [i.message for i in issues] == ["unknown key (did you mean 'text_field'? `subsetctl schema` lists the keys)"]


@pytest.mark.parametrize("revision", ["v1.0", "a" * 40])
def test_model_revision_is_taken_for_a_hub_id_and_dumped_only_when_set(monkeypatch, tmp_path, revision: str) -> None:
    """`model.revision` (a hub id's commit, branch or tag) was refused as a key subsetctl does
    not take; it is now taken, and is in the model's dump (so the model stages' inputs) only
    where set: the dumps of a spec without it are as before, so its projects stay up to date."""
    import copy

    from subsetctl.spec import Spec
    from subsetctl.stages import all_stages

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    data = copy.deepcopy(MINIMAL)
    data["model"] = {"source": "org/name", "revision": revision}
    spec, issues = validate_data(data, "x.yaml")
    assert [i for i in issues if i.key.startswith("model.")] == [], issues
    assert spec is not None and spec.model.revision == revision
    meta_init = next(s for s in all_stages() if s.name == "meta_init")
    assert meta_init.spec_slice(spec)["model"]["revision"] == revision
    unset = Spec.model_validate({**data, "model": {"source": "org/name"}})
    assert "revision" not in unset.model_dump(mode="json")["model"]
    assert "revision" not in meta_init.spec_slice(unset)["model"]
    _, issues = validate_data({**data, "model": {"source": "org/name", "revision": "v 1"}}, "x.yaml")
    assert [i.key for i in issues] == ["model.revision"], issues


@pytest.mark.parametrize("revision", ["v 1", ""])
def test_a_model_revision_with_a_space_or_empty_says_what_a_revision_is(revision: str) -> None:
    """`model.revision: "v1.0 "` (a space) or "" was refused in pydantic's words, "String should
    match pattern '^\\S+$'", which said nothing of what to write."""
    import copy

    data = copy.deepcopy(MINIMAL)
    data["model"] = {"source": "org/name", "revision": revision}
    _, issues = validate_data(data, "x.yaml")
    assert [(i.key, i.message) for i in issues] == [("model.revision", (
        f"the text {revision!r} is no revision: write a commit sha, or a branch or tag name, none of which holds a "
        "space (model.revision: main, v1.0, or the commit's 40 hex digits), or remove model.revision to load the "
        "cache's main or the hub's latest"))]


def test_a_value_out_of_its_range_is_said_in_the_specs_words() -> None:
    """`max_examples: -1` said "Input should be greater than or equal to 1" without the value
    written, and then pydantic's words with "(got -1)": the spec's other messages say
    "expected a whole number, got ...". A whole-number key says so, a float key "a number",
    each bound (>=, >, <=, <) as a sign, a float key's bound 1.0 as the 1 it documents."""
    import copy

    data = copy.deepcopy(MINIMAL)
    data["sources"][0]["max_examples"] = -1
    data["gradients"] = {"d": 0}
    data["meta_init"] = {"steps": -1, "lr": 0}
    data["model"] = {**data.get("model", {}), "max_length": 40000, "lora": {"dropout": 1.0}}
    _, issues = validate_data(data, "x.yaml")
    assert sorted((i.key, i.message) for i in issues) == [
        ("gradients.d", "expected a whole number >= 1, got 0"),
        ("meta_init.lr", "expected a number > 0, got 0"),
        ("meta_init.steps", "expected a whole number >= 1, got -1"),
        ("model.lora.dropout", "expected a number < 1, got 1.0"),
        ("model.max_length", "expected a whole number <= 32768, got 40000"),
        ("sources[0].max_examples", "expected a whole number >= 1, got -1")]


def test_a_number_written_as_text_out_of_its_range_is_not_called_text() -> None:
    """`max_length: "4"` (a quoted number, which pydantic reads as a number) said "expected a
    whole number >= 8, got the text '4'", as if the quotes were what was wrong."""
    import copy

    data = copy.deepcopy(MINIMAL)
    data["model"] = {**data.get("model", {}), "max_length": "4"}
    data["meta_init"] = {"lr": "0"}
    _, issues = validate_data(data, "x.yaml")
    messages = {i.key: i.message for i in issues}
    assert messages["model.max_length"].endswith(", got 4 (written as text)"), messages
    assert messages["meta_init.lr"] == "expected a number > 0, got 0 (written as text)", messages


def test_a_value_not_among_a_keys_choices_is_shown_with_the_one_likely_meant() -> None:
    """`model.kind: classifer` said "Input should be 'causal-lm' or 'classifier'" without the
    value written or the one it was close to, where a mistyped key is told "did you mean"."""
    import copy

    data = copy.deepcopy(MINIMAL)
    data["model"] = {**data.get("model", {}), "kind": "classifer", "dtype": "fp16"}
    _, issues = validate_data(data, "x.yaml")
    assert sorted((i.key, i.message) for i in issues) == [
        ("model.dtype", "Input should be 'float32', 'bfloat16' or 'float16' (got 'fp16'; did you mean 'float16'?)"),
        ("model.kind", "Input should be 'causal-lm' or 'classifier' (got 'classifer'; did you mean 'classifier'?)")]


@pytest.mark.parametrize(("key", "written", "meant"), [
    ("dtype", "fp16", "float16"), ("dtype", "bf16", "bfloat16"), ("dtype", "half", "float16"),
    ("dtype", "FP32", "float32"), ("device", "gpu", "cuda")])
def test_a_gpu_setting_in_other_tools_words_is_told_the_choice_it_names(key: str, written: str, meant: str) -> None:
    """A GPU spec written with the Hugging Face Trainer's or PyTorch's words got no suggestion
    (`dtype: fp16`, too far from 'float16' by spelling) or a wrong one (`device: gpu`: "did
    you mean 'cpu'?", the closest spelling, where the GPU was meant)."""
    import copy

    data = copy.deepcopy(MINIMAL)
    data["model"] = {**data.get("model", {}), key: written}
    _, issues = validate_data(data, "x.yaml")
    assert [i.key for i in issues] == [f"model.{key}"]
    assert issues[0].message.endswith(f"(got {written!r}; did you mean {meant!r}?)"), issues[0].message


@pytest.mark.parametrize(("written", "device"), [("gpu", "cuda"), ("CUDA", "cuda"), ("cpu", "cpu")])
def test_a_device_written_as_the_dtype_is_told_to_set_model_device(written: str, device: str) -> None:
    """`model.dtype: gpu` was told only the three precisions (`gpu` is the hint of
    `model.device` alone): a device written for the dtype is told to set model.device."""
    import copy

    data = copy.deepcopy(MINIMAL)
    data["model"] = {**data.get("model", {}), "dtype": written}
    _, issues = validate_data(data, "x.yaml")
    assert [(i.key, i.message) for i in issues] == [(
        "model.dtype", (f"Input should be 'float32', 'bfloat16' or 'float16' (got {written!r}): {written!r} "
                        f"names a device, not a precision: write model.device: {device} for that, and model.dtype "
                        "for the precision ('float32', or 'bfloat16' or 'float16' on a GPU)"))]


def test_a_numbered_cuda_device_is_told_to_choose_the_gpu_with_cuda_visible_devices() -> None:
    """`model.device: cuda:1` (PyTorch's way to name the second GPU) was told "did you mean
    'cuda'?", which would run on the first GPU: the GPU is chosen with CUDA_VISIBLE_DEVICES."""
    import copy

    data = copy.deepcopy(MINIMAL)
    data["model"] = {**data.get("model", {}), "device": "cuda:1"}
    _, issues = validate_data(data, "x.yaml")
    assert [(i.key, i.message) for i in issues] == [(
        "model.device", ("Input should be 'auto', 'cpu' or 'cuda' (got 'cuda:1'): 'cuda' runs on the first GPU "
                         "torch sees; to run on GPU 1, keep 'cuda' and start the command with CUDA_VISIBLE_DEVICES=1"))]


@pytest.mark.parametrize("written", ["macro_f1", "F1", "macro-F1"])
def test_macro_f1_asked_for_as_the_metric_is_told_it_is_reported_beside_accuracy(written: str) -> None:
    """A classifier's `evaluate.metric: macro_f1` was told only the four choices, though
    macro-F1 is already in every test-metrics table: nothing said where to find it."""
    import copy

    data = copy.deepcopy(MINIMAL)
    data["evaluate"] = {"metric": written}
    _, issues = validate_data(data, "x.yaml")
    (issue,) = issues
    assert issue.key == "evaluate.metric"
    assert issue.message == (f"Input should be 'auto', 'exact_match', 'reasoning_gym' or 'accuracy' (got {written!r}): "
                             "a classifier's macro-F1 is no metric to choose; it is reported beside accuracy "
                             "('accuracy' or 'auto') in every test-metrics table and in report.json's test_metrics "
                             "(macro_f1_mean)")


def test_the_schema_takes_the_booleans_validate_takes() -> None:
    """`enabled: yes` (or `on`, `off`, `no`) is a boolean to PyYAML (YAML 1.1) and validate
    takes it, but an editor's YAML 1.2 reads the text "yes", which the schema refused, so
    editors flagged a valid spec; validate also takes 0 and 1. Text that is no boolean both
    refuse."""
    for value in ("yes", "No", "ON", "off", "y", "n", "true", "False", "1", "0", 1, 0, True, False):
        for section, key in (("verify", "enabled"), ("report", "plots"), ("model", "trust_remote_code"),
                             ("project", "keep_previous")):
            data = {**MINIMAL, section: {key: value}}
            spec = Spec.model_validate(data)
            if section == "project" and isinstance(value, str) and not value.isdigit():
                # (keep_previous: "yes" was refused, though the schema took it, as every other boolean key)
                assert spec.project.keep_previous is (value.lower() in ("yes", "on", "y", "true")), value
            assert _schema_errors(data) == [], (section, key, value)
    for wrong in ("maybe", "", "yes please", 2, -1, 0.5):
        data = {**MINIMAL, "verify": {"enabled": wrong}}
        with pytest.raises(ValueError, match="enabled"):
            Spec.model_validate(data)
        assert _schema_errors(data), wrong


#: specs validate refuses (for a mistake a spec's author makes), each as YAML over MINIMAL's keys
_REFUSED_BY_BOTH = (
    "finetune: {stpes: 5}",  # unknown key
    "colour: blue",  # unknown top-level key
    "target: {name: t, loader: {type: jsonl, path: t.jsonl}, splitt: {train: 1}}",
    "finetune: {steps: [5]}",  # wrong type
    "finetune: {steps: five}",
    "model: {max_length: 64.5}",
    "model: {source: [a]}",
    "verify: {enabled: maybe}",
    "report: {plots: 2}",
    "project: {seed: yes}",  # a boolean for a number
    "model: {kind: seq2seq}",  # bad enum
    "model: {dtype: float64}",
    "model: {device: tpu}",
    "executor: {backend: ray}",
    "verify: {kinds: [ce, mse]}",
    "finetune: {baselines: [none]}",
    "evaluate: {metric: bleu}",
    "calibrate: {lambda_grid: [0, 0.1]}",  # non-positive lambda grid
    "calibrate: {lambda_grid: [-1]}",
    "calibrate: {lambda_grid: []}",
    "estimate: {lam: 0}",
    "finetune: {steps: 0}",
    "model: {lora: {dropout: 1}}",
    "sources: [{name: s, loader: {type: tsv, path: s.tsv}}]",  # unknown loader type
    "sources: [{name: s, loader: {path: s.jsonl}}]",  # loader without type
    "sources: [{name: s}]",  # source without loader
    "sources: [{name: bad name, loader: {type: jsonl, path: s.jsonl}}]",
    "sources: []",  # no source at all
    "search: {strategies: [{params: {m: 5}}]}",  # strategy without a name
    "sources: [{name: s, loader: {type: jsonl, path: s.jsonl}, split: {validation: 0.1}}]",  # train, left out, is 1.0
    "sources: [{name: s, loader: {type: jsonl, path: s.jsonl}, split: {test: 20}}]",
    "target: {name: t, loader: {type: jsonl, path: t.jsonl}, split: {validation: 0.2, test: 0.2}}",
    "target: {name: t, loader: {type: jsonl, path: t.jsonl, text_field: text}}",  # sources only
    "target: {name: t, loader: {type: jsonl, path: t.jsonl}, test_loader: {type: csv, path: u.csv, text_field: x}}",
)
#: specs validate takes, written as an editor's user writes them
_TAKEN_BY_BOTH = (
    "finetune: {steps: 5, lr: 1e-4}",
    "finetune: {steps: '5', seeds: 2}",
    "verify: {enabled: yes, kinds: [surrogate]}",
    "report: {plots: off}",
    "model: {trust_remote_code: false, kind: classifier, num_labels: 3, dtype: bfloat16, device: cuda}",
    "model: {lora: {r: 4, alpha: 8, dropout: 0.1, target_modules: [q_proj, v_proj]}}",
    "project: {keep_previous: 5, cache_limit_gb: 20}",
    "project: {keep_previous: false}",
    "calibrate: {lambda_grid: [0.1], estimators: [fast, linear_sgd]}",
    "executor: {backend: dask, address: 'tcp://scheduler:8786', n_jobs: 8}",
    "evaluate: {metric: exact_match}",
    "search: {strategies: [{name: forward}, {name: random_ensemble, params: {m: 1000}, label: re}], final: re}",
    "sources: [{name: s, loader: {type: csv, path: s.csv, delimiter: tab, prompt_field: [a, b]}}]",
    "sources: [{name: s, loader: {type: huggingface, path: json, data_files: 'data/*.jsonl'}}]",
    "sources: [{name: s, loader: {type: reasoning_gym, task: chain_sum, size: 50}, split: {train: 40}}]",
    "sources: [{name: s, loader: {type: jsonl, path: s.jsonl}, split: {train: 0.8, validation: 0.2}}]",
    "sources: [{name: s, loader: {type: jsonl, path: s.jsonl}, split: {validation: 0, test: '0'}}]",
    "target: {name: t, loader: {type: jsonl, path: t.jsonl}, test_loader: {type: jsonl, path: u.jsonl}}",
    "target: {name: t, loader: {type: jsonl, path: t.jsonl, text_field: null}}",
    "sources: [{name: s, loader: {type: jsonl, path: s.jsonl, text_field: text}}]",
)


@pytest.mark.parametrize("text", _REFUSED_BY_BOTH + _TAKEN_BY_BOTH)
def test_the_schema_refuses_what_validate_refuses_and_takes_what_it_takes(text: str) -> None:
    """An editor checking a spec against the schema flags the mistakes validate refuses and
    none of the specs it takes (`enabled: yes`, YAML 1.1's boolean, was flagged), read as the
    editor's YAML 1.2 reads them where the two differ: `yes` and `off` are text there."""
    data = {**MINIMAL, **yaml.safe_load(text)}
    _, issues = validate_data(data, "x.yaml")
    as_an_editor_reads_it = yaml.safe_load(re.sub(r"\b(yes|off)\b", r"'\1'", text))
    flagged = _schema_errors({**MINIMAL, **as_an_editor_reads_it})
    if text in _REFUSED_BY_BOTH:
        assert issues and flagged, (issues, flagged)
    else:
        assert not issues and not flagged, ([i.message for i in issues], flagged)


def test_a_date_given_for_text_says_to_quote_it() -> None:
    """`name: 2024-01-01` is a date to PyYAML (YAML 1.1) and text to an editor's YAML 1.2, so
    only validate refuses it; it said "expected text, got the date datetime.date(2024, 1, 1)",
    not what to write, as it does for a number."""
    for written, said in (("2024-01-01", "the date 2024-01-01"), ("2024-01-01 10:30:00", "the time 2024-01-01 10:30:00")):
        text = f"project: {{name: {written}}}\n" + yaml.safe_dump(MINIMAL)
        _, issues = validate_data(yaml.safe_load(text), "x.yaml", text)
        assert [i.key for i in issues] == ["project.name"], issues
        assert issues[0].message == (f"expected text, got {said} (YAML reads an unquoted date as a date: quote it to "
                                     f'keep it text, e.g. "{said.split(" ", 2)[2]}")'), issues[0].message


def test_the_schema_takes_the_label_map_values_validate_takes() -> None:
    """`label_map: {negative: 0}` (onto a target labelled 0/1) and `{yes: true}` are valid:
    validate reads the values as labels; the schema wanted text, so editors flagged them."""
    data = yaml.safe_load("""
target: {name: t, loader: {type: jsonl, path: t.jsonl}, label_map: {"1.0": 1}}
sources: [{name: s, loader: {type: jsonl, path: s.jsonl}, label_map: {negative: 0, positive: 1.0, ok: true, x: null}}]
""")
    spec = Spec.model_validate(data)
    assert spec.sources[0].label_map == {"negative": "0", "positive": "1", "ok": "1", "x": None}  # null: dropped
    assert _schema_errors(data) == []
    assert _schema_errors({**data, "target": {**data["target"], "label_map": {"a": ["b"]}}})


def test_a_spec_file_without_read_permission_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A spec file the user may not read said "Permission denied." alone (a data file's says chmod)."""
    import errno

    from subsetctl.errors import SpecFileError
    from subsetctl.spec.reading import read_yaml

    path = tmp_path / "subsetctl.yaml"
    path.write_text("project: {name: x}\n")

    def denied(self: Path) -> bytes:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(SpecFileError, match=r"Permission denied: give your user read permission on it \(`chmod a\+r`\)"):
        read_yaml(path)


def test_a_source_files_pattern_walking_too_many_folders_stops_with_what_to_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`files: /**/*.zzzjsonl` walked every folder of the disk: validate was killed after
    60 s still walking. The walk stops past a number of folders (lowered here) with an issue
    on the group's key naming the pattern, where it walked and what to write instead; so does
    a huggingface loader's `data_files` glob."""
    from subsetctl import globbing
    from subsetctl.api import validate_spec_file

    path = _files_project(tmp_path, [{"files": f"{tmp_path}/**/*.zzzjsonl", "loader": {"type": "jsonl"}}])
    for i in range(30):
        (tmp_path / "many" / f"f{i}").mkdir(parents=True)
    monkeypatch.setattr(globbing, "FOLDER_LIMIT", 20)
    (issue,) = validate_spec_file(path).issues
    assert issue.key == "source_files[0].files" and issue.line is not None, issue
    assert f"{tmp_path}/**/*.zzzjsonl" in issue.message and "walked 20 folders below" in issue.message, issue.message
    assert "Start the pattern at the folder that holds the files" in issue.message
    narrower = validate_spec_file(path, ["source_files[0].files=data/sources/**/*.jsonl"])
    assert narrower.ok, narrower.issues  # a pattern walking fewer folders than that is unaffected
    spec = yaml.safe_load(path.read_text())  # a huggingface loader's data_files glob: the same walk
    spec["source_files"] = []
    spec["sources"] = [{"name": "hf", "loader": {"type": "huggingface", "path": "json",
                                                 "data_files": [f"{tmp_path}/**/*.zzzjsonl"]}}]
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    found = [i for i in validate_spec_file(path).issues if "walked 20 folders" in i.message]
    assert [i.key for i in found] == ["sources[0].loader.data_files"], validate_spec_file(path).issues


def test_a_pattern_walking_from_the_top_of_the_disk_or_a_system_folder_is_refused_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`files: /**/*.jsonl` walked tens of seconds to minutes (/sys's links are slow) before the
    folder limit stopped it: a '**' starting at / (written so, or reached by `..`) or in /proc,
    /sys or /dev is refused before any folder is listed, as an issue on the group's key; one
    lower down walks as before. (The limit is lowered so that, walked, each would stop at once.)"""
    from subsetctl import globbing
    from subsetctl.api import validate_spec_file

    monkeypatch.setenv("SUBSETCTL_GLOB_FOLDER_LIMIT", "50")
    listed: list[str] = []
    real_scandir = os.scandir
    monkeypatch.setattr(globbing.os, "scandir", lambda folder: listed.append(str(folder)) or real_scandir(folder))
    up = "../" * len(tmp_path.resolve().parts)
    for pattern, top in (("/**/*.jsonl", "/"), (f"{up}**/*.jsonl", "/"), ("/sys/**/*.jsonl", "/sys"),
                         ("/proc/**", "/proc")):
        with pytest.raises(globbing.WalkFromTheTop, match=rf"has '\*\*' read every folder below {top} "):
            globbing.glob_without_loops(pattern, tmp_path)
    assert listed == [], listed
    (tmp_path / "pool" / "a").mkdir(parents=True)
    (tmp_path / "pool" / "a" / "x.jsonl").write_text("{}\n")
    assert globbing.glob_without_loops(f"{tmp_path}/pool/**/*.jsonl", tmp_path) == {f"{tmp_path}/pool/a/x.jsonl"}
    path = _files_project(tmp_path, [{"files": "/**/*.zzzjsonl", "loader": {"type": "jsonl"}}])
    (issue,) = validate_spec_file(path).issues
    assert issue.key == "source_files[0].files" and "Start the pattern at the folder that holds the files" in (
        issue.message), issue.message


def test_a_pattern_in_dev_shm_walks_as_anywhere_else() -> None:
    """/dev/shm is the RAM file system a data set is copied to for fast reading, the one folder
    below /dev that holds data: `files: /dev/shm/pool/**/*.jsonl` was refused as a walk in "a
    system folder ... which holds no data", which it had matched before; /dev itself still is."""
    import shutil
    import tempfile

    from subsetctl import globbing

    if not (os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK)):
        pytest.skip("no writable /dev/shm here")
    pool = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        (pool / "a").mkdir()
        (pool / "a" / "x.jsonl").write_text("{}\n")
        assert globbing.glob_without_loops(f"{pool}/**/*.jsonl", pool) == {f"{pool}/a/x.jsonl"}
    finally:
        shutil.rmtree(pool, ignore_errors=True)
    with pytest.raises(globbing.WalkFromTheTop, match=r"below /dev "):
        globbing.glob_without_loops("/dev/**/*.jsonl", Path("/"))


def test_the_folder_limit_of_a_pattern_is_raised_by_an_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A legitimate data tree with more folders than the walk's limit was refused with advice
    (start the pattern lower) that did not apply, and nothing raised the limit: the message
    names SUBSETCTL_GLOB_FOLDER_LIMIT, which raises it; a value that is no number is a
    UserError naming the variable."""
    from subsetctl import globbing
    from subsetctl.errors import UserError

    for i in range(30):
        (tmp_path / "many" / f"f{i}").mkdir(parents=True)
    (tmp_path / "many" / "f7" / "a.jsonl").write_text("{}\n")
    monkeypatch.setattr(globbing, "FOLDER_LIMIT", 20)
    monkeypatch.delenv("SUBSETCTL_GLOB_FOLDER_LIMIT", raising=False)
    with pytest.raises(globbing.TooManyFolders, match="set SUBSETCTL_GLOB_FOLDER_LIMIT to a larger number"):
        globbing.glob_without_loops("many/**/*.jsonl", tmp_path)
    monkeypatch.setenv("SUBSETCTL_GLOB_FOLDER_LIMIT", "1_000")
    assert globbing.glob_without_loops("many/**/*.jsonl", tmp_path) == {"many/f7/a.jsonl"}
    monkeypatch.setenv("SUBSETCTL_GLOB_FOLDER_LIMIT", "5")
    with pytest.raises(globbing.TooManyFolders, match="walked 5 folders"):
        globbing.glob_without_loops("many/**/*.jsonl", tmp_path)
    monkeypatch.setenv("SUBSETCTL_GLOB_FOLDER_LIMIT", "lots")
    with pytest.raises(UserError, match="SUBSETCTL_GLOB_FOLDER_LIMIT='lots' is not a whole number above 0"):
        globbing.glob_without_loops("many/**/*.jsonl", tmp_path)


def test_a_missing_file_named_like_a_key_path_is_no_override_without_its_value() -> None:
    """The advice that a missing spec file or folder is an override without its value took any
    key path whose last part is wrong, so `validate sources.extra.yaml` (no such file) was told
    "sources.extra has no key 'yaml'" and to write key=VALUE. A last part must be a misspelling of
    a key valid there (`model.lora.rr`) for that advice; a file's name is said to be missing."""
    from subsetctl.spec.overrides import override_without_value_note

    for name in ("sources.extra.yaml", "model.lora.yml", "sources.small.jsonl", "search.strategies.greedy.json"):
        assert override_without_value_note(name) == "", name
    assert "model.lora has no key 'rr' (did you mean 'r'?" in override_without_value_note("model.lora.rr")


def test_an_index_into_a_setting_that_is_no_list_is_said_at_once() -> None:
    """`model.lora.r[0]` (an index into a number) was passed as a key of the spec and advised
    `model.lora.r[0]=VALUE`, whose override then failed with "model.lora.r is not a list". The
    advice says so at once; an item of a list (`model.lora.target_modules[0]`) is still a key."""
    from subsetctl.spec.overrides import override_without_value_note

    said = override_without_value_note("model.lora.r[0]")
    assert "model.lora.r is not a list, so model.lora.r[0] is no setting" in said
    assert "model.lora.r[0]=VALUE" not in said
    assert "model.lora is not a list, so model.lora[0] is no setting" in override_without_value_note("model.lora[0]")
    for right in ("model.lora.target_modules[0]", "sources[0].max_examples", "search.strategies[1]"):
        assert f"({right}=VALUE)" in override_without_value_note(right), right


def test_an_index_into_an_item_of_a_list_is_no_key_to_write_a_value_for() -> None:
    """`subsetctl run P 'sources[0][1]'` (an index into a source, which is no list) was advised
    to write `sources[0][1]=VALUE`, an override that then fails with "sources[0] is not a list";
    the advice says so at once, for an item named by index or by name (`sources.wiki[1]`)."""
    from subsetctl.spec.overrides import nearest_key, override_without_value_note

    said = override_without_value_note("sources[0][1]")
    assert "sources[0] is not a list, so sources[0][1] is no setting" in said and "[1]=VALUE" not in said, said
    said = override_without_value_note("search.strategies.greedy[0]")
    assert "search.strategies.greedy is not a list" in said and "[0]=VALUE" not in said, said
    assert nearest_key(["sources", 0, 1]) is None
    assert nearest_key(["modle", "loraa", "rr"]) == ["model", "lora", "r"]
    assert nearest_key(["model", "xyz", "r"]) is None


def test_override_advice_names_the_first_wrong_part_of_its_key_not_the_last_word() -> None:
    """The advice about an override's key looked at its last word alone: `model.loraa.r` (no
    value) read as a key of the spec, to be written `model.loraa.r=VALUE`; `model.lora.rr` was
    told to `init` a project; `sources.0.loaderr.path=x` to write `sources[0].loaderr.path`, and
    `search.strategies.5.name=x` (2 strategies) to write `search.strategies[5]`, with the example
    `sources[0].max_examples=50`. Now the first wrong part is named, with the keys valid there."""
    from subsetctl.spec.overrides import override_without_value_note

    said = override_without_value_note("model.loraa.r")
    assert "model has no key 'loraa' (did you mean 'lora'? its keys: " in said and "model.loraa.r=VALUE" not in said
    assert "model.lora has no key 'rr' (did you mean 'r'?" in override_without_value_note("model.lora.rr")
    assert "sources[0] has no key 'loaderr'" in override_without_value_note("sources[0].loaderr.path")
    assert "model.lora.r takes a value, not keys" in override_without_value_note("model.lora.r.alpha")
    for right in ("model.lora.r", "sources.wiki.loader.path", "target.label_map.pos", "search.strategies[0].params.k",
                  "model.lora.target_modules[0]"):  # (an item of a list of values, not a key under a value)
        assert f"({right}=VALUE)" in override_without_value_note(right)
    with pytest.raises(SpecError, match=r"sources\[0\]; and sources\[0\] has no key 'loaderr' \(did you mean 'loader'"):
        apply_overrides(MINIMAL, ["sources.0.loaderr.path=x"])
    with pytest.raises(SpecError, match=r"brackets, sources\[0\].max_examples=5\.$"):
        apply_overrides(MINIMAL, ["sources.0.max_examples=5"])
    with pytest.raises(SpecError, match=r"sources\[5\], which does not exist: sources has 1 item, sources\[0\]\.$"):
        apply_overrides(MINIMAL, ["sources.5.name=x"])
