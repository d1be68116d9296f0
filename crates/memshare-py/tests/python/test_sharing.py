"""Giving segments to other processes: inheritance (Python parent and
child, Rust parent and child) and send_segments/recv_segments."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import memshare

CHILD = """
import memshare, sys
seg = memshare.Segment.inherited(sys.argv[1])
v = seg.map()
print(v.read(0, 32).split(bytes(1))[0].decode(), seg.size, seg.readonly, flush=True)
v.write(b"from python child", 100)
"""


def test_python_parent_shares_with_a_python_child():
    seg = memshare.Segment.create(4096)
    view = seg.map()
    view.write(b"from python parent")
    with seg.share("frames") as offer:
        assert offer.env_var == "MEMSHARE_SEGMENT_FRAMES"
        assert offer.value.startswith(f"v1;handle={offer.fd};")
        kw = offer.popen_kwargs({"pass_fds": [], "stdout": subprocess.PIPE})
        assert offer.fd in kw["pass_fds"] and kw["env"][offer.env_var] == offer.value
        assert kw["env"]["PATH"] == os.environ["PATH"]
        child = subprocess.Popen([sys.executable, "-c", CHILD, "frames"], text=True, **kw)
    assert "closed" in repr(offer)
    with pytest.raises(ValueError):
        offer.fd
    out, _ = child.communicate(timeout=20)
    assert child.returncode == 0
    assert out.split() == ["from", "python", "parent", "4096", "False"]
    assert view.read(100, 17) == b"from python child"


def test_python_parent_shares_a_named_read_only_pair(name):
    n = name()
    a = memshare.Segment.create_named(n, 8192)
    a.map().write(b"named segment 1234")
    b = memshare.Segment.create(4096).to_readonly()
    with a.share("a") as oa, b.share("b") as ob:
        kw = ob.popen_kwargs(oa.popen_kwargs())
        assert len(kw["pass_fds"]) == 2
        script = """
import memshare
a = memshare.Segment.inherited("a")
b = memshare.Segment.inherited("b")
assert b.readonly and b.write_sealed, "b must be read-only"
print(a.name, a.map().read(0, 18).decode(), flush=True)
"""
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=20, **kw)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [n, "named", "segment", "1234"]


def test_a_value_passed_on_the_command_line(pychild):
    seg = memshare.Segment.create(4096)
    seg.map().write(b"by argv")
    with seg.share("argv") as offer:
        assert not offer.closed
        script = """
import memshare, sys
print(memshare.Segment.inherited_from("argv", sys.argv[1]).map().read(0, 7).decode(), flush=True)
"""
        child = pychild(script, offer.value, pass_fds=[offer.fd])
    assert offer.closed
    assert child.finish() == ["by argv"]


def test_inherited_errors_name_the_key():
    with pytest.raises(memshare.InvalidInput, match="NOPE"):
        memshare.Segment.inherited("nope")
    with pytest.raises(memshare.InvalidInput):
        memshare.Segment.create(4096).share("bad key")
    with pytest.raises(memshare.InvalidHandle):
        memshare.Segment.inherited_from("k", "v1;handle=x")


def test_rust_parent_shares_with_a_python_child(peer):
    p = peer("inherit-parent", "frames", sys.executable, "-c", CHILD, "frames")
    lines = p.finish()
    assert lines[0].split() == ["from", "rust", "parent", "4096", "False"]
    assert lines[-1] == "from python child"


def test_python_parent_shares_with_a_rust_child(peer_bin):
    seg = memshare.Segment.create(4096)
    view = seg.map()
    view.write(b"from python parent")
    with seg.share("frames") as offer:
        kw = offer.popen_kwargs()
        kw["env"]["MEMSHARE_TEST_CHILD"] = "1"
        out = subprocess.run([peer_bin, "inherited", "frames"], capture_output=True,
                             text=True, timeout=20, **kw)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "from python parent"
    assert view.read(100, 15) == b"from rust child"


def test_send_and_recv_segments_over_a_unix_socket(name):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    n = name()
    named = memshare.Segment.create_named(n, 8192)
    anon = memshare.Segment.create(4096)
    anon.map().write(b"anonymous")
    memshare.send_segments(a, {"named": named, "anon": anon})
    got = memshare.recv_segments(b)
    assert set(got) == {"named", "anon"}
    assert got["named"].name == n and got["named"].size == 8192
    assert got["anon"].map().read(0, 9) == b"anonymous"
    memshare.send_segments(a.fileno(), [("again", anon)])
    assert memshare.recv_segments(b.fileno())["again"].size == 4096
    with pytest.raises(TypeError):
        memshare.send_segments(object(), {})
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(TypeError, match="AF_UNIX"):
        memshare.send_segments(tcp, {"x": anon})
    tcp.close()
    a.close()
    with pytest.raises(memshare.Error):
        memshare.recv_segments(b)
    b.close()


def test_segments_cross_processes_over_a_socket(pychild):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    script = """
import memshare, socket, sys
s = socket.socket(fileno=int(sys.argv[1]))
seg = memshare.recv_segments(s)["chan"]
rx = memshare.Receiver.attach(seg)
print(rx.recv_bytes(timeout=10).decode(), flush=True)
"""
    tx = memshare.Sender.create(4096)
    child = pychild(script, b.fileno(), pass_fds=[b.fileno()])
    b.close()
    memshare.send_segments(a, {"chan": tx.segment})
    tx.send(b"through a passed channel")
    assert child.finish() == ["through a passed channel"]
    a.close()
    np.zeros(1)  # numpy stays importable beside the extension
