"""Real photographs available offline, from the sample data of installed packages.

* matplotlib (a pixjax dependency, so always present): ``grace_hopper.jpg``
  (Rear Admiral Grace Hopper, a 600x512 (HxW) colour portrait, US Navy photograph).
* scikit-image (optional; ``pip install scikit-image``): ``astronaut.png`` (Eileen
  Collins, NASA, public domain), ``chelsea.png`` (a tabby cat, CC0), ``coffee.png``
  (a cup of coffee, CC0), ``motorcycle_left.png`` (a motorcycle, Middlebury 2014
  stereo benchmark), ``rocket.jpg`` (a Falcon 9 launch, SpaceX, public domain).

Only colour photographs of everyday scenes are listed, not logos, clip art, charts,
textures, microscopy or greyscale test images. Files are located without importing
the packages.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil

__all__ = [
    "MATPLOTLIB_PHOTOS",
    "SKIMAGE_PHOTOS",
    "make_photo_folder",
    "sample_photo_paths",
]

MATPLOTLIB_PHOTOS: tuple[str, ...] = ("grace_hopper.jpg",)
SKIMAGE_PHOTOS: tuple[str, ...] = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "motorcycle_left.png",
    "rocket.jpg",
)


def _package_dir(name: str) -> pathlib.Path | None:
    """The folder of an installed package, without importing it (None if absent)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(next(iter(spec.submodule_search_locations)))


def sample_photo_paths() -> list[pathlib.Path]:
    """Paths of the real photographs found in installed packages' sample data.

    Returns:
      matplotlib's photos first, then scikit-image's if it is installed, each group in
      the order of :data:`MATPLOTLIB_PHOTOS` / :data:`SKIMAGE_PHOTOS`; files that are
      missing are skipped (the list may be empty only if matplotlib's sample data was
      stripped from the installation).
    """
    folders = []
    mpl = _package_dir("matplotlib")
    if mpl is not None:
        folders.append((mpl / "mpl-data" / "sample_data", MATPLOTLIB_PHOTOS))
    skimage = _package_dir("skimage")
    if skimage is not None:
        folders.append((skimage / "data", SKIMAGE_PHOTOS))
    return [
        folder / name
        for folder, names in folders
        for name in names
        if (folder / name).is_file()
    ]


def make_photo_folder(dest: str | os.PathLike) -> pathlib.Path:
    """Copies :func:`sample_photo_paths` into ``dest`` (created if needed).

    The result is a flat, unlabelled image folder: load it with
    ``pixjax.data.load("folder:DEST", size=(224, 224))`` or, with ImageNet
    preprocessing, ``pixjax.data.imagenet.load_photos(sorted(DEST.iterdir()))``.
    Files already in ``dest`` with the same names are overwritten; others are left.

    Returns:
      ``dest`` as a :class:`pathlib.Path`.

    Raises:
      FileNotFoundError: when no sample photographs are installed.
    """
    paths = sample_photo_paths()
    if not paths:
        raise FileNotFoundError(
            "no sample photographs found: matplotlib's mpl-data/sample_data has no "
            f"{MATPLOTLIB_PHOTOS} and scikit-image is not installed "
            "(pip install scikit-image adds more)"
        )
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for path in paths:
        shutil.copyfile(path, dest / path.name)
    return dest
