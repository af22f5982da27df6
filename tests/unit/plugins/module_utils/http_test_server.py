# -*- coding: utf-8 -*-
"""A real HTTP server on 127.0.0.1 in a thread, serving the bytes a test puts under a path (used by the transfer
tests and the hostile-input corpus of images/)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import contextlib
import hashlib
import json
import re
import threading
import time

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    """Routes: a path in ``server.files`` (its bytes, with an ETag from its content and Range/If-Range support unless
    ``server.ranges`` is false), /redirect?to=<path> (302), /status/<code>,
    /broken/<path> (announces the file's length, sends half, closes), /stall/<path> (the same, but stalls 3 s first),
    /auth/<path> (basic auth user:secret), /headers (the request's headers as JSON), /nolength/<path> (no Content-Length:
    the end is the close), /endless (no Content-Length, bytes without end).

    Faults of the plain files: ``server.cuts[path]`` is a list of byte counts; each answer for ``path`` pops one and
    sends only that many bytes of its body before it closes (a cut). ``server.stalls[path]`` likewise, but stalls 3 s
    before closing. ``server.after_cut[path]``: the file's new bytes once a cut happened (the file changed on the server).
    ``server.if_range = False``: Range is served whatever If-Range says (a server that ignores it).
    ``server.ranges_seen`` keeps the Range and If-Range headers of every request."""

    def log_message(self, *args):  # quiet test output
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        path = self.path
        files = self.server.files
        self.server.requests.append(path)
        if path.startswith('/redirect?to='):
            self.send_response(302)
            self.send_header('Location', path[len('/redirect?to='):])
            self.send_header('Content-Length', '0')
            self.end_headers()
        elif path.startswith('/status/'):
            self._send(int(path.rsplit('/', 1)[1]), b'no\n')
        elif path == '/headers':
            self._send(200, json.dumps(dict(self.headers.items())).encode())
        elif path.startswith('/auth/'):
            expected = 'Basic ' + base64.b64encode(b'user:secret').decode()
            if self.headers.get('Authorization') != expected:
                self.send_response(401)
                self.send_header('WWW-Authenticate', 'Basic realm="images"')
                self.send_header('Content-Length', '0')
                self.end_headers()
            else:
                self._send(200, files[path[len('/auth'):]])
        elif path.startswith(('/broken/', '/stall/')):
            self._send_half(files[path[path.index('/', 1):]], stall=path.startswith('/stall/'))
        elif path.startswith('/nolength/'):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(files[path[len('/nolength'):]])
            self.close_connection = True
        elif path == '/endless':
            self._send_endless()
        elif path in files:
            self._send_file(path)
        else:
            self._send(404, b'not here\n')

    def _send_file(self, path):
        server = self.server
        data = files_data = server.files[path]
        etag = '"%s"' % hashlib.sha1(files_data).hexdigest()[:16]
        server.ranges_seen.append((self.headers.get('Range'), self.headers.get('If-Range')))
        match = re.match(r'^bytes=(\d+)-$', self.headers.get('Range') or '')
        start = 0
        if match and server.ranges and (not server.if_range or self.headers.get('If-Range') in (None, etag)):
            start = int(match.group(1))
            if start >= len(data):
                self._send(416, b'')
                return
            self.send_response(206)
            self.send_header('Content-Range', 'bytes %d-%d/%d' % (start, len(data) - 1, len(data)))
            data = data[start:]
        else:
            self.send_response(200)
        if server.etags:
            self.send_header('ETag', etag)
        if server.ranges:
            self.send_header('Accept-Ranges', 'bytes')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        cut = (server.cuts.get(path) or [None]).pop(0) if server.cuts.get(path) else None
        stall = (server.stalls.get(path) or [None]).pop(0) if server.stalls.get(path) else None
        limit = cut if cut is not None else stall
        try:
            self.wfile.write(data if limit is None else data[:limit])
            self.wfile.flush()
        except OSError:
            return  # the client stopped reading (a size cap, a test that ends early)
        if limit is None:
            return
        if path in server.after_cut:
            server.files[path] = server.after_cut.pop(path)
        if stall is not None:
            time.sleep(3)
        self.close_connection = True

    def _send_endless(self):
        self.send_response(200)
        self.end_headers()
        block = b'\x5a' * 65536
        try:
            while True:
                self.wfile.write(block)
        except OSError:
            pass  # the client stopped reading
        self.close_connection = True

    def _send_half(self, data, stall):
        """Announce all of ``data``, send half of it, (stall longer than the client's timeout,) close."""
        self.send_response(200)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data[:len(data) // 2])
        self.wfile.flush()
        if stall:
            time.sleep(3)
        self.close_connection = True

    def _send(self, code, data):
        self.send_response(code)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextlib.contextmanager
def serving():
    """A running server (see _Handler) for the length of the block; the conftest's ``http_server`` fixture."""
    server = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    server.daemon_threads = True
    server.files = {}
    server.requests = []
    server.ranges = True
    server.if_range = True
    server.etags = True
    server.cuts = {}
    server.stalls = {}
    server.after_cut = {}
    server.ranges_seen = []
    server.url = 'http://127.0.0.1:%d' % server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
