# -*- coding: utf-8 -*-
"""A real HTTP server on 127.0.0.1 in a thread, serving the bytes a test puts under a path."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import json
import threading
import time

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class _Handler(BaseHTTPRequestHandler):
    """Routes: a path in ``server.files`` (its bytes), /redirect?to=<path> (302), /status/<code>,
    /broken/<path> (announces the file's length, sends half, closes), /stall/<path> (the same, but stalls 3 s first),
    /auth/<path> (basic auth user:secret), /headers (the request's headers as JSON), /nolength/<path> (no Content-Length:
    the end is the close)."""

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
        elif path in files:
            self._send(200, files[path])
        else:
            self._send(404, b'not here\n')

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


@pytest.fixture
def http_server():
    server = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    server.daemon_threads = True
    server.files = {}
    server.requests = []
    server.url = 'http://127.0.0.1:%d' % server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
