"""The node's deprecation log: `logs/<cluster>_deprecation.json`, one ECS JSON object per line, as
Elasticsearch's `DeprecationLogger` writes it (log4j2's `deprecation_rolling` appender).

Elasticsearch's `RateLimitingFilter` lets one message per deprecation key (`event.code`) through;
the lab keeps that for the life of the node process, so a key appears once per node start.
Nothing here is read back by the node: operators and tools read the file (es-facts §12, "9.0").
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

# Categories of `DeprecationCategory`, rendered lower-case in `elasticsearch.event.category`.
SECURITY = "security"


class DeprecationLog:
    """Writes deprecation warnings of one node, each key once."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return deprecation_log_path(self.ctx.config)

    def warn(self, category: str, key: str, message: str, logger: str) -> bool:
        """Write the warning unless its key was written before; True when written. `logger` is the
        class that logs it (`org.elasticsearch.deprecation.` + its package and name)."""
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            line = json.dumps(self._record(category, key, message, logger), separators=(",", ":"))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(line + "\n")
        return True

    def _record(self, category: str, key: str, message: str, logger: str) -> dict:
        config = self.ctx.config
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
        return {"@timestamp": stamp, "log.level": "WARN", "data_stream.dataset": "deprecation.elasticsearch",
                "data_stream.namespace": "default", "data_stream.type": "logs",
                "elasticsearch.elastic_product_origin": "", "elasticsearch.event.category": category,
                "event.code": key, "message": message, "ecs.version": "1.2.0", "service.name": "ES_ECS",
                "event.dataset": "deprecation.elasticsearch", "process.thread.name": threading.current_thread().name,
                "log.logger": logger, "elasticsearch.node.id": self.ctx.id,
                "elasticsearch.node.name": config.name, "elasticsearch.cluster.name": config.cluster_name}


def deprecation_log_path(config) -> Path:
    """Beside the node's main log (`path.logs`): `<cluster>_deprecation.json`."""
    return config.log_path.parent / f"{config.cluster_name}_deprecation.json"


_LOGS: dict[int, DeprecationLog] = {}
_LOGS_LOCK = threading.Lock()


def deprecation_log(ctx) -> DeprecationLog:
    """The node's one DeprecationLog (its keys seen so far live as long as the node context)."""
    with _LOGS_LOCK:
        log = _LOGS.get(id(ctx))
        if log is None or log.ctx is not ctx:
            log = _LOGS[id(ctx)] = DeprecationLog(ctx)
        return log
