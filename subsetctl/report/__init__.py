"""Reports: terminal tables, report.md / report.json and PNG plots."""

#: The baselines the final pick is compared with on the test split, in the order named: the
#: one-line comparison (:mod:`subsetctl.report.cells`) and the row-by-row one
#: (:mod:`subsetctl.report.paired`) both list them so.
BASELINES = ("target_only", "all")

#: the class a causal LM's answers that are none of its class-word target's classes are counted
#: under in data.json's ``classes`` (the report's rows per class names it so, unquoted)
OTHER_ANSWERS = "(other answers)"

#: what starts the key of a class in data.json's ``classes`` that is literally :data:`OTHER_ANSWERS`
#: (or starts with this itself): a class so named was summed with the others' answers and shown as them
CLASS_KEY_ESCAPE = "\x00"


def class_key(label: str) -> str:
    """``label``'s key in data.json's ``classes``: itself, but for a class literally named
    :data:`OTHER_ANSWERS` (the others' count's key) or starting with :data:`CLASS_KEY_ESCAPE`,
    escaped with it (:func:`class_of_key` reads it back), so that it keeps its own count."""
    return CLASS_KEY_ESCAPE + label if label == OTHER_ANSWERS or label.startswith(CLASS_KEY_ESCAPE) else label


def class_of_key(key: str) -> str:
    """The class a key of data.json's ``classes`` other than :data:`OTHER_ANSWERS` counts (:func:`class_key`)."""
    return key.removeprefix(CLASS_KEY_ESCAPE)
