"""The operator's path in the Prefect UI, in a real browser (Python playwright driving Debian's
chromium; nothing is downloaded), on the session's Prefect server with a process worker and the
deployments of deployments/prefect.yaml, on the shared deployment lab (alias my_remote):

open the UI, find the `manual` deployment, start a custom run by filling its parameter form, follow
the run page while it works (its logs; its subflows' task runs, one of them retried because the lab
answers 429 for a while: `http-overload`), answer the approval form when the run pauses, then check
the final state and the summary artifact on the page. First a refusal (the migration is done,
nothing is retired), then an approval (the transport IP filter is set on the remote).

Screenshots go to each test's tmp dir (screenshots/): <case>-1-run-form.png, <case>-2-running.png,
<case>-3-retried-task.png, <case>-4-approval-form.png, <case>-5-summary-artifact.png, with <case>
refuse or approve. Select these tests with `-m browser`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from esremote.lab.ops import control
from tests.fixtures.deployed import RUN_TIMEOUT, artifacts, children, read_run, wait_final, wait_for
from tests.fixtures.lab import Lab
from tests.fixtures.prefect import STARTUP_TIMEOUT

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.lab, pytest.mark.timeout(900)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ALIAS = "my_remote"
UI_TIMEOUT_MS = RUN_TIMEOUT * 1000
FILTER = "xpack.security.transport.filter.allow"


@pytest.fixture(scope="module")
def lab(ops_lab) -> Lab:
    return ops_lab.result(timeout=STARTUP_TIMEOUT)


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        if os.environ.get("ESREMOTE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); ESREMOTE_REQUIRE_BROWSER=1 makes this fail")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, prefect_server):
    context = browser.new_context(viewport={"width": 1400, "height": 1200}, base_url=prefect_server.url[:-len("/api")])
    context.set_default_timeout(60_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def prop(scope, label: str):
    """One field of a Prefect schema form, by its label (the innermost one: nested objects have fields too)."""
    return scope.locator(
        f"xpath=.//span[contains(@class,'schema-form-property__label') and normalize-space()='{label}']"
        "/ancestor::div[contains(concat(' ',normalize-space(@class),' '),' schema-form-property ')][1]")


def switch(scope, label: str, on: bool) -> None:
    from playwright.sync_api import expect

    toggle = prop(scope, label).get_by_role("switch").first
    if (toggle.get_attribute("aria-checked") == "true") != on:
        toggle.click()
    expect(toggle).to_have_attribute("aria-checked", "true" if on else "false")


def state_badge(page, name: str):
    return page.locator(".state-badge", has_text=re.compile(f"^\\s*{name}\\s*$")).first


def start_from_the_form(page, lab: Lab, state_dir: Path, shots: Path, case: str):
    """Deployments -> manual -> Run -> Custom run, the form filled as an operator would, submitted
    while the lab answers 429 to every other request on local-0 (`http-overload`), switched off as
    soon as a task run has been retried (a task is retried three times, 1 + 3 + 8 s apart); then
    the run's page, opened from the deployment's list of runs. The run's id and the retried task run."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    page.goto("/deployments")
    page.get_by_role("link", name="manual", exact=True).click()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run", exact=True).click()
    prop(page, "Inventory").locator("textarea").fill(str(lab.inventory))
    aliases = prop(page, "Aliases (Optional)")
    aliases.get_by_role("button", name="Add item").click()
    aliases.locator("textarea, input").first.fill(ALIAS)
    switch(page, "Dry Run (Optional)", False)               # the deployment's default is a dry run
    switch(page, "Retire Trust (Optional)", True)
    switch(page, "Transport Ip Filter (Optional)", True)    # what the retirement may do (asked again)
    prop(page, "Approval Timeout S (Optional)").locator("input").fill("900")
    state = prop(page, "State Dir (Optional)")
    state.get_by_role("button", name="path", exact=True).click()
    state.locator("textarea, input").first.fill(str(state_dir))
    expect(prop(page, "Connection Mode (Optional)")).to_contain_text("keep")   # an enum: a drop-down
    page.screenshot(path=str(shots / f"{case}-1-run-form.png"))
    form_url = page.url
    control.fault(lab.dir, "http-overload", node="local-0")
    page.get_by_role("button", name="Submit").click()
    try:
        page.wait_for_url(lambda url: url != form_url, timeout=20_000)
    except PlaywrightTimeout:  # the click was lost (seen once, on a busy machine): the form is still there
        page.screenshot(path=str(shots / f"{case}-1b-still-on-the-form.png"))
        page.get_by_role("button", name="Submit").click()
    try:
        started = wait_for("the run the form started", lambda: _runs_of_the_form(state_dir), 60)
        assert len(started) == 1, "the form started more than one run"
        run_id = str(started[0].id)
        # Through the API, at once (the UI may take its time): a task run of the run retried.
        task = wait_for("a task run of the run to be retried", lambda: retried_task(run_id), 240, interval=0.2)
    finally:
        control.fault(lab.dir, "http-overload", off=True)
    # Back on the deployment's page, the new run is in its list of runs: open it.
    page.locator(f'a[href="/runs/flow-run/{run_id}"]').first.click()
    page.wait_for_url(re.compile(f".*/runs/flow-run/{run_id}$"))
    params = started[0].parameters["params"]
    assert (params["inventory"], params["aliases"], params["dry_run"], params["retire_trust"],
            params["retire"]["transport_ip_filter"]) == (str(lab.inventory), [ALIAS], False, True, True), params
    return run_id, task


