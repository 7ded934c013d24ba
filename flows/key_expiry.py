"""`check-key-expiry`: a scheduled look at the cross-cluster API key each alias uses (read from every
local node's keystore over SSH) and its expiry on the remote cluster. A key that expires within
`warn_days`, has expired, is invalidated or unknown to the remote, or local nodes that disagree on
the key, give a warning in the run's log, a Markdown artifact (`key-expiry`) and a Failed run,
which a Prefect automation can turn into a notification or a run of the rotation deployment.

    check_key_expiry(KeyExpiryParams(inventory="inventory.yml", warn_days=14))
"""

from __future__ import annotations

from prefect import flow

from esremote.errors import EsRemoteError
from esremote.inventory import load_inventory
from esremote.params import KeyExpiryParams
from esremote.tasks import reports
from esremote.tasks.common import install_redaction, run_logger
from esremote.tasks.keys import key_report_task

ARTIFACT = "key-expiry"


class KeyExpiryWarning(EsRemoteError):
    """A key an alias uses expires soon (or no longer works): rotate it."""


@flow(name="check-key-expiry", flow_run_name="check-key-expiry", log_prints=False)
def check_key_expiry(params: KeyExpiryParams) -> dict:
    """Warn (and fail) when a key an alias uses expires within `warn_days` or no longer works."""
    install_redaction()
    log = run_logger()
    inventory = load_inventory(params.inventory)
    aliases = [a for a in inventory.aliases if not params.aliases or a in params.aliases]
    unknown = [a for a in params.aliases if a not in inventory.aliases]
    if unknown:
        raise EsRemoteError(f"alias {', '.join(unknown)} is not in {params.inventory}")
    report = key_report_task(str(params.inventory), aliases,
                             str(params.state_dir) if params.state_dir else None,
                             label="-".join(params.aliases) or "all")
    findings = report.findings(params.warn_days)
    for finding in findings:
        if finding.level == "ok":
            log.info("%s", finding.message)
        else:
            log.warning("%s", finding.message)
    bad = [f for f in findings if f.level != "ok"]
    head = (f"{len(bad)} alias key(s) need attention (warning window {params.warn_days} days)" if bad
            else f"every alias's key is valid for more than {params.warn_days} days")
    reports.markdown(ARTIFACT, f"{head}\n\n" + report.to_markdown(findings), description="Cross-cluster API key expiry")
    result = {"ok": not bad, "warn_days": params.warn_days,
              "findings": [{"alias": f.alias, "key_id": f.key_id, "level": f.level, "message": f.message,
                            "days_left": f.days_left} for f in findings]}
    if bad:
        raise KeyExpiryWarning(f"{head}: " + "; ".join(f.message for f in bad))
    return result
