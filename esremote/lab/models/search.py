"""Search on one cluster's own indices: index expressions, a small query language and the response
shape of `_search` / `_count`; `resolve_local` for `_resolve/cluster`'s `(local)` entry.

Queries: `match_all`, `match_none`, `term`, `terms`, `match`, `range` (numbers and dates, with
`now-1d` style date math), `exists`, `ids`, `bool` (must / filter / should / must_not). Sort on
fields (`asc` / `desc`, `_doc`), `from` / `size`, `track_total_hits`, `seq_no_primary_term`.
Aggregations the lab's workloads use: `max`, `min`, `sum`, `avg`, `value_count`, `terms`.
"""

from __future__ import annotations

import fnmatch
import re
import time
from datetime import datetime, timezone
from typing import Any, Callable

from esremote.lab import errors


def split_remote(expression: str) -> tuple[list[str], list[str]]:
    """Local index names and `alias:index` remote ones (a `*:x` pattern is remote too)."""
    local, remote = [], []
    for part in [p.strip() for p in expression.split(",") if p.strip()]:
        (remote if ":" in part else local).append(part)
    return local, remote


def resolve_indices(state: dict, expression: str | list[str] | None, *, ignore_unavailable: bool = False,
                    allow_no_indices: bool = True, allowed: Callable[[str], bool] | None = None) -> list[str]:
    """Concrete index names for an expression (`_all`, `*`, wildcards, commas, `-exclusions`)."""
    names = sorted(state["indices"])
    parts = expression if isinstance(expression, list) else [p for p in (expression or "").split(",") if p]
    if not parts or parts in (["_all"], ["*"]):
        parts = ["*"]
    chosen: list[str] = []
    for part in parts:
        if part.startswith("-") and chosen:
            chosen = [n for n in chosen if not fnmatch.fnmatchcase(n, part[1:])]
            continue
        if "*" in part or part == "_all":
            pattern = "*" if part == "_all" else part
            matches = [n for n in names if fnmatch.fnmatchcase(n, pattern) and (not n.startswith(".") or part.startswith("."))]
            if allowed is not None:
                matches = [n for n in matches if allowed(n)]
            chosen += [m for m in matches if m not in chosen]
        elif part in state["indices"]:
            if part not in chosen:
                chosen.append(part)
        else:
            alias_targets = [n for n, m in state["indices"].items() if part in m.get("aliases", {})]
            if alias_targets:
                chosen += [t for t in alias_targets if t not in chosen]
            elif not ignore_unavailable:
                raise errors.IndexNotFound(part)
    if not chosen and not allow_no_indices:
        raise errors.IndexNotFound(",".join(parts))
    return chosen


# ---------------------------------------------------------------------------------- date math

_DATE_MATH = re.compile(r"now(?P<ops>([+-]\d+[yMwdhHms])*)(/(?P<round>[yMwdhHms]))?")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "H": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000,
            "M": 30 * 86_400_000, "y": 365 * 86_400_000}


