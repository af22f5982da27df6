# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A tiny HTTP server for the integration tests (standard library only).

    python3 http_server.py ROOT INFO_FILE [LIFETIME_SECONDS]

Serves the files of ROOT on 127.0.0.1 on a free port chosen by the kernel, and writes INFO_FILE
(JSON: port, a closed port, pid) once it listens. Besides the files:

    GET /truncated/NAME   announces the full Content-Length of ROOT/NAME, sends half of it, closes
    GET /slow/NAME        sends ROOT/NAME at about SLOW_RATE bytes/s (a transfer that lasts long enough to watch)
    GET /cut-once/NAME    ROOT/NAME with an ETag and Range/If-Range support; the first answer for NAME is cut after half
    GET /cut-norange/NAME the same cut the first time, but Range is ignored (every answer is the whole file)
    GET /shutdown         stops the server

It also stops when ROOT disappears or after LIFETIME_SECONDS (default 600), so that a test run that
dies before its cleanup leaves no server behind.
"""

from __future__ import absolute_import, division, print_function

import functools
import hashlib
import http.server
import json
import os
import re
import socket
import sys
import threading
import time


SLOW_RATE = 4 * 1024 * 1024
SLOW_CHUNK = 256 * 1024


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (name from the standard library)
        if self.path == '/shutdown':
            self._send_text(200, b'bye\n')
            threading.Thread(target=self.server.shutdown, daemon=True).start()
            return None
        if self.path.startswith('/truncated/'):
            return self._send_truncated(self.path[len('/truncated/'):])
        if self.path.startswith('/slow/'):
            return self._send_slowly(self.path[len('/slow/'):])
        for route in ('/cut-once/', '/cut-norange/'):
            if self.path.startswith(route):
                return self._send_cut_once(self.path[len(route):], ranges=route == '/cut-once/')
        return super().do_GET()

    def _send_text(self, status, body):
        self.send_response(status)
        self.send_header('Content-Type', 'text/plain')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_truncated(self, name):
        path = os.path.join(self.directory, os.path.basename(name))
        if not os.path.isfile(path):
            self._send_text(404, b'not found\n')
            return
        size = os.path.getsize(path)
        self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(size))
        self.send_header('Connection', 'close')
        self.end_headers()
        with open(path, 'rb') as handle:
            self.wfile.write(handle.read(size // 2))
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _send_cut_once(self, name, ranges):
        path = os.path.join(self.directory, os.path.basename(name))
        if not os.path.isfile(path):
            self._send_text(404, b'not found\n')
            return
        with open(path, 'rb') as handle:
            data = handle.read()
        etag = '"%s"' % hashlib.sha1(data).hexdigest()[:16]
        match = re.match(r'^bytes=(\d+)-$', self.headers.get('Range') or '')
        start = 0
        if ranges and match and self.headers.get('If-Range') in (None, etag) and int(match.group(1)) < len(data):
            start = int(match.group(1))
            self.send_response(206)
            self.send_header('Content-Range', 'bytes %d-%d/%d' % (start, len(data) - 1, len(data)))
        else:
            self.send_response(200)
        self.send_header('ETag', etag)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(len(data) - start))
        self.end_headers()
        key = (ranges, name)
        if key in self.server.cut_done:
            self.wfile.write(data[start:])
            return
        self.server.cut_done.add(key)
        self.wfile.write(data[start:len(data) // 2])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _send_slowly(self, name):
        path = os.path.join(self.directory, os.path.basename(name))
        if not os.path.isfile(path):
            self._send_text(404, b'not found\n')
            return
        self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(os.path.getsize(path)))
        self.end_headers()
        with open(path, 'rb') as handle:
            while True:
                chunk = handle.read(SLOW_CHUNK)
                if not chunk:
                    break
                self.wfile.write(chunk)
                time.sleep(float(SLOW_CHUNK) / SLOW_RATE)

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        sys.stderr.write('%s %s\n' % (self.log_date_time_string(), format % args))


def closed_port():
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def watchdog(server, root, deadline):
    while time.time() < deadline and os.path.isdir(root):
        time.sleep(1)
    server.shutdown()


def main():
    root = os.path.abspath(sys.argv[1])
    info_file = sys.argv[2]
    lifetime = int(sys.argv[3]) if len(sys.argv) > 3 else 600
    handler = functools.partial(Handler, directory=root)
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    server.daemon_threads = True
    server.cut_done = set()  # (ranges, NAME) of the /cut-once/ and /cut-norange/ answers that were cut already
    info = {'port': server.server_address[1], 'closed_port': closed_port(), 'pid': os.getpid()}
    tmp = info_file + '.tmp'
    with open(tmp, 'w') as handle:
        json.dump(info, handle)
    os.rename(tmp, info_file)
    threading.Thread(target=watchdog, args=(server, root, time.time() + lifetime), daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == '__main__':
    main()
