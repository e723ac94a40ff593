"""A safe YAML loader that refuses flow collections (``[...]``, ``{...}``) nested deeper
than any spec needs, before PyYAML's pure-Python scanner spends seconds on them: it
re-checks every open bracket at each token, so ``[[[[...`` a thousand deep took ~5 s to
end in a RecursionError (the spec file's and an override's "nested too deeply"); and the
count of what a document's aliases expand to, which the spec file and an override refuse
past :data:`_MAX_ALIAS_EXPANSION`. Where PyYAML has libyaml, :class:`LibyamlDepthLimitedLoader`
composes ten times as fast, its depth measured on the tree it composed."""

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


def nested_deeper_than(root: yaml.Node, limit: int) -> bool:
    """Whether the node tree at ``root`` nests more than ``limit`` collections (block or
    flow) inside one another, aliases followed; an alias inside what it refers to nests
    without end. Walked without recursion, each node again only when met deeper than before."""
    deepest: dict[int, int] = {}
    todo: list[tuple[yaml.Node, int]] = [(root, 1)]
    while todo:
        node, depth = todo.pop()
        if depth > limit:
            return True
        if deepest.get(id(node), 0) >= depth:
            continue
        deepest[id(node)] = depth
        if isinstance(node, yaml.MappingNode):
            todo.extend((child, depth + 1) for pair in node.value for child in pair)
        elif isinstance(node, yaml.SequenceNode):
            todo.extend((child, depth + 1) for child in node.value)
    return False


#: libyaml's safe loader where PyYAML was built with it (``yaml.__with_libyaml__``), else None
LIBYAML_SAFE_LOADER: type[Any] | None = (
    getattr(yaml, "CSafeLoader", None) if getattr(yaml, "__with_libyaml__", False) else None)


class LibyamlDepthLimitedLoader(LIBYAML_SAFE_LOADER or yaml.SafeLoader):  # type: ignore[misc]
    """libyaml's safe loader (``yaml.CSafeLoader``; without libyaml the pure-Python one, then
    unused), refusing (``FlowTooDeepError``) a document nested deeper than :data:`MAX_FLOW_DEPTH`,
    flow or block: libyaml's scanner has no hook, so the tree it composed is measured. Such a
    document is no spec; the caller leaves it to :class:`FlowDepthLimitedLoader`, whose scanner
    stops at that depth of flow collections and whose composer ends in a ``RecursionError``
    where a block nests a few hundred deep."""

    def get_single_node(self) -> yaml.Node | None:
        root = super().get_single_node()
        if root is not None and nested_deeper_than(root, MAX_FLOW_DEPTH):
            raise FlowTooDeepError(f"collections nested deeper than {MAX_FLOW_DEPTH}")
        return root


_MAX_ALIAS_EXPANSION = 1_000_000  # values a spec's aliases may add beyond those written


def _expanded_size(root: yaml.Node) -> int:
    """How many values the aliases of the document at ``root`` add beyond the nodes written:
    an alias is the node it refers to, so a few lines of nested aliases (a "billion laughs")
    stand for billions of values that every walk over the spec would visit. Counted without
    visiting them: each node's size once. An alias inside what it refers to (``a: &a [*a]``)
    repeats it without end: it counts as over any limit."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) not in sizes:
            sizes[id(node)] = _MAX_ALIAS_EXPANSION + 1  # until counted: met again inside itself, a cycle
            children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                        else node.value if isinstance(node, yaml.SequenceNode) else [])
            sizes[id(node)] = 1 + sum(size(child) for child in children)
        return sizes[id(node)]

    return size(root) - len(sizes)


class AliasesExpandTooFarError(Exception):
    """A document whose aliases expand past :data:`_MAX_ALIAS_EXPANSION` values."""


def safe_load_limited(
    text: str, loader_class: type[FlowDepthLimitedLoader | LibyamlDepthLimitedLoader] = FlowDepthLimitedLoader,
) -> Any:
    """``yaml.safe_load`` with :class:`FlowDepthLimitedLoader` (or ``loader_class``, one of its
    kind or of :class:`LibyamlDepthLimitedLoader`'s: the spec file's, which refuse duplicate
    keys), refusing a document whose aliases expand past :data:`_MAX_ALIAS_EXPANSION` values (``AliasesExpandTooFarError``):
    an override's value of nested aliases, a few hundred characters, took 0.5 GB and 18 s to
    be refused at 8 levels, and ten times that at each level more."""
    loader = loader_class(text)
    try:
        root = loader.get_single_node()
        if root is not None and _expanded_size(root) > _MAX_ALIAS_EXPANSION:
            raise AliasesExpandTooFarError(f"aliases expanding past {_MAX_ALIAS_EXPANSION:,} values")
        return loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
