"""``coral data download``: fetch a dataset's official files into the cache, resumably and verified.

What it knows:

* Amazon Review Data 2018 (Ni, Li, McAuley, EMNLP 2019), the 29 per-category releases:
  full reviews ``<Category>.json.gz``, 5-core reviews ``<Category>_5.json.gz`` and metadata
  ``meta_<Category>.json.gz``, saved under ``<dest>/amazon2018/``.
* MovieLens 100K and 1M (GroupLens): ``ml-100k.zip`` / ``ml-1m.zip``, saved as
  ``<dest>/ml-100k.zip`` and extracted to ``<dest>/ml-100k/`` (likewise ``ml-1m``).

How a file is fetched: the bytes go to ``<file>.part``; an interrupted transfer is resumed with
an HTTP ``Range`` request (from scratch when the server ignores ranges), within one run (a few
retries with backoff) and across runs (the ``.part`` is kept). What arrived is then checked,
its length against ``Content-Length`` and the table of known sizes below, gzip files by
decompressing the whole stream, zip files with ``testzip`` (and MD5 where published), and only
then renamed into place, so a final file name never holds a partial or corrupt file. A corrupt
``.part`` is deleted (resuming it cannot repair it); an interrupted one is kept.

Mirrors (``--mirror URL``): a mirror serves every file by its bare file name at its root, e.g.
``URL/Gift_Cards_5.json.gz``, ``URL/meta_Gift_Cards.json.gz``, ``URL/ml-100k.zip``; a plain
``python -m http.server`` run in a folder of downloaded files is such a mirror.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from coral.config import require
from coral.data.registry import AMAZON2018_CATEGORIES, MOVIELENS, amazon_category
from coral.errors import CoralError, DataError
from coral.io import cache_dir

if TYPE_CHECKING:
    import requests

# These hosts move: the 2018 Amazon files were first served from
# http://deepyeti.ucsd.edu/jianmo/amazon/ and later from the McAuley lab's amazon_v2 pages below
# (categoryFiles/, categoryFilesSmall/, metaFiles2/). When they move again, pass --mirror or
# update these base URLs.
AMAZON2018_BASE_URL = "https://jmcauley.ucsd.edu/data/amazon_v2"
MOVIELENS_BASE_URL = "https://files.grouplens.org/datasets/movielens"

#: Known (size in bytes, MD5 or None) of official files, by file name. MovieLens: GroupLens's
#: published ``.md5`` files and archive sizes. Amazon: measured on copies in shared/data whose gzip
#: headers still carry the official names and 2019/2021 dates; sizes only, as those copies came
#: from third-party repositories. Files not listed are checked against Content-Length only.
KNOWN_FILES: dict[str, tuple[int, str | None]] = {
    "ml-100k.zip": (4_924_029, "0e33842e24a9c977be4e0107933c0723"),
    "ml-1m.zip": (5_917_549, "c4d9eecfca2ab87c1945afe126590906"), "AMAZON_FASHION_5.json.gz": (287_013, None),
    "All_Beauty_5.json.gz": (633_507, None), "Appliances_5.json.gz": (74_112, None),
    "Gift_Cards_5.json.gz": (176_952, None), "meta_Gift_Cards.json.gz": (389_825, None),
}

Variant = Literal["full", "5core"]
VARIANTS: tuple[str, ...] = ("full", "5core")

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One file of an official release and where it goes below the destination folder."""

    url: str
    """The official URL."""
    relpath: str
    """Path of the downloaded file below the destination folder."""
    extract_to: str | None = None
    """For a zip: the folder below the destination that its top folder becomes (None: keep zipped)."""

    @property
    def filename(self) -> str:
        """The file's bare name: what a mirror serves it as."""
        return self.url.rsplit("/", 1)[-1]

    def source_url(self, mirror: str | None) -> str:
        """Where to fetch the file from: the official URL, or ``<mirror>/<file name>``."""
        return f"{mirror.rstrip('/')}/{self.filename}" if mirror else self.url


