"""Serve control/console at /console/ and forward everything else to a vpcepd, Host unchanged
(the browser signs the Host it sends). Only for when vpcepd does not serve /console/ itself;
sends the console's CSP so the walk checks the assets against it.

Usage: devproxy.py LISTEN_PORT UPSTREAM_URL ASSET_DIR   (prints "ready" when listening)
"""
import http.client
import http.server
import mimetypes
import os
import sys
import urllib.parse

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "proxy-authorization", "proxy-authenticate"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _asset(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/console":
            self.send_response(308)
            self.send_header("Location", "/console/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        name = path[len("/console/"):] or "index.html"
        full = os.path.join(ASSETS, name)
        if "/" in name or not os.path.isfile(full):
            body = b"not found"
            self.send_response(404)
        else:
            body = open(full, "rb").read()
            self.send_response(200)
            ext = os.path.splitext(name)[1]
            self.send_header("Content-Type", TYPES.get(ext, mimetypes.guess_type(name)[0] or "application/octet-stream"))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        conn = http.client.HTTPConnection(UP.hostname, UP.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        conn.request(self.command, self.path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        self.send_response(r.status, r.reason)
        for k, v in r.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    def _any(self):
        if urllib.parse.urlsplit(self.path).path.startswith("/console"):
            self._asset()
        else:
            self._forward()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _any


if __name__ == "__main__":
    port, UP, ASSETS = int(sys.argv[1]), urllib.parse.urlsplit(sys.argv[2]), sys.argv[3]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    srv.serve_forever()
