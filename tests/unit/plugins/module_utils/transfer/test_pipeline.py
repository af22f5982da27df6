# -*- coding: utf-8 -*-
"""The one pass: real files read through LocalFileReader into real file stores' writers (StoreSink)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import shutil
import subprocess
import threading

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import FormatError, StoreError, UnsafeImageError
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer import pipeline
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer.pipeline import StoreSink
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer.sources import LocalFileSource

from image_files import slice_bytes, stored_slices

IMAGE_ID = '5f0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d'


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def file_bytes(path):
    with open(path, 'rb') as handle:
        return handle.read()


@pytest.fixture
def sink(declare, registry):
    """A StoreSink on a new file store; ``sink(name, budget)``."""
    def sink(name, byte_budget=None):
        declare(name)
        store = Catalog(registry).store(name)
        return StoreSink(store, store.backend.slice_writer(IMAGE_ID), byte_budget)
    return sink


def run_file(path, sinks, **kwargs):
    reader = LocalFileSource(path).open()
    try:
        return pipeline.run(reader, sinks, **kwargs), reader
    finally:
        reader.close()


def test_one_pass_digests_equal_hashlib_and_slices_reach_the_store(sink, make_raw, tmp_path):
    src = make_raw('a.raw', [1, None, 2, 1], tail=b'xyz')
    data = file_bytes(src)
    target = sink('a')
    result, dummy = run_file(src, [target], extra_algorithms=['sha256', 'sha1'])
    assert result.size == len(data) == 4 * SLICE_SIZE + 3
    assert result.digests == dict((name, hashlib.new(name, data).hexdigest()) for name in ('md5', 'sha512', 'sha256', 'sha1'))
    expected = [sha256(slice_bytes(1)), None, sha256(slice_bytes(2)), sha256(slice_bytes(1)), sha256(b'xyz')]
    assert result.slice_list.slices == expected and result.slice_list.size == len(data)
    assert result.report.format == 'raw' and result.report.virtual_size == len(data)
    assert target.error is None
    unique = sorted(set(digest for digest in expected if digest))
    assert sorted(target.writer.staged_digests()) == unique  # the zero slice is a hole; slice 1 is written once
    target.writer.commit()
    path = str(tmp_path / 'stores' / 'a')
    assert stored_slices(path) == unique
    for digest, content in ((expected[0], slice_bytes(1)), (expected[2], slice_bytes(2)), (expected[4], b'xyz')):
        assert file_bytes(os.path.join(path, 'slices', digest[:2], digest)) == content


def test_observers_see_every_byte_in_order_and_on_slice_counts(make_raw):
    src = make_raw('a.raw', [3, 4, None], tail=b'end')
    seen = hashlib.sha256()
    lengths = []
    indexes = []
    result, dummy = run_file(src, [], observers=[seen.update, lambda view: lengths.append(len(view))], on_slice=indexes.append)
    assert seen.hexdigest() == hashlib.sha256(file_bytes(src)).hexdigest()
    assert lengths == [SLICE_SIZE] * 3 + [3] and indexes == [1, 2, 3, 4]
    assert result.digests['md5'] == hashlib.md5(file_bytes(src)).hexdigest()


def test_an_observer_error_stops_the_pass_cleanly(sink, tmp_path):
    src = str(tmp_path / 'big.raw')
    with open(src, 'wb') as handle:
        handle.write(slice_bytes(1))
        handle.truncate(64 * SLICE_SIZE)  # 256 MiB, sparse: cheap to make, long to read in full
    threads = threading.active_count()
    target = sink('a')

    def refuse(view):
        raise ValueError('the signature does not match')
    reader = LocalFileSource(src).open()
    try:
        with pytest.raises(ValueError, match='the signature does not match'):
            pipeline.run(reader, [target], observers=[refuse])
        assert reader.handle.tell() < 16 * SLICE_SIZE  # the reader stopped within a few buffers
    finally:
        reader.close()
    assert threading.active_count() == threads  # every worker thread ended
    assert target.error is None


def test_when_every_sink_fails_the_pass_stops_with_their_errors(sink, make_raw):
    src = make_raw('a.raw', [1, 2, 3])
    target = sink('a', byte_budget=SLICE_SIZE)
    threads = threading.active_count()
    with pytest.raises(StoreError) as raised:
        run_file(src, [target])
    quota = ("store 'a' quota exceeded: the image needs more than the %d bytes left under quota.bytes; "
             "raise the quota or delete images" % SLICE_SIZE)
    assert str(raised.value) == 'every target store failed: ' + quota
    assert target.error == quota and target.writer.staged_digests() == [sha256(slice_bytes(1))]
    assert threading.active_count() == threads


def test_one_failing_sink_fails_alone(sink, make_raw):
    src = make_raw('a.raw', [1, 2, 3])
    small, whole = sink('small', byte_budget=SLICE_SIZE), sink('whole')
    result, dummy = run_file(src, [small, whole])
    assert "store 'small' quota exceeded" in small.error and whole.error is None
    assert sorted(whole.writer.staged_digests()) == sorted(sha256(slice_bytes(seed)) for seed in (1, 2, 3))
    assert result.digests['sha512'] == hashlib.sha512(file_bytes(src)).hexdigest()


def test_a_write_failure_names_the_store(sink, make_raw):
    src = make_raw('a.raw', [1])
    target = sink('a')
    shutil.rmtree(target.writer.directory)
    with open(target.writer.directory, 'w') as handle:  # a file where the staging directory was: writes fail with ENOTDIR
        handle.write('x')
    with pytest.raises(StoreError, match="every target store failed: store 'a': write failed: Not a directory"):
        run_file(src, [target])


def test_format_is_inspected_on_the_way(make_raw, tmp_path):
    qcow2 = str(tmp_path / 'a.qcow2')
    subprocess.check_call(['qemu-img', 'create', '-q', '-f', 'qcow2', qcow2, '1G'])
    result, dummy = run_file(qcow2, [])
    assert result.report.format == 'qcow2' and result.report.virtual_size == 1 << 30 and result.size == os.path.getsize(qcow2)
    backed = str(tmp_path / 'b.qcow2')
    subprocess.check_call(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', qcow2, '-F', 'qcow2', backed])
    with pytest.raises(UnsafeImageError, match='the qcow2 image has a backing file'):
        run_file(backed, [])
    empty = str(tmp_path / 'empty.raw')
    open(empty, 'wb').close()
    with pytest.raises(FormatError, match=r'the image is empty \(0 bytes\)'):
        run_file(empty, [])
