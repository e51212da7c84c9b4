"""House rules that the code layout promises."""

import ast
import subprocess
import sys
from pathlib import Path


def test_engine_imports_neither_qt_nor_torch():
    code = ("import sys, pkgutil, importlib, faceapp.core as core\n"
            "for m in pkgutil.iter_modules(core.__path__):\n"
            "    importlib.import_module('faceapp.core.' + m.name)\n"
            "import faceapp.cli\n"
            "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('torch', 'PySide6', 'trainer'))\n"
            "print(' '.join(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


CORE = Path(__file__).resolve().parents[1] / "faceapp" / "core"


def _private_crossings(path: Path) -> list[str]:
    """`from X import _name` of another module, and `obj._name(...)` calls on anything
    but self, cls or super(): a private name used across a module boundary."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno} imports {alias.name} from "
                                 f"{'.' * node.level}{node.module or ''}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name, owner = node.func.attr, node.func.value
            if not name.startswith("_") or name.startswith("__"):
                continue
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and getattr(owner.func, "id", "") == "super":
                continue
            found.append(f"{path.name}:{node.lineno} calls {ast.unparse(node.func)}()")
    return found


def test_no_private_name_crosses_a_module_boundary_in_the_engine():
    """What unknowns, scan, archive and the rest need from the gallery is its public
    store API (faceapp/core/gallery/__init__.py); inside that package its parts may
    share private names, nowhere else in the engine."""
    crossings = [c for path in sorted(CORE.glob("*.py")) for c in _private_crossings(path)]
    assert crossings == []


def test_the_gallery_package_exports_only_what_exists():
    """The package's public face (like httpx's exported-members test): __all__ lists
    names that exist, and every public module-level name of the store API is there."""
    import faceapp.core.gallery as gallery

    missing = [name for name in gallery.__all__ if not hasattr(gallery, name)]
    assert missing == []
    assert len(set(gallery.__all__)) == len(gallery.__all__)
    for name in ("open_gallery", "connect", "GalleryStore", "Gallery", "GalleryError"):
        assert name in gallery.__all__
