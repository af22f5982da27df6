# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The execution environment for AWX: execution-environment.yml (ansible-builder v3) and the
collection's own EE metadata (meta/execution-environment.yml, meta/ee-requirements.txt,
meta/ee-bindep.txt).

    .venv/bin/python -m pytest tests/ee          (make ee)

What runs here: `ansible-builder create` on a copy of execution-environment.yml (the build context:
Containerfile, _build/requirements.txt, _build/bindep.txt, the collection tarball), ansible-builder's
introspection of the installed collection (what a build adds from meta/), a check that
meta/ee-requirements.txt covers every third-party import under plugins/, and bindep parsing
meta/ee-bindep.txt (on this Debian host: every [platform:dpkg] package is installed and provides the
commands the modules run). Building the image itself needs a container registry for the base image:
see meta/README-ee.md.
"""

import ast
import glob
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

import pytest
import yaml
from bindep import depends as bindep_depends
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
EE_FILE = os.path.join(REPO, 'execution-environment.yml')
META_EE = os.path.join(REPO, 'meta', 'execution-environment.yml')
EE_REQUIREMENTS = os.path.join(REPO, 'meta', 'ee-requirements.txt')
EE_BINDEP = os.path.join(REPO, 'meta', 'ee-bindep.txt')

# Python modules that come from system packages (not PyPI), and the bindep entry that brings them.
SYSTEM_PYTHON_MODULES = {'rbd': 'python3-rbd', 'rados': 'python3-rados'}
# Python 2 names imported only as fallbacks (try: <py3 name> except ImportError: <py2 name>).
PY2_STDLIB = {'urlparse', 'Queue'}
# Commands the modules and the demo run on the managed host, and the package families that provide them.
COMMANDS = ('qemu-img', 'rbd', 'ceph', 'ssh', 'mkfs.ext4', 'mkfs.xfs', 'xorriso', 'genisoimage', 'ip')
PLATFORMS = {
    'dpkg': ['platform:dpkg', 'platform:debian'],
    'rpm': ['platform:rpm', 'platform:redhat', 'platform:fedora'],
}


def load_yaml(path):
    with open(path) as handle:
        return yaml.safe_load(handle)


def galaxy_version():
    return load_yaml(os.path.join(REPO, 'galaxy.yml'))['version']


def tarball_name():
    return 'vmimages-multistore-%s.tar.gz' % galaxy_version()


def pinned(name):
    """The version requirements.txt pins for a package."""
    with open(os.path.join(REPO, 'requirements.txt')) as handle:
        for line in handle:
            match = re.match(r'^%s==(\S+)' % re.escape(name), line.strip())
            if match:
                return match.group(1)
    raise AssertionError('%s is not pinned in requirements.txt' % name)


def read_requirements(path):
    reqs = []
    with open(path) as handle:
        for line in handle:
            line = line.split('#', 1)[0].strip()
            if line:
                reqs.append(Requirement(line))
    return reqs


def run(argv, cwd=None, timeout=300):
    # Neither the work tree's ansible.cfg nor tests/conftest.py's ANSIBLE_COLLECTIONS_PATH (both name the work
    # tree as an installed vmimages.multistore, and ansible-galaxy would then install nothing).
    env = dict(os.environ, ANSIBLE_NOCOLOR='1')
    for name in ('ANSIBLE_CONFIG', 'ANSIBLE_COLLECTIONS_PATH', 'ANSIBLE_COLLECTIONS_PATHS'):
        env.pop(name, None)
    cwd = cwd or tempfile.gettempdir()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=timeout, check=False)
    assert proc.returncode == 0, '%s failed (exit %d):\n%s' % (' '.join(argv), proc.returncode, proc.stdout[-4000:])
    return proc.stdout


@pytest.fixture(scope='module')
def collection_tarball(tmp_path_factory):
    """The collection built as `make build` builds it (galaxy.yml's build_ignore applies)."""
    out = tmp_path_factory.mktemp('build')
    run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'build', '--output-path', str(out), REPO])
    path = out / tarball_name()
    assert path.is_file(), os.listdir(str(out))
    return path


