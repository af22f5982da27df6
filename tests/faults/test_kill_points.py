# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kill -9 of a whole ansible-playbook process tree at random points of import, copy, delete, clone, store_cleanup and
image_export on three real file stores, then: every active image is whole, the re-run completes without waiting on
the dead run's locks, a second re-run changes nothing, and store_cleanup leaves exactly the layout (kill_points.py).

KILL_POINTS (default 14, a sample over every operation) and KILL_SEED (default fixed, so `make test` repeats itself;
when KILL_POINTS is given without KILL_SEED a random seed is drawn and shown in every test id) choose the points.
Repeat one: KILL_SEED=<seed> KILL_POINTS=<n> pytest tests/faults/test_kill_points.py -k '<op>-seed<seed>-<i>'.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import random
import time

import pytest

from playbooks import descendants, kill_tree, start, wait_for

import kill_points
from kill_points import OPS, OP_NAMES, Work

SAMPLE_POINTS = 14
SAMPLE_SEED = 20261202
POINTS = int(os.environ.get('KILL_POINTS') or SAMPLE_POINTS)
if os.environ.get('KILL_SEED'):
    SEED = int(os.environ['KILL_SEED'])
elif os.environ.get('KILL_POINTS'):
    SEED = random.SystemRandom().randrange(1, 10 ** 6)
else:
    SEED = SAMPLE_SEED
# One kill in five falls anywhere in the playbook's run (start-up, task set-up, result); the others within the module.
WHOLE_PLAY_SHARE = 0.2
HANG_GUARD = 600  # seconds: only against a run that hangs

# the ops in turn, so that every op gets POINTS / len(OPS) points (26 or 27 of 210)
POINT_IDS = [(OP_NAMES[index % len(OP_NAMES)], SEED, index) for index in range(POINTS)]
SUMMARY = dict((op, {'points': 0, 'phases': {}, 'findings': [], 'baseline': None}) for op in OP_NAMES)


class Summary:
    """A pytest plugin object: the per-op table at the end of the session."""

    def pytest_terminal_summary(self, terminalreporter):
        write = terminalreporter.write_line
        write('kill -9 points, seed %d (KILL_SEED=%d KILL_POINTS=%d repeats this run):' % (SEED, SEED, POINTS))
        for op in OP_NAMES:
            row = SUMMARY[op]
            if row['points']:
                phases = ', '.join('%s %d' % item for item in sorted(row['phases'].items()))
                write('  %-9s %3d points (%s); findings: %d; undisturbed run: module after %.1f s, for %.1f s, playbook %.1f s'
                      % ((op, row['points'], phases, len(row['findings'])) + row['baseline']))
                for finding in row['findings']:
                    write('      %s' % finding)


@pytest.fixture(scope='module', autouse=True)
def summary(request):
    plugin = Summary()
    request.config.pluginmanager.register(plugin, 'kill-points-summary')
    yield


@pytest.fixture(scope='module')
def sources(tmp_path_factory):
    return kill_points.make_sources(str(tmp_path_factory.mktemp('kill-sources')))


def _module_pids(run, module):
    """The run's python processes running the module: not the chmod, nor the shell, that name its file first."""
    marker = ('/AnsiballZ_%s.py' % module).encode()
    found = []
    for pid in descendants(run.process.pid):
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                argv = handle.read().split(b'\0')
        except (IOError, OSError):
            continue
        if len(argv) > 1 and b'python' in os.path.basename(argv[0]) and argv[1].endswith(marker):
            found.append(pid)
    return found


@pytest.fixture(scope='module')
def baselines(sources, tmp_path_factory):
    """{op: (seconds from start to the module's process, seconds the module ran, seconds the whole playbook ran)},
    measured once per op on an undisturbed run."""
    measured = {}

    def baseline(op):
        if op not in measured:
            work = Work(str(tmp_path_factory.mktemp('baseline-%s' % op)), sources)
            OPS[op].prepare(work)
            began = time.time()
            run = start(OPS[op].play(), work.directory, work.extravars())
            appeared = wait_for(lambda: _module_pids(run, OPS[op].module) and time.time(), HANG_GUARD)
            gone = wait_for(lambda: not _module_pids(run, OPS[op].module) and time.time(), HANG_GUARD)
            run.wait(HANG_GUARD)
            ended = time.time()
            assert run.rc == 0, run.describe()
            measured[op] = SUMMARY[op]['baseline'] = (appeared - began, gone - appeared, ended - began)
        return measured[op]
    return baseline


def _kill(run, op, rng, baseline):
    """Kill the run at the point the rng picks; the phase the kill fell in."""
    to_module, in_module, whole = baseline
    if rng.random() < WHOLE_PLAY_SHARE:
        delay = rng.uniform(0, whole)
        time.sleep(delay)
        phase = 'play'
    else:
        delay = rng.uniform(0, in_module)
        if not wait_for(lambda: _module_pids(run, OPS[op].module) or run.process.poll() is not None, HANG_GUARD):
            raise AssertionError('the module never started')
        time.sleep(delay)
        phase = 'module'
    running = bool(_module_pids(run, OPS[op].module))
    done = run.process.poll() is not None
    kill_tree(run.process.pid)
    run.wait(HANG_GUARD)
    if done:
        return phase + ':after-end'
    return phase + (':in-module' if running else ':outside-module')


@pytest.mark.parametrize('op,seed,index', POINT_IDS, ids=['%s-seed%d-%d' % point for point in POINT_IDS])
def test_kill_point(op, seed, index, sources, baselines, tmp_path):
    rng = random.Random('%d-%d' % (seed, index))
    work = Work(str(tmp_path), sources)
    OPS[op].prepare(work)
    play = OPS[op].play()
    baseline = baselines(op)

    run = start(play, work.directory, work.extravars())
    phase = _kill(run, op, rng, baseline)
    row = SUMMARY[op]
    row['points'] += 1
    row['phases'][phase] = row['phases'].get(phase, 0) + 1
    where = '%s seed %d point %d (%s, KILL_SEED=%d -k %s-seed%d-%d)' % (op, seed, index, phase, seed, op, seed, index)

    def verdict(stage, problems):
        if problems:
            row['findings'].append('%s: %s: %s' % (where, stage, '; '.join(problems)))
            print('\nFINDING %s' % row['findings'][-1])  # at once with -s: a long run stopped early keeps it
            raise AssertionError('%s, %s:\n  %s' % (where, stage, '\n  '.join(problems)))

    verdict('after the kill', kill_points.check_images(work) + (kill_points.check_export(work, False) if op == 'export' else [])
            + kill_points.check_locks_free(work))

    rerun = start(play, work.directory, work.extravars(), name='rerun.yml').wait(HANG_GUARD)
    verdict('the re-run', [] if rerun.rc == 0 else [rerun.describe()])
    again = start(play, work.directory, work.extravars(), name='again.yml').wait(HANG_GUARD)
    verdict('the second re-run', ([] if again.rc == 0 else [again.describe()])
            + ['changed: %s' % name for name in again.changed_tasks()])
    verdict('after the re-run', kill_points.check_images(work, OPS[op].final)
            + (kill_points.check_export(work, True) if op == 'export' else []))

    kill_points.cleanup_all(work)
    verdict('after store_cleanup', kill_points.check_clean(work) + kill_points.check_images(work, OPS[op].final))
