"""The layering rules of docs/architecture.md, checked on every module's imports (ast, no import).

A rule broken here is a hidden seam coming back: the store loading the stages above it, a
stage orchestrating other stages, library code importing the CLI."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "edx_engine"

# Top-level parts of the package that are stages (compute something, hand files to the store).
STAGES = {"ingest", "models", "geo", "privacy", "fetch", "reports", "dashboard"}
# May chain several stages: the orchestrator, and the front ends that present what stages made.
ORCHESTRATORS = {"pipeline", "cli", "dashboard"}
# Compatibility aliases (one-line re-exports of a module's new home), allowed to point anywhere.
ALIASES = {"lake", "ledger", "ingest.run"}
# Stage pairs that existed before the redesign and are not orchestration (one stage using another's
# result): listed so that a new one is a decision, not an accident.
KNOWN_STAGE_USES = {
    ("privacy", "geo"),  # scrub locates learners (country) before it drops the IP addresses
    ("reports", "models"),  # reports read built models
    ("reports", "privacy"),  # the public report applies the export's suppression specs
    ("reports", "dashboard"),  # column labels shared with the dashboard (dashboard.labels)
}
# Edges kept only until their user moves (module, imported module) -> why.
TEMPORARY = {
    ("fetch.sync", "pipeline.sync"): "lazy compatibility alias: Syncer moved to pipeline.sync",
}


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Absolute edx_engine module names (without the ``edx_engine.`` prefix) imported anywhere in
    the module, including imports inside functions."""
    tree = ast.parse(path.read_text(), str(path))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("edx_engine."):
                    out.add(a.name[len("edx_engine."):])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1] if node.level > 1 else package
                mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
                # ``from . import x``: x may be a module
                out.update(f"{mod}.{a.name}".lstrip(".") if not node.module else mod for a in node.names)
            elif node.module and node.module.startswith("edx_engine"):
                mod = node.module[len("edx_engine"):].lstrip(".")
                out.update(f"{mod}.{a.name}".lstrip(".") if not mod else mod for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("edx_engine."):
            out.add(node.value[len("edx_engine."):])  # importlib.import_module("edx_engine.x")
    return {m for m in out if m}


def _top(mod: str) -> str:
    top = mod.split(".")[0]
    return "cli" if top.startswith("cli_") else top  # the CLI before it became a package: cli_*.py


MODULES = _modules()
IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def test_the_parser_sees_imports():
    """The rules below are only as good as this parser: known edges must be found."""
    assert "store.lake" in IMPORTS["ingest.exports"]
    assert "store.views" in IMPORTS["store.lake"]
    assert "ingest.events" in IMPORTS["pipeline.import_run"]
    assert "store.catalog" in IMPORTS["store.views"]  # ``from . import catalog``


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _top(n) == "store"))
def test_store_imports_no_stage(name):
    bad = sorted(m for m in IMPORTS[name] if _top(m) in STAGES | ORCHESTRATORS)
    assert not bad, f"store module {name} imports {bad}: the store must not know the stages above it"


def test_no_view_hooks_or_module_loaders_left():
    """The hidden cycle of issue 16: the store importing stages by name to collect view hooks."""
    for name, path in MODULES.items():
        text = path.read_text()
        assert "register_view_hook" not in text, name
        if _top(name) in {"store", "privacy"}:
            assert "importlib" not in text, name


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _top(n) not in ORCHESTRATORS and n not in ALIASES))
def test_only_pipeline_chains_stages(name):
    own = _top(name)
    mods = {m for m in IMPORTS[name] if (name, m) not in TEMPORARY}
    others = {_top(m) for m in mods} & (STAGES | {"pipeline"}) - {own}
    unknown = {o for o in others if (own, o) not in KNOWN_STAGE_USES}
    assert not unknown, (f"{name} imports the stage(s) {sorted(unknown)}: chaining stages belongs in "
                         f"edx_engine/pipeline/ (or list a one-way use in KNOWN_STAGE_USES with a reason)")


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _top(n) != "cli" and n != "__main__"))
def test_no_module_imports_the_cli(name):
    bad = sorted(m for m in IMPORTS[name] if _top(m) == "cli")
    assert not bad, f"{name} imports the CLI ({bad}): library code reports through return values"


def test_aliases_are_thin():
    """The compatibility modules only re-export (one docstring, imports, nothing else)."""
    for alias in ALIASES:
        tree = ast.parse(MODULES[alias].read_text())
        body = tree.body[1:]  # after the docstring
        assert "compatibility alias" in (ast.get_docstring(tree) or ""), alias
        assert all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in body), alias


