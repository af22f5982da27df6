# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers shared by the benchmark scripts in bench/ (this package is not a benchmark itself).

Nothing here asserts on times: the scripts measure, print a table and a line of ratios, and
optionally write a JSON file. Paths are derived from this file's location, never hard-coded.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(BENCH_DIR)
VENV = os.path.join(REPO, '.venv')
MIB = 1024 * 1024
GIB = 1024 * MIB
SLICE = 4 * MIB
CLK_TCK = os.sysconf('SC_CLK_TCK') if hasattr(os, 'sysconf') else 100


# ---------------------------------------------------------------- engine and Ansible

def engine():
    """Import the engine the way the modules see it (through the .venv/ansible_collections symlink)."""
    if VENV not in sys.path:
        sys.path.insert(0, VENV)
    from ansible_collections.vmimages.multistore.plugins.module_utils.stores.registry import Registry
    from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration
    from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
    from ansible_collections.vmimages.multistore.plugins.module_utils.images.request import ImageRequest

    class Engine:
        pass
    eng = Engine()
    eng.Registry = Registry
    eng.StoreDeclaration = StoreDeclaration
    eng.Catalog = Catalog
    eng.ImageRequest = ImageRequest
    return eng


def declare_file_store(eng, registry_dir, name, path):
    registry = eng.Registry(registry_dir)
    eng.StoreDeclaration(registry, {'name': name, 'type': 'file', 'path': path, 'enabled': True}).present(False)
    return registry


def image_params(**params):
    """ImageRequest parameters with the module's defaults filled in."""
    base = {'container_format': 'bare', 'all_stores': False, 'allow_failure': False, 'state': 'present',
            'validate_certs': True, 'url_timeout': 30}
    base.update(params)
    return base


def ansible_playbook_command(playbook, extra_args=()):
    binary = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    if not os.path.exists(binary):
        binary = shutil.which('ansible-playbook') or 'ansible-playbook'
    # The module runs with the same interpreter as this script (the venv's), like `make` targets do.
    return [binary, '-i', 'localhost,', '-c', 'local', '-e', 'ansible_python_interpreter=%s' % sys.executable] + \
        list(extra_args) + [playbook]


def ansible_env(extra=None):
    env = dict(os.environ)
    env['ANSIBLE_CONFIG'] = os.path.join(REPO, 'ansible.cfg')
    env['ANSIBLE_STDOUT_CALLBACK'] = 'ansible.posix.json'
    env['ANSIBLE_NOCOLOR'] = '1'
    env['ANSIBLE_RETRY_FILES_ENABLED'] = '0'
    env.pop('ANSIBLE_CALLBACKS_ENABLED', None)
    env.update(extra or {})
    return env


def write_playbook(path, plays):
    """JSON is YAML: no quoting surprises in generated playbooks."""
    with open(path, 'w') as handle:
        json.dump(plays, handle, indent=2)
    return path


class PlaybookRun:
    def __init__(self, timing, returncode, output, stderr):
        self.timing = timing
        self.returncode = returncode
        self.output = output
        self.stderr = stderr

    @property
    def stats(self):
        return (self.output or {}).get('stats', {}).get('localhost', {})

    def task_results(self, task_name):
        """The result dicts of one task (one per loop item, or the single result)."""
        for play in (self.output or {}).get('plays', []):
            for task in play.get('tasks', []):
                if task.get('task', {}).get('name') == task_name:
                    result = task.get('hosts', {}).get('localhost', {})
                    return result.get('results') if 'results' in result else [result]
        return []

    def failure_text(self):
        lines = []
        for play in (self.output or {}).get('plays', []):
            for task in play.get('tasks', []):
                result = task.get('hosts', {}).get('localhost', {})
                for item in result.get('results', [result]):
                    if item.get('failed'):
                        lines.append('%s: %s' % (task.get('task', {}).get('name'), item.get('msg')))
        return '\n'.join(lines) or (self.stderr or '')[-2000:]


