"""Run one function over many items (usually hosts) with bounded concurrency, keeping every result.

A failure on one host never hides what happened on the others: `fan_out` always returns a
`GroupResult` (item -> result or exception); the caller decides whether any failure stops the phase
with `raise_if_failed()`, which raises `GroupError` carrying all results.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from esremote.errors import GroupError

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


class GroupResult(Mapping[K, Any], Generic[K, R]):
    """Mapping item -> the function's result, or the exception it raised. Keeps the input order."""

    def __init__(self, outcomes: Mapping[K, R | BaseException]) -> None:
        self._outcomes = dict(outcomes)

    def __getitem__(self, item: K) -> R | BaseException:
        return self._outcomes[item]

    def __iter__(self) -> Iterator[K]:
        return iter(self._outcomes)

    def __len__(self) -> int:
        return len(self._outcomes)

    @property
    def succeeded(self) -> dict[K, R]:
        return {k: v for k, v in self._outcomes.items() if not isinstance(v, BaseException)}

    @property
    def failed(self) -> dict[K, BaseException]:
        return {k: v for k, v in self._outcomes.items() if isinstance(v, BaseException)}

    @property
    def ok(self) -> bool:
        return not self.failed

    def raise_if_failed(self) -> GroupResult[K, R]:
        """Raise `GroupError` (with every result) when any item failed; return self otherwise."""
        if self.failed:
            raise GroupError(self)
        return self

    def __repr__(self) -> str:
        return f"GroupResult({len(self.succeeded)} succeeded, {len(self.failed)} failed)"


def fan_out(items: Iterable[K], fn: Callable[[K], R], *, max_workers: int = 8) -> GroupResult[K, R]:
    """Call `fn(item)` for every item, at most `max_workers` at a time, and collect the outcomes.

    Exceptions (`Exception` subclasses) become results; KeyboardInterrupt and SystemExit propagate.
    Items must be hashable and distinct.
    """
    items = list(items)
    if len(set(items)) != len(items):
        raise ValueError("fan_out: items must be distinct")
    if max_workers < 1:
        raise ValueError("fan_out: max_workers must be at least 1")
    outcomes: dict[K, R | BaseException] = {}
    if not items:
        return GroupResult(outcomes)
    with ThreadPoolExecutor(max_workers=min(max_workers, len(items)),
                            thread_name_prefix="esremote-fanout") as pool:
        futures = {item: pool.submit(fn, item) for item in items}
        for item, future in futures.items():
            try:
                outcomes[item] = future.result()
            except Exception as exc:  # noqa: BLE001 - a host's failure is a result, not a crash
                outcomes[item] = exc
    return GroupResult(outcomes)
