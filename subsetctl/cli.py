"""Command-line interface: parse arguments, call :mod:`subsetctl.api`, render results.

Exit codes: 0 ok, 1 user error (bad spec, missing file, locked project...), 2 usage
error (unknown option, missing argument), 130 interrupted (Ctrl-C), 143 stopped by SIGTERM,
129 stopped by SIGHUP (terminal closed), 138/140 stopped by SIGUSR1/SIGUSR2 (a scheduler's
time-limit warning). User errors print one paragraph, never a
traceback; set ``SUBSETCTL_DEBUG=1`` to see tracebacks of internal errors.
"""

from __future__ import annotations

import codecs
import contextlib
import contextvars
import dataclasses
import errno
import functools
import io
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from subsetctl import __version__
from subsetctl.errors import UserError, cli_wording, environment_error, project_arg, run_command, shell_arg
from subsetctl.templates import TEMPLATES
from subsetctl.user_paths import expand_home


def _console(stderr: bool = False) -> Any:
    from subsetctl.reporter import new_console

    return new_console(stderr=stderr, highlight=False, soft_wrap=True)


class _UntilReaderLeaves:
    """``sys.stdout`` or ``sys.stderr`` that drops what is written once the reader of a pipe
    has gone (``subsetctl report | head``, ``subsetctl run 2>&1 | head``): the command still
    finishes, a `run` its work, with its usual exit code, instead of failing on a broken pipe
    halfway (rich exits 1 on one, and a run's progress and notices go to stderr)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.reader_gone = False
        #: why what was written stopped reaching where the stream goes (a log file's disk
        #: full), and where that is, when it was such an error (:data:`_OUTPUT_LOST`)
        self.lost: tuple[OSError, str] | None = None
        self._buffer: _UntilReaderLeaves | None = None

    @property
    def buffer(self) -> Any:
        """The binary stream under it, guarded the same way: click writes its text (`--help`,
        `schema`, JSON) there, as UTF-8, when the stream's encoding is ASCII (LC_ALL=C), and
        a closed pipe was an internal error (BrokenPipeError) and exit 1."""
        if self._buffer is None:
            self._buffer = _UntilReaderLeaves(self._stream.buffer)  # (AttributeError: none, as getattr expects)
        return self._buffer

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except OSError as exc:
                self._drop_the_rest(exc)
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self._stream.flush()
            except OSError as exc:
                self._drop_the_rest(exc)

    def _drop_the_rest(self, exc: OSError) -> None:
        """From now on write nothing: the reader has gone (a broken pipe), or the stream was
        never writable (EBADF: a wrapper script run with ``2>&-`` or ``>&-`` left its own
        read-only file where the closed stream was, and Python took it for the stream), or
        where it goes cannot take more (:data:`_OUTPUT_LOST`: ``run > log`` with the log's
        disk full), which is kept in :attr:`lost` for the command to say at its end: a
        progress line that could not be logged stopped a run's work there, exit 1, and with
        stderr the full one, without a word. Any other error is raised."""
        if exc.errno in _OUTPUT_LOST or exc.errno == errno.EBADF:  # (EBADF: kept for stdout alone, :func:`_say_output_lost`)
            where = ""
            with contextlib.suppress(OSError, ValueError, AttributeError):  # (Linux's /proc only)
                where = os.readlink(f"/proc/self/fd/{self._stream.fileno()}")
            self.lost = (exc, where)
        elif not isinstance(exc, BrokenPipeError):
            raise exc
        self.reader_gone = True
        with contextlib.suppress(OSError, ValueError):  # the interpreter's last flush writes nowhere too
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ... as the stream has them
        return getattr(self._stream, name)


class _ClosedStream(io.TextIOBase):
    """What ``sys.stdout`` (``sys.stderr``) is where the command was started with it closed
    (``>&-``; Python gives None): each write fails with EBADF, as a wrapper script's read-only
    file there does, so :class:`_UntilReaderLeaves` drops it and, for stdout, the command says
    what it printed is lost and exits 1 (it wrote nowhere and exited 0, as if it had printed
    what was asked: GNU tools say "write error: Bad file descriptor", exit 1). A command that
    prints nothing there is not affected."""

    encoding = "utf-8"
    errors = "strict"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))


#: errors writing stdout or stderr that say where the stream goes can take no more (its disk
#: is full, over quota, the file over the size limit, or its device failed), not that the
#: command failed: the command goes on without that stream and says so at its end
_OUTPUT_LOST = frozenset({errno.ENOSPC, errno.EFBIG, errno.EIO, getattr(errno, "EDQUOT", errno.ENOSPC)})


def _say_output_lost() -> bool:
    """Say, on the other stream where it is writable, that stdout or stderr lost what came
    after some point (:attr:`_UntilReaderLeaves.lost`); whether any did."""
    streams = {"stdout": sys.stdout, "stderr": sys.stderr}
    lost = {name: (getattr(stream, "_buffer", None) and stream._buffer.lost) or getattr(stream, "lost", None)
            for name, stream in streams.items() if isinstance(stream, _UntilReaderLeaves)}
    # (a closed stderr, `2>&-`, is closed on purpose: nothing is lost that was asked for)
    lost = {name: why for name, why in lost.items() if why and not (name == "stderr" and why[0].errno == errno.EBADF)}
    for name, (exc, where) in lost.items():
        if name == "stderr" and _STDOUT_IS_JSON.get():  # (stdout holds the JSON alone, then nothing)
            continue
        other = streams["stderr" if name == "stdout" else "stdout"]
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if exc.errno == errno.EBADF:
                other.write(f"error: {name} is closed (the command was started with `>&-`, or with a read-only "
                            "file there), so what the command printed there is lost. The command itself went on "
                            "to its end: a run's stages and report files are kept (`subsetctl report` prints the "
                            "report again). Send stdout somewhere (`> FILE`, or `> /dev/null` to drop it).\n")
                other.flush()
                continue
            other.write(f"error: {name} could not be written from some point on: {exc.strerror}"
                        f"{f' ({where})' if where else ''}, so what the command printed there after it is "
                        "lost. The command itself went on to its end: a run's stages and report files are "
                        "kept (`subsetctl report` prints the report again). Free space where the output goes, "
                        "or send it elsewhere.\n")
            other.flush()
    return bool(lost)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill PID``, a scheduler's stop or time limit, ``docker stop``) or SIGHUP
    (the terminal or SSH session closed) raised in the main thread like Ctrl-C's
    KeyboardInterrupt, so that the command stops the same clean way: files being written
    are deleted, the lock is released, worker processes and clusters are shut down, and it
    says so (exit code 128 + the signal's number, as a death by that signal)."""

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(signum)
        self.signum = signum
        self.signal_name = signal.Signals(signum).name


def _stop_signals() -> list[int]:
    """The signals that stop a command cleanly: SIGTERM, and SIGHUP, SIGUSR1 and SIGUSR2
    where the platform has them. A scheduler warns a job of its time limit with SIGUSR1 or
    SIGUSR2 (Slurm's ``--signal=USR1@120``); their default action killed the process outright,
    with nothing said and its temporary files left."""
    import signal

    return [signal.SIGTERM] + [getattr(signal, name) for name in ("SIGHUP", "SIGUSR1", "SIGUSR2")
                               if hasattr(signal, name)]


@contextlib.contextmanager
def _stop_signals_as_interrupt() -> Any:
    """The stop signals (:func:`_stop_signals`) raise :class:`Terminated` for the block (main thread only:
    elsewhere a handler cannot be set); one (or Ctrl-C) that came while a finalizer ran, where Python
    ignores what is raised, is sent again, to raise outside it. A signal ignored by whoever started us (``nohup``
    ignores SIGHUP) stays ignored. A process forked meanwhile that inherits the handler
    dies of the signal as before, rather than raising in code that does not expect it. For the
    program's own command (:data:`_LATE_STOPS`) the block ends by handing the signals to its
    :class:`_LateStops`, not by putting back their default actions."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pid = os.getpid()

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() != pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated(signum)

    hook_before = sys.unraisablehook

    def raise_again_outside(unraisable: Any) -> None:
        # a signal that came while a finalizer ran (a ``__del__``, a weakref callback: the report's
        # regex and matplotlib objects) raised there, where Python ignores what is raised: the run
        # went on to its end, exit 0, with "Exception ignored in ..." and a traceback printed
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and os.getpid() == pid:
            signum = unraisable.exc_value.signum if isinstance(unraisable.exc_value, Terminated) else signal.SIGINT
            # sent from another thread a moment later, so that the handler runs once the finalizer is
            # over (sent from here, it ran in this hook, which ignores what is raised too)
            again = threading.Timer(0.05, os.kill, (pid, signum))
            again.daemon = True
            again.start()
            return
        hook_before(unraisable)

    previous = {signum: signal.signal(signum, handler)
                for signum in _stop_signals() if signal.getsignal(signum) != signal.SIG_IGN}
    sys.unraisablehook = raise_again_outside
    try:
        yield
    finally:
        sys.unraisablehook = hook_before
        late_stops = _LATE_STOPS.get()
        if late_stops is not None:  # the program's own command: held from here on, never a moment at the default
            late_stops.hold()
        else:  # (None: a handler not set from Python, which cannot be put back; the default instead)
            for signum, handler_before in previous.items():
                signal.signal(signum, handler_before if handler_before is not None else signal.SIG_DFL)


#: What the marks subsetctl prints become on a stream that cannot encode them (an ASCII or
#: Latin-1 locale): one character each where one does, so tables keep their columns
#: (``\u2713`` took six cells where rich had measured one); other text is escaped.
_ASCII_MARKS = {"✓": "+", "✗": "x", "→": ">", "▶": ">", "…": ".", "–": "-", "—": "-", "▁": "_", "±": "+-", "θ": "theta",
                "×": "x"}
_ASCII_MARKS_ERRORS = "subsetctl-ascii-marks"


def _ascii_marks(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: the marks of :data:`_ASCII_MARKS` as ASCII, anything else as a
    backslash escape (``é`` as ``\xe9``), so a non-UTF-8 locale never crashes a command. A
    name Python decoded with surrogate escapes (a non-ASCII path given on the command line
    under ``LC_ALL=C``) is read as UTF-8 first: ``données`` was ``donn\udcc3\udca9es`` in one
    line and ``donn\xe9es`` in the next, which quoted it from the spec."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start:error.end]
    with contextlib.suppress(UnicodeError):  # (a surrogate that is no escaped byte: as it is)
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(_ASCII_MARKS.get(c) or c.encode("ascii", "backslashreplace").decode("ascii") for c in text), error.end


codecs.register_error(_ASCII_MARKS_ERRORS, _ascii_marks)


class _Group(click.Group):
    """A click group that turns user errors into exit code 1 without a traceback, and lists
    its commands in the order a project uses them (init, validate, ..., doctor), as they are
    defined below, rather than alphabetically (doctor first, init after it)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # before click parses anything: `--help` and `--version` print and exit while
        # parsing, before the group's callback runs, and click made a closed pipe exit 1
        for stream in (sys.stdout, sys.stderr):  # a non-UTF-8 locale: ✓, é as +, \xe9, not a crash
            if (getattr(stream, "encoding", None) or "utf-8").lower().replace("-", "") != "utf8":
                with contextlib.suppress(AttributeError, ValueError):
                    stream.reconfigure(errors=_ASCII_MARKS_ERRORS)
        # (None: started with the stream closed, `>&-`: a write there is lost, :class:`_ClosedStream`)
        if not isinstance(sys.stdout, _UntilReaderLeaves):
            sys.stdout = _UntilReaderLeaves(_ClosedStream() if sys.stdout is None else sys.stdout)
        if not isinstance(sys.stderr, _UntilReaderLeaves):
            sys.stderr = _UntilReaderLeaves(_ClosedStream() if sys.stderr is None else sys.stderr)
        _STDOUT_IS_JSON.set(False)
        given = kwargs.get("args", args[0] if args else None)
        _ARGS.set(tuple(given) if given is not None else tuple(sys.argv[1:]))
        late_stops = _LateStops() if given is None else None  # (the program's own command line, not a test's)
        held_at_the_end = _LATE_STOPS.set(late_stops)
        try:
            return super().main(*args, **kwargs)
        except SystemExit as done:
            if _say_output_lost() and done.code in (0, None):
                raise SystemExit(1) from None
            raise
        finally:
            if late_stops is not None:  # (held already where the command ran: see _stop_signals_as_interrupt)
                late_stops.hold()
            _LATE_STOPS.reset(held_at_the_end)

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:  # the group's own options (`subsetctl --format json run`)
            _error_json_if_asked(exc)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            try:
                with _stop_signals_as_interrupt():
                    return super().invoke(ctx)
            except Exception as exc:  # an OSError, or one that carries it as text (environment_error)
                user_error = environment_error(exc)
                if user_error is None:
                    raise
                if os.environ.get("SUBSETCTL_DEBUG"):
                    import traceback

                    traceback.print_exc()  # where it happened; the one-paragraph message follows
                raise user_error
        except UserError as exc:
            from rich.markup import escape

            _error_json_if_asked(exc)  # (before the command ran: the group's own check)
            cause = exc.__cause__
            shown = getattr(exc, "plugin_traceback", "")  # a plugin's own code failed: where, always
            if shown:
                with contextlib.suppress(OSError):
                    sys.stderr.write(shown)
            elif cause is not None and os.environ.get("SUBSETCTL_DEBUG"):
                import traceback

                traceback.print_exception(cause)
            # messages quote user text (paths, values): never parse it as rich markup
            _console(stderr=True).print(f"[bold red]error:[/bold red] {escape(str(exc))}", markup=True)
            sys.exit(1)
        except KeyboardInterrupt as exc:
            _error_json_if_asked(exc)
            with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
                _console(stderr=True).print(_stopped_text(exc), markup=False)
            sys.exit(_stopped_exit_code(exc))
        except click.ClickException as exc:  # a usage error in the command's arguments (click prints it)
            _error_json_if_asked(exc)
            raise
        except (click.exceptions.Exit, SystemExit):
            raise
        except Exception as exc:  # an internal error: say so plainly
            _error_json_if_asked(exc)
            if os.environ.get("SUBSETCTL_DEBUG"):
                raise
            from rich.markup import escape

            _console(stderr=True).print(f"[bold red]internal error:[/bold red] {escape(_internal_error_text(exc))}")
            sys.exit(1)