def run_playbook(playbook, extra_env=None):
    """Run ansible-playbook, time the whole process; parse the ansible.posix.json output."""
    command = ansible_playbook_command(playbook)
    with Timed() as timing:
        proc = subprocess.run(command, cwd=REPO, env=ansible_env(extra_env), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, check=False)
    try:
        output = json.loads(proc.stdout)
    except ValueError:
        output = None
    run = PlaybookRun(timing, proc.returncode, output, proc.stderr)
    if proc.returncode != 0:
        detail = run.failure_text() or proc.stdout[-2000:]
        raise BenchError('ansible-playbook %s failed (rc %d):\n%s' % (playbook, proc.returncode, detail))
    return run


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- options, scratch space, caches

def parser(description):
    if hasattr(sys.stdout, 'reconfigure'):
        sys.stdout.reconfigure(line_buffering=True)  # progress shows when the output goes to a file or a pipe
    result = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    result.add_argument('--quick', action='store_true', help='small sizes: a smoke test that runs in seconds')
    result.add_argument('--workdir', metavar='DIR',
                        help='parent of the scratch directory (default: /var/tmp if it is on the filesystem of the '
                             'repository, else <repo>/.cache/bench)')
    result.add_argument('--keep', action='store_true', help='keep the scratch directory')
    result.add_argument('--cold', action='store_true',
                        help='sync and drop the page cache (needs root) before each timed run; default: warm cache')
    result.add_argument('--json', metavar='PATH', help='also write the results as JSON to PATH')
    return result


def default_workdir_parent():
    candidate = os.path.join(os.sep, 'var', 'tmp')
    try:
        if os.stat(candidate).st_dev == os.stat(REPO).st_dev and os.access(candidate, os.W_OK):
            return candidate
    except OSError:
        pass
    return os.path.join(REPO, '.cache', 'bench')


class Scratch:
    """A fresh directory for one benchmark run, removed afterwards (unless --keep)."""

    def __init__(self, name, parent=None, keep=False):
        parent = parent or default_workdir_parent()
        os.makedirs(parent, exist_ok=True)
        self.path = tempfile.mkdtemp(prefix='bench-%s-' % name, dir=parent)
        self.keep = keep

    def join(self, *parts):
        return os.path.join(self.path, *parts)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.keep:
            print('scratch directory kept: %s' % self.path)
        else:
            shutil.rmtree(self.path, ignore_errors=True)
        return False


class Caches:
    """Warm by default; with --cold, sync and drop the page cache before each timed run."""

    def __init__(self, cold):
        self.cold = cold
        self.dropped = 0
        self.problem = None

    def before_run(self, *warm_files):
        if self.cold:
            os.sync()
            try:
                with open('/proc/sys/vm/drop_caches', 'w') as handle:
                    handle.write('3\n')
                self.dropped += 1
            except (IOError, OSError) as exc:
                self.problem = 'could not drop the page cache (%s): the runs were NOT cold' % exc
        else:
            for path in warm_files:
                read_through(path)

    def describe(self):
        if self.cold:
            return self.problem or 'cold: sync + drop_caches before each timed run'
        return 'warm: the source is read once before each timed run, so it is read from the page cache'


def read_through(path, chunk=8 * MIB):
    buf = bytearray(chunk)
    with open(path, 'rb', buffering=0) as handle:
        while handle.readinto(buf):
            pass


# sha256 of every 4 MiB slice of a file, in its own process: the slice list's digests.
_SLICE_SHA256 = (
    "import hashlib, sys\n"
    "buf = bytearray(%d)\n"
    "view = memoryview(buf)\n"
    "with open(sys.argv[1], 'rb', buffering=0) as handle:\n"
    "    while True:\n"
    "        count = handle.readinto(buf)\n"
    "        if not count:\n"
    "            break\n"
    "        hashlib.sha256(view[:count]).digest()\n" % SLICE)


