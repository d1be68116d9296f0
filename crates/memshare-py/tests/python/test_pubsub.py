"""Publish-subscribe: loans, samples, history, overflow, limits."""

import numpy as np
import pytest

import memshare


def test_loan_publish_and_receive_in_place(name):
    n = name()
    with memshare.Publisher.create(n, max_message_len=1 << 16, max_subscribers=2) as p:
        a = memshare.Subscriber.open(n)
        b = memshare.Subscriber.open(n)
        loan = p.loan(16)
        assert len(loan) == 16 and loan.sequence == 0 and not loan.readonly
        np.frombuffer(loan, np.uint8)[:] = np.arange(16, dtype=np.uint8)
        loan.publish()
        with pytest.raises(ValueError, match="already published"):
            loan.publish()
        p.publish_copy(b"copy")
        for s in (a, b):
            with s.recv(timeout=5) as smp:
                assert (np.frombuffer(smp, np.uint8) == np.arange(16)).all()
                assert smp.publisher == p.id and smp.sequence == 0 and smp.readonly
            assert s.recv_bytes(timeout=5) == b"copy"
            assert s.received == 2 and s.missed == 0
        assert p.next_sequence == 2
        assert p.config["max_subscribers"] == 2 and a.config == p.config
        assert a.name == n and p.name == n
        a.close()
        b.close()


def test_history_for_late_subscribers_and_several_samples_held(name):
    n = name()
    p = memshare.Publisher.create(n, history=2, depth=4, max_held=2)
    for i in range(3):
        p.publish_copy(f"m{i}".encode())
    s = memshare.Subscriber.open(n)
    x, y = s.recv(timeout=5), s.recv(timeout=5)
    assert (bytes(x), bytes(y)) == (b"m1", b"m2")
    p.publish_copy(b"m3")
    with pytest.raises(memshare.LimitReached):
        s.recv(timeout=1)
    x.release()
    assert bytes(s.recv(timeout=5)) == b"m3"


def test_drop_oldest_counts_missed_and_block_waits(name):
    n = name()
    p = memshare.Publisher.create(n, depth=2, overflow="drop_oldest")
    s = memshare.Subscriber.open(n)
    for i in range(5):
        p.publish_copy(bytes([i]))
    got = [s.recv_bytes(timeout=5) for _ in range(2)]
    assert got == [b"\x03", b"\x04"] and s.missed == 3
    n2 = name()
    q = memshare.Publisher.create(n2, depth=2, overflow="block")
    t = memshare.Subscriber.open(n2)
    assert q.try_publish_copy(b"1") and q.try_publish_copy(b"2")
    assert not q.try_publish_copy(b"3")
    with pytest.raises(memshare.TimedOut):
        q.publish_copy(b"3", timeout=0.05)
    with pytest.raises(memshare.TimedOut):
        q.loan(1, timeout=0.05)
    assert t.recv_bytes() == b"1"
    q.publish_copy(b"3", timeout=1)
    with pytest.raises(ValueError):
        memshare.Publisher.create(name(), overflow="sometimes")


def test_loans_discard_with_and_open_loan_rules(name):
    n = name()
    p = memshare.Publisher.create(n)
    s = memshare.Subscriber.open(n)
    lo = p.loan(4)
    with pytest.raises(ValueError, match="loan is still open"):
        p.publish_copy(b"x")
    arr = np.frombuffer(lo, np.uint8)
    with pytest.raises(BufferError):
        lo.publish()
    del arr
    lo.discard()
    with p.loan(2) as l2:
        l2.write(b"ok")
    with pytest.raises(KeyError):
        with p.loan(2) as l3:
            l3.write(b"no")
            raise KeyError("discarded")
    assert s.recv_bytes(timeout=5) == b"ok"
    assert s.try_recv() is None
    with pytest.raises(memshare.TooLarge):
        p.loan(4097)


def test_subscriber_sees_disconnected_and_open_errors(name):
    n = name()
    p = memshare.Publisher.create(n)
    s = memshare.Subscriber.open(n)
    p.publish_copy(b"bye")
    p.close()
    assert s.recv_bytes(timeout=5) == b"bye"
    with pytest.raises(memshare.Disconnected):
        s.recv(timeout=5)
    with pytest.raises(memshare.NotFound):
        memshare.Subscriber.open(name())
    with pytest.raises(memshare.TimedOut):
        memshare.Subscriber.open_timeout(name(), 0.05)
    seg_name = name()
    seg = memshare.Segment.create_named(seg_name, 8192)
    with pytest.raises(memshare.NotAService):
        memshare.Subscriber.open(seg_name)
    seg.close()


def test_open_and_open_or_create(name):
    n = name()
    p = memshare.Publisher.open_or_create(n, max_publishers=2, history=1)
    q = memshare.Publisher.open(n)
    with pytest.raises(memshare.LimitReached):
        memshare.Publisher.open_or_create(n)  # both slots are taken
    q.close()
    r = memshare.Publisher.open_or_create(n)  # the freed slot
    assert r.config["max_publishers"] == 2
    r.close()
    p.publish_copy(b"x")
    s = memshare.Subscriber.open(n)
    assert s.recv_bytes(timeout=5) == b"x"
    with pytest.raises(memshare.AlreadyExists):
        memshare.Publisher.create(n)


def test_a_sample_outlives_its_subscriber_object(name):
    n = name()
    p = memshare.Publisher.create(n)
    s = memshare.Subscriber.open(n)
    p.publish_copy(b"still readable")
    smp = s.recv(timeout=5)
    del s
    assert bytes(smp) == b"still readable"
    smp.release()
