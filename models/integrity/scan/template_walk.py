"""The walk of a parsed Jinja2 chat template for sandbox escapes.

What is found, and why, is said in :mod:`rearguard.models.integrity.scan.chat_template`; this
module holds what needs Jinja2 (about 8 MB and 30 ms to import), so that it is loaded only when
a template is met, not by every scan.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.sandbox import SandboxedEnvironment

from rearguard.models.integrity.scan.chat_template import template_finding
from rearguard.models.integrity.scan.findings import Finding, Location, Severity

__all__ = ["ESCAPE_ATTRIBUTES", "find_escapes"]

ESCAPE_ATTRIBUTES = frozenset(
    {
        "mro",
        "func_globals",
        "func_code",
        "func_closure",
        "gi_frame",
        "gi_code",
        "cr_frame",
        "cr_code",
        "ag_frame",
        "ag_code",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_back",
        "f_code",
        "tb_frame",
        "tb_next",
        "co_code",
        "im_func",
        "im_self",
        "im_class",
    }
)
"""Attributes without an underscore that still lead to frames, globals or code."""

_FORMAT_METHODS = frozenset({"format", "format_map"})
_TEMPLATE_GLOBALS = frozenset({"self", "cycler", "joiner", "namespace", "lipsum", "range", "dict"})
_ATTRIBUTE_FILTERS = frozenset(
    {"map", "selectattr", "rejectattr", "sort", "groupby", "sum", "unique", "min", "max"}
)
_LOADING_TAGS: dict[type[nodes.Node], str] = {
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from ... import %}",
    nodes.Include: "{% include %}",
    nodes.Extends: "{% extends %}",
}
# Folded strings longer than this are not built ('_' * 10**9 must not allocate).
_MAX_FOLDED = 256
_PERCENT_SPEC = re.compile(r"%[^%a-zA-Z]*")
_DUNDER = re.compile(r"__[A-Za-z][A-Za-z0-9_]*?__")


class _GenerationTag(Extension):
    """``{% generation %}...{% endgeneration %}``, which Hugging Face's renderer accepts."""

    tags = {"generation"}

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


@dataclass
class _Folding:
    """What folding knows: the constant value of ``{% set %}`` names, and every node already
    folded (a long ``a + b + c...`` chain is folded once per node, not once per prefix)."""

    names: dict[str, str] = field(default_factory=dict)
    memo: dict[int, str | None] = field(default_factory=dict)


def _fold(node: nodes.Node, known: _Folding) -> str | None:
    """The string an expression always evaluates to, when it is built from constants."""
    if id(node) not in known.memo:
        known.memo[id(node)] = _fold_once(node, known)
    return known.memo[id(node)]


def _fold_once(node: nodes.Node, known: _Folding) -> str | None:
    value: object = None
    if isinstance(node, nodes.Const):
        value = node.value
    elif isinstance(node, nodes.TemplateData):
        value = node.data
    elif isinstance(node, nodes.Name) and node.ctx == "load":
        value = known.names.get(node.name)
    elif isinstance(node, nodes.Concat | nodes.Output):
        parts = [_fold(child, known) for child in node.nodes]
        value = None if None in parts else "".join(p for p in parts if p is not None)
    elif isinstance(node, nodes.Add):
        left, right = _fold(node.left, known), _fold(node.right, known)
        value = left + right if left is not None and right is not None else None
    elif isinstance(node, nodes.Mul):
        value = _fold_repeat(node, known)
    elif isinstance(node, nodes.Mod):
        value = _fold_percent(_fold(node.left, known), [node.right], known)
    elif isinstance(node, nodes.Filter) and node.node is not None:
        value = _fold_filter(node, known)
    if isinstance(value, str) and len(value) <= _MAX_FOLDED:
        return value
    return None


def _fold_repeat(node: nodes.Mul, known: _Folding) -> str | None:
    text, count = _fold(node.left, known), node.right
    if text is None:
        text, count = _fold(node.right, known), node.left
    if text is None or not isinstance(count, nodes.Const) or not isinstance(count.value, int):
        return None
    if len(text) * count.value > _MAX_FOLDED:
        return None
    return text * count.value


def _fold_percent(text: str | None, args: Sequence[nodes.Node], known: _Folding) -> str | None:
    if text is None:
        return None
    values: list[object] = []
    for arg in args:
        items = arg.items if isinstance(arg, nodes.Tuple | nodes.List) else [arg]
        for item in items:
            # Numbers count too: '%c%c' % (95, 95) is '__'.
            number = item.value if isinstance(item, nodes.Const) else None
            folded = number if isinstance(number, int | float) else _fold(item, known)
            if folded is None:
                return None
            values.append(folded)
    if any("*" in spec or re.search(r"\d{4}", spec) for spec in _PERCENT_SPEC.findall(text)):
        return None  # a width like %0999999999d would allocate gigabytes
    try:
        return text % tuple(values)
    except (TypeError, ValueError, OverflowError):
        return None


