"""The example client in Python (grpcio), for the end-to-end tests.

Runs the same scenarios as the Rust client and prints one JSON line per call with what the
client itself measured. Messages are encoded by hand (echo_messages.py).

  echo_client.py TARGET [--warmup N] [--also-warm METHOD] [--wait] [--main-thread-exits] [--tls CERT]
                 [--linger-ms N]
--wait prints "ready" (after connecting and warming up, if asked) and waits for a line on stdin.
--tls CERT connects over TLS (grpc.secure_channel), trusting CERT, a certificate for "localhost".
--linger-ms N stays up N ms after the last call, as a long-lived process would.
--also-warm METHOD warms a second channel, on a connection of its own, with as many calls to
METHOD of the same service (one it need not implement); the run is then ten rounds of a Unary
call on the first channel and a METHOD call on the second, instead of the scenarios; the second
channel closes half a second before the first.
--main-thread-exits runs everything on a second thread and ends the main one at once
(pthread_exit), as some C and C++ programs do: the process lives on without its main thread.
"""

import ctypes
import json
import os
import sys
import threading
import time
import traceback

import grpc

from echo_messages import OPTIONS, SERVICE, request

NOT_FOUND_MESSAGE = "no such item: 42 \u2717"
# The first call carries W3C trace context, as an instrumented caller would send it.
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def report(scenario, method, code, message, duration_ns, request_messages, response_messages):
    print(json.dumps({
        "scenario": scenario, "method": f"{SERVICE}/{method}", "code": code, "message": message,
        "duration_ns": duration_ns, "request_messages": request_messages, "response_messages": response_messages,
    }), flush=True)


def status_of(error):
    return error.code().value[0], error.details() or ""


def unary(channel, scenario, message, timeout=None, metadata=None):
    call = channel.unary_unary(f"/{SERVICE}/Unary")
    started = time.perf_counter_ns()
    try:
        call(message, timeout=timeout, metadata=metadata)
        code, detail, replies = 0, "", 1
    except grpc.RpcError as error:
        (code, detail), replies = status_of(error), 0
    report(scenario, "Unary", code, detail, time.perf_counter_ns() - started, 1, replies)


def cancelled(channel):
    call = channel.unary_unary(f"/{SERVICE}/Unary")
    started = time.perf_counter_ns()
    future = call.future(request(payload=b"x" * 10, delay_ms=1000))
    time.sleep(0.1)
    future.cancel()
    report("cancelled", "Unary", 1, "", time.perf_counter_ns() - started, 1, 0)


def server_stream(channel, replies):
    call = channel.unary_stream(f"/{SERVICE}/ServerStream")
    started = time.perf_counter_ns()
    received = sum(1 for _ in call(request(payload=b"x" * 10, reply_bytes=100, reply_count=replies)))
    report("server_stream", "ServerStream", 0, "", time.perf_counter_ns() - started, 1, received)


def client_stream(channel, count):
    call = channel.stream_unary(f"/{SERVICE}/ClientStream")
    started = time.perf_counter_ns()
    call(iter([request(payload=b"y" * 50, reply_bytes=100)] * count))
    report("client_stream", "ClientStream", 0, "", time.perf_counter_ns() - started, count, 1)


def bidi(channel, count):
    call = channel.stream_stream(f"/{SERVICE}/Bidi")
    started = time.perf_counter_ns()
    received = sum(1 for _ in call(iter([request(payload=b"z" * 20, reply_bytes=100)] * count)))
    report("bidi", "Bidi", 0, "", time.perf_counter_ns() - started, count, received)


def concurrent(channel, count):
    call = channel.unary_unary(f"/{SERVICE}/Unary")
    finished = []
    lock = threading.Lock()
    done = threading.Event()

    def on_done(started):
        def callback(future):
            ended = time.perf_counter_ns()
            error = future.exception()
            code = 0 if error is None else error.code().value[0]
            with lock:
                finished.append((code, ended - started))
                if len(finished) == count:
                    done.set()
        return callback

    futures = []
    for _ in range(count):
        started = time.perf_counter_ns()
        future = call.future(request(payload=b"c" * 100, reply_bytes=100, delay_ms=20))
        future.add_done_callback(on_done(started))
        futures.append(future)
    done.wait(30)
    for code, duration in finished:
        report("concurrent", "Unary", code, "", duration, 1, 1 if code == 0 else 0)


