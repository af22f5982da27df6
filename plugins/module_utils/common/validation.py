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
