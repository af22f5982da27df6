# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where an import reads from: a file on the host or an http(s) URL, always streamed.

Both stop at ``size_cap`` (Glance's image_size_cap): a source that is larger, or an endless body, fails after
cap + 1 bytes instead of filling the stores. An http(s) download that is cut continues with a ``Range`` request
checked by ``If-Range`` (the ETag or Last-Modified of the first answer); when it cannot (the server ignores
ranges, the file changed, no validator to check that it did not), the reader raises SourceRestart and the import
starts over. Credentials in a URL (``https://user:pass@host/``) are used for basic auth and never shown.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import time

try:
    from urllib.parse import unquote, urlsplit, urlunsplit
except ImportError:  # pragma: no cover - Python 2 is not supported, this keeps pylint's py2 checks quiet
    from urlparse import urlsplit, urlunsplit  # noqa
    from urllib import unquote  # noqa

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument, SourceError, SourceRestart
from ansible_collections.vmimages.multistore.plugins.module_utils.common.validation import check_file_path

# Glance's default image_size_cap (1 TiB): the largest source read when size_cap is not given.
DEFAULT_SIZE_CAP = 1024 ** 4
# A download cut this many times in a row without a byte between the cuts gives up.
RESUME_LIMIT = 5
# Seconds before the first resume; doubled for each further one in a row (1, 2, 4, 8 s).
RESUME_DELAY = 1.0
REDACTED = '********'
CONTENT_RANGE = re.compile(r'^bytes (\d+)-(\d+)/(\d+|\*)$')


def split_credentials(url):
    """(url without its userinfo, user or None, password or None) of an http(s) URL."""
    parts = urlsplit(url)
    if '@' not in parts.netloc:
        return url, None, None
    userinfo, host = parts.netloc.rsplit('@', 1)
    user, colon, password = userinfo.partition(':')
    return urlunsplit(parts._replace(netloc=host)), unquote(user), unquote(password) if colon else None


def redact_url(url):
    """``url`` with its userinfo (user:password@) replaced by ********, for every message and result."""
    parts = urlsplit(url)
    if '@' not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc='%s@%s' % (REDACTED, parts.netloc.rsplit('@', 1)[1])))


def url_secrets(url):
    """What a module must mask in all its output (invocation included) for ``src``: the userinfo as written and the
    password it holds, decoded."""
    if not isinstance(url, str) or not url.startswith(('http://', 'https://')):
        return []
    netloc = urlsplit(url).netloc
    if '@' not in netloc:
        return []
    userinfo = netloc.rsplit('@', 1)[0]
    secrets = [userinfo]
    dummy, user, password = split_credentials(url)
    for secret in (password, userinfo.partition(':')[2]):
        if secret and secret not in secrets:
            secrets.append(secret)
    return secrets


class LocalFileSource:
    def __init__(self, path, size_cap=None):
        if not os.path.isabs(path):
            raise InvalidArgument("src '%s' is relative: give an absolute path on the managed host or an http(s) URL" % path)
        self.path = check_file_path(path, 'src')
        self.description = path
        self.size_cap = size_cap

    def check(self):
        """Cheap existence check (used in check mode too)."""
        if not os.path.isfile(self.path):
            raise SourceError("src %s does not exist or is not a regular file on this host" % self.path)
        if not os.access(self.path, os.R_OK):
            raise SourceError("src %s is not readable by this user" % self.path)

    def open(self):
        self.check()
        return LocalFileReader(self.path, self.size_cap)


class LocalFileReader:
    def __init__(self, path, size_cap=None):
        self.handle = open(path, 'rb', buffering=0)
        stat = os.fstat(self.handle.fileno())
        self.expected_size = stat.st_size
        if size_cap is not None and stat.st_size > size_cap:
            self.handle.close()
            raise SourceError('src %s is %d bytes, more than size_cap (%d bytes): nothing was read; raise size_cap if the image '
                              'is that big' % (path, stat.st_size, size_cap))
        self.position = 0
        self.mtime_ns = stat.st_mtime_ns
        # File stores clone slices from this fd where the filesystem can (pipeline.run); the mtime check in
        # finish() makes sure the cloned ranges still hold the bytes that were hashed.
        self.clone_fd = self.handle.fileno()
        if hasattr(os, 'posix_fadvise'):
            os.posix_fadvise(self.handle.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)

    def read_into(self, view):
        """Fill ``view`` unless the source ends first; return the byte count (0 at the end).

        Never more than one byte past the size the file had when it was opened: a file that grows while it is read
        fails in finish() instead of being read without end."""
        view = view[:max(0, self.expected_size + 1 - self.position)]
        total = 0
        while total < len(view):
            count = self.handle.readinto(view[total:])
            if not count:
                break
            total += count
        self.position += total
        return total

    def finish(self, count):
        if count != self.expected_size:
            raise SourceError('the source changed while it was read: %d bytes read, %d expected' % (count, self.expected_size))
        if os.fstat(self.handle.fileno()).st_mtime_ns != self.mtime_ns:
            raise SourceError('the source changed while it was read (it was modified meanwhile): nothing was stored; '
                              'run again once it is no longer being written')

    def close(self):
        self.handle.close()


