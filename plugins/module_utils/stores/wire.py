# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Frames between a store client and the store agent on another host (over an SSH channel).

A frame is a 4-byte big-endian header length, a JSON header, and ``header['size']`` bytes of body
(slice data) when the header has a size. Requests carry ``op`` and ``args``; replies carry ``ok`` and
``result``, or ``error`` (the engine error class name) and ``message``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import struct

HEADER = struct.Struct('>I')
MAX_HEADER = 64 * 1024 * 1024
PROTOCOL = 1


class WireClosed(Exception):
    """The other end closed the channel."""


def read_exact(stream, size):
    chunks = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise WireClosed('channel closed after %d of %d bytes' % (size - remaining, size))
        chunks.append(chunk)
        remaining -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b''.join(chunks)


def read_exact_into(stream, view):
    got = 0
    while got < len(view):
        count = stream.readinto(view[got:])
        if not count:
            raise WireClosed('channel closed after %d of %d bytes' % (got, len(view)))
        got += count


def send(stream, header, body=None):
    if body is not None:
        header = dict(header, size=len(body))
    encoded = json.dumps(header, separators=(',', ':')).encode('utf-8')
    stream.write(HEADER.pack(len(encoded)) + encoded)
    if body is not None:
        stream.write(body)


def receive(stream, into=None):
    """(header, body or None). With ``into`` (a buffer), a body that fits is read into it: a view is returned."""
    (length,) = HEADER.unpack(read_exact(stream, HEADER.size))
    if length > MAX_HEADER:
        raise WireClosed('frame header of %d bytes: not a store agent on the other end' % length)
    header = json.loads(read_exact(stream, length).decode('utf-8'))
    size = header.get('size')
    if size is None:
        return header, None
    if into is not None and size <= len(into):
        view = memoryview(into)[:size]
        read_exact_into(stream, view)
        return header, view
    return header, read_exact(stream, size)
