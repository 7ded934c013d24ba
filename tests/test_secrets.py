"""Secret references: env, file and Prefect resolution, and that values never leak into messages."""

import os
import subprocess
import sys
import uuid

import pytest
from pydantic import SecretStr, ValidationError

from esremote.errors import ConfigError
from esremote.secrets import SecretError, SecretRef

VALUE = "s3cr3t-Value-4242"


def assert_hidden(*texts: str) -> None:
    for text in texts:
        assert VALUE not in text


# ---------------------------------------------------------------- env

def test_env_reference_resolves_to_a_masked_secret(monkeypatch):
    monkeypatch.setenv("ESR_TEST_PASSWORD", VALUE)
    secret = SecretRef(env="ESR_TEST_PASSWORD").resolve()
    assert isinstance(secret, SecretStr)
    assert secret.get_secret_value() == VALUE
    assert_hidden(repr(secret), str(secret), f"{secret}")


def test_missing_env_variable_names_the_variable(monkeypatch):
    monkeypatch.delenv("ESR_TEST_UNSET", raising=False)
    with pytest.raises(SecretError) as info:
        SecretRef(env="ESR_TEST_UNSET").resolve()
    assert "ESR_TEST_UNSET" in str(info.value) and "not set" in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_env_read_at_resolve_time_not_at_construction(monkeypatch):
    monkeypatch.delenv("ESR_TEST_LATE", raising=False)
    ref = SecretRef(env="ESR_TEST_LATE")          # no error: nothing is read yet
    monkeypatch.setenv("ESR_TEST_LATE", VALUE)
    assert ref.resolve().get_secret_value() == VALUE


# ---------------------------------------------------------------- file

@pytest.mark.parametrize("content", [f"{VALUE}\n", f"{VALUE}\r\n", VALUE, f"{VALUE}\nsecond line\n"])
def test_file_reference_reads_the_first_line_without_newline(tmp_path, content):
    path = tmp_path / "secret"
    path.write_bytes(content.encode())
    assert SecretRef(file=path).resolve().get_secret_value() == VALUE


def test_file_reference_expands_home_and_resolves_relative_to_base_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "pw").write_text(VALUE + "\n")
    assert SecretRef(file="~/pw").resolve().get_secret_value() == VALUE
    ref = SecretRef.model_validate({"file": "pw"}, context={"base_dir": tmp_path})
    assert ref.file == tmp_path / "pw"
    assert ref.resolve().get_secret_value() == VALUE


@pytest.mark.parametrize("make", ["missing", "directory", "not-utf8"])
def test_unreadable_file_is_a_clear_error_without_content(tmp_path, make):
    path = tmp_path / "secret"
    if make == "directory":
        path.mkdir()
    elif make == "not-utf8":
        path.write_bytes(b"\xff\xfe" + VALUE.encode() + b"\xff\n")
    with pytest.raises(SecretError) as info:
        SecretRef(file=path).resolve()
    message = str(info.value)
    assert str(path) in message and "cannot be read" in message
    assert_hidden(message, repr(info.value))
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_file_reference_is_warn_free(tmp_path, recwarn):
    path = tmp_path / "secret"
    path.write_text(VALUE + "\n")
    path.chmod(0o644)  # loose permissions: readable, and no warning either way
    SecretRef(file=path).resolve()
    assert len(recwarn) == 0


# ---------------------------------------------------------------- the reference itself

@pytest.mark.parametrize("data", [{}, {"env": "A", "file": "b"}, {"env": "A", "prefect": "b"},
                                  {"env": ""}, {"prefect": "  "}, {"vault": "x"}])
def test_reference_needs_exactly_one_valid_source(data):
    with pytest.raises(ValidationError):
        SecretRef.model_validate(data)


def test_a_literal_secret_is_refused_without_being_echoed():
    with pytest.raises(ValidationError) as info:
        SecretRef.model_validate(VALUE)
    assert "reference" in str(info.value)


def test_models_built_in_code_do_not_echo_a_literal_secret():
    from esremote.inventory import Auth

    for attempt in (lambda: SecretRef.model_validate(VALUE), lambda: Auth(username="u", password=VALUE),
                    lambda: SecretRef(env=VALUE, file=VALUE)):
        with pytest.raises(ValidationError) as info:
            attempt()
        assert_hidden(str(info.value), repr(info.value))


def test_describe_names_the_source_only():
    assert SecretRef(env="X").describe() == "environment variable X"
    assert SecretRef(prefect="blk").describe() == "Prefect Secret block blk"


# ---------------------------------------------------------------- Prefect

def test_core_modules_do_not_import_prefect():
    code = ("import sys, esremote.secrets, esremote.inventory; "
            "sys.exit(1 if any(m == 'prefect' or m.startswith('prefect.') for m in sys.modules) else 0)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.slow
def test_unreachable_prefect_api_is_a_transient_error(tmp_path):
    """The real Prefect client against a closed port (no server needed; its retries take ~8 s)."""
    code = ("from esremote.secrets import SecretError, SecretRef\n"
            "try:\n    SecretRef(prefect='esr-block').resolve()\n"
            "except SecretError as exc:\n    print(exc.transient, exc)\n")
    env = {**os.environ, "PREFECT_HOME": str(tmp_path), "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("True Prefect Secret block esr-block cannot be loaded"), out.stdout + out.stderr
    assert "PREFECT_API_URL" in out.stdout


@pytest.mark.slow
def test_prefect_secret_block_resolves_and_missing_block_is_clear(prefect_server):
    """Against a real `prefect server start` (tests/fixtures/prefect.py, shared with the deployment
    test): the block saved through the API resolves; once deleted, the error names the block, says
    what to do, is not worth a retry and shows no value."""
    import httpx
    from prefect.blocks.system import Secret

    name = f"esremote-test-{uuid.uuid4().hex[:8]}"
    Secret(value=VALUE).save(name)
    try:
        stored = httpx.get(f"{prefect_server.url}/block_types/slug/secret/block_documents/name/{name}",
                           timeout=30)  # the server holds it, its value masked
        assert stored.status_code == 200 and VALUE not in stored.text, stored.text
        assert SecretRef(prefect=name).resolve().get_secret_value() == VALUE
    finally:
        Secret.delete(name)
    with pytest.raises(SecretError) as info:
        SecretRef(prefect=name).resolve()
    assert f"Prefect Secret block {name} does not exist" in str(info.value) and not info.value.transient
    assert_hidden(str(info.value))
