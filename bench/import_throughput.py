#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Import throughput of one large local file, against the obvious alternative, in the same run.

Contenders (each reads the same source, writes one copy and fsyncs it, and computes md5 + sha512):
  naive    cp SRC DST; sync DST (fsync); md5sum SRC; sha512sum SRC   (subprocesses, one after the other)
  ceiling  a minimal Python pipeline: reader thread + md5 + sha512 + sha256-per-4MiB threads + a
           writer thread into one file, fsync at the end: what 2 cores allow for this work
  ceiling O_DIRECT   the same, writing from page-aligned buffers with O_DIRECT (no page-cache copy)
  ansible  ansible-playbook with vmimages.multistore.store + vmimages.multistore.image (whole process timed)
  engine   the same import through the engine in this process (ImageRequest.present): no Ansible

The source is made of distinct, incompressible 4 MiB blocks (no all-zero and no repeated 4 MiB blocks),
otherwise slice deduplication would let the import skip work that cp and the hash tools do.
Run with the venv's python: .venv/bin/python bench/import_throughput.py [--quick] [--size-mib N]
"""

from __future__ import absolute_import, division, print_function

import errno
import fcntl
import hashlib
import mmap
import os
import queue
import subprocess
import threading

import benchlib
from benchlib import MIB, SLICE, Timed, ThreadSampler, gbps


def open_direct(path):
    """An fd opened with O_DIRECT, or None where the filesystem refuses it (tmpfs, some FUSE)."""
    if not hasattr(os, 'O_DIRECT'):
        return None
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return None
        raise


def ceiling_import(src, dst, pool_buffers=6, depth=4, direct=False):
    """Read once, fan each 4 MiB buffer out to md5, sha512, sha256 and the writer; fsync at the end.

    With ``direct``, the buffers are page-aligned (anonymous mmap) and the copy is written with O_DIRECT:
    no copy into the page cache (the final partial block, if any, is written through the cache).
    """
    fd = open_direct(dst) if direct else None
    direct = fd is not None
    if direct:
        buffers = [mmap.mmap(-1, SLICE) for _slot in range(pool_buffers)]
    else:
        buffers = [bytearray(SLICE) for _slot in range(pool_buffers)]
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    free = queue.Queue()
    for slot in range(pool_buffers):
        free.put(slot)
    pending = [0] * pool_buffers
    pending_lock = threading.Lock()
    md5 = hashlib.md5()
    sha512 = hashlib.sha512()
    slice_digests = []

    def write(view):
        if direct and len(view) % 4096:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)
        while view:
            view = view[os.write(fd, view):]

    consumers = [('md5', md5.update), ('sha512', sha512.update),
                 ('sha256/slice', lambda view: slice_digests.append(hashlib.sha256(view).digest())),
                 ('write', write)]
    inboxes = []
    threads = []
    errors = []

    def release(slot):
        with pending_lock:
            pending[slot] -= 1
            done = pending[slot] == 0
        if done:
            free.put(slot)

    def consume(inbox, work):
        while True:
            item = inbox.get()
            if item is None:
                return
            view, slot = item
            try:
                if not errors:
                    work(view)
            except Exception as exc:
                errors.append(exc)
            finally:
                release(slot)

    for name, work in consumers:
        inbox = queue.Queue(depth)
        inboxes.append(inbox)
        threads.append(threading.Thread(target=consume, args=(inbox, work), name='ceiling ' + name, daemon=True))

    def read():
        with open(src, 'rb', buffering=0) as handle:
            while not errors:
                slot = free.get()
                view = memoryview(buffers[slot])
                count = handle.readinto(view)
                if not count:
                    break
                with pending_lock:
                    pending[slot] = len(inboxes)
                for inbox in inboxes:
                    inbox.put((view[:count], slot))
        for inbox in inboxes:
            inbox.put(None)

    reader = threading.Thread(target=read, name='ceiling reader', daemon=True)
    for thread in threads + [reader]:
        thread.start()
    for thread in [reader] + threads:
        thread.join()
    try:
        if errors:
            raise errors[0]
        os.fsync(fd)
    finally:
        os.close(fd)
    return md5.hexdigest(), sha512.hexdigest(), len(slice_digests), direct


def engine_thread_label(thread):
    """Name the engine's pipeline threads by what they do (read-only introspection)."""
    if thread is threading.main_thread():
        return 'main: read + inspect + dispatch'
    if thread.name.startswith('ThreadPoolExecutor'):
        return 'commit: parallel fsync'
    work = getattr(thread, 'work', None)
    if work is None:
        return None
    if getattr(work, '__name__', '') == 'slice_work':
        return 'slice: sha256 + store writes'
    for cell in getattr(work, '__closure__', None) or ():
        name = getattr(cell.cell_contents, 'name', None)
        if isinstance(name, str):
            return 'hash: %s' % name
    return None