class _LateStops:
    """Ctrl-C or a stop signal (:func:`_stop_signals`) that comes once the command is over, while
    the process exits, stops nothing: the run's work is done and written, its report printed.
    Python's own exit took up to a second after a run (its modules and torch's let go), and such a
    signal then killed the process without a word: 0.02 s after the report's last line, exit -2
    (a death by SIGINT, not 130) or -15 (SIGTERM, not 143), for Python puts back each signal's
    default action before it lets its modules go. From :meth:`hold` on, a signal is held until
    the exit, which keeps the command's own exit code, and one line on stderr says it stopped
    nothing; a second one stops the process at once (a clean-up at the exit that hangs). The
    exit's last step is made by :func:`atexit` from the first callback registered, made when
    the command starts, so that it comes after those registered later (the Dask clients' closing)."""

    def __init__(self) -> None:
        import atexit

        self._held: list[int] = []
        self._signals: list[int] = []
        atexit.register(self._at_exit)

    def hold(self) -> None:
        """Hold back Ctrl-C and the stop signals from now until the exit (main thread only: where
        a handler can be set); one ignored by whoever started us (``nohup``) stays ignored."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        self._signals = [signum for signum in (signal.SIGINT, *_stop_signals())
                         if signal.getsignal(signum) != signal.SIG_IGN]
        for signum in self._signals:
            signal.signal(signum, self._handler)

    def _handler(self, signum: int, frame: Any) -> None:
        import signal

        if self._held:  # a second one: stop at once, as that signal's default does
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self._held.append(signum)

    def _at_exit(self) -> None:
        """Ignore the held signals for the rest of the exit (where Python would put their default
        action back), and say whether one came."""
        import signal

        for signum in self._signals:
            signal.signal(signum, signal.SIG_IGN)
        if self._held:
            name = "Ctrl-C (SIGINT)" if self._held[0] == signal.SIGINT else signal.Signals(self._held[0]).name
            with contextlib.suppress(OSError, ValueError, AttributeError):  # (stderr closed, or the terminal gone)
                sys.stderr.write(f"{name} came after the command had finished: it stopped nothing, "
                                 "and everything the command did is kept.\n")
                sys.stderr.flush()


#: The :class:`_LateStops` of the program's own command (None for a test's or an API caller's
#: :func:`main`): the command's stop-signal handlers hand over to it as they end, where putting
#: back the default actions first left a moment (the output's check, click's exit) in which
#: SIGTERM killed the process without a word and Ctrl-C printed a traceback, after the output.
_LATE_STOPS: contextvars.ContextVar[_LateStops | None] = contextvars.ContextVar("_LATE_STOPS", default=None)


def _stopped_text(exc: KeyboardInterrupt) -> str:
    """What a command stopped by Ctrl-C or a stop signal (:class:`Terminated`) says: "interrupted."
    or "stopped by SIGTERM.", and for a run, that its finished work is kept and the command that
    resumes it (set on the exception as ``resumes``). Another command (`plan`, `report`, ...) has
    nothing to resume, and "`subsetctl run` resumes" after one read in a job's log as if a run
    had been stopped."""
    stopped = f"stopped by {exc.signal_name}" if isinstance(exc, Terminated) else "interrupted"
    resumes = getattr(exc, "resumes", None)
    return f"{stopped}; finished work is kept, {resumes}." if resumes else f"{stopped}."


def _stopped_exit_code(exc: KeyboardInterrupt) -> int:
    """The exit code of a command stopped by ``exc``: 128 + the signal's number, as a death by
    that signal (130 for Ctrl-C's SIGINT, 143 for SIGTERM)."""
    return 128 + exc.signum if isinstance(exc, Terminated) else 130


def _internal_error_text(exc: BaseException) -> str:
    """What an internal error (an exception no user error explains) says after "internal error:"."""
    return (f"{type(exc).__name__}: {exc}\nThis is a bug in subsetctl, not in your spec. Finished stages are kept. "
            "Re-run with SUBSETCTL_DEBUG=1 for the traceback and report it.")


class _PathGiven(click.Path):
    """click's Path (as a :class:`~pathlib.Path`) that refuses empty text as a usage error (exit
    2): ``Path("")`` is the current folder, so `subsetctl init "$DIR"` with DIR unset wrote a
    project into the current folder, and `plan ""` or `report --compare ""` read the one there
    (or named "." in an error the user did not type)."""

    def __init__(self) -> None:
        super().__init__(path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail(_empty_argument_text(value, "a folder or file", "DIR"), param, ctx)
        return super().convert(value, param, ctx)


def _empty_argument_text(value: str, what: str, variable: str) -> str:
    """The usage error of an empty (or blank) path argument, which would be the current folder."""
    return (f"{value!r} is empty: name {what} ('.' for the current folder); an empty shell variable "
            f"(\"${variable}\" with {variable} unset) gives one.")


def _stage_option(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Check --until/--force stage names as usage errors (exit 2) before any work starts."""
    from subsetctl.stages import stage_names

    names = stage_names()
    for name in value if isinstance(value, tuple) else ([value] if value is not None else []):
        if name not in names:  # `--until serach`, `--until Search`: the stage meant, as a mistyped command's
            import difflib

            close = difflib.get_close_matches(name.lower(), names, n=1, cutoff=0.6)
            meant = f" Did you mean {close[0]!r}?" if close else ""
            raise click.BadParameter(f"{name!r} is not a stage; the stages are {', '.join(names)}.{meant}")
    return value


def _refuse_force_after_until(until: str | None, force: tuple[str, ...]) -> None:
    """`--until data --force search`: a usage error (exit 2) before the project is read, as
    the options alone make it; it was a user error (exit 1) found while planning."""
    from subsetctl.pipeline import forced_after_until
    from subsetctl.stages import stage_names

    problem = forced_after_until(force, until, stage_names())
    if problem:
        raise click.UsageError(problem)


def _complete_stage(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of a stage name (`run --until g<TAB>`: gradients)."""
    from click.shell_completion import CompletionItem

    from subsetctl.stages import stage_names

    return [CompletionItem(name) for name in stage_names() if name.startswith(incomplete)]


def _complete_path(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of an argument that is a spec file or project folder, or an override
    (`validate`'s SPECS): the shell's own file names, as for the other commands' DIRECTORY."""
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="file")]


class _StageOption(click.Option):
    """An option whose value is a stage name (`--until`, `--force`): shown as STAGE in the
    usage, and its help ends with the stage names, so that `run --help` says what to write
    (they were listed only after a wrong one). The names come from the stages themselves,
    imported only when the help is shown."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("metavar", "STAGE")
        kwargs.setdefault("callback", _stage_option)
        kwargs.setdefault("shell_complete", _complete_stage)
        super().__init__(*args, **kwargs)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from subsetctl.stages import stage_names

        record = super().get_help_record(ctx)
        if record is None:
            return None
        return record[0], f"{record[1]} Stages, in order: {', '.join(stage_names())}."


def _plugins_imported_all_the_same(command: str) -> str:
    """The warning of `run` and `report`, which take no --no-plugins, under ``SUBSETCTL_NO_PLUGINS``:
    exported for safety, it is not honoured, and must not look as if it were."""
    return (f"SUBSETCTL_NO_PLUGINS is set, but `{command}` imports the spec's plugins: modules all the same (it "
            "needs their code): check a spec you did not write with `subsetctl validate --no-plugins` "
            f"before {'running it' if command == 'run' else 'using it'}.")


def _no_plugins_asked() -> bool:
    """Whether ``SUBSETCTL_NO_PLUGINS`` holds a true value, read by click's own boolean
    type, as the other commands' flag reads it (``1``, ``true``, ``yes``, ``on``; a value
    that is no boolean, which those commands refuse, is not)."""
    try:
        return bool(click.BOOL.convert(os.environ.get("SUBSETCTL_NO_PLUGINS", ""), None, None))
    except click.BadParameter:
        return False


def _no_plugins_option(effect: str) -> Callable[[Any], Any]:
    """`--no-plugins` (also ``SUBSETCTL_NO_PLUGINS=1``) of the commands that check a spec
    without running it (validate, plan, ls, doctor): its ``plugins:`` are not imported, so a
    spec from someone else can be checked before its code is read. `run` has no such option:
    it needs them. ``effect``: what the command does instead with what they would register
    (each says it its own way: ls lists no registrations, doctor counts them)."""
    return click.option(
        "--no-plugins", "no_plugins", is_flag=True, envvar="SUBSETCTL_NO_PLUGINS", show_envvar=True,
        help=f"Do not import the spec's plugins: modules (their code does not run): {effect}. Installed plugin "
             "packages are still imported.",
    )


#: the stdout a `--format json` command was started with (:func:`_json_alone_on_stdout`)
_JSON_STDOUT: contextvars.ContextVar[Any] = contextvars.ContextVar("_JSON_STDOUT", default=None)
#: whether the `--format json` command running has printed its JSON (:func:`_echo_json`)
_JSON_ECHOED: contextvars.ContextVar[bool] = contextvars.ContextVar("_JSON_ECHOED", default=False)
#: whether this command's stdout is its JSON (:func:`_json_alone_on_stdout`), still when it
#: is over: a lost stderr is then not said there (:func:`_say_output_lost`)
_STDOUT_IS_JSON: contextvars.ContextVar[bool] = contextvars.ContextVar("_STDOUT_IS_JSON", default=False)
#: the command line's arguments (after the program's name), for what fails before the command
#: runs, and so before it knows its ``fmt`` (:func:`_error_json_if_asked`)
_ARGS: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("_ARGS", default=())


def _json_alone_on_stdout(command: Any) -> Any:
    """A command whose ``fmt`` is "json" runs with ``sys.stdout`` sent to stderr, and
    :func:`_echo_json` writes the JSON to the stdout it was started with: stdout then holds the
    JSON alone. Plugin code that `validate`, `plan` and `ls` call (a strategy's ``check_spec``
    or ``max_subsets``, a packaged model's ``locate``) printed onto stdout before it, and
    ``json.load`` of the output failed (a print while a plugin is imported went to stderr
    already). Whatever else stops the command before it printed its JSON prints :func:`error_json`
    there instead (the paragraph, or the traceback hint, still goes to stderr): a user error
    (exit 1), a usage error found while it runs (exit 2), Ctrl-C or a stop signal (130, 143,
    ...), an internal error (1). A script read nothing on stdout and had to parse the text to
    tell a locked project from a bad spec, and its ``json.loads`` failed on a stopped run."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("fmt") != "json":
            return command(*args, **kwargs)
        token, echoed = _JSON_STDOUT.set(sys.stdout), _JSON_ECHOED.set(False)
        _STDOUT_IS_JSON.set(True)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                return command(*args, **kwargs)
        except (SystemExit, click.exceptions.Exit):  # (`validate` of an invalid spec: its JSON, then exit 1)
            raise
        except BaseException as exc:  # (KeyboardInterrupt: Ctrl-C, or a stop signal as Terminated)
            if not _JSON_ECHOED.get():  # (`report` of nothing run: its JSON, then exit 1)
                _echo_json(error_json(environment_error(exc) or exc))  # (an OSError the CLI reports as a user error)
            raise
        finally:
            _JSON_STDOUT.reset(token)
            _JSON_ECHOED.reset(echoed)

    return wrapper


#: the version of what a `--format json` command prints instead of its JSON when an error stops
#: it (:func:`error_json`'s top-level ``json_format``), raised as report's is (whenever a subsetctl
#: removes or renames one of its keys or changes what one means): a script reading any command's
#: JSON finds the key it checks there too. 1: the first numbered
ERROR_JSON_FORMAT = 1


def error_json(exc: BaseException) -> dict[str, Any]:
    """What a `--format json` command prints on stdout when ``exc`` stops it:
    ``{"json_format", "error": {"kind", "message", "exit_code"}}`` (``json_format``:
    :data:`ERROR_JSON_FORMAT`), ``message`` what is printed on stderr and
    ``exit_code`` the command's. ``kind`` is a stable name: a user error's own
    (:attr:`~subsetctl.errors.UserError.error_kind`: "project_locked" for a lock another
    process holds, which a sweep retries; "spec_invalid", "not_found", ...), "usage" for a
    usage error (click's: an unknown option, a bad value, exit 2), "interrupted" for Ctrl-C
    or a stop signal (a run the same command resumes) and "internal_error" for a bug."""
    if isinstance(exc, UserError):
        kind, message, code = exc.error_kind, str(exc), 1
    elif isinstance(exc, KeyboardInterrupt):
        kind, message, code = "interrupted", _stopped_text(exc), _stopped_exit_code(exc)
    elif isinstance(exc, click.ClickException):
        kind = "usage" if isinstance(exc, click.UsageError) else "user_error"
        message, code = exc.format_message(), exc.exit_code
    else:
        kind, message, code = "internal_error", _internal_error_text(exc), 1
    return {"json_format": ERROR_JSON_FORMAT, "error": {"kind": kind, "message": message, "exit_code": code}}


def _error_json_if_asked(exc: BaseException) -> None:
    """Print :func:`error_json` of ``exc`` on stdout when it stopped the command before the
    command ran (no :func:`_json_alone_on_stdout` wrapper printed one) and the command line asks
    for `--format json`: a usage error in its options or arguments (an unknown option, a stage
    `--until` does not know, a misspelt command), found while click parses them. The command's
    ``fmt`` is not known then, so the arguments are read: the last `--format` before any `--`,
    as click takes it. An error in `--format` itself (`--format yaml`, no value) prints none."""
    if _STDOUT_IS_JSON.get():  # the command ran as `--format json`: its wrapper printed its JSON
        return
    args = list(_ARGS.get())
    args = args[:args.index("--")] if "--" in args else args
    fmt = None
    for i, arg in enumerate(args):
        if arg == "--format":
            fmt = args[i + 1] if i + 1 < len(args) else None
        elif arg.startswith("--format="):
            fmt = arg.partition("=")[2]
    if fmt == "json":
        _STDOUT_IS_JSON.set(True)  # (stdout holds the JSON alone: a lost stderr is not said there)
        with contextlib.suppress(OSError, ValueError):
            _echo_json(error_json(exc))


def _print_not_checked(console: Any, report: Any) -> None:
    """validate's lines on a spec checked without importing its plugins (`--no-plugins`): what
    that left unchecked, and that a plain `validate` runs their code."""
    from rich.markup import escape

    if report.plugins_imported or not report.not_checked:  # (each plugin not imported is one)
        return
    console.print("  [yellow]plugins not imported (--no-plugins): their code did not run, and what they "
                  "register is not checked; a plain `subsetctl validate` imports them, which runs their "
                  "code[/yellow]")
    for item in report.not_checked:
        console.print(f"  {escape(item.render())}")


def _print_code_the_spec_runs(console: Any, notes: list[str]) -> None:
    """validate's and plan's lines on the code from outside subsetctl a spec runs
    (:func:`subsetctl.api.code_the_spec_runs`), said before `run` runs it."""
    from rich.markup import escape

    if notes:
        console.print("  [yellow]runs code from outside subsetctl (read it before running a spec from someone "
                      "else):[/yellow]")
    for note in notes:
        console.print(f"    {escape(note)}")


def _echo_json(data: Any) -> None:
    """Print strict JSON (NaN as null, so jq and JavaScript can read it), on the command's
    own stdout (see :func:`_json_alone_on_stdout`), its text as UTF-8 spells it (see
    :func:`_as_spelt`)."""
    from subsetctl.project import json_text

    click.echo(json_text(_as_spelt(data), indent=2), file=_JSON_STDOUT.get())
    _JSON_ECHOED.set(True)


#: a byte that is not ASCII, as Python decodes a path's bytes under a locale that is not UTF-8
_SURROGATE_ESCAPE = re.compile("[\udc80-\udcff]")


def _as_spelt(data: Any) -> Any:
    """``data`` with each text holding surrogate escapes (a path under LC_ALL=C with UTF-8 mode
    off: Python decodes `分類` as six escapes, one a byte) as the text its bytes spell in UTF-8:
    `--format json` wrote "project": "/x/\\udce5\\udc88..." for "/x/\\u5206\\u985e", which no
    reader takes for the folder's name. Bytes that are not UTF-8 stay escaped."""
    if isinstance(data, str):
        if not _SURROGATE_ESCAPE.search(data):  # (a regex: a character loop in Python took 0.3 s at 10,000 sources)
            return data
        try:
            return data.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # (another lone surrogate, from a JSON file's \\ud800)
            return data
    if isinstance(data, dict):
        return {_as_spelt(key): _as_spelt(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_as_spelt(item) for item in data]
    return data


#: the libraries whose versions `--version` prints after subsetctl's (what a bug report needs first)
VERSION_LIBRARIES = ("torch", "transformers", "peft")


def version_text() -> str:
    """What `subsetctl --version` prints: "subsetctl, version X.Y.Z" first (as click printed it
    alone, for the scripts that parse it), then python's and :data:`VERSION_LIBRARIES`' versions
    and where subsetctl is imported from, one a line, with the commit of a git checkout
    (:func:`~subsetctl.checkout.source_commit`). The versions are the installed packages' metadata:
    nothing is imported (torch took seconds)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from subsetctl.checkout import package_folder, source_commit

    lines = [f"subsetctl, version {__version__}", f"python {platform.python_version()}"]
    for name in VERSION_LIBRARIES:
        try:
            lines.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            lines.append(f"{name} not installed")
    commit = source_commit()
    lines.append(f"installed at {package_folder()}" + (f" (git checkout, commit {commit})" if commit else ""))
    return "\n".join(lines)


def _print_version(ctx: click.Context, asked: bool) -> None:
    """`--version`: print :func:`version_text` and exit, before anything else is parsed."""
    if asked and not ctx.resilient_parsing:
        click.echo(version_text())
        ctx.exit()


def _examples(*lines: str) -> str:
    """A command's help epilog: "Examples:" and its command lines, kept as written (click
    rewraps help text into one paragraph unless it starts with ``\\b``), after the options,
    where a new user reads first what to type."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=_examples("subsetctl init myproject", "subsetctl plan myproject", "subsetctl run myproject",
                              "subsetctl COMMAND --help"))
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=lambda ctx, param, value:
              _print_version(ctx, value), help="Show the version, those of python, torch, transformers and peft, "
              "and where subsetctl is installed, and exit.")
