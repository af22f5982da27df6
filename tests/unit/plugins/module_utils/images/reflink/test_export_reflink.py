# -*- coding: utf-8 -*-
"""image_export clones the slices into the destination on a reflink filesystem, and copies elsewhere."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import filecmp
import os

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common import fs
from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.images import export as export_module
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.export import Export
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE

from fs_helpers import can_clone, free_bytes, shared_extents
from image_files import slice_bytes

MIB = 1024 * 1024


def make_file(path, seeds, tail=b''):
    with open(path, 'wb') as handle:
        for seed in seeds:
            handle.write(bytes(SLICE_SIZE) if seed is None else slice_bytes(seed))
        handle.write(tail)
    return path


def exporter(registry, name, dest, **kwargs):
    catalog = Catalog(registry)
    return Export(catalog, catalog.find(name=name), 'central', dest, **kwargs)


@pytest.fixture
def xfs_image(registry, declare, image_request, xfs_dir):
    """An image of 48 data slices, 4 zero slices and an unaligned tail in a file store on the reflink xfs."""
    declare('central', path=os.path.join(xfs_dir, 'store'))
    src = make_file(os.path.join(xfs_dir, 'src.raw'), list(range(1, 25)) + [None] * 4 + list(range(25, 49)), tail=b'odd tail')
    image_request(name='disk', src=src, stores=['central']).present(False)
    return src


def test_fs_clone_range_shares_blocks_on_xfs_and_is_refused_on_ext4(xfs_dir, tmp_path):
    src = make_file(os.path.join(xfs_dir, 'a'), [1, 2])
    with open(src, 'rb') as source, open(os.path.join(xfs_dir, 'b'), 'wb') as dest:
        assert fs.clone_range(source.fileno(), 0, SLICE_SIZE, dest.fileno(), SLICE_SIZE) is None
        assert fs.clone_range(source.fileno(), 0, 1000, dest.fileno(), 0) == errno.EINVAL  # unaligned, not at the source's end
    with open(os.path.join(xfs_dir, 'b'), 'rb') as handle:
        assert handle.read() == bytes(SLICE_SIZE) + slice_bytes(1)
    with open(src, 'rb') as source, open(str(tmp_path / 'c'), 'wb') as dest:
        assert fs.clone_range(source.fileno(), 0, SLICE_SIZE, dest.fileno(), 0) == errno.EXDEV


def test_export_on_the_same_xfs_clones_byte_identical_sparse_and_shared(registry, xfs_image, xfs_dir):
    dest = os.path.join(xfs_dir, 'out.raw')
    os.sync()
    free = free_bytes(xfs_dir)
    export = exporter(registry, 'disk', dest)
    export.run()
    os.sync()
    assert export.method == 'reflink' and export.describe()['method'] == 'reflink'
    assert filecmp.cmp(xfs_image, dest, shallow=False)
    assert free - free_bytes(xfs_dir) < 4 * MIB  # 192 MiB of data, shared with the slices
    stat = os.stat(dest)
    assert stat.st_size == os.path.getsize(xfs_image)
    assert stat.st_blocks * 512 < stat.st_size - 3 * SLICE_SIZE  # the 4 zero slices are holes
    shared = shared_extents(dest)
    assert shared is None or shared >= 1
    assert not exporter(registry, 'disk', dest).needs_export()


def test_verify_reads_the_clone_back(registry, xfs_image, xfs_dir, monkeypatch):
    dest = os.path.join(xfs_dir, 'verified.raw')
    calls = []
    original = export_module._file_sha512
    monkeypatch.setattr(export_module, '_file_sha512', lambda path: calls.append(path) or original(path))
    export = exporter(registry, 'disk', dest, verify=True)
    export.run()
    assert export.method == 'reflink' and len(calls) == 1 and filecmp.cmp(xfs_image, dest, shallow=False)


def test_a_slice_file_of_the_wrong_size_fails_the_clone_and_leaves_no_file(registry, declare, image_request, xfs_dir):
    root = declare('central', path=os.path.join(xfs_dir, 'store'))
    image_request(name='disk', src=make_file(os.path.join(xfs_dir, 'src.raw'), [1, 2]), stores=['central']).present(False)
    victim = os.path.join(root, 'slices', os.listdir(os.path.join(root, 'slices'))[0])
    victim = os.path.join(victim, os.listdir(victim)[0])
    with open(victim, 'r+b') as handle:
        handle.truncate(SLICE_SIZE - 4096)
    dest = os.path.join(xfs_dir, 'out.raw')
    with pytest.raises(StoreError, match='corrupt'):
        exporter(registry, 'disk', dest).run()
    assert not os.path.exists(dest) and [name for name in os.listdir(xfs_dir) if name.startswith('.')] == []


def test_export_to_another_filesystem_copies(registry, xfs_image, tmp_path):
    dest = str(tmp_path / 'out.raw')
    export = exporter(registry, 'disk', dest)
    export.run()
    assert export.method == 'copy' and filecmp.cmp(xfs_image, dest, shallow=False)


def test_export_on_ext4_copies(registry, declare, image_request, make_raw, tmp_path):
    root = declare('central')
    if can_clone(root):
        pytest.skip('the temporary directory is on a reflink filesystem')
    src = make_raw('a.raw', [1, None, 2], tail=b'end')
    image_request(name='disk', src=src, stores=['central']).present(False)
    dest = str(tmp_path / 'out.raw')
    export = exporter(registry, 'disk', dest, verify=True)
    export.run()
    assert export.method == 'copy' and filecmp.cmp(src, dest, shallow=False)


def test_a_conversion_reports_copy(registry, declare, image_request, xfs_dir):
    declare('central', path=os.path.join(xfs_dir, 'store'))
    src = make_file(os.path.join(xfs_dir, 'src.raw'), [1, None, 2])
    image_request(name='disk', src=src, stores=['central']).present(False)
    export = exporter(registry, 'disk', os.path.join(xfs_dir, 'out.qcow2'), output_format='qcow2')
    export.run()
    assert export.method == 'copy'
