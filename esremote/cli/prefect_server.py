"""A local Prefect server that outlives the command that started it (`esremote demo --keep`): the
operator looks at the rehearsal's run, its logs and artifacts in the Prefect UI afterwards.

    server = LocalServer.start(lab_dir / "prefect")    # at once; it gets ready while the lab starts
    server.wait_ready()
    os.environ["PREFECT_API_URL"] = server.api_url     # before Prefect is imported in this process

The server runs in its own session (Ctrl-C on the demo does not reach it), with its own
PREFECT_HOME (database, logs) under the given directory, on 127.0.0.1:4200 when that port is free,
else on a free port (the UI is told where its API is, prefect-notes §9). Its pid is written to
`server.pid` there; `kill <pid>` stops it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from esremote.errors import ConfigError

DEFAULT_PORT = 4200
READY_TIMEOUT = 180.0


def free_port(preferred: int = DEFAULT_PORT) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise ConfigError("no free TCP port on 127.0.0.1 for a Prefect server")


@dataclass
class LocalServer:
    home: Path
    port: int
    pid: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @property
    def log_file(self) -> Path:
        return self.home / "server.log"

    def run_url(self, flow_run_id: str) -> str:
        return f"{self.url}/runs/flow-run/{flow_run_id}"

    @classmethod
    def start(cls, home: Path, port: int | None = None) -> LocalServer:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        port = port or free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
        env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api", PYTHONWARNINGS="ignore")
        with open(home / "server.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        (home / "server.pid").write_text(f"{process.pid}\n")
        return cls(home=home, port=port, pid=process.pid, process=process)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as answer:
                return answer.status == 200 and json.loads(answer.read() or b"null") is True
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until the API answers (its first start migrates a new database: seconds to a minute)."""
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.process is not None and self.process.poll() is not None:
                raise ConfigError(f"the Prefect server exited ({self.process.returncode}) before it was ready; "
                                  f"see {self.log_file}")
            if time.monotonic() >= deadline:
                raise ConfigError(f"the Prefect server on {self.url} was not ready after {timeout:g}s; "
                                  f"see {self.log_file}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Only for a server this process started and is giving up on (a failed demo --keep start)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
