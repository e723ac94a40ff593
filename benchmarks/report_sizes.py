"""report.json and report.md at thousands of sources: their bytes, old code against new.

Writes the results of a data and a search stage over N sources of one ``source_files`` group
(``pool/s00042.jsonl``, one file each, its sha256 and size recorded; three strategies, two of
them scoring every source; the ``all`` and ``target_only`` baselines) straight into a project
folder, without running a model: the report is built from these files alone, as the report
stage builds it. Then builds the report with this checkout's code (new) and with that of
``--old`` (a git revision, checked out in a temporary worktree; by default the commit before
report.json was made shorter) and counts the bytes of report.json and report.md as each writes
them, and of report_sources.csv (new: report.md's per-source table of more than 200 sources is
its highest and lowest, and that file lists every source). Prints one JSON line.

    python benchmarks/report_sizes.py [--sources 1000 5000] [--old REV]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

from _common import ROOT, child_json, fresh_work_dir, old_worktree, revision_before

#: the commit whose parent is the old code by default (found by its message: hashes change on a rebase)
_FIRST_CHANGE = "report.json about half as long at thousands of sources"

#: run with the code under test on PYTHONPATH: the bytes of what its report stage writes
_SIZES = r"""
import json, sys
from pathlib import Path
from subsetctl.project import Project, json_file_text
from subsetctl.report.build import build_report
from subsetctl.report.markdown import render_markdown
try:  # (what the new code writes report.json as; the old wrote json_file_text)
    from subsetctl.project import compact_json_file_text as report_json_text
except ImportError:
    report_json_text = json_file_text
try:
    from subsetctl.report.markdown import sources_csv
except ImportError:
    sources_csv = lambda report: None
report = build_report(Project(Path(sys.argv[1])), name="report-sizes")
table = sources_csv(report) or ""
print(json.dumps({"format": report["report_format"], "report_json": len(report_json_text(report).encode()),
                  "report_md": len(render_markdown(report, {}).encode()), "sources_csv": len(table.encode())}))
"""


def build(folder: Path, n: int) -> None:
    """A project folder whose data and search stages finished over ``n`` sources."""
    sys.path.insert(0, str(ROOT))
    from subsetctl.project import json_file_text

    rng = random.Random(0)
    names = [f"s{i:05d}" for i in range(n)]
    counts = {"target": {"test": 20, "train": 20, "validation": 20},
              **{name: {"test": 0, "train": 5, "validation": 0} for name in names}}
    settings = {"loader": {"type": "jsonl", "prompt_field": "prompt", "response_field": "response"},
                "split": {"train": 1.0, "validation": 0, "test": 0}, "max_examples": None, "seed": None}
    sources = [{"name": name, **settings, "loader": {**settings["loader"], "path": f"pool/{name}.jsonl"}}
               for name in names]
    files = {name: {"file": {"sha256": hashlib.sha256(name.encode()).hexdigest(), "size": rng.randint(190, 210)}}
             for name in [*names, "target"]}
    scores = {label: {name: rng.uniform(-1, 1) for name in names} for label in ("gradient_similarity", "forward")}
    picks = {"gradient_similarity": [name for name in names if scores["gradient_similarity"][name] > -0.9],
             "forward": names[:29], "random_ensemble": names[::2]}
    strategies = {label: {"strategy": label, "selected": selected, "scores": scores.get(label, {}),
                          "estimated_loss_raw": rng.uniform(4, 5), "estimated_loss_calibrated": None}
                  for label, selected in picks.items()}
    stages = {
        "data": ({"target": "target", "kind": "causal-lm", "sources": names, "counts": counts, "labels": None,
                  "warnings": [], "reused": []}, {"sources": sources}, files, ("data.json", {"warnings": []})),
        "search": ({"final": "gradient_similarity", "selected": picks["gradient_similarity"], "strategies": picks,
                    "lambda": 1.0, "estimator": "fast"}, {"search": {"strategies": [{"name": s} for s in picks]}}, {},
                   ("selections.json", {
                       "sources": names, "final": "gradient_similarity", "strategies": strategies,
                       "baselines": {"all": {"selected": names, "estimated_loss_raw": 4.6},
                                     "target_only": {"selected": [], "estimated_loss_raw": 4.7}},
                       "calibration": {"enabled": False, "estimator": "fast", "lam": 1.0}})),
    }
    for stage, (summary, recorded, extra, (name, content)) in stages.items():
        place = folder / ".subsetctl" / stage
        place.mkdir(parents=True)
        (place / "manifest.json").write_text(json_file_text({
            "fingerprint": "f", "seconds": 1.0, "summary": summary, "inputs": {"slice": recorded, "extra": extra}}))
        (place / name).write_text(json_file_text(content))
    (folder / "subsetctl.yaml").write_text("project: {name: report-sizes}\n")


def sizes(code: Path, folder: Path) -> dict[str, int]:
    """What :data:`_SIZES` prints with the package in ``code``."""
    return child_json(code, _SIZES, folder, what="building the report")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--old", help="git revision of the old code (default: the one before the change)")
    args = parser.parse_args()

    old = args.old or revision_before(_FIRST_CHANGE)
    out: dict[str, dict[str, dict[str, int]]] = {}
    with old_worktree(old) as tree:
        for n in args.sources:
            folder = fresh_work_dir(f"report_sizes_{n}")
            build(folder, n)
            out[str(n)] = {"old": sizes(tree, folder), "new": sizes(ROOT, folder)}
    print(json.dumps({
        "sources": args.sources,
        **{f"{key}_bytes": {n: {way: figures[way][key] for way in ("old", "new")} for n, figures in out.items()}
           for key in ("report_json", "report_md", "sources_csv")},
        "report_json_ratio": {n: round(f["old"]["report_json"] / f["new"]["report_json"], 2) for n, f in out.items()},
        "report_md_ratio": {n: round(f["old"]["report_md"] / f["new"]["report_md"], 1) for n, f in out.items()},
        "format": {way: next(iter(out.values()))[way]["format"] for way in ("old", "new")} if out else None,
    }))


if __name__ == "__main__":
    main()
