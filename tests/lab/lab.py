# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Multi-host test lab without Docker: Debian hosts as systemd-nspawn containers in network namespaces.

    python3 tests/lab/lab.py create  --name NAME --hosts central,edge1,edge2 [--state-dir DIR]
    python3 tests/lab/lab.py status  --name NAME
    python3 tests/lab/lab.py shape   --name NAME --host edge1 --net sync --rate 100mbit [--delay 20ms] | --clear
    python3 tests/lab/lab.py exec    --name NAME --host central [-- CMD...]
    python3 tests/lab/lab.py destroy --name NAME

Run as root, with Debian's python3 or the venv's: standard library only. See README.md beside this file.

Layout of one lab:
  * a "switch" network namespace labsw-NAME holding three Linux bridges (mgmt, data, sync) and
    one veth pair per host and network; only mgmt is reachable from the root namespace (the
    bridge side of a veth pair whose root end has the .1 address); nothing routes further.
  * per host a network namespace lab-NAME-HOST with eth0 (mgmt, addressed by the lab),
    eth1 (data) and eth2 (sync) (both up, without addresses: the store_host role sets those);
  * per host an overlayfs root (lower: the Debian base unpacked in the cache, shared by all
    hosts of all labs; upper/work: per host), booted by `systemd-nspawn -b` in that namespace;
  * the state directory holds the overlays, the SSH key, known_hosts, ssh_config,
    inventory.yml and lab.json (what destroy needs to undo everything).
"""

import argparse
import contextlib
import errno
import fcntl
import glob
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

SUITE = 'bookworm'
VARIANT = 'minbase'
# What a store host needs: SSH + Python for Ansible, filesystems and loop devices, FUSE/sshfs,
# qemu-img, and the tools the roles call. No network inside the lab, so no apt at test time.
PACKAGES = (
    'openssh-server', 'python3', 'python3-apt', 'python3-paramiko', 'iproute2', 'iputils-ping',
    'python3-cffi-backend',         # debootstrap does not resolve the virtual packages it provides
    'systemd', 'systemd-sysv', 'dbus', 'sudo', 'procps', 'kmod', 'ca-certificates', 'rsync',
    'util-linux', 'mount', 'xfsprogs', 'e2fsprogs', 'attr', 'fuse3', 'sshfs', 'qemu-utils',
)
# Bump when customize_base() changes: it is part of the base's cache key.
BASE_RECIPE = 1
# Units that only make noise or burn CPU in a lab host without network.
MASKED_UNITS = (
    'apt-daily.timer', 'apt-daily-upgrade.timer', 'e2scrub_all.timer', 'e2scrub_reap.service',
    'fstrim.timer', 'systemd-networkd-wait-online.service',
)

NETS = (('mgmt', 'eth0'), ('data', 'eth1'), ('sync', 'eth2'))
NET_NAMES = tuple(net for net, ifname in NETS)
INTERFACES = dict(NETS)
DEFAULT_SUBNETS = {'mgmt': '10.201.0.0/24', 'data': '10.202.0.0/24', 'sync': '10.203.0.0/24'}
HOST_OFFSET = 10            # host i (1-based) gets .10+i
RUN_ROOT = '/run/vmimages-multistore-lab'   # per-boot runtime: locks, ssh control sockets, state pointers
SSH_OPTS_FILE = 'ssh_config'
LOOP_CTL_ADD = 0x4C80
MARKER = '.vmimages-multistore-lab'

NAME_RE = re.compile(r'^[a-z][a-z0-9-]{0,19}$')
HOST_RE = re.compile(r'^[a-z][a-z0-9]{0,14}$')


class LabError(Exception):
    """An error the operator can act on: printed without a traceback."""


def log(msg):
    sys.stderr.write('lab: %s\n' % msg)
    sys.stderr.flush()


def run(cmd, check=True, capture=True, timeout=300, **kwargs):
    """Run a command; on failure raise LabError with the command and its stderr."""
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE if capture else None,
                              universal_newlines=True, timeout=timeout, check=False, **kwargs)
    except FileNotFoundError:
        raise LabError('%s not found: install it (see tests/lab/README.md, "Requirements")' % cmd[0])
    except subprocess.TimeoutExpired:
        raise LabError('timed out after %ss: %s' % (timeout, ' '.join(shlex.quote(c) for c in cmd)))
    if check and proc.returncode != 0:
        raise LabError('command failed (exit %d): %s\n%s' % (
            proc.returncode, ' '.join(shlex.quote(c) for c in cmd), (proc.stderr or '').strip()))
    return proc


def ok(cmd):
    return run(cmd, check=False).returncode == 0


def write_file(path, text, mode=0o644):
    """Atomic write (temp + rename) so an interrupted create never leaves half a file."""
    tmp = '%s.tmp.%d' % (path, os.getpid())
    with open(tmp, 'w') as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def read_json(path, default=None):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return default


# ---------------------------------------------------------------------------------------------- paths

def cache_dir():
    return os.environ.get('LAB_CACHE') or os.path.join(os.path.expanduser('~'), '.cache', 'vmimages-multistore-lab')


def default_state_dir(name):
    root = os.environ.get('LAB_STATE') or os.path.join(os.path.expanduser('~'), '.local', 'state', 'vmimages-multistore-lab')
    return os.path.join(root, name)


def runtime_dir(name):
    return os.path.join(RUN_ROOT, name)


def resolve_state_dir(name, given):
    """--state-dir, else the pointer `create` left in the runtime dir, else the default."""
    if given:
        return os.path.abspath(given)
    pointer = os.path.join(runtime_dir(name), 'state-dir')
    if os.path.islink(pointer):
        return os.readlink(pointer)
    return default_state_dir(name)


@contextlib.contextmanager
def lab_lock(name):
    path = os.path.join(RUN_ROOT, name + '.lock')
    handle = None
    while handle is None:       # RUN_ROOT may be removed by another lab's destroy between makedirs and open
        os.makedirs(RUN_ROOT, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            handle = open(path, 'a')
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield path


def check_root():
    if os.geteuid() != 0:
        raise LabError('run as root: the lab needs network namespaces, mounts and systemd-nspawn')


# ---------------------------------------------------------------------------------------------- names

class Names:
    """Every kernel object name of one lab, derived from the lab name alone (destroy needs no state)."""

    def __init__(self, name):
        self.name = name
        self.switch_ns = 'labsw-' + name
        root_if = 'lab-' + name
        if len(root_if) > 15:   # IFNAMSIZ
            root_if = 'lab-' + hashlib.sha1(name.encode()).hexdigest()[:11]
        self.root_if = root_if
        self.uplink = 'uplink'

    def host_ns(self, host):
        return 'lab-%s-%s' % (self.name, host)

    def host_ns_re(self):
        return re.compile(r'^lab-%s-[a-z][a-z0-9]*$' % re.escape(self.name))

    @staticmethod
    def bridge(net):
        return 'br-' + net

    @staticmethod
    def switch_port(index, net):
        return 'h%d-%s' % (index, net)


# ---------------------------------------------------------------------------------------------- base image

def apt_sources():
    """(uri, suites, components, keyring) of every enabled `deb` source of this machine."""
    entries = []
    one_line = ['/etc/apt/sources.list'] + sorted(glob.glob('/etc/apt/sources.list.d/*.list'))
    for path in one_line:
        try:
            with open(path) as handle:
                lines = handle.read().splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.split('#', 1)[0].strip()
            if not line.startswith('deb '):
                continue
            options = {}
            match = re.match(r'^deb\s+\[([^\]]*)\]\s+(.*)$', line)
            rest = line[4:]
            if match:
                for opt in match.group(1).split():
                    key, value = opt.partition('=')[::2]
                    options[key] = value
                rest = match.group(2)
            fields = rest.split()
            if len(fields) >= 3:
                entries.append((fields[0], [fields[1]], fields[2:], options.get('signed-by')))
    for path in sorted(glob.glob('/etc/apt/sources.list.d/*.sources')):
        try:
            with open(path) as handle:
                text = handle.read()
        except OSError:
            continue
        for para in re.split(r'\n\s*\n', text):
            fields = {}
            key = None
            for line in para.splitlines():
                if line.startswith('#') or not line.strip():
                    continue
                if line[0].isspace() and key:
                    fields[key] += ' ' + line.strip()
                    continue
                key, value = line.partition(':')[::2]
                key = key.strip().lower()
                fields[key] = value.strip()
            if 'deb' not in fields.get('types', '').split() or fields.get('enabled', 'yes').lower() == 'no':
                continue
            for uri in fields.get('uris', '').split():
                entries.append((uri, fields.get('suites', '').split(), fields.get('components', '').split(),
                                fields.get('signed-by')))
    return entries


def debian_mirror():
    """The mirror this machine's apt uses for SUITE (LAB_MIRROR overrides), and its keyring if a file."""
    if os.environ.get('LAB_MIRROR'):
        return os.environ['LAB_MIRROR'], None
    for uri, suites, components, keyring in apt_sources():
        if SUITE in suites and 'main' in components and re.match(r'^(https?|file)://', uri):
            if keyring and not os.path.isfile(keyring):
                keyring = None
            return uri, keyring
    raise LabError('no apt source for Debian %s main found in /etc/apt/sources.list(.d): set LAB_MIRROR=<debian mirror URL>' % SUITE)


