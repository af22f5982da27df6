# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument checks shared by the modules. Each raises InvalidArgument with a message for the operator."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import os
import re
import uuid

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument

FORBIDDEN_STORE_PATHS = ('/', '/dev', '/proc', '/sys', '/usr/bin', '/bin')
FORBIDDEN_STORE_TREES = ('/dev', '/proc', '/sys')

STORE_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$')
SIZE = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*([kmgtpe]?)(i?b?)\s*$', re.IGNORECASE)
HEX = re.compile(r'^[0-9a-f]+$')
CHECKSUM_LENGTHS = {'md5': 32, 'sha1': 40, 'sha256': 64, 'sha384': 96, 'sha512': 128}


def _forbidden(path):
    if path in FORBIDDEN_STORE_PATHS:
        return True
    return any(path.startswith(tree + '/') for tree in FORBIDDEN_STORE_TREES)


def check_store_path(path):
    """Return the normalized absolute store path, or raise for relative and system paths."""
    if not path or not isinstance(path, str):
        raise InvalidArgument('path is required for a file store')
    if not os.path.isabs(path):
        raise InvalidArgument("store path '%s' is relative: give an absolute mount path such as /cloud_bs" % path)
    if '\x00' in path or '\n' in path:
        raise InvalidArgument('store path %r contains a control character' % path)
    normalized = os.path.normpath(path)
    if normalized.startswith('//'):
        normalized = '/' + normalized.lstrip('/')
    # /bin is a link to /usr/bin on merged-/usr systems, so check where the path really leads too.
    candidates = (normalized, os.path.realpath(normalized))
    for candidate in candidates:
        if _forbidden(candidate):
            raise InvalidArgument(
                "store path '%s' is forbidden: %s holds the system (forbidden: %s and anything under %s); "
                "use a dedicated mount path such as /cloud_bs"
                % (path, candidate, ', '.join(FORBIDDEN_STORE_PATHS), ', '.join(FORBIDDEN_STORE_TREES)))
    return normalized


def check_store_name(name):
    if not isinstance(name, str) or not STORE_NAME.match(name):
        raise InvalidArgument(
            "store name %r is invalid: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit" % (name,))
    return name


def check_image_name(name):
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise InvalidArgument('image name %r is invalid: use 1-255 characters' % (name,))
    if any(ord(char) < 32 for char in name):
        raise InvalidArgument('image name %r contains a control character' % (name,))
    return name


def check_image_id(image_id):
    try:
        return str(uuid.UUID(str(image_id)))
    except ValueError:
        raise InvalidArgument("image id %r is not a UUID (for example 3f1c5e0a-8f7b-4f64-9b7e-0c2a1d9e4b11)" % (image_id,))


def parse_size(value, what='size'):
    """Bytes from an int or a string such as 512M, 50G, 1.5TiB (binary multiples)."""
    if isinstance(value, bool):
        raise InvalidArgument('%s %r is not a size' % (what, value))
    if isinstance(value, int):
        number = value
    else:
        match = SIZE.match(str(value))
        if not match:
            raise InvalidArgument("%s %r is not a size: use bytes or a number with K, M, G, T, P (binary), e.g. 50G" % (what, value))
        exponent = ' KMGTPE'.index((match.group(2) or ' ').upper())
        number = int(float(match.group(1)) * (1024 ** exponent))
    if number < 0:
        raise InvalidArgument('%s %r is negative' % (what, value))
    return number


def check_cidr(value, what):
    """An interface address in CIDR form (10.1.0.11/24) or a network (10.1.0.0/24)."""
    try:
        return str(ipaddress.ip_interface(str(value)))
    except ValueError:
        raise InvalidArgument("%s %r is not a CIDR: write it like 10.1.0.0/24 or 10.1.0.11/24" % (what, value))


def check_port(value):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidArgument('port %r is out of range: use 1-65535' % (value,))
    return value


def parse_checksum(value):
    """('sha256', 'abc…') from 'sha256:abc…' or from a bare md5/sha256/sha512 hex digest."""
    text = str(value).strip().lower()
    if ':' in text:
        algorithm, digest = text.split(':', 1)
    else:
        digest = text
        algorithm = {32: 'md5', 64: 'sha256', 128: 'sha512'}.get(len(text))
        if algorithm is None:
            raise InvalidArgument("checksum %r: write it as ALGORITHM:HEX, e.g. sha256:9f86d08…" % (value,))
    if algorithm not in CHECKSUM_LENGTHS:
        raise InvalidArgument("checksum algorithm %r is not supported: use one of %s" % (algorithm, ', '.join(sorted(CHECKSUM_LENGTHS))))
    if len(digest) != CHECKSUM_LENGTHS[algorithm] or not HEX.match(digest):
        raise InvalidArgument("checksum %r: a %s digest is %d hex digits" % (value, algorithm, CHECKSUM_LENGTHS[algorithm]))
    return algorithm, digest


