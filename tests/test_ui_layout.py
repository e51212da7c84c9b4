"""Every page reads right at common window sizes and scales, to a person who is not an
engineer: no text cut off, no engineer's words, every control named for a screen
reader, every page reachable from the keyboard.

One real window (offscreen) on a demo gallery built through the pages from the shared
photos (faceapp/ui/demo.py: a folder import, a door "camera" played on Live). The
150% scale runs the same checks in a child process with QT_SCALE_FACTOR=1.5, where a
1024 x 768 screen is a 683 x 512 window.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtWidgets import (QAbstractButton, QAbstractItemView, QAbstractSpinBox,  # noqa: E402
                               QApplication, QComboBox, QGroupBox, QHeaderView, QLabel,
                               QLineEdit, QScrollArea, QSlider, QTableWidget, QToolButton,
                               QWidget)

from faceapp.core.models import available_packs  # noqa: E402
from faceapp.core.recognize import FacePipeline  # noqa: E402
from faceapp.ui import demo  # noqa: E402
from faceapp.ui.main_window import MainWindow  # noqa: E402
from faceapp.ui.settings import AppSettings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCREENS = [(1024, 768), (1280, 800), (1920, 1080)]
SCALE = float(os.environ.get("QT_SCALE_FACTOR") or 1.0)
# Words of the engine's own: fine in a details view, never on a page
FORBIDDEN = ["cosine", "int8", "fp32", "runner-up", "LFW", ".onnx", "FPIR"]


def model_names() -> list[str]:
    names = []
    for pack in available_packs(include_unlisted=True):
        names.append(pack.name)
        names += [spec["path"] for spec in pack.manifest.get("files", {}).values()
                  if isinstance(spec, dict) and "path" in spec]
    return names


@pytest.fixture(scope="module", autouse=True)
def private_settings(tmp_path_factory):
    root = tmp_path_factory.mktemp("qsettings")
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
            QSettings.setPath(fmt, scope, str(root))


@pytest.fixture(scope="module")
def window(qapp, tmp_path_factory, shared_data):
    """A window on a demo gallery: people imported, strangers seen on Live."""
    root = tmp_path_factory.mktemp("demo")
    settings = AppSettings(root / "settings.ini")
    settings.gallery_path = root / "gallery.db"
    pipeline = FacePipeline.create(threads=2)
    win = MainWindow(settings, pipeline=pipeline)
    win.resize(1280, 800)
    win.show()
    demo.build(win, root, shared_data)
    yield win
    win.close()
    demo.wait_idle()
    pipeline.detector.close()


def on_page(window, page) -> None:
    window.go_to(page)
    demo.wait_idle()
    if page is window.events:
        demo.wait_until(lambda: window.events.loaded)
        named = [r for r, row in enumerate(window.events.rows) if row.who]
        if named:  # the longest name: "This was not …" must still fit
            longest = max(named, key=lambda r: len(window.events.rows[r].who))
            window.events.table.selectRow(longest)
    QApplication.processEvents()


def in_scroll_area(widget: QWidget) -> bool:
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QScrollArea):
            return True
        parent = parent.parentWidget()
    return False


def cut_off(window) -> list[str]:
    """Visible labels and buttons whose text does not fit the room they got."""
    problems = []
    for label in window.findChildren(QLabel):
        if not label.isVisible() or not label.text() or in_scroll_area(label):
            continue
        if label.pixmap() is not None and not label.pixmap().isNull():
            continue
        if label.wordWrap():
            need = label.heightForWidth(label.width())
            if label.height() + 1 < need:
                problems.append(f"label {label.text()[:60]!r}: {label.height()} px high, "
                                f"needs {need} at {label.width()} px wide")
        else:
            hint = label.sizeHint()
            if label.width() + 1 < hint.width() or label.height() + 1 < hint.height():
                problems.append(f"label {label.text()[:60]!r}: {label.width()}x"
                                f"{label.height()}, needs {hint.width()}x{hint.height()}")
    for button in window.findChildren(QAbstractButton):
        if not button.isVisible() or not button.text() or in_scroll_area(button):
            continue
        if isinstance(button, QToolButton) and button.autoRaise():
            continue
        hint = button.sizeHint()
        if button.width() + 1 < hint.width():
            problems.append(f"button {button.text()[:60]!r}: {button.width()} px wide, "
                            f"needs {hint.width()}")
    for box in window.findChildren(QGroupBox):
        if box.isVisible() and not in_scroll_area(box) \
                and box.height() + 1 < box.minimumSizeHint().height():
            problems.append(f"group {box.title()!r} squeezed")
    return problems


def visible_texts(window) -> list[str]:
    """What a person reads on the page in front of them (tooltips excluded)."""
    texts = [window.windowTitle()]
    for widget in window.findChildren(QWidget):
        if not widget.isVisible() or widget.property("details"):
            continue
        if any(p.property("details") for p in _parents(widget)):
            continue
        if isinstance(widget, (QLabel, QAbstractButton, QLineEdit)):
            texts.append(widget.text())
        if isinstance(widget, QLineEdit):
            texts.append(widget.placeholderText())
        if isinstance(widget, QGroupBox):
            texts.append(widget.title())
        if isinstance(widget, QComboBox):
            texts += [widget.itemText(i) for i in range(widget.count())]
        if isinstance(widget, QAbstractSpinBox):
            texts.append(widget.text())
        if isinstance(widget, QHeaderView) and widget.model() is not None:
            model, horizontal = widget.model(), widget.orientation() == Qt.Orientation.Horizontal
            for i in range(widget.count()):
                if not widget.isSectionHidden(i):
                    texts.append(str(model.headerData(i, widget.orientation()) or "")
                                 if horizontal else "")
        if isinstance(widget, QTableWidget):
            for r in range(widget.rowCount()):
                for c in range(widget.columnCount()):
                    item = widget.item(r, c)
                    if item is not None and not widget.isColumnHidden(c):
                        texts.append(item.text())
        elif isinstance(widget, QAbstractItemView) and widget.model() is not None:
            model = widget.model()
            for r in range(min(model.rowCount(), 200)):
                texts.append(str(model.index(r, 0).data() or ""))
    for action in window.menuBar().actions():
        texts.append(action.text())
        if action.menu():
            texts += [a.text() for a in action.menu().actions()]
    texts.append(window.statusBar().currentMessage())
    return [t for t in texts if t]


def _parents(widget):
    parent = widget.parentWidget()
    while parent is not None:
        yield parent
        parent = parent.parentWidget()


def check_every_page(window) -> list[str]:
    problems = []
    for width, height in SCREENS:
        size = (round(width / SCALE), round(height / SCALE - 40 / SCALE))  # a panel
        window.resize(*size)
        QApplication.processEvents()
        if (window.width(), window.height()) != size:
            problems.append(f"the window cannot be {size[0]}x{size[1]} (it is "
                            f"{window.width()}x{window.height()})")
        for title, page, _icon in window.pages:
            on_page(window, page)
            for problem in cut_off(window):
                problems.append(f"{width}x{height} @{SCALE:g} {title}: {problem}")
    return problems


# -- tests --------------------------------------------------------------------------------

def test_no_text_is_cut_off_at_common_sizes(window):
    problems = check_every_page(window)
    assert not problems, "\n".join(problems)


@pytest.mark.skipif(SCALE != 1.0, reason="this test starts the 150% run")
def test_no_text_is_cut_off_at_150_percent(tmp_path):
    env = {**os.environ, "QT_SCALE_FACTOR": "1.5", "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/test_ui_layout.py", "-k", "cut_off_at_common"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]


def test_no_engineers_words_on_any_page(window):
    forbidden = FORBIDDEN + model_names()
    window.resize(1280, 760)
    found, seen = [], set()
    for title, page, _icon in window.pages:
        on_page(window, page)
        texts = visible_texts(window)
        seen.update(texts)
        for text in texts:
            for word in forbidden:
                if word.lower() in text.lower():
                    found.append(f"{title}: {word!r} in {text[:120]!r}")
    assert not found, "\n".join(found)
    # the strings were read: the model's choice, the log's columns, a why
    assert any(t.startswith("Standard") for t in seen) and "Why" in seen
    assert any(t.startswith(("not close enough", "could be")) for t in seen)


def _part_of_another_control(widget: QWidget) -> bool:
    """Qt's own pieces: a combo box's list, a table's headers and corner, a line edit's
    clear button, a spin box's text field."""
    parent = widget.parentWidget()
    return (isinstance(widget, QHeaderView) or widget.objectName().startswith("qt_")
            or isinstance(parent, (QComboBox, QAbstractSpinBox, QLineEdit, QAbstractItemView))
            or any(isinstance(p, QComboBox) for p in _parents(widget)))