def base_key(packages):
    recipe = json.dumps({'suite': SUITE, 'variant': VARIANT, 'packages': sorted(set(packages)),
                         'recipe': BASE_RECIPE}, sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def base_paths(packages):
    """(tarball, unpacked root) of the base for this package list; the hash is in the names."""
    stem = os.path.join(cache_dir(), 'base-%s-%s-%s' % (SUITE, VARIANT, base_key(packages)))
    return stem + '.tar.zst', stem + '.root'


def customize_base(root):
    """Make the debootstrapped tree a generic lab host; per-host identity is added at create time."""
    for path in glob.glob(os.path.join(root, 'etc/ssh/ssh_host_*')):
        os.unlink(path)                     # each host gets its own keys
    write_file(os.path.join(root, 'etc/machine-id'), '')
    dbus_id = os.path.join(root, 'var/lib/dbus/machine-id')
    if os.path.lexists(dbus_id):
        os.unlink(dbus_id)
        os.symlink('/etc/machine-id', dbus_id)
    for unit in MASKED_UNITS:
        link = os.path.join(root, 'etc/systemd/system', unit)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink('/dev/null', link)
    wants = os.path.join(root, 'etc/systemd/system/multi-user.target.wants/ssh.service')
    if not os.path.lexists(wants):
        os.makedirs(os.path.dirname(wants), exist_ok=True)
        os.symlink('/lib/systemd/system/ssh.service', wants)
    # Smaller tarball: package lists, downloaded .debs and documentation are not needed.
    for pattern in ('var/lib/apt/lists/*_*', 'var/cache/apt/*.bin', 'var/cache/apt/archives/*.deb',
                    'usr/share/doc/*', 'usr/share/man/*', 'usr/share/info/*', 'var/log/*.log'):
        for path in glob.glob(os.path.join(root, pattern)):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)


TAR_OPTS = ['--zstd', '--numeric-owner', '--xattrs', '--xattrs-include=*', '--acls']


def ensure_base(packages):
    """The read-only lower layer of every lab host: the base tarball (built once per package list)
    unpacked once beside it in the cache and shared by all labs (overlayfs never writes a lower)."""
    tarball, root = base_paths(packages)
    if os.path.isfile(root + '.complete'):
        return root
    cache = cache_dir()
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, '.lock'), 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)    # one builder; a concurrent create waits and reuses
        if not os.path.isfile(tarball):
            build_tarball(tarball, packages)
            remove_stale_bases(tarball, root)
        if not os.path.isfile(root + '.complete'):
            shutil.rmtree(root, ignore_errors=True)
            os.makedirs(root)
            run(['tar'] + TAR_OPTS + ['-xpf', tarball, '-C', root], timeout=1800)
            write_file(root + '.complete', '')
    return root


def build_tarball(tarball, packages):
    if not shutil.which('debootstrap'):
        raise LabError('debootstrap not found: apt-get install --no-install-recommends debootstrap')
    mirror, keyring = debian_mirror()
    build = tempfile.mkdtemp(prefix='build-', dir=os.path.dirname(tarball))
    root = os.path.join(build, 'root')
    started = time.time()
    log('building the base image (debootstrap %s %s from %s, 1-2 minutes) ...' % (VARIANT, SUITE, mirror))
    try:
        cmd = ['debootstrap', '--variant=' + VARIANT, '--components=main',
               '--include=' + ','.join(sorted(set(packages)))]
        if keyring:
            cmd.append('--keyring=' + keyring)
        cmd += [SUITE, root, mirror]
        proc = run(cmd, check=False, timeout=1800)
        if proc.returncode != 0:
            detail = ''
            with contextlib.suppress(OSError), open(os.path.join(root, 'debootstrap/debootstrap.log')) as handle:
                detail = ''.join(handle.readlines()[-20:])
            raise LabError('debootstrap failed (exit %d): %s\n%s' % (proc.returncode, proc.stderr.strip()[-2000:], detail))
        customize_base(root)
        tmp = tarball + '.tmp'
        run(['tar'] + TAR_OPTS + ['-C', root, '-cf', tmp, '.'], timeout=1800)
        os.rename(tmp, tarball)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    log('base image built in %.0f s: %s (%.0f MiB)' % (time.time() - started, tarball, os.path.getsize(tarball) / 2.0 ** 20))