class HttpSource:
    def __init__(self, url, validate_certs=True, timeout=30, headers=None, username=None, password=None, size_cap=None):
        self.description = redact_url(url)
        self.url, url_user, url_password = split_credentials(url)
        _check_url(self.url, self.description)
        if url_user is not None:
            if username and username != url_user:
                raise InvalidArgument('src %s carries a user and url_username names another: give the credentials once, '
                                      'preferably as url_username and url_password' % self.description)
            username = url_user
            password = url_password if password is None else password
        self.validate_certs = validate_certs
        self.timeout = timeout
        self.headers = headers or {}
        self.username = username
        self.password = password
        self.size_cap = size_cap
        # What happened to the downloads of this source, for the result: resumes ({'from': byte, 'why': ...})
        # and restarts ({'at': byte, 'why': ...}).
        self.resumes = []
        self.restarts = []
        # Called with a sentence whenever a download resumes or restarts (the live progress shows it); the last one.
        self.listener = None
        self.last_event = None

    def check(self):
        """Nothing is fetched in check mode; the URL's form was validated already."""

    def request(self, headers=None):
        """The server's answer to a GET (with ``headers`` besides the configured ones); raises SourceError."""
        # Imported here so that the engine's local paths do not need Ansible's URL helpers.
        from ansible.module_utils.urls import open_url
        sent = dict(self.headers)
        sent.update(headers or {})
        try:
            # The credentials go in an Authorization header that is never sent after a redirect (another host
            # must not see them).
            response = open_url(self.url, validate_certs=self.validate_certs, timeout=self.timeout, headers=sent,
                                url_username=self.username, url_password=self.password, force_basic_auth=bool(self.username),
                                unredirected_headers=['Authorization'] if self.username else None)
        except Exception as exc:  # open_url raises HTTPError, URLError, SSLValidationError, socket errors...
            raise SourceError('cannot download %s: %s' % (self.description, exc))
        final = response.geturl()
        if not final.startswith(('http://', 'https://')):
            response.close()
            raise SourceError('cannot download %s: the server redirected to %s; only http(s) redirects are followed'
                              % (self.description, redact_url(final)))
        return response

    def open(self):
        return HttpReader(self, self.request())

    def note(self, kind, entry, sentence):
        getattr(self, kind).append(entry)
        self.last_event = sentence
        if self.listener is not None:
            self.listener(sentence)

    def summary(self):
        """What the downloads of this run went through, in words ('' when nothing happened)."""
        words = ['download resumed from byte %d (%s)' % (entry['from'], entry['why']) for entry in self.resumes]
        words.extend('download restarted from byte 0 after a cut at byte %d: %s' % (entry['at'], entry['why'])
                     for entry in self.restarts)
        return '; '.join(words)


def _check_url(url, description):
    """An http(s) URL with a host and a valid port, and nothing a request line could be split with."""
    if any(ord(char) < 33 or ord(char) == 127 for char in url):
        raise InvalidArgument('src %r contains a space or a control character: percent-encode it' % description)
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or port == -1 or port == 0:
        raise InvalidArgument('src %s is not a valid http(s) URL: it needs a host and, if given, a port from 1 to 65535'
                              % description)


def _validator(response):
    """What If-Range can check the file against: a strong ETag, else Last-Modified (None: nothing)."""
    etag = response.headers.get('ETag')
    if etag and not etag.startswith('W/'):
        return etag
    return response.headers.get('Last-Modified')


