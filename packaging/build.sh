#!/usr/bin/env bash
# Linux: one command from a source checkout to a tested .deb.
#   packaging/build.sh            -> dist/faceapp/ (one-folder app) and dist/faceapp_<version>_<arch>.deb
# Environment: PYTHON (default .venv/bin/python, with `pip install -e .[package]`),
#   FACEAPP_DIST_DIR (default <repo>/dist), FACEAPP_BUILD_DIR (default <repo>/build).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
DIST="$(mkdir -p "${FACEAPP_DIST_DIR:-$REPO/dist}" && cd "${FACEAPP_DIST_DIR:-$REPO/dist}" && pwd)"
BUILD="$(mkdir -p "${FACEAPP_BUILD_DIR:-$REPO/build}" && cd "${FACEAPP_BUILD_DIR:-$REPO/build}" && pwd)"
VERSION="$("$PYTHON" -c 'import sys; sys.path.insert(0, sys.argv[1]); import faceapp; print(faceapp.__version__)' "$REPO")"
ARCH="$(dpkg --print-architecture)"
DEB="$DIST/faceapp_${VERSION}_${ARCH}.deb"

echo "== 1/4 PyInstaller one-folder build -> $DIST/faceapp"
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$DIST" --workpath "$BUILD/pyinstaller" "$REPO/packaging/faceapp.spec"

echo "== 2/4 self-test of the frozen app"
# Run from an empty folder with a throw-away HOME: the frozen app must need nothing else.
selftest_home="$(mktemp -d)"
( cd "$selftest_home" && HOME="$selftest_home" QT_QPA_PLATFORM=offscreen \
    "$DIST/faceapp/faceapp" --self-test ) | tee "$DIST/selftest.txt"
rm -rf "$selftest_home"

echo "== 3/4 .deb package"
root="$BUILD/deb/faceapp_${VERSION}_${ARCH}"
rm -rf "$root"
mkdir -p "$root/DEBIAN" "$root/opt" "$root/usr/bin" "$root/usr/share/applications" \
    "$root/usr/share/icons/hicolor/256x256/apps" "$root/usr/share/doc/faceapp"
cp -a "$DIST/faceapp" "$root/opt/faceapp"
ln -s /opt/faceapp/faceapp "$root/usr/bin/faceapp"
"$PYTHON" "$REPO/packaging/make_icon.py" "$root/usr/share/icons/hicolor/256x256/apps/faceapp.png"
cp "$REPO/packaging/linux/faceapp.desktop" "$root/usr/share/applications/faceapp.desktop"
cp "$REPO/packaging/assets/astronaut.LICENSE.txt" "$root/usr/share/doc/faceapp/"
installed_kb="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$installed_kb/" \
    "$REPO/packaging/linux/control" > "$root/DEBIAN/control"
install -m 0755 "$REPO/packaging/linux/postrm" "$root/DEBIAN/postrm"
find "$root" -type d -exec chmod 0755 {} +
dpkg-deb --root-owner-group -Zxz --build "$root" "$DEB" >/dev/null

echo "== 4/4 checks"
if dpkg-deb -c "$DEB" | grep -Eiq '/(torch|trainer|onnx)/|\.fp32\.onnx'; then
    echo "ERROR: the package holds torch, the trainer, onnx or fp32 models" >&2
    exit 1
fi
size_mb="$(( $(stat -c %s "$DEB") / 1000000 ))"
echo "$DEB: ${size_mb} MB (installed ${installed_kb} KB)"
if [ "$size_mb" -gt 150 ]; then
    echo "ERROR: the package is over 150 MB" >&2
    exit 1
fi
echo "OK"
