"""Using what subsetctl chose outside it: the adapter folders' model cards, and README's
"Using the result" script (load the final pick's adapter with plain transformers and peft,
generate, merge, export its training rows and their provenance) run as written."""

from __future__ import annotations

import runpy
from pathlib import Path
from types import SimpleNamespace

from subsetctl.spec import Spec
from subsetctl.stages.finetune import model_card


def test_each_adapters_model_card_names_its_own_seed_and_the_step_kept(tmp_path: Path) -> None:
    """With finetune.seeds: 2 both adapters' README.md said "seed 0" (project.seed), so a
    card copied along with the seed-1 adapter named the wrong seed; nor did it say that the
    weights are those of the best validation step, not always the last step's."""
    from tinymodels import tiny_project_spec

    ctx = SimpleNamespace(spec=Spec.model_validate(tiny_project_spec(tmp_path / "model")))
    record = {"subset": ["a"], "seed": 1, "steps": 4, "best_step": 2, "best_val_loss": 4.5, "last_train_loss": 4.0}
    card = model_card(["exhaustive"], ["a"], ctx, record)
    assert "- project: tiny, seed 1\n" in card, card
    assert "- weights kept: step 2's, the best target validation loss (4.5)\n" in card, card
    no_validation = model_card(["exhaustive"], ["a"], ctx, {**record, "best_step": 0, "best_val_loss": None})
    assert "weights kept" not in no_validation and "seed 1" in no_validation, no_validation


def test_a_model_card_shows_the_project_name_and_model_path_as_written(tmp_path: Path) -> None:
    """The card is Markdown a user may push to a model hub: the project name went in as it
    was, so a name from someone else's spec holding ``<script>`` or ``[x](http://...)`` was
    HTML and a link there, and a model path holding a backtick closed its code span."""
    from tinymodels import tiny_project_spec

    spec = tiny_project_spec(tmp_path / "mo`del")
    spec["project"]["name"] = "<script>alert(1)</script> [x](http://evil.example)"
    ctx = SimpleNamespace(spec=Spec.model_validate(spec))
    card = model_card(["exhaustive"], ["a"], ctx, {"subset": ["a"], "seed": 0, "steps": 4, "last_train_loss": 4.0})
    assert "- project: &lt;script>alert(1)&lt;/script> \\[x\\](http\\://evil.example), seed 0\n" in card, card
    assert f"for ``{tmp_path / 'mo`del'}``, fine-tuned" in card, card


def test_a_model_card_names_the_subsetctl_commit_of_a_checkout() -> None:
    """subsetctl run from a git checkout says version 0.1.0 whatever its commit (each stage's
    manifest records the commit too): an adapter's card named the version alone, so two
    adapters trained by different code read alike. It names the commit where there is one."""
    from subsetctl.stages.common import card_provenance

    versions = {"subsetctl": "0.1.0", "subsetctl_commit": "72e16d61ccbd+dirty", "torch": "2.13.0", "python": "3.11.7"}
    assert card_provenance(versions, "abc") == (
        "- trained with: subsetctl 0.1.0 (commit 72e16d61ccbd+dirty), torch 2.13.0, python 3.11.7\n"
        "- resolved spec: abc (the project's .subsetctl/specs/abc.json)\n")
    assert card_provenance({"subsetctl": "0.1.0"}, None) == "- trained with: subsetctl 0.1.0\n"  # an installed wheel
    assert card_provenance(None, None) == ""  # a cached run of unknown versions


def test_each_adapters_model_card_names_the_versions_and_spec_that_made_it(tiny_project_ran) -> None:
    """An adapter folder copied out of the project said nothing of the library versions that
    trained it nor of the spec: its card names both (a cached run's own versions), datasets'
    too, which read and prepared the rows it was trained on (the card left it out)."""
    import json

    root = tiny_project_ran()
    manifest = json.loads((root / ".subsetctl" / "finetune" / "manifest.json").read_text())
    versions = manifest["versions"]
    cards = list((root / ".subsetctl" / "finetune" / "runs").glob("*/adapter/README.md"))
    assert cards
    for card in (path.read_text() for path in cards):
        assert (f"- trained with: subsetctl {versions['subsetctl']}{_commit(versions)}, torch {versions['torch']}, transformers "
                f"{versions['transformers']}, peft {versions['peft']}, datasets {versions['datasets']}, python "
                f"{versions['python']}\n") in card, card
        assert (f"- resolved spec: {manifest['resolved_spec']} (the project's .subsetctl/specs/"
                f"{manifest['resolved_spec']}.json)\n") in card, card


