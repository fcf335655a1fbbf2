#!/usr/bin/env python3
"""Python anchors for coproc's benchmark harness (bench/, run by tools/bench.sh).

The harness runs this script inside one of its case children and reads what it prints on
stdout, one item per line:

    s <value>           a sample, in the unit of the benchmark group
    m <name> <value>    an extra figure
    skip <reason>       this anchor cannot run here

Timings use time.perf_counter_ns(), which reads CLOCK_MONOTONIC on Linux, the clock the C++
side uses. Every command does its warm-up first and prints only measured iterations.
"""

import argparse
import multiprocessing as mp
import sys
import time


def noop():
    pass


def echo(x):
    return x


def start_join(args):
    ctx = mp.get_context(args.method)
    for i in range(args.warmup + args.iterations):
        t0 = time.perf_counter_ns()
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        t1 = time.perf_counter_ns()
        if p.exitcode != 0:
            print(f"child ended with {p.exitcode}", file=sys.stderr)
            sys.exit(1)
        if i >= args.warmup:
            print(f"s {(t1 - t0) / 1000:.3f}")


def pipe_reader(conn, count, reps):
    for _ in range(reps):
        for _ in range(count):
            conn.recv_bytes()
        conn.send_bytes(b"k")


def pipe(args):
    # Pipe() is duplex by default: a socketpair, like the raw anchor on the C++ side.
    parent_end, child_end = mp.Pipe()
    reps = args.warmup + args.iterations
    p = mp.get_context("fork").Process(target=pipe_reader, args=(child_end, args.count, reps))
    p.start()
    child_end.close()
    payload = b"x" * args.size
    for r in range(reps):
        t0 = time.perf_counter_ns()
        for _ in range(args.count):
            parent_end.send_bytes(payload)
        parent_end.recv_bytes()
        t1 = time.perf_counter_ns()
        if r < args.warmup:
            continue
        seconds = (t1 - t0) / 1e9
        if args.quantity == "mib":
            print(f"s {args.count * args.size / (1 << 20) / seconds:.3f}")
        else:
            print(f"s {args.count / seconds:.3f}")
    p.join()
    if p.exitcode != 0:
        sys.exit(1)


def worker_cpu_us():
    # CPU time (user + system) of the process that runs it: run in a worker, what the worker
    # has used so far.
    import resource
    u = resource.getrusage(resource.RUSAGE_SELF)
    return int((u.ru_utime + u.ru_stime) * 1e6)


def cpu_metrics(calls, caller_us, worker_us, idle_us):
    print(f"m cpu_us_per_call {(caller_us + worker_us) / calls:.3f}")
    print(f"m caller_cpu_us_per_call {caller_us / calls:.3f}")
    print(f"m worker_cpu_us_per_call {worker_us / calls:.3f}")
    print(f"m idle_cpu_us_in_200ms {idle_us:.3f}")


def round_trips(args, call):
    # call(f, *a) runs f(*a) in the one worker and waits for its result. With --cpu, the CPU
    # time of the timed calls (this process, every thread, plus the worker's) and of 200 ms of
    # idleness after the last one, as the C++ side measures them.
    def caller_us():
        return time.process_time_ns() / 1000

    caller0 = worker0 = 0
    for i in range(args.warmup + args.iterations):
        if args.cpu and i == args.warmup:
            worker0 = call(worker_cpu_us)
            caller0 = caller_us()
        t0 = time.perf_counter_ns()
        result = call(echo, i)
        t1 = time.perf_counter_ns()
        if result != i:
            sys.exit(1)
        if i >= args.warmup:
            print(f"s {(t1 - t0) / 1000:.3f}")
    if args.cpu:
        caller1 = caller_us()
        worker1 = call(worker_cpu_us)
        time.sleep(0.2)
        caller2 = caller_us()
        worker2 = call(worker_cpu_us)
        cpu_metrics(args.iterations, caller1 - caller0, worker1 - worker0,
                    (caller2 - caller1) + (worker2 - worker1))


def pool_apply(args):
    with mp.get_context("fork").Pool(1) as pool:
        round_trips(args, lambda f, *a: pool.apply_async(f, a).get())


def executor_submit(args):
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(1, mp_context=mp.get_context("fork")) as ex:
        round_trips(args, lambda f, *a: ex.submit(f, *a).result())


def pool_map(args):
    # Pool(cpu_count()).map(echo, range(count)) on a warm pool (Python's default chunking,
    # unless --chunksize); tasks per second.
    n = args.count
    expected = n * (n - 1) // 2
    with mp.get_context("fork").Pool(mp.cpu_count()) as pool:
        for r in range(args.warmup + args.iterations):
            t0 = time.perf_counter_ns()
            if args.unordered:
                total = count = 0
                for v in pool.imap_unordered(echo, range(n), args.chunksize or 1):
                    total += v
                    count += 1
            else:
                out = pool.map(echo, range(n), args.chunksize or None)
                count, total = len(out), sum(out)
            t1 = time.perf_counter_ns()
            if count != n or total != expected:
                sys.exit(1)
            if r >= args.warmup:
                print(f"s {n / ((t1 - t0) / 1e9):.3f}")


def handshake(args):
    # Listener and Client with an authkey (None: no handshake), the listener accepting in a
    # thread of this process, one client at a time; connections per second.
    import os
    import shutil
    import tempfile
    import threading
    from multiprocessing.connection import Client, Listener

    key = args.key.encode() if args.key else None
    folder = None
    if args.family == "unix":
        folder = tempfile.mkdtemp(prefix="coproc-bench-hs-")
        address = os.path.join(folder, "s")
    else:
        address = ("127.0.0.1", 0)
    reps = args.warmup + args.iterations
    failures = []
    try:
        with Listener(address, authkey=key) as listener:
            def serve():
                try:
                    for _ in range(reps * args.count):
                        listener.accept().close()
                except Exception as e:  # reported below
                    failures.append(e)

            server = threading.Thread(target=serve, daemon=True)
            server.start()
            for r in range(reps):
                t0 = time.perf_counter_ns()
                for _ in range(args.count):
                    Client(listener.address, authkey=key).close()
                t1 = time.perf_counter_ns()
                if r >= args.warmup:
                    print(f"s {args.count / ((t1 - t0) / 1e9):.3f}")
            server.join()
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    if failures:
        print(f"listener failed: {failures[0]!r}", file=sys.stderr)
        sys.exit(1)


def version(_args):
    print(sys.version.split()[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command",
                        choices=["start-join", "pipe", "pool-apply", "executor-submit", "pool-map",
                                 "handshake", "version"])
    parser.add_argument("--method", default="fork", choices=["fork", "spawn", "forkserver"])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--quantity", default="messages", choices=["messages", "mib"])
    parser.add_argument("--family", default="unix", choices=["unix", "tcp"])
    parser.add_argument("--key", default="", help="handshake: the authkey (empty: none)")
    parser.add_argument("--cpu", action="store_true",
                        help="pool-apply, executor-submit: also print the CPU figures")
    parser.add_argument("--chunksize", type=int, default=0, help="pool-map: 0 is Python's default")
    parser.add_argument("--unordered", action="store_true", help="pool-map: imap_unordered")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args()
    {"start-join": start_join, "pipe": pipe, "pool-apply": pool_apply,
     "executor-submit": executor_submit, "pool-map": pool_map,
     "handshake": handshake, "version": version}[args.command](args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
