# -*- coding: utf-8 -*-
"""Where an image may go and where a copy reads from: the rules of images/policy.py on real file stores."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import ImageError, StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.images import policy
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog


@pytest.fixture
def site(declare, registry):
    """Central store 'zc' (named to sort last), edges 'e1' and 'e2', a store 'plain' with no site role; the Catalog."""
    declare('zc', site_role='central')
    declare('e1', site_role='edge')
    declare('e2', site_role='edge')
    declare('plain')
    return Catalog(registry)


def names(stores):
    return [store.name for store in stores]


def test_central_first_then_by_name(site):
    stores = [site.store(name) for name in ('plain', 'e2', 'zc', 'e1')]
    assert names(policy.central_first(stores)) == ['zc', 'e1', 'e2', 'plain']


def test_requested_targets_keep_order_once_each(site):
    assert names(policy.requested_targets(site, {'stores': ['e2', 'zc', 'e2']})) == ['e2', 'zc']
    assert policy.requested_targets(site, {'stores': None}) == []
    with pytest.raises(StoreError, match="store 'nowhere' is not declared"):
        policy.requested_targets(site, {'stores': ['nowhere']})


def test_all_stores_leaves_out_disabled_stores(declare, registry):
    declare('a')
    declare('off', enabled=False)
    declare('b')
    assert names(policy.requested_targets(Catalog(registry), {'all_stores': True, 'stores': ['off']})) == ['a', 'b']


def test_edge_rule(site):
    edges = [site.store('e1'), site.store('e2')]
    with pytest.raises(ImageError) as raised:
        policy.check_edge_rule(site, edges, [])
    assert str(raised.value) == 'stores e1, e2 are at the edge: the central store (zc) must hold the image first; add it to stores:'
    with pytest.raises(ImageError, match=r'^store e1 is at the edge: the central store \(zc\) must hold'):
        policy.check_edge_rule(site, [site.store('e1')], ['e2'])  # another edge holding it is not enough
    policy.check_edge_rule(site, edges, ['zc'])  # central holds it
    policy.check_edge_rule(site, edges + [site.store('zc')], [])  # central takes it in the same run
    policy.check_edge_rule(site, [site.store('plain')], [])  # not an edge


def test_edge_rule_needs_a_central_store_to_exist(declare, registry):
    declare('e1', site_role='edge')
    catalog = Catalog(registry)
    policy.check_edge_rule(catalog, [catalog.store('e1')], [])  # a site without a central store has no such rule


def test_usable_fails_or_lists_the_stores_that_cannot_take_data(declare, registry):
    declare('a')
    declare('off', enabled=False)
    catalog = Catalog(registry)
    stores = [catalog.store('a'), catalog.store('off')]
    failed = []
    with pytest.raises(StoreError, match="store 'off' is disabled: enable it with enabled: true"):
        policy.usable(stores, False, failed)
    assert failed == []
    assert names(policy.usable(stores, True, failed)) == ['a']
    assert failed == [{'store': 'off', 'error': "store 'off' is disabled: enable it with enabled: true before changing its images"}]
    with pytest.raises(StoreError) as raised:
        policy.usable([catalog.store('off')], True, [])
    assert str(raised.value) == ("no target store can take the image: store 'off' is disabled: enable it with enabled: true "
                                 "before changing its images")


def test_central_holds_follows_the_central_record(site, image_request, make_raw):
    request = image_request(name='a', src=make_raw('a.raw', [1]), stores=['zc', 'e1'])
    request.present(False)
    assert policy.central_holds(site, request.image_id) is True
    assert policy.central_holds(site, '44444444-4444-4444-8444-444444444444') is False
    store = site.store('zc')
    record = store.backend.read_record(request.image_id)
    store.backend.write_record(request.image_id, dict(record, status='deactivated'))
    assert policy.central_holds(site, request.image_id) is False  # only an active central copy counts


def test_central_holds_without_central_store(declare, registry):
    declare('e1', site_role='edge')
    assert policy.central_holds(Catalog(registry), '44444444-4444-4444-8444-444444444444') is True


def test_source_store_is_central_unless_damaged(site, image_request, make_raw, registry):
    request = image_request(name='a', src=make_raw('a.raw', [1, 2]), stores=['zc', 'e1', 'e2'])
    request.present(False)
    image_id = request.image_id
    view = Catalog(registry).find(image_id)
    assert policy.source_store(site, view.active_stores(), view).name == 'zc'
    assert policy.source_store(site, ['e2', 'e1'], view).name == 'e1'  # no central among them: by name

    def damage(name):
        store = site.store(name)
        record = store.backend.read_record(image_id)
        store.backend.write_record(image_id, dict(record, damaged={'slices': ['x'], 'found_at': record['updated_at']}))
    damage('zc')
    view = Catalog(registry).find(image_id)
    assert policy.source_store(site, view.active_stores(), view).name == 'e1'  # a whole copy beats the damaged central one
    damage('e1')
    damage('e2')
    view = Catalog(registry).find(image_id)
    assert policy.source_store(site, view.active_stores(), view).name == 'zc'  # all damaged: central first again


def test_file_stores_take_any_format(site):
    stores = [site.store('zc'), site.store('plain')]
    assert not any(policy.raw_only(store) or policy.clones_in_place(store) for store in stores)
    assert policy.converts_to_raw(stores, None) is False
    assert policy.converts_to_raw(stores, 'raw') is True
    policy.check_raw_only({'name': 'q', 'disk_format': 'qcow2'}, 'id', stores)  # no raw-only store: nothing refused
