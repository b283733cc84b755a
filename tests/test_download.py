"""Dataset download: served from a loopback HTTP server in a thread, never from the internet."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hllm.data.download import DATASETS, download_dataset, extract_zip, get_dataset_source
from hllm.data.schema import DataError

RATINGS = b"1::1::5::978300760\n2::1::3::978300761\n"
MOVIES = "1::Amélie (2001)::Comedy|Romance\n".encode("latin-1")


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


GOOD_ZIP = make_zip({"ml-test/ratings.dat": RATINGS, "ml-test/movies.dat": MOVIES})


@dataclass
class LocalServer:
    """Routes: path -> (body, Content-Length to announce)."""

    base: str
    routes: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    def serve(self, path: str, body: bytes, announced: int | None = None) -> str:
        self.routes[path] = (body, len(body) if announced is None else announced)
        return self.base + path


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    state = LocalServer(base="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits.append(self.path)
            if self.path not in state.routes:
                self.send_error(404, "Not Found")
                return
            body, announced = state.routes[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(announced))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_registry_holds_the_movielens_archives() -> None:
    assert {name: (s.url, s.md5) for name, s in DATASETS.items()} == {
        "movielens-100k": (
            "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
            "0e33842e24a9c977be4e0107933c0723",
        ),
        "movielens-1m": (
            "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
            "c4d9eecfca2ab87c1945afe126590906",
        ),
        "movielens-25m": (
            "https://files.grouplens.org/datasets/movielens/ml-25m.zip",
            "6b51fb2759a8657d3bfcbfc42b592ada",
        ),
    }


def test_unknown_name_lists_known_datasets(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'movielens-2m'") as info:
        download_dataset("movielens-2m", tmp_path)
    for name in DATASETS:
        assert name in str(info.value)
    assert not any(tmp_path.iterdir())
    with pytest.raises(DataError, match="known datasets"):
        get_dataset_source("")


def test_download_extracts_and_second_call_skips_the_network(server: LocalServer, tmp_path: Path) -> None:
    url = server.serve("/datasets/ml-test.zip", GOOD_ZIP)
    calls: list[tuple[int, int | None]] = []
    out = tmp_path / "data"

    folder = download_dataset(
        "movielens-1m", out, url=url, md5=md5_of(GOOD_ZIP), progress=lambda d, t: calls.append((d, t)), timeout=5
    )

    assert folder == out / "ml-test"
    assert (folder / "ratings.dat").read_bytes() == RATINGS
    assert (folder / "movies.dat").read_bytes() == MOVIES
    assert (out / "ml-test.zip").read_bytes() == GOOD_ZIP
    assert not list(out.glob("*.part"))
    assert calls[0] == (0, len(GOOD_ZIP))
    assert calls[-1] == (len(GOOD_ZIP), len(GOOD_ZIP))
    assert server.hits == ["/datasets/ml-test.zip"]

    (folder / "movies.dat").unlink()  # a lost file is restored from the archive, still without the network
    again = download_dataset("movielens-1m", out, url=url, md5=md5_of(GOOD_ZIP).upper(), timeout=5)
    assert again == folder
    assert (folder / "movies.dat").read_bytes() == MOVIES
    assert server.hits == ["/datasets/ml-test.zip"]


def test_stale_archive_is_downloaded_again(server: LocalServer, tmp_path: Path) -> None:
    url = server.serve("/ml-test.zip", GOOD_ZIP)
    (tmp_path / "ml-test.zip").write_bytes(b"half a zip")
    folder = download_dataset("movielens-1m", tmp_path, url=url, md5=md5_of(GOOD_ZIP), timeout=5)
    assert (folder / "ratings.dat").read_bytes() == RATINGS
    assert server.hits == ["/ml-test.zip"]


def test_checksum_mismatch_names_both_and_leaves_no_file(server: LocalServer, tmp_path: Path) -> None:
    url = server.serve("/ml-test.zip", GOOD_ZIP)
    wrong = "0" * 32
    with pytest.raises(DataError) as info:
        download_dataset("movielens-1m", tmp_path, url=url, md5=wrong, timeout=5)
    message = str(info.value)
    assert wrong in message
    assert md5_of(GOOD_ZIP) in message
    assert url in message
    assert list(tmp_path.iterdir()) == []


def test_registered_checksum_is_used_by_default(server: LocalServer, tmp_path: Path) -> None:
    url = server.serve("/ml-1m.zip", GOOD_ZIP)
    with pytest.raises(DataError, match=DATASETS["movielens-1m"].md5):
        download_dataset("movielens-1m", tmp_path, url=url, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_http_404_is_a_clear_error(server: LocalServer, tmp_path: Path) -> None:
    url = server.base + "/missing.zip"
    with pytest.raises(DataError, match="HTTP 404") as info:
        download_dataset("movielens-100k", tmp_path, url=url, md5=md5_of(GOOD_ZIP), timeout=5)
    assert url in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_connection_closed_early_is_a_clear_error(server: LocalServer, tmp_path: Path) -> None:
    url = server.serve("/ml-test.zip", GOOD_ZIP[:100], announced=len(GOOD_ZIP))
    with pytest.raises(DataError, match="download failed") as info:
        download_dataset("movielens-1m", tmp_path, url=url, md5=md5_of(GOOD_ZIP), timeout=5)
    assert url in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ml-test.zip"
    with pytest.raises(DataError, match="cannot reach the server") as info:
        download_dataset("movielens-1m", tmp_path, url=url, md5=md5_of(GOOD_ZIP), timeout=5)
    assert url in str(info.value)


@pytest.mark.parametrize("member", ["../evil.txt", "ml-test/../../evil.txt", "/tmp/evil.txt", "..\\evil.txt"])
def test_zip_with_escaping_member_is_refused(server: LocalServer, tmp_path: Path, member: str) -> None:
    evil = make_zip({"ml-test/ratings.dat": RATINGS, member: b"owned"})
    url = server.serve("/evil.zip", evil)
    out = tmp_path / "out"
    with pytest.raises(DataError, match="unsafe member path"):
        download_dataset("movielens-1m", out, url=url, md5=md5_of(evil), timeout=5)
    assert not (tmp_path / "evil.txt").exists()
    assert not (out / "ml-test").exists()  # nothing at all is extracted


def test_broken_zip_is_reported(tmp_path: Path) -> None:
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"this is not a zip")
    with pytest.raises(DataError, match="not a valid zip"):
        extract_zip(archive, tmp_path)


def test_flat_zip_returns_the_output_folder(tmp_path: Path) -> None:
    archive = tmp_path / "flat.zip"
    archive.write_bytes(make_zip({"ratings.dat": RATINGS, "movies.dat": MOVIES, "__MACOSX/._x": b""}))
    assert extract_zip(archive, tmp_path / "out") == tmp_path / "out"
    assert (tmp_path / "out" / "ratings.dat").read_bytes() == RATINGS
