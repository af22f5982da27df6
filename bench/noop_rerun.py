#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cost of a no-op re-run: N images already in 3 stores, ensured again, against an empty play.

Setup (engine, not timed): 3 local file stores, N small images of distinct data imported into all 3.
Then the source files are deleted and the slice files get an old access time, so that any read of
image data would show (a missing source fails the task; a read slice gets a new atime on relatime).
Timed, in the same run:
  image    ansible-playbook with one loop task of N vmimages.multistore.image items (src, checksum, 3 stores):
           every item must report changed: false
  ping     the same play shape with ansible.builtin.ping (a module that does nothing): Ansible's own cost
  debug    the same play shape with ansible.builtin.debug (no module run at all)
  engine   ImageRequest(...).present(check_mode=False) in this process for every image (a fresh Catalog
           per image, as the module does), then result() as the module does: time per image-store pair
Run with the venv's python: .venv/bin/python bench/noop_rerun.py [--quick] [--images N]
"""

from __future__ import absolute_import, division, print_function

import datetime
import hashlib
import os
import random
import statistics

import benchlib
from benchlib import MIB, Timed

STORES = ('noop-s1', 'noop-s2', 'noop-s3')
OLD_ATIME = 86400 * 2


def read_rchar():
    """Bytes this process asked read() for so far (Linux /proc/self/io), or None."""
    try:
        with open('/proc/self/io') as handle:
            for line in handle:
                if line.startswith('rchar:'):
                    return int(line.split()[1])
    except (IOError, OSError):
        return None
    return None


def slice_paths(store_roots):
    for root in store_roots:
        for dirpath, _dirs, files in os.walk(os.path.join(root, 'slices')):
            for name in files:
                if not name.startswith('.'):
                    yield os.path.join(dirpath, name)


def age_atimes(paths):
    """Set every file's atime well before its mtime: with relatime, the next read updates it."""
    stamps = {}
    for path in paths:
        info = os.stat(path)
        atime = int(info.st_mtime) - OLD_ATIME
        os.utime(path, (atime, info.st_mtime))
        stamps[path] = atime
    return stamps


def atime_probe(directory):
    """True when reading a file updates its aged atime here (false on noatime mounts)."""
    probe = os.path.join(directory, 'atime-probe')
    with open(probe, 'wb') as handle:
        handle.write(b'x' * 4096)
    age_atimes([probe])
    before = os.stat(probe).st_atime
    with open(probe, 'rb') as handle:
        handle.read()
    works = os.stat(probe).st_atime != before
    os.unlink(probe)
    return works


def play(name, task_name, module, args, items):
    return [{'name': name, 'hosts': 'localhost', 'gather_facts': False,
             'tasks': [{'name': task_name, module: args, 'loop': items, 'loop_control': {'label': '{{ item.name }}'}}]}]


