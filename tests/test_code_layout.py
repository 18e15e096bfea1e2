"""The shape of console/ that keeps it easy to change (docs/ARCHITECTURE.md): no import cycle
between its modules, no console import hidden inside a function to dodge one, and no module so
long that it holds several concerns."""

import ast
from pathlib import Path

CONSOLE = Path(__file__).resolve().parent.parent / "console"
MAX_LINES = 550


def console_modules():
    for path in sorted(CONSOLE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(CONSOLE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def imported_console_modules(node, known):
    """The console modules one import statement names (`from console import audit` names
    console.audit when that is a module; otherwise the package)."""
    names = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        for alias in node.names:
            candidate = f"{node.module}.{alias.name}"
            names.append(candidate if candidate in known else node.module)
    return {name for name in names if name in known}


def module_level_imports(tree, known):
    """Imports that run when the module is imported (top level, and inside if/try at top level),
    leaving out `if TYPE_CHECKING:` blocks, which never run."""
    found = set()
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, (ast.If, ast.Try)):
            pending.extend(node.body + node.orelse + getattr(node, "finalbody", []))
            for handler in getattr(node, "handlers", []):
                pending.extend(handler.body)
        found |= imported_console_modules(node, known)
    return found


def import_graph():
    modules = dict(console_modules())
    known = set(modules)
    return {
        name: module_level_imports(ast.parse(path.read_text()), known) - {name}
        for name, path in modules.items()
    }


def find_cycle(graph):
    visiting, done = [], set()

    def visit(node):
        if node in visiting:
            return visiting[visiting.index(node) :] + [node]
        if node in done:
            return None
        visiting.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


def test_console_modules_import_each_other_without_a_cycle():
    graph = import_graph()
    assert "console.audit" in graph and graph["console.versions"], "the graph was not read"
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_console_module_is_imported_inside_a_function():
    """AppConfig.ready is the one place Django wants late imports (signals, checks)."""
    modules = dict(console_modules())
    known = set(modules)
    late = []
    for name, path in modules.items():
        if name == "console.apps":
            continue
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if imported_console_modules(node, known):
                    late.append(f"{name}.{function.name}:{node.lineno}")
    assert late == []


def test_no_console_module_is_longer_than_the_limit():
    too_long = {
        name: lines
        for name, path in console_modules()
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert too_long == {}