def test_theta_stars_model_card_names_what_made_it(tiny_project_ran) -> None:
    """θ*'s folder (``.subsetctl/meta_init/adapter``, which README says loads as the fine-tuned
    adapters do) held peft's blank model card: copied out of the project, it said nothing of
    the data, seed, library versions or spec that made it. Its card names them now."""
    import json

    root = tiny_project_ran(until="meta_init")
    manifest = json.loads((root / ".subsetctl" / "meta_init" / "manifest.json").read_text())
    versions, digest = manifest["versions"], manifest["resolved_spec"]
    card = (root / ".subsetctl" / "meta_init" / "adapter" / "README.md").read_text()
    assert card.startswith("---\nbase_model: ") and "\n---\n\n# subsetctl adapter: theta* (meta_init)\n" in card, card
    assert "on the target `target` and all 3 sources together (a, b, bad)" in card, card
    assert "- project: tiny, seed 0\n" in card, card
    assert (f"- trained with: subsetctl {versions['subsetctl']}{_commit(versions)}, torch {versions['torch']}, transformers "
            f"{versions['transformers']}, peft {versions['peft']}, datasets {versions['datasets']}, python "
            f"{versions['python']}\n") in card, card
    assert f"- resolved spec: {digest} (the project's .subsetctl/specs/{digest}.json)\n" in card, card
    assert (root / ".subsetctl" / "specs" / f"{digest}.json").is_file()


def test_theta_stars_model_card_names_the_first_sources_of_many_and_how_a_classifier_loads(tmp_path: Path) -> None:
    """θ*'s card names at most CARD_SOURCES sources (a spec of thousands listed them all on
    one line), with "…" where more were trained on (their count stays whole); a classifier's
    card says to build the base model as a sequence classifier with report.md's num_labels
    (plain from_pretrained onto a causal LM does not load its head), a causal LM's does not."""
    from tinymodels import tiny_project_spec

    from subsetctl.stages.meta_init import CARD_SOURCES, theta_card

    def card(n_sources: int, kind: str = "causal-lm") -> str:
        raw = tiny_project_spec(tmp_path / "model")
        raw["sources"] = [{**raw["sources"][0], "name": f"s{i}"} for i in range(n_sources)]
        spec = Spec.model_validate(raw)  # (the card reads model.kind alone of a classifier's settings)
        spec = spec.model_copy(update={"model": spec.model.model_copy(update={"kind": kind})})
        return theta_card(spec, {"steps": 4}, None, None)

    named = ", ".join(f"s{i}" for i in range(CARD_SOURCES))
    assert f"all {CARD_SOURCES} sources together ({named}):" in card(CARD_SOURCES)
    assert "on the target `target` and its one source together (s0):" in card(1), card(1)
    many = card(CARD_SOURCES + 5)
    assert f"all {CARD_SOURCES + 5} sources together ({named}, …):" in many, many
    assert f"s{CARD_SOURCES}" not in many, many
    causal, classifier = card(2), card(2, "classifier")
    assert causal.endswith("Load with `peft.PeftModel.from_pretrained(base_model, this_folder)`. The project's "
                           "report.md names the base model.\n"), causal
    assert "AutoModelForSequenceClassification" not in causal and "num_labels" not in causal, causal
    assert ("Load with `peft.PeftModel.from_pretrained(base_model, this_folder)`, the base model built with "
            "`AutoModelForSequenceClassification` and the head's `num_labels` as report.md says.") in classifier, classifier


def _commit(versions: dict) -> str:
    """How a model card follows the subsetctl version with the checkout's commit, if any."""
    return f" (commit {versions['subsetctl_commit']})" if versions.get("subsetctl_commit") else ""


