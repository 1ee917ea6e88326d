"""Writing outputs atomically (a temporary file in the destination folder, flushed to disk, then a rename)
and never over an existing file unless asked; checking an output folder before any work; cleaning up
the temporary files of writers that died (``kill -9``, a power cut)."""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from types import FrameType

import nibabel as nib
import SimpleITK as sitk
from isal import igzip

TEMPORARY_PREFIX = ".tmp-"
STALE_AFTER_S = 3600.0  # a temporary file untouched this long belongs to a dead writer (writers rename in seconds)
_MACHINE = f"{zlib.crc32(socket.gethostname().encode()):08x}"
# .tmp-MACHINE-PID-RANDOM-name, or .tmp-RANDOM-name as earlier versions wrote: nothing else is ever removed
_TEMPORARY = re.compile(r"\.tmp-(?:(?P<machine>[0-9a-f]{8})-(?P<pid>\d+)-)?[0-9a-f]{8}-.")


class OutputFolderError(OSError):
    """An output folder that cannot be used: not a folder, cannot be created, or not writable."""


def not_a_folder(path: Path) -> str | None:
    """Why ``path`` is no folder to read ("no such folder", "exists and is not a folder"), or None when it is one."""
    if Path(path).is_dir():
        return None
    return "exists and is not a folder" if Path(path).exists() else "no such folder"


def check_output_folder(folder: Path) -> Path:
    """Make sure ``folder`` exists (creating it) and this process can write into it, before any work.

    Raises :class:`OutputFolderError` naming the folder, what is wrong and what to do.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{folder}: exists and is not a folder; give a folder for the outputs")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputFolderError(
            f"{folder}: cannot create the output folder ({err.strerror or err}); give a folder you can write to"
        ) from err
    _check_writable(folder)
    return folder


def _check_writable(folder: Path) -> None:
    """Write and remove a probe file in ``folder`` (a temporary name, as a crash would leave any): the one sure
    test that this process may write there; an :class:`OutputFolderError` otherwise."""
    probe = temporary_path(folder / "probe")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        probe.unlink()
    except OSError as err:
        raise OutputFolderError(
            f"{folder}: cannot write into the output folder ({err.strerror or err}); give a folder you can write to"
        ) from err


def check_output_file(path: Path, overwrite: bool) -> None:
    """Before any work, that a file can be written at ``path``, creating nothing: not a folder
    (:class:`OutputFolderError`), not a name taken unless ``overwrite`` (:func:`refuse_existing`), and the nearest
    existing folder above it a folder this process may write into (:class:`OutputFolderError`)."""
    path = Path(path)
    if path.is_dir():
        raise OutputFolderError(f"{path} is a folder; give a file name for the output")
    refuse_existing(path, overwrite)
    folder = path.parent
    while not os.path.lexists(folder):  # the folders still to make are made when the file is written
        folder = folder.parent
    if not folder.is_dir():
        raise OutputFolderError(f"{folder}: exists and is not a folder; give a folder for the outputs")
    _check_writable(folder)


def temporary_path(path: Path) -> Path:
    """A hidden name beside ``path`` that says which machine and process writes it (see :func:`is_stale`)."""
    return path.with_name(f"{TEMPORARY_PREFIX}{_MACHINE}-{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}")


def process_running(pid: int) -> bool:
    """Whether a process with this PID runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(path: Path) -> bool:
    """Whether a temporary file of ours was left by a writer that is gone: a process of this machine that no
    longer runs, or any file untouched for :data:`STALE_AFTER_S` seconds (another machine's, an earlier version's
    name, or one whose dead writer's PID a later process reuses). Files not named like our temporary files are
    never stale."""
    match = _TEMPORARY.match(path.name)
    if match is None:
        return False
    if match["machine"] == _MACHINE and not process_running(int(match["pid"])):
        return True
    try:
        return time.time() - path.stat().st_mtime > STALE_AFTER_S
    except FileNotFoundError:
        return False


