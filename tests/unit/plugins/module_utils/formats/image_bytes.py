# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for the format tests: run a tool, read and write image files, patch header bytes."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import subprocess


def run(*args, **kwargs):
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs).stdout


def read(path):
    with open(path, 'rb') as handle:
        return handle.read()


def write(path, data):
    with open(path, 'wb') as handle:
        handle.write(data)
    return path


def patched(src, dst, patches):
    """Copy src to dst with {offset: bytes} written over it."""
    data = bytearray(read(src))
    for offset, value in patches.items():
        data[offset:offset + len(value)] = value
    return write(dst, bytes(data))


def qemu_refusal(path, fmt):
    """What qemu-img info says when it cannot open path as fmt (stderr), or None when it opens it."""
    done = subprocess.run(['qemu-img', 'info', '-f', fmt, path], check=False, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return done.stderr.decode('utf-8', 'replace') if done.returncode else None


def luks_volume(path, version, size=16 * 1024 * 1024):
    """A real LUKS volume in a plain file (cryptsetup luksFormat; PBKDF2 with the fewest iterations: no benchmark)."""
    write(path, b'')
    with open(path, 'r+b') as handle:
        handle.truncate(size)
    key = path + '.key'
    write(key, b'123456')
    run('cryptsetup', 'luksFormat', '-q', '--type', 'luks%d' % version, '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations',
        '1000', '--key-file', key, path)
    return path
