"""Helpers for the data-stage tests: small files written to tmp_path."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` as JSON Lines."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def qa_rows(n: int, prefix: str = "q") -> list[dict[str, Any]]:
    """``n`` distinct prompt/response rows with one extra column."""
    return [{"prompt": f"{prefix}{i}?", "response": f"a{i}", "extra": i} for i in range(n)]


def write_source(folder: Path, kind: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Write ``rows`` into ``folder`` as a source of ``kind`` ("jsonl", "jsonl.gz", "csv",
    "parquet", or "huggingface": a ``save_to_disk`` folder) and give the loader options that
    read it (type and path; the columns are the caller's)."""
    import pandas as pd

    if kind in ("jsonl", "jsonl.gz"):
        text = "".join(json.dumps(r) + "\n" for r in rows)
        path = folder / f"d.{kind}"
        if kind == "jsonl.gz":
            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text)
        return {"type": "jsonl", "path": path.name}
    if kind == "csv":
        pd.DataFrame(rows).to_csv(folder / "d.csv", index=False)
        return {"type": "csv", "path": "d.csv"}
    if kind == "parquet":
        pd.DataFrame(rows).to_parquet(folder / "d.parquet", index=False)
        return {"type": "parquet", "path": "d.parquet"}
    from datasets import Dataset

    Dataset.from_list(rows).save_to_disk(str(folder / "hf"))
    return {"type": "huggingface", "path": "hf"}


def check_issues(folder: Path, text: str) -> dict[str, Any]:
    """validate's data checks of the spec ``text``, written to ``folder``/subsetctl.yaml:
    each issue by its key."""
    import yaml

    from subsetctl.data.checks import check_sources
    from subsetctl.spec import Spec

    path = folder / "subsetctl.yaml"
    path.write_text(text)
    return {issue.key: issue for issue in check_sources(Spec.model_validate(yaml.safe_load(text)), path)}


def fake_cached_hub_dataset(cache: Path, repo: str, config: str, splits: dict[str, list[dict[str, Any]]],
                            revision: str = "0123abcd") -> Path:
    """Write the tables of the hub dataset ``repo`` (configuration ``config``, one split per
    entry of ``splits``) into the datasets cache ``cache`` as ``load_dataset`` prepares them
    (``org___name/<config>/0.0.0/<revision>``, ``dataset_info.json`` and one Arrow stream a
    split), so that it loads offline with ``HF_DATASETS_CACHE=cache`` (the hub is never asked
    in tests). The folder written."""
    import datasets
    import pyarrow as pa

    namespace, _, name = repo.rpartition("/")
    folder = cache / f"{namespace}___{name}" / config / "0.0.0" / revision
    folder.mkdir(parents=True, exist_ok=True)
    split_dict, features = datasets.SplitDict(dataset_name=name), None
    for split, rows in splits.items():
        table = datasets.Dataset.from_list(rows).data.table
        features = datasets.Features.from_arrow_schema(table.schema)
        with pa.OSFile(str(folder / f"{name}-{split}.arrow"), "wb") as sink, \
                pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        split_dict.add(datasets.SplitInfo(name=split, num_examples=len(rows), dataset_name=name))
    datasets.DatasetInfo(features=features, config_name=config, dataset_name=name,
                         splits=split_dict).write_to_directory(str(folder))
    return folder


def run_data_as_counted_before(project: Path, monkeypatch: Any) -> dict[str, Any]:
    """Run the data stage of ``project`` with each source's inputs counted as an earlier
    subsetctl counted them (``whole_files``: a ``where`` source's whole file, a dataset
    folder whole), as a project made then; the extra inputs its manifest records."""
    from subsetctl.api import run_project
    from subsetctl.data import fingerprint
    from subsetctl.reporter import SilentReporter

    real = fingerprint.source_fingerprint_inputs
    with monkeypatch.context() as patched:
        patched.setattr(fingerprint, "source_fingerprint_inputs",
                        lambda source, spec_dir, whole_files=False, saved_whole=False: real(source, spec_dir,
                                                                                            whole_files=True))
        run_project(project, until="data", reporter=SilentReporter())
    return json.loads((project / ".subsetctl" / "data" / "manifest.json").read_text())["inputs"]["extra"]
