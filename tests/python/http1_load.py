"""An HTTP/1.1 server and a client in one process: the client fetches a 10 KB page 200 times
over one keep-alive connection. Traffic that is not HTTP/2, for the tracer to count and skip."""
import http.client
import http.server
import threading

PAGE = b"x" * 10_000
REQUESTS = 200


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1])
received = 0
for _ in range(REQUESTS):
    connection.request("GET", "/page")
    received += len(connection.getresponse().read())
connection.close()
server.shutdown()
print(received)
