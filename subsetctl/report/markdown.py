"""report.md: the same content as the terminal report, as Markdown with plots."""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

from subsetctl.project import readable_json
from subsetctl.report.build import in_spec_order
from subsetctl.report.cells import (
    SCORE_ROWS_BOTTOM,
    SCORE_ROWS_TOP,
    SELECTED_SHOWN,
    SOURCES_FILE,
    baseline_cell,
    calibrated_loss_cell,
    calibration_notes,
    calibration_state,
    class_balance_line,
    diverged_finetunes_line,
    estimate_figures_lines,
    estimates_checked,
    few_rows_notes,
    final_vs_baselines_line,
    loss_cell,
    macro_f1_cell,
    overrides_line,
    percent_cell,
    plugins_line,
    repeats_cell,
    reproduce_facts,
    rows_cell,
    score_meaning_notes,
    score_ranking,
    score_table_rows,
    selected_cell,
    selection_loss_digits,
    shared_finetune_line,
    sources_listed_apart,
    stage_warning_lines,
    strategy_notes,
    test_figures_lines,
    test_loss_digits,
    test_metric_cells,
    threads_line,
    token_table,
    verify_k_cell,
    verify_notes,
    verify_subset_table,
    versions_line,
)
from subsetctl.report.cells import fmt as _fmt
from subsetctl.report.paired import paired_lines

#: report.md writes report.json's ``settings`` out in full up to this many keys; past it (a project
#: of hundreds of sources, each keeping its own name) it points to report.json instead
SETTINGS_SHOWN = 200


def _settings_block(settings: Any) -> list[str]:
    """report.md's lines (in the section on reproducing the selection) for report.json's
    ``settings``, every setting the shown results were made with, overrides included: a
    report.md kept aside from a sweep's variant (`cp report.md v7.md`) named only the resolved
    spec under `.subsetctl/specs/`, which `run` deletes once no kept results name it, so the
    variant's settings could not be read from it. One JSON line a key, folded in a <details>
    element; of more than :data:`SETTINGS_SHOWN`, a line saying where they are."""
    if not isinstance(settings, dict) or not settings:
        return []
    title = ("every setting these results were made with, key=value overrides of `run` included (report.json's "
             "`settings`: dotted keys, `sources[*].x` the value of every source not listed with its own)")
    if len(settings) > SETTINGS_SHOWN:
        return [f"- {len(settings):,} settings: {title}", ""]
    body = ",\n".join(f"  {readable_json(key)}: {readable_json(value)}" for key, value in settings.items())
    return [f"<details><summary>{len(settings)} settings: {title}</summary>", "", "```json", "{", body, "}", "```",
            "", "</details>", ""]


#: the start of a bare URL that GitHub (GFM's extended autolinks) and other renderers' "linkify"
#: make a link of: a scheme's ``:`` (``https://``, ``ftp://``) or ``www``'s ``.``
_BARE_URL = re.compile(r"(?i)(?<![A-Za-z0-9])(?:(https?|ftp)(?=://)|(www)(?=\.))")

#: the two-letter top-level labels linkify-it links a bare domain of (its ``tlds_2ch_src_re``, the
#: countries' codes): ``md``, ``py``, ``io``; not ``db``, ``en``, ``el`` (checked against
#: linkify-it-py 2.2 for all 676 pairs of letters)
_LINKIFY_TWO_LETTER_LABELS = (
    "a[cdefgilmnoqrstuwxz]|b[abdefghijmnorstvwyz]|c[acdfghiklmnoruvwxyz]|d[ejkmoz]|e[cegrstu]|f[ijkmor]"
    "|g[abdefghilmnpqrstuwy]|h[kmnrtu]|i[delmnoqrst]|j[emop]|k[eghimnprwyz]|l[abcikrstuvy]"
    "|m[acdeghklmnopqrstuvwxyz]|n[acefgilopruz]|om|p[aefghklmnrstwy]|qa|r[eosuw]|s[abcdeghijklmnortuvxyz]"
    "|t[cdfghjklmnortvwz]|u[agksyz]|v[aceginu]|w[fs]|y[et]|z[amw]")

