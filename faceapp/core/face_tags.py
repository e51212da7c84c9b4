"""Face tags other photo programs made (digiKam, Lightroom, Picasa, darktable, Windows
Photos), read into the gallery and written back out as the standard tags they read.

Two standards are read: the Metadata Working Group's XMP face regions (mwg-rs:Regions,
each a centre x/y and w/h normalised to the image) and Microsoft's People tags
(MP:RegionInfo, "x, y, w, h" from the top-left corner, normalised). Both describe the
image as stored: a photo stored sideways with an EXIF orientation has its regions
turned with it (MWG guidelines 2.0, 5.9), so every box here is mapped to the upright
image faceapp decodes, and back when written. Only MWG regions are written.

Tags live in the photo (embedded XMP) and in sidecars beside it: `photo.xmp`
(Lightroom, digiKam) and `photo.jpg.xmp` (darktable); all of them are read.

Why exiftool: it is the reference implementation of these formats that the photo
programs are tested against; it reads XMP from every file type faceapp decodes and
writes sidecars and structured region lists correctly, which hand-written XMP
would get wrong in countless corner cases. It runs as a separate process through
its `-json -struct` interface, with arguments in an `-@` file (no shell, any file
name), one process per batch of files read.

Untrusted sidecars are checked before exiftool sees them: at most MAX_SIDECAR_BYTES,
and well-formed XML with no entity declarations (defusedxml: an entity-expansion
bomb is refused, never expanded). exiftool itself never expands entities either, so
XMP embedded in a photo is safe to hand it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .enroll import EnrollError, ImportReport, PreparedSample
from .filenames import display_name, special_file
from .gallery import name_key, normalize_name
from .imageio import IMAGE_SUFFIXES, ImageError, decode_image_scaled, probe_header, read_file
from .models import InferenceError
from .sources import ImageFolderSource, SourceError

Progress = Callable[[int, int, str], None]
Cancelled = Callable[[], bool]

# A sidecar holds a few KB of text; one of megabytes is not a sidecar a program wrote.
MAX_SIDECAR_BYTES = 4 << 20
# Photos whose metadata one exiftool process reads (its start costs ~0.2 s).
READ_BATCH = 32
EXIFTOOL_TIMEOUT = 300  # seconds for one exiftool run (a batch of files, or one write)
# More regions than this in one photo is not a face tag list a person made.
MAX_REGIONS = 500
# Checked samples held before they are saved (each is a 256 x 256 canvas).
SAVE_EVERY = 256
SIDECAR_STYLES = ("photo.xmp", "photo.jpg.xmp")
INSTALL_HINT = ("exiftool is not installed: faceapp reads and writes face tags with it "
                "(Debian/Ubuntu: apt-get install libimage-exiftool-perl; macOS: brew "
                "install exiftool; Windows: put exiftool.exe on the PATH)")


class TagError(ValueError):
    """The whole command cannot run (no exiftool, exiftool hung); the message says why."""


# -- geometry ------------------------------------------------------------------------------

Box = tuple[float, float, float, float]  # x1, y1, x2, y2, normalised to the image


def _point_to_upright(x: float, y: float, orientation: int) -> tuple[float, float]:
    """A normalised point of the stored image in the upright one (as
    imageio.apply_orientation turns the pixels)."""
    return {1: (x, y), 2: (1 - x, y), 3: (1 - x, 1 - y), 4: (x, 1 - y), 5: (y, x),
            6: (1 - y, x), 7: (1 - y, 1 - x), 8: (y, 1 - x)}.get(orientation, (x, y))


_INVERSE = {6: 8, 8: 6}  # the others undo themselves


def to_upright(box: Box, orientation: int) -> Box:
    (ax, ay), (bx, by) = (_point_to_upright(box[0], box[1], orientation),
                          _point_to_upright(box[2], box[3], orientation))
    return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)


def to_stored(box: Box, orientation: int) -> Box:
    return to_upright(box, _INVERSE.get(orientation, orientation))


def iou(a: Box, b: Box) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _inside(point: tuple[float, float], box: Box) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def same_face(region: Box, face: Box) -> bool:
    """Does a tag's box mark this detected face? Programs draw face boxes of different
    sizes (Picasa tight, digiKam the whole head): a fair overlap, or each box's centre
    inside the other."""
    return iou(region, face) >= 0.3 or (_inside(_centre(region), face)
                                        and _inside(_centre(face), region))


# -- reading the tags ----------------------------------------------------------------------

@dataclass(frozen=True)
class Region:
    name: str | None  # as written in the tag (None: a face region nobody named)
    box: Box  # upright, normalised
    kind: str  # "MWG" or "Microsoft People"
    where: str  # the file it was read from


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _clip(box: Box) -> Box | None:
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in box)
    return (x1, y1, x2, y2) if x2 - x1 > 1e-4 and y2 - y1 > 1e-4 else None


def _text(value) -> str | None:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value).strip()
        return text or None
    return None


def _as_list(value) -> list:
    if isinstance(value, list):
        return value[:MAX_REGIONS]
    return [value] if isinstance(value, dict) else []


def regions_from_record(record: dict, where: str, orientation: int,
                        stored_size: tuple[int, int]) -> list[Region]:
    """The face regions of one file's exiftool record (-json -struct), upright."""
    found = []
    info = record.get("RegionInfo")
    if isinstance(info, dict):
        dims = info.get("AppliedToDimensions")
        dims = dims if isinstance(dims, dict) else {}
        dim_w, dim_h = _number(dims.get("W")), _number(dims.get("H"))
        turn = orientation
        stored_w, stored_h = stored_size
        if orientation >= 5 and dim_w and dim_h and stored_w != stored_h \
                and abs(dim_w / dim_h - stored_h / stored_w) < 0.01:
            # dimensions of the upright image: the program wrote the regions upright
            # (against the guidelines, but it happens); taken as written
            turn = 1
        for item in _as_list(info.get("RegionList")):
            if not isinstance(item, dict):
                continue
            kind = _text(item.get("Type"))
            if kind is not None and kind.casefold() != "face":
                continue  # a pet, a focus point, a bar code
            area = item.get("Area")
            if not isinstance(area, dict):
                continue
            x, y, w, h = (_number(area.get(k)) for k in ("X", "Y", "W", "H"))
            if None in (x, y, w, h) or w <= 0 or h <= 0:
                continue
            if str(area.get("Unit", "normalized")).casefold() == "pixel" and dim_w and dim_h:
                x, y, w, h = x / dim_w, y / dim_h, w / dim_w, h / dim_h
            box = _clip((x - w / 2, y - h / 2, x + w / 2, y + h / 2))
            if box:
                found.append(Region(_text(item.get("Name")), to_upright(box, turn), "MWG",
                                    where))
    mp = record.get("RegionInfoMP")
    if isinstance(mp, dict):
        for item in _as_list(mp.get("Regions")):
            if not isinstance(item, dict):
                continue
            rect = _text(item.get("Rectangle"))
            parts = [_number(p) for p in rect.split(",")] if rect else []
            if len(parts) != 4 or None in parts or parts[2] <= 0 or parts[3] <= 0:
                continue
            x, y, w, h = parts
            box = _clip((x, y, x + w, y + h))
            if box:
                found.append(Region(_text(item.get("PersonDisplayName")),
                                    to_upright(box, orientation), "Microsoft People", where))
    return found


