"""What checking a committed stage's artifacts costs: `plan` and every `run` verify
every file a stage wrote against its manifest before trusting it.

Writes a stage folder of ``--gb`` GB (a gradient-store-sized file and a few small ones),
commits it the way the pipeline does (:func:`subsetctl.project.artifact_checksums`), then
times :func:`subsetctl.project.verify_checksums` three ways in the same run: with the
recorded stat stamps (files untouched since: the usual case), with the stamps left out
(a manifest of a version before stamps: every byte hashed, as every check did before),
and after one file was rewritten (that file hashed again, its damage found). Prints one
JSON line.

    python benchmarks/verify_artifacts.py [--gb 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from _common import ROOT  # noqa: F401  (puts the repository on the path like the other benchmarks)


def main() -> None:
    from subsetctl.project import artifact_checksums, artifact_contents, verify_checksums

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0, help="size of the stage folder (GB)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="subsetctl-verify-"))
    try:
        store = folder / "store"
        store.mkdir()
        block = os.urandom(1 << 20)
        with open(store / "gradients.f32", "wb") as handle:
            handle.writelines(block for _ in range(int(args.gb * 1024)))
        for name in ("info.json", "outputs.f32", "rows.json"):
            (store / name).write_bytes(os.urandom(4096))
        start = time.perf_counter()
        recorded = artifact_checksums(folder)
        commit_s = time.perf_counter() - start

        def timed(artifacts: dict) -> tuple[float, list[str]]:
            start = time.perf_counter()
            problems = verify_checksums(folder, artifacts)
            return time.perf_counter() - start, problems

        stamped_s, stamped_problems = timed(recorded)
        full_s, full_problems = timed(artifact_contents(recorded))
        with open(store / "outputs.f32", "r+b") as handle:  # damage a small file in place, same size
            handle.write(b"\0" * 16)
        damaged_s, damaged_problems = timed(recorded)
        print(json.dumps({
            "gb": args.gb,
            "commit_s": round(commit_s, 3),
            "verify_untouched_s": round(stamped_s, 4),
            "verify_full_hash_s": round(full_s, 3),
            "speedup": round(full_s / max(stamped_s, 1e-6), 1),
            "verify_after_one_write_s": round(damaged_s, 4),
            "untouched_problems": len(stamped_problems) + len(full_problems),
            "damage_found": damaged_problems == ["store/outputs.f32 does not match its checksum"],
        }))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
