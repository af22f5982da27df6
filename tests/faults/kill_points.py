# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kill -9 points of test_kill_points.py: the operations, their preconditions, and the checks made by walking
the store directories (not by asking the engine what it thinks it wrote).

    sources = make_sources(directory)             # a qcow2 and a raw image, with the sha256 an export must have
    work = Work(directory, sources); OPS[op].prepare(work)
    run = playbooks.start(OPS[op].play(work), ...)
    ... kill_tree ...
    problems = check_images(work, ...) + check_locks_free(work) + check_clean(work)
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fcntl
import hashlib
import os
import random
import subprocess
import uuid

from ansible_collections.vmimages.multistore.plugins.module_utils.common.fs import read_json
from ansible_collections.vmimages.multistore.plugins.module_utils.common.locks import ExpiringLock
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.cleanup import StoreCleanup
from ansible_collections.vmimages.multistore.plugins.module_utils.images.progress import remove_dead_progress
from ansible_collections.vmimages.multistore.plugins.module_utils.images.request import ImageRequest
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.file import LAYOUT_ENTRIES
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.registry import Registry

STORES = ('a', 'b', 'c')
MIB = 1 << 20
SLICE = 4 * MIB


# ---- the source images

def _random_slices(rng, count):
    """Slices of random bytes, some of them repeated and some zero, so dedup and zero slices are on the path."""
    seen = []
    for index in range(count):
        roll = rng.random()
        if seen and roll < 0.15:
            yield rng.choice(seen)
        elif roll < 0.25:
            yield bytes(SLICE)
        else:
            data = rng.getrandbits(SLICE * 8).to_bytes(SLICE, 'little')
            seen.append(data)
            yield data


