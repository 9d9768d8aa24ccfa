"""Remote servers with CURVE: `mattebox keys`, an authenticated client works, an unknown key gets silence and a
clear ServerUnavailable, the server logs the refusal, and a non-loopback bind without keys is refused."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import zmq

from mattebox.cli import main as cli_main
from mattebox.commands.keys import make_keys
from mattebox.server import BindRefused, Server, ServerConfig
from mattebox_plugin import config as client_config
from mattebox_plugin.client import Client, JobFailed, ServerUnavailable

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq built without CURVE")


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append((record.levelno, record.getMessage()))


@pytest.fixture
def curve_server(tmp_path):
    texts = make_keys(tmp_path / "keys", ["artist", "rival"])
    server = Server(ServerConfig(endpoint="tcp://127.0.0.1:0", curve_secret_key_file=str(tmp_path / "keys" /
                                 "server.key_secret"), curve_clients_dir=str(tmp_path / "keys" / "clients")))
    records = _Records()
    auth_log = logging.getLogger("mattebox.auth")
    auth_log.addHandler(records)
    old_level = auth_log.level
    auth_log.setLevel(logging.DEBUG)
    thread = server.start_background()
    yield server, texts, records
    server.stop()
    thread.join(timeout=15)
    auth_log.removeHandler(records)
    auth_log.setLevel(old_level)


def test_keys_command_writes_pairs_allowed_folder_and_client_config(tmp_path, capsys):
    cfg_path = tmp_path / "client.json"
    assert cli_main(["keys", "--out", str(tmp_path / "k"), "--client", "nuke1", "--client-config",
                     str(cfg_path)]) == 0
    for name in ("server.key", "server.key_secret", "nuke1.key", "nuke1.key_secret", "clients/nuke1.key"):
        assert (tmp_path / "k" / name).is_file(), name
    assert not (tmp_path / "k" / "clients" / "server.key").exists()  # the server is not a client
    assert (tmp_path / "k" / "server.key_secret").stat().st_mode & 0o077 == 0
    saved = json.loads(cfg_path.read_text())
    public, secret = zmq.auth.load_certificate(str(tmp_path / "k" / "nuke1.key_secret"))
    assert saved["client_public_key"] == public.decode() and saved["client_secret_key"] == secret.decode()
    assert saved["server_public_key"] == zmq.auth.load_certificate(str(tmp_path / "k" / "server.key"))[0].decode()
    # adding a client later keeps the server pair
    server_before = (tmp_path / "k" / "server.key").read_bytes()
    assert cli_main(["keys", "--out", str(tmp_path / "k"), "--client", "blender2", "--no-server"]) == 0
    assert (tmp_path / "k" / "server.key").read_bytes() == server_before
    assert (tmp_path / "k" / "clients" / "blender2.key").is_file()
    assert "--curve-secret-key" in capsys.readouterr().out


def test_registered_client_key_from_config_mattes(curve_server, tmp_path, monkeypatch):
    server, texts, records = curve_server
    cfg_path = tmp_path / "client.json"
    client_config.save({"endpoint": server.bound_endpoint, "server_public_key": texts["server_public_key"],
                        "client_public_key": texts["artist_public_key"],
                        "client_secret_key": texts["artist_secret_key"], "timeout": 10.0}, cfg_path)
    with Client(**client_config.client_kwargs(client_config.load(cfg_path))) as client:
        assert client.hello()["protocol"] == 1
        image = np.random.default_rng(0).random((24, 32, 3), dtype=np.float32)
        mask = np.zeros((24, 32), np.float32)
        mask[6:18, 8:24] = 1
        result = client.submit(image=image, mask=mask, params={"engine": "passthrough"}).result(timeout=30)
        np.testing.assert_array_equal(result.alpha, mask)
    assert not [m for level, m in records.messages if level >= logging.WARNING]


def _as(server, texts, name, **kwargs):
    return Client(server.bound_endpoint, timeout=10, server_public_key=texts["server_public_key"],
                  client_public_key=texts[f"{name}_public_key"], client_secret_key=texts[f"{name}_secret_key"],
                  **kwargs)


def test_over_curve_the_client_key_owns_the_job(curve_server, monkeypatch):
    """Two registered users: one cannot attach, release or cancel the other's job, not even with her owner_key
    (over CURVE the authenticated key is the owner); the same key on a new connection can."""
    from mattebox import engines

    engines.register("test-slow", "tests.support.engines:SlowEngine")
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "10")
    server, texts, _ = curve_server
    image = np.random.default_rng(1).random((24, 32, 3), dtype=np.float32)
    with _as(server, texts, "artist") as artist:
        job = artist.submit(image=image, params={"engine": "test-slow"})
        with _as(server, texts, "rival", owner_key=artist.owner_key) as rival:
            taken = rival.attach(job.id, release=True)
            with pytest.raises(JobFailed) as err:
                taken.result(timeout=20)
            assert (err.value.code, err.value.field) == ("unknown_job", "id")
            rival._send(rival._owned({"op": "cancel", "id": job.id}))
            assert job.id not in str(rival.status())
        with _as(server, texts, "artist") as again:  # same key pair, new connection (a restarted app)
            fetched = again.attach(job.id, release=False).result(timeout=30)
        np.testing.assert_array_equal(job.result(timeout=30).alpha, fetched.alpha)


def test_unknown_client_key_gets_silence_then_clear_error_and_is_logged(curve_server):
    server, texts, records = curve_server
    stranger_public, stranger_secret = zmq.curve_keypair()
    with Client(server.bound_endpoint, timeout=0.8, server_public_key=texts["server_public_key"],
                client_public_key=stranger_public.decode(), client_secret_key=stranger_secret.decode()) as client:
        with pytest.raises(ServerUnavailable) as err:
            client.hello()
    message = str(err.value)
    assert server.bound_endpoint in message and "CURVE" in message and "client refused" in message
    refusals = [m for level, m in records.messages if level == logging.WARNING and "client refused" in m]
    assert refusals and "DENIED" in refusals[0]
    assert server.counters["received"] == 0  # not one frame of the stranger's reached the request loop


def test_plain_client_gets_nothing_from_a_curve_server(curve_server):
    server, _, _ = curve_server
    with Client(server.bound_endpoint, timeout=0.5) as client:
        with pytest.raises(ServerUnavailable):
            client.hello()
    assert server.counters["received"] == 0


def test_non_loopback_bind_without_keys_is_refused_with_how_to():
    server = Server(ServerConfig(endpoint="tcp://0.0.0.0:0"))
    with pytest.raises(BindRefused) as err:
        server.bind()
    assert "mattebox keys --out" in str(err.value) and "--curve-secret-key" in str(err.value)
    assert server.router is None


def test_non_loopback_bind_with_keys_is_allowed(tmp_path):
    make_keys(tmp_path, ["c"])
    server = Server(ServerConfig(endpoint="tcp://0.0.0.0:0", curve_secret_key_file=str(tmp_path / "server.key_secret")))
    thread = server.start_background()
    try:
        assert server.bound_endpoint.startswith("tcp://0.0.0.0:")
    finally:
        server.stop()
        thread.join(timeout=15)


def _non_loopback_address():
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_a_curve_client_over_a_non_loopback_address_gets_no_shared_memory(tmp_path):
    """Even on the same machine, a connection from a non-loopback address is not local to the server (it judges
    from the transport; the client's hostname is ignored), so it gets frames, not shared memory."""
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    texts = make_keys(tmp_path / "keys", ["artist"])
    server = Server(ServerConfig(endpoint=f"tcp://{address}:0",
                                 curve_secret_key_file=str(tmp_path / "keys" / "server.key_secret"),
                                 curve_clients_dir=str(tmp_path / "keys" / "clients")))
    thread = server.start_background()
    try:
        with _as(server, texts, "artist") as client:
            info = client.hello()
            assert info["shm"] is False and "local" in info["shm_reason"] and not client.shared_memory
            image = np.random.default_rng(2).random((24, 32, 3), dtype=np.float32)
            mask = np.ones((24, 32), np.float32)
            result = client.submit(image=image, mask=mask, params={"engine": "passthrough"}).result(timeout=30)
            np.testing.assert_array_equal(result.alpha, mask)
    finally:
        server.stop()
        thread.join(timeout=15)


def test_matte_cli_and_doctor_use_the_configured_keys(tmp_path, server_process, monkeypatch):
    import subprocess
    import sys

    import cv2

    from .conftest import tree_env

    texts = make_keys(tmp_path / "keys", ["farm"])
    server = server_process("--curve-secret-key", str(tmp_path / "keys" / "server.key_secret"),
                            "--curve-clients", str(tmp_path / "keys" / "clients"))
    cfg_path = tmp_path / "client.json"
    client_config.save({"endpoint": server.endpoint, "server_public_key": texts["server_public_key"],
                        "client_public_key": texts["farm_public_key"], "client_secret_key": texts["farm_secret_key"]},
                       cfg_path)
    plate = tmp_path / "plate.png"
    cv2.imwrite(str(plate), np.full((20, 30, 3), 128, np.uint8))
    env = tree_env(MATTEBOX_CONFIG=str(cfg_path))
    run = subprocess.run([sys.executable, "-m", "mattebox", "matte", str(plate), "--engine", "passthrough",
                          "--out", str(tmp_path / "out"), "--quiet"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert any((tmp_path / "out").iterdir())
    doctor = subprocess.run([sys.executable, "-m", "mattebox", "doctor"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert doctor.returncode == 0 and "engines:" in doctor.stdout, doctor.stdout + doctor.stderr
