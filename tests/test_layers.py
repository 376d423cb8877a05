"""Imports run one way: each layer may use the layers below it, never one above.

Two checks, because each misses what the other sees:
- every module is imported alone in a fresh interpreter, and the cinecube modules that
  import pulled in (at module level, through any chain) must all sit at its layer or below;
- every import statement in the source, including those inside functions (which run only
  when called), must name a module at its own layer or below.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "cinecube"

# Bottom to top. A module belongs to the layer of the longest prefix that names it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("configs and errors", ("cinecube", "cinecube.config", "cinecube.errors")),
    (
        "networks and files (model folders, videos, output paths)",
        (
            "cinecube.outputs",
            "cinecube.patches",
            "cinecube.transformer",
            "cinecube.autoencoder",
            "cinecube.text",
            "cinecube.model_folder",
            "cinecube.video_io",
        ),
    ),
    ("data", ("cinecube.data",)),
    (
        "diffusion, sampling, pipeline, safety",
        (
            "cinecube.diffusion",
            "cinecube.sampling",
            "cinecube.conditioning",
            "cinecube.prompting",
            "cinecube.pipeline",
            "cinecube.safety",
        ),
    ),
    ("training", ("cinecube.train",)),
    ("evaluation", ("cinecube.evaluate",)),
    ("command line and server", ("cinecube.cli", "cinecube.commands", "cinecube.server", "cinecube.__main__")),
]


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None or (best == 0 and module not in LAYERS[0][1]):
        raise AssertionError(f"module {module} has no layer: add it to LAYERS in {Path(__file__).name}")
    return best


def all_modules() -> list[str]:
    found = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


MODULES = all_modules()


def test_every_module_has_a_layer():
    assert len(MODULES) > 40
    for module in MODULES:
        layer_of(module)


def _imported_names(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import statement in a file, at any depth."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from . import x` / `from cinecube.safety import guard` may name submodules.
            candidates = [f"{target}.{alias.name}" for alias in node.names]
            names += [(node.lineno, c if c in MODULES else target) for c in candidates]
    return sorted({(line, name) for line, name in names if name == "cinecube" or name.startswith("cinecube.")})


def test_no_import_statement_points_upward():
    upward = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        own = layer_of(module)
        for line, target in _imported_names(path, module):
            if layer_of(target) > own:
                upward.append(
                    f"{path.relative_to(PACKAGE_DIR.parent)}:{line} ({LAYERS[own][0]}) imports "
                    f"{target} ({LAYERS[layer_of(target)][0]})"
                )
    assert not upward, "imports that point to a higher layer:\n" + "\n".join(upward)


_LOADED = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m == "cinecube" or m.startswith("cinecube."))))
"""


@pytest.mark.parametrize("layer", range(len(LAYERS)), ids=[name for name, _ in LAYERS])
def test_each_layer_alone_loads_nothing_above_it(layer):
    # The whole layer in one fresh interpreter: a module-level import chain that climbs out of
    # it (however indirect) shows up in sys.modules. The static test above names the line.
    modules = [m for m in MODULES if layer_of(m) == layer]
    assert modules
    out = subprocess.run([sys.executable, "-c", _LOADED, *modules], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert set(modules) <= set(loaded)
    above = [m for m in loaded if layer_of(m) > layer]
    assert not above, f"importing the {LAYERS[layer][0]} layer loads {above}"


@pytest.mark.parametrize("module", ["cinecube.autoencoder", "cinecube.pipeline", "cinecube.transformer"])
def test_models_and_pipeline_load_no_training_code(module):
    code = (
        f"import {module}, sys; "
        "print([m for m in sys.modules if m.startswith(('cinecube.train', 'cinecube.evaluate', "
        "'cinecube.commands', 'cinecube.cli'))])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
