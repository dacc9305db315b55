"""The pure mutation and the Go-style annotation parsers it relies on."""

from __future__ import annotations

import copy
import random
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irsa_lab import constants as C
from irsa_lab.webhook.annotations import (
    CsvError,
    parse_go_bool,
    parse_go_csv_record,
    parse_go_int64,
    parse_skip_containers,
    parse_token_expiration,
)
from irsa_lab.webhook.config import pod_identity_webhook_configuration
from irsa_lab.webhook.mutate import (
    REASON_CONTAINER_CREDENTIALS,
    REASON_NO_ROLE_ARN,
    REASON_SA_NOT_FOUND,
    PodDecodeError,
    go_join,
    mutate_pod,
)
from irsa_lab.webhook.settings import ContainerCredentialsSettings, WebhookSettings

ARN = C.ROLE_ARN
SA = {C.ROLE_ARN_ANNOTATION: ARN}


def pod(
    *containers: dict[str, Any], annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p"}
    if annotations is not None:
        meta["annotations"] = annotations
    return {
        "metadata": meta,
        "spec": {
            "serviceAccountName": "sa",
            "containers": list(containers) or [{"name": "app"}],
            **spec,
        },
    }


def run(p: dict[str, Any], sa: dict[str, str] | None = SA, **flags: Any):
    return mutate_pod(p, namespace="default", sa_annotations=sa, settings=WebhookSettings(**flags))


def volume_token(result) -> dict[str, Any]:
    op = next(o for o in result.patch if o["path"].startswith("/spec/volumes"))
    vol = op["value"][0] if isinstance(op["value"], list) else op["value"]
    return vol["projected"]["sources"][0]["serviceAccountToken"]


def env_of(result, index: int = 0) -> list[tuple[str, str]]:
    op = next(o for o in result.patch if o["path"] == "/spec/containers")
    return [(e["name"], e["value"]) for e in op["value"][index].get("env", [])]


# --- Go parsers --------------------------------------------------------------------------

GO_BOOLS = {
    "1": True,
    "t": True,
    "T": True,
    "TRUE": True,
    "true": True,
    "True": True,
    "0": False,
    "f": False,
    "F": False,
    "FALSE": False,
    "false": False,
    "False": False,
}


@pytest.mark.parametrize("text,value", GO_BOOLS.items())
def test_go_parse_bool_accepts_its_twelve_spellings(text: str, value: bool) -> None:
    assert parse_go_bool(text) is value


@pytest.mark.parametrize("text", ["", "yes", "no", "on", "off", "tRUE", " true", "true ", "y", "2"])
def test_go_parse_bool_rejects_everything_else(text: str) -> None:
    assert parse_go_bool(text) is None


@given(st.text(max_size=6))
def test_go_parse_bool_is_none_outside_the_twelve(text: str) -> None:
    assert (parse_go_bool(text) is None) == (text not in GO_BOOLS)


@pytest.mark.parametrize(
    "text,value",
    [
        ("3600", 3600),
        ("+5", 5),
        ("-5", -5),
        ("007", 7),
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
    ],
)
def test_go_parse_int_accepts_signed_decimal_int64(text: str, value: int) -> None:
    assert parse_go_int64(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 3600",
        "3600 ",
        "3_600",
        "3600.0",
        "1h",
        "0x10",
        "+",
        "9223372036854775808",
        "٣٦٠٠",
        "3600\n",
    ],
)
def test_go_parse_int_rejects_what_python_int_might_accept(text: str) -> None:
    assert parse_go_int64(text) is None


def test_token_expiration_is_clamped_up_to_600_but_never_down() -> None:
    assert parse_token_expiration("0", 600) == 600
    assert parse_token_expiration("-5", 600) == 600
    assert parse_token_expiration("599", 600) == 600
    assert parse_token_expiration("600", 600) == 600
    assert parse_token_expiration("200000", 600) == 200000
    assert parse_token_expiration("junk", 600) is None


