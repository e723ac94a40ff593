"""The fixed cost of each command on a project of 1,000 and 10,000 sources, old code against new.

Builds the project ``many_sources.py`` builds (``N`` JSONL files of ``--rows`` rows, one
``source_files`` group, a tiny random Llama; gradients.d 8 and one cheap strategy), runs it
once (``--until``, by default the data stage: a first run of 10,000 sources to the end takes
most of an hour on 2 cores), then times `validate`, `plan`, a `run` with nothing to do (same
``--until``), `ls` and, when the run went to the end, `report`, from the command line, with
this checkout's code (new) and with that of ``--old`` (a git revision, checked out in a
temporary worktree; by default the commit before the first of these speed-ups), alternating,
``--repeats`` times each. Each way must print the same thing. Both ways run with bytecode
caching on (as an installed subsetctl does; PYTHONDONTWRITEBYTECODE is dropped) after one
warm-up command. Prints one JSON line: the best wall seconds of each command each way, and
the best CPU seconds (user + system, ``_cpu_s``), by number of sources. ``--copy DIR`` times a copy of a project already run instead (one run to the end
at 10,000 sources, kept from an earlier benchmark, say), its report too: no project built, no
first run.

    python benchmarks/fixed_overheads.py [--sources 1000 10000] [--rows 5] [--until data] [--repeats 1] [--old REV]
    python benchmarks/fixed_overheads.py --copy DIR [--repeats 1] [--old REV]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import yaml
from _common import ROOT, checked_subsetctl, fresh_work_dir, keep_best, old_worktree, revision_before
from many_sources import build

#: the commit whose parent is the old code by default (found by its message: hashes change on a rebase)
_FIRST_CHANGE = "refuse_links walks the state folder by path strings"


def _project(sources: int, rows: int, until: str | None) -> tuple[Path, float]:
    """A fresh project of ``sources`` sources, run once (to ``until``): its folder and the run's seconds."""
    folder = fresh_work_dir(f"fixed_overheads_{sources}")
    build(folder, sources, rows)
    spec = yaml.safe_load((folder / "subsetctl.yaml").read_text())
    spec["gradients"] = {"d": 8, "batch_size": 64}
    spec["search"] = {"strategies": [{"name": "gradient_similarity"}]}
    (folder / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    seconds = checked_subsetctl(ROOT, "run", str(folder), "-q", *(["--until", until] if until else []))[0]
    return folder, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rows", type=int, default=5, help="examples per source")
    parser.add_argument("--until", default="data", help="the stage the first run goes to ('' or 'report': the end)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--old", help="git revision of the old code (default: the one before the first change)")
    parser.add_argument("--copy", type=Path, help="a project already run, timed in a copy (not built, not run first)")
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # both ways with bytecode caching, as an installed subsetctl
    until = None if args.until in ("", "report") or args.copy else args.until

    old = args.old or revision_before(_FIRST_CHANGE)
    out: dict[str, dict[str, object]] = {}
    with old_worktree(old) as tree:
        for code in (tree, ROOT):
            checked_subsetctl(code, "ls")  # bytecode written, as an installed package has it
        for n in [args.copy.name] if args.copy else args.sources:
            if args.copy:
                folder, first_run = fresh_work_dir(f"fixed_overheads_{n}"), 0.0
                shutil.copytree(args.copy, folder, symlinks=True)
                # the copy's files are new inodes: the first command hashes them all again and grows the
                # hash cache, which the next command's "Kept on disk" counts (a warm-up, as a run would be)
                checked_subsetctl(ROOT, "plan", str(folder))
            else:
                folder, first_run = _project(n, args.rows, until)
            commands = [("validate", str(folder)), ("plan", str(folder)),
                        ("run", str(folder), *(["--until", until] if until else [])), ("ls",)]
            if until is None:
                commands.append(("report", str(folder)))
            best: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}  # [wall, cpu] by command
            for _ in range(args.repeats):
                for command in commands:
                    said = {}
                    for way, code in (("old", tree), ("new", ROOT)):
                        seconds, cpu_seconds, said[way] = checked_subsetctl(code, *command)
                        keep_best(best[way], command[0], seconds, cpu_seconds)
                    assert said["old"] == said["new"], f"`{command[0]}` says otherwise:\n{said['old']}\n---\n{said['new']}"
            out[str(n)] = {"first_run_s": round(first_run, 1), **{
                f"{name}_{unit}": {way: round(best[way][name][i], 2) for way in ("old", "new")}
                for i, unit in enumerate(("s", "cpu_s")) for name in best["new"]}}
    print(json.dumps({"rows_per_source": args.rows, "until": until or "report", "repeats": args.repeats,
                      "old": old, "same_output": True, "by_sources": out}))


if __name__ == "__main__":
    main()
