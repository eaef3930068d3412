"""Datasets where users keep them: fsspec URLs for a file or a dataset root, read through a local block cache.

``https://host/ROOT``, ``hf://datasets/org/name/ROOT``, ``s3://bucket/ROOT``, ``gs://bucket/ROOT`` (with
``storage_options`` for the backend: credentials, endpoint, timeouts, as fsspec takes them) name a dataset root
(``ROOT/data/{split}/*.hdf5`` + ``ROOT/stats.yaml``) or one ``.hdf5`` file; ``file://PATH`` is the local ``PATH``.
s3 and gs need their fsspec backends (``pip install s3fs`` / ``gcsfs``), hf needs ``huggingface_hub``, http(s) needs
``aiohttp``.

Listing. Object stores and the Hub list folders themselves. Plain HTTP has no listing: a root served over http(s) is
listed by its ``index.json`` (:func:`write_index` writes it: every file under the root with its size), and without
one by the server's HTML directory listing (what ``python -m http.server`` and nginx's ``autoindex`` serve).

Caching. Files are read in blocks of ``BLOCK_BYTES`` through fsspec's ``blockcache`` into a folder on disk
(``$PDEFORGE_REMOTE_CACHE``, default ``~/.cache/pdeforge/remote``): a block is fetched the first time any reader in
any process needs it, and read from the disk after that, so an epoch fetches only the blocks (HDF5 chunks) it reads,
once. The folder is capped at ``$PDEFORGE_REMOTE_CACHE_GB`` gigabytes (default 20; the least recently used files
go first). Each process (each DataLoader worker) opens its own handles.

Offline Hub. With ``HF_HUB_OFFLINE=1`` an ``hf://datasets/org/name[@revision]/ROOT`` URL reads the Hugging Face cache
(what ``huggingface-cli download --repo-type dataset org/name`` put there) instead of the Hub.

Options for a root. ``set_storage_options(ROOT, options)`` makes ``options`` the ``storage_options`` of every URL
under ``ROOT`` opened in this process without its own (a run's ``data.storage_options``: the listing, the checks and
the stats of the root read with the same endpoint and credentials). An explicit ``storage_options`` argument wins.
The registry is this process's only: a `~pdeforge.datasets.TrajectoryDataset` resolves its options when it is made
and holds them, so they are pickled with it into DataLoader workers, spawned ones included (macOS and Windows start
workers by spawning: a fresh interpreter, with an empty registry).

Failures. A block read that fails (a dropped connection, a reset, a timeout) is tried ``RETRIES`` times in all, with
waits of 0.5 s, 1 s, ... between tries; then it is an OSError naming the URL. A missing file is a FileNotFoundError,
refused credentials a PermissionError, each one line naming the URL.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py

__all__ = [
    "is_url",
    "local_path",
    "url_join",
    "list_remote",
    "open_remote",
    "read_remote",
    "remote_size",
    "write_index",
    "RemoteHDF5File",
    "set_storage_options",
    "storage_options_for",
    "hub_cache_path",
]

INDEX_NAME = "index.json"
INDEX_FORMAT = "pdeforge-index/1"
BLOCK_BYTES = 2 << 20  # fetched and cached per block: a few HDF5 chunks at a time
RETRIES = 3  # tries in all for one block read or one open
BACKOFF_S = 0.5  # the wait before the second try; doubled for each further one
DEFAULT_CACHE_GB = 20.0
HDF5_SUFFIXES = (".hdf5", ".h5")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(path: Any) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) other than ``file://``, which names a local path."""
    return isinstance(path, str) and bool(_URL.match(path)) and not path.startswith("file://")


def local_path(path: Any) -> Any:
    """``file://PATH`` -> ``PATH``; anything else as it is."""
    return path[len("file://") :] if isinstance(path, str) and path.startswith("file://") else path


def url_join(url: str, *parts: str) -> str:
    return "/".join([url.rstrip("/"), *(p.strip("/") for p in parts)])


def cache_folder() -> Path:
    """The block cache's folder: ``$PDEFORGE_REMOTE_CACHE``, default ``~/.cache/pdeforge/remote``."""
    return Path(os.environ.get("PDEFORGE_REMOTE_CACHE") or Path.home() / ".cache" / "pdeforge" / "remote")


