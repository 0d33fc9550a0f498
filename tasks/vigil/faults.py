"""Named points where the crash tests stop a worker, so a SIGKILL lands exactly there.

``VIGIL_PAUSE_AT=<point>`` makes the process print ``vigil-paused-at <point>`` to stderr and
sleep at that point, where the test kills it; with ``VIGIL_PAUSE_IF=<file>`` only while that file
exists (so a long-lived worker can be armed later). Unset (always, outside tests) it costs one
dict lookup. Points: ``decode`` (a shard has started decoding), ``inference`` (a batch is about to go
through the model), ``write`` (an output file is fully written but not yet published).
"""

import os
import sys
import time


def checkpoint(point: str) -> None:
    if os.environ.get("VIGIL_PAUSE_AT") == point and os.path.exists(os.environ.get("VIGIL_PAUSE_IF", "/")):
        print(f"vigil-paused-at {point}", file=sys.stderr, flush=True)
        time.sleep(3600)