def to_number(value: Any) -> float | None:
    """Numbers as they are; dates (ISO 8601, epoch millis, `now-1d`) as epoch milliseconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return None
    match = _DATE_MATH.fullmatch(value)
    if match:
        ms = time.time() * 1000
        for op in re.findall(r"[+-]\d+[yMwdhHms]", match["ops"] or ""):
            ms += (1 if op[0] == "+" else -1) * int(op[1:-1]) * _UNIT_MS[op[-1]]
        if match["round"]:
            ms -= ms % _UNIT_MS[match["round"]]
        return ms
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp() * 1000


# -------------------------------------------------------------------------------------- queries

def field_value(source: dict, path: str) -> Any:
    if path in source:
        return source[path]
    node: Any = source
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _values(source: dict, field: str) -> list:
    value = field_value(source, field.removesuffix(".keyword"))
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _single(clause: Any, name: str) -> tuple[str, Any]:
    if not isinstance(clause, dict) or len(clause) != 1:
        raise errors.ParseError(f"[{name}] query malformed, no start_object after query name")
    return next(iter(clause.items()))


def matches(query: dict | None, doc: dict) -> bool:
    """Whether the document operation `doc` (`_id`, `_source`) matches the query."""
    if not query:
        return True
    if len(query) != 1:
        raise errors.ParseError("[_na] query malformed, must start with start_object")
    kind, spec = next(iter(query.items()))
    source = doc.get("_source", {})
    if kind == "match_all":
        return True
    if kind == "match_none":
        return False
    if kind == "ids":
        return doc["_id"] in spec.get("values", [])
    if kind == "exists":
        return bool(_values(source, spec["field"]))
    if kind == "term":
        field, value = _single(spec, kind)
        value = value.get("value") if isinstance(value, dict) else value
        return any(v == value or str(v) == str(value) for v in _values(source, field))
    if kind == "terms":
        field, wanted = next((k, v) for k, v in spec.items() if k != "boost")
        return any(str(v) in {str(w) for w in wanted} for v in _values(source, field))
    if kind in ("match", "match_phrase"):
        field, value = _single(spec, kind)
        value = value.get("query") if isinstance(value, dict) else value
        words = str(value).lower().split()
        for v in _values(source, field):
            text = str(v).lower()
            if kind == "match_phrase" and str(value).lower() in text:
                return True
            if kind == "match" and any(w in text.split() or w == text for w in words):
                return True
        return False
    if kind == "range":
        field, bounds = _single(spec, kind)
        return any(_in_range(v, bounds) for v in _values(source, field))
    if kind == "bool":
        must = _as_list(spec.get("must")) + _as_list(spec.get("filter"))
        should, must_not = _as_list(spec.get("should")), _as_list(spec.get("must_not"))
        if not all(matches(q, doc) for q in must) or any(matches(q, doc) for q in must_not):
            return False
        minimum = spec.get("minimum_should_match", 1 if should and not must else 0)
        return sum(matches(q, doc) for q in should) >= int(minimum)
    if kind == "query_string":  # the bare-word form: the text appears in any field
        words = str(spec.get("query", "*")).lower().split()
        text = " ".join(str(v).lower() for v in _leaves(source))
        return words == ["*"] or all(w in text.split() for w in words)
    raise errors.ParseError(f"unknown query [{kind}]", type="parsing_exception")


def _leaves(node: Any) -> list:
    if isinstance(node, dict):
        return [leaf for value in node.values() for leaf in _leaves(value)]
    if isinstance(node, list):
        return [leaf for value in node for leaf in _leaves(value)]
    return [node]


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _in_range(value: Any, bounds: dict) -> bool:
    number = to_number(value)
    if number is None:
        return False
    for op, test in (("gte", lambda a, b: a >= b), ("gt", lambda a, b: a > b),
                     ("lte", lambda a, b: a <= b), ("lt", lambda a, b: a < b)):
        if op in bounds and bounds[op] is not None:
            limit = to_number(bounds[op])
            if limit is None or not test(number, limit):
                return False
    return True


# ------------------------------------------------------------------------------ aggregations

def aggregate(aggs: dict, docs: list[dict]) -> dict:
    out = {}
    for name, spec in aggs.items():
        kind = next(k for k in spec if k not in ("aggs", "aggregations", "meta"))
        field = spec[kind].get("field", "")
        values = [to_number(v) for d in docs for v in _values(d["_source"], field)]
        numbers = [v for v in values if v is not None]
        if kind in ("max", "min"):
            best = (max if kind == "max" else min)(numbers) if numbers else None
            out[name] = {"value": best}
        elif kind == "sum":
            out[name] = {"value": float(sum(numbers))}
        elif kind == "avg":
            out[name] = {"value": sum(numbers) / len(numbers) if numbers else None}
        elif kind == "value_count":
            out[name] = {"value": len([v for d in docs for v in _values(d["_source"], field)])}
        elif kind == "terms":
            counts: dict[Any, list[dict]] = {}
            for d in docs:
                for v in _values(d["_source"], field):
                    counts.setdefault(v, []).append(d)
            size = int(spec[kind].get("size", 10))
            buckets = sorted(counts.items(), key=lambda kv: (-len(kv[1]), str(kv[0])))[:size]
            sub = spec.get("aggs") or spec.get("aggregations") or {}
            out[name] = {"doc_count_error_upper_bound": 0, "sum_other_doc_count": 0,
                         "buckets": [{"key": k, "doc_count": len(ds), **aggregate(sub, ds)} for k, ds in buckets]}
        else:
            raise errors.ParseError(f"Unknown aggregation type [{kind}] did you mean [terms]?",
                                    type="parsing_exception")
    return out


# ------------------------------------------------------------------------------------ search

def _sort_keys(body: dict) -> list[tuple[str, bool]]:
    keys = []
    for entry in _as_list(body.get("sort")):
        if isinstance(entry, str):
            field, _, order = entry.partition(":")
            keys.append((field, (order or ("desc" if field == "_score" else "asc")) == "desc"))
        else:
            field, spec = next(iter(entry.items()))
            order = spec.get("order", "asc") if isinstance(spec, dict) else spec
            keys.append((field, order == "desc"))
    return keys


def _sort_value(doc: dict, field: str) -> Any:
    """Numbers and dates sort as numbers (dates as epoch millis, like Elasticsearch), the rest as text."""
    if field == "_doc":
        return doc["_seq"]
    if field == "_id":
        return doc["_id"]
    values = _values(doc["_source"], field)
    if not values:
        return None
    number = to_number(values[0])
    if number is None:
        return str(values[0])
    return int(number) if float(number).is_integer() else number


def _sorted(docs: list[dict], keys: list[tuple[str, bool]]) -> list[dict]:
    for field, descending in reversed(keys):
        present = [d for d in docs if _sort_value(d, field) is not None]
        missing = [d for d in docs if _sort_value(d, field) is None]
        present.sort(key=lambda d: (isinstance(_sort_value(d, field), str), _sort_value(d, field)),
                     reverse=descending)
        docs = present + missing  # missing values sort last either way (`_last`)
    return docs


def _shards(n: int) -> dict:
    return {"total": n, "successful": n, "skipped": 0, "failed": 0}


def matching_docs(store: Any, indices: list[str], query: dict | None,
                  visible: Callable[[str, dict], bool] | None = None) -> list[dict]:
    """`visible(index, doc)`: document level security, the documents a role lets the caller see."""
    docs = []
    for index in indices:
        for op in store.current_docs(index).values():
            if matches(query, op) and (visible is None or visible(index, op)):
                docs.append({**op, "_index": index})
    return docs


def search_local(store: Any, index_expr: str | None, body: dict | None, *, allowed: Callable[[str], bool] | None = None,
                 params: dict | None = None, index_prefix: str = "",
                 visible: Callable[[str, dict], bool] | None = None) -> dict:
    """A `_search` response over this cluster's indices (`index_prefix` names a remote's hits)."""
    started = time.monotonic()
    body, params = body or {}, params or {}
    state = store.snapshot()
    indices = resolve_indices(state, index_expr, allowed=allowed,
                              ignore_unavailable=params.get("ignore_unavailable") == "true")
    docs = matching_docs(store, indices, body.get("query"), visible)
    keys = _sort_keys(body)
    ordered = _sorted(docs, keys) if keys else sorted(docs, key=lambda d: (d["_index"], d["_seq"]))
    start = int(params.get("from", body.get("from", 0)))
    size = int(params.get("size", body.get("size", 10)))
    hits = []
    for doc in ordered[start:start + size]:
        hit = {"_index": f"{index_prefix}{doc['_index']}", "_id": doc["_id"], "_score": None if keys else 1.0,
               "_source": doc["_source"]}
        if body.get("seq_no_primary_term"):
            hit["_seq_no"], hit["_primary_term"] = doc["_seq"], 1
        if keys:
            hit["sort"] = [_sort_value(doc, f) for f, _ in keys]
        hits.append(hit)
    total: Any = {"value": len(docs), "relation": "eq"}
    track = body.get("track_total_hits", True)
    if track is False:
        total = None
    answer = {"took": int((time.monotonic() - started) * 1000), "timed_out": False,
              "_shards": _shards(len(indices)),
              "hits": {**({"total": total} if total is not None else {}),
                       "max_score": None if keys or not docs else 1.0, "hits": hits}}
    aggs = body.get("aggs") or body.get("aggregations")
    if aggs:
        answer["aggregations"] = aggregate(aggs, docs)
    return answer


def count_local(store: Any, index_expr: str | None, body: dict | None, *,
                allowed: Callable[[str], bool] | None = None) -> dict:
    state = store.snapshot()
    indices = resolve_indices(state, index_expr, allowed=allowed)
    docs = matching_docs(store, indices, (body or {}).get("query"))
    return {"count": len(docs), "_shards": _shards(len(indices))}


def resolve_local(store: Any, index_expr: str) -> dict:
    """The `_resolve/cluster` entry of this cluster for `index_expr`."""
    try:
        indices = resolve_indices(store.snapshot(), index_expr)
    except errors.ESError as exc:
        return {"connected": True, "skip_unavailable": False, "error": exc.reason}
    return {"connected": True, "skip_unavailable": False, "matching_indices": bool(indices)}
