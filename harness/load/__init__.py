"""Load: many simulated users under Locust, recorded into the same history as the scenarios.

A load run starts Locust in a process of its own (Locust patches the standard library
with gevent, which must never happen inside the harness). Every Locust process writes
the ops of its simulated users to a *process history*, one JSONL file per OS process,
with ``real_ns`` measured from the harness's monotonic origin. After the run, the
harness merges the files into one history ordered by ``real_ns`` and the checker judges
it like any other. Locust's own statistics (requests per second, failures, percentiles
per endpoint) come from its CSV files.

Modules:

- ``recording``: the process history that a Locust process writes, and the environment
  variables that configure it;
- ``locustfile``: the simulated user, usable with a plain ``locust -f``;
- ``merge``: merge process histories into one history;
- ``locust_stats``: read Locust's CSV statistics and judge the thresholds;
- ``runner``: ``scan-harness load`` and the load phase of ``scan-harness run``;
- ``report``: the console table, ``summary.json`` and ``junit.xml`` of a load run.

Only ``recording`` and ``locustfile`` run inside Locust; this package's ``__init__``
imports nothing, so importing them pulls in no harness machinery.
"""

from pathlib import Path

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
"""The locustfile to pass to ``locust -f``."""