def _fold_filter(node: nodes.Filter, known: _Folding) -> str | None:
    assert node.node is not None  # checked by the caller
    if node.name == "join" and isinstance(node.node, nodes.List | nodes.Tuple):
        parts = [_fold(item, known) for item in node.node.items]
        separator = _fold(node.args[0], known) if node.args else ""
        if None in parts or separator is None:
            return None
        return separator.join(p for p in parts if p is not None)
    text = _fold(node.node, known)
    if text is None:
        return None
    if node.name == "format":
        return _fold_percent(text, node.args, known)
    if node.name == "reverse":
        return text[::-1]
    if node.name in {"lower", "upper", "trim", "string", "e", "escape", "safe"}:
        return {"lower": text.lower(), "upper": text.upper(), "trim": text.strip()}.get(
            node.name, text
        )
    if node.name == "replace" and len(node.args) >= 2:
        old, new = _fold(node.args[0], known), _fold(node.args[1], known)
        if old is None or new is None or (old == "" and len(text) * len(new) > _MAX_FOLDED):
            return None
        return text.replace(old, new)
    return None


def _constants(node: nodes.Node) -> Iterator[str]:
    """Every string constant inside an expression."""
    for const in node.find_all(nodes.Const):
        if isinstance(const.value, str):
            yield const.value
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        yield node.value


def _is_dunder(text: str) -> bool:
    return len(text) > 4 and text.startswith("__") and text.endswith("__")


def _escape_reason(name: str) -> str | None:
    """Why looking up attribute ``name`` escapes, or None when it is an ordinary name."""
    if name.startswith("_"):
        return f"looks up {name!r}, a private or special attribute that leads to Python internals"
    if name in ESCAPE_ATTRIBUTES:
        return f"looks up {name!r}, which leads to frames, globals or code"
    return None