def finished_files(folder: Path, suffix: str) -> list[Path]:
    """The files of ``folder`` named ``*SUFFIX``, sorted, without hidden names (a writer's temporary, still being
    written, or a dead one's); empty when the folder is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(suffix) and not p.name.startswith("."))


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files in ``folder`` whose writer is gone (:func:`is_stale`); returns them. A
    temporary folder (a MONAI bundle's staging) is left to its own writer's clean-up."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(f"{TEMPORARY_PREFIX}*") if not p.is_dir() and is_stale(p)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's) content to disk; folders that cannot be flushed (EINVAL) are left."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno != errno.EINVAL or not path.is_dir():
            raise
    finally:
        os.close(fd)


def write_atomically(path: Path, write: Callable[[Path], None], overwrite: bool = True) -> Path:
    """Call ``write(tmp)`` on a temporary file in ``path``'s folder, flush it to disk, rename it, flush the
    folder: never half a file, not even after a power cut, and files written one after another reach the
    disk in that order. Without ``overwrite``, a file at ``path`` is kept (:class:`FileExistsError`) even one
    that another writer put there while this one wrote. On any error the temporary file is removed and the
    error raised."""
    return write_together({path: write}, overwrite)[0]


def write_together(writes: dict[Path, Callable[[Path], None]], overwrite: bool = True) -> list[Path]:
    """:func:`write_atomically` for files that belong together (a model's weights and card): every temporary is
    written and flushed before the first rename, so a failed write (a full disk) leaves all the old files, and
    Ctrl-C or SIGTERM wait for the renames (:func:`_signals_held`), so an interrupted save leaves no mix. Without
    ``overwrite`` all are published or none: a name found taken (or any error) takes back what this call published."""
    paths, tmps = [Path(p) for p in writes], []
    try:
        for path, write in zip(paths, writes.values(), strict=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmps.append(temporary_path(path))
            write(tmps[-1])
            _fsync(tmps[-1])
        with _signals_held() if len(paths) > 1 else nullcontext():  # one rename is atomic by itself
            if overwrite:
                for tmp, path in zip(tmps, paths, strict=True):
                    os.replace(tmp, path)
            else:
                _publish_all_new(tmps, paths)
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
    for folder in dict.fromkeys(path.parent for path in paths):
        _fsync(folder)
    return paths


def refuse_existing(path: Path, overwrite: bool) -> None:
    """Raise :class:`FileExistsError` when ``path`` exists and may not be replaced: a check before the work, so
    a refusal costs nothing (the write itself keeps a file that appears meanwhile)."""
    if not overwrite and os.path.lexists(path):  # a dangling link is a name taken too
        raise _exists_error(path)


def _exists_error(path: Path) -> FileExistsError:
    return FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")


def _publish_all_new(tmps: list[Path], paths: list[Path]) -> None:
    """:func:`_publish_new` each temporary; when one fails (a name taken, a full disk), the files
    published before it are unlinked, each while it is still this call's own (the same inode: a check just
    before the unlink, so a writer that replaces it in between could still lose its file), and the error raised."""
    published: list[tuple[Path, os.stat_result]] = []
    try:
        for tmp, path in zip(tmps, paths, strict=True):
            made = os.stat(tmp)
            _publish_new(tmp, path)
            published.append((path, made))
    except BaseException:
        for path, made in published:
            with suppress(FileNotFoundError):  # someone else removed it meanwhile
                now = os.stat(path)
                if (now.st_dev, now.st_ino) == (made.st_dev, made.st_ino):
                    path.unlink()
        raise


def _publish_new(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the name ``path`` unless a file has it: a hard link, which the file system refuses
    atomically when the name is taken (a rename would replace it). Where hard links are not supported (FAT, some
    network shares), a rename after a last look, which a writer racing this one could still beat."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _exists_error(path) from None
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        refuse_existing(path, overwrite=False)
        os.replace(tmp, path)


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM noted while the block runs and handed to their handlers (which may raise
    ``KeyboardInterrupt``) right after it. Python runs signal handlers in the main thread only, so only there can
    they interrupt a block, and only there are they held (a thread's signal mask would not do: the kernel gives a
    process's signal to any thread that does not block it, and the handler still runs in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, FrameType | None]] = []
    previous = {signum: signal.signal(signum, lambda *received: caught.append(received))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        for signum, frame in caught:
            handler = signal.getsignal(signum)
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


def save_nifti(image: nib.Nifti1Image, path: Path, gzip: bool) -> None:
    """Save a NIfTI image; with ``gzip`` deflated by ISA-L, several times faster than nibabel's zlib."""
    if gzip:
        Path(path).write_bytes(igzip.compress(image.to_bytes(), compresslevel=1))
    else:
        nib.save(image, path)


def write_image(image: nib.Nifti1Image | sitk.Image, path: Path, overwrite: bool = False) -> Path:
    """Write a mask atomically; an existing file is kept unless ``overwrite``."""
    path = Path(path)
    refuse_existing(path, overwrite)
    if isinstance(image, nib.Nifti1Image):
        return write_atomically(path, lambda tmp: save_nifti(image, tmp, gzip=path.name.lower().endswith(".gz")),
                                overwrite)
    return write_atomically(path, lambda tmp: sitk.WriteImage(image, str(tmp), useCompression=True), overwrite)
