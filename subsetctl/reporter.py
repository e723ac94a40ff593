"""How code below the CLI talks to the user: a Reporter it is handed.

Stages never print. They call ``reporter.info/warn`` and wrap long work in
``reporter.progress(...)``. The CLI hands in a :class:`RichReporter` (rich progress bars
with ETA); tests and library users get :class:`SilentReporter` (which still records
messages, so tests can assert on notices).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol


class ProgressTask(Protocol):
    def update(self, completed: int, **fields: Any) -> None: ...


def resume_at(task: ProgressTask, completed: int) -> None:
    """Tell ``task`` that ``completed`` of its work was done by an earlier, stopped run (a
    training resumed from its checkpoint): it is shown at once and left out of the ETA,
    which is the time per unit *this* run takes. A task without ``resume`` (a reporter of
    one's own) is given it as an update."""
    resume = getattr(task, "resume", None)
    if callable(resume):
        resume(completed)
    else:
        task.update(completed)


class Reporter(Protocol):
    def info(self, message: str) -> None:
        """A notice, in rich markup ("[dim]...[/dim]"; user text in it escaped)."""

    def warn(self, message: str) -> None:
        """A warning, as plain text."""

    def progress(self, description: str, total: int) -> contextlib.AbstractContextManager[ProgressTask]: ...


def waiting(reporter: Reporter, description: str) -> contextlib.AbstractContextManager[None]:
    """``reporter``'s status for a wait that has no count to show, ``description`` saying what it
    waits for ("meta_init: loading the model 'smollm2-135m'"): its ``status`` method where it has
    one (:meth:`RichReporter.status`: a spinner with the time elapsed), else a progress of one
    step (a reporter of one's own need not have ``status``)."""
    status = getattr(reporter, "status", None)
    if callable(status):
        return status(description)
    return _one_step(reporter, description)


@contextlib.contextmanager
def _one_step(reporter: Reporter, description: str) -> Iterator[None]:
    """A progress of one step, done as the block ends."""
    with reporter.progress(description, total=1) as task:
        yield
        task.update(1)


@dataclass
class _NullTask:
    updates: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def update(self, completed: int, **fields: Any) -> None:
        self.updates.append((completed, fields))

    def resume(self, completed: int) -> None:
        self.updates.append((completed, {"resumed": True}))


@dataclass
class SilentReporter:
    """Records messages instead of printing them, as plain text: ``messages`` without the
    rich markup the notices are given in (a stage's "[bold cyan]▶ data[/bold cyan]" is
    "▶ data", a path's escaped "\\[" is "[")."""

    messages: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def info(self, message: str) -> None:
        self.messages.append(_plain(message))

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    @contextlib.contextmanager
    def progress(self, description: str, total: int) -> Iterator[_NullTask]:
        yield _NullTask()

    @contextlib.contextmanager
    def status(self, description: str) -> Iterator[None]:
        yield


def _plain(markup: str) -> str:
    """The text of a notice given in rich markup (the text as given when it is not valid markup)."""
    from rich.errors import MarkupError
    from rich.text import Text

    try:
        return Text.from_markup(markup).plain
    except MarkupError:
        return markup


class ShownInResults(str):
    """A warning whose content a stage's results carry already (the data warnings in
    data.json, the test-metric warnings, the strategies' notices, the calibration notes):
    the report shows it from there, so :class:`StageWarnings` does not record it again."""


class AboutThisRun(str):
    """A warning about how this run went rather than about the results it leaves: a damaged
    cache entry deleted and computed again. Said while the run goes; :class:`StageWarnings`
    does not record it, since in the report, after the repair, it would read as a problem."""


class StageWarnings:
    """The reporter a stage runs with: passes everything on to ``inner`` and records the
    warnings the stage raised (but not those :class:`ShownInResults` or :class:`AboutThisRun`),
    so the pipeline keeps them in the stage's manifest and the report shows them after the run."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self.warnings: list[str] = []

    def info(self, message: str) -> None:
        self.inner.info(message)

    def warn(self, message: str) -> None:
        self.inner.warn(message)
        if not isinstance(message, (ShownInResults, AboutThisRun)) and str(message) not in self.warnings:  # once
            self.warnings.append(str(message))

    def progress(self, description: str, total: int) -> contextlib.AbstractContextManager[ProgressTask]:
        return self.inner.progress(description, total)

    def status(self, description: str) -> contextlib.AbstractContextManager[None]:
        return waiting(self.inner, description)


class _RichTask:
    def __init__(self, progress: Any, task_id: Any) -> None:
        self._progress = progress
        self._task_id = task_id

    def update(self, completed: int, **fields: Any) -> None:
        from rich.markup import escape

        # (the info column reads markup: a strategy's progress message "[a, b]" vanished, "[/x]" raised)
        # (made visible before rich lays it out, so that a control character's escape is not cut to its width)
        self._progress.update(self._task_id, completed=completed, info=escape(visible(_fields_text(fields))))

    def resume(self, completed: int) -> None:
        """Start the bar at ``completed`` with its clock and speed afresh: the jump from 0
        counted as this run's speed, and the ETA read the rest as nearly done."""
        self._progress.reset(self._task_id, completed=completed, info="resumed")


def _fields_text(fields: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items() if v is not None)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


#: seconds between a log's progress lines for a new message (:class:`_LogTask`), by default
LOG_NOTE_EVERY_S = 5.0


def _notes(fields: dict[str, Any]) -> dict[str, str]:
    """The messages among a progress line's ``fields`` (a strategy's ``now=``, the data
    stage's ``reading=``), as opposed to its numbers (``loss=``), which change at every step."""
    return {key: value for key, value in fields.items() if isinstance(value, str)}


class _LogTask:
    """Progress as plain lines, for a log file: when stderr is not a terminal, rich draws
    its bars only once, at the end, so a batch job's log would show nothing while a stage
    runs. A line at the start, then at most one every ``every`` seconds, and at the end.
    A line is also written every ``every`` seconds in which no count came (a thread of its
    own): one step of work can take minutes (the data stage reading a source of gigabytes
    counts once, when the source is done), and a log silent that long looks hung.

    ``total`` None: a wait with no count (loading a model, :meth:`RichReporter.status`): its
    lines give the time elapsed alone, the last one "done". ``only_if_slow``: no line at the
    start, and none at all for a wait over within ``every`` seconds (a wait repeated within a
    progress already logging, as finetune loading the model for each fine-tune: two lines
    each, 200 for a search of 100 real fine-tunes); a longer one says so, then "done".

    A new message (:func:`_notes`: what a strategy says with ``context.report``, the source
    the data stage reads) gets its line sooner, ``note_every`` seconds after the last line
    (written then by that thread when no update comes), the latest message when several came
    meanwhile: a 7-second strategy's messages showed only on the terminal's bar, its log said
    "search: 0/1" and "search: 1/1". Numbers alone (a training's loss) keep the ``every`` pace."""

    def __init__(self, console: Any, description: str, total: int | None, every: float,
                 note_every: float = LOG_NOTE_EVERY_S, only_if_slow: bool = False,
                 clock: Callable[[], float] | None = None) -> None:
        import threading
        import time

        self._clock = clock or time.monotonic  # (seconds; a test gives its own: RichReporter.log_clock)
        self.console, self.description, self.total, self.every = console, description, total, every
        self.note_every = min(note_every, every)
        self._notes_shown: dict[str, str] = {}  # the messages of the last line
        self.started = self._clock()
        self.last_line = self.started
        self._base = (0, self.started)  # (count, time) the ETA's rate is measured from (see resume)
        self.done = -1
        self.shown = 0
        self.fields: dict[str, Any] = {}
        self._lock = threading.Lock()  # the heartbeat's lines and update's
        self._stop = threading.Event()
        self.only_if_slow = only_if_slow and every > 0  # (every 0: a log of every line)
        self.lines = 0
        if not self.only_if_slow:
            self._line(0, {})
        self._heartbeat: threading.Thread | None = None
        if every > 0:
            self._heartbeat = threading.Thread(target=self._beat, name=f"progress-{description}", daemon=True)
            self._heartbeat.start()

    def _beat(self) -> None:
        """Write the count so far when ``every`` seconds passed without a line, or a message
        not yet shown (:meth:`_new_note`) when ``note_every`` seconds did."""
        while not self._stop.wait(min(self.every, self.note_every or self.every) / 4):  # (0: update writes each)
            with self._lock:
                quiet = self._clock() - self.last_line
                if quiet >= self.every or (quiet >= self.note_every and self._new_note(self.fields)):
                    self._line(max(self.done, 0), self.fields)

    def _new_note(self, fields: dict[str, Any]) -> bool:
        """Whether ``fields`` hold a message the last line did not show."""
        notes = _notes(fields)
        return bool(notes) and notes != self._notes_shown

    def _line(self, completed: int, fields: dict[str, Any], note: str = "") -> None:
        from rich.markup import escape

        now = self._clock()
        elapsed = now - self.started
        base_count, base_time = self._base
        eta = ((now - base_time) / (completed - base_count) * (self.total - completed)
               if self.total is not None and base_count < completed < self.total else None)
        count = f"{completed}/{self.total}" if self.total is not None else "done" if completed else ""
        text = f"{self.description}{': ' + count if count else ''}  elapsed {_duration(elapsed)}"
        text += f"  eta {_duration(eta)}" if eta is not None else ""
        info = "  ".join(part for part in (_fields_text(fields), note) if part)
        self.console.print(escape(text + (f"  {info}" if info else "")), highlight=False, soft_wrap=True)
        self.last_line = self._clock()
        self.shown = completed
        self.lines += 1
        self._notes_shown = _notes(fields)

    def update(self, completed: int, **fields: Any) -> None:
        if completed == self.done and fields == self.fields:  # new fields (a step's progress) may be shown
            return
        with self._lock:
            self.done, self.fields = completed, fields
            quiet = self._clock() - self.last_line
            if ((self.total is not None and completed >= self.total) or quiet >= self.every
                    or (quiet >= self.note_every and self._new_note(fields))):
                self._line(completed, fields)

    def resume(self, completed: int) -> None:
        """A line at once saying the work resumes at ``completed`` (an earlier run did the
        rest): the log of a resubmitted job said "0/300" for its first 30 s, and then an ETA
        that counted the earlier run's steps as done in this run's time."""
        with self._lock:
            self.done, self.fields = completed, {}
            self._base = (completed, self._clock())
            self._line(completed, {}, note=f"resumed: {completed} done by an earlier run")

    def close(self) -> None:
        """The last count, when the work ended short of the total (a diverged run stops
        early) or after the last line shown: a log always says where a stage got to."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self.done > self.shown and (self.lines or not self.only_if_slow):  # (a quick wait: no line at all)
            self._line(self.done, self.fields)


def console_width() -> int | None:
    """The width to build a rich ``Console`` with: None (rich's own choice: ``COLUMNS``, else
    the terminal's, else 80) unless ``COLUMNS`` is 0, which rich takes as a width of 0 columns
    and then prints nothing at all, errors and warnings on stderr included (a command exited 1
    without a word): the terminal's width then, or 80, as ``COLUMNS`` unset gives. A CI runner
    or container whose pseudo-terminal reports 0 columns exports ``COLUMNS=0``."""
    import os
    import shutil

    columns = os.environ.get("COLUMNS", "")
    if not columns.isdigit() or int(columns) > 0:
        return None
    return shutil.get_terminal_size().columns or 80  # (it takes COLUMNS=0 for unset; a 0-column terminal too)


#: characters a terminal acts on instead of showing: C0 controls but tab and newline, DEL, C1
_TERMINAL_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """``text`` with each character a terminal would act on (ESC opening an ANSI or OSC
    sequence, a carriage return, a bell) written as its escape (``\\x1b``), so that it is
    shown, not obeyed: the name of a folder or file from someone else (a project in a shared
    sweep that `ls` lists, a data file a warning names) could hold a sequence that retitles the
    terminal, hides the rest of the line or, where the terminal allows it, writes the clipboard."""
    return _TERMINAL_CONTROLS.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), text)


_console_class: Any = None


def new_console(**options: Any) -> Any:
    """A rich ``Console`` (``options`` as rich's, ``width`` by default :func:`console_width`'s)
    that shows every text it prints or lays out in a table :func:`visible`: rich passes an
    escape sequence in a string through to the terminal as it is. A string is made visible
    before it is laid out; what reaches the terminal some other way (a rich ``Text`` made
    from data, a progress bar's description or fields, which rich's columns turn into
    ``Text`` themselves) is made visible as it is rendered, every segment but rich's own
    control ones (cursor moves, a live display's redraws). rich's own styling, added after,
    is untouched."""
    global _console_class
    if _console_class is None:
        from rich.console import Console
        from rich.segment import Segment

        class VisibleTextConsole(Console):
            def render_str(self, text: str, **kwargs: Any) -> Any:
                return super().render_str(visible(text), **kwargs)

            def render(self, renderable: Any, options: Any = None) -> Any:
                for segment in super().render(renderable, options):
                    if segment.control or not _TERMINAL_CONTROLS.search(segment.text):
                        yield segment
                    else:
                        yield Segment(visible(segment.text), segment.style)

        _console_class = VisibleTextConsole
    options.setdefault("width", console_width())
    return _console_class(**options)


def _stderr_console() -> Any:
    """rich's console on stderr, interactive (bars redrawn in place) only on a terminal that
    can redraw: not on TERM=dumb (rich's rule), and not on a file or pipe that FORCE_COLOR
    (set for colored CI logs) makes rich take for a terminal, where the bars wrote a redraw
    into the log ten times a second. ``TTY_INTERACTIVE=1`` still forces bars, as in rich (which
    reads "0" and "1" only: another value, or an empty one, forces nothing)."""
    import os
    import sys

    console = new_console(stderr=True)
    if console.is_interactive and os.environ.get("TTY_INTERACTIVE") != "1":
        try:
            console.is_interactive = sys.stderr.isatty()
        except (AttributeError, ValueError):  # no isatty, or closed
            console.is_interactive = False
    return console


class RichReporter:
    """Terminal output through rich: notices on stderr, progress bars with ETA on a terminal
    that redraws them (``console.is_interactive``), else plain progress lines (a log file)."""

    def __init__(self, console: Any = None, quiet: bool = False, log_every: float = 30.0,
                 log_note_every: float = LOG_NOTE_EVERY_S, log_clock: Callable[[], float] | None = None) -> None:
        self.console = console or _stderr_console()
        self.quiet = quiet
        #: seconds between progress lines when stderr is not a terminal (a log file)
        self.log_every = log_every
        #: seconds between such lines for a new message (a strategy's ``context.report``)
        self.log_note_every = log_note_every
        #: the clock those lines' times and pace are read from (None: ``time.monotonic``); a test
        #: gives its own, as patching ``time.monotonic`` froze every thread's (an asyncio loop's)
        self.log_clock = log_clock
        self._active: Any = None
        self._log_progress_depth = 0  # the log progresses (:class:`_LogTask`) open now

    def info(self, message: str) -> None:
        if not self.quiet:  # in a log file, one message is one line (not wrapped at 80 columns)
            self.console.print(message, highlight=False, soft_wrap=not self.console.is_interactive)

    def warn(self, message: str) -> None:
        from rich.markup import escape

        self.console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False,
                           soft_wrap=not self.console.is_interactive)

    def say(self, line: str) -> None:
        """``line``, plain text (no markup), shown as a warning is: under ``quiet`` too. The count
        of a spec's warnings past those listed ("... and 1,980 more warnings (of 2,000): ..."):
        as a notice, `run --quiet` showed 20 warnings and nothing after them."""
        self.console.print(line, markup=False, highlight=False, soft_wrap=not self.console.is_interactive)

    @contextlib.contextmanager
    def status(self, description: str) -> Iterator[None]:
        """A wait with no count to show (loading a model): on a terminal a spinner with
        ``description`` and the time elapsed, a check mark once done (within a progress bar
        already shown, a row of its own, removed once done); in a log, lines as a progress's
        (at once, every ``log_every`` seconds, and "done"), with the time elapsed and no count;
        within a progress already logging (finetune's runs), only a wait longer than ``log_every``
        seconds has lines: a load per fine-tune added two each. A bar of one step that jumped
        from 0/1 to 1/1 said neither what loaded nor for how long."""
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        if self.quiet:
            yield
            return
        if not self.console.is_interactive:
            task = _LogTask(self.console, description, None, self.log_every, self.log_note_every,
                            only_if_slow=self._log_progress_depth > 0, clock=self.log_clock)
            try:
                yield
                task.update(1)
            finally:
                task.close()
            return
        from rich.markup import escape

        description = escape(visible(description))
        if self._active is not None:
            task_id = self._active.add_task(description, total=None, info="")
            try:
                yield
            finally:
                self._active.remove_task(task_id)
            return
        with Progress(SpinnerColumn(finished_text="[green]✓"), TextColumn("[bold]{task.description}"),
                      TimeElapsedColumn(), console=self.console, transient=False) as progress:
            self._active = progress  # (a progress begun meanwhile adds its row here: one live display at a time)
            try:
                task_id = progress.add_task(description, total=None, info="")
                yield
                progress.update(task_id, total=1, completed=1)  # the spinner becomes the check mark
            finally:
                self._active = None

    @contextlib.contextmanager
    def progress(self, description: str, total: int) -> Iterator[ProgressTask]:
        """A progress bar; nested calls add a bar to the display already shown (rich
        allows one live display at a time)."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        if self.quiet:
            yield _NullTask()
            return
        if not self.console.is_interactive:  # a log file: plain lines instead of a bar drawn at the end
            task = _LogTask(self.console, description, total, self.log_every, self.log_note_every,
                            clock=self.log_clock)
            self._log_progress_depth += 1
            try:
                yield task
            finally:
                self._log_progress_depth -= 1
                task.close()
            return
        from rich.markup import escape

        description = escape(visible(description))  # (the description column reads markup, as the info one)
        if self._active is not None:
            task_id = self._active.add_task(description, total=total, info="")
            yield _RichTask(self._active, task_id)
            return
        class CountColumn(MofNCompleteColumn):
            """"3/10"; nothing for a row with no count (a status's: :meth:`status`), not "0/?"."""

            def render(self, task: Any) -> Any:
                from rich.text import Text

                return Text("") if task.total is None else super().render(task)

        class EtaColumn(TimeRemainingColumn):
            """"eta 0:00:12"; nothing for a row with no count (a status's, as "loading the model"
            within finetune's bar: it showed a bare "eta")."""

            def render(self, task: Any) -> Any:
                from rich.text import Text

                return Text("") if task.total is None else Text.assemble("eta ", super().render(task))

        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            CountColumn(),
            TimeElapsedColumn(),
            EtaColumn(),
            TextColumn("{task.fields[info]}"),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            self._active = progress
            try:
                task_id = progress.add_task(description, total=total, info="")
                yield _RichTask(progress, task_id)
            finally:
                self._active = None
