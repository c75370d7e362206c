"""A target's signature read from its source file, without importing its module.

Importing a target's module to read a signature costs whatever the module
imports (for tipi's own processes and permanences, tens of milliseconds that
``--help`` and ``--cfg job`` would pay on every call). For the common shape -
a class defined at the top level of its module with its own ``__init__``, or
a plain function, whose defaults are literals - the source says everything
``inspect.signature`` would, so it is read from there. Anything less plain
(a decorator, a metaclass, an inherited or generated ``__init__``, a default
that is not a literal, a name bound twice, a re-export) answers None and the
caller imports the module: this path is only ever a faster way to the same answer.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tipi.params.target import INJECTED, Param, TargetInfo, first_line

__all__ = ["module_file", "read_from_source"]

_EMPTY = inspect.Parameter.empty
# Patterns over "\n" + source, anchored on the newline: a literal first character is what makes
# Python's re skip ahead quickly (a MULTILINE "^" is tried at every character).
# Import statements, indented ones included (try/except, TYPE_CHECKING blocks); a parenthesised list whole.
_IMPORTS = re.compile(r"\n[ \t]*(?:from\s+\S+\s+)?import\s+(?:[^\n(]*\([^)]*\)|[^\n]*)")
_DEFINES = re.compile(r"\n(?:class|def)\s+(\w+)")
_ASSIGNS = re.compile(r"\n[ \t]*(\w+)\s*(?::|=(?!=)|,)")
_TOP_LEVEL = re.compile(r"\n[^\s#)\]}]")
_FIRST_DEF = re.compile(r"\n([ \t]+)(?:async\s+)?def\s")
_WORD = re.compile(r"\w+")
_GENERATED = ("__new__", "__signature__", "__tipi_signature__", "__init_subclass__")
# Anything after a class's __init__ that could change its signature: another __init__, a generated one.
_LATER = re.compile(
    r"\n[ \t]+(?:(?:async\s+)?def\s+|)(?:__init__|__new__|__signature__|__tipi_signature__"
    r"|__init_subclass__)\b"
)


def _child(locations: list[str], part: str) -> tuple[Path | None, list[str]]:
    """``part`` in a package's folders: its file, and its own folders when it is a package."""
    for location in locations:
        package = Path(location) / part / "__init__.py"
        if package.is_file():
            return package, [str(package.parent)]
        module = Path(location) / f"{part}.py"
        if module.is_file():
            return module, []
    return None, []


def module_file(module: str) -> Path | None:
    """The ``.py`` file of ``module`` (a package's ``__init__.py``), found without importing it."""
    parts = module.split(".")
    loaded = sys.modules.get(parts[0])
    try:  # finding a top-level name imports nothing
        spec = None if loaded is not None else importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        return None
    if loaded is not None:
        origin, locations = getattr(loaded, "__file__", None), list(getattr(loaded, "__path__", None) or [])
    elif spec is not None:
        origin, locations = spec.origin, list(spec.submodule_search_locations or [])
    else:
        return None
    path = Path(origin) if origin else None
    for part in parts[1:]:
        path, locations = _child(locations, part)
        if path is None:
            return None
    return path if path is not None and path.suffix == ".py" else None


@dataclass(frozen=True)
class _Module:
    """A module's source and an index of the names it binds at any level (by text, before parsing)."""

    name: str
    file: Path
    source: str  # the file's text after a "\n"
    defined: dict[str, list[int]]  # top-level class/def name -> offsets
    assigned: frozenset[str]  # names assigned anywhere (name = ..., name: ...)
    imports: tuple[str, ...]  # every import statement's text

    @functools.cached_property
    def imported(self) -> frozenset[str]:
        """Every word of every import statement."""
        return frozenset(word for statement in self.imports for word in _WORD.findall(statement))


@functools.lru_cache(maxsize=64)
def _read(module: str) -> _Module | None:
    file = module_file(module) if module else None
    try:
        source = file.read_text(encoding="utf-8") if file is not None else None
    except (OSError, UnicodeDecodeError):
        return None
    if file is None or source is None:
        return None
    source = "\n" + source
    defined: dict[str, list[int]] = {}
    for match in _DEFINES.finditer(source):
        defined.setdefault(match.group(1), []).append(match.start() + 1)
    assigned = frozenset(m.group(1) for m in _ASSIGNS.finditer(source))
    return _Module(module, file, source, defined, assigned, tuple(_IMPORTS.findall(source)))


def _imported_from(mod: _Module, name: str) -> str | None:
    """The module ``name`` is re-exported from (``from .manager import Name``), if that is its one binding."""
    found = []
    for statement in mod.imports:
        if name not in _WORD.findall(statement):
            continue
        statement = statement.lstrip("\n")
        if statement[:1].isspace():
            return None  # bound under a condition (try, TYPE_CHECKING): only running it tells
        try:
            [node] = ast.parse(statement.strip()).body
        except (SyntaxError, ValueError):
            return None
        if not isinstance(node, ast.ImportFrom) or not any(a.name == name and a.asname is None for a in node.names):
            return None
        package = mod.name if mod.file.name == "__init__.py" else mod.name.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        found.append(".".join(p for p in ((package if node.level else ""), node.module or "") if p))
    return found[0] if len(found) == 1 else None