def play_seconds(run):
    """The play's own duration (from the JSON callback), without ansible-playbook's start-up."""
    try:
        duration = run.output['plays'][0]['play']['duration']
        start, end = [datetime.datetime.strptime(duration[key], '%Y-%m-%dT%H:%M:%S.%fZ') for key in ('start', 'end')]
        return (end - start).total_seconds()
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def main():
    parser = benchlib.parser(__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--images', type=int, default=50, help='number of images')
    parser.add_argument('--min-mib', type=float, default=2, help='smallest image, MiB')
    parser.add_argument('--max-mib', type=float, default=8, help='largest image, MiB')
    parser.add_argument('--rounds', type=int, default=5, help='rounds of the in-process engine re-run (median reported)')
    parser.add_argument('--skip-ansible', action='store_true', help='only the in-process engine re-run')
    parser.add_argument('--seed', type=int, default=1, help='seed for the image sizes')
    args = parser.parse_args()
    if args.quick:
        args.images, args.min_mib, args.max_mib, args.rounds = 5, 1, 2, 2
    eng = benchlib.engine()
    caches = benchlib.Caches(args.cold)
    rng = random.Random(args.seed)
    sizes = [rng.randint(int(args.min_mib * MIB), int(args.max_mib * MIB)) for _image in range(args.images)]
    pairs = args.images * len(STORES)
    checks = []
    rows = []
    results = {}

    with benchlib.Scratch('noop', args.workdir, args.keep) as scratch:
        benchlib.check_space(scratch.path, (len(STORES) + 1) * sum(sizes) + 64 * MIB)
        print('workdir %s' % scratch.path)
        print('before: %s' % benchlib.load_note())
        registry_dir = scratch.join('registry')
        roots = [scratch.join(name) for name in STORES]
        for name, root in zip(STORES, roots):
            registry = benchlib.declare_file_store(eng, registry_dir, name, root)
        os.mkdir(scratch.join('src'))
        items = []
        with Timed() as setup:
            for number, size in enumerate(sizes, 1):
                src = scratch.join('src', 'img-%03d.raw' % number)
                benchlib.write_random_file(src, size)
                with open(src, 'rb') as handle:
                    md5 = hashlib.md5(handle.read()).hexdigest()
                name = 'noop-img-%03d' % number
                request = eng.ImageRequest(eng.Catalog(registry), benchlib.image_params(
                    name=name, src=src, checksum='md5:%s' % md5, disk_format='raw', stores=list(STORES)))
                request.present(check_mode=False)
                items.append({'name': name, 'src': src, 'checksum': 'md5:%s' % md5})
        total = sum(sizes)
        print('setup: %d images of %.1f-%.1f MiB (%.0f MiB in all, distinct data) imported into %d stores in %.1f s '
              '(not timed below)' % (args.images, args.min_mib, args.max_mib, total / MIB, len(STORES), setup.wall))
        # No image data may be read from here on: the sources are gone, the slices' atimes are aged.
        for item in items:
            os.unlink(item['src'])
        os.rmdir(scratch.join('src'))
        atime_works = atime_probe(scratch.path)
        stamps = age_atimes(list(slice_paths(roots)))
        atime_state = 'active' if atime_works else 'UNAVAILABLE: noatime mount'
        print('sources deleted; %d slice files aged (atime check %s)' % (len(stamps), atime_state))
        print('cache: %s' % caches.describe().split(':')[0])
        print()

        # (a), (b): the playbooks
        runs = {}
        if not args.skip_ansible:
            image_args = {'name': '{{ item.name }}', 'src': '{{ item.src }}', 'checksum': '{{ item.checksum }}',
                          'stores': list(STORES), 'registry': registry_dir}
            plays = {
                'image': play('noop image', 'ensure images', 'vmimages.multistore.image', image_args, items),
                'ping': play('baseline ping', 'ensure images', 'ansible.builtin.ping', {'data': '{{ item.name }}'}, items),
                'debug': play('baseline debug', 'ensure images', 'ansible.builtin.debug', {'msg': '{{ item.name }}'}, items),
            }
            for label in ('image', 'ping', 'debug'):
                path = benchlib.write_playbook(scratch.join('%s.yml' % label), plays[label])
                caches.before_run()
                runs[label] = benchlib.run_playbook(path)
            image_results = runs['image'].task_results('ensure images')
            unchanged = [item for item in image_results if not item.get('changed') and not item.get('failed')]
            complete = [item for item in image_results if sorted(item.get('image', {}).get('stores', [])) == sorted(STORES)]
            checks.append(('playbook: %d of %d items changed: false, none failed' % (len(unchanged), args.images),
                           len(unchanged) == args.images and runs['image'].stats.get('changed') == 0
                           and runs['image'].stats.get('failures') == 0))
            checks.append(('playbook: %d of %d images report all %d stores' % (len(complete), args.images, len(STORES)),
                           len(complete) == args.images))
            for label, title in (('image', 'image loop (a)'), ('ping', 'ping loop (b)'), ('debug', 'debug loop (b)')):
                run = runs[label]
                inner = play_seconds(run)
                rows.append([title, '%.2f' % run.timing.wall, '%.2f' % inner if inner is not None else 'n/a',
                             '%.1f' % (1000.0 * (inner or run.timing.wall) / args.images),
                             '%.1f' % (1000.0 * (inner or run.timing.wall) / pairs) if label == 'image' else '',
                             '%.2f' % run.timing.cores])
                results['playbook_' + label] = dict(run.timing.as_dict(), play_s=inner)

        # (c): the engine in this process
        round_times = []
        round_result_times = []
        rchar_per_image = []
        changed_per_round = []
        for _round in range(args.rounds):
            caches.before_run()
            changed = 0
            rchar_before = read_rchar()
            with Timed() as present_timing:
                requests = []
                for item in items:
                    request = eng.ImageRequest(eng.Catalog(eng.Registry(registry_dir)), benchlib.image_params(
                        name=item['name'], src=item['src'], checksum=item['checksum'], stores=list(STORES)))
                    changed += bool(request.present(check_mode=False))
                    requests.append(request)
            with Timed() as result_timing:
                for request in requests:
                    request.result()
            rchar_after = read_rchar()
            if rchar_before is not None and rchar_after is not None:
                rchar_per_image.append((rchar_after - rchar_before) / float(args.images))
            round_times.append(present_timing.wall)
            round_result_times.append(result_timing.wall)
            changed_per_round.append(changed)
        checks.append(('engine: images changed per round %s (of %d)' % (changed_per_round, args.images), not any(changed_per_round)))
        present_s = statistics.median(round_times)
        result_s = statistics.median(round_result_times)
        rows.append(['engine present() (c)', '%.3f' % present_s, '', '%.1f' % (1000.0 * present_s / args.images),
                     '%.2f' % (1000.0 * present_s / pairs), ''])
        rows.append(['engine present()+result()', '%.3f' % (present_s + result_s), '',
                     '%.1f' % (1000.0 * (present_s + result_s) / args.images), '%.2f' % (1000.0 * (present_s + result_s) / pairs), ''])
        results['engine'] = {'present_s': round(present_s, 5), 'result_s': round(result_s, 5), 'rounds': args.rounds,
                             'per_pair_ms': round(1000.0 * present_s / pairs, 3),
                             'per_pair_ms_with_result': round(1000.0 * (present_s + result_s) / pairs, 3),
                             'rchar_per_image': round(statistics.median(rchar_per_image)) if rchar_per_image else None}

        read_slices = [path for path, atime in stamps.items() if int(os.stat(path).st_atime) != atime]
        if atime_works:
            checks.append(('no slice file was read (%d of %d atimes changed)' % (len(read_slices), len(stamps)), not read_slices))
        record_bytes = sum(os.stat(os.path.join(dirpath, name)).st_size for root in roots
                           for dirpath, _dirs, files in os.walk(os.path.join(root, 'images')) for name in files)
        results['metadata_bytes_all_stores'] = record_bytes

    print('no-op re-run of %d images x %d stores = %d image-store pairs; %s' % (args.images, len(STORES), pairs, caches.describe().split(':')[0]))
    benchlib.print_table(['run', 'process s', 'play s', 'ms/image', 'ms/pair', 'busy cores'], rows)
    print()
    for text, ok in checks:
        print('check: %-78s %s' % (text, 'ok' if ok else 'FAILED'))
    if rchar_per_image:
        print('engine re-run read %.0f bytes per image with read() (no image data: see the atime check); all record and '
              'slice-list files of the %d stores add up to %d bytes' % (results['engine']['rchar_per_image'], len(STORES), record_bytes))
    print('after: %s' % benchlib.load_note())
    line = ['engine %.2f ms per image-store pair (goal < 10)' % results['engine']['per_pair_ms'],
            '%.2f ms with result()' % results['engine']['per_pair_ms_with_result']]
    ratios = {'engine_ms_per_pair': results['engine']['per_pair_ms']}
    if runs:
        image_play = results['playbook_image']['play_s'] or runs['image'].timing.wall
        ping_play = results['playbook_ping']['play_s'] or runs['ping'].timing.wall
        debug_play = results['playbook_debug']['play_s'] or runs['debug'].timing.wall
        ratios.update({'image_play_over_ping_play': image_play / ping_play, 'image_play_over_debug_play': image_play / debug_play,
                       'image_process_over_ping_process': runs['image'].timing.wall / runs['ping'].timing.wall,
                       'module_extra_ms_per_item': 1000.0 * (image_play - ping_play) / args.images})
        line.append('image play / ping play %.2f (%.2f s vs %.2f s)' % (ratios['image_play_over_ping_play'], image_play, ping_play))
        line.append('image play / debug play %.2f' % ratios['image_play_over_debug_play'])
        line.append('module cost beyond ping %.1f ms per item' % ratios['module_extra_ms_per_item'])
    print('ratios: ' + '; '.join(line))
    benchlib.write_json(args.json, {'benchmark': 'noop_rerun', 'images': args.images, 'stores': len(STORES),
                                    'image_sizes': sizes, 'cache': caches.describe(), 'results': results,
                                    'ratios': dict((k, round(v, 4)) for k, v in ratios.items()), 'checks': dict(checks)})
    return 0 if all(ok for _text, ok in checks) else 1


if __name__ == '__main__':
    benchlib.run_main(main)
