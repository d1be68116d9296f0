"""Channels between Python threads and processes: send, reserve/commit,
recv (in place), recv_bytes, timeouts, disconnection, buffer rules."""

import threading

import numpy as np
import pytest

import memshare


def test_send_and_recv_in_place(name):
    n = name()
    with memshare.Sender.create_named(n, 1 << 16) as tx, memshare.Receiver.open(n) as rx:
        assert (tx.name, rx.name) == (n, n)
        assert tx.capacity == rx.capacity == 1 << 16
        assert tx.max_message_len < tx.capacity
        tx.send(b"one")
        tx.send(bytearray(b"two"))
        tx.send(memoryview(b"xthreex")[1:-1])
        tx.send(np.arange(4, dtype=np.uint16))
        with rx.recv() as m:
            assert bytes(m) == b"one" and len(m) == 3 and m.readonly
        assert rx.recv_bytes() == b"two"
        assert rx.recv().tobytes() == b"three"
        m = rx.recv()
        assert (np.frombuffer(m, np.uint16) == np.arange(4)).all()
        assert rx.try_recv() is None


def test_reserve_commit_discard_and_with(name):
    tx = memshare.Sender.create(1 << 16)
    rx = memshare.Receiver.attach(tx.segment)
    r = tx.reserve(8)
    assert len(r) == 8 and not r.readonly
    np.frombuffer(r, np.uint8)[:] = 7
    r.commit()
    assert r.released
    with pytest.raises(ValueError, match="already committed"):
        r.commit()
    with tx.reserve(4) as r2:
        r2.write(b"abcd")
    d = tx.reserve(3)
    d.write(b"xyz")
    d.discard()
    d.discard()
    with pytest.raises(RuntimeError):
        with tx.reserve(5) as r3:
            r3.write(b"lost!")
            raise RuntimeError("the block fails: nothing is sent")
    assert rx.recv_bytes() == bytes([7] * 8)
    assert rx.recv_bytes() == b"abcd"
    assert rx.try_recv() is None


def test_an_open_reservation_blocks_other_sends_and_exports_block_commit():
    tx = memshare.Sender.create(4096)
    rx = memshare.Receiver.attach(tx.segment)
    r = tx.reserve(16)
    with pytest.raises(ValueError, match="reservation is still open"):
        tx.send(b"x")
    arr = np.frombuffer(r, np.uint8)
    arr[:] = 1
    with pytest.raises(BufferError, match="still exported"):
        r.commit()
    del arr
    r.commit()
    tx.send(b"after")
    assert rx.recv_bytes() == bytes([1] * 16)
    assert rx.recv_bytes() == b"after"


def test_a_dropped_reservation_sends_nothing():
    tx = memshare.Sender.create(4096)
    rx = memshare.Receiver.attach(tx.segment)
    r = tx.reserve(10)
    del r
    tx.send(b"only")
    assert rx.recv_bytes() == b"only"
    assert rx.try_recv() is None


def test_messages_are_valid_until_released(name):
    tx = memshare.Sender.create(4096)
    rx = memshare.Receiver.attach(tx.segment)
    tx.send(b"first")
    tx.send(b"second")
    m = rx.recv()
    arr = np.frombuffer(m, np.uint8)
    assert arr.ctypes.data == m.address
    # The next recv releases the previous message: not while it is lent.
    with pytest.raises(BufferError, match="still exported"):
        rx.recv()
    with pytest.raises(BufferError):
        m.release()
    del arr
    m2 = rx.recv()  # releases `m`
    assert m.released and bytes(m2) == b"second"
    with pytest.raises(BufferError, match="released"):
        memoryview(m)
    with pytest.raises(ValueError, match="released"):
        m.tobytes()
    m2.release()
    m2.release()
    assert "released" in repr(m2)


def test_recv_timeout_and_try_recv():
    tx = memshare.Sender.create(4096)
    rx = memshare.Receiver.attach(tx.segment)
    with pytest.raises(memshare.TimedOut) as e:
        rx.recv(timeout=0.05)
    assert isinstance(e.value, TimeoutError) and e.value.kind == "timed_out"
    assert "timed out" in str(e.value)
    assert rx.try_recv() is None
    with pytest.raises(ValueError):
        rx.recv(timeout=-1)


def test_disconnected_after_everything_was_received():
    tx = memshare.Sender.create(4096)
    rx = memshare.Receiver.attach(tx.segment)
    tx.send(b"last words")
    tx.close()
    assert tx.closed
    with pytest.raises(ValueError, match="closed"):
        tx.send(b"x")
    assert rx.recv_bytes() == b"last words"
    with pytest.raises(memshare.Disconnected) as e:
        rx.recv(timeout=5)
    assert isinstance(e.value, BrokenPipeError) and "sender is gone" in str(e.value)


def test_send_blocks_while_full_and_too_large_is_refused():
    tx = memshare.Sender.create(256)
    rx = memshare.Receiver.attach(tx.segment)
    with pytest.raises(memshare.TooLarge):
        tx.send(bytes(tx.max_message_len + 1))
    while tx.try_send(bytes(40)):
        pass
    with pytest.raises(memshare.TimedOut):
        tx.send(bytes(40), timeout=0.05)
    assert rx.recv_bytes() == bytes(40)
    tx.send(bytes(40), timeout=1)


