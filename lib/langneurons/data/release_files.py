"""Files released with the original code, fetched from their source and checked against the manifest.

The manifest (path, bytes, SHA-256 of every file in github.com/kojima-takeshi188/lang_neuron at
COMMIT) ships with the package, so a file is trusted because its hash matches, not because of where
it came from: any mirror, folder or file:// copy will do. A download goes to `<dest>.part` and is
renamed only once verified, so the final name never holds a partial or wrong file. Standard library
only: we need resume (HTTP Range) as well as file:// and plain-folder bases.
"""

from __future__ import annotations

import http.client
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from langneurons.base.manifest import sha256
from langneurons.base import paths

COMMIT = "5ce59ec66a6623d29d9dc1d27a4278733bd86656"
DEFAULT_URL = f"https://raw.githubusercontent.com/kojima-takeshi188/lang_neuron/{COMMIT}"
URL_ENV = "LANGNEURONS_RELEASE_URL"
MANIFEST_PATH = Path(__file__).with_name("release_manifest.tsv")
# The paper's eight models, as the release names their folders under outputs/ (in the paper's order).
CHUNK = 64 * 1024
REPO = f"github.com/kojima-takeshi188/lang_neuron at commit {COMMIT}"
# A connection that drops or never comes: worth another try, resuming where it stopped.
DROPPED = (http.client.HTTPException, ConnectionError, TimeoutError, urllib.error.URLError)