@pytest.fixture(scope='module')
def ee_dir(tmp_path_factory, collection_tarball):
    """A copy of the EE definition with the files it names, laid out as in the work tree
    (the work tree's build/ is left alone)."""
    base = tmp_path_factory.mktemp('ee')
    shutil.copy(EE_FILE, str(base / 'execution-environment.yml'))
    (base / 'meta').mkdir()
    for path in (EE_REQUIREMENTS, EE_BINDEP):
        shutil.copy(path, str(base / 'meta'))
    (base / 'build').mkdir()
    shutil.copy(str(collection_tarball), str(base / 'build'))
    return base


@pytest.fixture(scope='module')
def context(ee_dir):
    """`ansible-builder create`: the build context an image build would use."""
    ctx = ee_dir / 'context'
    out = run([os.path.join(BIN, 'ansible-builder'), 'create', '-f', str(ee_dir / 'execution-environment.yml'),
               '-c', str(ctx), '-v3'], cwd=str(ee_dir))
    assert 'Complete!' in out, out
    return ctx


def test_definition_is_v3_and_pins_what_we_test():
    definition = load_yaml(EE_FILE)
    assert definition['version'] == 3
    base = definition['images']['base_image']['name']
    # a public image's short name with a tag (the engine's registry configuration resolves it): no host, no placeholder
    assert re.match(r'^[a-z0-9._-]+(/[a-z0-9._-]+)*:[A-Za-z0-9._-]+$', base) and '.' not in base.split('/')[0].split(':')[0], base
    assert not re.search(r'localhost|example|internal|<|\{', base), base
    deps = definition['dependencies']
    assert deps['ansible_core']['package_pip'] == 'ansible-core==%s' % pinned('ansible-core')
    assert deps['ansible_runner']['package_pip'] == 'ansible-runner==%s' % pinned('ansible-runner')
    assert deps['python'] == 'meta/ee-requirements.txt'
    assert deps['system'] == 'meta/ee-bindep.txt'


def test_definition_names_this_collection_version():
    """The tarball named in the EE file (galaxy requirement and build file) is this galaxy.yml's version."""
    definition = load_yaml(EE_FILE)
    names = [c['name'] for c in definition['dependencies']['galaxy']['collections'] if c.get('type') == 'file']
    assert names == ['collections/' + tarball_name()]
    files = definition['additional_build_files']
    assert {'src': 'build/' + tarball_name(), 'dest': 'collections'} in files


def test_meta_execution_environment_points_at_the_ee_files():
    meta = load_yaml(META_EE)
    assert meta['dependencies'] == {'python': 'meta/ee-requirements.txt', 'system': 'meta/ee-bindep.txt'}


