# -*- coding: utf-8 -*-
"""retrieve_existing: image files under a store's path become images once; on a reflink xfs their slices are clones."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import os
import subprocess

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument, SourceError
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.retrieve import Retrieval, image_name
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer import sources

from fs_helpers import can_clone, free_bytes, shared_extents
from image_files import slice_bytes, stored_slices

MIB = 1024 * 1024


def write_image(path, seeds, tail=b''):
    """A raw image: a slice per seed (None: zeros), then ``tail``; returns (sha256, mtime_ns)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as handle:
        for seed in seeds:
            handle.write(bytes(SLICE_SIZE) if seed is None else slice_bytes(seed))
        handle.write(tail)
    return fingerprint(path)


def fingerprint(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(4 * MIB), b''):
            digest.update(block)
    return digest.hexdigest(), os.stat(path).st_mtime_ns


def retrieve(registry, name, root, check_mode=False):
    retrieval = Retrieval(registry, name, root)
    changed = retrieval.run(check_mode)
    return changed, retrieval


def reasons(retrieval):
    return dict((os.path.basename(entry['path']), entry['reason']) for entry in retrieval.skipped)


def test_image_name_rule():
    assert image_name('ubuntu-24.04.qcow2') == ('ubuntu-24.04', 'qcow2')
    assert image_name('disk.tar.RAW') == ('disk.tar', 'raw')
    assert image_name('noble.img') == ('noble', None)
    assert image_name('notes.txt') is None and image_name('.iso') is None and image_name('disk') is None