class Outcome:
    def __init__(self, timing, md5=None, sha512=None, steps=None, threads=None):
        self.timing = timing
        self.wall = timing.wall if timing is not None else sum(step.wall for _label, step in steps)
        self.cpu = timing.cpu if timing is not None else sum(step.cpu for _label, step in steps)
        self.md5 = md5
        self.sha512 = sha512
        self.steps = steps or []
        self.threads = threads

    def as_dict(self, size):
        data = {'wall_s': round(self.wall, 4), 'gbps': round(gbps(size, self.wall), 4), 'busy_cores': round(self.cpu / self.wall, 2),
                'cpu_s': round(self.cpu, 3)}
        if self.steps:
            data['steps'] = dict((label, step.as_dict()) for label, step in self.steps)
        if self.threads is not None:
            data['threads'] = [{'thread': label, 'cpu_s': round(cpu, 2), 'share': round(share, 3)}
                               for label, cpu, share in self.threads.busy()]
        return data


def run_naive(scratch, src, _size):
    """cp + fsync of the copy (sync FILE) + md5sum + sha512sum, one after the other."""
    dst = scratch.join('naive.copy')
    steps = []
    outputs = {}
    for label, command in (('cp', ['cp', src, dst]), ('sync DST', ['sync', dst]), ('md5sum', ['md5sum', src]),
                           ('sha512sum', ['sha512sum', src])):
        with Timed() as step:
            proc = subprocess.run(command, stdout=subprocess.PIPE, universal_newlines=True, check=True)
        outputs[label] = proc.stdout.split()[0] if proc.stdout else None
        steps.append((label, step))
    benchlib.remove(dst)
    return Outcome(None, outputs['md5sum'], outputs['sha512sum'], steps=steps)


def run_ceiling(scratch, src, _size, direct=False):
    dst = scratch.join('ceiling.copy')
    with ThreadSampler() as threads:
        with Timed() as timing:
            md5, sha512, _slices, used_direct = ceiling_import(src, dst, direct=direct)
    benchlib.remove(dst)
    outcome = Outcome(timing, md5, sha512, threads=threads)
    outcome.direct = used_direct
    return outcome


def run_ansible(scratch, src, _size):
    store = scratch.join('store-ansible')
    registry = scratch.join('registry-ansible')
    playbook = benchlib.write_playbook(scratch.join('import.yml'), [{
        'name': 'bench import', 'hosts': 'localhost', 'gather_facts': False,
        'tasks': [
            {'name': 'declare store', 'vmimages.multistore.store': {'name': 'bench', 'path': store, 'registry': registry}},
            {'name': 'import image', 'vmimages.multistore.image': {
                'name': 'bench-image', 'src': src, 'disk_format': 'raw', 'stores': ['bench'], 'registry': registry}},
        ]}])
    run = benchlib.run_playbook(playbook)
    image = (run.task_results('import image') or [{}])[0].get('image', {})
    benchlib.remove(store)
    benchlib.remove(registry)
    return Outcome(run.timing, image.get('checksum'), image.get('os_hash_value'))