def remove_stale_bases(tarball, root):
    """Bases of other package lists, unless a running lab still uses one as its lower layer."""
    with open('/proc/self/mountinfo') as handle:
        mounts = handle.read()
    for path in glob.glob(os.path.join(os.path.dirname(tarball), 'base-%s-%s-*' % (SUITE, VARIANT))):
        if path in (tarball, root, root + '.complete'):
            continue
        if path.endswith('.root'):
            if 'lowerdir=%s,' % path not in mounts and 'lowerdir=%s:' % path not in mounts:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path + '.complete')
                shutil.rmtree(path, ignore_errors=True)
        elif path.endswith('.tar.zst'):
            os.unlink(path)


# ---------------------------------------------------------------------------------------------- mounts, loops, processes

def mountinfo():
    """Mount points of the calling mount namespace, unescaped."""
    points = []
    with open('/proc/self/mountinfo') as handle:
        for line in handle:
            point = line.split()[4]
            points.append(re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), point))
    return points


def mounts_under(path):
    path = path.rstrip('/')
    return [p for p in mountinfo() if p == path or p.startswith(path + '/')]


def is_mounted(path):
    return path in mountinfo()


def ensure_loop_nodes(count):
    """Make sure /dev/loop0..count-1 exist (they are bound into every host)."""
    fd = os.open('/dev/loop-control', os.O_RDWR)
    try:
        for index in range(count):
            if not os.path.exists('/dev/loop%d' % index):
                try:
                    fcntl.ioctl(fd, LOOP_CTL_ADD, index)
                except OSError as exc:
                    if exc.errno != errno.EEXIST:
                        raise
    finally:
        os.close(fd)
    for index in range(count):
        deadline = time.time() + 5
        while not os.path.exists('/dev/loop%d' % index):
            if time.time() > deadline:
                raise LabError('/dev/loop%d did not appear after LOOP_CTL_ADD' % index)
            time.sleep(0.05)