#: a label of a domain as linkify-it reads one: letters and digits (of any script), hyphens inside
_DOMAIN_LABEL = r"[^\W_](?:(?:[^\W_]|-)*[^\W_])?"

#: a top-level label linkify-it links a bare domain of: its two-letter ones and its default generic ones
_LINKIFY_TOP_LABEL = re.compile(
    rf"(?i){_LINKIFY_TWO_LETTER_LABELS}|biz|com|edu|gov|net|org|pro|web|xxx|aero|asia|coop|info|museum|name|shop|рф"
    r"|xn--[a-z0-9-]+")

#: a bare domain as markdown-it's linkify (VS Code's preview, many sites) reads one, with no scheme
#: or ``www`` (``evil.example.com``; ``train.py``, ``py`` a country's); GitHub (cmark-gfm) links
#: none. linkify-it's rules: a domain starts after no ``.:/-_@`` nor a letter (``my_notes.md``,
#: ``-x.md``: no link) and ends at its last label (``x.md.jsonl``, ``notes.md_x``: none) — but
#: after an escape (``a\_notes.md``), where markdown-it's text is cut in two and ``notes.md`` stands
#: alone. It links one whose last label is :data:`_LINKIFY_TOP_LABEL` (see :func:`_unlinked_domain`).
#: Each name with a ``.`` before any two letters got a backslash in report.md's raw text for no
#: renderer (``corpus\.db``, ``my_notes\.md``).
_BARE_DOMAIN = re.compile(
    rf"(?:(?<![\w.:/@\\-])|(?<=\\[^\w\s]))(?:{_DOMAIN_LABEL}\.)+(?:(?i:xn--[a-z0-9-]+)|{_DOMAIN_LABEL})"
    r"(?![\w-]|\.[^\W_])")  # (a punycode label may end with its hyphen: a.xn--p1ai- is linked)


def _unlinked_domain(domain: str) -> str:
    """``domain`` (a :data:`_BARE_DOMAIN`) with the ``.`` before each of its last labels that is a
    top-level one escaped, from the last on: ``evil.example\\.com``, ``evil\\.co\\.uk`` (with only
    ``.uk``'s escaped, markdown-it reads ``evil.co`` as text of its own, and links it). Found one
    escape a pass over the whole text, which took seconds for a few thousand such labels."""
    labels = domain.split(".")
    kept = len(labels) - 1
    while kept > 0 and _LINKIFY_TOP_LABEL.fullmatch(labels[kept]):
        kept -= 1
    return ".".join(labels[:kept + 1]) + "".join("\\." + label for label in labels[kept + 1:])


#: an e-mail address's ``@`` (GFM's extended e-mail autolink: a local part of letters, digits and
#: ``.+-_``, then a domain with a ``.``, its dots escaped or not)
_EMAIL_AT = re.compile(r"(?<=[A-Za-z0-9.+_-])@(?=[A-Za-z0-9_-]+(?:\\?\.[A-Za-z0-9_-]+)+)")

#: U+2060 WORD JOINER, shown as nothing: put before an e-mail address's ``@``, no renderer finds
#: the address. (GitHub joins a backslash-escaped ``\@`` or ``\.`` back into the text before it
#: looks for addresses, and still linked ``user\@example.com``, checked with cmark-gfm.)
_WORD_JOINER = "\u2060"


