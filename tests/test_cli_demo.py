"""`esremote demo --keep` (a real process) on a small lab: the rehearsal shows the progress display
and the measured outage, then leaves the lab and a local Prefect server running, and prints the URL
of the run, which that server knows (completed) and whose page its UI serves."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.test_cli_progress import OUTAGE_LINE, assert_progress_display

pytestmark = [pytest.mark.lab, pytest.mark.slow]

RUN_URL = re.compile(r"^esremote demo: look at the run in the Prefect UI: "
                     r"(?P<url>http://127\.0\.0\.1:(?P<port>\d+)/runs/flow-run/(?P<id>[0-9a-f-]{36}))$", re.M)


def get(url: str, **headers) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status, answer.read()


def test_demo_keep_leaves_the_lab_and_a_prefect_server_and_prints_the_run(lab_factory, tmp_path):
    lab = lab_factory("demo-keep", local_nodes=1, remote_nodes=1)  # demo --dir reuses a lab that is up
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    result = subprocess.run([sys.executable, "-m", "esremote", "demo", "--keep", "--dir", str(lab.dir)],
                            capture_output=True, text=True, timeout=900, env=env)
    pid_file = lab.dir / "prefect" / "server.pid"
    try:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert_progress_display(result.stderr, "prepare_remote", "reconnect", "resume_cross_cluster_ops")
        assert "status: migrated" in result.stdout and OUTAGE_LINE.search(result.stdout), result.stdout
        found = RUN_URL.search(result.stdout)
        assert found, result.stdout
        pid = int(pid_file.read_text())
        assert f"stop it all with: esremote lab down {lab.dir}; kill {pid}" in result.stdout
        # The server outlived the demo and knows the run; its UI serves the run's page.
        api = f"http://127.0.0.1:{found['port']}/api"
        status, body = get(f"{api}/flow_runs/{found['id']}")
        run = json.loads(body)
        assert status == 200 and run["state_type"] == "COMPLETED" and run["name"] == "migrate-all-aliases"
        status, page = get(found["url"], Accept="text/html")
        assert status == 200 and b"<html" in page.lower()
        # The lab is still up, on the API-key link.
        info = lab.es("local").cluster.remote_info()[lab.alias]
        assert info["connected"] and info["cluster_credentials"] == "::es_redacted::"
    finally:
        if pid_file.exists():
            _stop(int(pid_file.read_text()))


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