@pytest.mark.parametrize(
    "text,names",
    [
        ("sidecar", ["sidecar"]),
        ("a,b", ["a", "b"]),
        ("a, b", ["a", " b"]),
        ('"a,b",c', ["a,b", "c"]),
        ('"say ""hi"""', ['say "hi"']),
        ("\n\na,b\nc", ["a", "b"]),
        ("a,", ["a", ""]),
        ('"multi\nline",x', ["multi\nline", "x"]),
        ("a,b\r\n", ["a", "b"]),
    ],
)
def test_skip_containers_is_read_as_one_go_csv_record(text: str, names: list[str]) -> None:
    assert parse_go_csv_record(text) == names


@pytest.mark.parametrize("text", ["", "\n", 'a"b', '"a"b', '"open'])
def test_malformed_skip_containers_is_a_csv_error_and_skips_nothing(text: str) -> None:
    with pytest.raises(CsvError):
        parse_go_csv_record(text)
    assert parse_skip_containers(text) == frozenset()


def test_go_join_cleans_like_filepath_join() -> None:
    assert go_join("/var/run/x/", "token") == "/var/run/x/token"
    assert go_join("//a//b", "./c") == "/a/b/c"
    assert go_join("/a/b", "../c") == "/a/c"
    assert go_join("", "token") == "token"


# --- when nothing happens ----------------------------------------------------------------


def test_a_service_account_missing_from_the_cache_means_no_patch() -> None:
    result = run(pod(), sa=None)
    assert (result.mutated, result.patch, result.reason) == (False, [], REASON_SA_NOT_FOUND)


@pytest.mark.parametrize("sa", [{}, {C.ROLE_ARN_ANNOTATION: ""}, {"other/role-arn": ARN}])
def test_a_service_account_without_a_role_arn_means_no_patch(sa: dict[str, str]) -> None:
    result = run(pod(), sa=sa)
    assert (result.mutated, result.patch, result.reason) == (False, [], REASON_NO_ROLE_ARN)


def test_an_invalid_looking_role_arn_is_still_used() -> None:
    assert ("AWS_ROLE_ARN", "not-an-arn") in env_of(
        run(pod(), sa={C.ROLE_ARN_ANNOTATION: "not-an-arn"})
    )


# --- precedence --------------------------------------------------------------------------


def test_expiration_comes_from_the_pod_then_the_sa_then_the_flag() -> None:
    key = C.TOKEN_EXPIRATION_ANNOTATION
    sa = {**SA, key: "7200"}
    assert (
        volume_token(run(pod(annotations={key: "3600"}), sa=sa, token_expiration=5000))[
            "expirationSeconds"
        ]
        == 3600
    )
    assert volume_token(run(pod(), sa=sa, token_expiration=5000))["expirationSeconds"] == 7200
    assert volume_token(run(pod(), token_expiration=5000))["expirationSeconds"] == 5000
    assert volume_token(run(pod()))["expirationSeconds"] == C.DEFAULT_TOKEN_EXPIRATION_S


def test_an_unparsable_pod_expiration_falls_back_to_the_sa_value() -> None:
    key = C.TOKEN_EXPIRATION_ANNOTATION
    result = run(pod(annotations={key: "3_600"}), sa={**SA, key: "7200"})
    assert volume_token(result)["expirationSeconds"] == 7200
    assert (
        result.config is not None
        and result.config.sources["expiration"] == "service account annotation"
    )


def test_the_expiration_flag_is_clamped_at_start_and_has_no_maximum() -> None:
    assert WebhookSettings(token_expiration=10).token_expiration == 600
    assert WebhookSettings(token_expiration=10**6).token_expiration == 10**6


@pytest.mark.parametrize(
    "annotation,flag,expected",
    [
        (None, False, False),
        (None, True, True),
        ("true", False, True),
        ("false", True, False),
        ("", True, True),
        ("", False, False),
        ("yes", True, True),
        ("1", False, True),
    ],
)
def test_sts_regional_endpoints_annotation_beats_the_flag_when_go_can_parse_it(
    annotation: str | None, flag: bool, expected: bool
) -> None:
    sa = dict(SA) if annotation is None else {**SA, C.STS_REGIONAL_ANNOTATION: annotation}
    names = [n for n, _ in env_of(run(pod(), sa=sa, sts_regional_endpoint=flag))]
    assert (C.ENV_STS_REGIONAL_ENDPOINTS in names) is expected


