"""A prepared row's metadata as the evaluate stage reads it (:mod:`subsetctl.row_metadata`)."""

from __future__ import annotations

from subsetctl.row_metadata import is_reasoning_gym_row, row_metadata

#: metadata JSON nested deeper than Python's JSON reader goes (it raises RecursionError)
_TOO_DEEP = '{"a":' * 5_000 + "1" + "}" * 5_000


def test_metadata_nested_too_deeply_reads_as_none_not_a_traceback():
    """Metadata JSON nested past Python's recursion limit is metadata that parses to no
    dict ({}), as unparsable metadata is, not a RecursionError out of the evaluate stage."""
    assert row_metadata({"metadata": _TOO_DEEP}) == {}
    assert is_reasoning_gym_row({"metadata": _TOO_DEEP}) is False


def test_metadata_parsed_or_taken_as_is():
    """A JSON object's text parses; a dict is taken as is; other values read as {}."""
    assert row_metadata({"metadata": '{"rg_task": "x"}'}) == {"rg_task": "x"}
    assert is_reasoning_gym_row({"metadata": {"rg_task": "x"}}) is True
    assert row_metadata({"metadata": "[1]"}) == {} and row_metadata({"metadata": "not json"}) == {}
    assert row_metadata({}) == {}
