"""A safe YAML loader that refuses flow collections (``[...]``, ``{...}``) nested deeper
than any spec needs, before PyYAML's pure-Python scanner spends seconds on them: it
re-checks every open bracket at each token, so ``[[[[...`` a thousand deep took ~5 s to
end in a RecursionError (the spec file's and an override's "nested too deeply")."""

from __future__ import annotations

from typing import Any

import yaml

#: deeper than any spec or override value (a list of lists is 2)
MAX_FLOW_DEPTH = 64


class FlowTooDeepError(Exception):
    """A flow collection nested deeper than :data:`MAX_FLOW_DEPTH`."""


class FlowDepthLimitedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with :data:`MAX_FLOW_DEPTH` (``FlowTooDeepError`` past it)."""

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        if self.flow_level >= MAX_FLOW_DEPTH:
            raise FlowTooDeepError(f"flow collections nested deeper than {MAX_FLOW_DEPTH}")
        super().fetch_flow_collection_start(TokenClass)


def safe_load_limited(text: str) -> Any:
    """``yaml.safe_load`` with :class:`FlowDepthLimitedLoader`."""
    return yaml.load(text, Loader=FlowDepthLimitedLoader)  # a SafeLoader
