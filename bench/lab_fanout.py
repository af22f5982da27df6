#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One image to many edges: the fan-out chain against one transfer, sequential copies and parallel pulls.

Runs as root. An nspawn lab (tests/lab/lab.py) of central + N edges (default 8), every host addressed on
the sync network (eth2) with its egress shaped to the same rate by tc tbf (default 400 Mbit/s), a file
store on each host, and every host registering the stores of the others (the lab's key as store-to-store
key, as the store_host role's multistore_remote_stores does). An image of distinct random 4 MiB blocks is
imported into central (not timed). Timed, in the same run, each starting with the image on no edge:
  one          `image` on central with stores [central, edge1]: one transfer to one edge
  sequential   N `image` tasks on central, one edge each, one after another (Glance's copy-image way)
  parallel     `image` on every edge at once (Ansible forks), each copying from central into its own store
  fan-out      one `image` task on central with stores [central, edge1..edgeN]: the edges fetch down a chain
Bytes sent on central's sync link are counted for each. Checks: the fan-out moved the image about once
over central's link; the first and the last edge export the image with the source's sha512.
The lab is destroyed at the end, also on error.
Run as root with the venv's python: .venv/bin/python bench/lab_fanout.py [--quick] [--edges N] [--size-mib N] [--rate R]
"""

from __future__ import absolute_import, division, print_function

import os
import time

import benchlib
from benchlib import MIB, SLICE, Timed
from lab_copy import Lab, lab_host_keys, play, run_playbook, task_result, task_seconds

WORK = '/var/tmp/benchfan'
KEY = '/root/.ssh/multistore_sync'
KNOWN_HOSTS = '/etc/vmimages-multistore/known_hosts'


def store_path(host):
    return '/srv/store-%s' % host


def central_tx(lab):
    return lab.link_bytes('central', 'eth2')[1]


def main():
    parser = benchlib.parser(__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--edges', type=int, default=8, help='number of edge hosts (default 8)')
    parser.add_argument('--size-mib', type=int, default=1024, help='image size in MiB (rounded up to 4 MiB blocks)')
    parser.add_argument('--rate', default='400mbit', help='tc tbf rate of every host\'s sync link (default 400mbit)')
    parser.add_argument('--lab-name', default='benchfan', help='name of the lab (made and destroyed by this run)')
    parser.add_argument('--mgmt-net', default='10.222.0.0/24', help="the lab's management subnet (its own)")
    parser.add_argument('--sync-net', default='10.223.0.0/24', help="the lab's image-sync subnet (eth2)")
    parser.add_argument('--keep-lab', action='store_true', help='leave the lab running for a look')
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise benchlib.BenchError('run as root: the lab needs network namespaces, mounts and systemd-nspawn')
    if args.quick:
        args.size_mib, args.edges = 64, min(args.edges, 3)
    os.environ['ANSIBLE_FORKS'] = str(max(args.edges + 1, 5))  # the parallel contender: every edge at once
    edges = ['edge%d' % number for number in range(1, args.edges + 1)]
    hosts = ['central'] + edges
    size = -(-args.size_mib * MIB // SLICE) * SLICE
    prefix = args.sync_net.split('/')[0].rsplit('.', 1)[0]
    sync_address = dict((host, '%s.%d/%s' % (prefix, 11 + index, args.sync_net.split('/')[1])) for index, host in enumerate(hosts))

    started = time.perf_counter()
    lab = Lab(args.lab_name, args.mgmt_net, args.sync_net, hosts)
    results = {'benchmark': 'lab_fanout', 'image_bytes': size, 'edges': args.edges, 'rate': args.rate, 'runs': {}}
    checks = []

    with lab.session(args.keep_lab):
        with benchlib.Scratch('labfan', args.workdir, args.keep) as scratch:
            with Timed() as lab_time:
                lab.create()
            benchlib.check_space(lab.info['state_dir'], int((args.edges + 2.5) * size) + 256 * MIB)
            print('lab %s (%d hosts) up in %.1f s; %s' % (lab.name, len(hosts), lab_time.wall, benchlib.load_note()))
            with open(lab.info['hosts']['central']['key'], 'rb') as handle:
                key = handle.read()
            known = ''.join('%s %s\n' % (host, public) for host in hosts for public in lab_host_keys(lab, host))
            for host in hosts:
                lab.run(host, ['ip', 'addr', 'replace', sync_address[host], 'dev', 'eth2'])
                os.makedirs(lab.path(host, os.path.dirname(KEY)), exist_ok=True)
                os.makedirs(lab.path(host, os.path.dirname(KNOWN_HOSTS)), exist_ok=True)
                with open(lab.path(host, KEY), 'wb') as handle:
                    os.fchmod(handle.fileno(), 0o600)
                    handle.write(key)
                with open(lab.path(host, KNOWN_HOSTS), 'w') as handle:
                    handle.write(known)
                shaped = lab._lab('shape', '--name', lab.name, '--host', host, '--net', 'sync', '--rate', args.rate)
                if shaped.returncode != 0:
                    raise benchlib.BenchError('lab.py shape failed on %s: %s' % (host, shaped.stderr.strip()[-2000:]))
            for host in hosts:
                os.makedirs(lab.path(host, WORK), exist_ok=True)
            benchlib.write_random_file(lab.path('central', WORK + '/disk.raw'), size)
            setup = [play(host, [{'name': 'store of %s' % host, 'vmimages.multistore.store': {
                'name': host, 'path': store_path(host), 'site_role': 'central' if host == 'central' else 'edge',
                'sync_network': sync_address[host]}}]) for host in hosts]
            setup += [play(host, [{'name': 'register %s on %s' % (other, host), 'vmimages.multistore.store': {
                'name': other, 'path': store_path(other), 'host': other, 'private_key': KEY, 'known_hosts': KNOWN_HOSTS}}
                for other in hosts if other != host]) for host in hosts]
            setup.append(play('central', [{'name': 'import', 'vmimages.multistore.image': {
                'name': 'disk', 'src': WORK + '/disk.raw', 'disk_format': 'raw', 'stores': ['central']}}]))
            setup_time, _out = run_playbook(lab, scratch.join('setup.json'), setup)
            print('image: %d MiB; sync links shaped to %s; setup (stores, registrations, import): %.1f s'
                  % (size // MIB, args.rate, setup_time.wall))

            drop = [play('central', [{'name': 'drop', 'vmimages.multistore.image': {'name': 'disk', 'stores': edges, 'state': 'absent'}}])]
            contenders = [
                ('one', [play('central', [{'name': 'copy', 'vmimages.multistore.image': {'name': 'disk', 'stores': ['central', 'edge1']}}])]),
                ('sequential', [play('central', [{'name': 'copy to %s' % edge, 'vmimages.multistore.image': {
                    'name': 'disk', 'stores': ['central', edge]}} for edge in edges])]),
                ('parallel', [{'name': 'every edge pulls', 'hosts': ','.join(edges), 'gather_facts': False,
                               'tasks': [{'name': 'copy', 'vmimages.multistore.image': {'name': 'disk', 'stores': ['{{ inventory_hostname }}']}}]}]),
                ('fan-out', [play('central', [{'name': 'copy', 'vmimages.multistore.image': {'name': 'disk', 'stores': hosts}}])]),
            ]
            for name, plays in contenders:
                run_playbook(lab, scratch.join('drop.json'), drop)
                before = central_tx(lab)
                timing, output = run_playbook(lab, scratch.join('%s.json' % name), plays)
                entry = {'process_s': round(timing.wall, 2), 'central_sent': central_tx(lab) - before}
                if name in ('one', 'fan-out'):
                    result = task_result(output, 'copy', 'central')
                    entry.update(task_s=round(task_seconds(output, 'copy'), 2), actions=result.get('actions'))
                results['runs'][name] = entry
                said = '   %s' % entry['actions'] if entry.get('actions') else ''
                print('  %-11s %7.2f s   central sent %6.0f MiB%s' % (name, timing.wall, entry['central_sent'] / MIB, said))

            verify = [play(edge, [{'name': 'export on %s' % edge, 'vmimages.multistore.image_export': {
                'name': 'disk', 'store': edge, 'dest': WORK + '/export.raw'}}]) for edge in (edges[0], edges[-1])]
            run_playbook(lab, scratch.join('verify.json'), verify)
            source = lab.run('central', ['sha512sum', WORK + '/disk.raw']).stdout.split()[0]
            for edge in (edges[0], edges[-1]):
                exported = lab.run(edge, ['sha512sum', WORK + '/export.raw']).stdout.split()[0]
                checks.append(('%s exports the image with the sha512 of the source' % edge, exported == source))
            fan = results['runs']['fan-out']
            checks.append(('the fan-out sent the image about once over central\'s link (< 1.5 x)', fan['central_sent'] < 1.5 * size))
            checks.append(('the fan-out went down the chain (store to store: ... %s from %s)' % (edges[-1], edges[-2] if len(edges) > 1 else 'central'),
                           any('%s from %s' % (edges[-1], edges[-2] if len(edges) > 1 else 'central') in action for action in fan.get('actions') or [])))

    one = results['runs']['one']['process_s']
    rows = [[name, '%.2f' % entry['process_s'], '%.2f' % (entry['process_s'] / one), '%.0f' % (entry['central_sent'] / MIB)]
            for name, entry in results['runs'].items()]
    print()
    benchlib.print_table(['contender', 'seconds', 'x one transfer', 'MiB sent by central'], rows)
    results['ratios'] = dict((name, round(entry['process_s'] / one, 2)) for name, entry in results['runs'].items())
    print('\nfan-out to %d edges: %.2f x one transfer (goal <= 1.5); sequential %.2f x, parallel %.2f x'
          % (args.edges, results['ratios']['fan-out'], results['ratios']['sequential'], results['ratios']['parallel']))
    for text, ok in checks:
        print('%s %s' % ('ok  ' if ok else 'FAIL', text))
    results['checks'] = dict(checks)
    results['run_s'] = round(time.perf_counter() - started, 1)
    print('run time %.1f s (lab creation %.1f s); after: %s' % (results['run_s'], lab_time.wall, benchlib.load_note()))
    benchlib.write_json(args.json, results)
    return 0 if all(ok for _text, ok in checks) else 1


if __name__ == '__main__':
    benchlib.run_main(main)
