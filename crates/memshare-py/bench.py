"""memshare from Python against multiprocessing, in the same run.

    python bench.py [--rust PEER] [--repeat N] [--quick] [--json FILE]

Cases (two processes each; the consumer measures from its first message
to its last, so process start-up is not counted):

- frames: 6 MB numpy frames, Python -> Python. The producer makes each
  frame (fills it with its number: a stand-in for a camera or renderer).
  memshare: it makes it in place in a reservation (reserve + numpy write,
  commit), and the consumer receives it as a numpy view (no copy).
  multiprocessing.Queue: made in an array, put/get (pickled).
  multiprocessing.Pipe: made in an array, send_bytes / recv_bytes +
  numpy.frombuffer. Each consumer reads the first and last byte.
- small: 64-byte messages, Python -> Python. memshare: send / recv_bytes;
  Pipe: send_bytes / recv_bytes.
- rust: (with --rust PEER, the crate's examples/peer.rs) 6 MB frames from a
  Rust process, received in Python as numpy views; every array's data is
  checked to lie inside the channel's shared mapping (/proc/self/maps) and
  to be the message's own memory, i.e. no copy was made.

Ratios are medians of --repeat runs (default 3). Floors (issue 17):
frames >= 20x Queue and >= 5x Pipe; small >= 3x Pipe.
"""

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import memshare

FRAME = 6 * 1024 * 1024
SMALL = 64


def name(tag):
    return f"msbench-py-{os.getpid()}-{tag}"


# --- consumers (in a child process) -----------------------------------------


def consume_memshare(chan, n, ready, out):
    rx = memshare.Receiver.open(chan)
    ready.set()
    total = 0
    first = last = 0.0
    for i in range(n):
        with rx.recv(timeout=60) as m:
            a = np.frombuffer(m, np.uint8)
            total += int(a[0]) + int(a[-1])
            del a
        if i == 0:
            first = time.perf_counter()
    last = time.perf_counter()
    rx.close()
    out.send((first, last, total))


def consume_memshare_small(chan, n, ready, out):
    rx = memshare.Receiver.open(chan)
    ready.set()
    recv = rx.recv_bytes
    total = 0
    first = 0.0
    for i in range(n):
        total += len(recv(60))
        if i == 0:
            first = time.perf_counter()
    last = time.perf_counter()
    rx.close()
    out.send((first, last, total))


def consume_queue(q, n, ready, out):
    ready.set()
    total = 0
    first = 0.0
    for i in range(n):
        a = q.get()
        total += int(a[0]) + int(a[-1])
        if i == 0:
            first = time.perf_counter()
    last = time.perf_counter()
    out.send((first, last, total))


def consume_pipe(conn, n, ready, out, frames):
    ready.set()
    total = 0
    first = 0.0
    for i in range(n):
        b = conn.recv_bytes()
        if frames:
            a = np.frombuffer(b, np.uint8)
            total += int(a[0]) + int(a[-1])
        else:
            total += len(b)
        if i == 0:
            first = time.perf_counter()
    last = time.perf_counter()
    out.send((first, last, total))


# --- producers (here) ------------------------------------------------------------


def render(frame, i):
    """Makes frame `i` in `frame` (a stand-in for a camera or a renderer
    writing its pixels): every transport's producer pays it once."""
    frame.fill(i & 0xFF)

ctx = mp.get_context("spawn")


def run_consumer(target, args):
    ready = ctx.Event()
    out_r, out_w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=target, args=(*args, ready, out_w))
    p.start()
    return p, ready, out_r


def finish(p, out_r, n):
    first, last, _ = out_r.recv()
    p.join(60)
    return (n - 1) / (last - first)  # messages per second, steady state


def frames_memshare(n):
    chan = name("frames")
    tx = memshare.Sender.create_named(chan, 4 * FRAME + 4096)
    p, ready, out = run_consumer(consume_memshare, (chan, n))
    ready.wait(60)
    for i in range(n):
        with tx.reserve(FRAME) as r:
            render(np.frombuffer(r, np.uint8), i)  # the frame, made in place
    rate = finish(p, out, n)
    tx.close()
    return rate


def frames_queue(n):
    q = ctx.Queue(maxsize=4)
    p, ready, out = run_consumer(consume_queue, (q, n))
    ready.wait(60)
    frame = np.empty(FRAME, np.uint8)
    for i in range(n):
        render(frame, i)
        q.put(frame)
    return finish(p, out, n)


def small_memshare(n):
    chan = name("small")
    tx = memshare.Sender.create_named(chan, 1 << 20)
    p, ready, out = run_consumer(consume_memshare_small, (chan, n))
    ready.wait(60)
    msg = bytes(SMALL)
    send = tx.send
    for _ in range(n):
        send(msg)
    rate = finish(p, out, n)
    tx.close()
    return rate


# Pipe's consumer takes a `frames` flag: bind it per case.
def _pipe_frames(conn, n, ready, out):
    consume_pipe(conn, n, ready, out, True)


