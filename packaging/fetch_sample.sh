#!/usr/bin/env bash
# Re-create packaging/assets/astronaut.png, the self-test's sample portrait, from the
# scikit-image wheel (skimage/data/astronaut.png: NASA photo of Eileen Collins, public
# domain). Only that one file is taken; nothing is installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$python" -m pip download --no-deps --only-binary=:all: --dest "$tmp" "scikit-image==0.26.0" >/dev/null
"$python" - "$tmp" "$here/assets/astronaut.png" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/scikit_image-*.whl")[0]
with zipfile.ZipFile(wheel) as zf, open(sys.argv[2], "wb") as out:
    out.write(zf.read("skimage/data/astronaut.png"))
PY
echo "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5  $here/assets/astronaut.png" | sha256sum -c -