def loop_devices():
    """[(device, backing file, backing 'major:minor')] of every attached loop device."""
    proc = run(['losetup', '--list', '--json', '--output', 'NAME,BACK-FILE,BACK-MAJ:MIN'], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    devices = []
    for item in json.loads(proc.stdout).get('loopdevices', []):
        devices.append((item.get('name'), (item.get('back-file') or '').strip(), (item.get('back-maj:min') or '').strip()))
    return devices


def lab_loop_devices(state, overlay_devs):
    """Loop devices whose backing file is inside this lab: on a host's overlay, under the state
    dir, or on another loop device of the lab (nested). Never any other loop device."""
    state = state.rstrip('/')
    ours = []
    devs = set(overlay_devs)
    changed = True
    while changed:
        changed = False
        for name, back, majmin in loop_devices():
            if name in ours:
                continue
            back_path = back.replace(' (deleted)', '')
            if majmin in devs or back_path == state or back_path.startswith(state + '/'):
                ours.append(name)
                with contextlib.suppress(OSError):
                    st = os.stat(name)
                    devs.add('%d:%d' % (os.major(st.st_rdev), os.minor(st.st_rdev)))
                changed = True
    return ours


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            return [a.decode(errors='replace') for a in handle.read().split(b'\0') if a]
    except OSError:
        return []


def all_pids():
    return [int(p) for p in os.listdir('/proc') if p.isdigit()]


def netns_inode(ns):
    try:
        return os.stat('/run/netns/' + ns).st_ino
    except OSError:
        return None


def pids_in_netns(ns):
    inode = netns_inode(ns)
    if inode is None:
        return []
    pids = []
    for pid in all_pids():
        try:
            if os.stat('/proc/%d/ns/net' % pid).st_ino == inode and pid_alive(pid):
                pids.append(pid)
        except OSError:
            continue
    return pids


def own_ancestors():
    pids = set()
    pid = os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            with open('/proc/%d/stat' % pid) as handle:
                pid = int(handle.read().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def kill_and_wait(pids, sig=signal.SIGTERM, timeout=10.0):
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.time() + timeout
    while time.time() < deadline:
        pids = [p for p in pids if pid_alive(p)]
        if not pids:
            return []
        time.sleep(0.1)
    return [p for p in pids if pid_alive(p)]


def container_leader(nspawn_pid):
    """PID (in the root namespace) of the container's PID 1: the nspawn child in a new PID namespace."""
    for pid in all_pids():
        try:
            with open('/proc/%d/status' % pid) as handle:
                status = handle.read()
        except OSError:
            continue
        ppid = re.search(r'^PPid:\s*(\d+)', status, re.M)
        nspid = re.search(r'^NSpid:\s*(.*)$', status, re.M)
        if ppid and int(ppid.group(1)) == nspawn_pid and nspid and nspid.group(1).split()[-1] == '1' \
                and len(nspid.group(1).split()) > 1:
            return pid
    return None


def is_our_nspawn(pid, merged):
    args = cmdline(pid)
    return pid_alive(pid) and bool(args) and os.path.basename(args[0]) == 'systemd-nspawn' and merged in args


def memory_kib(pids):
    """Proportional set size of these processes (shared pages split between sharers)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open('/proc/%d/smaps_rollup' % pid) as handle:
            for line in handle:
                if line.startswith('Pss:'):
                    total += int(line.split()[1])
                    break
    return total


# ---------------------------------------------------------------------------------------------- network

def ns_exists(ns):
    return os.path.exists('/run/netns/' + ns)


def link_exists(ifname, ns=None):
    return ok(['ip'] + (['-n', ns] if ns else []) + ['link', 'show', 'dev', ifname])


def ensure_netns(ns):
    if not ns_exists(ns):
        run(['ip', 'netns', 'add', ns])
    run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])


def check_subnet_free(names, subnet):
    """The mgmt subnet must not be routed in the root namespace by anything but this lab."""
    proc = run(['ip', '-j', 'addr', 'show'], check=False)
    for link in json.loads(proc.stdout or '[]'):
        if link.get('ifname') == names.root_if:
            continue
        for addr in link.get('addr_info', []):
            if addr.get('family') != 'inet':
                continue
            net = ipaddress.ip_interface('%s/%s' % (addr['local'], addr['prefixlen'])).network
            if net.overlaps(subnet):
                raise LabError('the management subnet %s overlaps %s on interface %s in the root namespace '
                               '(another lab?): choose another with --mgmt-net' % (subnet, net, link['ifname']))


def setup_switch(names, subnets):
    ensure_netns(names.switch_ns)
    sw = names.switch_ns
    for net in NET_NAMES:
        bridge = names.bridge(net)
        if not link_exists(bridge, sw):
            run(['ip', '-n', sw, 'link', 'add', bridge, 'type', 'bridge'])
        run(['ip', '-n', sw, 'link', 'set', bridge, 'up'])
    mgmt = subnets['mgmt']
    gateway = '%s/%d' % (mgmt.network_address + 1, mgmt.prefixlen)
    if not link_exists(names.root_if):
        if link_exists(names.uplink, sw):
            run(['ip', '-n', sw, 'link', 'del', names.uplink])
        run(['ip', 'link', 'add', names.root_if, 'type', 'veth', 'peer', 'name', names.uplink, 'netns', sw])
    run(['ip', '-n', sw, 'link', 'set', names.uplink, 'master', names.bridge('mgmt'), 'up'])
    # No way out even when the machine forwards (Docker sets ip_forward=1) or a role under test adds a
    # default route: IPv4 forwarding is decided by the input interface; no IPv6 on the uplink at all.
    for path, value in (('/proc/sys/net/ipv4/conf/%s/forwarding', '0'), ('/proc/sys/net/ipv6/conf/%s/disable_ipv6', '1')):
        with contextlib.suppress(FileNotFoundError), open(path % names.root_if, 'w') as handle:
            handle.write(value)
    run(['ip', 'addr', 'replace', gateway, 'dev', names.root_if])
    run(['ip', 'link', 'set', names.root_if, 'up'])


def setup_host_network(names, host, index, subnets):
    ns = names.host_ns(host)
    ensure_netns(ns)
    sw = names.switch_ns
    for net, ifname in NETS:
        port = names.switch_port(index, net)
        if not link_exists(ifname, ns) or not link_exists(port, sw):
            for stale, where in ((ifname, ns), (port, sw)):
                if link_exists(stale, where):
                    run(['ip', '-n', where, 'link', 'del', stale])
            run(['ip', '-n', sw, 'link', 'add', port, 'type', 'veth', 'peer', 'name', ifname, 'netns', ns])
        run(['ip', '-n', sw, 'link', 'set', port, 'master', names.bridge(net), 'up'])
        run(['ip', '-n', ns, 'link', 'set', ifname, 'up'])
    run(['ip', '-n', ns, 'addr', 'replace', host_address(subnets['mgmt'], index, True), 'dev', 'eth0'])


def host_address(subnet, index, with_prefix=False):
    address = subnet.network_address + HOST_OFFSET + index
    if address not in subnet or address == subnet.broadcast_address:
        raise LabError('subnet %s is too small for host number %d' % (subnet, index))
    return '%s/%d' % (address, subnet.prefixlen) if with_prefix else str(address)


# ---------------------------------------------------------------------------------------------- hosts

def host_dirs(state, host):
    base = os.path.join(state, 'hosts', host)
    return {k: os.path.join(base, k) for k in ('upper', 'work', 'merged')}


def mount_overlay(state, host, lower):
    dirs = host_dirs(state, host)
    for path in dirs.values():
        os.makedirs(path, exist_ok=True)
    if not is_mounted(dirs['merged']):
        run(['mount', '-t', 'overlay', 'overlay', '-o',
             'lowerdir=%s,upperdir=%s,workdir=%s' % (lower, dirs['upper'], dirs['work']), dirs['merged']])
    st = os.stat(dirs['merged'])
    return dirs['merged'], '%d:%d' % (os.major(st.st_dev), os.minor(st.st_dev))


def personalize_host(merged, host, hosts, subnets, pubkey):
    """Per-host identity in the host's upper layer: name, /etc/hosts, machine id, SSH keys."""
    write_file(os.path.join(merged, 'etc/hostname'), host + '\n')
    lines = ['127.0.0.1\tlocalhost', '127.0.1.1\t%s' % host,
             '::1\tlocalhost ip6-localhost ip6-loopback', 'ff02::1\tip6-allnodes', 'ff02::2\tip6-allrouters', '',
             '# lab management network']
    lines += ['%s\t%s' % (host_address(subnets['mgmt'], i), h) for i, h in enumerate(hosts, 1)]
    write_file(os.path.join(merged, 'etc/hosts'), '\n'.join(lines) + '\n')
    machine_id = os.path.join(merged, 'etc/machine-id')
    with open(machine_id) as handle:
        if not handle.read().strip():
            write_file(machine_id, uuid.uuid4().hex + '\n', 0o444)
    ssh_dir = os.path.join(merged, 'root/.ssh')
    os.makedirs(ssh_dir, mode=0o700, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    write_file(os.path.join(ssh_dir, 'authorized_keys'), pubkey, 0o600)


def generate_host_keys(roots):
    """Each host's own SSH host keys (only the missing types), all hosts at once: RSA takes a while."""
    procs = [(root, subprocess.Popen(['ssh-keygen', '-q', '-A', '-f', root], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, universal_newlines=True)) for root in roots]
    for root, proc in procs:
        out = proc.communicate()[0]
        if proc.returncode != 0:
            raise LabError('ssh-keygen -A -f %s failed: %s' % (root, out.strip()))


def host_public_keys(merged):
    keys = []
    for path in sorted(glob.glob(os.path.join(merged, 'etc/ssh/ssh_host_*_key.pub'))):
        with open(path) as handle:
            fields = handle.read().split()
        keys.append('%s %s' % (fields[0], fields[1]))
    return keys


def systemd_is_init():
    return os.path.isdir('/run/systemd/system')


def boot_host(state, names, host, merged, loop_count):
    ns = names.host_ns(host)
    cmd = ['systemd-nspawn', '--quiet', '--boot', '--directory', merged, '--machine', ns, '--hostname', host,
           '--network-namespace-path=/run/netns/' + ns,
           '--capability=all', '--system-call-filter=@mount @swap',
           '--bind=/dev/loop-control', '--bind=/dev/fuse',
           '--console=read-only', '--link-journal=no', '--resolv-conf=off', '--timezone=off']
    cmd += ['--bind=/dev/loop%d' % i for i in range(loop_count)]
    if systemd_is_init():
        # Registered as a machine (machinectl works): the scope's device policy must allow
        # the nodes bound above.
        cmd += ['--property=DeviceAllow=block-loop rwm', '--property=DeviceAllow=/dev/loop-control rwm',
                '--property=DeviceAllow=/dev/fuse rwm']
    else:
        # No systemd on the host: no machined to register with and no scope to allocate.
        cmd += ['--register=no', '--keep-unit']
    log_path = os.path.join(state, 'hosts', host, 'console.log')
    with open(log_path, 'ab') as console:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    return proc.pid


def ssh_base(state):
    return ['ssh', '-F', os.path.join(state, 'ssh', SSH_OPTS_FILE)]


def wait_for_ssh(state, host, pid, deadline):
    """Until `ssh host true` works with StrictHostKeyChecking=yes (proves sshd runs with the key we know)."""
    last = ''
    while time.time() < deadline:
        if not pid_alive(pid):
            raise LabError('host %s: systemd-nspawn exited during boot; see %s' % (
                host, os.path.join(state, 'hosts', host, 'console.log')))
        proc = run(ssh_base(state) + ['-o', 'ConnectTimeout=2', host, 'true'], check=False, timeout=30)
        if proc.returncode == 0:
            return
        last = proc.stderr.strip()
        time.sleep(0.3)
    raise LabError('host %s: no SSH login before the timeout (%s); console: %s' % (
        host, last, os.path.join(state, 'hosts', host, 'console.log')))


# ---------------------------------------------------------------------------------------------- lab files

def ensure_lab_key(state):
    key = os.path.join(state, 'ssh', 'id_ed25519')
    if not os.path.isfile(key) or not os.path.isfile(key + '.pub'):
        for path in (key, key + '.pub'):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'vmimages-multistore-lab', '-f', key])
    with open(key + '.pub') as handle:
        return key, handle.read()


def write_ssh_files(state, name, info):
    ssh_dir = os.path.join(state, 'ssh')
    known_hosts = os.path.join(ssh_dir, 'known_hosts')
    lines = []
    for host, item in info.items():
        for key in item['host_keys']:
            lines.append('%s,%s %s' % (host, item['mgmt_address'], key))
    write_file(known_hosts, '\n'.join(lines) + '\n')
    config = ['# Generated by tests/lab/lab.py for lab %s: ssh -F %s HOST' % (name, os.path.join(ssh_dir, SSH_OPTS_FILE))]
    for host, item in info.items():
        config += ['Host %s %s' % (host, item['mgmt_address']),
                   '    HostName %s' % item['mgmt_address'],
                   '    User root',
                   '    IdentityFile %s' % os.path.join(ssh_dir, 'id_ed25519'),
                   '    IdentitiesOnly yes',
                   '    UserKnownHostsFile %s' % known_hosts,
                   '    GlobalKnownHostsFile /dev/null',
                   '    StrictHostKeyChecking yes',
                   '    BatchMode yes',
                   '    LogLevel ERROR']
    write_file(os.path.join(ssh_dir, SSH_OPTS_FILE), '\n'.join(config) + '\n')
    return known_hosts


def yaml_str(value):
    return json.dumps(value)        # a JSON string is a valid YAML double-quoted scalar


def write_inventory(state, name, hosts, subnets, info, key, known_hosts):
    common = '-o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes' % known_hosts
    control_dir = os.path.join(runtime_dir(name), 'cp')
    out = ['# Generated by tests/lab/lab.py for lab %s; re-written by every `lab.py create`.' % name,
           '# eth0 = mgmt (addressed by the lab), eth1 = data, eth2 = sync (no addresses: the',
           '# lab_*_address values are suggestions for multistore_networks, not configured).',
           'all:', '  vars:', '    lab_name: %s' % yaml_str(name), '    lab_networks:']
    for net, ifname in NETS:
        out.append('      %s: {cidr: %s, interface: %s}' % (net, yaml_str(str(subnets[net])), ifname))
    out.append('  hosts:')
    for index, host in enumerate(hosts, 1):
        out += ['    %s:' % host,
                '      ansible_host: %s' % info[host]['mgmt_address'],
                '      ansible_user: root',
                '      ansible_ssh_private_key_file: %s' % yaml_str(key),
                '      ansible_ssh_common_args: %s' % yaml_str(common),
                # ControlPersist sockets in a per-lab directory that destroy closes first.
                '      ansible_control_path_dir: %s' % yaml_str(control_dir),
                '      ansible_python_interpreter: /usr/bin/python3',
                '      lab_index: %d' % index]
        for net, ifname in NETS[1:]:
            out += ['      lab_%s_interface: %s' % (net, ifname),
                    '      lab_%s_address: %s' % (net, yaml_str(host_address(subnets[net], index, True)))]
    groups = {}
    for host in hosts:
        groups.setdefault(host.rstrip('0123456789') + '_hosts', []).append(host)
    out.append('  children:')
    for group, members in sorted(groups.items()):
        out += ['    %s:' % group, '      hosts:'] + ['        %s:' % h for h in members]
    path = os.path.join(state, 'inventory.yml')
    write_file(path, '\n'.join(out) + '\n')
    return path


def save_state(state, data):
    write_file(os.path.join(state, 'lab.json'), json.dumps(data, indent=2, sort_keys=True) + '\n')


# ---------------------------------------------------------------------------------------------- commands

def parse_subnets(args):
    subnets = {}
    for net in NET_NAMES:
        value = getattr(args, net + '_net')
        try:
            subnets[net] = ipaddress.ip_network(value)
        except ValueError as exc:
            raise LabError('--%s-net %s: %s' % (net, value, exc))
        if subnets[net].version != 4:
            raise LabError('--%s-net: IPv4 only' % net)
    for a, b in ((x, y) for x in subnets for y in subnets if x < y):
        if subnets[a].overlaps(subnets[b]):
            raise LabError('--%s-net and --%s-net overlap' % (a, b))
    return subnets


def summary(state, lab):
    """The JSON printed by create and status."""
    ssh_dir = os.path.join(state, 'ssh')
    result = {
        'name': lab['name'], 'state_dir': state, 'inventory': os.path.join(state, 'inventory.yml'),
        'ssh_config': os.path.join(ssh_dir, SSH_OPTS_FILE), 'networks': {},
        'interfaces': {ifname: net for net, ifname in NETS}, 'hosts': {},
    }
    for net, ifname in NETS:
        result['networks'][net] = {'cidr': lab['subnets'][net], 'interface': ifname, 'addressed_by_lab': net == 'mgmt'}
    result['networks']['mgmt']['root_namespace'] = {'interface': lab['root_if'], 'address': lab['gateway']}
    for host, item in lab['hosts'].items():
        result['hosts'][host] = {
            'mgmt_address': item['mgmt_address'], 'ssh_port': 22, 'user': 'root',
            'key': os.path.join(ssh_dir, 'id_ed25519'), 'known_hosts': os.path.join(ssh_dir, 'known_hosts'),
            'netns': item['netns'], 'interfaces': {'eth0': 'mgmt', 'eth1': 'data', 'eth2': 'sync'},
            'root': item['merged'], 'pid': item.get('pid'),
        }
    return result


def cmd_create(args):
    check_root()
    name = args.name
    hosts = [h.strip() for h in args.hosts.split(',') if h.strip()]
    if not hosts or len(set(hosts)) != len(hosts):
        raise LabError('--hosts: give distinct host names, e.g. central,edge1,edge2')
    for host in hosts:
        if not HOST_RE.match(host):
            raise LabError('host name %r: use 1-15 lowercase letters/digits, starting with a letter' % host)
    subnets = parse_subnets(args)
    packages = list(PACKAGES) + [p for p in args.extra_packages.split(',') if p]
    for tool in ('systemd-nspawn', 'ip', 'ssh', 'ssh-keygen', 'losetup', 'zstd'):
        if not shutil.which(tool):
            raise LabError('%s not found: see "Requirements" in tests/lab/README.md' % tool)
    started = time.time()
    names = Names(name)
    with lab_lock(name):
        state = resolve_state_dir(name, args.state_dir)
        previous = read_json(os.path.join(state, 'lab.json'))
        if previous:
            if previous['host_list'] != hosts or previous['subnets'] != {k: str(v) for k, v in subnets.items()}:
                raise LabError('lab %s exists with hosts %s and networks %s: destroy it first (lab.py destroy --name %s)' % (
                    name, ','.join(previous['host_list']), previous['subnets'], name))
        elif os.path.isdir(state) and os.listdir(state) and not os.path.exists(os.path.join(state, MARKER)):
            raise LabError('%s exists and is not a lab state dir: choose another --state-dir' % state)
        if not link_exists(names.root_if):
            check_subnet_free(names, subnets['mgmt'])
        os.makedirs(os.path.join(state, 'ssh'), exist_ok=True)
        write_file(os.path.join(state, MARKER), 'state of the vmimages-multistore test lab %s\n' % name)
        run_dir = runtime_dir(name)
        os.makedirs(os.path.join(run_dir, 'cp'), exist_ok=True)
        pointer = os.path.join(run_dir, 'state-dir')
        if not os.path.islink(pointer) or os.readlink(pointer) != state:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pointer)
            os.symlink(state, pointer)

        key_id = base_key(packages)
        if previous and previous.get('base') != key_id and any(
                is_mounted(h['merged']) for h in previous['hosts'].values()):
            raise LabError('lab %s runs on another base image (package list changed): destroy it first' % name)
        lower = ensure_base(packages)
        lab = previous or {}
        mgmt = subnets['mgmt']
        lab.update({'name': name, 'host_list': hosts, 'subnets': {k: str(v) for k, v in subnets.items()},
                    'base': key_id, 'root_if': names.root_if, 'switch_ns': names.switch_ns,
                    'gateway': '%s/%d' % (mgmt.network_address + 1, mgmt.prefixlen),
                    'loop_devices': args.loop_devices, 'lower': lower})
        lab.setdefault('hosts', {})
        save_state(state, lab)

        ensure_loop_nodes(args.loop_devices)
        setup_switch(names, subnets)
        key, pubkey = ensure_lab_key(state)
        booted = []
        for index, host in enumerate(hosts, 1):
            item = lab['hosts'].setdefault(host, {})
            item.update({'index': index, 'netns': names.host_ns(host),
                         'mgmt_address': host_address(mgmt, index)})
            setup_host_network(names, host, index, subnets)
            merged, overlay_dev = mount_overlay(state, host, lower)
            item.update({'merged': merged, 'overlay_dev': overlay_dev})
            save_state(state, lab)     # destroy can undo the mount from here on
            personalize_host(merged, host, hosts, subnets, pubkey)
        generate_host_keys([lab['hosts'][host]['merged'] for host in hosts])
        for host in hosts:
            item = lab['hosts'][host]
            merged = item['merged']
            item['host_keys'] = host_public_keys(merged)
            if not (item.get('pid') and is_our_nspawn(item['pid'], merged)):
                item['pid'] = boot_host(state, names, host, merged, args.loop_devices)
                item.pop('leader', None)
                booted.append(host)
            save_state(state, lab)
        known_hosts = write_ssh_files(state, name, lab['hosts'])
        deadline = time.time() + args.timeout
        for host in hosts:
            item = lab['hosts'][host]
            wait_for_ssh(state, host, item['pid'], deadline)
            item['leader'] = container_leader(item['pid'])
        save_state(state, lab)
        write_inventory(state, name, hosts, subnets, lab['hosts'], key, known_hosts)
        result = summary(state, lab)
        result['booted'] = booted
        result['seconds'] = round(time.time() - started, 1)
        log('lab %s ready in %.1f s (%s booted): ssh -F %s %s' % (
            name, time.time() - started, ','.join(booted) or 'none', result['ssh_config'], hosts[0]))
        print(json.dumps(result, indent=2, sort_keys=True))


