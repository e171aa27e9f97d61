"""SHA-256 digests that bind one artifact to another: the test set to its freeze, a gate decision to the
scores it decided on, a published model to the model that was evaluated."""

from __future__ import annotations

import hashlib
from pathlib import Path


def of_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def of_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def of_folder(folder: Path, leave_out: tuple[str, ...] = ()) -> str:
    """One digest of every file below `folder`: their relative paths and contents, in a fixed order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name not in leave_out:
            digest.update(f"{name}\0{of_file(path)}\n".encode())
    return digest.hexdigest()
