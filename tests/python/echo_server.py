"""The example Echo service in Python (grpcio), for the end-to-end tests: the same behaviour as
the Rust one (tests/src/echo.rs), served over TLS with a certificate made for the run.

  echo_server.py CERT KEY
prints the port it listens on (127.0.0.1), then serves until stdin closes.
"""

import sys
import time
from concurrent import futures

import grpc

SERVICE = "grpctrace.demo.Echo"


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def parse(data):
    """EchoRequest: 1 payload, 2 fail_with_code, 3 fail_with_message, 4 delay_ms,
    5 reply_bytes, 6 reply_count."""
    fields, at = {}, 0
    while at < len(data):
        key, at = read_varint(data, at)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, at = read_varint(data, at)
        else:
            length, at = read_varint(data, at)
            value, at = data[at:at + length], at + length
        fields[number] = value
    return fields


def read_varint(data, at):
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def reply(fields, sequence):
    payload = b"\x5a" * fields.get(5, 0)
    out = bytearray()
    if payload:
        out += varint(1 << 3 | 2) + varint(len(payload)) + payload
    if sequence:
        out += varint(2 << 3) + varint(sequence)
    return bytes(out)


def apply(fields, context):
    if fields.get(4):
        time.sleep(fields[4] / 1000)
    code = fields.get(2, 0)
    if code:
        status = next(s for s in grpc.StatusCode if s.value[0] == code)
        context.abort(status, fields.get(3, b"").decode())


def unary(data, context):
    fields = parse(data)
    apply(fields, context)
    return reply(fields, 0)


def server_stream(data, context):
    fields = parse(data)
    apply(fields, context)
    for sequence in range(fields.get(6, 0)):
        yield reply(fields, sequence)


def client_stream(iterator, context):
    count, last = 0, {}
    for data in iterator:
        last, count = parse(data), count + 1
    apply(last, context)
    return reply(last, count)


def bidi(iterator, context):
    for sequence, data in enumerate(iterator):
        fields = parse(data)
        apply(fields, context)
        yield reply(fields, sequence)


def main():
    cert, key = (open(path, "rb").read() for path in sys.argv[1:3])
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    }
    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=128), options=options)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    server.start()
    print(port, flush=True)
    sys.stdin.read()
    server.stop(None)


if __name__ == "__main__":
    main()
