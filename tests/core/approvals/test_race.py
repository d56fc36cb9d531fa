"""Consume is a compare-and-set: of 20 threads releasing one approved request, one wins."""

from __future__ import annotations

import threading

from approval_helpers import call, make_veto

from veto_core.approvals import Approver, open_approvals

THREADS = 20


def _race(fns: list[object]) -> list[bool]:
    barrier = threading.Barrier(len(fns))
    results: list[bool] = [False] * len(fns)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = bool(fns[i]())  # type: ignore[operator]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_twenty_threads_one_service_exactly_one_consumes(db_url: str) -> None:
    veto = make_veto(db_url)
    rid = veto.authorize(call()).approval.id
    veto.approvals.decide(rid, approver=Approver(id="fiona", roles=("finance",)), approve=True)
    results = _race([lambda: veto.approvals.consume(rid)] * THREADS)
    assert sum(results) == 1
    assert len(veto.audit.query(outcome="approval_consumed")) == 1
    veto.close()


def test_twenty_threads_twenty_connections_exactly_one_consumes(db_url: str) -> None:
    veto = make_veto(db_url)
    rid = veto.authorize(call()).approval.id
    veto.approvals.decide(rid, approver=Approver(id="fiona", roles=("finance",)), approve=True)
    services = [open_approvals(db_url) for _ in range(THREADS)]  # separate connections
    results = _race([(lambda s=s: s.consume(rid)) for s in services])
    assert sum(results) == 1
    for s in services:
        s.close()
    veto.close()


def test_twenty_adapters_checking_the_same_call_release_it_once(db_url: str) -> None:
    veto = make_veto(db_url)
    rid = veto.authorize(call()).approval.id
    veto.approvals.decide(rid, approver=Approver(id="fiona", roles=("finance",)), approve=True)
    results = _race([lambda: veto.check_approval(call())] * THREADS)
    assert sum(results) == 1
    veto.close()
