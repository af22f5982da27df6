# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running tests/lab/lab.py from the lab tests."""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LAB = os.path.join(HERE, 'lab.py')
ROOT = os.path.dirname(os.path.dirname(HERE))
ANSIBLE_BIN = os.path.join(os.path.dirname(sys.executable), 'ansible')


def lab_cmd(*args, check=True, timeout=1800):
    proc = subprocess.run([sys.executable, LAB] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, check=False)
    if check:
        assert proc.returncode == 0, 'lab.py %s failed:\n%s\n%s' % (' '.join(args), proc.stdout, proc.stderr)
    return proc


def run_on(name, state, host, command, data=None):
    """``command`` on a lab host (lab.py exec); its stdout, or a failed assertion with its stderr."""
    proc = subprocess.run([sys.executable, LAB, 'exec', '--name', name, '--state-dir', state, '--host', host, '--'] + command,
                          input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300, check=False)
    assert proc.returncode == 0, '%s on %s: %s' % (' '.join(command), host, proc.stderr.decode('utf-8', 'replace'))
    return proc.stdout.decode('utf-8')


def ansible_env():
    return dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_LOAD_CALLBACK_PLUGINS='1',
                ANSIBLE_STDOUT_CALLBACK='json')


def module_argv(state, host, name, args, check=False):
    argv = [ANSIBLE_BIN, '-i', os.path.join(state, 'inventory.yml'), host, '-m', 'vmimages.multistore.%s' % name, '-a', json.dumps(args)]
    return argv + (['--check', '--diff'] if check else ['--diff'])


def host_result(stdout, host):
    """The one task's result for ``host`` from the JSON callback's output."""
    return json.loads(stdout)['plays'][0]['tasks'][0]['hosts'][host]


def module(state, host, name, args, check=False):
    """One module run through Ansible with the lab's inventory; the host's result as a dict."""
    proc = subprocess.run(module_argv(state, host, name, args, check), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=ansible_env(), cwd=ROOT, timeout=900, check=False)
    try:
        return host_result(proc.stdout, host)
    except (ValueError, KeyError, IndexError):
        raise AssertionError('ansible %s %s: no result\n%s\n%s' % (host, name, proc.stdout[-3000:], proc.stderr[-3000:]))


def interface_bytes(name, state, host, interfaces=('eth0', 'eth1', 'eth2')):
    """{interface: (rx, tx)} from /proc/net/dev, read in the host's namespace."""
    lines = run_on(name, state, host, ['cat', '/proc/net/dev']).splitlines()[2:]
    counters = dict((label.strip(), numbers.split()) for label, numbers in (line.split(':', 1) for line in lines))
    return dict((interface, (int(counters[interface][0]), int(counters[interface][8]))) for interface in interfaces)


def cut_mid_run(name, state, runner, args, host, part):
    """Run the module ``args`` (a dict with 'module' and its arguments) on ``runner``; once ``host`` has received
    ``part`` bytes on its sync interface (eth2), take that link down until the run ended. Returns (the runner's
    result, bytes ``host`` received meanwhile)."""
    def received():
        return interface_bytes(name, state, host, ('eth2',))['eth2'][0]
    args = dict(args)
    before = received()
    run = subprocess.Popen(module_argv(state, runner, args.pop('module'), args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, env=ansible_env(), cwd=ROOT)
    deadline = time.time() + 300
    while received() - before < part and time.time() < deadline and run.poll() is None:
        time.sleep(0.2)
    assert run.poll() is None, 'the run ended before the cut: %s' % run.communicate()[0][-2000:]
    run_on(name, state, host, ['ip', 'link', 'set', 'eth2', 'down'])
    try:
        out, _err = run.communicate(timeout=600)
    finally:
        run_on(name, state, host, ['ip', 'link', 'set', 'eth2', 'up'])
    return host_result(out, runner), received() - before
