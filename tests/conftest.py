"""Shared pytest fixtures. Tests make their own small data; nothing is downloaded."""

import functools
import json
import re
import socket
import subprocess
import sys
import textwrap
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # tests use small tensors: one thread is fastest and fair on a shared 2-core machine

REPO = Path(__file__).resolve().parents[1]


REFERENCE = REPO / "tests" / "reference"  # files made by running original implementations, each set with its README


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``tests/reference/``: the reference outputs the compatibility tests compare against, kept in the repository."""
    return REFERENCE


@pytest.fixture
def crash_after_checkpoint(monkeypatch):
    """``crash(train, nth=2)`` or ``crash(train, step=10)``: call ``train()`` with the run skeleton's checkpoint
    writer raising KeyboardInterrupt right after the ``nth`` checkpoint (or the one at optimiser step ``step``) is
    written, as a crash there would leave the run folder; returns the steps of the checkpoints written."""
    from pdeforge.training import RunFolder

    def crash(train, *, nth: int | None = None, step: int | None = None) -> list[int]:
        save, steps = RunFolder.save_checkpoint, []

        def save_then_crash(self, state):
            save(self, state)
            steps.append(state["counters"]["step"])
            if len(steps) == nth or steps[-1] == step:
                raise KeyboardInterrupt("simulated crash after a checkpoint")

        with monkeypatch.context() as patch:
            patch.setattr(RunFolder, "save_checkpoint", save_then_crash)
            with pytest.raises(KeyboardInterrupt):
                train()
        return steps

    return crash


@pytest.fixture
def refused_devices(monkeypatch):
    """With CUDA made unavailable: ``check(where, attempt, leaves)`` asserts that ``attempt(device)`` refuses each
    device that is not here with the one-line ``"<where>: device '<device>': <why>"`` and that the path ``leaves``
    does not exist afterwards (nothing half-written)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    why = {
        "gpu": "expected one of 'cpu', 'cuda', 'cuda:N', 'auto'",
        "cuda": r"expected 'cpu' or 'auto': CUDA is not available here \(torch.cuda.is_available\(\) is False\)",
        "cuda:0": "expected 'cpu' or 'auto': CUDA is not available",
        "cuda:1": "expected 'cpu' or 'auto': CUDA is not available",
    }

    def check(where: str, attempt, leaves: Path) -> None:
        for device, reason in why.items():
            with pytest.raises(ValueError, match=rf"^{where}: device '{device}': {reason}"):
                attempt(device)
            assert not leaves.exists(), (device, leaves)

    return check


def _devices_in(tree) -> set[str]:
    if isinstance(tree, torch.Tensor):
        return {tree.device.type}
    if isinstance(tree, dict):
        tree = list(tree.values())
    if isinstance(tree, (list, tuple)):
        return set().union(*(_devices_in(v) for v in tree))
    return set()


@pytest.fixture
def devices_in():
    """``devices_in(tree)``: the device types of the tensors in nested dicts, lists and tuples (a training state)."""
    return _devices_in


@pytest.fixture(scope="session")
def ks_root(tmp_path_factory) -> Path:
    """A small Kuramoto-Sivashinsky dataset root (10 trajectories, 64 points, 9 snapshots), made once per session
    for the generative family's tests."""
    from pdeforge.solvers.generate import PRESETS, generate, with_overrides

    root = tmp_path_factory.mktemp("ks") / "ks"
    generate(
        with_overrides(PRESETS["ks_1d"], n_snapshots=9, warmup=1.0),
        root,
        n_trajectories=10,
        resolution=64,
        progress=False,
    )
    return root


_KILLED_CHILD = textwrap.dedent(
    """
    import dataclasses, json, os, signal, sys
    from pdeforge.solvers.generate import PRESETS, generate, with_overrides

    root, name, overrides, options, kill_after = sys.argv[1:]
    base = with_overrides(PRESETS[name], **json.loads(overrides))
    calls = {"n": 0}

    class Killing(type(base)):
        def solve(self, indices, seed, resolution, device):
            if calls["n"] == int(kill_after):
                os.kill(os.getpid(), signal.SIGKILL)
            calls["n"] += 1
            return super().solve(indices, seed, resolution, device)

    preset = Killing(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})
    generate(preset, root, progress=False, **json.loads(options))
    print("done")
    """
)


