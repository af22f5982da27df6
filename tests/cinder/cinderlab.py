# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real OpenStack Cinder (Debian's Zed packages) on a cephlab.py cluster, all state in one directory.

    cinderlab.py install                            Debian packages (apt-get) when missing, no service started
    cinderlab.py start --dir DIR --ceph-dir CEPHDIR MariaDB, epmd, RabbitMQ, Keystone, cinder-api (noauth and
                                                    Keystone), cinder-scheduler, cinder-volume
                    [--prefix NAME] [--timeout S]   (2 RBD back ends: pools NAME-a, NAME-b of the cluster in
                                                    CEPHDIR), volume types ceph-a, ceph-b; prints DIR/cinder.json
    cinderlab.py stop --dir DIR [--purge]           cinder services, RabbitMQ, epmd, MariaDB; --purge also removes
                                                    DIR and the lab's pools and Ceph client from the cluster
    cinderlab.py rabbitmq-stop|rabbitmq-start --dir DIR        fault tests: the message bus only
    cinderlab.py volume-stop|volume-start --dir DIR            fault tests: cinder-volume only
    cinderlab.py status --dir DIR                   pids, RSS/PSS, service states; exit 0 when all are up

Nothing uses /etc/cinder, /var/lib/cinder, /etc/rabbitmq, /var/lib/rabbitmq, /etc/mysql or /etc/ceph: the
services get --config-file DIR/cinder.conf (and an empty --config-dir), RabbitMQ its own HOME, config, mnesia
and log directories, node name, AMQP, distribution and epmd ports (ERL_EPMD_PORT: labs never share an epmd),
MariaDB --no-defaults and its data in DIR/mysql, the Ceph client DIR/ceph.conf. Ports are picked free on
127.0.0.1 at the first start. Only processes whose pid file is in DIR *and* whose command line names
DIR/cinder.conf (MariaDB: its DIR/mysql) are ever signalled; epmd takes no such argument: for it, its
environment must hold CINDERLAB_DIR=DIR, which only this lab gives it.

The Cinder API runs with auth_strategy = noauth: send `X-Auth-Token: admin:PROJECT` (cinder.json's
auth_token); every request is an admin's. `/v3/volumes` (cinder.json's `endpoint`) and `/v3/PROJECT/volumes`
both work, the latter only because PROJECT is a uuid hex: a project in the path must match Cinder's
project_id_regex [0-9a-f-]+, so `/v3/admin/volumes` is a 404. cinderclient's noauth plugin appends the
project itself: give it `endpoint`. A second cinder-api (auth_strategy = keystone, same database and queues)
sits behind Keystone (cinderlab_keystone.py): cinder.json's `keystone` has its auth_url and the user, password
and project a store declares with auth_url.

Measured on this VM (2 cores, Debian 12, other test suites running beside it, 2026-12-02): `install` about
60 s (241 packages: Erlang, RabbitMQ, Cinder, os-brick, MariaDB and their libraries; Ceph already there);
`start` 18-25 s with the cluster running (Ceph pools and client 3.5 s, MariaDB 2 s, db sync 5 s, RabbitMQ
booting beside those, services up 7 s), under 1 s when it already runs; `stop` 1.7 s. Memory of a running
lab: RSS 1130 MiB, PSS 675 MiB (MariaDB 90/85, RabbitMQ 135/95, epmd 2/0, cinder-api 2 processes 300/170,
cinder-scheduler 157/126, cinder-volume 3 processes 440/200; RSS/PSS MiB, forked workers share pages).

