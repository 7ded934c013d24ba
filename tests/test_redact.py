import base64
import io
import logging

from esremote.redact import MASK, Redactor, RedactingFilter


def test_raw_and_encoded_api_key_are_masked():
    r = Redactor()
    r.add_api_key("VuaCfGcBCdbkQm-e5aOx", "ui2lp2axTNmsyakw9tvNnw")
    encoded = base64.b64encode(b"VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw").decode()
    text = r.redact(f"key ui2lp2axTNmsyakw9tvNnw encoded {encoded} id VuaCfGcBCdbkQm-e5aOx")
    assert "ui2lp2axTNmsyakw9tvNnw" not in text and encoded not in text
    assert text.count(MASK) == 2 and "VuaCfGcBCdbkQm-e5aOx" in text  # the id is not secret


def test_log_records_are_scrubbed_before_handlers_see_them():
    # A logger and handler of its own: the test must not depend on how other code set up logging.
    r = Redactor(["s3cr3t-password"])
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter(r))
    logger = logging.getLogger("esremote.test.redact.isolated")
    logger.propagate, logger.level = False, logging.INFO
    logger.addHandler(handler)
    try:
        logger.warning("login with %s failed", "s3cr3t-password")
        try:
            raise ValueError("bad s3cr3t-password")
        except ValueError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "s3cr3t-password" not in text
    assert "login with ********** failed" in text and "ValueError: bad **********" in text


def test_short_strings_are_not_treated_as_secrets():
    r = Redactor(["ab"])
    assert r.redact("about") == "about"
