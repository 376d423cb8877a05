"""Where commands write, and the rules that keep what the user made safe.

Every command that writes follows the same three steps, with the helpers here:

1. Check, before any work. Each output path is checked with the name of its argument
   (`check_output_file`, `check_output_folder`), so a bad path fails in one line before a
   model loads, and nothing is created for a request that is refused.
2. Stage. The output is written under a hidden temporary name beside its target
   (`.NAME.cinecube-tmp-PID-XXXXXXXX`); a failure removes it (`staged_file`, `staged_folder`).
3. Publish. One rename puts it in place. What is already at the target stays unless the
   user asked for it to be replaced (`--force`), and a folder only when it holds nothing but
   an output of the same kind that cinecube wrote.

A process killed mid-write (SIGKILL, power loss) cannot clean up after itself: the next
command writing beside its temporaries removes them (`clean_stale_temporaries`), but only
those whose owner process is gone, and puts back a folder that was moved aside for a
replacement that never finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import CinecubeError


class OutputError(CinecubeError):
    """An output path that cannot or must not be written."""


# .NAME.cinecube-tmp-PID-HEX[.suffix] (being written) and .NAME.cinecube-old-PID-HEX (a folder
# moved aside while its replacement is renamed in). The suffix keeps the format visible to
# writers that choose it by name (PyAV, Pillow).
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.cinecube-(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}(?:\.[A-Za-z0-9]+)?$")
# What checkpoint saves named their temporaries before: .step_NNNNNNN.tmp-PID / .old-PID.
_LEGACY_CHECKPOINT = re.compile(r"^\.(?P<name>step_\d+)\.(?P<kind>tmp|old)-(?P<pid>\d+)$")


def temporary_path(target: str | os.PathLike, kind: str = "tmp") -> Path:
    """A hidden name beside `target` that only this process uses, with the target's suffix."""
    target = Path(target)
    suffix = target.suffix if kind == "tmp" and re.fullmatch(r"\.[A-Za-z0-9]+", target.suffix) else ""
    return target.parent / f".{target.name}.cinecube-{kind}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_stale_temporaries(folder: str | os.PathLike) -> list[str]:
    """Remove the temporaries of cinecube processes that are gone from `folder`; return their names.

    A folder moved aside for a replacement (`-old-`) goes back under its name when the
    replacement never arrived, and is removed when it did. Entries of live processes and
    everything not named like a cinecube temporary are left alone.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    cleaned = []
    for entry in folder.iterdir():
        match = _TEMPORARY.match(entry.name) or _LEGACY_CHECKPOINT.match(entry.name)
        if match is None or _alive(int(match["pid"])):
            continue
        final = folder / match["name"]
        if match["kind"] == "old" and not final.exists():
            os.replace(entry, final)
        else:
            _remove(entry)
        cleaned.append(entry.name)
    return cleaned


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_file(
    path: str | os.PathLike,
    argument: str,
    *,
    suffixes: Sequence[str] | None = None,
    force: bool = False,
) -> Path:
    """Check a file a command will write, before any work: one clear line naming `argument`.

    Refused: a name with a suffix outside `suffixes`, an existing folder, a missing or
    read-only folder, and an existing file unless `force` (then it is replaced on success)."""
    p = Path(path)
    if not str(path) or p.name in ("", ".", ".."):
        raise OutputError(f"{argument} '{path}' names no file")
    if p.is_dir():
        raise OutputError(f"{argument} '{p}' is a folder; give the name of a file to write in it")
    if suffixes is not None and p.suffix.lower() not in suffixes:
        raise OutputError(f"{argument} '{p}': unknown suffix '{p.suffix}'; allowed: {', '.join(suffixes)}")
    folder = p.parent
    if not folder.is_dir():
        raise OutputError(f"{argument} '{p}': folder '{folder}' does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{argument} '{p}': folder '{folder}' is not writable")
    if p.exists() or p.is_symlink():
        if not p.is_file():
            raise OutputError(f"{argument} '{p}' exists and is not a regular file")
        if not force:
            raise OutputError(f"{argument} '{p}' already exists; choose another name, or pass --force to replace it")
    return p


def check_output_folder(
    path: str | os.PathLike,
    argument: str,
    *,
    kind: str,
    is_ours: Callable[[Path], bool] | None = None,
    force: bool = False,
    sources: Sequence[str | os.PathLike] = (),
) -> Path:
    """Check a folder a command will create (or replace), before any work.

    Refused: a file; a folder that is, or contains, one of `sources` (what the command reads);
    a non-empty folder, unless `is_ours` says it holds only a `kind` cinecube wrote and
    `force` is given. The nearest existing parent must be a writable folder (missing parents
    are created when the output is published)."""
    p = Path(path)
    if not str(path):
        raise OutputError(f"{argument} names no folder")
    if p.exists() and not p.is_dir():
        raise OutputError(f"{argument} '{p}' exists and is not a folder")
    resolved = p.resolve()
    for source in sources:
        source_path = Path(source).resolve()
        if resolved == source_path or resolved in source_path.parents:
            raise OutputError(
                f"{argument} '{p}' is, or contains, the input '{source}'; writing there would replace it: "
                "choose another folder"
            )
    parent = _nearest_existing(p if not p.exists() else p.parent)
    if not parent.is_dir():
        raise OutputError(f"{argument} '{p}': '{parent}' is a file, so the folder cannot be created")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{argument} '{p}': folder '{parent}' is not writable")
    if p.is_dir() and any(p.iterdir()):
        if is_ours is None or not is_ours(p):
            raise OutputError(
                f"{argument} '{p}' is not empty and does not hold a {kind} cinecube wrote; choose a new or empty folder"
            )
        if not force:
            raise OutputError(f"{argument} '{p}' already holds a {kind}; pass --force to replace it")
    return p


def replace_folder(staged: Path, target: Path) -> None:
    """Put a staged folder in place of `target` (absent, empty, or an output the caller may replace).

    The old folder is moved aside first, so the target name always holds a whole folder, old
    or new; a crash between the two renames leaves the old one under a name that
    `clean_stale_temporaries` puts back."""
    if target.exists() or target.is_symlink():
        old = temporary_path(target, "old")
        os.replace(target, old)
        os.replace(staged, target)
        _remove(old)
    else:
        os.replace(staged, target)


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it replaces `target`, on failure it goes."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(target.parent)
    staged = temporary_path(target)
    staged.mkdir()
    try:
        yield staged
        replace_folder(staged, target)
    except BaseException:
        _remove(staged)
        raise


@contextlib.contextmanager
def staged_file(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target` (same suffix); on success it is renamed onto `target`."""
    target = Path(target)
    clean_stale_temporaries(target.parent)
    staged = temporary_path(target)
    try:
        yield staged
        os.replace(staged, target)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON atomically (staged, then renamed): readers see the old file or the new, whole."""
    with staged_file(path) as staged:
        staged.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return Path(path)
