"""House rules that the code layout promises."""

import subprocess
import sys


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
