# -*- coding: utf-8 -*-
"""The slice repository (stores/repository.py) over each blob back end: one layout, one protocol, one policy."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.common.fs import dump_json
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SliceList
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.repository import SliceRepository, slice_key


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def chunk(seed, size=4096):
    return (b'%08d' % seed) * (size // 8)


def slice_list(*datas):
    """Small slices (4 KiB): the repository does not care about the slice size, only the list's own consistency."""
    return SliceList(sum(len(data) for data in datas), [sha256(data) for data in datas], slice_size=4096)


def store_image(repository, image_id, datas, status='active'):
    """An image the way the engine writes one: slices, then the slice list, then the record."""
    writer = repository.slice_writer(image_id)
    for index, data in enumerate(datas):
        writer.put(sha256(data), data, index)
    writer.commit()
    repository.write_slice_list(image_id, slice_list(*datas))
    repository.write_record(image_id, {'id': image_id, 'status': status})


def keys(repository):
    return sorted(key for key, _size in repository.blobs.list('') if not key.startswith(('locks/', 'staging/')))


def test_every_back_end_keeps_one_layout(repository):
    assert isinstance(repository, SliceRepository)
    one, two = chunk(1), chunk(2)
    store_image(repository, 'img', [one, two, one])
    digests = sorted([sha256(one), sha256(two)])
    assert keys(repository) == sorted(['multistore.json', 'images/img/record.json', 'images/img/slices.json']
                                      + ['slices/%s/%s' % (digest[:2], digest) for digest in digests])
    # documents are the same bytes everywhere (dump_json), slices are the data named by its sha256
    assert repository.blobs.get('images/img/record.json') == dump_json({'id': 'img', 'status': 'active'})
    assert repository.blobs.get(slice_key(sha256(two))) == two
    assert repository.read_identity() == {'name': 'repo', 'type': repository.kind}
    assert repository.status() == 'connected'
    assert repository.location('img').endswith('/images/img')


def test_records_slice_lists_and_stats(repository):
    store_image(repository, 'a', [chunk(1), chunk(2)])
    store_image(repository, 'b', [chunk(2), chunk(3)], status='importing')
    assert repository.image_ids() == ['a', 'b']
    assert repository.read_records() == {'a': {'id': 'a', 'status': 'active'}, 'b': {'id': 'b', 'status': 'importing'}}
    assert repository.read_record('nothing') is None and repository.read_slice_list('nothing') is None
    assert repository.read_slice_list('a').to_dict() == slice_list(chunk(1), chunk(2)).to_dict()
    stats = repository.stats()
    documents = sum(size for key, size in repository.blobs.list('images/'))
    assert stats['image_count'] == 1  # an import that did not finish is no image
    assert stats['slice_count'] == 3 and stats['used'] == 3 * 4096 + documents


def test_slices_read_hash_replace_and_collect(repository):
    one, two, three = chunk(1), chunk(2), chunk(3)
    store_image(repository, 'a', [one, two])
    store_image(repository, 'b', [two, three])
    assert repository.has_slice(sha256(one)) and not repository.has_slice(sha256(b'x'))
    assert repository.missing_slices([sha256(one), sha256(b'x')]) == [sha256(b'x')]
    assert list(repository.read_slices([sha256(two), sha256(one)])) == [(sha256(two), two), (sha256(one), one)]
    assert repository.stored_slices() == set(sha256(data) for data in (one, two, three))
    repository.blobs.replace(slice_key(sha256(one)), b'rotten')
    assert list(repository.hash_slices([sha256(one), sha256(b'x')])) == [(sha256(one), sha256(b'rotten'), 6), (sha256(b'x'), None, 0)]
    repository.replace_slice(sha256(one), one)
    assert repository.read_slice(sha256(one)) == one
    with pytest.raises(StoreError, match=r"store 'repo': slice %s is missing" % sha256(b'x')):
        repository.read_slice(sha256(b'x'))
    # remove_image: the image is gone at once; then only what no slice list references is collected
    assert repository.remove_image('a') and not repository.remove_image('a')
    assert repository.image_ids() == ['b'] and repository.read_record('a') is None
    with repository.slice_guard(exclusive=True):
        released = repository.remove_unreferenced([sha256(one), sha256(two), sha256(b'x')])
    assert released == len(one)
    assert repository.stored_slices() == set([sha256(two), sha256(three)])


