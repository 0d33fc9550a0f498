"""The house rules that keep data flowing one way: storage -> media -> model -> analysis -> review,
driven by orchestration, with the CLI on top. A module may import its own layer or those below."""

import ast
from pathlib import Path

import vigil

PACKAGE = Path(vigil.__file__).parent
# Lowest first. Top-level modules are the foundation every layer may use (errors, faults, uri,
# config, background), except the CLI, which sits on top of everything.
LAYERS = ["foundation", "media", "model", "store", "analysis", "review", "orchestration", "cli"]
MAX_LINES = 320  # "about 300": a module near it gets split before it grows past


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[:1] != ["vigil"]:
        raise ValueError(module)
    if len(parts) == 1 or parts[1].startswith("__") or parts[1] in ("errors", "faults", "uri", "config", "operator", "background"):
        return "foundation"
    if parts[1] == "cli":
        return "cli"
    return parts[1]


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(part for part in relative.parts if part != "__init__")
        yield name, path


def _vigil_imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vigil":
            if node.module == "vigil":
                yield from (f"vigil.{alias.name}" for alias in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "vigil")


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for name, path in _modules():
        own = LAYERS.index(_layer(name))
        for imported in _vigil_imports(path):
            if LAYERS.index(_layer(imported)) > own:
                upward.append(f"{name} imports {imported}")
    assert upward == []


def test_every_layer_is_a_package_and_nothing_is_left_loose():
    loose = [
        name for name, path in _modules()
        if path.parent == PACKAGE and path.stem != "__init__" and _layer(name) not in ("foundation", "cli")
    ]
    assert loose == [], "modules belong in a layer's sub-package"
    for layer in LAYERS[1:-1]:
        assert (PACKAGE / layer / "__init__.py").is_file(), layer


def test_only_the_model_layer_imports_ultralytics_or_torch():
    heavy = ("ultralytics", "torch", "onnxruntime", "openvino")
    offenders = []
    for name, path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] in heavy for n in names) and _layer(name) != "model":
                offenders.append(name)
    assert offenders == []


def test_modules_stay_small():
    """One job per module: a module past the limit is doing two and should be split."""
    large = [f"{name}: {n} lines" for name, path in _modules() if (n := len(path.read_text().splitlines())) > MAX_LINES]
    assert large == []
