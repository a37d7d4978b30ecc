"""A load for `cargo xtask bench`: unary calls of 100 bytes each way over one grpcio channel,
`--concurrency` at a time, for `--duration-ms`; as the tonic bench-client does, it prints
"ready" (connected), waits for a line on stdin, runs, and prints one JSON line: calls, errors,
elapsed_s, p50_us, p99_us and its own CPU time over the run.

  bench_client.py TARGET --duration-ms MS [--concurrency N] [--tls CERT] [--wait]
"""

import json
import resource
import sys
import threading
import time

import grpc

from echo_messages import SERVICE, request

METHOD = f"/{SERVICE}/Unary"
REQUEST = request(payload=b"x" * 100, reply_bytes=100)


def option(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def cpu_us():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return int(usage.ru_utime * 1e6), int(usage.ru_stime * 1e6)


def main():
    target = sys.argv[1]
    duration = int(option("--duration-ms")) / 1000
    concurrency = int(option("--concurrency", "8"))
    cert = option("--tls")
    if cert:
        with open(cert, "rb") as file:
            channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(file.read()))
    else:
        channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=10)
    call = channel.unary_unary(METHOD)
    call(REQUEST)
    if "--wait" in sys.argv:
        print("ready", flush=True)
        sys.stdin.readline()
    latencies, errors = [], [0]
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def worker():
        while time.monotonic() < deadline:
            started = time.perf_counter_ns()
            try:
                call(REQUEST)
                ok = True
            except grpc.RpcError:
                ok = False
            elapsed = (time.perf_counter_ns() - started) // 1000
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors[0] += 1

    user_before, system_before = cpu_us()
    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    user_after, system_after = cpu_us()
    latencies.sort()

    def percentile(q):
        return latencies[min(int(len(latencies) * q), len(latencies) - 1)] if latencies else 0

    print(json.dumps({
        "calls": len(latencies),
        "errors": errors[0],
        "elapsed_s": elapsed,
        "p50_us": percentile(0.50),
        "p99_us": percentile(0.99),
        "cpu_user_us": user_after - user_before,
        "cpu_system_us": system_after - system_before,
    }), flush=True)
    channel.close()


if __name__ == "__main__":
    main()