def cache_cap_bytes() -> int:
    """The cache's size cap: ``$PDEFORGE_REMOTE_CACHE_GB`` gigabytes (default 20)."""
    raw = os.environ.get("PDEFORGE_REMOTE_CACHE_GB", "")
    try:
        gb = float(raw) if raw else DEFAULT_CACHE_GB
    except ValueError:
        raise ValueError(f"PDEFORGE_REMOTE_CACHE_GB={raw!r}: expected a number of gigabytes") from None
    return int(gb * 1e9)


def _why(err: BaseException) -> str:
    text = str(err).splitlines()[0][:200] if str(err) else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _status(err: BaseException) -> Any:
    """The HTTP status of a failure, or of the failure behind it (fsspec's HTTP ``info`` raises every failed request,
    a 401 included, as a FileNotFoundError from the response's error)."""
    for e in (err, err.__cause__):
        status = getattr(e, "status", None) or getattr(e, "code", None)
        if status:
            return status
    return None


def _translate(url: str, err: BaseException) -> BaseException:
    """One line naming the URL and what failed."""
    status = _status(err)
    if isinstance(err, PermissionError) or status in (401, 403):
        return PermissionError(
            f"{url}: access refused{f' (HTTP {status})' if status else ''}: check the credentials in storage_options"
        )
    if isinstance(err, FileNotFoundError) or status == 404:
        return FileNotFoundError(f"{url}: not found (no such file on the server)")
    if isinstance(err, TimeoutError) or "Timeout" in type(err).__name__:
        return TimeoutError(f"{url}: timed out after {RETRIES} tries ({_why(err)})")
    if isinstance(err, ImportError):
        return ImportError(f"{url}: {err}")
    return OSError(f"{url}: failed after {RETRIES} tries ({_why(err)})")


def _final(err: BaseException) -> bool:
    """Failures that another try would not change."""
    final = (FileNotFoundError, PermissionError, ImportError, ValueError)
    return isinstance(err, final) or _status(err) in (401, 403, 404)


def _retry(url: str, call: Callable[[], Any]) -> Any:
    for attempt in range(RETRIES):
        try:
            return call()
        except Exception as err:  # every backend has its own network errors (aiohttp, botocore, ...)
            if _final(err) or attempt == RETRIES - 1:
                raise _translate(url, err) from None
            time.sleep(BACKOFF_S * 2**attempt)
    raise AssertionError("unreachable")


_ROOT_OPTIONS: dict[str, dict] = {}  # URL prefix -> storage_options (set_storage_options); this process's only


def set_storage_options(root: str, options: dict | None) -> None:
    """Use ``options`` as the ``storage_options`` of every URL under ``root`` (``root`` itself, ``root/...``) that is
    opened without its own; ``None`` or ``{}`` forgets them. ``root`` must be a URL."""
    if not is_url(root):
        raise ValueError(f"{root}: storage_options apply to a URL (s3://, gs://, hf://, https://...), not a local path")
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"storage_options for {root}: expected a mapping (e.g. {{anon: true}}), got {options!r}")
    key = root.rstrip("/")
    if options:
        _ROOT_OPTIONS[key] = dict(options)
    else:
        _ROOT_OPTIONS.pop(key, None)


def storage_options_for(url: str, storage_options: dict | None = None) -> dict:
    """``storage_options`` if given, else those set for the longest root above ``url`` (`set_storage_options`), else
    ``{}``."""
    if storage_options is not None:
        return storage_options
    url = url.rstrip("/")
    roots = [r for r in _ROOT_OPTIONS if url == r or url.startswith(r + "/")]
    return dict(_ROOT_OPTIONS[max(roots, key=len)]) if roots else {}


_HUB_URL = re.compile(r"^hf://(?:(datasets|spaces)/)?([^/@]+/[^/@]+)(?:@([^/]+))?(?:/(.*))?$")