def test_every_control_has_an_accessible_name(window):
    unnamed = []
    kinds = (QAbstractButton, QComboBox, QLineEdit, QAbstractSpinBox, QSlider,
             QAbstractItemView)
    for title, page, _icon in window.pages:
        for widget in page.findChildren(QWidget):
            if not isinstance(widget, kinds) or _part_of_another_control(widget):
                continue
            if isinstance(widget, QAbstractButton) and widget.text().strip("&…. "):
                continue  # a button's own words are its name
            if not widget.accessibleName():
                unnamed.append(f"{title}: {type(widget).__name__} "
                               f"{getattr(widget, 'text', lambda: '')()!r} "
                               f"{widget.toolTip()[:40]!r}")
    assert not unnamed, "\n".join(unnamed)


def test_every_page_is_reachable_from_the_keyboard(window, qtbot):
    window.resize(1280, 760)
    for i, (title, page, _icon) in enumerate(window.pages):
        qtbot.keyClick(window, Qt.Key(Qt.Key.Key_1 + i), Qt.KeyboardModifier.ControlModifier)
        demo.wait_idle()
        assert window.stack.currentWidget() is page, title
        # Tab reaches a control of the page itself
        page_controls = 0
        window.sidebar.setFocus()
        for _ in range(12):
            qtbot.keyClick(QApplication.focusWidget() or window, Qt.Key.Key_Tab)
            focus = QApplication.focusWidget()
            if focus is not None and page.isAncestorOf(focus):
                page_controls += 1
        assert page_controls, f"Tab never reaches the {title} page"
    shortcuts = window.shortcuts_text()
    for words in ("Ctrl+1", "Space", "F5", "Ctrl+F"):
        assert words in shortcuts


def test_help_has_getting_started_and_about_with_licences(window):
    texts = [a.text() for a in window.help_menu.actions()]
    assert any("Getting started" in t for t in texts) and any("About" in t for t in texts)
    about = window.about_text()
    for pack in available_packs():
        licence = pack.manifest.get("licence")
        assert licence and licence in about
    import PySide6

    assert PySide6.__version__ in about
