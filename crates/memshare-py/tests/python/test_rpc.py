"""Request/response: call, pipelining, zero-copy responses, declines."""

import gc
import threading

import numpy as np
import pytest

import memshare


def serve(server, n, answer=lambda b: b.upper()):
    def run():
        for _ in range(n):
            with server.recv(timeout=10) as req:
                req.respond(answer(bytes(req)))

    t = threading.Thread(target=run)
    t.start()
    return t


def test_call_and_respond(name):
    n = name()
    with memshare.Server.create(n, max_clients=4, max_response_len=1 << 16) as srv:
        c = memshare.Client.connect(n)
        assert srv.config["max_clients"] == 4 and c.config == srv.config
        t = serve(srv, 2)
        r = c.call(b"hello", timeout=10)
        assert bytes(r) == b"HELLO" and r.readonly
        assert bytes(c.call(np.frombuffer(b"numpy", np.uint8))) == b"NUMPY"
        assert r.released  # the next call released it
        t.join()
        (info,) = srv.clients()
        assert (info["slot"], info["instance"]) == c.id and info["served"] == 2
        c.close()


def test_pipelined_requests_answered_in_any_order(name):
    n = name()
    srv = memshare.Server.create(n)
    c = memshare.Client.connect_timeout(n, 5)
    p1, p2 = c.send_request(b"one"), c.send_request(b"two")
    assert c.in_flight == 2 and p1.id != p2.id
    r1, r2 = srv.recv(timeout=5), srv.recv(timeout=5)
    assert (bytes(r1), bytes(r2)) == (b"one", b"two")
    assert r1.client == c.id and (r1.id, r2.id) == (p1.id, p2.id)
    r2.respond(b"TWO")
    r1.respond(b"ONE")
    assert bytes(c.receive_response(p2)) == b"TWO"
    assert c.try_receive_response(p1).tobytes() == b"ONE"
    assert p1.done and p2.done
    with pytest.raises(ValueError, match="received already"):
        c.receive_response(p1)


def test_zero_copy_response_from_the_request(name):
    n = name()
    srv = memshare.Server.create(n)
    c = memshare.Client.connect(n)
    p = c.send_request(np.arange(8, dtype=np.int32))
    req = srv.recv(timeout=5)
    out = req.loan_response(32)
    np.frombuffer(out, np.int32)[:] = np.frombuffer(req, np.int32) * 10
    with pytest.raises(BufferError):  # the request's buffer is still lent
        arr = np.frombuffer(req, np.int32)
        out.send()
    del arr
    out.send()
    assert req.released and out.released
    got = c.receive_response(p, timeout=5)
    assert (np.frombuffer(got, np.int32) == np.arange(8) * 10).all()


def test_declined_and_too_large(name):
    n = name()
    srv = memshare.Server.create(n, max_request_len=16, max_response_len=8)
    c = memshare.Client.connect(n)
    with pytest.raises(memshare.TooLarge):
        c.call(bytes(17))
    p = c.send_request(b"no")
    srv.recv(timeout=5).decline()
    with pytest.raises(memshare.NoResponse):
        c.receive_response(p, timeout=5)
    p = c.send_request(b"big")
    with pytest.raises(memshare.TooLarge):  # left unanswered: the temporary declines it
        srv.recv(timeout=5).respond(bytes(9))
    with pytest.raises(memshare.NoResponse):
        c.receive_response(p, timeout=5)
    p = c.send_request(b"dropped")
    del_me = srv.recv(timeout=5)
    del del_me  # unanswered and gone: declined
    with pytest.raises(memshare.NoResponse):
        c.receive_response(p, timeout=5)
    p = c.send_request(b"with")
    with srv.recv(timeout=5):
        pass
    with pytest.raises(memshare.NoResponse):
        c.receive_response(p, timeout=5)
    p = c.send_request(b"loan discarded")
    req = srv.recv(timeout=5)  # kept: its going away must not be what declines
    with pytest.raises(RuntimeError):
        with req.loan_response(4) as out:
            raise RuntimeError("declined")
    assert out.released and req.released
    with pytest.raises(memshare.NoResponse):
        c.receive_response(p, timeout=5)
    del req


def test_a_loan_outlives_its_request_object(name):
    """A ResponseLoan owns the answer: the Request object going away (a
    temporary, or dropped) neither declines nor invalidates it."""
    n = name()
    srv = memshare.Server.create(n, max_in_flight=1)
    c = memshare.Client.connect(n)
    p = c.send_request(b"temporary")
    with srv.recv(timeout=5).loan_response(4) as out:
        out.write(b"ok!!")
    assert bytes(c.receive_response(p, timeout=5)) == b"ok!!"
    p = c.send_request(b"dropped")
    req = srv.recv(timeout=5)
    loan = req.loan_response(4)
    mv = memoryview(loan)
    del req
    gc.collect()
    assert not loan.released
    with pytest.raises(memshare.LimitReached):  # the request is still owed
        c.send_request(b"second")
    mv[:] = b"kept"
    mv.release()
    loan.send()
    assert bytes(c.receive_response(p, timeout=5)) == b"kept"


