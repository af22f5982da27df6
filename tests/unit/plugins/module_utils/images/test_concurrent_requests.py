# -*- coding: utf-8 -*-
"""Runs that import or copy one image at once (found by tests/faults/test_concurrent_runs.py: eight playbooks
importing the same image made it eight times, or imported it again over the copy another run had just made).

Real file stores and real locks; the "other run" is a transfer in a thread of this process, holding real locks.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
import time

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.clock import utc_now
from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import LockError
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.records import MUTABLE_FIELDS, new_record
from ansible_collections.vmimages.multistore.plugins.module_utils.images.transaction import Transfer
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer import pipeline
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer.sources import LocalFileSource

from image_files import leftovers

IMAGE_ID = '88888888-8888-4888-8888-888888888888'
HANG_GUARD = 60


def _import(src, before=None):
    """The move_data of an import of ``src`` as IMAGE_ID named 'img'; ``before()`` is called first."""
    def move_data(sinks, refresh, progress):
        if before is not None:
            before()
        reader = LocalFileSource(src).open()
        try:
            result = pipeline.run(reader, sinks, on_slice=refresh)
        finally:
            reader.close()
        return (new_record(IMAGE_ID, 'img', 'raw', 'bare', dict.fromkeys(MUTABLE_FIELDS), result.size, result.size, result.digests, 'active'),
                result.slice_list)
    return move_data


def _placeholder():
    return {'id': IMAGE_ID, 'name': 'img', 'status': 'importing', 'created_at': utc_now()}


def _wait_for(predicate):
    deadline = time.time() + HANG_GUARD
    while not predicate():
        assert time.time() < deadline, 'hang guard'
        time.sleep(0.01)


def test_a_transfer_leaves_alone_a_store_another_run_completed_while_it_waited(declare, registry, make_raw):
    declare('a')
    declare('b')
    catalog = Catalog(registry)
    targets = [catalog.store('a'), catalog.store('b')]
    src = make_raw('img.raw', [1, 2])
    Transfer(catalog, IMAGE_ID, targets).run(_placeholder(), _import(src))
    before = dict((store.name, store.backend.read_record(IMAGE_ID)) for store in targets)

    def must_not_run(sinks, refresh, progress):
        raise AssertionError('the data moved again')
    late = Transfer(catalog, IMAGE_ID, targets)
    late.run(_placeholder(), must_not_run)  # no 'importing' placeholder over the active copies, no data read
    assert late.done_elsewhere == ['a', 'b']
    assert dict((store.name, store.backend.read_record(IMAGE_ID)) for store in targets) == before


def test_a_run_that_found_the_image_importing_waits_and_then_has_nothing_to_do(declare, registry, make_raw, image_request):
    paths = [declare('a'), declare('b')]
    catalog = Catalog(registry)
    src = make_raw('img.raw', [1, 2, 3])
    waiting = image_request(name='img', src=src, disk_format='raw', stores=['a', 'b'])
    moving = threading.Event()

    def other_run():
        # Holds the image's locks with its 'importing' placeholders written; imports once the waiting run has seen them
        # (it decided to import again, as after a failed import) and is about to wait for the locks.
        def once_the_other_waits():
            moving.set()
            _wait_for(lambda: waiting.actions)
        Transfer(catalog, IMAGE_ID, [catalog.store('a'), catalog.store('b')]).run(_placeholder(), _import(src, once_the_other_waits))
    thread = threading.Thread(target=other_run)
    thread.start()
    try:
        _wait_for(moving.is_set)
        changed = waiting.present(False)
    finally:
        thread.join(HANG_GUARD)
    assert changed is False and waiting.image_id == IMAGE_ID
    assert waiting.actions[-1].endswith('(another run completed it in a, b meanwhile: nothing was written there)')
    assert [view.id for view in Catalog(registry).named('img')] == [IMAGE_ID]
    for path in paths:
        assert leftovers(path) == ['images/%s' % IMAGE_ID]  # no lock, no staging left


def test_a_new_image_is_made_under_its_names_lock(declare, registry, make_raw, image_request, locks_never_wait):
    declare('a')
    declare('b')
    catalog = Catalog(registry)
    with catalog.store('b').backend.name_lock('img'):  # another run is making an image named img in b
        assert catalog.store('b').backend.clean_staging(0, check_mode=False) == []  # a live run's name lock stays
        with pytest.raises(LockError, match="new image 'img' in store 'b' is locked by .* another run is working on it"):
            image_request(name='img', src=make_raw('img.raw', [1]), disk_format='raw', stores=['a', 'b']).present(False)
    assert Catalog(registry).named('img') == []
    image_request(name='img', src=make_raw('img.raw', [1]), disk_format='raw', stores=['a', 'b']).present(False)
    assert len(Catalog(registry).named('img')) == 1


def test_a_clone_is_made_under_its_names_lock(declare, registry, make_raw, image_request, locks_never_wait):
    declare('a')
    image_request(name='base', src=make_raw('base.raw', [1]), disk_format='raw', stores=['a']).present(False)
    catalog = Catalog(registry)
    with catalog.store('a').backend.name_lock('golden'):  # another run is cloning base as golden
        with pytest.raises(LockError, match="new image 'golden' in store 'a' is locked by .* another run is working on it"):
            image_request(name='golden', clone_from='base', state='cloned').cloned(False)
    assert Catalog(registry).named('golden') == []
    assert image_request(name='golden', clone_from='base', state='cloned').cloned(False) is True
    assert image_request(name='golden', clone_from='base', state='cloned').cloned(False) is False
    assert len(Catalog(registry).named('golden')) == 1