def test_an_audience_annotation_beats_the_flag_even_when_empty() -> None:
    assert volume_token(run(pod(), token_audience="flag-aud"))["audience"] == "flag-aud"
    assert (
        volume_token(run(pod(), sa={**SA, C.AUDIENCE_ANNOTATION: "sa-aud"}))["audience"] == "sa-aud"
    )
    assert "audience" not in volume_token(run(pod(), sa={**SA, C.AUDIENCE_ANNOTATION: ""}))


def test_pod_level_role_or_audience_annotations_are_ignored() -> None:
    p = pod(
        annotations={C.ROLE_ARN_ANNOTATION: "arn:aws:iam::1:role/x", C.AUDIENCE_ANNOTATION: "y"}
    )
    assert run(p, sa={}).mutated is False
    assert volume_token(run(p))["audience"] == C.DEFAULT_AUDIENCE


def test_the_annotation_prefix_flag_changes_every_key() -> None:
    sa = {"example.com/role-arn": ARN, C.ROLE_ARN_ANNOTATION: "ignored"}
    result = run(pod(), sa=sa, annotation_prefix="example.com")
    assert ("AWS_ROLE_ARN", ARN) in env_of(result)


# --- env order and grouping --------------------------------------------------------------


def test_env_order_is_sts_then_region_pair_then_identity_pair_after_existing_vars() -> None:
    result = run(
        pod({"name": "app", "env": [{"name": "FOO", "value": "1"}]}),
        aws_default_region="eu-west-1",
        sts_regional_endpoint=True,
    )
    assert env_of(result) == [
        ("FOO", "1"),
        ("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
        ("AWS_DEFAULT_REGION", "eu-west-1"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ROLE_ARN", ARN),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", C.TOKEN_FILE),
    ]
    assert result.env_added["app"] == tuple(n for n, _ in env_of(result)[1:])


def test_an_existing_web_identity_token_file_suppresses_the_role_arn() -> None:
    c = {"name": "app", "env": [{"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/t"}]}
    names = [n for n, _ in env_of(run(pod(c)))]
    assert names == ["AWS_WEB_IDENTITY_TOKEN_FILE"]


def test_a_container_with_identity_region_and_sts_is_left_alone_without_a_mount() -> None:
    c = {
        "name": "app",
        "env": [
            {"name": n, "value": "x"}
            for n in ("AWS_ROLE_ARN", "AWS_DEFAULT_REGION", "AWS_STS_REGIONAL_ENDPOINTS")
        ],
    }
    result = run(pod(c))  # even with no region flag and regional STS off
    assert result.patch[-1]["value"] == [c]
    assert any("left unchanged" in n for n in result.notes)


def test_an_existing_mount_of_the_volume_name_is_kept_wherever_it_points() -> None:
    c = {"name": "app", "volumeMounts": [{"name": C.TOKEN_VOLUME_NAME, "mountPath": "/elsewhere"}]}
    out = run(pod(c)).patch[-1]["value"][0]
    assert out["volumeMounts"] == [{"name": C.TOKEN_VOLUME_NAME, "mountPath": "/elsewhere"}]


def test_windows_pods_get_a_windows_token_path_but_a_unix_mount() -> None:
    for key in (C.NODE_SELECTOR_OS, C.NODE_SELECTOR_OS_BETA):
        result = run(pod(nodeSelector={key: "windows"}))
        assert (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            r"C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token",
        ) in env_of(result)
        assert result.patch[-1]["value"][0]["volumeMounts"][0]["mountPath"] == C.TOKEN_MOUNT_PATH
    assert ("AWS_WEB_IDENTITY_TOKEN_FILE", C.TOKEN_FILE) in env_of(
        run(pod(nodeSelector={C.NODE_SELECTOR_OS: "Windows"}))
    )


def test_skipped_containers_stay_in_the_arrays_unchanged() -> None:
    p = pod(
        {"name": "a"},
        {"name": "b"},
        annotations={C.SKIP_CONTAINERS_ANNOTATION: "a,init"},
        initContainers=[{"name": "init"}],
    )
    result = run(p)
    assert result.patch[1]["value"][0] == {"name": "a"}
    assert result.patch[2] == {
        "op": "add",
        "path": "/spec/initContainers",
        "value": [{"name": "init"}],
    }
    assert "env" in result.patch[1]["value"][1]


def test_an_already_mutated_pod_gets_a_patch_that_changes_nothing() -> None:
    p = pod()
    first = run(p, aws_default_region="eu-west-1")
    mutated = jsonpatch.apply_patch(p, first.patch)
    second = run(mutated, aws_default_region="eu-west-1")
    assert second.mutated
    assert jsonpatch.apply_patch(mutated, second.patch) == mutated


# --- container credentials (Pod Identity) ------------------------------------------------


def cc_settings(**kw: Any) -> WebhookSettings:
    cc = ContainerCredentialsSettings(identities=frozenset({("default", "sa")}))
    return WebhookSettings(container_credentials=cc, **kw)


def test_pod_identity_wins_over_a_role_arn_and_needs_no_cached_sa() -> None:
    for sa in (SA, None):
        result = mutate_pod(pod(), namespace="default", sa_annotations=sa, settings=cc_settings())
        assert result.reason == REASON_CONTAINER_CREDENTIALS
        assert result.patch[0] == {
            "op": "add",
            "path": "/metadata/labels",
            "value": {"eks.amazonaws.com/pod-identity": "enabled"},
        }
        names = [n for n, _ in env_of(result)]
        assert names == [
            C.ENV_CONTAINER_CREDENTIALS_FULL_URI,
            C.ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE,
        ]
        assert (
            env_of(result)[1][1]
            == "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"
        )


def test_pod_identity_matches_the_exact_namespace_only() -> None:
    result = mutate_pod(pod(), namespace="other", sa_annotations=SA, settings=cc_settings())
    assert result.reason != REASON_CONTAINER_CREDENTIALS


def test_pod_identity_jitters_exactly_86400_within_its_bounds() -> None:
    seen = set()
    for seed in range(30):
        result = mutate_pod(
            pod(),
            namespace="default",
            sa_annotations=None,
            settings=cc_settings(),
            rng=random.Random(seed),
        )
        seen.add(volume_token(result)["expirationSeconds"])
    assert all(C.TOKEN_EXPIRATION_JITTER_FLOOR_S <= s <= 86400 for s in seen) and len(seen) > 1
    fixed = mutate_pod(
        pod(),
        namespace="default",
        sa_annotations={C.TOKEN_EXPIRATION_ANNOTATION: "10000"},
        settings=cc_settings(),
        rng=random.Random(1),
    )
    assert volume_token(fixed)["expirationSeconds"] == 10000


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad,message",
    [
        ("a string", "json: cannot unmarshal string into Go value of type v1.Pod"),
        (
            {"spec": {"containers": "x"}},
            "cannot unmarshal string into Go struct field PodSpec.spec.containers",
        ),
        (
            {"spec": {"containers": [{"name": 5}]}},
            "cannot unmarshal number into Go struct field Container",
        ),
        ({"metadata": {"annotations": {"a": 1}}}, "cannot unmarshal number"),
        (
            {"spec": {"containers": [{"name": "a", "volumeMounts": [{"readOnly": "yes"}]}]}},
            "of type bool",
        ),
    ],
)
def test_objects_go_cannot_decode_as_a_pod_raise_with_a_go_style_message(
    bad: Any, message: str
) -> None:
    with pytest.raises(PodDecodeError, match=message):
        run(bad)


