# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Timestamps in Glance's form (UTC, ISO 8601, seconds, trailing Z)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time


def utc_now():
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