def _runs_of_the_form(state_dir: Path) -> list:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return [r for r in client.read_flow_runs()
                if (r.parameters.get("params") or {}).get("state_dir") == str(state_dir)]


def _paused_or_final(run_id):
    run = read_run(run_id)
    return run if run.state is not None and (run.state.is_paused() or run.state.is_final()) else None


def retried_task(run_id):
    """A task run of the run's subflows that failed and was retried (AwaitingRetry, or run twice)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    ids = [child.id for child in children(run_id)]
    if not ids:
        return None
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=ids)))
    return next((t for t in tasks if t.run_count > 1 or (t.state and t.state.name in ("AwaitingRetry", "Retrying"))),
                None)


def follow_and_answer(page, deployed, run_id: str, task, shots: Path, case: str, approve: bool) -> None:
    """On the run page: logs, the retried task run of a subflow, the pause and its form, the end."""
    from playwright.sync_api import expect

    run_url = page.url
    expect(page.get_by_text(re.compile(r"^holding esremote-pair-"))).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.screenshot(path=str(shots / f"{case}-2-running.png"))

    page.get_by_text("Subflow Runs", exact=True).click()
    page.get_by_role("link", name=re.compile(r"^preflight-")).first.click()
    page.get_by_text("Task Runs", exact=True).click()
    page.get_by_role("link", name=task.name, exact=True).first.click()
    expect(page.get_by_text(re.compile(r"Retry 1/3 will start"))).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text("Run Count", exact=True)).to_be_visible()
    page.screenshot(path=str(shots / f"{case}-3-retried-task.png"))

    page.goto(run_url)
    paused = wait_for("the run to pause for approval (or end)", lambda: _paused_or_final(run_id), RUN_TIMEOUT,
                      deployed, interval=1.0)
    assert paused.state.is_paused(), f"{paused.state.type}: {paused.state.message}\n{deployed.log_tail()}"
    expect(state_badge(page, "Paused")).to_be_visible(timeout=UI_TIMEOUT_MS)
    # The run page refreshes while it is paused: on a loaded machine the button never holds still
    # for the two frames a pointer click waits for (seen in a clean run at load 30), so the click
    # event is sent to the visible button itself, as for Submit below.
    resume = page.get_by_role("button", name="Resume")
    expect(resume).to_be_visible(timeout=UI_TIMEOUT_MS)
    resume.dispatch_event("click")
    form = page.get_by_role("dialog")
    expect(form.get_by_text("Retire certificate trust (irreversible)")).to_be_visible()
    expect(form.get_by_text(re.compile(r"transport IP filter: PUT _cluster/settings"))).to_be_visible()
    switch(form, "Approve (Optional)", approve)
    switch(form, "Transport Ip Filter (Optional)", True)
    page.screenshot(path=str(shots / f"{case}-4-approval-form.png"))
    # The dialog reflows while the run page behind it refreshes: on a busy machine the button may
    # never hold still for two frames, which a pointer click waits for; the click event itself does.
    form.get_by_role("button", name="Submit").dispatch_event("click")
    expect(state_badge(page, "Completed")).to_be_visible(timeout=UI_TIMEOUT_MS)


def summary_on_the_page(page, shots: Path, case: str, expected: str) -> None:
    from playwright.sync_api import expect

    page.get_by_text("Artifacts", exact=True).click()
    page.locator("a", has_text="summary-my-remote").first.click()   # one version of the run's summary ...
    page.locator('a[href="/artifacts/key/summary-my-remote"]').first.click()   # ... its key's timeline ...
    page.locator('a[href^="/artifacts/artifact/"]').first.click()               # ... newest first
    expect(page.get_by_text("Migration migrated: my_remote")).to_be_visible()
    expect(page.get_by_text(expected, exact=False)).to_be_visible()
    page.screenshot(path=str(shots / f"{case}-5-summary-artifact.png"), full_page=True)


@pytest.fixture
def shots(tmp_path) -> Path:
    path = tmp_path / "screenshots"
    path.mkdir()
    return path


@pytest.fixture
def state_dir(tmp_path, deployed, prefect_server):
    """The journal directory of the test's run; afterwards a run of it left paused (a failed test)
    is refused through the API, so that it lets go of the cluster pair for the next test."""
    from prefect.flow_runs import resume_flow_run

    path = tmp_path / "state"
    yield path
    for run in _runs_of_the_form(path):
        if run.state is not None and run.state.is_paused():
            resume_flow_run(run.id, run_input={"approve": False})
            wait_final(run.id, deployed)


def _transport_filter(lab: Lab):
    settings = lab.es("remote").cluster.get_settings(flat_settings=True).body
    return settings.get("persistent", {}).get(FILTER)


def test_refusing_the_approval_in_the_ui_leaves_the_migration_done_and_nothing_retired(
        page, lab, deployed, state_dir, shots):
    info = lab.es("local").cluster.remote_info().body[ALIAS]
    assert "cluster_credentials" not in info, "test order: my_remote must still be on the certificate model"
    run_id, task = start_from_the_form(page, lab, state_dir, shots, "refuse")
    follow_and_answer(page, deployed, run_id, task, shots, "refuse", approve=False)
    summary_on_the_page(page, shots, "refuse", "not approved in the Prefect UI: certificate trust left in place")

    done = wait_final(run_id, deployed)
    assert done.state.is_completed(), done.state
    info = lab.es("local").cluster.remote_info().body[ALIAS]
    assert info["connected"] and info["cluster_credentials"] == "::es_redacted::", info
    assert _transport_filter(lab) is None
    [report] = artifacts(run_id)["retire-certificate-trust-my-remote"]
    assert "not approved in the Prefect UI" in report.data


def test_approving_in_the_ui_retires_certificate_trust(page, lab, deployed, state_dir, shots):
    run_id, task = start_from_the_form(page, lab, state_dir, shots, "approve")
    follow_and_answer(page, deployed, run_id, task, shots, "approve", approve=True)
    summary_on_the_page(page, shots, "approve",
                        "certificate trust retired: remote: transport port open only to its own nodes")

    done = wait_final(run_id, deployed)
    assert done.state.is_completed(), done.state
    assert _transport_filter(lab) == [n["ip"] for n in lab.nodes("remote")]
    found = artifacts(run_id)
    assert "approved in the Prefect UI" in found["retire-certificate-trust-my-remote"][0].data
    assert "CA rotation plan for remote" in found["ca-rotation-remote-my-remote"][0].data
