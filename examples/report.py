"""Example periodic job: prints one report line and exits 0.

otree starts it again after its backoff delay (see ``jobs.report`` in
examples/webstack.toml), which makes it run every few seconds.
"""

from __future__ import annotations

import os
import time

here = os.path.dirname(os.path.abspath(__file__))
count = len(os.listdir(here))
print(f"report at {time.strftime('%H:%M:%S')}: {count} files in {here}", flush=True)
