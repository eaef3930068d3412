"""``pdeforge download`` against a mirror served on 127.0.0.1 by the test: resume with HTTP Range, checksums,
atomic placement, PDEBench's table and --convert, The Well's layout and its listing."""

from __future__ import annotations

import csv
import functools
import hashlib
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h5py
import numpy as np
import pytest

from pdeforge.cli import main as cli
from pdeforge.datasets import TrajectoryDataset
from pdeforge.datasets import _download as download
from pdeforge.datasets._remote import write_index


class _Mirror(SimpleHTTPRequestHandler):
    """Static files with ``Range: bytes=a-`` (206); ``server.cut`` > 0: that many answers stop after half the body
    (the connection closes early, as an interrupted transfer does). Logs (path, Range header) of each GET."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        self.server.log.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            return super().do_GET()
        data = path.read_bytes()
        m = re.match(r"bytes=(\d+)-", self.headers.get("Range", ""))
        start = int(m[1]) if m else 0
        if start >= len(data) and m:
            self.send_error(416)
            return
        body = data[start:]
        self.send_response(206 if m else 200)
        if m:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.cut > 0:
            self.server.cut -= 1
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch):
    folder = tmp_path / "mirror"
    folder.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Mirror, directory=str(folder)))
    httpd.log, httpd.cut, httpd.folder = [], 0, folder
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    monkeypatch.setattr(download, "BACKOFF_S", 0.01)
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def pdebench_file(path: Path, n: int = 10, seed: int = 0) -> bytes:
    """A small file in PDEBench's first layout (tensor (N, T, X), x- and t-coordinates, the parameter attribute)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["tensor"] = rng.standard_normal((n, 5, 16)).astype(np.float32)
        f["x-coordinate"] = ((np.arange(16) + 0.5) / 16).astype(np.float32)
        f["t-coordinate"] = (0.05 * np.arange(6)).astype(np.float32)
        f.attrs["beta"] = 0.1
    return path.read_bytes()


@pytest.fixture
def table(tmp_path: Path, mirror, monkeypatch) -> dict[str, bytes]:
    """Two files on the mirror at PDEBench's <Path><Filename>, and a table naming them with their MD5s."""
    files = {}
    rows = []
    for k, name in enumerate(("1D_Advection_Sols_beta0.1.hdf5", "1D_Advection_Sols_beta0.4.hdf5")):
        data = pdebench_file(mirror.folder / "1D/Advection/Train" / name, seed=k)
        files[name] = data
        url = f"https://darus.example/{k}"
        rows.append(["Advection", name, url, "1D/Advection/Train/", hashlib.md5(data).hexdigest()])
    path = tmp_path / "table.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["PDE", "Filename", "URL", "Path", "MD5"], *rows])
    monkeypatch.setattr(download, "PDEBENCH_TABLE", path)
    return files


def test_the_shipped_table_holds_pdebenchs_published_facts():
    files = download.pdebench_files("1D_Advection_Sols_beta0.1")
    assert files == [
        download.RemoteFile(
            "https://darus.uni-stuttgart.de/api/access/datafile/255672",
            "1D/Advection/Train/1D_Advection_Sols_beta0.1.hdf5",
            md5="b4be2fc3383f737c76033073e6d2ccfb",
        )
    ]
    assert len(download.pdebench_files("Burgers")) == 12
    mirrored = download.pdebench_files("2D_DarcyFlow_beta1.0_Train.hdf5", base_url="http://mirror/pdebench/")
    assert mirrored[0].url == "http://mirror/pdebench/2D/DarcyFlow/2D_DarcyFlow_beta1.0_Train.hdf5"
    with pytest.raises(ValueError, match=r"^pdebench Nope: not in pdeforge's table .* or a PDE: Advection, Burgers"):
        download.pdebench_files("Nope")