def main() -> None:
    """subsetctl: choose which auxiliary data sources to fine-tune a language model on.

    A YAML spec names the base model, the target task and the candidate sources;
    `subsetctl run` meta-initializes a LoRA adapter, caches projected per-example
    gradients, estimates fine-tuning on many subsets on CPUs, searches, fine-tunes the
    pick and reports. All state lives in the project directory; runs resume.
    """
    _require_posix_locks()
    click.get_current_context().with_resource(cli_wording())  # messages name the options, not the API's arguments


def _require_posix_locks() -> None:
    """Refuse a platform without POSIX file locks (Windows) in one paragraph: the project
    folder, its shards and the model cache are locked with ``fcntl``, and importing it
    failed as an internal error ("No module named 'fcntl'") at the first command."""
    import importlib.util

    if importlib.util.find_spec("fcntl") is None:
        raise UserError(
            f"subsetctl runs on Linux and macOS: it locks the project folder and its caches with POSIX file "
            f"locks (fcntl), which this platform ({sys.platform}) does not have. On Windows, run it under WSL "
            "(Windows Subsystem for Linux) or in a Linux container."
        )


def _report_read(from_report: Path) -> Path:
    """What `init --from-report` says it wrote the spec from: the argument as given (a report.json,
    or the project folder holding one), or for a project's spec file the report.json it read
    beside it: "from proj/subsetctl.yaml" read as a copy of today's spec, which the report's
    settings need not be."""
    from subsetctl.project import path_argument
    from subsetctl.spec.from_report import report_json_path

    read = report_json_path(path_argument(from_report, "--from-report", "report.json"))
    return from_report if from_report.is_dir() or read == from_report else read


