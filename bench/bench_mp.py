#!/usr/bin/env python3
"""bench_mp.py - procpool-bench's measurements with multiprocessing.Pool.

    python3 bench_mp.py [--workers=2] [--startups=20] [--rtts=2000]
                        [--calls=100000] [--mib=256] [--start-method=M]

Prints the same rows as procpool-bench ("key value unit description"):

    startup_ms        Pool(workers) + one apply() + close() and join(), median
    startup_spawn_ms  the same with the "spawn" start method, which starts
                      fresh interpreters as procpool starts fresh processes
                      (only when the default method is another one)
    rtt_us            one apply() of a tiny call, median
    tput_*_cps        tiny calls per second through starmap() with chunksize
                      1, the default chunksize, and 64
    echo_gbps         one large bytes argument echoed back: its size divided
                      by the apply() time, median of 3

Tiny calls carry 8 bytes, as in procpool-bench.
"""
import argparse
import multiprocessing as mp
import statistics
import time


def echo(x):
    return x


TINY = b"12345678"


def row(key, value, unit, what):
    print(f"{key:<18} {value:14.2f}  {unit:<8} {what}", flush=True)


def startup(ctx, workers, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        pool = ctx.Pool(workers)
        pool.apply(echo, (TINY,))
        pool.close()
        pool.join()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--startups", type=int, default=20)
    ap.add_argument("--rtts", type=int, default=2000)
    ap.add_argument("--calls", type=int, default=100000)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--start-method", default=None,
                    help="fork, spawn or forkserver (default: the platform's)")
    ap.add_argument("--no-raw", action="store_true",
                    help="accepted for symmetry with procpool-bench")
    a = ap.parse_args()
    ctx = mp.get_context(a.start_method)
    method = ctx.get_start_method()
    big = a.mib << 20
    print(f"# python {'.'.join(map(str, __import__('sys').version_info[:3]))}"
          f" multiprocessing ({method}): {a.workers} workers, {a.calls} calls,"
          f" {a.mib} MiB echo", flush=True)

    row("startup_ms", startup(ctx, a.workers, a.startups), "ms",
        f"Pool + 1 apply + close/join ({method}), median")
    if method != "spawn":
        row("startup_spawn_ms",
            startup(mp.get_context("spawn"), a.workers,
                    max(3, a.startups // 4)),
            "ms", "Pool + 1 apply + close/join (spawn), median")

    with ctx.Pool(a.workers) as pool:
        for _ in range(100):  # warm up
            pool.apply(echo, (TINY,))
        times = []
        for _ in range(a.rtts):
            t0 = time.perf_counter()
            pool.apply(echo, (TINY,))
            times.append((time.perf_counter() - t0) * 1e6)
        row("rtt_us", statistics.median(times), "us",
            "tiny apply() round trip, median")

        items = [(TINY,)] * a.calls
        for key, chunksize, what in (
                ("tput_c1_cps", 1, "starmap, chunksize 1"),
                ("tput_auto_cps", None, "starmap, default chunksize"),
                ("tput_c64_cps", 64, "starmap, chunksize 64")):
            t0 = time.perf_counter()
            out = pool.starmap(echo, items, chunksize)
            dt = time.perf_counter() - t0
            assert len(out) == a.calls
            row(key, a.calls / dt, "calls/s", what)

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
