# -*- coding: utf-8 -*-
"""store_cleanup verify and repair on real file stores (local, and over a real sshd): bit rot made by flipping a byte
in a slice file, repaired from another store, or reported unrepairable and marked damaged in image_info."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import filecmp
import hashlib
import importlib.util
import os
import random

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument, StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.export import Export
from ansible_collections.vmimages.multistore.plugins.module_utils.images.verify import (
    StoreVerify, check_verify_options, repair_sources)
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.agent import Agent

from image_files import slice_bytes


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def slice_file(store_path, seed):
    digest = sha256(slice_bytes(seed))
    return os.path.join(store_path, 'slices', digest[:2], digest), digest


def flip_byte(path, offset=1000):
    with open(path, 'r+b') as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))


def verify(registry, name, check_mode=False, sample=None, repair=False, seed=None):
    sources = repair_sources(registry) if repair else []
    rng = random.Random(seed) if seed is not None else None
    return StoreVerify(registry.open(name), sources, sample, repair, rng=rng).run(check_mode)


def export_equals(registry, name, store, src, dest):
    catalog = Catalog(registry)
    Export(catalog, catalog.find(name=name), store, dest).run()
    return filecmp.cmp(src, dest, shallow=False)


def test_a_flipped_byte_is_found_and_repaired_from_another_store(registry, declare, image_request, make_raw, tmp_path):
    central = declare('central')
    declare('dcn0')
    src = make_raw('a.raw', [1, 2, None, 3], tail=b'end')
    image_request(name='a', src=src, stores=['central', 'dcn0']).present(check_mode=False)
    image_id = Catalog(registry).find(name='a').id

    changed, report = verify(registry, 'central')
    assert changed is False and report['corrupt'] == []
    assert report['verified_slices'] == 4 and report['verified_bytes'] == 3 * SLICE_SIZE + 3
    assert report['throughput'] > 0 and 'repaired' not in report

    path, digest = slice_file(central, 2)
    flip_byte(path)
    changed, report = verify(registry, 'central')
    assert changed is False
    assert report['corrupt'] == [{'slice': digest, 'size': SLICE_SIZE, 'images': [{'id': image_id, 'name': 'a'}]}]
    assert report['verified_slices'] == 4

    # check mode predicts the repair (the source slice is read and checked), writes nothing
    changed, report = verify(registry, 'central', check_mode=True, repair=True)
    assert changed is True and report['repaired'] == [{'slice': digest, 'from': 'dcn0'}] and report['unrepairable'] == []
    with open(path, 'rb') as handle:
        assert sha256(handle.read()) != digest

    changed, report = verify(registry, 'central', repair=True)
    assert changed is True and report['repaired'] == [{'slice': digest, 'from': 'dcn0'}]
    assert report['marked_damaged'] == [] and report['unrepairable'] == []
    with open(path, 'rb') as handle:
        assert sha256(handle.read()) == digest
    assert os.listdir(os.path.join(central, 'staging')) == []
    assert export_equals(registry, 'a', 'central', src, str(tmp_path / 'out.raw'))
    # repaired: the next run finds nothing to do
    changed, report = verify(registry, 'central', repair=True)
    assert changed is False and report['corrupt'] == [] and report['repaired'] == []


def test_unrepairable_slices_mark_the_images_damaged_until_a_repair_finds_them_whole(registry, declare, image_request, make_raw, tmp_path):
    central = declare('central')
    declare('dcn0')
    src = make_raw('a.raw', [1, 2, 3])
    image_request(name='a', src=src, stores=['central']).present(check_mode=False)
    image_request(name='b', src=make_raw('b.raw', [2, 4]), stores=['central']).present(check_mode=False)
    catalog = Catalog(registry)
    a_id, b_id = catalog.find(name='a').id, catalog.find(name='b').id
    path, digest = slice_file(central, 2)
    flip_byte(path)

    # dcn0 does not hold slice 2: nothing can restore it; both images using it are damaged in central
    changed, report = verify(registry, 'central', check_mode=True, repair=True)
    assert changed is True and sorted(report['marked_damaged']) == sorted([a_id, b_id])
    assert 'damaged' not in registry.open('central').backend.read_record(a_id)  # check mode wrote nothing
    changed, report = verify(registry, 'central', repair=True)
    assert changed is True and report['repaired'] == []
    assert report['unrepairable'] == [{'slice': digest, 'images': sorted([{'id': a_id, 'name': 'a'}, {'id': b_id, 'name': 'b'}],
                                                                         key=lambda image: image['id'])}]
    for name in ('a', 'b'):
        assert Catalog(registry).find(name=name).describe()['damaged_in_stores'] == ['central']
    assert verify(registry, 'central', repair=True)[0] is False  # marked already: idempotent

    # another image holding the same slice arrives in dcn0 (content-addressed: the slice is the same)
    image_request(name='c', src=make_raw('c.raw', [5, 2]), stores=['dcn0']).present(check_mode=False)
    # a sample does not clear a mark: only a run that read every slice may say an image is whole
    sampled = verify(registry, 'central', repair=True, sample=50, seed=3)[1]
    assert sampled['verified_slices'] == 2 and sampled['cleared_damaged'] == []
    assert Catalog(registry).find(name='a').describe()['damaged_in_stores'] == ['central']
    changed, report = verify(registry, 'central', repair=True)
    assert changed is True and sorted(report['cleared_damaged']) == sorted([a_id, b_id])
    assert sampled['repaired'] + report['repaired'] == [{'slice': digest, 'from': 'dcn0'}]
    changed, report = verify(registry, 'central', repair=True)
    assert changed is False and report['corrupt'] == []
    for name in ('a', 'b'):
        assert Catalog(registry).find(name=name).describe()['damaged_in_stores'] == []
    assert export_equals(registry, 'a', 'central', src, str(tmp_path / 'a.out'))


def test_a_source_with_the_same_damage_is_passed_over_and_a_missing_slice_is_corrupt(registry, declare, image_request, make_raw,
                                                                                     tmp_path):
    central = declare('central')
    dcn0 = declare('dcn0')
    declare('dcn1')
    src = make_raw('a.raw', [1, 2, 3])
    image_request(name='a', src=src, stores=['central', 'dcn0', 'dcn1']).present(check_mode=False)
    path, digest = slice_file(central, 1)
    os.remove(path)
    flip_byte(slice_file(dcn0, 1)[0])  # the first source in name order is damaged too: dcn1 serves the slice
    changed, report = verify(registry, 'central', repair=True)
    assert [entry['slice'] for entry in report['corrupt']] == [digest]
    assert report['repaired'] == [{'slice': digest, 'from': 'dcn1'}]
    assert export_equals(registry, 'a', 'central', src, str(tmp_path / 'a.out'))
    assert [entry['slice'] for entry in verify(registry, 'dcn0')[1]['corrupt']] == [digest]


def test_a_sample_reads_the_given_share_of_slices(registry, declare, image_request, make_raw):
    declare('central')
    image_request(name='a', src=make_raw('a.raw', list(range(1, 11))), stores=['central']).present(check_mode=False)
    report = verify(registry, 'central', sample=30, seed=1)[1]
    assert report['verified_slices'] == 3 and report['verified_bytes'] == 3 * SLICE_SIZE
    assert verify(registry, 'central', sample=1, seed=1)[1]['verified_slices'] == 1
    assert verify(registry, 'central', sample=100)[1]['verified_slices'] == 10


@pytest.mark.parametrize('verify_on, sample, repair, message', [
    (True, 0, False, 'verify_sample 0 is not a percentage'),
    (True, 101, False, 'verify_sample 101 is not a percentage'),
    (False, None, True, 'repair: true replaces the slices a verify finds corrupt: set verify: true'),
    (False, 10, False, 'set verify: true too'),
])
def test_bad_options_are_refused_clearly(verify_on, sample, repair, message):
    with pytest.raises(InvalidArgument, match=message):
        check_verify_options(verify_on, sample, repair)


def test_the_agent_hashes_on_the_store_host_and_refuses_a_damaged_replacement(declare, image_request, make_raw):
    central = declare('central')
    image_request(name='a', src=make_raw('a.raw', [1, 2]), stores=['central']).present(check_mode=False)
    path, digest = slice_file(central, 1)
    flip_byte(path)
    agent = Agent([central])
    agent.op_open('central', central)
    found = dict((entry[0], entry[1]) for entry in agent.op_hash_slices([digest, sha256(slice_bytes(2)), 'f' * 64]))
    assert found == {digest: sha256(open(path, 'rb').read()), sha256(slice_bytes(2)): sha256(slice_bytes(2)), 'f' * 64: None}
    with pytest.raises(StoreError, match='arrived damaged'):
        agent.op_replace_slice(digest, slice_bytes(3))
    assert found[digest] != digest  # still the damaged bytes: nothing was replaced
    agent.op_replace_slice(digest, slice_bytes(1))
    assert sha256(open(path, 'rb').read()) == digest


def _remote_fixtures():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'stores', 'remote', 'conftest.py')
    spec = importlib.util.spec_from_file_location('remote_store_fixtures', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def remote_sshd(tmp_path):
    fixtures = _remote_fixtures()
    if os.geteuid() != 0 or not os.path.exists(fixtures.SSHD):
        pytest.skip('needs root and openssh-server (installed by make setup)')
    directory = str(tmp_path / 'sshd')
    os.mkdir(directory)
    server = fixtures.Sshd(directory)
    yield server
    server.stop()


def test_a_remote_file_store_is_verified_and_repaired_over_ssh(remote_sshd, registry, declare, image_request, make_raw, tmp_path):
    from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration
    from ansible_collections.vmimages.multistore.plugins.module_utils.stores.registry import Registry
    path = str(tmp_path / 'remote' / 'edge')
    StoreDeclaration(Registry(str(tmp_path / 'owner')), {'name': 'edge', 'path': path}).present(check_mode=False)
    StoreDeclaration(registry, dict(remote_sshd.connection(), name='edge', path=path)).present(check_mode=False)
    declare('central')
    src = make_raw('a.raw', [1, 2, 3])
    image_request(name='a', src=src, stores=['central', 'edge']).present(check_mode=False)
    image_id = Catalog(registry).find(name='a').id
    slice_path, digest = slice_file(path, 3)
    flip_byte(slice_path, offset=SLICE_SIZE - 1)
    changed, report = verify(registry, 'edge', repair=True)
    assert report['corrupt'] == [{'slice': digest, 'size': SLICE_SIZE, 'images': [{'id': image_id, 'name': 'a'}]}]
    assert report['repaired'] == [{'slice': digest, 'from': 'central'}] and changed is True
    assert sha256(open(slice_path, 'rb').read()) == digest
    assert export_equals(registry, 'a', 'edge', src, str(tmp_path / 'a.out'))
    # nothing else in the store host's staging area, and the next verify is clean
    assert os.listdir(os.path.join(path, 'staging')) == []
    changed, report = verify(registry, 'edge', repair=True)
    assert changed is False and report['corrupt'] == [] and report['verified_slices'] == 3
    assert verify(registry, 'edge')[1]['corrupt'] == []


def test_a_copy_reads_from_a_whole_copy_rather_than_a_damaged_one(registry, declare, image_request, make_raw, tmp_path):
    """Central comes first as a copy's source, unless its copy is marked damaged (as a verify without a source leaves it)."""
    central = declare('central', site_role='central')
    declare('edge1', site_role='edge')
    declare('edge2', site_role='edge')
    src = make_raw('a.raw', [1, 2, 3])
    image_request(name='a', src=src, stores=['central', 'edge1']).present(check_mode=False)
    path, digest = slice_file(central, 2)
    flip_byte(path)
    image_id = Catalog(registry).find(name='a').id
    backend = registry.open('central').backend
    record = backend.read_record(image_id)
    record['damaged'] = {'slices': [digest], 'found_at': '2026-12-01T00:00:00Z'}
    backend.write_record(image_id, record)
    copy = image_request(name='a', stores=['edge2'])
    assert copy.present(check_mode=False) is True and copy.actions == ['copy to edge2 from edge1']
    assert export_equals(registry, 'a', 'edge2', src, str(tmp_path / 'a.out'))
