"""The lab's own readers and writers of the files Elasticsearch reads (moto never imports boto).

esremote writes elasticsearch.yml, keystores and PKCS#12 files; the lab reads them as Elasticsearch
does. If both sides shared one implementation, a writer bug could never fail a test, so nothing here
imports `esremote.esyml`, `esremote.keystore` or `esremote.pki` (tests/test_lab_imports.py checks it).

| module | one idea |
|---|---|
| `placeholders` | `${...}` in elasticsearch.yml: environment (textual, before parsing) and setting references |
| `yml` | elasticsearch.yml -> flat settings, as Settings.Builder.loadFromStream builds them |
| `keystore` | `elasticsearch.keystore` (KeyStoreWrapper formats 3..6): read, decrypt, write |
| `der` | the DER encoding the PKCS#12 writer needs |
| `pkcs12` | PKCS#12 files: read with `cryptography`, written as Java's KeyStore writes them |
| `pem` | PEM private keys and certificates, certutil's AES-128-CBC key encryption |
| `certs` | certutil's CA and node certificates (keys, DNs, SANs, validity) |
"""
