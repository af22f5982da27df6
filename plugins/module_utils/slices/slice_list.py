# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An image's data as an ordered list of content-addressed slices.

Every slice but the last is ``slice_size`` bytes. A slice is named by the sha256 of its bytes; an
all-zero slice is ``None`` and is never stored (sparse images cost nothing for their holes).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import ImageError

SLICE_SIZE = 4 * 1024 * 1024
SLICE_HASH = 'sha256'
LAYOUT = 1
_ZEROS = bytes(SLICE_SIZE)


def is_zero(data):
    """True when ``data`` (bytes-like, at most SLICE_SIZE long) is all zero bytes; a memcmp, no copy."""
    view = memoryview(data)
    return view == memoryview(_ZEROS)[:len(view)]


class SliceList:
    def __init__(self, size, slices, slice_size=SLICE_SIZE):
        self.size = size
        self.slices = list(slices)
        self.slice_size = slice_size
        expected = -(-size // slice_size) if size else 0
        if len(self.slices) != expected:
            raise ImageError('slice list is inconsistent: %d slices for %d bytes' % (len(self.slices), size))

    def slice_length(self, index):
        if index == len(self.slices) - 1:
            return self.size - index * self.slice_size
        return self.slice_size

    def digests(self):
        """The distinct stored slices (zero slices excluded)."""
        return set(digest for digest in self.slices if digest)

    def to_dict(self):
        return {'layout': LAYOUT, 'hash': SLICE_HASH, 'slice_size': self.slice_size, 'size': self.size, 'slices': self.slices}

    @classmethod
    def from_dict(cls, data):
        if data.get('layout') != LAYOUT or data.get('hash') != SLICE_HASH:
            raise ImageError('slice list layout %r/%r is not supported by this version of vmimages.multistore'
                             % (data.get('layout'), data.get('hash')))
        return cls(data['size'], data['slices'], data['slice_size'])
