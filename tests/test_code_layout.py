"""The shape of console/ that keeps it easy to change (docs/ARCHITECTURE.md): no import cycle
between its modules, no console import hidden inside a function to dodge one, and no module so
long that it holds several concerns."""

import ast
import re
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
    """console/apps.py is the one place for late imports: AppConfig.ready (signals, checks) and
    the receivers that load their module when first called (console/signals.py)."""
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


# --- what differs by provider kind lives in console/kinds/ -------------------------------------

KIND_VALUES = "|".join(["cognito", "keycloak", "oidc"])
KIND_BRANCHES = re.compile(
    rf"""Kind\.(COGNITO|KEYCLOAK|OIDC)\b          # the model's constants
    | _BY_KIND\b                                  # a table keyed by kind
    | [!=]=\s*["'](?:{KIND_VALUES})["']           # a comparison with a kind's value
    | ["'](?:{KIND_VALUES})["']\s*[!=]=
    | \b(?:COGNITO|KEYCLOAK|OIDC)\s+(?:not\s+)?in\b
    | (?:not\s+)?in\s+\(\s*["'](?:{KIND_VALUES})["']   # membership in a tuple of kinds
    | kind__in\s*=\s*[\[(]\s*["']
    """,
    re.VERBOSE,
)


def kind_branches(text):
    return [line.strip() for line in text.splitlines() if KIND_BRANCHES.search(line)]


def test_no_code_outside_the_kind_modules_branches_on_a_provider_kind():
    """Shared code asks the registry (console/kinds/__init__.py); the model's choices aside."""
    found = {}
    sources = [*CONSOLE.rglob("*.py"), *(CONSOLE.parent / "templates").rglob("*.html")]
    for path in sources:
        relative = path.relative_to(CONSOLE.parent).as_posix()
        if relative.startswith(
            ("console/kinds/", "console/migrations/", "templates/console/kinds/")
        ):
            continue
        if relative == "console/models/provider.py":
            continue  # Provider.Kind, the choices themselves
        if lines := kind_branches(path.read_text()):
            found[relative] = lines
    assert found == {}


def test_the_kind_branch_finder_finds_branches():
    assert kind_branches('if provider.kind == "keycloak":\n    pass') == [
        'if provider.kind == "keycloak":'
    ]
    assert kind_branches("x = FORMS_BY_KIND[kind]\nkind is Provider.Kind.OIDC") != []
    assert kind_branches('{% if provider.kind == "cognito" %}') != []
    assert kind_branches('if kind in ("cognito", "keycloak"):') != []
    assert kind_branches('if destination.kind == "email":') == []  # alert kinds are not these


def test_the_console_imports_no_agent_script():
    """The agent shares its pure modules (agent/signin.py, agent/envfile.py); the script
    operators download is served, not imported."""
    users = [
        f"{name}:{number}"
        for name, path in console_modules()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "diffgram_sso_agent" in line
    ]
    assert users == []


# --- the invariants of docs/ARCHITECTURE.md ----------------------------------------------------


def test_audit_events_are_recorded_through_a_change_not_a_bare_transaction():
    """audit.change() appends a transaction's events as its last statement, so the chain
    head's lock is always taken last; inside a bare transaction.atomic() record() would take
    it wherever it is called."""
    bare = []
    for name, path in console_modules():
        if name == "console.audit":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.With):
                continue
            if not any(
                ast.unparse(item.context_expr).startswith("transaction.atomic")
                for item in node.items
            ):
                continue
            for call in ast.walk(node):
                if isinstance(call, ast.Call) and ast.unparse(call.func) in (
                    "audit.record", "audit.record_many",
                ):  # fmt: skip
                    bare.append(f"{name}:{call.lineno}")
    assert bare == []


def test_architecture_names_every_console_module():
    text = (CONSOLE.parent / "docs" / "ARCHITECTURE.md").read_text()
    missing = []
    for _, path in console_modules():
        relative = path.relative_to(CONSOLE).as_posix()
        if "/commands/" in relative or relative.endswith("__init__.py"):
            continue  # the commands are listed in the README; packages by their modules
        if f"`{relative}`" not in text:
            missing.append(relative)
    assert missing == []