class _Walk:
    """One walk over a parsed template, collecting findings."""

    def __init__(self, *, location: Location, offset: int | None) -> None:
        self.location = location
        self.offset = offset
        self.findings: list[Finding] = []
        self.known = _Folding()
        self.stored: set[str] = set()
        self._seen: set[tuple[str, int]] = set()

    def report(self, construct: str, reason: str, lineno: int) -> None:
        if (construct, lineno) in self._seen:
            return
        self._seen.add((construct, lineno))
        self.findings.append(
            self.location.finding(
                construct=construct,
                severity=Severity.DANGEROUS,
                reason=f"chat template line {lineno}: {reason}",
                offset=self.offset,
            )
        )

    def collect_assignments(self, every: list[nodes.Node]) -> None:
        for name in every:
            if isinstance(name, nodes.Name) and name.ctx in ("store", "param"):
                self.stored.add(name.name)
        for assign in every:
            if not isinstance(assign, nodes.Assign | nodes.AssignBlock):
                continue
            if not isinstance(assign.target, nodes.Name):
                continue
            if isinstance(assign, nodes.Assign):
                folded = _fold(assign.node, self.known)
            else:
                parts = [_fold(child, self.known) for child in assign.body]
                folded = None if None in parts else "".join(p for p in parts if p is not None)
            if folded is not None:
                self.known.names[assign.target.name] = folded

    def lookup(self, name_node: nodes.Node, lineno: int, via: str) -> None:
        """Check a looked-up attribute or item name given as an expression."""
        name = _fold(name_node, self.known)
        if name is not None:
            reason = _escape_reason(name)
            if reason is not None:
                self.report(name, f"{via} {reason}", lineno)
            return
        pieces = [piece for piece in _constants(name_node) if piece.startswith("_")]
        if pieces:
            self.report(
                f"{via} computed from {pieces[0]!r}",
                "looks up a name built at render time from a piece that starts with an underscore",
                lineno,
            )

    def visit(self, node: nodes.Node) -> None:
        lineno = node.lineno
        if isinstance(node, nodes.Getattr):
            reason = _escape_reason(node.attr)
            if reason is not None:
                self.report(node.attr, reason, lineno)
            elif node.attr in _FORMAT_METHODS:
                self.report(
                    f".{node.attr}",
                    "str.format reaches attributes of its arguments (sandbox escape)",
                    lineno,
                )
            self.template_global(node.node, node.attr, lineno)
        elif isinstance(node, nodes.Getitem):
            self.lookup(node.arg, lineno, "[...]")
            self.template_global(node.node, "[...]", lineno)
        elif isinstance(node, nodes.Filter | nodes.Test):
            self.filter(node, lineno)
            self.built(node, lineno)
        elif isinstance(node, nodes.Const) and isinstance(node.value, str):
            if _is_dunder(node.value) or node.value in ESCAPE_ATTRIBUTES:
                self.report(node.value, "names a special attribute", lineno)
        elif isinstance(node, nodes.Concat | nodes.Add | nodes.Mul | nodes.Mod):
            self.built(node, lineno)
        elif isinstance(node, nodes.Name) and node.ctx == "load" and node.name.startswith("__"):
            self.report(node.name, "reads a special name", lineno)
        elif isinstance(node, nodes.Keyword) and node.key.startswith("__"):
            self.report(node.key, "passes a special name as a keyword", lineno)
        for kind, tag in _LOADING_TAGS.items():
            if isinstance(node, kind):
                self.report(tag, "loads another template through the loader (reads files)", lineno)

    def built(self, node: nodes.Node, lineno: int) -> None:
        folded = _fold(node, self.known)
        if folded is not None and _is_dunder(folded):
            self.report(folded, "builds the name of a special attribute", lineno)

    def template_global(self, target: nodes.Node, attr: str, lineno: int) -> None:
        if (
            isinstance(target, nodes.Name)
            and target.name in _TEMPLATE_GLOBALS
            and target.name not in self.stored
        ):
            self.report(
                f"{target.name}.{attr}",
                f"reaches into the template global {target.name!r}, a Python object",
                lineno,
            )

    def filter(self, node: nodes.Filter | nodes.Test, lineno: int) -> None:
        if node.name == "attr":
            if not node.args:
                return
            if _fold(node.args[0], self.known) is None and not any(
                piece.startswith("_") for piece in _constants(node.args[0])
            ):
                self.report("|attr(...)", "looks up an attribute whose name is computed", lineno)
            self.lookup(node.args[0], lineno, "|attr")
        elif node.name in _ATTRIBUTE_FILTERS:
            for keyword in node.kwargs:
                if keyword.key == "attribute":
                    self.lookup(keyword.value, lineno, f"|{node.name}(attribute=)")
            if node.name in {"selectattr", "rejectattr"} and node.args:
                self.lookup(node.args[0], lineno, f"|{node.name}")
            if (
                node.name == "map"
                and len(node.args) >= 2
                and _fold(node.args[0], self.known) == "attr"
            ):
                self.lookup(node.args[1], lineno, "|map('attr')")


def _too_deep(location: Location, offset: int | None) -> Finding:
    return template_finding(
        location, offset, Severity.MALFORMED, "nested too deeply to read as Jinja2"
    )


def _parse(source: str) -> nodes.Template:
    """Jinja2's syntax tree of a template, as Hugging Face's renderer parses it.

    Raises:
        TemplateSyntaxError: the template does not parse.
        RecursionError: it nests too deeply to parse.
    """
    environment = SandboxedEnvironment(extensions=[loopcontrols, _GenerationTag])
    return environment.parse(source)


def _unparsed(location: Location, offset: int | None, why: str) -> Finding:
    return template_finding(
        location, offset, Severity.MALFORMED, f"does not parse as Jinja2: {why}"
    )


def find_escapes(
    source: str, *, location: Location, offset: int | None, declared: bool
) -> list[Finding]:
    """Parse a template and walk its syntax tree for sandbox escapes
    (:func:`~rearguard.models.integrity.scan.chat_template.scan_template` says what is found).
    """
    try:
        template = _parse(source)
    except TemplateSyntaxError as error:
        why = f"line {error.lineno}: {error.message}"
        if declared:
            return [_unparsed(location, offset, why)]
        special = _DUNDER.search(source)
        if special is None:
            return []
        return [_unparsed(location, offset, f"{why}; names {special[0]}")]
    except RecursionError:
        return [_too_deep(location, offset)]
    # Jinja's own tree helpers recurse; the tree is listed here without recursion.
    every: list[nodes.Node] = []
    pending: list[nodes.Node] = [template]
    while pending:
        node = pending.pop()
        every.append(node)
        pending.extend(reversed(list(node.iter_child_nodes())))
    walk = _Walk(location=location, offset=offset)
    try:
        walk.collect_assignments(every)
        for node in every:
            walk.visit(node)
    except RecursionError:
        # Folding follows an expression's depth: thousands of chained operators parse, but no
        # real template has them.
        return [*walk.findings, _too_deep(location, offset)]
    return walk.findings