def test_retrieval_on_reflink_xfs_clones_costs_no_space_and_runs_once(registry, declare, xfs_dir):
    root = declare('central', path=os.path.join(xfs_dir, 'store'))
    big = os.path.join(root, 'golden', 'big.raw')
    seeds = list(range(1, 61)) + [None, None]  # 240 MiB of data, 8 MiB of zeros
    before = write_image(big, seeds, tail=b'unaligned tail')
    size = os.path.getsize(big)
    os.sync()
    free = free_bytes(root)

    changed, retrieval = retrieve(registry, 'central', root)

    assert changed and retrieval.skipped == []
    [entry] = retrieval.retrieved
    assert entry['name'] == 'big' and entry['path'] == big and entry['size'] == size and entry['disk_format'] == 'raw'
    os.sync()
    used = free - free_bytes(root)
    assert used < 8 * MIB, 'a %d MiB retrieval took %d KiB of new space' % (size // MIB, used // 1024)  # clones: metadata only
    slices = stored_slices(root)
    assert len(slices) == 61
    shared = shared_extents(os.path.join(root, 'slices', slices[0][:2], slices[0]))
    assert shared is None or shared >= 1
    assert fingerprint(big) == before  # the original is untouched, same bytes, same mtime
    view = Catalog(registry).find(name='big')
    record = view.reference()
    assert view.active_stores() == ['central'] and record['size'] == size
    assert record['properties'] == {'retrieved_from': big}
    with open(big, 'rb') as handle:
        assert record['os_hash_value'] == hashlib.sha512(handle.read()).hexdigest()
    memory = json.load(open(os.path.join(root, 'retrieved.json')))
    assert memory['files']['golden/big.raw']['id'] == entry['id']

    changed, again = retrieve(registry, 'central', root)
    assert not changed and again.retrieved == [] and again.skipped == []
    assert again.before == again.after == {'golden/big.raw': 'big'}


def test_plain_import_of_a_local_file_clones_on_the_same_xfs(registry, declare, image_request, xfs_dir):
    root = declare('central', path=os.path.join(xfs_dir, 'store'))
    src = os.path.join(xfs_dir, 'src.raw')
    write_image(src, range(100, 140))
    os.sync()
    free = free_bytes(root)
    image_request(name='plain', src=src, stores=['central']).present(False)
    os.sync()
    assert free - free_bytes(root) < 8 * MIB


def test_retrieval_on_ext4_writes_the_slices(registry, declare, tmp_path):
    root = declare('central')
    if can_clone(root):
        pytest.skip('the temporary directory is on a reflink filesystem')
    src = os.path.join(root, 'disk.raw')
    before = write_image(src, [1, None, 2], tail=b'x')
    changed, retrieval = retrieve(registry, 'central', root)
    assert changed and [entry['name'] for entry in retrieval.retrieved] == ['disk']
    assert len(stored_slices(root)) == 3 and fingerprint(src) == before
    assert Catalog(registry).find(name='disk').reference()['size'] == 2 * SLICE_SIZE + SLICE_SIZE + 1


def test_check_mode_lists_without_writing(registry, declare, tmp_path):
    root = declare('central')
    write_image(os.path.join(root, 'a.img'), [1])
    changed, retrieval = retrieve(registry, 'central', root, check_mode=True)
    assert changed
    assert retrieval.retrieved == [{'name': 'a', 'id': None, 'path': os.path.join(root, 'a.img'), 'size': SLICE_SIZE, 'disk_format': 'raw'}]
    assert retrieval.after == {'a.img': 'a'} and retrieval.before == {}
    assert not os.path.exists(os.path.join(root, 'retrieved.json')) and stored_slices(root) == []
    assert Catalog(registry).images() == {}


def test_check_mode_of_a_store_not_created_yet(registry, tmp_path):
    changed, retrieval = retrieve(registry, 'new', str(tmp_path / 'nothing-here'), check_mode=True)
    assert not changed and retrieval.retrieved == [] and retrieval.skipped == []


def test_skipped_files_and_why(registry, declare, image_request, make_raw, tmp_path):
    root = declare('central')
    image_request(name='taken', src=make_raw('elsewhere.raw', [9]), stores=['central']).present(False)
    write_image(os.path.join(root, 'taken.raw'), [1])
    write_image(os.path.join(root, 'a', 'twin.raw'), [2])
    write_image(os.path.join(root, 'b', 'twin.raw'), [3])
    with open(os.path.join(root, 'notes.txt'), 'w') as handle:
        handle.write('not an image')
    open(os.path.join(root, 'empty.raw'), 'w').close()
    os.symlink('/etc/passwd', os.path.join(root, 'passwd.raw'))
    os.symlink(str(tmp_path), os.path.join(root, 'linked-dir'))
    os.mkfifo(os.path.join(root, 'pipe.raw'))
    write_image(os.path.join(root, '.partial.raw'), [4])  # hidden: ignored
    declare('nested', path=os.path.join(root, 'nested'))  # another store inside this one's path
    write_image(os.path.join(root, 'nested', 'inner.raw'), [5])
    base = os.path.join(root, 'base.qcow2')
    subprocess.check_call(['qemu-img', 'create', '-q', '-f', 'qcow2', base, '16M'])
    subprocess.check_call(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', os.path.join(root, 'overlay.qcow2')])
    with open(os.path.join(root, 'liar.raw'), 'wb') as handle:  # a qcow2 named raw
        handle.write(open(base, 'rb').read())
    layout = ('slices', 'images', 'names', 'staging', 'locks', 'multistore.json')
    mtimes = dict((name, os.lstat(os.path.join(root, name)).st_mtime_ns) for name in os.listdir(root) if name not in layout)

    changed, retrieval = retrieve(registry, 'central', root)

    assert changed
    assert sorted(entry['name'] for entry in retrieval.retrieved) == ['base', 'twin']
    why = reasons(retrieval)
    assert set(why) == set(['taken.raw', 'twin.raw', 'notes.txt', 'empty.raw', 'passwd.raw', 'linked-dir', 'pipe.raw', 'overlay.qcow2',
                            'liar.raw', 'nested'])
    assert why['nested'].startswith('the root of another store')
    assert "name 'taken' is taken by image" in why['taken.raw']
    assert "name 'twin' goes to %s, retrieved first" % os.path.join(root, 'a', 'twin.raw') in why['twin.raw']
    assert 'not named like a disk image' in why['notes.txt']
    assert 'empty' in why['empty.raw']
    assert why['passwd.raw'].startswith('symlink') and why['linked-dir'].startswith('symlink to a directory')
    assert why['pipe.raw'] == 'not a regular file'
    assert 'backing file' in why['overlay.qcow2']
    assert 'qcow2' in why['liar.raw'] and 'rename the file' in why['liar.raw']
    # nothing under the store path was moved, changed or deleted
    assert dict((name, os.lstat(os.path.join(root, name)).st_mtime_ns) for name in os.listdir(root) if name in mtimes) == mtimes
    assert set(mtimes) <= set(os.listdir(root))
    # the store's own files are never candidates
    assert not any(entry['path'].startswith(os.path.join(root, sub)) for entry in retrieval.skipped for sub in ('slices', 'images'))

    changed, again = retrieve(registry, 'central', root)
    assert not changed and again.retrieved == [] and set(reasons(again)) == set(why)
    assert "name 'twin' is taken by image" in reasons(again)['twin.raw']


def test_a_deleted_image_is_not_resurrected_and_a_renamed_file_is_retrieved(registry, declare, image_request, tmp_path):
    root = declare('central')
    src = os.path.join(root, 'disk.raw')
    write_image(src, [1])
    retrieve(registry, 'central', root)
    assert image_request(name='disk', state='absent').absent(False)
    changed, retrieval = retrieve(registry, 'central', root)
    assert not changed and retrieval.retrieved == [] and Catalog(registry).find(name='disk') is None
    os.rename(src, os.path.join(root, 'disk-again.raw'))
    changed, retrieval = retrieve(registry, 'central', root)
    assert changed and [entry['name'] for entry in retrieval.retrieved] == ['disk-again']


def test_a_file_modified_after_its_retrieval_is_reported(registry, declare, tmp_path):
    root = declare('central')
    src = os.path.join(root, 'disk.raw')
    write_image(src, [1])
    retrieve(registry, 'central', root)
    write_image(src, [2])
    changed, retrieval = retrieve(registry, 'central', root)
    assert not changed and "changed since it was retrieved as image 'disk'" in reasons(retrieval)['disk.raw']


def test_a_file_written_during_the_read_is_skipped_and_nothing_is_stored(registry, declare, tmp_path, monkeypatch):
    root = declare('central')
    src = os.path.join(root, 'busy.raw')
    write_image(src, [1, 2, 3])
    original = sources.LocalFileReader.read_into

    def read_and_touch(self, view):
        count = original(self, view)
        os.utime(src, ns=(0, os.stat(src).st_mtime_ns + 1000))  # another writer updates the file meanwhile
        return count
    monkeypatch.setattr(sources.LocalFileReader, 'read_into', read_and_touch)
    changed, retrieval = retrieve(registry, 'central', root)
    assert not changed and retrieval.retrieved == []
    assert 'changed while it was read' in reasons(retrieval)['busy.raw']
    assert stored_slices(root) == [] and Catalog(registry).images() == {}
    assert not os.path.exists(os.path.join(root, 'retrieved.json'))


def test_a_plain_import_of_a_file_written_meanwhile_fails(registry, declare, image_request, make_raw, monkeypatch):
    declare('central')
    src = make_raw('busy.raw', [1, 2])
    original = sources.LocalFileReader.read_into

    def read_and_touch(self, view):
        count = original(self, view)
        os.utime(src, ns=(0, os.stat(src).st_mtime_ns + 1000))
        return count
    monkeypatch.setattr(sources.LocalFileReader, 'read_into', read_and_touch)
    with pytest.raises(SourceError, match='changed while it was read'):
        image_request(name='busy', src=src, stores=['central']).present(False)


def test_options_the_module_checks_first(registry):
    with pytest.raises(InvalidArgument, match='file store on the host'):
        Retrieval.for_store(registry, 'r', {'type': 'file', 'path': '/srv/x', 'host': 'other'})
    with pytest.raises(InvalidArgument, match='file store on the host'):
        Retrieval.for_store(registry, 'r', {'type': 'rbd', 'pool': 'images'})
    with pytest.raises(InvalidArgument, match='enabled: true'):
        Retrieval.for_store(registry, 'r', {'type': 'file', 'path': '/srv/x', 'enabled': False})
    with pytest.raises(InvalidArgument, match='forbidden'):
        Retrieval.for_store(registry, 'r', {'type': 'file', 'path': '/proc/x'})
