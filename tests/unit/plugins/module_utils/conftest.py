# -*- coding: utf-8 -*-
"""Fixtures for engine tests: a registry and file stores in a temporary directory, images written with real bytes."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.request import ImageRequest
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE

from http_test_server import serving
from image_files import slice_bytes
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.registry import Registry


@pytest.fixture
def registry(tmp_path):
    return Registry(str(tmp_path / 'registry'))


@pytest.fixture
def declare(registry, tmp_path):
    def declare(name, **params):
        params.setdefault('path', str(tmp_path / 'stores' / name))
        params['name'] = name
        StoreDeclaration(registry, params).present(check_mode=False)
        return params['path']
    return declare


@pytest.fixture
def image_request(registry):
    def image_request(**params):
        params.setdefault('container_format', 'bare')
        return ImageRequest(Catalog(registry), params)
    return image_request


@pytest.fixture
def make_raw(tmp_path):
    def make_raw(name, slices, tail=b''):
        """A raw image: one slice per entry (an int seed, or None for a zero slice), then ``tail`` bytes."""
        path = tmp_path / name
        with open(str(path), 'wb') as handle:
            for seed in slices:
                handle.write(bytes(SLICE_SIZE) if seed is None else slice_bytes(seed))
            handle.write(tail)
        return str(path)
    return make_raw


@pytest.fixture
def http_server():
    """A real HTTP server on 127.0.0.1 in a thread (http_test_server.py): ``files``, routes and faults."""
    with serving() as server:
        yield server


@pytest.fixture
def locks_never_wait(monkeypatch):
    """Every ExpiringLock (file-store image locks, in this process) gives up at once on a lock it finds taken:
    a test that must not wait on a dead run's lock fails with the lock's own message instead of being slow."""
    from ansible_collections.vmimages.multistore.plugins.module_utils.common import locks
    acquire = locks.ExpiringLock.acquire

    def acquire_without_waiting(self):
        self.wait = 0
        return acquire(self)
    monkeypatch.setattr(locks.ExpiringLock, 'acquire', acquire_without_waiting)
