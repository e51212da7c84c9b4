"""Small widgets the pages share."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget


def heading(text: str) -> QLabel:
    label = QLabel(text)
    font = QFont(label.font())
    font.setPointSizeF(font.pointSizeF() * 1.35)
    font.setBold(True)
    label.setFont(font)
    return label


def muted(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet("color: palette(placeholder-text);")
    return label


class Banner(QFrame):
    """A dismissible message across the top of the window (errors never block)."""

    STYLES = {  # background, text, border
        "error": ("#fdecea", "#8a1c12", "#f5c2bd"),
        "info": ("#e8f1fd", "#0b3d91", "#bcd4f6"),
    }

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("banner")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 6, 6)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        layout.addWidget(self.label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_message(self, text: str, kind: str = "error") -> None:
        background, colour, border = self.STYLES[kind]
        self.setStyleSheet(f"#banner {{ background: {background}; border: 1px solid {border};"
                           f" border-radius: 4px; }}"
                           f"#banner QLabel, #banner QToolButton {{ background: transparent;"
                           f" border: none; color: {colour}; }}")
        self.label.setText(text)
        self.show()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""


class LazyPage(QWidget):
    """A page that reloads when its data changed only while it is on screen, else
    the next time it is shown (events arrive many times a second during Live).
    Subclasses implement refresh() and set self._stale = False in it."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._stale = True

    def changed(self) -> None:
        if self.isVisible():
            self.refresh()
        else:
            self._stale = True

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale:
            self.refresh()

    def refresh(self) -> None:
        raise NotImplementedError
