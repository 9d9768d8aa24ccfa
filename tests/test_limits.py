"""Issue #17, item 3: limits are enforced before the memory is spent (message, header, image files, frame ranges).

Memory checks run a real server process and read its peak RSS (tests/support/oversized.py, shared with the
reliability bench); the target is a rise of at most twice the configured limit per oversized input.
"""
from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import msgpack
import numpy as np
import pytest

from mattebox import imageio, imagesize
from mattebox_plugin import protocol
from mattebox_plugin.client import Client

from .conftest import tree_env
from .support.oversized import MiB, expanding_header, matte_frames, peak_growth_mb, send_and_wait

LIMIT = 8 * MiB


def test_header_over_max_header_bytes_is_refused_before_decoding(embedded_server):
    header = msgpack.packb({"v": 1, "op": "hello", "id": "h", "pad": ["x" * 60] * 2000}, use_bin_type=True)
    assert len(header) > protocol.DEFAULT_LIMITS["max_header_bytes"]
    reply = send_and_wait(embedded_server.bound_endpoint, [protocol.MAGIC, header], timeout=30)
    assert reply["op"] == "error" and reply["code"] == "too_large" and reply["field"] == "header"
    assert "max_header_bytes" in reply["message"]


def test_expanding_header_costs_no_more_than_its_frame(server_process):
    """A header that msgpack would blow up ~60x (the issue's 250 MiB header peaked at 1.8 GiB) is refused by
    its size: the server's peak rises by the frame ZeroMQ received, within 2x the configured limit."""
    server = server_process("--max-message-bytes", str(LIMIT), state_dir="none")
    header = expanding_header(6 * MiB)
    reply, growth = peak_growth_mb(server, [protocol.MAGIC, header])
    assert reply is not None and reply["code"] == "too_large" and reply["field"] == "header", reply
    assert growth <= 2 * LIMIT / MiB, f"peak RSS rose {growth:.0f} MiB for a {len(header) / MiB:.1f} MiB header"


def test_buffer_frames_past_the_limit_are_dropped_as_they_arrive(server_process):
    """More buffer frames than inputs (here 200,000 empty ones) are refused as they are read, not collected
    into a list and compared with the header afterwards."""
    server = server_process("--max-message-bytes", str(LIMIT), state_dir="none")
    reply, growth = peak_growth_mb(server, matte_frames([b""] * 200_000))
    assert reply is not None and reply["code"] == "too_large" and reply["field"] == "buffers", reply
    assert reply["id"] == "oversized"
    assert growth <= 2 * LIMIT / MiB, f"peak RSS rose {growth:.0f} MiB"


def test_buffers_over_max_message_bytes_answer_too_large_naming_the_job(server_process):
    """16 frames just under the per-frame ZMQ_MAXMSGSIZE (the issue's 16 x 60 MiB against 64 MiB, scaled down):
    refused once the running total passes the limit. ZeroMQ itself has buffered the whole message before the
    first frame is readable, so the rise is the message's size and nothing more (docs/deploy.md, Limits)."""
    server = server_process("--max-message-bytes", str(LIMIT), state_dir="none")
    frame = bytes(LIMIT - 4096)
    reply, growth = peak_growth_mb(server, matte_frames([frame] * 16))
    assert reply is not None and reply["code"] == "too_large" and reply["field"] == "buffers", reply
    assert reply["id"] == "oversized"
    assert growth <= (16 + 2) * LIMIT / MiB, f"peak RSS rose {growth:.0f} MiB"


# ------------------------------------------------------------------------------------------- image files
HUGE = 20000  # the 1.1 MB PNG declaring 20000 x 20000 cost 2.4 GB before it was refused


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _huge_png(path: Path) -> None:
    ihdr = struct.pack(">IIBBBBB", HUGE, HUGE, 8, 2, 0, 0, 0)  # 8-bit RGB
    rows = zlib.compress(bytes(1 + 3 * HUGE) * 64)  # a few rows of data; the header is what counts
    path.write_bytes(imagesize.PNG_SIGNATURE + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", rows)
                     + _png_chunk(b"IEND", b""))