class ReleaseError(RuntimeError):
    """A released file that could not be had; the message names it and the fix, on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # reasons from sockets may hold newlines


@dataclass(frozen=True)
class Entry:
    path: str  # path inside the repository, e.g. assets/Language/sense/de.json
    bytes: int
    sha256: str


def load_manifest(path: Path = MANIFEST_PATH) -> dict[str, Entry]:
    """`path<TAB>bytes<TAB>sha256` rows; lines starting with '#' are comments."""
    entries: dict[str, Entry] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not parts[1].isdigit() or len(parts[2]) != 64:
            raise ReleaseError(f"{path} line {n} is not `path<TAB>bytes<TAB>sha256`: reinstall langneurons")
        entries[parts[0]] = Entry(parts[0], int(parts[1]), parts[2].lower())
    return entries


def sense_file(lang: str) -> str:
    return f"assets/Language/sense/{lang}.json"


def translation_file(task: str, lang: str) -> str:
    return f"assets_translation/translation_text_{task}_en_{lang}.pkl"


def generation_files(manifest: dict[str, Entry]) -> list[str]:
    """The released generation outputs (CSV under outputs/), in a stable order."""
    return sorted(p for p in manifest if p.startswith("outputs/") and p.endswith(".csv"))


def resolve_url(url: str | None = None) -> str:
    """The base to fetch from: the argument, else $LANGNEURONS_RELEASE_URL, else GitHub at COMMIT."""
    return url or os.environ.get(URL_ENV) or DEFAULT_URL


def default_cache_dir() -> Path:
    """Keyed by COMMIT, so files of another release can never be taken for these."""
    return paths.user_cache() / "release" / COMMIT


def _matches(path: Path, entry: Entry) -> bool:
    """Size first: hashing is only worth it when the size is already right."""
    return path.is_file() and path.stat().st_size == entry.bytes and sha256(path) == entry.sha256


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


class Release:
    """The released files at COMMIT, each fetched once into a local cache and verified."""

    def __init__(self, url: str | None = None, cache_dir: str | Path | None = None,
                 manifest: dict[str, Entry] | None = None, progress: bool = True,
                 retries: int = 3, timeout: float = 30.0) -> None:
        self.url = resolve_url(url)
        # "" means unset too, as for url: Path("") would be the working folder
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir not in (None, "") else default_cache_dir()
        self.manifest = load_manifest() if manifest is None else manifest
        self.progress = progress
        self.retries = max(1, retries)  # attempts per download, the first one included
        self.timeout = timeout

    def _entry(self, rel: str) -> Entry:
        if rel not in self.manifest:
            raise ReleaseError(f"{rel} is not in the release manifest ({len(self.manifest)} files): "
                               f"use a path listed in {MANIFEST_PATH.name}")
        return self.manifest[rel]

    def local_path(self, rel: str) -> Path:
        return self.cache_dir / self._entry(rel).path

    def is_cached(self, rel: str) -> bool:
        return _matches(self.local_path(rel), self._entry(rel))

    def fetch(self, rel: str) -> Path:
        return self._fetch(rel, "")

    def fetch_all(self, rels: list[str]) -> list[Path]:
        for rel in rels:  # a typo fails before anything is downloaded
            self._entry(rel)
        return [self._fetch(rel, f"[{i}/{len(rels)}] ") for i, rel in enumerate(rels, 1)]

    def _say(self, line: str) -> None:
        if self.progress:
            print(line, flush=True)

    def _fetch(self, rel: str, label: str) -> Path:
        entry, dest = self._entry(rel), self.local_path(rel)
        if _matches(dest, entry):
            self._say(f"{label}{rel}: already cached (verified)")
            return dest
        url = self.url.rstrip("/") + "/" + rel
        part = dest.with_name(dest.name + ".part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        for attempt in (1, 2):  # a mismatch may be a bad transfer or a stale .part: one fresh try
            self._get(rel, url, part, entry, resume=attempt == 1)
            size = _size(part)
            got = sha256(part) if part.exists() and size == entry.bytes else "(not hashed)"
            if got == entry.sha256:
                os.replace(part, dest)
                self._say(f"{label}{rel}: downloaded {size:,} bytes")
                return dest
            part.unlink(missing_ok=True)
        raise ReleaseError(
            f"{rel} from {url} does not match the release manifest, twice (sha256 {entry.sha256[:12]} "
            f"expected, got {got[:12]}; {size:,} bytes vs {entry.bytes:,}): check that {self._shown()} "
            f"points at a copy of {REPO}, then rerun `make data`")

    def _shown(self) -> str:
        return f"{URL_ENV}={'unset (default GitHub)' if self.url == DEFAULT_URL else self.url}"

    def _get(self, rel: str, url: str, part: Path, entry: Entry, resume: bool) -> None:
        """Fill `part` with the body at `url` (resuming a leftover .part over HTTP when allowed)."""
        if not resume or _size(part) > entry.bytes:
            part.unlink(missing_ok=True)
        scheme = urllib.parse.urlsplit(self.url).scheme.lower()
        if scheme in ("http", "https"):
            self._get_http(rel, url, part, entry)
            return
        if scheme == "file":
            folder = Path(urllib.request.url2pathname(urllib.parse.urlsplit(self.url).path))
        elif "://" not in self.url:
            folder = Path(self.url).expanduser()
        else:
            raise ReleaseError(f"{self._shown()} is neither an http(s):// or file:// URL nor a folder: "
                               f"point it at a copy of {REPO} and rerun `make data`")
        source = folder / rel
        if not source.is_file():
            raise ReleaseError(f"release file {rel} not found at {source}: {self._shown()} must point at a "
                               f"copy of {REPO}; fix it and rerun `make data`")
        shutil.copyfile(source, part)

    def _get_http(self, rel: str, url: str, part: Path, entry: Entry) -> None:
        attempt = 1
        while True:
            start = _size(part)
            if part.exists() and start == entry.bytes:
                return  # nothing left to ask for; the hash check decides whether it is right
            request = urllib.request.Request(url, headers={"User-Agent": "langneurons"})
            if start:
                request.add_header("Range", f"bytes={start}-")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    expected = response.length  # Content-Length, as http.client parsed it (None: not sent)
                    received = 0
                    with open(part, "ab" if response.status == 206 else "wb") as f:
                        while chunk := response.read(CHUNK):
                            f.write(chunk)
                            received += len(chunk)
                            if f.tell() > entry.bytes:
                                return  # longer than the released file: the hash check will say so
                    if expected is not None and received < expected:  # http.client does not raise on this
                        raise ConnectionError(f"connection closed after {received:,} of {expected:,} bytes")
                return
            except urllib.error.HTTPError as e:
                if e.code == 416 and start:  # the .part does not fit the file served: start over
                    part.unlink(missing_ok=True)
                    continue
                what = "not found" if e.code == 404 else "could not be downloaded"
                raise ReleaseError(f"release file {rel} {what} at {url} (HTTP {e.code}): {self._shown()} must "
                                   f"point at a copy of {REPO}; fix it and rerun `make data`") from None
            except DROPPED as e:
                reason = getattr(e, "reason", None) or e
                if attempt == self.retries:
                    raise ReleaseError(
                        f"could not download {rel} from {self.url} ({reason}): connect to the internet and rerun "
                        f"`make data`, or set {URL_ENV} to a local copy (folder or file:// URL) of {REPO}") from None
                time.sleep(0.5 * attempt)
                attempt += 1
                self._say(f"retrying {rel} after a dropped connection ({reason}; attempt {attempt}/"
                          f"{self.retries}), resuming at byte {_size(part):,}")
