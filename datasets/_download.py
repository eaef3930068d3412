"""``pdeforge download``: published datasets onto the disk, resumable and verified.

    pdeforge download the_well turbulent_radiative_layer_2D --split train --out data/trl2d
    pdeforge download pdebench 1D_Advection_Sols_beta0.1 --out data/pdebench --convert

Each file is fetched over HTTP(S) into ``<file>.partial`` next to its final name; an interrupted download (Ctrl-C, a
dropped connection) resumes from the bytes already there with an HTTP ``Range`` request, both within one command
(``RETRIES`` tries in all, waits 0.5 s, 1 s, ...) and in the next one. The whole file is then checked (PDEBench: the
MD5 of its published table; The Well: the size the server announced, and the SHA-256 when the mirror's
``index.json`` gives one) and only then renamed to its final name. A file that fails its check is removed and never
placed; a final file that is there already is kept when it passes the check, and refused when it does not (nothing is
silently overwritten).

Sources. The Well: ``BASE/datasets/NAME/data/<split>/*.hdf5`` and ``BASE/datasets/NAME/stats.yaml``, ``BASE`` The
Well's own server (``the_well``'s ``registry.yaml``) unless ``--base-url``; file names from that registry when
``the_well`` is installed and knows NAME, else from the mirror's listing (``index.json``, or its HTML directory
listing). PDEBench: the files of ``pdebench_files.csv``, PDEBench's published table as it is (pdebench/PDEBench
``pdebench/data_download/pdebench_data_urls.csv``: PDE, Filename, URL, Path, MD5; 375 files, ``pdeforge download
pdebench --list``); with
``--base-url`` each file is ``BASE/<Path><Filename>``, the layout PDEBench's own download script writes.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._remote import _read_index, list_remote, url_join

__all__ = ["RemoteFile", "fetch", "pdebench_table", "pdebench_files", "download_pdebench", "download_well"]

WELL_BASE_URL = "https://sdsc-users.flatironinstitute.org/~polymathic/data/the_well"
PDEBENCH_TABLE = Path(__file__).with_name("pdebench_files.csv")
RETRIES = 3
BACKOFF_S = 0.5
TIMEOUT_S = 60.0
CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: its ``url``, where it goes under the output folder (``dest``), and what checks it."""

    url: str
    dest: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _check(file: RemoteFile, path: Path, total: int | None) -> str | None:
    """Why ``path`` is not ``file`` (a one-line reason), or None."""
    size = path.stat().st_size
    expected = file.size if file.size is not None else total
    if expected is not None and size != expected:
        return f"{size} bytes, expected {expected}"
    for algorithm, want in (("md5", file.md5), ("sha256", file.sha256)):
        if want:
            got = _digest(path, algorithm)
            if got != want.lower():
                return f"{algorithm} {got}, expected {want.lower()}"
    return None


