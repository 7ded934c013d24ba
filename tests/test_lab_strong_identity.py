"""9.3 strong identity verification as the lab plays it (es-facts §12, "9.3 (technical preview)"):

- below 9.3 the signing settings are unknown (a node refuses to start with them, a cluster-settings
  update refuses them) and `certificate_identity` is an unknown field of the key APIs;
- from 9.3 a local node signs its requests on the API-key link with its alias's signing certificate,
  and the remote checks the signature against `cluster.remote.signing.certificate_authorities` and
  the key's `certificate_identity`, failing with Elasticsearch's messages: a DN that does not match,
  a certificate that does not chain to the configured CAs, a request that is not signed.
"""

from __future__ import annotations

import base64
import json
import re
from email.message import Message
from types import SimpleNamespace

import pytest

from esremote import pki
from esremote.lab import errors
from esremote.lab.models import settings as cluster_settings
from esremote.lab.node.config import load_node_config
from esremote.lab.rest.api import security_api
from esremote.lab.rest.http import Request
from tests.lab_inprocess import build_home
from tests.test_lab_config import UNKNOWN, refusal
from tests.test_lab_link_harness import connect_proxy, lab, remote_info, wait_for  # noqa: F401

IP = "127.0.203.1"
ALIAS = "my_remote"
SIGNING = [f"cluster.remote.{ALIAS}.signing.certificate", f"cluster.remote.{ALIAS}.signing.key"]
CAS = "cluster.remote.signing.certificate_authorities"
DN = "CN=local-signing,O=lab"


# ----------------------------------------------------------------------------- below 9.3

@pytest.mark.parametrize("key", SIGNING + [CAS])
def test_a_92_node_refuses_the_signing_settings_as_unknown(tmp_path, key):
    home = build_home(tmp_path, ip=IP, version="9.2.0", yml={key: "certs/signing.crt"})
    assert refusal(home) == UNKNOWN.format(key)


def test_a_92_cluster_refuses_them_in_cluster_settings_and_93_takes_them(tmp_path):
    state = {"settings": {"persistent": {}, "transient": {}}}
    body = {"persistent": {CAS: "certs/signing-ca.crt"}}
    with pytest.raises(errors.IllegalArgument, match=re.escape(f"persistent setting [{CAS}], not recognized")):
        cluster_settings.apply_update(state, {}, body, (9, 2, 0))
    cluster_settings.apply_update(state, {}, body, (9, 3, 0))
    assert state["settings"]["persistent"] == {CAS: "certs/signing-ca.crt"}


def _key_request(version, body: dict, path_params: dict | None = None) -> Request:
    """A key API request as the HTTP layer hands it over, on a node of `version`."""
    raw = json.dumps(body).encode()
    ctx = SimpleNamespace(config=SimpleNamespace(version=version),
                          security=SimpleNamespace(require_advanced_remote_cluster_security=lambda: None))
    return Request("POST", "/_security/cross_cluster/api_key", {}, Message(), raw,
                   path_params=path_params or {}, user=SimpleNamespace(api_key=None), ctx=ctx)


def test_a_92_key_api_refuses_certificate_identity_as_an_unknown_field():
    body = {"name": "k", "access": {"search": [{"names": ["*"]}]}, "certificate_identity": "CN=x"}
    with pytest.raises(errors.XContentParseError,
                       match=re.escape("[cross_cluster_api_key_request] unknown field [certificate_identity]")):
        security_api.create_cross_cluster_api_key(_key_request((9, 2, 0), body))
    with pytest.raises(errors.XContentParseError,
                       match=re.escape("[update_cross_cluster_api_key_request] unknown field [certificate_identity]")):
        security_api.update_cross_cluster_api_key(_key_request((9, 2, 0), {"certificate_identity": None},
                                                               {"id": "x"}))


def test_a_93_key_api_refuses_a_pattern_that_is_no_regex():
    body = {"name": "k", "access": {"search": [{"names": ["*"]}]}, "certificate_identity": "CN=(x"}
    with pytest.raises(errors.IllegalArgument, match=re.escape("Invalid certificate_identity format: [CN=(x]. "
                                                               "Must be a valid regex.")):
        security_api.create_cross_cluster_api_key(_key_request((9, 3, 0), body))


# ----------------------------------------------------------------------------- start-up

