"""Run as a separate OS process: wait for one approval request, report the state and when.

Usage: python waiter.py URL REQUEST_ID TIMEOUT|none
Prints "ready" once the service is open, then one JSON line {"state", "returned_at"}.
"""

from __future__ import annotations

import json
import sys
import time

from veto_core.approvals import open_approvals


def main() -> None:
    url, request_id, timeout = sys.argv[1], sys.argv[2], sys.argv[3]
    service = open_approvals(url)
    service.get(request_id)
    print("ready", flush=True)
    state = service.wait(request_id, None if timeout == "none" else float(timeout))
    returned_at = time.time()
    print(json.dumps({"state": state.value, "returned_at": returned_at}), flush=True)
    service.close()


if __name__ == "__main__":
    main()
