#!/usr/bin/env python3
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real single-node Ceph (Debian's Pacific packages) for the tests, all state in one directory.

    cephlab.py install                       Debian packages (apt-get) when missing
    cephlab.py start --dir DIR [--timeout S] 1 mon, 1 mgr, 1 bluestore OSD (sparse file), radosgw;
                                             pool `images`, client.multistore, S3 + Swift user;
                                             prints DIR/cluster.json
    cephlab.py stop --dir DIR [--purge]      rgw, osd, mgr, mon (SIGTERM, then SIGKILL); --purge removes DIR
    cephlab.py rgw-stop --dir DIR            stop radosgw only
    cephlab.py rgw-start --dir DIR           start radosgw only, wait until it answers HTTP
    cephlab.py osd-stop --dir DIR            stop the OSD only at once (as a storage host dies), wait until it is down
    cephlab.py osd-start --dir DIR           start the OSD only, wait for HEALTH_OK (every PG active+clean)
    cephlab.py status --dir DIR              `ceph -s`; exit 0 when HEALTH_OK

Nothing uses /etc/ceph or /var/lib/ceph: every daemon and every CLI call gets --conf DIR/ceph.conf,
keyrings, pid files, sockets, logs and data live in DIR, mon and rgw listen on free 127.0.0.1 ports
picked at the first start. Several clusters can run side by side (different DIRs). Only processes
whose pid file is in DIR *and* whose command line names DIR/ceph.conf are ever signalled.

Layout of DIR: ceph.conf, cluster.json (0600), ceph.client.admin.keyring,
ceph.client.multistore.keyring (0600), mon/ mgr/ osd/ (osd/block: sparse file) rgw/, run/ (pid files,
admin sockets), log/ (daemon logs, *.out: daemon stdout/stderr).
"""

import argparse
import errno
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

PACKAGES = ('ceph-mon', 'ceph-mgr', 'ceph-osd', 'radosgw', 'ceph-common', 'python3-rbd', 'python3-rados',
            'qemu-block-extra')

MON_ID = 'a'
MGR_ID = 'x'
OSD_ID = 0
RGW_NAME = 'client.rgw.a'
RBD_USER = 'multistore'
RBD_POOL = 'images'
RGW_UID = 'multistore'
S3_REGION = 'default'
OSD_SIZE = 20 * 1024 ** 3

# mgr modules a lab never uses (the always-on ones cannot be disabled): each costs mgr start time
MGR_DISABLED = ('alerts', 'diskprediction_local', 'influx', 'insights', 'localpool', 'mirroring', 'nfs',
                'osd_perf_query', 'osd_support', 'prometheus', 'restful', 'selftest', 'snap_schedule', 'stats',
                'telegraf', 'test_orchestrator', 'zabbix')

# stop order: rgw first, then the OSD, then mgr and mon
DAEMONS = ('rgw', 'osd', 'mgr', 'mon')

CLUSTER_KEYS = ('dir', 'fsid', 'conf', 'mon_host', 'admin_keyring', 'rbd_user', 'rbd_keyring', 'rbd_pool',
                'rgw_endpoint', 's3_access_key', 's3_secret_key', 's3_region', 'swift_auth_url', 'swift_user',
                'swift_key')


class LabError(Exception):
    pass


def log(msg):
    print('cephlab: %s' % msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------- install

def missing_packages():
    missing = []
    for pkg in PACKAGES:
        res = subprocess.run(['dpkg-query', '-W', '-f=${db:Status-Status}', pkg],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True, check=False)
        if res.returncode != 0 or res.stdout.strip() != 'installed':
            missing.append(pkg)
    return missing


def install():
    if not shutil.which('dpkg-query'):
        raise LabError('not a Debian system (no dpkg-query): install %s yourself' % ' '.join(PACKAGES))
    missing = missing_packages()
    if not missing:
        log('Ceph packages present')
        return
    if os.geteuid() != 0:
        raise LabError('missing packages %s: apt-get needs root' % ' '.join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    cmd = ['apt-get', 'install', '-y', '-q', '--no-install-recommends'] + missing
    log('installing %s' % ' '.join(missing))
    started = time.monotonic()
    res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                         check=False)
    if res.returncode != 0:
        log('apt-get install failed, running apt-get update first:\n%s' % tail_text(res.stdout, 10))
        subprocess.run(['apt-get', 'update', '-q'], env=env, check=True)
        res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True, check=False)
        if res.returncode != 0:
            raise LabError('apt-get install %s failed:\n%s' % (' '.join(missing), tail_text(res.stdout, 30)))
    still = missing_packages()
    if still:
        raise LabError('packages still missing after apt-get install: %s' % ' '.join(still))
    log('installed in %.1f s' % (time.monotonic() - started))


# ----------------------------------------------------------------------------------------- helpers

def tail_text(text, lines):
    return '\n'.join(text.rstrip('\n').splitlines()[-lines:])


def tail_file(path, lines=20):
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            return tail_text(f.read().decode('utf-8', 'replace'), lines)
    except OSError as e:
        return '(%s)' % e


def free_ports(count):
    """`count` distinct free TCP ports on 127.0.0.1 (bound together, so distinct, then released)."""
    socks = []
    try:
        for dummy in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(('127.0.0.1', 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(('127.0.0.1', port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def write_file(path, text, mode=0o644):
    tmp = '%s.tmp.%d' % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def gen_key(length, alphabet=string.ascii_letters + string.digits):
    return ''.join(secrets.choice(alphabet) for dummy in range(length))


class Lab:
    def __init__(self, directory):
        self.dir = os.path.abspath(directory)
        self.conf = os.path.join(self.dir, 'ceph.conf')
        self.state_file = os.path.join(self.dir, 'state.json')
        self.cluster_json = os.path.join(self.dir, 'cluster.json')
        self.admin_keyring = os.path.join(self.dir, 'ceph.client.admin.keyring')
        self.rbd_keyring = os.path.join(self.dir, 'ceph.client.%s.keyring' % RBD_USER)
        self.run_dir = os.path.join(self.dir, 'run')
        self.log_dir = os.path.join(self.dir, 'log')
        self._lock_fd = None

    # -------------------------------------------------------------------------------- state
    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def state(self):
        try:
            with open(self.state_file) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def save_state(self, st):
        write_file(self.state_file, json.dumps(st, indent=2, sort_keys=True) + '\n', 0o600)

    def lock(self):
        os.makedirs(self.dir, exist_ok=True)
        self._lock_fd = os.open(self.path('.lock'), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)

    def unlock(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -------------------------------------------------------------------------------- commands
    def run(self, cmd, check=True, timeout=120, input_text=None):
        res = subprocess.run(cmd, input=input_text, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=None if input_text is not None else subprocess.DEVNULL,
                             universal_newlines=True, timeout=timeout, check=False)
        if check and res.returncode != 0:
            raise LabError('%s failed (exit %d):\n%s%s'
                           % (' '.join(cmd), res.returncode, res.stdout, tail_text(res.stderr, 20)))
        return res

    def ceph(self, *args, check=True, timeout=60, fmt_json=False, input_text=None, connect_timeout=15):
        cmd = ['ceph', '--conf', self.conf, '--name', 'client.admin', '--keyring', self.admin_keyring,
               '--connect-timeout', str(connect_timeout)] + list(args)
        if fmt_json:
            cmd += ['--format', 'json']
        res = self.run(cmd, check=check, timeout=timeout, input_text=input_text)
        if fmt_json and res.returncode == 0:
            return json.loads(res.stdout or 'null')
        return res

    def rbd(self, *args):
        return self.run(['rbd', '--conf', self.conf, '--name', 'client.admin', '--keyring', self.admin_keyring]
                        + list(args))

    def radosgw_admin(self, *args, check=True):
        return self.run(['radosgw-admin', '--conf', self.conf, '--name', 'client.admin', '--keyring',
                         self.admin_keyring] + list(args), check=check)

    # -------------------------------------------------------------------------------- configuration
    def write_conf(self, st):
        d = self.dir
        conf = """# written by tests/ceph/cephlab.py: a 1-node test cluster, everything under this directory
[global]
fsid = {fsid}
mon host = {mon_host}
mon initial members = {mon_id}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = {d}/$cluster.$name.keyring
run dir = {d}/run
crash dir = {d}/crash
exporter sock dir = {d}/run
log to syslog = false
log to journald = false
err to syslog = false
clog to syslog = false
# 1 node: no replication, few PGs, no warnings a 1-node lab always has
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
auth allow insecure global id reclaim = false
mon data avail warn = 1
mon data avail crit = 0
mon osd full ratio = 0.97
mon osd backfillfull ratio = 0.96
mon osd nearfull ratio = 0.95
mon warn on osd down out interval zero = false
mon max pg per osd = 1000
paxos propose interval = 0.05
mgr initial modules = iostat
# PG states reach the mgr and HEALTH_OK reaches the mon within a second, not five
mgr stats period = 1
mon mgr digest period = 1
osd mon report interval = 1
mon osd down out interval = 0

[mon]
mon data = {d}/mon
keyring = {d}/mon/keyring
log file = {d}/log/$name.log
admin socket = {d}/run/$name.asok
mon cluster log file = {d}/log/cluster.log
mon cluster log to syslog = false

[mgr]
mgr data = {d}/mgr
keyring = {d}/mgr/keyring
log file = {d}/log/$name.log
admin socket = {d}/run/$name.asok
# modules a lab never uses load for seconds at each mgr start (the always-on ones cannot be disabled)
mgr disabled modules = {mgr_disabled}

[osd]
osd data = {d}/osd
keyring = {d}/osd/keyring
log file = {d}/log/$name.log
admin socket = {d}/run/$name.asok
osd objectstore = bluestore
bluestore block create = true
bluestore block size = {osd_size}
bluestore block db create = false
bluestore block wal create = false
bluestore fsck on mount = false
bluestore fsck on mkfs = false
osd journal = {d}/osd/journal
osd memory target = 1073741824
osd max object name len = 460
osd max object namespace len = 64

[{rgw_name}]
rgw data = {d}/rgw
keyring = {d}/rgw/keyring
log file = {d}/log/$name.log
admin socket = {d}/run/$name.asok
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw enable apis = s3, swift, swift_auth, admin
rgw thread pool size = 64
rgw gc obj min wait = 10
rgw gc processor period = 10
rgw gc processor max time = 10
rgw enable usage log = false
rgw swift account in url = false
rgw init timeout = 120
""".format(d=d, mon_id=MON_ID, rgw_name=RGW_NAME, osd_size=OSD_SIZE, mgr_disabled=' '.join(MGR_DISABLED),
           **st)
        write_file(self.conf, conf)

    # -------------------------------------------------------------------------------- processes
    def pid_file(self, daemon):
        return os.path.join(self.run_dir, '%s.pid' % daemon)

    def daemon_pid(self, daemon):
        """The pid of this DIR's `daemon` when it runs, else None (a stale or foreign pid is None)."""
        try:
            with open(self.pid_file(daemon)) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as f:
                argv = f.read().split(b'\0')
            with open('/proc/%d/stat' % pid, 'rb') as f:
                stat = f.read()
        except OSError:
            return None
        if self.conf.encode() not in argv:
            return None  # the pid was reused by another process
        if stat[stat.rindex(b')') + 2:][:1] == b'Z':
            return None  # zombie: exited, not yet reaped
        return pid

    def daemon_cmd(self, daemon):
        base = ['--conf', self.conf, '-f']
        if daemon == 'mon':
            return ['ceph-mon', '-i', MON_ID] + base
        if daemon == 'mgr':
            return ['ceph-mgr', '-i', MGR_ID] + base
        if daemon == 'osd':
            return ['ceph-osd', '-i', str(OSD_ID)] + base
        if daemon == 'rgw':
            return ['radosgw', '-n', RGW_NAME] + base
        raise ValueError(daemon)

    def spawn(self, daemon):
        if self.daemon_pid(daemon):
            return
        os.makedirs(self.run_dir, exist_ok=True)
        os.makedirs(self.log_dir, exist_ok=True)
        out = open(os.path.join(self.log_dir, '%s.out' % daemon), 'ab')
        try:
            proc = subprocess.Popen(self.daemon_cmd(daemon), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True, close_fds=True, cwd=self.dir)
        finally:
            out.close()
        write_file(self.pid_file(daemon), '%d\n' % proc.pid)
        # a daemon that dies at once (bad config, port taken) is reported here, not after a timeout
        time.sleep(0.1)
        if proc.poll() is not None:
            raise LabError('%s exited at once (exit %s):\n%s\n%s' % (
                daemon, proc.returncode, tail_file(os.path.join(self.log_dir, '%s.out' % daemon)),
                tail_file(self.daemon_log(daemon))))

    def daemon_log(self, daemon):
        name = {'mon': 'mon.' + MON_ID, 'mgr': 'mgr.' + MGR_ID, 'osd': 'osd.%d' % OSD_ID, 'rgw': RGW_NAME}[daemon]
        return os.path.join(self.log_dir, '%s.log' % name)

    def kill(self, daemon, timeout=20.0):
        pid = self.daemon_pid(daemon)
        if pid is None:
            try:
                os.unlink(self.pid_file(daemon))
            except FileNotFoundError:
                pass
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.daemon_pid(daemon) == pid:
            time.sleep(0.05)
        if self.daemon_pid(daemon) == pid:
            log('%s (pid %d) still runs %.0f s after SIGTERM: SIGKILL' % (daemon, pid, timeout))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            while self.daemon_pid(daemon) == pid:
                time.sleep(0.05)
        os.unlink(self.pid_file(daemon))
        return True

    # -------------------------------------------------------------------------------- bootstrap
    def bootstrap(self, st):
        """Create configuration, keys and the mon store, once."""
        if not st.get('fsid'):
            mon2, mon1, rgw = free_ports(3)
            st.update(fsid=str(uuid.uuid4()), mon_port_v2=mon2, mon_port_v1=mon1, rgw_port=rgw,
                      mon_host='[v2:127.0.0.1:%d,v1:127.0.0.1:%d]' % (mon2, mon1))
            self.save_state(st)
        for sub in ('mon', 'mgr', 'osd', 'rgw', 'run', 'log', 'crash'):
            os.makedirs(self.path(sub), mode=0o700, exist_ok=True)
        self.write_conf(st)
        if not st.get('mon_done'):
            mon_keyring = self.path('mon.keyring')  # the initial one; --mkfs copies it to mon/keyring
            for p in (mon_keyring, self.admin_keyring, self.path('monmap')):
                if os.path.exists(p):
                    os.unlink(p)
            shutil.rmtree(self.path('mon'))
            os.makedirs(self.path('mon'), mode=0o700)
            self.run(['ceph-authtool', '--create-keyring', mon_keyring, '--gen-key', '-n', 'mon.',
                      '--cap', 'mon', 'allow *'])
            self.run(['ceph-authtool', '--create-keyring', self.admin_keyring, '--gen-key', '-n', 'client.admin',
                      '--cap', 'mon', 'allow *', '--cap', 'osd', 'allow *', '--cap', 'mds', 'allow *',
                      '--cap', 'mgr', 'allow *'])
            os.chmod(self.admin_keyring, 0o600)
            self.run(['ceph-authtool', mon_keyring, '--import-keyring', self.admin_keyring])
            self.run(['monmaptool', '--create', '--fsid', st['fsid'], '--addv', MON_ID, st['mon_host'],
                      self.path('monmap')])
            self.run(['ceph-mon', '--conf', self.conf, '--mkfs', '-i', MON_ID, '--monmap', self.path('monmap'),
                      '--keyring', mon_keyring])
            st['mon_done'] = True
            self.save_state(st)

    def check_ports(self, st):
        for daemon, ports in (('mon', (st['mon_port_v2'], st['mon_port_v1'])), ('rgw', (st['rgw_port'],))):
            if self.daemon_pid(daemon):
                continue
            busy = [p for p in ports if not port_free(p)]
            if busy:
                raise LabError('%s of %s cannot start: port(s) %s on 127.0.0.1 are taken by another process '
                               '(run `cephlab.py stop --dir %s --purge` and start again)'
                               % (daemon, self.dir, ', '.join(map(str, busy)), self.dir))

    def setup_mgr(self, st):
        if not st.get('mgr_done'):
            self.ceph('auth', 'get-or-create', 'mgr.' + MGR_ID, 'mon', 'allow profile mgr', 'osd', 'allow *',
                      'mds', 'allow *', '-o', self.path('mgr', 'keyring'))
            st['mgr_done'] = True
            self.save_state(st)

    def setup_osd(self, st):
        if st.get('osd_done'):
            return
        shutil.rmtree(self.path('osd'))
        os.makedirs(self.path('osd'), mode=0o700)
        osd_uuid = str(uuid.uuid4())
        secret = self.run(['ceph-authtool', '--gen-print-key']).stdout.strip()
        # `osd new` is idempotent for the same uuid; id 0 on a fresh cluster
        out = self.ceph('osd', 'new', osd_uuid, str(OSD_ID), '-i', '-',
                        input_text=json.dumps({'cephx_secret': secret})).stdout.strip()
        if out != str(OSD_ID):
            raise LabError('ceph osd new returned %r, expected %d' % (out, OSD_ID))
        self.run(['ceph-authtool', '--create-keyring', self.path('osd', 'keyring'), '--name', 'osd.%d' % OSD_ID,
                  '--add-key', secret])
        self.run(['ceph-osd', '--conf', self.conf, '-i', str(OSD_ID), '--mkfs', '--osd-uuid', osd_uuid],
                 timeout=300)
        st['osd_done'] = True
        self.save_state(st)

    def setup_rgw_key(self, st):
        if not st.get('rgw_key_done'):
            self.ceph('auth', 'get-or-create', RGW_NAME, 'mon', 'allow rw', 'osd', 'allow rwx', 'mgr', 'allow rw',
                      '-o', self.path('rgw', 'keyring'))
            st['rgw_key_done'] = True
            self.save_state(st)

    def setup_pool(self, st):
        if st.get('pool_done'):
            return
        pools = self.ceph('osd', 'pool', 'ls', fmt_json=True)
        if RBD_POOL not in pools:
            self.ceph('osd', 'pool', 'create', RBD_POOL, '8', '8', 'replicated', '--size', '1',
                      '--autoscale-mode', 'off')
        self.rbd('pool', 'init', RBD_POOL)
        st['pool_done'] = True
        self.save_state(st)

    def setup_client(self, st):
        if st.get('client_done') and os.path.exists(self.rbd_keyring):
            return
        key = self.ceph('auth', 'get-or-create', 'client.' + RBD_USER, 'mon', 'profile rbd',
                        'osd', 'profile rbd pool=%s' % RBD_POOL, 'mgr', 'profile rbd pool=%s' % RBD_POOL).stdout
        write_file(self.rbd_keyring, key if key.endswith('\n') else key + '\n', 0o600)
        st['client_done'] = True
        self.save_state(st)

    def setup_rgw_user(self, st):
        if st.get('rgw_user_done'):
            return
        if not st.get('s3_access_key'):
            st.update(s3_access_key=gen_key(20, string.ascii_uppercase + string.digits), s3_secret_key=gen_key(40),
                      swift_key=gen_key(40))
            self.save_state(st)
        res = self.radosgw_admin('user', 'info', '--uid', RGW_UID, check=False)
        if res.returncode != 0:
            self.radosgw_admin('user', 'create', '--uid', RGW_UID, '--display-name', 'vmimages tests',
                               '--access-key', st['s3_access_key'], '--secret-key', st['s3_secret_key'])
        self.radosgw_admin('subuser', 'create', '--uid', RGW_UID, '--subuser', RGW_UID + ':swift',
                           '--access', 'full', '--key-type', 'swift', '--secret-key', st['swift_key'])
        st['rgw_user_done'] = True
        self.save_state(st)

    # -------------------------------------------------------------------------------- waiting
    def status_json(self):
        res = self.ceph('status', check=False, timeout=30, fmt_json=True, connect_timeout=5)
        return res if isinstance(res, dict) else None

    def osds_up(self, st=None):
        st = st or self.status_json() or {}
        osdmap = st.get('osdmap', {})
        osdmap = osdmap.get('osdmap', osdmap)  # nested in older releases
        return osdmap.get('num_up_osds', 0)

    def health_problem(self, need_osd=True):
        """None when the cluster is HEALTH_OK with the OSD up and every PG active+clean, else why not."""
        st = self.status_json()
        if st is None:
            return 'ceph status does not answer'
        health = st.get('health', {}).get('status')
        if health != 'HEALTH_OK':
            checks = st.get('health', {}).get('checks', {})
            return '%s: %s' % (health, '; '.join('%s: %s' % (k, v.get('summary', {}).get('message', ''))
                                                 for k, v in checks.items()))
        if need_osd:
            if self.osds_up(st) < 1:
                return 'OSD not up yet'
            pgmap = st.get('pgmap', {})
            total = pgmap.get('num_pgs', 0)
            clean = sum(s['count'] for s in pgmap.get('pgs_by_state', []) if s['state_name'] == 'active+clean')
            if clean != total:
                return '%d of %d PGs active+clean' % (clean, total)
        if not st.get('mgrmap', {}).get('available', False):
            return 'no active mgr'
        return None

    def diagnostics(self):
        parts = []
        res = self.ceph('-s', check=False, timeout=20, connect_timeout=5)
        parts.append('--- ceph -s (exit %d)\n%s%s' % (res.returncode, res.stdout, tail_text(res.stderr, 5)))
        for daemon in ('mon', 'mgr', 'osd', 'rgw'):
            parts.append('--- %s: %s; tail of %s\n%s' % (
                daemon, 'pid %s' % self.daemon_pid(daemon) if self.daemon_pid(daemon) else 'NOT RUNNING',
                self.daemon_log(daemon), tail_file(self.daemon_log(daemon), 15)))
            out = os.path.join(self.log_dir, '%s.out' % daemon)
            if os.path.exists(out) and os.path.getsize(out):
                parts.append('--- %s\n%s' % (out, tail_file(out, 10)))
        return '\n'.join(parts)

    def wait(self, what, probe, timeout):
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                last = probe()
            except (LabError, subprocess.TimeoutExpired, OSError) as e:
                last = str(e)
            if last is None:
                return
            if time.monotonic() > deadline:
                raise LabError('timed out after %.0f s waiting for %s in %s: %s\n%s'
                               % (timeout, what, self.dir, last, self.diagnostics()))
            for daemon in ('mon', 'mgr', 'osd', 'rgw'):
                if os.path.exists(self.pid_file(daemon)) and not self.daemon_pid(daemon):
                    raise LabError('%s died while waiting for %s in %s\n%s'
                                   % (daemon, what, self.dir, self.diagnostics()))
            time.sleep(0.25)

    def rgw_endpoint(self, st=None):
        st = st or self.state()
        return 'http://127.0.0.1:%d' % st['rgw_port']

    def rgw_problem(self):
        try:
            with urllib.request.urlopen(self.rgw_endpoint() + '/', timeout=5) as r:
                r.read()
            return None
        except urllib.error.HTTPError:
            return None  # it answers (403 or so is fine)
        except (urllib.error.URLError, OSError) as e:
            return 'radosgw does not answer HTTP: %s' % e

    # -------------------------------------------------------------------------------- actions
    def cluster_info(self, st):
        return {
            'dir': self.dir,
            'fsid': st['fsid'],
            'conf': self.conf,
            'mon_host': st['mon_host'],
            'admin_keyring': self.admin_keyring,
            'rbd_user': RBD_USER,
            'rbd_keyring': self.rbd_keyring,
            'rbd_pool': RBD_POOL,
            'rgw_endpoint': self.rgw_endpoint(st),
            's3_access_key': st['s3_access_key'],
            's3_secret_key': st['s3_secret_key'],
            's3_region': S3_REGION,
            'swift_auth_url': self.rgw_endpoint(st) + '/auth/1.0',
            'swift_user': RGW_UID + ':swift',
            'swift_key': st['swift_key'],
        }

    def start(self, timeout):
        started = time.monotonic()
        self.lock()
        try:
            st = self.state()
            if st.get('complete') and all(self.daemon_pid(d) for d in DAEMONS) and os.path.exists(self.cluster_json):
                self.wait('HEALTH_OK', self.health_problem, timeout)
                self.wait('radosgw', self.rgw_problem, timeout)
                log('cluster in %s runs and is healthy' % self.dir)
                return self.cluster_json
            if shutil.which('ceph-mon') is None:
                raise LabError('Ceph is not installed (ceph-mon missing): run `cephlab.py install` (root)')

            def phase(what):
                log('%5.1f s  %s' % (time.monotonic() - started, what))

            for daemon in DAEMONS:  # stale pid files (a crash, a reboot) would read as "died" below
                if not self.daemon_pid(daemon) and os.path.exists(self.pid_file(daemon)):
                    os.unlink(self.pid_file(daemon))
            self.bootstrap(st)
            self.check_ports(st)
            phase('configuration and mon store ready')
            self.spawn('mon')
            self.wait('the mon', lambda: None if self.status_json() else 'mon does not answer', timeout)
            phase('mon answers on %s' % st['mon_host'])
            self.setup_mgr(st)
            self.spawn('mgr')
            self.setup_osd(st)
            self.spawn('osd')
            self.setup_rgw_key(st)
            self.wait('the OSD', lambda: None if self.osds_up() >= 1 else 'OSD not up', timeout)
            phase('mgr started, OSD up')
            self.setup_pool(st)
            self.setup_client(st)
            phase('pool %s, client.%s' % (RBD_POOL, RBD_USER))
            self.spawn('rgw')
            self.wait('radosgw', self.rgw_problem, timeout)
            phase('radosgw answers on %s' % self.rgw_endpoint(st))
            self.setup_rgw_user(st)
            phase('S3 user and Swift subuser')
            self.wait('HEALTH_OK', self.health_problem, timeout)
            write_file(self.cluster_json, json.dumps(self.cluster_info(st), indent=2) + '\n', 0o600)
            st['complete'] = True
            self.save_state(st)
            log('cluster in %s healthy after %.1f s' % (self.dir, time.monotonic() - started))
            return self.cluster_json
        finally:
            self.unlock()

    def stop(self, purge=False, timeout=20.0):
        if not os.path.isdir(self.dir):
            log('%s does not exist: nothing to stop' % self.dir)
            return
        started = time.monotonic()
        self.lock()
        try:
            stopped = [d for d in DAEMONS if self.kill(d, timeout)]
            log('stopped %s in %.1f s' % (', '.join(stopped) or 'nothing', time.monotonic() - started))
        finally:
            self.unlock()
        if purge:
            shutil.rmtree(self.dir, ignore_errors=True)
            if os.path.exists(self.dir):
                raise LabError('could not remove %s' % self.dir)
            log('removed %s' % self.dir)

    def rgw_stop(self):
        self.lock()
        try:
            self.kill('rgw')
        finally:
            self.unlock()
        log('radosgw of %s stopped' % self.dir)

    def rgw_start(self, timeout):
        st = self.state()
        if not st.get('complete'):
            raise LabError('no cluster in %s: run `cephlab.py start --dir %s` first' % (self.dir, self.dir))
        self.lock()
        try:
            if not self.daemon_pid('rgw'):
                self.check_ports(st)
                self.spawn('rgw')
            self.wait('radosgw', self.rgw_problem, timeout)
        finally:
            self.unlock()
        log('radosgw of %s answers on %s' % (self.dir, self.rgw_endpoint(st)))

    def osd_stop(self, timeout):
        """Stop the OSD at once (SIGTERM, SIGKILL without waiting) and wait until the mon marks it down: with one OSD,
        clients' operations then block (until their rados_osd_op_timeout), as when a storage host dies."""
        self.lock()
        try:
            self.kill('osd', timeout=0)
            self.ceph('osd', 'down', str(OSD_ID), check=False, timeout=30)
            self.wait('the OSD to be down', lambda: None if self.osds_up() == 0 else 'OSD still up', timeout)
        finally:
            self.unlock()
        log('OSD of %s stopped' % self.dir)

    def osd_start(self, timeout):
        st = self.state()
        if not st.get('complete'):
            raise LabError('no cluster in %s: run `cephlab.py start --dir %s` first' % (self.dir, self.dir))
        self.lock()
        try:
            if not self.daemon_pid('osd'):
                self.spawn('osd')
            self.wait('HEALTH_OK', self.health_problem, timeout)
        finally:
            self.unlock()
        log('OSD of %s up, cluster healthy' % self.dir)

    def status(self):
        if not os.path.exists(self.conf):
            print('no cluster in %s' % self.dir)
            return 1
        for daemon in DAEMONS:
            pid = self.daemon_pid(daemon)
            print('%-4s %s' % (daemon, 'pid %d' % pid if pid else 'not running'))
        if not self.daemon_pid('mon'):
            return 1
        res = self.ceph('-s', check=False, timeout=30)
        sys.stdout.write(res.stdout)
        if res.returncode != 0:
            sys.stderr.write(res.stderr)
            return 1
        problem = self.health_problem()
        if problem is None and self.state().get('complete'):
            problem = self.rgw_problem()
        if problem:
            print('not healthy: %s' % problem)
            return 1
        return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    sub = parser.add_subparsers(dest='action', required=True)
    sub.add_parser('install', help='install the Debian packages when missing (root)')
    for name, helptext in (('start', 'start (or create) the cluster in DIR, print DIR/cluster.json'),
                           ('stop', 'stop the cluster in DIR'),
                           ('rgw-stop', 'stop radosgw only'),
                           ('rgw-start', 'start radosgw only and wait until it answers'),
                           ('osd-stop', 'kill the OSD only and wait until the mon marks it down'),
                           ('osd-start', 'start the OSD only and wait for HEALTH_OK'),
                           ('status', 'ceph -s; exit 0 when healthy')):
        p = sub.add_parser(name, help=helptext)
        p.add_argument('--dir', required=True, help='directory holding all state of the cluster')
        if name in ('start', 'rgw-start', 'osd-stop', 'osd-start'):
            p.add_argument('--timeout', type=float, default=120.0, help='seconds per wait (default 120)')
        if name == 'start':
            p.add_argument('--json', action='store_true', help='print the JSON instead of its path')
        if name == 'stop':
            p.add_argument('--purge', action='store_true', help='remove DIR after stopping')
    args = parser.parse_args(argv)
    try:
        if args.action == 'install':
            install()
            return 0
        lab = Lab(args.dir)
        if args.action == 'start':
            path = lab.start(args.timeout)
            if args.json:
                with open(path) as f:
                    sys.stdout.write(f.read())
            else:
                print(path)
        elif args.action == 'stop':
            lab.stop(purge=args.purge)
        elif args.action == 'rgw-stop':
            lab.rgw_stop()
        elif args.action == 'rgw-start':
            lab.rgw_start(args.timeout)
        elif args.action == 'osd-stop':
            lab.osd_stop(args.timeout)
        elif args.action == 'osd-start':
            lab.osd_start(args.timeout)
        elif args.action == 'status':
            return lab.status()
        return 0
    except LabError as e:
        print('cephlab: ERROR: %s' % e, file=sys.stderr)
        return 1
    except subprocess.TimeoutExpired as e:
        print('cephlab: ERROR: timed out: %s' % e, file=sys.stderr)
        return 1
    except OSError as e:
        if e.errno == errno.EACCES:
            print('cephlab: ERROR: %s (the lab needs root)' % e, file=sys.stderr)
            return 1
        raise


if __name__ == '__main__':
    sys.exit(main())