@main.command(epilog=_examples("subsetctl init myproject", "subsetctl init myproject --template minimal",
                               "subsetctl init variant7 --from-report sweep/v7/report.json"))
@click.argument("directory", type=_PathGiven())  # a file: init_project's UserError (exit 1)
@click.option("--template", "-t", type=click.Choice(TEMPLATES), default="quickstart", show_default=True,
              help="The commented spec to start from: quickstart (reasoning-gym sources, no files), minimal "
                   "(also writes three small JSONL files it reads), classifier (a sequence classifier on a CSV "
                   "and a JSON Lines file it writes, labels mapped across them) or hub-gpu (a hub model and hub "
                   "datasets on GPUs: specs/hub-llama-gpu.yaml).")
@click.option("--force", is_flag=True, help="Overwrite an existing subsetctl.yaml (kept as subsetctl.yaml.bak, or "
              ".bak.1, ... when that exists).")
@click.option("--from-report", "from_report", type=_PathGiven(), default=None,
              help="Instead of a template (default: a template), write the spec a report's results were made with: PATH is a "
                   "report.json (format 8 or later) or the project folder holding one (or its subsetctl.yaml). Every setting it records, "
                   "command-line overrides folded in; paths made relative to DIRECTORY (kept where DIRECTORY holds "
                   "the file; absolute ones stay absolute); the data files checked against its input_files' "
                   "sha256. What it cannot hold (plugin code, executor and report settings) is named in a warning.")
def init(directory: Path, template: str, force: bool, from_report: Path | None) -> None:
    """Create a project directory with a commented spec.

    With --from-report, the spec is the one a report's results were made with."""
    from subsetctl.api import init_project

    if from_report is not None and click.get_current_context().get_parameter_source("template") is not (
            click.core.ParameterSource.DEFAULT):
        raise click.UsageError("--template and --from-report each give the spec: pass one of them.")
    if str(directory) == "-":  # not a folder named '-' made by mistake
        raise click.UsageError("init writes a project folder, not standard output: '-' is no folder here. Name the "
                               f"folder to create ({shell_arg(Path.cwd() / '-')} for one named '-'); `subsetctl "
                               "schema` prints the spec's schema on standard output.")
    kept: list[str] = []
    backups: list[Path] = []
    said: list[str] = []
    path = init_project(directory, template, force, kept, backups, from_report, said)
    console = _console()
    made_from = f"from {_report_read(from_report)}" if from_report is not None else f"template {template}"
    console.print(f"Created {path} ({made_from}) and its schema for editors, subsetctl.schema.json.",
                  highlight=False, markup=False)
    for line in said:
        console.print(line, highlight=False, markup=False)
    for backup in backups:
        console.print(f"The spec it replaced is kept as {backup} (rename it back to {path.name} to use it again).",
                      highlight=False, markup=False)
    if kept:
        console.print(f"Kept the existing {', '.join(sorted(kept))} (the spec reads {'it' if len(kept) == 1 else 'them'}; "
                      "delete a file to get the template's).", highlight=False, markup=False)
    spec_arg, dir_arg = shell_arg(path), shell_arg(path.parent)  # copy-pasteable with spaces, ~ expanded
    console.print(f"Next: subsetctl validate {spec_arg} && subsetctl plan {dir_arg} && subsetctl run {dir_arg}",
                  highlight=False, markup=False)


@main.command(short_help="Check spec files without loading a model.",
              epilog=_examples("subsetctl validate myproject", "subsetctl validate myproject gradients.d=64",
                               "subsetctl validate --no-plugins theirs/subsetctl.yaml"))
@click.argument("specs", nargs=-1, shell_complete=_complete_path)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one object per spec with its problems and warnings, for scripts; on a usage error, "
                   "Ctrl-C or a bug {json_format, \"error\": {kind, message, exit_code}} instead.")
@_no_plugins_option("list them, with their files, and report what they would register as not checked")
@_json_alone_on_stdout
def validate(specs: tuple[str, ...], fmt: str, no_plugins: bool) -> None:
    """Check spec files (or project directories; default: the current directory's
    subsetctl.yaml) without loading a model (exit 1 if any is invalid).

    Arguments of the form key=value (that are not existing files) are overrides, applied
    to every spec as `plan` and `run` would apply them."""
    from rich.markup import escape

    from subsetctl.api import validate_spec_file
    from subsetctl.project import named_as_yaml
    from subsetctl.spec import SPEC_FILENAME, issues_text, warnings_shown

    if any(not a.strip() for a in specs):  # `validate "$SPEC"`, SPEC unset: not the current folder's spec
        raise click.UsageError(_empty_argument_text(next(a for a in specs if not a.strip()),
                                                    "a spec file or project folder", "SPEC"))
    split = [a for a in specs if a.startswith("=") and not _exists(expand_home(a))]
    if split:  # `validate gradients.d = 32`: each file name would be "no such spec file"
        joined = _joined_overrides(specs, frozenset(a for a in specs if _exists(expand_home(a))))
        keyless = [a for a in joined.split(" ") if a.startswith("=")]
        if keyless:  # `validate m1 =3` with m1 a project: the value has no key to join
            before = "the argument before it is a spec file or project folder, not a key" if joined[0] != "=" \
                else "nothing before it names a key"
            fixed = " ".join(f"KEY{a}" if a.startswith("=") else a for a in joined.split(" "))
            raise click.UsageError(
                f"{keyless[0]!r} is a value without a key: {before}. Write each override as one argument, "
                f"key=value without spaces around '=', with the key you mean: `subsetctl validate{_given_options()} {fixed}`."
            )
        raise click.UsageError(f"{split[0]!r} is not a spec file or a key=value override. Write each override "
                               f"as one argument, key=value without spaces around '=': "
                               f"`subsetctl validate{_given_options()} {joined}`.")
    # as typed (a Path would drop "//"); a path holding "=" (/data/x=1/subsetctl.yaml) stays a path
    overrides = [a for a in specs if _OVERRIDE_KEY.match(a) and not _exists(expand_home(a))]
    paths = [expand_home(a) for a in specs if a not in overrides]
    overrides = [a.lstrip() for a in overrides]  # ` gradients.d=8`, pasted with a space
    reports = []
    for spec in paths or [Path(".")]:
        # a folder named like a spec file (`validate p/subsetctl.yaml` where that is a folder) is said to be one
        named_as_spec = named_as_yaml(spec) and not _exists(spec / SPEC_FILENAME)
        path = spec / SPEC_FILENAME if _exists(spec, folder=True) and not named_as_spec else spec
        reports.append(validate_spec_file(path, overrides, import_plugins=not no_plugins))
    # a plugin whose import failed: its own frames, as `run` shows a stage's failure
    _write_plugin_frames("".join(report.plugin_tracebacks for report in reports))
    if fmt == "json":
        _echo_json([r.to_dict() for r in reports])
    else:
        console = _console()
        for report in reports:
            unchecked = " (except what its plugins provide: see below)" if report.not_checked else ""
            if report.ok:
                console.print(f"[green]✓[/green] {escape(str(report.file))} is valid{unchecked}")
            else:
                console.print(f"[red]✗[/red] {escape(str(report.file))}: {len(report.issues):,} problem(s){unchecked}")
                console.print(issues_text(report.issues, report.file, overrides, no_plugins), markup=False)
            # (a note per source of 2,000 made 2,000 lines: the first ISSUES_SHOWN, and how many more)
            shown, more = warnings_shown(report.warnings, report.file, overrides, no_plugins)
            for warning in shown:
                said = "[cyan]note:[/cyan]" if warning.note else "[yellow]warning:[/yellow]"
                console.print(f"  {said} {escape(warning.render())}")
            if more:
                console.print(more, markup=False, highlight=False)
            _print_not_checked(console, report)
            _print_code_the_spec_runs(console, report.runs_code)
    if not all(r.ok for r in reports):
        sys.exit(1)


@main.command(epilog=_examples("subsetctl schema > subsetctl.schema.json"))
def schema() -> None:
    """Print the JSON schema of the spec."""
    from subsetctl.api import schema_text

    click.echo(schema_text(), nl=False)


#: below this many columns `plan` lists the stages one per line: a four-column table split
#: the stage names themselves ("meta_in" / "it") and gave "why" five letters a line
NARROW_PLAN = 60

_STATE_COLORS = {"not checked": "yellow", "up to date": "green", "stale": "yellow", "never run": "cyan", "unfinished": "magenta",
                 "running": "blue", "disabled": "dim", "corrupt": "red"}


def _action(status: Any) -> str:
    """What `run` would do with a stage, as `plan` says it."""
    if status.state == "not checked":  # plan --no-plugins: it uses a plugin's code
        return "not known"
    return "run" if status.will_run else "put back" if status.put_back else "skip"


def _status_lines(statuses: list[Any], title: str) -> str:
    """`plan`'s statuses for a narrow terminal, as markup: one "stage: status, action — why"
    line per stage, wrapped by the terminal between words instead of inside names."""
    from rich.markup import escape

    lines = [title]
    for s in statuses:
        color = _STATE_COLORS.get(s.state, "white")
        why = f" — {escape('; '.join(s.reasons))}" if s.reasons else ""
        lines.append(f"[bold]{s.name}[/bold]: [{color}]{s.state}[/{color}], {_action(s)}{why}")
    return "\n".join(lines)


def _status_table(statuses: list[Any], title: str) -> Any:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("stage", overflow="fold")  # a narrow terminal folds names, never cuts them (meta_i…)
    table.add_column("status", overflow="fold")
    table.add_column("run would", overflow="fold")
    table.add_column("why", overflow="fold")  # long overrides and paths wrap, never cut off
    for s in statuses:
        color = _STATE_COLORS.get(s.state, "white")
        table.add_row(s.name, f"[{color}]{s.state}[/{color}]", _action(s), escape("; ".join(s.reasons)))
    return table


@main.command(short_help="Show each stage's status and what `run` would do.",
              epilog=_examples("subsetctl plan myproject", "subsetctl plan myproject --until search gradients.d=64",
                               "subsetctl plan myproject --format json"))