# --- properties --------------------------------------------------------------------------

names = st.sampled_from(["app", "sidecar", "init", "a b", "x/y", "~0", ""])
env_names = st.sampled_from(
    [
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_STS_REGIONAL_ENDPOINTS",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "FOO",
    ]
)
containers = st.fixed_dictionaries(
    {"name": names},
    optional={
        "env": st.none()
        | st.lists(
            st.fixed_dictionaries({"name": env_names}, optional={"value": st.text(max_size=3)}),
            max_size=4,
        ),
        "volumeMounts": st.none()
        | st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.sampled_from(
                        [C.TOKEN_VOLUME_NAME, C.CONTAINER_CREDENTIALS_VOLUME_NAME, "data"]
                    ),
                    "mountPath": st.sampled_from(["/data", "/x"]),
                }
            ),
            max_size=2,
        ),
        "image": st.text(max_size=5),
    },
)
ann_values = st.text(max_size=8) | st.sampled_from(["3600", "0", "true", "false", "app,sidecar"])
annotation_maps = st.dictionaries(
    st.sampled_from(
        [
            C.TOKEN_EXPIRATION_ANNOTATION,
            C.SKIP_CONTAINERS_ANNOTATION,
            C.STS_REGIONAL_ANNOTATION,
            C.AUDIENCE_ANNOTATION,
            C.ROLE_ARN_ANNOTATION,
            "x",
        ]
    ),
    ann_values,
    max_size=4,
)
pods = st.builds(
    lambda meta_ann, labels, ctrs, inits, vols, sel, sa: {
        "metadata": {
            k: v for k, v in (("annotations", meta_ann), ("labels", labels)) if v is not None
        },
        "spec": {
            k: v
            for k, v in (
                ("containers", ctrs),
                ("initContainers", inits),
                ("volumes", vols),
                ("nodeSelector", sel),
                ("serviceAccountName", sa),
            )
            if v is not None
        },
    },
    st.none() | annotation_maps,
    st.none()
    | st.dictionaries(
        st.sampled_from(["app", "eks.amazonaws.com/pod-identity"]), st.text(max_size=3), max_size=2
    ),
    st.lists(containers, max_size=3),
    st.none() | st.lists(containers, max_size=2),
    st.none()
    | st.lists(
        st.fixed_dictionaries(
            {"name": st.sampled_from([C.TOKEN_VOLUME_NAME, "data", "eks-pod-identity-token"])}
        ),
        max_size=2,
    ),
    st.none()
    | st.dictionaries(
        st.sampled_from([C.NODE_SELECTOR_OS, C.NODE_SELECTOR_OS_BETA]),
        st.sampled_from(["windows", "linux"]),
    ),
    st.none() | st.sampled_from(["sa", "default", ""]),
)
sa_maps = st.none() | annotation_maps
all_settings = st.builds(
    WebhookSettings,
    aws_default_region=st.sampled_from(["", "eu-west-1"]),
    sts_regional_endpoint=st.booleans(),
    token_expiration=st.integers(0, 200000),
    container_credentials=st.none()
    | st.just(ContainerCredentialsSettings(identities=frozenset({("default", "sa")}))),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pods, sa_maps, all_settings)
