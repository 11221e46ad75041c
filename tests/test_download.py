"""``coral data download`` against a small HTTP server on loopback; never the real network."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import re
import socket
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from coral.data import download
from coral.data.download import DownloadConfig, download_dataset, release_files
from coral.data.registry import resolve
from coral.errors import CoralError, DataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "amazon2018"
GIFT_5 = SHARED / "Gift_Cards_5.json.gz"
GIFT_META = SHARED / "meta_Gift_Cards.json.gz"

#: For the tests that serve the official Gift Cards files kept beside the repository.
needs_shared = pytest.mark.skipif(not GIFT_5.exists() or not GIFT_META.exists(), reason=f"needs {SHARED}")


@dataclass
class Mirror:
    """A running loopback server and what it saw."""

    url: str
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    """(path, Range header) of every GET."""
    body_bytes: int = 0
    """Body bytes sent, over all responses."""


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files from a folder, with ``Range: bytes=N-`` support (http.server has none).

    Per-server settings are class attributes of a subclass made by :func:`_serve`.
    """

    mirror: Mirror
    support_range = True
    drop_after: list[int]  # a one-shot: close the first response after this many body bytes

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        requested = self.headers.get("Range")
        self.mirror.requests.append((self.path, requested))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if requested and self.support_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.drop_after:
            body = body[: self.drop_after.pop()]
            self.close_connection = True
        self.wfile.write(body)
        self.mirror.body_bytes += len(body)


@pytest.fixture
def serve():
    """``serve(folder, support_range=True, drop_after=None) -> Mirror``, shut down after the test."""
    servers = []

    def start(folder: Path, support_range: bool = True, drop_after: int | None = None) -> Mirror:
        mirror = Mirror(url="")
        handler = type("Handler", (_RangeHandler,), {
            "mirror": mirror, "support_range": support_range, "drop_after": [drop_after] if drop_after else [],
        })
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        mirror.url = f"http://127.0.0.1:{server.server_address[1]}"
        return mirror

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CORAL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CORAL_DATA_DIR", raising=False)
    return tmp_path / "cache" / "data"


def run_cli(argv: list[str]) -> int:
    """The ``coral`` console command, in process."""
    from coral.cli import main

    return main(argv)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_shared
def test_downloads_gift_cards_5core_and_meta_from_mirror(serve, cache, capsys):
    mirror = serve(SHARED)
    assert run_cli(["data", "download", "Gift_Cards", "--variant", "5core", "--mirror", mirror.url]) == 0
    review, meta = cache / "amazon2018" / "Gift_Cards_5.json.gz", cache / "amazon2018" / "meta_Gift_Cards.json.gz"
    assert review.read_bytes() == GIFT_5.read_bytes()
    assert meta.read_bytes() == GIFT_META.read_bytes()
    assert capsys.readouterr().out.split() == [str(review), str(meta)]
    assert sorted(p.name for p in (cache / "amazon2018").iterdir()) == [review.name, meta.name]
    assert [path for path, _ in mirror.requests] == ["/Gift_Cards_5.json.gz", "/meta_Gift_Cards.json.gz"]
    assert resolve("Gift_Cards") == ("Gift_Cards", review)  # where `--dataset Gift_Cards` now looks

    # A second run finds both files in place and fetches nothing; the lowercase alias works too.
    assert run_cli(["data", "download", "gift_cards", "--variant", "5core", "--mirror", mirror.url]) == 0
    assert len(mirror.requests) == 2


@needs_shared
def test_resumes_a_partial_download_with_a_range_request(serve, cache):
    whole = GIFT_5.read_bytes()
    half = len(whole) // 2
    part = cache / "amazon2018" / "Gift_Cards_5.json.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(whole[:half])
    mirror = serve(SHARED)
    download_dataset("Gift_Cards", "5core", DownloadConfig(mirror=mirror.url, progress=False))
    assert (cache / "amazon2018" / "Gift_Cards_5.json.gz").read_bytes() == whole
    assert not part.exists()
    assert mirror.requests[0] == ("/Gift_Cards_5.json.gz", f"bytes={half}-")
    assert mirror.body_bytes == len(whole) - half + GIFT_META.stat().st_size


