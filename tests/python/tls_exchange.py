"""A TLS server and client in one process (a certificate made for the run, given as
CERT KEY), exchanging a few KB: traffic the tracer cannot decode yet, and must say so."""
import socket
import ssl
import sys
import threading

cert, key = sys.argv[1:3]
server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server_context.load_cert_chain(cert, key)
client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
client_context.load_verify_locations(cert)
client_context.check_hostname = False

listener = socket.create_server(("127.0.0.1", 0))


def serve():
    connection, _ = listener.accept()
    with server_context.wrap_socket(connection, server_side=True) as tls:
        tls.sendall(tls.recv(4096) * 2)


thread = threading.Thread(target=serve)
thread.start()
with socket.create_connection(listener.getsockname()) as plain:
    with client_context.wrap_socket(plain) as tls:
        tls.sendall(b"x" * 2000)
        received = 0
        while received < 4000:
            received += len(tls.recv(4096))
thread.join()
print(received)