def test_create_writes_the_build_context(context):
    containerfile = (context / 'Containerfile').read_text()
    base = load_yaml(EE_FILE)['images']['base_image']['name']
    # the base is a build argument: a local or mirrored copy can stand in for it (--build-arg EE_BASE_IMAGE=...)
    assert 'ARG EE_BASE_IMAGE="%s"' % base in containerfile
    assert 'FROM $EE_BASE_IMAGE AS base' in containerfile
    assert 'ansible-core==%s ansible-runner==%s' % (pinned('ansible-core'), pinned('ansible-runner')) in containerfile
    assert 'ansible-galaxy collection install' in containerfile
    assert 'introspect.py introspect' in containerfile
    assert 'install-from-bindep' in containerfile

    build = context / '_build'
    requirements = (build / 'requirements.txt').read_text()
    for name in ('boto3', 'python-swiftclient', 'paramiko', 'cryptography', 'requests'):
        assert re.search(r'^%s[<>=~! ]' % re.escape(name), requirements, re.M), (name, requirements)
    bindep = (build / 'bindep.txt').read_text()
    for name in ('qemu-img [platform:rpm]', 'qemu-utils [platform:dpkg]', 'ceph-common', 'python3-rbd',
                 'python3-rados', 'openssh-clients [platform:rpm]', 'xorriso', 'genisoimage', 'e2fsprogs',
                 'xfsprogs', 'iproute [platform:rpm]', 'iproute2 [platform:dpkg]'):
        assert name in bindep, (name, bindep)

    galaxy = yaml.safe_load((build / 'requirements.yml').read_text())
    assert {'name': 'collections/' + tarball_name(), 'type': 'file'} in galaxy['collections']

    # the collection itself is in the context, with its EE metadata inside
    tarball = build / 'collections' / tarball_name()
    assert tarball.is_file()
    with tarfile.open(str(tarball)) as tar:
        members = set(tar.getnames())
        manifest = json.load(tar.extractfile('MANIFEST.json'))
    assert manifest['collection_info']['namespace'] == 'vmimages'
    assert manifest['collection_info']['name'] == 'multistore'
    assert manifest['collection_info']['version'] == galaxy_version()
    for path in ('meta/execution-environment.yml', 'meta/ee-requirements.txt', 'meta/ee-bindep.txt',
                 'plugins/modules/image.py'):
        assert path in members, path


def test_introspection_of_the_installed_collection(tmp_path, collection_tarball):
    """What ansible-builder adds to an image from the installed collection's meta/execution-environment.yml."""
    run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', '-p', str(tmp_path), str(collection_tarball)])
    out = run([os.path.join(BIN, 'ansible-builder'), 'introspect', '--sanitize', str(tmp_path)])
    data = yaml.safe_load(out)
    python = sorted(str(Requirement(line.split('#')[0])) for line in data['python'])
    assert python == sorted(str(req) for req in read_requirements(EE_REQUIREMENTS))
    assert all(line.endswith('# from collection vmimages.multistore') for line in data['python'] + data['system'])
    system = [line.split('#')[0].strip() for line in data['system']]
    assert 'ceph-common [platform:dpkg platform:rpm]' in system
    assert 'qemu-img [platform:rpm]' in system


