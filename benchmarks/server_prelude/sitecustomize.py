"""``bridge.py --server-prelude FILE`` run in every process of the callbridge server, its workers included.

Why: ``callbridge serve`` starts its workers as fresh interpreters (``python -m callbridge serve
--worker …``), and the workers carry the calls. A prelude run only in the process the benchmark starts
patches the parent alone: an A/B run that way measures the same code twice (it did, 2026-12-06).

How: ``bridge_procs.start_server`` puts this directory first on the server's ``PYTHONPATH`` and names
the file in ``CALLBRIDGE_SERVER_PRELUDE``; the workers inherit both. Python imports this module at
start-up in each process, before ``callbridge``, and it runs the file in those with ``serve`` among
their arguments (a prelude tells a worker by ``--worker`` among them). Only one module of this name is
imported, so with ``--stalls`` too the stall watch's own is run from here.
"""

from __future__ import annotations

import os
import runpy
import sys

_PRELUDE = os.environ.get("CALLBRIDGE_SERVER_PRELUDE")
if _PRELUDE and "serve" in sys.argv:
    runpy.run_path(_PRELUDE)

if os.environ.get("CALLBRIDGE_STALLS_DIR"):
    _BENCHMARKS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runpy.run_path(os.path.join(_BENCHMARKS, "stall_watch", "sitecustomize.py"))
