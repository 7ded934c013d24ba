"""Cluster pairs, without a server: the concurrency limits a run takes (flows/pair_lock.py) and the
pairs a fleet runs (flows/fleet.py). On a real server: test_operating.py."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from esremote.flows.fleet import child_params, pairs_of
from esremote.flows.pair_lock import locks_for
from esremote.inventory import load_inventory
from esremote.params import FleetParams


def inventory(tmp_path: Path, name: str, clusters: dict[str, tuple[str, list[str]]],
              aliases: dict[str, tuple[str, str]]) -> Path:
    access = {"urls": ["https://127.0.0.1:1"], "auth": {"username": "u", "password": {"env": "X"}}}
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump({
        "ssh": {"known_hosts": str(tmp_path / "known_hosts")},
        "clusters": {cname: {"role": role, **access,
                             "nodes": [{"name": f"n{i}", "address": a} for i, a in enumerate(addresses)]}
                     for cname, (role, addresses) in clusters.items()},
        "aliases": {alias: {"local": local, "remote": remote} for alias, (local, remote) in aliases.items()}}))
    return path


CLUSTERS = {"local": ("local", ["10.0.0.2", "10.0.0.1"]), "remote": ("remote", ["10.0.1.1"]),
            "remote2": ("remote", ["10.0.2.1"])}
ALIASES = {"a": ("local", "remote"), "b": ("local", "remote"), "c": ("local", "remote2")}


def test_a_run_takes_its_pairs_and_their_clusters_named_by_their_nodes_not_by_the_inventory(tmp_path):
    inv = load_inventory(inventory(tmp_path, "one", CLUSTERS, ALIASES))
    both = locks_for(inv, ["a", "b"])
    assert [lock.what for lock in both] == ["cluster pair local -> remote", "cluster local", "cluster remote"]
    assert both[0].name.startswith("esremote-pair-10-0-0-1-10-0-1-1-")
    assert both[1].name.startswith("esremote-cluster-10-0-0-1-")
    other = locks_for(inv, ["c"])
    assert other[0].name != both[0].name and other[1] == both[1]  # another pair, the same local cluster
    assert len({lock.name for lock in locks_for(inv, ["a", "c"])}) == 5

    renamed = load_inventory(inventory(tmp_path, "renamed", {
        "prod": ("local", ["10.0.0.1", "10.0.0.2"]), "dr": ("remote", ["10.0.1.1"])}, {"x": ("prod", "dr")}))
    assert [lock.name for lock in locks_for(renamed, ["x"])] == [lock.name for lock in both]
    lab = load_inventory(inventory(tmp_path, "lab", {
        "local": ("local", ["10.9.0.1", "10.0.0.2"]), "remote": ("remote", ["10.0.1.1"])}, {"a": ("local", "remote")}))
    assert not {lock.name for lock in locks_for(lab, ["a"])} & {both[0].name, both[1].name}
    assert all(set(lock.name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-") for lock in both)


def test_a_fleet_runs_one_migration_per_pair_of_every_inventory(tmp_path):
    first = inventory(tmp_path, "first", CLUSTERS, ALIASES)
    second = inventory(tmp_path, "second", {"l": ("local", ["10.1.0.1"]), "r": ("remote", ["10.1.1.1"])},
                       {"z": ("l", "r")})
    pairs = pairs_of([first, second])
    assert [(p.inventory, p.label, p.aliases) for p in pairs] == [
        (str(first), "local -> remote", ("a", "b")), (str(first), "local -> remote2", ("c",)),
        (str(second), "l -> r", ("z",))]
    end = datetime(2026, 12, 12, 6, 0, tzinfo=timezone.utc)
    params = FleetParams(inventories=[first, second], dry_run=True, no_wait=True, state_dir=tmp_path / "s")
    assert child_params(params, pairs[0], end) == {
        "inventory": str(first), "aliases": ["a", "b"], "dry_run": True, "connection_mode": "keep",
        "restart_strategy": "auto", "no_wait": True, "window_end": "2026-12-12T06:00:00+00:00",
        "state_dir": str(tmp_path / "s")}
    assert "window_end" not in child_params(params, pairs[2], None)


def test_the_slots_a_dead_run_held_are_given_back_by_its_rollback_or_resume(request, tmp_path):
    """A SIGKILLed run keeps its lease until the server expires it; `esremote rollback RUN_ID` and
    `migrate --resume` give it back first (release_stale_leases), so the pair is free at once."""
    from types import SimpleNamespace  # noqa: PLC0415

    from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError  # noqa: PLC0415
    from prefect.concurrency._sync import acquire_concurrency_slots_with_lease  # noqa: PLC0415

    from esremote.flows.pair_lock import LEASE_STEP, Lock, ensure_limits, release_stale_leases  # noqa: PLC0415
    from esremote.journal import Journal  # noqa: PLC0415
    from tests.test_flows import shared_prefect_api  # noqa: PLC0415

    shared_prefect_api(request.config)
    name = f"esremote-pair-test-{tmp_path.name}"
    ensure_limits([Lock(name, "cluster pair test")])

    def take():
        return acquire_concurrency_slots_with_lease([name], 1, max_retries=0, lease_duration=300, strict=True)

    dead = take()  # the killed run's lease: never released by its process
    journal = Journal.create("dead-run", state_dir=tmp_path)
    journal.note(LEASE_STEP, lease_id=str(dead.lease_id), limits=[name])
    with pytest.raises(ConcurrencySlotAcquisitionError):  # held: the dead run's lease
        take()
    assert release_stale_leases(SimpleNamespace(journal=journal)) == [str(dead.lease_id)]
    assert take().lease_id != dead.lease_id  # free again, without waiting for the server
