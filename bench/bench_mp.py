#!/usr/bin/env python3
"""bench_mp.py - procpool-bench's figures with multiprocessing.Pool.

    python3 bench_mp.py --figure=NAME [--workers=2] [--calls=1000000]
                        [--mib=256] [--start-method=M]

Each run measures one figure in a fresh interpreter and prints it as
"key value unit description", as procpool-bench does; bench/run.sh
interleaves the runs and takes medians.

    startup        Pool(workers) + one apply() + close() and join(), ms,
                   median of 10 (the platform's start method)
    startup_spawn  the same with "spawn", which starts fresh interpreters
                   as procpool starts fresh processes
    rtt            one apply() of a tiny call, us, median of 2000
    tiny           starmap() of --calls tiny calls with the default
                   chunksize, calls/s; then the peak resident memory of
                   the process, MB
    c1             starmap() of --calls/10 tiny calls with chunksize 1
    echo           one --mib bytes argument echoed, GB/s, median of 3

Every tiny call gets an argument object of its own (8 distinct bytes):
one repeated tuple would be memoized by pickle and flatter Python.
"""
import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time


def echo(x):
    return x


TINY = b"12345678"


def row(key, value, unit, what):
    print(f"{key:<18} {value:14.3f}  {unit:<8} {what}", flush=True)


def startup(ctx, workers, n=10):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        pool = ctx.Pool(workers)
        pool.apply(echo, (TINY,))
        pool.close()
        pool.join()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def distinct(n):
    """n one-element tuples, each with its own 8-byte argument."""
    return [(((i * 0x9E3779B97F4A7C15) & (2**64 - 1)).to_bytes(8, "little"),)
            for i in range(n)]


def tput(pool, items, chunksize):
    t0 = time.perf_counter()
    out = pool.starmap(echo, items, chunksize)
    dt = time.perf_counter() - t0
    assert len(out) == len(items) and out[-1] == items[-1][0]
    return len(items) / dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figure", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--calls", type=int, default=1000000)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--start-method", default=None,
                    help="fork, spawn or forkserver (default: the platform's)")
    a = ap.parse_args()
    ctx = mp.get_context(a.start_method)
    method = ctx.get_start_method()
    f = a.figure

    if f == "startup":
        row("startup_ms", startup(ctx, a.workers), "ms",
            f"Pool + 1 apply + close/join ({method}), median of 10")
        return
    if f == "startup_spawn":
        row("startup_spawn_ms", startup(mp.get_context("spawn"), a.workers),
            "ms", "Pool + 1 apply + close/join (spawn), median of 10")
        return
    if f == "imap":
        # Python's imap over a generator, with a chunk size that lets it
        # batch (its default, 1, runs at the c1 figure's rate).
        n = a.calls
        with ctx.Pool(a.workers) as pool:
            gen = (((i * 0x9E3779B97F4A7C15) & (2**64 - 1)).to_bytes(8, "little")
                   for i in range(n))
            t0 = time.perf_counter()
            count = 0
            for _ in pool.imap(echo, gen, 1000):
                count += 1
            dt = time.perf_counter() - t0
            assert count == n
        row("imap_cps", n / dt, "calls/s",
            "imap over a generator, chunksize 1000, in order")
        return
    if f not in ("rtt", "tiny", "c1", "echo"):
        sys.exit(f"bench_mp.py: no figure '{f}'")

    # The arguments exist before the pool, as the caller's data would.
    if f == "tiny":
        items = distinct(a.calls)
    elif f == "c1":
        items = distinct(a.calls // 10)
    with ctx.Pool(a.workers) as pool:
        if f == "rtt":
            for _ in range(200):  # warm up
                pool.apply(echo, (TINY,))
            times = []
            for _ in range(2000):
                t0 = time.perf_counter()
                pool.apply(echo, (TINY,))
                times.append((time.perf_counter() - t0) * 1e6)
            row("rtt_us", statistics.median(times), "us",
                "tiny apply() round trip, median of 2000")
        elif f == "tiny":
            row("tiny_cps", tput(pool, items, None), "calls/s",
                "starmap, default chunksize")
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            row("tiny_rss_mb", rss, "MB",
                "peak resident memory of the process after the map")
        elif f == "c1":
            row("c1_cps", tput(pool, items, 1), "calls/s",
                "starmap, chunksize 1")
        else:
            big = a.mib << 20
            data = bytes(range(256)) * (big // 256)
            rates = []
            for _ in range(3):
                t0 = time.perf_counter()
                back = pool.apply(echo, (data,))
                rates.append(big / 1e9 / (time.perf_counter() - t0))
                assert back == data
                del back
            row("echo_gbps", statistics.median(rates), "GB/s",
                "large bytes argument echoed, median of 3")


if __name__ == "__main__":
    main()