def _huge_jpeg(path: Path) -> None:
    ok, data = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(data.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", HUGE, HUGE)
    path.write_bytes(bytes(data))


def _huge_tiff(path: Path, order: str = "<", big: bool = False) -> None:
    """A first IFD with ImageWidth and ImageLength (LONG) and BitsPerSample (SHORT), classic or BigTIFF."""
    slot = 8 if big else 4  # bytes of an entry's value field

    def entry(tag: int, kind: int, fmt: str, value: int) -> bytes:
        return struct.pack(order + ("HHQ" if big else "HHI"), tag, kind, 1) + struct.pack(order + fmt, value).ljust(
            slot, b"\0")

    entries = [entry(256, 4, "I", HUGE), entry(257, 4, "I", HUGE), entry(258, 3, "H", 8)]
    head = struct.pack(order + "HHHQQ", 43, 8, 0, 16, len(entries)) if big else \
        struct.pack(order + "HIH", 42, 8, len(entries))
    path.write_bytes((b"II" if order == "<" else b"MM") + head + b"".join(entries) + bytes(8))


def _huge_exr(path: Path) -> None:
    small = path.with_name("small.exr")
    assert cv2.imwrite(str(small), np.zeros((8, 8, 3), np.float32))
    data = bytearray(small.read_bytes())
    at = data.index(b"dataWindow\0box2i\0") + len(b"dataWindow\0box2i\0") + 4
    data[at:at + 16] = struct.pack("<4i", 0, 0, HUGE - 1, HUGE - 1)
    path.write_bytes(bytes(data))


HUGE_FILES = {"png": _huge_png, "jpg": _huge_jpeg, "tif": _huge_tiff, "exr": _huge_exr,
              "big-endian.tif": lambda p: _huge_tiff(p, ">"), "bigtiff.tif": lambda p: _huge_tiff(p, big=True)}


@pytest.mark.parametrize("kind", sorted(HUGE_FILES))
def test_image_header_over_the_pixel_budget_is_refused_before_decoding(tmp_path, monkeypatch, kind):
    path = tmp_path / f"huge.{kind}"
    HUGE_FILES[kind](path)
    assert imagesize.dimensions(str(path)) == (HUGE, HUGE)

    def no_decoding():
        raise AssertionError("OpenCV was asked to decode a file its header already refuses")

    monkeypatch.setattr(imageio, "_cv2", no_decoding)
    with pytest.raises(imageio.ImageReadError) as err:
        imageio.read_image(str(path))
    assert str(path) in str(err.value) and f"{HUGE}×{HUGE}" in str(err.value)
    assert str(protocol.DEFAULT_LIMITS["max_pixels"]) in str(err.value)


def test_the_pixel_budget_is_opencvs_variable(tmp_path, monkeypatch):
    """One knob raises both guards: $OPENCV_IO_MAX_IMAGE_PIXELS (mattebox sets it to max_pixels by default)."""
    path = tmp_path / "huge.png"
    _huge_png(path)
    assert imageio.pixel_budget() == protocol.DEFAULT_LIMITS["max_pixels"]
    monkeypatch.setenv(imageio.PIXEL_BUDGET_VARIABLE, str(HUGE * HUGE))
    imageio.check_image_file(str(path))  # within the raised budget: no error


@pytest.mark.parametrize("ext,dtype,channels", [(ext, dtype, channels)
                                                for ext, dtype in [("png", np.uint8), ("png", np.uint16),
                                                                   ("jpg", np.uint8), ("tif", np.uint8),
                                                                   ("tif", np.uint16), ("exr", np.float32)]
                                                for channels in (1, 3, 4) if (ext, channels) != ("jpg", 4)])
def test_header_dimensions_match_what_opencv_decodes(tmp_path, ext, dtype, channels):
    shape = (37, 53) if channels == 1 else (37, 53, channels)
    path = str(tmp_path / f"x.{ext}")
    assert cv2.imwrite(path, (np.random.default_rng(0).random(shape) * (255 if dtype == np.uint8 else 1)).astype(dtype))
    assert imagesize.dimensions(path) == (53, 37)
    assert imageio.read_image(path)[0].shape[:2] == (37, 53)


def test_matte_cli_refuses_a_huge_png_by_its_header(tmp_path):
    """The whole command, in its own process: a clear message naming the file, exit 2, nothing decoded."""
    path = tmp_path / "huge.png"
    _huge_png(path)
    # VmHWM, not ru_maxrss: Linux carries a parent's ru_maxrss over into the child (pytest's own, hundreds of MiB)
    probe = ("import sys; from mattebox.cli import main; code = main(sys.argv[1:]); "
             "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]; "
             "print('peak_mib', int(hwm) // 1024); sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", probe, "matte", str(path), "--local", "--out", str(tmp_path / "o")],
                          env=tree_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"{path}: its header declares {HUGE}×{HUGE}" in proc.stderr and "Traceback" not in proc.stderr
    peak = int(proc.stdout.split("peak_mib")[1])
    assert peak < 400, f"peak RSS {peak} MiB: the frame was decoded"


def test_a_folder_named_like_an_image_is_called_a_folder(tmp_path):
    folder = tmp_path / "x.png"
    folder.mkdir()
    with pytest.raises(imageio.ImageReadError, match="x.png: is a folder, not an image file"):
        imageio.read_image(str(folder))
    with pytest.raises(imageio.ImageReadError, match="no such file"):
        imageio.read_image(str(tmp_path / "missing.png"))


def test_matte_cli_does_not_write_through_a_symlink_at_an_output(tmp_path):
    image = tmp_path / "plate.png"
    imageio.write_png(str(image), np.full((12, 16, 3), 0.5, np.float32))
    mask = tmp_path / "mask.png"
    imageio.write_png(str(mask), np.full((12, 16), 1.0, np.float32))
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / "plate_alpha.png").symlink_to(victim)
    proc = subprocess.run([sys.executable, "-m", "mattebox", "matte", str(image), "--mask", str(mask), "--engine",
                           "passthrough", "--local", "--quiet", "--out", str(out)], env=tree_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "is a symbolic link" in proc.stderr and "Traceback" not in proc.stderr
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("height,width", [(1, 1), (12, 48)])
def test_a_tiny_pair_falls_back_to_one_frame_and_the_server_lives(server_process, height, width):
    """OpenCV's DIS flow raises on frames under 8 px and crashed the server process (SIGSEGV) on 12×48: a pair
    under 16 px a side is matted from the first frame alone, saying why."""
    server = server_process(state_dir="none")
    rng = np.random.default_rng(0)
    image = rng.random((height, width, 3), dtype=np.float32)
    trimap = np.full((height, width), 0.5, np.float32)
    trimap[:, : width // 4], trimap[:, width - width // 4:] = 0.0, 1.0
    with Client(server.endpoint, timeout=60) as client:
        result = client.submit(image, second=image, trimap=trimap, params={"engine": "classical-pair"}).result()
    assert result.info["pair_usable"] is False and "too small for optical flow" in result.info["pair_why"]
    assert server.alive()