def close_ssh_masters(state, name):
    """Ansible's ControlPersist masters (and any ssh/sshfs/rsync of this lab) first: a master whose
    peer's namespace vanished hangs until its keepalive gives up."""
    for sock in glob.glob(os.path.join(runtime_dir(name), 'cp', '*')):
        run(['ssh', '-o', 'ControlPath=' + sock, '-O', 'exit', 'lab'], check=False, timeout=10)
    markers = [state.rstrip('/') + '/', runtime_dir(name) + '/']
    skip = own_ancestors()
    pids = []
    for pid in all_pids():
        if pid in skip:
            continue
        try:
            exe = os.path.basename(os.readlink('/proc/%d/exe' % pid))
        except OSError:
            continue
        # A ControlPersist master renames itself "ssh: <control path> [mux]": match in any argument.
        if exe in ('ssh', 'sshfs', 'scp', 'sftp', 'rsync') and any(m in arg for arg in cmdline(pid) for m in markers):
            pids.append(pid)
    left = kill_and_wait(pids, signal.SIGTERM, 5)
    kill_and_wait(left, signal.SIGKILL, 5)


def stop_hosts(lab, names):
    """SIGTERM to our recorded nspawn PIDs (nspawn asks systemd inside to halt), then SIGKILL to
    the containers' PID 1 and whatever still runs in the lab's namespaces."""
    nspawn_pids = []
    for item in lab.get('hosts', {}).values():
        pid = item.get('pid')
        if pid and is_our_nspawn(pid, item.get('merged', '')):
            nspawn_pids.append(pid)
    left = kill_and_wait(nspawn_pids, signal.SIGTERM, 30)
    if left:
        log('hosts did not halt within 30 s: killing them')
    namespaces = set(item.get('netns') for item in lab.get('hosts', {}).values() if item.get('netns'))
    namespaces.update(ns for ns in netns_list() if names.host_ns_re().match(ns))
    namespaces.add(names.switch_ns)
    for attempt in range(3):
        pids = [p for ns in namespaces for p in pids_in_netns(ns)] + [p for p in left if pid_alive(p)]
        if not pids:
            break
        kill_and_wait(pids, signal.SIGKILL, 10)
    return namespaces