def _readme_script() -> str:
    """The Python block of README's "Using the result" section."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Using the result\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_script_using_the_result_runs_as_written(tiny_project_ran, tiny_llama: Path, tmp_path: Path,
                                                            monkeypatch) -> None:
    """README's script: the final pick's adapter loads onto the base model report.json names,
    generates, merges into a standalone model (with the tokenizer) that computes what the
    adapter does, and its training rows and provenance are written as the section says."""
    import json
    import shutil

    project = tiny_project_ran(into=tmp_path / "myproject")
    monkeypatch.chdir(tmp_path)
    report = json.loads((project / "report.json").read_text())
    script = _readme_script()
    (tmp_path / "using_the_result.py").write_text(script)
    runpy.run_path(str(tmp_path / "using_the_result.py"))
    _check_outputs(tmp_path, project, report, report["final"])
    # another selection, of several sources (the tiny project's final pick is the target alone)
    widest = max(report["adapters"], key=lambda label: len(_chosen(report, label)))
    assert len(_chosen(report, widest)) > 1
    assert 'pick = report["final"]' in script
    (tmp_path / "using_the_result.py").write_text(script.replace('pick = report["final"]', f"pick = {widest!r}"))
    runpy.run_path(str(tmp_path / "using_the_result.py"))
    _check_outputs(tmp_path, project, report, widest)
    # a copy of a project whose spec names its model folder relatively, on a machine without the
    # folder the run read it from: the base model is the copy's own folder
    shutil.copytree(tiny_llama, project / "model")
    copied = {**report, "adapter_base_model": "model", "adapter_base_model_path": str(tmp_path / "gone" / "model")}
    (project / "report.json").write_text(json.dumps(copied))
    (tmp_path / "using_the_result.py").write_text(script)
    runpy.run_path(str(tmp_path / "using_the_result.py"))
    _check_outputs(tmp_path, project, report, report["final"])


def _chosen(report: dict, label: str) -> list[str]:
    return ({**report["strategies"], **report["baselines"]})[label]["selected"]


def _check_outputs(folder: Path, project: Path, report: dict, pick: str) -> None:
    """What README's script wrote for the selection ``pick``."""
    import json

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(folder / "final-pick-merged").eval()
    assert (folder / "final-pick-merged" / "tokenizer.json").is_file()
    base = AutoModelForCausalLM.from_pretrained(report["adapter_base_model"])
    adapted = PeftModel.from_pretrained(base, str(project / report["adapters"][pick][0])).eval()
    ids = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, adapted(input_ids=ids).logits, atol=1e-5)

    chosen = _chosen(report, pick)
    rows = [json.loads(line) for line in (folder / "final-pick-train.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == sorted((r["source"] for r in rows), key=["target", *chosen].index)
    assert {r["source"] for r in rows} == {"target", *chosen}
    assert len([r for r in rows if r["source"] == "target"]) == 10  # tiny_project_spec's target.split.train
    provenance = json.loads((folder / "final-pick-provenance.json").read_text())
    assert provenance["selection"] == pick and provenance["sources"] == chosen and provenance["rows"] == len(rows)
    assert provenance["seed"] == 0 and provenance["spec"]["finetune"]["steps"] == 2
    assert provenance["test_metrics"] == report["test_metrics"][pick]
    # the versions that trained it (the file said none): the finetune stage's, or a cached run's own
    trained_with = json.loads((project / ".subsetctl" / "finetune" / "provenance.json").read_text())["computed_with"]
    run = Path(report["adapters"][pick][0]).parent.name
    assert provenance["versions"] == trained_with.get(run, report["stages"]["finetune"]["versions"])
    assert {"subsetctl", "torch", "transformers", "peft", "datasets"} <= set(provenance["versions"])


def test_report_md_says_which_adapter_folder_is_which_seeds(tiny_project_ran) -> None:
    """report.md listed each selection's adapter folders "one per seed" without saying
    which is which seed's; they are in seed order, project.seed's first, and it says where
    README shows how to use one."""
    report_md = (tiny_project_ran() / "report.md").read_text()
    assert "one per seed, `project.seed`'s first, then `project.seed` + 1's, ..." in report_md
    assert 'README\'s "Using the result" loads one' in report_md


def test_the_readme_script_tabling_many_variants_runs_as_written(tiny_project_ran, tmp_path: Path, monkeypatch,
                                                                capsys) -> None:
    """A researcher with a dozen variants (project copies, report.json files kept aside, seeds
    0, 1, 2) had `report --compare` for two and nothing for a table, nor a mean over seeds:
    README's script reads their report.json files as they are keyed (the final pick in
    `strategies` or `baselines`, the settings as dotted keys)."""
    import json

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### A table of many variants\n", 1)[1].split("\n## ", 1)[0]
    script = tmp_path / "variants_table.py"
    script.write_text(section.split("```python\n", 1)[1].split("```", 1)[0])
    a = tiny_project_ran(into=tmp_path / "v1")
    report = json.loads((a / "report.json").read_text())
    pick, d = report["final"], report["settings"]["gradients.d"]
    loss = report["test_metrics"][pick]["loss_mean"]
    report["settings"]["project.seed"] = 1  # a second variant's report.json, kept aside
    report["test_metrics"][pick]["loss_mean"] = loss + 0.5
    (tmp_path / "v2.json").write_text(json.dumps(report))
    monkeypatch.setattr("sys.argv", [str(script), str(a), str(tmp_path / "v2.json")])
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    chosen = ", ".join({**report["strategies"], **report["baselines"]}[pick]["selected"]) or "(none)"
    assert f"| v1 | 0 | {d} | 1.0 | {pick} | {chosen} | {loss} |" in out, out
    assert f"| v2.json | 1 | {d} | 1.0 | {pick} | {chosen} | {loss + 0.5} |" in out, out
    assert f"test loss of the final picks: {loss + 0.25:.4f} ± {0.5 / 2 ** 0.5:.4f} (n=2)" in out, out
