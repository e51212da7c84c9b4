"""Every question the app asks a person, in one place.

Pages call these through the module (`dialogs.confirm(...)`), so tests can replace
any of them with a function that answers at once."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QCheckBox, QDialog, QDialogButtonBox, QFileDialog,
                               QFormLayout, QInputDialog, QLabel, QLineEdit, QMessageBox,
                               QVBoxLayout, QWidget)

IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.bmp *.webp *.tif *.tiff);;All files (*)"
VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v);;All files (*)"
GALLERY_FILTER = "Galleries (*.db);;All files (*)"
EXPORT_FILTER = "Gallery exports (*.faceapp);;All files (*)"
CSV_FILTER = "CSV files (*.csv)"


def popup(menu, position):
    """The action chosen from a pop-up menu at a global position (None: closed)."""
    return menu.exec(position)


def confirm(parent: QWidget, title: str, text: str, action: str = "OK") -> bool:
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, parent=parent)
    yes = box.addButton(action, QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return box.clickedButton() is yes


def confirm_with_option(parent: QWidget, title: str, text: str, action: str, option: str,
                        checked: bool = True) -> tuple[bool, bool]:
    """(confirmed, option ticked): a confirmation with one check box under it."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, parent=parent)
    yes = box.addButton(action, QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    tick = QCheckBox(option)
    tick.setChecked(checked)
    box.setCheckBox(tick)
    box.exec()
    return box.clickedButton() is yes, tick.isChecked()


def ask_choice(parent: QWidget, title: str, text: str, buttons: list[str]) -> int | None:
    """The index of the button pressed (the last one is the escape button); None if
    the box was closed."""
    box = QMessageBox(QMessageBox.Icon.Question, title, text, parent=parent)
    made = [box.addButton(label, QMessageBox.ButtonRole.AcceptRole if i < len(buttons) - 1
                          else QMessageBox.ButtonRole.RejectRole)
            for i, label in enumerate(buttons)]
    box.setDefaultButton(made[0])
    box.setEscapeButton(made[-1])
    box.exec()
    clicked = box.clickedButton()
    return made.index(clicked) if clicked in made else None


def show_files(parent: QWidget, title: str, text: str, paths: list[str]) -> QDialog:
    """A list of files; double-click opens one with the desktop's viewer."""
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QDesktopServices
    from PySide6.QtWidgets import QListWidget, QVBoxLayout

    dialog = QDialog(parent)
    dialog.setWindowTitle(title)
    layout = QVBoxLayout(dialog)
    layout.addWidget(QLabel(text))
    files = QListWidget()
    files.addItems(paths)
    files.itemDoubleClicked.connect(
        lambda item: QDesktopServices.openUrl(QUrl.fromLocalFile(item.text())))
    layout.addWidget(files, 1)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dialog.reject)
    layout.addWidget(buttons)
    dialog.resize(640, 420)
    dialog.files = files
    dialog.show()
    return dialog


def ask_text(parent: QWidget, title: str, label: str, text: str = "") -> str | None:
    value, ok = QInputDialog.getText(parent, title, label, QLineEdit.EchoMode.Normal, text)
    value = value.strip()
    return value if ok and value else None


def choose(parent: QWidget, title: str, label: str, items: list[str],
           editable: bool = False) -> str | None:
    """One of items (or, if editable, any text typed)."""
    value, ok = QInputDialog.getItem(parent, title, label, items, 0, editable)
    value = value.strip()
    return value if ok and value else None


def person_dialog(parent: QWidget, title: str, text: str, names: list[str]) -> QDialog:
    """The dialog of ask_person (not shown): a name field that also searches the list
    of people under it; the answer is in `dialog.answer()`."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QListWidget

    dialog = QDialog(parent)
    dialog.setWindowTitle(title)
    layout = QVBoxLayout(dialog)
    label = QLabel(text)
    label.setWordWrap(True)
    field = QLineEdit()
    field.setAccessibleName("Name")
    field.setPlaceholderText("Type to search, or type a new name")
    field.setClearButtonEnabled(True)
    people = QListWidget()
    people.setAccessibleName("People enrolled")
    people.addItems(names)
    hint = QLabel()
    hint.setWordWrap(True)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                               | QDialogButtonBox.StandardButton.Cancel)
    ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
    layout.addWidget(label)
    layout.addWidget(field)
    layout.addWidget(people, 1)
    layout.addWidget(hint)
    layout.addWidget(buttons)
    folded = {name.casefold(): name for name in names}

    def answer() -> str | None:
        typed = " ".join(field.text().split())
        return folded.get(typed.casefold(), typed) if typed else None

    def typed(value: str) -> None:
        words = value.strip().casefold()
        for row in range(people.count()):
            item = people.item(row)
            item.setHidden(bool(words) and words not in item.text().casefold())
        name = answer()
        ok.setEnabled(name is not None)
        if name is None:
            hint.setText("")
        elif name in names:
            hint.setText(f"This face will be added to {name}.")
        else:
            hint.setText(f"{name} will be enrolled as a new person.")
        ok.setText(f"Add to {name}" if name in names else "Enroll" if name else "OK")

    def picked(item) -> None:
        if item is not None and field.text() != item.text():
            field.setText(item.text())

    field.textChanged.connect(typed)
    people.currentItemChanged.connect(lambda current, _previous: picked(current))
    people.itemDoubleClicked.connect(lambda item: (picked(item), dialog.accept()))
    buttons.accepted.connect(lambda: dialog.accept() if answer() else None)
    buttons.rejected.connect(dialog.reject)
    field.setFocus(Qt.FocusReason.OtherFocusReason)
    typed("")
    dialog.resize(420, 460)
    dialog.field, dialog.people, dialog.hint, dialog.answer = field, people, hint, answer
    return dialog


def ask_person(parent: QWidget, title: str, text: str, names: list[str]) -> str | None:
    """Someone enrolled, chosen from a list searched by typing, or a new name typed;
    an enrolled person's name comes back spelled as enrolled. None: cancelled."""
    dialog = person_dialog(parent, title, text, names)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    return dialog.answer()