Layout of DIR: cinder.conf, cinder.json (0600), state.json (0600), api-paste.ini (the package's),
ceph.conf + ceph.client.NAME.keyring (0600: the lab's Ceph client), cinder.conf.d/ (empty), mysql/ (MariaDB
data), mysql-init.sql (0600), rabbitmq/ (HOME, rabbit.conf, mnesia/), state/ (state_path), lock/,
run/ (pid files, MariaDB's socket), log/ (service logs, rabbitmq/, *.out: stdout/stderr).
"""

import argparse
import contextlib
import errno
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

CEPHLAB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'ceph', 'cephlab.py')


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the Ceph lab's helpers (state, lock, pid files, kill, free ports) serve this lab as they are
cephlab = _load('_vmimages_cephlab', CEPHLAB)
keystone = _load('_vmimages_cinderlab_keystone',
                 os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cinderlab_keystone.py'))
LabError = cephlab.LabError
tail_file = cephlab.tail_file
tail_text = cephlab.tail_text
write_file = cephlab.write_file

PACKAGES = ('cinder-api', 'cinder-scheduler', 'cinder-volume', 'rabbitmq-server', 'python3-os-brick',
            'python3-cinderclient', 'mariadb-server-core', 'mariadb-client-core', 'python3-keystone')
# packages whose services apt would start: stopped and disabled after an install that brought them
SERVICE_PACKAGES = ('cinder-api', 'cinder-scheduler', 'cinder-volume', 'rabbitmq-server', 'erlang-base', 'tgt',
                    'open-iscsi')
DAEMON_PROGRAMS = ('beam.smp', 'epmd', 'mariadbd', 'tgtd', 'iscsid', 'uwsgi', 'cinder-api', 'cinder-scheduler',
                   'cinder-volume')
POLICY_RC_D = '/usr/sbin/policy-rc.d'

RABBITMQ_SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server'  # the server itself, not the su wrapper of /usr/sbin
RABBITMQCTL = '/usr/lib/rabbitmq/bin/rabbitmqctl'
API_PASTE = ('/usr/share/cinder-common/api-paste.ini', '/etc/cinder/api-paste.ini')
HOST = 'cinderlab'
USER = 'admin'
AZ = 'nova'
DEFAULT_PREFIX = 'cinder'
# volume type -> back end (cinder.conf section and volume_backend_name) and pool suffix
TYPES = (('ceph-a', 'rbd-a', 'a'), ('ceph-b', 'rbd-b', 'b'))
# cinder-api-keystone: a second cinder-api, auth_strategy = keystone, on the same database and RabbitMQ
CINDER_SERVICES = ('cinder-api', 'cinder-scheduler', 'cinder-volume', 'cinder-api-keystone')
DAEMONS = ('mariadb', 'epmd', 'rabbitmq', 'keystone') + CINDER_SERVICES  # start order
STOP_ORDER = CINDER_SERVICES + ('keystone', 'rabbitmq', 'epmd', 'mariadb')
# MariaDB, not sqlite: under sqlite a volume create fails now and then with "database is locked" (oslo.db's
# deferred BEGIN, heartbeats of three services writing beside the API); small, for a lab
MARIADB_OPTS = ('--innodb-buffer-pool-size=32M', '--innodb-log-file-size=8M',
                '--innodb-data-file-path=ibdata1:12M:autoextend')
ENV_MARK = 'CINDERLAB_DIR'
# heartbeats every 2 s, a service is down after 6 s (defaults 10 s / 60 s): fault tests see it soon
REPORT_INTERVAL = 2
SERVICE_DOWN_TIME = 6

CINDER_KEYS = ('dir', 'endpoint', 'project_endpoint', 'api_url', 'auth_token', 'user', 'project', 'availability_zone',
               'max_microversion', 'volume_types', 'default_volume_type', 'ceph_dir', 'ceph_conf', 'ceph_user',
               'ceph_client', 'ceph_keyring', 'ceph_fsid', 'cinder_conf', 'log_dir', 'transport_url',
               'database_url', 'host', 'pids', 'keystone')


def log(msg):
    print('cinderlab: %s' % msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------- install

def package_status():
    res = subprocess.run(['dpkg-query', '-W', '-f=${Package} ${db:Status-Status}\n'], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, universal_newlines=True, check=False)
    return {line.split()[0] for line in res.stdout.splitlines() if line.endswith(' installed')}


def missing_packages():
    installed = package_status()
    return [pkg for pkg in PACKAGES if pkg not in installed]


@contextlib.contextmanager
def services_blocked():
    """apt's maintainer scripts start no service inside the block (policy-rc.d exit 101), restored after."""
    try:
        with open(POLICY_RC_D, 'rb') as f:
            saved = f.read()
        saved_mode = os.stat(POLICY_RC_D).st_mode & 0o7777
    except FileNotFoundError:
        saved = saved_mode = None
    write_file(POLICY_RC_D, '#!/bin/sh\n# tests/cinder/cinderlab.py install: no service starts\nexit 101\n', 0o755)
    try:
        yield
    finally:
        if saved is None:
            os.unlink(POLICY_RC_D)
        else:
            with open(POLICY_RC_D, 'wb') as f:
                f.write(saved)
            os.chmod(POLICY_RC_D, saved_mode)


def proc_argv(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return [a.decode('utf-8', 'replace') for a in f.read().split(b'\0') if a]
    except OSError:
        return []


def proc_environ(pid):
    try:
        with open('/proc/%d/environ' % pid, 'rb') as f:
            return f.read().split(b'\0')
    except OSError:
        return []


def zombie(pid):
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            stat = f.read()
    except OSError:
        return True  # gone
    return stat[stat.rindex(b')') + 2:][:1] == b'Z'


def all_pids():
    return {int(p) for p in os.listdir('/proc') if p.isdigit()}


def stop_started_daemons(before):
    """SIGTERM the daemons that the apt run started anyway (new since `before`, not a lab's)."""
    for pid in sorted(all_pids() - before):
        argv = proc_argv(pid)
        names = {os.path.basename(a) for a in argv[:2]}
        if names & set(DAEMON_PROGRAMS) and not any(e.startswith(ENV_MARK.encode() + b'=') for e in proc_environ(pid)):
            log('apt started %s (pid %d): stopping it' % (' '.join(argv[:3]), pid))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def disable_units(new_packages):
    """Disable (and stop, where systemd runs) the services of the packages this install brought."""
    units, scripts = [], []
    for pkg in sorted(set(SERVICE_PACKAGES) & new_packages):
        res = subprocess.run(['dpkg-query', '-L', pkg], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True, check=False)
        for path in res.stdout.splitlines():
            if path.startswith(('/lib/systemd/system/', '/usr/lib/systemd/system/')) and \
                    path.endswith(('.service', '.socket')) and '@' not in path:
                units.append(os.path.basename(path))
            elif path.startswith('/etc/init.d/'):
                scripts.append(os.path.basename(path))
    systemd_runs = os.path.isdir('/run/systemd/system')
    if units and shutil.which('systemctl'):
        cmd = ['systemctl', 'disable', '--quiet'] + (['--now'] if systemd_runs else []) + units
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                             check=False)
        log('%s: %s' % (' '.join(cmd), 'done' if res.returncode == 0 else tail_text(res.stdout, 5)))
    for script in scripts:
        if shutil.which('update-rc.d'):
            subprocess.run(['update-rc.d', script, 'disable'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=False)


def install():
    if not shutil.which('dpkg-query'):
        raise LabError('not a Debian system (no dpkg-query): install %s yourself' % ' '.join(PACKAGES))
    missing = missing_packages()
    if not missing:
        log('Cinder packages present')
        return
    if os.geteuid() != 0:
        raise LabError('missing packages %s: apt-get needs root' % ' '.join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    cmd = ['apt-get', 'install', '-y', '-q', '--no-install-recommends', '-o', 'DPkg::Lock::Timeout=600'] + missing
    log('installing %s (services not started)' % ' '.join(missing))
    started = time.monotonic()
    before_pkgs, before_pids = package_status(), all_pids()
    with services_blocked():
        for attempt in ('install', 'update, install'):
            if attempt != 'install':  # stale package lists: the first try says what
                log('apt-get install failed, running apt-get update first:\n%s' % tail_text(res.stdout, 10))
                subprocess.run(['apt-get', 'update', '-q', '-o', 'DPkg::Lock::Timeout=600'], env=env, check=True)
            res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
            if res.returncode == 0:
                break
    stop_started_daemons(before_pids)
    disable_units(package_status() - before_pkgs)
    if res.returncode != 0:
        raise LabError('apt-get install %s failed:\n%s' % (' '.join(missing), tail_text(res.stdout, 30)))
    still = missing_packages()
    if still:
        raise LabError('packages still missing after apt-get install: %s' % ' '.join(still))
    log('installed in %.1f s' % (time.monotonic() - started))


# ----------------------------------------------------------------------------------------- helpers

def family(pid):
    """`pid` and all its descendants (the workers a service forked)."""
    children = {}
    for p in all_pids():
        try:
            with open('/proc/%d/stat' % p, 'rb') as f:
                stat = f.read()
            children.setdefault(int(stat[stat.rindex(b')') + 2:].split()[1]), []).append(p)
        except (OSError, ValueError, IndexError):
            continue
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, ()))
    return found


def memory_kib(pid):
    """(RSS, PSS) of `pid` and all its descendants, KiB (PSS splits the pages forked workers share)."""
    rss = pss = 0
    for p in family(pid):
        try:
            with open('/proc/%d/smaps_rollup' % p) as f:
                for line in f:
                    if line.startswith('Rss:'):
                        rss += int(line.split()[1])
                    elif line.startswith('Pss:'):
                        pss += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return rss, pss


def api_request(api_url, token, method, path, body=None, timeout=30):
    """(HTTP status, JSON body or None) of METHOD api_url+PATH on a noauth Cinder: X-Auth-Token user:project."""
    req = urllib.request.Request(api_url + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={'X-Auth-Token': token, 'Accept': 'application/json',
                                          'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw) if raw.strip() else None
    except ValueError:
        return status, {'raw': raw.decode('utf-8', 'replace')[:500]}


def mysql_problem(port):
    """None when a MySQL server on 127.0.0.1:port sends its greeting (protocol 10), else why not."""
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=5) as s:
            packet = s.recv(5)
    except OSError as e:
        return 'MariaDB does not answer on 127.0.0.1:%d: %s' % (port, e)
    if packet[4:5] != b'\x0a':
        return 'MariaDB on 127.0.0.1:%d answered %r, not its greeting' % (port, packet)
    return None


def amqp_problem(port):
    """None when a broker on 127.0.0.1:port answers the AMQP 0-9-1 header with a method frame."""
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=5) as s:
            s.sendall(b'AMQP\x00\x00\x09\x01')
            frame = s.recv(7)
    except OSError as e:
        return 'RabbitMQ does not answer on 127.0.0.1:%d: %s' % (port, e)
    if frame[:1] != b'\x01':
        return 'RabbitMQ on 127.0.0.1:%d answered %r, not Connection.Start' % (port, frame)
    return None


class _Died(Exception):
    pass


class CinderLab(cephlab.Lab):
    """One Cinder lab: DIR holds everything; the Ceph cluster is the cephlab.py one in CEPHDIR."""

    def __init__(self, directory):
        super().__init__(directory)
        self.cinder_conf = self.path('cinder.conf')
        self.conf_dir = self.path('cinder.conf.d')
        self.cinder_json = self.path('cinder.json')
        self.keystone_override = self.path('cinder-keystone.conf')
        self.rabbit_dir = self.path('rabbitmq')
        self._ceph = None

    # -------------------------------------------------------------------------------- the Ceph cluster
    def ceph_lab(self, st):
        if self._ceph is None:
            if not os.path.exists(os.path.join(st['ceph_dir'], 'cluster.json')):
                raise LabError('no cephlab.py cluster in %s (no cluster.json): start one with '
                               '`python3 tests/ceph/cephlab.py start --dir %s`' % (st['ceph_dir'], st['ceph_dir']))
            self._ceph = cephlab.Lab(st['ceph_dir'])
        return self._ceph

    def cluster(self, st):
        with open(os.path.join(st['ceph_dir'], 'cluster.json')) as f:
            return json.load(f)

    def pools(self, st):
        return {suffix: '%s-%s' % (st['prefix'], suffix) for _t, _b, suffix in TYPES}

    def ceph_user(self, st):
        return st['prefix']

    def ceph_keyring(self, st):
        return self.path('ceph.client.%s.keyring' % self.ceph_user(st))

    def setup_ceph(self, st):
        """Pools NAME-a, NAME-b (rbd) and client.NAME allowed only there; its keyring and conf in DIR."""
        ceph = self.ceph_lab(st)
        if not st.get('pools_done'):
            existing = ceph.ceph('osd', 'pool', 'ls', fmt_json=True)
            for pool in self.pools(st).values():
                if pool not in existing:
                    ceph.ceph('osd', 'pool', 'create', pool, '8', '8', 'replicated', '--size', '1',
                              '--autoscale-mode', 'off')
                ceph.rbd('pool', 'init', pool)
            st['pools_done'] = True
            self.save_state(st)
        if not st.get('client_done') or not os.path.exists(self.ceph_keyring(st)):
            caps = ', '.join('profile rbd pool=%s' % p for p in self.pools(st).values())
            key = ceph.ceph('auth', 'get-or-create', 'client.' + self.ceph_user(st), 'mon', 'profile rbd',
                            'osd', caps, 'mgr', caps).stdout
            write_file(self.ceph_keyring(st), key if key.endswith('\n') else key + '\n', 0o600)
            st['client_done'] = True
            self.save_state(st)
        cluster = self.cluster(st)
        write_file(self.conf, """# written by tests/cinder/cinderlab.py: client.{user} of the cephlab cluster in {ceph_dir}
[global]
fsid = {fsid}
mon host = {mon_host}
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = {d}/run
log to file = false
log to syslog = false

[client.{user}]
keyring = {keyring}
""".format(user=self.ceph_user(st), ceph_dir=st['ceph_dir'], fsid=cluster['fsid'], mon_host=cluster['mon_host'],
           d=self.dir, keyring=self.ceph_keyring(st)))

    def purge_ceph(self, st):
        """Remove the lab's pools and client from its Ceph cluster (when that still runs)."""
        if not st.get('pools_done') and not st.get('client_done'):
            return  # never got that far
        try:
            ceph = self.ceph_lab(st)
            if ceph.status_json() is None:
                raise LabError('the cluster in %s does not answer' % st['ceph_dir'])
            for pool in self.pools(st).values():
                ceph.ceph('osd', 'pool', 'rm', pool, pool, '--yes-i-really-really-mean-it', check=False)
            ceph.ceph('auth', 'rm', 'client.' + self.ceph_user(st), check=False)
            log('removed pools %s and client.%s from %s' % (', '.join(self.pools(st).values()),
                                                            self.ceph_user(st), st['ceph_dir']))
        except (LabError, OSError, subprocess.TimeoutExpired) as e:
            log('pools and client of %s left in the Ceph cluster: %s' % (self.dir, e))

    # -------------------------------------------------------------------------------- configuration
    def rabbit_env(self, st):
        r = self.rabbit_dir
        env = dict(os.environ)
        env.update({
            ENV_MARK: self.dir,
            'HOME': r,
            'RABBITMQ_CONF_ENV_FILE': os.path.join(r, 'rabbitmq-env.conf'),  # not /etc/rabbitmq's
            'RABBITMQ_CONFIG_FILE': os.path.join(r, 'rabbit.conf'),
            'RABBITMQ_ADVANCED_CONFIG_FILE': os.path.join(r, 'advanced.config'),
            'RABBITMQ_ENABLED_PLUGINS_FILE': os.path.join(r, 'enabled_plugins'),
            'RABBITMQ_MNESIA_BASE': os.path.join(r, 'mnesia'),
            'RABBITMQ_LOG_BASE': os.path.join(self.log_dir, 'rabbitmq'),
            'RABBITMQ_PID_FILE': os.path.join(self.run_dir, 'rabbitmq-beam.pid'),
            'RABBITMQ_NODENAME': st['rabbit_node'],
            'RABBITMQ_NODE_IP_ADDRESS': '127.0.0.1',
            'RABBITMQ_NODE_PORT': str(st['amqp_port']),
            'RABBITMQ_DIST_PORT': str(st['dist_port']),
            'ERL_EPMD_PORT': str(st['epmd_port']),
            'ERL_EPMD_ADDRESS': '127.0.0.1',
            # our epmd runs already; erl must not start one of its own; distribution on loopback only
            'RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS': '-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}',
        })
        return env

    def write_rabbit_conf(self, st):
        r = self.rabbit_dir
        for sub in (r, os.path.join(r, 'mnesia'), os.path.join(self.log_dir, 'rabbitmq')):
            os.makedirs(sub, mode=0o700, exist_ok=True)
        write_file(os.path.join(r, 'rabbitmq-env.conf'), '# tests/cinder/cinderlab.py: everything is in the environment\n')
        write_file(os.path.join(r, 'enabled_plugins'), '[].\n')
        write_file(os.path.join(r, 'advanced.config'), '[].\n')
        write_file(os.path.join(r, 'rabbit.conf'), """# written by tests/cinder/cinderlab.py
listeners.tcp.default = 127.0.0.1:{amqp_port}
# guest/guest from 127.0.0.1 only anyway: the listener is on loopback
loopback_users = none
log.console = false
log.file.level = info
disk_free_limit.absolute = 50MB
""".format(**st))
        cookie = os.path.join(r, '.erlang.cookie')
        if not os.path.exists(cookie):
            write_file(cookie, secrets.token_hex(16).upper(), 0o400)

    def transport_url(self, st):
        return 'rabbit://guest:guest@127.0.0.1:%d/' % st['amqp_port']

    def write_cinder_conf(self, st):
        d = self.dir
        for sub in ('state', 'lock', 'cinder.conf.d'):
            os.makedirs(self.path(sub), mode=0o700, exist_ok=True)
        paste = next((p for p in API_PASTE if os.path.exists(p)), None)
        if paste is None:
            raise LabError('no api-paste.ini in %s: is cinder-api installed?' % ' or '.join(API_PASTE))
        shutil.copyfile(paste, self.path('api-paste.ini'))
        backends = []
        for _vtype, backend, suffix in TYPES:
            backends.append("""
[{backend}]
volume_driver = cinder.volume.drivers.rbd.RBDDriver
volume_backend_name = {backend}
rbd_pool = {pool}
rbd_ceph_conf = {d}/ceph.conf
rbd_user = {user}
rbd_cluster_name = ceph
rbd_max_clone_depth = 5
rbd_flatten_volume_from_snapshot = false
report_discard_supported = true
""".format(backend=backend, pool=self.pools(st)[suffix], d=d, user=self.ceph_user(st)))
        write_file(self.cinder_conf, """# written by tests/cinder/cinderlab.py: everything under this directory
[DEFAULT]
auth_strategy = noauth
transport_url = {transport_url}
host = {host}
my_ip = 127.0.0.1
storage_availability_zone = {az}
default_availability_zone = {az}
osapi_volume_listen = 127.0.0.1
osapi_volume_listen_port = {api_port}
osapi_volume_workers = 1
api_paste_config = {d}/api-paste.ini
state_path = {d}/state
log_dir = {d}/log
use_stderr = false
debug = false
enabled_backends = {enabled}
default_volume_type = {default_type}
report_interval = {report_interval}
service_down_time = {service_down_time}
periodic_interval = 10
graceful_shutdown_timeout = 3
rpc_response_timeout = 30
enable_v3_api = true
# no quota: a test run makes and deletes many volumes in one project
quota_volumes = -1
quota_snapshots = -1
quota_gigabytes = -1
quota_backups = -1
quota_backup_gigabytes = -1
quota_groups = -1

[database]
# WAL (set after db sync): readers never block the writer; a writer waits up to 30 s for another
connection = {database_url}

[oslo_concurrency]
lock_path = {d}/lock

[coordination]
backend_url = file://{d}/lock

[oslo_messaging_rabbit]
rabbit_retry_interval = 1
rabbit_retry_backoff = 1
rabbit_interval_max = 2
""".format(transport_url=self.transport_url(st), host=HOST, az=AZ, api_port=st['api_port'], d=d,
           database_url=self.database_url(st),
           enabled=','.join(b for _t, b, _s in TYPES), default_type=TYPES[0][0], report_interval=REPORT_INTERVAL,
           service_down_time=SERVICE_DOWN_TIME) + ''.join(backends))

    def setup_keystone(self, st, timeout, phase):
        """Keystone's database (made at each MariaDB start, and here when MariaDB ran before Keystone was in
        the lab), keystone-manage once, the daemon, and the catalog, project and user the stores use."""
        self.run(['mariadb', '--no-defaults', '--socket=' + self.path('run', 'mysqld.sock'), '-u', 'root',
                  '-e', keystone.init_sql(st)], timeout=60)
        keystone.write_conf(self, st, write_file)
        write_file(self.keystone_override, keystone.cinder_override(self, st), 0o600)
        if not st.get('keystone_done'):
            for cmd in keystone.manage_commands(self, st):
                self.run(cmd, timeout=300)
            st['keystone_done'] = True
            self.save_state(st)
            phase('keystone-manage db_sync, fernet and credential keys, bootstrap')
        self.check_ports(st, ('keystone',))
        self.spawn('keystone', st)
        self.wait('Keystone', lambda: keystone.problem(st), timeout)
        keystone.setup_catalog(st)
        phase('Keystone answers on %s: volumev3 endpoint, project and user %s'
              % (keystone.auth_url(st), keystone.STORE_USER))

    def keystone_api_problem(self):
        try:
            status, body = api_request('http://127.0.0.1:%d' % self.state()['api_ks_port'], '', 'GET', '/')
        except (urllib.error.URLError, OSError) as e:
            return 'cinder-api-keystone does not answer HTTP: %s' % e
        if status not in (200, 300) or not isinstance(body, dict) or 'versions' not in body:
            return 'cinder-api-keystone answered %s %s' % (status, body)
        return None

    # -------------------------------------------------------------------------------- processes
    def daemon_pid(self, daemon):
        """The pid of this DIR's `daemon` when it runs, else None (a stale or foreign pid is None)."""
        try:
            with open(self.pid_file(daemon)) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        if zombie(pid):
            return None  # gone, or exited and not yet reaped
        if daemon in ('epmd', 'keystone'):  # neither takes an argument naming DIR
            mine = ('%s=%s' % (ENV_MARK, self.dir)).encode() in proc_environ(pid)
        elif daemon == 'mariadb':
            mine = '--datadir=' + self.path('mysql') in proc_argv(pid)
        else:
            mine = self.cinder_conf in proc_argv(pid)
        return pid if mine else None  # else the pid was reused by another process

    def daemon_cmd(self, daemon, st=None):
        st = st or self.state()
        if daemon == 'epmd':
            return ['epmd', '-port', str(st['epmd_port']), '-address', '127.0.0.1']
        if daemon == 'mariadb':  # --no-defaults: no /etc/mysql; root only through the socket in DIR/run
            return ['mariadbd', '--no-defaults', '--datadir=' + self.path('mysql'), '--user=root',
                    '--socket=' + self.path('run', 'mysqld.sock'), '--pid-file=' + self.path('run', 'mariadbd.pid'),
                    '--bind-address=127.0.0.1', '--port=%d' % st['db_port'], '--skip-name-resolve',
                    '--log-error=' + self.daemon_log('mariadb'), '--init-file=' + self.path('mysql-init.sql'),
                    '--tmpdir=' + self.path('mysql-tmp'), '--performance-schema=OFF', '--skip-log-bin',
                    '--innodb-flush-log-at-trx-commit=2', '--max-connections=500'] + list(MARIADB_OPTS)
        if daemon == 'rabbitmq':
            # erl keeps unknown flags as plain arguments: this one only names the lab on the command line
            return [RABBITMQ_SERVER, '-cinderlab_conf', self.cinder_conf]
        if daemon == 'keystone':  # its config: OS_KEYSTONE_CONFIG_DIR (spawn)
            return ['keystone-wsgi-public', '--host', '127.0.0.1', '--port', str(st['keystone_port'])]
        if daemon == 'cinder-api-keystone':
            return ['cinder-api', '--config-file', self.cinder_conf, '--config-file', self.keystone_override,
                    '--config-dir', self.conf_dir]
        return [daemon, '--config-file', self.cinder_conf, '--config-dir', self.conf_dir]

    def daemon_log(self, daemon, st=None):
        if daemon == 'rabbitmq':
            st = st or self.state()
            return os.path.join(self.log_dir, 'rabbitmq', '%s.log' % st.get('rabbit_node', 'rabbit'))
        if daemon == 'epmd':
            return os.path.join(self.log_dir, 'epmd.out')
        return os.path.join(self.log_dir, '%s.log' % daemon)  # cinder-*.log, mariadb.log

    def database_url(self, st):
        return 'mysql+pymysql://cinder:%s@127.0.0.1:%d/cinder?charset=utf8' % (st['db_password'], st['db_port'])

    def spawn_mariadb(self, st):
        if not st.get('mariadb_done'):
            shutil.rmtree(self.path('mysql'), ignore_errors=True)
            self.run(['mariadb-install-db', '--no-defaults', '--datadir=' + self.path('mysql'), '--user=root',
                      '--auth-root-authentication-method=socket', '--skip-test-db'] + list(MARIADB_OPTS), timeout=300)
            st['mariadb_done'] = True
            self.save_state(st)
        os.makedirs(self.path('mysql-tmp'), mode=0o700, exist_ok=True)
        # run by mariadbd at each start (idempotent): the database and the one user Cinder needs
        write_file(self.path('mysql-init.sql'), "CREATE DATABASE IF NOT EXISTS cinder;\n"
                   "CREATE USER IF NOT EXISTS 'cinder'@'127.0.0.1' IDENTIFIED BY '{pw}';\n"
                   "ALTER USER 'cinder'@'127.0.0.1' IDENTIFIED BY '{pw}';\n"
                   "GRANT ALL PRIVILEGES ON cinder.* TO 'cinder'@'127.0.0.1';\n".format(pw=st['db_password'])
                   + keystone.init_sql(st), 0o600)
        self.check_ports(st, ('mariadb',))
        self.spawn('mariadb', st)

    def spawn(self, daemon, st=None):
        if self.daemon_pid(daemon):
            return
        st = st or self.state()
        os.makedirs(self.run_dir, exist_ok=True)
        out_path = os.path.join(self.log_dir, '%s.out' % daemon)
        env = self.rabbit_env(st) if daemon in ('epmd', 'rabbitmq') else dict(os.environ, **{ENV_MARK: self.dir})
        if daemon == 'keystone':
            env['OS_KEYSTONE_CONFIG_DIR'] = keystone.conf_dir(self)
        with open(out_path, 'ab') as out:
            proc = subprocess.Popen(self.daemon_cmd(daemon, st), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True, close_fds=True, cwd=self.dir, env=env)
        write_file(self.pid_file(daemon), '%d\n' % proc.pid)
        time.sleep(0.1)
        if proc.poll() is not None:
            raise LabError('%s exited at once (exit %s):\n%s\n%s'
                           % (daemon, proc.returncode, tail_file(out_path), tail_file(self.daemon_log(daemon, st))))

    def stop_daemon(self, daemon, timeout=20.0):
        pid = self.daemon_pid(daemon)
        if pid is None:
            return self.kill(daemon, timeout)  # removes a stale pid file
        workers = family(pid)[1:]
        self.kill(daemon, timeout)
        # a worker whose parent gave up waiting for it (oslo.service, graceful_shutdown_timeout) outlives it;
        # the Erlang VM under RabbitMQ's script is stopped by the script's TERM trap: make sure all are gone
        left = [p for p in workers if self.cinder_conf in proc_argv(p)]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, sig)
            deadline = time.monotonic() + 5
            while left and time.monotonic() < deadline:
                time.sleep(0.05)
                left = [p for p in left if self.cinder_conf in proc_argv(p) and not zombie(p)]
            if not left:
                break
            log('%s: process(es) %s outlived it: %s' % (daemon, ' '.join(map(str, left)), sig.name))
        log('%s (pid %d) stopped' % (daemon, pid))
        return True

    # -------------------------------------------------------------------------------- the API
    def api_url(self, st=None):
        st = st or self.state()
        return 'http://127.0.0.1:%d' % st['api_port']

    def token(self, st=None):
        """The noauth token: USER:PROJECT (cinder-api takes both from it, every request is an admin's)."""
        return '%s:%s' % (USER, (st or self.state())['project'])

    def api(self, method, path, body=None, timeout=30):
        return api_request(self.api_url(), self.token(), method, path, body, timeout)

    def api_problem(self):
        try:
            status, body = self.api('GET', '/')
        except (urllib.error.URLError, OSError) as e:
            return 'cinder-api does not answer HTTP: %s' % e
        if status not in (200, 300) or not isinstance(body, dict) or 'versions' not in body:
            return 'cinder-api answered %s %s' % (status, body)
        return None

    def services(self):
        status, body = self.api('GET', '/v3/os-services')
        if status != 200:
            raise LabError('GET /v3/os-services: %s %s' % (status, body))
        return body['services']

    def services_problem(self, want=('cinder-scheduler', 'cinder-volume')):
        """None when the scheduler and both back ends report `up`, else what is not."""
        problem = self.api_problem()
        if problem:
            return problem
        up = {(s['binary'], s['host']) for s in self.services() if s['state'] == 'up' and s['status'] == 'enabled'}
        need = []
        if 'cinder-scheduler' in want:
            need.append(('cinder-scheduler', HOST))
        if 'cinder-volume' in want:
            need += [('cinder-volume', '%s@%s' % (HOST, b)) for _t, b, _s in TYPES]
        missing = ['%s %s' % n for n in need if n not in up]
        if missing:
            return 'not up: %s' % ', '.join(missing)
        if 'cinder-volume' in want:
            problem = self.rpc_problem()
            if problem:
                return problem
            # an RPC round trip (API -> scheduler -> API), and the back ends' capabilities reached the scheduler:
            # before that, a new volume fails with "No valid backend"
            status, body = self.api('GET', '/v3/scheduler-stats/get_pools', timeout=60)
            if status != 200:
                return 'GET /v3/scheduler-stats/get_pools: %s %s' % (status, body)
            pools = {p['name'] for p in body.get('pools', [])}
            missing = [n for n in ('%s@%s#%s' % (HOST, b, b) for _t, b, _s in TYPES) if n not in pools]
            if missing:
                return 'the scheduler knows no pool %s yet' % ', '.join(missing)
        return None

    def rpc_problem(self):
        """None when the scheduler and both back ends consume their RPC queues, else which do not (yet).

        A service is `up` (database heartbeat) before it listens on RabbitMQ, and after RabbitMQ restarts its
        queues are gone until each service has reconnected and declared them again: a call sent meanwhile is
        dropped and the caller waits rpc_response_timeout (30 s) for nothing."""
        res = subprocess.run([RABBITMQCTL, '-q', 'list_queues', 'name', 'consumers'], env=self.rabbit_env(self.state()),
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False)
        if res.returncode != 0:
            return 'rabbitmqctl list_queues failed: %s' % tail_text(res.stderr or res.stdout, 3)
        consumers = dict(line.split('\t', 1) for line in res.stdout.splitlines() if '\t' in line)
        need = ['cinder-scheduler'] + ['cinder-volume.%s@%s' % (HOST, b) for _t, b, _s in TYPES]
        missing = [q for q in need if consumers.get(q, '0').strip() in ('0', 'consumers')]
        return 'no consumer on RabbitMQ queue(s) %s yet' % ', '.join(missing) if missing else None

    def max_microversion(self):
        _status, body = self.api('GET', '/')
        for version in body.get('versions', []):
            if version.get('id') == 'v3.0':
                return version.get('version')
        return None

    def setup_types(self, st):
        status, body = self.api('GET', '/v3/types?is_public=None')
        if status != 200:
            raise LabError('GET /v3/types: %s %s' % (status, body))
        have = {t['name']: t for t in body['volume_types']}
        for vtype, backend, _suffix in TYPES:
            if vtype in have and have[vtype].get('extra_specs', {}).get('volume_backend_name') == backend:
                continue
            if vtype in have:
                status, body = self.api('POST', '/v3/types/%s/extra_specs' % have[vtype]['id'],
                                        {'extra_specs': {'volume_backend_name': backend}})
            else:
                status, body = self.api('POST', '/v3/types', {'volume_type': {
                    'name': vtype, 'description': 'cinderlab: RBD back end %s' % backend,
                    'os-volume-type-access:is_public': True, 'extra_specs': {'volume_backend_name': backend}}})
            if status != 200:
                raise LabError('creating volume type %s: %s %s' % (vtype, status, body))
        st['types_done'] = True
        self.save_state(st)

    # -------------------------------------------------------------------------------- waiting
    def diagnostics(self, daemons=DAEMONS):
        parts = []
        for daemon in daemons:
            pid = self.daemon_pid(daemon)
            parts.append('--- %s: %s; tail of %s\n%s' % (daemon, 'pid %d' % pid if pid else 'NOT RUNNING',
                                                         self.daemon_log(daemon),
                                                         tail_file(self.daemon_log(daemon), 15)))
            out = os.path.join(self.log_dir, '%s.out' % daemon)
            if out != self.daemon_log(daemon) and os.path.exists(out) and os.path.getsize(out):
                parts.append('--- %s\n%s' % (out, tail_file(out, 10)))
        return '\n'.join(parts)

    def wait(self, what, probe, timeout):
        """cephlab's wait (probe() None = done, else why not; timeout: the reason and the logs' tails), stopped
        at once when one of the lab's daemons dies."""
        def probe_alive():
            dead = [d for d in DAEMONS if os.path.exists(self.pid_file(d)) and not self.daemon_pid(d)]
            if dead:
                raise _Died(' and '.join(dead))
            try:
                return probe()
            except (ValueError, KeyError, TypeError) as e:  # an answer that is not what it should be
                return 'unexpected answer: %r' % e
        try:
            super().wait(what, probe_alive, timeout)
        except _Died as e:
            raise LabError('%s died while waiting for %s in %s\n%s' % (e, what, self.dir, self.diagnostics())) from None

    def spawn_rabbitmq(self, st):
        self.write_rabbit_conf(st)
        self.check_ports(st, ('epmd', 'rabbitmq'))
        self.spawn('epmd', st)
        self.spawn('rabbitmq', st)

    def start_rabbitmq(self, st, timeout):
        self.spawn_rabbitmq(st)
        self.wait('RabbitMQ', lambda: amqp_problem(st['amqp_port']), timeout)

    def check_ports(self, st, daemons=DAEMONS):
        ports = {'epmd': ('epmd_port',), 'rabbitmq': ('amqp_port', 'dist_port'), 'cinder-api': ('api_port',),
                 'mariadb': ('db_port',), 'keystone': ('keystone_port',), 'cinder-api-keystone': ('api_ks_port',)}
        for daemon in daemons:
            if self.daemon_pid(daemon):
                continue
            busy = [st[k] for k in ports.get(daemon, ()) if not cephlab.port_free(st[k])]
            if busy:
                raise LabError('%s of %s cannot start: port(s) %s on 127.0.0.1 are taken by another process '
                               '(run `cinderlab.py stop --dir %s --purge` and start again)'
                               % (daemon, self.dir, ', '.join(map(str, busy)), self.dir))

    # -------------------------------------------------------------------------------- actions
    def pids(self):
        return {d: self.daemon_pid(d) for d in DAEMONS}

    def cinder_info(self, st):
        cluster = self.cluster(st)
        return {
            'dir': self.dir,
            'endpoint': self.api_url(st) + '/v3',
            'project_endpoint': '%s/v3/%s' % (self.api_url(st), st['project']),
            'api_url': self.api_url(st),
            'auth_token': self.token(st),
            'user': USER,
            'project': st['project'],
            'availability_zone': AZ,
            'max_microversion': st.get('max_microversion'),
            'volume_types': {vtype: {'backend': backend, 'pool': self.pools(st)[suffix]}
                             for vtype, backend, suffix in TYPES},
            'default_volume_type': TYPES[0][0],
            'ceph_dir': st['ceph_dir'],
            'ceph_conf': self.conf,
            'ceph_user': self.ceph_user(st),
            'ceph_client': 'client.' + self.ceph_user(st),
            'ceph_keyring': self.ceph_keyring(st),
            'cinder_conf': self.cinder_conf,
            'log_dir': self.log_dir,
            'transport_url': self.transport_url(st),
            'database_url': self.database_url(st),
            'host': HOST,
            'pids': self.pids(),
            'ceph_fsid': cluster['fsid'],
            'keystone': keystone.info(st),
        }

    def start(self, ceph_dir, prefix, timeout):
        started = time.monotonic()
        self.lock()
        try:
            st = self.state()
            if st.get('ceph_dir') and ceph_dir and os.path.abspath(ceph_dir) != st['ceph_dir']:
                raise LabError('%s belongs to the Ceph cluster in %s, not %s (stop it with --purge first)'
                               % (self.dir, st['ceph_dir'], ceph_dir))
            if not st.get('ceph_dir'):
                if not ceph_dir:
                    raise LabError('first start of %s: --ceph-dir is required' % self.dir)
                amqp, dist, epmd, api, db = cephlab.free_ports(5)
                lab_id = secrets.token_hex(3)
                # a project id in a URL must match cinder's project_id_regex [0-9a-f-]+ (else 404): a uuid
                st.update(ceph_dir=os.path.abspath(ceph_dir), prefix=prefix or DEFAULT_PREFIX, lab_id=lab_id,
                          project=uuid.uuid4().hex,
                          amqp_port=amqp, dist_port=dist, epmd_port=epmd, api_port=api, db_port=db,
                          db_password=secrets.token_hex(16),
                          rabbit_node='rabbit-cinderlab-%s@localhost' % lab_id)
                self.save_state(st)
            if 'keystone_port' not in st:
                st['keystone_port'], st['api_ks_port'] = cephlab.free_ports(2)
                st.update(keystone_admin_password=secrets.token_hex(16), keystone_store_password=secrets.token_hex(16))
                self.save_state(st)
            if st.get('complete') and all(self.daemon_pid(d) for d in DAEMONS) and os.path.exists(self.cinder_json):
                self.wait('Cinder services', self.services_problem, timeout)
                log('Cinder in %s runs, services up' % self.dir)
                return self.cinder_json
            if not os.path.exists(RABBITMQ_SERVER) or not shutil.which('cinder-volume'):
                raise LabError('Cinder is not installed (%s or cinder-volume missing): run `cinderlab.py install` '
                               '(root)' % RABBITMQ_SERVER)

            def phase(what):
                log('%5.1f s  %s' % (time.monotonic() - started, what))

            for daemon in DAEMONS:  # stale pid files (a crash, a reboot) would read as "died" below
                if not self.daemon_pid(daemon) and os.path.exists(self.pid_file(daemon)):
                    os.unlink(self.pid_file(daemon))
            for sub in ('run', 'log'):
                os.makedirs(self.path(sub), mode=0o700, exist_ok=True)
            if self.ceph_lab(st).status_json() is None:
                raise LabError('the Ceph cluster in %s does not answer (start it: `python3 tests/ceph/cephlab.py '
                               'start --dir %s`)' % (st['ceph_dir'], st['ceph_dir']))
            self.spawn_rabbitmq(st)  # it boots for seconds: meanwhile Ceph, MariaDB and the schema
            self.setup_ceph(st)
            phase('Ceph pools %s, client.%s' % (', '.join(self.pools(st).values()), self.ceph_user(st)))
            self.spawn_mariadb(st)
            self.wait('MariaDB', lambda: mysql_problem(st['db_port']), timeout)
            phase('MariaDB answers on 127.0.0.1:%d' % st['db_port'])
            self.setup_keystone(st, timeout, phase)
            self.write_cinder_conf(st)
            if not st.get('db_done'):
                self.run(['cinder-manage', '--config-file', self.cinder_conf, '--config-dir', self.conf_dir,
                          'db', 'sync'], timeout=300)
                st['db_done'] = True
                self.save_state(st)
                phase('cinder-manage db sync')
            self.wait('RabbitMQ', lambda: amqp_problem(st['amqp_port']), timeout)
            phase('RabbitMQ answers on 127.0.0.1:%d' % st['amqp_port'])
            self.check_ports(st, CINDER_SERVICES)
            for daemon in CINDER_SERVICES:
                self.spawn(daemon, st)
            self.wait('cinder-api', self.api_problem, timeout)
            phase('cinder-api answers on %s' % self.api_url(st))
            self.wait('cinder-api behind Keystone', self.keystone_api_problem, timeout)
            phase('cinder-api behind Keystone answers on 127.0.0.1:%d' % st['api_ks_port'])
            self.wait('cinder-scheduler and both cinder-volume back ends up', self.services_problem, timeout)
            phase('scheduler and back ends %s up' % ', '.join(b for _t, b, _s in TYPES))
            self.setup_types(st)
            st['max_microversion'] = self.max_microversion()
            st['complete'] = True
            self.save_state(st)
            write_file(self.cinder_json, json.dumps(self.cinder_info(st), indent=2) + '\n', 0o600)
            rss, pss = (sum(m) // 1024 for m in zip(*(memory_kib(p) for p in self.pids().values() if p)))
            log('Cinder in %s ready after %.1f s (RSS %d MiB, PSS %d MiB)'
                % (self.dir, time.monotonic() - started, rss, pss))
            return self.cinder_json
        finally:
            self.unlock()

    def stop(self, purge=False, timeout=20.0):
        if not os.path.isdir(self.dir):
            log('%s does not exist: nothing to stop' % self.dir)
            return
        started = time.monotonic()
        self.lock()
        try:
            for daemon in CINDER_SERVICES:  # each takes seconds to shut down gracefully: all at once
                pid = self.daemon_pid(daemon)
                if pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
            stopped = [d for d in STOP_ORDER if self.stop_daemon(d, timeout)]
            log('stopped %s in %.1f s' % (', '.join(stopped) or 'nothing', time.monotonic() - started))
        finally:
            self.unlock()
        if purge:
            self.purge_ceph(self.state())
            shutil.rmtree(self.dir, ignore_errors=True)
            if os.path.exists(self.dir):
                raise LabError('could not remove %s' % self.dir)
            log('removed %s' % self.dir)

    def require_complete(self):
        st = self.state()
        if not st.get('complete'):
            raise LabError('no Cinder in %s: run `cinderlab.py start --dir %s --ceph-dir CEPHDIR` first'
                           % (self.dir, self.dir))
        return st

    def stop_one(self, daemon):
        self.require_complete()
        self.lock()
        try:
            self.stop_daemon(daemon)
        finally:
            self.unlock()

    def start_one(self, daemon, timeout):
        """Start `daemon` again (rabbitmq or cinder-volume) and wait until Cinder is whole again."""
        st = self.require_complete()
        self.lock()
        try:
            if daemon == 'rabbitmq':
                self.start_rabbitmq(st, timeout)
            else:
                self.check_ports(st, (daemon,))
                self.spawn(daemon, st)
            self.wait('Cinder services', self.services_problem, timeout)
            write_file(self.cinder_json, json.dumps(self.cinder_info(st), indent=2) + '\n', 0o600)
        finally:
            self.unlock()
        log('%s of %s runs again, services up' % (daemon, self.dir))

    def status(self):
        st = self.state()
        if not st.get('ceph_dir'):
            print('no Cinder in %s' % self.dir)
            return 1
        total_rss = total_pss = 0
        for daemon in DAEMONS:
            pid = self.daemon_pid(daemon)
            rss, pss = memory_kib(pid) if pid else (0, 0)
            total_rss, total_pss = total_rss + rss, total_pss + pss
            print('%-16s %s' % (daemon, 'pid %d, RSS %d MiB, PSS %d MiB' % (pid, rss // 1024, pss // 1024)
                                if pid else 'not running'))
        print('%-16s RSS %d MiB, PSS %d MiB' % ('total', total_rss // 1024, total_pss // 1024))
        if not all(self.daemon_pid(d) for d in DAEMONS):
            return 1
        try:
            for s in self.services():
                print('%-16s %-24s %s %s' % (s['binary'], s['host'], s['status'], s['state']))
            problem = self.services_problem()
        except (LabError, OSError, ValueError) as e:
            problem = str(e)
        if problem:
            print('not ready: %s' % problem)
            return 1
        print('endpoint %s/v3 (X-Auth-Token: %s)' % (self.api_url(st), self.token(st)))
        return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    sub = parser.add_subparsers(dest='action', required=True)
    sub.add_parser('install', help='install the Debian packages when missing (root), no service started')
    for name, helptext in (('start', 'start (or create) Cinder in DIR, print DIR/cinder.json'),
                           ('stop', 'stop Cinder, RabbitMQ and epmd of DIR'),
                           ('rabbitmq-stop', 'stop RabbitMQ only'),
                           ('rabbitmq-start', 'start RabbitMQ again, wait until the services are up'),
                           ('volume-stop', 'stop cinder-volume only'),
                           ('volume-start', 'start cinder-volume again, wait until its back ends are up'),
                           ('status', 'pids, RSS and service states; exit 0 when all are up')):
        p = sub.add_parser(name, help=helptext)
        p.add_argument('--dir', required=True, help='directory holding all state of the lab')
        if name in ('start', 'rabbitmq-start', 'volume-start'):
            p.add_argument('--timeout', type=float, default=120.0, help='seconds per wait (default 120)')
        if name == 'start':
            p.add_argument('--ceph-dir', help='DIR of a running cephlab.py cluster (needed at the first start)')
            p.add_argument('--prefix', default=DEFAULT_PREFIX,
                           help='pools PREFIX-a, PREFIX-b and client.PREFIX in Ceph (default %(default)s; '
                                'one per lab sharing a cluster)')
            p.add_argument('--json', action='store_true', help='print the JSON instead of its path')
        if name == 'stop':
            p.add_argument('--purge', action='store_true',
                           help='remove DIR, and the pools and Ceph client of the lab from the cluster')
    args = parser.parse_args(argv)
    actions = {
        'install': lambda lab: install(),
        'start': lambda lab: print_start(lab.start(args.ceph_dir, args.prefix, args.timeout), args.json),
        'stop': lambda lab: lab.stop(purge=args.purge),
        'rabbitmq-stop': lambda lab: lab.stop_one('rabbitmq'),
        'volume-stop': lambda lab: lab.stop_one('cinder-volume'),
        'rabbitmq-start': lambda lab: lab.start_one('rabbitmq', args.timeout),
        'volume-start': lambda lab: lab.start_one('cinder-volume', args.timeout),
        'status': lambda lab: lab.status(),
    }
    try:
        return actions[args.action](CinderLab(args.dir) if args.action != 'install' else None) or 0
    except (LabError, subprocess.TimeoutExpired) as e:
        reason = e
    except OSError as e:
        if e.errno != errno.EACCES:
            raise
        reason = '%s (the lab needs root)' % e
    print('cinderlab: ERROR: %s' % reason, file=sys.stderr)
    return 1


def print_start(path, as_json):
    if as_json:
        with open(path) as f:
            sys.stdout.write(f.read())
    else:
        print(path)


if __name__ == '__main__':
    sys.exit(main())
