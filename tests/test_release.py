"""Released files: fetched over a real local HTTP server (with injected faults), verified, cached;
and the released pickles read without running anything they might ask for."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import pickle
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from langneurons.data.release_files import (COMMIT, DEFAULT_URL, MANIFEST_PATH, URL_ENV, Entry, Release, ReleaseError,
                                 default_cache_dir, generation_files, load_manifest, resolve_url,
                                 sense_file, translation_file)
from langneurons.data.safe_pickle import load_builtin_pickle
from langneurons.base.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "lang_neuron_official"
SENSE = sense_file("fr")
PKL = translation_file("wmt", "de")
CSV = "outputs/Llama-2-7b-hf/sense/fr/expertise/created_sentence_made_up.csv"


# ---------------------------------------------------------------- a local server laid out like the repository


@dataclass
class Served:
    """What the handler serves and records; `faults[rel]` is consumed one fault per request."""

    root: Path
    url: str = ""
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (rel, Range header)
    faults: dict[str, list[str | None]] = field(default_factory=dict)

    def ranges(self, rel: str) -> list[str | None]:
        return [r for p, r in self.requests if p == rel]


class Handler(BaseHTTPRequestHandler):
    """GET with Range (206 + Content-Range) and faults: flip (one byte wrong), drop (half the body,
    then close), trickle (slow body, for a download killed halfway)."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        served: Served = self.server.served  # type: ignore[attr-defined]
        rel = urllib.parse.unquote(self.path.lstrip("/"))
        served.requests.append((rel, self.headers.get("Range")))
        queue = served.faults.get(rel)
        fault = queue.pop(0) if queue else None
        file = served.root / rel
        if not file.is_file():
            self.send_error(404)
            return
        data = bytearray(file.read_bytes())
        if fault == "flip":
            data[len(data) // 2] ^= 0xFF
        start = 0
        if rng := self.headers.get("Range"):
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = bytes(data[start:])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if fault == "drop":
                self.wfile.write(body[: len(body) // 2])
            elif fault == "trickle":
                for i in range(0, len(body), 4096):
                    self.wfile.write(body[i:i + 4096])
                    self.wfile.flush()
                    time.sleep(0.03)
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client was killed: nothing to do
        self.close_connection = True


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch) -> None:
    """Talk to 127.0.0.1 directly even where http_proxy is set (the subprocess inherits this too)."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture()
def server(tmp_path: Path):
    served = Served(root=tmp_path / "repo")
    served.root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.block_on_close = False  # a trickling handler must not hold up the teardown
    httpd.served = served  # type: ignore[attr-defined]
    served.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield served
    httpd.shutdown()
    httpd.server_close()


def made_up_repo(root: Path) -> dict[str, Entry]:
    """Three made-up files where the released ones lie, and the manifest that matches them."""
    rng = random.Random(0)
    contents = {
        SENSE: json.dumps({"sentences": {"positive": ["Le chat dort."] * 2000}}).encode(),
        PKL: pickle.dumps([{"en": f"text {i}", "de": f"Text {i}"} for i in range(2000)]),
        CSV: rng.randbytes(256 * 1024),
    }
    manifest = {}
    for rel, data in contents.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        manifest[rel] = Entry(rel, len(data), hashlib.sha256(data).hexdigest())
    return manifest


@pytest.fixture()
def repo(server: Served) -> dict[str, Entry]:
    return made_up_repo(server.root)


def release(server: Served, manifest: dict[str, Entry], tmp_path: Path, **kw) -> Release:
    return Release(url=server.url, cache_dir=tmp_path / "cache", manifest=manifest, **kw)


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------- fetching


def test_clean_fetch_then_cache_without_request(server, repo, tmp_path, capsys):
    rel = Release(url=server.url, cache_dir=tmp_path / "cache", manifest=repo)
    paths = rel.fetch_all(sorted(repo))
    for path, name in zip(paths, sorted(repo)):
        assert path == tmp_path / "cache" / name and path.read_bytes() == (server.root / name).read_bytes()
        assert rel.is_cached(name) and not path.with_name(path.name + ".part").exists()
    out = capsys.readouterr().out
    assert f"[1/3] {sorted(repo)[0]}: downloaded {repo[sorted(repo)[0]].bytes:,} bytes" in out
    n = len(server.requests)
    assert n == 3
    assert rel.fetch_all(sorted(repo)) == paths
    assert len(server.requests) == n
    assert "already cached (verified)" in capsys.readouterr().out


def test_wrong_manifest_sha_refused_after_two_downloads(server, repo, tmp_path):
    repo[SENSE] = Entry(SENSE, repo[SENSE].bytes, "0" * 64)
    r = release(server, repo, tmp_path, progress=False)
    with pytest.raises(ReleaseError) as e:
        r.fetch(SENSE)
    msg = one_line(e)
    assert SENSE in msg and URL_ENV in msg and "make data" in msg and COMMIT in msg
    assert len(server.ranges(SENSE)) == 2 and server.ranges(SENSE) == [None, None]
    assert not r.local_path(SENSE).exists()
    assert not r.local_path(SENSE).with_name("fr.json.part").exists()


def test_flipped_byte_once_is_fetched_again(server, repo, tmp_path):
    server.faults[CSV] = ["flip"]
    r = release(server, repo, tmp_path, progress=False)
    assert r.fetch(CSV).read_bytes() == (server.root / CSV).read_bytes()
    assert server.ranges(CSV) == [None, None]


def test_dropped_connection_resumed_with_range(server, repo, tmp_path, capsys):
    server.faults[CSV] = ["drop"]
    r = release(server, repo, tmp_path)
    assert r.fetch(CSV).read_bytes() == (server.root / CSV).read_bytes()
    half = repo[CSV].bytes // 2
    assert server.ranges(CSV) == [None, f"bytes={half}-"]
    assert f"retrying {CSV} after a dropped connection" in capsys.readouterr().out


def test_killed_download_leaves_no_final_file_and_resumes(server, repo, tmp_path):
    server.faults[CSV] = ["trickle"]
    cache = tmp_path / "cache"
    code = ("import json, sys\n"
            "from langneurons.data.release_files import Entry, Release\n"
            "m = {k: Entry(**v) for k, v in json.loads(sys.argv[1]).items()}\n"
            "Release(url=sys.argv[2], cache_dir=sys.argv[3], manifest=m, progress=False).fetch(sys.argv[4])\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    manifest_json = json.dumps({k: asdict(v) for k, v in repo.items()})
    proc = subprocess.Popen([sys.executable, "-c", code, manifest_json, server.url, str(cache), CSV], env=env)
    part, final = cache / (CSV + ".part"), cache / CSV
    deadline = time.monotonic() + 15
    try:
        while not (part.exists() and part.stat().st_size > 0):
            assert proc.poll() is None, "the fetch ended before it could be killed"
            assert time.monotonic() < deadline, "no .part appeared"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    size = part.stat().st_size
    assert 0 < size < repo[CSV].bytes and not final.exists()
    r = release(server, repo, tmp_path, progress=False)
    assert r.fetch(CSV).read_bytes() == (server.root / CSV).read_bytes()
    assert server.ranges(CSV)[-1] == f"bytes={size}-" and not part.exists()


def test_corrupt_full_size_part_is_discarded(server, repo, tmp_path):
    r = release(server, repo, tmp_path, progress=False)
    part = r.local_path(PKL).with_name(r.local_path(PKL).name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * repo[PKL].bytes)
    assert r.fetch(PKL).read_bytes() == (server.root / PKL).read_bytes()
    assert server.ranges(PKL) == [None] and not part.exists()


def test_oversized_part_is_discarded(server, repo, tmp_path):
    r = release(server, repo, tmp_path, progress=False)
    part = r.local_path(PKL).with_name(r.local_path(PKL).name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * (repo[PKL].bytes + 10))
    assert r.fetch(PKL).read_bytes() == (server.root / PKL).read_bytes()
    assert server.ranges(PKL) == [None]


def test_not_found_404(server, repo, tmp_path):
    (server.root / SENSE).unlink()
    with pytest.raises(ReleaseError) as e:
        release(server, repo, tmp_path, progress=False).fetch(SENSE)
    msg = one_line(e)
    assert "HTTP 404" in msg and SENSE in msg and "make data" in msg and f"{URL_ENV}={server.url}" in msg


def test_no_network(repo, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed at once: nothing listens there
    r = Release(url=f"http://127.0.0.1:{port}", cache_dir=tmp_path / "cache", manifest=repo, progress=False,
                retries=2, timeout=1)
    with pytest.raises(ReleaseError) as e:
        r.fetch(SENSE)
    msg = one_line(e)
    assert msg.startswith(f"could not download {SENSE}") and "make data" in msg and URL_ENV in msg
    assert not (tmp_path / "cache" / SENSE).exists()


def test_file_url_and_plain_folder(server, repo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for i, url in enumerate([server.root.as_uri(), str(server.root), "repo"]):
        r = Release(url=url, cache_dir=tmp_path / f"cache{i}", manifest=repo, progress=False)
        for path, name in zip(r.fetch_all(sorted(repo)), sorted(repo)):
            assert path.read_bytes() == (server.root / name).read_bytes()
    assert server.requests == []
    (server.root / PKL).unlink()
    with pytest.raises(ReleaseError) as e:
        Release(url=str(server.root), cache_dir=tmp_path / "other", manifest=repo).fetch(PKL)
    assert PKL in one_line(e) and "make data" in str(e.value) and URL_ENV in str(e.value)


def test_home_folder_base(server, repo, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    r = Release(url="~/repo", cache_dir=tmp_path / "cache", manifest=repo, progress=False)
    assert r.fetch(SENSE).read_bytes() == (server.root / SENSE).read_bytes()


def test_resolve_url_and_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(URL_ENV, raising=False)
    assert resolve_url() == DEFAULT_URL and resolve_url("") == DEFAULT_URL
    monkeypatch.setenv(URL_ENV, "")
    assert resolve_url(None) == DEFAULT_URL
    monkeypatch.setenv(URL_ENV, "file:///mirror")
    assert resolve_url() == "file:///mirror" and resolve_url("http://param") == "http://param"
    assert Release(cache_dir=tmp_path).url == "file:///mirror"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "langneurons" / "release" / COMMIT
    assert Release().cache_dir == default_cache_dir() == Release(cache_dir="").cache_dir
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert default_cache_dir() == Path.home() / ".cache" / "langneurons" / "release" / COMMIT


def test_not_in_manifest(repo, tmp_path):
    r = Release(url=str(tmp_path), cache_dir=tmp_path, manifest=repo)
    for call in (r.fetch, r.is_cached, r.local_path, lambda rel: r.fetch_all([SENSE, rel])):
        with pytest.raises(ReleaseError, match="not in the release manifest"):
            call("assets/nope.json")


# ---------------------------------------------------------------- the packaged manifest and the real files


def test_packaged_manifest():
    manifest = load_manifest()
    assert len(manifest) == 602
    assert len([p for p in manifest if p.startswith("assets/Language/sense/") and p.endswith(".json")]) == 6
    assert len([p for p in manifest if p.startswith("assets_translation/") and p.endswith(".pkl")]) == 12
    assert len(generation_files(manifest)) == 584 and generation_files(manifest) == sorted(generation_files(manifest))
    for lang in ("de", "en", "es", "fr", "ja", "zh"):
        assert sense_file(lang) in manifest
    assert translation_file("iwslt2017", "ja") in manifest
    shared = SHARED / "release_manifest.tsv"
    if not shared.is_file():
        pytest.skip(f"{shared} not found")
    assert MANIFEST_PATH.read_bytes() == shared.read_bytes()
    assert load_manifest(shared) == manifest


def shared_or_skip() -> Path:
    if not (SHARED / "sense").is_dir() or not (SHARED / "translation_pkl").is_dir():
        pytest.skip(f"released files not found at {SHARED}")
    return SHARED


def test_real_released_files_over_http(server, tmp_path):
    shared = shared_or_skip()
    for src in sorted((shared / "sense").glob("*.json")):
        (server.root / sense_file(src.stem)).parent.mkdir(parents=True, exist_ok=True)
        (server.root / sense_file(src.stem)).write_bytes(src.read_bytes())
    (server.root / "assets_translation").mkdir()
    for src in sorted((shared / "translation_pkl").glob("*.pkl")):
        (server.root / "assets_translation" / src.name).write_bytes(src.read_bytes())
    manifest = load_manifest()
    rels = sorted(p for p in manifest if not p.startswith("outputs/"))
    assert len(rels) == 18
    r = Release(url=server.url, cache_dir=tmp_path / "cache", progress=False)
    paths = r.fetch_all(rels)
    assert all(r.is_cached(rel) for rel in rels) and len(server.requests) == 18
    assert [p.stat().st_size for p in paths] == [manifest[rel].bytes for rel in rels]


# ---------------------------------------------------------------- safe_pickle


def test_real_pickles_equal_their_json_copies():
    shared = shared_or_skip()
    pkls = sorted((shared / "translation_pkl").glob("*.pkl"))
    assert len(pkls) == 12
    for pkl in pkls:
        name = pkl.stem.removeprefix("translation_text_")
        pairs = load_builtin_pickle(pkl)
        assert len(pairs) == 100
        assert pairs == json.loads((shared / "translation" / f"{name}.json").read_text(encoding="utf-8"))


def test_made_up_pickle_loads(tmp_path):
    value = [{"en": "Hello", "de": "Hallo", "n": 3, "ok": True}, {"en": "Bye", "nested": [{"x": ["y"]}]}]
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        (tmp_path / "ok.pkl").write_bytes(pickle.dumps(value, protocol=protocol))
        assert load_builtin_pickle(tmp_path / "ok.pkl") == value


class Evil:
    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickles_with_objects_are_refused(tmp_path):
    marker = tmp_path / "ran"
    evil = Evil()
    evil.marker = str(marker)
    cases = {
        "ordered.pkl": (pickle.dumps(collections.OrderedDict()), "collections.OrderedDict"),
        "evil.pkl": (pickle.dumps([{"en": evil}]), ".system'"),
        "tuple.pkl": (pickle.dumps([{"en": ("a", "b")}]), "'tuple'"),
        "float.pkl": (pickle.dumps([{"en": 1.5}]), "'float'"),
        "none.pkl": (pickle.dumps([None]), "'NoneType'"),
        "bytes.pkl": (pickle.dumps({"en": b"x"}), "'bytes'"),
        "set.pkl": (pickle.dumps([{"a"}]), "'set'"),
        "truncated.pkl": (pickle.dumps(["a" * 100])[:50], "not a readable pickle"),
    }
    for name, (data, found) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError) as e:
            load_builtin_pickle(tmp_path / name)
        msg = one_line(e)
        assert str(tmp_path / name) in msg and found in msg, msg
    assert not marker.exists()
    with pytest.raises(DataError, match="missing"):
        load_builtin_pickle(tmp_path / "absent.pkl")
