"""A Python process is a holder like a Rust one: a name lives while it
holds it, and goes when the last holder dies, SIGKILL included."""

import os
import signal

import memshare

HOLDER = """
import memshare, sys, time
kind, name = sys.argv[1], sys.argv[2]
if kind == "segment":
    seg = memshare.Segment.create_named(name, 1 << 20)
    view = seg.map()
    view.write(b"alive")
elif kind == "opener":
    seg = memshare.Segment.open(name)
    view = seg.map()
elif kind == "channel":
    tx = memshare.Sender.create_named(name, 1 << 16)
    tx.send(b"before the kill")
elif kind == "pubsub":
    p = memshare.Publisher.create(name)
elif kind == "rpc":
    s = memshare.Server.create(name)
print("ready", flush=True)
time.sleep(600)
"""


def exists(n):
    return os.path.exists(f"/dev/shm/{n}")


def killed(pychild, kind, n):
    child = pychild(HOLDER, kind, n)
    assert child.line() == "ready"
    assert exists(n)
    child.p.send_signal(signal.SIGKILL)
    child.p.wait(timeout=10)
    return child


def test_a_killed_creator_leaves_no_name(pychild, name):
    n = name()
    killed(pychild, "segment", n)
    assert not exists(n) or _gone_on_next_open(n)


def _gone_on_next_open(n):
    # Where the holder count lives in flocks, a dead holder's name is
    # reclaimed by the next open.
    try:
        memshare.Segment.open(n).close()
    except memshare.NotFound:
        return not exists(n)
    return False


def test_a_killed_opener_does_not_take_the_name_with_it(pychild, name):
    n = name()
    seg = memshare.Segment.create_named(n, 4096)
    killed(pychild, "opener", n)
    assert exists(n)
    assert memshare.Segment.open(n).size == 4096
    seg.close()
    assert not exists(n)


def test_a_killed_creator_while_this_process_holds_keeps_the_name(pychild, name):
    n = name()
    child = pychild(HOLDER, "segment", n)
    assert child.line() == "ready"
    mine = memshare.Segment.open(n)
    child.p.kill()
    child.p.wait(timeout=10)
    assert exists(n) and mine.map().read(0, 5) == b"alive"
    mine.close()
    assert not exists(n)


def test_killed_endpoints_leave_nothing_and_peers_see_it(pychild, name):
    n = name()
    child = pychild(HOLDER, "channel", n)
    assert child.line() == "ready"
    rx = memshare.Receiver.open(n)
    child.p.kill()
    child.p.wait(timeout=10)
    assert rx.recv_bytes(timeout=5) == b"before the kill"
    try:
        rx.recv(timeout=5)
        raise AssertionError("a dead sender must be Disconnected")
    except memshare.Disconnected:
        pass
    rx.close()
    assert not exists(n)
    for kind in ("pubsub", "rpc"):
        m = name()
        killed(pychild, kind, m)
        assert not exists(m) or _gone_on_next_open(m)
