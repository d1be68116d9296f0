"""Timeouts of every call that takes one: a timeout too large to represent
(or infinite) waits without a deadline; a negative or NaN one is a
ValueError."""

import threading

import pytest

import memshare

# 9.3e18 s fits a Duration but not an Instant; 1e20 s does not fit a
# Duration; inf is no number of seconds at all.
HUGE = [9.3e18, 1e20, 1e300, float("inf")]
BAD = [-1.0, -1e-9, float("-inf"), float("nan")]


class Later:
    """`with Later(action):` runs `action` 50 ms after the block starts and
    joins it at the end, whatever the block did."""

    def __init__(self, action):
        self.timer = threading.Timer(0.05, action)

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.join()
        return False


def full_channel():
    tx = memshare.Sender.create(64)
    rx = memshare.Receiver.attach(tx.segment)
    while tx.try_send(bytes(16)):
        pass
    return tx, rx


def blocking_publisher(name):
    p = memshare.Publisher.create(name, depth=1, overflow="block")
    s = memshare.Subscriber.open(name)
    p.publish_copy(b"fill")
    return p, s


def answer(srv):
    with srv.recv(timeout=5) as req:
        req.respond(b"answer")


def case_receiver_recv(name, t):
    tx = memshare.Sender.create(4096)
    rx = memshare.Receiver.attach(tx.segment)
    with Later(lambda: tx.send(b"late")):
        with rx.recv(timeout=t) as msg:
            assert bytes(msg) == b"late"


def case_receiver_recv_bytes(name, t):
    tx = memshare.Sender.create(4096)
    rx = memshare.Receiver.attach(tx.segment)
    with Later(lambda: tx.send(b"late")):
        assert rx.recv_bytes(timeout=t) == b"late"


def case_sender_send(name, t):
    tx, rx = full_channel()
    with Later(lambda: rx.recv_bytes(timeout=5)):
        tx.send(b"room", timeout=t)


def case_sender_reserve(name, t):
    tx, rx = full_channel()
    with Later(lambda: rx.recv_bytes(timeout=5)):
        tx.reserve(16, timeout=t).commit()


def case_publisher_loan(name, t):
    p, s = blocking_publisher(name())
    with Later(lambda: s.recv_bytes(timeout=5)):
        p.loan(4, timeout=t).publish()


def case_publisher_publish_copy(name, t):
    p, s = blocking_publisher(name())
    with Later(lambda: s.recv_bytes(timeout=5)):
        p.publish_copy(b"room", timeout=t)


def case_subscriber_recv(name, t):
    n = name()
    p = memshare.Publisher.create(n)
    s = memshare.Subscriber.open(n)
    with Later(lambda: p.publish_copy(b"late")):
        with s.recv(timeout=t) as sample:
            assert bytes(sample) == b"late"


def case_subscriber_recv_bytes(name, t):
    n = name()
    p = memshare.Publisher.create(n)
    s = memshare.Subscriber.open(n)
    with Later(lambda: p.publish_copy(b"late")):
        assert s.recv_bytes(timeout=t) == b"late"


def case_subscriber_open_timeout(name, t):
    n = name()
    made = []
    with Later(lambda: made.append(memshare.Publisher.create(n))):
        memshare.Subscriber.open_timeout(n, t).close()
    made[0].close()


def case_server_recv(name, t):
    n = name()
    srv = memshare.Server.create(n)
    c = memshare.Client.connect(n)
    with Later(lambda: c.send_request(b"late")):
        srv.recv(timeout=t).respond(b"answer")


def case_client_connect_timeout(name, t):
    n = name()
    made = []
    with Later(lambda: made.append(memshare.Server.create(n))):
        memshare.Client.connect_timeout(n, t).close()
    made[0].close()


def case_client_call(name, t):
    n = name()
    srv = memshare.Server.create(n)
    c = memshare.Client.connect(n)
    with Later(lambda: answer(srv)):
        assert bytes(c.call(b"question", timeout=t)) == b"answer"


def case_client_receive_response(name, t):
    n = name()
    srv = memshare.Server.create(n)
    c = memshare.Client.connect(n)
    pending = c.send_request(b"question")
    with Later(lambda: answer(srv)):
        assert bytes(c.receive_response(pending, timeout=t)) == b"answer"


CASES = {f.__name__[len("case_"):]: f for f in list(globals().values())
         if callable(f) and getattr(f, "__name__", "").startswith("case_")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_timeout_too_large_to_represent_waits_without_a_deadline(name, case):
    for t in HUGE:
        CASES[case](name, t)


def test_a_negative_or_nan_timeout_is_a_value_error(name):
    n = name()
    tx = memshare.Sender.create(4096)
    rx = memshare.Receiver.attach(tx.segment)
    p = memshare.Publisher.create(n)
    s = memshare.Subscriber.open(n)
    m = name()
    srv = memshare.Server.create(m)
    c = memshare.Client.connect(m)
    pending = c.send_request(b"never answered")
    calls = {
        "Receiver.recv": lambda t: rx.recv(timeout=t),
        "Receiver.recv_bytes": lambda t: rx.recv_bytes(timeout=t),
        "Sender.send": lambda t: tx.send(b"x", timeout=t),
        "Sender.reserve": lambda t: tx.reserve(1, timeout=t),
        "Publisher.loan": lambda t: p.loan(1, timeout=t),
        "Publisher.publish_copy": lambda t: p.publish_copy(b"x", timeout=t),
        "Subscriber.open_timeout": lambda t: memshare.Subscriber.open_timeout(n, t),
        "Subscriber.recv": lambda t: s.recv(timeout=t),
        "Subscriber.recv_bytes": lambda t: s.recv_bytes(timeout=t),
        "Server.recv": lambda t: srv.recv(timeout=t),
        "Client.connect_timeout": lambda t: memshare.Client.connect_timeout(m, t),
        "Client.call": lambda t: c.call(b"x", timeout=t),
        "Client.receive_response": lambda t: c.receive_response(pending, timeout=t),
    }
    for what, call in calls.items():
        for t in BAD:
            with pytest.raises(ValueError, match="timeout must be"):
                call(t)
                pytest.fail(f"{what}(timeout={t}) was accepted")
    # Nothing was sent, received or connected.
    assert c.in_flight == 1 and srv.try_recv() is not None
    assert rx.try_recv() is None and s.try_recv() is None
