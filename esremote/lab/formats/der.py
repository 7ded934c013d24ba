"""The few DER (ASN.1) encodings the PKCS#12 writer needs (X.690).

Only encoding: reading PKCS#12 is left to `cryptography`. SETs keep the order they are given in,
as Java's PKCS12KeyStore writes bag attributes (readers do not care; openssl prints them so).
"""

from __future__ import annotations

SEQUENCE, SET = 0x30, 0x31
INTEGER, OCTET_STRING, NULL, OID, BMP_STRING = 0x02, 0x04, 0x05, 0x06, 0x1E


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def sequence(*items: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(items))


def set_of(*items: bytes) -> bytes:
    return tlv(SET, b"".join(items))


def integer(value: int) -> bytes:
    size = value.bit_length() // 8 + 1  # room for the sign bit
    return tlv(INTEGER, value.to_bytes(size, "big", signed=True))


def octet_string(data: bytes) -> bytes:
    return tlv(OCTET_STRING, data)


def null() -> bytes:
    return tlv(NULL, b"")


def bmp_string(text: str) -> bytes:
    return tlv(BMP_STRING, text.encode("utf-16-be"))


def oid(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray(_base128(arcs[0] * 40 + arcs[1]))
    for arc in arcs[2:]:
        body += _base128(arc)
    return tlv(OID, bytes(body))


def _base128(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | value & 0x7F)
        value >>= 7
    return bytes(reversed(out))


def explicit(number: int, content: bytes) -> bytes:
    """[number] EXPLICIT: a constructed context tag around a whole encoding."""
    return tlv(0xA0 | number, content)


def implicit_octets(number: int, data: bytes) -> bytes:
    """[number] IMPLICIT OCTET STRING: a primitive context tag around raw bytes."""
    return tlv(0x80 | number, data)


def algorithm(dotted: str, parameters: bytes | None = None) -> bytes:
    """AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }."""
    return sequence(oid(dotted), parameters if parameters is not None else b"")
