"""The REST door: error mapping on real answers of a lab cluster, `connect` from the lab's inventory,
polling with deadlines, and the cluster facts."""

from __future__ import annotations

import pytest

from esremote import pki
from esremote.cluster.client import PollTimeout, connect, es_error_parts, mapped_errors, poll, retry_transient
from esremote.cluster.facts import flatten, gather, parse_version
from esremote.errors import ClusterError, ClusterHTTPError, ConfigError
from esremote.inventory import load_inventory


@pytest.fixture(scope="module")
def inventory(lab):
    return load_inventory(lab.inventory)


# ---------------------------------------------------------------------------------- error mapping


def test_error_parts_keep_root_causes_that_say_more():
    body = {"error": {"root_cause": [{"type": "x", "reason": "deeper"}], "type": "search_phase_execution_exception",
                      "reason": "all shards failed"}, "status": 400}
    assert es_error_parts(body) == ("search_phase_execution_exception", "all shards failed (root cause: deeper)")
    assert es_error_parts({"error": "plain"}) == (None, "plain")
    assert es_error_parts("") == (None, "")


@pytest.mark.lab
def test_an_api_error_becomes_a_cluster_http_error(inventory):
    es = connect(inventory.cluster("local"))
    with pytest.raises(ClusterHTTPError) as caught, mapped_errors("local", "GET no-such-index/_search"):
        es.search(index="no-such-index")
    error = caught.value
    assert error.status == 404 and error.error_type == "index_not_found_exception"
    assert "no such index [no-such-index]" in error.reason and not error.transient
    assert str(error).startswith("cluster local: GET no-such-index/_search -> HTTP 404")


@pytest.mark.lab
def test_wrong_credentials_are_a_401_without_the_password(inventory, tmp_path):
    wrong = tmp_path / "password"
    wrong.write_text("not-the-password\n")
    cluster = inventory.cluster("local")
    cluster = cluster.model_copy(update={"auth": cluster.auth.model_copy(update={"password": type(
        cluster.auth.password)(file=wrong)})})
    with pytest.raises(ClusterHTTPError) as caught, mapped_errors("local", "GET /"):
        connect(cluster).info()
    assert caught.value.status == 401 and "not-the-password" not in str(caught.value)


@pytest.mark.lab
def test_an_untrusted_server_is_a_tls_error_pointing_at_ca_cert(inventory, tmp_path):
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(pki.CertificateAuthority.create("CN=not the lab's CA", key_size=2048).cert_pem())
    cluster = inventory.cluster("local").model_copy(update={"ca_cert": other_ca})
    with pytest.raises(ClusterError) as caught, mapped_errors("local", "GET /"):
        connect(cluster).info()
    assert "check ca_cert" in str(caught.value) and not caught.value.transient


@pytest.mark.lab
def test_nothing_listening_is_a_transient_cluster_error(inventory):
    cluster = inventory.cluster("local").model_copy(update={"urls": ["https://127.0.0.1:1"]})
    with pytest.raises(ClusterError) as caught, mapped_errors("local", "GET /"):
        connect(cluster, request_timeout=5).info()
    assert caught.value.transient and "cannot reach the cluster" in str(caught.value)


@pytest.mark.lab
def test_a_missing_secret_fails_before_any_request(inventory, monkeypatch):
    cluster = inventory.cluster("local")
    ref = type(cluster.auth.password)(env="ESREMOTE_TEST_UNSET_PASSWORD")
    monkeypatch.delenv("ESREMOTE_TEST_UNSET_PASSWORD", raising=False)
    cluster = cluster.model_copy(update={"auth": cluster.auth.model_copy(update={"password": ref})})
    with pytest.raises(ConfigError, match="environment variable ESREMOTE_TEST_UNSET_PASSWORD is not set"):
        connect(cluster)


# ---------------------------------------------------------------------------------------- polling


def test_poll_returns_the_first_real_answer_riding_out_transient_errors():
    answers = iter([ClusterError("restarting", transient=True), None, False, {"status": "green"}])

    def probe():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert poll(probe, timeout=5, what="green", interval=0.01) == {"status": "green"}


