"""`validate` on a ``source_files`` group of thousands of files that each have a problem
(a split asking for more rows than every file holds): each problem names its file, so
there is one per file, and each message is checked for ``sources[i]`` references to
rewrite as the file's group and name. That check searched every message once per
expanded source (files x problems regex searches: 2 min 17 s at 2,000 files); it now
finds the references in one pass. Times `validate`, and the rewriting of its problems
with the current code and with the earlier per-source loop (kept here as the reference),
in the same run on the same problems, and checks that both give the same messages (with
one message a file: the merging of a problem many files share into one message, which
came after, is switched off for that comparison and timed on its own, ``merged_s``).
Prints one JSON line.

    python benchmarks/group_problems.py [--files 1000]
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml


def build(folder: Path, files: int) -> Path:
    """A target, ``files`` JSONL files of 4 rows in one group asking for 10 train rows."""
    row = json.dumps({"prompt": "1+1=", "response": "2"}) + "\n"
    (folder / "t.jsonl").write_text(row * 30)
    pool = folder / "pool"
    pool.mkdir()
    for i in range(files):
        (pool / f"s{i:05d}.jsonl").write_text(row * 4)
    spec = {"target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
            "source_files": [{"files": "pool/*.jsonl", "loader": {"type": "jsonl"}, "split": {"train": 10}}]}
    path = folder / "subsetctl.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def earlier_rewrite(issues: list[Any], origin: dict[int, tuple[int, str]]) -> None:
    """The per-source loop ``blame_source_files`` had for messages naming ``sources[i]``
    (its key handling left out: these problems' keys are not "(top level)")."""
    for issue in issues:
        for index, (g, path) in origin.items():
            if re.search(rf"sources\[{index}\](?!\d)", issue.message):
                where = f"source_files[{g}] ({path})"
                issue.message = re.sub(rf"sources\[{index}\](?!\d)", lambda _m, w=where: w, issue.message)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()

    from subsetctl.api import validate_spec_file
    from subsetctl.spec import reading
    from subsetctl.spec.issues import SpecIssue
    from subsetctl.spec.reading import blame_source_files

    with tempfile.TemporaryDirectory() as tmp:
        path = build(Path(tmp), args.files)
        started = time.perf_counter()
        report = validate_spec_file(path)
        validate_s = time.perf_counter() - started
    problems = len(report.issues)
    origin = {i: (0, f"pool/s{i:05d}.jsonl") for i in range(args.files)}
    issues = [SpecIssue(file="subsetctl.yaml", line=None, key=f"sources[{i}].split",
                        message=f"asks for 10 examples but the source has at most 4 (sources[{i}])")
              for i in range(args.files)]
    earlier = copy.deepcopy(issues)
    started = time.perf_counter()
    merged = blame_source_files(copy.deepcopy(issues), origin, {("source_files", 0): 3})
    merged_s = time.perf_counter() - started
    said_one_by_one = reading.FILES_SAID_ONE_BY_ONE
    reading.FILES_SAID_ONE_BY_ONE = args.files  # one message a file, as the earlier loop left them
    try:
        started = time.perf_counter()
        now = blame_source_files(copy.deepcopy(issues), origin, {("source_files", 0): 3})
        now_s = time.perf_counter() - started
    finally:
        reading.FILES_SAID_ONE_BY_ONE = said_one_by_one
    started = time.perf_counter()
    earlier_rewrite(earlier, origin)
    earlier_s = time.perf_counter() - started
    assert [i.message for i in now] == [i.message for i in earlier]
    assert len(merged) == 1, len(merged)  # the problem every file shares, said once
    print(json.dumps({
        "files": args.files, "problems": problems, "validate_s": round(validate_s, 2),
        "rewrite_s": round(now_s, 3), "rewrite_earlier_loop_s": round(earlier_s, 2),
        "speedup": round(earlier_s / now_s, 1), "same_messages": True, "merged_s": round(merged_s, 3),
    }))


if __name__ == "__main__":
    main()