@click.argument("directory", required=False, type=_PathGiven())
@click.argument("overrides", nargs=-1)
@click.option("--until", cls=_StageOption, help="Plan only up to this stage (default: up to the last).")
@click.option("--force", cls=_StageOption, multiple=True, help="Plan as if this stage were forced (repeatable; default: none).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: each stage's status, whether run would run it and why, and how much work it is, for scripts; "
                   "on an error (a user or usage error, Ctrl-C, a bug) {json_format, \"error\": {kind, message, exit_code}} instead.")
@_no_plugins_option("list them, with their files, and call the stages that use what they would register "
                     "(and those after them) not checked")
@_json_alone_on_stdout
def plan(directory: Path | None, overrides: tuple[str, ...], until: str | None, force: tuple[str, ...], fmt: str,
         no_plugins: bool) -> None:
    """Show each stage's status and what `run` would do (changes nothing but the cache of file
    hashes, and the file stamps recorded for a copied project's results).

    DIRECTORY is the project (default: the current directory); extra `key=value`
    arguments are spec overrides, planned as `run` would apply them."""
    from rich.markup import escape

    from subsetctl.api import code_the_spec_runs, plan_project, spec_edits_since_run_started
    from subsetctl.plan_reasons import listed_briefly
    from subsetctl.reporter import RichReporter

    directory, overrides = _split_dir(directory, overrides)
    _refuse_force_after_until(until, force)
    project, spec, statuses = plan_project(directory, list(overrides), until, list(force), RichReporter(),
                                           import_plugins=not no_plugins)
    running = project.run_in_progress()  # (plan_project marked the stage that run computes)
    if fmt == "json":
        _echo_json([s.to_dict() for s in statuses])
        return
    console = _console()
    title = f"plan for {escape(str(project.root))}"
    console.print(_status_lines(statuses, title) if console.width < NARROW_PLAN else _status_table(statuses, title))
    if running:
        console.print(f"[yellow]A `subsetctl run` (PID {running}{escape(project.running_whose())}) is working on "
                      "this project now: these statuses "
                      "change as its stages finish.[/yellow]")
        edits = next((s.spec_edited_since_run for s in statuses if s.spec_edited_since_run is not None), None)
        if edits is None:  # between two of its stages (or in its report step): no stage's row holds them
            edits = spec_edits_since_run_started(project, spec, None)
        if edits:
            console.print(f"[yellow]That run goes on with the spec as it read it when it started, not the one "
                          f"planned here: they differ in {escape(listed_briefly(edits))} (edited since, or other "
                          "overrides), which only the `run` after it uses. The statuses above are the spec's "
                          "now.[/yellow]")
    _print_code_the_spec_runs(console, code_the_spec_runs(spec, not no_plugins))
    unknown = [s.name for s in statuses if s.state == "not checked"]
    if no_plugins and spec.plugins:
        which = (f"what `run` would do with {escape(', '.join(unknown))} is not known (they use what the plugins "
                 "provide, or come after a stage that does)" if unknown else "no stage uses a name only they provide")
        console.print(f"[yellow]plugins not imported (--no-plugins): their code did not run, and {which}. A plain "
                      "`subsetctl plan` imports them, which runs their code.[/yellow]")
    todo = [s.name for s in statuses if s.will_run and not s.conditional]
    maybe = [s.name for s in statuses if s.will_run and s.conditional]
    put_back = [s.name for s in statuses if s.put_back and not s.will_run]
    back = (f"`run` puts back the kept results of {', '.join(put_back)} (nothing recomputed)" if put_back else "")
    beyond = [s.name for s in statuses if s.left_stale_by_until]
    if todo or maybe:
        console.print(f"run would execute: {', '.join(todo) or 'nothing for certain'}"
                      + (f"; then, only if what the stages before them produce changes: {', '.join(maybe)}"
                         if maybe else "") + (f"; {back}" if back else ""))
        for s in statuses:  # the cost of the run, before it starts
            last = (f"its last run took {_seconds_text(s.last_seconds)}"
                    + (f", for {s.last_work}" if s.last_work else "") if s.last_seconds is not None else
                    f"about {_seconds_text(s.rough_seconds)}, {s.rough}" if s.rough_seconds is not None else None)
            line = "; ".join(part for part in (s.work, last, s.memory) if part)
            if s.will_run and line:
                console.print(f"[dim]  {s.name}: {escape(line)}[/dim]")
        unestimated = next((s.memory_note for s in statuses if s.will_run and s.memory_note), None)
        if unestimated:  # (the same for each model stage: said once)
            console.print(f"[dim]  {escape(unestimated)}[/dim]")
    else:  # with --until: the stages it plans, not the whole pipeline (later ones may never have run)
        upto, command = (f" up to {until}", f"`run --until {until}`") if _stops_early(until) else ("", "`run`")
        names = [s.name for s in statuses]
        unknown_here = set(unknown) & set(names[: names.index(until) + 1] if until else names)  # (plan --no-plugins)
        upto += " but what is not checked" if unknown_here else ""
        console.print(f"Everything{upto} is up to date once {back}." if put_back else
                      f"Everything{upto} is up to date; {command} would do nothing"
                      f"{' else for certain' if unknown_here else ''}.")
    if beyond:
        console.print(f"Not up to date after --until {until}, and left so: {', '.join(beyond)}; `run` without "
                      "--until brings them up to date.")
    kept = _kept_line(project, spec.project.sets_to_keep)
    if kept:
        console.print(f"[dim]{kept}[/dim]")


def _seconds_text(seconds: float) -> str:
    """A stage's duration as plan prints it: "0.6 s", "43 s", "3 min 24 s", "2 h 05 min"."""
    if round(seconds, 1) < 10:  # (9.96 s is "10 s", as 10.2 s is)
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole // 60 % 60:02d} min"


def _kept_line(project: Any, keep_previous: int = 3) -> str | None:  # (true: DEFAULT_PREVIOUS_SETS)
    """What the project keeps on disk besides its current results, when it is 1 MB or more:
    the previous results (put back when the spec returns to them), results set aside, and
    the caches; with what frees each (``keep_previous``: the earlier result sets a stage
    keeps by the spec, :attr:`~subsetctl.spec.models.ProjectSpec.sets_to_keep`; 0 when the
    next `run` frees the previous results already)."""
    from subsetctl.project import size_text

    sizes = project.kept_bytes()
    parts = []
    if sizes["previous"] >= 1e6:
        frees = ("the next `run` deletes it (`project.keep_previous` is false or 0)" if not keep_previous
                 else f"up to {keep_previous} set{'s' if keep_previous != 1 else ''} a stage; "
                 "`project.keep_previous: false` frees it, a lower number or `project.keep_previous_gb` some of it")
        parts.append(f"{size_text(sizes['previous'])} of previous results in .subsetctl/.previous (to go back without "
                     f"recomputing; {frees})")
    if sizes["set_aside"] >= 1e6:
        parts.append(f"{size_text(sizes['set_aside'])} set aside by a run that did not finish")
    if sizes["cache"] >= 1e6:
        parts.append(f"{size_text(sizes['cache'])} of cached fine-tunes and estimates in .subsetctl/cache (safe to delete; "
                     "`project.cache_limit_gb` caps it)")
    return ("Kept on disk: " + "; ".join(parts) + ".") if parts else None


#: how a key=value override starts (`gradients.d=`, `sources[0].max_examples =`, ` gradients.d=`
#: pasted with a space before it, which the key's parsing strips), a malformed key's too
#: (`sources[x].name=`, `meta init.steps=`: the override's parsing names what is wrong with it; they
#: were taken for a folder "that does not exist", and the error advised `subsetctl init` of it): a
#: path holding "=" after a "/" (`/data/run=1`, `./a=b`) does not, and is taken for what it names; a
#: quoted part of the key may hold both (`sources[0].label_map."a/b"=x`: it was taken for a path)
_OVERRIDE_KEY = re.compile(r"""^\s*(?:"[^"]+"|'[^']+'|[^\s/=])(?:\.(?:"[^"]+"|'[^']+')|[^/=])*=""")


def _exists(path: Path, *, folder: bool = False) -> bool:
    """Whether ``path`` (a command-line argument) is on disk (a folder: ``folder``). A name
    the system refuses is not: an override longer than 255 bytes (a long list or name)
    failed `validate`, and `plan`/`run` given no folder, with "File name too long"."""
    try:
        return path.is_dir() if folder else path.exists()
    except OSError:
        return False


def _joined_overrides(items: tuple[str, ...], paths: frozenset[str] = frozenset()) -> str:
    """Command-line arguments with overrides split by spaces joined back, for the fix a
    usage error suggests: "gradients.d = 32" and "gradients.d: 32" -> "gradients.d=32".
    An argument in ``paths`` (a spec file or project folder) is never joined to its
    neighbours: `validate m1 =3` suggested `validate m1=3`, the folder glued to the value."""
    runs: list[list[str]] = [[]]
    for item in items:
        if item in paths:
            runs += [[item], []]
        else:
            runs[-1].append(item)
    return " ".join(part for run in runs if run for part in [_joined_run(run)] if part)


def _joined_run(items: list[str]) -> str:
    """Arguments that are no paths, joined back as `_joined_overrides` says."""
    joined = re.sub(r"\s*=\s*", "=", " ".join(items))
    return re.sub(r"^([\w.\[\]]+):\s+|(?<=\s)([\w.\[\]]+):\s+", lambda m: f"{m.group(1) or m.group(2)}=", joined)


def _refuse_a_kind_for_a_folder(directory: Path) -> None:
    """`subsetctl ls loaders` (or `ls strategy`), a kind where `ls` takes a folder, was looked
    for as a folder and told to `subsetctl init loaders`: a usage error saying that `ls` lists
    every kind at once, and where the one named is in its text and JSON. Nothing for any other
    name (a mistyped project folder keeps its error)."""
    from subsetctl.registry import ALL_REGISTRIES, registry_named

    kind = registry_named(str(directory))
    if kind is None:
        return
    command = click.get_current_context().command_path
    raise click.UsageError(
        f"{str(directory)!r} is no folder, and `{command}` takes a folder, not a kind: it lists every kind at once "
        f"({', '.join(ALL_REGISTRIES)}). `{command}` shows the {kind} table among them, and `{command} --format "
        f"json` gives them under the key {kind!r}."
    )


def _folder_not_override(directory: Path | None) -> Path | None:
    """The folder argument of a command that takes no overrides (`ls`, `doctor`); a
    key=value there, or after it, is a usage error saying so and which commands take them
    (it was looked for as a folder, and the error offered `subsetctl init finetune.seeds=2`;
    after the folder, click's bare "Got unexpected extra argument"). Such a command is declared
    with ``allow_extra_args``, so that what follows the folder reaches here; any other extra
    argument is click's usage error still."""
    ctx = click.get_current_context()
    given = ([] if directory is None else [str(directory)]) + [str(arg) for arg in ctx.args]
    overrides = [arg for arg in given if _OVERRIDE_KEY.match(arg) and not _exists(expand_home(arg))]
    if overrides:
        folder = [arg for arg in given if arg not in overrides][:1]
        shown = " ".join(shell_arg(arg) for arg in [*folder, *overrides])
        program = ctx.find_root().info_name
        raise click.UsageError(
            f"{overrides[0]!r} looks like a key=value override, but `{ctx.command_path}` takes none: it reads the "
            f"project as it is. `{program} validate`, `plan`, `run` and `report` take overrides (`{program} "
            f"validate {shown}` checks the spec with them). Give the project folder alone"
            f"{f' (`{ctx.command_path} {shell_arg(folder[0])}`)' if folder else ''}, or nothing for the current one."
        )
    if ctx.args:  # (as click says it of a command without allow_extra_args)
        ctx.fail(f"Got unexpected extra argument{'s' if len(ctx.args) > 1 else ''} ({' '.join(ctx.args)})")
    return directory


