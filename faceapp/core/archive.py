"""Export a gallery to one portable file and import it back.

The file is a zip::

    gallery.json          format id and version, people, faces (metadata), models
    faces/<face id>.png   the crops, as stored in the gallery (lossless PNG)
    embeddings/<n>.npy    one float32 N x D matrix per model; gallery.json names the
                          model and lists the face ids of its rows

Recognition events are not exported: they are a local log (and may show strangers).

With a passphrase the zip is encrypted: scrypt (n=2^17, r=8, p=1, random salt)
derives an AES-256-GCM key, and the zip is sealed in 1 MiB chunks whose nonces carry
a counter and a last-chunk flag (the STREAM construction), so reordered, cut or
altered files are refused. The header (parameters, salt) is authenticated too, and
a check value derived from the passphrase tells a wrong passphrase from damage.

Exports are written atomically and owner-only (0600 temp file in the same folder,
fsync, os.replace). An import is checked completely before anything is written, then
written in one transaction: a wrong passphrase, a damaged archive or a conflict
leaves the gallery as it was.

An archive is not trusted: the embeddings inside it are never imported (a crafted one
could pair one person's crop with another's vector); templates are computed from the
imported crops by the active model. A name already in the gallery is never merged
silently: the caller chooses merge, rename or skip. A damaged crop skips that face
(export and import both list it); the rest comes through.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
import os
import secrets
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .gallery import (
    SCHEMA_VERSION,
    FaceSample,
    GalleryError,
    GalleryStore,
    check_landmarks,
    crop_digest,
    decode_crop,
    decode_vectors,
    format_time,
    landmarks_from_json,
    landmarks_json,
    normalize_name,
    parse_time,
    utc_now,
    write_private_file,
)
from .filenames import display_name, special_file
from .imageio import ImageError, probe_header, read_file

FORMAT = "faceapp-gallery-export"
FORMAT_VERSION = 1
MANIFEST = "gallery.json"
ON_CONFLICT = ("merge", "rename", "skip")

ENC_MAGIC = b"faceapp-enc\x00"
# Version 2 adds a plain digest of the header after the check value, so that a damaged
# header is told from a wrong passphrase; version 1 files are still read.
ENC_VERSION = 2
CHUNK = 1 << 20
TAG = 16
# The only key parameters accepted are the ones faceapp writes: a crafted header
# asking for more would cost minutes and gigabytes before it could be refused.
SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P = 17, 8, 1
_HEADER_LEN = len(ENC_MAGIC) + 1 + 3 + 16 + 4 + 7  # before the 16-byte check value
_DIGEST_LEN = 16  # version 2: sha256(header + check value), truncated
MAX_MANIFEST = 256 << 20
MAX_MEMBER = 64 << 20
MAX_TOTAL = 16 << 30  # all members uncompressed
# A stored crop is the 256 x 256 canvas (align.storage_crop); anything past this is no
# face crop, and a crafted 20000 x 20000 one must not be decoded to find out.
MAX_CROP_SIDE = 1024
CROP_BATCH = 32  # crops decoded at once while their templates are computed
MAX_RATIO = 200  # uncompressed / compressed, per member past 1 MB (zip bombs)
# People with no face in the archive (enrolled by name only): a real export has few,
# an archive declaring millions of them is not an export.
MAX_PEOPLE_WITHOUT_FACES = 10_000


class ArchiveError(GalleryError):
    """The export file cannot be read: damaged, not an export, or too new."""


class WrongPassphrase(ArchiveError):
    """The passphrase does not open this export."""


class NameClash(ArchiveError):
    """People in the export have names already in the gallery, and no choice was made."""

    def __init__(self, names: list[str]):
        self.names = names
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10
                                         else "")
        super().__init__(f"{len(names)} people in the export are already in the gallery "
                         f"({shown}); choose what to do with them: merge (add their samples "
                         "to the people here), rename (import them as \"Name (2)\") or "
                         "skip; nothing was imported")


@dataclass
class ExportSummary:
    path: Path
    people: int
    faces: int
    models: dict[str, int]
    encrypted: bool
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item, why), not exported


@dataclass
class ImportReport:
    people_added: int = 0
    people_merged: int = 0
    renamed: dict[str, str] = field(default_factory=dict)  # name in the archive -> name given
    faces_added: int = 0
    faces_skipped: int = 0  # already in the gallery (same crop, same person)
    embeddings_added: int = 0  # computed from the imported crops by the active model
    embeddings_ignored: int = 0  # vectors in the archive (never trusted)
    people_skipped: list[str] = field(default_factory=list)  # name clashes, on_conflict="skip"
    damaged: list[tuple[str, str]] = field(default_factory=list)  # (item, why), not imported
    # merged people whose imported photos do not look like the person of that name
    # already enrolled: name -> their best score against that person
    unlike: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------ encryption

def _aesgcm():
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
    except ImportError as exc:  # pragma: no cover - the dependency is declared
        raise ArchiveError("encrypted exports need the 'cryptography' package") from exc
    return AESGCM, Scrypt


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    if isinstance(passphrase, str):
        passphrase = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    if not isinstance(passphrase, (bytes, bytearray)) or not passphrase:
        raise ValueError("a passphrase is a non-empty str")
    return bytes(passphrase)


def _derive(passphrase: bytes, salt: bytes, log2_n: int, r: int, p: int) -> tuple[bytes, bytes]:
    _, Scrypt = _aesgcm()
    key = Scrypt(salt=salt, length=64, n=1 << log2_n, r=r, p=p).derive(passphrase)
    return key[:32], key[32:]


def _check_value(check_key: bytes, header: bytes) -> bytes:
    mac = hmac.new(check_key, b"faceapp passphrase check\x00" + header, hashlib.sha256)
    return mac.digest()[:16]


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _encrypt(plain: bytes, passphrase: str | bytes, out) -> None:
    AESGCM, _ = _aesgcm()
    salt, prefix = secrets.token_bytes(16), secrets.token_bytes(7)
    header = (ENC_MAGIC + bytes([ENC_VERSION, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P]) + salt
              + CHUNK.to_bytes(4, "big") + prefix)
    enc_key, check_key = _derive(_passphrase_bytes(passphrase), salt, SCRYPT_LOG2_N,
                                 SCRYPT_R, SCRYPT_P)
    header += _check_value(check_key, header)
    header += hashlib.sha256(header).digest()[:_DIGEST_LEN]
    out.write(header)
    aead = AESGCM(enc_key)
    count = max(1, math.ceil(len(plain) / CHUNK))
    if count >= 1 << 32:
        raise ArchiveError("the export is too large to encrypt")
    view = memoryview(plain)
    for i in range(count):
        out.write(aead.encrypt(_nonce(prefix, i, i == count - 1),
                               bytes(view[i * CHUNK:(i + 1) * CHUNK]), header))


def _decrypt(data: bytes, passphrase: str | bytes) -> bytes:
    AESGCM, _ = _aesgcm()
    from cryptography.exceptions import InvalidTag

    version = data[len(ENC_MAGIC)] if len(data) > len(ENC_MAGIC) else None
    header_len = _HEADER_LEN + 16 + (_DIGEST_LEN if version == 2 else 0)
    if len(data) < header_len + TAG:
        raise ArchiveError("the encrypted export is damaged: it is truncated")
    if version not in (1, ENC_VERSION):
        if version is not None and version > ENC_VERSION:
            raise ArchiveError(f"the export uses encryption version {version}, which needs "
                               "a newer faceapp")
        raise ArchiveError("the encrypted export is damaged: unknown encryption version")
    header = data[:header_len]
    if version == 2 and not hmac.compare_digest(
            hashlib.sha256(header[:-_DIGEST_LEN]).digest()[:_DIGEST_LEN], header[-_DIGEST_LEN:]):
        raise ArchiveError("the encrypted export is damaged: its header was altered; "
                           "nothing was imported")
    pos = len(ENC_MAGIC) + 1
    log2_n, r, p = data[pos], data[pos + 1], data[pos + 2]
    if (log2_n, r, p) != (SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P):
        raise ArchiveError("the encrypted export is damaged or not written by faceapp: "
                           f"key parameters n=2^{log2_n}, r={r}, p={p} are not the ones "
                           "faceapp uses")
    pos += 3
    salt = data[pos:pos + 16]
    chunk = int.from_bytes(data[pos + 16:pos + 20], "big")
    prefix = data[pos + 20:pos + 27]
    if chunk != CHUNK:
        raise ArchiveError("the encrypted export is damaged: invalid chunk size")
    enc_key, check_key = _derive(_passphrase_bytes(passphrase), salt, log2_n, r, p)
    if not hmac.compare_digest(_check_value(check_key, data[:_HEADER_LEN]),
                               data[_HEADER_LEN:_HEADER_LEN + 16]):
        raise WrongPassphrase("wrong passphrase for this export")
    aead = AESGCM(enc_key)
    body = memoryview(data)[len(header):]
    step = chunk + TAG
    count = max(1, math.ceil(len(body) / step))
    parts = []
    try:
        for i in range(count):
            parts.append(aead.decrypt(_nonce(prefix, i, i == count - 1),
                                      bytes(body[i * step:(i + 1) * step]), header))
    except InvalidTag:
        raise ArchiveError("the encrypted export is damaged (altered or truncated); "
                           "nothing was imported") from None
    return b"".join(parts)


# ---------------------------------------------------------------------------- export

def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _write_zip(gallery: GalleryStore, out, skipped: list) -> tuple[int, int, dict[str, int]]:
    """One read transaction: the export is a consistent snapshot. A face whose stored
    crop no longer decodes is left out and listed in `skipped`."""
    people, faces = [], []
    models: dict[str, int] = {}
    names = {}
    with gallery.reading() as db, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for pid, name, created, updated, notes in db.execute(
                "SELECT id, name, created, updated, notes FROM people ORDER BY id"):
            people.append({"id": pid, "name": name, "created": created, "updated": updated,
                           "notes": notes})
            names[pid] = name
        exported = set()
        for fid, pid, crop, landmarks, quality, source, created, flagged in db.execute(
                "SELECT id, person_id, crop, landmarks, quality, source, created, flagged "
                "FROM faces ORDER BY id"):
            try:
                decode_crop(crop)
            except ValueError as exc:
                skipped.append((f"sample {fid} of {names.get(pid, '?')} ({source or 'no source'})",
                                f"its stored crop is damaged ({exc}); it was not exported"))
                continue
            exported.add(fid)
            member = f"faces/{fid}.png"
            zf.writestr(zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0)), crop,
                        compress_type=zipfile.ZIP_STORED)
            faces.append({"id": fid, "person_id": pid, "file": member,
                          "landmarks": json.loads(landmarks), "quality": quality,
                          "source": source, "created": created, "flagged": bool(flagged)})
        model_entries = []
        model_ids = [r[0] for r in db.execute(
            "SELECT DISTINCT model_id FROM embeddings ORDER BY model_id")]
        for n, model_id in enumerate(model_ids):
            rows = [r for r in db.execute("SELECT face_id, dim, vector FROM embeddings "
                                          "WHERE model_id = ? ORDER BY face_id", [model_id])
                    if r[0] in exported]
            good, matrix, damaged = decode_vectors(rows)
            for fid in damaged:
                skipped.append((f"the {model_id} template of sample {fid}",
                                "it is damaged; it was not exported (the sample was: "
                                "`faceapp reembed` rebuilds the template)"))
            if not good:
                continue
            member = f"embeddings/{n}.npy"
            zf.writestr(member, _npy_bytes(matrix))
            model_entries.append({"model_id": model_id, "dim": int(matrix.shape[1]),
                                  "file": member, "face_ids": good})
            models[model_id] = len(good)
        manifest = {"format": FORMAT, "version": FORMAT_VERSION,
                    "gallery_schema": SCHEMA_VERSION, "created": format_time(utc_now()),
                    "people": people, "faces": faces, "embeddings": model_entries}
        zf.writestr(MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))
    return len(people), len(faces), models


def export_gallery(gallery: GalleryStore, path: str | os.PathLike,
                   passphrase: str | bytes | None = None) -> ExportSummary:
    """Write every person, face crop and embedding to one file (replacing it
    atomically; owner-only). With a passphrase it is encrypted."""
    path = Path(path)
    if passphrase is not None:
        _passphrase_bytes(passphrase)  # refuse an empty one before doing any work
    counts: list = []
    skipped: list[tuple[str, str]] = []

    def write(f) -> None:
        skipped.clear()
        if passphrase is None:
            counts.append(_write_zip(gallery, f, skipped))
        else:
            buf = io.BytesIO()
            counts.append(_write_zip(gallery, buf, skipped))
            _encrypt(buf.getbuffer(), passphrase, f)

    try:
        write_private_file(path, write)
    except OSError as exc:
        raise ArchiveError(f"the export {path} could not be written: {exc.strerror or exc}") \
            from exc
    people, faces, models = counts[0]
    return ExportSummary(path=path, people=people, faces=faces, models=models,
                         encrypted=passphrase is not None, skipped=list(skipped))


# ---------------------------------------------------------------------------- import

@dataclass
class _Face:
    id: int
    person_id: int
    crop: bytes
    landmarks: str
    quality: float
    source: str
    created: str
    flagged: bool
    content_hash: bytes = b""


def _fail(message: str) -> ArchiveError:
    return ArchiveError(f"the export is damaged or not a faceapp export: {message}; "
                        "nothing was imported")


def _want(cond: bool, message: str) -> None:
    if not cond:
        raise _fail(message)


def _time_text(value, what: str) -> str:
    _want(isinstance(value, str), f"{what} has no valid time")
    try:
        parse_time(value)
    except ValueError:
        raise _fail(f"{what} has an invalid time {value!r}") from None
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _member(zf: zipfile.ZipFile, name: str, limit: int = MAX_MEMBER) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise _fail(f"{name} is missing") from None
    _want(info.file_size <= limit, f"{name} is too large")
    return zf.read(info)


def _check_crop_size(crop: bytes, name: str) -> None:
    """ValueError unless the crop's header (read without decoding) says it is an image
    of at most MAX_CROP_SIDE pixels a side."""
    header = probe_header(crop, display_name(name))
    if max(header.width, header.height) > MAX_CROP_SIDE:
        raise ValueError(f"{header.width}x{header.height} pixels: a face crop is at most "
                         f"{MAX_CROP_SIDE}x{MAX_CROP_SIDE}; it was not decoded")


def is_archive(path: str | os.PathLike) -> bool:
    """Whether a file is a faceapp export (encrypted or not): what an output must not
    replace without being asked to."""
    if special_file(path) or not os.path.isfile(path):
        return False  # a FIFO must not hang the question
    try:
        with open(path, "rb") as f:
            head = f.read(len(ENC_MAGIC))
            if head == ENC_MAGIC:
                return True
            if not head.startswith(b"PK\x03\x04"):
                return False
            f.seek(0)
            with zipfile.ZipFile(f) as zf:
                return "gallery.json" in zf.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def _open_archive(data: bytes, passphrase) -> bytes:
    if data.startswith(ENC_MAGIC):
        if passphrase is None:
            raise WrongPassphrase("this export is encrypted: a passphrase is needed")
        return _decrypt(data, passphrase)
    if not data.startswith(b"PK\x03\x04"):
        raise ArchiveError("this file is not a faceapp gallery export")
    return data


def _load(data: bytes, damaged: list) -> tuple[list[dict], list[_Face], int]:
    """Parse and check the whole archive; nothing is written yet. Faces whose crop is
    damaged are left out and listed in `damaged`; a damaged manifest refuses it all.
    Returns the people, the sound faces and the number of vectors in the archive."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError) as exc:
        raise _fail(str(exc)) from None
    members = zf.infolist()
    seen: set[str] = set()
    for info in members:  # zipfile would silently read the last of two same names
        _want(info.filename not in seen, f"{info.filename} appears twice")
        seen.add(info.filename)
        _want(info.file_size <= MAX_RATIO * max(info.compress_size, 1)
              or info.file_size < 1 << 20, f"{info.filename} expands suspiciously")
    _want(sum(i.file_size for i in members) <= MAX_TOTAL, "it expands to more than "
          f"{MAX_TOTAL >> 30} GB")
    with zf:
        try:
            manifest = json.loads(_member(zf, MANIFEST, MAX_MANIFEST).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _fail(f"{MANIFEST} is unreadable ({exc})") from None
        _want(isinstance(manifest, dict) and manifest.get("format") == FORMAT,
              "it has no faceapp manifest")
        version = manifest.get("version")
        _want(_is_int(version), "the format version is missing")
        if version > FORMAT_VERSION:
            raise ArchiveError(f"this export has format version {version}; this faceapp "
                               f"reads up to {FORMAT_VERSION}: update faceapp to import it")

        people = manifest.get("people")
        _want(isinstance(people, list), "the people list is missing")
        person_ids: set[int] = set()
        for p in people:
            _want(isinstance(p, dict) and _is_int(p.get("id")), "a person has no id")
            _want(p["id"] not in person_ids, f"person {p['id']} is listed twice")
            person_ids.add(p["id"])
            try:
                p["name"] = normalize_name(p.get("name"))
            except (TypeError, ValueError) as exc:
                raise _fail(f"person {p['id']} has an invalid name ({exc})") from None
            p["created"] = _time_text(p.get("created"), f"person {p['id']}")
            p["notes"] = p.get("notes") or ""
            _want(isinstance(p["notes"], str), f"person {p['id']} has invalid notes")

        faces = []
        face_ids: set[int] = set()
        declared_faces = manifest.get("faces") or []
        _want(isinstance(declared_faces, list), "the face list is invalid")
        crop_files = [f.get("file") for f in declared_faces if isinstance(f, dict)]
        _want(len(set(crop_files)) == len(crop_files), "two faces share one crop file")
        _want(len(crop_files) <= len(members), f"it lists {len(crop_files)} faces but holds "
              f"{len(members)} files")
        with_faces = {f.get("person_id") for f in declared_faces if isinstance(f, dict)}
        _want(sum(p["id"] not in with_faces for p in people) <= MAX_PEOPLE_WITHOUT_FACES,
              f"it declares {len(people)} people, most without any face")
        for f in declared_faces:
            _want(isinstance(f, dict) and _is_int(f.get("id")), "a face has no id")
            fid = f["id"]
            _want(fid not in face_ids, f"face {fid} is listed twice")
            face_ids.add(fid)
            _want(f.get("person_id") in person_ids, f"face {fid} belongs to no listed person")
            try:
                landmarks = landmarks_json(check_landmarks(f.get("landmarks")))
                quality = float(f.get("quality"))
            except (TypeError, ValueError) as exc:
                raise _fail(f"face {fid}: {exc}") from None
            _want(math.isfinite(quality), f"face {fid} has an invalid quality")
            _want(isinstance(f.get("source", ""), str), f"face {fid} has an invalid source")
            _want(isinstance(f.get("file"), str), f"face {fid} has no crop")
            try:
                crop = _member(zf, f["file"])
                _check_crop_size(crop, f["file"])  # from its header, before decoding it
                content_hash = crop_digest(decode_crop(crop))
            except (ArchiveError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
                damaged.append((f"face {fid} ({f['file']})", f"damaged crop: {exc}"))
                continue
            faces.append(_Face(id=fid, person_id=f["person_id"], crop=crop, landmarks=landmarks,
                               quality=quality, source=f.get("source", ""),
                               created=_time_text(f.get("created"), f"face {fid}"),
                               flagged=bool(f.get("flagged", False)),
                               content_hash=content_hash))

        vectors = sum(len(e.get("face_ids") or []) for e in manifest.get("embeddings") or []
                      if isinstance(e, dict))
    return people, faces, vectors


def _free_name(gallery: GalleryStore, db, name: str) -> str:
    n = 2
    while True:
        candidate = f"{name} ({n})"
        if gallery.person_id_by_name(db, candidate) is None:
            return candidate
        n += 1


def import_gallery(gallery: GalleryStore, path: str | os.PathLike,
                   passphrase: str | bytes | None = None, on_conflict: str | None = None,
                   embedder=None) -> ImportReport:
    """Add the people and faces of an export to the gallery, in one transaction.

    on_conflict, for a person whose name is already in the gallery: "merge" (add the
    samples to that person; crops they already have are skipped, so importing twice
    adds nothing), "rename" (a new person "Name (2)"), "skip" (leave them out); None
    refuses the whole import with NameClash when there is any such name.
    embedder: the active model; templates are computed from the imported crops (the
    archive's own vectors are never used). Without one, the faces wait for `reembed`.
    """
    if on_conflict is not None and on_conflict not in ON_CONFLICT:
        raise ValueError(f"on_conflict is one of {ON_CONFLICT}, not {on_conflict!r}")
    path = Path(path)
    try:  # a FIFO or a device is refused unread, as every file faceapp reads
        data = read_file(path, limit=None)
    except ImageError as exc:
        raise ArchiveError(f"the export {display_name(path)} cannot be read: "
                           f"{exc.reason}") from None
    report = ImportReport()
    people, faces, report.embeddings_ignored = _load(_open_archive(data, passphrase),
                                                     report.damaged)
    by_person: dict[int, list[_Face]] = {}
    for f in faces:
        by_person.setdefault(f.person_id, []).append(f)
    with gallery.reading() as db:
        clashes = [p["name"] for p in people if gallery.person_id_by_name(db, p["name"]) is not None]
    if clashes and on_conflict is None:
        raise NameClash(clashes)
    vectors = {}
    if embedder is not None and faces:
        # computed before the write transaction: the gallery stays writable meanwhile
        from .enroll import embed_samples

        # a few crops decoded at a time: only their vectors are kept for all of them
        for start in range(0, len(faces), CROP_BATCH):
            batch = faces[start:start + CROP_BATCH]
            samples = [FaceSample(decode_crop(f.crop), landmarks_from_json(f.landmarks))
                       for f in batch]
            vectors.update(zip((f.id for f in batch), embed_samples(embedder, samples)))
            del samples
    if vectors and on_conflict == "merge":
        # as enrolment says it: photos merged under a name should look like that person
        from .enroll import resemblance

        for p in people:
            existing = gallery.find_person(p["name"])
            mine = [vectors[f.id] for f in by_person.get(p["id"], []) if f.id in vectors]
            if existing is not None and mine:
                _, unlike = resemblance(gallery, embedder, np.stack(mine), existing.id)
                if unlike is not None:
                    report.unlike[existing.name] = unlike
    new_face_id: dict[int, int] = {}
    with gallery.writing() as db:
        for p in people:
            target = gallery.person_id_by_name(db, p["name"])
            if target is None:
                target = gallery.insert_person(db, p["name"], p["notes"], p["created"])
                report.people_added += 1
            elif on_conflict == "skip":
                report.people_skipped.append(p["name"])
                continue
            elif on_conflict == "rename":
                new_name = _free_name(gallery, db, p["name"])
                target = gallery.insert_person(db, new_name, p["notes"], p["created"])
                report.renamed[p["name"]] = new_name
                report.people_added += 1
            else:
                report.people_merged += 1
            rows, sources = [], []
            for f in by_person.get(p["id"], []):
                rows.append({"crop": f.crop, "landmarks": f.landmarks, "quality": f.quality,
                             "source": f.source, "created": f.created,
                             "flagged": int(f.flagged), "content_hash": f.content_hash})
                sources.append(f.id)
            # a crop this person already holds is skipped by the database's unique index
            for old, new in zip(sources, gallery.insert_faces(db, target, rows, {})):
                if new is None:
                    report.faces_skipped += 1
                else:
                    new_face_id[old] = new
                    report.faces_added += 1
        if vectors and new_face_id:
            model_id, dim = embedder.model_id, embedder.dim
            gallery.check_dim(db, model_id, dim)
            db.executemany(
                "INSERT INTO embeddings(face_id, model_id, dim, vector) VALUES (?, ?, ?, ?)",
                [(new, model_id, dim, np.asarray(vectors[old], np.float32).tobytes())
                 for old, new in new_face_id.items()])
            report.embeddings_added = len(new_face_id)
    return report