class FakeClock:
    """`time` for the module under test: sleeping moves the clock, nothing really waits; every
    look at the clock and every sleep is recorded with the clock's value then."""

    def __init__(self) -> None:
        self.now, self.events = 1000.0, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.events.append(("sleep", seconds))
        self.now += seconds


def test_poll_stops_at_the_deadline_naming_what_and_the_last_answer(monkeypatch):
    """What ends the wait is the deadline: the probe is asked at the start and after each interval
    up to the deadline, once more when the deadline is reached, and never after it."""
    from esremote.cluster import client

    clock = FakeClock()
    monkeypatch.setattr(client, "time", clock)
    answers = iter([False, ClusterError("restarting", transient=True), None, False, None, False, None, None])

    def probe():
        clock.events.append(("probe", clock.now - 1000.0))
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with pytest.raises(PollTimeout) as caught:
        poll(probe, timeout=1.0, what="node local-1 rejoining", cluster="local", interval=0.25)
    # The waits double from FIRST_POLL_INTERVAL (0.02 s) up to the interval, then keep to it.
    probes = [t for kind, t in clock.events if kind == "probe"]
    assert probes == pytest.approx([0.0, 0.02, 0.06, 0.14, 0.30, 0.55, 0.80, 1.0])
    assert clock.events[-1] == ("probe", 1.0)  # no sleep after the last look: the deadline ended the wait
    assert "node local-1 rejoining: not done after 1s (last: None)" in str(caught.value)
    assert caught.value.cluster == "local" and not caught.value.transient and caught.value.last is None


def test_poll_sleeps_no_further_than_its_deadline(monkeypatch):
    from esremote.cluster import client

    clock = FakeClock()
    monkeypatch.setattr(client, "time", clock)
    with pytest.raises(PollTimeout, match=r"x: not done after 1s \(last: 'no'\)"):
        poll(lambda: clock.events.append(("probe", clock.now - 1000.0)), timeout=1.0, what="x", interval=0.375,
             describe=lambda last: "'no'")
    sleeps = [t for kind, t in clock.events if kind == "sleep"]
    assert sleeps == pytest.approx([0.02, 0.04, 0.08, 0.16, 0.32, 0.375, 0.005])  # the last one cut to the deadline
    assert clock.events[-1] == ("probe", pytest.approx(1.0))


def test_poll_lets_a_deterministic_error_through_at_once():
    def probe():
        raise ClusterHTTPError(status=400, error_type="illegal_argument_exception", reason="bad")

    with pytest.raises(ClusterHTTPError):
        poll(probe, timeout=10, what="x")


def test_retry_transient_retries_only_transient_errors():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("reset")
        return "ok"

    assert retry_transient(flaky, timeout=5, interval=0.01) == "ok" and len(calls) == 3
    with pytest.raises(ValueError):
        retry_transient(lambda: (_ for _ in ()).throw(ValueError("no")), timeout=5, interval=0.01)


# ------------------------------------------------------------------------------------------ facts


@pytest.mark.lab
def test_facts_of_a_lab_cluster(lab, inventory):
    facts = gather(connect(inventory.cluster("local")), "local")
    assert sorted(facts.node_names) == sorted(n["name"] for n in lab.nodes("local"))
    assert facts.min_version == parse_version(lab.cluster("local")["version"])
    assert facts.licence_type == "trial" and facts.licence_allows_rcs
    assert facts.health == "green" and facts.security_enabled and facts.reloads_credentials
    assert facts.persistent[f"cluster.remote.{lab.alias}.mode"] == "proxy"
    assert all(n.ip and n.roles for n in facts.nodes)
    answering = [n for n in facts.nodes if n.settings]
    assert answering and answering[0].settings["xpack.security.enabled"] == "true"


def test_versions_and_settings_helpers():
    assert parse_version("8.15.2-SNAPSHOT") == (8, 15, 2) and parse_version("9.0") == (9, 0, 0)
    assert parse_version("garbage") == (0, 0, 0)
    assert flatten({"a": {"b": {"c": "1"}, "d": ["x"]}, "e": {}}) == {"a.b.c": "1", "a.d": ["x"], "e": {}}
