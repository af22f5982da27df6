# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where an import reads from: a file on the host or an http(s) URL, always streamed."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument, SourceError


class LocalFileSource:
    def __init__(self, path):
        if not os.path.isabs(path):
            raise InvalidArgument("src '%s' is relative: give an absolute path on the managed host or an http(s) URL" % path)
        self.path = path
        self.description = path

    def check(self):
        """Cheap existence check (used in check mode too)."""
        if not os.path.isfile(self.path):
            raise SourceError("src %s does not exist or is not a regular file on this host" % self.path)
        if not os.access(self.path, os.R_OK):
            raise SourceError("src %s is not readable by this user" % self.path)

    def open(self):
        self.check()
        return LocalFileReader(self.path)


class LocalFileReader:
    def __init__(self, path):
        self.handle = open(path, 'rb', buffering=0)
        stat = os.fstat(self.handle.fileno())
        self.expected_size = stat.st_size
        self.mtime_ns = stat.st_mtime_ns
        # File stores clone slices from this fd where the filesystem can (pipeline.run); the mtime check in
        # finish() makes sure the cloned ranges still hold the bytes that were hashed.
        self.clone_fd = self.handle.fileno()
        if hasattr(os, 'posix_fadvise'):
            os.posix_fadvise(self.handle.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)

    def read_into(self, view):
        """Fill ``view`` unless the source ends first; return the byte count (0 at the end)."""
        total = 0
        while total < len(view):
            count = self.handle.readinto(view[total:])
            if not count:
                break
            total += count
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
    def __init__(self, url, validate_certs=True, timeout=30, headers=None, username=None, password=None):
        self.url = url
        self.description = url
        self.validate_certs = validate_certs
        self.timeout = timeout
        self.headers = headers or {}
        self.username = username
        self.password = password

    def check(self):
        """Nothing is fetched in check mode; the URL's form was validated already."""

    def open(self):
        # Imported here so that the engine's local paths do not need Ansible's URL helpers.
        from ansible.module_utils.urls import open_url
        try:
            response = open_url(self.url, validate_certs=self.validate_certs, timeout=self.timeout, headers=self.headers,
                                url_username=self.username, url_password=self.password, force_basic_auth=bool(self.username))
        except Exception as exc:  # open_url raises HTTPError, URLError, SSLValidationError, socket errors...
            raise SourceError('cannot download %s: %s' % (self.url, exc))
        return HttpReader(self.url, response, self.timeout)


class HttpReader:
    def __init__(self, url, response, timeout):
        self.url = url
        self.response = response
        length = response.headers.get('Content-Length')
        self.expected_size = int(length) if length and length.isdigit() else None

    def read_into(self, view):
        total = 0
        try:
            while total < len(view):
                count = self.response.readinto(view[total:])
                if not count:
                    break
                total += count
        except Exception as exc:  # socket timeouts, resets, IncompleteRead
            raise SourceError('download of %s broke off after some data: %s; nothing was stored, run again' % (self.url, exc))
        return total

    def finish(self, count):
        if self.expected_size is not None and count != self.expected_size:
            raise SourceError('download of %s is truncated: %d of %d bytes arrived; nothing was stored, run again'
                              % (self.url, count, self.expected_size))

    def close(self):
        self.response.close()


def make_source(src, validate_certs=True, timeout=30, headers=None, username=None, password=None):
    if src.startswith(('http://', 'https://')):
        return HttpSource(src, validate_certs, timeout, headers, username, password)
    if '://' in src:
        raise InvalidArgument("src '%s': only http://, https:// and absolute paths on the managed host are supported" % src)
    return LocalFileSource(src)