def run_engine(scratch, src, size, eng):
    store = scratch.join('store-engine')
    registry_dir = scratch.join('registry-engine')
    registry = benchlib.declare_file_store(eng, registry_dir, 'bench', store)
    with ThreadSampler(engine_thread_label) as threads:
        with Timed() as timing:
            request = eng.ImageRequest(eng.Catalog(registry), benchlib.image_params(
                name='bench-image', src=src, disk_format='raw', stores=['bench']))
            request.present(check_mode=False)
    record = request.result()
    outcome = Outcome(timing, record.get('checksum'), record.get('os_hash_value'), threads=threads)
    outcome.slices = benchlib.slice_usage(store)
    benchlib.remove(store)
    benchlib.remove(registry_dir)
    return outcome


CONTENDERS = [
    ('naive', 'naive (a)', 'cp + sync DST + md5sum + sha512sum, sequential'),
    ('ceiling', 'ceiling (b)', 'python: reader + md5/sha512/sha256 + writer threads'),
    ('direct', "ceiling O_DIRECT (b')", '(b) writing with O_DIRECT from page-aligned buffers'),
    ('ansible', 'ansible import (c)', 'whole ansible-playbook process: store + image tasks'),
    ('engine', 'engine in-process (d)', 'ImageRequest.present, no Ansible'),
]


