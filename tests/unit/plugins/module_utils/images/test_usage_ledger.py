# -*- coding: utf-8 -*-
"""The usage ledger: quota checks read a base and the deltas since, not every slice of the store."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.cleanup import StoreCleanup
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.repository import SliceRepository
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE


def slice_bytes(path):
    total = 0
    for top, _dirs, files in os.walk(os.path.join(path, 'slices')):
        total += sum(os.path.getsize(os.path.join(top, name)) for name in files)
    return total


def metadata_bytes(path):
    total = 0
    for top, _dirs, files in os.walk(os.path.join(path, 'images')):
        total += sum(os.path.getsize(os.path.join(top, name)) for name in files)
    return total


def test_declaring_a_quota_starts_the_ledger_and_it_follows_imports_and_deletions(declare, image_request, make_raw, registry):
    path = declare('q', quota={'bytes': 100 * SLICE_SIZE})
    store = registry.open('q').backend
    assert store.usage() == {'used': 0, 'image_count': 0}
    assert image_request(name='a', src=make_raw('a.raw', [1, 2, 3]), stores=['q']).present(False) is True
    assert image_request(name='b', src=make_raw('b.raw', [1, 2, 4]), stores=['q']).present(False) is True  # shares 2 slices
    usage = store.usage()
    # slices as they are on disk; the records written since the last count are not in it (a few hundred bytes)
    assert usage == {'used': slice_bytes(path), 'image_count': 2} == {'used': 4 * SLICE_SIZE, 'image_count': 2}
    # a copy of a that is already there, a re-run, a property update: nothing counted twice
    assert image_request(name='a', stores=['q'], tags=['x']).present(False) is True
    assert store.usage() == usage
    # deleting b frees its one own slice
    assert image_request(name='b', state='absent').absent(False) is True
    assert store.usage() == {'used': 3 * SLICE_SIZE, 'image_count': 1} and slice_bytes(path) == 3 * SLICE_SIZE
    # store_cleanup counts afresh (records included) and drops the deltas
    StoreCleanup(registry.open('q'), 3600).run(check_mode=False)
    assert store.usage() == {'used': slice_bytes(path) + metadata_bytes(path), 'image_count': 1}
    assert os.listdir(os.path.join(path, 'usage', 'deltas')) == []


def test_a_quota_check_does_not_walk_the_slices(declare, image_request, make_raw, monkeypatch):
    declare('q', quota={'bytes': 3 * SLICE_SIZE, 'images': 2})

    def walked(self):
        raise AssertionError('the quota check walked the store')
    monkeypatch.setattr(SliceRepository, 'stats', walked)
    assert image_request(name='a', src=make_raw('a.raw', [1, 2]), stores=['q']).present(False) is True
    with pytest.raises(StoreError, match="'q' quota exceeded"):
        image_request(name='b', src=make_raw('b.raw', [3, 4]), stores=['q']).present(False)  # 4 slices > 3
    assert image_request(name='c', src=make_raw('c.raw', [1, 5]), stores=['q']).present(False) is True  # 1 new slice
    with pytest.raises(StoreError, match='it holds 2 images, quota.images is 2'):
        image_request(name='d', src=make_raw('d.raw', [1]), stores=['q']).present(False)


def test_without_a_quota_or_a_cleanup_no_ledger_is_kept_and_checks_walk(declare, image_request, make_raw, registry):
    path = declare('plain')
    assert image_request(name='a', src=make_raw('a.raw', [1]), stores=['plain']).present(False) is True
    assert registry.open('plain').backend.usage() is None and not os.path.exists(os.path.join(path, 'usage'))
    # a quota declared later counts what is there
    declare('plain', quota={'images': 5})
    assert registry.open('plain').backend.usage() == {'used': slice_bytes(path) + metadata_bytes(path), 'image_count': 1}
    assert Catalog(registry).find(name='a').active_stores() == ['plain']


def test_store_cleanup_removes_a_ledger_entry_a_killed_writer_left_half_written(declare, image_request, make_raw, registry):
    path = declare('q', quota={'images': 5})
    deltas = os.path.join(path, 'usage', 'deltas')
    os.makedirs(deltas, exist_ok=True)
    old, young = os.path.join(deltas, '.abc_4096_1.tmp-0123456789ab'), os.path.join(deltas, '.def_4096_1.tmp-ba9876543210')
    for temp in (old, young):
        open(temp, 'w').close()
    os.utime(old, (1, 1))  # written long ago: its writer is gone (a live one renames its file at once)
    assert registry.open('q').backend.usage() == {'used': 0, 'image_count': 0}  # never read as an entry
    changed, report = StoreCleanup(registry.open('q'), 3600).run(check_mode=False)
    assert changed and report['removed_staging'] == ['usage/deltas/.abc_4096_1.tmp-0123456789ab']
    assert os.listdir(deltas) == ['.def_4096_1.tmp-ba9876543210']