def _no_autolinks(text: str) -> str:
    """``text`` (already escaped, outside code spans) with nothing a renderer links of itself:
    the ``:`` of ``https://`` and the ``.`` of ``www.`` escaped (``https\\://``, ``www\\.``), a
    bare domain's last ``.`` too (``evil.example\\.com``, :data:`_BARE_DOMAIN`), and a
    :data:`_WORD_JOINER` before an e-mail address's ``@``. Shown as written, but a data row's,
    a file's or a model id's ``https://evil.example/login``, ``evil.example.com`` or
    ``user@example.com`` is text in report.md, not a link that takes a reader there (checked
    with cmark-gfm, GitHub's renderer, and markdown-it's linkify)."""
    text = _BARE_URL.sub(lambda m: m.group(0) + "\\", _EMAIL_AT.sub(_WORD_JOINER + "@", text))
    return _BARE_DOMAIN.sub(lambda m: _unlinked_domain(m.group(0)), text)


def md_name(name: str) -> str:
    """A source or selection name as Markdown text: an ``_`` next to punctuation or at an
    end is escaped, else ``x.__init__`` reads as x.**init** and ``a._b, c_`` puts both
    names in italics (names hold letters, digits, ``_``, ``.`` and ``-`` only; an ``_``
    inside a word is no emphasis and is left as it is), and a name made from a file's,
    ``www.example.com``, is no link (:func:`_no_autolinks`)."""
    return _no_autolinks(re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", name))


#: a code span (CommonMark: a run of backticks, then text, then a run of as many): inside one,
#: Markdown and HTML are shown as written, and a backslash would be shown too
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`).*?(?<!`)\1(?!`)", re.DOTALL)


def _html_escaped(text: str) -> str:
    """``text`` with a ``<`` that would open an HTML tag, comment or autolink written ``&lt;``
    (``(< 10)`` stays as it is, readable as plain text too)."""
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)


def _markup_escaped(text: str) -> str:
    """Text outside code spans, Markdown's markup in it escaped: ``[`` and ``]`` (a link or an
    image, ``[click here](http://x)`` from a data row), ``*`` and an ``_`` at a word's edge
    (emphasis; ``snake_case`` stays as it is), a ``\\`` before punctuation (``\\[`` would undo
    the ``[``'s escape; ``C:\\data`` stays), ``&`` opening an entity (``&lt;`` is shown as
    written), :func:`_html_escaped`'s ``<`` and :func:`_no_autolinks`' bare URLs."""
    text = re.sub(r"\\(?=[!-/:-@\[-`{-~])", r"\\\\", text)
    text = re.sub(r"([\[\]*])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", lambda m: "\\" + m.group(0), text)
    return _no_autolinks(_html_escaped(re.sub(r"&(?=#?[A-Za-z0-9]+;)", "&amp;", text)))


def md_text(text: str) -> str:
    """Free text (a warning, which may quote a data row, a file name or a label; a line of the
    report's notes) as Markdown text that shows it as written: outside its code spans (the
    backticks subsetctl's warnings put round a command or a key), Markdown's markup and HTML
    are escaped (:func:`_markup_escaped`), so a row's ``[click here](http://evil.example)`` is
    not a link in report.md, nor ``<b>x</b>`` bold; inside one, text is shown as it is."""
    text, end = str(text), 0
    shown: list[str] = []
    for span in _CODE_SPAN.finditer(text):
        shown += [_markup_escaped(text[end:span.start()]), span.group(0)]
        end = span.end()
    return "".join([*shown, _markup_escaped(text[end:])])


def md_code(text: str) -> str:
    """``text`` (a path, a model id) as a Markdown code span that shows it as it is, also
    when it holds backticks: fenced by one more backtick than its longest run of them, with
    a space inside the fences when it starts or ends with one (CommonMark's rule)."""
    text = str(text)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_title(name: str) -> str:
    """The project's name (any one printable line) or its folder's as the heading's Markdown
    text: besides :func:`_html_escaped`'s ``<``, each character that Markdown reads as markup (`` ` ``,
    ``*``, ``_``, ``[``, ``]``, ``~``, ``#``, ``\\``) is escaped, so ``run `2` *b*`` is shown
    as written, not as code and italics, and a ``#`` at its end is not taken for the
    heading's closing one; a character that is not printable (a folder's name can hold an
    escape sequence, or a line break, which ended the heading) is written as its escape
    (``\\x1b``), and a bare URL is no link (:func:`_no_autolinks`). (Warnings keep their backticks: they
    mark commands as code.)"""
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(name))
    return _no_autolinks(_html_escaped(re.sub(r"([\\`*_\[\]~#])", r"\\\1", shown)))


