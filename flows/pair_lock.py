"""One migration at a time per cluster pair: Prefect global concurrency limits, held for the whole run.

Each pair of clusters a run migrates (the local and remote cluster of an alias) has a limit of one
slot named after it, `esremote-pair-<local>-<remote>-<digest>`; each cluster it touches has one too,
`esremote-cluster-<cluster>-<digest>`, so that two runs for different pairs that share a cluster (one
local cluster with two remotes, two locals of one remote) never restart the same nodes or rewrite the
same CA bundle side by side. A cluster is named by its first node address (sorted) and the digest
covers all of them: what the inventory calls a cluster plays no part, so two inventories that name
the same clusters differently still meet on the same limits, and two labs called `local`/`remote` do
not. A run takes every slot at once (one request: all or nothing), before
preflight, and gives them back when it ends, approval wait included. The slots are a lease the
server takes back when the process holding it dies (it is renewed every few minutes while it lives).

A missing limit enforces nothing in Prefect 3.9 (only a warning is logged, prefect-notes §10), so
the run creates its limits when they are missing (one slot each); an operator may create them in
advance, and one with more slots, or switched off, is used as it is (with a warning).

Who holds a limit: the server does not say (its leases are not listed), so a run that holds the slots
tags its flow run `esremote-lock:<limit>`; a run that finds the slots taken names the unfinished flow
runs with those tags. With `no_wait` it ends at once with that message; otherwise it logs whom it
waits for and waits.

    with pair_lock(run, no_wait=False):    # the whole migration
        ...
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from esremote.errors import EsRemoteError
from esremote.tasks.common import run_logger

LEASE_SECONDS = 300          # renewed at 3/4 of it while the run lives; taken back this long after it dies
TAG_PREFIX = "esremote-lock:"
LEASE_STEP = "lock/lease"    # journal note: the lease a run holds its limits with


class PairBusy(EsRemoteError):
    """Another run holds a cluster pair this run would migrate, and the run was told not to wait."""

    exit_code = 5

    def __init__(self, message: str, holders: list[str]) -> None:
        super().__init__(message)
        self.holders = holders


@dataclass(frozen=True)
class Lock:
    name: str          # the Prefect global concurrency limit
    what: str          # "cluster pair local -> remote" / "cluster local"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "cluster"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:8]


def cluster_identity(inventory, cluster: str) -> str:
    """What tells one cluster from another: its node addresses (sorted), whatever the inventory calls it."""
    return ",".join(sorted(n.address.lower() for n in inventory.cluster(cluster).nodes))


def locks_for(inventory, aliases: list[str]) -> list[Lock]:
    """The limits a run of `aliases` takes: one per cluster pair, one per cluster, in a stable order."""
    pairs = list(dict.fromkeys((inventory.aliases[a].local, inventory.aliases[a].remote) for a in aliases))

    def short(cluster: str) -> str:
        return _slug(cluster_identity(inventory, cluster).split(",")[0])

    locks = []
    for local, remote in pairs:
        digest = _digest(cluster_identity(inventory, local), cluster_identity(inventory, remote))
        locks.append(Lock(f"esremote-pair-{short(local)}-{short(remote)}-{digest}",
                          f"cluster pair {local} -> {remote}"))
    for cluster in dict.fromkeys(c for pair in pairs for c in pair):
        locks.append(Lock(f"esremote-cluster-{short(cluster)}-{_digest(cluster_identity(inventory, cluster))}",
                          f"cluster {cluster}"))
    return locks


def ensure_limits(locks: list[Lock]) -> None:
    """Create each missing limit with one slot (a concurrent run creating it too is fine)."""
    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate  # noqa: PLC0415
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound  # noqa: PLC0415

    log = run_logger()
    with get_client(sync_client=True) as client:
        for lock in locks:
            try:
                found = client.read_global_concurrency_limit_by_name(lock.name)
            except ObjectNotFound:
                try:
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=lock.name, limit=1))
                    log.info("created the concurrency limit %s (one run at a time for the %s)", lock.name, lock.what)
                except ObjectAlreadyExists:
                    pass
                continue
            if not found.active or found.limit != 1:
                log.warning("concurrency limit %s is %s with %d slot(s): it does not keep the %s to one run at a "
                            "time", lock.name, "active" if found.active else "INACTIVE", found.limit, lock.what)


def holders(locks: list[Lock], exclude=None) -> list[str]:
    """The unfinished flow runs tagged as holding any of `locks`: `'name' (id)` each."""
    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.client.schemas.filters import (  # noqa: PLC0415
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType  # noqa: PLC0415

    unfinished = [StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING, StateType.PENDING]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(any_=[TAG_PREFIX + lock.name for lock in locks]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=unfinished))))
    return [f"'{r.name}' ({r.id})" for r in runs if r.id != exclude]


def _named_holders(locks: list[Lock], me, timeout: float = 15.0) -> list[str]:
    """The holders, waiting a little for one that has the slots but has not tagged itself yet."""
    from esremote.cluster.client import PollTimeout, poll  # noqa: PLC0415

    try:
        return poll(lambda: holders(locks, exclude=me) or None, timeout=timeout, interval=1.0,
                    what="the run holding the concurrency limit")
    except PollTimeout:
        return []


def _tag_holder(flow_run_id, locks: list[Lock]) -> None:
    from prefect.client.orchestration import get_client  # noqa: PLC0415

    with get_client(sync_client=True) as client:
        current = client.read_flow_run(flow_run_id)
        tags = list(dict.fromkeys([*(current.tags or []), *(TAG_PREFIX + lock.name for lock in locks)]))
        client.update_flow_run(flow_run_id, tags=tags)


def _locked(exc: BaseException) -> bool:
    """Whether an acquisition failed only because the slots are taken (HTTP 423)."""
    import httpx  # noqa: PLC0415

    while exc is not None:
        if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 423:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def _leased(run, names: list[str], holder, wait: bool) -> Iterator[None]:
    """Prefect's `concurrency()`, with the lease id in the journal so that a resumed run can give
    back what its killed attempt held (prefect.concurrency.sync.concurrency does not expose it)."""
    from prefect.concurrency._leases import maintain_concurrency_lease  # noqa: PLC0415
    from prefect.concurrency._sync import (  # noqa: PLC0415
        acquire_concurrency_slots_with_lease,
        release_concurrency_slots_with_lease,
    )

    # strict: a limit deleted meanwhile is an error, not a silent pass.
    lease = acquire_concurrency_slots_with_lease(names, 1, max_retries=None if wait else 0,
                                                 lease_duration=LEASE_SECONDS, strict=True, holder=holder)
    run.journal.note(LEASE_STEP, lease_id=str(lease.lease_id), limits=names)
    try:
        # A failed lease renewal (a server hiccup) must not kill a run in the middle of its outage.
        with maintain_concurrency_lease(lease.lease_id, LEASE_SECONDS, raise_on_lease_renewal_failure=False):
            yield
    finally:
        release_concurrency_slots_with_lease(lease.lease_id)


def release_stale_leases(run) -> list[str]:
    """Give back the slots an earlier attempt of this run held: its orchestrator died holding them
    (`migrate --resume` after a crash), and the server would keep them up to LEASE_SECONDS more.
    Every lease in the journal is an earlier attempt's: this one has taken none yet."""
    from uuid import UUID  # noqa: PLC0415

    from prefect.concurrency._sync import release_concurrency_slots_with_lease  # noqa: PLC0415

    released = []
    for entry in run.journal.entries("note", LEASE_STEP):
        try:
            release_concurrency_slots_with_lease(UUID(entry.data["lease_id"]))
            released.append(entry.data["lease_id"])
        except Exception:  # noqa: BLE001 - expired or released already: nothing is held
            pass
    if released:
        run_logger().info("gave back the concurrency slots of this run's earlier attempt (lease %s)",
                          ", ".join(released))
    return released


