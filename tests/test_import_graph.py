"""The package's import graph has no circle, read from the source: neither among the imports a
module runs when it loads (:data:`GRAPH`) nor once the imports inside functions (lazy ones, for a
fast ``--help``) are counted too (:data:`FULL_GRAPH`); and ``--help`` of every command loads no
heavy library (run in a fresh interpreter).

Imports under ``if TYPE_CHECKING`` never run, so they are left out of both graphs.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ai_content_pipeline"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _top_level(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module loads (top level, also inside if/try blocks)."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node):
                found += _top_level(node.body) + _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            found += _top_level(node.body)
            for handler in node.handlers:
                found += _top_level(handler.body)
            found += _top_level(node.orelse) + _top_level(node.finalbody)
    return found


def _everywhere(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: at the top level and inside functions and classes
    (not under ``if TYPE_CHECKING``)."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.If) and _is_type_checking(node):
            found += _everywhere(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            continue
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                found += _everywhere([child])
            else:
                for grandchild in ast.walk(child):
                    if isinstance(grandchild, ast.stmt):
                        found += _everywhere([grandchild])
    return found


def module_imports(name: str, lazy: bool = False) -> set[str]:
    """The package modules ``name`` imports when it loads (``lazy``: also inside functions)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8")).body
    for node in (_everywhere(tree) if lazy else _top_level(tree)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in MODULES}
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            if sub in MODULES:
                out.add(sub)
            elif target in MODULES:
                out.add(target)
    out.discard(name)
    return out


GRAPH = {name: module_imports(name) for name in MODULES}
FULL_GRAPH = {name: module_imports(name, lazy=True) for name in MODULES}


def _cycle(graph: dict[str, set[str]] = GRAPH) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def test_the_graph_is_read() -> None:
    assert "ai_content_pipeline.stages.script" in GRAPH["ai_content_pipeline.stages.longform"]
    assert "ai_content_pipeline.stages.common" in GRAPH["ai_content_pipeline.stages.script"]
    assert len(GRAPH) > 40
    # the full graph has the lazy imports too (cli/script.py imports the stage inside its command)
    assert "ai_content_pipeline.stages.commands" not in GRAPH["ai_content_pipeline.cli.script"]
    assert "ai_content_pipeline.stages.commands" in FULL_GRAPH["ai_content_pipeline.cli.script"]


def test_no_import_circle() -> None:
    assert _cycle() is None, " -> ".join(_cycle() or [])
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # it finds one


def test_no_import_circle_counting_imports_inside_functions() -> None:
    assert _cycle(FULL_GRAPH) is None, " -> ".join(_cycle(FULL_GRAPH) or [])


def test_script_and_longform_do_not_import_each_other() -> None:
    """Long-form builds on the script stage; the script stage never names long-form (the
    registry picks long-form: ``stages/registry.py``)."""
    script = "ai_content_pipeline.stages.script"
    longform = "ai_content_pipeline.stages.longform"
    assert longform not in FULL_GRAPH[script]
    assert "longform import" not in MODULES[script].read_text(encoding="utf-8")
    # long-form reaches the script stage by subclassing it, not through lazy imports of its helpers
    assert MODULES[longform].read_text(encoding="utf-8").count("from .script import") == 1


def test_the_text_helpers_are_a_leaf() -> None:
    assert GRAPH["ai_content_pipeline.text"] == set()


#: What ``--help`` must not load: the model engines, and the libraries only a running command needs.
HEAVY = ("pydantic", "numpy", "jinja2", "llama_cpp", "yaml", "torch", "onnxruntime", "piper", "av",
         # the server stack (the [serve] extra)
         "fastapi", "starlette", "sse_starlette", "uvicorn", "sqlalchemy", "alembic", "prometheus_client")

_LOADED = """\
import importlib, sys
module, sys.argv = sys.argv[1], sys.argv[2:]
try:
    importlib.import_module(module).main()
except SystemExit:
    pass
heavy = {{{heavy}}}
print(sorted(m for m in sys.modules if m.split('.')[0] in heavy), file=sys.stderr)
"""


def _loaded_by(module: str, *argv: str) -> tuple[str, list[str]]:
    """Run ``module.main()`` with ``argv`` in a fresh interpreter: (stdout, heavy modules it loaded)."""
    code = _LOADED.format(heavy=", ".join(repr(h) for h in HEAVY))
    done = subprocess.run([sys.executable, "-c", code, module, *argv], capture_output=True, text=True,
                          timeout=120, check=False)
    loaded: list[str] = ast.literal_eval(done.stderr.strip().splitlines()[-1])
    return done.stdout, loaded


HELP_RUNS = [
    ("ai_content_pipeline.cli.main", ("aicp", "--help")),
    ("ai_content_pipeline.cli.script", ("aicp-script", "--help")),
    ("ai_content_pipeline.cli.voice", ("aicp-voice", "--help")),
    ("ai_content_pipeline.cli.mix", ("aicp-mix", "--help")),
    *[("ai_content_pipeline.cli.main", ("aicp", *cmd.split(), "--help"))
      for cmd in ("script", "voice", "mix", "run-chain", "merge", "feed", "templates", "templates list", "templates show",
                  "templates new", "personas", "personas show", "doctor", "logs", "serve", "worker",
                  "voices", "voices say", "voices list")],
]


@pytest.mark.parametrize(("module", "argv"), HELP_RUNS, ids=[" ".join(a) for _, a in HELP_RUNS])
def test_help_loads_no_heavy_library(module: str, argv: tuple[str, ...]) -> None:
    """``--help`` stays instant: it imports no engine, nor pydantic, numpy, Jinja2 or PyYAML
    (``aicp --help`` loads every command module for the one-line help of each)."""
    out, loaded = _loaded_by(module, *argv)
    assert "Usage:" in out
    assert loaded == []


def test_the_help_check_sees_a_heavy_import() -> None:
    """The check above can fail: a command that runs loads the templates library (pydantic, PyYAML)."""
    out, loaded = _loaded_by("ai_content_pipeline.cli.main", "aicp", "templates", "list")
    assert '"name":"song-intro"' in out
    assert {"pydantic", "yaml"} <= {m.split(".")[0] for m in loaded}
