"""report.md's escaping of bare domains in long text: seconds, old code against new.

Times ``md_text`` (what report.md writes a warning or a data row's words with) on text holding
one run of top-level labels (``io.io.io...``, each ``.`` one that markdown-it's linkify would
link, so each is escaped) and on ordinary words with a few file names, with this checkout's
code (new) and with that of ``--old`` (a git revision in a temporary worktree; by default the
commit before the escapes were found in one pass: the old code found one escape a pass over
the whole text). Prints one JSON line.

    python benchmarks/markdown_bare_domains.py [--labels 2000] [--old REV]
"""

from __future__ import annotations

import argparse
import json

from _common import ROOT, child_json, old_worktree, revision_before

#: the commit whose parent is the old code by default (found by its message: hashes change on a rebase)
_FIRST_CHANGE = "escapes a bare domain's dots in one pass"

#: run with the code under test on PYTHONPATH: seconds md_text takes on each text
_TIMES = r"""
import json, sys, time
from subsetctl.report.markdown import md_text
labels = int(sys.argv[1])
texts = {"top_labels": "io." * labels + "io", "words": "see notes.md and corpus.db in run_3 " * labels}
times = {}
for name, text in texts.items():
    start = time.perf_counter()
    escaped = md_text(text)
    times[name] = round(time.perf_counter() - start, 4)
assert escaped.count("\\.") == labels  # (notes.md's dot, not corpus.db's)
print(json.dumps(times))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=2000, help="top-level labels in the run (and words repeated)")
    parser.add_argument("--old", default=None, help="the old code's git revision (default: before the change)")
    args = parser.parse_args()
    new = child_json(ROOT, _TIMES, args.labels, what="md_text")
    with old_worktree(args.old or revision_before(_FIRST_CHANGE)) as tree:
        old = child_json(tree, _TIMES, args.labels, what="md_text")
    print(json.dumps({"labels": args.labels, "old_s": old, "new_s": new}))


if __name__ == "__main__":
    main()
