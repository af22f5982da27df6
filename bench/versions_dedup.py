#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Space taken by successive versions of an image in one file store, against plain copies.

A base image of distinct random 4 MiB blocks; version k is version k-1 with a share of its 4 MiB blocks
(5% by default, picked at random, so later versions can rewrite a block again) replaced by new random
data, like real updates. Each version is imported through the engine as its own image (img-v1 ..
img-vN; img-v1 is already the base with one round of changes) into the same file store. Printed: the
import time per version, the slices each version added, the store's size (sum of slice file sizes and
`du`) against one image and against N plain copies, and the ideal (every distinct block stored once).
Run with the venv's python: .venv/bin/python bench/versions_dedup.py [--quick] [--base-mib N] [--versions N]
"""

from __future__ import absolute_import, division, print_function

import os
import random
import subprocess

import benchlib
from benchlib import MIB, SLICE, Timed, gbps


def du_bytes(path, apparent=False):
    command = ['du', '-s', '--block-size=1'] + (['--apparent-size'] if apparent else []) + [path]
    try:
        return int(subprocess.run(command, stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout.split()[0])
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return None


def main():
    parser = benchlib.parser(__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--base-mib', type=int, default=1024, help='image size in MiB (rounded up to 4 MiB blocks)')
    parser.add_argument('--versions', type=int, default=10, help='number of versions imported')
    parser.add_argument('--change-percent', type=float, default=5.0, help='share of 4 MiB blocks rewritten per version')
    parser.add_argument('--seed', type=int, default=1, help='seed for picking the rewritten blocks')
    args = parser.parse_args()
    if args.quick:
        args.base_mib, args.versions = 64, 3
    blocks = -(-args.base_mib * MIB // SLICE)
    size = blocks * SLICE
    per_version = max(1, int(round(blocks * args.change_percent / 100.0)))
    eng = benchlib.engine()
    caches = benchlib.Caches(args.cold)
    rng = random.Random(args.seed)
    rows = []
    versions = []
    checks = []

    with benchlib.Scratch('versions', args.workdir, args.keep) as scratch:
        # source + store: one image plus (versions - 1) x the changes, with room to spare
        benchlib.check_space(scratch.path, 2 * size + args.versions * per_version * SLICE + 64 * MIB)
        print('workdir %s' % scratch.path)
        print('before: %s' % benchlib.load_note())
        store = scratch.join('store')
        registry = benchlib.declare_file_store(eng, scratch.join('registry'), 'versions', store)
        src = scratch.join('image.raw')
        benchlib.write_random_file(src, size)
        print('base image: %d MiB = %d distinct random 4 MiB blocks; each version rewrites %d blocks (%.1f%%)'
              % (size // MIB, blocks, per_version, args.change_percent))
        print('cache: %s' % caches.describe())
        print()
        distinct_blocks = 0
        previous_slices = 0
        fd = os.open(src, os.O_WRONLY)
        try:
            for version in range(1, args.versions + 1):
                rewritten = rng.sample(range(blocks), per_version)
                for index in rewritten:
                    benchlib.write_all(fd, benchlib.BlockMaker.parts(SLICE), index * SLICE)
                os.fsync(fd)
                # Ideal store: every block of v1, then the blocks each later version rewrote.
                distinct_blocks += blocks if version == 1 else per_version
                caches.before_run(src)
                with Timed() as timing:
                    request = eng.ImageRequest(eng.Catalog(registry), benchlib.image_params(
                        name='img-v%d' % version, src=src, disk_format='raw', stores=['versions']))
                    request.present(check_mode=False)
                count, stored = benchlib.slice_usage(store)
                new_slices = count - previous_slices
                previous_slices = count
                versions.append({'version': version, 'import_s': round(timing.wall, 4), 'gbps': round(gbps(size, timing.wall), 4),
                                 'busy_cores': round(timing.cores, 2), 'new_slices': new_slices, 'slices': count,
                                 'slice_bytes': stored})
                rows.append(['img-v%d' % version, '%.2f' % timing.wall, '%.2f' % gbps(size, timing.wall), '%.2f' % timing.cores,
                             new_slices, count, '%.0f' % (stored / MIB), '%.3f' % (stored / float(size))])
        finally:
            os.close(fd)
        disk = du_bytes(store)
        apparent = du_bytes(store, apparent=True)
        images = len(eng.Catalog(registry).images())
        checks.append(('%d images in the store' % images, images == args.versions))
        checks.append(('slices stored = distinct blocks (%d = %d)' % (previous_slices, distinct_blocks), previous_slices == distinct_blocks))

    plain = args.versions * size
    ideal = distinct_blocks * SLICE
    slice_bytes = versions[-1]['slice_bytes']
    print('%d versions of a %d MiB image, each import reads and hashes the whole image; %s'
          % (args.versions, size // MIB, caches.describe().split(':')[0]))
    benchlib.print_table(['image', 'import s', 'GB/s', 'busy cores', 'new slices', 'slices', 'store MiB', 'x one image'], rows)
    print()
    summary = [
        ['one image', '%.0f' % (size / MIB), '1.000'],
        ['store: sum of slice files', '%.0f' % (slice_bytes / MIB), '%.3f' % (slice_bytes / float(size))],
        ['store: du (disk usage)', '%.0f' % (disk / MIB) if disk else 'n/a', '%.3f' % (disk / float(size)) if disk else 'n/a'],
        ['store: du --apparent-size', '%.0f' % (apparent / MIB) if apparent else 'n/a',
         '%.3f' % (apparent / float(size)) if apparent else 'n/a'],
        ['ideal: each distinct block once', '%.0f' % (ideal / MIB), '%.3f' % (ideal / float(size))],
        ['%d plain copies' % args.versions, '%.0f' % (plain / MIB), '%.3f' % (plain / float(size))],
    ]
    benchlib.print_table(['', 'MiB', 'x one image'], summary)
    print()
    for text, ok in checks:
        print('check: %-60s %s' % (text, 'ok' if ok else 'FAILED'))
    print('after: %s' % benchlib.load_note())
    times = [entry['import_s'] for entry in versions]
    later = times[1:] or times
    ratios = {'store_over_one_image': slice_bytes / float(size), 'du_over_one_image': (disk / float(size)) if disk else None,
              'store_over_plain_copies': slice_bytes / float(plain), 'store_over_ideal': slice_bytes / float(ideal),
              'first_import_s': times[0], 'later_import_mean_s': sum(later) / len(later)}
    print('ratios: store/one image %.3f (goal <= 1.6; du %s); store/%d plain copies %.3f; store/ideal %.3f; '
          'import v1 %.2f s, later versions %.2f s on average (%.2f GB/s)'
          % (ratios['store_over_one_image'], '%.3f' % ratios['du_over_one_image'] if disk else 'n/a', args.versions,
             ratios['store_over_plain_copies'], ratios['store_over_ideal'], times[0], ratios['later_import_mean_s'],
             gbps(size, ratios['later_import_mean_s'])))
    benchlib.write_json(args.json, {'benchmark': 'versions_dedup', 'image_bytes': size, 'versions': versions,
                                    'change_percent': args.change_percent, 'blocks_per_version': per_version,
                                    'cache': caches.describe(), 'store_du_bytes': disk, 'store_apparent_bytes': apparent,
                                    'ideal_bytes': ideal, 'plain_copies_bytes': plain,
                                    'ratios': dict((k, round(v, 4) if v is not None else None) for k, v in ratios.items()),
                                    'checks': dict(checks)})
    return 0 if all(ok for _text, ok in checks) else 1


if __name__ == '__main__':
    benchlib.run_main(main)
