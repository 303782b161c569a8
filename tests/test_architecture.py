"""The package's shape (docs/architecture.md): imports point down the layers, no cycles, no private names.

Every import statement in src/cxrtool is read with `ast` (those inside functions too), resolved to
the module it names, and checked against the layer table below. A new module that belongs to no
known unit, an import that points up, a cycle or `from x import _private` fails here with the
file and line, so the layering stays what the docs draw.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cxrtool"

FOUNDATION = [
    "optionspec",
    *("errors", "signals", "formatting", "safeio", "progress", "locks", "owned"),
    *("atomic", "environment", "runs", "run_locks", "config", "device"),
]
# unit -> the units it may import besides itself. The foundation modules may import those before
# them in FOUNDATION (and the package's `__init__`, which holds only the version).
ALLOWED: dict[str, set[str]] = {name: {"cxrtool", *FOUNDATION[:i]} for i, name in enumerate(FOUNDATION)}
ALLOWED["cxrtool"] = set()
BASE = {"cxrtool", *FOUNDATION}
ALLOWED.update(
    {
        "data": BASE,
        "models": BASE,
        "inference": BASE | {"data", "models"},
        "evaluate": BASE | {"data", "models", "inference"},
        "train": BASE | {"data", "models", "inference", "evaluate.metrics"},
        "predict": BASE | {"data", "models", "inference", "evaluate.thresholds"},
        "cam": BASE | {"data", "models", "inference"},
        "embed": BASE | {"data", "models", "inference"},
        "interop": BASE | {"data", "models", "inference"},
        "report": BASE | {"data", "models", "evaluate.published"},
        "demo": BASE | {"data", "models", "inference", "train", "evaluate", "predict", "cam", "embed", "report"},
    }
)
ALLOWED["commands"] = set(ALLOWED) - {"cli"}
ALLOWED["cli"] = BASE | {"commands"}
ALLOWED["__main__"] = {"cli"}


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


MODULES = _modules()


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports() -> list[tuple[str, str, str, int, bool]]:
    """(importing module, imported module, imported name or '', line, inside a function)."""
    out = []
    for module, (path, is_package) in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        in_function: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                in_function.update(id(n) for n in ast.walk(node) if n is not node)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith("cxrtool"):
                    continue
                for alias in node.names:
                    submodule = f"{target}.{alias.name}"
                    if submodule in MODULES:
                        out.append((module, submodule, "", node.lineno, id(node) in in_function))
                    else:
                        out.append((module, target, alias.name, node.lineno, id(node) in in_function))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("cxrtool"):
                        out.append((module, alias.name, "", node.lineno, id(node) in in_function))
    return out


IMPORTS = _imports()


def _where(module: str, line: int) -> str:
    return f"{MODULES[module][0].relative_to(PACKAGE.parent)}:{line}"


def test_every_module_belongs_to_a_known_unit():
    unknown = sorted({_unit(m) for m in MODULES} - set(ALLOWED))
    assert not unknown, f"add these to the layer table here and in docs/architecture.md: {unknown}"


def unexplained_lazy_imports() -> list[str]:
    """Imports inside a function with no `lazy` comment on or just above them, as 'file:line'."""
    found = []
    for module, (path, _) in MODULES.items():
        lines = path.read_text(encoding="utf-8").split("\n")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            imports = [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
            # One comment may explain a function's block of imports: look from just above the first.
            said = any("lazy" in line for n in imports for line in lines[n.lineno - 2 : n.end_lineno])
            if imports and not said:
                found.append(_where(module, imports[0].lineno))
    return found


def upward_imports(imports) -> list[str]:
    """The imports the layer table does not allow, as 'file:line: module imports target'."""
    wrong = []
    for module, target, _name, line, _ in imports:
        source, dest = _unit(module), _unit(target)
        if source == dest:
            continue
        allowed = ALLOWED[source]
        if dest in allowed or any(
            target == f"cxrtool.{a}" or target.startswith(f"cxrtool.{a}.") for a in allowed if "." in a
        ):
            continue
        wrong.append(f"{_where(module, line)}: {module} imports {target}")
    return sorted(set(wrong), key=wrong.index)


def test_imports_point_down_the_layers():
    wrong = upward_imports(IMPORTS)
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_every_import_inside_a_function_says_why():
    # Lazy imports are kept only to keep `cxrtool --help` fast or for optional or heavy libraries,
    # and each says so (`# lazy: ...`); none may be there to dodge an import cycle.
    missing = unexplained_lazy_imports()
    assert not missing, "imports inside functions without a '# lazy:' reason:\n" + "\n".join(missing)


def test_no_private_name_is_imported_from_another_module():
    private = [
        f"{_where(m, line)}: {m} imports {name} from {t}"
        for m, t, name, line, _ in IMPORTS
        if name.startswith("_") and not name.startswith("__")
    ]
    assert not private, "\n".join(private)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph (a path that returns to its start), or None."""
    graph = defaultdict(set, graph)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycle():
    graph: dict[str, set[str]] = defaultdict(set)
    for module, target, _name, _line, _ in IMPORTS:
        # A package's __init__ importing its own submodules is how packages re-export.
        if target != module and target in MODULES and not (MODULES[module][1] and target.startswith(module + ".")):
            graph[module].add(target)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checks_can_fail():
    # An upward import (data -> train), a command importing the CLI and a cycle are all reported.
    fake = [
        ("cxrtool.data.cache", "cxrtool.train.api", "", 1, False),
        ("cxrtool.commands.train", "cxrtool.cli", "", 2, False),
        ("cxrtool.train.api", "cxrtool.evaluate.metrics", "", 3, False),
    ]
    assert [w.split(": ", 1)[1] for w in upward_imports(fake)] == [
        "cxrtool.data.cache imports cxrtool.train.api",
        "cxrtool.commands.train imports cxrtool.cli",
    ]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None