@needs_shared
def test_a_whole_part_left_by_a_previous_run_is_verified_and_kept(serve, cache):
    # The server answers 416 to "bytes=<size>-"; the .part is then already the whole file.
    whole = GIFT_5.read_bytes()
    part = cache / "amazon2018" / "Gift_Cards_5.json.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(whole)
    mirror = serve(SHARED)
    download_dataset("Gift_Cards", "5core", DownloadConfig(mirror=mirror.url, progress=False))
    assert (cache / "amazon2018" / "Gift_Cards_5.json.gz").read_bytes() == whole
    assert mirror.requests[0] == ("/Gift_Cards_5.json.gz", f"bytes={len(whole)}-")
    assert mirror.body_bytes == GIFT_META.stat().st_size


@needs_shared
def test_server_without_range_support_restarts_from_zero(serve, cache):
    whole = GIFT_5.read_bytes()
    part = cache / "amazon2018" / "Gift_Cards_5.json.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(whole[:1000])
    mirror = serve(SHARED, support_range=False)
    download_dataset("Gift_Cards", "5core", DownloadConfig(mirror=mirror.url, progress=False))
    assert (cache / "amazon2018" / "Gift_Cards_5.json.gz").read_bytes() == whole


@needs_shared
def test_connection_dropped_midway_is_resumed_by_a_retry(serve, cache):
    whole = GIFT_5.read_bytes()
    mirror = serve(SHARED, drop_after=50_000)
    config = DownloadConfig(mirror=mirror.url, retries=1, backoff_s=0.0, progress=False)
    download_dataset("Gift_Cards", "5core", config)
    assert (cache / "amazon2018" / "Gift_Cards_5.json.gz").read_bytes() == whole
    assert mirror.requests[:2] == [("/Gift_Cards_5.json.gz", None), ("/Gift_Cards_5.json.gz", "bytes=50000-")]


@needs_shared
def test_interrupted_download_keeps_the_part_for_the_next_run(serve, cache, capsys):
    mirror = serve(SHARED, drop_after=50_000)
    argv = ["data", "download", "Gift_Cards", "--variant", "5core", "--mirror", mirror.url, "--retries", "0"]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: download of ") and "run the command again to resume" in err
    assert len(err.strip().splitlines()) == 1
    part = cache / "amazon2018" / "Gift_Cards_5.json.gz.part"
    assert part.read_bytes() == GIFT_5.read_bytes()[:50_000]
    assert not (cache / "amazon2018" / "Gift_Cards_5.json.gz").exists()
    assert run_cli(argv) == 0
    assert (cache / "amazon2018" / "Gift_Cards_5.json.gz").read_bytes() == GIFT_5.read_bytes()


def _flip_middle_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


@needs_shared
@pytest.mark.parametrize(
    ("damage", "message"),
    [(_flip_middle_byte, "not an intact gzip file"), (lambda data: data[:100_000], "not the official 176952")],
    ids=["flipped-byte", "truncated"],
)
def test_corrupt_served_file_is_rejected_and_not_kept(serve, cache, tmp_path, capsys, damage, message):
    served = tmp_path / "served"
    served.mkdir()
    (served / "Gift_Cards_5.json.gz").write_bytes(damage(GIFT_5.read_bytes()))
    mirror = serve(served)
    assert run_cli(["data", "download", "Gift_Cards", "--variant", "5core", "--mirror", mirror.url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Gift_Cards_5.json.gz from ") and message in err
    assert list((cache / "amazon2018").iterdir()) == []  # neither a final file nor a .part


def test_gzip_check_applies_to_files_of_unknown_size(serve, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "Software_5.json.gz").write_bytes(gzip.compress(b'{"overall": 5.0}\n' * 1000)[:-10])
    mirror = serve(served)
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="Software_5.json.gz .* not an intact gzip file"):
        download_dataset("software", "5core", DownloadConfig(dest=dest, mirror=mirror.url, progress=False))
    assert list((dest / "amazon2018").iterdir()) == []


def test_unreachable_host_is_a_clear_error(cache, capsys):
    port = _closed_port()
    argv = ["data", "download", "Gift_Cards", "--mirror", f"http://127.0.0.1:{port}", "--retries", "0"]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"error: cannot reach 127.0.0.1:{port} ") and "Connection refused" in err
    assert list((cache / "amazon2018").iterdir()) == []