def hub_cache_path(url: str) -> Path | None:
    """With ``HF_HUB_OFFLINE=1``, the file or folder an ``hf://[datasets/]org/name[@revision]/PATH`` URL names in the
    Hugging Face cache (``$HF_HUB_CACHE``, as ``huggingface-cli download`` fills it); None when online or not hf://.
    A repository or revision missing from the cache is a one-line FileNotFoundError."""
    m = _HUB_URL.match(url) if url.startswith("hf://") else None
    if m is None or os.environ.get("HF_HUB_OFFLINE", "").strip().upper() not in ("1", "ON", "YES", "TRUE"):
        return None
    kind, repo_id, revision, rest = m.groups()
    repo_type = {"datasets": "dataset", "spaces": "space"}.get(kind, "model")
    from huggingface_hub import errors, snapshot_download

    try:
        cache_dir = os.environ.get("HF_HUB_CACHE") or None  # read now: huggingface_hub reads it once, at import
        folder = snapshot_download(
            repo_id, repo_type=repo_type, revision=revision, cache_dir=cache_dir, local_files_only=True
        )
    except errors.LocalEntryNotFoundError:
        raise FileNotFoundError(
            f"{url}: not in the Hugging Face cache and HF_HUB_OFFLINE is set; expected it under "
            f"$HF_HUB_CACHE/{repo_type}s--{repo_id.replace('/', '--')}/snapshots/ (huggingface-cli download "
            f"--repo-type {repo_type} {repo_id})"
        ) from None
    return Path(folder, rest or "")


def _fs(url: str, storage_options: dict | None) -> tuple[Any, str]:
    import fsspec

    cached = hub_cache_path(url)
    if cached is not None:  # offline: the Hub's own cache, a local folder
        return fsspec.filesystem("file"), str(cached)
    try:
        return fsspec.core.url_to_fs(url, **storage_options_for(url, storage_options))
    except (ImportError, ValueError) as e:  # ValueError: bad input, one line from every command
        raise ValueError(f"{url}: no fsspec backend for it ({_why(e)})") from None


def read_remote(url: str, storage_options: dict | None = None) -> bytes:
    """The whole (small) file at ``url`` (an index, ``stats.yaml``), read directly, not cached."""
    fs, path = _fs(url, storage_options)
    return _retry(url, lambda: fs.cat_file(path))


def remote_size(url: str, storage_options: dict | None = None) -> int:
    fs, path = _fs(url, storage_options)
    return int(_retry(url, lambda: fs.size(path)))


def _http(url: str) -> bool:
    return url.split("://", 1)[0].lower() in ("http", "https")


def list_remote(url: str, split: str | None, storage_options: dict | None = None) -> list[str]:
    """The ``.hdf5``/``.h5`` files under a URL, sorted: ``url`` itself when it names one, else ``url/data/<split>/``
    (a dataset root) or ``url/`` (a folder of files, ``split`` None). Over http(s) from ``index.json`` when the
    root has one, else from the server's directory listing."""
    if url.endswith(HDF5_SUFFIXES) and split is None:
        return [url]
    folder = url_join(url, "data", split) if split else url.rstrip("/")
    if _http(url):
        index = _read_index(url, storage_options)
        if index is not None:
            prefix = f"data/{split}/" if split else ""
            names = [n for n in index if n.startswith(prefix) and "/" not in n[len(prefix) :]]
            return sorted(url_join(url, n) for n in names if n.endswith(HDF5_SUFFIXES))
    fs, path = _fs(folder, storage_options)

    def ls() -> list[str]:
        try:
            return [p["name"] if isinstance(p, dict) else p for p in fs.ls(path, detail=False)]
        except FileNotFoundError:
            return []

    found = _retry(folder, ls)
    protocol = url.split("://", 1)[0]
    if hub_cache_path(folder) is not None:  # local paths in the cache: named by the URL of the folder they are in
        found = [url_join(folder, p.rstrip("/").rsplit("/", 1)[-1]) for p in found]
    names = [p if _URL.match(p) else f"{protocol}://{p}" for p in found]  # fsspec strips the protocol, http keeps it
    return sorted(n.rstrip("/") for n in names if n.rstrip("/").endswith(HDF5_SUFFIXES))


def _read_index(root: str, storage_options: dict | None) -> dict[str, Any] | None:
    url = url_join(root, INDEX_NAME)
    try:
        raw = read_remote(url, storage_options)
    except FileNotFoundError:
        return None
    try:
        index = json.loads(raw)
        assert index.get("format") == INDEX_FORMAT and isinstance(index["files"], dict)
    except (ValueError, AssertionError, KeyError, AttributeError):
        raise ValueError(
            f"{url}: not a pdeforge index (expected JSON with 'format': '{INDEX_FORMAT}' and 'files': "
            "{path: {size, sha256}}, as pdeforge.datasets.write_index(ROOT) writes)"
        ) from None
    return index["files"]


