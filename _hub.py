"""Folders published on the Hugging Face Hub, resolved through ``huggingface_hub`` and its cache.

``hf://org/name`` (or ``hf://org/name@revision``) names a model repository; :func:`hub_folder` gives the local
snapshot folder of it, downloading what the cache lacks unless offline. The hub's own rules hold: the cache is
``cache_dir``, else ``$HF_HUB_CACHE``, else ``~/.cache/huggingface/hub`` (layout
``models--org--name/snapshots/<commit>``, ``refs/<branch>``); ``HF_HUB_OFFLINE=1`` or ``local_files_only=True``
reads the cache only. Both environment variables are read at each call, so setting them after ``huggingface_hub`` was
imported still counts.

Used by ``ScOT.from_pretrained("org/name")`` and ``pdeforge.load_run("hf://org/name")`` (no torch here).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["HF_PREFIX", "is_hub_url", "parse_hub_url", "hub_folder"]

HF_PREFIX = "hf://"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_url(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an ``hf://`` URL."""
    return isinstance(path, str) and path.startswith(HF_PREFIX)


def looks_like_repo_id(path: str | os.PathLike) -> bool:
    """``org/name`` that is not a local path (as ``from_pretrained`` tells a Hub id from a folder)."""
    return isinstance(path, str) and bool(_REPO_ID.match(path)) and not Path(path).exists()


def parse_hub_url(url: str) -> tuple[str, str | None]:
    """``hf://org/name[@revision]`` -> (``org/name``, revision or None); anything else is a one-line ValueError."""
    rest = url[len(HF_PREFIX) :] if url.startswith(HF_PREFIX) else url
    repo, _, revision = rest.partition("@")
    repo = repo.strip("/")
    if not _REPO_ID.match(repo):
        raise ValueError(f"{url}: expected hf://ORG/NAME or hf://ORG/NAME@REVISION (a model repository on the Hub)")
    return repo, revision or None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_folder(
    repo_id: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    note: str = "",
) -> Path:
    """The local snapshot folder of the Hub model repository ``repo_id`` at ``revision`` (default ``main``).

    Raises one-line errors naming ``hf://repo_id@revision``: FileNotFoundError when it is not in the cache and may not
    be downloaded (offline), or the Hub has no such repository, revision or file; PermissionError for a gated or
    private repository; OSError for a network failure; ImportError when ``huggingface_hub`` is not installed. ``note``
    follows the URL in them (e.g. why a name was read as a Hub id); ``token`` as in ``snapshot_download``."""
    where = f"{HF_PREFIX}{repo_id}" + (f"@{revision}" if revision else "") + note
    try:
        import huggingface_hub
        from huggingface_hub import errors
    except ImportError as e:
        raise ImportError(f"{where}: reading from the Hub needs huggingface_hub (pip install huggingface_hub)") from e
    cache_dir = cache_dir if cache_dir is not None else os.environ.get("HF_HUB_CACHE") or None
    offline = local_files_only or _offline()
    try:
        folder = huggingface_hub.snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir, local_files_only=offline, token=token
        )
    except errors.LocalEntryNotFoundError:
        cache = cache_dir or huggingface_hub.constants.HF_HUB_CACHE
        raise FileNotFoundError(
            f"{where}: not in the Hugging Face cache {cache} and not downloaded "
            f"({'offline: HF_HUB_OFFLINE or local_files_only' if offline else 'the Hub could not be reached'}); "
            f"expected {cache}/models--{repo_id.replace('/', '--')}/snapshots/<commit>/ (huggingface-cli download "
            f"{repo_id})"
        ) from None
    except errors.GatedRepoError:
        raise PermissionError(
            f"{where}: a gated repository: accept its terms on the Hub and log in (hf auth login)"
        ) from None
    except errors.RepositoryNotFoundError:
        raise FileNotFoundError(
            f"{where}: no such repository on the Hub (or a private one: log in with hf auth login)"
        ) from None
    except errors.RevisionNotFoundError:
        raise FileNotFoundError(f"{where}: no revision {revision!r} in {repo_id}") from None
    except errors.HfHubHTTPError as e:
        raise OSError(f"{where}: the Hub answered {str(e).splitlines()[0][:200]}") from None
    return Path(folder)
