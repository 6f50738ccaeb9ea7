"""Dependencies run one way (HackSoft's styleguide): reads never import
writes, no app imports another app's services, and no import cycle, counting
imports inside functions too. Read from the source with ``ast``."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "kaiwa"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The kaiwa modules ``path`` imports, anywhere in it (relative ones resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def graph() -> dict[str, set[str]]:
    files = [p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts]
    modules = {module_name(p): p for p in files}
    return {
        name: {m for m in imports_of(p) if m in modules and m != name}
        for name, p in modules.items()
    }


def app_of(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


def test_no_app_imports_another_apps_services():
    wrong = [
        (a, b)
        for a, targets in graph().items()
        for b in targets
        if b.endswith(".services") and app_of(a) != app_of(b)
    ]
    assert wrong == []


def test_reads_never_import_writes():
    wrong = [
        (a, b)
        for a, targets in graph().items()
        if a.endswith(".selectors")
        for b in targets
        if b.endswith(".services")
    ]
    assert wrong == []


def test_chat_does_not_import_notifications():
    wrong = [
        (a, b)
        for a, targets in graph().items()
        if app_of(a) == "chat"
        for b in targets
        if app_of(b) == "notifications"
    ]
    assert wrong == []


def test_there_is_no_import_cycle():
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_the_graph_sees_the_imports_it_checks():
    # The checks above are worth something only if the graph is right.
    edges = graph()
    assert "kaiwa.chat.models" in edges["kaiwa.chat.selectors"]
    assert "kaiwa.chat.services" in edges["kaiwa.chat.realtime.writer"]
    assert "kaiwa.notifications.services" in edges["kaiwa.notifications.tasks"]


# The HTTP and WebSocket surfaces of the chat app, which may call real-time code
# (the REST API shares the sockets' flood limits and presence).
SURFACES = {"api", "views", "admin", "routing", "urls", "apps"}
PUBLISHING = {"kaiwa.chat.realtime", "kaiwa.chat.realtime.publish"}


def is_domain(module: str) -> bool:
    parts = module.split(".")
    if app_of(module) in ("accounts", "notifications"):
        return True
    return app_of(module) == "chat" and len(parts) > 2 and parts[2] not in SURFACES | {"realtime"}


def test_the_domain_reaches_real_time_code_through_publish_only():
    wrong = [
        (a, b)
        for a, targets in graph().items()
        if is_domain(a)
        for b in targets
        if b.startswith("kaiwa.chat.realtime") and b not in PUBLISHING
    ]
    assert wrong == []


def test_the_domain_check_sees_the_domain():
    assert is_domain("kaiwa.chat.services.messages")
    assert is_domain("kaiwa.chat.retention")
    assert is_domain("kaiwa.notifications.services")
    assert not is_domain("kaiwa.chat.realtime.hub")
    assert not is_domain("kaiwa.chat.api")
