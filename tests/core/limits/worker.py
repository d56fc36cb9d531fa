"""A worker process for the limits concurrency test: N threads spend until refused."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from veto_core import Principal, ToolCall, Veto


def main() -> None:
    policy, db, limits_url = sys.argv[1], sys.argv[2], sys.argv[3]
    threads, tag = int(sys.argv[4]), sys.argv[5]
    go, ready = Path(sys.argv[6]), Path(sys.argv[7])
    veto = Veto.from_file(policy, tenant="acme", db=db, limits_url=limits_url)
    veto.limit_store  # open the stores before the start line  # noqa: B018
    veto.audit  # noqa: B018
    ready.touch()
    while not go.exists():
        time.sleep(0.01)
    allowed: list[int] = []
    lock = threading.Lock()

    def spend(worker: int) -> None:
        refusals = 0
        i = 0
        while refusals < 3:
            i += 1
            call = ToolCall(
                tool="issue_refund",
                args={"amount": 7},
                principal=Principal(agent="bot", user="u1"),
                run_id=f"{tag}-{worker}",
                tool_call_id=f"{tag}-{worker}-{i}",
            )
            auth = veto.authorize(call)
            if auth.run_tool:
                with lock:
                    allowed.append(7)
            else:
                refusals += 1

    pool = [threading.Thread(target=spend, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    veto.close()
    print(json.dumps({"allowed": sum(allowed), "calls": len(allowed)}))


if __name__ == "__main__":
    main()