def sidecars_of(photo: Path) -> list[Path]:
    """The sidecars beside a photo, both conventions, in either case of .xmp."""
    candidates = [photo.with_suffix(s) for s in (".xmp", ".XMP")] \
        + [photo.with_name(photo.name + s) for s in (".xmp", ".XMP")]
    seen, found = set(), []
    for path in candidates:
        try:
            st = os.stat(path)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)  # one file on a case-insensitive file system
        if key not in seen:
            seen.add(key)
            found.append(path)
    return found


def sidecar_for(photo: Path, style: str = "photo.xmp") -> Path:
    return photo.with_name(photo.name + ".xmp") if style == "photo.jpg.xmp" \
        else photo.with_suffix(".xmp")


def check_sidecar(path: Path) -> str | None:
    """Why a sidecar is not read (None: it may be): not a plain file, too large, not
    XML, or XML with entity declarations (an expansion bomb) or a DTD pointing
    elsewhere."""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import ParseError, fromstring

    special = special_file(path)
    if special:
        return f"{special}, not a sidecar: left unread"
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not stat.S_ISREG(st.st_mode):
        return "not a file"
    if st.st_size > MAX_SIDECAR_BYTES:
        return (f"{st.st_size / (1 << 20):.1f} MB is too large for a sidecar (limit "
                f"{MAX_SIDECAR_BYTES >> 20} MB): left unread")
    try:
        data = read_file(path, limit=MAX_SIDECAR_BYTES)
    except ImageError as exc:
        return exc.reason
    if not data.strip():
        return "the sidecar is empty"
    try:
        # defusedxml: entity declarations and external references are refused, so a
        # "billion laughs" file costs nothing; the parse only checks, exiftool reads
        fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        return f"refused: the XML declares entities or external references ({type(exc).__name__})"
    except ParseError as exc:
        return f"not valid XMP: not well-formed XML ({exc})"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"not valid XMP ({type(exc).__name__})"
    return None


