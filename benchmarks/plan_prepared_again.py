"""`plan` of a project of many ``save_to_disk`` sources whose data stage runs again, old against new.

Builds ``--sources`` folders written by ``datasets``' ``save_to_disk`` of ``--rows`` rows each
(:func:`saved_to_disk_sources.build`'s project, on a tiny random Llama), runs its data stage
once, then changes one source's ``max_examples``: the data stage is stale and `plan` says how
many sources a run prepares again ("1 of N prepared again (s0000), N-1 reused"), by the keys
the prepared sources record. Times `plan` from the command line ``--repeats`` times each way,
alternating: this checkout's code (new) and that of ``--old`` (a git revision, in a temporary
worktree; by default the commit before plan counted each source's files once). Each way must
print the same thing. Wall seconds are the best of the repeats, CPU seconds (user + system of
the child) beside them, as the machine may be shared. Prints one JSON line.

    python benchmarks/plan_prepared_again.py [--sources 500] [--rows 200] [--repeats 3] [--old REV]
"""

from __future__ import annotations

import json

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
from saved_to_disk_sources import build

#: the commit whose parent is the old code by default (found by its message: hashes change on a rebase)
_FIRST_CHANGE = "plan counts each source's files once"


def main() -> None:
    args = old_against_new_arguments(__doc__, sources=500, rows=200)
    project = build(fresh_work_dir("plan_prepared_again"), args.sources, args.rows)[0]
    checked_subsetctl(ROOT, "run", str(project), "--until", "data", "-q")
    spec = yaml.safe_load((project / "subsetctl.yaml").read_text())
    spec["sources"][0]["max_examples"] = args.rows // 2
    (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    old = args.old or revision_before(_FIRST_CHANGE)
    best: dict[str, list[float]] = {}
    with old_worktree(old) as tree:
        for _ in range(args.repeats):
            said = {}
            for way, code in (("old", tree), ("new", ROOT)):
                wall, cpu, printed = checked_subsetctl(code, "plan", str(project))
                said[way] = without_rough_times(printed)
                keep_best(best, way, wall, cpu)
            assert said["old"] == said["new"], f"`plan` says otherwise:\n{said['old']}\n---\n{said['new']}"
    assert "prepared again (s0000)" in said["new"], said["new"]
    print(json.dumps({"sources": args.sources, "rows_per_source": args.rows, "repeats": args.repeats, "old": old,
                      "plan_s": {way: {"wall": round(wall, 2), "cpu": round(cpu, 2)} for way, (wall, cpu) in best.items()}}))


if __name__ == "__main__":
    main()