def test_an_interrupted_download_resumes_to_the_same_bytes(mirror, table, tmp_path, capsys):
    out = tmp_path / "out"
    name = "1D_Advection_Sols_beta0.1.hdf5"
    mirror.cut = 1  # the first answer stops half-way: the same command resumes from there
    assert cli(["download", "pdebench", name, "--out", str(out), "--base-url", mirror.url, "--no-progress"]) == 0
    final = out / "1D/Advection/Train" / name
    assert final.read_bytes() == table[name]
    half = len(table[name]) // 2
    assert mirror.log == [(f"/1D/Advection/Train/{name}", None), (f"/1D/Advection/Train/{name}", f"bytes={half}-")]
    assert not list(out.rglob("*.partial"))

    # a command stopped earlier (Ctrl-C) left a partial copy: the next one fetches only the rest
    other = "1D_Advection_Sols_beta0.4.hdf5"
    partial = out / "1D/Advection/Train" / (other + ".partial")
    partial.write_bytes(table[other][:1000])
    mirror.log.clear()
    assert cli(["download", "pdebench", other, "--out", str(out), "--base-url", mirror.url, "--no-progress"]) == 0
    assert (out / "1D/Advection/Train" / other).read_bytes() == table[other] and not partial.exists()
    assert mirror.log == [(f"/1D/Advection/Train/{other}", "bytes=1000-")]
    # there already and whole: nothing fetched
    mirror.log.clear()
    assert cli(["download", "pdebench", "Advection", "--out", str(out), "--base-url", mirror.url]) == 0
    assert mirror.log == []


