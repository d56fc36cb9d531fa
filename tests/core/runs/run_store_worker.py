"""A worker process for the run-store concurrency test: N threads append to one run."""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from veto_core.runs import RunEvent
from veto_core.runs.backends import open_run_store


def main() -> None:
    url, tenant, run_id, tag = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    threads, each = int(sys.argv[5]), int(sys.argv[6])
    go, ready = Path(sys.argv[7]), Path(sys.argv[8])
    store = open_run_store(url)
    ready.touch()
    while not go.exists():
        time.sleep(0.01)
    seqs: dict[str, int] = {}
    lock = threading.Lock()

    def work(worker: int) -> None:
        for i in range(each):
            name = f"{tag}-{worker}-{i}"
            event = RunEvent(tool="t", args={"name": name}, text=name, at=datetime.now(UTC))
            seq = store.append(tenant, run_id, event, ttl_s=3600, now=datetime.now(UTC))
            with lock:
                seqs[name] = seq

    pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    store.close()
    print(json.dumps(seqs))


if __name__ == "__main__":
    main()