def netns_list():
    proc = run(['ip', '-j', 'netns', 'list'], check=False)
    try:
        return [item['name'] for item in json.loads(proc.stdout or '[]')]
    except ValueError:
        return []


def overlay_devices(state, lab):
    """Devices of the hosts' overlays: recorded, and of whatever is still mounted under the state dir."""
    devs = set(item['overlay_dev'] for item in lab.get('hosts', {}).values() if item.get('overlay_dev'))
    for point in mounts_under(state):
        with contextlib.suppress(OSError):
            st = os.stat(point)
            devs.add('%d:%d' % (os.major(st.st_dev), os.minor(st.st_dev)))
    return sorted(devs)


def detach_loops(state, overlay_devs):
    deadline = time.time() + 20
    while True:
        loops = lab_loop_devices(state, overlay_devs)
        if not loops:
            return []
        for dev in reversed(loops):    # nested ones (found later) first
            run(['losetup', '-d', dev], check=False)
        time.sleep(0.2)
        if time.time() > deadline:
            return lab_loop_devices(state, overlay_devs)


def unmount_all(state):
    failed = []
    for point in sorted(mounts_under(state), key=len, reverse=True):
        if run(['umount', point], check=False).returncode != 0:
            time.sleep(0.5)
            if run(['umount', point], check=False).returncode != 0:
                failed.append(point)
    return [p for p in failed if is_mounted(p)]


