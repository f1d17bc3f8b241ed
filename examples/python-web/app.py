"""A tiny web server using only Python's standard library.

Answers every GET with a line naming the container that served it, so a client can see
which replica answered. /health answers "ok" for health checks.
"""
import http.server
import json
import os
import socket
import time

STARTED = time.time()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body = b"ok\n"
        elif self.path == "/json":
            body = json.dumps({
                "host": socket.gethostname(),
                "uptime": round(time.time() - STARTED, 1),
                "greeting": os.environ.get("GREETING", "hello"),
            }).encode() + b"\n"
        else:
            greeting = os.environ.get("GREETING", "hello")
            body = f"{greeting} from {socket.gethostname()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(f"{self.address_string()} {fmt % args}", flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    print(f"serving on :{port}", flush=True)
    http.server.ThreadingHTTPServer(("", port), Handler).serve_forever()