def third_party_imports():
    """{top-level module: [files]} of every import under plugins/ that is neither the standard library
    nor Ansible (nor a Python 2 fallback)."""
    found = {}
    stdlib = set(sys.stdlib_module_names)
    for path in glob.glob(os.path.join(REPO, 'plugins', '**', '*.py'), recursive=True):
        with open(path) as handle:
            tree = ast.parse(handle.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split('.')[0]
                if top in stdlib or top in PY2_STDLIB or top in ('ansible', 'ansible_collections'):
                    continue
                found.setdefault(top, []).append(os.path.relpath(path, REPO))
    return found


def requirement_closure(requirements):
    """Canonical names of the requirements and of everything they depend on (installed metadata)."""
    seen = set()
    todo = [req.name for req in requirements]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({'extra': ''}):
                todo.append(req.name)
    return seen


def test_ee_requirements_cover_every_third_party_import():
    imports = third_party_imports()
    # the scan finds what we know the modules use (guards against a scan that finds nothing)
    assert {'boto3', 'botocore', 'swiftclient', 'requests', 'paramiko', 'cryptography', 'rbd', 'rados'} <= set(imports)

    requirements = read_requirements(EE_REQUIREMENTS)
    direct = {canonicalize_name(req.name) for req in requirements}
    closure = requirement_closure(requirements)
    distributions = importlib.metadata.packages_distributions()
    bindep_rules = bindep_depends.Depends(open(EE_BINDEP).read())
    missing = []
    for module, files in sorted(imports.items()):
        if module in SYSTEM_PYTHON_MODULES:
            for platform in PLATFORMS.values():
                assert SYSTEM_PYTHON_MODULES[module] in [rule[0] for rule in bindep_rules.active_rules(platform)]
            continue
        dists = {canonicalize_name(d) for d in distributions.get(module, [])}
        assert dists, 'import %s (%s) is not installed in .venv: cannot tell its distribution' % (module, files[0])
        if not dists & closure:
            missing.append('%s (%s, distribution %s)' % (module, files[0], ', '.join(sorted(dists))))
    assert not missing, 'meta/ee-requirements.txt lacks: %s' % '; '.join(missing)

    # and nothing stale: each requirement provides a module that plugins/ imports
    imported = set()
    for module in imports:
        imported |= {canonicalize_name(d) for d in distributions.get(module, [])}
    assert direct <= imported, 'meta/ee-requirements.txt names what plugins/ never imports: %s' % (direct - imported)


def test_ee_requirements_start_at_the_tested_pins():
    """Where requirements.txt/constraints.txt pin a package, the EE range includes that version."""
    pins = {}
    for name in ('requirements.txt', 'constraints.txt'):
        with open(os.path.join(REPO, name)) as handle:
            for line in handle:
                match = re.match(r'^([A-Za-z0-9._-]+)==(\S+)', line.strip())
                if match:
                    pins[canonicalize_name(match.group(1))] = match.group(2)
    for req in read_requirements(EE_REQUIREMENTS):
        version = pins.get(canonicalize_name(req.name))
        if version is None:
            continue
        assert req.specifier.contains(version), '%s does not allow the tested %s' % (req, version)
        assert str(req.specifier), '%s has no version range' % req.name


def test_ee_bindep_parses_for_both_package_families():
    rules = bindep_depends.Depends(open(EE_BINDEP).read())
    assert rules.profiles() == []  # everything is a runtime dependency (no compile/test profiles)
    dpkg = [rule[0] for rule in rules.active_rules(PLATFORMS['dpkg'])]
    rpm = [rule[0] for rule in rules.active_rules(PLATFORMS['rpm'])]
    assert set(dpkg) == {'qemu-utils', 'qemu-block-extra', 'ceph-common', 'python3-rbd', 'python3-rados',
                         'xorriso', 'genisoimage', 'openssh-client', 'e2fsprogs', 'xfsprogs', 'iproute2'}
    assert set(rpm) == {'qemu-img', 'qemu-block-rbd', 'ceph-common', 'python3-rbd', 'python3-rados',
                        'xorriso', 'genisoimage', 'openssh-clients', 'e2fsprogs', 'xfsprogs', 'iproute'}


@pytest.mark.skipif(not shutil.which('dpkg-query'), reason='not a dpkg system')
def test_ee_bindep_dpkg_side_is_installed_here_and_provides_the_commands():
    """On this Debian host (make setup installs the packages): bindep finds every [platform:dpkg]
    package installed, and those packages provide every command the modules run."""
    proc = subprocess.run([os.path.join(BIN, 'bindep'), '-b', '-f', EE_BINDEP], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert proc.returncode == 0 and not proc.stdout.strip(), 'bindep reports missing: %s' % proc.stdout

    rules = bindep_depends.Depends(open(EE_BINDEP).read())
    dpkg = {rule[0] for rule in rules.active_rules(PLATFORMS['dpkg'])}
    for command in COMMANDS:
        path = shutil.which(command, path='/usr/sbin:/usr/bin:/sbin:/bin')
        assert path, '%s is not installed here' % command
        owner = subprocess.run(['dpkg-query', '-S', os.path.realpath(path)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, universal_newlines=True, check=False).stdout
        if 'no path found' in owner:  # /bin vs /usr/bin (merged /usr): ask for the other spelling
            other = path.replace('/usr/', '/', 1) if path.startswith('/usr/') else '/usr' + path
            owner = subprocess.run(['dpkg-query', '-S', other], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   universal_newlines=True, check=False).stdout
        packages = {part.strip().split(':')[0] for part in owner.split(':', 1)[0].split(',')}
        assert packages & dpkg, '%s (%s) comes from %s, not listed for [platform:dpkg]' % (command, path, owner.strip())
