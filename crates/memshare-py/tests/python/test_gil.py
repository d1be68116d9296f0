"""Blocking calls release the interpreter: another Python thread runs
while one waits."""

import threading
import time

import memshare


def spins_while(blocking_call):
    """Runs `blocking_call` in a thread and counts how far a pure-Python
    loop gets meanwhile (it would get nowhere if the wait held the GIL)."""
    done = threading.Event()
    result = {}

    def waiter():
        try:
            result["value"] = blocking_call()
        except BaseException as e:  # noqa: the test looks at it
            result["error"] = e
        done.set()

    t = threading.Thread(target=waiter)
    t.start()
    count = 0
    start = time.monotonic()
    while not done.is_set() and time.monotonic() - start < 10:
        count += 1
    t.join()
    return count, result


def test_recv_releases_the_gil():
    tx = memshare.Sender.create(4096)
    rx = memshare.Receiver.attach(tx.segment)
    count, result = spins_while(lambda: rx.recv(timeout=0.5))
    assert isinstance(result.get("error"), memshare.TimedOut)
    assert count > 10_000, count


def test_a_thread_sends_while_another_waits():
    tx = memshare.Sender.create(4096)
    rx = memshare.Receiver.attach(tx.segment)
    got = []
    t = threading.Thread(target=lambda: got.append(rx.recv_bytes(timeout=10)))
    t.start()
    time.sleep(0.1)  # the receiver is parked, detached
    tx.send(b"woken")
    t.join(timeout=10)
    assert got == [b"woken"]


def test_every_blocking_call_releases_the_gil(name):
    n = name()
    p = memshare.Publisher.create(n, depth=1, overflow="block")
    s = memshare.Subscriber.open(n)
    count, r = spins_while(lambda: s.recv(timeout=0.3))
    assert isinstance(r.get("error"), memshare.TimedOut) and count > 10_000
    p.publish_copy(b"fill")
    count, r = spins_while(lambda: p.loan(1, timeout=0.3))
    assert isinstance(r.get("error"), memshare.TimedOut) and count > 10_000
    m = name()
    srv = memshare.Server.create(m)
    c = memshare.Client.connect(m)
    count, r = spins_while(lambda: srv.recv(timeout=0.3))
    assert isinstance(r.get("error"), memshare.TimedOut) and count > 10_000
    count, r = spins_while(lambda: c.call(b"nobody answers", timeout=0.3))
    assert isinstance(r.get("error"), memshare.TimedOut) and count > 10_000
    full = memshare.Sender.create(64)
    _rx = memshare.Receiver.attach(full.segment)
    while full.try_send(bytes(16)):
        pass
    count, r = spins_while(lambda: full.send(bytes(16), timeout=0.3))
    assert isinstance(r.get("error"), memshare.TimedOut) and count > 10_000


def test_a_sample_released_by_another_thread_while_the_subscriber_waits(name):
    """A release that finds the subscriber busy waiting is deferred to it,
    never waited for with the GIL held."""
    n = name()
    p = memshare.Publisher.create(n, max_held=2)
    s = memshare.Subscriber.open(n)
    p.publish_copy(b"held")
    held = s.recv(timeout=5)
    got = []
    t = threading.Thread(target=lambda: got.append(s.recv_bytes(timeout=10)))
    t.start()
    time.sleep(0.1)  # the other thread holds the subscriber, waiting
    start = time.monotonic()
    held.release()  # must not block this thread for the wait's length
    assert time.monotonic() - start < 0.5
    p.publish_copy(b"next")
    t.join(timeout=10)
    assert got == [b"next"]
    # The deferred release happened: two samples can be held again.
    p.publish_copy(b"a")
    p.publish_copy(b"b")
    x, y = s.recv(timeout=5), s.recv(timeout=5)
    assert (bytes(x), bytes(y)) == (b"a", b"b")
