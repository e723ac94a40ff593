"""Commented spec templates for `subsetctl init` (package data: <name>.yaml)."""

#: The templates `subsetctl init --template` offers.
TEMPLATES = ("quickstart", "minimal", "classifier", "hub-gpu")