def _pipe_small(conn, n, ready, out):
    consume_pipe(conn, n, ready, out, False)


def mappings_of(segment):
    """The address ranges /proc/self/maps shows for `segment`'s object
    (matched by inode: the path of a named object memshare created reads
    "/dev/shm/#<inode> (deleted)", its name having been linked in later)."""
    st = os.fstat(segment.fileno())
    ranges = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and int(parts[4]) == st.st_ino and parts[5].startswith("/dev/shm/"):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                ranges.append((lo, hi))
    return ranges


def rust_frames(peer, n):
    chan = name("rust")
    rx = memshare.Receiver.open_or_create(chan, 4 * FRAME)
    seg = rx.segment
    maps = mappings_of(seg)
    seg.close()
    child = subprocess.Popen([peer, "frames", chan, str(n), str(FRAME)],
                             stdout=subprocess.PIPE, text=True)
    inside = 0
    first = 0.0
    for i in range(n):
        with rx.recv(timeout=60) as m:
            a = np.frombuffer(m, np.uint8)
            addr = a.ctypes.data
            assert addr == m.address, "numpy made a copy"
            if any(lo <= addr and addr + a.nbytes <= hi for lo, hi in maps):
                inside += 1
            assert int.from_bytes(a[:8].tobytes(), "little") == i
            assert a[-1] == i % 251
            del a
        if i == 0:
            first = time.perf_counter()
    last = time.perf_counter()
    child.wait(60)
    rx.close()
    return (n - 1) / (last - first), inside, maps


def median_rate(fn, n, repeat):
    return statistics.median(fn(n) for _ in range(repeat))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rust", help="the peer program (examples/peer.rs), for the Rust -> Python case")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args()
    nf = 40 if args.quick else 200
    ns = 20_000 if args.quick else 200_000
    res = {}

    print(f"memshare {memshare.__version__}, Python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs; medians of {args.repeat} runs")
    ms = median_rate(frames_memshare, nf, args.repeat)
    qu = median_rate(frames_queue, max(nf // 4, 10), args.repeat)
    pi = median_rate(_frames_pipe, max(nf // 2, 10), args.repeat)
    res["frames"] = {"memshare": ms, "queue": qu, "pipe": pi}
    gb = FRAME / 1e9
    print(f"6 MB frames, Python -> Python ({nf} frames):")
    print(f"  memshare channel (reserve + numpy in place, recv as view): {ms:9.0f} frames/s  {ms * gb:6.2f} GB/s")
    print(f"  multiprocessing.Queue (put/get of the array):            {qu:9.0f} frames/s  {qu * gb:6.2f} GB/s")
    print(f"  multiprocessing.Pipe (send_bytes/recv_bytes):            {pi:9.0f} frames/s  {pi * gb:6.2f} GB/s")
    print(f"  memshare / Queue = {ms / qu:.1f}x (floor 20x: {'met' if ms / qu >= 20 else 'MISSED'}), "
          f"memshare / Pipe = {ms / pi:.1f}x (floor 5x: {'met' if ms / pi >= 5 else 'MISSED'})")

    sm = median_rate(small_memshare, ns, args.repeat)
    sp = median_rate(_small_pipe, ns, args.repeat)
    res["small"] = {"memshare": sm, "pipe": sp}
    print(f"64-byte messages, Python -> Python ({ns} messages):")
    print(f"  memshare channel (send / recv_bytes): {sm:10.0f} msg/s")
    print(f"  multiprocessing.Pipe (send_bytes/recv_bytes): {sp:10.0f} msg/s")
    print(f"  memshare / Pipe = {sm / sp:.1f}x (floor 3x: {'met' if sm / sp >= 3 else 'MISSED'})")

    if args.rust:
        rate, inside, maps = rust_frames(args.rust, nf)
        res["rust"] = {"frames_per_s": rate, "inside_mapping": inside, "frames": nf}
        print(f"6 MB frames, Rust -> Python ({nf} frames): {rate:.0f} frames/s  {rate * gb:.2f} GB/s")
        print(f"  numpy arrays whose data lies inside the channel's mapping "
              f"({', '.join(f'{lo:#x}-{hi:#x}' for lo, hi in maps)}): {inside}/{nf} (no copy)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


def _frames_pipe(n):
    a, b = ctx.Pipe(duplex=False)
    p, ready, out = run_consumer(_pipe_frames, (a, n))
    ready.wait(60)
    frame = np.empty(FRAME, np.uint8)
    for i in range(n):
        render(frame, i)
        b.send_bytes(frame)
    return finish(p, out, n)


def _small_pipe(n):
    a, b = ctx.Pipe(duplex=False)
    p, ready, out = run_consumer(_pipe_small, (a, n))
    ready.wait(60)
    msg = bytes(SMALL)
    send = b.send_bytes
    for _ in range(n):
        send(msg)
    return finish(p, out, n)


if __name__ == "__main__":
    main()
