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
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import Any

from tipi.params.target import INJECTED, Param, TargetInfo, first_line

__all__ = ["module_file", "read_from_source"]

_EMPTY = inspect.Parameter.empty
_IMPORTS = re.compile(r"^(?:from\s+\S+\s+)?import\s+(?:\([^)]*\)|[^\n]*)", re.MULTILINE)
_GENERATED = ("__new__", "__signature__", "__tipi_signature__", "__init_subclass__")


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


def _definition(source: str, name: str) -> ast.ClassDef | ast.FunctionDef | None:
    """The one undecorated top-level ``class name`` / ``def name`` of ``source``, parsed alone."""
    lines = source.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(rf"(class|def)\s+{re.escape(name)}\b", line)]
    if len(starts) != 1 or (starts[0] > 0 and lines[starts[0] - 1].startswith("@")):
        return None
    word = re.compile(rf"\b{re.escape(name)}\b")
    if re.search(rf"^{re.escape(name)}\s*[:=,]", source, re.MULTILINE) or any(
            word.search(statement) for statement in _IMPORTS.findall(source)):
        return None  # bound again (name = wrap(name), an import): only Python knows which binding wins
    end = next((j for j in range(starts[0] + 1, len(lines))
                if lines[j] and not lines[j][0].isspace() and lines[j][0] not in "#)]}"), len(lines))
    try:
        tree = ast.parse("\n".join(lines[starts[0]:end]))
    except SyntaxError:
        return None
    node = tree.body[0] if len(tree.body) == 1 else None
    return node if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == name else None


def _own_init(cls: ast.ClassDef) -> ast.FunctionDef | None:
    """The class's own, plain ``__init__``; None when the signature may come from anywhere else."""
    if cls.keywords or cls.decorator_list:
        return None  # a metaclass or a class decorator may change the signature
    inits = []
    for statement in cls.body:
        names = [t.id for t in getattr(statement, "targets", []) if isinstance(t, ast.Name)]
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(statement.name)
        if any(n in _GENERATED for n in names) or (names.count("__init__") and not isinstance(statement,
                                                                                              ast.FunctionDef)):
            return None
        if isinstance(statement, ast.FunctionDef) and statement.name == "__init__":
            inits.append(statement)
    if len(inits) != 1 or inits[0].decorator_list:
        return None
    return inits[0]


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
    pairs = list(zip(positional, defaults, strict=True))[1 if skip_first else 0:]
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
    file = module_file(module) if module else None
    if file is None:
        return None
    try:
        source = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    node = _definition(source, name)
    if isinstance(node, ast.ClassDef):
        init = _own_init(node)
        if init is None or not (init.args.posonlyargs or init.args.args):
            return None
        read = _params(init.args, skip_first=True, injected=INJECTED.get(kind, ()))
    elif isinstance(node, ast.FunctionDef) and kind != "process":  # a process function is @pipeline_process'd
        read = _params(node.args, skip_first=False, injected=())
    else:
        return None
    if read is None:
        return None
    params, accepts_any = read
    return TargetInfo(path, kind, tuple(params), accepts_any, first_line(ast.get_docstring(node, clean=True)))