def make_sources(directory):
    """{name: (path, disk_format, sha256)}: a qcow2 made by qemu-img from ~40 MiB of data and a ~22 MiB raw image."""
    rng = random.Random(1202)
    raw_path = os.path.join(directory, 'source.raw')
    with open(raw_path, 'wb') as handle:
        for data in _random_slices(rng, 5):
            handle.write(data)
        handle.write(rng.getrandbits(8 * 123457).to_bytes(123457, 'little'))  # a tail that is no whole slice
    base = os.path.join(directory, 'qcow2-base.raw')
    with open(base, 'wb') as handle:
        for data in _random_slices(rng, 10):
            handle.write(data)
    qcow2_path = os.path.join(directory, 'source.qcow2')
    subprocess.check_call(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2', base, qcow2_path])
    os.unlink(base)
    return {'img-q': (qcow2_path, 'qcow2', file_sha256(qcow2_path)), 'img-r': (raw_path, 'raw', file_sha256(raw_path))}


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        while True:
            block = handle.read(MIB)
            if not block:
                return digest.hexdigest()
            digest.update(block)


# ---- one point's world: a registry and three file stores

class Work:
    def __init__(self, directory, sources):
        self.directory = directory
        self.sources = sources
        self.registry_dir = os.path.join(directory, 'registry')
        self.export_dir = os.path.join(directory, 'export')
        self.dest = os.path.join(self.export_dir, 'img-q.qcow2')
        os.makedirs(self.export_dir)

    def root(self, store):
        return os.path.join(self.directory, 'stores', store)

    def registry(self):
        return Registry(self.registry_dir)

    def declare(self):
        for name in STORES:
            StoreDeclaration(self.registry(), {'name': name, 'path': self.root(name)}).present(check_mode=False)

    def image(self, name, stores, **params):
        path, disk_format, _sha = self.sources[name]
        params = dict(params, name=name, src=path, disk_format=disk_format, stores=list(stores), container_format='bare')
        ImageRequest(Catalog(self.registry()), params).present(check_mode=False)

    def extravars(self):
        return {'work': self.directory, 'src_q': self.sources['img-q'][0], 'src_r': self.sources['img-r'][0], 'dest': self.dest}

    def expected_sha(self, name):
        return self.sources['img-r' if name == 'img-r' else 'img-q'][2]  # img-c is a clone of img-q


PLAY = """\
- name: kill point %(op)s
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/vmimages.multistore.multistore:
      registry: "{{ work }}/registry"
  tasks:
    - name: %(op)s
%(task)s
"""


class Op:
    """One operation: its preconditions, its task, the module whose process marks its run, and what must hold after."""

    def __init__(self, name, module, task, prepare, final):
        self.name = name
        self.module = module
        self.task = task
        self.prepare = prepare
        self.final = final  # {image name: stores where it is active once the re-run completed}

    def play(self):
        task = '\n'.join('      ' + line for line in self.task.strip().splitlines())
        return PLAY % {'op': self.name, 'task': task}


def _bystander(work):
    """img-r in a and b: an image the operation does not touch, which must come through every kill whole."""
    work.declare()
    work.image('img-r', ['a', 'b'])


def _prepare_import(work):
    _bystander(work)


def _prepare_in(*stores):
    def prepare(work):
        _bystander(work)
        work.image('img-q', stores)
    return prepare


def _prepare_cleanup(work):
    """img-q everywhere, and garbage in every store: a failed import of img-r (an 'importing' record, whose slices then
    nobody references), unreferenced slices, an old staging area, an image directory without a record."""
    rng = random.Random(7)
    _bystander(work)
    work.image('img-q', STORES)
    registry = work.registry()
    for name in STORES:
        backend = registry.open(name).backend
        for image_id, record in backend.read_records().items():
            if record and record.get('name') == 'img-r':
                backend.write_record(image_id, dict(record, status='importing'))
        root = work.root(name)
        for dummy in range(3):
            data = rng.getrandbits(SLICE * 8).to_bytes(SLICE, 'little')
            digest = hashlib.sha256(data).hexdigest()
            os.makedirs(os.path.join(root, 'slices', digest[:2]), exist_ok=True)
            with open(os.path.join(root, 'slices', digest[:2], digest), 'wb') as handle:
                handle.write(data)
        staging = os.path.join(root, 'staging', '%s.partial' % uuid.uuid4())
        os.makedirs(staging)
        with open(os.path.join(staging, hashlib.sha256(b'x').hexdigest()), 'wb') as handle:
            handle.write(b'x')
        recordless = os.path.join(root, 'images', str(uuid.uuid4()))
        os.makedirs(recordless)
        with open(os.path.join(recordless, '.record.json.tmp-0123456789ab'), 'wb') as handle:
            handle.write(b'{"status": "importing"}')


ALL = set(STORES)
OPS = dict((op.name, op) for op in [
    Op('import1', 'image', """
vmimages.multistore.image:
  name: img-q
  src: "{{ src_q }}"
  disk_format: qcow2
  stores: [a]
""", _prepare_import, {'img-q': {'a'}, 'img-r': {'a', 'b'}}),
    Op('import3', 'image', """
vmimages.multistore.image:
  name: img-q
  src: "{{ src_q }}"
  disk_format: qcow2
  stores: [a, b, c]
""", _prepare_import, {'img-q': ALL, 'img-r': {'a', 'b'}}),
    Op('copy', 'image', """
vmimages.multistore.image:
  name: img-q
  stores: [b]
""", _prepare_in('a'), {'img-q': {'a', 'b'}, 'img-r': {'a', 'b'}}),
    Op('delete1', 'image', """
vmimages.multistore.image:
  name: img-q
  stores: [b]
  state: absent
""", _prepare_in(*STORES), {'img-q': {'a', 'c'}, 'img-r': {'a', 'b'}}),
    Op('deleteall', 'image', """
vmimages.multistore.image:
  name: img-q
  state: absent
""", _prepare_in(*STORES), {'img-q': set(), 'img-r': {'a', 'b'}}),
    Op('clone', 'image', """
vmimages.multistore.image:
  name: img-c
  clone_from: img-q
  state: cloned
  stores: [a, b]
""", _prepare_in('a', 'b'), {'img-q': {'a', 'b'}, 'img-c': {'a', 'b'}, 'img-r': {'a', 'b'}}),
    Op('cleanup', 'store_cleanup', """
vmimages.multistore.store_cleanup:
  staging_max_age: 0
  verify: true
""", _prepare_cleanup, {'img-q': ALL, 'img-r': set()}),
    Op('export', 'image_export', """
vmimages.multistore.image_export:
  name: img-q
  store: a
  dest: "{{ dest }}"
""", _prepare_in('a'), {'img-q': {'a'}, 'img-r': {'a', 'b'}}),
])
OP_NAMES = list(OPS)


# ---- the checks: each returns a list of problems in words (empty: fine)

def _records(root):
    """{image id: record or None} from the directories under images/."""
    found = {}
    images = os.path.join(root, 'images')
    for image_id in sorted(os.listdir(images)) if os.path.isdir(images) else []:
        found[image_id] = read_json(os.path.join(images, image_id, 'record.json'))
    return found


def _assembled_sha256(root, image_id):
    """sha256 of the image as its slice list and slice files give it, or a problem in words."""
    slices = read_json(os.path.join(root, 'images', image_id, 'slices.json'))
    if slices is None:
        return None, 'no slices.json'
    digest = hashlib.sha256()
    left = slices['size']
    for name in slices['slices']:
        length = min(left, slices['slice_size'])
        if name is None:
            digest.update(bytes(length))
        else:
            path = os.path.join(root, 'slices', name[:2], name)
            try:
                with open(path, 'rb') as handle:
                    data = handle.read()
            except (IOError, OSError) as exc:
                return None, 'slice %s: %s' % (name, exc)
            if len(data) != length:
                return None, 'slice %s has %d bytes, the list says %d' % (name, len(data), length)
            digest.update(data)
        left -= length
    if left:
        return None, 'the slice list covers %d bytes less than its size' % left
    return digest.hexdigest(), None


def active_images(work):
    """{image name: {store: image id}} of the records that say active, read from the directories."""
    found = {}
    for store in STORES:
        for image_id, record in _records(work.root(store)).items():
            if record and record.get('status') == 'active':
                found.setdefault(record.get('name'), {})[store] = image_id
    return found


def check_images(work, final=None):
    """Every image a store holds as active is whole and byte-identical to its source; the engine (as image_info reads
    it) sees exactly those copies; with ``final``, each image is active in exactly the stores given."""
    problems = []
    active = active_images(work)
    for name, copies in sorted(active.items()):
        if name not in ('img-q', 'img-r', 'img-c'):
            problems.append('an active record of an unknown image %r in %s' % (name, sorted(copies)))
            continue
        if len(set(copies.values())) > 1:
            problems.append('%s is active under several ids: %r' % (name, copies))
        for store, image_id in sorted(copies.items()):
            sha, problem = _assembled_sha256(work.root(store), image_id)
            if problem or sha != work.expected_sha(name):
                problems.append('%s (id %s) is active in store %s but %s' % (
                    name, image_id, store, problem or 'its bytes differ from the source (sha256 %s)' % sha))
    catalog = Catalog(work.registry())
    for name in ('img-q', 'img-r', 'img-c'):
        try:
            view = catalog.find(name=name)
        except Exception as exc:  # an ambiguous name is a finding too
            problems.append('the engine cannot look up %s: %s' % (name, exc))
            continue
        seen = set(view.active_stores()) if view else set()
        walked = set(active.get(name, {}))
        if seen != walked:
            problems.append('%s: the engine reports it active in %s, the directories in %s' % (name, sorted(seen), sorted(walked)))
        if final is not None and walked != set(final.get(name, ())):
            problems.append('%s is active in %s, expected %s' % (name, sorted(walked), sorted(final.get(name, ()))))
    return problems


def check_export(work, rerun):
    """The export's dest is absent (only before a completed run) or byte-identical; after a re-run nothing else is
    beside it (a temporary file of the killed run)."""
    problems = []
    if os.path.lexists(work.dest):
        sha = file_sha256(work.dest)
        if sha != work.expected_sha('img-q'):
            problems.append('%s exists with other bytes (sha256 %s)' % (work.dest, sha))
    elif rerun:
        problems.append('%s is absent after the re-run' % work.dest)
    if rerun:
        others = sorted(set(os.listdir(work.export_dir)) - {os.path.basename(work.dest)})
        if others:
            problems.append('left beside the export: %s' % ', '.join(others))
    return problems


def check_locks_free(work):
    """No lock of the dead run makes the next run wait: every image lock is free or names a dead owner (the next
    acquire breaks it at once), and the slice guard can be taken exclusively without waiting."""
    problems = []
    for store in STORES:
        locks = os.path.join(work.root(store), 'locks')
        for name in sorted(os.listdir(locks)) if os.path.isdir(locks) else []:
            path = os.path.join(locks, name)
            if name == 'slices.lock':
                fd = os.open(path, os.O_RDWR)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except (IOError, OSError):
                    problems.append('store %s: the slice guard is still held' % store)
                finally:
                    os.close(fd)
            elif name.endswith('.lock') and ExpiringLock(path, name).busy():
                problems.append('store %s: lock %s is held by a live owner: %s' % (store, name, open(path).read()))
    return problems


def cleanup_all(work):
    """store_cleanup of every store as the module runs it, leftovers of any age (staging_max_age 0)."""
    registry = work.registry()
    reports = [StoreCleanup(registry.open(name), 0).run(check_mode=False)[1] for name in STORES]
    remove_dead_progress(work.registry_dir)  # what the module does after its stores
    return reports


def check_clean(work):
    """After store_cleanup, each store directory holds its layout and nothing else: every slice referenced by a slice
    list (and every referenced slice there), only active records (each with its slice list), nothing in staging/, no
    lock file but the slice guard's, no temporary file anywhere, a name index that names exactly the images; and no
    progress file in the registry (no transfer runs any more)."""
    problems = []
    for store in STORES:
        root = work.root(store)

        def say(text, store=store):
            problems.append('store %s: %s' % (store, text))
        for entry in sorted(set(os.listdir(root)) - LAYOUT_ENTRIES):
            say('unexpected %s at the root' % entry)
        for directory, dirs, files in os.walk(root):
            for name in dirs + files:
                if name.startswith('.'):
                    say('a temporary file %s' % os.path.relpath(os.path.join(directory, name), root))
        staging = os.listdir(os.path.join(root, 'staging'))
        if staging:
            say('staging holds %s' % ', '.join(sorted(staging)))
        locks = sorted(set(os.listdir(os.path.join(root, 'locks'))) - {'slices.lock'})
        if locks:
            say('lock files left: %s' % ', '.join(locks))
        referenced = set()
        records = _records(root)
        for image_id, record in sorted(records.items()):
            extra = sorted(set(os.listdir(os.path.join(root, 'images', image_id))) - {'record.json', 'slices.json'})
            if extra:
                say('images/%s holds %s' % (image_id, ', '.join(extra)))
            if record is None:
                say('images/%s has no record' % image_id)
                continue
            if record.get('status') != 'active':
                say('images/%s is %s, not active' % (image_id, record.get('status')))
            slices = read_json(os.path.join(root, 'images', image_id, 'slices.json'))
            if slices is None:
                say('images/%s has no slice list' % image_id)
            else:
                referenced |= set(name for name in slices['slices'] if name)
        stored = set()
        for directory, dirs, files in os.walk(os.path.join(root, 'slices')):
            for name in files:
                if len(name) != 64 or os.path.basename(directory) != name[:2]:
                    say('a stray file in slices/: %s' % os.path.relpath(os.path.join(directory, name), root))
                stored.add(name)
        if stored - referenced:
            say('%d orphan slices: %s' % (len(stored - referenced), ', '.join(sorted(stored - referenced)[:3])))
        if referenced - stored:
            say('%d referenced slices missing' % len(referenced - stored))
        problems.extend('store %s: %s' % (store, text) for text in _check_names(root, records))
    progress = os.path.join(work.registry_dir, 'progress')
    for name in sorted(os.listdir(progress)) if os.path.isdir(progress) else []:
        problems.append('registry: progress/%s is left (no transfer runs)' % name)
    return problems


def _check_names(root, records):
    problems = []
    names = os.path.join(root, 'names')
    if not os.path.isfile(os.path.join(names, 'complete.json')):
        problems.append('names/complete.json is missing')
    indexed = set()
    for entry in sorted(os.listdir(names)) if os.path.isdir(names) else []:
        if entry == 'complete.json':
            continue
        ids = [name for name in os.listdir(os.path.join(names, entry)) if not name.startswith('.')]  # temporaries: see the walk
        if not ids:
            problems.append('an empty name directory names/%s' % entry)
        for image_id in ids:
            indexed.add((entry, image_id))
            record = records.get(image_id)
            if record is None:
                problems.append('names/%s/%s names no image' % (entry, image_id))
            elif hashlib.sha256(record.get('name', '').encode('utf-8')).hexdigest() != entry:
                problems.append('names/%s/%s is not the name of image %s (%r)' % (entry, image_id, image_id, record.get('name')))
    for image_id, record in records.items():
        if record and record.get('name'):
            if (hashlib.sha256(record['name'].encode('utf-8')).hexdigest(), image_id) not in indexed:
                problems.append('image %s (%s) is not in the name index' % (image_id, record['name']))
    return problems