class RecordDigests:
    """The digests an image record needs, computed alongside a reference tool: md5sum, sha512sum and sha256 per
    4 MiB slice, as three processes started on entry and waited for on exit.

    ``with Timed(), RecordDigests(src): reference_tool(src)`` is the floor for an importer that writes the same
    record as the reference tool writes the data: no importer spends less CPU on this machine. When the engine
    is near this floor and the floor is far above the tool alone, the machine's cores are the limit, not the engine.
    """

    def __init__(self, path):
        self.path = path
        self.processes = []

    def __enter__(self):
        for command in (['md5sum', self.path], ['sha512sum', self.path], [sys.executable, '-c', _SLICE_SHA256, self.path]):
            self.processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
        return self

    def __exit__(self, *exc):
        failed = [process.args[0] for process in self.processes if process.wait()]
        if failed and exc[0] is None:
            raise BenchError('digest process failed: %s' % ', '.join(failed))
        return False


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def free_bytes(path):
    vfs = os.statvfs(path)
    return vfs.f_bavail * vfs.f_frsize


def check_space(path, needed):
    free = free_bytes(path)
    if free < needed * 1.05:
        raise BenchError('%s has %.1f GiB free, this run needs about %.1f GiB: use --workdir elsewhere or smaller sizes'
                         % (path, free / GIB, needed / GIB))


# ---------------------------------------------------------------- data

class BlockMaker:
    """Incompressible, distinct blocks, fast (no per-block random generation).

    A 64 MiB pool of os.urandom bytes is made once; block n is a 16-byte tag (a per-process nonce and a
    counter) followed by pool bytes from an offset that varies with n. No block is all zero and no two
    blocks of a process (or of two runs) are equal, so slice deduplication cannot shortcut the data.
    (os.urandom itself runs at about 0.2 GB/s here: too slow to make 4 GiB per run.)
    """

    POOL = 64 * MIB
    _pool = None
    _nonce = None
    _counter = 0
    _lock = threading.Lock()

    @classmethod
    def parts(cls, size=SLICE):
        """Block n as (tag, view into the pool): write it with os.writev, no copy."""
        with cls._lock:
            if cls._pool is None:
                cls._pool = memoryview(os.urandom(cls.POOL + SLICE))
                cls._nonce = os.urandom(8)
            n = cls._counter
            cls._counter += 1
        offset = (n * 1048583) % cls.POOL
        tag = cls._nonce + n.to_bytes(8, 'little')
        if size <= len(tag):
            return [tag[:size]]
        return [tag, cls._pool[offset:offset + size - len(tag)]]

    @classmethod
    def block(cls, size=SLICE):
        return b''.join(cls.parts(size))