def lab_process_alive(pid, merged):
    """A recorded nspawn (same command line) or container PID 1 (another PID namespace) still running;
    not an unrelated process that got the same PID since."""
    if is_our_nspawn(pid, merged):
        return True
    try:
        return pid_alive(pid) and os.stat('/proc/%d/ns/pid' % pid).st_ino != os.stat('/proc/self/ns/pid').st_ino
    except OSError:
        return False


def leftovers(state, names, namespaces, pids, overlay_devs):
    found = []
    for ns in netns_list():
        if ns in namespaces or ns == names.switch_ns or names.host_ns_re().match(ns):
            found.append('netns ' + ns)
    if link_exists(names.root_if):
        found.append('link ' + names.root_if)
    found += ['mount ' + p for p in mounts_under(state)]
    found += ['loop device ' + d for d in lab_loop_devices(state, overlay_devs)]
    found += ['process %d' % p for p, merged in sorted(pids.items()) if lab_process_alive(p, merged)]
    if os.path.exists(state):
        found.append('directory ' + state)
    return found


def cmd_destroy(args):
    check_root()
    name = args.name
    names = Names(name)
    with lab_lock(name) as lock_path:
        state = resolve_state_dir(name, args.state_dir)
        lab = read_json(os.path.join(state, 'lab.json'), {}) or {}
        if os.path.isdir(state) and os.listdir(state) and not os.path.exists(os.path.join(state, MARKER)):
            raise LabError('%s is not a lab state dir (no %s): not touching it' % (state, MARKER))
        started = time.time()
        recorded = {item[k]: item.get('merged', '') for item in lab.get('hosts', {}).values()
                    for k in ('pid', 'leader') if item.get(k)}
        close_ssh_masters(state, name)
        namespaces = stop_hosts(lab, names)
        overlay_devs = overlay_devices(state, lab)
        stuck_loops = detach_loops(state, overlay_devs)
        stuck_mounts = unmount_all(state)
        for ns in sorted(namespaces):
            if ns_exists(ns):
                run(['ip', 'netns', 'del', ns], check=False)
        if link_exists(names.root_if):
            run(['ip', 'link', 'del', names.root_if], check=False)
        if not stuck_mounts and not stuck_loops and os.path.isdir(state):
            shutil.rmtree(state)
        left = leftovers(state, names, namespaces, recorded, overlay_devs)
        if not left:                # else keep the pointer to the state dir for the next destroy
            shutil.rmtree(runtime_dir(name), ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock_path)
            with contextlib.suppress(OSError):
                os.rmdir(RUN_ROOT)      # only when no other lab uses it
    result = {'name': name, 'destroyed': not left, 'leftovers': left, 'seconds': round(time.time() - started, 1)}
    print(json.dumps(result, indent=2, sort_keys=True))
    if left:
        raise LabError('lab %s: left behind: %s. A busy mount or loop device is held by a process outside the lab '
                       '(`fuser -vm PATH`, `losetup -l`): end it, then run destroy again' % (name, ', '.join(left)))
    log('lab %s destroyed in %.1f s' % (name, time.time() - started))


def cmd_status(args):
    check_root()
    state = resolve_state_dir(args.name, args.state_dir)
    lab = read_json(os.path.join(state, 'lab.json'))
    if not lab:
        print(json.dumps({'name': args.name, 'exists': False}, indent=2))
        return
    result = summary(state, lab)
    result['exists'] = True
    for host, item in lab['hosts'].items():
        running = bool(item.get('pid')) and is_our_nspawn(item['pid'], item['merged'])
        pids = pids_in_netns(item['netns'])
        ssh_open = False
        if running:
            with contextlib.suppress(OSError), socket.create_connection((item['mgmt_address'], 22), timeout=1):
                ssh_open = True
        result['hosts'][host].update({
            'running': running, 'netns_exists': ns_exists(item['netns']),
            'overlay_mounted': is_mounted(item['merged']), 'ssh_open': ssh_open,
            'processes': len(pids), 'memory_kib': memory_kib(pids),
            'shaping': {ifname: qdisc(item['netns'], ifname) for ifname in INTERFACES.values()},
        })
    result['loop_devices'] = lab_loop_devices(state, [i['overlay_dev'] for i in lab['hosts'].values() if i.get('overlay_dev')])
    print(json.dumps(result, indent=2, sort_keys=True))