class FolderMemory:
    """The folder the last file dialog ended in, kept in the settings so the next
    dialog (this run or the next) opens there."""

    settings = None  # AppSettings, set by the main window

    @classmethod
    def start(cls) -> str:
        folder = cls.settings.last_folder if cls.settings is not None else ""
        return folder if folder and Path(folder).is_dir() else ""

    @classmethod
    def remember(cls, path: str | None, is_folder: bool = False) -> None:
        if path and cls.settings is not None:
            cls.settings.last_folder = str(Path(path) if is_folder else Path(path).parent)


def open_files(parent: QWidget, title: str, filter: str = IMAGE_FILTER) -> list[str]:
    paths, _ = QFileDialog.getOpenFileNames(parent, title, FolderMemory.start(), filter)
    FolderMemory.remember(paths[0] if paths else None)
    return paths


def open_file(parent: QWidget, title: str, filter: str) -> str | None:
    path, _ = QFileDialog.getOpenFileName(parent, title, FolderMemory.start(), filter)
    FolderMemory.remember(path)
    return path or None


def open_folder(parent: QWidget, title: str) -> str | None:
    path = QFileDialog.getExistingDirectory(parent, title, FolderMemory.start()) or None
    FolderMemory.remember(path, is_folder=True)
    return path


def save_file(parent: QWidget, title: str, name: str, filter: str,
              confirm_overwrite: bool = True) -> str | None:
    options = QFileDialog.Option(0)
    if not confirm_overwrite:
        options |= QFileDialog.Option.DontConfirmOverwrite
    if not Path(name).is_absolute() and FolderMemory.start():
        name = str(Path(FolderMemory.start()) / name)
    path, _ = QFileDialog.getSaveFileName(parent, title, name, filter, options=options)
    FolderMemory.remember(path)
    return path or None


def ask_password(parent: QWidget, title: str, label: str) -> str | None:
    value, ok = QInputDialog.getText(parent, title, label, QLineEdit.EchoMode.Password)
    return value if ok and value else None


def ask_export_passphrase(parent: QWidget) -> tuple[bool, str | None]:
    """(go ahead, passphrase or None for an unencrypted export)."""
    dialog = QDialog(parent)
    dialog.setWindowTitle("Export the gallery")
    layout = QVBoxLayout(dialog)
    layout.addWidget(QLabel("The export holds face templates (biometric data).\n"
                            "Encrypt it if it leaves this computer."))
    encrypt = QCheckBox("Encrypt with a passphrase")
    encrypt.setChecked(True)
    first, second = QLineEdit(), QLineEdit()
    for field in (first, second):
        field.setEchoMode(QLineEdit.EchoMode.Password)
    form = QFormLayout()
    form.addRow("Passphrase:", first)
    form.addRow("Again:", second)
    problem = QLabel()
    problem.setStyleSheet("color: #c0392b")
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                               | QDialogButtonBox.StandardButton.Cancel)
    layout.addWidget(encrypt)
    layout.addLayout(form)
    layout.addWidget(problem)
    layout.addWidget(buttons)

    def toggled(on: bool) -> None:
        first.setEnabled(on)
        second.setEnabled(on)

    def accept() -> None:
        if encrypt.isChecked():
            if not first.text():
                problem.setText("Type a passphrase, or export without encryption.")
                return
            if first.text() != second.text():
                problem.setText("The two passphrases differ.")
                return
        dialog.accept()

    encrypt.toggled.connect(toggled)
    buttons.accepted.connect(accept)
    buttons.rejected.connect(dialog.reject)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return False, None
    return True, (first.text() if encrypt.isChecked() else None)
