"""Ray's pickles in a search folder: signed as they are written, verified before ``--resume`` reads one.

``Tuner.restore`` unpickles files of the storage folder (``tuner.pkl``, searcher and callback
state, the cloudpickled blobs of ``experiment_state-*.json``, trials' ``params.pkl`` and
``error.pkl``): whoever can write there could make ``--resume`` run code. So every such file
reaches the folder through :func:`guarded_filesystem`, the run's ``storage_filesystem``: it
writes the file under a temporary name, adds its sha256 to ``.tune-digits-pickles.json``
(signed with HMAC-SHA256 by a key outside the storage folder, replaced atomically), and only
then renames the file into place. A kill at any moment leaves each file either absent, as it
was, or as the digest list already names it, so a killed search resumes without a false alarm.
:func:`check_storage` runs before Ray reads anything and refuses a changed, planted or unsigned
pickle in one line.

The key is ``TUNE_DIGITS_KEY_FILE`` (default ``~/.config/tune-digits/storage.key``, mode 0600),
made on first use; only the driver signs: trial workers write checkpoints, never Ray's pickles.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import threading
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from tune_digits.atomic import write_bytes
from tune_digits.errors import UserError

MANIFEST = ".tune-digits-pickles.json"
KEEP = 3  # digests kept per file: the one in place and the ones a kill may leave behind
_STATE_PREFIXES = ("experiment_state", "basic-variant-state", "search_gen_state")
_SIGNING: dict[str, _Manifest] = {}  # experiment folders this process signs for (the driver only)
_LOCK = threading.Lock()


def carries_pickle(name: str) -> bool:
    """A file Ray unpickles (or whose JSON holds cloudpickled blobs) when it restores."""
    return name.endswith((".pkl", ".pickle")) or (name.endswith(".json") and name.startswith(_STATE_PREFIXES))


def key_path() -> Path:
    return Path(os.environ.get("TUNE_DIGITS_KEY_FILE", "~/.config/tune-digits/storage.key")).expanduser()


def _key(create: bool) -> bytes | None:
    path = key_path()
    if path.is_file():
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secrets.token_hex(32))
    with contextlib.suppress(FileExistsError):  # another process made one first: use theirs
        os.link(tmp, path)
    tmp.unlink()
    return bytes.fromhex(path.read_text(encoding="ascii").strip())


def _mac(key: bytes, files: dict[str, list[str]]) -> str:
    body = json.dumps(files, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Manifest:
    """The signed digest list of one experiment folder, kept in memory and replaced atomically on disk."""

    def __init__(self, folder: Path, files: dict[str, list[str]]) -> None:
        self.folder, self.files = folder, files

    def allow(self, rel: str, digest: str) -> None:
        with _LOCK:
            known = self.files.get(rel, [])
            if digest in known:
                return
            self.files[rel] = [*known, digest][-KEEP:]
            key = _key(create=True)
            assert key is not None
            text = json.dumps({"files": self.files, "hmac": _mac(key, self.files)}, sort_keys=True)
            self.folder.mkdir(parents=True, exist_ok=True)
            write_bytes(self.folder / MANIFEST, text.encode())


class _SigningWriter:
    """A file written under a temporary name, signed, then renamed into place on close."""

    def __init__(self, target: Path, manifest: _Manifest) -> None:
        self.target, self.manifest = target, manifest
        self.tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
        target.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.tmp.open("wb")
        self.digest = hashlib.sha256()
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.digest.update(view)
        return self.file.write(view)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        rel = self.target.relative_to(self.manifest.folder).as_posix()
        self.manifest.allow(rel, self.digest.hexdigest())  # the digest is on disk before the file
        os.replace(self.tmp, self.target)


class GuardedLocal(pafs.FileSystemHandler):
    """The local file system, except that Ray's pickles in a signed folder go through _SigningWriter."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.local = pafs.LocalFileSystem()

    def __reduce__(self) -> tuple:
        return (GuardedLocal, (self.folder,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GuardedLocal) and other.folder == self.folder

    def get_type_name(self) -> str:
        return "tune-digits-guarded-local"

    def normalize_path(self, path: str) -> str:
        return self.local.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list:
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector: Any) -> list:
        return self.local.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.local.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("refusing to delete the contents of the root folder")

    def delete_file(self, path: str) -> None:
        self.local.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.local.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.local.copy_file(src, dest)

    def open_input_stream(self, path: str) -> Any:
        return self.local.open_input_stream(path)

    def open_input_file(self, path: str) -> Any:
        return self.local.open_input_file(path)

    def open_append_stream(self, path: str, metadata: Any) -> Any:
        return self.local.open_append_stream(path, metadata=metadata)

    def open_output_stream(self, path: str, metadata: Any) -> Any:
        import pyarrow as pa

        manifest = _SIGNING.get(self.folder)
        target = Path(path)
        if manifest is None or not carries_pickle(target.name) or manifest.folder not in target.parents:
            return self.local.open_output_stream(path, metadata=metadata)
        return pa.PythonFile(_SigningWriter(target, manifest), mode="w")


def guarded_filesystem(folder: Path) -> Any:
    """The ``storage_filesystem`` for a run whose experiment folder is ``folder``; this process signs."""
    folder = folder.resolve()
    _key(create=True)
    if str(folder) not in _SIGNING:
        _SIGNING[str(folder)] = _Manifest(folder, _read_files(folder))
    return pafs.PyFileSystem(GuardedLocal(str(folder)))


def _read_files(folder: Path) -> dict[str, list[str]]:
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(k): [str(d) for d in v] for k, v in data.get("files", {}).items()}


def _pickles(folder: Path) -> list[Path]:
    """Every pickle-bearing file under ``folder``, through symlinked folders too (Ray follows them)."""
    seen: set[str] = set()
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        found += [Path(root, name) for name in files if carries_pickle(name) and Path(root, name).is_file()]
    return sorted(found)


def check_storage(folder: Path) -> None:
    """Refuse, in one line, a folder whose Ray pickles tune-digits did not sign; reads no pickle."""
    folder = folder.resolve()
    found = _pickles(folder)
    how = "resume only folders your own runs wrote (see README: trusted storage), or start anew with another --name"
    if not (folder / MANIFEST).is_file():
        if found:
            raise UserError(f"{folder}: Ray state files but no signed digest list ({MANIFEST}); {how}")
        return
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = {str(k): [str(d) for d in v] for k, v in data["files"].items()}
        signature = str(data["hmac"])
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise UserError(f"{folder / MANIFEST}: not a digest list tune-digits wrote; {how}") from None
    key = _key(create=False)
    if key is None or not hmac.compare_digest(_mac(key, files), signature):
        raise UserError(f"{folder / MANIFEST}: signature does not match the key {key_path()}; {how}")
    for path in found:
        rel = path.relative_to(folder).as_posix()
        if rel not in files:
            raise UserError(f"{path}: a Ray state file tune-digits did not write appeared; {how}")
        if _sha256(path) not in files[rel]:
            raise UserError(f"{path}: changed since tune-digits wrote it (sha256 differs); {how}")
