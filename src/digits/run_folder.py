"""The run folder's rules, in one place: one owner (an ``fcntl.flock`` on the folder, dropped by the kernel
however the process dies), fresh or resumed, writable, nothing written outside it, and no litter after a
failed start. This module alone records the folders this process made and locked."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from digits.errors import ConfigError
from digits.writing import WriteError

# What a run folder holds before the task has produced anything: Hydra's snapshot, train's config.yaml.
BEFORE_OUTPUTS = {".hydra", "config.yaml"}
# The files a finished or running training leaves in its folder.
RUN_FILES = ("checkpoints", "metrics.json", "config.yaml")
PROBE_BYTES = 64 * 1024  # check_writable's probe: a full disk cannot take it (an empty file needs no space)


class FolderInUseError(ConfigError):
    """Another process holds the run folder's lock."""


# This process's claims: folder -> (the folder's open descriptor, holding the lock; whether this process made it).
_claims: dict[Path, tuple[int, bool]] = {}
# The topmost folder a sweep made (before any job's config was composed), to remove if the sweep fails at once.
_sweep_folders: set[Path] = set()


def _key(folder: str | Path) -> Path:
    return Path(os.path.abspath(folder))


def _cannot_write(folder: str | Path, error: OSError) -> WriteError:
    return WriteError(
        f"cannot write the run folder {folder}: {error.strerror or error}. Choose a writable "
        "folder with free space: paths.log_dir=<dir>."
    )


def claim(folder: str | Path) -> bool:
    """Create ``folder`` if missing and lock it for this process (a no-op if held); True when this process
    made it. FolderInUseError when another process holds it."""
    folder = _key(folder)
    if folder in _claims:
        return _claims[folder][1]
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(folder)  # atomic: of two processes starting at once, one makes it
            made = True
        except FileExistsError:
            made = False
        if folder.is_symlink() or not folder.is_dir():
            raise ConfigError(f"run folder {folder} is not a folder (a file or a symlink): give a new folder")
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as error:
        raise _cannot_write(folder, error) from error
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(descriptor)
        raise FolderInUseError(
            f"run folder {folder} is in use by another process (it holds the folder's lock): wait for that run "
            "to end, or use another folder (hydra.run.dir=<dir>)"
        ) from error
    _claims[folder] = (descriptor, made)
    return made


def release(folder: str | Path) -> None:
    """Drop this process's lock on ``folder``."""
    entry = _claims.pop(_key(folder), None)
    if entry is not None:
        os.close(entry[0])  # closing the descriptor releases the flock


@contextmanager
def claimed(folder: str | Path) -> Iterator[None]:
    """Hold ``folder`` for the block; a folder this process already held stays held after it."""
    already = _key(folder) in _claims
    claim(folder)
    try:
        yield
    finally:
        if not already:
            release(folder)


