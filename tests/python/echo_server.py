"""The example Echo service in Python (grpcio), for the end-to-end tests: the same behaviour as
the Rust one (tests/src/echo.rs), served over TLS with a certificate made for the run.

  echo_server.py CERT KEY
prints the port it listens on (127.0.0.1), then serves until stdin closes.
"""

import sys
import time
from concurrent import futures

import grpc

from echo_messages import OPTIONS, SERVICE, parse
from echo_messages import reply as encode_reply


def reply(fields, sequence):
    return encode_reply(fields.get(5, 0), sequence)


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
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=128), options=OPTIONS)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    server.start()
    print(port, flush=True)
    sys.stdin.read()
    server.stop(None)


if __name__ == "__main__":
    main()