@dataclass
class DownloadConfig:
    """How to download: where to, from where, and how patiently."""

    dest: Path | None = None
    """Destination folder; None: the coral cache's data/ folder, where dataset names are looked up (for another folder,
    point CORAL_DATA_DIR at it)."""
    mirror: str | None = None
    """Base URL of a mirror serving every file by its bare name (e.g. URL/ml-100k.zip); None: the official hosts."""
    retries: int = 3
    """Further attempts after a failed connection or an interrupted transfer (each resumes)."""
    backoff_s: float = 1.0
    """Wait before the first retry, doubled for each further one."""
    connect_timeout_s: float = 15.0
    """Seconds to wait for a connection."""
    read_timeout_s: float = 60.0
    """Seconds to wait for the next bytes of a response."""
    progress: bool = True
    """Show a progress bar (when stderr is a terminal) and notes such as "resuming" on stderr."""

    def __post_init__(self) -> None:
        require(self.retries >= 0, "retries", f"must be >= 0, got {self.retries}")
        for name in ("backoff_s", "connect_timeout_s", "read_timeout_s"):
            require(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        require(
            self.mirror is None or urlsplit(self.mirror).scheme in ("http", "https"),
            "mirror",
            f"must be an http:// or https:// URL, got {self.mirror!r}",
        )


def _lookup(name: str) -> tuple[str, str]:
    """``(kind, canonical name)`` of a dataset name, as the registry spells them; kind is "amazon2018" or
    "movielens"."""
    category = amazon_category(name)
    if category is not None:
        return "amazon2018", category
    if name.lower() in MOVIELENS:
        return "movielens", name.lower()
    raise CoralError(
        f"unknown dataset {name!r} for download; known: the Amazon 2018 categories "
        f"({', '.join(AMAZON2018_CATEGORIES[:3])}, ..., see `coral data download --help`) and "
        f"{', '.join(MOVIELENS)}"
    )


def release_files(name: str, variant: Variant = "full") -> list[RemoteFile]:
    """The files that ``coral data download NAME`` fetches.

    :param name: an Amazon 2018 category (official spelling or lowercase, e.g. ``Gift_Cards``,
        ``gift_cards``) or a MovieLens release (``ml-100k``, ``ml-1m``).
    :param variant: Amazon only: "full" (all reviews, what the paper uses) or "5core"; metadata
        is fetched with either.
    :raises CoralError: for an unknown name or variant.
    """
    if variant not in VARIANTS:
        raise CoralError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    kind, canonical = _lookup(name)
    if kind == "movielens":
        return [RemoteFile(f"{MOVIELENS_BASE_URL}/{canonical}.zip", f"{canonical}.zip", extract_to=canonical)]
    if variant == "full":
        reviews = f"{AMAZON2018_BASE_URL}/categoryFiles/{canonical}.json.gz"
    else:
        reviews = f"{AMAZON2018_BASE_URL}/categoryFilesSmall/{canonical}_5.json.gz"
    meta = f"{AMAZON2018_BASE_URL}/metaFiles2/meta_{canonical}.json.gz"
    return [RemoteFile(url, f"amazon2018/{url.rsplit('/', 1)[-1]}") for url in (reviews, meta)]


def download_dataset(name: str, variant: Variant = "full", config: DownloadConfig | None = None) -> list[Path]:
    """Download (or find already downloaded) a dataset's files; return their final paths.

    Files already in place are not fetched again. MovieLens zips are extracted and the
    extracted folder is returned.

    :param name: see :func:`release_files`.
    :param variant: see :func:`release_files`.
    :param config: destination, mirror, retries and timeouts.
    :raises CoralError: unknown name, host unreachable, HTTP error, or a corrupt download.
    """
    files = release_files(name, variant)
    config = config or DownloadConfig()
    dest = Path(config.dest) if config.dest is not None else cache_dir("data")
    session = _session()
    paths = []
    try:
        for remote in files:
            target = dest / remote.relpath
            if remote.extract_to is not None and (dest / remote.extract_to).is_dir():
                _note(config, f"{dest / remote.extract_to}: already present")
                paths.append(dest / remote.extract_to)
                continue
            download_file(remote.source_url(config.mirror), target, config, session)
            if remote.extract_to is not None:
                paths.append(_extract_zip(target, dest, remote.extract_to))
            else:
                paths.append(target)
    finally:
        session.close()
    return paths


def download_file(
    url: str, path: Path, config: DownloadConfig | None = None, session: requests.Session | None = None
) -> Path:
    """Fetch ``url`` to ``path`` via ``path.part`` (resuming it), verify it, then rename it into place.

    :param url: http(s) URL.
    :param path: final file; if it exists already (and has the known size, where known) nothing is fetched.
    :param config: retries, timeouts, progress.
    :param session: a ``requests.Session`` to reuse; None: a new one.
    :raises CoralError: unreachable host, HTTP error, or a corrupt file (whose ``.part`` is then deleted).
    """
    config = config or DownloadConfig()
    path = Path(path)
    known = KNOWN_FILES.get(path.name)
    if path.exists():
        if known is not None and path.stat().st_size != known[0]:
            raise DataError(
                f"{path} exists but has {path.stat().st_size} bytes, not the official {known[0]}; "
                "delete it to download it again"
            )
        _note(config, f"{path}: already present")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    own_session = session is None
    session = session or _session()
    try:
        _fetch_with_retries(session, url, part, config)
    finally:
        if own_session:
            session.close()
    try:
        _verify(part, path.name, url, config.progress)
    except DataError:
        part.unlink(missing_ok=True)
        raise
    with open(part, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(part, path)
    return path


class _Transient(Exception):
    """A failure worth retrying: connection refused or dropped, timeout, HTTP 5xx/429."""

    def __init__(self, reason: str, connected: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.connected = connected


def _session() -> requests.Session:
    import requests

    from coral import __version__

    session = requests.Session()
    # identity: Range offsets and sizes must refer to the stored bytes, and a server that labels a
    # .gz as Content-Encoding: gzip must not have requests decompress it on the fly.
    session.headers.update({"User-Agent": f"coral/{__version__}", "Accept-Encoding": "identity"})
    return session


def _fetch_with_retries(session: requests.Session, url: str, part: Path, config: DownloadConfig) -> None:
    """Run :func:`_transfer` until ``part`` holds the whole file; retries resume from what arrived.

    urllib3's own Retry is not used because it cannot resume a body that broke off midway.
    """
    host = urlsplit(url).netloc
    last: _Transient | None = None
    for attempt in range(config.retries + 1):
        if attempt:
            time.sleep(config.backoff_s * 2 ** (attempt - 1))
            _note(config, f"{part.name}: retrying ({attempt}/{config.retries}) after: {last.reason}")
        try:
            _transfer(session, url, part, config)
            return
        except _Transient as err:
            last = err
    assert last is not None
    if not last.connected:
        advice = ("check the mirror URL and that the mirror is up" if config.mirror else
                  "check the network connection, or pass --mirror URL to download from a mirror")
        raise CoralError(f"cannot reach {host} to download {url} ({last.reason}); {advice}")
    kept = part.stat().st_size if part.exists() else 0
    raise CoralError(
        f"download of {url} failed after {config.retries + 1} attempts ({last.reason}); "
        f"kept {kept} bytes in {part}: run the command again to resume"
    )


def _transfer(session: requests.Session, url: str, part: Path, config: DownloadConfig) -> None:
    """One request: append to ``part`` from its current length (or restart it); return when complete.

    :raises _Transient: for failures worth retrying.
    :raises CoralError: for HTTP errors that a retry will not fix (4xx).
    """
    import requests
    import urllib3
    from tqdm import tqdm

    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = session.get(
            url, headers=headers, stream=True, timeout=(config.connect_timeout_s, config.read_timeout_s)
        )
    except (requests.ConnectionError, requests.Timeout) as err:
        raise _Transient(_short_reason(err), connected=False) from err
    with response:
        status = response.status_code
        if status == 416 and offset:
            # The .part may already be whole (the last run died between transfer and rename).
            total = _range_total(response.headers.get("Content-Range", ""))
            if total == offset:
                return
            part.unlink()
            raise _Transient(f"server rejected resuming at byte {offset}", connected=True)
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status} {response.reason}", connected=True)
        if status >= 400:
            raise CoralError(f"cannot download {url}: HTTP {status} {response.reason}")
        if status == 206 and offset:
            if not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                raise CoralError(f"cannot resume {url}: the server answered a different range "
                                 f"({response.headers.get('Content-Range')!r}); delete {part} and retry")
            mode = "ab"
            total = _range_total(response.headers["Content-Range"])
        else:
            if offset:
                _note(config, f"{part.name}: the server does not resume downloads; starting over")
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        bar = tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.removesuffix(".part"), disable=None if config.progress else True,
        )
        # Read the raw stream, undecoded: requests' iter_content reads through urllib3's decoding
        # buffer, which drops the bytes already received when the connection breaks mid-chunk.
        try:
            with open(part, mode) as f, bar:
                for chunk in response.raw.stream(_CHUNK, decode_content=False):
                    f.write(chunk)
                    bar.update(len(chunk))
        except (urllib3.exceptions.HTTPError, requests.RequestException, ConnectionError, TimeoutError) as err:
            raise _Transient(_short_reason(err), connected=True) from err
    received = part.stat().st_size
    if total is not None and received < total:
        raise _Transient(f"connection closed at byte {received} of {total}", connected=True)
    if total is not None and received > total:
        part.unlink()
        raise DataError(f"{url} sent {received} bytes but announced {total}; deleted the partial file")


def _range_total(content_range: str) -> int | None:
    """The complete length from a ``Content-Range: bytes a-b/total`` (or ``bytes */total``) header."""
    match = re.fullmatch(r"bytes (?:\d+-\d+|\*)/(\d+)", content_range.strip())
    return int(match.group(1)) if match else None


def _short_reason(err: BaseException) -> str:
    """A short, one-line cause of a network error (requests' own messages span nested reprs)."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    match = re.search(r"\[Errno -?\d+\] ([^'\"\)]+)", str(err))
    if match:
        return match.group(1).strip()
    return type(err).__name__ if not str(err) else " ".join(str(err).split())[:200]


def _verify(part: Path, name: str, url: str, progress: bool = False) -> None:
    """Check a finished download against the known size/MD5 and its format's own integrity checks.

    :param part: the downloaded bytes.
    :param name: the final file name (selects the known size and the format).
    :param url: where it came from, for messages.
    :param progress: show a progress bar while decompressing (when stderr is a terminal).
    :raises DataError: naming the file and what is wrong.
    """
    size = part.stat().st_size
    known = KNOWN_FILES.get(name)
    if known is not None:
        expected_size, expected_md5 = known
        if size != expected_size:
            raise DataError(
                f"{name} from {url} has {size} bytes, not the official {expected_size}: the host serves "
                "a different or damaged file; deleted it"
            )
        if expected_md5 is not None and _md5(part) != expected_md5:
            raise DataError(f"{name} from {url} fails its MD5 check (expected {expected_md5}); deleted it")
    if name.endswith(".gz"):
        from tqdm import tqdm

        # Decompressing is the only integrity check a .gz carries (its CRC sits at the end); for
        # the largest full files (several GB) this takes minutes, hence the second progress bar.
        bar = tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"{name} (checking)",
                   disable=None if progress else True, leave=False)
        try:
            with open(part, "rb") as raw, gzip.GzipFile(fileobj=raw) as f, bar:
                while f.read(_CHUNK):
                    bar.update(raw.tell() - bar.n)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{name} from {url} is not an intact gzip file ({err}); deleted it") from err
    elif name.endswith(".zip"):
        try:
            with zipfile.ZipFile(part) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
            raise DataError(f"{name} from {url} is not an intact zip file ({err}); deleted it") from err
        if bad is not None:
            raise DataError(f"{name} from {url} is corrupt (member {bad!r} fails its CRC); deleted it")


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _extract_zip(archive: Path, dest: Path, folder: str) -> Path:
    """Extract a verified release zip whose top folder is ``folder`` to ``dest/folder``, atomically.

    Extraction goes to a temporary folder beside the target, which is renamed into place only
    when complete. ``zipfile`` already refuses members that would land outside the folder.

    :raises DataError: if the zip has no top folder named ``folder``.
    """
    target = dest / folder
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=f".{folder}.extract-"))
    try:
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
        if not (tmp / folder).is_dir():
            raise DataError(f"{archive} does not contain the folder {folder}/ that the release has")
        os.replace(tmp / folder, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _note(config: DownloadConfig, message: str) -> None:
    if config.progress:
        print(message, file=sys.stderr)
