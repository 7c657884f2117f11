"""The package's shape: imports point one way, and everything before the worker runs without torch.

Checked by reading every module's imports (module level and inside functions) with ``ast``:
the command behind the closing note's "no import cycle" is ``pytest tests/test_architecture.py``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "transferbench"
# Which subpackages each layer may import (besides the leaf modules errors, fileio, provenance,
# shipped and itself). The CLI and the entry points (cli, demo, bench, __main__) may import anything.
ALLOWED = {
    "schema": set(),
    "tasks": {"schema"},
    "study": {"schema", "tasks", "worker"},  # the executors start the worker (run_task), never the other way
    "worker": {"schema", "tasks"},
    "analysis": {"schema", "study"},  # collect reads the study's records; nothing of the worker
    "probe": {"schema", "tasks", "study", "worker", "analysis"},  # forward passes of trained networks
}
LEAVES = {"errors", "fileio", "provenance", "shipped", "__init__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every transferbench module ``path`` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("transferbench")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("transferbench"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).is_file() else node.module)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in PACKAGE.rglob("*.py")}


def test_imports_point_one_way():
    for module, targets in graph().items():
        parts = module.split(".")
        layer = parts[1] if len(parts) > 2 else None
        if layer not in ALLOWED:
            continue
        for target in targets:
            target_parts = target.split(".")
            target_layer = target_parts[1] if len(target_parts) > 1 else None
            if target_layer in LEAVES or target == "transferbench" or target_layer == layer:
                continue
            assert target_layer in ALLOWED[layer], f"{module} imports {target}: {layer} may import only {ALLOWED[layer]}"


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if target not in edges or target == module:
                continue
            assert state.get(target) != 1, "import cycle: " + " -> ".join([*path, module, target])
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [])


def test_analysis_and_schema_never_import_torch():
    for path in [*(PACKAGE / "analysis").rglob("*.py"), *(PACKAGE / "schema").rglob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert "torch" not in names and "torchvision" not in names, path


def test_planning_submitting_status_collecting_and_plotting_import_no_torch(tmp_path):
    script = f"""
import sys
from pathlib import Path
from transferbench.study.plan import build_plan, write_plan
from transferbench.study.submit import submit
from transferbench.study.status import status_table
from transferbench.analysis.results import collect_rows, read_csv
from transferbench.analysis.figures import plot_all
plan = build_plan(Path({str(REPO / 'configs' / 'yosinski2014.toml')!r}), Path({str(tmp_path)!r}))
write_plan(plan, echo=lambda *_: None)
assert len(plan.jobs) == 170
from transferbench.errors import UserError
try:
    submit(plan.study_dir, "slurm", dry_run=True, echo=lambda *_: None)
except UserError as exc:  # (without ImageNet's folder nothing can run, and the dry run says so)
    assert "ImageNet needs its folder" in str(exc)
status_table(plan.study_dir)
assert collect_rows(plan.study_dir)[0] == []
rows = read_csv(Path({str(REPO / 'results' / 'yosinski2014.csv')!r}))
plot_all(rows, Path({str(tmp_path / 'figures')!r}), echo=lambda *_: None)
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]", run.stdout
