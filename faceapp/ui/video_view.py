"""VideoView: paints the latest LiveFrame, letterboxed, with a box, a name tag and a
quality hint for every face. Clicking a face emits face_clicked."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from .live import ACCEPTED, KNOWN, UNCLEAR, UNKNOWN, WAITING, FaceOverlay, LiveFrame

COLOURS = {
    KNOWN: QColor("#2fbf71"),  # green: a person from the gallery
    UNKNOWN: QColor("#ff8c1a"),  # orange: nobody we know
    UNCLEAR: QColor("#9aa0a6"),  # grey: too poor to tell
    ACCEPTED: QColor("#2fbf71"),
    WAITING: QColor("#ff8c1a"),
}
BACKGROUND = QColor("#1e1f22")


class VideoView(QWidget):
    face_clicked = Signal(object, QPoint)  # FaceOverlay, global position

    def __init__(self, placeholder: str = "", parent=None):
        super().__init__(parent)
        self.frame: LiveFrame | None = None
        self.placeholder = placeholder
        self.clickable = True
        self.show_scores = False  # the decision's score beside each name (details)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 240)
        self.setMouseTracking(True)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)

    def sizeHint(self) -> QSize:
        return QSize(800, 560)

    def set_frame(self, frame: LiveFrame | None) -> None:
        self.frame = frame
        self.update()

    def set_placeholder(self, text: str) -> None:
        self.placeholder = text
        if self.frame is None:
            self.update()

    # -- geometry -----------------------------------------------------------------------------
    def _image_rect(self) -> QRectF:
        """Where the image goes: as large as fits, centred, aspect kept."""
        image = self.frame.image
        scale = min(self.width() / image.width(), self.height() / image.height())
        w, h = image.width() * scale, image.height() * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def _face_rect(self, overlay: FaceOverlay, target: QRectF) -> QRectF:
        # frame pixels -> display image pixels -> widget pixels
        k = self.frame.scale * target.width() / self.frame.image.width()
        x1, y1, x2, y2 = overlay.box
        return QRectF(target.left() + x1 * k, target.top() + y1 * k, (x2 - x1) * k, (y2 - y1) * k)

    def overlay_at(self, pos: QPointF) -> FaceOverlay | None:
        if self.frame is None:
            return None
        target = self._image_rect()
        for overlay in self.frame.overlays:
            if self._face_rect(overlay, target).adjusted(-4, -4, 4, 4).contains(pos):
                return overlay
        return None

    # -- painting ----------------------------------------------------------------------------
    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        if self.frame is None:
            painter.setPen(QColor("#c8c8c8"))
            painter.drawText(self.rect().adjusted(24, 24, -24, -24),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                             self.placeholder)
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        target = self._image_rect()
        painter.drawImage(target, self.frame.image)
        font = QFont(self.font())
        font.setBold(True)
        painter.setFont(font)
        for overlay in self.frame.overlays:
            self._paint_face(painter, overlay, self._face_rect(overlay, target))

    def _paint_face(self, painter: QPainter, overlay: FaceOverlay, rect: QRectF) -> None:
        colour = COLOURS.get(overlay.kind, COLOURS[UNKNOWN])
        painter.setPen(QPen(colour, 3))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(rect)

        metrics = QFontMetricsF(painter.font())
        tag = overlay.label
        if self.show_scores and overlay.score is not None:
            tag += f"  {overlay.score:.2f}"
            if overlay.bar is not None:
                tag += f" / {overlay.bar:.2f}"
        pad = 4.0
        tag_rect = QRectF(rect.left() - 1.5, rect.top() - metrics.height() - 2 * pad,
                          metrics.horizontalAdvance(tag) + 2 * pad, metrics.height() + 2 * pad)
        if tag_rect.top() < 0:  # no room above the box: put the tag inside it
            tag_rect.moveTop(rect.top())
        painter.fillRect(tag_rect, colour)
        painter.setPen(QColor("black") if overlay.kind != UNCLEAR else QColor("white"))
        painter.drawText(tag_rect, Qt.AlignmentFlag.AlignCenter, tag)

        if overlay.hint:
            painter.save()
            font = QFont(painter.font())
            font.setBold(False)
            painter.setFont(font)
            metrics = QFontMetricsF(font)
            hint_rect = QRectF(rect.left() - 1.5, rect.bottom() + 3,
                               metrics.horizontalAdvance(overlay.hint) + 2 * pad,
                               metrics.height() + 2 * pad)
            if hint_rect.right() > self.width():  # keep the words on screen
                hint_rect.moveRight(self.width())
            if hint_rect.left() < 0:
                hint_rect.moveLeft(0)
            if hint_rect.bottom() > self.height():
                hint_rect.moveBottom(rect.bottom())
            painter.fillRect(hint_rect, QColor(0, 0, 0, 170))
            painter.setPen(QColor("white"))
            painter.drawText(hint_rect, Qt.AlignmentFlag.AlignCenter, overlay.hint)
            painter.restore()

    # -- mouse ------------------------------------------------------------------------------
    def mouseMoveEvent(self, event) -> None:
        over = self.clickable and self.overlay_at(event.position()) is not None
        self.setCursor(Qt.CursorShape.PointingHandCursor if over else Qt.CursorShape.ArrowCursor)

    def mousePressEvent(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton or not self.clickable:
            return
        overlay = self.overlay_at(event.position())
        if overlay is not None:
            self.face_clicked.emit(overlay, event.globalPosition().toPoint())