def _given_options(leave_out: tuple[str, ...] = ()) -> str:
    """The options given on the command line to the current command, written back as
    arguments (" --until search --force data"; "" for none), but those named in ``leave_out``
    (parameter names: "force"), for a suggested command: the fix of a split override (`run P
    --until search gradients.d = 8`) suggested the command without `--until search`, which then
    ran every stage; the command resuming a stopped `run --format json` left out `--format json`."""
    ctx = click.get_current_context()
    words: list[str] = []
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name is None or param.name in leave_out \
                or ctx.get_parameter_source(param.name) is not click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params.get(param.name)
        if param.is_flag and not isinstance(param.flag_value, str):
            opts = param.opts if value else param.secondary_opts
            words += opts[:1]
            continue
        for one in value if param.multiple else (value,):
            words += [param.opts[0], shell_arg(one)]
    return "".join(f" {word}" for word in words)


def _shard_problem(shard: str) -> str:
    """What is wrong with a ``--shard`` value that is no shard: not two whole numbers ``i/N``
    (``x``, ``1``, ``1.5/4``), no shards at all (``0/0``), or a shard past the last (``3/2``: the
    shards of 2 are 0/2 and 1/2, counted from 0). The error said "expected i/N with 0 <= i < N"
    alone, naming neither the value given nor which part of it was wrong."""
    found = re.fullmatch(r"\s*(-?\d+)\s*/\s*(-?\d+)\s*", shard)
    if found is None:
        return f"{shard!r} is not i/N, two whole numbers: the shard's index and how many shards, e.g. 0/4"
    index, count = int(found.group(1)), int(found.group(2))
    if count < 1:
        return f"{shard!r} has no shards: N must be 1 or more, e.g. 0/4 (the first of 4)"
    shards = {1: "0/1", 2: "0/2 and 1/2"}.get(count, f"0/{count} to {count - 1}/{count}")
    return (f"{shard!r} is no shard of {count}: i counts from 0, so the shards of {count} are {shards}, "
            f"e.g. --shard {min(max(index, 0), count - 1)}/{count}")


def _split_dir(directory: Path | None, overrides: tuple[str, ...]) -> tuple[Path | None, tuple[str, ...]]:
    """`subsetctl run a=b` (no directory): the first argument is an override. A project
    folder after the overrides (`subsetctl plan gradients.d=32 proj`) is a usage error
    that says so; it used to be taken for an override, and the error named the current
    folder as the project."""
    split = bool(overrides) and (overrides[0].startswith("=") or str(directory).endswith(":"))  # `key = 1`, `key: 1`
    if directory is not None and (_OVERRIDE_KEY.match(str(directory)) or split) and not _exists(Path(directory)):
        directory, overrides = None, (str(directory), *overrides)  # (a path such as /data/x=1 stays a path)
    stray = [item for item in overrides if "=" not in item or item.startswith("=")]
    if stray:
        from subsetctl.spec.overrides import override_without_value_note  # (here: read on this error only)

        command = click.get_current_context().command_path
        if directory is not None or not Path(stray[0]).is_dir():  # not a folder put last: a split override
            joined = _joined_overrides(overrides)
            folder = project_arg(directory)
            if joined == " ".join(overrides) and override_without_value_note(stray[0]):  # `run P modle.lora.r`
                raise click.UsageError(f"{stray[0]!r} is not a key=value override{override_without_value_note(stray[0])}.")
            if joined == " ".join(overrides):  # nothing to join: a stray word, not a split override
                raise click.UsageError(
                    f"{stray[0]!r} is not a key=value override (write key=value, e.g. gradients.d=32), and only "
                    f"one project folder is taken{' (' + folder.strip() + ')' if folder else ''}, before the "
                    "overrides. Leave it out, or quote it if it is part of a value."
                )
            raise click.UsageError(
                f"{stray[0]!r} is not a key=value override. Write each override as one argument, key=value "
                f"without spaces around '=' (quote a value that has spaces): "
                f"`{command}{_given_options()}{folder} {joined}`."
            )
        raise click.UsageError(
            f"{stray[0]!r} is not a key=value override. Give the project folder first, then the overrides: "
            f"`{command} {stray[0]} {' '.join(o for o in overrides if o != stray[0])}`."
        )
    return directory, tuple(item.lstrip() for item in overrides)  # ` gradients.d=8`, pasted with a space


@main.command(short_help="Run every stale stage; resume where the last run stopped.",
              epilog=_examples("subsetctl run myproject", "subsetctl run myproject --until gradients gradients.d=64",
                               "subsetctl run myproject --force finetune -q",
                               "subsetctl run myproject sources.wiki.max_examples=50 --format json > wiki50.json"))
@click.argument("directory", required=False, type=_PathGiven())
@click.argument("overrides", nargs=-1)
@click.option("--until", cls=_StageOption, help="Stop after this stage (default: go on to the last).")
@click.option("--force", cls=_StageOption, multiple=True, help="Re-run this stage even if up to date (repeatable; default: none).")
@click.option("--shard", metavar="i/N", help="gradients stage: compute only shard i/N of the rows (e.g. 0/4); shards of one "
              "project may run at the same time, on several GPUs or machines sharing the directory (default: "
              "every row, in this process).")
@click.option("--quiet", "-q", is_flag=True,
              help="No progress and no notices; warnings, errors, the summary and the report still print.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: at the end, print on stdout what `report --format json` with these overrides prints (the "
                   "report instead of its text; the summary, progress and warnings go to stderr), for scripts; "
                   "on an error {json_format, \"error\": {kind, message, exit_code}} instead (kind \"interrupted\" for a run "
                   "stopped by Ctrl-C or a signal, which the same command resumes).")
@_json_alone_on_stdout
def run(
    directory: Path | None, overrides: tuple[str, ...], until: str | None, force: tuple[str, ...],
    shard: str | None, quiet: bool, fmt: str,
) -> None:
    """Run every stale stage in order; resume where the last run stopped.

    DIRECTORY is the project (default: the current directory). Extra arguments are `key=value` overrides of the spec, e.g. gradients.d=256 or
    sources[0].max_examples=50 (a source by its name: sources.wiki.max_examples=50; a search
    strategy by its label or name: search.strategies.forward.params.max_steps=3); they are
    type-checked and saved with the run.
    """
    from subsetctl.api import spec_validated_once
    from subsetctl.pipeline import run_checks_reused
    from subsetctl.project import manifests_read_once
    from subsetctl.reporter import RichReporter
    from subsetctl.spec.dumps import dumps_once

    directory, overrides = _split_dir(directory, overrides)
    options: dict[str, Any] = {}
    if shard is not None:  # (an empty --shard is refused, not taken for no --shard)
        try:
            index, count = (int(x) for x in shard.split("/"))
        except ValueError:
            index, count = -1, 0
        if not 0 <= index < count:  # not an assert: `python -O` would let 3/2 through
            raise click.BadParameter(_shard_problem(shard), param_hint="--shard")
        options["shard"] = (index, count)
    _refuse_force_after_until(until, force)
    reporter = RichReporter(quiet=quiet)
    if _no_plugins_asked():  # exported for safety: `run` cannot honour it, and must not look as if it did
        reporter.warn(_plugins_imported_all_the_same("run"))
    # the run and its report read each manifest once and dump each source once, and its report checks
    # the results against the spec the run validated, with the inputs and checksums the run worked out
    # (unless stages ran since; a shard run plans between its stages: nothing reused)
    with manifests_read_once(), dumps_once(), spec_validated_once() as validated, \
            (run_checks_reused() if shard is None else contextlib.nullcontext({})) as checked:
        _run_and_report(directory, overrides, until, force, shard, reporter, options, [validated, checked], fmt)


def _run_and_report(
    directory: Path | None, overrides: tuple[str, ...], until: str | None, force: tuple[str, ...],
    shard: str | None, reporter: Any, options: dict[str, Any], held: list[dict[Any, Any]], fmt: str,
) -> None:
    """`run`'s work once its arguments are checked: the stages, then what it says and the
    report (as JSON on stdout for ``fmt`` "json"). ``held``: what the command keeps for its
    report (:func:`~subsetctl.api.spec_validated_once`'s validations, and
    :func:`~subsetctl.pipeline.run_checks_reused`'s inputs and checksums), emptied when stages ran."""
    from subsetctl.api import run_project

    try:
        results = run_project(directory, list(overrides), until, list(force), reporter, options)
    except KeyboardInterrupt as exc:  # the command that resumes it: this project, its overrides and options
        # (not --force: the stopped stage is unfinished and resumes; forced again, it would start over)
        again = _run_command(directory, overrides, leave_out=("force",))
        if shard is not None and _shard_finished(directory, options["shard"]):  # nothing of it left to resume
            plain = _run_command(directory, overrides, leave_out=("shard", "force"))
            exc.resumes = (f"and shard {shard} was finished already: nothing of it is left to compute. When every "
                           f"shard is, `{plain}` (without --shard) merges them and goes on")
        elif shard is not None:  # a shard's own run (a plain one would not wait for the rest)
            exc.resumes = (f"`{again}` resumes this shard (or, once the other shards are done, a plain `subsetctl "
                           "run` computes its missing rows itself)")
        else:
            exc.resumes = f"`{again}` resumes"
        raise
    ran = [r for r in results if r["action"] == "ran"]
    put_back = [r["stage"] for r in results if r.get("put_back")]
    if ran or put_back or any(r["action"] == "partial" for r in results):  # a while since the spec was checked
        for kept in held:  # the report validates it again, and plans afresh
            kept.clear()
    console = _console()
    back = f"put back {', '.join(put_back)} (results kept from an earlier run with these inputs)" if put_back else ""
    if shard is not None:  # a shard run stops at the gradients stage: nothing to report yet
        done = f"Ran {', '.join(r['stage'] for r in ran)}; " if ran else ""
        done += f"{back}; " if back else ""
        # the run after the shards, with their overrides (without them, another variant: refused where they
        # set the gradients' settings, not those the shards were computed with) and this run's other options
        plain = _run_command(directory, overrides, leave_out=("shard", "force"))
        if any(r["action"] == "partial" for r in results):
            console.print(f"{done}gradients shard {shard} is done. When every shard is, `{plain}` (without "
                          "--shard) merges them and goes on.", markup=False)
        else:  # the gradients stage is complete already (or was put back): no shard of it left to compute
            console.print(f"{done}the gradients stage is complete: shard {shard} has nothing to compute. "
                          f"`{plain}` (without --shard) goes on with the stages after it.", markup=False)
        if fmt == "json":
            _echo_report_json(directory, overrides)
        return
    stopped_early = _stops_early(until)
    if not ran:
        upto = f" up to {until}" if stopped_early else ""
        console.print(f"Everything{upto} is up to date; {back or 'nothing to do'}.")
    else:
        total = sum(r["seconds"] for r in ran)
        console.print(f"Ran {', '.join(r['stage'] for r in ran)} in {total:.1f} s" + (f"; {back}." if back else "."))
    if stopped_early:  # "Everything is up to date" alone read as if the whole pipeline were
        goes_on = _run_command(directory, overrides, leave_out=("until", "force"))
        console.print(f"Stopped after {until} (--until {until}): `{goes_on}` runs the stages after it that are not "
                      "up to date and shows the report.", markup=False)
    else:
        from subsetctl.project import Project

        root = Project.find(directory).root
        if fmt != "json":  # (json: the report is printed below, as JSON, on stdout)
            _print_report(root, console, list(overrides))
        written = _report_files(root)
        if written:  # where the report went: the terminal showed it, but not that it is also on disk
            shown = Path(directory) if directory is not None else Path(".")
            shown = shown.parent if shown.is_file() else shown  # (`run proj/subsetctl.yaml`: the spec file named)
            where = project_arg(directory) + "".join(f" {shell_arg(o)}" for o in overrides)  # as it judges them
            # each as one shell word, as the commands: `my proj/report.md, ...` read as two paths and more
            console.print(f"Report files: {', '.join(shell_arg(shown / name) for name in written)} (`subsetctl "
                          f"report{where}` shows it again).", markup=False)
    if fmt == "json":
        _echo_report_json(directory, overrides)


