# -*- coding: utf-8 -*-
"""The stores' name index: a lookup by name reads the records the index names, not every record of every store."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import ImageError
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration


def poison(path, image_id):
    """Make one image's record unreadable: any code path that reads it fails loudly."""
    with open(os.path.join(path, 'images', image_id, 'record.json'), 'w') as handle:
        handle.write('{not json')


def test_a_lookup_by_name_reads_only_the_records_the_index_names(declare, image_request, make_raw, registry):
    paths = [declare('s1'), declare('s2')]
    for name, seed in (('alpha', 1), ('beta', 2)):
        assert image_request(name=name, src=make_raw(name + '.raw', [seed]), stores=['s1', 's2']).present(False) is True
    beta = Catalog(registry).find(name='beta')
    for path in paths:
        poison(path, beta.id)
    # alpha is found, in both stores, without reading beta's records; a scan would trip over them
    alpha = Catalog(registry).find(name='alpha')
    assert alpha.active_stores() == ['s1', 's2']
    assert image_request(name='alpha', stores=['s1', 's2']).present(False) is False
    with pytest.raises(Exception):
        Catalog(registry).images()


def test_a_store_made_before_the_index_is_scanned_until_its_declaration_indexes_it(declare, image_request, make_raw, registry, tmp_path):
    path = declare('old')
    assert image_request(name='alpha', src=make_raw('a.raw', [1]), stores=['old']).present(False) is True
    assert image_request(name='beta', src=make_raw('b.raw', [2]), stores=['old']).present(False) is True
    shutil.rmtree(os.path.join(path, 'names'))  # what an older version left: records, no index
    store = registry.open('old').backend
    assert store.image_ids_named('alpha') is None
    alpha = Catalog(registry).find(name='alpha')  # found by a scan
    assert alpha is not None and alpha.active_stores() == ['old']
    # check mode indexes nothing; the real declaration does, once, and reports no change for it
    assert StoreDeclaration(registry, {'name': 'old', 'path': path}).present(check_mode=True) is False
    assert not os.path.exists(os.path.join(path, 'names'))
    assert StoreDeclaration(registry, {'name': 'old', 'path': path}).present(check_mode=False) is False
    assert store.image_ids_named('alpha') == [alpha.id] and store.image_ids_named('gamma') == []
    assert store.index_names() is False
    poison(path, Catalog(registry).find(name='beta').id)
    assert Catalog(registry).find(name='alpha').id == alpha.id


def test_deletion_drops_the_index_entry_and_same_names_stay_ambiguous(declare, image_request, make_raw, registry):
    path = declare('s1')
    assert image_request(name='dup', src=make_raw('a.raw', [1]), stores=['s1']).present(False) is True
    first = Catalog(registry).find(name='dup')
    store = registry.open('s1').backend
    # a second image of the same name, as another host's run may make it (its own id, its own index entry)
    second_id = '44444444-4444-4444-8444-444444444444'
    store.write_slice_list(second_id, store.read_slice_list(first.id))
    store.write_record(second_id, dict(first.copies['s1'], id=second_id))
    assert sorted(store.image_ids_named('dup')) == sorted([first.id, second_id])
    with pytest.raises(ImageError, match="2 images are named 'dup'"):
        Catalog(registry).find(name='dup')
    assert [view.id for view in Catalog(registry).named('dup')] == sorted([first.id, second_id])
    assert image_request(id=second_id, name='dup', state='absent').absent(False) is True
    assert store.image_ids_named('dup') == [first.id]
    assert Catalog(registry).find(name='dup').id == first.id
    # an entry whose image is gone (a run killed between the two removals) is ignored
    open(os.path.join(path, 'names', os.listdir(os.path.join(path, 'names'))[0], second_id), 'w').close()
    assert Catalog(registry).find(name='dup').id == first.id