@needs_shared
def test_missing_file_on_server_is_an_http_error(serve, cache, capsys):
    mirror = serve(SHARED)  # has All_Beauty_5.json.gz but no meta_All_Beauty.json.gz
    assert run_cli(["data", "download", "All_Beauty", "--variant", "5core", "--mirror", mirror.url]) == 2
    err = capsys.readouterr().err
    assert "meta_All_Beauty.json.gz: HTTP 404" in err
    assert (cache / "amazon2018" / "All_Beauty_5.json.gz").read_bytes() == (
        SHARED / "All_Beauty_5.json.gz"
    ).read_bytes()
    assert not (cache / "amazon2018" / "meta_All_Beauty.json.gz.part").exists()


def test_unknown_name_is_named_in_the_error(cache, capsys):
    assert run_cli(["data", "download", "No_Such_Category"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown dataset 'No_Such_Category'") and "ml-100k" in err


def test_names_map_to_official_urls_and_layout():
    assert len(download.AMAZON2018_CATEGORIES) == 29
    full = release_files("prime_pantry")
    assert [f.url for f in full] == [
        "https://jmcauley.ucsd.edu/data/amazon_v2/categoryFiles/Prime_Pantry.json.gz",
        "https://jmcauley.ucsd.edu/data/amazon_v2/metaFiles2/meta_Prime_Pantry.json.gz",
    ]
    assert [f.relpath for f in release_files("Software", "5core")] == [
        "amazon2018/Software_5.json.gz", "amazon2018/meta_Software.json.gz",
    ]
    assert release_files("AMAZON_FASHION")[0].source_url("http://m/x/") == "http://m/x/AMAZON_FASHION.json.gz"
    (ml,) = release_files("ML-1M")
    assert (ml.url, ml.relpath, ml.extract_to) == (
        "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        "ml-1m.zip",
        "ml-1m",
    )
    with pytest.raises(CoralError, match="unknown variant"):
        release_files("Software", "10core")


def _fake_movielens_zip(path: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("ml-100k/u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
        z.writestr("ml-100k/u.item", "242|Kolya (1996)|24-Jan-1997||\n")
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def test_movielens_zip_is_verified_then_extracted(serve, tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    data = _fake_movielens_zip(served / "ml-100k.zip")
    mirror = serve(served)
    dest = tmp_path / "dest"
    config = DownloadConfig(dest=dest, mirror=mirror.url, progress=False)

    # Against the real table of known sizes, the stand-in zip is not the official file.
    with pytest.raises(DataError, match="ml-100k.zip .* not the official 4924029"):
        download_dataset("ml-100k", config=config)
    assert not (dest / "ml-100k").exists() and not (dest / "ml-100k.zip").exists()

    monkeypatch.setitem(download.KNOWN_FILES, "ml-100k.zip", (len(data), hashlib.md5(data).hexdigest()))
    assert download_dataset("ml-100k", config=config) == [dest / "ml-100k"]
    assert (dest / "ml-100k" / "u.data").read_text().startswith("196\t242\t3")
    assert sorted(p.name for p in dest.iterdir()) == ["ml-100k", "ml-100k.zip"]


def test_movielens_with_wrong_md5_is_rejected(serve, tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    data = _fake_movielens_zip(served / "ml-100k.zip")
    monkeypatch.setitem(download.KNOWN_FILES, "ml-100k.zip", (len(data), "0" * 32))
    mirror = serve(served)
    with pytest.raises(DataError, match="fails its MD5 check"):
        download_dataset("ml-100k", config=DownloadConfig(dest=tmp_path / "dest", mirror=mirror.url, progress=False))
    assert list((tmp_path / "dest").iterdir()) == []
