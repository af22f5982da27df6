# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keystone for the Cinder lab (cinderlab.py): Debian's python3-keystone on the lab's MariaDB, fernet tokens.

The lab runs it as keystone-wsgi-public (wsgiref, one thread: plenty for tests) on a free 127.0.0.1 port, with
OS_KEYSTONE_CONFIG_DIR=DIR/keystone (DIR/keystone/keystone.conf; no /etc/keystone). `keystone-manage bootstrap`
makes the admin user and project and the identity endpoint; then, through the API, the lab adds:
  - the volumev3 service with endpoints http://127.0.0.1:PORT/v3/%(project_id)s of a second cinder-api that
    runs with auth_strategy = keystone (same database and RabbitMQ as the noauth one: the same volumes);
  - project `multistore` and user `multistore` (role member on it): what a store declares with auth_url.
Everything here is idempotent: start runs it at each start.
"""

import json
import os
import urllib.error
import urllib.request

REGION = 'RegionOne'
ADMIN = 'admin'
STORE_USER = 'multistore'
STORE_PROJECT = 'multistore'
STORE_ROLE = 'member'  # what a Glance-like service user needs to create, attach and delete volumes
DOMAIN = 'Default'


def conf_dir(lab):
    return lab.path('keystone')


def auth_url(st):
    return 'http://127.0.0.1:%d/v3' % st['keystone_port']


def database_url(st):
    return 'mysql+pymysql://keystone:%s@127.0.0.1:%d/keystone?charset=utf8' % (st['db_password'], st['db_port'])


def init_sql(st):
    """MariaDB statements (idempotent) for Keystone's database and user."""
    return ("CREATE DATABASE IF NOT EXISTS keystone;\n"
            "CREATE USER IF NOT EXISTS 'keystone'@'127.0.0.1' IDENTIFIED BY '{pw}';\n"
            "ALTER USER 'keystone'@'127.0.0.1' IDENTIFIED BY '{pw}';\n"
            "GRANT ALL PRIVILEGES ON keystone.* TO 'keystone'@'127.0.0.1';\n").format(pw=st['db_password'])


def write_conf(lab, st, write_file):
    d = conf_dir(lab)
    for sub in ('fernet-keys', 'credential-keys'):
        os.makedirs(os.path.join(d, sub), mode=0o700, exist_ok=True)
    write_file(os.path.join(d, 'keystone.conf'), """# written by tests/cinder/cinderlab.py
[DEFAULT]
log_dir = {log_dir}
log_file = keystone.log
use_stderr = false

[database]
connection = {database_url}

[token]
provider = fernet

[fernet_tokens]
key_repository = {d}/fernet-keys

[fernet_receipts]
key_repository = {d}/fernet-keys

[credential]
key_repository = {d}/credential-keys

[cache]
enabled = false
""".format(log_dir=lab.log_dir, database_url=database_url(st), d=d), 0o600)


def manage_commands(lab, st):
    """keystone-manage runs, in order, for a new lab (db_sync is the slow one)."""
    base = ['keystone-manage', '--config-file', os.path.join(conf_dir(lab), 'keystone.conf')]
    owner = ['--keystone-user', 'root', '--keystone-group', 'root']
    return [
        base + ['db_sync'],
        base + ['fernet_setup'] + owner,
        base + ['credential_setup'] + owner,
        base + ['bootstrap', '--bootstrap-password', st['keystone_admin_password'],
                '--bootstrap-username', ADMIN, '--bootstrap-project-name', ADMIN, '--bootstrap-role-name', ADMIN,
                '--bootstrap-admin-url', auth_url(st), '--bootstrap-public-url', auth_url(st),
                '--bootstrap-internal-url', auth_url(st), '--bootstrap-region-id', REGION],
    ]


def cinder_override(lab, st):
    """The second cinder-api's config (after cinder.conf): Keystone auth on its own port and log."""
    return """# written by tests/cinder/cinderlab.py: cinder-api behind Keystone, read after cinder.conf
[DEFAULT]
auth_strategy = keystone
osapi_volume_listen_port = {port}
log_file = cinder-api-keystone.log

[keystone_authtoken]
www_authenticate_uri = {auth_url}
auth_url = {auth_url}
auth_type = password
username = {admin}
password = {password}
project_name = {admin}
user_domain_name = {domain}
project_domain_name = {domain}
""".format(port=st['api_ks_port'], auth_url=auth_url(st), admin=ADMIN, password=st['keystone_admin_password'],
           domain=DOMAIN)