def test_big_frames_between_threads_in_order():
    tx = memshare.Sender.create(16 << 20)
    rx = memshare.Receiver.attach(tx.segment)
    n, size = 40, 3 << 20

    def produce():
        for i in range(n):
            with tx.reserve(size) as r:
                a = np.frombuffer(r, np.uint8)
                a[:] = i
                del a
        tx.close()

    t = threading.Thread(target=produce)
    t.start()
    for i in range(n):
        with rx.recv(timeout=10) as m:
            a = np.frombuffer(m, np.uint8)
            assert a[0] == i and a[-1] == i and len(a) == size
            del a
    with pytest.raises(memshare.Disconnected):
        rx.recv(timeout=5)
    t.join()


def test_open_or_create_either_order(name):
    n = name()
    rx = memshare.Receiver.open_or_create(n, 4096)
    tx = memshare.Sender.open_or_create(n, 1 << 20)
    assert tx.capacity == 4096  # the existing channel keeps its capacity
    tx.send(b"hi")
    assert rx.recv_bytes() == b"hi"
    with pytest.raises(memshare.AlreadyAttached):
        memshare.Sender.open(n)
    with pytest.raises(memshare.AlreadyExists):
        memshare.Sender.create_named(n, 4096)


def test_close_refused_while_a_message_is_lent_then_releases_it():
    tx = memshare.Sender.create(4096)
    rx = memshare.Receiver.attach(tx.segment)
    tx.send(b"held")
    m = rx.recv()
    mv = memoryview(m)
    with pytest.raises(BufferError):
        rx.close()
    mv.release()
    rx.close()
    assert m.released and rx.closed
    with pytest.raises(ValueError, match="closed"):
        rx.recv(timeout=0)
    rx.close()


def test_attach_to_something_else_is_not_a_channel():
    seg = memshare.Segment.create(8192)
    with pytest.raises((memshare.NotAChannel, memshare.Corrupted)):
        memshare.Receiver.attach(seg)


def test_a_message_outlives_its_receiver_object():
    tx = memshare.Sender.create(4096)
    rx = memshare.Receiver.attach(tx.segment)
    tx.send(b"kept alive")
    m = rx.recv()
    del rx  # the message keeps the receiver (and its mapping) alive
    assert bytes(m) == b"kept alive"
    m.release()


def test_an_anonymous_channel_made_by_the_receiver():
    rx = memshare.Receiver.create(4096)
    assert rx.name is None and "anonymous" in repr(rx)
    tx = memshare.Sender.attach(rx.segment)
    tx.send(b"to the creator")
    assert rx.recv_bytes(timeout=5) == b"to the creator"
    rx.close()
    with pytest.raises(ValueError, match="closed"):
        rx.segment  # the endpoint's handle went with it


def test_a_signal_interrupts_a_wait_without_timeout():
    """A blocking call runs Python's signal handlers between its waits, so
    Ctrl-C (or any handler that raises) ends it."""
    import os
    import signal
    import time

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted()

    old = signal.signal(signal.SIGUSR1, handler)
    tx = memshare.Sender.create(4096)
    rx = memshare.Receiver.attach(tx.segment)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1))
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(Interrupted):
            rx.recv()  # no timeout: only the signal ends it
        assert time.monotonic() - start < 2
    finally:
        timer.join()
        signal.signal(signal.SIGUSR1, old)
    tx.send(b"still usable")
    assert rx.recv_bytes(timeout=5) == b"still usable"


WAIT_FOR_A_SERVICE = """if 1:
    import signal, sys, time, memshare
    # Python's own handler, whatever was inherited: a shell runs background
    # jobs with SIGINT ignored, and Python then keeps it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    which, name = sys.argv[1], sys.argv[2]
    wait = {"connect": memshare.Client.connect_timeout,
            "open": memshare.Subscriber.open_timeout}[which]
    try:
        # (In the try: a SIGINT that comes before the wait is caught too.)
        start = time.monotonic()
        print("waiting", flush=True)
        wait(name, 30)
        print("attached")
    except KeyboardInterrupt:
        print(f"interrupted after {time.monotonic() - start:.2f} s")
"""


@pytest.mark.parametrize("which", ["connect", "open"])
def test_ctrl_c_interrupts_waiting_for_a_service(pychild, name, which):
    """Client.connect_timeout and Subscriber.open_timeout wait in slices too:
    SIGINT (Ctrl-C) raises KeyboardInterrupt at once, not when the timeout
    is over."""
    import signal
    import time

    child = pychild(WAIT_FOR_A_SERVICE, which, name())
    assert child.line() == "waiting"
    time.sleep(0.3)  # in the wait
    start = time.monotonic()
    child.p.send_signal(signal.SIGINT)
    (out,) = child.finish(timeout=10)
    assert out.startswith("interrupted") and time.monotonic() - start < 3, out
