"""`validate` on a spec that lists thousands of sources one by one (no ``source_files``).

Parsing the YAML with the pure-Python parser is most of the work, so what is measured
is how many times `validate` pays for it: its wall time divided by the time of one
compose of the same text (``yaml.compose``), both measured in this run. Each check that
names lines used to compose the spec again (6 composes in all, 5.1 s for 3,000
sources); the key-line map is now made once per text. Prints one JSON line.

    python benchmarks/big_spec.py [--sources 3000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=3000)
    args = parser.parse_args()
    from subsetctl.api import validate_spec_file

    with tempfile.TemporaryDirectory() as tmp:
        path = build(Path(tmp), args.sources)
        text = path.read_text()
        started = time.perf_counter()
        yaml.compose(text, Loader=yaml.SafeLoader)
        compose_s = time.perf_counter() - started
        started = time.perf_counter()
        report = validate_spec_file(path)
        validate_s = time.perf_counter() - started
    if report.issues:
        raise SystemExit(f"the generated spec has problems: {[issue.render() for issue in report.issues][:3]}")
    print(json.dumps({"sources": args.sources, "spec_kb": round(len(text) / 1024), "compose_s": round(compose_s, 2),
                      "validate_s": round(validate_s, 2),
                      "validate_in_composes": round(validate_s / compose_s, 1)}))


if __name__ == "__main__":
    main()
