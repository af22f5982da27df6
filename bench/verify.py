#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verify throughput of a file store (store_cleanup verify: true) against sha256sum over the same slice files.

Setup (not timed): one local file store, one image of --mib MiB of distinct data imported into it.
Timed, in the same run, with the same cache state before each (warm by default; --cold drops the page cache):
  verify     StoreVerify(store).run(): every slice re-hashed (sha256) against its name, as store_cleanup does
  sha256sum  `sha256sum` of every slice file (one process, the files in one argument list): the obvious tool
Then one slice file gets a flipped byte and verify must report exactly it (a check, not timed).
Run with the venv's python: .venv/bin/python bench/verify.py [--quick] [--mib N] [--cold]
"""

from __future__ import absolute_import, division, print_function

import os
import subprocess

import benchlib
from benchlib import MIB, Timed


def main():
    parser = benchlib.parser(__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--mib', type=int, default=2048, help='image size in MiB (default 2048)')
    parser.add_argument('--rounds', type=int, default=3, help='rounds of each (best reported)')
    args = parser.parse_args()
    if args.quick:
        args.mib, args.rounds = 64, 1
    eng = benchlib.engine()
    from ansible_collections.vmimages.multistore.plugins.module_utils.images.verify import StoreVerify
    caches = benchlib.Caches(args.cold)
    checks = []
    with benchlib.Scratch('verify', args.workdir, args.keep) as scratch:
        benchlib.check_space(scratch.path, 2 * args.mib * MIB + 64 * MIB)
        print('workdir %s' % scratch.path)
        print('before: %s' % benchlib.load_note())
        registry = benchlib.declare_file_store(eng, scratch.join('registry'), 'verify', scratch.join('store'))
        src = scratch.join('src.raw')
        benchlib.write_random_file(src, args.mib * MIB)
        eng.ImageRequest(eng.Catalog(registry), benchlib.image_params(
            name='verify-img', src=src, disk_format='raw', stores=['verify'])).present(check_mode=False)
        os.unlink(src)
        slices = sorted(os.path.join(dirpath, name) for dirpath, _dirs, names in os.walk(scratch.join('store', 'slices'))
                        for name in names if not name.startswith('.'))
        total = sum(os.path.getsize(path) for path in slices)
        print('setup: %d MiB in %d slice files (not timed)' % (total // MIB, len(slices)))
        print('cache: %s' % caches.describe().split(':')[0])
        verify_times, sum_times = [], []
        for _round in range(args.rounds):
            caches.before_run()
            with Timed() as timing:
                changed, report = StoreVerify(eng.Registry(scratch.join('registry')).open('verify'), []).run(False)
            verify_times.append(timing)
            checks.append(('verify round: %d slices, none corrupt' % report['verified_slices'],
                           report['corrupt'] == [] and report['verified_bytes'] == total and changed is False))
            caches.before_run()
            with Timed() as timing:
                out = subprocess.run(['sha256sum'] + slices, stdout=subprocess.PIPE, check=True).stdout.decode()
            sum_times.append(timing)
            checks.append(('sha256sum agrees with the slice names', all(
                line.split()[0] == os.path.basename(line.split()[1]) for line in out.splitlines())))
        # bit rot: one byte flipped in one slice file
        victim = slices[len(slices) // 2]
        with open(victim, 'r+b') as handle:
            handle.seek(12345)
            byte = handle.read(1)
            handle.seek(12345)
            handle.write(bytes([byte[0] ^ 0xFF]))
        _changed, report = StoreVerify(eng.Registry(scratch.join('registry')).open('verify'), []).run(False)
        checks.append(('a flipped byte in one slice is reported, and only it',
                       [entry.get('slice') for entry in report['corrupt']] == [os.path.basename(victim)]))
        best_verify = min(verify_times, key=lambda timing: timing.wall)
        best_sum = min(sum_times, key=lambda timing: timing.wall)
        rows = [['verify (store_cleanup)', '%.2f' % best_verify.wall, '%.2f' % benchlib.gbps(total, best_verify.wall),
                 '%.2f' % best_verify.cores],
                ['sha256sum', '%.2f' % best_sum.wall, '%.2f' % benchlib.gbps(total, best_sum.wall), '%.2f' % best_sum.cores]]
        print()
        benchlib.print_table(['run', 'seconds', 'GB/s', 'busy cores'], rows)
        print()
        for text, ok in checks:
            print('check: %-78s %s' % (text, 'ok' if ok else 'FAILED'))
        print('after: %s' % benchlib.load_note())
        ratio = best_sum.wall / best_verify.wall
        print('ratios: verify throughput / sha256sum throughput %.2f (%d MiB, best of %d)' % (ratio, total // MIB, args.rounds))
        benchlib.write_json(args.json, {'benchmark': 'verify', 'bytes': total, 'verify_s': best_verify.wall,
                                        'sha256sum_s': best_sum.wall, 'ratio': round(ratio, 3), 'checks': dict(checks)})
        return 0 if all(ok for _text, ok in checks) else 1


if __name__ == '__main__':
    benchlib.run_main(main)
