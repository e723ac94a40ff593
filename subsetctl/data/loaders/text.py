"""Plain-text rows (``loader.text_field``): a causal LM's source of documents (a corpus, code
files, a pretraining shard), each row's text trained on whole, with no prompt.

A row becomes an empty prompt and its text as the response, its metadata marked with
:data:`~subsetctl.text_rows.TEXT_KEY`: the model stages then tokenize the text alone, with
no chat template (a BOS first where the tokenizer starts texts with one), and every token
of it (its EOS too) is a response token, trained on and scored. A text longer than
``model.max_length`` keeps its start, as a long answer does. The rules of
:class:`~subsetctl.data.loaders.common.CommonColumns` apply to the text as to an answer (a
blank one is left out, with one notice counting such rows and naming the first few; every
row blank is an error), but for one: a missing, null or NaN text is left out as a blank one
is, in the same notice, not an error. A row of a prompt and an answer without its answer is
an example broken in the file (an error naming it); a corpus's row without its text is a
missing document, which a shard a pipeline wrote (a filter's dropped documents kept as
null) holds by the thousand, and one of them stopped the whole source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from subsetctl.data.loaders.common import CommonColumns, LoadContext, _missing, value_to_text
from subsetctl.errors import UserError, count_agreeing
from subsetctl.text_rows import TEXT_KEY

if TYPE_CHECKING:
    from datasets import Dataset


class TextColumns(CommonColumns):
    """:class:`CommonColumns` for rows whose ``text_field`` holds a text trained on whole
    (see the module): the column is read as the answer, the prompt left empty (without the
    notice an empty prompt gets elsewhere: here it is what the option means)."""

    def __init__(self, text_field: str, ctx: LoadContext, where: str, locate: Callable[[int], str],
                 available: Iterable[str] | None = None,
                 fetch: Callable[[Any], Iterable[tuple[int, dict[str, Any]]]] | None = None,
                 text_lines: bool = False) -> None:
        if ctx.kind == "classifier":
            raise UserError(
                f"Source {ctx.source_name!r}: loader.text_field is for a causal LM's plain text, trained on whole, "
                "but model.kind is classifier, which learns a class for each text and has no objective without "
                "one. Name the text column with loader.prompt_field and the class with loader.label_field."
            )
        super().__init__(text_field, text_field, "text_field", ctx, where, locate, available, fetch=fetch)
        self.prompt_option = "text_field"
        self.what = "a text"
        self.not_text: tuple[int, str] | None = None  # the first row whose text is no string, list or object
        self.not_text_count = 0
        self.text_lines = text_lines  # rows that are a text file's lines (datasets' ``text`` builder)

    def _map(self, i: int, record: dict[str, Any]) -> None:
        """Row ``i`` mapped, or left out as a blank text is when its text is missing, null or
        NaN (see the module); a column no row has is still an error, by :meth:`finish`."""
        if _missing(record.get(self.answer_field)):
            self.missing_count += 1
            self._leave_out(i)
            return
        super()._map(i, record)

    def _count_null(self, i: int, record: dict[str, Any]) -> None:
        """Nothing: a row without its text is left out, not one that the error about
        another row lists as lacking it."""

    def _texts(self, record: dict[str, Any]) -> tuple[str, str]:
        """No prompt, and the text as the answer."""
        return "", value_to_text(record[self.answer_field])

    def _count_structured(self, i: int, values: dict[str, Any]) -> None:
        """The text's column counted once, as the answer (it is the prompt's column too); a
        text that is no string, list or object (a number, a boolean, a Parquet date) counted
        too, for the notice :meth:`finish` gives on them."""
        super()._count_structured(i, values)
        self.structured_prompt, self.structured_prompt_count = None, 0
        value = values[self.answer_field]
        if not isinstance(value, (str, bytes, bytearray, list, tuple, dict)):
            self.not_text_count += 1
            if self.not_text is None:
                self.not_text = (i, value_to_text(value))

    def _note_whole_floats(self, named: str) -> None:
        """Nothing: a whole number held as a float is one of the texts that are no string,
        which :meth:`finish` says (the notice on them speaks of answers the test loss and
        exact_match score, which a text has not)."""

    def finish(self) -> Dataset:
        """The dataset, with a notice on texts that are no string: a corpus's text column
        holding a number or a boolean is more likely an id or a score column named by
        mistake than a document of a few characters, which is what it is trained on as."""
        dataset = super().finish()
        if self.not_text is not None:
            first, text = self.not_text
            self.ctx.notices.append(
                f"Source {self.ctx.source_name!r}: "
                f"{count_agreeing(self.not_text_count, 'row', 'has', 'have', of=self.where)} a number or "
                f"another value that is not a string as {self._answer_named()} "
                f"({'at' if self.not_text_count == 1 else 'first at'} {self.locate(first)}: "
                f"{text!r}); each is trained on as its text ({text!r} there), a document of a few characters. Check "
                "that loader.text_field names the column of the documents, or store the values as strings if "
                "they are meant."
            )
        return dataset

    def _most_blank(self) -> str | None:
        """For a text file's lines (:func:`reads_text_lines`): blank lines between paragraphs,
        not a column read wrong; what the rows are, and how to keep a paragraph whole."""
        if not self.text_lines:
            return None
        return ("a .txt file is read a line a row (datasets' text builder: each line one document, as the README's "
                "plain-text section says), so the blank lines between its paragraphs are rows of no text, left out, "
                "and a paragraph of several lines is several documents. To train on each paragraph (or each file) as "
                'one document, write them as JSON Lines, one {"text": ...} per document, read with type: jsonl and '
                "text_field: text.")

    def _note_empty_prompts(self) -> None:
        """Nothing: every row's prompt is empty, which is what ``text_field`` means."""

    def _note_spaced_answers(self, named: str) -> None:
        """Nothing: the notice is about answers after a prompt (a CSV file written with ", ",
        legacy completions), which the test loss and exact_match score; a text's leading
        whitespace (indented code, a dump's formatting) is part of the text it learns."""

    def _structured_answer_advice(self) -> str:
        """A text held as a list (a document's paragraphs or lines, as some corpora keep them)
        is trained on as its JSON text, brackets and quotes included: not joined, since no
        separator is the right one for every corpus."""
        return ("each is trained on as its JSON text, brackets, quotes and commas included (a list of parts, "
                "a document's paragraphs or lines, is not joined). Join the parts into one string in the file, "
                "with the separator the text needs (or use a plugin loader).")

    def _more_metadata(self, i: int, extra: dict[str, Any]) -> None:
        """Mark the row as a text trained on whole; a key of its own of that name (a column,
        or a key of its metadata) would be taken for the mark, so it is refused."""
        if TEXT_KEY in extra:
            raise UserError(
                f"Source {self.ctx.source_name!r}: {self.where}, {self.locate(i)}: the row has a key of its own "
                f"named {TEXT_KEY!r} (a column, or a key of its metadata), the name that marks a text trained on "
                "whole. Rename that column (or drop it)."
            )
        super()._more_metadata(i, extra)
        extra[TEXT_KEY] = True


def reads_text_lines(options: Any) -> bool:
    """Whether a loader with ``options`` reads plain text files a line a row: a
    ``huggingface`` loader of datasets' ``text`` builder, or of ``.txt`` data files."""
    if getattr(options, "type", None) != "huggingface":
        return False
    files = [f.lower().removesuffix(".gz") for f in options.data_files or []]
    return options.path == "text" or bool(files) and all(f.endswith(".txt") for f in files)
