"""Segments and views: create, open, map, buffers, lifetimes."""

import os
import subprocess
import sys

import numpy as np
import pytest

import memshare


def test_create_named_map_and_open_again(name):
    n = name()
    with memshare.Segment.create_named(n, 8192) as seg:
        assert (seg.name, seg.size, seg.readonly) == (n, 8192, False)
        with seg.map() as view:
            assert (view.offset, view.size, len(view), view.readonly) == (0, 8192, 8192, False)
            view.write(b"hello", 10)
        other = memshare.Segment.open(n)
        assert other.map(10, 5).read() == b"hello"
        other.close()
        assert "8192 bytes" in repr(seg)
    assert not os.path.exists(f"/dev/shm/{n}")


def test_anonymous_segment_has_no_name_and_zeroes():
    seg = memshare.Segment.create(4096)
    assert seg.name is None
    assert seg.map().read(0, 16) == bytes(16)
    assert "anonymous" in repr(seg)


def test_numpy_views_are_zero_copy_both_ways(name):
    seg = memshare.Segment.create_named(name(), 1 << 20)
    a = seg.map()
    b = seg.map(4096, 4096)
    arr = np.frombuffer(a, dtype=np.uint32)
    assert arr.ctypes.data == a.address
    arr[1024:2048] = np.arange(1024, dtype=np.uint32)
    # The same memory through another view, another mapping.
    got = np.frombuffer(b, dtype=np.uint32)
    assert (got == np.arange(1024, dtype=np.uint32)).all()
    mv = memoryview(a)
    assert mv.nbytes == 1 << 20 and not mv.readonly
    mv[0:3] = b"abc"
    assert b.address != a.address and bytes(a.read(0, 3)) == b"abc"
    mv.release()
    del arr, got


def test_read_only_views_give_read_only_buffers(name):
    n = name()
    seg = memshare.Segment.create_named(n, 4096)
    seg.map().write(b"x")
    ro = memshare.Segment.open_readonly(n)
    assert ro.readonly
    v = ro.map()
    assert v.readonly
    arr = np.frombuffer(v, np.uint8)
    assert not arr.flags.writeable and arr[0] == ord("x")
    with pytest.raises(ValueError):
        arr[0] = 1
    mv = memoryview(v)
    assert mv.readonly
    with pytest.raises(TypeError):
        mv[0:1] = b"y"
    mv.release()
    import ctypes

    with pytest.raises((BufferError, TypeError)):  # a writable buffer is refused
        (ctypes.c_char * 10).from_buffer(v)
    with pytest.raises(memshare.PermissionDenied):
        ro.map(readonly=False)
    w = seg.map_readonly()
    assert w.readonly and memoryview(w).readonly
    with pytest.raises(BufferError):
        w.write(b"no")


def test_unmapping_is_refused_while_a_buffer_is_exported(name):
    seg = memshare.Segment.create_named(name(), 4096)
    view = seg.map()
    arr = np.frombuffer(view, np.uint8)
    with pytest.raises(BufferError, match="still exported"):
        view.close()
    assert not view.closed
    del arr
    view.close()
    assert view.closed and view.released
    with pytest.raises(BufferError):
        memoryview(view)
    with pytest.raises(ValueError):
        view.read()
    view.close()  # twice is nothing


def test_views_keep_the_segment_alive(name):
    n = name()
    seg = memshare.Segment.create_named(n, 4096)
    view = seg.map()
    seg.close()
    assert seg.closed and "closed" in repr(seg)
    with pytest.raises(ValueError):
        seg.map()
    view.write(b"still here")
    assert memshare.Segment.open(n).map().read(0, 10) == b"still here"
    arr = np.frombuffer(view, np.uint8)
    del view  # the array keeps the view, the view keeps the mapping
    assert bytes(arr[:5]) == b"still"
    del arr


def test_map_ranges_and_errors(name):
    seg = memshare.Segment.create(3 * 4096)
    v = seg.map(4097, 100)
    assert (v.offset, v.size) == (4097, 100)
    with pytest.raises(memshare.OutOfRange):
        seg.map(0, 3 * 4096 + 1)
    with pytest.raises(memshare.OutOfRange):
        seg.map(3 * 4096)
    with pytest.raises(ValueError):
        v.write(b"x" * 101)
    with pytest.raises(memshare.OutOfRange):
        memshare.Segment.create(0)


def test_a_read_past_the_end_is_out_of_range_before_anything_is_allocated():
    """View.read checks the range before it allocates the copy: a length no
    memory can hold is OutOfRange, as any other, not an abort (run in a
    child, so that an abort fails this test only)."""
    code = """if 1:
        import memshare
        v = memshare.Segment.create(4096).map()
        for offset, length in [(0, 10**15), (0, 2**64 - 1), (1, 2**64 - 1), (4096, 1),
                               (0, 4097), (5000, None)]:
            try:
                v.read(offset, length)
            except memshare.OutOfRange as e:
                assert "outside the view's 4096 bytes" in str(e), e
            else:
                raise AssertionError(f"read({offset}, {length}) was not refused")
        assert v.read(4096) == b"" and v.read(4000, 96) == bytes(96)
        print("ok")
    """
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr


def test_persist_and_remove(name):
    n = name()
    memshare.Segment.create_named(n, 4096, persist=True).close()
    assert os.path.exists(f"/dev/shm/{n}")
    memshare.Segment.open(n).close()
    memshare.remove(n)
    assert not os.path.exists(f"/dev/shm/{n}")
    with pytest.raises(memshare.NotFound):
        memshare.Segment.remove(n)


def test_reserve_and_populate_options(name):
    seg = memshare.Segment.create_named(name(), 1 << 16, reserve=True, populate=True)
    assert seg.map().read(0, 4) == bytes(4)
    assert memshare.Segment.create(1 << 16, reserve=True).size == 1 << 16


def test_to_readonly_is_sealed():
    seg = memshare.Segment.create(4096)
    w = seg.map()
    w.write(b"sealed")
    ro = seg.to_readonly()
    assert ro.readonly and ro.write_sealed and not seg.readonly
    assert ro.map().read(0, 6) == b"sealed"
    with pytest.raises(memshare.PermissionDenied):
        ro.map(readonly=False)


def test_fileno_is_the_segment(name):
    seg = memshare.Segment.create_named(name(), 8192)
    assert os.fstat(seg.fileno()).st_size == 8192


def test_message_and_view_reprs(name):
    seg = memshare.Segment.create_named(name(), 4096)
    v = seg.map_readonly(0, 10)
    assert "10 bytes read-only" in repr(v)
    v.close()
    assert "released" in repr(v)
