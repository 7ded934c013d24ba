"""fan_out: bounded concurrency, every host's result kept, GroupError carrying all of them."""

from __future__ import annotations

import threading

import pytest

from esremote.errors import ConnectError, GroupError, RemoteCommandError
from esremote.fanout import GroupResult, fan_out
from esremote.ssh import SSHPool
from tests.fixtures.ssh import _free_port


def test_results_and_exceptions_are_kept_per_item_in_input_order():
    def work(n: int) -> int:
        if n % 2:
            raise ValueError(f"odd {n}")
        return n * 10

    result = fan_out([4, 3, 2, 1], work)
    assert list(result) == [4, 3, 2, 1]
    assert result.succeeded == {4: 40, 2: 20}
    assert sorted(result.failed) == [1, 3] and str(result.failed[3]) == "odd 3"
    assert not result.ok


def test_concurrency_is_bounded_and_used():
    lock, running, peak = threading.Lock(), [0], [0]
    release = threading.Event()

    def work(n: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            if running[0] == 3:
                release.set()
        release.wait(5)  # hold until three run together (or give up)
        with lock:
            running[0] -= 1
        return n

    result = fan_out(range(9), work, max_workers=3)
    assert result.ok and peak[0] == 3


def test_raise_if_failed_carries_every_result():
    result = GroupResult({"a": 1, "b": ConnectError("refused", host="b")})
    with pytest.raises(GroupError) as info:
        result.raise_if_failed()
    assert info.value.results is result and info.value.results.succeeded == {"a": 1}
    assert "1 of 2 hosts failed (b)" in str(info.value) and info.value.transient
    assert GroupResult({"a": 1}).raise_if_failed().ok


def test_duplicate_items_are_misuse():
    with pytest.raises(ValueError, match="distinct"):
        fan_out(["a", "a"], str)


@pytest.mark.openssh
def test_one_dead_host_among_live_ones(openssh_server, embedded_ssh_server):
    targets = {
        "live-openssh": openssh_server.target(name="live-openssh"),
        "live-embedded": embedded_ssh_server.target(name="live-embedded"),
        "dead": embedded_ssh_server.target(name="dead", port=_free_port(embedded_ssh_server.host)),
    }
    with SSHPool() as pool:
        result = fan_out(targets, lambda name: pool.get(targets[name]).run("hostname; exit 0").exit_code)
    assert result.succeeded == {"live-openssh": 0, "live-embedded": 0}
    dead = result.failed["dead"]
    assert isinstance(dead, ConnectError) and "dead" in str(dead)
    # What ended the wait for it: the refused connection, not the connect timeout
    assert "cannot connect to" in str(dead) and "timed out" not in str(dead), str(dead)
    with pytest.raises(GroupError) as info:
        result.raise_if_failed()
    assert info.value.transient and set(info.value.results) == set(targets)


def test_a_failing_command_on_one_host_does_not_hide_the_others(embedded_ssh_server):
    target = embedded_ssh_server.target()
    with SSHPool() as pool:
        node = pool.get(target)
        result = fan_out(["true", "false", "echo x"], lambda cmd: node.run(cmd).stdout)
    assert result.succeeded == {"true": "", "echo x": "x\n"}
    assert isinstance(result.failed["false"], RemoteCommandError)
    with pytest.raises(GroupError) as info:
        result.raise_if_failed()
    assert not info.value.transient