def md_cell(name: str) -> str:
    """A name not of subsetctl's making (a file in the model's folder or a source's folder) as
    one Markdown table cell that shows it as written: :func:`md_title`'s escapes, a ``|``
    escaped (a bare one ends the cell, inside a code span too, and shifted the row's digest
    into a column of its own), and a character that is not printable (a line break, which
    ended the row) as its escape (``\\n``)."""
    return md_title(name).replace("|", "\\|")


#: a selection of more sources than these, by a strategy that scores sources, is not listed
#: in its Selections cell: the per-source score table marks each of its sources ✓
SELECTED_LISTED = 100


def _selected_md(names: list[str], scores: dict[str, float | None] | None = None, apart: bool = False) -> str:
    """All selected names; a long list folds behind its count and, as the terminal names
    them, its highest scoring by the strategy's ``scores`` (a <details> element, which
    GitHub and most Markdown viewers render inside a table cell), all of them in the
    spec's order inside. More than :data:`SELECTED_LISTED` of a strategy with ``scores``
    are not listed: the per-source score table (every source) marks them ✓; 4,802 of 5,000
    listed made one line of 38 KB near the top of report.md, filling the first screen of
    a text viewer many times over. With ``apart`` (the per-source scores are in
    :data:`~subsetctl.report.cells.SOURCES_FILE`), it says that file marks them."""
    if len(names) <= SELECTED_SHOWN:
        return selected_cell([md_name(n) for n in names])
    summary = md_name(selected_cell(names, SELECTED_SHOWN, scores))  # ranked by the names scores are keyed by
    if scores and len(names) > SELECTED_LISTED:
        return f"{summary}; {SOURCES_FILE} marks each (true)" if apart else \
            f"{summary}; each is marked ✓ in the per-source scores below"
    return f"<details><summary>{summary}</summary>{selected_cell([md_name(n) for n in names], None)}</details>"


def left_out_note(left_out: list[str], switched_off: list[str]) -> str:
    """Why results are left out, and what brings them back: a run, or switching a stage on."""
    note = (f"Left out: the results of {', '.join(left_out)}, from an earlier run; the stages before them "
            "or their settings have changed since.")
    if switched_off:
        one = len(switched_off) == 1
        return note + (f" {', '.join(switched_off)} {'is' if one else 'are'} switched off in the spec, so a run "
                       f"does not update {'it' if one else 'them'}: switch {'it' if one else 'them'} back on to see "
                       "new results.")
    return note + " Run the project again to see new ones."


#: which adapter folder of a selection is which seed's (the table listed them unlabelled), and
#: where to find how to use one outside subsetctl
_PER_SEED = ("one per seed, `project.seed`'s first, then `project.seed` + 1's, ... (README's \"Using the "
             "result\" loads one, merges it and exports the rows it was fine-tuned on).")