def _echo_report_json(directory: Path | None, overrides: tuple[str, ...]) -> None:
    """`run --format json`'s output once the run is over: what `report --format json` with the
    run's overrides prints, so that a script driving variants reads each one's results, judged
    against the spec with its overrides, without a second command (also after `--until` or
    `--shard`: its stages and `not_run`)."""
    from subsetctl.report.terminal import load_report_data

    _echo_json(load_report_data(directory if directory is not None else Path("."), list(overrides), nothing_run_ok=True))


def _stops_early(until: str | None) -> bool:
    """Whether ``--until`` leaves stages out (any stage but the last): what is up to date is
    then only the stages up to it, and the report is not the run's to show."""
    from subsetctl.stages import stage_names

    return until is not None and until != stage_names()[-1]


def _shard_finished(directory: Path | None, shard: tuple[int, int]) -> bool:
    """Whether the project's gradient shard ``shard`` (index, count) has every row: a stopped
    `run --shard` of it had nothing left to resume (:func:`~subsetctl.stages.gradients.shard_finished`);
    False where the project cannot be found."""
    from subsetctl.project import Project
    from subsetctl.stages.gradients import shard_finished

    try:
        return shard_finished(Project.find(directory), *shard)
    except (UserError, OSError):
        return False


def _run_command(directory: Path | None, overrides: tuple[str, ...], leave_out: tuple[str, ...]) -> str:
    """The `subsetctl run` command line for this project, its overrides and the options given
    but those in ``leave_out`` (:func:`_given_options`), copy-pasteable: what to type to
    resume or go on."""
    return run_command(directory, _given_options(leave_out=leave_out).strip(), overrides)


def _report_files(root: Path) -> list[str]:
    """The report files in the project folder, relative to it: report.md, report.json, the
    files the report stage wrote beside them (report_sources.csv) and the plots (those
    there now: none while the report stage has not run)."""
    from subsetctl.project import Project

    names = [name for name in ("report.md", "report.json") if (root / name).is_file()]
    summary = (Project(root).read_manifest("report") or {}).get("summary")
    files = summary.get("files") if isinstance(summary, dict) and isinstance(summary.get("files"), list) else []
    names += [str(name) for name in files if names and (root / str(name)).is_file()]
    return names + sorted(f"plots/{p.name}" for p in (root / "plots").glob("*.png")) if names else []


def _enclosing_plugins_project(folder: Path = Path(".")) -> Path | None:
    """The project around ``folder`` (a project's data folder, with no spec of its own) when
    its spec names `plugins:`, which `ls` there does not list; None otherwise, also for a spec
    that cannot be read (`ls` in the project says why)."""
    from subsetctl.project import enclosing_project
    from subsetctl.spec import SPEC_FILENAME
    from subsetctl.spec.reading import read_yaml

    if (folder / SPEC_FILENAME).is_file():
        return None
    project = enclosing_project(folder)
    if project is None:
        return None
    try:
        data, _ = read_yaml(project / SPEC_FILENAME)
    except UserError:
        return None
    return project if data.get("plugins") else None


def _print_report(root: Path, console: Any, overrides: list[str] | None = None) -> None:
    from subsetctl.report.terminal import render_report

    render_report(root, console, overrides=overrides)


@main.command(short_help="Show the results of the last run.",
              epilog=_examples("subsetctl report myproject", "subsetctl report myproject --format markdown > report.md",
                               "subsetctl report myproject --compare otherproject"))
@click.argument("directory", required=False, type=_PathGiven())
@click.argument("overrides", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True,
              help="json: {json_format (the version of its keys), project (its folder), stages, outdated, stale, stale_reasons, previous, missing_outputs, "
                   "damaged, not_run, unfinished, switched_off, switched_off_moved_past, report_by_earlier_subsetctl, "
                   "report_names_overrides_since_held, stale_by_earlier_subsetctl, spec_problem, "
                   "report (report.json's content, "
                   "or the same from the stages' results when it is not current); running while a run is in "
                   "progress, shards_running while --shard runs compute gradients; before any stage has finished, "
                   "stages {} and report null, with exit 1}; on another error (a user or usage error, Ctrl-C, a bug) {json_format, \"error\": {kind, "
                   "message, exit_code}} instead; markdown: report.md.")
@click.option("--all-sources", is_flag=True,
              help="List every source in the text report (with more than 30, highest score first; by "
                   "default the per-source table then shows the 20 highest and 10 lowest scoring and long "
                   "selections are summarized). json always lists every source; markdown is report.md, which "
                   "of more than 200 shows the 20 highest and 10 lowest, report_sources.csv beside it listing all.")
@click.option("--compare", "other", type=_PathGiven(), default=None, metavar="OTHER",
              help="Another variant to set beside this one: a project folder, or a report.json kept from an "
                   "earlier run. Shows the settings that differ (and each side's command-line overrides, and a "
                   "folder whose spec moved past its results), the lambda, each selection's sources and "
                   "estimated loss (each side's headed cal., raw or real), and the test metrics (text or json; "
                   "default: no comparison).")
@_json_alone_on_stdout
def report(directory: Path | None, overrides: tuple[str, ...], fmt: str, all_sources: bool,
           other: Path | None) -> None:
    """Show the results of the last run (works during a run; changes nothing but the cache of file
    hashes, and the file stamps recorded for a copied project's results).

    DIRECTORY is the project (default: the current directory); extra `key=value` arguments
    are the overrides a `run` was given: what is stale is then judged against the spec with
    them, as `plan` with them judges it (without them, a variant's results read as stale)."""
    from subsetctl.api import spec_validated_once

    with spec_validated_once():  # the overrides' check below and the report's validate the spec once
        _report(directory, overrides, fmt, all_sources, other)


def _compare(first: Path, other: Path, fmt: str) -> None:
    """`report FIRST --compare OTHER`: the two sides (a project folder, or a kept report.json,
    each) set side by side, as text or JSON."""
    from subsetctl.report.compare import compare_reports, load_side, render_comparison

    if fmt == "markdown":
        raise click.UsageError("--compare prints text or json (--format json), not markdown.")
    comparison = compare_reports(load_side(first, "report"), load_side(other))
    if fmt == "json":
        _echo_json(comparison)
    else:
        render_comparison(comparison, _console())


def _report(directory: Path | None, overrides: tuple[str, ...], fmt: str, all_sources: bool,
            other: Path | None) -> None:
    """`report`'s work (:func:`report`)."""
    from subsetctl.project import Project, named_as_json
    from subsetctl.report.terminal import load_report_data, nothing_to_report, render_report
    from subsetctl.spec import SPEC_FILENAME

    directory, overrides = _split_dir(directory, overrides)
    if other is not None and overrides:
        raise click.UsageError("--compare sets two variants' results side by side as they are: it takes no "
                               "key=value overrides. Leave them out.")
    if other is not None and all_sources:  # (it was silently ignored: the same text with or without it)
        raise click.UsageError("--all-sources lists every source in one report's per-source table, which --compare "
                               "does not show; of long selections it shows the sources only one side picked, and "
                               "`--compare OTHER --format json` lists both picks in full. Leave out --all-sources.")
    if other is not None and directory is not None and named_as_json(directory) \
            and (directory.is_file() or not _exists(expand_home(directory))):  # (missing: said as no report.json)
        _compare(directory, other, fmt)  # two report.json copies kept from a sweep's variants: no project
        return
    first = Path(".") if directory is None else directory
    if other is not None and _exists(expand_home(first), folder=True) \
            and not (expand_home(first) / SPEC_FILENAME).is_file():  # (Project.find advised `init` of it)
        _compare(first, other, fmt)  # a folder with no spec: load_side names its report.json or its project
        return
    project = Project.find(directory)
    if _no_plugins_asked():  # (the report checks its results against the spec, whose plugins it imports)
        _console(stderr=True).print(f"warning: {_plugins_imported_all_the_same('report')}", markup=False)
    if overrides:  # a mistyped override is an error, as plan's, not results "not checked against the spec"
        from subsetctl.api import load_project

        load_project(project.root, list(overrides))
    if other is not None:
        _compare(project.root, other, fmt)
        return
    if fmt == "json":  # nothing run yet: still JSON for a script (report null), then the error, exit 1
        data = load_report_data(project.root, list(overrides), nothing_run_ok=True)
        _echo_json(data)
        if not data["stages"]:
            raise UserError(nothing_to_report(project.root))
    elif fmt == "markdown":
        from subsetctl.report.markdown import md_heading, render_markdown
        from subsetctl.report.terminal import outdated_note
        from subsetctl.reporter import visible

        data = load_report_data(project.root, list(overrides))
        path = project.root / "report.md"
        current = ("report" in data["stages"] and "report" not in data["outdated"] and not data["damaged"]
                   and path.is_file() and not data.get("report_by_earlier_subsetctl")
                   and not data.get("report_names_overrides_since_held"))
        # report.md as written (with its plots) when current; else, or when an edit left it no
        # UTF-8 text (it is the user's file), the same content from the stages (so too when an
        # earlier subsetctl wrote it, or it names overrides the spec holds now: the note below
        # says it is shown as this one writes it)
        text = None
        if current:
            with contextlib.suppress(UnicodeDecodeError):
                text = path.read_text(encoding="utf-8")
            heading = md_heading(data["report"]["project"], project.root.name)
            if text is not None and text.startswith("# subsetctl report: ") and not text.startswith(heading + "\n"):
                text = heading + "".join(text.partition("\n")[1:])  # a copy's report.md names the folder it ran in
        if text is None:
            text = render_markdown(data["report"], {}, project.root.name)
        note = outdated_note(data, list(overrides))
        quoted = "\n".join(f"> {line}" for line in note.splitlines()) if note else ""
        click.echo(visible(text + (f"\n{quoted}\n" if note else "")))  # (a copied project's report.md: control characters shown)
    else:
        render_report(project.root, _console(), all_sources=all_sources, overrides=list(overrides))


