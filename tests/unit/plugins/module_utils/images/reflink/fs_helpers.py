# -*- coding: utf-8 -*-
"""Helpers of the reflink tests: free space, shared extents, whether a directory's filesystem can clone."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import subprocess

from ansible_collections.vmimages.multistore.plugins.module_utils.common.fs import clone_range


def free_bytes(path):
    vfs = os.statvfs(path)
    return vfs.f_bavail * vfs.f_frsize


def shared_extents(path):
    """Number of extents filefrag -v flags as shared (None without filefrag)."""
    if not shutil.which('filefrag'):
        return None
    out = subprocess.run(['filefrag', '-v', path], stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout
    return sum(1 for line in out.splitlines() if 'shared' in line.split(':')[-1])


def can_clone(directory):
    """Whether the filesystem of ``directory`` shares blocks (FICLONERANGE works)."""
    src = os.path.join(directory, '.probe-src')
    dst = os.path.join(directory, '.probe-dst')
    with open(src, 'wb') as handle:
        handle.write(b'x' * 4096)
    try:
        with open(src, 'rb') as a, open(dst, 'wb') as b:
            return clone_range(a.fileno(), 0, 4096, b.fileno(), 0) is None
    finally:
        os.unlink(src)
        os.unlink(dst)