def write_index(root: str | os.PathLike) -> Path:
    """Write ``ROOT/index.json``: every file under the dataset root ``root`` (relative path -> ``{size, sha256}``),
    which lists the root when it is served over plain HTTP (and lets ``pdeforge download`` check what it fetched).
    Returns its path."""
    from .._files import atomic_write

    root = Path(root)
    if not (root / "data").is_dir():
        raise FileNotFoundError(f"{root}: not a dataset root (expected ROOT/data/{{train,valid,test}}/*.hdf5)")
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != INDEX_NAME and not p.name.startswith(".") and not p.name.endswith(".partial"):
            digest = hashlib.sha256()
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
            files[p.relative_to(root).as_posix()] = {"size": p.stat().st_size, "sha256": digest.hexdigest()}
    text = json.dumps({"format": INDEX_FORMAT, "files": files}, indent=1)
    atomic_write(root / INDEX_NAME, lambda tmp: tmp.write_text(text))
    return root / INDEX_NAME


def _evict(folder: Path, cap: int) -> None:
    """Delete the least recently used cache files until what they hold on disk is below ``cap``."""
    files = [p for p in folder.iterdir() if p.is_file() and p.name != "cache"]  # "cache": fsspec's block records
    stats = {p: p.stat() for p in files}
    used = sum(s.st_blocks * 512 for s in stats.values())
    for p in sorted(files, key=lambda p: max(stats[p].st_atime, stats[p].st_mtime)):
        if used <= cap:
            break
        used -= stats[p].st_blocks * 512
        p.unlink(missing_ok=True)  # a reader that has it open keeps its copy until it closes it


def open_remote(url: str, storage_options: dict | None = None) -> Any:
    """A read-only, seekable file object for ``url`` whose bytes come through the block cache (blocks fetched on
    first read, retried; see the module docstring). Close it when done: that records its blocks for the next
    process."""
    import fsspec

    local = hub_cache_path(url)
    if local is not None:  # offline hf://: the Hub's cache is on the disk already
        if not local.is_file():
            raise FileNotFoundError(f"{url}: not found in the Hugging Face cache ({local})")
        return open(local, "rb")
    folder = cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    _evict(folder, cache_cap_bytes())
    protocol = url.split("://", 1)[0]
    fs, path = _fs(url, storage_options)  # a missing backend: one line
    if protocol == "memory":  # in this process's memory already (and its files are not block-cacheable)
        return _retry(url, lambda: fs.open(path, "rb"))
    cached = fsspec.filesystem(
        "blockcache",
        target_protocol=protocol,
        target_options=storage_options_for(url, storage_options),
        cache_storage=str(folder),
        check_files=True,  # a file changed on the server is fetched again, not mixed with stale blocks
        expiry_time=False,
    )
    f = _retry(url, lambda: cached.open(url, "rb", block_size=BLOCK_BYTES))
    cache = getattr(f, "cache", None)
    if cache is not None and hasattr(cache, "fetcher"):  # a partly cached file: retry the block fetches
        fetch = cache.fetcher

        def fetch_retried(start: int, end: int) -> bytes:
            try:
                return _retry(url, lambda: fetch(start, end))
            except Exception as err:  # h5py reports it as its own OSError: keep ours to raise instead
                f.pdeforge_error = err
                raise

        cache.fetcher = fetch_retried
    return f


# Files still open when the interpreter exits are closed by atexit, while h5py and fsspec are whole: left to the
# garbage collector during shutdown, h5py calls back into a half-torn-down Python file object and crashes.
_OPEN: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_open_files() -> None:
    for f in list(_OPEN):
        try:
            f.close()
        except Exception:  # noqa: BLE001 - at exit, a file that cannot close has nothing left to lose
            pass


class RemoteHDF5File(h5py.File):
    """``h5py.File`` over :func:`open_remote` (read only); ``close()`` closes both."""

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        self._source = open_remote(url, storage_options)
        try:  # the first block read before HDF5 sees the file: a failed read must not leave HDF5 half-open on it
            self._source.read(8)
            self._source.seek(0)
        except BaseException:
            self._source.close()
            raise
        try:
            super().__init__(self._source, "r")
        except OSError as e:
            self._source.close()
            raise getattr(self._source, "pdeforge_error", None) or OSError(
                f"{url}: not a readable HDF5 file ({_why(e)})"
            ) from None
        _OPEN.add(self)  # hashed by its HDF5 id: only once open

    def close(self) -> None:
        super().close()
        self._source.close()
