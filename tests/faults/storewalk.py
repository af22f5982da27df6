# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a file store holds, read from its directories and not from the engine's own report.

    walk = StoreWalk('/cloud_bs')
    walk.records            {image id: record}              (images/<id>/record.json)
    walk.slice_lists        {image id: [digest or None]}    (images/<id>/slices.json)
    walk.slice_files        {digest: size}                  (slices/ab/<digest>)
    walk.names              {sha256 of a name: [image id]}  (names/<sha256>/<id>)
    walk.problems(...)      what is wrong, in words (empty when the store is consistent)

Plus the plays the fault tests share (a registry with file stores, one task per playbook) and small helpers.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import os
import random

SLICE = 4 * 1024 * 1024

PLAY = """\
- name: %(title)s
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/vmimages.multistore.multistore:
      registry: "{{ registry }}"
  tasks:
%(tasks)s
"""


def play(title, tasks):
    """A play on localhost with the registry of the extra var ``registry``; ``tasks``: YAML text at column 4."""
    return PLAY % {'title': title, 'tasks': tasks}


def declare_stores(stores):
    """Tasks declaring file stores {name: path}."""
    return ''.join('    - name: Declare store %s\n      vmimages.multistore.store: {name: %s, path: "%s"}\n' % (name, name, path)
                   for name, path in sorted(stores.items()))


def name_key(name):
    return hashlib.sha256(name.encode('utf-8')).hexdigest()


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def random_bytes(seed, size):
    """``size`` reproducible random bytes (a raw image with no recognisable format: its first 4 KiB are zero)."""
    data = bytearray(random.Random(seed).getrandbits(8 * size).to_bytes(size, 'little'))
    data[:4096] = bytes(4096)
    return data


def write_file(path, data):
    with open(path, 'wb') as handle:
        handle.write(data)
    return path


def variant(base, seed, slices):
    """``base`` with the slices at the indexes ``slices`` replaced by other random bytes."""
    data = bytearray(base)
    for index in slices:
        data[index * SLICE:(index + 1) * SLICE] = random_bytes('%s-%s' % (seed, index), SLICE)
    return data


def slice_digests(data):
    """The sha256 of each non-zero 4 MiB slice of ``data`` (as the store names them)."""
    found = set()
    for offset in range(0, len(data), SLICE):
        chunk = bytes(data[offset:offset + SLICE])
        if chunk.count(0) != len(chunk):
            found.add(hashlib.sha256(chunk).hexdigest())
    return found


def _read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (IOError, OSError):
        return None


def _files(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


class StoreWalk:
    def __init__(self, root):
        self.root = root
        self.records = {}
        self.slice_lists = {}
        self.image_dirs = _files(os.path.join(root, 'images'))
        for image_id in self.image_dirs:
            record = _read_json(os.path.join(root, 'images', image_id, 'record.json'))
            if record is not None:
                self.records[image_id] = record
            listed = _read_json(os.path.join(root, 'images', image_id, 'slices.json'))
            if listed is not None:
                self.slice_lists[image_id] = listed['slices']
        self.slice_files = {}
        self.stray_slice_files = []  # temporary or misplaced files under slices/
        for prefix in _files(os.path.join(root, 'slices')):
            for entry in _files(os.path.join(root, 'slices', prefix)):
                path = os.path.join(root, 'slices', prefix, entry)
                if len(entry) == 64 and entry[:2] == prefix:
                    self.slice_files[entry] = os.path.getsize(path)
                else:
                    self.stray_slice_files.append(os.path.relpath(path, root))
        self.staging = _files(os.path.join(root, 'staging'))
        self.lock_files = [entry for entry in _files(os.path.join(root, 'locks')) if entry != 'slices.lock']
        self.names = {}
        for key in _files(os.path.join(root, 'names')):
            if os.path.isdir(os.path.join(root, 'names', key)):
                self.names[key] = _files(os.path.join(root, 'names', key))

    def ids_named(self, name):
        return sorted(image_id for image_id, record in self.records.items() if record.get('name') == name)

    def active(self):
        return sorted(image_id for image_id, record in self.records.items() if record.get('status') == 'active')

    def referenced(self, image_ids=None):
        found = set()
        for image_id, slices in self.slice_lists.items():
            if image_ids is None or image_id in image_ids:
                found.update(digest for digest in slices if digest)
        return found

    def missing_slices(self, image_ids=None):
        """Digests an active image's slice list names that have no slice file."""
        image_ids = self.active() if image_ids is None else image_ids
        return sorted(self.referenced(image_ids) - set(self.slice_files))

    def corrupt_slices(self):
        return sorted(digest for digest in self.slice_files
                      if sha256_file(os.path.join(self.root, 'slices', digest[:2], digest)) != digest)

    def problems(self, settled=True):
        """What is inconsistent. ``settled``: no run is working on the store now and a store_cleanup ran, so no
        staging, no lock file, no record that is not active, no slice file that no slice list names."""
        found = []
        missing = self.missing_slices()
        if missing:
            found.append('%d slices missing for active images: %s' % (len(missing), missing[:4]))
        for image_id in self.active():
            if image_id not in self.slice_lists:
                found.append('active image %s has no slice list' % image_id)
        if self.stray_slice_files:
            found.append('stray files under slices/: %s' % self.stray_slice_files[:4])
        for image_id, record in self.records.items():
            key = name_key(record.get('name') or '')
            if record.get('name') and image_id not in self.names.get(key, []):
                found.append('image %s (%s) is not in the name index' % (image_id, record.get('name')))
        if settled:
            if self.staging:
                found.append('staging is not empty: %s' % self.staging)
            if self.lock_files:
                found.append('lock files left: %s' % self.lock_files)
            for image_id in self.image_dirs:
                status = (self.records.get(image_id) or {}).get('status')
                if status != 'active':
                    found.append('image directory %s holds a record with status %s' % (image_id, status))
            orphans = sorted(set(self.slice_files) - self.referenced())
            if orphans:
                found.append('%d slice files no slice list names: %s' % (len(orphans), orphans[:4]))
            for key, ids in self.names.items():
                for image_id in ids:
                    if image_id not in self.records:
                        found.append('name index entry %s/%s names no image' % (key[:12], image_id))
        return found