def write_all(fd, parts, offset=None):
    """Write every part (bytes-like objects) at the file position or at ``offset``."""
    views = [memoryview(part) for part in parts]
    while views:
        written = os.writev(fd, views) if offset is None else os.pwritev(fd, views, offset)
        if offset is not None:
            offset += written
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def write_random_file(path, size):
    """A file of ``size`` bytes made of distinct BlockMaker blocks, fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        left = size
        while left:
            length = min(SLICE, left)
            write_all(fd, BlockMaker.parts(length))
            left -= length
        os.fsync(fd)
    finally:
        os.close(fd)
    return size


# ---------------------------------------------------------------- timing

class Timed:
    """Wall time and CPU time (this process's threads plus waited-for children) of a block."""

    def __enter__(self):
        self._self = resource.getrusage(resource.RUSAGE_SELF)
        self._children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._start
        after_self = resource.getrusage(resource.RUSAGE_SELF)
        after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.user = (after_self.ru_utime - self._self.ru_utime) + (after_children.ru_utime - self._children.ru_utime)
        self.sys = (after_self.ru_stime - self._self.ru_stime) + (after_children.ru_stime - self._children.ru_stime)
        return False

    @property
    def cpu(self):
        return self.user + self.sys

    @property
    def cores(self):
        """Average number of busy cores over the wall time."""
        return self.cpu / self.wall if self.wall else 0.0

    def as_dict(self):
        return {'wall_s': round(self.wall, 4), 'user_s': round(self.user, 3), 'sys_s': round(self.sys, 3),
                'busy_cores': round(self.cores, 2)}


class ThreadSampler:
    """CPU time per thread of this process, sampled from /proc (Linux) while a block runs.

    Threads are labelled by ``label(thread)`` (None: fall back to the thread name). The last sample of a
    thread before it exits is kept, so short threads are under-counted by at most one interval.
    """

    def __init__(self, label=None, interval=0.1):
        self.label = label or (lambda thread: None)
        self.interval = interval
        self.samples = {}
        self._stop = threading.Event()
        self._thread = None
        self.available = os.path.isdir('/proc/self/task')

    def _sample(self):
        me = threading.current_thread()
        for thread in threading.enumerate():
            if thread is me or not getattr(thread, 'native_id', None):
                continue
            try:
                with open('/proc/self/task/%d/stat' % thread.native_id) as handle:
                    fields = handle.read().rsplit(')', 1)[1].split()
            except (IOError, OSError):
                continue
            ticks = int(fields[11]) + int(fields[12])  # utime + stime
            key = thread.native_id
            try:
                label = self.label(thread)
            except Exception:  # labels are best effort
                label = None
            if key not in self.samples:
                self.samples[key] = [label or thread.name, ticks, ticks]
            self.samples[key][2] = ticks

    def _loop(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        if self.available:
            self._sample()
            self._thread = threading.Thread(target=self._loop, name='bench-sampler', daemon=True)
            self._thread.start()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._start
        if self._thread:
            self._stop.set()
            self._thread.join()
            self._sample()
        return False

    def busy(self, min_fraction=0.01):
        """[(label, cpu seconds, fraction of the wall time)], busiest first; same labels are added up."""
        totals = {}
        for label, first, last in self.samples.values():
            totals[label] = totals.get(label, 0) + (last - first) / float(CLK_TCK)
        rows = [(label, cpu, cpu / self.wall if self.wall else 0.0) for label, cpu in totals.items()]
        return sorted([row for row in rows if row[2] >= min_fraction], key=lambda row: -row[1])


# ---------------------------------------------------------------- output

def gbps(size, seconds):
    return size / 1e9 / seconds if seconds else float('inf')


def print_table(headers, rows, aligns=None):
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(headers[i])] + [len(row[i]) for row in cells]) for i in range(len(headers))]
    aligns = aligns or ['<'] + ['>'] * (len(headers) - 1)
    fmt = '  '.join('{:%s%d}' % (aligns[i], widths[i]) for i in range(len(headers)))
    print(fmt.format(*headers))
    print('  '.join('-' * width for width in widths))
    for row in cells:
        print(fmt.format(*row))


def load_note():
    """One line about the machine's load: other work running beside a benchmark skews it."""
    try:
        one, five, _fifteen = os.getloadavg()
    except OSError:
        return 'load average: n/a'
    note = 'load average %.2f (1 min), %.2f (5 min) on %d CPUs' % (one, five, os.cpu_count() or 0)
    if one > 0.5:
        note += ': other work is running, figures may be low'
    return note


def machine():
    info = {'python': platform.python_version(), 'cpus': os.cpu_count(), 'kernel': platform.release()}
    try:
        info['loadavg'] = [round(value, 2) for value in os.getloadavg()]
    except OSError:
        pass
    try:
        with open('/proc/meminfo') as handle:
            info['mem_gib'] = round(int(handle.readline().split()[1]) / 1024.0 / 1024.0, 1)
    except (IOError, OSError, ValueError, IndexError):
        pass
    return info


def write_json(path, data):
    if not path:
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    data = dict(data, machine=machine(), finished_at=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))
    with open(path, 'w') as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write('\n')
    print('results written to %s' % path)


def slice_usage(store_root):
    """(number, bytes) of the slice files of a file store."""
    count = 0
    size = 0
    for dirpath, _dirs, files in os.walk(os.path.join(store_root, 'slices')):
        for name in files:
            if not name.startswith('.'):
                count += 1
                size += os.stat(os.path.join(dirpath, name)).st_size
    return count, size


def run_main(main):
    """Exit with main()'s status; a BenchError is a one-line message and exit 2."""
    try:
        sys.exit(main())
    except BenchError as exc:
        print('error: %s' % exc, file=sys.stderr)
        sys.exit(2)