def request(url, method='GET', body=None, token=None, timeout=30):
    """(status, headers, JSON body or None)."""
    headers = {'Accept': 'application/json', 'Content-Type': 'application/json'}
    if token:
        headers['X-Auth-Token'] = token
    req = urllib.request.Request(url, method=method, headers=headers,
                                 data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, hdrs, raw = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, e.headers, e.read()
    try:
        return status, hdrs, json.loads(raw) if raw.strip() else None
    except ValueError:
        return status, hdrs, {'raw': raw.decode('utf-8', 'replace')[:500]}


def problem(st):
    """None when Keystone answers its v3 root, else why not."""
    try:
        status, _h, body = request(auth_url(st), timeout=10)
    except (urllib.error.URLError, OSError) as e:
        return 'Keystone does not answer HTTP: %s' % e
    if status != 200 or 'version' not in (body or {}):
        return 'Keystone answered %s %s' % (status, body)
    return None


def password_token(st, user, password, project):
    status, headers, body = request(auth_url(st) + '/auth/tokens', 'POST', {'auth': {
        'identity': {'methods': ['password'], 'password': {'user': {
            'name': user, 'domain': {'name': DOMAIN}, 'password': password}}},
        'scope': {'project': {'name': project, 'domain': {'name': DOMAIN}}}}})
    if status != 201:
        raise RuntimeError('Keystone token for %s: %s %s' % (user, status, body))
    return headers['X-Subject-Token']


class _Admin:
    """Admin calls on the Keystone API; `ensure` finds a thing by name or makes it."""

    def __init__(self, st):
        self.base = auth_url(st)
        self.token = password_token(st, ADMIN, st['keystone_admin_password'], ADMIN)

    def call(self, method, path, body=None, want=(200, 201, 204)):
        status, _h, answer = request(self.base + path, method, body, self.token)
        if status not in want:
            raise RuntimeError('Keystone %s %s: %s %s' % (method, path, status, answer))
        return answer

    def ensure(self, collection, query, create):
        found = self.call('GET', '/%s?%s' % (collection, query))[collection]
        if found:
            return found[0]
        return self.call('POST', '/' + collection, {collection[:-1]: create})[collection[:-1]]


def setup_catalog(st):
    """The volumev3 service and endpoints, the store's project and user (password: st['keystone_store_password'])."""
    admin = _Admin(st)
    service = admin.ensure('services', 'type=volumev3', {'type': 'volumev3', 'name': 'cinderv3', 'enabled': True})
    url = 'http://127.0.0.1:%d/v3/%%(project_id)s' % st['api_ks_port']
    have = {e['interface']: e for e in admin.call('GET', '/endpoints?service_id=%s' % service['id'])['endpoints']}
    for interface in ('public', 'internal', 'admin'):
        if interface in have and have[interface]['url'] == url:
            continue
        if interface in have:
            admin.call('DELETE', '/endpoints/%s' % have[interface]['id'])
        admin.call('POST', '/endpoints', {'endpoint': {'service_id': service['id'], 'interface': interface,
                                                       'url': url, 'region_id': REGION, 'enabled': True}})
    project = admin.ensure('projects', 'name=%s' % STORE_PROJECT,
                           {'name': STORE_PROJECT, 'domain_id': 'default', 'description': 'cinderlab: store tests'})
    user = admin.ensure('users', 'name=%s' % STORE_USER,
                        {'name': STORE_USER, 'domain_id': 'default', 'password': st['keystone_store_password']})
    role = admin.call('GET', '/roles?name=%s' % STORE_ROLE)['roles'][0]
    admin.call('PUT', '/projects/%s/users/%s/roles/%s' % (project['id'], user['id'], role['id']))


def info(st):
    """cinder.json's `keystone`: what a store needs to declare auth_url (and the lab's admin, for tests)."""
    return {
        'auth_url': auth_url(st),
        'user': STORE_USER,
        'password': st['keystone_store_password'],
        'project': STORE_PROJECT,
        'user_domain': DOMAIN,
        'project_domain': DOMAIN,
        'region': REGION,
        'admin_password': st['keystone_admin_password'],
        'volume_api_url': 'http://127.0.0.1:%d' % st['api_ks_port'],
    }