def test_a_corrupted_file_is_refused_by_its_checksum_and_not_placed(mirror, table, tmp_path, capsys):
    name = "1D_Advection_Sols_beta0.1.hdf5"
    served = mirror.folder / "1D/Advection/Train" / name
    served.write_bytes(table[name][:-1] + bytes([table[name][-1] ^ 1]))  # one bit flipped
    out = tmp_path / "out"
    assert cli(["download", "pdebench", name, "--out", str(out), "--base-url", mirror.url, "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    md5 = hashlib.md5(table[name]).hexdigest()
    assert err.startswith(f"error: {mirror.url}/1D/Advection/Train/{name}: the download does not check out (md5 ")
    assert f"expected {md5}); it was removed, not placed at" in err and "\n" not in err
    assert not [p for p in out.rglob("*") if p.is_file()]  # neither the file nor its partial copy

    # a different file under the final name is never overwritten
    served.write_bytes(table[name])
    final = out / "1D/Advection/Train" / name
    final.write_bytes(b"mine")
    assert cli(["download", "pdebench", name, "--out", str(out), "--base-url", mirror.url, "--no-progress"]) == 1
    assert "already there and not the file at" in capsys.readouterr().err and final.read_bytes() == b"mine"

    missing = f"{mirror.url}/1D/Advection/Train/1D_Advection_Sols_beta0.4.hdf5"
    (mirror.folder / "1D/Advection/Train/1D_Advection_Sols_beta0.4.hdf5").unlink()
    assert cli(["download", "pdebench", "1D_Advection_Sols_beta0.4", "--out", str(out), "--base-url", mirror.url]) == 1
    assert capsys.readouterr().err == f"error: {missing}: not found (HTTP 404)\n"


def test_pdebench_convert_gives_a_dataset_root(mirror, table, tmp_path):
    out = tmp_path / "out"
    argv = ["download", "pdebench", "1D_Advection_Sols_beta0.1", "--out", str(out), "--base-url", mirror.url]
    assert cli([*argv, "--convert", "--no-progress"]) == 0
    root = out / "1D_Advection_Sols_beta0.1"
    data = TrajectoryDataset(root, split="train", n_steps_input=1)
    assert (root / "stats.yaml").is_file() and data.metadata.field_names == ("u",)
    with h5py.File(out / "1D/Advection/Train/1D_Advection_Sols_beta0.1.hdf5") as f:
        source = f["tensor"][...]
    first = data[0]["input_fields"][0, 0].numpy()  # trajectory 0 of train, snapshot 0
    assert sum(np.array_equal(first, source[i, 0]) for i in range(10)) == 1


def test_the_well_from_a_mirror_by_its_index_with_sizes_and_sha256(mirror, tmp_path, capsys):
    root = mirror.folder / "datasets" / "toy_well"
    files = {}
    for split in ("train", "valid", "test"):
        f = root / "data" / split / f"toy_{split}.hdf5"
        files[f"data/{split}/toy_{split}.hdf5"] = pdebench_file(f, seed=len(files))  # any bytes will do
    (root / "stats.yaml").write_text("mean: {}\nstd: {}\nrms: {}\n")
    write_index(root)
    out = tmp_path / "well"
    argv = ["download", "the_well", "toy_well", "--split", "train", "--split", "test", "--out", str(out)]
    assert cli([*argv, "--base-url", mirror.url, "--no-progress"]) == 0
    got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert got == ["data/test/toy_test.hdf5", "data/train/toy_train.hdf5", "stats.yaml"]
    assert all((out / k).read_bytes() == v for k, v in files.items() if "valid" not in k)

    (root / "data/valid/toy_valid.hdf5").write_bytes(b"changed after the index was written")
    assert cli(["download", "the_well", "toy_well", "--out", str(out), "--base-url", mirror.url]) == 1
    assert "toy_valid.hdf5: the download does not check out (35 bytes, expected" in capsys.readouterr().err
    assert not (out / "data/valid").exists() or not list((out / "data/valid").iterdir())


def test_ctrl_c_names_the_partial_file_and_the_command_that_resumes_it(mirror, table, tmp_path, capsys, monkeypatch):
    name = "1D_Advection_Sols_beta0.1.hdf5"
    out = tmp_path / "out"
    partial = out / "1D/Advection/Train" / (name + ".partial")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(table[name][:100])

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "_total", interrupt)
    argv = ["download", "pdebench", name, "--out", str(out), "--base-url", mirror.url, "--no-progress"]
    assert cli(argv) == 130
    err = capsys.readouterr().err
    assert err == (
        f"interrupted: {out} keeps its finished files and the partial {partial}; resume with: pdeforge download "
        f"pdebench {name} --out {out} --base-url {mirror.url}\n"
    )
    assert partial.read_bytes() == table[name][:100]


def test_the_table_is_pdebenchs_whole_published_table_and_list_shows_it(tmp_path, capsys):
    rows = download.pdebench_table()
    assert len(rows) == 375 and len({r["Filename"] for r in rows}) == 375  # pdebench_data_urls.csv, every row
    assert all(re.fullmatch(r"[0-9a-f]{32}", r["MD5"]) and r["URL"].startswith("https://darus.") for r in rows)
    counts = {}
    for r in rows:
        counts[r["PDE"]] = counts.get(r["PDE"], 0) + 1
    assert counts == {
        "Advection": 8, "Burgers": 12, "1D_CFD": 12, "Diff_Sorp": 1, "1D_ReacDiff": 36, "2D_CFD": 17,
        "Darcy": 5, "2D_ReacDiff": 1, "NS_Incom": 274, "SWE": 1, "3D_CFD": 8,
    }  # fmt: skip
    (ns,) = download.pdebench_files("ns_incom_inhom_2d_512-0")
    assert ns == download.RemoteFile(
        "https://darus.uni-stuttgart.de/api/access/datafile/133280",
        "2D/NS_incom/ns_incom_inhom_2d_512-0.h5",
        md5="54109d46f9c957317bd670ddb2068ac0",
    )
    assert download.pdebench_files("BlastWave")[0].md5 == "f901a1ec75925c1d861ac99a825878f3"
    assert cli(["download", "pdebench", "--list"]) == 0
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 375 and "2D/NS_incom/ns_incom_inhom_2d_512-0.h5" in out.out
    assert "375 files" in out.err
    # incompressible NS has a layout the importer does not read: --convert is refused before anything is fetched
    assert cli(["download", "pdebench", "ns_incom_inhom_2d_512-0", "--out", str(tmp_path / "o"), "--convert"]) == 1
    assert "whose layout pdeforge convert pdebench does not read" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert cli(["download", "pdebench", "Advection"]) == 1
    assert "expected NAME and --out DIR" in capsys.readouterr().err