def test_a_request_whose_response_is_on_loan_is_answered_by_the_loan_only(name):
    """decline() and respond() on a request whose response is on loan are
    refused (they would pull the loan's memory from under its buffers);
    the end of a `with` block of the request leaves the loan alone."""
    n = name()
    srv = memshare.Server.create(n, max_in_flight=1)
    c = memshare.Client.connect(n)
    p = c.send_request(b"first")
    req = srv.recv(timeout=5)
    loan = req.loan_response(4)
    mv = memoryview(loan)
    with pytest.raises(ValueError, match="on loan"):
        req.decline()
    with pytest.raises(ValueError, match="on loan"):
        req.respond(b"GOOD")
    with pytest.raises(ValueError, match="on loan"):
        req.loan_response(4)
    with req:
        pass
    assert not loan.released and not req.released and bytes(req) == b"first"
    mv[:] = b"GOOD"
    mv.release()
    loan.send()
    assert req.released
    req.decline()  # answered: declining is nothing
    with pytest.raises(ValueError, match="already answered"):
        req.respond(b"again")
    assert bytes(c.receive_response(p, timeout=5)) == b"GOOD"
    # The next request gets its own answer, whatever the first one's
    # objects do now.
    p = c.send_request(b"second")
    req2 = srv.recv(timeout=5)
    req2.respond(b"NEXT")
    with pytest.raises(ValueError):
        loan.write(b"EVIL")
    assert bytes(c.receive_response(p, timeout=5)) == b"NEXT"



def test_a_loan_dropped_unsent_declines_but_never_under_the_requests_buffer(name):
    """A loan gone unsent declines its request at once, unless a buffer of
    the request is exported: then the request's memory stays, and declining
    is left to the Request (respond/loan_response are refused)."""
    n = name()
    srv = memshare.Server.create(n, max_in_flight=1)
    c = memshare.Client.connect(n)
    p = c.send_request(b"one")
    req = srv.recv(timeout=5)
    loan = req.loan_response(4)
    del loan
    assert req.released
    with pytest.raises(memshare.NoResponse):
        c.receive_response(p, timeout=5)
    p = c.send_request(b"two")
    req = srv.recv(timeout=5)
    mv = memoryview(req)
    loan = req.loan_response(4)
    del loan
    gc.collect()
    assert not req.released and bytes(mv) == b"two"
    with pytest.raises(memshare.LimitReached):  # still owed: the slot is kept
        c.send_request(b"three")
    with pytest.raises(ValueError, match="dropped unsent"):
        req.respond(b"TWO")
    with pytest.raises(ValueError, match="dropped unsent"):
        req.loan_response(4)
    with pytest.raises(BufferError):
        req.decline()
    assert bytes(mv) == b"two"
    mv.release()
    req.decline()
    assert req.released
    with pytest.raises(memshare.NoResponse):
        c.receive_response(p, timeout=5)


def test_a_too_large_response_leaves_the_request_unanswered(name):
    """TooLarge from loan_response(n) or respond(data) changes nothing: the
    request's buffer stays valid (even exported) and the request can
    still be answered or declined."""
    n = name()
    srv = memshare.Server.create(n, max_in_flight=1, max_response_len=8)
    c = memshare.Client.connect(n)
    p = c.send_request(b"first")
    req = srv.recv(timeout=5)
    mv = memoryview(req)
    with pytest.raises(memshare.TooLarge):
        req.loan_response(9)
    with pytest.raises(memshare.TooLarge):
        req.respond(bytes(9))
    assert not req.released and bytes(mv) == b"first"
    assert c.try_receive_response(p) is None  # not declined
    mv.release()
    req.respond(b"FIRST")
    assert bytes(c.receive_response(p, timeout=5)) == b"FIRST"


def test_timeouts_limits_and_disconnection(name):
    n = name()
    srv = memshare.Server.create(n, max_clients=1, max_in_flight=1)
    c = memshare.Client.connect(n)
    with pytest.raises(memshare.LimitReached):
        memshare.Client.connect(n)
    with pytest.raises(memshare.TimedOut):
        srv.recv(timeout=0.05)
    assert srv.try_recv() is None
    p = c.send_request(b"slow")
    with pytest.raises(memshare.TimedOut):
        c.receive_response(p, timeout=0.05)
    assert not p.done and c.try_receive_response(p) is None
    with pytest.raises(memshare.LimitReached):
        c.send_request(b"second")
    req = srv.recv(timeout=5)
    req.respond(b"late")
    assert bytes(c.receive_response(p, timeout=5)) == b"late"
    with pytest.raises(memshare.AlreadyAttached):
        memshare.Server.create(n)
    srv.close()
    with pytest.raises(memshare.Disconnected):
        c.call(b"anyone?", timeout=5)
    with pytest.raises(memshare.NotFound):
        memshare.Client.connect(name())
    with pytest.raises(memshare.TimedOut):
        memshare.Client.connect_timeout(name(), 0.05)


def test_a_held_response_must_be_unexported_before_the_next_call(name):
    n = name()
    srv = memshare.Server.create(n)
    c = memshare.Client.connect(n)
    t = serve(srv, 2)
    r = c.call(b"a", timeout=5)
    mv = memoryview(r)
    with pytest.raises(BufferError):
        c.call(b"b", timeout=5)
    mv.release()
    assert bytes(c.call(b"b", timeout=5)) == b"B"
    t.join()