def _contents(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def check_fresh_folder(folder: str | Path) -> None:
    """Evaluate, export and the demo write only into a folder of their own: refuse one that holds files."""
    folder = _key(folder)
    held = _contents(folder)
    if held:
        raise ConfigError(
            f"hydra.run.dir={folder} already holds files ({', '.join(held[:5])}, ...): this script writes only "
            "into a new or empty folder of its own; leave hydra.run.dir out, or give a new folder"
        )


def check_no_symlinks(folder: str | Path) -> None:
    """Refuse a run folder with a symlink in it: a write through it would land wherever the link points."""
    for parent, folders, files in os.walk(folder):
        for name in (*folders, *files):
            link = Path(parent) / name
            if link.is_symlink():
                raise ConfigError(
                    f"{link} is a symlink (to {os.readlink(link)}): a run folder is written only through its own "
                    "files; replace the link with a copy of its target, or remove it"
                )


def check_run_folder(folder: str | Path, resuming: bool) -> None:
    """Refuse a folder holding another run's files unless resuming it (``resume=``), and one with symlinks."""
    folder = Path(folder)
    if not resuming:
        taken = [name for name in RUN_FILES if (folder / name).exists() or (folder / name).is_symlink()]
        if taken:
            raise ConfigError(
                f"{folder} already holds a run ({', '.join(taken)}); choose another folder (paths.log_dir "
                f"or hydra.run.dir) or continue it with resume={folder}"
            )
    if folder.is_dir():
        check_no_symlinks(folder)


def check_writable(folder: str | Path) -> None:
    """Write, fsync and remove a probe of a few KB, so a read-only or full disk fails here, clearly."""
    probe = Path(folder) / ".write-test"
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as file:
            file.write(b"\0" * PROBE_BYTES)
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        raise _cannot_write(folder, error) from error
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass


def _path_like(value: str) -> bool:
    """A string that names a place: it has a separator, is ``..``, or starts with ``~``."""
    return "/" in value or "\\" in value or value in ("..", ".") or value.startswith("~")


def _inside(path: Path, run: Path) -> bool:
    return Path(os.path.abspath(path.expanduser())).resolve().is_relative_to(run)


def _refuse(key: str, value: Any, run: Path, why: str = "") -> None:
    raise ConfigError(
        f"{key}={str(value)[:200]!r} is outside the run folder {run}{why}; a run writes only into its own "
        "folder: give a name or a path inside it"
    )


# Per class (the last part of its _target_), the arguments that are joined into one path, in order:
# ModelCheckpoint writes <dirpath>/<filename>.ckpt, a logger <save_dir>/<name>/<version>/<sub_dir>.
_JOINED = {
    "ModelCheckpoint": ("dirpath", "filename"),
    "TensorBoardLogger": ("save_dir", "name", "version", "sub_dir"),
    "CSVLogger": ("save_dir", "name", "version"),
}


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _strings(item, f"{where}[{index}]")


# A store every run shares on purpose (logger=mlflow: one SQLite file and its artifacts under paths.log_dir, so
# that runs can be compared): these keys must stay inside the log folder instead of the run folder.
_SHARED_STORE_KEYS = {"MLFlowLogger": ("tracking_uri", "artifact_location")}


def check_paths_inside(config: dict[str, Any], run: str | Path) -> None:
    """Every path-like string of the resolved ``config``'s callbacks, loggers, trainer and profiler, and the
    path each class joins from its arguments (``_JOINED``), resolves (symlinks included) inside ``run``."""
    run = Path(os.path.abspath(run)).resolve()
    sections: list[tuple[str, Any]] = [("trainer", config.get("trainer")), ("profiler", config.get("profiler"))]
    for group in ("callbacks", "logger"):
        entries = config.get(group) or {}
        if isinstance(entries, dict):
            sections += [(f"{group}.{name}", entry) for name, entry in entries.items()]
    log_dir = Path(os.path.abspath(str((config.get("paths") or {}).get("log_dir") or run))).resolve()
    for key, value in sections:
        if isinstance(value, dict):
            shared = _SHARED_STORE_KEYS.get(str(value.get("_target_", "")).rsplit(".", 1)[-1], ())
            for name in shared:
                text = str(value.get(name) or "").removeprefix("sqlite:///").removeprefix("file://")
                if text and not _inside(Path(os.path.abspath(text)), log_dir):
                    _refuse(f"{key}.{name}", value[name], log_dir)
            value = {name: item for name, item in value.items() if name not in shared}
        for where, text in _strings(value, key):
            if _path_like(text) and not _inside(run / text, run):
                _refuse(where, text, run)
        if not isinstance(value, dict):
            continue
        joined = _JOINED.get(str(value.get("_target_", "")).rsplit(".", 1)[-1])
        if joined and value.get(joined[0]) is not None:
            parts = [str(value[name]) for name in joined if value.get(name) not in (None, "")]
            path = Path(os.path.abspath(parts[0])).joinpath(*parts[1:])
            if not _inside(path, run):
                shown = ", ".join(f"{name}={value.get(name)!r}" for name in joined if name in value)
                _refuse(key, shown, run, f" (joined: {path})")
        elif key == "trainer" and value.get("default_root_dir") is not None:
            if not _inside(Path(str(value["default_root_dir"])), run):
                _refuse("trainer.default_root_dir", value["default_root_dir"], run)


def remember_sweep_folder(sweep_dir: str | Path) -> None:
    """Note the topmost folder a sweep is about to make, to remove it again if the sweep fails at once."""
    folder = _key(sweep_dir)
    while not folder.parent.exists():
        folder = folder.parent
    if not folder.exists():
        _sweep_folders.add(folder)


def remove_unused_sweep_folders() -> None:
    """A sweep's folder made (with Hydra's multirun.yaml) before a job's config was refused: removed."""
    for folder in _sweep_folders:
        if folder.is_dir() and {p.name for p in folder.rglob("*") if not p.is_dir()} <= {"multirun.yaml"}:
            shutil.rmtree(folder)
    _sweep_folders.clear()


def remove_if_unused(folder: str | Path, job_name: str) -> None:
    """Remove ``folder`` when this process made it and it holds nothing a run produced; a folder that
    existed before (a resumed run's) is never touched."""
    folder = _key(folder)
    entry = _claims.get(folder)
    if entry is None or not entry[1] or not folder.is_dir():
        return
    if {p.name for p in folder.iterdir()} <= {*BEFORE_OUTPUTS, f"{job_name}.log"}:
        for handler in list(logging.getLogger().handlers):  # the log file is about to go with its folder
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == folder.resolve():
                handler.close()
                logging.getLogger().removeHandler(handler)
        shutil.rmtree(folder)  # under the lock: no other process can have started in it
        release(folder)
