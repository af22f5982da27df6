# -*- coding: utf-8 -*-
"""Writes into several stores (images/transaction.py): commit order, rollback, resumption, copies, clones, deletions.

Real file stores in tmp dirs, real data through the real pipeline; store faults are made for real with
chattr +i (root) or quotas, never simulated.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import hashlib
import os
import subprocess
import sys

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.clock import utc_now
from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import (
    ImageError, SourceError, StoreError, TransferInterrupted)
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.records import MUTABLE_FIELDS, new_record
from ansible_collections.vmimages.multistore.plugins.module_utils.images.transaction import (
    Transfer, clone_into, copy_from, remove_copy, update_records)
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer import pipeline
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer.sources import LocalFileSource

from image_files import leftovers, slice_bytes, stored_slices

IMAGE_ID = '66666666-6666-4666-8666-666666666666'
CLONE_ID = '77777777-7777-4777-8777-777777777777'
root_only = pytest.mark.skipif(os.geteuid() != 0, reason='chattr +i needs root')


def placeholder(image_id=IMAGE_ID):
    return {'id': image_id, 'name': 'img', 'status': 'importing', 'created_at': utc_now()}


def import_file(src, fail_after=None, error=SourceError):
    """The move_data of an import: one pipeline pass over ``src``; ``fail_after`` slices, raise ``error`` (a source gone bad)."""
    def move_data(sinks, refresh, progress):
        def on_slice(index):
            refresh(index)
            if fail_after is not None and index >= fail_after:
                raise error('the source went away after %d slices' % index)
        reader = LocalFileSource(src).open()
        progress.set_total(reader.expected_size)
        try:
            result = pipeline.run(reader, sinks, on_slice=on_slice)
        finally:
            reader.close()
        record = new_record(IMAGE_ID, 'img', 'raw', 'bare', dict.fromkeys(MUTABLE_FIELDS), result.size, result.size, result.digests, 'active')
        return record, result.slice_list
    return move_data


@contextlib.contextmanager
def immutable(path):
    """chattr +i: renames and new entries in ``path`` fail with EPERM, for real."""
    subprocess.check_call(['chattr', '+i', path])
    try:
        yield
    finally:
        subprocess.check_call(['chattr', '-i', path])


def status(catalog, name, image_id=IMAGE_ID):
    return (catalog.store(name).backend.read_record(image_id) or {}).get('status')


def test_commit_is_central_first_so_an_edge_sorted_before_it_is_committed(declare, registry, make_raw):
    declare('aedge', site_role='edge')  # sorts before the central store: committed first, it would be refused
    declare('zcentral', site_role='central')
    catalog = Catalog(registry)
    src = make_raw('a.raw', [1, 2])
    Transfer(catalog, IMAGE_ID, [catalog.store('aedge'), catalog.store('zcentral')]).run(placeholder(), import_file(src))
    assert status(catalog, 'aedge') == status(catalog, 'zcentral') == 'active'
    expected = sorted(hashlib.sha256(slice_bytes(seed)).hexdigest() for seed in (1, 2))
    for name in ('aedge', 'zcentral'):
        path = catalog.store(name).backend.root
        assert stored_slices(path) == expected and leftovers(path) == ['images/%s' % IMAGE_ID]
    assert os.listdir(os.path.join(registry.directory, 'progress')) == []  # the progress file went with the transfer


def test_a_failing_source_rolls_every_store_back(declare, registry, make_raw):
    paths = [declare('a'), declare('b')]
    catalog = Catalog(registry)
    targets = [catalog.store('a'), catalog.store('b')]
    with pytest.raises(SourceError, match='the source went away after 1 slices'):
        Transfer(catalog, IMAGE_ID, targets).run(placeholder(), import_file(make_raw('a.raw', [1, 2, 3]), fail_after=1))
    for path in paths:
        assert leftovers(path) == [] and stored_slices(path) == []  # no record, no staged slice, no lock
    Transfer(catalog, IMAGE_ID, targets).run(placeholder(), import_file(make_raw('b.raw', [4])))  # the locks were released
    assert status(catalog, 'a') == status(catalog, 'b') == 'active'


def test_an_interrupted_transfer_keeps_its_staged_slices_and_the_next_resumes(declare, registry, make_raw):
    path = declare('a')
    catalog = Catalog(registry)
    src = make_raw('a.raw', [1, 2, 3])
    with pytest.raises(TransferInterrupted):
        Transfer(catalog, IMAGE_ID, [catalog.store('a')]).run(placeholder(), import_file(src, fail_after=2, error=TransferInterrupted))
    assert leftovers(path) == ['staging/%s.partial' % IMAGE_ID] and status(catalog, 'a') is None
    resumed = []
    Transfer(catalog, IMAGE_ID, [catalog.store('a')], on_resumed=resumed.append).run(placeholder(), import_file(src))
    assert len(resumed) == 1 and 2 <= resumed[0] <= 3  # the slices staged before the interruption were adopted
    assert status(catalog, 'a') == 'active' and leftovers(path) == ['images/%s' % IMAGE_ID]


def test_without_allow_failure_one_failing_store_changes_none(declare, registry, make_raw):
    whole = declare('a')
    declare('small', quota={'bytes': SLICE_SIZE})
    catalog = Catalog(registry)
    failed = []
    with pytest.raises(StoreError) as raised:
        Transfer(catalog, IMAGE_ID, [catalog.store('a'), catalog.store('small')], failed_import=failed).run(
            placeholder(), import_file(make_raw('a.raw', [1, 2])))
    assert str(raised.value) == (
        "store 'small' quota exceeded: the image needs more than the %d bytes left under quota.bytes; raise the quota or delete "
        "images (allow_failure is false: no store was changed; set allow_failure: true to keep the stores that succeeded)" % SLICE_SIZE)
    assert failed == [] and leftovers(whole) == [] and stored_slices(whole) == []


def test_with_allow_failure_the_failed_store_is_marked_killed(declare, registry, make_raw):
    declare('a')
    declare('small', quota={'bytes': SLICE_SIZE})
    catalog = Catalog(registry)
    failed = []
    Transfer(catalog, IMAGE_ID, [catalog.store('a'), catalog.store('small')], allow_failure=True, failed_import=failed).run(
        placeholder(), import_file(make_raw('a.raw', [1, 2])))
    assert [entry['store'] for entry in failed] == ['small'] and 'quota exceeded' in failed[0]['error']
    assert status(catalog, 'a') == 'active' and status(catalog, 'small') == 'killed'
    assert catalog.store('small').backend.read_record(IMAGE_ID)['failure'] == failed[0]['error']
    assert stored_slices(catalog.store('small').backend.root) == []


def test_quota_images_is_checked_before_any_data_moves(declare, registry, make_raw):
    path = declare('a', quota={'images': 0})
    catalog = Catalog(registry)
    with pytest.raises(StoreError, match=r"^store 'a' quota exceeded: it holds 0 images, quota.images is 0; raise the quota"):
        Transfer(catalog, IMAGE_ID, [catalog.store('a')]).run(placeholder(), import_file('/nonexistent'))
    assert leftovers(path) == []


@root_only
def test_a_central_commit_failure_leaves_the_edge_uncommitted(declare, registry, make_raw):
    central = declare('central', site_role='central')
    edge = declare('edge', site_role='edge')
    catalog = Catalog(registry)
    targets = [catalog.store('central'), catalog.store('edge')]
    with immutable(os.path.join(central, 'slices')):  # the central commit cannot rename its slices into place
        with pytest.raises(StoreError) as raised:
            Transfer(catalog, IMAGE_ID, targets, allow_failure=True).run(placeholder(), import_file(make_raw('a.raw', [1])))
    assert str(raised.value) == (
        "no store took the image, nothing was changed: store 'central': commit failed (Operation not permitted); "
        "store 'edge' is at the edge and no central store holds the image (the central import failed); it will be copied "
        "once a central store has it")
    assert stored_slices(edge) == [] and status(catalog, 'edge') is None


@root_only
def test_a_commit_failure_rolls_back_the_stores_committed_before_it(declare, registry, make_raw):
    first = declare('a')
    second = declare('b')
    catalog = Catalog(registry)
    with immutable(os.path.join(second, 'slices')):
        with pytest.raises(StoreError, match=r"^store 'b': commit failed \(Operation not permitted\); no store was changed$"):
            Transfer(catalog, IMAGE_ID, [catalog.store('a'), catalog.store('b')]).run(placeholder(), import_file(make_raw('a.raw', [1, 2])))
    assert status(catalog, 'a') is None and stored_slices(first) == []  # committed, then forgotten and its slices collected


def test_copy_sends_only_missing_slices_and_refuses_a_corrupt_one(declare, registry, image_request, make_raw):
    declare('a')
    b = declare('b')
    request = image_request(name='img', src=make_raw('a.raw', [1, 2, None, 3]), stores=['a'])
    request.present(False)
    image_id = request.image_id
    catalog = Catalog(registry)
    source = catalog.store('a')
    record, slice_list = source.backend.read_record(image_id), source.backend.read_slice_list(image_id)
    image_request(name='other', src=make_raw('o.raw', [2]), stores=['b']).present(False)  # b has slice 2 already
    copy = Transfer(catalog, image_id, [catalog.store('b')])
    copy.run(dict(record, status='importing'), copy_from(source, image_id, record, slice_list))
    assert status(catalog, 'b', image_id) == 'active'
    assert stored_slices(b) == stored_slices(source.backend.root)
    assert catalog.store('b').backend.read_slice_list(image_id).slices == slice_list.slices

    c = declare('c')
    catalog = Catalog(registry)
    digest = hashlib.sha256(slice_bytes(3)).hexdigest()
    with open(catalog.store('a').backend.slice_path(digest), 'r+b') as handle:
        handle.write(b'rot')  # bit rot in the source store
    with pytest.raises(ImageError) as raised:
        Transfer(catalog, image_id, [catalog.store('c')]).run(
            dict(record, status='importing'), copy_from(catalog.store('a'), image_id, record, slice_list))
    assert str(raised.value) == ("slice %s of image %s is corrupt in store 'a': delete the image from that store and copy it "
                                 "there again from another" % (digest, image_id))
    assert leftovers(c) == [] and stored_slices(c) == []


def test_clone_shares_the_parents_slices(declare, registry, image_request, make_raw):
    a = declare('a')
    request = image_request(name='parent', src=make_raw('a.raw', [1, 2]), stores=['a'])
    request.present(False)
    catalog = Catalog(registry)
    store = catalog.store('a')
    before = stored_slices(a)
    record = dict(store.backend.read_record(request.image_id), id=CLONE_ID, name='child', cloned_from=request.image_id)
    clone_into([store], request.image_id, CLONE_ID, record)
    assert store.backend.read_record(CLONE_ID) == record
    assert store.backend.read_slice_list(CLONE_ID).slices == store.backend.read_slice_list(request.image_id).slices
    assert stored_slices(a) == before


@root_only
def test_a_failed_clone_is_removed_from_every_store(declare, registry, image_request, make_raw):
    declare('central', site_role='central')
    other = declare('other')
    request = image_request(name='parent', src=make_raw('a.raw', [1]), stores=['central', 'other'])
    request.present(False)
    catalog = Catalog(registry)
    targets = [catalog.store('other'), catalog.store('central')]
    record = dict(catalog.store('central').backend.read_record(request.image_id), id=CLONE_ID, name='child')
    with immutable(os.path.join(other, 'images')):  # 'other' cannot make the clone's directory
        with pytest.raises(OSError):
            clone_into(targets, request.image_id, CLONE_ID, record)
    assert status(catalog, 'central', CLONE_ID) is None and status(catalog, 'other', CLONE_ID) is None


def test_update_records_and_remove_copy(declare, registry, image_request, make_raw):
    declare('a')
    declare('b')
    first = image_request(name='one', src=make_raw('1.raw', [1, 2]), stores=['a', 'b'])
    first.present(False)
    image_request(name='two', src=make_raw('2.raw', [2]), stores=['a']).present(False)
    catalog = Catalog(registry)
    stores = [catalog.store('a'), catalog.store('b')]
    update_records(stores, first.image_id, {'min_ram': 512, 'tags': ['x']})
    for store in stores:
        record = store.backend.read_record(first.image_id)
        assert (record['min_ram'], record['tags'], record['name']) == (512, ['x'], 'one')
    assert remove_copy(catalog.store('a'), first.image_id) == SLICE_SIZE  # slice 2 stays: image 'two' uses it
    assert status(catalog, 'a', first.image_id) is None and status(catalog, 'b', first.image_id) == 'active'
    assert stored_slices(catalog.store('a').backend.root) == [hashlib.sha256(slice_bytes(2)).hexdigest()]


KILLED_CLONE = """
import sys, time
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.request import ImageRequest
from ansible_collections.vmimages.multistore.plugins.module_utils.stores import repository
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.registry import Registry


