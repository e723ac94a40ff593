"""Reports: terminal tables, report.md / report.json and PNG plots."""

#: The baselines the final pick is compared with on the test split, in the order named: the
#: one-line comparison (:mod:`subsetctl.report.cells`) and the row-by-row one
#: (:mod:`subsetctl.report.paired`) both list them so.
BASELINES = ("target_only", "all")

#: the class a causal LM's answers that are none of its class-word target's classes are counted
#: under in data.json's ``classes`` (the report's rows per class names it so, unquoted)
OTHER_ANSWERS = "(other answers)"