class HttpReader:
    def __init__(self, source, response):
        self.source = source
        self.url = source.description
        self.response = response
        self.position = 0
        self.cuts = 0  # cuts in a row without a byte between them
        length = response.headers.get('Content-Length')
        self.expected_size = int(length) if length and length.isdigit() else None
        self.validator = _validator(response)
        self.cap = source.size_cap
        if self.cap is not None and self.expected_size is not None and self.expected_size > self.cap:
            self.close()
            raise SourceError('download of %s announces %d bytes, more than size_cap (%d bytes): nothing was read; raise '
                              'size_cap if the image is that big' % (self.url, self.expected_size, self.cap))

    def read_into(self, view):
        total = 0
        if self.cap is not None:
            view = view[:max(0, self.cap + 1 - self.position)]  # one byte past the cap is enough to know
        while total < len(view):
            try:
                count = self.response.readinto(view[total:])
            except Exception as exc:  # socket timeouts, resets, IncompleteRead
                self._resume(str(exc) or type(exc).__name__)
                continue
            if not count:
                if self.expected_size is not None and self.position < self.expected_size:
                    self._resume('the connection closed after %d of %d bytes' % (self.position, self.expected_size))
                    continue
                break
            total += count
            self.position += count
            self.cuts = 0
        if self.cap is not None and self.position > self.cap:
            raise SourceError('download of %s is larger than size_cap (%d bytes): it was stopped there and nothing was stored; '
                              'raise size_cap if the image is that big' % (self.url, self.cap))
        return total

    def _resume(self, why):
        """Continue at self.position with a Range request, or raise SourceRestart / SourceError."""
        self.response.close()
        while True:
            self.cuts += 1
            if self.cuts > RESUME_LIMIT:
                raise SourceError('download of %s broke off after some data at byte %d (%s), %d times in a row without progress; '
                                  'nothing was stored, run again' % (self.url, self.position, why, RESUME_LIMIT))
            if not self.validator:
                reason = 'the server gives no ETag or Last-Modified to check that the file did not change'
                raise SourceRestart('download of %s was cut at byte %d (%s) and cannot resume: %s' % (self.url, self.position, why, reason),
                                    self.position, reason)
            time.sleep(RESUME_DELAY * 2 ** (self.cuts - 1))
            try:
                response = self.source.request({'Range': 'bytes=%d-' % self.position, 'If-Range': self.validator})
            except SourceError as exc:
                if 'HTTP Error 416' in str(exc):
                    reason = 'the server refused the range (416): the file is shorter now'
                    raise SourceRestart('download of %s was cut at byte %d (%s) and cannot resume: %s'
                                        % (self.url, self.position, why, reason), self.position, reason)
                why = str(exc)
                continue
            break
        status = response.getcode()
        content_range = CONTENT_RANGE.match(response.headers.get('Content-Range') or '')
        if status == 206 and content_range and int(content_range.group(1)) == self.position and \
                (self.expected_size is None or content_range.group(3) in ('*', str(self.expected_size))):
            self.response = response
            self.source.note('resumes', {'from': self.position, 'why': why},
                             'download resumed from byte %d after: %s' % (self.position, why))
            return
        response.close()
        now = _validator(response)
        if status == 206:
            reason = 'the server answered the range request with %s' % (response.headers.get('Content-Range') or 'no Content-Range')
        elif now and now != self.validator:
            reason = 'the file changed on the server (%s was %s, is now %s)' % (
                'ETag' if response.headers.get('ETag') else 'Last-Modified', self.validator, now)
        else:
            reason = 'the server does not support ranges (it sent the whole file again)'
        raise SourceRestart('download of %s was cut at byte %d (%s) and cannot resume: %s' % (self.url, self.position, why, reason),
                            self.position, reason)

    def finish(self, count):
        if self.expected_size is not None and count != self.expected_size:
            raise SourceError('download of %s is truncated: %d of %d bytes arrived; nothing was stored, run again'
                              % (self.url, count, self.expected_size))

    def close(self):
        self.response.close()


def make_source(src, validate_certs=True, timeout=30, headers=None, username=None, password=None, size_cap=None):
    if not isinstance(src, str) or not src:
        raise InvalidArgument('src is empty: give an absolute path on the managed host or an http(s) URL')
    if src.lower().startswith(('http://', 'https://')):
        return HttpSource(src, validate_certs, timeout, headers, username, password, size_cap)
    if '://' in src:
        raise InvalidArgument("src '%s': only http://, https:// and absolute paths on the managed host are supported" % redact_url(src))
    return LocalFileSource(src, size_cap)