def test_random_pods_never_raise_and_their_patch_applies_cleanly(p, sa, s) -> None:
    before = copy.deepcopy(p)
    result = mutate_pod(p, namespace="default", sa_annotations=sa, settings=s)
    assert p == before
    assert result.mutated == bool(result.patch)
    assert all(op["op"] == "add" for op in result.patch)
    patched = jsonpatch.apply_patch(p, result.patch)
    if result.mutated:
        assert result.config is not None
        vols = [v["name"] for v in patched["spec"]["volumes"]]
        assert result.config.volume_name in vols
        # Running it again adds nothing new: the webhook is idempotent.
        again = mutate_pod(patched, namespace="default", sa_annotations=sa, settings=s)
        assert jsonpatch.apply_patch(patched, again.patch) == patched


def test_the_webhook_configuration_is_the_articles() -> None:
    cfg = pod_identity_webhook_configuration(ca_bundle_pem=b"PEM", url="https://127.0.0.1:1/")
    hook = cfg["webhooks"][0]
    assert cfg["metadata"]["name"] == "pod-identity-webhook"
    assert hook["name"] == "iam-for-pods.amazonaws.com"
    assert hook["clientConfig"] == {"url": "https://127.0.0.1:1/mutate", "caBundle": "UEVN"}
    assert hook["failurePolicy"] == "Ignore" and hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1beta1"]
    assert hook["rules"] == [
        {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}
    ]
    assert hook["objectSelector"]["matchExpressions"] == [
        {"key": "eks.amazonaws.com/skip-pod-identity-webhook", "operator": "DoesNotExist"}
    ]
    svc = pod_identity_webhook_configuration(ca_bundle_pem=b"PEM")["webhooks"][0]["clientConfig"]
    assert svc["service"] == {
        "name": "pod-identity-webhook",
        "namespace": "default",
        "path": "/mutate",
    }