def sources_csv(report: dict[str, Any]) -> str | None:
    """:data:`~subsetctl.report.cells.SOURCES_FILE`'s text: every source of a report of more
    than :data:`~subsetctl.report.cells.SOURCES_IN_REPORT_MD`, in the order of report.md's
    per-source table (ranked as the terminal ranks them), a row a source: ``source``, its
    train ``rows`` (where the report has them), then each scoring strategy's score (as report.json holds it; empty for none) and whether it
    picked the source (``<label> selected``: true or false). None for fewer sources, or no
    strategy with scores (report.md's table lists them all). Thousands of table rows were
    most of report.md (188 KB at 5,000 sources), at its end, which a reader scrolled past."""
    import csv
    import io

    if not sources_listed_apart(report):
        return None
    scored = {k: v for k, v in report["strategies"].items() if v.get("scores")}
    rows, _ = score_table_rows(report["sources"], scored[score_ranking(report, scored)]["scores"], everything=True)
    selected = [set(v["selected"]) for v in scored.values()]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    counts = report.get("train_rows") or {}  # each source's train rows, as report.md's rows column
    writer.writerow(["source", *(["rows"] if counts else []),
                     *(column for label in scored for column in (label, f"{label} selected"))])
    for name in rows:
        cells: list[Any] = [name, *([counts.get(name, "")] if counts else [])]
        for entry, chosen in zip(scored.values(), selected):
            score = entry["scores"].get(name)
            cells += ["" if score is None else repr(float(score)), "true" if name in chosen else "false"]
        writer.writerow(cells)
    return out.getvalue()


def tokens_by_source_lines(report: dict[str, Any]) -> list[str]:
    """The "Token lengths by source" section (:func:`token_table`); no lines without its
    record (results from before subsetctl kept it)."""
    table = token_table(report)
    if table is None:
        return []
    header, rows, more, max_length = table
    intro = (f"Each source's train and validation rows as the model reads them, after `model.max_length` = "
             f"{max_length} cut them (the gradients stage's count; what was cut and how: the stages' warnings "
             "above; README's max_length section).")
    lines = ["## Token lengths by source", "", intro, "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([md_name(row[0]), *row[1:]]) + " |" for row in rows]
    if more:
        lines.append(f"| ... {more:,} more, cut less (report.json's `tokens_by_source`) |" + " |" * (len(header) - 1))
    return [*lines, ""]


def _verify_subsets_md(report: dict[str, Any]) -> list[str]:
    """The verify subsets, one a row (:func:`~subsetctl.report.cells.verify_subset_table`),
    with how many more report.json holds."""
    table = verify_subset_table(report)
    if table is None or not table[1]:
        return []
    header, rows, more = table
    lines = ["### Verify subsets", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_name(cell) for cell in row) + " |" for row in rows]
    if more:
        lines.append(f"| ... {more:,} more (report.json's `verify`) |" + " |" * (len(header) - 1))
    return [*lines, ""]


def md_heading(name: str, folder: str | None = None) -> str:
    """report.md's first line: the project's name and, where it differs, the ``folder``'s
    (a sweep's 15 copies of a project were each "subsetctl report: tiny")."""
    return f"# subsetctl report: {md_title(name)}" + (f" ({md_title(folder)})" if folder and folder != name else "")


