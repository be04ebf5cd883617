"""Package layout (metadata and dependencies live in setup.cfg).

The repository keeps ``experiments/`` and ``checkpoints/`` at its top level; they are
installed inside the ``pixjax`` namespace, as ``pixjax.experiments`` and
``pixjax._checkpoints``, so a wheel adds no generic top-level name to site-packages and
the shipped checkpoints travel with it.
"""

from setuptools import find_packages, setup

_MAPPED = {"experiments": "pixjax.experiments", "checkpoints": "pixjax._checkpoints"}

packages = find_packages(include=["pixjax", "pixjax.*"])
for src, dst in _MAPPED.items():
    packages += [
        dst + name[len(src) :] for name in find_packages(include=[src, src + ".*"])
    ]

setup(
    packages=packages,
    package_dir={dst: src for src, dst in _MAPPED.items()},
    package_data={
        "pixjax": [
            "py.typed",
            "data/*.txt",
            "data/_bundled/*.npz",
            "data/_bundled/*.md",
        ],
        "pixjax._checkpoints": ["*/metadata.json", "*/variables/**/*", "README.md"],
    },
    include_package_data=False,
)
