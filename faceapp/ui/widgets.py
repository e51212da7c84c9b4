"""Small widgets the pages share."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QLayout, QStyledItemDelegate,
                               QToolButton, QWidget)


def named(widget: QWidget, name: str) -> QWidget:
    """The widget, with the name a screen reader says for it."""
    widget.setAccessibleName(name)
    return widget


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
        close.setAccessibleName("Dismiss the message")
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


class FlowLayout(QLayout):
    """Widgets in a row that wraps onto more lines when the room runs out (buttons
    never shrink below their text)."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 6):
        super().__init__(parent)
        self._items: list = []
        self._spacing = spacing
        self.setContentsMargins(0, 0, 0, 0)

    def addItem(self, item) -> None:  # noqa: N802 (Qt's name)
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int):  # noqa: N802
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int):  # noqa: N802
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self):  # noqa: N802
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802
        return self._arrange(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect) -> None:  # noqa: N802
        super().setGeometry(rect)
        self._arrange(rect, move=True)

    def sizeHint(self) -> QSize:  # noqa: N802
        width = sum(i.sizeHint().width() for i in self._visible()) + \
            self._spacing * max(len(self._visible()) - 1, 0)
        height = max((i.sizeHint().height() for i in self._visible()), default=0)
        return QSize(width, height)

    def minimumSize(self) -> QSize:  # noqa: N802
        size = QSize()
        for item in self._visible():
            size = size.expandedTo(item.minimumSize()).expandedTo(
                QSize(item.sizeHint().width(), 0))
        margins = self.contentsMargins()
        return size + QSize(margins.left() + margins.right(), margins.top() + margins.bottom())

    def _visible(self) -> list:
        return [i for i in self._items if i.widget() is None or not i.widget().isHidden()]

    def _arrange(self, rect, move: bool) -> int:
        x, y, line = rect.x(), rect.y(), 0
        for item in self._visible():
            hint = item.sizeHint()
            if x + hint.width() > rect.right() + 1 and line > 0:
                x, y, line = rect.x(), y + line + self._spacing, 0
            if move:
                item.setGeometry(QRect(QPoint(x, y), hint))
            x += hint.width() + self._spacing
            line = max(line, hint.height())
        return y + line - rect.y()


def pair(*widgets: QWidget) -> QWidget:
    """Widgets that stay side by side (a label and its field) inside a flow."""
    holder = QWidget()
    layout = QHBoxLayout(holder)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    return holder


def flow(*widgets: QWidget) -> QWidget:
    """A widget holding these in a FlowLayout."""
    holder = QWidget()
    layout = FlowLayout(holder)
    for widget in widgets:
        layout.addWidget(widget)
    sp = holder.sizePolicy()
    sp.setHeightForWidth(True)
    holder.setSizePolicy(sp)
    return holder


class WrapDelegate(QStyledItemDelegate):
    """Rows of a tree or table as tall as their wrapped text (Qt's own views keep one
    line and elide): a reason is shown whole."""

    def __init__(self, view):
        super().__init__(view)
        self.view = view
        view.setWordWrap(True)
        view.header().sectionResized.connect(lambda *_: view.scheduleDelayedItemsLayout())

    def sizeHint(self, option, index) -> QSize:  # noqa: N802
        size = super().sizeHint(option, index)
        text = index.data() or ""
        width = self.view.columnWidth(index.column()) - 12
        if index.column() == 0 and hasattr(self.view, "indentation"):
            depth, parent = 0, index.parent()
            while parent.isValid():
                depth, parent = depth + 1, parent.parent()
            width -= self.view.indentation() * (depth + 1)
        bound = option.fontMetrics.boundingRect(QRect(0, 0, max(width, 40), 100_000),
                                                int(Qt.TextFlag.TextWordWrap), str(text))
        return QSize(size.width(), max(size.height(), bound.height() + 6))
