"""The REST side's one door: an elasticsearch-py 8.x client per inventory cluster, and the one place
where the client's exceptions become esremote's (`ClusterHTTPError` with status, ES error type and
reason; `ClusterError` for transport failures, transient when a retry may help).

    es = connect(inventory.cluster("local"))
    with mapped_errors("local", "GET _remote/info"):
        info = es.cluster.remote_info().body

`poll` is how every wait in esremote is written: ask again until the answer is the one wanted or a
deadline passes, riding out transient errors (a node restarting, a 503) on the way.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from esremote.errors import ClusterError, ClusterHTTPError, EsRemoteError, is_transient

__all__ = ["PollTimeout", "connect", "connect_node", "es_error_parts", "mapped_errors", "poll", "retry_transient"]

T = TypeVar("T")
# A wait that does not end at the first answer says what it waits for (DEBUG records, off unless a
# terminal's progress display or log file asks for them): `esremote_wait` is `what`, and
# `esremote_wait_over` marks its end.
_WAIT_LOG = logging.getLogger("esremote.progress")


def es_error_parts(body: Any) -> tuple[str | None, str]:
    """(type, reason) of an Elasticsearch error body, including root causes' reasons when they differ."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        reason = str(err.get("reason") or "")
        causes = [c.get("reason") for c in err.get("root_cause") or [] if isinstance(c, dict)]
        extra = [c for c in causes if c and c != reason]
        if extra:
            reason = f"{reason} (root cause: {'; '.join(extra)})"
        return err.get("type"), reason
    if isinstance(body, dict) and "error" in body:
        return None, str(body["error"])
    return None, str(body)[:500] if body else ""


@contextlib.contextmanager
def mapped_errors(cluster: str | None, what: str = "") -> Iterator[None]:
    """Translate elasticsearch-py exceptions raised inside the block, chained with `from`."""
    import elasticsearch  # noqa: PLC0415 (only the REST side pays for the import)

    try:
        yield
    except elasticsearch.ApiError as exc:
        etype, reason = es_error_parts(exc.body)
        raise ClusterHTTPError(status=exc.meta.status, error_type=etype, reason=reason,
                               cluster=cluster, method=what) from exc
    except elasticsearch.SSLError as exc:
        raise ClusterError(f"{_doing(what)}TLS to the cluster failed ({exc.message}): check ca_cert in the "
                           "inventory", cluster=cluster, transient=False) from exc
    except (elasticsearch.ConnectionTimeout, elasticsearch.ConnectionError) as exc:
        raise ClusterError(f"{_doing(what)}cannot reach the cluster: {exc.message}", cluster=cluster,
                           transient=True) from exc
    except elasticsearch.UnsupportedProductError as exc:
        raise ClusterError(f"{_doing(what)}the server is not Elasticsearch ({exc.message}): check urls",
                           cluster=cluster, transient=False) from exc


def _doing(what: str) -> str:
    return f"{what}: " if what else ""


def connect(cluster, *, request_timeout: float = 30.0):
    """An `elasticsearch.Elasticsearch` for an inventory `Cluster`, secrets resolved just now.

    No client-side retries: esremote retries in one place (`poll`, `retry_transient`, the tasks)."""
    import elasticsearch  # noqa: PLC0415

    kwargs: dict[str, Any] = {"request_timeout": request_timeout, "max_retries": 0,
                              "retry_on_timeout": False}
    if cluster.ca_cert:
        kwargs["ca_certs"] = str(cluster.ca_cert)
    auth = cluster.auth
    if getattr(auth, "api_key", None) is not None:
        kwargs["api_key"] = auth.api_key.resolve().get_secret_value()
    else:
        kwargs["basic_auth"] = (auth.username, auth.password.resolve().get_secret_value())
    return elasticsearch.Elasticsearch([str(u) for u in cluster.urls], **kwargs)


def connect_node(cluster, url: str, *, request_timeout: float = 30.0):
    """A client of one node of `cluster`, at `url`, with the cluster's CA and auth: some answers
    (`_remote/info`, what a node coordinates) are that node's own."""
    return connect(cluster.model_copy(update={"urls": [url]}), request_timeout=request_timeout)


# ------------------------------------------------------------------------------------------ waiting


class PollTimeout(ClusterError):
    """A wait ran out of time; `last` is the last answer (or error text) seen."""

    def __init__(self, message: str, *, cluster: str | None = None, last: Any = None) -> None:
        super().__init__(message, cluster=cluster, transient=False)
        self.last = last


FIRST_POLL_INTERVAL = 0.02


def poll(probe: Callable[[], T | None], *, timeout: float, what: str, cluster: str | None = None,
         interval: float = 0.25, describe: Callable[[Any], str] = repr) -> T:
    """Call `probe` until it returns something other than None/False, or raise `PollTimeout`.

    A transient esremote error (node restarting, 429/503) counts as "not yet"; any other error
    propagates at once. `describe(last)` renders the last answer for the timeout message.
    The first waits are short and double up to `interval`: most states polled inside the outage
    (an alias connected, a datafeed started) arrive within tens of milliseconds, and a fixed
    quarter second would add up to that much to each wait."""
    deadline = time.monotonic() + timeout
    last: Any = "no answer yet"
    waiting = False
    delay = min(interval, FIRST_POLL_INTERVAL)
    try:
        while True:
            try:
                answer = probe()
                if answer is not None and answer is not False:
                    return answer
                last = answer
            except EsRemoteError as exc:
                if not exc.transient:
                    raise
                last = exc
            if time.monotonic() >= deadline:
                shown = str(last) if isinstance(last, BaseException) else describe(last)
                raise PollTimeout(f"{what}: not done after {timeout:g}s (last: {shown})", cluster=cluster,
                                  last=last)
            if not waiting and _WAIT_LOG.isEnabledFor(logging.DEBUG):
                waiting = True
                _WAIT_LOG.debug("waiting for %s (up to %gs)", what, timeout, extra={"esremote_wait": what})
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(interval, delay * 2)
    finally:
        if waiting:
            _WAIT_LOG.debug("done waiting for %s", what, extra={"esremote_wait_over": what})


def retry_transient(fn: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.5) -> T:
    """`fn()`, retried while it raises a transient error, until `timeout`; then the last error."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - only transient ones are retried
            if not is_transient(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(interval)