def test_a_93_node_reads_the_signing_files_at_start(tmp_path):
    home = build_home(tmp_path, ip=IP, version="9.3.0",
                      yml={SIGNING[0]: "certs/signing.crt", SIGNING[1]: "certs/signing.key"})
    config = load_node_config(home.path, build_ssl=False)
    assert config.settings[SIGNING[0]] == "certs/signing.crt"
    missing = home.path / "config" / "certs" / "signing.crt"
    assert refusal(home) == (f"failed to load SSL configuration [cluster.remote.{ALIAS}.signing] - cannot read "
                             f"configured PEM certificate [{missing}] because the file does not exist")


# ----------------------------------------------------------------------------- the link

def _pem_pair(lab, name: str, cert: pki.NodeCertificate) -> tuple[str, str]:
    crt, key = lab.root / f"{name}.crt", lab.root / f"{name}.key"
    crt.write_bytes(cert.cert_pem())
    key.write_bytes(cert.key_pem())
    return str(crt), str(key)


@pytest.fixture
def linked(lab):
    """A 9.3 remote trusting the signing CA, a 9.3 local node whose alias signs with `DN`, and the
    key (id) the local node uses; the link is up."""
    signing_ca = pki.CertificateAuthority.create("CN=signing CA", key_size=2048)
    ca_file = lab.root / "signing-ca.crt"
    ca_file.write_bytes(signing_ca.cert_pem())
    remote = lab.cluster("remote", version="9.3.0")
    remote.add_node(remote_cluster_server=True).start(remote=False)
    remote.create_index("logs-1", [{"msg": "a"}])
    remote.put_settings(persistent={CAS: [str(ca_file)]})
    encoded = remote.api_key("ccs", search=["logs-*"])
    local = lab.cluster("local", version="9.3.0")
    local.add_node(secure={f"cluster.remote.{ALIAS}.credentials": encoded}).start()
    cert, key = _pem_pair(lab, "signing", pki.issue(signing_ca, DN, key_size=2048))
    local.put_settings(persistent={SIGNING[0]: cert, SIGNING[1]: key})
    connect_proxy(local, ALIAS, f"{remote.node.config.ip}:9443", sockets=1)
    wait_for(lambda: remote_info(local.node)[ALIAS]["connected"], what="the API-key link")
    key_id = base64.b64decode(encoded).decode().split(":")[0]
    return SimpleNamespace(remote=remote, local=local, key_id=key_id, signing_ca=signing_ca)


def _set_identity(remote, key_id: str, pattern: str | None) -> None:
    with remote.store.transaction() as st:
        st["security"]["api_keys"][key_id]["certificate_identity"] = pattern


def _search(linked):
    return linked.local.node.remote.search(ALIAS, "logs-*", {}, linked.local.user("elastic"))


def test_a_matching_dn_is_served_and_a_mismatch_is_refused(linked):
    _set_identity(linked.remote, linked.key_id, "CN=local-signing,O=lab")
    assert len(_search(linked)["hits"]["hits"]) == 1
    _set_identity(linked.remote, linked.key_id, "CN=local-signing")  # the whole DN must match
    with pytest.raises(errors.ESError) as refused:
        _search(linked)
    assert refused.value.status == 401
    assert refused.value.reason == ("DN from provided certificate [CN=local-signing,O=lab] does not match API Key "
                                    "certificate identity pattern [CN=local-signing]")


def test_a_certificate_not_chained_to_the_configured_cas_is_refused(linked, lab):
    other = pki.CertificateAuthority.create("CN=other CA", key_size=2048)
    cert, key = _pem_pair(lab, "stranger", pki.issue(other, DN, key_size=2048))
    linked.local.put_settings(persistent={SIGNING[0]: cert, SIGNING[1]: key})
    with pytest.raises(errors.ESError) as refused:
        _search(linked)
    assert refused.value.status == 401
    assert refused.value.reason.startswith("Failed to verify cross cluster api key signature certificate from "
                                           "[(CN=local-signing, O=lab;X.509;SHA1:")


def test_a_key_with_an_identity_takes_no_unsigned_request(linked):
    _set_identity(linked.remote, linked.key_id, ".*")
    linked.local.put_settings(persistent={SIGNING[0]: None, SIGNING[1]: None})
    with pytest.raises(errors.ESError) as refused:
        _search(linked)
    assert refused.value.status == 401 and "was not signed" in refused.value.reason
