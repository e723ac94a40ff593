"""`validate` and `plan` on a project of many ``save_to_disk`` folders as sources, old against new,
and against the same rows as JSON Lines files.

Builds ``--sources`` folders written by ``datasets``' ``save_to_disk`` (every other one a
``DatasetDict`` of train and validation splits, read with ``split: train``: left out, the new
code notes the split it reads, which the old did not) of ``--rows`` rows each, read with ``type:
huggingface``, and the same rows as one JSONL file a source read with ``type: jsonl``, on a
tiny random Llama (no stage is run: `plan` has everything to do). Times `validate` and
`plan` from the command line ``--repeats`` times each way, alternating: this checkout's
code (new) and that of ``--old`` (a git revision, in a temporary worktree; by default the
commit before the ``datasets`` version was read once a process); the JSONL project with the
new code only. Each way must print the same thing. Wall seconds are the best of the
repeats, CPU seconds (user + system of the child) beside them, as the machine may be shared.
Prints one JSON line.

    python benchmarks/saved_to_disk_sources.py [--sources 500] [--rows 200] [--repeats 3] [--old REV]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from _common import (
    ROOT,
    checked_subsetctl,
    fresh_work_dir,
    keep_best,
    old_against_new_arguments,
    old_worktree,
    revision_before,
    without_rough_times,
)

sys.path.insert(0, str(ROOT / "tests"))  # tinymodels: the tiny random Llama the tests use

#: the commit whose parent is the old code by default (found by its message: hashes change on a rebase)
_FIRST_CHANGE = "datasets version once a process"


def build(folder: Path, sources: int, rows: int) -> tuple[Path, Path]:
    """The ``save_to_disk`` project and the JSONL one (same target, model and rows)."""
    import datasets
    from tinymodels import save_tiny_llama

    datasets.disable_progress_bars()
    hf, jl = folder / "hf", folder / "jsonl"
    for project in (hf, jl):
        project.mkdir(parents=True, exist_ok=True)
    save_tiny_llama(folder / "model")
    target = [{"prompt": f"{i}+1=", "response": str(i + 1)} for i in range(60)]
    (folder / "target.jsonl").write_text("".join(json.dumps(row) + "\n" for row in target))
    loaders = {"hf": [], "jsonl": []}
    for k in range(sources):
        table = {"question": [f"{i}*{k}=" for i in range(rows)], "answer": [str(i * k) for i in range(rows)]}
        dataset = datasets.Dataset.from_dict(table)
        saved = folder / "saved" / f"s{k:04d}"
        if k % 2:
            datasets.DatasetDict({"train": dataset, "validation": dataset.select(range(rows // 10))}).save_to_disk(saved)
        else:
            dataset.save_to_disk(saved)
        lines = folder / "lines" / f"s{k:04d}.jsonl"
        lines.parent.mkdir(exist_ok=True)
        lines.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n"
                                 for q, a in zip(table["question"], table["answer"], strict=True)))
        columns = {"prompt_field": "question", "response_field": "answer"}
        # (a DatasetDict's split named, as the old code read it by default: the new notes one left unnamed)
        split = {"split": "train"} if k % 2 else {}
        loaders["hf"].append({"type": "huggingface", "path": str(saved), **columns, **split})
        loaders["jsonl"].append({"type": "jsonl", "path": str(lines), **columns})
    for project, kind in ((hf, "hf"), (jl, "jsonl")):
        spec = {
            "project": {"name": f"saved-{kind}", "seed": 0},
            "model": {"source": str(folder / "model"), "max_length": 32, "lora": {"r": 2, "alpha": 4}},
            "target": {"name": "target", "loader": {"type": "jsonl", "path": str(folder / "target.jsonl")},
                       "split": {"train": 20, "validation": 20, "test": 20}},
            "sources": [{"name": f"s{k:04d}", "loader": loader} for k, loader in enumerate(loaders[kind])],
            "gradients": {"d": 8, "batch_size": 64},
            "search": {"strategies": [{"name": "gradient_similarity"}]},
        }
        (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return hf, jl


def main() -> None:
    args = old_against_new_arguments(__doc__, sources=500, rows=200)

    folder = fresh_work_dir("saved_to_disk_sources")
    hf, jl = build(folder, args.sources, args.rows)
    old = args.old or revision_before(_FIRST_CHANGE)
    best: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}, "jsonl": {}}
    with old_worktree(old) as tree:
        for command in ("validate", "plan"):  # (the first of each hashes the files: left out of the timings)
            checked_subsetctl(ROOT, command, str(hf))
            checked_subsetctl(ROOT, command, str(jl))
        for _ in range(args.repeats):
            for command in ("validate", "plan"):
                said = {}
                for way, code, project in (("old", tree, hf), ("new", ROOT, hf), ("jsonl", ROOT, jl)):
                    wall, cpu, said[way] = checked_subsetctl(code, command, str(project))
                    keep_best(best[way], command, wall, cpu)
                said = {way: without_rough_times(text) for way, text in said.items()}
                assert said["old"] == said["new"], f"`{command}` says otherwise:\n{said['old']}\n---\n{said['new']}"
    print(json.dumps({
        "sources": args.sources, "rows_per_source": args.rows, "repeats": args.repeats, "old": old,
        **{f"{command}_s": {way: {"wall": round(best[way][command][0], 2), "cpu": round(best[way][command][1], 2)}
                            for way in best} for command in ("validate", "plan")},
    }))


if __name__ == "__main__":
    main()
