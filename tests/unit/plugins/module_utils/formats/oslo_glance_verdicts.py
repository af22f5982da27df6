# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Glance's verdict on image files, from oslo.utils' format inspector (run by test_oslo_differential.py).

Run with the directory of a pinned oslo.utils >= 7 first on PYTHONPATH (make setup installs it into
.venv/oslo-inspector). Reads [[path, declared disk_format], ...] as JSON on stdin and prints, for each file,
{"accept": bool, "detected": str or null, "reason": str}: what Glance's import does with the file. It detects
the format, runs every safety check, takes 'gpt' (a raw disk with a partition table) for raw and requires the
declared disk_format.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib
import json
import logging
import sys


def verdict(inspectors, path, declared):
    detected = None
    try:
        found = inspectors.detect_file_format(path)
        detected = str(found)
        found.safety_check()
    except inspectors.SafetyCheckFailed as exc:
        return {'accept': False, 'detected': detected, 'reason': 'safety check failed: %s' % ', '.join(sorted(exc.failures))}
    except inspectors.ImageFormatError as exc:
        return {'accept': False, 'detected': None, 'reason': 'format error: %s' % exc}
    if detected == 'gpt':
        detected = 'raw'
    if detected != declared:
        return {'accept': False, 'detected': detected, 'reason': 'detected %s, declared %s' % (detected, declared)}
    return {'accept': True, 'detected': detected, 'reason': ''}


def main():
    logging.disable(logging.CRITICAL)  # the inspectors log every mismatch they rule out
    inspectors = importlib.import_module('oslo_utils.imageutils.format_inspector')
    cases = json.load(sys.stdin)
    json.dump([verdict(inspectors, path, declared) for path, declared in cases], sys.stdout)


if __name__ == '__main__':
    main()
