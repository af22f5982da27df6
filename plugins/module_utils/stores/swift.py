# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Swift store: a container on OpenStack Swift or Ceph radosgw's Swift API, through python-swiftclient.

Configuration (the store's declaration): ``endpoint`` (the auth URL, such as
http://rgw.example:7480/auth/1.0), ``container``, ``access_key`` (the Swift user, ``account:user``),
``secret_key`` (its key), ``auth_version`` (default '1'), ``region``, ``validate_certs`` (default true),
``prefix``. Layout: see repository.py and objectstore.py.

swiftclient connections are not thread safe: every thread gets its own, all sharing one token.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import socket
import threading

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover - Python 2 is not supported, this keeps pylint's py2 checks quiet
    from urlparse import urlsplit  # noqa

try:
    import swiftclient.client
    import swiftclient.exceptions
    from requests.exceptions import RequestException
    HAS_SWIFTCLIENT = True
except ImportError:
    HAS_SWIFTCLIENT = False

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.objectstore import (
    CONNECT_TIMEOUT, READ_TIMEOUT, ObjectBlobs, ObjectStore, network_reason)


class SwiftBlobs(ObjectBlobs):
    kind = 'swift'
    container_word = 'container'
    library_errors = (swiftclient.exceptions.ClientException, RequestException, socket.error) if HAS_SWIFTCLIENT else ()

    def __init__(self, name, config):
        super(SwiftBlobs, self).__init__(name, config)
        self.endpoint = (config.get('endpoint') or '').rstrip('/')
        self.container = config.get('container') or ''
        self._local = threading.local()
        self._auth = None
        self._auth_lock = threading.Lock()

    def config_problem(self):
        if not self.container or '/' in self.container or len(self.container) > 256:
            return "container %r is not a valid Swift container name: use 1-256 characters without '/'" % self.container
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ('http', 'https') or not parts.hostname:
            return 'endpoint %r is not an auth URL such as http://rgw.example:7480/auth/1.0' % self.endpoint
        if parts.username or parts.password:
            return 'the endpoint URL must not hold credentials: give access_key and secret_key'
        return None

    def endpoint_url(self):
        parts = urlsplit(self.endpoint)
        return '%s://%s/%s' % (parts.scheme, parts.netloc, self.container)

    def _location_base(self):
        return 'swift://%s/%s' % (urlsplit(self.endpoint).netloc, self.container)

    def _connection(self, **preauth):
        os_options = {'region_name': self.config['region']} if self.config.get('region') else {}
        return swiftclient.client.Connection(
            authurl=self.endpoint, user=self.config.get('access_key'), key=self.config.get('secret_key'),
            auth_version=str(self.config.get('auth_version') or '1'), os_options=os_options,
            insecure=not self.config.get('validate_certs', True), timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            # One retry: a stopped endpoint fails in seconds, not minutes.
            retries=1, starting_backoff=0.5, max_backoff=1, **preauth)

    def connection(self):
        """This thread's connection; the first one authenticates, the others reuse its token."""
        if not HAS_SWIFTCLIENT:
            raise StoreError("store '%s': the swift store needs python-swiftclient on the host running the task: "
                             "install python3-swiftclient" % self.name)
        connection = getattr(self._local, 'connection', None)
        if connection is None:
            with self._auth_lock:
                if self._auth is None:
                    first = self._connection()
                    self._auth = first.get_auth()
                    connection = first
            if connection is None:
                # A connection given a token still holds the credentials: it authenticates again on a 401.
                connection = self._connection(preauthurl=self._auth[0], preauthtoken=self._auth[1])
            self._local.connection = connection
        return connection

    def _secrets(self):
        return [self.config.get('secret_key'), (self._auth or (None, None))[1]]

    @staticmethod
    def _status(exc):
        return getattr(exc, 'http_status', None) if HAS_SWIFTCLIENT and isinstance(exc, swiftclient.exceptions.ClientException) else None

    # ---- primitives
    # The connection comes first, outside try: without swiftclient its StoreError must not meet an except clause naming it.
    def _get(self, key):
        connection = self.connection()
        try:
            return connection.get_object(self.container, key)[1]
        except swiftclient.exceptions.ClientException as exc:
            if exc.http_status == 404:
                return None
            raise

    def _put(self, key, data):
        self.connection().put_object(self.container, key, data, content_length=len(data))

    def _head(self, key):
        connection = self.connection()
        try:
            return int(connection.head_object(self.container, key)['content-length'])
        except swiftclient.exceptions.ClientException as exc:
            if exc.http_status == 404:
                return None
            raise

    def _delete(self, key):
        connection = self.connection()
        try:
            connection.delete_object(self.container, key)
        except swiftclient.exceptions.ClientException as exc:
            if exc.http_status != 404:
                raise

    def _list(self, prefix):
        connection = self.connection()
        try:
            listing = connection.get_container(self.container, prefix=prefix, full_listing=True)[1]
        except swiftclient.exceptions.ClientException as exc:
            if exc.http_status == 404:
                return
            raise
        for item in listing:
            yield item['name'], item['bytes']

    def _ensure_container(self):
        self.connection().put_container(self.container)

    # ---- errors
    def _unreachable(self, exc):
        if not HAS_SWIFTCLIENT:
            return False
        if isinstance(exc, swiftclient.exceptions.ClientException):
            return exc.http_status is None and network_reason(exc) is not None
        return isinstance(exc, (RequestException, socket.error)) and 'SSL' not in type(exc).__name__

    def _describe_error(self, exc, what):
        status = self._status(exc)
        if status in (401, 403):
            return ("%s refused access to container '%s' (%s %s) to %s: check access_key (account:user) and secret_key, and that "
                    "this user may use the container" % (self.endpoint, self.container, status, getattr(exc, 'http_reason', ''), what))
        if status == 404:
            return ("container '%s' does not exist at %s: declare the store with vmimages.multistore.store, which creates it"
                    % (self.container, self.endpoint_url()))
        if status is not None:
            return 'cannot %s in %s: %s %s' % (what, self.endpoint_url(), status, getattr(exc, 'http_reason', ''))
        if 'SSL' in type(exc).__name__:
            return ('cannot reach %s: TLS certificate verification failed: install the CA certificate on this host, or set '
                    'validate_certs: false' % self.endpoint)
        if self._unreachable(exc):
            return ("cannot reach %s for container '%s' (%s): is the Swift service (radosgw, swift-proxy) running, and reachable "
                    "from this host?" % (self.endpoint, self.container, network_reason(exc)))
        return 'cannot %s in %s: %s' % (what, self.endpoint_url(), exc)


class SwiftStore(ObjectStore):
    kind = 'swift'
    blob_class = SwiftBlobs
