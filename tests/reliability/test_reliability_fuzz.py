"""Fuzzing with hypothesis: malformed and edge-case specs and data files fed to
`subsetctl validate` and `subsetctl run --until data` (in-process through CliRunner).

Every input must end with exit code 0 or 1 and a message: never a traceback, never an
"internal error" (an exception the CLI did not expect), never a hang (hypothesis'
deadline), never a file written outside the project folder. The examples run per test
are counted; each test checks it ran its quota and the quotas add up to
``TOTAL_QUOTA`` (>= 500). Run with ``-s`` to see the summary line.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import relfixtures as rf
import yaml
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from subsetctl.cli import main

COUNTS: dict[str, int] = {}
QUOTAS = {"spec_tree": 220, "spec_text": 150, "data_files": 100, "spec_then_data": 60}
TOTAL_QUOTA = sum(QUOTAS.values())

FUZZ = settings(
    deadline=8000, derandomize=True, database=None, print_blob=True,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: deep inputs shrink for minutes
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

NASTY_STRINGS = [
    "", " ", "../../etc/passwd", "/etc/passwd", "..", ".", "../x", "a/../../b", "~", "~root/x",
    "ünïcødé", "名前", "😀", "a" * 300, "null", "NaN", "1e999", "-1", "0x10", "\x00", "con", "a\nb",
    "${HOME}", "$(rm -rf /)", "`id`", "%s%s%n", "sources[0]", "-", "--help", "file:///etc/passwd",
    "[/x]", "[bold]", "[/]", "[link=http://x]y",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -1, 1, 2**31, 2**63, -(2**63), 10**100]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(NASTY_STRINGS),
)
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)

KEY_PATHS = [
    "project", "project.name", "project.seed", "project.unknown",
    "model", "model.source", "model.kind", "model.max_length", "model.trust_remote_code", "model.lora.r",
    "model.device", "model.dtype",
    "target", "target.name", "target.loader", "target.loader.type", "target.loader.path",
    "target.loader.prompt_field", "target.split", "target.split.train", "target.split.validation",
    "target.split.test", "target.max_examples", "target.seed", "target.corrupt",
    "sources", "sources[0]", "sources[0].name", "sources[0].loader", "sources[0].loader.path",
    "sources[0].loader.type", "sources[0].max_examples", "sources[1].name", "sources[5]",
    "meta_init.steps", "meta_init.lr", "meta_init.batch_size", "gradients.d", "gradients.projector",
    "gradients.batch_size", "estimate.lam", "estimate.estimator",
    "search.strategies", "search.strategies[0]", "search.strategies[0].name",
    "search.strategies[0].label", "search.strategies[0].params", "search.final",
    "executor.backend", "executor.n_jobs", "executor.address", "plugins", "plugins[0]",
    "verify.enabled", "verify.k", "finetune.steps", "report.plots", "unknown_section",
]


def _parse_path(dotted: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in dotted.split("."):
        if "[" in piece:
            name, index = piece[:-1].split("[")
            parts.extend([name, int(index)])
        else:
            parts.append(piece)
    return parts


def mutate(spec: dict[str, Any], path: str, action: str, value: Any) -> None:
    """Set (or delete) ``path`` in ``spec``, creating or overwriting containers on the way."""
    parts = _parse_path(path)
    node: Any = spec
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        want: Any = [] if isinstance(nxt, int) else {}
        if isinstance(part, int):
            if not isinstance(node, list):
                return
            while len(node) <= part:
                node.append(copy.deepcopy(want))
            if not isinstance(node[part], (dict, list)) or isinstance(node[part], list) != isinstance(want, list):
                node[part] = want
            node = node[part]
        else:
            if not isinstance(node, dict):
                return
            if not isinstance(node.get(part), (dict, list)) or isinstance(node[part], list) != isinstance(want, list):
                node[part] = want
            node = node[part]
    last = parts[-1]
    if isinstance(last, int):
        if isinstance(node, list):
            while len(node) <= last:
                node.append(None)
            if action == "delete":
                node.pop(last)
            else:
                node[last] = value
    elif isinstance(node, dict):
        if action == "delete":
            node.pop(last, None)
        else:
            node[last] = value


mutations = st.lists(
    st.tuples(st.sampled_from(KEY_PATHS), st.sampled_from(["set", "set", "delete"]), junk), min_size=1, max_size=4
)

DANGEROUS_YAML = [
    "!!python/object/apply:os.system ['echo pwned > {pwned}']\n",
    "project: !!python/object/apply:os.system ['echo pwned > {pwned}']\n",
    "target: !!python/object/new:subprocess.Popen [['sh', '-c', 'echo pwned > {pwned}']]\n",
    "x: !!python/name:os.system\n",
    "x: !!python/module:os\n",
    "project: !custom {{a: 1}}\n",
    "x: !!binary aGVsbG8=\n",
    "a: &a [*a]\n",
    "a: &x [1]\nb: &y [*x, *x, *x, *x]\nc: [*y, *y, *y, *y]\n",
    "%YAML 1.1\n---\nproject: {{name: x}}\n",
    "---\n---\n",
    "? [a, b]\n: c\n",
    "{{{{{{{{\n",
    "\t\tproject:\n\tname: x\n",
    "project:\n  name: x\n project: y\n",
    "<<: *undefined\n",
    "project: {{name: x, name: y}}\n",
]


def _invoke(args: list[str]) -> Result:
    return CliRunner().invoke(main, args, catch_exceptions=True)


def check(result: Result, where: Path) -> None:
    """The CLI contract for any input: 0 or 1, a message, no traceback, no internal error."""
    exc = result.exception
    assert exc is None or isinstance(exc, SystemExit), f"uncaught {type(exc).__name__}: {exc}"
    assert result.exit_code in (0, 1), (result.exit_code, result.output)
    assert result.output.strip(), "no message at all"
    assert "Traceback" not in result.output, result.output
    assert "internal error" not in result.output, result.output
    outside = sorted(p.name for p in where.parent.iterdir() if p != where)
    assert outside == [], f"files written outside the project: {outside}"


def _count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


def _project(root: Path, spec_text: str | bytes, data: dict[str, bytes] | None = None) -> Path:
    project = root / "p"
    rf.write_data(project)
    for name, content in (data or {}).items():
        (project / name).write_bytes(content)
    target = project / "subsetctl.yaml"
    target.write_bytes(spec_text if isinstance(spec_text, bytes) else spec_text.encode("utf-8", "surrogatepass"))
    return project


@settings(FUZZ, max_examples=QUOTAS["spec_tree"])
@given(mutations)
def test_fuzz_spec_tree_validate(changes: list[tuple[str, str, Any]]) -> None:
    """Valid specs with keys set to junk (wrong types, huge, negative, unicode) or removed."""
    spec = rf.data_spec()
    for path, action, value in changes:
        mutate(spec, path, action, value)
    text = yaml.safe_dump(spec, allow_unicode=True, sort_keys=False)
    with tempfile.TemporaryDirectory() as tmp:
        project = _project(Path(tmp), text)
        check(_invoke(["validate", str(project)]), project)
        check(_invoke(["validate", str(project), "--format", "json"]), project)
    _count("spec_tree")


spec_texts = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    st.sampled_from(DANGEROUS_YAML),
    st.tuples(st.sampled_from(DANGEROUS_YAML), st.integers(0, 3)).map(
        lambda t: yaml.safe_dump(rf.data_spec()).splitlines(True)[t[1]] + t[0] if t[1] else t[0]),
    st.integers(1, 2000).map(lambda n: "x: " + "[" * n + "]" * n + "\n"),
    st.integers(1, 2000).map(lambda n: "x: " + "{a: " * n + "1" + "}" * n + "\n"),
    st.tuples(st.binary(min_size=1, max_size=20), st.integers(0, 200)).map(
        lambda t: yaml.safe_dump(rf.data_spec()).encode()[: t[1]] + t[0] + b"\xff\xfe"),
    st.just(""), st.just("\ufeff"), st.just("~\n"), st.just("- 1\n- 2\n"), st.just("'just a string'\n"),
)


@settings(FUZZ, max_examples=QUOTAS["spec_text"])
@given(spec_texts)
def test_fuzz_spec_text_validate_and_run(text: str | bytes) -> None:
    """Raw spec files: random bytes and text, YAML tags, deep nesting, empty, non-UTF-8."""
    with tempfile.TemporaryDirectory() as tmp:
        pwned = Path(tmp) / "pwned"
        if isinstance(text, str) and "{pwned}" in text:
            text = text.replace("{pwned}", str(pwned))
        project = _project(Path(tmp), text)
        check(_invoke(["validate", str(project)]), project)
        result = _invoke(["run", str(project), "--until", "data", "-q"])
        check(result, project)
        assert not pwned.exists(), "a YAML tag executed code"
    _count("spec_text")


json_lines = st.one_of(
    st.fixed_dictionaries({"prompt": st.text(max_size=20), "response": st.text(max_size=10)}).map(json.dumps),
    st.fixed_dictionaries({"prompt": junk, "response": junk}).map(lambda d: json.dumps(d, default=str)),
    junk.map(lambda v: json.dumps(v, default=str)),
    st.text(max_size=40),
    st.sampled_from(['{"prompt": "a"', "[1, 2]", "null", "{}", '{"prompt": 1e999, "response": -1}',
                     '{"prompt": "' + "x" * 5000 + '", "response": "y"}', "[" * 5000, "\ufeff{}",
                     '{"prompt": "a", "prompt": "b", "response": "c"}']),
).map(lambda s: s.encode("utf-8", "surrogatepass"))

data_files = st.one_of(
    st.lists(json_lines, max_size=25).map(lambda lines: b"\n".join(lines)),
    st.binary(max_size=200),
    st.just(b""), st.just(b"\n\n\n"), st.just(b"\xff\xfe\x00"),
    st.lists(st.just(b'{"prompt": "q", "response": "a"}'), min_size=0, max_size=3).map(lambda x: b"\n".join(x)),
)


@settings(FUZZ, max_examples=QUOTAS["data_files"])
@given(data_files, data_files, st.sampled_from(["target.jsonl", "a.jsonl", "b.jsonl"]))
def test_fuzz_data_files_run_until_data(first: bytes, second: bytes, where: str) -> None:
    """A valid spec over broken data files: empty, invalid JSON lines, junk values, bytes."""
    other = "a.jsonl" if where != "a.jsonl" else "b.jsonl"
    with tempfile.TemporaryDirectory() as tmp:
        project = _project(Path(tmp), yaml.safe_dump(rf.data_spec()), {where: first, other: second})
        check(_invoke(["validate", str(project)]), project)
        check(_invoke(["run", str(project), "--until", "data", "-q"]), project)
    _count("data_files")


@settings(FUZZ, max_examples=QUOTAS["spec_then_data"])
@given(mutations, st.sampled_from(["jsonl", "csv"]), data_files)
def test_fuzz_spec_and_data_run_until_data(changes: list[tuple[str, str, Any]], kind: str, content: bytes) -> None:
    """Junk in the spec and in a data file together, through `run --until data`."""
    spec = rf.data_spec()
    spec["sources"][1]["loader"] = {"type": kind, "path": f"b.{kind}"}
    for path, action, value in changes:
        if path.startswith(("model", "meta_init", "gradients", "search", "plugins", "unknown")):
            continue  # keep the fuzz on what the data stage reads
        mutate(spec, path, action, value)
    with tempfile.TemporaryDirectory() as tmp:
        project = _project(Path(tmp), yaml.safe_dump(spec, allow_unicode=True), {f"b.{kind}": content})
        check(_invoke(["run", str(project), "--until", "data", "-q"]), project)
    _count("spec_then_data")


def test_fuzz_total_examples() -> None:
    """Each fuzz test ran its quota (when it ran in this session); the quotas add to >= 500."""
    assert TOTAL_QUOTA >= 500
    for name, count in COUNTS.items():
        assert count >= QUOTAS[name], (name, count)
    line = ", ".join(f"{k}={v}" for k, v in sorted(COUNTS.items()))
    print(f"\nfuzz examples run: {sum(COUNTS.values())} ({line}); quota total {TOTAL_QUOTA}")
    if len(COUNTS) == len(QUOTAS):
        assert sum(COUNTS.values()) >= 500


@pytest.mark.parametrize("path", ["[/x]", "data[/bold].jsonl", "[red]x", "[/]"])
def test_error_messages_quoting_markup_like_text_are_printed_verbatim(tmp_path: Path, path: str) -> None:
    """A message quoting user text that looks like rich markup must not crash the CLI."""
    spec = rf.data_spec()
    spec["target"]["loader"]["path"] = path
    project = _project(tmp_path, yaml.safe_dump(spec))
    for args in (["validate", str(project)], ["run", str(project), "--until", "data", "-q"]):
        result = _invoke(args)
        check(result, project)
        assert result.exit_code == 1 and path in result.output, result.output
