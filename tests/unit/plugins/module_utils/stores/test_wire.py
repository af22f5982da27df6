# -*- coding: utf-8 -*-
"""The frames between the SSH store client and the store agent (stores/wire.py), on their own."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import io
import json
import os
import socket
import struct
import threading

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.stores import wire


class Trickle(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes a read, as a pipe or socket may."""

    def __init__(self, data, step=3):
        self.data = memoryview(data)
        self.step = step
        self.position = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        count = min(self.step, len(buffer), len(self.data) - self.position)
        buffer[:count] = self.data[self.position:self.position + count]
        self.position += count
        return count

    def read(self, size=-1):
        buffer = bytearray(min(size, self.step))
        return bytes(buffer[:self.readinto(buffer)])


def framed(header, body=None):
    stream = io.BytesIO()
    wire.send(stream, header, body)
    return stream.getvalue()


def test_a_frame_is_the_header_length_the_json_header_and_the_body():
    data = framed({'op': 'put_slice', 'args': {'digest': 'ab'}}, b'\x00\x01')
    (length,) = struct.unpack('>I', data[:4])
    assert json.loads(data[4:4 + length].decode('utf-8')) == {'op': 'put_slice', 'args': {'digest': 'ab'}, 'size': 2}
    assert data[4 + length:] == b'\x00\x01'


def test_frames_come_back_as_sent_one_after_the_other():
    stream = io.BytesIO(framed({'ok': True, 'result': [1, 'two', None]}) + framed({'ok': True}, b'') + framed({'end': True}))
    assert wire.receive(stream) == ({'ok': True, 'result': [1, 'two', None]}, None)
    assert wire.receive(stream) == ({'ok': True, 'size': 0}, b'')
    assert wire.receive(stream) == ({'end': True}, None)
    with pytest.raises(wire.WireClosed, match='channel closed after 0 of 4 bytes'):
        wire.receive(stream)


def test_short_reads_are_put_together():
    body = os.urandom(1000)
    stream = Trickle(framed({'digest': 'x'}, body) + framed({'digest': 'y'}, body), step=7)
    assert wire.receive(stream) == ({'digest': 'x', 'size': 1000}, body)
    buffer = bytearray(4096)
    header, view = wire.receive(stream, into=buffer)
    assert header['digest'] == 'y' and bytes(view) == body


def test_read_exact_returns_exactly_what_was_asked():
    stream = Trickle(b'abcdefghij', step=4)
    assert wire.read_exact(stream, 6) == b'abcdef'
    assert wire.read_exact(stream, 4) == b'ghij'


@pytest.mark.parametrize('cut, message', [
    (2, 'channel closed after 2 of 4 bytes'),  # in the length
    (10, 'channel closed after 6 of'),  # in the header
])
def test_a_channel_closed_inside_a_frame_is_wire_closed(cut, message):
    with pytest.raises(wire.WireClosed, match=message):
        wire.receive(io.BytesIO(framed({'op': 'stats', 'args': {}})[:cut]))


def test_a_channel_closed_inside_a_body_is_wire_closed_read_or_read_into():
    data = framed({'digest': 'x'}, b'z' * 100)[:-40]
    with pytest.raises(wire.WireClosed, match='channel closed after 60 of 100 bytes'):
        wire.receive(io.BytesIO(data))
    with pytest.raises(wire.WireClosed, match='channel closed after 60 of 100 bytes'):
        wire.receive(io.BytesIO(data), into=bytearray(128))


def test_a_header_length_no_agent_sends_is_refused():
    with pytest.raises(wire.WireClosed, match='not a store agent on the other end'):
        wire.receive(io.BytesIO(b'SSH-2.0-OpenSSH_9.2p1 Debian\r\n'))


def test_a_body_is_read_into_the_buffer_when_it_fits_else_returned_as_bytes():
    buffer = bytearray(16)
    stream = io.BytesIO(framed({'n': 1}, b'0123456789') + framed({'n': 2}, b'x' * 17))
    header, view = wire.receive(stream, into=buffer)
    assert isinstance(view, memoryview) and view.obj is buffer and bytes(view) == b'0123456789' and len(view) == 10
    assert bytes(buffer[:10]) == b'0123456789'
    header, body = wire.receive(stream, into=buffer)
    assert header['n'] == 2 and isinstance(body, bytes) and body == b'x' * 17


def test_large_bodies_cross_a_real_socket_whole():
    """Bodies larger than any socket or pipe buffer: the reader sees them whole, in order, read or read into."""
    bodies = [os.urandom(9 * 1024 * 1024 + 3), os.urandom(4 * 1024 * 1024)]
    near, far = socket.socketpair()
    reader = near.makefile('rb')
    writer = far.makefile('wb')

    def send():
        for number, body in enumerate(bodies):
            wire.send(writer, {'number': number}, body)
        writer.flush()
        writer.close()
        far.close()

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert wire.receive(reader) == ({'number': 0, 'size': len(bodies[0])}, bodies[0])
        buffer = bytearray(4 * 1024 * 1024)
        header, view = wire.receive(reader, into=buffer)
        assert header == {'number': 1, 'size': len(bodies[1])} and view == bodies[1]
        with pytest.raises(wire.WireClosed):
            wire.receive(reader)
    finally:
        sender.join()
        reader.close()
        near.close()
