"""Package layout (everything else is in pyproject.toml).

The training code lives in ``src/train/`` but installs under the import name ``mixer_train``:
a top-level ``train`` would be shadowed by any ``train.py`` in the user's working directory.
pyproject.toml alone cannot both discover ``mixer.*`` and map a folder to another name.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages("src", include=["mixer", "mixer.*"]), "mixer_train"],
    package_dir={"": "src", "mixer_train": "src/train"},
)
