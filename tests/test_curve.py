"""Remote servers with CURVE: `mattebox keys`, an authenticated client works, an unknown key gets silence and a
clear ServerUnavailable, the server logs the refusal, and a non-loopback bind without keys is refused."""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from mattebox.cli import main as cli_main
from mattebox.commands.keys import make_keys
from mattebox.server import BindRefused, Server, ServerConfig, _AuthLog
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


def test_an_existing_key_pair_is_never_replaced_without_force(tmp_path, capsys):
    keys = tmp_path / "k"
    assert cli_main(["keys", "--out", str(keys), "--client", "anna"]) == 0
    before = {p.name: p.read_bytes() for p in keys.iterdir() if p.is_file()}
    assert cli_main(["keys", "--out", str(keys), "--client", "ben"]) == 2  # forgot --no-server
    assert "never replaced without --force" in capsys.readouterr().out
    assert cli_main(["keys", "--out", str(keys), "--client", "anna", "--no-server"]) == 2  # anna has a pair
    assert {p.name: p.read_bytes() for p in keys.iterdir() if p.is_file()} == before  # nothing written at all
    assert cli_main(["keys", "--out", str(keys), "--client", "ben", "--force"]) == 0
    assert (keys / "server.key_secret").read_bytes() != before["server.key_secret"]


