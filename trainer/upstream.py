"""The published upstream weights the trainer converts, pinned by version and sha256.

The archives are fetched from the package index with `pip download --no-deps` (the
packages pin old torch/numpy, so they are never installed) and read in place: we only
need a few data files out of each.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from faceapp.core.models import file_sha256


@dataclass(frozen=True)
class UpstreamArchive:
    requirement: str
    filename: str
    sha256: str
    licence: str
    homepage: str

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")


MTCNN_WHEEL = UpstreamArchive(
    requirement="facenet-pytorch==2.6.0",
    filename="facenet_pytorch-2.6.0-py3-none-any.whl",
    sha256="ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca",
    licence="MIT (facenet-pytorch, Tim Esler); MTCNN weights after Zhang et al. 2016",
    homepage="https://github.com/timesler/facenet-pytorch",
)

DLIB_MODELS_SDIST = UpstreamArchive(
    requirement="face_recognition_models==0.3.0",
    filename="face_recognition_models-0.3.0.tar.gz",
    sha256="b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf",
    licence="CC0 1.0 (dlib models by Davis E. King)",
    homepage="https://github.com/davisking/dlib-models",
)

MTCNN_MEMBERS = {
    "pnet": "facenet_pytorch/data/pnet.pt",
    "rnet": "facenet_pytorch/data/rnet.pt",
    "onet": "facenet_pytorch/data/onet.pt",
}
DLIB_RESNET_MEMBER = (
    "face_recognition_models-0.3.0/face_recognition_models/models/"
    "dlib_face_recognition_resnet_model_v1.dat"
)


class UpstreamError(RuntimeError):
    pass


def cache_dir() -> Path:
    root = os.environ.get("FACEAPP_TRAINER_CACHE")
    path = Path(root) if root else Path.home() / ".cache" / "faceapp-trainer"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch(archive: UpstreamArchive) -> Path:
    """Return the verified archive, downloading it once into the cache."""
    target = cache_dir() / archive.filename
    if not target.exists():
        kind = "--only-binary=:all:" if archive.is_wheel else "--no-binary=:all:"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", kind,
               "--disable-pip-version-check", "-q", "-d", str(target.parent),
               archive.requirement]
        print(f"fetching {archive.requirement} ...", file=sys.stderr)
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not target.exists():
            raise UpstreamError(
                f"could not download {archive.requirement}: {result.stderr.strip()[-500:]}")
    actual = file_sha256(target)
    if actual != archive.sha256:
        raise UpstreamError(
            f"{target} has sha256 {actual}, expected {archive.sha256}; delete it and retry")
    return target


def read_member(archive: UpstreamArchive, member: str) -> bytes:
    path = fetch(archive)
    if archive.is_wheel:
        with zipfile.ZipFile(path) as zf:
            return zf.read(member)
    with tarfile.open(path, "r:gz") as tf:
        fh = tf.extractfile(member)
        if fh is None:
            raise UpstreamError(f"{member} not found in {path}")
        return fh.read()


def dlib_resnet_file() -> Path:
    """The dlib ResNet .dat file, extracted once next to its archive."""
    out = cache_dir() / "dlib_face_recognition_resnet_model_v1.dat"
    if not out.exists():
        tmp = out.with_suffix(".part")
        tmp.write_bytes(read_member(DLIB_MODELS_SDIST, DLIB_RESNET_MEMBER))
        tmp.replace(out)
    return out
