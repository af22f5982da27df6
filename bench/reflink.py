#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""retrieve_existing and image_export of one big image on xfs with reflink, against the same without reflink.

Runs as root: two loop filesystems on sparse files in the scratch directory, one after the other, each
mounted for its part of the run and removed after it:
  reflink  xfs made with -m reflink=1: the file store clones the slices from the retrieved file, and the
           export clones the slices into the destination
  plain    xfs made with -m reflink=0 (or ext4 with --without ext4): the same steps write the bytes
On each: a file of distinct random 4 MiB blocks is written under the store path (not timed), then, timed:
  retrieve  Retrieval(...).run() (what `store` with retrieve_existing: true does): one pass that reads and
            hashes the file (md5, sha512, sha256 per slice) and stores its slices
  export    Export(...).run() of the retrieved image to a file on the same filesystem (image_export)
New space is the filesystem's free space before and after (after a sync). Checks: the export's sha512 equals
the record's, which is the file's (the record's digests come from reading the file), and the methods.
Run with the venv's python, as root: .venv/bin/python bench/reflink.py [--quick] [--size-gib N]
"""

from __future__ import absolute_import, division, print_function

import hashlib
import os
import subprocess
import sys

import benchlib
from benchlib import GIB, MIB, Timed, gbps


def run(command):
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    if proc.returncode != 0:
        raise benchlib.BenchError('%s failed: %s' % (' '.join(command), proc.stderr.strip()))
    return proc.stdout


class LoopFs:
    """A filesystem on a sparse loop file, mounted while the block runs (mount -o loop: umount frees the loop device)."""

    def __init__(self, scratch, label, mkfs, size):
        self.image = scratch.join('%s.img' % label)
        self.path = scratch.join(label)
        self.mkfs = mkfs
        self.size = size
        self.mounted = False

    def __enter__(self):
        os.makedirs(self.path)
        with open(self.image, 'wb') as handle:
            handle.truncate(self.size)
        run(self.mkfs + [self.image])
        run(['mount', '-o', 'loop', self.image, self.path])
        self.mounted = True
        return self

    def __exit__(self, *exc):
        if self.mounted:
            if subprocess.run(['umount', self.path], check=False).returncode != 0:
                subprocess.run(['umount', '-l', self.path], check=False)
        benchlib.remove(self.image)
        return False


def synced_free(path):
    os.sync()
    return benchlib.free_bytes(path)


def file_sha512(path):
    digest = hashlib.sha512()
    buf = bytearray(8 * MIB)
    with open(path, 'rb', buffering=0) as handle:
        while True:
            count = handle.readinto(buf)
            if not count:
                return digest.hexdigest()
            digest.update(memoryview(buf)[:count])


def measure(label, loopfs, size, caches, checks):
    """Retrieve and export on one filesystem; return the rows of the table."""
    sys.path.insert(0, benchlib.VENV)
    from ansible_collections.vmimages.multistore.plugins.module_utils.images.export import Export
    from ansible_collections.vmimages.multistore.plugins.module_utils.images.retrieve import Retrieval
    eng = benchlib.engine()
    root = os.path.join(loopfs.path, 'bs')
    registry = benchlib.declare_file_store(eng, os.path.join(loopfs.path, 'registry'), 'bs', root)
    os.makedirs(os.path.join(root, 'golden'))
    src = os.path.join(root, 'golden', 'big.raw')
    benchlib.write_random_file(src, size)
    results = {}

    caches.before_run(src)
    free = synced_free(root)
    with Timed() as timing:
        retrieval = Retrieval(registry, 'bs', root)
        retrieval.run(False)
    new_space = free - synced_free(root)
    checks.append(('%s: the file was retrieved (%s)' % (label, retrieval.skipped or 'nothing skipped'), len(retrieval.retrieved) == 1))
    results['retrieve'] = dict(timing.as_dict(), new_bytes=new_space, method=None)

    catalog = eng.Catalog(registry)
    view = catalog.find(name='big')
    dest = os.path.join(loopfs.path, 'export.raw')
    free = synced_free(root)
    with Timed() as timing:
        export = Export(catalog, view, 'bs', dest)
        export.run()
    new_space = free - synced_free(root)
    results['export'] = dict(timing.as_dict(), new_bytes=new_space, method=export.method)
    record = view.reference()
    checks.append(('%s: export sha512 = the record\'s = the file\'s' % label, file_sha512(dest) == record['os_hash_value'] == file_sha512(src)))
    return results


def main():
    parser = benchlib.parser(__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--size-gib', type=float, default=10.0, help='size of the image file in GiB')
    parser.add_argument('--without', choices=['xfs-noreflink', 'ext4'], default='xfs-noreflink',
                        help='the filesystem without reflink: xfs made with reflink=0 (same filesystem otherwise) or ext4')
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise benchlib.BenchError('needs root: it makes and mounts loop filesystems')
    size = int(args.size_gib * GIB) if not args.quick else 256 * MIB
    size -= size % (4 * MIB)
    size += 12345  # an unaligned tail, as real images have
    # Each loop filesystem holds the file, the store's slices and the export (three copies without reflink).
    fs_size = 3 * size + GIB
    without = {'xfs-noreflink': ['mkfs.xfs', '-q', '-m', 'reflink=0'], 'ext4': ['mkfs.ext4', '-q', '-F']}[args.without]
    contenders = [('reflink', ['mkfs.xfs', '-q', '-m', 'reflink=1']), ('plain', without)]
    caches = benchlib.Caches(args.cold)
    checks = []
    measured = {}
    with benchlib.Scratch('reflink', args.workdir, args.keep) as scratch:
        benchlib.check_space(scratch.path, 3 * size + GIB)
        print('workdir %s' % scratch.path)
        print('before: %s' % benchlib.load_note())
        print('image file: %.2f GiB of distinct random 4 MiB blocks + a %d-byte tail; plain = %s; %s'
              % (size / GIB, size % (4 * MIB), args.without, caches.describe()))
        for label, mkfs in contenders:
            with LoopFs(scratch, label, mkfs, fs_size) as loopfs:
                measured[label] = measure(label, loopfs, size, caches, checks)
    rows = []
    for step in ('retrieve', 'export'):
        for label, dummy in contenders:
            entry = measured[label][step]
            rows.append(['%s %s' % (step, label), '%.2f' % entry['wall_s'], '%.2f' % gbps(size, entry['wall_s']),
                         '%.2f' % entry['busy_cores'], '%.1f' % (entry['new_bytes'] / MIB), entry['method'] or '-'])
    print()
    benchlib.print_table(['step', 'wall s', 'GB/s', 'busy cores', 'new space MiB', 'export method'], rows)
    print()
    expected = {'reflink': 'reflink', 'plain': 'copy'}
    for label, dummy in contenders:
        checks.append(('%s: export method is %s' % (label, expected[label]), measured[label]['export']['method'] == expected[label]))
    for text, ok in checks:
        print('check: %-70s %s' % (text, 'ok' if ok else 'FAILED'))
    print('after: %s' % benchlib.load_note())
    ratio = {}
    for step in ('retrieve', 'export'):
        with_, plain = measured['reflink'][step], measured['plain'][step]
        ratio['%s_time_plain_over_reflink' % step] = plain['wall_s'] / with_['wall_s'] if with_['wall_s'] else None
        ratio['%s_space_reflink_over_plain' % step] = with_['new_bytes'] / float(plain['new_bytes']) if plain['new_bytes'] else None
    print('ratios: retrieve time plain/reflink %.2f, new space reflink/plain %.4f (%.1f MiB vs %.1f MiB); '
          'export time plain/reflink %.1f (%.3f s vs %.2f s), new space reflink/plain %.4f'
          % (ratio['retrieve_time_plain_over_reflink'], ratio['retrieve_space_reflink_over_plain'] or 0,
             measured['reflink']['retrieve']['new_bytes'] / MIB, measured['plain']['retrieve']['new_bytes'] / MIB,
             ratio['export_time_plain_over_reflink'], measured['reflink']['export']['wall_s'], measured['plain']['export']['wall_s'],
             ratio['export_space_reflink_over_plain'] or 0))
    benchlib.write_json(args.json, {'benchmark': 'reflink', 'image_bytes': size, 'without': args.without, 'cache': caches.describe(),
                                    'runs': measured, 'ratios': ratio, 'checks': dict(checks)})
    return 0 if all(ok for _text, ok in checks) else 1


if __name__ == '__main__':
    benchlib.run_main(main)
