"""A second process continuing a run from the SQLite store (the restart property):
``python offline_worker.py POLICY DB_URL STEPS_JSON`` prints the calls' effects."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from offline_driver import run_in_process

from veto_core import Veto


def main() -> None:
    policy, db, steps = sys.argv[1], sys.argv[2], json.loads(Path(sys.argv[3]).read_text())
    veto = Veto.from_file(policy, db=db)
    try:
        print(json.dumps(run_in_process(veto, steps)))
    finally:
        veto.close()


if __name__ == "__main__":
    main()
