"""Task defaults shared by every esremote task: retry only what is transient, never cache (every
step's truth is the journal and the cluster), and log through the redacting filter."""

from __future__ import annotations

import logging

from prefect.cache_policies import NO_CACHE

from esremote import redact
from esremote.errors import is_transient


def retry_if_transient(task, task_run, state) -> bool:
    """Prefect's retry_condition_fn: retry when the failure is a transient one (timeout, reset,
    429/502/503); a deterministic error fails at once with its own message."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - the state's exception is what we classify
        return is_transient(exc)
    return False


# Keyword arguments for @task: three tries with backoff, for transient faults only.
RETRYING = dict(retries=3, retry_delay_seconds=[1, 3, 8], retry_jitter_factor=0.2,
                retry_condition_fn=retry_if_transient, cache_policy=NO_CACHE)
# Steps that must not be repeated blindly (a retry could restart a node twice): no retries.
ONCE = dict(retries=0, cache_policy=NO_CACHE)

_PREFECT_LOGGERS = ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "prefect.extra")


def install_redaction() -> None:
    """Put esremote's redacting filter on Prefect's loggers and handlers (console and API)."""
    for name in _PREFECT_LOGGERS:
        redact.install(logging.getLogger(name))


def run_logger():
    """The Prefect run logger inside a flow or task, else a plain logger (library use, tests)."""
    try:
        from prefect import get_run_logger  # noqa: PLC0415

        return get_run_logger()
    except Exception:  # noqa: BLE001 - MissingContextError outside a run
        return logging.getLogger("esremote")
