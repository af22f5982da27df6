#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A host with many images: the cost of one no-op image task and of image_info by name, against a full scan.

Setup (not timed): 3 local file stores; one small image imported into all 3 for real, then N-1 more images
whose records and slice lists are written through the stores' own interface (same slices: deduplicated, as
versions of one image are), each with its own id and name. The stores' name index is built as a `store`
declaration builds it for a store made by an older version.
Timed, in the same run, over --samples random images (median):
  noop      ImageRequest(name, stores=3).present() with a fresh Registry and Catalog, as the image module does
  by name   Catalog.find(name=...) (what image_info name=... and image_export name=... do)
  scan      Catalog.images(): every record of every store (what a name lookup cost before the index)
  quota     what an import's quota check reads in the 3 stores: the usage ledger (a base and the deltas since,
            started by declaring a quota), against the walk of every slice and record it replaced (stats())
Reported per image x store pair (the issue's budget: 10 ms) and as ratios against the scan.
Run with the venv's python: .venv/bin/python bench/scale_catalog.py [--quick] [--images N]
"""

from __future__ import absolute_import, division, print_function

import random
import statistics
import uuid

import benchlib
from benchlib import MIB, Timed

STORES = ('scale-s1', 'scale-s2', 'scale-s3')


def main():
    parser = benchlib.parser(__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--images', type=int, default=5000, help='number of images (default 5000)')
    parser.add_argument('--samples', type=int, default=30, help='images timed (median reported)')
    parser.add_argument('--seed', type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        args.images, args.samples = 300, 10
    eng = benchlib.engine()
    rng = random.Random(args.seed)
    pairs = len(STORES)
    checks = []
    with benchlib.Scratch('scale', args.workdir, args.keep) as scratch:
        print('workdir %s' % scratch.path)
        print('before: %s' % benchlib.load_note())
        registry_dir = scratch.join('registry')
        for name in STORES:
            registry = benchlib.declare_file_store(eng, registry_dir, name, scratch.join(name))
        src = scratch.join('seed.raw')
        benchlib.write_random_file(src, 2 * MIB)
        eng.ImageRequest(eng.Catalog(registry), benchlib.image_params(
            name='scale-00000', src=src, disk_format='raw', stores=list(STORES))).present(check_mode=False)
        catalog = eng.Catalog(registry)
        seed = catalog.find(name='scale-00000')
        names = ['scale-00000']
        with Timed() as setup:
            backends = [catalog.store(name).backend for name in STORES]
            slice_list = backends[0].read_slice_list(seed.id)
            for number in range(1, args.images):
                image_id, name = str(uuid.UUID(int=rng.getrandbits(128), version=4)), 'scale-%05d' % number
                for backend in backends:
                    backend.write_slice_list(image_id, slice_list)
                    backend.write_record(image_id, dict(seed.copies[backend.name], id=image_id, name=name))
                names.append(name)
            for name in STORES:  # what the store module does for a store without a complete name index (and a quota)
                eng.StoreDeclaration(eng.Registry(registry_dir), {'name': name, 'type': 'file', 'path': scratch.join(name),
                                                                  'enabled': True, 'quota': {'images': 10 * args.images}}).present(False)
        print('setup: %d images x %d stores written in %.1f s (not timed below)' % (args.images, len(STORES), setup.wall))
        samples = rng.sample(names, min(args.samples, len(names)))
        noop, by_name, changed = [], [], 0
        for name in samples:
            with Timed() as timing:
                request = eng.ImageRequest(eng.Catalog(eng.Registry(registry_dir)),
                                           benchlib.image_params(name=name, stores=list(STORES)))
                changed += bool(request.present(check_mode=False))
            noop.append(timing.wall)
            with Timed() as timing:
                view = eng.Catalog(eng.Registry(registry_dir)).find(name=name)
            by_name.append(timing.wall)
            checks.append(('%s found in all %d stores' % (name, len(STORES)), view is not None and view.active_stores() == sorted(STORES)))
        scans = []
        for _round in range(3):
            with Timed() as timing:
                found = eng.Catalog(eng.Registry(registry_dir)).images()
            scans.append(timing.wall)
        ledger, walk = [], []
        for _round in range(3):
            stores = [eng.Registry(registry_dir).open(name).backend for name in STORES]
            with Timed() as timing:
                usage = [backend.usage() for backend in stores]
            ledger.append(timing.wall)
            with Timed() as timing:
                stats = [backend.stats() for backend in stores]
            walk.append(timing.wall)
        ledger_ok = [u['image_count'] for u in usage] == [s['image_count'] for s in stats] == [args.images] * pairs
        checks = [('every sampled image found in all %d stores' % len(STORES), all(ok for _label, ok in checks))]
        checks.append(('no sampled task changed anything (%d changed)' % changed, changed == 0))
        checks.append(('the scan sees all %d images' % args.images, len(found) == args.images))
        checks.append(('the usage ledger counts the images the walk counts', ledger_ok))
        noop_s, name_s, scan_s = statistics.median(noop), statistics.median(by_name), statistics.median(scans)
        ledger_s, walk_s = statistics.median(ledger), statistics.median(walk)
        rows = [
            ['no-op image task (engine)', '%.2f' % (1000 * noop_s), '%.2f' % (1000 * noop_s / pairs), '%.3f' % (noop_s / scan_s)],
            ['find by name', '%.2f' % (1000 * name_s), '%.2f' % (1000 * name_s / pairs), '%.3f' % (name_s / scan_s)],
            ['full scan (every record)', '%.2f' % (1000 * scan_s), '%.2f' % (1000 * scan_s / pairs), '1.000'],
            ['quota check, usage ledger', '%.2f' % (1000 * ledger_s), '%.2f' % (1000 * ledger_s / pairs), '%.3f' % (ledger_s / scan_s)],
            ['quota check, walk (stats)', '%.2f' % (1000 * walk_s), '%.2f' % (1000 * walk_s / pairs), '%.3f' % (walk_s / scan_s)],
        ]
        print()
        print('%d images x %d file stores, %d samples (median)' % (args.images, len(STORES), len(samples)))
        benchlib.print_table(['operation', 'ms', 'ms per image x store', 'ratio to scan'], rows)
        results = {'images': args.images, 'stores': len(STORES), 'noop_ms': round(1000 * noop_s, 3),
                   'noop_ms_per_pair': round(1000 * noop_s / pairs, 3), 'find_by_name_ms': round(1000 * name_s, 3),
                   'scan_ms': round(1000 * scan_s, 3), 'quota_ledger_ms': round(1000 * ledger_s, 3),
                   'quota_walk_ms': round(1000 * walk_s, 3)}
        print()
        for text, ok in checks:
            print('check: %-78s %s' % (text, 'ok' if ok else 'FAILED'))
        print('after: %s' % benchlib.load_note())
        print('ratios: no-op task %.2f ms per image x store (goal <= 10); find by name / full scan %.4f; quota check ledger / walk %.4f'
              % (results['noop_ms_per_pair'], name_s / scan_s, ledger_s / walk_s))
        benchlib.write_json(args.json, {'benchmark': 'scale_catalog', 'results': results, 'checks': dict(checks)})
        return 0 if all(ok for _text, ok in checks) else 1


if __name__ == '__main__':
    benchlib.run_main(main)
