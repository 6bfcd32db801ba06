"""Output files, written safely: every output is checked before a run starts (``check_paths``), and each file is
staged beside its target and renamed over it only once whole (``Staged``), so nothing the user had is lost."""

from __future__ import annotations

import itertools
import os
import stat
from pathlib import Path
from typing import Callable


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


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file, through symlinks and hard links; paths not yet there compare resolved."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def check_paths(inputs: dict[str, Path | None], outputs: dict[str, Path | None]) -> None:
    """SinkError, before anything is opened, if an output cannot be written or would overwrite an input or another
    output (keys are the options' names, None values are left out)."""
    ins = [(k, Path(p)) for k, p in inputs.items() if p is not None]
    outs = [(k, writable(p)) for k, p in outputs.items() if p is not None]
    for i, (name, path) in enumerate(outs):
        for other, given in ins + outs[:i]:
            if same_file(path, given):
                what = "the input" if (other, given) in ins else "the output"
                raise SinkError(f"{name} {path} is the same file as {what} {other} {given}; choose another file")


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
