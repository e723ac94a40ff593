"""Progress output: bars on a terminal, plain lines in a log file."""

from __future__ import annotations

import io
from collections.abc import Callable

from rich.console import Console

from subsetctl.reporter import RichReporter


def _lines_once(log: io.StringIO, shown: Callable[[list[str]], bool], within: float = 30.0) -> list[str]:
    """The lines of ``log`` once ``shown(lines)`` holds (a heartbeat thread writes them), checked
    every 0.02 s for up to ``within`` seconds (then as they are, for the test to fail on): a
    fixed sleep before checking a heartbeat's line failed where a busy machine ran the thread
    late. (Real time: some of these tests give the reporter a clock of their own.)"""
    import time

    deadline = time.perf_counter() + within
    while not shown(lines := log.getvalue().splitlines()) and time.perf_counter() < deadline:
        time.sleep(0.02)
    return lines


def test_progress_in_a_log_file_is_plain_lines_as_it_goes() -> None:
    log = io.StringIO()
    reporter = RichReporter(console=Console(file=log, force_terminal=False, width=200), log_every=3600)
    with reporter.progress("meta_init", total=4) as task:
        assert log.getvalue().splitlines() == ["meta_init: 0/4  elapsed 0:00:00"]  # said at once
        task.update(1, loss=0.5)
        task.update(2, loss=0.4)
        assert len(log.getvalue().splitlines()) == 1  # throttled: at most one line per log_every
        task.update(4, loss=0.25, val=0.3)
    lines = log.getvalue().splitlines()
    assert lines[-1] == "meta_init: 4/4  elapsed 0:00:00  loss=0.25  val=0.3" and len(lines) == 2

    log = io.StringIO()
    reporter = RichReporter(console=Console(file=log, force_terminal=False, width=200), log_every=0)
    with reporter.progress("gradients", total=3) as task:
        for done in (1, 2, 3):
            task.update(done)
    assert [line.split("  ")[0] for line in log.getvalue().splitlines()] == [
        "gradients: 0/3", "gradients: 1/3", "gradients: 2/3", "gradients: 3/3"]
    assert "eta" in log.getvalue().splitlines()[1]


def test_a_log_says_where_work_stopped_short_of_its_total() -> None:
    log = io.StringIO()
    reporter = RichReporter(console=Console(file=log, force_terminal=False, width=200), log_every=3600)
    with reporter.progress("meta_init", total=100) as task:
        task.update(40, loss=1.5)  # diverged: the loop ends here
    assert log.getvalue().splitlines()[-1].startswith("meta_init: 40/100")


def test_a_progress_message_on_a_terminal_is_shown_as_written_not_read_as_markup() -> None:
    """A strategy's progress (``context.report``) shown on the search's bar went through
    rich markup: "[a, b]" vanished from the line and "[/x]" raised MarkupError while the
    bar was drawn (a traceback from rich's refresh thread)."""
    out = io.StringIO()
    reporter = RichReporter(Console(file=out, force_terminal=True, force_interactive=True, width=200))
    with reporter.progress("search", total=2) as task:
        task.update(0, now="subsets [a, b] of [/x] (1/3)")
        task._progress.refresh()  # drawn now, in this thread
        task.update(1)
    assert "now=subsets [a, b] of [/x] (1/3)" in out.getvalue()