def test_store_builds_every_view_without_loading_a_stage(tmp_path):
    """A fresh process that only uses the store gets the events and model views too, and never
    loads a stage (the old store imported ingest.events, geo and models.build to collect hooks)."""
    import subprocess
    import sys

    code = (
        "import sys, duckdb\n"
        "from edx_engine.store import Lake\n"
        f"Lake({str(tmp_path)!r}).init()\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[1:2] and m.split('.')[1] in "
        "('ingest', 'geo', 'models', 'privacy', 'fetch', 'reports', 'dashboard', 'pipeline', 'cli'))\n"
        "assert not loaded, loaded\n"
        f"con = duckdb.connect({str(tmp_path / 'edx.duckdb')!r}, read_only=True)\n"
        "views = {r[0] for r in con.execute(\"SELECT view_name FROM duckdb_views() WHERE NOT internal\").fetchall()}\n"
        "schemas = {r[0] for r in con.execute('SELECT schema_name FROM duckdb_schemas()').fetchall()}\n"
        "print(sorted(views & {'auth_user', 'quarantine', 'events', 'events_all', 'events_video'}), 'models' in schemas)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[0] == "['auth_user', 'events', 'events_all', 'events_video', 'quarantine'] True"


# -- who writes the catalog's bookkeeping tables ----------------------------------------------------

_WRITE = re.compile(r"\b(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|DELETE\s+FROM|UPDATE|"
                    r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP\w*\s+)?(?:TABLE|VIEW)(?:\s+IF\s+NOT\s+EXISTS)?)"
                    r"\s+(?:\{[^}]*\}\.|\w+\.)?(_edx_\w+)", re.IGNORECASE)
# Modules outside store/ still writing bookkeeping tables with SQL strings -> why.
CATALOG_WRITERS_LEFT = {
    "models.build": "the models' bookkeeping (_edx_models, _edx_model_inputs, and PostgreSQL's models._edx_*) "
                    "moves to store/catalog.py with the models rework",
}


def _sql_texts(path: Path) -> list[str]:
    """Every string literal of a module, f-strings with their placeholders kept as ``{...}``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append(node.value)
        elif isinstance(node, ast.JoinedStr):
            out.append("".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values))
    return out


def _catalog_writes(name: str) -> set[str]:
    return {m.group(1) for text in _sql_texts(MODULES[name]) for m in _WRITE.finditer(text)}


def test_the_write_finder_sees_writes():
    """Checked against statements of each form, and against the store, which does write."""
    texts = ["INSERT INTO _edx_geo VALUES (?)", "insert or replace into _edx_meta values (1)",
             "DELETE FROM _edx_event_parts WHERE x", "UPDATE _edx_event_files f SET a=1",
             "CREATE TABLE IF NOT EXISTS {}._edx_models (a INT)", "SELECT * FROM _edx_snapshots"]
    assert [sorted(m.group(1) for m in _WRITE.finditer(t)) for t in texts] == [
        ["_edx_geo"], ["_edx_meta"], ["_edx_event_parts"], ["_edx_event_files"], ["_edx_models"], []]
    assert {"_edx_snapshots", "_edx_event_files", "_edx_geo", "_edx_scrub_log"} <= _catalog_writes("store.catalog")


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _top(n) != "store"))
def test_bookkeeping_tables_are_written_only_in_store(name):
    """Issue 16: the catalog had many owners. A stage hands its rows to a typed function of
    store/catalog.py (or store/ledger.py) instead of writing ``_edx_*`` with its own SQL."""
    writes = _catalog_writes(name)
    if name in CATALOG_WRITERS_LEFT:
        assert writes, f"{name} no longer writes the catalog: drop it from CATALOG_WRITERS_LEFT"
        return
    assert not writes, (f"{name} writes {sorted(writes)} with SQL of its own: add a typed writer to "
                        f"store/catalog.py and call it")


_MARKUP = re.compile(r"\[/\]|\[/?(?:bold|red|yellow|green|cyan|dim|italic|blue|magenta)\b[^\]]*\]")


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _top(n) != "cli"))
def test_only_the_cli_styles_output(name):
    """Library code reports plain text through results and callbacks (e.g. the sync's SyncNote:
    a level and a line); colours and rich markup are the CLI's business."""
    tree = ast.parse(MODULES[name].read_text())
    rich = sorted({n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                   and n.module.split(".")[0] == "rich"}
                  | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
                     if a.name.split(".")[0] == "rich"})
    assert not rich, f"{name} imports {rich}: only cli/ styles output"
    marked = [t for t in _sql_texts(MODULES[name]) if _MARKUP.search(t)]
    assert not marked, f"{name} writes rich markup: {marked[:3]}"


def test_the_markup_finder_sees_markup():
    assert [bool(_MARKUP.search(t)) for t in ("[red]failed[/] x", "[bold red]x", "[yellow]ignored", "a [1] b",
                                              "[^a-z]*", "list[str]")] == [True, True, True, False, False, False]


# Modules that still read the wall clock themselves -> why (everything else uses edx_engine.clock.now).
OWN_CLOCKS = {
    "models.definitions": "Params.built_at: the models' module belongs to the models rework",
    "privacy.export": "the export manifest's created_at is an aware ISO string (+00:00), not a catalog stamp",
}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n != "clock"))
def test_one_clock(name):
    """Issue 16 found four "now" helpers; the catalog's stamps come from clock.now alone."""
    text = MODULES[name].read_text()
    own = re.findall(r"datetime\.now\(|datetime\.utcnow\(|time\.gmtime\(", text)
    assert bool(own) == (name in OWN_CLOCKS), (f"{name} reads the clock itself ({own}): use edx_engine.clock.now"
                                               if own else f"{name} no longer reads the clock: drop it from OWN_CLOCKS")
