#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Store-to-store copy between two lab hosts over the image-sync network, against scp and rsync.

Runs as root. A 2-host nspawn lab (tests/lab/lab.py: central, edge1) with both hosts addressed on the
sync network (eth2). Everything is driven with generated playbooks run by ansible-playbook against the
lab's inventory: central declares the local file store `central`; edge1 declares its local store
`edge1` and registers `central` as a remote store (host, private_key, known_hosts). An image of distinct
random 4 MiB blocks is imported into `central` (not timed). Timed, in the same run:
  full copy    `vmimages.multistore.image` on edge1 with stores: [edge1] (pulls from central over SSH via
               the sync address) / scp of the source file from central, run on edge1, plus sync
  incremental  v2 = v1 with a share of its 4 MiB blocks rewritten, imported into central (not timed);
               the image module copying v2 into edge1 (which holds v1) / rsync -e ssh (delta algorithm)
               of v2 onto edge1's copy of v1, and the same with --inplace; bytes on the wire from eth2's
               counters
Checks: edge1's v1 and v2 have the sha512 of central's source files (image_info and image_export +
sha512sum). The lab is destroyed at the end, also on error.
Run as root with the venv's python: .venv/bin/python bench/lab_copy.py [--quick] [--size-mib N]
"""

from __future__ import absolute_import, division, print_function

import contextlib
import datetime
import ipaddress
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

import benchlib
from benchlib import MIB, SLICE, Timed, gbps

LAB_PY = os.path.join(benchlib.REPO, 'tests', 'lab', 'lab.py')
WORK = '/var/tmp/benchcopy'          # inside the lab hosts
STORE_PATH = '/cloud_bs'
SYNC_KEY = '/root/.ssh/multistore_sync'
KNOWN_HOSTS = '/etc/vmimages-multistore/known_hosts'
STORE_HOST = 'central'               # the `host` of the remote store: central's name in the lab's known_hosts and /etc/hosts
HOSTS = ('central', 'edge1')


# ---------------------------------------------------------------- the lab

class Lab:
    """tests/lab/lab.py driven as a subprocess (create / exec / destroy)."""

    def __init__(self, name, mgmt_net, sync_net, hosts=HOSTS):
        self.name = name
        self.mgmt_net = mgmt_net
        self.sync_net = sync_net
        self.hosts = list(hosts)
        self.info = None

    def _lab(self, *args, **kwargs):
        return subprocess.run([sys.executable, LAB_PY] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, check=False, **kwargs)

    def create(self):
        proc = self._lab('create', '--name', self.name, '--hosts', ','.join(self.hosts), '--mgmt-net', self.mgmt_net,
                         '--sync-net', self.sync_net, timeout=1800)
        if proc.returncode != 0:
            raise benchlib.BenchError('lab.py create failed (rc %d):\n%s' % (proc.returncode, proc.stderr.strip()[-3000:]))
        self.info = json.loads(proc.stdout)
        return self.info

    def destroy(self):
        proc = self._lab('destroy', '--name', self.name, timeout=300)
        return proc.returncode, (proc.stderr or '').strip()

    @contextlib.contextmanager
    def session(self, keep=False):
        """Around a benchmark: a lab of this name that an interrupted run left is removed first, and the lab is
        destroyed at the end, also on error or SIGTERM/SIGHUP (unless ``keep``: then it says how to destroy it)."""
        def on_signal(signum, _frame):
            raise KeyboardInterrupt('signal %d' % signum)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGHUP, on_signal)
        self.destroy()
        try:
            yield self
        finally:
            if keep and self.info:
                print('lab kept: %s; destroy with: %s %s destroy --name %s' % (self.info['state_dir'], sys.executable, LAB_PY, self.name))
            else:
                rc, err = self.destroy()
                if rc != 0:
                    print('warning: lab.py destroy --name %s failed (rc %d): %s' % (self.name, rc, err[-2000:]), file=sys.stderr)

    def root(self, host):
        """The host's root file system as seen from this machine (its overlay)."""
        return self.info['hosts'][host]['root']

    def path(self, host, inside):
        return os.path.join(self.root(host), inside.lstrip('/'))

    def netns(self, host):
        return self.info['hosts'][host]['netns']

    def leader(self, host):
        """PID of the host's init (lab.json): its /proc/PID/net/dev shows the host's interfaces."""
        with open(os.path.join(self.info['state_dir'], 'lab.json')) as handle:
            return json.load(handle)['hosts'][host]['leader']

    def exec_argv(self, host, command):
        return [sys.executable, LAB_PY, 'exec', '--name', self.name, '--host', host, '--'] + list(command)

    def run(self, host, command, check=True):
        proc = subprocess.run(self.exec_argv(host, command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, check=False)
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip()[-2000:]
            raise benchlib.BenchError('on %s: %s failed (rc %d): %s' % (host, ' '.join(command), proc.returncode, detail))
        return proc

    def shell(self, host, script, check=True):
        return self.run(host, ['/bin/sh', '-c', script], check=check)

    def link_bytes(self, host, ifname):
        """(rx, tx) bytes of an interface in the host's network namespace."""
        out = subprocess.run(['ip', '-n', self.netns(host), '-s', '-j', 'link', 'show', ifname], stdout=subprocess.PIPE,
                             universal_newlines=True, check=True).stdout
        stats = json.loads(out)[0]['stats64']
        return stats['rx']['bytes'], stats['tx']['bytes']


class Wire:
    """Bytes through interfaces of edge1 during a block (both directions)."""

    def __init__(self, lab, host='edge1', interfaces=('eth2', 'eth0')):
        self.lab = lab
        self.host = host
        self.interfaces = interfaces
        self.bytes = {}

    def __enter__(self):
        self._before = dict((ifname, self.lab.link_bytes(self.host, ifname)) for ifname in self.interfaces)
        return self

    def __exit__(self, *exc):
        for ifname in self.interfaces:
            after = self.lab.link_bytes(self.host, ifname)
            before = self._before[ifname]
            self.bytes[ifname] = {'rx': after[0] - before[0], 'tx': after[1] - before[1],
                                  'total': after[0] - before[0] + after[1] - before[1]}
        return False


# ---------------------------------------------------------------- CPU of the processes in the lab hosts

def _stat_fields(pid, tid=None):
    path = '/proc/%d/stat' % pid if tid is None else '/proc/%d/task/%d/stat' % (pid, tid)
    with open(path) as handle:
        text = handle.read()
    comm = text[text.index('(') + 1:text.rindex(')')]
    return comm, text.rsplit(')', 1)[1].split()


def _classify(comm, cmdline):
    if comm.startswith('python'):
        if 'AnsiballZ_' in cmdline:
            return 'module (python3)'
        if 'base64' in cmdline:
            return 'store agent (python3)'
        return 'python3 (other)'
    if comm == 'ssh':
        return 'ssh client'
    if comm.startswith('sshd'):
        return 'sshd'
    if comm in ('scp', 'sftp-server', 'rsync', 'sync', 'sha512sum'):
        return comm
    if comm == 'nsenter':
        return 'lab.py exec (nsenter)'
    return 'other'


def machine_jiffies():
    """(busy, total, irq + softirq) jiffies of all CPUs of this machine (/proc/stat)."""
    with open('/proc/stat') as handle:
        fields = [int(value) for value in handle.readline().split()[1:]] + [0] * 8
    idle = fields[3] + fields[4]          # idle + iowait
    total = sum(fields[:8])               # user nice system idle iowait irq softirq steal (guest is in user)
    return total - idle, total, fields[5] + fields[6]


def dev_bytes(leader, ifname):
    """rx + tx bytes of ``ifname`` in the network namespace of process ``leader``."""
    with open('/proc/%d/net/dev' % leader) as handle:
        for line in handle:
            name, sep, rest = line.partition(':')
            if sep and name.strip() == ifname:
                fields = rest.split()
                return int(fields[0]) + int(fields[8])
    raise benchlib.BenchError('no interface %s in /proc/%d/net/dev' % (ifname, leader))


class LabCpu:
    """CPU seconds of every process in the lab hosts' network namespaces, sampled from /proc.

    Processes seen at the first sample count from then on, later ones from their start. Threads of the
    module and the store agent are kept apart, to see which stream of the pipeline is the bottleneck.
    A process that exits loses at most its last interval. The bytes through edge1's eth2 are sampled
    too: ``wire_window()`` is the time the data was actually flowing (from 1 % to 99 % of the bytes).
    """

    THREADED = ('module (python3)', 'store agent (python3)')

    def __init__(self, lab, interval=0.1):
        self.interval = interval
        self.inodes = dict((os.stat('/run/netns/%s' % lab.netns(host)).st_ino, host) for host in HOSTS)
        self.leader = lab.leader('edge1')
        self.me = os.getpid()
        self.wire = []       # (seconds since start, eth2 bytes of edge1)
        self.meta = {}       # (pid, starttime) -> None | [host, label, first, last, {tid: [first, last]}]
        self._stop = threading.Event()
        self._thread = None
        self.wall = 0.0

    def _machine_label(self, pid, fields):
        """Processes outside the lab hosts: this benchmark and its children, kernel threads, other work."""
        if pid == 2 or fields[1] == '2':
            return 'kernel threads'
        parent, hops = pid, 0
        while parent > 1 and hops < 64:
            if parent == self.me:
                return 'this benchmark (ansible-playbook, ssh, lab.py)'
            try:
                parent = int(_stat_fields(parent)[1][1])
            except (OSError, ValueError, IndexError):
                break
            hops += 1
        return 'other work on the machine'

    def _host_of(self, pid):
        try:
            link = os.readlink('/proc/%d/ns/net' % pid)
        except OSError:
            return None
        try:
            return self.inodes.get(int(link.split('[', 1)[1].rstrip(']')))
        except (IndexError, ValueError):
            return None

    def _scan(self, initial):
        for name in os.listdir('/proc'):
            if not name.isdigit():
                continue
            pid = int(name)
            try:
                comm, fields = _stat_fields(pid)
            except (OSError, ValueError):
                continue
            key = (pid, fields[19])
            ticks = int(fields[11]) + int(fields[12])
            entry = self.meta.get(key, False)
            if entry is False:
                host = self._host_of(pid)
                if host is None:
                    host, label = 'machine', self._machine_label(pid, fields)
                    self.meta[key] = [host, label, ticks if initial else 0, ticks, {}]
                    continue
                try:
                    with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                        cmdline = handle.read().replace(b'\0', b' ').decode('utf-8', 'replace')
                except OSError:
                    cmdline = ''
                entry = self.meta[key] = [host, _classify(comm, cmdline), ticks if initial else 0, ticks, {}]
            entry[3] = ticks
            if entry[0] == 'machine':
                continue
            if entry[1] in self.THREADED:
                try:
                    tids = [int(tid) for tid in os.listdir('/proc/%d/task' % pid)]
                except OSError:
                    tids = []
                for tid in tids:
                    try:
                        _comm, tfields = _stat_fields(pid, tid)
                    except (OSError, ValueError):
                        continue
                    tticks = int(tfields[11]) + int(tfields[12])
                    entry[4].setdefault(tid, [tticks if initial else 0, tticks])[1] = tticks

    def _sample_wire(self):
        self.wire.append((time.perf_counter() - self._start, dev_bytes(self.leader, 'eth2')))

    def _loop(self):
        while not self._stop.wait(self.interval):
            self._sample_wire()
            self._scan(False)

    def __enter__(self):
        self._scan(True)
        self._jiffies = machine_jiffies()
        self._start = time.perf_counter()
        self._sample_wire()
        self._thread = threading.Thread(target=self._loop, name='bench-labcpu', daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample_wire()
        self._scan(False)
        self.wall = time.perf_counter() - self._start
        busy, total, irq = machine_jiffies()
        # busy cores of the whole machine: lab hosts, the control node, kernel (softirq: veth, bridge, TCP) and other work
        self.machine_cores = (busy - self._jiffies[0]) / float(benchlib.CLK_TCK) / self.wall
        self.machine_share = (busy - self._jiffies[0]) / float(max(total - self._jiffies[1], 1))
        self.irq_cores = (irq - self._jiffies[2]) / float(benchlib.CLK_TCK) / self.wall
        return False

    def wire_window(self):
        """(seconds, bytes) between 1 % and 99 % of the bytes through eth2, to the sampling interval."""
        first, total = self.wire[0][1], self.wire[-1][1] - self.wire[0][1]
        if total <= 0:
            return None, 0
        start = next(t for t, count in self.wire if count - first >= 0.01 * total)
        end = next(t for t, count in self.wire if count - first >= 0.99 * total)
        return max(end - start, self.interval), 0.98 * total

    def by_process(self):
        """{(host, label): cpu seconds}."""
        totals = {}
        for entry in self.meta.values():
            if entry:
                key = (entry[0], entry[1])
                totals[key] = totals.get(key, 0.0) + (entry[3] - entry[2]) / float(benchlib.CLK_TCK)
        return totals

    def by_host(self):
        totals = dict((host, 0.0) for host in HOSTS + ('machine',))
        for (host, _label), cpu in self.by_process().items():
            totals[host] += cpu
        return totals

    def threads(self, label):
        """CPU seconds of the busiest threads of the processes with ``label``, busiest first."""
        rows = []
        for entry in self.meta.values():
            if entry and entry[1] == label:
                rows += [(last - first) / float(benchlib.CLK_TCK) for first, last in entry[4].values()]
        return sorted([cpu for cpu in rows if cpu > 0], reverse=True)

    def as_dict(self):
        window, moved = self.wire_window()
        return {'wall_s': round(self.wall, 3), 'machine_busy_cores': round(self.machine_cores, 2),
                'machine_irq_softirq_cores': round(self.irq_cores, 2),
                'machine_busy_share': round(self.machine_share, 3), 'wire_window_s': round(window, 2) if window else None,
                'wire_window_gbps': round(moved / 1e9 / window, 3) if window else None,
                'processes': dict(('%s: %s' % key, round(cpu, 2)) for key, cpu in sorted(self.by_process().items()) if cpu > 0),
                'hosts': dict((host, round(cpu, 2)) for host, cpu in self.by_host().items()),
                'module_threads': [round(cpu, 2) for cpu in self.threads('module (python3)')],
                'agent_threads': [round(cpu, 2) for cpu in self.threads('store agent (python3)')]}


# ---------------------------------------------------------------- Ansible against the lab

def run_playbook(lab, path, plays):
    """ansible-playbook against the lab inventory; the whole process is timed. Returns (Timed, output)."""
    benchlib.write_playbook(path, plays)
    binary = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    if not os.path.exists(binary):
        binary = shutil.which('ansible-playbook') or 'ansible-playbook'
    with Timed() as timing:
        proc = subprocess.run([binary, '-i', lab.info['inventory'], path], cwd=benchlib.REPO, env=benchlib.ansible_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    try:
        output = json.loads(proc.stdout)
    except ValueError:
        output = None
    if proc.returncode != 0:
        detail = failures(output) or (proc.stderr or proc.stdout)[-3000:]
        raise benchlib.BenchError('ansible-playbook %s failed (rc %d):\n%s' % (path, proc.returncode, detail))
    return timing, output


def failures(output):
    lines = []
    for play in (output or {}).get('plays', []):
        for task in play.get('tasks', []):
            for host, result in task.get('hosts', {}).items():
                if result.get('failed') or result.get('unreachable'):
                    lines.append('%s on %s: %s' % (task['task'].get('name'), host, result.get('msg')))
    return '\n'.join(lines)


def task_entry(output, task_name):
    for play in (output or {}).get('plays', []):
        for task in play.get('tasks', []):
            if task.get('task', {}).get('name') == task_name:
                return task
    raise benchlib.BenchError('task %r is not in the playbook output' % task_name)


def task_result(output, task_name, host):
    return task_entry(output, task_name)['hosts'][host]


def task_seconds(output, task_name):
    """The task's duration from the JSON callback: module transfer and run, without ansible-playbook's start-up."""
    duration = task_entry(output, task_name)['task']['duration']
    start, end = [datetime.datetime.strptime(duration[key], '%Y-%m-%dT%H:%M:%S.%fZ') for key in ('start', 'end')]
    return (end - start).total_seconds()


def play(host, tasks, name=None):
    return {'name': name or 'bench on %s' % host, 'hosts': host, 'gather_facts': False, 'tasks': tasks}


# ---------------------------------------------------------------- helpers

def slice_files(store_root):
    for dirpath, _dirs, files in os.walk(os.path.join(store_root, 'slices')):
        for name in files:
            if not name.startswith('.'):
                yield os.path.join(dirpath, name)


def timed_shell(lab, host, command, dest):
    """Run ``command`` then ``sync dest`` on ``host``; (Timed, transfer s, sync s, stdout)."""
    script = ('t0=$(date +%%s%%N); %s; rc=$?; t1=$(date +%%s%%N); [ $rc -eq 0 ] || exit $rc; sync %s; '
              't2=$(date +%%s%%N); echo "@@times $t0 $t1 $t2"') % (command, shlex.quote(dest))
    with Timed() as timing:
        proc = lab.shell(host, script)
    marks = [line for line in proc.stdout.splitlines() if line.startswith('@@times ')]
    t0, t1, t2 = [int(value) for value in marks[-1].split()[1:]]
    return timing, (t1 - t0) / 1e9, (t2 - t1) / 1e9, proc.stdout


def rsync_stats(text):
    stats = {}
    for line in text.splitlines():
        if ':' not in line:
            continue
        key, _sep, value = line.partition(':')
        number = value.strip().split(' ')[0].replace(',', '')
        if key.strip() in ('Literal data', 'Matched data', 'Total bytes sent', 'Total bytes received') and number.isdigit():
            stats[key.strip()] = int(number)
    return stats


def fmt_s(seconds):
    return '%.2f' % seconds if seconds is not None else 'n/a'


def mb(count):
    return '%.1f' % (count / 1e6)


def cpu_rows(samples):
    """Rows (run, host: process, CPU s, cores) for every run's top processes."""
    rows = []
    for run_name, sampler in samples:
        processes = sorted(sampler.by_process().items(), key=lambda item: -item[1])
        hosts = sampler.by_host()
        lab_cpu = hosts['central'] + hosts['edge1']
        for in_lab in (True, False):
            for (host, label), cpu in processes:
                if (host != 'machine') == in_lab and cpu >= 0.05:
                    rows.append([run_name, '%s: %s' % (host, label), '%.2f' % cpu, '%.2f' % (cpu / sampler.wall)])
            if in_lab:
                rows.append([run_name, 'both lab hosts, processes', '%.2f' % lab_cpu, '%.2f' % (lab_cpu / sampler.wall)])
        rows.append([run_name, 'machine: irq + softirq (/proc/stat: veth, bridge, TCP)', '%.2f' % (sampler.irq_cores * sampler.wall),
                     '%.2f' % sampler.irq_cores])
        rows.append([run_name, 'whole machine busy (/proc/stat)', '%.2f' % (sampler.machine_cores * sampler.wall),
                     '%.2f of %d' % (sampler.machine_cores, os.cpu_count() or 0)])
        for label, short in (('module (python3)', 'module'), ('store agent (python3)', 'agent')):
            threads = sampler.threads(label)
            if threads:
                rows.append([run_name, '  %s threads (busiest first)' % short, ' '.join('%.2f' % cpu for cpu in threads[:4]),
                             ' '.join('%.2f' % (cpu / sampler.wall) for cpu in threads[:4])])
    return rows


# ---------------------------------------------------------------- main

def main():
    parser = benchlib.parser(__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--size-mib', type=int, default=2048, help='image size in MiB (rounded up to 4 MiB blocks)')
    parser.add_argument('--change-percent', type=float, default=5.0, help='share of the 4 MiB blocks rewritten in v2')
    parser.add_argument('--seed', type=int, default=1, help='seed for picking the rewritten blocks')
    parser.add_argument('--repeat', type=int, help='rounds of the full and the incremental copy, the order alternates '
                                                   '(default 2, 1 with --quick)')
    parser.add_argument('--lab-name', default='benchcopy', help='name of the lab (made and destroyed by this run)')
    parser.add_argument('--mgmt-net', default='10.221.0.0/24',
                        help="the lab's management subnet: its own, so that the run does not collide with the dev lab, "
                             'the lab test or molecule')
    parser.add_argument('--sync-net', default='10.203.0.0/24', help="the lab's image-sync subnet (eth2)")
    parser.add_argument('--keep-lab', action='store_true', help='leave the lab running for a look (destroy it with '
                                                                'tests/lab/lab.py destroy --name NAME)')
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise benchlib.BenchError('run as root: the lab needs network namespaces, mounts and systemd-nspawn')
    if args.quick:
        args.size_mib = 64
    if args.repeat is None:
        args.repeat = 1 if args.quick else 2
    blocks = -(-args.size_mib * MIB // SLICE)
    size = blocks * SLICE
    changed_blocks = max(1, int(round(blocks * args.change_percent / 100.0)))
    changed_bytes = changed_blocks * SLICE
    sync_net = ipaddress.ip_network(args.sync_net)
    sync_address = dict((host, '%s/%d' % (sync_net.network_address + 11 + i, sync_net.prefixlen)) for i, host in enumerate(HOSTS))
    central_sync = sync_address['central'].split('/')[0]

    started = time.perf_counter()
    lab = Lab(args.lab_name, args.mgmt_net, args.sync_net)
    caches = benchlib.Caches(args.cold)
    results = {'benchmark': 'lab_copy', 'image_bytes': size, 'changed_blocks': changed_blocks, 'changed_bytes': changed_bytes,
               'cache': None, 'full': [], 'incremental': [], 'sync_addresses': sync_address}
    checks = []

    with lab.session(args.keep_lab):
        with benchlib.Scratch('labcopy', args.workdir, args.keep) as scratch:
            with Timed() as lab_time:
                lab.create()
            state_dir = lab.info['state_dir']
            # at most: central v1 + v2 + its store, edge1 its store + the v1 basis + the rsync copy (or two exports)
            benchlib.check_space(state_dir, int(7.3 * size) + 256 * MIB)
            print('lab %s up in %.1f s (state %s); %s' % (lab.name, lab_time.wall, state_dir, benchlib.load_note()))

            # -- sync network addresses (the store_host role's job in production)
            for host in HOSTS:
                lab.run(host, ['ip', 'addr', 'replace', sync_address[host], 'dev', 'eth2'])
            lab.run('edge1', ['ping', '-c', '1', '-W', '2', central_sync])

            # -- the image v1 on central (written through central's overlay from here)
            for host in HOSTS:
                os.makedirs(lab.path(host, WORK), exist_ok=True)
            v1 = lab.path('central', WORK + '/v1.raw')
            benchlib.write_random_file(v1, size)
            print('image: %d MiB = %d distinct random 4 MiB blocks; v2 rewrites %d of them (%.1f%%, %.1f MB)'
                  % (size // MIB, blocks, changed_blocks, args.change_percent, changed_bytes / 1e6))

            # -- stores and the v1 import (not timed)
            known_hosts = ''.join('%s %s\n' % (STORE_HOST, key) for key in lab_host_keys(lab, 'central'))
            lab_key = lab.info['hosts']['edge1']['key']
            setup = [
                play('central', [
                    {'name': 'local store central', 'vmimages.multistore.store': {
                        'name': 'central', 'path': STORE_PATH, 'site_role': 'central', 'sync_network': sync_address['central']}},
                    {'name': 'import v1', 'vmimages.multistore.image': {
                        'name': 'v1', 'src': WORK + '/v1.raw', 'disk_format': 'raw', 'stores': ['central']}}]),
                play('edge1', [
                    # For the benchmark the lab's own key (authorized on every lab host) is the store-to-store key;
                    # in production it is a dedicated key whose authorized_keys entry forces the store agent.
                    {'name': 'store-to-store key', 'ansible.builtin.copy': {'src': lab_key, 'dest': SYNC_KEY, 'mode': '0600'}},
                    {'name': 'known_hosts dir', 'ansible.builtin.file': {'path': os.path.dirname(KNOWN_HOSTS), 'state': 'directory'}},
                    {'name': 'known_hosts of central', 'ansible.builtin.copy': {'content': known_hosts, 'dest': KNOWN_HOSTS, 'mode': '0644'}},
                    {'name': 'local store edge1', 'vmimages.multistore.store': {
                        'name': 'edge1', 'path': STORE_PATH, 'site_role': 'edge', 'sync_network': sync_address['edge1']}},
                    {'name': 'remote store central', 'vmimages.multistore.store': {
                        'name': 'central', 'path': STORE_PATH, 'host': STORE_HOST, 'private_key': SYNC_KEY,
                        'known_hosts': KNOWN_HOSTS}}]),
            ]
            setup_time, _out = run_playbook(lab, scratch.join('setup.json'), setup)
            print('setup (stores, import of v1 into central): %.1f s' % setup_time.wall)
            central_slices = lab.path('central', STORE_PATH)

            ssh_opts = '-i %s -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile=%s -o HostKeyAlias=%s' % (
                SYNC_KEY, KNOWN_HOSTS, STORE_HOST)
            scp_variants = [('scp', ''), ('scp -c aes128-gcm', '-c aes128-gcm@openssh.com ')]
            copy_path = WORK + '/copy.raw'

            # -- full copy
            copy_play = [play('edge1', [{'name': 'copy v1', 'vmimages.multistore.image': {'name': 'v1', 'stores': ['edge1']}}])]
            drop_play = [play('edge1', [{'name': 'drop v1', 'vmimages.multistore.image': {
                'name': 'v1', 'stores': ['edge1'], 'state': 'absent'}}])]
            for round_no in range(1, args.repeat + 1):
                order = ['image'] + [name for name, _opt in scp_variants]
                if round_no % 2 == 0:
                    order.reverse()
                for contender in order:
                    entry = {'round': round_no, 'contender': contender}
                    if contender == 'image':
                        if round_no > 1:
                            run_playbook(lab, scratch.join('drop.json'), drop_play)
                        caches.before_run(*slice_files(central_slices))
                        with Wire(lab) as wire, LabCpu(lab) as cpu:
                            timing, output = run_playbook(lab, scratch.join('copy-v1.json'), copy_play)
                        result = task_result(output, 'copy v1', 'edge1')
                        entry.update(process_s=timing.wall, task_s=task_seconds(output, 'copy v1'),
                                     actions=result.get('actions'), changed=result.get('changed'),
                                     control_cpu_s=round(timing.cpu, 2))
                    else:
                        lab.run('edge1', ['rm', '-f', copy_path])
                        caches.before_run(v1)
                        option = dict(scp_variants)[contender]
                        command = 'scp -q %s%s root@%s:%s %s' % (option, ssh_opts, central_sync, WORK + '/v1.raw', copy_path)
                        with Wire(lab) as wire, LabCpu(lab) as cpu:
                            timing, transfer, sync_s, _stdout = timed_shell(lab, 'edge1', command, copy_path)
                        entry.update(process_s=timing.wall, transfer_s=transfer, sync_s=sync_s, command=command)
                    entry['wire'] = wire.bytes
                    entry['cpu'] = cpu.as_dict()
                    entry['_sampler'] = cpu
                    results['full'].append(entry)
                    print('  full copy round %d: %-18s %6.2f s' % (round_no, contender, entry['process_s']))

            # -- v2 on central: a copy of v1 with changed_blocks blocks rewritten, imported into central (not timed)
            v2 = lab.path('central', WORK + '/v2.raw')
            shutil.copyfile(v1, v2)
            rewritten = sorted(random.Random(args.seed).sample(range(blocks), changed_blocks))
            fd = os.open(v2, os.O_WRONLY)
            try:
                for index in rewritten:
                    # os.urandom, not BlockMaker: its blocks are windows of one 64 MiB pool, in which rsync's
                    # rolling checksum would find most of a "new" block in other blocks of v1.
                    benchlib.write_all(fd, [os.urandom(SLICE)], index * SLICE)
                os.fsync(fd)
            finally:
                os.close(fd)
            run_playbook(lab, scratch.join('import-v2.json'), [play('central', [{'name': 'import v2', 'vmimages.multistore.image': {
                'name': 'v2', 'src': WORK + '/v2.raw', 'disk_format': 'raw', 'stores': ['central']}}])])
            # edge1 keeps v1 as a file (the last scp) as the basis of the rsync runs: each run gets a fresh copy of it,
            # with an old mtime as at a real edge (with v2's size and mtime second, rsync's quick check skips the file)
            basis = lab.path('edge1', WORK + '/v1-basis.raw')
            os.rename(lab.path('edge1', copy_path), basis)
            copy_v2 = [play('edge1', [{'name': 'copy v2', 'vmimages.multistore.image': {'name': 'v2', 'stores': ['edge1']}}])]
            drop_v2 = [play('edge1', [{'name': 'drop v2', 'vmimages.multistore.image': {
                'name': 'v2', 'stores': ['edge1'], 'state': 'absent'}}])]
            incremental = results['incremental'] = []
            moved_slices = []
            for round_no in range(1, args.repeat + 1):
                order = ['image', 'rsync', 'rsync --inplace']
                if round_no % 2 == 0:
                    order.reverse()
                for contender in order:
                    entry = {'round': round_no, 'contender': contender}
                    if contender == 'image':
                        if round_no > 1:
                            run_playbook(lab, scratch.join('drop-v2.json'), drop_v2)
                        before = benchlib.slice_usage(lab.path('edge1', STORE_PATH))[0]
                        caches.before_run(*slice_files(central_slices))
                        with Wire(lab) as wire, LabCpu(lab) as cpu:
                            timing, output = run_playbook(lab, scratch.join('copy-v2.json'), copy_v2)
                        moved_slices.append(benchlib.slice_usage(lab.path('edge1', STORE_PATH))[0] - before)
                        result = task_result(output, 'copy v2', 'edge1')
                        entry.update(process_s=timing.wall, task_s=task_seconds(output, 'copy v2'), actions=result.get('actions'),
                                     control_cpu_s=round(timing.cpu, 2))
                    else:
                        dest = lab.path('edge1', copy_path)
                        shutil.copyfile(basis, dest)
                        day_ago = time.time() - 86400
                        os.utime(dest, (day_ago, day_ago))
                        os.sync()
                        caches.before_run(v2, dest)
                        option = '--inplace ' if contender == 'rsync --inplace' else ''
                        command = 'rsync --stats %s-e %s root@%s:%s %s' % (
                            option, shlex.quote('ssh ' + ssh_opts), central_sync, WORK + '/v2.raw', copy_path)
                        with Wire(lab) as wire, LabCpu(lab) as cpu:
                            timing, transfer, sync_s, stdout = timed_shell(lab, 'edge1', command, copy_path)
                        entry.update(process_s=timing.wall, transfer_s=transfer, sync_s=sync_s, rsync_stats=rsync_stats(stdout),
                                     command=command)
                    entry['wire'] = wire.bytes
                    entry['cpu'] = cpu.as_dict()
                    entry['_sampler'] = cpu
                    incremental.append(entry)
                    print('  incremental round %d: %-18s %6.2f s' % (round_no, contender, entry['process_s']))
                    if contender == 'image':
                        # The same task again: nothing to move; what is left is the fixed cost of a run.
                        with Wire(lab) as wire:
                            timing, output = run_playbook(lab, scratch.join('noop-v2.json'), copy_v2)
                        result = task_result(output, 'copy v2', 'edge1')
                        incremental.append({'round': round_no, 'contender': 'image no-op', 'process_s': timing.wall,
                                            'task_s': task_seconds(output, 'copy v2'), 'changed': result.get('changed'),
                                            'wire': wire.bytes})
                        print('  incremental round %d: %-18s %6.2f s' % (round_no, 'image no-op', timing.wall))

            # -- correctness: image_info on both hosts, export on edge1, sha512sum on both ends
            hashing = subprocess.Popen(lab.exec_argv('central', ['sha512sum', WORK + '/v1.raw', WORK + '/v2.raw']),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
            lab.run('edge1', ['rm', '-f', copy_path, WORK + '/v1-basis.raw'])
            verify = [
                play('central', [{'name': 'info central', 'vmimages.multistore.image_info': {'store': 'central'},
                                  'register': 'info'}]),
                play('edge1', [
                    {'name': 'info edge1', 'vmimages.multistore.image_info': {'store': 'edge1'}},
                    {'name': 'export v1', 'vmimages.multistore.image_export': {
                        'name': 'v1', 'store': 'edge1', 'dest': WORK + '/export-v1.raw'}},
                    {'name': 'export v2', 'vmimages.multistore.image_export': {
                        'name': 'v2', 'store': 'edge1', 'dest': WORK + '/export-v2.raw'}}]),
            ]
            _timing, output = run_playbook(lab, scratch.join('verify.json'), verify)
            export_s = [task_seconds(output, 'export v1'), task_seconds(output, 'export v2')]
            exported = lab.run('edge1', ['sha512sum', WORK + '/export-v1.raw', WORK + '/export-v2.raw']).stdout.split()
            source_out, source_err = hashing.communicate()
            if hashing.returncode != 0:
                raise benchlib.BenchError('sha512sum on central failed: %s' % source_err.strip())
            source = source_out.split()
            source_sha = {'v1': source[0], 'v2': source[2]}
            export_sha = {'v1': exported[0], 'v2': exported[2]}
            infos = {}
            for host, task in (('central', 'info central'), ('edge1', 'info edge1')):
                infos[host] = dict((image['name'], image) for image in task_result(output, task, host).get('images', []))
            for name in ('v1', 'v2'):
                edge = infos['edge1'].get(name) or {}
                central = infos['central'].get(name) or {}
                checks.append(('%s: edge1 image_info os_hash_value = sha512sum at central' % name,
                               edge.get('os_hash_value') == source_sha[name]))
                checks.append(('%s: central image_info os_hash_value = sha512sum at central' % name,
                               central.get('os_hash_value') == source_sha[name]))
                checks.append(('%s: image_export on edge1 + sha512sum = sha512sum at central' % name,
                               export_sha[name] == source_sha[name]))
                checks.append(('%s: active in edge1 and central (edge1 image_info stores)' % name,
                               sorted(edge.get('stores') or []) == ['central', 'edge1']))
            image_full = [entry for entry in results['full'] if entry['contender'] == 'image']
            checks.append(('full copy went over the sync network (eth2 >= image size, every round)',
                           all(entry['wire']['eth2']['total'] >= size for entry in image_full)))
            checks.append(('incremental copy stored only the new slices (edge1: +%s slices, %d rewritten blocks)'
                           % ('/'.join(str(count) for count in moved_slices), changed_blocks),
                           all(count == changed_blocks for count in moved_slices)))
            noops = [entry for entry in incremental if entry['contender'] == 'image no-op']
            checks.append(('the re-run of the incremental copy is a no-op (changed: false)',
                           all(entry['changed'] is False for entry in noops)))
            results['checks'] = dict(checks)
            results['sha512'] = {'source': source_sha, 'export_edge1': export_sha}
            results['export_edge1_s'] = export_s

    report(args, results, checks, size, changed_bytes, caches)
    elapsed = time.perf_counter() - started
    results['run_s'] = round(elapsed, 1)
    print('run time %.1f s (lab creation %.1f s); after: %s' % (elapsed, lab_time.wall, benchlib.load_note()))
    results['cache'] = caches.describe()
    for entry in results['full'] + results['incremental']:
        entry.pop('_sampler', None)
    benchlib.write_json(args.json, results)
    return 0 if all(ok for _text, ok in checks) else 1


def lab_host_keys(lab, host):
    """central's public host keys, as the lab knows them (the keys are made before the host boots)."""
    keys = []
    known = lab.info['hosts'][host]['known_hosts']
    with open(known) as handle:
        for line in handle:
            fields = line.split()
            if len(fields) >= 3 and host in fields[0].split(','):
                keys.append('%s %s' % (fields[1], fields[2]))
    if not keys:
        raise benchlib.BenchError('no host key of %s in %s' % (host, known))
    return keys


def best(entries, contender, key='process_s'):
    values = [entry[key] for entry in entries if entry['contender'] == contender]
    return min(values) if values else None


def best_entry(entries, contender):
    chosen = [entry for entry in entries if entry['contender'] == contender]
    return min(chosen, key=lambda entry: entry['process_s']) if chosen else None


def data_columns(entry):
    """The time the data was flowing through eth2 (1 % to 99 % of the bytes) and the rate then."""
    window = entry['cpu'].get('wire_window_s')
    rate = entry['cpu'].get('wire_window_gbps')
    return ('%.1f' % window if window else 'n/a', '%.3f' % rate if rate else 'n/a')


def report(args, results, checks, size, changed_bytes, caches):
    full = results['full']
    inc = results['incremental']
    print()
    print('full copy of %d MiB central -> edge1 over the sync network (%s; best of %d)'
          % (size // MIB, caches.describe().split(':')[0], args.repeat))
    rows = []
    for contender in ('image', 'scp', 'scp -c aes128-gcm'):
        entry = best_entry(full, contender)
        eth2 = mb(entry['wire']['eth2']['total'])
        eth0 = mb(entry['wire']['eth0']['total'])
        data_s, data_rate = data_columns(entry)
        if contender == 'image':
            rows.append(['image module: ansible-playbook process', fmt_s(entry['process_s']), '%.3f' % gbps(size, entry['process_s']),
                         data_s, data_rate, eth2, eth0, 'control node CPU %.1f s' % entry['control_cpu_s']])
            task_s = best(full, 'image', 'task_s')
            rows.append(['image module: task (JSON callback)', fmt_s(task_s), '%.3f' % gbps(size, task_s),
                         '', '', '', '', 'module transfer + run, without ansible-playbook start-up'])
        else:
            rows.append(['%s + sync (run on edge1)' % contender, fmt_s(entry['process_s']), '%.3f' % gbps(size, entry['process_s']),
                         data_s, data_rate, eth2, eth0, 'transfer %.2f s, sync %.2f s' % (entry['transfer_s'], entry['sync_s'])])
    benchlib.print_table(['contender', 's', 'GB/s', 'data s', 'data GB/s', 'eth2 MB', 'eth0 MB', 'note'], rows,
                         ['<', '>', '>', '>', '>', '>', '>', '<'])
    print("data s: while the bytes flowed through edge1's eth2 (1 % to 99 % of them, 0.1 s resolution). scp uses the SFTP "
          "protocol (sftp-server is installed on the lab hosts), default cipher chacha20-poly1305; the store agent's ssh "
          "prefers aes128-gcm.")
    print()

    print('incremental copy: v2 = v1 with %.1f MB (%d blocks of new random data) rewritten; edge1 holds v1 (best of %d)'
          % (changed_bytes / 1e6, results['changed_blocks'], args.repeat))
    rows = []
    for label, contender in (('image module: ansible-playbook process', 'image'), ('image module: task (JSON callback)', 'image'),
                             ('image module again (no-op): process', 'image no-op'), ('image module again (no-op): task', 'image no-op'),
                             ('rsync -e ssh + sync', 'rsync'), ('rsync --inplace -e ssh + sync', 'rsync --inplace')):
        entry = best_entry(inc, contender)
        is_task = label.endswith('task') or 'task (' in label
        seconds = best(inc, contender, 'task_s') if is_task else entry['process_s']
        wire = entry['wire']['eth2']['total']
        cpu = entry.get('cpu', {}).get('hosts')
        note = ''
        if contender.startswith('rsync'):
            stats = entry['rsync_stats']
            note = 'literal %s MB, matched %s MB; transfer %.2f s, sync %.2f s' % (
                mb(stats.get('Literal data', 0)), mb(stats.get('Matched data', 0)), entry['transfer_s'], entry['sync_s'])
        elif contender == 'image' and not is_task:
            note = '; '.join(entry.get('actions') or [])
        elif contender == 'image no-op' and not is_task:
            note = 'changed: %s' % entry.get('changed')
        show = not is_task
        rows.append([label, fmt_s(seconds), mb(wire) if show else '', '%.3f' % (wire / float(changed_bytes)) if show else '',
                     '%.1f' % cpu['central'] if show and cpu else '', '%.1f' % cpu['edge1'] if show and cpu else '', note])
    benchlib.print_table(['contender', 's', 'eth2 MB', 'wire/changed', 'CPU s central', 'CPU s edge1', 'note'], rows,
                         ['<', '>', '>', '>', '>', '>', '<'])
    print()
    print('CPU in the lab hosts during the best run of each (sampled from /proc every 0.1 s; cores = CPU s / wall s of the run)')
    samples = [(name, best_entry(entries, contender)['_sampler']) for name, entries, contender in (
        ('full: image', full, 'image'), ('full: scp', full, 'scp'), ('full: scp aes128-gcm', full, 'scp -c aes128-gcm'),
        ('incr.: image', inc, 'image'), ('incr.: rsync', inc, 'rsync'), ('incr.: rsync --inplace', inc, 'rsync --inplace'))]
    benchlib.print_table(['run', 'host: process', 'CPU s', 'cores'], cpu_rows(samples), ['<', '<', '>', '>'])
    print()
    for text, ok in checks:
        print('check: %-80s %s' % (text, 'ok' if ok else 'FAILED'))

    image_process, image_task = best(full, 'image'), best(full, 'image', 'task_s')
    scp, scp_aes = best(full, 'scp'), best(full, 'scp -c aes128-gcm')
    rsync, rsync_inplace = best(inc, 'rsync'), best(inc, 'rsync --inplace')
    ratios = {
        'full_image_process_over_scp': image_process / scp,
        'full_image_task_over_scp': image_task / scp,
        'full_image_process_over_scp_aes': image_process / scp_aes,
        'full_image_task_over_scp_aes': image_task / scp_aes,
        'full_image_process_gbps': gbps(size, image_process),
        'full_scp_gbps': gbps(size, scp),
        'full_scp_aes_gbps': gbps(size, scp_aes),
        'incr_image_wire_over_changed': best_entry(inc, 'image')['wire']['eth2']['total'] / float(changed_bytes),
        'incr_rsync_wire_over_changed': best_entry(inc, 'rsync')['wire']['eth2']['total'] / float(changed_bytes),
        'incr_rsync_inplace_wire_over_changed': best_entry(inc, 'rsync --inplace')['wire']['eth2']['total'] / float(changed_bytes),
        'incr_image_process_over_rsync': best(inc, 'image') / rsync,
        'incr_image_task_over_rsync': best(inc, 'image', 'task_s') / rsync,
        'incr_image_process_over_rsync_inplace': best(inc, 'image') / rsync_inplace,
        'incr_image_task_over_rsync_inplace': best(inc, 'image', 'task_s') / rsync_inplace,
    }
    results['ratios'] = dict((key, round(value, 4)) for key, value in ratios.items())
    print('ratios: full copy image/scp time %.2f (task alone %.2f; goal <= 1.0), against scp -c aes128-gcm %.2f (task %.2f): '
          '%.3f GB/s, scp %.3f GB/s, scp aes128-gcm %.3f GB/s; incremental wire/changed bytes %.3f for the image module '
          '(goal <= 1.1), rsync %.3f, rsync --inplace %.3f; incremental time image/rsync %.2f (task alone %.2f; goal <= 0.5), '
          'against rsync --inplace %.2f (task %.2f)'
          % (ratios['full_image_process_over_scp'], ratios['full_image_task_over_scp'], ratios['full_image_process_over_scp_aes'],
             ratios['full_image_task_over_scp_aes'], ratios['full_image_process_gbps'], ratios['full_scp_gbps'],
             ratios['full_scp_aes_gbps'], ratios['incr_image_wire_over_changed'], ratios['incr_rsync_wire_over_changed'],
             ratios['incr_rsync_inplace_wire_over_changed'], ratios['incr_image_process_over_rsync'],
             ratios['incr_image_task_over_rsync'], ratios['incr_image_process_over_rsync_inplace'],
             ratios['incr_image_task_over_rsync_inplace']))


if __name__ == '__main__':
    benchlib.run_main(main)
