"""Where a device keeps its data: ``--data-dir``, else ``$MESHDEX_DATA_DIR``, else XDG."""

from __future__ import annotations

import os
from pathlib import Path

from meshdex.index.fsync import fsync_path

DATA_DIR_ENV = "MESHDEX_DATA_DIR"
APP_DIR_NAME = "meshdex"
STORE_DIR_NAME = "store"  # the LMDB environment inside a data directory
INDEX_DIR_NAME = "indexes"  # the collections' .leann bundles and the decision log
OWN_DIR_NAMES = (STORE_DIR_NAME, INDEX_DIR_NAME)
PRIVATE_FILE_MODE = 0o600  # document text, indexes and tokens are for this user only
PRIVATE_DIR_MODE = 0o700


def default_data_dir() -> Path:
    """``$MESHDEX_DATA_DIR``, else ``$XDG_DATA_HOME/meshdex``, else ``~/.local/share/meshdex``."""
    explicit = os.environ.get(DATA_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else None
    return (base or Path.home() / ".local" / "share") / APP_DIR_NAME


def resolve_data_dir(data_dir: Path | str | None) -> Path:
    """The data directory to use: the one given, else the default (as an absolute path)."""
    chosen = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    return chosen.absolute()


def write_private_file(path: Path, data: bytes, *, exclusive: bool = False) -> bool:
    """Write ``data`` to ``path`` atomically with mode 0600: temp file, fsync, rename, fsync dir.

    With ``exclusive`` the file is only created if absent (``os.link``, atomic across
    processes) and the return value says whether this call created it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    created = True
    if exclusive:
        try:
            os.link(temp, path)
        except FileExistsError:
            created = False
        os.unlink(temp)
    else:
        os.replace(temp, path)
    fsync_path(path.parent)
    return created


def restrict_mode(path: Path | str, mode: int) -> None:
    """Give ``path`` permission bits ``mode``, touching it only if they differ, so a data
    directory that is already private opens on a read-only mount (``chmod`` fails there even
    when it would change nothing)."""
    if os.stat(path).st_mode & 0o7777 != mode:
        os.chmod(path, mode)


def make_private(data_dir: Path) -> None:
    """Create ``data_dir`` if needed and make it readable by this user only, whatever the umask:
    the directory and meshdex's folders in it 0700, their files and its top-level files 0600.

    Called whenever a store is opened for writing, so a data directory made by an older version
    (0755/0644 under umask 022) is tightened too. Only meshdex's own folders (``store``,
    ``indexes``) are descended into, and symlinks are left alone, so a data directory pointed at
    a folder holding other things does not have those rewritten.
    """
    data_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    restrict_mode(data_dir, PRIVATE_DIR_MODE)
    for entry in data_dir.iterdir():
        if entry.is_symlink():
            continue
        if entry.is_file():
            restrict_mode(entry, PRIVATE_FILE_MODE)
        elif entry.name in OWN_DIR_NAMES and entry.is_dir():
            make_tree_private(entry)


def make_tree_private(root: Path) -> None:
    """Make ``root``, every folder under it 0700 and every file 0600 (symlinks left alone): for
    trees a library writes with the process umask (LMDB, tantivy)."""
    for folder, _dirs, files in os.walk(root):
        restrict_mode(folder, PRIVATE_DIR_MODE)
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                restrict_mode(path, PRIVATE_FILE_MODE)