def list_photos(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Photos among files and folders (subfolders too), and what was left out. A
    folder's sidecars are not photos and are not reported as left out."""
    photos, skipped, seen = [], [], set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            try:
                images, others = ImageFolderSource(path, recursive=True).list_images()
            except SourceError as exc:
                skipped.append((display_name(path), str(exc)))
                continue
            skipped += [(display_name(p), why) for p, why in others
                        if p.suffix.lower() != ".xmp"]
        elif path.suffix.lower() == ".xmp":
            skipped.append((display_name(path), "a sidecar: give the photo (or its folder); "
                            "its sidecars are read with it"))
            continue
        elif not os.path.lexists(path):
            skipped.append((display_name(path), "no such file or folder"))
            continue
        elif special_file(path):
            skipped.append((display_name(path), special_file(path)))
            continue
        elif path.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append((display_name(path), f"not a photo ({path.suffix or 'no extension'})"))
            continue
        else:
            images = [path]
        for image in images:
            key = os.path.abspath(image)
            if key not in seen:
                seen.add(key)
                photos.append(Path(key))
    return photos, skipped


# -- exiftool ------------------------------------------------------------------------------

def _cstr(arg: str | os.PathLike) -> bytes:
    """One line of an exiftool argument file. "#[CSTR]" lines take C escapes, so a
    file name with a newline, a leading space or a leading '#' is passed whole; bytes
    that are not UTF-8 pass as they are."""
    raw = os.fsencode(arg)
    raw = raw.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
    return b"#[CSTR]" + raw + b"\n"


def _struct_value(text: str) -> str:
    """A value inside exiftool's structure syntax ({Name=...}): its special
    characters are escaped with '|' (exiftool's rule; escaping any character is safe)."""
    escaped = "".join("|" + ch if ch in ",}]|[{=" else ch for ch in text)
    return "|" + escaped if escaped[:1].isspace() else escaped  # leading space kept


class ExifTool:
    """exiftool run as a separate process, its arguments in an -@ file."""

    def __init__(self, executable: str | None = None, timeout: float = EXIFTOOL_TIMEOUT):
        found = executable or shutil.which("exiftool")
        if not found:
            raise TagError(INSTALL_HINT)
        self.executable = found
        self.timeout = timeout

    def run(self, args: list) -> tuple[int, bytes, str]:
        """(exit status, stdout, stderr). '-config ""': the user's exiftool config file
        plays no part."""
        with tempfile.TemporaryDirectory(prefix="faceapp-exiftool-") as tmp:
            argfile = Path(tmp) / "args"
            argfile.write_bytes(b"".join(_cstr(a) for a in args))
            try:
                done = subprocess.run([self.executable, "-config", "", "-@", str(argfile)],
                                      stdin=subprocess.DEVNULL, capture_output=True,
                                      timeout=self.timeout)
            except subprocess.TimeoutExpired:
                raise TagError(f"exiftool took more than {self.timeout:.0f} s") from None
            except OSError as exc:
                raise TagError(f"exiftool could not be started ({exc.strerror or exc})") \
                    from None
        return done.returncode, done.stdout, done.stderr.decode("utf-8", "replace")

    def read(self, files: list[Path]) -> tuple[dict[str, dict], dict[str, str]]:
        """Each file's face-region tags ({absolute path: record}), and what exiftool
        said about files it could not read ({path: message})."""
        if not files:
            return {}, {}
        names = [os.path.abspath(f) for f in files]
        args = ["-json", "-struct", "-n", "-XMP-mwg-rs:RegionInfo", "-XMP-MP:RegionInfoMP",
                *names]
        _status, out, err = self.run(args)
        text = out.decode("utf-8", "surrogateescape").strip()
        try:
            # numbers as text: a name written "1234" stays that text
            records = json.loads(text, parse_float=str, parse_int=str) if text else []
        except (ValueError, RecursionError):
            raise TagError("exiftool's answer could not be read") from None
        if not isinstance(records, list):
            raise TagError("exiftool's answer could not be read")
        by_file = {str(r.get("SourceFile")): r for r in records if isinstance(r, dict)}
        errors = {}
        for line in err.splitlines():  # "Error: MESSAGE - FILE"
            for name in names:
                if line.startswith("Error:") and line.endswith(" - " + name):
                    errors[name] = line[len("Error:"):-len(name) - 3].strip()
        for name, record in by_file.items():
            if record.get("Error"):
                errors[name] = str(record["Error"])
        return by_file, errors

    def write(self, jobs: list[TagWrite]) -> dict[Path, str]:
        """Add each job's MWG face regions after those already in its target (a sidecar
        or the photo), which stay exactly as they were; all in one exiftool process
        (-execute between the commands). {target: why} for the jobs that failed.

        A new sidecar is first made from the photo's own XMP (exiftool's documented
        way, `-o photo.xmp photo.jpg`), so tags embedded in the photo are in it too;
        exiftool never replaces an existing file that way. Every write goes to a new
        file renamed over the old one."""
        args = []
        for job in jobs:
            if job.new_file:
                args += ["-o", os.path.abspath(job.target), os.path.abspath(job.photo),
                         "-execute"]
            for r in job.regions:
                area = ",".join(f"{k}={r[k.lower()]:.6f}" for k in ("X", "Y", "W", "H"))
                args.append(f"-XMP-mwg-rs:RegionList+={{Area={{{area},Unit=normalized}},"
                            f"Name={_struct_value(r['name'])},Type=Face}}")
            if job.dimensions:
                w, h = job.dimensions
                args += [f"-XMP-mwg-rs:RegionAppliedToDimensionsW={w}",
                         f"-XMP-mwg-rs:RegionAppliedToDimensionsH={h}",
                         "-XMP-mwg-rs:RegionAppliedToDimensionsUnit=pixel"]
            # -if: a file that is not there (its sidecar could not be made) is not
            # created bare by the append
            args += ["-if", "1", "-overwrite_original", os.path.abspath(job.target),
                     "-execute"]
        if not args:
            return {}
        try:
            _status, _out, err = self.run(args)
        except TagError as exc:
            return {job.target: str(exc) for job in jobs}
        errors = [line[len("Error:"):].strip() for line in err.splitlines()
                  if line.startswith("Error:")]
        failed = {}
        for job in jobs:  # exiftool ends each error with " - FILE"
            for error in errors:
                for path in {job.target, job.photo}:
                    tail = " - " + os.path.abspath(path)
                    if error.endswith(tail) and "already exists" not in error:
                        failed.setdefault(job.target, error[:-len(tail)])
        return failed


@dataclass
class TagWrite:
    """One file's new regions, waiting for the batch's exiftool run."""
    photo: Path
    target: Path
    new_file: bool
    regions: list[dict]
    dimensions: tuple[int, int] | None  # AppliedToDimensions, when the file has none
    change: TagChange


@dataclass
class _PhotoTags:
    """What one photo's files hold: exiftool's records, and the files left out."""
    records: list[tuple[str, dict]] = field(default_factory=list)  # (where, record)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    sidecars: list[Path] = field(default_factory=list)  # readable sidecars


def _read_batch(tool: ExifTool, photos: list[Path]) -> dict[Path, _PhotoTags]:
    tags = {p: _PhotoTags() for p in photos}
    files = []
    for photo in photos:
        files.append(photo)
        for sidecar in sidecars_of(photo):
            why = check_sidecar(sidecar)
            if why:
                tags[photo].problems.append((display_name(sidecar), why))
            else:
                tags[photo].sidecars.append(sidecar)
                files.append(sidecar)
    try:
        records, errors = tool.read(files)
    except TagError as exc:  # one file made exiftool hang or fail: the others are read
        if len(photos) > 1:
            for photo in photos:
                tags.update(_read_batch(tool, [photo]))
            return tags
        tags[photos[0]].problems.append((display_name(photos[0]),
                                         f"its tags could not be read: {exc}"))
        return tags
    for photo in photos:
        for path in [photo, *tags[photo].sidecars]:
            key = os.path.abspath(path)
            if key in errors and path != photo:  # the photo's own errors: decoding says
                tags[photo].problems.append((display_name(path),
                                             f"exiftool cannot read it: {errors[key]}"))
            elif key in records:
                tags[photo].records.append((display_name(path), records[key]))
    return tags


def _batches(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclass
class _Decoded:
    image: np.ndarray  # upright RGB (maybe decoded smaller: see imageio)
    orientation: int
    stored_size: tuple[int, int]  # the file's pixels, as stored


def _decode(photo: Path) -> _Decoded:
    data = read_file(photo)
    name = display_name(photo)
    header = probe_header(data, name)
    image, _scale = decode_image_scaled(data, name)
    return _Decoded(image, header.orientation, (header.width, header.height))


def _regions(tags: _PhotoTags, decoded: _Decoded) -> list[Region]:
    """Every face region of a photo's files; the same tag in the photo and in its
    sidecar (programs write both) counted once."""
    found: list[Region] = []
    for where, record in tags.records:
        for region in regions_from_record(record, where, decoded.orientation,
                                          decoded.stored_size):
            if not any(region.name == r.name and iou(region.box, r.box) > 0.5 for r in found):
                found.append(region)
    return found


def _face_box(face, image: np.ndarray) -> Box:
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in face.box)
    return x1 / w, y1 / h, x2 / w, y2 / h


# -- import-tags ---------------------------------------------------------------------------

@dataclass
class TagImportReport(ImportReport):
    photos: int = 0  # photos looked at
    tagged: int = 0  # photos with at least one named face region
    regions: int = 0  # named face regions found
    warnings: list[str] = field(default_factory=list)  # "looks like someone enrolled", ...
    # the problems of each name's tags: name -> [(photo, why)]
    by_name: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def _match(regions: list[Region], boxes: list[Box]) -> dict[int, int]:
    """Region index -> face index, each face to at most one region (best overlap first)."""
    pairs = sorted(((iou(r.box, b), i, j) for i, r in enumerate(regions)
                    for j, b in enumerate(boxes) if same_face(r.box, b)), reverse=True)
    taken_r, taken_f, out = set(), set(), {}
    for _score, i, j in pairs:
        if i not in taken_r and j not in taken_f:
            taken_r.add(i)
            taken_f.add(j)
            out[i] = j
    return out


def face_in_region(detector, image: np.ndarray, box: Box):
    """The face inside a tag's box that the whole-photo search missed (too small, or
    a weak detection): searched in the box enlarged, scaled so the face is well above
    the detector's minimum size; its box and landmarks are given in the photo's
    pixels. None if nothing there looks like that face."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    side = max(x2 - x1, y2 - y1, 1.0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(max(cx - side, 0)), int(max(cy - side, 0))
    right, bottom = int(min(cx + side, w)), int(min(cy + side, h))
    if right - left < 8 or bottom - top < 8:
        return None
    crop = image[top:bottom, left:right]
    scale = min(max(1.0, max(2.5 * detector.min_face, 160) / side), 8.0,
                2000 / max(crop.shape[:2]))
    if scale != 1.0:
        import cv2

        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)),
                                 max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    faces = detector.detect(np.ascontiguousarray(crop))
    for face in faces:  # best first
        face.box = (face.box / scale + np.array([left, top, left, top], np.float32)
                    ).astype(np.float32)
        face.landmarks = (face.landmarks / scale + np.array([left, top], np.float32)
                          ).astype(np.float32)
    fitting = [f for f in faces if same_face(box, _face_box(f, image))]
    return fitting[0] if fitting else None


class TagImporter:
    """Enrolls the named faces of tagged photos, with the Enroller's checks."""

    def __init__(self, enroller, exiftool: ExifTool | None = None):
        self.enroller = enroller
        self.gallery = enroller.gallery
        self.exiftool = exiftool or ExifTool()
        self._known: dict[int, set[str]] = {}

    def _already(self, name: str, source: str) -> bool:
        person = self.gallery.find_person(name)
        if person is None:
            return False
        if person.id not in self._known:
            self._known[person.id] = {f.source for f in self.gallery.faces(person.id)}
        return source in self._known[person.id]

    def run(self, paths, progress: Progress | None = None,
            cancelled: Cancelled | None = None) -> TagImportReport:
        report = TagImportReport()
        photos, report.skipped = list_photos(paths)
        pending: dict[str, tuple[str, list[PreparedSample]]] = {}  # key -> (name, samples)
        done = 0
        for batch in _batches(photos, READ_BATCH):
            if cancelled and cancelled():
                report.cancelled = True
                return report
            tags = _read_batch(self.exiftool, batch)
            for photo in batch:
                if cancelled and cancelled():
                    report.cancelled = True  # what was checked but not saved is dropped
                    return report
                if progress:
                    progress(done, len(photos), display_name(photo))
                done += 1
                report.photos += 1
                report.skipped += tags[photo].problems
                self._photo(photo, tags[photo], report, pending)
            if sum(len(s) for _n, s in pending.values()) >= SAVE_EVERY:
                self._save(pending, report)
        self._save(pending, report)
        if progress:
            progress(len(photos), len(photos), "")
        return report

    def _skip(self, report: TagImportReport, photo: str, name: str | None, why: str) -> None:
        label = f"the face tagged {name!r}" if name else "a face region"
        report.skipped.append((photo, f"{label}: {why}"))
        if name:
            report.by_name.setdefault(name, []).append((photo, why))

    def _photo(self, photo: Path, tags: _PhotoTags, report: TagImportReport,
               pending: dict) -> None:
        source = display_name(photo)
        if not any(r for _w, r in tags.records if "RegionInfo" in r or "RegionInfoMP" in r):
            return  # no tags: nothing to say about it
        try:
            decoded = _decode(photo)
        except ImageError as exc:
            report.skipped.append((source, exc.reason))
            return
        regions = [r for r in _regions(tags, decoded) if r.name]
        if not regions:
            return
        report.tagged += 1
        report.regions += len(regions)
        by_name: dict[str, list[Region]] = {}
        for region in regions:
            by_name.setdefault(region.name, []).append(region)
        try:
            faces = self.enroller.pipeline.detector.detect(decoded.image)
            boxes = [_face_box(f, decoded.image) for f in faces]
            matched = _match(regions, boxes)
            # one face tagged with two names: which one is right is for a person to say
            names_of: dict[int, set[str]] = {}
            for i, j in matched.items():
                names_of.setdefault(j, set()).add(regions[i].name)
            for i, region in enumerate(regions):
                name = region.name
                try:
                    clean = normalize_name(name)
                except ValueError as exc:
                    self._skip(report, source, name, f"not a usable name: {exc}")
                    continue
                if len(by_name[name]) > 1 and region is not by_name[name][0]:
                    self._skip(report, source, name, "the name is on two faces in this photo: "
                               "only the first is used")
                    continue
                face = faces[matched[i]] if i in matched else None
                if face is not None and len(names_of[matched[i]]) > 1:
                    others = sorted(names_of[matched[i]] - {name})
                    self._skip(report, source, name, "this face is also tagged "
                               + ", ".join(map(repr, others)) + ": left out")
                    continue
                if face is None:
                    face = face_in_region(self.enroller.pipeline.detector, decoded.image,
                                          region.box)
                if face is None:
                    self._skip(report, source, name, "no face found in the tagged area")
                    continue
                person = self.gallery.find_person(clean)
                key = name_key(clean)
                if self._already(clean, source) or any(
                        s.source == source for s in pending.get(key, ("", []))[1]):
                    self._skip(report, source, name, "already in the gallery")
                    continue
                try:
                    sample = self.enroller.prepare(decoded.image, source, face)
                except EnrollError as exc:
                    self._skip(report, source, name, str(exc))
                    continue
                stored = person.name if person else pending.get(key, (clean, []))[0]
                pending.setdefault(key, (stored, []))[1].append(sample)
        except (InferenceError, MemoryError) as exc:  # this photo only: the batch goes on
            report.skipped.append((source, f"could not be processed ({exc or 'out of memory'})"))

    def _save(self, pending: dict, report: TagImportReport) -> None:
        """Each name's checked faces, said about (looks like someone else, does not look
        like the person, unlike the others) and saved: the tag is what a person chose."""
        for key in list(pending):
            name, samples = pending.pop(key)
            person = self.gallery.find_person(name)
            if person is None:
                alike = self.gallery.confusable_names(name)
                if alike:
                    report.confusable[name] = alike
            try:
                advice = self.enroller.review(person.id if person else name, samples)
                for message in advice.messages(name):
                    if message not in report.warnings:
                        report.warnings.append(message)
                self.enroller.save_reporting(person.id if person else name, samples, report)
            except (EnrollError, InferenceError, MemoryError) as exc:
                report.skipped.append((f"{len(samples)} face(s) of {name}",
                                       f"could not be saved ({exc or 'out of memory'})"))
                continue
            saved = self.gallery.find_person(name)
            if saved is not None:
                self._known.setdefault(saved.id, set()).update(s.source for s in samples)


def import_tags(enroller, paths, progress: Progress | None = None,
                cancelled: Cancelled | None = None,
                exiftool: ExifTool | None = None) -> TagImportReport:
    """Enroll the named faces that photos' tags (embedded or in sidecars) mark."""
    return TagImporter(enroller, exiftool).run(paths, progress, cancelled)


# -- write-tags ----------------------------------------------------------------------------

@dataclass
class TagChange:
    """The face tags one file gets (or would get, in a dry run)."""
    photo: str
    target: str  # the sidecar, or the photo itself
    new_file: bool  # the sidecar is created
    added: list[dict]  # name, score, and the region's centre x, y and w, h (stored image)
    kept: list[dict]  # faces already tagged: the tag's name, and whom faceapp saw
    written: bool = False

    def record(self) -> dict:
        return {"photo": self.photo, "target": self.target, "new_file": self.new_file,
                "add": self.added, "kept": self.kept, "written": self.written}


@dataclass
class TagWriteReport:
    photos: int = 0
    faces: int = 0  # faces found
    recognised: int = 0  # faces of enrolled people
    already_tagged: int = 0  # recognised faces a tag already marks (left as they are)
    added: int = 0  # regions written (or that would be)
    files: int = 0  # sidecars or photos written (or that would be)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cancelled: bool = False


class TagWriter:
    """Writes the names faceapp recognises as MWG face regions, beside what is there."""

    def __init__(self, recognizer, exiftool: ExifTool | None = None,
                 sidecar: str = "photo.xmp", in_file: bool = False):
        if sidecar not in SIDECAR_STYLES:
            raise ValueError(f"sidecar names are {' or '.join(SIDECAR_STYLES)}, not {sidecar!r}")
        self.recognizer = recognizer
        self.exiftool = exiftool or ExifTool()
        self.sidecar = sidecar
        self.in_file = in_file
        self._claimed: dict[str, Path] = {}  # sidecar -> the photo it was given to
        self._stems: dict[Path, dict[str, list[str]]] = {}  # folder -> stem -> file names

    def _twins(self, photo: Path) -> list[str]:
        """Other files of the photo's name with another extension (a raw file beside
        its JPEG shares photo.xmp in Lightroom); each folder is listed once."""
        folder = photo.parent
        if folder not in self._stems:
            stems: dict[str, list[str]] = {}
            try:
                for entry in os.scandir(folder):
                    if not entry.name.lower().endswith(".xmp"):
                        stems.setdefault(Path(entry.name).stem, []).append(entry.name)
            except OSError:
                pass
            self._stems[folder] = stems
        return [n for n in self._stems[folder].get(photo.stem, []) if n != photo.name]

    def _target(self, photo: Path) -> tuple[Path | None, str | None]:
        """(where the tags go, or None and why not)."""
        if self.in_file:
            return photo, None
        target = sidecar_for(photo, self.sidecar)
        owner = self._claimed.setdefault(os.path.normcase(str(target)), photo)
        if owner != photo:
            return None, (f"{target.name} is also the sidecar of {owner.name}: use "
                          "--sidecar photo.jpg.xmp")
        twins = self._twins(photo) if self.sidecar == "photo.xmp" else []
        if twins:
            return None, (f"{target.name} may belong to {twins[0]} too: use --sidecar "
                          "photo.jpg.xmp")
        return target, None

    def run(self, paths, dry_run: bool = False, progress: Progress | None = None,
            cancelled: Cancelled | None = None,
            on_change: Callable[[TagChange], None] | None = None) -> TagWriteReport:
        report = TagWriteReport()
        photos, report.skipped = list_photos(paths)
        done = 0
        for batch in _batches(photos, READ_BATCH):
            tags = _read_batch(self.exiftool, batch)
            writes: list[TagWrite] = []
            for photo in batch:
                if cancelled and cancelled():
                    report.cancelled = True
                    break
                if progress:
                    progress(done, len(photos), display_name(photo))
                done += 1
                report.photos += 1
                try:
                    job = self._photo(photo, tags[photo], report)
                except ImageError as exc:
                    report.skipped.append((display_name(photo), exc.reason))
                    continue
                except (InferenceError, MemoryError) as exc:
                    report.skipped.append((display_name(photo), f"could not be processed "
                                           f"({exc or 'out of memory'})"))
                    continue
                if job is not None:
                    writes.append(job)
            # what was decided before a cancel is still written: each file is whole
            failed = {} if dry_run else self.exiftool.write(writes)
            for job in writes:
                if job.target in failed:
                    report.skipped.append((display_name(job.target),
                                           f"not written: {failed[job.target]}"))
                    continue
                job.change.written = not dry_run
                report.added += len(job.regions)
                report.files += 1
                if on_change:
                    on_change(job.change)
            if report.cancelled:
                return report
        if progress:
            progress(len(photos), len(photos), "")
        return report

    def _photo(self, photo: Path, tags: _PhotoTags, report: TagWriteReport) -> TagWrite | None:
        source = display_name(photo)
        target, why = self._target(photo)
        bad = dict(tags.problems)
        if target is not None and display_name(target) in bad:
            why = f"its sidecar {target.name} is left as it is: {bad[display_name(target)]}"
        for item, problem in tags.problems:  # a bad sidecar of the other kind: said, not fatal
            if target is None or item != display_name(target):
                report.skipped.append((item, problem))
        if why:
            report.skipped.append((source, why))
            return None
        decoded = _decode(photo)
        existing = _regions(tags, decoded)
        result = self.recognizer.process(decoded.image, source=source, track=False,
                                         path=source)
        report.faces += len(result.faces)
        names = self.recognizer.names
        best: dict[int, tuple[float, Box]] = {}  # person -> (score, box): one tag a person
        kept = []
        for face in result.faces:
            decision = face.decision
            if not decision.known:
                continue
            report.recognised += 1
            box = _face_box(face.face, decoded.image)
            over = [r for r in existing if same_face(r.box, box)]
            if over:  # a tag someone made (or an earlier run) names this face: kept
                report.already_tagged += 1
                kept.append({"name": over[0].name,
                             "recognised_as": names.get(decision.person_id)})
                continue
            if decision.person_id not in best or decision.score > best[decision.person_id][0]:
                best[decision.person_id] = (float(decision.score), box)
        tagged_names = {name_key(r.name) for r in existing if r.name and _usable(r.name)}
        added = []
        for person_id, (score, box) in best.items():
            name = names.get(person_id)
            if not name or name_key(name) in tagged_names:
                continue  # already tagged elsewhere in this photo: a person placed it
            x1, y1, x2, y2 = to_stored(box, decoded.orientation)
            added.append({"name": name, "score": round(score, 4),
                          "x": round((x1 + x2) / 2, 6), "y": round((y1 + y2) / 2, 6),
                          "w": round(x2 - x1, 6), "h": round(y2 - y1, 6)})
        if not added:
            return None
        new_file = not self.in_file and not os.path.lexists(target)
        # the dimensions the regions apply to, unless the file has them already
        holder = display_name(photo if new_file or self.in_file else target)
        has_dims = any(isinstance(r.get("RegionInfo"), dict)
                       and r["RegionInfo"].get("AppliedToDimensions")
                       for where, r in tags.records if where == holder)
        change = TagChange(source, display_name(target), new_file, added, kept)
        return TagWrite(photo, target, new_file, added,
                      None if has_dims else decoded.stored_size, change)


def _usable(name: str) -> bool:
    try:
        normalize_name(name)
    except ValueError:
        return False
    return True


def write_tags(recognizer, paths, dry_run: bool = False, sidecar: str = "photo.xmp",
               in_file: bool = False, progress: Progress | None = None,
               cancelled: Cancelled | None = None,
               on_change: Callable[[TagChange], None] | None = None,
               exiftool: ExifTool | None = None) -> TagWriteReport:
    """Write recognised names as MWG face regions (sidecars unless in_file)."""
    return TagWriter(recognizer, exiftool, sidecar, in_file).run(
        paths, dry_run, progress, cancelled, on_change)