def qdisc(ns, ifname):
    proc = run(['tc', '-n', ns, '-j', 'qdisc', 'show', 'dev', ifname, 'root'], check=False)
    with contextlib.suppress(ValueError):
        for item in json.loads(proc.stdout or '[]'):
            if item.get('kind') in ('tbf', 'netem'):
                return {'kind': item['kind'], 'options': item.get('options', {})}
    return None


RATE_UNITS = {'bit': 1, 'kbit': 1e3, 'mbit': 1e6, 'gbit': 1e9, 'bps': 8, 'kbps': 8e3, 'mbps': 8e6, 'gbps': 8e9}


def rate_bits(rate):
    match = re.match(r'^(\d+(?:\.\d+)?)([a-z]+)$', rate.lower())
    if not match or match.group(2) not in RATE_UNITS:
        raise LabError('--rate %s: use a number and one of %s (e.g. 100mbit)' % (rate, ', '.join(RATE_UNITS)))
    return float(match.group(1)) * RATE_UNITS[match.group(2)]


def cmd_shape(args):
    check_root()
    state = resolve_state_dir(args.name, args.state_dir)
    lab = read_json(os.path.join(state, 'lab.json'))
    if not lab or args.host not in lab.get('hosts', {}):
        raise LabError('no host %s in lab %s' % (args.host, args.name))
    names = Names(args.name)
    item = lab['hosts'][args.host]
    ifname = INTERFACES[args.net]
    # Both ends: the host's eth (its egress) and its switch port (its ingress).
    ends = [(item['netns'], ifname), (names.switch_ns, names.switch_port(item['index'], args.net))]
    if args.clear:
        for ns, dev in ends:
            if qdisc(ns, dev):
                run(['tc', '-n', ns, 'qdisc', 'del', 'dev', dev, 'root'])
        print(json.dumps({'host': args.host, 'net': args.net, 'interface': ifname, 'shaping': None}))
        return
    if not args.rate and not args.delay:
        raise LabError('give --rate and/or --delay, or --clear')
    if args.delay:
        spec = ['netem', 'delay', args.delay, 'limit', '100000'] + (['rate', args.rate] if args.rate else [])
    else:
        bits = rate_bits(args.rate)
        burst = max(32 * 1024, int(bits / 8 / 100))       # 10 ms worth of bytes
        spec = ['tbf', 'rate', args.rate, 'burst', str(burst), 'latency', '100ms']
    for ns, dev in ends:
        proc = run(['tc', '-n', ns, 'qdisc', 'replace', 'dev', dev, 'root'] + spec, check=False)
        if proc.returncode != 0:
            if 'netem' in spec and 'unknown' in proc.stderr.lower():
                raise LabError('this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM): --delay is not available; '
                               '--rate alone uses tbf')
            raise LabError('tc failed on %s in %s: %s' % (dev, ns, proc.stderr.strip()))
    print(json.dumps({'host': args.host, 'net': args.net, 'interface': ifname,
                      'shaping': qdisc(item['netns'], ifname)}, sort_keys=True))


def cmd_exec(args):
    check_root()
    state = resolve_state_dir(args.name, args.state_dir)
    lab = read_json(os.path.join(state, 'lab.json'))
    item = (lab or {}).get('hosts', {}).get(args.host)
    if not item or not item.get('leader') or not pid_alive(item['leader']):
        raise LabError('host %s of lab %s is not running' % (args.host, args.name))
    command = args.command[1:] if args.command[:1] == ['--'] else args.command
    os.execvp('nsenter', ['nsenter', '--target', str(item['leader']), '--mount', '--uts', '--ipc', '--net',
                          '--pid', '--root', '--wd', '--'] + (command or ['/bin/bash', '-l']))


def main(argv=None):
    parser = argparse.ArgumentParser(description='Multi-host test lab: Debian %s hosts as systemd-nspawn containers '
                                     'in network namespaces (see tests/lab/README.md).' % SUITE)
    sub = parser.add_subparsers(dest='command_name')
    sub.required = True

    def common(p):
        p.add_argument('--name', required=True, help='lab name: lowercase letters, digits, dashes (max 20)')
        p.add_argument('--state-dir', help='default: $LAB_STATE/NAME or ~/.local/state/vmimages-multistore-lab/NAME')
        return p

    p = common(sub.add_parser('create', help='create (or complete) a lab and wait until every host answers SSH'))
    p.add_argument('--hosts', required=True, help='comma-separated host names, e.g. central,edge1,edge2')
    for net in NET_NAMES:
        p.add_argument('--%s-net' % net, default=DEFAULT_SUBNETS[net], help='%s subnet (default %s)' % (net, DEFAULT_SUBNETS[net]))
    p.add_argument('--extra-packages', default='', help='comma-separated Debian packages added to the base image')
    p.add_argument('--loop-devices', type=int, default=32, help='loop device nodes bound into each host (default 32)')
    p.add_argument('--timeout', type=float, default=120, help='seconds to wait for SSH on all hosts (default 120)')
    p.set_defaults(func=cmd_create)
    p = common(sub.add_parser('destroy', help='stop the hosts and remove everything of the lab'))
    p.set_defaults(func=cmd_destroy)
    p = common(sub.add_parser('status', help='JSON status of the lab'))
    p.set_defaults(func=cmd_status)
    p = common(sub.add_parser('shape', help='limit rate (tbf) or add delay (netem) on one host network'))
    p.add_argument('--host', required=True)
    p.add_argument('--net', choices=NET_NAMES, required=True)
    p.add_argument('--rate', help='e.g. 100mbit')
    p.add_argument('--delay', help='e.g. 20ms (needs netem in the kernel)')
    p.add_argument('--clear', action='store_true', help='remove the shaping')
    p.set_defaults(func=cmd_shape)
    p = common(sub.add_parser('exec', help='run a command inside a host (nsenter), default a login shell'))
    p.add_argument('--host', required=True)
    p.add_argument('command', nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_exec)
    args = parser.parse_args(argv)
    if not NAME_RE.match(args.name):
        parser.error('--name %r: 1-20 lowercase letters, digits or dashes, starting with a letter' % args.name)
    try:
        args.func(args)
    except LabError as exc:
        log('ERROR: %s' % exc)
        if args.func is cmd_create:
            log('anything made so far stays for inspection; remove it with: lab.py destroy --name %s%s' % (
                args.name, ' --state-dir ' + args.state_dir if args.state_dir else ''))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
