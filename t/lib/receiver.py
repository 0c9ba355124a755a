#!/usr/bin/python3
"""A webhook receiver on loopback for the alert tests.

    receiver.py PORT RECORD MODE_FILE

Appends one JSON line per request to RECORD as it arrives (method, path,
headers, body, time), then answers as MODE_FILE says at that moment:
"200" (the default), any other status such as "500", or "sleep N" (waits N
seconds, then answers 200). The test changes the mode by rewriting the file.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, RECORD, MODE_FILE = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()


def mode():
    try:
        with open(MODE_FILE) as f:
            return f.read().strip() or "200"
    except OSError:
        return "200"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        entry = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
            "time": time.time(),
        }
        with lock, open(RECORD, "a") as f:
            f.write(json.dumps(entry) + "\n")
        m = mode()
        status = 200
        if m.startswith("sleep"):
            time.sleep(float(m.split()[1]))
        else:
            status = int(m)
        out = b'{"status":"recorded"}'
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
        except OSError:
            pass  # nginx gave up waiting (its proxy_read_timeout)

    do_POST = do_GET = do_PUT = handle_any

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