def write_slice_list(self, image_id, slice_list):
    print('PAUSED', flush=True)  # the placeholder record is in the first store, nothing else
    time.sleep(600)


repository.SliceRepository.write_slice_list = write_slice_list
params = {'name': 'child', 'clone_from': 'parent', 'state': 'cloned', 'stores': ['a', 'b'], 'container_format': 'bare'}
ImageRequest(Catalog(Registry(sys.argv[1])), params).cloned(check_mode=False)
"""


def test_a_clone_killed_before_its_first_record_was_active_is_made_by_the_rerun(declare, registry, image_request, make_raw, locks_never_wait):
    """kill -9 of a clone between its placeholder record and its slice list in the first store: the re-run used to fail
    for ever with "active in no store: give src:" (a clone has none). It clones again under the same id, at once."""
    a = declare('a')
    declare('b')
    parent = image_request(name='parent', src=make_raw('a.raw', [1, 2]), stores=['a', 'b'])
    parent.present(False)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(entry for entry in sys.path if entry))
    run = subprocess.Popen([sys.executable, '-c', KILLED_CLONE, registry.directory], stdout=subprocess.PIPE, env=env,
                           universal_newlines=True)
    assert run.stdout.readline().strip() == 'PAUSED'
    run.kill()
    run.wait()
    [clone_id] = [name for name in os.listdir(os.path.join(a, 'images')) if name != parent.image_id]
    assert Catalog(registry).find(name='child').active_stores() == []
    again = image_request(name='child', clone_from='parent', state='cloned', stores=['a', 'b'])
    assert again.cloned(check_mode=False) is True and again.image_id == clone_id
    catalog = Catalog(registry)
    view = catalog.find(name='child')
    assert view.id == clone_id and sorted(view.active_stores()) == ['a', 'b']
    assert catalog.store('b').backend.read_slice_list(clone_id).slices == catalog.store('b').backend.read_slice_list(parent.image_id).slices
    assert image_request(name='child', clone_from='parent', state='cloned', stores=['a', 'b']).cloned(check_mode=False) is False