@contextlib.contextmanager
def pair_lock(run, no_wait: bool = False) -> Iterator[list[Lock]]:
    """Hold every limit of the run's pairs and clusters for the duration of the block."""
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder  # noqa: PLC0415
    from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError  # noqa: PLC0415
    from prefect.runtime import flow_run  # noqa: PLC0415

    log = run_logger()
    locks = locks_for(run.inventory, run.aliases)
    ensure_limits(locks)
    names = [lock.name for lock in locks]
    me = flow_run.id
    holder = ConcurrencyLeaseHolder(type="flow_run", id=me) if me else None
    pairs = ", ".join(lock.what for lock in locks if lock.name.startswith("esremote-pair-"))

    def take(wait: bool):
        return _leased(run, names, holder, wait)

    release_stale_leases(run)

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(take(wait=False))
        except ConcurrencySlotAcquisitionError as exc:
            if not _locked(exc):
                raise
            held_by = _named_holders(locks, me)
            who = ", ".join(held_by) or "a run that has not tagged itself yet"
            if no_wait:
                raise PairBusy(f"another migration holds the {pairs} (or one of its clusters): flow run {who}; "
                               f"not waiting (no_wait). Start again when it has finished.", held_by) from None
            log.info("waiting for flow run %s, which holds the %s (or one of its clusters)", who, pairs)
            stack.enter_context(take(wait=True))
            log.info("the %s is free now: this run holds it", pairs)
        if me:
            _tag_holder(me, locks)
        log.info("holding %s for this run (one migration at a time per cluster pair)", ", ".join(names))
        yield locks
