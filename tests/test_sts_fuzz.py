"""Whatever is posted to the STS stand-in, it answers in AWS's error shape, never a 5xx."""

# ruff: noqa: F811  (pytest fixtures are imported, then named as parameters)

from __future__ import annotations

import http.client
import ssl
import xml.etree.ElementTree as ET
from urllib.parse import urlencode, urlsplit

from aws_fixtures import StsServers, sts_servers  # noqa: F401 - fixtures
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irsa_lab.constants import ROLE_ARN, STS_NS

NS = {"sts": STS_NS}
NAMES = [
    "Action",
    "Version",
    "RoleArn",
    "RoleSessionName",
    "WebIdentityToken",
    "DurationSeconds",
    "Policy",
    "PolicyArns.member.1.arn",
    "ProviderId",
    "MinimumSessionTokenSize",
]
ACTIONS = ["AssumeRoleWithWebIdentity", "GetCallerIdentity", "AssumeRole", ""]
texts = st.text(max_size=60) | st.sampled_from(
    [
        ROLE_ARN,
        "2011-06-15",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.e30.",
        "900",
        "-1",
        "{}",
        "99999999999999999999",
    ]
)
forms = st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=12), texts, max_size=8).map(
    lambda d: {"Action": "AssumeRoleWithWebIdentity", **d} if "Action" not in d else d
)


def post(servers: StsServers, body: bytes, query: str = "") -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=str(servers.ca_file))
    url = urlsplit(servers.sts_url)
    conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=ctx, timeout=10)
    try:
        conn.request(
            "POST",
            "/" + (f"?{query}" if query else ""),
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def assert_aws_shaped(status: int, body: bytes) -> None:
    assert status < 500, body
    root = ET.fromstring(body)  # noqa: S314 - our own server's answer
    if status == 200:
        assert root.tag.endswith("Response")
        return
    assert root.tag == f"{{{STS_NS}}}ErrorResponse"
    assert root.find("sts:Error/sts:Code", NS) is not None
    assert root.find("sts:Error/sts:Message", NS) is not None
    assert root.find("sts:RequestId", NS) is not None


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(form=forms, action=st.sampled_from(ACTIONS))
def test_random_forms_get_parseable_aws_errors_and_never_a_5xx(
    sts_servers: StsServers, form, action
):
    if action:
        form = {**form, "Action": action}
    assert_aws_shaped(*post(sts_servers, urlencode(form).encode()))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=300), query=st.text(max_size=40))
def test_random_bytes_and_query_strings_get_parseable_aws_errors(
    sts_servers: StsServers, body, query
):
    assert_aws_shaped(*post(sts_servers, body, urlencode({"q": query})[2:] if query else ""))
