"""Unpack one student submission (a zip or a folder) into a folder of its own, safely.

Nothing of the submission is trusted: a zip is read entry by entry (never
``extractall``) and refused, as a whole, if any entry is unsafe or the whole is too
big. Refused: absolute paths, drive letters, ``..`` components, backslashes and NUL
in names, duplicate names, symlinks and other non-regular files, encrypted entries,
more than :attr:`Limits.max_files` files, more than :attr:`Limits.max_bytes` bytes
uncompressed (declared sizes are checked first, written bytes are counted too, so a
zip bomb stops at the limit). A folder is copied under the same rules, skipping the
folders ``prepare-submission`` never packs (``.venv``, ``.git``, caches).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CHUNK = 1 << 20
# Never graded, never copied from a folder submission (prepare-submission skips them too).
SKIPPED_DIRS = {
    ".venv", "venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis",
    ".ipynb_checkpoints", ".mypy_cache", "__MACOSX",
}  # fmt: skip


class Unreadable(Exception):
    """The submission cannot be graded; ``str(err)`` says why, in one line."""


@dataclass(frozen=True)
class Limits:
    max_files: int = 5000
    max_bytes: int = 200 * 2**20  # a real submission is ~2 MB uncompressed


def submission_id(path: Path) -> str:
    """The ID a submission is graded under: ``hw4-123_456.zip`` -> ``123_456``.

    Also for folders (``hw4-123_456/``) and other names (their stem); characters
    other than letters, digits, ``.``, ``_`` and ``-`` become ``_``.
    """
    name = path.name
    if path.suffix.lower() == ".zip":
        name = name[: -len(path.suffix)]
    if name.startswith("hw4-") and len(name) > 4:
        name = name[4:]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return name or "unnamed"


def _safe_parts(name: str) -> tuple[str, ...]:
    """The path components of a zip entry name, or Unreadable if it is unsafe."""
    if "\x00" in name or "\\" in name:
        raise Unreadable(f"unsafe entry name {name!r} (NUL or backslash)")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise Unreadable(f"unsafe entry {name!r}: absolute path")
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if ".." in parts:
        raise Unreadable(f"unsafe entry {name!r}: '..' leads outside the submission")
    if not parts:
        raise Unreadable(f"unsafe entry {name!r}: empty path")
    return parts


def _kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if info.is_dir():
        return "dir"
    if mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        return "symlink" if stat.S_ISLNK(mode) else "special file"
    return "file"


def _skipped(parts: tuple[str, ...]) -> bool:
    return any(p in SKIPPED_DIRS for p in parts[:-1]) or parts[-1] in SKIPPED_DIRS


def unpack_zip(src: Path, dest: Path, limits: Limits = Limits()) -> int:
    """Extract the zip at src into the (new, empty) folder dest; return the files written."""
    try:
        size = src.stat().st_size
    except OSError as e:
        raise Unreadable(f"cannot read: {e.strerror or e}") from None
    if size > limits.max_bytes:
        raise Unreadable(f"too big: the file has {size / 2**20:.0f} MiB (limit {limits.max_bytes / 2**20:.0f} MiB)")
    try:
        zf = zipfile.ZipFile(src)
    except zipfile.BadZipFile as e:
        raise Unreadable(f"not a zip file ({e})") from None
    except OSError as e:
        raise Unreadable(f"cannot read: {e.strerror or e}") from None
    with zf:
        try:
            infos = zf.infolist()
        except Exception as e:  # a corrupt central directory
            raise Unreadable(f"corrupt zip ({type(e).__name__}: {e})") from None
        files, seen, declared = [], set(), 0
        for info in infos:
            parts = _safe_parts(info.filename)
            kind = _kind(info)
            if kind != "file" and kind != "dir":
                raise Unreadable(f"unsafe entry {info.filename!r}: a {kind}")
            if info.flag_bits & 0x1:
                raise Unreadable(f"encrypted entry {info.filename!r}")
            if parts in seen:
                raise Unreadable(f"duplicate entry {info.filename!r}")
            seen.add(parts)
            if kind == "file" and not _skipped(parts):
                files.append((info, parts))
                declared += info.file_size
        if len(files) > limits.max_files:
            raise Unreadable(f"too many files: {len(files)} (limit {limits.max_files})")
        if declared > limits.max_bytes:
            raise Unreadable(
                f"too big: {declared / 2**20:.0f} MiB uncompressed "
                f"(limit {limits.max_bytes / 2**20:.0f} MiB; a zip bomb?)"
            )
        dest.mkdir(parents=True)
        written = 0
        for info, parts in files:
            target = dest.joinpath(*parts)
            try:
                with zf.open(info) as fin:
                    written = _copy_stream(fin, target, written, limits, info.filename)
            except Unreadable:
                raise
            except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as e:
                raise Unreadable(f"corrupt entry {info.filename!r}: {e}") from None
            except (OSError, EOFError, ValueError, RuntimeError) as e:
                raise Unreadable(f"cannot extract {info.filename!r}: {e}") from None
    return len(files)


def _copy_stream(fin, target: Path, written: int, limits: Limits, label: str) -> int:
    """Copy fin to the new file target, counting bytes against the total limit."""
    _mkdirs(target.parent)
    # O_EXCL | O_NOFOLLOW: never write through something that is already there.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as fout:
        while chunk := fin.read(CHUNK):
            written += len(chunk)
            if written > limits.max_bytes:
                raise Unreadable(
                    f"too big: more than {limits.max_bytes / 2**20:.0f} MiB uncompressed "
                    f"(at {label!r}; a zip bomb?)"
                )
            fout.write(chunk)
    return written


def _mkdirs(folder: Path) -> None:
    # The parents are folders this module created (names were checked); a file in
    # the way (entries "a" and "a/b") raises FileExistsError -> cannot extract.
    folder.mkdir(parents=True, exist_ok=True)


def copy_folder(src: Path, dest: Path, limits: Limits = Limits()) -> int:
    """Copy the folder src into the (new) folder dest under the zip rules; return files."""
    if not src.is_dir():
        raise Unreadable("not a folder")
    files: list[tuple[Path, tuple[str, ...]]] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(src, onerror=_raise_unreadable):
        base = Path(dirpath)
        rel = base.relative_to(src).parts
        kept = []
        for d in sorted(dirnames):
            if d in SKIPPED_DIRS:
                continue
            if (base / d).is_symlink():
                raise Unreadable(f"unsafe entry {'/'.join(rel + (d,))!r}: a symlink")
            kept.append(d)
        dirnames[:] = kept
        for name in sorted(filenames):
            path = base / name
            st = path.lstat()
            label = "/".join(rel + (name,))
            if stat.S_ISLNK(st.st_mode):
                raise Unreadable(f"unsafe entry {label!r}: a symlink")
            if not stat.S_ISREG(st.st_mode):
                raise Unreadable(f"unsafe entry {label!r}: a special file")
            files.append((path, rel + (name,)))
            total += st.st_size
            if len(files) > limits.max_files:
                raise Unreadable(f"too many files: more than {limits.max_files}")
            if total > limits.max_bytes:
                raise Unreadable(f"too big: more than {limits.max_bytes / 2**20:.0f} MiB")
    dest.mkdir(parents=True)
    written = 0
    for path, parts in files:
        try:
            with open(path, "rb") as fin:
                written = _copy_stream(fin, dest.joinpath(*parts), written, limits, "/".join(parts))
        except OSError as e:
            raise Unreadable(f"cannot copy {'/'.join(parts)!r}: {e.strerror or e}") from None
    return len(files)


def _raise_unreadable(e: OSError):
    raise Unreadable(f"cannot read {e.filename}: {e.strerror or e}")


def unpack(src: Path, dest: Path, limits: Limits = Limits()) -> Path:
    """Unpack src (a zip file or a folder) into dest; return the project's root inside it.

    The root is dest itself, or its only top-level folder if the notebooks and
    ``hw4/`` sit one level down (a zip of the project's folder).
    """
    if not src.exists():
        raise Unreadable("no such file or folder")
    if src.is_dir():
        copy_folder(src, dest, limits)
    else:
        unpack_zip(src, dest, limits)
    return project_root(dest)


def project_root(dest: Path) -> Path:
    def looks_like_project(folder: Path) -> bool:
        return any(folder.glob("Part*_*.ipynb")) or (folder / "hw4").is_dir()

    if looks_like_project(dest):
        return dest
    subdirs = [p for p in dest.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and looks_like_project(subdirs[0]):
        return subdirs[0]
    return dest


def remove_tree(path: Path) -> None:
    """Remove a folder, also where a student's code made parts of it read-only."""
    if not path.exists():
        return
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass
    for dirpath, dirnames, _ in os.walk(path):  # top-down: fixed before it descends
        for d in dirnames:
            full = os.path.join(dirpath, d)
            try:
                if not os.path.islink(full):
                    os.chmod(full, 0o700)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)
