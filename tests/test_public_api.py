"""The shape of the package: a small public API editors can see, Streamlit only in the app layer, thin views."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import calibviz

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "calibviz"
MAX_VIEW_LINES = 300


def _type_checking_names() -> set[str]:
    """The names the `if TYPE_CHECKING:` block of calibviz/__init__.py imports (what editors see)."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    return {a.asname or a.name for n in block.body if isinstance(n, ast.ImportFrom) for a in n.names}


def test_every_export_resolves_to_the_object_its_module_defines() -> None:
    for name in calibviz.__all__:
        module = importlib.import_module(calibviz._EXPORTS[name])
        assert getattr(calibviz, name) is getattr(module, name), name


def test_no_export_is_shadowed_by_a_submodule_of_the_same_name() -> None:
    submodules = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if p.is_dir()}
    assert not set(calibviz.__all__) & submodules
    for stem in sorted(submodules - {"__init__", "__main__", "__pycache__", "app"}):
        importlib.import_module(f"calibviz.{stem}")  # importing a submodule binds it on the package
    for name in calibviz.__all__:
        assert not isinstance(getattr(calibviz, name), type(calibviz)), name


def test_editors_see_the_public_api() -> None:
    assert set(calibviz.__all__) <= set(dir(calibviz))
    assert _type_checking_names() == set(calibviz.__all__) == set(calibviz._EXPORTS)


def _imports_streamlit(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "streamlit" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "streamlit":
            return True
    return False


def test_only_the_app_layer_imports_streamlit() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
                 if "app" not in p.relative_to(PACKAGE).parts[:1] and _imports_streamlit(p)]
    assert offenders == []
    assert _imports_streamlit(PACKAGE / "app" / "cache.py")  # the check itself sees an import where there is one


def test_views_stay_thin() -> None:
    lengths = {p.name: len(p.read_text().splitlines()) for p in (ROOT / "views").glob("*.py")}
    assert lengths and all(n <= MAX_VIEW_LINES for n in lengths.values()), lengths
