# -*- coding: utf-8 -*-
"""Helpers for engine tests: deterministic slice data and what a store holds on disk."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os

from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.export import Export
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE


def slice_bytes(seed, length=SLICE_SIZE):
    """Deterministic, non-zero, incompressible-looking bytes for one slice."""
    block = (b'%08d' % seed) * 64
    return (block * (length // len(block) + 1))[:length]


def stored_slices(store_path):
    found = []
    for root, _dirs, files in os.walk(os.path.join(store_path, 'slices')):
        found.extend(name for name in files if not name.startswith('.'))
    return sorted(found)


def leftovers(store_path):
    """Everything an aborted run could leave behind: staged data, image directories, lock files."""
    result = []
    for sub in ('staging', 'images', 'locks'):
        directory = os.path.join(store_path, sub)
        result.extend('%s/%s' % (sub, name) for name in os.listdir(directory) if name != 'slices.lock')
    return sorted(result)


def sha512_of(path):
    """sha512 of a file, read in MiB blocks (exports are compared by it)."""
    digest = hashlib.sha512()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def export_sha512(registry, name, store, dest):
    """sha512 of the image ``name`` as exported from ``store`` (of ``registry``) to ``dest``."""
    catalog = Catalog(registry)
    Export(catalog, catalog.find(name=name), store, str(dest)).run()
    return sha512_of(str(dest))
