"""Fixtures for the memshare Python tests.

Every name a test makes starts with ``mst-py-<pid>-`` (scripts/census
looks for ``mst-`` names left in /dev/shm), and after each test none may be
left, nor any child process.
"""

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

PREFIX = f"mst-py-{os.getpid()}-"
_counter = itertools.count()
REPO = Path(__file__).resolve().parents[4]


def names_left():
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(PREFIX))


@pytest.fixture
def name():
    """A fresh name for one segment or service (call it for more)."""

    def make(tag="t"):
        return f"{PREFIX}{tag}-{next(_counter)}"

    return make


TEST_TIMEOUT = 60


@pytest.fixture(autouse=True)
def time_limit():
    """A test that takes over TEST_TIMEOUT seconds fails (SIGALRM; memshare's
    blocking calls run signal handlers between their waits)."""
    import signal

    def expired(signum, frame):
        raise TimeoutError(f"the test took over {TEST_TIMEOUT} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIMEOUT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(autouse=True)
def leaves_nothing():
    """No /dev/shm name of this run and no child process after a test."""
    yield
    import gc

    gc.collect()
    deadline = time.monotonic() + 2
    while names_left() and time.monotonic() < deadline:
        time.sleep(0.01)
    left = names_left()
    for n in left:  # do not let one test's leftovers fail the next ones
        try:
            os.unlink(f"/dev/shm/{n}")
        except OSError:
            pass
    assert not left, f"names left in /dev/shm: {left}"
    children = [
        c for c in Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
        # multiprocessing's resource tracker lives as long as this process.
        if b"resource_tracker" not in _cmdline(c)
    ]
    assert not children, f"child processes left: {children}"


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _build_peer():
    out = subprocess.run(
        ["cargo", "build", "-q", "-p", "memshare-py", "--example", "peer",
         "--message-format=json"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "peer":
            return msg["executable"]
    raise RuntimeError("cargo built no peer example")


@pytest.fixture(scope="session")
def peer_bin():
    """The Rust peer program (crates/memshare-py/examples/peer.rs):
    $MEMSHARE_PEER (set by tests/pytest.rs), else built with cargo."""
    return os.environ.get("MEMSHARE_PEER") or _build_peer()


class Peer:
    """Runs the Rust peer (or a Python child) and reads its lines."""

    def __init__(self, argv, **kw):
        env = dict(kw.pop("env", None) or os.environ)
        env["MEMSHARE_TEST_CHILD"] = "1"
        self.p = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env, **kw)

    def line(self, timeout=10):
        import select

        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        assert r, "no line from the child in time"
        return self.p.stdout.readline().rstrip("\n")

    def send(self, text="go"):
        self.p.stdin.write(text + "\n")
        self.p.stdin.flush()

    def finish(self, timeout=20):
        try:
            out, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
            raise AssertionError(f"the child did not end: {err}")
        assert self.p.returncode == 0, f"the child failed ({self.p.returncode}): {err}"
        return out.splitlines()

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.communicate()


@pytest.fixture
def spawn():
    """spawn(argv) -> Peer; every peer is reaped after the test."""
    peers = []

    def make(argv, **kw):
        p = Peer(argv, **kw)
        peers.append(p)
        return p

    yield make
    for p in peers:
        p.kill()


@pytest.fixture
def peer(peer_bin, spawn):
    """peer(*args) -> Peer running the Rust peer."""
    return lambda *args, **kw: spawn([peer_bin, *map(str, args)], **kw)


@pytest.fixture
def pychild(spawn):
    """pychild(script, *args) -> Peer running `python -c script args`."""
    return lambda script, *args, **kw: spawn(
        [sys.executable, "-c", script, *map(str, args)], **kw)
