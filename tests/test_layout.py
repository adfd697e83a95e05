"""The library's folders import in one direction (docs/architecture.md): a module never imports a
folder listed below its own, and the library never imports the benchmark harness."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the order of docs/architecture.md: a folder may import those before it, never those after
ORDER = ["errors", "files", "ranking", "text", "data", "core", "serving", "evaluation", "training", "cli"]
LEAVES = {"errors", "files", "ranking"}  # import nothing of the project


def place(module: str) -> str | None:
    """The folder (or top-level module) of `idream.x.y`; None for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "idream" else None


def imports(path: Path) -> list[str]:
    """Every module the file imports, at the top or inside a function."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out += [node.module] + [f"{node.module}.{a.name}" for a in node.names
                                    if node.module == "idream"]
    return out


def test_every_library_module_lives_in_a_known_place():
    for path in (ROOT / "idream").rglob("*.py"):
        rel = path.relative_to(ROOT / "idream")
        if rel.parts[0] not in ("__init__.py", "__main__.py"):
            assert Path(rel.parts[0]).stem in ORDER, f"idream/{rel}: add its folder to docs/architecture.md"


def test_folders_import_only_the_folders_above_them():
    bad = []
    for path in (ROOT / "idream").rglob("*.py"):
        rel = path.relative_to(ROOT / "idream")
        if rel.parts[0] in ("__init__.py", "__main__.py"):
            continue
        here = Path(rel.parts[0]).stem
        for module in imports(path):
            assert not module.startswith(("benchmarks", "demo", "gradio")), f"idream/{rel} imports {module}"
            there = place(module)
            if there is None or there == here or there.startswith("__"):
                continue
            if here in LEAVES or ORDER.index(there) > ORDER.index(here):
                bad.append(f"idream/{rel} ({here}) imports {module} ({there})")
    assert not bad, "\n".join(bad)


def test_the_check_sees_a_wrong_import(tmp_path):
    """The walk finds an import inside a function, where an upward import would hide."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from idream.cli.common import CLIError\n    return CLIError\n")
    assert "idream.cli.common" in imports(f) and place("idream.cli.common") == "cli"
