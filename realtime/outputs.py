"""Output files, written safely: every output is checked before a run starts (``check_paths``), and each file is
staged beside its target and renamed over it only once whole (``Staged``), so nothing the user had is lost."""

from __future__ import annotations

import fcntl
import itertools
import os
import stat
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Callable, TextIO

Named = Mapping[str, "Path | str | None"] | Iterable[tuple[str, "Path | str | None"]]


class SinkError(Exception):
    """An output that cannot be written (no such folder, no display); the message is one line for the user."""


def writable(path: Path) -> Path:
    """``path`` if it can name an output (its folder exists and it is not a folder itself), else SinkError."""
    path = Path(path)
    if path.is_dir():
        raise SinkError(f"cannot write {path}: it is a folder; give a file name")
    if not path.parent.is_dir():
        raise SinkError(f"cannot write {path}: folder {path.parent} does not exist")
    return path


def file_identity(path: Path) -> tuple:
    """A key that two paths share when they name one file: its device and inode, through symlinks and hard links;
    for a path not yet there, its resolved name."""
    try:
        st = os.stat(path)
        return st.st_dev, st.st_ino
    except OSError:
        return (os.path.realpath(path),)


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file, through symlinks and hard links; paths not yet there compare resolved."""
    return file_identity(a) == file_identity(b)


def check_paths(inputs: Named, outputs: Named) -> None:
    """SinkError, before anything is opened, if an output cannot be written or would overwrite an input or another
    output. Each is a mapping or (name, path) pairs, named as the user knows them (an option); None paths are left out.
    One look at each path, so a batch's thousands of inputs and outputs are checked as quickly as one run's."""
    seen: dict[tuple, tuple[str, str, Path]] = {}
    for what, named in (("the input", inputs), ("the output", outputs)):
        for name, path in (named.items() if isinstance(named, Mapping) else named):
            if path is None:
                continue
            path = Path(path)
            if what == "the output":
                try:
                    writable(path)
                except SinkError as e:
                    raise SinkError(f"{name}: {e}") from None
            key = file_identity(path)
            if key in seen and what == "the output":
                was, other, given = seen[key]
                raise SinkError(f"{name} {path} is the same file as {was} {other} {given}; choose another file")
            seen.setdefault(key, (what, name, path))


def append_whole(fd: int, data: bytes, target: object, kept: str) -> None:
    """Write ``data`` (one or more whole records) at the end of what descriptor ``fd`` has written. Where it does not
    all go (a full disk), what went is cut off again, so that a regular file always ends with a whole record, and
    SinkError says so: "cannot write TARGET: why; it keeps the KEPT". A reader that went away (BrokenPipeError) is
    left to the caller: that is the end of a pipe, not a failed write."""
    st = os.fstat(fd)
    start = None  # where this write lands in a regular file (a pipe or a device cannot be cut back)
    if stat.S_ISREG(st.st_mode):
        start = st.st_size if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND else os.lseek(fd, 0, os.SEEK_CUR)
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except BrokenPipeError:
        raise
    except OSError as e:
        if start is not None:
            os.ftruncate(fd, start)
            os.lseek(fd, start, os.SEEK_SET)
        raise SinkError(f"cannot write {target}: {e.strerror}; it keeps the {kept}") from None


def tell(text: str, out: TextIO | None = None) -> None:
    """Print ``text`` on ``out`` (standard output by default) for whoever reads it. A reader that went away is the
    end of the pipe, not an error: the descriptor is pointed at /dev/null, so that later prints and Python's own
    flush at exit go nowhere instead of failing."""
    out = sys.stdout if out is None else out
    try:
        print(text, file=out, flush=True)
    except BrokenPipeError:
        silence(out.fileno())


def left_while_printing(e: SystemExit) -> int:
    """The exit code for a SystemExit out of a command: rich, which prints the help, ends with SystemExit(1) when
    standard output's reader has gone, after pointing it at /dev/null. That is an ordinary end, 0, as a
    BrokenPipeError is; any other SystemExit goes on."""
    if e.code == 1 and os.path.samestat(os.fstat(1), os.stat(os.devnull)):
        return 0
    raise e


def silence(fd: int) -> None:
    """Point descriptor ``fd`` at /dev/null (its reader went away)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def can_write(path: Path) -> Path:
    """``path`` if a file can be created beside it (one is, then removed), else SinkError; for checks before a long run."""
    Staged(path).discard()
    return Path(path)


def partial_name(path: Path, n: int = 1) -> Path:
    """NAME.partial.EXT beside ``path`` (NAME.partialN.EXT for n > 1): the suffix stays, so writers pick the format."""
    return path.with_name(f"{path.stem}.partial{'' if n == 1 else n}{path.suffix}")


class Staged:
    """A new file beside ``path`` (NAME.partial.EXT, or NAME.partial2.EXT ... when that exists) that replaces ``path``
    only at ``commit``; a file already at ``path`` is untouched until then. Creating it proves the folder writable.
    A ``path`` that is a pipe or a device (/dev/stdout, a FIFO) is written in place: it cannot be replaced. A symlink
    stays a link: the file it points to is the one replaced."""

    def __init__(self, path: Path) -> None:
        self.target = writable(path)
        self.done = False
        self.in_place = self.target.exists() and not stat.S_ISREG(os.stat(self.target).st_mode)
        if self.in_place:
            self.path = self.target
            return
        self._real = Path(os.path.realpath(self.target))
        for n in itertools.count(1):
            self.path = partial_name(self._real, n)
            try:  # O_EXCL: never take over a file that is already there (a partial file a killed run left)
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                break
            except FileExistsError:
                continue
            except OSError as e:
                raise SinkError(f"cannot write {self.target}: {e.strerror}") from None

    def commit(self) -> Path:
        """Rename the staged file to the target (atomic: the target is either the old file or the new one)."""
        if not self.done and not self.in_place:
            try:
                os.replace(self.path, self._real)
            except OSError as e:
                raise SinkError(f"cannot write {self.target}: {e.strerror}; the output is in {self.path}") from None
            self.done = True
        return self.target

    def discard(self) -> None:
        """Remove the staged file; the target stays as it was."""
        if not self.done and not self.in_place:
            self.path.unlink(missing_ok=True)
            self.done = True

    def fill(self, write: Callable[[Path], object]) -> Path:
        """``write(staged path)``, then commit; SinkError, the staged file removed and the target untouched, if it fails."""
        try:
            write(self.path)
        except OSError as e:
            self.discard()
            raise SinkError(f"cannot write {self.target}: {e.strerror or e}") from None
        except BaseException:
            self.discard()
            raise
        return self.commit()

    def __enter__(self) -> "Staged":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()
