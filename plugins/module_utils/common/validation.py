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
OWN_FD = re.compile(r'^/proc/self/fd/\d+$')
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


def check_file_path(path, what, follow=True):
    """A file an image is read from or written to: absolute, no control character, and not in /dev, /proc or /sys,
    where it resolves to too (those trees hold endless or special files, not images). With ``follow=False`` a symlink
    at the path itself is not resolved (its directory is): the caller replaces such a link instead of following it."""
    if not isinstance(path, str) or not os.path.isabs(path):
        raise InvalidArgument("%s %r is relative: give an absolute path on the managed host" % (what, path))
    if _control_characters(path):
        raise InvalidArgument('%s %r contains a control character' % (what, path))
    resolved = os.path.realpath(path) if follow else os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    # /proc/self/fd/N names a file this process opened (store retrieval reads the inode it checked): where it leads counts.
    candidates = (resolved,) if follow and OWN_FD.match(path) else (os.path.normpath(path), resolved)
    for candidate in candidates:
        tree = next((tree for tree in FORBIDDEN_STORE_TREES if candidate == tree or candidate.startswith(tree + '/')), None)
        if tree:
            raise InvalidArgument("%s %s is refused: %s is under %s, which holds no image files (symlinks are resolved); "
                                  "use a path on a real filesystem" % (what, path, candidate, tree))
    return path


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


# Glance's own image fields and reserved names: Glance refuses a property named like one of them (403/409).
GLANCE_RESERVED_PROPERTIES = frozenset((
    'checksum', 'container_format', 'created_at', 'deleted', 'deleted_at', 'direct_url', 'disk_format', 'file', 'id',
    'location', 'locations', 'min_disk', 'min_ram', 'name', 'os_hash_algo', 'os_hash_value', 'os_hidden', 'owner',
    'protected', 'schema', 'self', 'size', 'status', 'stores', 'tags', 'updated_at', 'virtual_size', 'visibility'))
GLANCE_RESERVED_PREFIX = 'os_glance'
# Glance's defaults: image_tag_quota and image_property_quota are 128; tags and property names are VARCHAR(255),
# property values TEXT (64 KiB in MySQL).
MAX_TAGS = 128
MAX_PROPERTIES = 128
MAX_NAME_LENGTH = 255
MAX_VALUE_LENGTH = 65535
# min_disk and min_ram are 32-bit integers in Glance's database.
MAX_GLANCE_INT = 2 ** 31 - 1


def _control_characters(text, allowed=''):
    return any(ord(char) < 32 and char not in allowed for char in text) or '\x7f' in text


def check_tags(tags):
    """Image tags as Glance takes them: at most 128, each 1-255 characters without control characters."""
    if tags is None:
        return None
    if len(tags) > MAX_TAGS:
        raise InvalidArgument('tags: %d tags given, Glance allows at most %d' % (len(tags), MAX_TAGS))
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip() or len(tag) > MAX_NAME_LENGTH:
            raise InvalidArgument('tag %r is invalid: a tag is 1-%d characters' % (_short(tag), MAX_NAME_LENGTH))
        if _control_characters(tag):
            raise InvalidArgument('tag %r contains a control character (NUL, newline...)' % (_short(tag),))
    return tags


def check_properties(properties):
    """Free-form image properties: names Glance does not reserve, string-like values, Glance's count and size limits."""
    if properties is None:
        return None
    if len(properties) > MAX_PROPERTIES:
        raise InvalidArgument('properties: %d given, Glance allows at most %d' % (len(properties), MAX_PROPERTIES))
    for key, value in properties.items():
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_NAME_LENGTH or _control_characters(key):
            raise InvalidArgument('property name %r is invalid: use 1-%d characters without control characters'
                                  % (_short(key), MAX_NAME_LENGTH))
        if key in GLANCE_RESERVED_PROPERTIES or key.startswith(GLANCE_RESERVED_PREFIX):
            raise InvalidArgument("property name '%s' is reserved by Glance (its own fields and os_glance_*): Glance refuses it; "
                                  "use another name, or the module's option for that field" % key)
        if isinstance(value, (dict, list)):
            raise InvalidArgument("property '%s' is a %s: Glance properties are strings" % (key, type(value).__name__))
        text = '' if value is None else str(value)
        if len(text) > MAX_VALUE_LENGTH:
            raise InvalidArgument("property '%s' is %d characters long: Glance keeps at most %d" % (key, len(text), MAX_VALUE_LENGTH))
        if _control_characters(text, allowed='\t\n\r'):
            raise InvalidArgument("property '%s' contains a control character (NUL, escape...); tabs and newlines are fine" % key)
    return properties


def check_glance_int(value, what):
    """min_disk / min_ram: a whole number from 0 to Glance's 2^31-1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_GLANCE_INT:
        raise InvalidArgument('%s %r is out of range: use 0-%d' % (what, value, MAX_GLANCE_INT))
    return value


def _short(value):
    """A value for a message: long ones are cut (a 100 KiB tag would drown the message)."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else '%s... (%d characters)' % (text[:60], len(text))


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