@main.command(name="ls", short_help="List loaders, strategies, models; a folder's projects.",
              context_settings={"allow_extra_args": True},  # (an override after the folder: _folder_not_override)
              epilog=_examples("subsetctl ls", "subsetctl ls myproject --format json", "subsetctl ls sweep",
                               "subsetctl ls --registries"))
@click.argument("directory", required=False, type=_PathGiven())
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: every kind's entries with description, parameters and origin (of a folder of projects, "
                   "a list of one object a project, each with json_format), for scripts; on an error "
                   "(a user or usage error, Ctrl-C, a bug) {json_format, \"error\": {kind, message, exit_code}} instead.")
@_no_plugins_option("list them, with their files, as \"not imported\" instead of what they register")
@click.option("--registries", is_flag=True,
              help="In (or of) a folder of projects: list the loaders, strategies, ... as elsewhere, not the projects.")
@_json_alone_on_stdout
def ls_command(directory: Path | None, fmt: str, no_plugins: bool, registries: bool) -> None:
    """List registered loaders, strategies, estimators, projectors and packaged models.

    Also the plugins the `plugins:` list of a project's spec registers: DIRECTORY's (a
    project or its spec file), else the current directory's subsetctl.yaml when there is
    one (in a project's subfolder, it names the project when its spec has plugins). Installed
    plugins that fail to import are listed with the reason. With --no-plugins the spec's
    plugins are listed as "not imported", with their files, not what they register.

    DIRECTORY a folder of projects (no project itself, with projects right inside it or one
    level deeper, sweep/lam0.1/seed0: a sweep's variants), or the current directory with
    projects right inside it (--registries lists the registries instead): one row per project,
    read-only (nothing is loaded or run), named by its path in the folder:
    its state (up to date; stale, with the stages `run` would redo; partial, after `run
    --until`; not run; running now; error, with the reason), final pick and its number of
    sources, test loss and score, the command-line overrides its results were made with,
    and when it last ran. Exit status 1 when a row is an error (all rows still listed)."""
    from rich.markup import escape
    from rich.table import Table

    from subsetctl.api import list_plugins
    from subsetctl.overview import LOOKED_AT, holds_projects, overview_rows, print_overview

    directory = _folder_not_override(directory)
    if directory is not None and not _exists(directory):
        _refuse_a_kind_for_a_folder(directory)
    folder = Path(".") if directory is None else directory
    if not registries and holds_projects(folder, nested=directory is not None):  # a folder of projects (a sweep's variants): one row each instead
        rows, skipped = overview_rows(folder, import_plugins=not no_plugins)
        if fmt == "json":
            _echo_json(rows)
            if skipped:  # (stdout is the list alone)
                _console(stderr=True).print(f"warning: {skipped} more entries of {folder} (or of its subfolders) "
                                            f"not looked at: only the first {LOOKED_AT} of each folder are.",
                                            markup=False)
        else:
            print_overview(rows, folder, _console(), skipped)
            if directory is None:  # (the registries were what `ls` alone listed)
                _console().print("(`subsetctl ls --registries` lists the loaders, strategies, estimators, projectors "
                                 "and models instead.)", markup=False, highlight=False)
        if errors := [row["project"] for row in rows if row["state"] == "error"]:  # (a sweep's script checks the status)
            _console(stderr=True).print(f"error: {len(errors)} of {len(rows)} projects in {folder} could not be read "
                                        f"({', '.join(errors[:3])}{' ...' if len(errors) > 3 else ''}): each row in "
                                        f"error says why; fix or move them and list the folder again.", markup=False)
            sys.exit(1)
        return
    if directory is None and Path("subsetctl.yaml").is_file():  # the current directory is a project
        try:
            plugins = list_plugins(Path.cwd(), import_plugins=not no_plugins)
        except UserError as exc:  # still list what is built in: that needs no spec
            _console(stderr=True).print(f"warning: the spec in this folder was not read, so its plugins are not "
                                        f"listed: {exc}", markup=False)
            plugins = list_plugins(None)
    else:
        plugins = list_plugins(directory, import_plugins=not no_plugins)
    if fmt == "json":  # (each key a kind, a list of entries: no version key among them, which broke loops over them)
        _echo_json(plugins)
        return
    console = _console()
    unlisted = _enclosing_plugins_project() if directory is None else None
    if unlisted is not None:  # said first: the tables below lack them
        console.print(f"This folder has no subsetctl.yaml, but it is inside the project {unlisted}, whose spec "
                      f"names plugins: `subsetctl ls {shell_arg(unlisted)}` lists them too.", markup=False)
    for kind, rows in plugins.items():
        table = Table(title=kind, title_justify="left")
        table.add_column("name", style="bold", overflow="fold")
        table.add_column("description", overflow="fold")  # a narrow terminal folds `datasets.load_from_disk`, never cuts it
        for row in rows:
            if row.get("error"):
                table.add_row(f"[red]{escape(row['name'])}[/red]", f"[red]{escape(row['error'])}[/red]")
                continue
            desc = escape(row["description"])
            if row["origin"] != "built-in":  # (a plugin without a docstring: its origin alone)
                desc += f"{' ' if desc else ''}[dim]({escape(row['origin'])})[/dim]"
            if row.get("params"):
                desc += "\n[dim]" + escape(", ".join(
                    f"{p['name']} (required)" if p.get("required") else f"{p['name']}={p['default']!r}"
                    for p in row["params"])) + "[/dim]"
            table.add_row(escape(row["name"]), desc)
        console.print(table)


def _print_hanging(console: Any, lead: str, text: str) -> None:
    """``lead`` (markup: doctor's ✓ or ✗, an advice's arrow), a space and ``text`` (markup);
    on a terminal wrapped at its width between words, the lines after the first indented under
    the text's start, as a list item's: an 80-column terminal broke doctor's 130-character
    lines mid-word at its edge, their continuations under the marks. Elsewhere (a log, a pipe)
    one line, as the other commands print, for grep."""
    if not console.is_terminal:
        console.print(f"{lead} {text}")
        return
    from rich.text import Text

    first = console.render_str(lead)  # (as Text.from_markup, its text shown as new_console shows it)
    indent = first.cell_len + 1
    # (a path longer than the line is folded, not cut; no trailing spaces, as a table's cells had)
    for i, line in enumerate(console.render_str(text).wrap(console, max(console.width - indent, 20), overflow="fold")):
        line.rstrip()
        console.print(Text.assemble(first if i == 0 else " " * (indent - 1), " ", line), soft_wrap=True)


@main.command(epilog=_examples("subsetctl doctor", "subsetctl doctor myproject"),
              context_settings={"allow_extra_args": True})  # (an override after the folder: _folder_not_override)
@click.argument("directory", required=False, type=_PathGiven())
@_no_plugins_option("count what they would register as not checked (`validate --no-plugins` lists them)")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: {checks: [{name, ok, detail, advice}], ok, enclosing_project, doctor_format}, for scripts "
                   "(exit 1 when a check fails, as in text); on a usage error, Ctrl-C or a bug "
                   "{json_format, \"error\": {kind, message, exit_code}} instead.")
@_json_alone_on_stdout
def doctor(directory: Path | None, no_plugins: bool, fmt: str) -> None:
    """Check the environment and say what to do about each problem.

    With DIRECTORY (a project or its spec file; default: the current directory when it
    holds a subsetctl.yaml), also that its spec validates, its hub ids load, the hub
    and datasets caches can take what run writes there, its model.device is there,
    the Dask scheduler its executor.address names answers (and with how many workers), its folder is
    writable and its disk has room; a packaged model it does not use is
    then no problem. In a project's subfolder it names the project it did not check."""
    from rich.markup import escape

    from subsetctl.doctor import DOCTOR_FORMAT, run_checks
    from subsetctl.project import enclosing_project
    from subsetctl.spec import SPEC_FILENAME

    directory = _folder_not_override(directory)
    if directory is None and Path(SPEC_FILENAME).is_file():  # the current directory is a project
        directory = Path(".")
    # in a project's subfolder (its data): say that its project was not checked, and how to
    enclosing = enclosing_project(Path(".")) if directory is None else None
    checks = run_checks(directory, import_plugins=not no_plugins)
    if fmt == "json":  # (the project in whose subfolder it ran, unchecked: enclosing_project)
        _write_plugin_frames("".join(check.plugin_traceback for check in checks))
        shown = [{key: value for key, value in dataclasses.asdict(check).items() if key != "plugin_traceback"}
                 for check in checks]
        _echo_json({"checks": shown, "ok": all(c.ok for c in checks),
                    "enclosing_project": None if enclosing is None else str(enclosing),
                    "doctor_format": DOCTOR_FORMAT})
        if not all(c.ok for c in checks):
            sys.exit(1)
        return
    console = _console()
    problems = 0
    for check in checks:
        mark = "[green]✓[/green]" if check.ok else "[red]✗[/red]"
        _print_hanging(console, mark, f"{escape(check.name)}: {escape(check.detail)}")
        _write_plugin_frames(check.plugin_traceback)  # (after its check's line: under it on a terminal)
        if not check.ok:
            problems += 1
            if check.advice:
                _print_hanging(console, "    →", escape(check.advice))
    if enclosing is not None:
        console.print(f"Checked the environment only: this folder has no {SPEC_FILENAME}, but it is inside the "
                      f"project {enclosing}; `subsetctl doctor {shell_arg(enclosing)}` checks that project too.",
                      markup=False)
    if problems:
        sys.exit(1)


def _write_plugin_frames(frames: str) -> None:
    """A failed plugin import's own frames (:attr:`~subsetctl.doctor.Check.plugin_traceback`)
    on stderr, as validate, plan, ls and run write them, whatever the format: stdout holds the
    report alone. stdout is flushed first, so that a terminal shows them under what was printed
    before them (doctor's text: the failed check's line)."""
    if not frames:
        return
    with contextlib.suppress(OSError):
        sys.stdout.flush()
        sys.stderr.write(frames)
        sys.stderr.flush()


@main.command(name="help", hidden=True, epilog=_examples("subsetctl help", "subsetctl help run"))
@click.argument("command", required=False)
@click.pass_context
def help_command(ctx: click.Context, command: str | None) -> None:
    """Print the help of subsetctl, or of COMMAND: what `--help` prints.

    Not listed among the commands: for whoever types `subsetctl help run` as for git (it was
    "No such command 'help'"). A COMMAND that is none is a usage error with click's "Did you
    mean", as `subsetctl COMMAND` gives."""
    group = ctx.parent if ctx.parent is not None else ctx
    if command is None:
        click.echo(group.get_help())
        return
    _, found, _ = main.resolve_command(group, [command])  # (no such command: click's usage error, "Did you mean")
    if found is None:
        raise click.UsageError(f"No such command {command!r}.")
    with found.make_context(command, [], parent=group, resilient_parsing=True) as sub:
        click.echo(found.get_help(sub))


if __name__ == "__main__":  # pragma: no cover
    main()