def main():
    parser = benchlib.parser(__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--size-mib', type=int, help='size of the source file in MiB (default 4096, --quick 64)')
    parser.add_argument('--repeat', type=int,
                        help='rounds (default 2, --quick 1); each round runs every contender, in reversed order every other '
                             'round; the best run of each is reported')
    parser.add_argument('--skip-ansible', action='store_true', help='leave out the ansible-playbook contender')
    parser.add_argument('--skip-direct', action='store_true', help="leave out the O_DIRECT variant of the ceiling (b')")
    args = parser.parse_args()
    args.size_mib = args.size_mib or (64 if args.quick else 4096)
    args.repeat = args.repeat or (1 if args.quick else 2)
    size = args.size_mib * MIB
    caches = benchlib.Caches(args.cold)
    eng = benchlib.engine()
    runners = {'naive': run_naive, 'ceiling': run_ceiling, 'ansible': run_ansible,
               'direct': lambda scratch, src, size: run_ceiling(scratch, src, size, direct=True),
               'engine': lambda scratch, src, size: run_engine(scratch, src, size, eng)}
    contenders = [c for c in CONTENDERS if not (args.skip_ansible and c[0] == 'ansible') and not (args.skip_direct and c[0] == 'direct')]
    outcomes = dict((name, []) for name, _title, _note in contenders)

    with benchlib.Scratch('import', args.workdir, args.keep) as scratch:
        benchlib.check_space(scratch.path, 2 * size + 64 * MIB)
        src = scratch.join('source.raw')
        print('workdir %s' % scratch.path)
        with Timed() as made:
            benchlib.write_random_file(src, size)
        print('source: %d MiB of distinct incompressible 4 MiB blocks (no zero and no repeated blocks, so slice dedup '
              'cannot skip work), made in %.1f s' % (args.size_mib, made.wall))
        print('cache: %s' % caches.describe())
        print('before: %s' % benchlib.load_note())
        for round_number in range(args.repeat):
            order = contenders if round_number % 2 == 0 else list(reversed(contenders))
            for name, title, _note in order:
                caches.before_run(src)
                outcome = runners[name](scratch, src, size)
                os.sync()  # deleted copies: let the filesystem settle outside the timed runs
                outcomes[name].append(outcome)
                print('  round %d: %-22s %7.2f s  %5.2f GB/s' % (round_number + 1, title, outcome.wall, gbps(size, outcome.wall)))
        print()

    best = dict((name, min(runs, key=lambda outcome: outcome.wall)) for name, runs in outcomes.items())
    reference = outcomes['naive'][0]
    checks = []
    for name, title, _note in contenders:
        if name != 'naive':
            same = all(o.md5 == reference.md5 and o.sha512 == reference.sha512 for o in outcomes[name])
            checks.append(('%s: md5 and sha512 match md5sum and sha512sum' % title, same))
    blocks = -(-size // SLICE)
    checks.append(('engine stored every slice once (%d of %d slices, %d bytes)' % (best['engine'].slices[0], blocks, best['engine'].slices[1]),
                   all(o.slices == (blocks, size) for o in outcomes['engine'])))

    rows = []
    for name, title, note in contenders:
        outcome = best[name]
        walls = sorted(o.wall for o in outcomes[name])
        if name == 'naive':
            for label, step in outcome.steps:
                rows.append(['  naive: ' + label, '%.2f' % step.wall, '', '%.2f' % gbps(size, step.wall), '%.2f' % step.cores,
                             '%.2f' % (step.cpu / (size / 1e9)), ''])
        rows.append([title, '%.2f' % outcome.wall, '%.2f' % walls[-1], '%.2f' % gbps(size, outcome.wall),
                     '%.2f' % (outcome.cpu / outcome.wall), '%.2f' % (outcome.cpu / (size / 1e9)), note])
    print('import of %d MiB (%.2f GB; GB/s = 1e9 bytes/s), %s, best of %d round(s)'
          % (args.size_mib, size / 1e9, caches.describe().split(':')[0], args.repeat))
    benchlib.print_table(['contender', 'best s', 'worst s', 'GB/s', 'busy cores', 'CPU s/GB', 'notes'], rows,
                         ['<', '>', '>', '>', '>', '>', '<'])
    print()
    print('CPU per thread in the best run (seconds, share of the wall time):')
    for name in [name for name in ('ceiling', 'direct', 'engine') if name in best]:
        busy = best[name].threads.busy()
        print('  %-8s %s' % (name, ', '.join('%s %.1fs %.0f%%' % (label, cpu, 100 * share) for label, cpu, share in busy) or 'n/a'))
    print()
    for text, ok in checks:
        print('check: %-72s %s' % (text, 'ok' if ok else 'MISMATCH'))
    print('after: %s' % benchlib.load_note())

    naive_s, ceiling_s, engine_s = best['naive'].wall, best['ceiling'].wall, best['engine'].wall
    ratios = {'naive_over_engine': naive_s / engine_s, 'engine_over_ceiling': ceiling_s / engine_s}
    line = []
    if 'ansible' in best:
        ansible_s = best['ansible'].wall
        ratios.update({'naive_over_ansible': naive_s / ansible_s, 'ansible_over_ceiling': ceiling_s / ansible_s,
                       'ansible_overhead_s': ansible_s - engine_s})
        line.append('naive/ansible-import time %.2f (goal >= 1.2)' % ratios['naive_over_ansible'])
        line.append('ansible-import/ceiling throughput %.2f' % ratios['ansible_over_ceiling'])
    line.append('naive/engine time %.2f' % ratios['naive_over_engine'])
    line.append('engine/ceiling throughput %.2f' % ratios['engine_over_ceiling'])
    if 'direct' in best:
        ratios['engine_over_direct_ceiling'] = best['direct'].wall / engine_s
        refused = '' if best['direct'].direct else ' (O_DIRECT refused here: buffered)'
        line.append('engine/ceiling-O_DIRECT throughput %.2f%s' % (ratios['engine_over_direct_ceiling'], refused))
    if 'ansible' in best:
        line.append('ansible-playbook minus engine %.2f s' % ratios['ansible_overhead_s'])
    print('ratios: ' + '; '.join(line))
    benchlib.write_json(args.json, {
        'benchmark': 'import_throughput', 'size_bytes': size, 'cache': caches.describe(), 'repeat': args.repeat,
        'best': dict((name, outcome.as_dict(size)) for name, outcome in best.items()),
        'runs': dict((name, [o.as_dict(size) for o in runs]) for name, runs in outcomes.items()),
        'ratios': dict((k, round(v, 4)) for k, v in ratios.items()), 'checks': dict(checks)})
    return 0 if all(ok for _text, ok in checks) else 1


if __name__ == '__main__':
    benchlib.run_main(main)
