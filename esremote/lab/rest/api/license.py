"""Licence APIs: get, post (an uploaded licence sets its type, no signature check), start_trial,
and `_xpack` info. The licence lives in the cluster state (`license`)."""

from __future__ import annotations

import time

from esremote.lab import errors
from esremote.lab.rest.http import Request, Response
from esremote.lab.rest.routes import api

_TRIAL_MS = 30 * 86400_000


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def license_body(lic: dict, cluster: str) -> dict:
    kind = lic.get("type", "basic")
    body = {"status": "active", "uid": lic.get("uid", ""), "type": kind,
            "issue_date": _iso(lic.get("issue_date_in_millis", 0)),
            "issue_date_in_millis": lic.get("issue_date_in_millis", 0)}
    if kind != "basic":
        body["expiry_date"] = _iso(lic["expiry_date_in_millis"])
        body["expiry_date_in_millis"] = lic["expiry_date_in_millis"]
        if lic["expiry_date_in_millis"] < time.time() * 1000:
            body["status"] = "expired"
    body.update({"max_nodes": None if kind == "enterprise" else 1000,
                 "max_resource_units": 100 if kind == "enterprise" else None,
                 "issued_to": cluster, "issuer": "elasticsearch" if kind in ("basic", "trial") else "lab",
                 "start_date_in_millis": -1})
    return body


@api("license.get")
def get_license(req: Request) -> dict:
    st = req.ctx.store.snapshot()
    return {"license": license_body(st["license"], req.ctx.config.cluster_name)}


@api("license.post")
def post_license(req: Request) -> dict:
    body = req.json(required=True)
    lic = body.get("license") or (body.get("licenses") or [None])[0]
    if not isinstance(lic, dict) or lic.get("type") not in ("basic", "trial", "gold", "platinum", "enterprise"):
        raise errors.IllegalArgument("license type is missing or unknown")
    now = int(time.time() * 1000)
    with req.ctx.store.transaction() as st:
        st["license"].update({"type": lic["type"], "uid": lic.get("uid", st["license"].get("uid")),
                              "issue_date_in_millis": int(lic.get("issue_date_in_millis", now)),
                              "expiry_date_in_millis": int(lic.get("expiry_date_in_millis", now + 365 * 86400_000))})
    return {"acknowledged": True, "license_status": "valid"}


@api("license.post_start_trial")
def start_trial(req: Request) -> Response:
    if not req.bool_param("acknowledge"):
        return Response(200, {"acknowledged": False, "trial_was_started": False,
                              "error_message": "Operation failed: Needs acknowledgement.",
                              "acknowledge": {"message": "This API initiates a free 30-day trial for all platinum "
                                              "features. By starting this trial, you agree that it is subject to "
                                              "the terms and conditions at https://www.elastic.co/legal/trial_license"
                                              "/. To begin your free trial, call /start_trial again and specify the "
                                              "\"acknowledge=true\" parameter."}})
    now = int(time.time() * 1000)
    with req.ctx.store.transaction() as st:
        lic = st["license"]
        if lic.get("trial_used") or lic.get("type") in ("trial", "enterprise", "platinum"):
            return Response(403, {"acknowledged": True, "trial_was_started": False,
                                  "error_message": "Operation failed: Trial was already activated."})
        lic.update({"type": "trial", "trial_used": True, "issue_date_in_millis": now,
                    "expiry_date_in_millis": now + _TRIAL_MS})
    return Response(200, {"acknowledged": True, "trial_was_started": True, "type": "trial"})


@api("xpack.info")
def xpack_info(req: Request) -> dict:
    lic = req.ctx.store.snapshot()["license"]
    from esremote.lab.rest.api.cluster import version_body
    version = version_body(req.ctx)
    paid = lic.get("type") in ("trial", "enterprise", "platinum")
    features = {name: {"available": available, "enabled": True}
                for name, available in (("security", True), ("ccr", paid), ("ml", paid), ("transform", True),
                                        ("monitoring", True), ("enterprise_search", True))}
    return {"build": {"hash": version["build_hash"], "date": version["build_date"]},
            "license": {"uid": lic.get("uid"), "type": lic.get("type"), "mode": lic.get("type"), "status": "active",
                        **({"expiry_date_in_millis": lic["expiry_date_in_millis"]} if lic.get("type") != "basic" else {})},
            "features": features, "tagline": "You know, for X"}