def _definition(mod: _Module, name: str) -> ast.ClassDef | ast.FunctionDef | None:
    """The one undecorated top-level ``class name`` / ``def name`` of the module, parsed alone."""
    starts = mod.defined.get(name, [])
    source = mod.source
    if len(starts) != 1 or source[: starts[0]].rstrip("\n").rpartition("\n")[2].startswith("@"):
        return None
    if name in mod.assigned or name in mod.imported:
        return None  # bound again (name = wrap(name), an import): only Python knows which binding wins
    block_end = _TOP_LEVEL.search(source, starts[0])
    block = source[starts[0] : block_end.start() if block_end else len(source)]
    text = _through_init(block) if block.startswith("class") else block
    try:
        tree = ast.parse(text) if text is not None else None
    except SyntaxError:
        return None
    if tree is None:
        return None
    node = tree.body[0] if len(tree.body) == 1 else None
    return node if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == name else None


def _through_init(block: str) -> str | None:
    """A class's text up to the end of its ``__init__`` (parsing the rest would only cost time).

    None when something after it may change the signature (a second
    ``__init__``, a ``__new__``): then only importing can tell.
    """
    first = _FIRST_DEF.search(block)
    if first is None:
        return block  # no methods: small
    indent = first.group(1)
    init = re.search(rf"\n{indent}def\s+__init__\s*\(", block)
    if init is None:
        return block[: first.start()] if not _LATER.search(block, first.start()) else None
    end = len(block)
    for line in re.finditer(r"\n([ \t]*)(\S?)", block[init.end() :]):
        if line.group(2) and line.group(2) not in "#)" and len(line.group(1)) <= len(indent):
            end = init.end() + line.start()
            break
    return None if _LATER.search(block, end) else block[:end]


def _find(module: str, name: str, depth: int = 0) -> tuple[str, ast.ClassDef | ast.FunctionDef] | None:
    """``(module, definition)`` of ``module.name``, following a plain re-export or two."""
    mod = _read(module) if depth < 4 else None
    if mod is None:
        return None
    node = _definition(mod, name)
    if node is not None:
        return module, node
    origin = _imported_from(mod, name)
    return _find(origin, name, depth + 1) if origin else None


def _own_init(cls: ast.ClassDef) -> ast.FunctionDef | bool | None:
    """The class's own plain ``__init__``; False when it has none; None when the signature may come from elsewhere."""
    if cls.keywords or cls.decorator_list:
        return None  # a metaclass or a class decorator may change the signature
    inits = []
    for statement in cls.body:
        names = [t.id for t in getattr(statement, "targets", []) if isinstance(t, ast.Name)]
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(statement.name)
        if any(n in _GENERATED for n in names):
            return None
        if "__init__" in names:
            if not isinstance(statement, ast.FunctionDef) or statement.decorator_list:
                return None
            inits.append(statement)
    if len(inits) > 1:
        return None
    return inits[0] if inits else False


def _init_of(module: str, cls: ast.ClassDef, depth: int = 0) -> ast.FunctionDef | None:
    """The ``__init__`` ``inspect.signature`` uses: the class's own, else its one base's, found the same way."""
    own = _own_init(cls)
    if own is not False:
        return own if isinstance(own, ast.FunctionDef) else None
    if depth >= 4 or len(cls.bases) != 1 or not isinstance(cls.bases[0], ast.Name):
        return None
    found = _find(module, cls.bases[0].id)
    if found is None or not isinstance(found[1], ast.ClassDef):
        return None
    return _init_of(found[0], found[1], depth + 1)


def _literal(node: ast.expr | None) -> tuple[bool, Any]:
    if node is None:
        return True, _EMPTY
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _params(args: ast.arguments, skip_first: bool, injected: tuple[str, ...]) -> tuple[list[Param], bool] | None:
    """Config parameters as ``inspect.signature`` would give them; None when a default is not a literal."""
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = list(zip(positional, defaults, strict=True))[1 if skip_first else 0 :]
    first_keyword = len(args.posonlyargs) - (1 if skip_first else 0)
    keyword = [pair for i, pair in enumerate(pairs) if i >= first_keyword]
    keyword += list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
    params = []
    for arg, default in keyword:
        ok, value = _literal(default)
        if not ok:
            return None
        if arg.arg not in injected:
            annotation = ast.unparse(arg.annotation) if arg.annotation is not None else _EMPTY
            params.append(Param(arg.arg, value, annotation))
    return params, args.kwarg is not None


def read_from_source(path: str, kind: str) -> TargetInfo | None:
    """The target at ``path`` read from its module's source; None when only importing it can tell."""
    module, _, name = path.rpartition(".")
    found = _find(module, name) if module else None
    if found is None:
        return None
    where, node = found
    if isinstance(node, ast.ClassDef):
        init = _init_of(where, node)
        if init is None or not (init.args.posonlyargs or init.args.args):
            return None
        read = _params(init.args, skip_first=True, injected=INJECTED.get(kind, ()))
    elif kind != "process":  # a process function is @pipeline_process'd: only its import says how
        read = _params(node.args, skip_first=False, injected=())
    else:
        return None
    if read is None:
        return None
    params, accepts_any = read
    return TargetInfo(path, kind, tuple(params), accepts_any, first_line(ast.get_docstring(node, clean=False)))
