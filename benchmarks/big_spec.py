"""`validate` on a spec that lists thousands of sources one by one (no ``source_files``).

Parsing the YAML with the pure-Python parser is most of the work, so what is measured
is how many times `validate` pays for it: its wall time divided by the time of one
compose of the same text (``yaml.compose``), both measured in this run. Each check that
names lines used to compose the spec again (6 composes in all, 5.1 s for 3,000
sources); the key-line map is now made once per text. The spec itself is now composed by
libyaml where PyYAML has it (with the same checks; the pure-Python loader reads what libyaml
would read otherwise and every text either refuses): reading it, and validating it, are timed
both ways in this run (CPU seconds, best of ``--repeats``), ``read_speedup`` and
``validate_speedup`` the ratios. Prints one JSON line.

    python benchmarks/big_spec.py [--sources 3000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import yaml
from _common import ROOT

sys.path.insert(0, str(ROOT))


def build(folder: Path, sources: int) -> Path:
    """A target and ``sources`` tiny JSONL files, each listed in the spec by name."""
    rows = [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(30)]
    (folder / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    listed = []
    for i in range(sources):
        (folder / f"s{i}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:5]))
        listed.append({"name": f"s{i}", "loader": {"type": "jsonl", "path": f"s{i}.jsonl"}})
    spec = {"target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"},
                       "split": {"train": 10, "validation": 10, "test": 10}},
            "sources": listed, "search": {"strategies": [{"name": "random_ensemble"}]}}
    path = folder / "subsetctl.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _best_cpu_s(work: Callable[[], object], repeats: int) -> float:
    """The least CPU seconds ``work()`` took in ``repeats`` runs (the machine may be shared)."""
    times = []
    for _ in range(repeats):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return min(times)


def _both_ways(work: Callable[[], object], repeats: int) -> tuple[float, float]:
    """CPU seconds of ``work()`` with the spec composed by libyaml, then by the pure-Python loader alone."""
    from subsetctl.spec import reading

    fast = _best_cpu_s(work, repeats)
    with mock.patch.object(reading, "_FAST_UNIQUE_KEY_LOADER", None):
        pure_python = _best_cpu_s(work, repeats)
    return fast, pure_python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from subsetctl.api import validate_spec_file
    from subsetctl.spec.reading import read_yaml

    with tempfile.TemporaryDirectory() as tmp:
        path = build(Path(tmp), args.sources)
        text = path.read_text()
        started = time.perf_counter()
        yaml.compose(text, Loader=yaml.SafeLoader)
        compose_s = time.perf_counter() - started
        started = time.perf_counter()
        report = validate_spec_file(path)
        validate_s = time.perf_counter() - started
        read_cpu_s, read_pure_python_cpu_s = _both_ways(lambda: read_yaml(path), args.repeats)
        validate_cpu_s, validate_pure_python_cpu_s = _both_ways(lambda: validate_spec_file(path), args.repeats)
    if report.issues:
        raise SystemExit(f"the generated spec has problems: {[issue.render() for issue in report.issues][:3]}")
    print(json.dumps({"sources": args.sources, "spec_kb": round(len(text) / 1024), "compose_s": round(compose_s, 2),
                      "validate_s": round(validate_s, 2),
                      "validate_in_composes": round(validate_s / compose_s, 1),
                      "read_cpu_s": round(read_cpu_s, 3), "read_pure_python_cpu_s": round(read_pure_python_cpu_s, 3),
                      "read_speedup": round(read_pure_python_cpu_s / read_cpu_s, 1),
                      "validate_cpu_s": round(validate_cpu_s, 2),
                      "validate_pure_python_cpu_s": round(validate_pure_python_cpu_s, 2),
                      "validate_speedup": round(validate_pure_python_cpu_s / validate_cpu_s, 2)}))


if __name__ == "__main__":
    main()