def render_markdown(report: dict[str, Any], plots: dict[str, str], folder: str | None = None) -> str:
    """report.md's text; ``folder``: the project folder's name, in the heading where it is
    not the project's name (:func:`md_heading`)."""
    report = in_spec_order(report)
    appendix: list[str] = []  # the per-source scores of many sources, at the end
    lines = [md_heading(report["project"], folder), ""]
    overrides = overrides_line(report)
    if overrides:
        lines += [f"> Results {overrides}.", ""]
    plugins = plugins_line(report)
    if plugins:
        lines += [f"> Results {md_text(plugins)}.", ""]
    versions = versions_line(report)
    if versions:  # results reused from the caches, or kept, from before a library upgrade
        lines += [f"> {md_text(versions)}", ""]
    threads = threads_line(report)
    if threads:  # stages run with different torch thread counts
        lines += [f"> {md_text(threads)}", ""]
    if report.get("data_warnings"):
        lines += ["## Data warnings", "", *(f"- {md_text(w)}" for w in report["data_warnings"]), ""]
    stage_warnings = stage_warning_lines(report)
    if stage_warnings:  # said while the stages ran (truncated examples, diverged fine-tunes, ...)
        lines += ["## Warnings of the stages", ""]
        for stage, warnings in stage_warnings.items():
            earlier = " *(switched off; an earlier run's)*" if report["stages"].get(stage, {}).get("switched_off") else ""
            lines += [f"- {md_text(w)}{earlier}" for w in warnings]
        lines.append("")
    lines += tokens_by_source_lines(report)
    if "strategies" in report:
        cal = report.get("calibration", {})
        state = calibration_state(cal, report.get("calibration_against")) if cal.get("enabled") else "raw (uncalibrated)"
        lines += [f"Final pick: **{md_name(report['final'])}**. Estimates are {state}; estimator {cal.get('estimator') or '-'}, lambda = {_fmt(cal.get('lam'))}.", ""]
        lines += ["## Selections", "", "| strategy | selected sources | est. loss (raw) | est. loss (calibrated) |", "|---|---|---|---|"]
        raw_digits, cal_digits = selection_loss_digits(report)
        apart = sources_listed_apart(report)
        for label, r in report["strategies"].items():
            lines.append(f"| {md_name(label)} | {_selected_md(r['selected'], r.get('scores'), apart)} | "
                         f"{loss_cell(r['estimated_loss_raw'], raw_digits)} | "
                         f"{calibrated_loss_cell(r, bool(cal.get('enabled')), cal_digits)} |")
        for label, r in report.get("baselines", {}).items():
            lines.append(f"| {label} (baseline) | {baseline_cell(r['selected'])} | "
                         f"{loss_cell(r['estimated_loss_raw'], raw_digits)} | "
                         f"{calibrated_loss_cell(r, bool(cal.get('enabled')), cal_digits)} |")
        lines += ["", *(f"> {md_text(part)}" for part in estimate_figures_lines(report)), ""]
        lines += [f"> calibration: {note}" for note in calibration_notes(report)] + ([""] if cal.get("notes") else [])
        lines += [f"> search {note}" for note in strategy_notes(report)] + ([""] if strategy_notes(report) else [])
        scored = {k: v for k, v in report["strategies"].items() if v["scores"]}
        if scored:
            # ranked as the terminal ranks it (its highest and lowest), every source kept: the full record
            # (of thousands, those the terminal shows: every source is in SOURCES_FILE, beside report.md)
            ranking = score_ranking(report, scored)
            rows, left_out = score_table_rows(report["sources"], scored[ranking]["scores"], everything=not apart)
            ranked = len(report["sources"]) > SCORE_ROWS_TOP + SCORE_ROWS_BOTTOM
            order = f"sorted by {md_name(ranking)}'s score, highest first" if ranked else "in the spec's order"
            note = (f"> All {len(rows):,} sources, ranked as the terminal report ranks them (it shows the "
                    f"{SCORE_ROWS_TOP} highest and {SCORE_ROWS_BOTTOM} lowest); sources {md_name(ranking)} did not "
                    "score are last, in the spec's order.")
            if apart:
                note = (f"> The {SCORE_ROWS_TOP} highest and {SCORE_ROWS_BOTTOM} lowest of {len(report['sources']):,} "
                        f"sources by {md_name(ranking)}'s score (those it did not score count as lowest); all of "
                        f"them, with each strategy's score and pick, are in [{SOURCES_FILE}]({SOURCES_FILE}), "
                        "beside this file, in this order.")
            counted = bool(report.get("train_rows"))  # a rows column: what each score rests on
            table = [f"## Per-source scores (higher = more helpful; {order})", "", *([note, ""] if ranked else []),
                     "| source | " + ("rows | " if counted else "") + " | ".join(md_name(k) for k in scored) + " |",
                     "|---|" + "---:|" * counted + "---|" * len(scored)]
            selected = [set(v["selected"]) for v in scored.values()]  # not a list scan per source and strategy
            for s in rows:
                if s is None:  # the sources between the highest and the lowest
                    table.append(f"| … {left_out:,} more ({SOURCES_FILE}) |" + " … |" * (len(scored) + counted))
                    continue
                table.append(f"| {md_name(s)} | " + (f"{rows_cell(report, s)} | " if counted else "") + " | ".join(_fmt(v["scores"].get(s)) + (" ✓" if s in chosen else "")
                                                           for v, chosen in zip(scored.values(), selected)) + " |")
            table.append("")
            meanings = [f"> {md_text(note)}" for note in score_meaning_notes(report, scored)]
            table += [*meanings, *([""] if meanings else [])]
            table += [line for note in few_rows_notes(report) for line in (f"> {note}", "")]
            if ranked and not apart:  # hundreds of rows: last, so that verify, the test metrics and the plots are not below them
                appendix = table
                lines += [(f"> Per-source scores: all {len(rows):,} sources are listed at the end of this file"
                           f"{', after the plots' if plots else ''}."), ""]
            else:
                lines += table
    if report.get("verify"):
        lines += ["## Estimated vs. true (verify)", "", "| fine-tune | estimator | lambda | Spearman (raw) | LOO median rel. error (calibrated) | same, with the choice of estimator and lambda held out too | k | repeats (their Spearman) |", "|---|---|---|---|---|---|---|---|"]
        for kind, v in report["verify"].items():
            c = v["calibration"]
            lines.append(f"| {kind} | {v.get('estimator') or '-'} | {_fmt(c['lam'])} | {_fmt(c['spearman'], 3)} | {percent_cell(c['loo_median_rel_err'])} | {percent_cell(v.get('loo_median_rel_err_with_selection'))} | {verify_k_cell(v)} | {repeats_cell(v)} |")
        lines.append("")
        notes = verify_notes(report)
        lines += [f"> verify {note}" for note in notes] + ([""] if notes else [])
        lines += _verify_subsets_md(report)
    if report.get("test_metrics"):
        f1 = any("macro_f1_mean" in m for m in report["test_metrics"].values())
        lines += ["## Test metrics", "", "| selection | metric | score |" + (" macro-F1 |" if f1 else "")
                  + " test loss | seeds |", "|---|---|---|" + ("---|" if f1 else "") + "---|---|"]
        test_digits = test_loss_digits(report)
        for label, m in report["test_metrics"].items():
            score, loss = test_metric_cells(m, test_digits)
            f1_cell = f" {macro_f1_cell(m)} |" if f1 else ""
            lines.append(f"| {md_name(label)} | {m['metric']} | {score} |{f1_cell} {loss} | {m['seeds']} |")
        lines += ["", *(f"> {md_text(part)}" for part in test_figures_lines(report))]
        for w in report.get("test_warnings", []):
            lines.append(f"\n> {md_text(w)}")
        for note in filter(None, (diverged_finetunes_line(report), shared_finetune_line(report))):
            lines.append(f"\n> {md_text(note)}")
        # names as they are: md_text escapes an `_` at a word's edge as md_name does (and a label's `[` too)
        verdict = final_vs_baselines_line(report.get("final_vs_baselines"), estimates_checked(report))
        if verdict:
            lines.append(f"\n> {md_text(verdict)}")
        for line in paired_lines(report.get("final_vs_baselines")):
            lines.append(f"\n> {md_text(line)}")
        balance = class_balance_line(report)
        if balance:
            lines.append(f"\n> {md_text(balance)}")
        lines.append("")
    if report.get("adapters"):
        if report.get("adapter_classes"):
            from subsetctl.stages.finetune import classifier_load_hint

            how = f"LoRA adapters in peft format, relative to the project folder; {_PER_SEED} " \
                  f"{classifier_load_hint(report['adapter_classes'], report.get('adapter_head_size'))}"
        else:
            how = ("LoRA adapters in peft format (`peft.PeftModel.from_pretrained(base_model, folder)`), "
                   f"relative to the project folder; {_PER_SEED}")
        base = report.get("adapter_base_model")
        if base and PurePath(base).is_absolute():  # a local folder named so, or adapters saved by an earlier version
            how += (f" The base model is {md_code(base)} (each adapter_config.json's "
                    "`base_model_name_or_path`: where it was when the adapters were trained, or where the spec "
                    "names the same model files now; after copying the project to another machine or moving the "
                    "model, load the base model from where it is now).")
        elif base and report.get("adapter_base_model_revision"):  # a hub id
            revision = report["adapter_base_model_revision"]
            pinned = (report.get("settings") or {}).get("model.revision")
            held = (f"the commit of the spec's model.revision {md_code(pinned)} when the finetune stage ran"
                    if isinstance(pinned, str) and pinned != revision else
                    "the spec's model.revision" if pinned == revision else
                    "as the local Hugging Face cache held it when the finetune stage ran")
            how += (f" The base model is the hub model {md_code(base)} (each adapter_config.json's "
                    f"`base_model_name_or_path`), at revision {md_code(revision)}, {held}: "
                    f"{md_code(f'from_pretrained({base!r}, revision={revision!r})')} loads "
                    "those weights, while `from_pretrained` without a revision takes the latest, which may be "
                    # (a set model.revision counts as its commit: a branch or tag that moves re-runs the stages)
                    + ("newer." if isinstance(pinned, str) else "newer (a newer revision does not make the stages "
                                                                 "re-run)."))
            other = report.get("adapter_base_model_revisions")
            if isinstance(other, dict) and other:  # reused from the cache, trained from another commit
                how += (" Except these, reused from the cache, trained from another commit (load them onto it): "
                        + ", ".join(f"{md_code(folder)} at {md_code(commit)}" for folder, commit in other.items())
                        + ".")
        elif base:
            how += (f" The base model is {md_code(base)} (each adapter_config.json's `base_model_name_or_path`: "
                    "model.source as the spec named it when they were trained, a local folder inside the project "
                    "relative to the project folder however the spec named it; a model folder moved since, with the "
                    "same files, re-ran nothing and is named as the spec names it now, which the adapters' files may "
                    "not")
            if report.get("adapter_base_model_path"):
                how += (f"; the run read it from {md_code(report['adapter_base_model_path'])}, the folder to give "
                        "`from_pretrained` on that machine")
            how += ")."
        lines += ["## Fine-tuned adapters", "", how, "", "| selection | adapter folder(s) |", "|---|---|"]
        for label, folders in report["adapters"].items():
            lines.append(f"| {md_name(label)} | {'<br>'.join(md_code(f) for f in folders)} |")
        lines.append("")
    if report.get("left_out"):
        lines += [f"> {left_out_note(report['left_out'], report.get('left_out_switched_off', []))}", ""]
    facts, tables = reproduce_facts(report)
    if facts:  # what a reviewer given the folder needs to produce the same selection
        lines += ["## Reproducing the selection", "", *(f"- {md_text(fact)}" for fact in facts), ""]
        for title, rows, more in tables:
            lines += [f"| {title} | sha256 |", "|---|---|", *(f"| {md_cell(name) if name else '-'} | `{digest}` |"
                                                            for name, digest in rows)]
            lines += [f"| ... {more:,} more (report.json's `input_files`) | |"] if more else []
            lines.append("")
        lines += _settings_block(report.get("settings"))
    # when each stage's results were written, as the terminal's "finished" column (report.json's written_at)
    lines += ["## Time per stage", "", "| stage | seconds | finished |", "|---|---|---|"]
    for stage, info in report["stages"].items():
        name = f"{stage} (switched off; an earlier run's)" if info.get("switched_off") else stage
        lines.append(f"| {name} | {_fmt(info['seconds'], 4)} | {info.get('written_at') or '–'} |")
    if "report" not in report["stages"]:  # this file is written by the report stage, before its time is known
        lines.append("| report | not known when this file was written (`subsetctl report` shows it) | |")
    lines.append("")
    for title, rel in plots.items():
        lines += [f"![{title}]({rel})", ""]
    return "\n".join(lines + appendix)