def test_a_corrupt_record_is_reported_in_the_back_end_words(repository):
    repository.blobs.put('images/bad/record.json', b'{not json')
    if repository.kind == 'file':
        with pytest.raises(ValueError):  # as before the repository layer: the engine reports the file
            repository.read_record('bad')
    else:
        with pytest.raises(StoreError, match=r'images/bad/record.json is corrupt'):
            repository.read_record('bad')


def test_locks_and_the_guard_are_one_concept(repository):
    lock = repository.image_lock('img')
    assert not repository.image_lock('img').busy()
    with lock:
        assert repository.image_lock('img').busy()
        lock.refresh()
    assert not repository.image_lock('img').busy()
    with repository.slice_guard(exclusive=False):
        with repository.slice_guard(exclusive=False):
            pass  # shared holders do not exclude each other
    with repository.slice_guard(exclusive=True):
        pass


def test_clean_staging_keeps_what_a_running_or_resumable_transfer_owns(repository):
    # a slice list without a record: a removal cut short on objects (whose removal is key by key), an import killed
    # before its record was in place on files; store_cleanup removes it unless the image is locked
    repository.write_slice_list('cut', slice_list(chunk(1)))
    with repository.image_lock('cut'):
        assert repository.clean_staging(0, check_mode=False) == []
    found = repository.clean_staging(0, check_mode=True)
    assert [name for name, _size in found] == ['images/cut (no record)']
    assert repository.clean_staging(0, check_mode=False) == found and repository.image_ids() == []


def test_an_interrupted_transfer_is_resumed_then_its_leftovers_collected(repository):
    one, two = chunk(1), chunk(2)
    writer = repository.slice_writer('img')
    writer.put(sha256(one), one, 0)
    writer.abort(keep=True)  # interrupted: what was sent stays for the next run
    again = repository.slice_writer('img')
    again.put(sha256(one), one, 0)
    again.put(sha256(two), two, 1)
    if repository.kind == 'file':
        assert again.adopted_bytes == len(one)  # adopted from staging, not written again
    again.commit()
    repository.write_slice_list('img', slice_list(one, two))
    repository.write_record('img', {'id': 'img', 'status': 'active'})
    assert repository.missing_slices([sha256(one), sha256(two)]) == []
    assert repository.clean_staging(3600, check_mode=False) == []


def test_blob_contract(repository):
    blobs = repository.blobs
    blobs.put('images/x/a.json', b'12345')
    blobs.put('images/x/b.json', b'1')
    assert blobs.get('images/x/a.json') == b'12345' and blobs.get('images/x/none') is None
    assert blobs.stat('images/x/a.json') == 5 and blobs.stat('images/x/none') is None
    assert sorted(blobs.list('images/')) == [('images/x/a.json', 5), ('images/x/b.json', 1)]
    assert blobs.children('images/') == ['x']
    assert blobs.map(len, ['a', 'bb']) == [1, 2]
    assert list(blobs.prefetch(len, ['a', 'bb'])) == [('a', 1), ('bb', 2)]
    assert blobs.remove('images/x/b.json') == 1 and blobs.remove('images/x/b.json') == 0
    assert blobs.remove_tree('images/x/', first='images/x/a.json') and not blobs.remove_tree('images/x/', first=None)
    assert blobs.list('images/') == []
    assert json.loads(blobs.get('multistore.json').decode('utf-8'))['name'] == 'repo'
