"""Run as a separate OS process: wait for approval requests, report each state and when.

Usage: python waiter.py URL. Prints "ready" once the service is open (imports and
connections done, so process start-up is not part of any timing), then for each
line "REQUEST_ID TIMEOUT|none" read from stdin prints "waiting" and, when ``wait``
returns, one JSON line {"state", "returned_at"}.
"""

from __future__ import annotations

import json
import sys
import time

from veto_core.approvals import open_approvals


def main() -> None:
    service = open_approvals(sys.argv[1])
    print("ready", flush=True)
    for line in sys.stdin:
        request_id, timeout = line.split()
        service.get(request_id)
        print("waiting", flush=True)
        state = service.wait(request_id, None if timeout == "none" else float(timeout))
        returned_at = time.time()
        print(json.dumps({"state": state.value, "returned_at": returned_at}), flush=True)
    service.close()


if __name__ == "__main__":
    main()