POOL_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,126}$')
CEPH_USER = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$')
BUCKET_NAME = re.compile(r'^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$')
HOST_NAME = re.compile(r'^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$')


def check_pool_name(name):
    if not isinstance(name, str) or not POOL_NAME.match(name):
        raise InvalidArgument("pool %r is invalid: use letters, digits, '.', '_' or '-', starting with a letter or digit" % (name,))
    return name


def check_ceph_user(name):
    """A Ceph client name without its 'client.' prefix (both spellings are accepted)."""
    name = name[len('client.'):] if isinstance(name, str) and name.startswith('client.') else name
    if not isinstance(name, str) or not CEPH_USER.match(name):
        raise InvalidArgument("ceph user %r is invalid: give the client name, e.g. glance or client.glance" % (name,))
    return name


def check_host_port(value, default_port=None, what='host'):
    """'host', 'host:port', '[v6]:port' or 'v6'; returns it normalized. Ports 1-65535."""
    text = str(value).strip()
    host, port = text, None
    if text.startswith('['):
        end = text.find(']')
        if end < 0:
            raise InvalidArgument('%s %r: an IPv6 address in brackets needs its closing ]' % (what, value))
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(':') or not rest[1:].isdigit():
                raise InvalidArgument('%s %r: write [address]:port' % (what, value))
            port = int(rest[1:])
    elif text.count(':') == 1:
        host, port_text = text.split(':')
        if not port_text.isdigit():
            raise InvalidArgument('%s %r: the port must be a number' % (what, value))
        port = int(port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not HOST_NAME.match(host):
            raise InvalidArgument('%s %r is neither an IP address nor a host name' % (what, value))
    if port is not None:
        check_port(port)
    port = port if port is not None else default_port
    if port is None:
        return host
    return '[%s]:%d' % (host, port) if ':' in host else '%s:%d' % (host, port)


def check_mon_host(value):
    """A monitor address: 'host', 'host:port', or Ceph's address vector '[v2:ip:port,v1:ip:port]'."""
    text = str(value).strip()
    match = re.match(r'^\[(v[12]:[^,\]]+(?:,v[12]:[^,\]]+)*)\]$', text)
    if match:
        for address in match.group(1).split(','):
            check_host_port(address[3:], what='mon_hosts entry')
        return text
    return check_host_port(text, what='mon_hosts entry')


def check_endpoint(url, what='endpoint'):
    """An http(s) URL of an object storage service: scheme, host, optional port and path; no credentials."""
    match = re.match(r'^(https?)://([^/?#]+)(/[^?#]*)?$', str(url or ''))
    if not match:
        raise InvalidArgument("%s %r is not an http(s) URL (for example https://s3.example.org or http://10.1.0.5:7480)" % (what, url))
    if '@' in match.group(2):
        raise InvalidArgument('%s must not carry credentials: give them as access_key and secret_key' % what)
    check_host_port(match.group(2), what=what)
    return url.rstrip('/') if match.group(3) in (None, '/') else url


def check_bucket_name(name, what='bucket'):
    """S3 bucket rules (3-63 lowercase letters, digits, '.', '-'); Swift containers follow the same here."""
    if not isinstance(name, str) or not BUCKET_NAME.match(name) or '..' in name:
        raise InvalidArgument("%s %r is invalid: use 3-63 lowercase letters, digits, '.' or '-', starting and ending with a "
                              "letter or digit" % (what, name))
    return name


def check_key_prefix(prefix):
    """An object key prefix for a store inside a shared bucket: 'images/' style, no leading slash, no '..'."""
    if not prefix:
        return ''
    if not isinstance(prefix, str) or prefix.startswith('/') or '..' in prefix.split('/') or any(ord(c) < 32 for c in prefix):
        raise InvalidArgument("prefix %r is invalid: use a relative key prefix such as 'multistore/'" % (prefix,))
    return prefix if prefix.endswith('/') else prefix + '/'
