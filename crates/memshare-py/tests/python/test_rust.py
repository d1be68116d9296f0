"""Rust and Python on the two sides of channels and services."""

import numpy as np

import memshare


def test_rust_sends_python_receives_in_place(peer, name):
    n = name()
    rx = memshare.Receiver.open_or_create(n, 1 << 20)
    p = peer("chan-send", n, 50, 4096)
    for i in range(50):
        with rx.recv(timeout=10) as m:
            a = np.frombuffer(m, np.uint8)
            assert len(a) == 4096
            assert int.from_bytes(bytes(a[:8]), "little") == i
            assert (a[8:] == i % 251).all()
            del a
    p.finish()
    try:
        rx.recv(timeout=5)
        raise AssertionError("expected Disconnected")
    except memshare.Disconnected:
        pass
    rx.close()


def test_python_sends_rust_receives(peer, name):
    n = name()
    tx = memshare.Sender.open_or_create(n, 1 << 16)
    p = peer("chan-recv", n)
    assert p.line() == "ready"  # attached: closing now is a disconnection
    tx.send(b"from python")
    with tx.reserve(1000) as r:
        r.write(bytes(range(250)) * 4)
    tx.send(b"last")
    tx.close()
    assert p.finish() == ["count=3 bytes=1015", "from python", "last"]


def test_rust_publishes_python_subscribes(peer, name):
    n = name()
    p = peer("pub", n, 5)
    assert p.line() == "ready"
    s = memshare.Subscriber.open(n)
    got = [s.recv_bytes(timeout=10) for _ in range(5)]
    assert got == [f"message {i}".encode() for i in range(5)]
    p.send()
    p.finish()
    try:
        s.recv(timeout=5)
        raise AssertionError("expected Disconnected")
    except memshare.Disconnected:
        pass
    s.close()


def test_python_publishes_rust_subscribes(peer, name):
    n = name()
    pub = memshare.Publisher.create(n, depth=8, overflow="block")
    p = peer("sub", n, 3)
    assert p.line() == "ready"
    for i in range(3):
        with pub.loan(8) as lo:
            lo.write(f"py msg {i}".encode())
    assert p.finish() == ["py msg 0", "py msg 1", "py msg 2"]
    pub.close()


def test_rust_serves_python_calls(peer, name):
    n = name()
    p = peer("serve", n, 2)
    assert p.line() == "ready"
    c = memshare.Client.connect_timeout(n, 10)
    assert bytes(c.call(b"shout", timeout=10)) == b"SHOUT"
    pend = c.send_request(np.frombuffer(b"numpy", np.uint8))
    assert bytes(c.receive_response(pend, timeout=10)) == b"NUMPY"
    c.close()
    p.finish()


def test_python_serves_rust_calls(peer, name):
    n = name()
    srv = memshare.Server.create(n)
    p = peer("call", n, "one", "two")
    for _ in range(2):
        with srv.recv(timeout=10) as req:
            with req.loan_response(len(req) + 1) as out:
                out.write(bytes(req)[::-1] + b"!")
    assert p.finish() == ["eno!", "owt!"]
    srv.close()
