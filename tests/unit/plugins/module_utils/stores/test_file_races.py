# -*- coding: utf-8 -*-
"""A file store read while other runs remove what it is reading (found while racing store_cleanup against imports and
deletes in tests/faults/test_concurrent_runs.py: an entry listed by scandir and removed before its stat made the walk
raise FileNotFoundError, so store_cleanup, store_info and an import under a quota could fail on a store that was fine).

Real directories, real removals in a thread; each test stops when the churn has done its rounds.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import threading
import uuid

from ansible_collections.vmimages.multistore.plugins.module_utils.stores.file import FileBlobs

ROUNDS = 150
FILES = 50


def _churn(root, blobs, make, remove, done):
    def work():
        try:
            for _round in range(ROUNDS):
                name = uuid.uuid4().hex
                directory = make(name)
                for index in range(FILES):
                    open(os.path.join(directory, 'f%d' % index), 'w').close()
                remove(name)
        finally:
            done.set()
    thread = threading.Thread(target=work)
    thread.start()
    return thread


def _read_while(done, read):
    errors, reads = [], 0
    while not done.is_set() or not reads:
        reads += 1
        try:
            read()
        except OSError as exc:
            errors.append(exc)
    return errors


def test_listing_images_while_they_are_removed(tmp_path):
    root = str(tmp_path)
    blobs = FileBlobs(root)
    blobs.create()
    blobs.put('images/kept/record.json', b'{}')

    def make(name):
        path = os.path.join(root, 'images', name)
        os.mkdir(path)
        return path
    done = threading.Event()
    thread = _churn(root, blobs, make, lambda name: blobs.remove_tree('images/%s/' % name, 'images/%s/f0' % name), done)
    listed = []
    errors = _read_while(done, lambda: listed.append(blobs.list('images/')))
    thread.join()
    assert errors == []
    assert all(('images/kept/record.json', 2) in found for found in listed)
    assert blobs.list('images/') == [('images/kept/record.json', 2)]


def test_staging_leftovers_while_transfers_come_and_go(tmp_path):
    root = str(tmp_path)
    blobs = FileBlobs(root)
    blobs.create()

    def make(name):
        path = os.path.join(root, 'staging', '%s.partial' % name)
        os.mkdir(path)
        return path

    def remove(name):  # a transfer that committed: its staging directory goes
        path = os.path.join(root, 'staging', '%s.partial' % name)
        for entry in os.listdir(path):
            os.unlink(os.path.join(path, entry))
        os.rmdir(path)
    done = threading.Event()
    thread = _churn(root, blobs, make, remove, done)
    errors = _read_while(done, lambda: blobs.leftovers(0, 86400))
    thread.join()
    assert errors == []
    assert blobs.leftovers(0, 86400) == []
