"""What storing a run's resolved spec costs at thousands of sources, each stage against once a run.

Builds the project ``many_sources.py`` builds (``--sources`` JSONL files, one ``source_files``
group, a tiny random Llama; nothing is run) and times the pipeline's
``_resolved_spec_digest``, which each stage's start (its work marker) and end (its manifest)
call: stored afresh each time, as before (the spec's JSON text made, the stored copy read and
compared), against once a run, as now (later calls check that the copy is there). The source
dumps are made first, as a run has made them by the time a stage starts. Prints one JSON
line: the spec's size, the milliseconds of one store and of a later call (best of
``--repeats``), and what a run of ``--stages`` stages spent each way.

    python benchmarks/run_spec_store.py [--sources 2000] [--repeats 5] [--stages 9]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import ROOT, fresh_work_dir
from many_sources import build

sys.path.insert(0, str(ROOT))


def _best_ms(call, repeats: int) -> float:
    """The fastest of ``repeats`` calls of ``call``, in milliseconds."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stages", type=int, default=9)
    args = parser.parse_args()

    from subsetctl.api import load_project, make_pipeline
    from subsetctl.spec.dumps import dumps_once, spec_json

    folder: Path = fresh_work_dir("run_spec_store")
    build(folder, args.sources, 5)
    project, spec = load_project(folder)
    pipeline = make_pipeline(project, spec)
    with dumps_once():
        spec_json(spec)  # the sources' dumps, made by the run before its first stage

        def stored_afresh() -> None:  # as each call did before: nothing kept from the last one
            pipeline._run_spec = None
            pipeline._resolved_spec_digest()

        each_ms = _best_ms(stored_afresh, args.repeats)
        later_ms = _best_ms(pipeline._resolved_spec_digest, args.repeats)
    digest = pipeline._resolved_spec_digest()
    calls = 2 * args.stages  # a stage's start and its end
    print(json.dumps({
        "sources": args.sources, "repeats": args.repeats, "stages": args.stages,
        "stored_spec_kb": round((project.state_dir / "specs" / f"{digest}.json").stat().st_size / 1e3),
        "store_ms": round(each_ms, 1), "later_call_ms": round(later_ms, 3),
        "run_before_s": round(calls * each_ms / 1000, 2),
        "run_now_s": round((each_ms + (calls - 1) * later_ms) / 1000, 2),
    }))


if __name__ == "__main__":
    main()