def run_all(channel):
    for index in range(3):
        metadata = [("traceparent", TRACEPARENT)] if index == 0 else None
        unary(channel, "unary_ok", request(payload=b"a" * 100, reply_bytes=100), metadata=metadata)
    unary(channel, "not_found", request(payload=b"b" * 10, fail_with_code=5, fail_with_message=NOT_FOUND_MESSAGE))
    unary(channel, "deadline_exceeded", request(payload=b"d" * 10, delay_ms=1000), timeout=0.1)
    cancelled(channel)
    server_stream(channel, 5)
    client_stream(channel, 4)
    bidi(channel, 3)
    unary(channel, "large", request(payload=b"L" * (2 << 20), reply_bytes=2 << 20))
    concurrent(channel, 100)


def other_method(channel, method, timeout):
    call = channel.unary_unary(f"/{SERVICE}/{method}")
    started = time.perf_counter_ns()
    try:
        call(request(payload=b"o" * 32, reply_bytes=32), timeout=timeout)
        code, detail = 0, ""
    except grpc.RpcError as error:
        code, detail = status_of(error)
    report("other_channel", method, code, detail, time.perf_counter_ns() - started, 1, 1 if code == 0 else 0)


def two_channels(channel, other, method):
    # A deadline on every call: its grpc-timeout is a field each encoder inserts since attach,
    # which its size accounting is lined up by.
    for _ in range(10):
        unary(channel, "unary_ok", request(payload=b"u" * 32, reply_bytes=32), timeout=30)
        other_method(other, method, timeout=30)


def open_channel(target, options=OPTIONS):
    if "--tls" not in sys.argv:
        return grpc.insecure_channel(target, options=options)
    with open(sys.argv[sys.argv.index("--tls") + 1], "rb") as cert:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read())
    return grpc.secure_channel(target, credentials, options=options)


def main():
    target = sys.argv[1]
    warmup = int(sys.argv[sys.argv.index("--warmup") + 1]) if "--warmup" in sys.argv else 0
    channel = None
    if warmup:
        channel = open_channel(target)
        for _ in range(warmup):
            channel.unary_unary(f"/{SERVICE}/Unary")(request(payload=b"w" * 32, reply_bytes=32))
    other, also_warm = None, None
    if "--also-warm" in sys.argv:
        also_warm = sys.argv[sys.argv.index("--also-warm") + 1]
        # Channels with the same target and options would share one connection.
        other = open_channel(target, OPTIONS + [("grpc.use_local_subchannel_pool", 1)])
        for _ in range(warmup):
            try:
                other.unary_unary(f"/{SERVICE}/{also_warm}")(request(payload=b"w" * 32, reply_bytes=32))
            except grpc.RpcError:
                pass
    if "--wait" in sys.argv:
        print("ready", flush=True)
        sys.stdin.readline()
    if channel is None:
        channel = open_channel(target)
    # Connect before the first call, so no call's duration includes the handshake.
    grpc.channel_ready_future(channel).result(timeout=10)
    if other is None:
        run_all(channel)
    else:
        two_channels(channel, other, also_warm)
        # The second connection closes (its tables are freed) while the first stays open a
        # while, as one of a long-lived process's connections would.
        other.close()
        time.sleep(0.5)
    channel.close()
    if "--linger-ms" in sys.argv:
        time.sleep(int(sys.argv[sys.argv.index("--linger-ms") + 1]) / 1000)


def main_on_a_second_thread():
    # Without its main thread the interpreter never shuts down by itself (grpcio's threads
    # would keep the process alive): exit explicitly.
    try:
        main()
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    if "--main-thread-exits" in sys.argv:
        threading.Thread(target=main_on_a_second_thread).start()
        ctypes.CDLL(None).pthread_exit(None)
    main()
