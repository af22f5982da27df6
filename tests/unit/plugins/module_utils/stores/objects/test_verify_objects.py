# -*- coding: utf-8 -*-
"""store_cleanup verify and repair on s3 and swift stores of a real radosgw: a slice object overwritten behind the
store's back is found, repaired from a file store (and the other way round), or reported unrepairable."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import filecmp
import hashlib
import os

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.export import Export
from ansible_collections.vmimages.multistore.plugins.module_utils.images.verify import StoreVerify, repair_sources
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE

from image_files import slice_bytes

pytestmark = pytest.mark.ceph


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def verify(registry, name, check_mode=False, repair=False):
    return StoreVerify(registry.open(name), repair_sources(registry) if repair else [], None, repair).run(check_mode)


def bucket_of(backend):
    return backend.blobs.bucket if backend.kind == 's3' else backend.blobs.container


def exported_equals(registry, name, store, src, dest):
    catalog = Catalog(registry)
    Export(catalog, catalog.find(name=name), store, dest).run()
    return filecmp.cmp(src, dest, shallow=False)


def test_an_overwritten_slice_object_is_found_and_repaired_from_a_file_store(kind, registry, declare, declare_object,
                                                                             image_request, make_raw, s3_admin, tmp_path):
    declare('central')
    backend = declare_object('objects', kind)
    src = make_raw('a.raw', [1, 2, None, 3], tail=b'tail')
    image_request(name='a', src=src, stores=['central', 'objects']).present(False)
    image_id = Catalog(registry).find(name='a').id
    digest = sha256(slice_bytes(2))
    key = 'slices/%s/%s' % (digest[:2], digest)
    rotten = bytearray(slice_bytes(2))
    rotten[12345] ^= 0x40
    s3_admin.put_object(Bucket=bucket_of(backend), Key=key, Body=bytes(rotten))  # same size, one bit changed

    changed, report = verify(registry, 'objects', check_mode=True)
    assert changed is False and report['verified_slices'] == 4 and report['verified_bytes'] == 3 * SLICE_SIZE + 4
    assert report['corrupt'] == [{'slice': digest, 'size': SLICE_SIZE, 'images': [{'id': image_id, 'name': 'a'}]}]
    changed, report = verify(registry, 'objects', check_mode=True, repair=True)
    assert changed is True and report['repaired'] == [{'slice': digest, 'from': 'central'}]
    assert sha256(s3_admin.get_object(Bucket=bucket_of(backend), Key=key)['Body'].read()) != digest  # predicted only

    changed, report = verify(registry, 'objects', repair=True)
    assert changed is True and report['repaired'] == [{'slice': digest, 'from': 'central'}] and report['unrepairable'] == []
    assert sha256(s3_admin.get_object(Bucket=bucket_of(backend), Key=key)['Body'].read()) == digest
    assert exported_equals(registry, 'a', 'objects', src, str(tmp_path / 'a.out'))
    changed, report = verify(registry, 'objects', repair=True)
    assert changed is False and report['corrupt'] == []


def test_a_file_store_is_repaired_from_an_object_store_and_a_lost_object_is_unrepairable(kind, registry, declare, declare_object,
                                                                                         image_request, make_raw, s3_admin, tmp_path):
    central = declare('central')
    backend = declare_object('objects', kind)
    src = make_raw('a.raw', [1, 2])
    image_request(name='a', src=src, stores=['central', 'objects']).present(False)
    image_request(name='b', src=make_raw('b.raw', [7]), stores=['objects']).present(False)
    image_id = Catalog(registry).find(name='b').id
    digest = sha256(slice_bytes(1))
    path = os.path.join(central, 'slices', digest[:2], digest)
    with open(path, 'r+b') as handle:
        handle.truncate(SLICE_SIZE // 2)
    changed, report = verify(registry, 'central', repair=True)
    assert report['repaired'] == [{'slice': digest, 'from': 'objects'}] and changed is True
    assert exported_equals(registry, 'a', 'central', src, str(tmp_path / 'a.out'))

    lost = sha256(slice_bytes(7))
    s3_admin.delete_object(Bucket=bucket_of(backend), Key='slices/%s/%s' % (lost[:2], lost))
    changed, report = verify(registry, 'objects', repair=True)
    assert report['corrupt'] == [{'slice': lost, 'size': SLICE_SIZE, 'images': [{'id': image_id, 'name': 'b'}]}]
    assert report['unrepairable'] == [{'slice': lost, 'images': [{'id': image_id, 'name': 'b'}]}]
    assert report['marked_damaged'] == [image_id] and changed is True
    info = Catalog(registry).find(name='b').describe()
    assert info['damaged_in_stores'] == ['objects'] and 'damaged' not in info
    assert Catalog(registry).find(name='a').describe()['damaged_in_stores'] == []
