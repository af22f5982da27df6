# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors of the engine.

Every error the engine raises on purpose is a MultistoreError whose message is written for the
operator: what went wrong and what to do about it. Modules turn it into ``fail_json(msg=...)``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class MultistoreError(Exception):
    """An error the operator can act on; str(error) says what to do."""


class InvalidArgument(MultistoreError):
    """A parameter is malformed or forbidden; nothing was touched."""


class StoreError(MultistoreError):
    """A store is missing, disabled, unreachable, full or not writable."""


class ImageError(MultistoreError):
    """An image is missing, ambiguous or in a state that forbids the action."""


class SourceError(MultistoreError):
    """The image source cannot be read completely or does not match its checksum."""


class SourceRestart(SourceError):
    """A cut download cannot continue where it stopped (the server ignores Range, or the file changed on it):
    the import starts over from the first byte; nothing from the cut attempt is kept."""

    def __init__(self, message, at, reason):
        super(SourceRestart, self).__init__(message)
        self.at = at  # the byte the download was cut at
        self.reason = reason  # why it cannot resume, in words


class SignatureError(SourceError):
    """The image signature does not verify, or its certificate is not trusted; nothing was stored."""


class FormatError(MultistoreError):
    """The bytes are not in the declared disk format, or the format is unsafe to accept."""


class UnsafeImageError(FormatError):
    """The image could make qemu read host files or has features we refuse (CVE-2024-32498 class)."""


class TransferInterrupted(StoreError):
    """The connection to a store broke off mid-transfer; staged data is kept for the next run."""


class LockError(MultistoreError):
    """Another run holds the lock on an image or store."""
