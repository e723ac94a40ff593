"""`run`, `plan` and `report` with nothing to do on a project of thousands of sources, old against new.

Builds the project ``many_sources.py`` builds (``--sources`` JSONL files of ``--rows`` rows,
one ``source_files`` group, a tiny random Llama; gradients.d 8 and one cheap strategy, so
the one real run is short), runs it once, then times `subsetctl run` (nothing to do),
`plan` and `report` from the command line, ``--repeats`` times each way, alternating: with
this checkout's code (new) and with that of ``--old`` (a git revision, checked out in a
temporary worktree; by default the commit before manifests were parsed once per command).
The old code has a copy of the project of its own, which its own `run` brings up to date
first (untimed): the stages' inputs and results are recorded otherwise from one version to
the next, so the old code re-ran stages of the new one's project (and the reports' words
differ). Each command must leave every stage's results as they were (nothing re-run, each
stage's manifest the same bytes), and `run` and `plan` must say that nothing is to be done.
Prints one JSON line: the best seconds of each command each way, and the ratios.

    python benchmarks/noop_many_sources.py [--sources 2000] [--rows 5] [--repeats 3] [--old REV]
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

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


#: what `run` and `plan` with nothing to do say, old code and new (their first line)
_NOTHING_TO_DO = {"run": "Everything is up to date; nothing to do.", "plan": "Everything is up to date"}


def _results_digest(project: Path) -> str:
    """sha256 of every stage's manifest (the commit point of its results, which a stage run
    again writes anew): the same before and after a command that did nothing."""
    digest = hashlib.sha256()
    for manifest in sorted((project / ".subsetctl").glob("*/manifest.json")):
        digest.update(manifest.relative_to(project).as_posix().encode() + b"\0" + manifest.read_bytes())
    return digest.hexdigest()


def _check_nothing_done(command: str, way: str, project: Path, before: str, said: str) -> None:
    """Stop the benchmark where ``command`` ran a stage, or `run` or `plan` did not say it had nothing to do."""
    if _results_digest(project) != before:
        raise SystemExit(f"`{command}` with the {way} code changed the results of {project}: not a run with "
                         f"nothing to do.\n{said}")
    if command in _NOTHING_TO_DO and _NOTHING_TO_DO[command] not in said:
        raise SystemExit(f"`{command}` with the {way} code did not say that nothing is to be done:\n{said}")


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
    old_folder = fresh_work_dir("noop_many_sources_old")
    shutil.copytree(folder, old_folder, symlinks=True)
    with old_worktree(old) as tree:
        old_first_run = checked_subsetctl(tree, "run", str(old_folder), "-q")[0]  # what the old code counts stale
        best: dict[str, dict[str, float]] = {"old": {}, "new": {}}
        for _ in range(args.repeats):
            for command in ("run", "plan", "report"):
                for way, code, project in (("old", tree, old_folder), ("new", ROOT, folder)):
                    before = _results_digest(project)
                    seconds, _, said = checked_subsetctl(code, command, str(project))
                    _check_nothing_done(command, way, project, before, said)
                    best[way][command] = min(seconds, best[way].get(command, seconds))
    manifest = folder / ".subsetctl" / "data" / "manifest.json"
    print(json.dumps({
        "sources": args.sources, "rows_per_source": args.rows, "repeats": args.repeats,
        "data_manifest_mb": round(manifest.stat().st_size / 1e6, 1), "first_run_s": round(first_run, 1),
        "old_first_run_s": round(old_first_run, 1),
        **{f"{command}_s": {way: round(best[way][command], 2) for way in ("old", "new")} for command in best["new"]},
        **{f"{command}_speedup": round(best["old"][command] / best["new"][command], 2) for command in best["new"]},
        "nothing_done": True,
    }))


if __name__ == "__main__":
    main()
