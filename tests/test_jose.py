"""Compact JWS and Go's JSON, as the service-account issuer writes tokens with them."""

from __future__ import annotations

import functools

from irsa_lab import jose
from irsa_lab.pki import SigningKey


def test_go_json_escapes_html_and_line_separators_and_keeps_utf8() -> None:
    text = jose.go_json({"b": "<a&b>\u2028\u2029é", "a": 1})
    assert text == '{"b":"\\u003ca\\u0026b\\u003e\\u2028\\u2029é","a":1}'.encode()
    assert jose.go_json({"b": {"d": 1, "c": 2}, "a": 1}, sort_keys=True) == (
        b'{"a":1,"b":{"c":2,"d":1}}'
    )


def test_sign_compact_writes_each_segment_with_its_encoder_and_verifies() -> None:
    key = SigningKey.demo()
    header = {"alg": "RS256", "kid": key.kid}
    claims = {"z": "<", "a": {"y": 1, "x": 2}}
    token = jose.sign_compact(
        header,
        claims,
        key.private_key,
        encode_header=jose.go_json,
        encode_claims=functools.partial(jose.go_json, sort_keys=True),
    )
    head, body, _ = token.split(".")
    assert jose.b64url_decode(head) == jose.go_json(header)
    assert jose.b64url_decode(body) == b'{"a":{"x":2,"y":1},"z":"\\u003c"}'
    jws = jose.parse_compact(token)
    assert jose.verify(jws, "RS256", key.private_key.public_key())
    # The default encoder keeps the order given and writes "<" as it is.
    plain = jose.sign_compact(header, claims, key.private_key)
    assert jose.b64url_decode(plain.split(".")[1]) == b'{"z":"<","a":{"y":1,"x":2}}'
