"""Which modules may import which: the REST API sits on top of the domain apps, the CLI calls
actions (never the API's schemas or errors). Read from the source with ``ast``, function-local
imports included, so a cycle hidden inside a function fails too."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OKURU = ROOT / "okuru"
# Every package of the project but the API itself (new apps are covered the day they land).
DOMAIN_APPS = sorted(p.parent.name for p in OKURU.glob("*/__init__.py") if p.parent.name != "api")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every okuru module ``path`` imports, anywhere in the file (``from a import b``: both
    ``a`` and ``a.b``, since ``b`` may be a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m == "okuru" or m.startswith("okuru.")}


def modules(package: str) -> dict[str, set[str]]:
    base = OKURU.joinpath(*package.split(".")[1:])
    return {module_name(p): imported(p) for p in sorted(base.rglob("*.py"))}


def offenders(package: str, forbidden: str) -> list[str]:
    return sorted(
        f"{mod} imports {m}"
        for mod, deps in modules(package).items()
        for m in deps
        if m == forbidden or m.startswith(forbidden + ".")
    )


def test_the_domain_apps_never_import_the_api():
    assert {"customers", "mailings", "tracking"} <= set(DOMAIN_APPS)
    found = [line for app in DOMAIN_APPS for line in offenders(f"okuru.{app}", "okuru.api")]
    assert found == []


def test_it_sees_a_function_local_import(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from okuru.api.errors import ApiError\n")
    assert "okuru.api.errors" in imported(source)


def test_mailings_never_imports_tracking():
    # Tracking knows mailings (its events and counters live on mailings' tables); the reverse
    # would tie the sending side to the tracking endpoints.
    assert offenders("okuru.mailings", "okuru.tracking") == []


def test_the_commands_never_import_the_api():
    found = [
        line
        for app in DOMAIN_APPS
        for line in offenders(f"okuru.{app}.management", "okuru.api")
        if (OKURU / app / "management").is_dir()
    ]
    assert found == []


def test_the_sending_layers_import_only_downwards():
    # models → ledger → {sending, actions} → tasks: the worker and the operator's actions share
    # the ledger; neither imports the other, and only tasks knows the worker's task.
    deps = modules("okuru.mailings")
    below = {
        "okuru.mailings.ledger": ("actions", "sending", "tasks", "relays"),
        "okuru.mailings.relays": ("actions", "sending", "tasks"),
        "okuru.mailings.sending": ("actions", "tasks"),
        "okuru.mailings.actions": ("sending", "tasks"),
    }
    found = [
        f"{mod} imports {dep}"
        for mod, forbidden in below.items()
        for dep in deps[mod]
        if dep.removeprefix("okuru.mailings.") in forbidden
    ]
    assert found == []


def test_lib_never_imports_an_app():
    # okuru.lib is the toolbox under every app: the SMTP client reports replies, it does not
    # know what an error kind is.
    found = [
        f"{mod} imports {dep}"
        for mod, deps in modules("okuru.lib").items()
        for dep in deps
        if dep != "okuru" and not dep.startswith("okuru.lib")
    ]
    assert found == []


def test_mailings_calls_bounces_and_bounces_reads_only_mailings_models():
    # Sending asks bounces what a reply means and how it counts (mailings → bounces). Bounces
    # writes a bounce's outcome into mailings' tables (the ledger row, the delivery's counters,
    # its events, list cleaning), so it may import okuru.mailings.models and nothing else of
    # mailings; the kinds, the reply verdicts, the counts and the Bounce models import none of it.
    deps = modules("okuru.bounces")
    found = [
        f"{mod} imports {dep}"
        for mod, imported_ in deps.items()
        for dep in imported_
        if (dep == "okuru.mailings" or dep.startswith("okuru.mailings."))
        and not dep.startswith("okuru.mailings.models")
    ]
    assert found == []
    pure = ("kinds", "replies", "counts", "models")
    assert [
        f"okuru.bounces.{m} imports {dep}"
        for m in pure
        for dep in deps[f"okuru.bounces.{m}"]
        if dep.startswith("okuru.mailings")
    ] == []
    assert "okuru.bounces.replies" in modules("okuru.mailings")["okuru.mailings.sending"]