def fetch(file: RemoteFile, out: str | os.PathLike, *, progress: bool = True) -> Path:
    """Fetch ``file`` to ``out / file.dest`` (see the module docstring: resume, check, atomic placement); returns
    the final path. Raises FileNotFoundError (404), PermissionError (401/403), OSError (the network, after the
    tries), ValueError (a check failed: the download is removed), FileExistsError (another file has the name)."""
    from tqdm.auto import tqdm

    final = Path(out) / file.dest
    if final.exists():
        why = _check(file, final, None)
        if why is None:
            return final
        raise FileExistsError(f"{final}: already there and not the file at {file.url} ({why}); move it away first")
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(final.name + ".partial")
    total: int | None = None
    for attempt in range(RETRIES):
        have = partial.stat().st_size if partial.exists() else 0
        request = urllib.request.Request(file.url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                if have and response.status != 206:  # the server ignores Range: start again from the first byte
                    have = 0
                total = _total(response, have)
                with (
                    open(partial, "ab" if have else "wb") as f,
                    tqdm(
                        total=total, initial=have, unit="B", unit_scale=True, desc=final.name, disable=not progress
                    ) as bar,
                ):
                    while chunk := response.read(CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
            if total is None or partial.stat().st_size >= total:
                break
            raise http.client.IncompleteRead(b"", total - partial.stat().st_size)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have and (file.size is None or have >= file.size):
                break  # nothing left to fetch: the partial copy is whole
            if e.code == 404:
                raise FileNotFoundError(f"{file.url}: not found (HTTP 404)") from None
            if e.code in (401, 403):
                raise PermissionError(f"{file.url}: access refused (HTTP {e.code})") from None
            if attempt == RETRIES - 1:
                raise OSError(f"{file.url}: HTTP {e.code} {e.reason} after {RETRIES} tries") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            if attempt == RETRIES - 1:
                raise OSError(
                    f"{file.url}: failed after {RETRIES} tries ({type(e).__name__}: {e}); {partial} is kept, and the "
                    "same command resumes it"
                ) from None
        time.sleep(BACKOFF_S * 2**attempt)
    why = _check(file, partial, total)
    if why is not None:
        partial.unlink()
        raise ValueError(f"{file.url}: the download does not check out ({why}); it was removed, not placed at {final}")
    os.replace(partial, final)
    return final


def _total(response: http.client.HTTPResponse, have: int) -> int | None:
    """The full size of the file from ``Content-Range`` (a 206) or ``Content-Length`` (a 200)."""
    m = re.match(r"bytes \d+-\d+/(\d+)", response.headers.get("Content-Range", ""))
    if m:
        return int(m[1])
    length = response.headers.get("Content-Length")
    return int(length) + (have if response.status == 206 else 0) if length is not None else None


# ------------------------------------------------------------------------------------------ PDEBench
#: PDEs of the table whose files `convert_pdebench` does not read (2D incompressible Navier-Stokes: ``velocity``,
#: ``force``, ``particles`` in a layout of their own)
NOT_CONVERTIBLE = ("NS_Incom",)


def pdebench_table() -> list[dict[str, str]]:
    """The rows of PDEBench's published table (PDE, Filename, URL, Path, MD5), in its order."""
    with open(PDEBENCH_TABLE, newline="") as f:
        return list(csv.DictReader(f))


def pdebench_files(name: str, base_url: str | None = None) -> list[RemoteFile]:
    """The files of PDEBench's table called ``name``: a Filename (with or without its suffix), or a PDE (every file
    of it). ``base_url``: a mirror holding ``<Path><Filename>``."""
    rows = pdebench_table()
    chosen = [r for r in rows if name in (r["Filename"], Path(r["Filename"]).stem, r["PDE"])]
    if not chosen:
        pdes = ", ".join(dict.fromkeys(r["PDE"] for r in rows))
        raise ValueError(
            f"pdebench {name}: not in pdeforge's table of PDEBench files ({PDEBENCH_TABLE.name}); expected a file name "
            f"such as {rows[0]['Filename']} or a PDE: {pdes}"
        )
    return [
        RemoteFile(
            url=url_join(base_url, r["Path"], r["Filename"]) if base_url else r["URL"],
            dest=r["Path"] + r["Filename"],
            md5=r["MD5"],
        )
        for r in chosen
    ]


def download_pdebench(
    name: str, out: str | os.PathLike, *, base_url: str | None = None, convert: bool = False, progress: bool = True
) -> list[Path]:
    """Fetch the PDEBench files called ``name`` into ``out/<Path><Filename>``; with ``convert``, each also becomes
    the dataset root ``out/<Filename stem>`` (`convert_pdebench`, 80/10/10 split, seed 0). Returns the files (or
    the roots)."""
    from ._pdebench import convert_pdebench

    chosen = pdebench_files(name, base_url)
    rows = [r for r in pdebench_table() if name in (r["Filename"], Path(r["Filename"]).stem, r["PDE"])]
    if convert and any(r["PDE"] in NOT_CONVERTIBLE for r in rows):  # refused before any byte is fetched
        raise ValueError(
            f"--convert: pdebench {name} is incompressible Navier-Stokes ({', '.join(NOT_CONVERTIBLE)}), whose "
            "layout pdeforge convert pdebench does not read; expected it without --convert"
        )
    files = [fetch(f, out, progress=progress) for f in chosen]
    if not convert:
        return files
    roots = []
    for path in files:
        root = Path(out) / path.stem
        if not (root / "stats.yaml").is_file():  # a root converted already is kept as it is
            convert_pdebench(path, root, progress=progress)
        roots.append(root)
    return roots


# ------------------------------------------------------------------------------------------ The Well
def _well_registry(name: str) -> dict | None:
    try:
        import yaml
        from the_well.utils.download import WELL_REGISTRY
    except ImportError:
        return None
    with open(WELL_REGISTRY) as f:
        return yaml.safe_load(f).get(name)


def well_files(name: str, splits: Sequence[str], base_url: str | None = None) -> list[RemoteFile]:
    """The files of The Well's dataset ``name`` for ``splits`` (and its ``stats.yaml``)."""
    if not re.fullmatch(r"[\w.-]+", name):
        raise ValueError(f"the_well {name}: expected a dataset name such as turbulent_radiative_layer_2D")
    base = (base_url or WELL_BASE_URL).rstrip("/")
    root = url_join(base, "datasets", name)
    registry = _well_registry(name) if base_url is None else None
    index = _read_index(root, None) if registry is None else None
    files = [RemoteFile(url_join(root, "stats.yaml"), "stats.yaml")]
    for split in splits:
        if registry is not None:
            names = [u.rsplit("/", 1)[1] for u in registry.get(split, [])]
            urls = [url_join(root, "data", split, n) for n in names]
        else:
            urls = list_remote(root, split)
        if not urls:
            raise FileNotFoundError(
                f"the_well {name}: no {split} files at {url_join(root, 'data', split)}/ (expected a dataset of The "
                "Well, listed by the_well's registry, the mirror's index.json or its directory listing)"
            )
        for url in urls:
            rel = url[len(root) + 1 :]
            entry = (index or {}).get(rel)
            meta = entry if isinstance(entry, dict) else {"size": entry}
            files.append(RemoteFile(url, rel, sha256=meta.get("sha256"), size=meta.get("size")))
    return files


def download_well(
    name: str,
    out: str | os.PathLike,
    *,
    splits: Sequence[str] = ("train", "valid", "test"),
    base_url: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Fetch The Well's dataset ``name`` (its ``splits`` and ``stats.yaml``) into the dataset root ``out``."""
    return [fetch(f, out, progress=progress) for f in well_files(name, splits, base_url)]
