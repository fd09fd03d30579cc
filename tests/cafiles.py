"""Replacing a CA file on disk the three ways it happens in the wild.

Each writer puts `pem` at ``directory/ca.pem``:

- ``rename``: write a hidden temporary file, then rename it over ``ca.pem`` (new inode);
- ``k8s``: the kubelet's update of a mounted Secret or ConfigMap: the files live in a
  timestamped directory, ``..data`` links to it and ``ca.pem`` links to ``..data/ca.pem``;
  a new timestamped directory is published by renaming a new ``..data_tmp`` link over
  ``..data``, then the old directory is removed;
- ``rewrite``: truncate and write the same file in place (same inode).
"""

from __future__ import annotations

import os
import shutil
from itertools import count
from pathlib import Path

WRITERS = ("rename", "k8s", "rewrite")

_stamps = count()


def publish(how: str, directory: Path, pem: bytes) -> None:
    """Makes ``directory/ca.pem`` hold `pem`, written the way `how` names."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "ca.pem"
    if how == "rename":
        temporary = directory / ".ca.pem.tmp"
        temporary.write_bytes(pem)
        os.replace(temporary, target)
    elif how == "k8s":
        _kubelet_publish(directory, pem)
    elif how == "rewrite":
        with open(target, "wb") as f:
            f.write(pem)
    else:
        raise ValueError(f"unknown writer {how!r}, expected one of {WRITERS}")


def _kubelet_publish(directory: Path, pem: bytes) -> None:
    # As kubernetes pkg/volume/util/atomic_writer.go: new payload directory, ..data_tmp
    # link, rename over ..data, user-visible names link through ..data, old payload removed.
    payload = directory / f"..2026_01_01_00_00_00.{next(_stamps):09d}"
    payload.mkdir()
    (payload / "ca.pem").write_bytes(pem)
    data = directory / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    os.symlink(payload.name, directory / "..data_tmp")
    os.replace(directory / "..data_tmp", data)
    if not (directory / "ca.pem").is_symlink():
        os.symlink("..data/ca.pem", directory / "ca.pem")
    if old is not None:
        shutil.rmtree(directory / old)