@pytest.fixture
def generate_killed_then_resumed(tmp_path):
    """``run(name, overrides, kill_after, **options) -> (reference, resumed)``: ``pdeforge.solvers.generate.generate``
    of preset ``name`` (``with_overrides(PRESETS[name], **overrides)``, JSON values) with ``options``, once
    uninterrupted into ``reference`` and once in a child process SIGKILLed inside its solve number ``kill_after + 1``
    (checked: one ``.partial`` file left and no finished file of the split it was writing) and run again to the end
    into ``resumed`` (checked: it finishes, no ``.partial`` left). The caller compares the two roots' numbers."""
    from pdeforge.solvers.generate import PRESETS, generate, with_overrides

    def child(root: Path, name: str, overrides: dict, options: dict, kill_after: int) -> subprocess.CompletedProcess:
        argv = [str(root), name, json.dumps(overrides), json.dumps(options), str(kill_after)]
        return subprocess.run([sys.executable, "-c", _KILLED_CHILD, *argv], capture_output=True, text=True, timeout=300)

    def run(name: str, overrides: dict, kill_after: int, **options) -> tuple[Path, Path]:
        reference, resumed = tmp_path / "reference", tmp_path / "resumed"
        generate(with_overrides(PRESETS[name], **overrides), reference, progress=False, **options)
        r = child(resumed, name, overrides, options, kill_after)
        assert r.returncode == -9, r.stderr[-2000:]
        (partial,) = resumed.rglob("*.partial")  # killed inside a file: that file is not finished
        assert not list(partial.parent.glob("*.hdf5")), partial
        r = child(resumed, name, overrides, options, -1)
        assert r.returncode == 0 and "done" in r.stdout, r.stderr[-2000:]
        assert not list(resumed.rglob("*.partial"))
        return reference, resumed

    return run


class _RangedFiles(SimpleHTTPRequestHandler):
    """Static files with ``Range: bytes=a-b`` (206), each request logged in ``server.log`` as (method, path, bytes
    sent); ``server.token`` set: a request without ``Authorization: Bearer <token>`` gets 401 (logged with 0 bytes);
    ``server.drop`` > 0: that many ranged reads of ``.hdf5`` files end without an answer (logged as ``DROP``)."""

    def log_message(self, *args) -> None:  # quiet
        pass

    def end_headers(self) -> None:
        self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def _refused(self, method: str) -> bool:
        if self.server.token and self.headers.get("Authorization") != f"Bearer {self.server.token}":
            self.server.log.append((method, self.path, 0))
            self.send_error(401)
            return True
        return False

    def do_HEAD(self) -> None:
        if not self._refused("HEAD"):
            self.server.log.append(("HEAD", self.path, 0))
            super().do_HEAD()

    def do_GET(self) -> None:
        if self._refused("GET"):
            return
        path = Path(self.translate_path(self.path))
        m = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if m is None or not path.is_file():
            self.server.log.append(("GET", self.path, path.stat().st_size if path.is_file() else 0))
            return super().do_GET()
        if self.server.drop > 0 and self.path.endswith(".hdf5"):
            self.server.drop -= 1
            self.server.log.append(("DROP", self.path, 0))
            self.connection.shutdown(socket.SHUT_RDWR)  # the connection ends before any answer
            self.close_connection = True
            return
        data = path.read_bytes()
        start, end = int(m[1]), min(int(m[2]) if m[2] else len(data) - 1, len(data) - 1)
        body = data[start : end + 1]
        self.server.log.append(("GET", self.path, len(body)))
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def serve_files():
    """``serve_files(folder) -> server``: ``folder`` served over HTTP on 127.0.0.1 with byte ranges (``_RangedFiles``)
    until the test ends; ``server.url`` is the folder's URL, ``server.log``, ``server.token`` and ``server.drop`` as
    there (empty, ``None``, 0)."""
    servers = []

    def serve(folder: Path) -> ThreadingHTTPServer:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_RangedFiles, directory=str(folder)))
        httpd.log, httpd.token, httpd.drop = [], None, 0
        httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(httpd)
        return httpd

    yield serve
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()