#: run as another user: open each path in turn until stdin closes, then say how often one could be read
POLLER = """
import sys, threading
paths, done = sys.argv[1:], threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
hits = rounds = 0
print("ready", flush=True)
while not done.is_set():
    for path in paths:
        try:
            with open(path, "rb") as fh:
                fh.read()
            hits += 1
        except OSError:
            pass
    rounds += 1
print(f"read {hits} times in {rounds} rounds", flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root (to run a second local user, nobody, with setpriv)")
def test_secret_keys_are_never_readable_by_another_user(tmp_path):
    """Another local user polls for the secret files while `mattebox keys` creates them: with open-then-chmod it
    read them (issue 17: 10 of 10 tries); created mode 600 it never can."""
    import subprocess
    import sys
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="mattebox-keys-"))  # a folder the other user may enter, like /etc
    try:
        shared.chmod(0o755)
        outs = [shared / f"k{i}" for i in range(60)]
        for out in outs:
            out.mkdir(mode=0o755)
            out.chmod(0o755)
        secrets = [str(out / name) for out in outs for name in ("server.key_secret", "c.key_secret")]
        watcher = subprocess.Popen(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-S", "-c", POLLER,
             *secrets], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert watcher.stdout.readline().strip() == "ready"
            for out in outs:
                make_keys(out, ["c"])
        finally:
            watcher.stdin.close()
            output = watcher.stdout.read()
            watcher.wait(timeout=60)
        assert watcher.returncode == 0, output
        assert "read 0 " in output, output
        assert all(os.stat(path).st_mode & 0o077 == 0 for path in secrets)
    finally:
        shutil.rmtree(shared)


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



def test_render_and_matte_use_the_configured_keys_for_the_server_they_name(curve_server, tmp_path, monkeypatch):
    """`mattebox render --endpoint` and `mattebox matte --endpoint` to a CURVE server connect with the configured
    client keys (render once connected without them and got silence)."""
    from mattebox.imageio import read_gray, write_png

    server, texts, _ = curve_server
    cfg_path = tmp_path / "client.json"
    client_config.save({"endpoint": "tcp://127.0.0.1:1", "server_public_key": texts["server_public_key"],
                        "client_public_key": texts["artist_public_key"],
                        "client_secret_key": texts["artist_secret_key"], "timeout": 10.0}, cfg_path)
    monkeypatch.setenv("MATTEBOX_CONFIG", str(cfg_path))
    mask = np.zeros((12, 16), np.float32)
    mask[3:9, 4:12] = 1
    write_png(str(tmp_path / "plate.0001.png"), np.full((12, 16, 3), 0.5, np.float32))
    write_png(str(tmp_path / "mask.0001.png"), mask)
    assert cli_main(["render", str(tmp_path / "plate.####.png"), "--frames", "1", "--mask",
                     str(tmp_path / "mask.####.png"), "--alpha", str(tmp_path / "out" / "a.####.png"),
                     "--engine", "passthrough", "--endpoint", server.bound_endpoint, "--timeout", "30"]) == 0
    np.testing.assert_array_equal(read_gray(str(tmp_path / "out" / "a.0001.png")), mask)
    assert cli_main(["matte", str(tmp_path / "plate.0001.png"), "--mask", str(tmp_path / "mask.0001.png"),
                     "--engine", "passthrough", "--endpoint", server.bound_endpoint, "--quiet", "--write",
                     "alpha.exr", "--out", str(tmp_path / "matte")]) == 0
    np.testing.assert_array_equal(read_gray(str(tmp_path / "matte" / "plate.0001_alpha.exr")), mask)

def _as(server, texts, name, **kwargs):
    return Client(server.bound_endpoint, timeout=10, server_public_key=texts["server_public_key"],
                  client_public_key=texts[f"{name}_public_key"], client_secret_key=texts[f"{name}_secret_key"],
                  **kwargs)


def test_over_curve_the_client_key_owns_the_job(curve_server, monkeypatch):
    """Two registered users: one cannot attach, release or cancel the other's job, not even with her owner_key
    (over CURVE the authenticated key is the owner); the same key on a new connection can."""
    from mattebox import engines

    engines.register("test-slow", "mattebox.testing.engines:SlowEngine")
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
    server = Server(ServerConfig(endpoint="tcp://0.0.0.0:0", curve_secret_key_file=str(tmp_path / "server.key_secret"),
                                 curve_clients_dir=str(tmp_path / "clients")))
    thread = server.start_background()
    try:
        assert server.bound_endpoint.startswith("tcp://0.0.0.0:")
    finally:
        server.stop()
        thread.join(timeout=15)


def test_non_loopback_curve_without_a_clients_folder_needs_allow_any_client(tmp_path, caplog):
    make_keys(tmp_path, ["c"])
    secret = str(tmp_path / "server.key_secret")
    with pytest.raises(BindRefused, match="without --curve-clients.*--allow-any-client"):
        Server(ServerConfig(endpoint="tcp://0.0.0.0:0", curve_secret_key_file=secret)).bind()
    server = Server(ServerConfig(endpoint="tcp://0.0.0.0:0", curve_secret_key_file=secret, allow_any_client=True))
    thread = server.start_background()
    try:
        assert server.bound_endpoint.startswith("tcp://0.0.0.0:")
        assert "serving any CURVE client" in caplog.text  # said once, at start-up
    finally:
        server.stop()
        thread.join(timeout=15)


class _Frame:
    def __init__(self, peer):
        self.peer = peer

    def get(self, name):
        assert name == "Peer-Address"
        return self.peer


@pytest.mark.parametrize("bound, peer, local", [
    ("tcp://0.0.0.0:23517", "127.0.0.1", True), ("tcp://[::]:23517", "::1", True),
    ("tcp://0.0.0.0:23517", "192.0.2.7", False), ("tcp://0.0.0.0:23517", "10.1.2.3", False),
    ("tcp://0.0.0.0:23517", None, False), ("ipc:///tmp/mattebox.sock", None, True),
])
def test_shared_memory_is_local_by_the_transport_never_by_what_the_client_says(bound, peer, local):
    """Whether a connection may use shared memory is judged from the transport (ipc, or tcp from a loopback
    Peer-Address); a CURVE client on another host (or one claiming this hostname) gets frames. Checked on the rule
    itself: tests never send traffic to non-loopback addresses."""
    server = Server(ServerConfig())
    server.bound_endpoint = bound
    assert server._is_local([_Frame(peer)]) is local


@pytest.fixture
def clocked_auth_log():
    """(an _AuthLog on a clock the test moves, the clock [seconds], the records its logger received)."""
    now = [0.0]
    records = _Records()
    logger = logging.getLogger("mattebox.test-auth")
    logger.addHandler(records)
    logger.setLevel(logging.DEBUG)
    try:
        yield _AuthLog(logger, clock=lambda: now[0]), now, records
    finally:
        logger.removeHandler(records)


def test_refused_handshakes_are_rate_limited_in_the_log(clocked_auth_log):
    auth_log, now, records = clocked_auth_log
    for i in range(300):
        key = "stranger" if i % 3 else "another"
        auth_log.debug("%s (CURVE) domain=%s client_key=%s", "DENIED", "*", key)
        now[0] += 0.01
    lines = [m for level, m in records.messages if level == logging.WARNING]
    assert len(lines) == 2 * _AuthLog.FIRST and all("client refused: DENIED" in m for m in lines)
    assert "summarised every 60 s" in lines[-1]
    now[0] += _AuthLog.PERIOD
    auth_log.summarise()  # the server's sweep calls this every second
    summary = [m for level, m in records.messages if level == logging.WARNING][-1]
    assert summary.startswith(f"clients refused {300 - 2 * _AuthLog.FIRST} more times in the last 60 s")
    auth_log.debug("%s (CURVE) domain=%s client_key=%s", "DENIED", "*", "stranger")  # a new period
    assert len([m for level, m in records.messages if level == logging.WARNING]) == 2 * _AuthLog.FIRST + 2


def test_refusals_with_a_fresh_key_each_time_are_rate_limited_too(clocked_auth_log):
    """Keys cost nothing to make: 300 strangers with 300 keys still log FIRST_TOTAL lines and one summary."""
    auth_log, now, records = clocked_auth_log
    for i in range(300):
        auth_log.debug("%s (CURVE) domain=%s client_key=%s", "DENIED", "*", f"key-{i}")
    now[0] += _AuthLog.PERIOD
    auth_log.summarise()
    lines = [m for level, m in records.messages if level == logging.WARNING]
    assert len(lines) == _AuthLog.FIRST_TOTAL + 1
    assert lines[-1].startswith(f"clients refused {300 - _AuthLog.FIRST_TOTAL} more times")


def test_a_stranger_retrying_logs_a_few_lines_not_one_per_handshake(curve_server):
    server, texts, records = curve_server
    ctx = zmq.Context()
    public, secret = zmq.curve_keypair()
    socks = []
    try:
        for _ in range(12):  # one handshake, and one refusal, per connection
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.curve_serverkey = texts["server_public_key"].encode()
            sock.curve_publickey, sock.curve_secretkey = public, secret
            sock.connect(server.bound_endpoint)
            socks.append(sock)
        deadline = time.monotonic() + 60
        while sum(server._auth_log._counts.values()) < len(socks) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for sock in socks:
            sock.close()
        ctx.term()
    assert sum(server._auth_log._counts.values()) == len(socks)
    refusals = [m for level, m in records.messages if level == logging.WARNING and "client refused" in m]
    assert len(refusals) == _AuthLog.FIRST


@pytest.mark.parametrize("endpoint, expected", [
    ("tcp://127.0.0.1:{busy}", "already in use"),
    ("tcp://[::1]", "Expected tcp://HOST:PORT"),
    ("tcp://127.0.0.1:notaport", "Expected tcp://HOST:PORT"),
])
def test_serve_explains_an_endpoint_it_cannot_bind(endpoint, expected, tmp_path):
    import socket
    import subprocess
    import sys

    from .conftest import tree_env

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        endpoint = endpoint.format(busy=busy.getsockname()[1])
        run = subprocess.run([sys.executable, "-m", "mattebox", "serve", "--endpoint", endpoint, "--state-dir",
                              "none"], env=tree_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert f"cannot bind {endpoint}: " in run.stderr and expected in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_hosts_launcher_reports_a_port_held_by_another_program():
    """What a host plug-in shows when its endpoint's port is taken: no server started, the reason named."""
    import socket

    from mattebox_plugin.launcher import ensure_server

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        endpoint = f"tcp://127.0.0.1:{busy.getsockname()[1]}"
        cfg = dict(client_config.DEFAULTS, endpoint=endpoint, timeout=2.0,
                   server_command=["false-server-that-must-not-start"])
        with pytest.raises(ServerUnavailable, match="does not answer as a mattebox server.*free the port"):
            ensure_server(cfg, wait=5)


def test_an_ipv6_loopback_endpoint_serves():
    if not socket_has_ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    server = Server(ServerConfig(endpoint="tcp://[::1]:0"))
    thread = server.start_background()
    try:
        with Client(server.bound_endpoint, timeout=10) as client:
            assert client.hello()["protocol"] == 1
    finally:
        server.stop()
        thread.join(timeout=15)


def socket_has_ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


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
