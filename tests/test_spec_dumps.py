"""The spec and its sources as JSON, each source dumped once per command
(subsetctl.spec.dumps): the same dumps, fingerprints unchanged."""

from __future__ import annotations

import json

from subsetctl.spec import Spec, fingerprint_dump
from subsetctl.spec.dumps import dumps_once, source_json, spec_json
from subsetctl.spec.models import SourceSpec

#: options that dump otherwise (unset keys left out, a serializer of their own), on the target and sources
VARIED = {
    "project": {"name": "p", "seed": 3, "keep_previous": 2},
    "model": {"source": "m", "kind": "classifier", "num_labels": 3},
    "target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl", "label_field": "y"},
               "test_loader": {"type": "csv", "path": "test.csv"}, "label_map": {"0": "no", "1": "yes"}},
    "sources": [{"name": "a", "loader": {"type": "parquet", "path": "a.parquet", "where": {"task": "x"}}},
                {"name": "b", "loader": {"type": "huggingface", "path": "glue", "name": "cola", "split": "train"},
                 "max_examples": 7},
                {"name": "c", "loader": {"type": "jsonl", "path": "c.jsonl", "messages_field": "messages"}}],
    "gradients": {"d": 16, "seed": 3, "memory_budget_mb": 64},
    "search": {"strategies": [{"name": "forward", "params": {"max_steps": 2}}]},
    "plugins": ["mine:thing"],
}


def test_the_dumps_held_are_the_specs_own_in_the_same_order() -> None:
    """Within dumps_once, spec_json is spec.model_dump(mode="json") key for key, in order (a
    resolved spec's text, and every fingerprint, are as before), however often it is asked;
    a caller setting a key of one has not changed the next."""
    spec = Spec.model_validate(VARIED)
    dumped = spec.model_dump(mode="json")
    with dumps_once():
        first = spec_json(spec)
        first["sources"][0]["loader"] = None  # (a new top-level dict each time: not the one held)
        assert json.dumps(spec_json(spec)) == json.dumps(dumped)
        assert fingerprint_dump(spec) == fingerprint_dump(Spec.model_validate(VARIED))
        assert source_json(spec.target) == spec.target.model_dump(mode="json")
    assert spec_json(spec) == dumped  # (outside: dumped as it is)


def test_a_plan_dumps_each_source_once(tiny_project_ran, monkeypatch) -> None:
    """`plan` dumped the whole spec for each stage's slice (and twice for some), each of 10,000
    sources ~18 times in a `run`: within the command each source is dumped once."""
    from subsetctl.api import plan_project

    project = tiny_project_ran()
    dumped: list[int] = []  # one id per source dumped, each time
    spec_dump, source_dump = Spec.model_dump, SourceSpec.model_dump

    def whole(self, **kwargs):  # the spec's dump holds each of its sources unless left out
        if "sources" not in (kwargs.get("exclude") or ()):
            dumped.extend(id(s) for s in self.sources)
        return spec_dump(self, **kwargs)

    def one(self, **kwargs):
        dumped.append(id(self))
        return source_dump(self, **kwargs)

    monkeypatch.setattr(Spec, "model_dump", whole)
    monkeypatch.setattr(SourceSpec, "model_dump", one)
    _, spec, statuses = plan_project(project)
    assert not any(s.will_run for s in statuses)
    assert sorted(dumped.count(id(s)) for s in spec.sources) == [1] * len(spec.sources)
