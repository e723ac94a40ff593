"""`run`, `plan` and `report` with nothing to do on a project of thousands of sources, old against new.

Builds the project ``many_sources.py`` builds (``--sources`` JSONL files of ``--rows`` rows,
one ``source_files`` group, a tiny random Llama; gradients.d 8 and one cheap strategy, so
the one real run is short), runs it once, then times `subsetctl run` (nothing to do),
`plan` and `report` from the command line, ``--repeats`` times each way, alternating: with
this checkout's code (new) and with that of ``--old`` (a git revision, checked out in a
temporary worktree; by default the commit before manifests were parsed once per command).
Each way must print the same thing. Prints one JSON line: the best seconds of each command
each way, and the ratios.

    python benchmarks/noop_many_sources.py [--sources 2000] [--rows 5] [--repeats 3] [--old REV]
"""

from __future__ import annotations

import json

import yaml
from _common import (
    ROOT,
    checked_subsetctl,
    fresh_work_dir,
    old_against_new_arguments,
    old_worktree,
    revision_before,
)
from many_sources import build

#: the commit whose parent is the old code by default (found by its message: hashes change on a rebase)
_FIRST_CHANGE = "parse each stage manifest once per command"


def main() -> None:
    args = old_against_new_arguments(__doc__, sources=2000, rows=5)

    folder = fresh_work_dir("noop_many_sources")
    build(folder, args.sources, args.rows)
    spec = yaml.safe_load((folder / "subsetctl.yaml").read_text())
    spec["gradients"] = {"d": 8, "batch_size": 64}
    spec["search"] = {"strategies": [{"name": "gradient_similarity"}]}
    (folder / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    first_run = checked_subsetctl(ROOT, "run", str(folder), "-q")[0]

    old = args.old or revision_before(_FIRST_CHANGE)
    with old_worktree(old) as tree:
        best: dict[str, dict[str, float]] = {"old": {}, "new": {}}
        for _ in range(args.repeats):
            for command in ("run", "plan", "report"):
                said = {}
                for way, code in (("old", tree), ("new", ROOT)):
                    seconds, _, said[way] = checked_subsetctl(code, command, str(folder))
                    best[way][command] = min(seconds, best[way].get(command, seconds))
                assert said["old"] == said["new"], f"`{command}` says otherwise:\n{said['old']}\n---\n{said['new']}"
    manifest = folder / ".subsetctl" / "data" / "manifest.json"
    print(json.dumps({
        "sources": args.sources, "rows_per_source": args.rows, "repeats": args.repeats,
        "data_manifest_mb": round(manifest.stat().st_size / 1e6, 1), "first_run_s": round(first_run, 1),
        **{f"{command}_s": {way: round(best[way][command], 2) for way in ("old", "new")} for command in best["new"]},
        **{f"{command}_speedup": round(best["old"][command] / best["new"][command], 2) for command in best["new"]},
        "same_output": True,
    }))


if __name__ == "__main__":
    main()
