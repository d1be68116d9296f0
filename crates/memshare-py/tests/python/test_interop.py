"""multiprocessing.shared_memory and memshare, both ways, and the
resource tracker trap (Python <= 3.12 unlinks names it merely opened)."""

import os
import subprocess
import sys
from multiprocessing import resource_tracker, shared_memory

import numpy as np

import memshare


def untrack(shm):
    """What every opener of a name it does not own must do on 3.8-3.12
    (3.13+: SharedMemory(name, track=False))."""
    if sys.version_info < (3, 13):
        resource_tracker.unregister(shm._name, "shared_memory")


def test_multiprocessing_opens_a_memshare_name(name):
    n = name()
    seg = memshare.Segment.create_named(n, 1 << 16)
    np.frombuffer(seg.map(), np.uint8)[:5] = list(b"hello")
    shm = shared_memory.SharedMemory(name=n)
    untrack(shm)
    assert shm.size >= 1 << 16 and bytes(shm.buf[:5]) == b"hello"
    shm.buf[100:105] = b"reply"
    shm.close()
    assert seg.map().read(100, 5) == b"reply"
    seg.close()
    assert not os.path.exists(f"/dev/shm/{n}")  # memshare's lifetime rules it


def test_memshare_opens_a_multiprocessing_name():
    shm = shared_memory.SharedMemory(create=True, size=8192)
    try:
        shm.buf[:6] = b"python"
        seg = memshare.Segment.open(shm.name)
        assert seg.size == 8192
        v = seg.map()
        assert v.read(0, 6) == b"python"
        v.write(b"memshare", 10)
        v.close()
        seg.close()
        # Python made it: memshare never removes it.
        assert os.path.exists(f"/dev/shm/{shm.name}")
        assert bytes(shm.buf[10:18]) == b"memshare"
    finally:
        shm.close()
        shm.unlink()


def test_the_resource_tracker_trap_and_its_fix(name):
    """A child that opens a memshare name with SharedMemory and exits
    removes the name on 3.8-3.12, unless it unregisters it."""
    n = name()
    seg = memshare.Segment.create_named(n, 4096)
    fixed = f"""
from multiprocessing import shared_memory, resource_tracker
import sys
shm = shared_memory.SharedMemory(name={n!r})
if sys.version_info < (3, 13):
    resource_tracker.unregister(shm._name, "shared_memory")
shm.close()
"""
    subprocess.run([sys.executable, "-c", fixed], check=True, timeout=30)
    assert os.path.exists(f"/dev/shm/{n}")
    if sys.version_info < (3, 13):
        trap = f"""
from multiprocessing import shared_memory
shm = shared_memory.SharedMemory(name={n!r})
shm.close()
"""
        subprocess.run([sys.executable, "-c", trap], check=True, timeout=30,
                       capture_output=True)
        assert not os.path.exists(f"/dev/shm/{n}"), "the tracker removed the name"
    seg.close()


def test_a_rust_made_name_read_by_python_and_back(peer, name):
    n = name()
    p = peer("segment-hold", n, 4096, "written by rust")
    assert p.line() == "ready"
    seg = memshare.Segment.open(n)
    v = seg.map()
    assert v.read(0, 15) == b"written by rust"
    v.write(b"written by python", 100)
    p.send()
    assert p.finish() == ["written by python"]
    v.close()
    seg.close()


def test_a_python_made_name_written_by_rust(peer, name):
    n = name()
    seg = memshare.Segment.create_named(n, 4096)
    peer("segment-write", n, "rust was here").finish()
    assert seg.map().read(0, 13) == b"rust was here"