def test_progress_is_plain_lines_where_rich_cannot_redraw_a_bar(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """FORCE_COLOR (colored CI logs) with stderr a file drew the live bar into the log, a
    redraw ten times a second (17 KB for a 9-second stage); on TERM=dumb, a terminal that
    cannot redraw, rich drew the bar only at the end: nothing said while a stage ran."""
    import sys

    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("TTY_INTERACTIVE", raising=False)
    log = io.StringIO()  # stderr a file
    monkeypatch.setattr(sys, "stderr", log)
    with RichReporter(log_every=3600).progress("meta_init", total=4) as task:
        task.update(4, loss=0.25)
    assert log.getvalue().splitlines() == ["meta_init: 0/4  elapsed 0:00:00",
                                           "meta_init: 4/4  elapsed 0:00:00  loss=0.25"], log.getvalue()

    monkeypatch.setenv("TERM", "dumb")
    dumb = io.StringIO()
    with RichReporter(Console(file=dumb, force_terminal=True, width=200), log_every=3600).progress("data", 2) as task:
        assert dumb.getvalue() == "data: 0/2  elapsed 0:00:00\n"  # said at once
        task.update(2)


def test_silent_reporter_records_notices_as_plain_text(jsonl_project) -> None:  # type: ignore[no-untyped-def]
    """A Python caller's SilentReporter.messages held the notices' rich markup: the stage
    headers read "[bold cyan]▶ data[/bold cyan] [dim]...[/dim]", an escaped "[" as "\\["."""
    from rich.markup import escape

    from subsetctl.api import run_project
    from subsetctl.reporter import SilentReporter

    reporter = SilentReporter()
    run_project(jsonl_project, until="data", reporter=reporter)
    assert reporter.messages[0].startswith("▶ data ") and "[" not in reporter.messages[0], reporter.messages
    reporter.info(escape("read /data/run[1]/a.jsonl"))
    reporter.info("[/x] is not markup")  # kept as given
    assert reporter.messages[-2:] == ["read /data/run[1]/a.jsonl", "[/x] is not markup"]


def test_a_tty_interactive_other_than_1_does_not_force_the_bars_into_a_file(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Only TTY_INTERACTIVE=1 forces the bars (rich reads "0" and "1" and ignores any other
    value): an empty or other value with FORCE_COLOR and stderr a file drew the live bar's
    redraws into the log, as if it were 1."""
    import sys

    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("TERM", raising=False)
    for value in ("", "yes"):
        monkeypatch.setenv("TTY_INTERACTIVE", value)
        log = io.StringIO()
        monkeypatch.setattr(sys, "stderr", log)
        assert not RichReporter().console.is_interactive, value
    monkeypatch.setenv("TTY_INTERACTIVE", "1")  # forced, as in rich
    assert RichReporter().console.is_interactive


def test_a_log_gets_a_line_while_one_step_of_work_takes_long() -> None:
    """Lines came only with a new count: a data stage reading one large source (a count a
    source) left a batch job's log silent for minutes, as if hung."""
    log = io.StringIO()
    reporter = RichReporter(console=Console(file=log, force_terminal=False, width=200), log_every=0.1)
    with reporter.progress("data", total=2) as task:
        task.update(1)
        lines = _lines_once(log, lambda lines: len(lines) >= 3)  # one long source: no count comes
        assert len(lines) >= 3 and all(line.startswith("data: 1/2  elapsed") for line in lines[1:]), lines
    assert log.getvalue().splitlines()[-1].startswith("data: 1/2")  # the count it got to, nothing more


def test_the_data_stages_progress_names_the_source_being_read(tiny_project) -> None:
    """The data stage's bar counted sources done and named none: with one large source the
    bar sat at "1/7" for minutes, and said not which file it was reading."""
    from subsetctl.api import run_project

    log = io.StringIO()
    run_project(tiny_project, until="data", reporter=RichReporter(Console(file=log, width=200), log_every=0))
    lines = [line for line in log.getvalue().splitlines() if line.startswith("data: ")]
    reading = [(line.split("  ")[0], line.rsplit("reading=", 1)[1]) for line in lines if "reading=" in line]
    assert reading == [("data: 0/4", "target"), ("data: 1/4", "a"), ("data: 2/4", "b"), ("data: 3/4", "bad")]
    assert lines[-1].startswith("data: 4/4") and "reading=" not in lines[-1]


def test_meta_inits_model_loading_and_loss_before_training_show_in_the_log(tiny_project) -> None:  # type: ignore[no-untyped-def]
    """Between "▶ meta_init" and its first "meta_init: 0/N" line meta_init loads the model and
    takes the untrained adapter's validation loss: 2 min 34 s with no line on busy cores. Each
    now has progress lines of its own (at once, then every 30 s), the loss's counting rows. The
    model's named the model and had a count of one step, "0/1" then "1/1", which said nothing; it
    is a status with the model's name and the time elapsed now, alike in every stage loading it."""
    from subsetctl.api import run_project
    from subsetctl.errors import as_typed
    from subsetctl.spec import load_spec

    log = io.StringIO()
    run_project(tiny_project, until="gradients", reporter=RichReporter(Console(file=log, width=200), log_every=0))
    source = as_typed(load_spec(tiny_project / "subsetctl.yaml").model.source)
    for stage in ("meta_init", "gradients"):
        said = [line.split("  ") for line in log.getvalue().splitlines() if line.startswith(f"{stage}: loading")]
        assert [parts[0] for parts in said] == [f"{stage}: loading the model {source}",
                                                f"{stage}: loading the model {source}: done"], said
        assert all(parts[1].startswith("elapsed ") for parts in said), said
    lines = [line.split("  ")[0] for line in log.getvalue().splitlines() if line.startswith("meta_init")]
    before = [line for line in lines if line.startswith("meta_init: validation loss before training: ")]
    total = int(before[0].rsplit("/", 1)[1])
    assert before[0].endswith(": 0/" + str(total)) and before[-1].endswith(f": {total}/{total}") and total > 0, lines
    assert lines.index(before[-1]) < lines.index(next(line for line in lines if line.startswith("meta_init: 0/"))), lines


def test_a_resumed_training_says_so_in_the_log_and_its_eta_counts_only_this_runs_steps() -> None:
    """A batch job resubmitted after its time limit resumed meta_init at step 196 of 300, but its
    log said "meta_init: 0/300" for 30 s, and then an ETA that took the 196 steps the earlier
    job did as done in this job's seconds (10 s for 10 steps: "eta 0:00:04", not 0:01:34)."""
    from types import SimpleNamespace

    from subsetctl.stages.common import train_progress

    now = [0.0]
    log = io.StringIO()
    ctx = SimpleNamespace(reporter=RichReporter(console=Console(file=log, force_terminal=False, width=200),
                                                log_every=0, log_clock=lambda: now[0]))
    with train_progress(ctx, "meta_init", 300) as progress:  # type: ignore[arg-type]
        progress(196, 300, None, None)  # train_lora's call before the first step it resumes
        now[0] = 10.0
        progress(206, 300, 2.5, None)
    lines = log.getvalue().splitlines()
    assert lines[1] == "meta_init: 196/300  elapsed 0:00:00  resumed: 196 done by an earlier run", lines
    assert lines[2] == "meta_init: 206/300  elapsed 0:00:10  eta 0:01:34  loss=2.5", lines


def test_a_log_shows_a_strategys_new_message_within_seconds_not_only_every_30() -> None:
    """Piped, a strategy's `context.report()` showed only in the heartbeat lines (every 30 s):
    a 7-second strategy's log said "search: 0/1" and "search: 1/1". A new message gets a line
    `log_note_every` s after the last one (the latest, when several came meanwhile); numbers
    alone (a loss) keep the slower pace. (The reporter's clock is the test's: with the real one,
    a busy machine's pause of 0.6 s between two updates wrote the line of one superseded. Its
    own, not time.monotonic patched, which stopped the clock of every thread in the process.)"""
    import time

    now = [0.0]
    log = io.StringIO()
    reporter = RichReporter(console=Console(file=log, force_terminal=False, width=200), log_every=3600,
                            log_note_every=0.6, log_clock=lambda: now[0])
    with reporter.progress("search", total=1) as task:
        task.update(0, now="step 1 (1/3)")  # just after the first line: written later, by the heartbeat
        time.sleep(0.5)  # (the heartbeat checks every 0.15 s: not due yet)
        assert len(log.getvalue().splitlines()) == 1
        now[0] = 0.7
        assert _lines_once(log, lambda lines: len(lines) == 2)[-1].endswith("now=step 1 (1/3)"), log.getvalue()
        now[0] = 1.4
        task.update(0, now="step 2 (2/4)")  # due: written at once
        assert log.getvalue().splitlines()[-1].endswith("now=step 2 (2/4)"), log.getvalue()
        task.update(0, now="step 3 (3/4)")
        task.update(0, now="step 4 (4/4)")  # supersedes step 3 before it was due
        now[0] = 2.1
        lines = _lines_once(log, lambda lines: lines[-1].endswith("now=step 4 (4/4)"))
        assert lines[-1].endswith("now=step 4 (4/4)") and not any("step 3" in line for line in lines), lines
        shown = len(lines)
        now[0] = 10.0  # nothing new: no line
        task.update(0, loss=0.5)  # a number alone: not sooner than log_every
        time.sleep(0.5)
        assert len(log.getvalue().splitlines()) == shown, log.getvalue()
        task.update(1, now="done")
    assert log.getvalue().splitlines()[-1].startswith("search: 1/1")


def test_a_terminal_escape_sequence_in_a_name_is_shown_escaped_not_sent_to_the_terminal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A folder or file from someone else can be named with an escape sequence (OSC retitles
    the terminal or writes its clipboard; CSI hides the rest of a line): rich printed it as
    it was, in a notice and in a table's cell (`ls` of a shared sweep lists its folders'
    names). Every console the CLI prints through shows it as its escape; rich's own styling
    still reaches a terminal."""
    from click.testing import CliRunner
    from rich.table import Table

    from subsetctl.cli import main

    name = "\x1b]52;c;ZWNobyBoaQ==\x07\x1b[8mhidden\rX\x9b"
    project = tmp_path / name
    project.mkdir()
    (project / "subsetctl.yaml").write_text("project: {name: x}\n")
    result = CliRunner().invoke(main, ["validate", str(project)])
    assert "\x1b]" not in result.output and "\\x1b]52;c;" in result.output, result.output

    from subsetctl.reporter import new_console

    out = io.StringIO()
    console = new_console(file=out, force_terminal=True, color_system="standard", width=200, highlight=False)
    table = Table("project")
    table.add_row(name)
    console.print(table)
    console.print(f"[yellow]warning:[/yellow] {name}")
    shown = out.getvalue()
    assert "\x1b]" not in shown and "\x07" not in shown and "\r" not in shown and "\x9b" not in shown, repr(shown)
    assert shown.count("\\x1b]52;c;ZWNobyBoaQ==\\x07\\x1b[8mhidden\\rX\\x9b") == 2, shown
    assert "\x1b[33m" in shown  # (the warning's own color)


def test_an_escape_sequence_in_a_rich_text_or_a_progress_bar_is_shown_escaped() -> None:
    """new_console made a string visible as rich read it, but a rich ``Text`` made from data,
    and a progress bar's description and fields (which rich's columns make ``Text`` of
    themselves), reached the terminal with their escape sequences as they were: a file or
    label named ``\\x1b]0;...\\x07`` retitled the terminal from a bar."""
    from rich.text import Text

    from subsetctl.reporter import new_console

    name = "src\x1b]0;pwned\x07\x1b[8mhidden"
    out = io.StringIO()
    console = new_console(file=out, force_terminal=True, force_interactive=True, color_system="standard", width=200)
    console.print(Text.assemble("file ", name))
    with RichReporter(console).progress(f"reading {name}", total=2) as task:
        task.update(1, reading=name)
        task._progress.refresh()  # drawn now, in this thread
    shown = out.getvalue()
    assert "\x1b]" not in shown and "\x07" not in shown and "\x1b[8m" not in shown, repr(shown)
    assert "file src\\x1b]0;pwned\\x1b[8mhidden" in shown, repr(shown)  # (rich's Text drops the bell itself)
    assert "reading src\\x1b]0;pwned\\x07\\x1b[8mhidden" in shown, repr(shown)  # the bar's description, whole
    assert "reading=src\\x1b]0;pwned\\x07\\x1b[8mhidden" in shown, repr(shown)  # and its field


def test_a_model_load_within_a_logging_progress_has_lines_only_when_slow() -> None:
    """finetune loads the model once a fine-tune, within its "finetune runs" progress: in a log
    each load wrote "loading the model" and "...: done", 200 lines for a search of 100 real
    fine-tunes. Within a progress a load is said only when it lasts past ``log_every`` (then
    as before: a line with the time elapsed, and "done"); outside one, at once as before."""
    def loads(log_every: float, slow: bool) -> list[str]:
        log = io.StringIO()
        reporter = RichReporter(Console(file=log, force_terminal=False, width=200), log_every=log_every)
        with reporter.progress("finetune runs", total=2) as task:
            for done in (1, 2):
                with reporter.status("finetune: loading the model 'm'"):
                    if slow:  # a load lasting until its line comes (log_every on: the heartbeat's)
                        _lines_once(log, lambda lines: lines[-1].split("  ")[0] == "finetune: loading the model 'm'")
                task.update(done)
        return [line.split("  ")[0] for line in log.getvalue().splitlines() if "loading" in line]

    assert loads(3600, slow=False) == []
    slow = loads(0.2, slow=True)
    assert slow[0] == "finetune: loading the model 'm'" and slow[-1] == "finetune: loading the model 'm': done", slow
    assert slow.count("finetune: loading the model 'm': done") == 2, slow


def test_a_status_shows_a_spinner_and_the_time_elapsed_on_a_terminal_and_lines_in_a_log() -> None:
    """A wait with no count (loading a model) was a progress bar of one step, 0/1 then 1/1. On a
    terminal it is a spinner, the description and the time elapsed, a check mark once done (a
    row of its own within a bar already shown, no "0/?" count); in a log, a line at once and a
    "done" line, each with the time elapsed; a reporter of one's own without ``status`` gets a
    progress of one step."""
    import contextlib
    import re

    from subsetctl.reporter import SilentReporter, _NullTask, waiting

    screen = io.StringIO()
    reporter = RichReporter(Console(file=screen, force_terminal=True, force_interactive=True, width=120))
    with reporter.status("meta_init: loading the model 'm'"):
        pass
    with reporter.progress("finetune runs", total=2) as task, reporter.status("finetune: loading the model 'm'"):
        task.update(1)
    shown = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", screen.getvalue())
    assert "✓ meta_init: loading the model 'm' 0:00:00" in shown and "/1" not in shown, shown
    assert "finetune: loading the model 'm'" in shown and "0/?" not in shown, shown
    assert re.search(r"finetune: loading the model 'm' ━+ +0:00:00 ", shown), shown  # its row: no count
    assert not re.search(r"finetune: loading the model 'm' ━+ +0:00:00 +eta", shown), shown  # nor a bare "eta"
    assert "1/2 0:00:00 eta -:--:--" in shown, shown  # the bar's own eta kept
    log = io.StringIO()
    with RichReporter(Console(file=log, width=200)).status("gradients: loading the model 'm'"):
        pass
    assert [line.split("  ") for line in log.getvalue().splitlines()] == [
        ["gradients: loading the model 'm'", "elapsed 0:00:00"],
        ["gradients: loading the model 'm': done", "elapsed 0:00:00"]], log.getvalue()

    class Own:  # (info, warn and progress: what README asks of a reporter)
        def __init__(self) -> None:
            self.tasks: list[tuple[str, int, _NullTask]] = []

        def info(self, message: str) -> None: ...

        def warn(self, message: str) -> None: ...

        @contextlib.contextmanager
        def progress(self, description: str, total: int):  # type: ignore[no-untyped-def]
            self.tasks.append((description, total, _NullTask()))
            yield self.tasks[-1][2]

    own = Own()
    with waiting(own, "evaluate: loading the model 'm'"):  # type: ignore[arg-type]
        pass
    [(description, total, task)] = own.tasks
    assert (description, total, task.updates) == ("evaluate: loading the model 'm'", 1, [(1, {})])
    with waiting(SilentReporter(), "evaluate: loading the model 'm'"):  # (no line, as its progress)
        pass
