"""The exercises: each breaks one link of the chain and checks the real outcome.

Every ``verify`` ends the same way a learner would: ``aws sts get-caller-identity`` run
inside the pod must show the IRSA role (``AmazonEKSPodS3ReadOnlyAccessRole``). Before
that it reads the stored pod or the trust policy only to name the hint that fits.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import constants as C
from ..aws.arns import irsa_trust_policy
from ..aws.eks.trust import pod_identity_trust_policy
from ..aws.sts import errors as sts_errors
from .exercise import Exercise, NotSolved
from .probes import (
    Identity,
    PodFacts,
    PodMissing,
    associations,
    eks,
    iam,
    modify_instance_metadata_options,
    pod_facts,
    provider_arn,
    service_account_annotations,
    trust_allows,
    whoami,
)

if TYPE_CHECKING:
    from ..session import Lab

__all__ = [
    "ANALYTICS",
    "BATCH_POD",
    "BY_ID",
    "EXERCISES",
    "HAND_SET_ENV",
    "OUTSIDER_SUBS",
    "PI_POD",
    "PI_ROLE_ARN",
    "PI_ROLE_NAME",
    "PI_SERVICE_ACCOUNT",
    "WRONG_AUDIENCE",
    "WRONG_SERVICE_ACCOUNT",
    "pod_identity_manifest",
    "pod_manifest",
]

ANALYTICS = "analytics"
BATCH_POD = "batch-job"
# Who else must NOT get the role: ServiceAccounts of another namespace, one of them
# with the same name as the lab's.
OUTSIDER_SUBS = (
    f"system:serviceaccount:kube-system:{C.SERVICE_ACCOUNT}",
    "system:serviceaccount:kube-system:cluster-autoscaler",
)
WRONG_AUDIENCE = "sts.amazon.com"


# Where the concept hints send the learner: a guided notebook and its section heading.
def _see(notebook: str, section: str) -> str:
    return f"See notebooks/{notebook}.ipynb, section \u201c{section}\u201d."


SEE_LATE = _see("01-pod-mutation", "Three ways a pod ends up without credentials")
SEE_STORED = _see("01-pod-mutation", "As submitted, as stored")
SEE_CLAIMS = _see("02-the-token", "How the claims meet the role's trust policy")
SEE_FIX_TRUST = _see(
    "03-trust-policy-playground", "Fix a broken trust policy, the way you would on AWS"
)
SEE_NAMESPACE = _see(
    "03-trust-policy-playground", "Tweak it: trust every ServiceAccount of a namespace"
)
# Where the audience preset is run and InvalidIdentityToken is told apart from AccessDenied.
SEE_PLAYGROUND = _see("03-trust-policy-playground", "The playground")
SEE_IMDS = _see("05-without-irsa", "The fix on the node: IMDSv2 only, hop limit 1")
SEE_ASSOCIATION = _see("06-irsa-or-pod-identity", "The same pod, mutated both ways")
SEE_PI_TRUST = _see("06-irsa-or-pod-identity", "The trust policies compared")

# The Pod Identity labs (10, 11): their own role, ServiceAccount and pod, so that what
# they leave behind never touches the IRSA labs' s3-readonly-sa.
PI_ROLE_NAME = "ReportsPodIdentityRole"
PI_ROLE_ARN = f"arn:aws:iam::{C.ACCOUNT_ID}:role/{PI_ROLE_NAME}"
PI_SERVICE_ACCOUNT = "reports-sa"
WRONG_SERVICE_ACCOUNT = "report-sa"
PI_POD = "reports"


def pod_manifest(namespace: str = C.NAMESPACE, name: str = C.POD_NAME) -> dict[str, Any]:
    """The article's pod (examples/mypod.yaml); another name keeps the pod's name for its
    container."""
    container = C.POD_CONTAINER if name == C.POD_NAME else name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "serviceAccountName": C.SERVICE_ACCOUNT,
            "containers": [
                {"name": container, "image": C.POD_IMAGE, "command": ["sleep", "infinity"]}
            ],
        },
    }


def _annotate(lab: Lab, annotations: dict[str, str | None], namespace: str = C.NAMESPACE) -> None:
    lab.annotate_service_account(C.SERVICE_ACCOUNT, annotations, namespace)


# --- the checks' common steps ----------------------------------------------------------


def _facts(lab: Lab, pod: str = C.POD_NAME, namespace: str = C.NAMESPACE) -> PodFacts:
    facts = pod_facts(lab, pod, namespace)
    if not facts.exists:
        raise NotSolved(
            "pod-missing",
            f"there is no pod {pod} in namespace {namespace}: create it again "
            "(the manifest is examples/mypod.yaml)",
        )
    return facts


def _mutated(facts: PodFacts, pod: str = C.POD_NAME) -> None:
    if not facts.mutated:
        raise NotSolved(
            "pod-not-mutated",
            f"{pod}'s container has no {C.ENV_WEB_IDENTITY_TOKEN_FILE} and no "
            f"{C.TOKEN_VOLUME_NAME} mount: the webhook did not mutate it",
        )


def _runs_as_role(lab: Lab, pod: str = C.POD_NAME, namespace: str = C.NAMESPACE) -> str:
    """The final proof: the SDK in the pod is the IRSA role. Names the hint otherwise."""
    try:
        me = whoami(lab, pod, namespace)
    except PodMissing:
        raise NotSolved("pod-missing", f"there is no pod {pod} in namespace {namespace}") from None
    where = f"`aws sts get-caller-identity` in {pod}"
    if me.role == C.ROLE_NAME:
        return f"{where} {me.summary}"
    if me.role == C.NODE_ROLE_NAME:
        raise NotSolved("node-role", f"{where} {me.summary}, the node's role, not {C.ROLE_NAME}")
    if me.role:
        raise NotSolved("other-role", f"{where} {me.summary}, not {C.ROLE_NAME}")
    failure = me.failure
    if failure is not None and issubclass(failure, sts_errors.AccessDenied):
        raise NotSolved(
            "access-denied",
            f"{where} {me.summary} (STS accepted the token but the role's trust policy "
            "did not let it in)",
        )
    if failure is not None and issubclass(failure, sts_errors.InvalidIdentityToken):
        hint = {
            sts_errors.NoOpenIDConnectProvider: "no-oidc-provider",
            sts_errors.InvalidAudience: "audience-not-a-client-id",
        }.get(failure, "invalid-identity-token")
        raise NotSolved(hint, f"{where} {me.summary}")
    if me.error == "NoCredentials":
        raise NotSolved("no-credentials", f"{where} {me.summary}")
    raise NotSolved("sdk-error", f"{where} {me.summary}")


def _narrow_trust(lab: Lab) -> None:
    for outsider in OUTSIDER_SUBS:
        if not trust_allows(lab, outsider):
            continue
        raise NotSolved(
            "trust-too-broad",
            f"the pod gets the role, but the trust policy would also let {outsider} "
            "assume it: keep the sub condition specific",
        )


# --- 01: annotated too late --------------------------------------------------------------


def _setup_late_annotation(lab: Lab) -> None:
    _annotate(lab, {C.ROLE_ARN_ANNOTATION: None})
    lab.create_pod(pod_manifest())
    _annotate(lab, {C.ROLE_ARN_ANNOTATION: C.ROLE_ARN})


def _verify_late_annotation(lab: Lab) -> str:
    # What the learner observes, as lab 04 does: who the pod turns out to be. Why (the
    # webhook acts on CREATE only) is hint 2's job, not the check's.
    _facts(lab)
    return _runs_as_role(lab)


# --- 02: the skip label ---------------------------------------------------------------------


def _setup_skip_label(lab: Lab) -> None:
    manifest = pod_manifest()
    manifest["metadata"]["labels"] = {"app": "mypod", C.SKIP_WEBHOOK_LABEL: "true"}
    lab.create_pod(manifest)


def _verify_skip_label(lab: Lab) -> str:
    facts = _facts(lab)
    if C.SKIP_WEBHOOK_LABEL in facts.labels:
        value = facts.labels[C.SKIP_WEBHOOK_LABEL]
        raise NotSolved(
            "skip-label",
            f'mypod still carries the label {C.SKIP_WEBHOOK_LABEL}="{value}": the '
            "webhook configuration's objectSelector keeps such pods away from the webhook",
        )
    _mutated(facts)
    return _runs_as_role(lab)


# --- 03: the wrong namespace ------------------------------------------------------------------


def _setup_wrong_namespace(lab: Lab) -> None:
    from kubernetes.client.rest import ApiException

    core = lab.core
    try:
        core.create_namespace({"metadata": {"name": ANALYTICS}})
    except ApiException as err:
        if err.status != 409:
            raise
    try:
        core.create_namespaced_service_account(
            ANALYTICS, {"metadata": {"name": C.SERVICE_ACCOUNT, "namespace": ANALYTICS}}
        )
    except ApiException as err:
        if err.status != 409:
            raise
    lab.create_pod(pod_manifest(ANALYTICS))


def _verify_wrong_namespace(lab: Lab) -> str:
    facts = _facts(lab, C.POD_NAME, ANALYTICS)
    if not facts.mutated:
        annotated = C.ROLE_ARN_ANNOTATION in service_account_annotations(
            lab, C.SERVICE_ACCOUNT, ANALYTICS
        )
        if not annotated:
            raise NotSolved(
                "sa-without-role",
                f"the ServiceAccount {ANALYTICS}/{C.SERVICE_ACCOUNT} has no role-arn "
                "annotation, so the webhook leaves its pods alone",
            )
        _mutated(facts)
    done = _runs_as_role(lab, C.POD_NAME, ANALYTICS)
    _narrow_trust(lab)
    return done


# --- 04: sub mismatch -------------------------------------------------------------------------


def _trusting_only(service_account: str) -> Callable[[Lab], None]:
    """A set-up: the role trusts ``default/<service_account>`` only, then mypod is created.

    The trust policy is the IRSA template (StringEquals on ``sub`` and ``aud``) with one
    ServiceAccount name changed, which is how both broken policies came about.
    """

    def setup(lab: Lab) -> None:
        issuer = str(lab.endpoints["issuer"])
        doc = irsa_trust_policy(provider_arn(lab), issuer, service_account=service_account)
        iam(lab).update_assume_role_policy(
            RoleName=C.ROLE_NAME, PolicyDocument=json.dumps(doc, indent=2)
        )
        lab.create_pod(pod_manifest())

    return setup


def _verify_trust_fixed(lab: Lab) -> str:
    """Exercises 04 and 07: mypod runs as the role, and no other ServiceAccount could."""
    _mutated(_facts(lab))
    done = _runs_as_role(lab)
    _narrow_trust(lab)
    return done


# A typo in the ServiceAccount's name, retyped by hand.
_setup_sub_mismatch = _trusting_only("s3-read-only-sa")


# --- 05: audience mismatch ------------------------------------------------------------------------


def _setup_audience(lab: Lab) -> None:
    client = iam(lab)
    arn = provider_arn(lab)
    client.add_client_id_to_open_id_connect_provider(
        OpenIDConnectProviderArn=arn, ClientID=WRONG_AUDIENCE
    )
    client.remove_client_id_from_open_id_connect_provider(
        OpenIDConnectProviderArn=arn, ClientID=C.DEFAULT_AUDIENCE
    )
    lab.create_pod(pod_manifest())


def _verify_audience(lab: Lab) -> str:
    _mutated(_facts(lab))
    try:
        return _runs_as_role(lab)
    except NotSolved as err:
        sa_aud = service_account_annotations(lab).get(C.AUDIENCE_ANNOTATION)
        if err.hint == "access-denied" and sa_aud not in (None, C.DEFAULT_AUDIENCE):
            raise NotSolved(
                "token-audience-changed",
                f"{err.message}; the token now says aud={sa_aud!r} because of the "
                f"ServiceAccount's audience annotation, and the trust policy wants "
                f"{C.DEFAULT_AUDIENCE!r}",
            ) from None
        raise


# --- 06: no OIDC provider ---------------------------------------------------------------------------


def _setup_no_provider(lab: Lab) -> None:
    iam(lab).delete_open_id_connect_provider(OpenIDConnectProviderArn=provider_arn(lab))
    lab.create_pod(pod_manifest())


def _verify_no_provider(lab: Lab) -> str:
    _mutated(_facts(lab))
    return _runs_as_role(lab)


# --- 07: wildcard under StringEquals -----------------------------------------------------------


# Meant for every ServiceAccount of default, but StringEquals reads the star literally.
_setup_wildcard = _trusting_only("*")


# --- 08: the container sets AWS_ROLE_ARN itself ---------------------------------------------------

HAND_SET_ENV = [
    {"name": C.ENV_ROLE_ARN, "value": C.ROLE_ARN},
    {"name": C.ENV_REGION, "value": C.REGION},
    {"name": C.ENV_STS_REGIONAL_ENDPOINTS, "value": "regional"},
]


def _setup_role_in_container(lab: Lab) -> None:
    manifest = pod_manifest()
    manifest["spec"]["containers"][0]["env"] = copy.deepcopy(HAND_SET_ENV)
    lab.create_pod(manifest)


def _verify_role_in_container(lab: Lab) -> str:
    facts = _facts(lab)
    if not facts.has_token_mount:
        what = ", ".join(n for n in facts.env if n.startswith("AWS_")) or "no AWS_ variables"
        raise NotSolved(
            "no-token-mount",
            f"mypod's container sets {what} itself and has no {C.TOKEN_VOLUME_NAME} mount: "
            "the webhook leaves a container that already defines its identity, region and "
            "STS settings untouched",
        )
    if C.ENV_WEB_IDENTITY_TOKEN_FILE not in facts.env:
        raise NotSolved(
            "no-token-file-env",
            f"mypod's container has the mount but no {C.ENV_WEB_IDENTITY_TOKEN_FILE}: "
            f"the webhook adds it only together with {C.ENV_ROLE_ARN}",
        )
    return _runs_as_role(lab)


# --- 09: IMDS, the node role ------------------------------------------------------------------------


def _batch_manifest() -> dict[str, Any]:
    manifest = pod_manifest(name=BATCH_POD)
    manifest["spec"]["serviceAccountName"] = "default"
    return manifest


def _setup_imds(lab: Lab) -> None:
    _annotate(lab, {C.ROLE_ARN_ANNOTATION: None})
    lab.create_pod(pod_manifest())
    lab.create_pod(_batch_manifest())


def _batch_job(lab: Lab) -> Identity:
    try:
        return whoami(lab, BATCH_POD)
    except PodMissing:
        raise NotSolved(
            "batch-job-missing",
            f"keep the pod {BATCH_POD} (ServiceAccount default, no role): it shows what a "
            "pod without a role can reach",
        ) from None


def _verify_imds(lab: Lab) -> str:
    _facts(lab)
    try:
        done = _runs_as_role(lab)
    except NotSolved as err:
        # The symptom, as a learner sees it in both pods; no word of the fix.
        if err.hint != "node-role":
            raise
        other = _batch_job(lab)
        raise NotSolved(err.hint, f"{err.message}; in {BATCH_POD} it {other.summary}") from None
    other = _batch_job(lab)
    if other.role:
        opts = modify_instance_metadata_options(lab)
        raise NotSolved(
            "imds-reachable",
            f"mypod is fixed, but {BATCH_POD} (no role) still {other.summary}, from the "
            "instance metadata service; `aws ec2 describe-instances` shows the node's "
            f"MetadataOptions HttpTokens={opts['HttpTokens']}, "
            f"HttpPutResponseHopLimit={opts['HttpPutResponseHopLimit']}",
        )
    return f"{done}; {BATCH_POD} (no role) {other.summary}"


# --- 10 and 11: EKS Pod Identity --------------------------------------------------------------


def pod_identity_manifest() -> dict[str, Any]:
    """The article's pod, named reports, with the ServiceAccount reports-sa."""
    manifest = pod_manifest(name=PI_POD)
    manifest["spec"]["serviceAccountName"] = PI_SERVICE_ACCOUNT
    return manifest


def _wait_for_webhook(lab: Lab) -> None:
    # The webhook reloads the associations from its config file (§5.3 of
    # docs/reference/pod-identity.md): pods created before the reload miss the change.
    waiter = getattr(lab, "wait_for_pod_identity_config", None) or getattr(
        lab.control, "wait_for_pod_identity_config", None
    )
    if waiter is not None:
        waiter()


def _pi_baseline(lab: Lab, *, tag_session: bool = True) -> None:
    """The Pod Identity labs' start: the role (S3 read-only), reports-sa, no association."""
    from kubernetes.client.rest import ApiException

    client = iam(lab)
    trust = json.dumps(pod_identity_trust_policy(tag_session=tag_session), indent=2)
    try:
        client.create_role(RoleName=PI_ROLE_NAME, AssumeRolePolicyDocument=trust)
        client.attach_role_policy(
            RoleName=PI_ROLE_NAME, PolicyArn="arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
        )
    except client.exceptions.EntityAlreadyExistsException:
        client.update_assume_role_policy(RoleName=PI_ROLE_NAME, PolicyDocument=trust)
    try:
        lab.core.create_namespaced_service_account(
            C.NAMESPACE, {"metadata": {"name": PI_SERVICE_ACCOUNT, "namespace": C.NAMESPACE}}
        )
    except ApiException as err:
        if err.status != 409:
            raise
    client_eks = eks(lab)
    for sa in (PI_SERVICE_ACCOUNT, WRONG_SERVICE_ACCOUNT):
        for found in associations(lab, C.NAMESPACE, sa):
            client_eks.delete_pod_identity_association(
                clusterName=C.CLUSTER_NAME, associationId=found["associationId"]
            )


def _associate(lab: Lab, service_account: str) -> None:
    eks(lab).create_pod_identity_association(
        clusterName=C.CLUSTER_NAME,
        namespace=C.NAMESPACE,
        serviceAccount=service_account,
        roleArn=PI_ROLE_ARN,
    )
    _wait_for_webhook(lab)


def _runs_as_pi_role(lab: Lab) -> str:
    """The final proof of the Pod Identity labs: the SDK in reports is the lab's role."""
    try:
        me = whoami(lab, PI_POD)
    except PodMissing:
        raise NotSolved("pod-missing", f"there is no pod {PI_POD} in namespace default") from None
    where = f"`aws sts get-caller-identity` in {PI_POD}"
    if me.role == PI_ROLE_NAME:
        return f"{where} {me.summary}"
    if me.role == C.NODE_ROLE_NAME:
        raise NotSolved("node-role", f"{where} {me.summary}, the node's role, not {PI_ROLE_NAME}")
    if me.role:
        raise NotSolved("other-role", f"{where} {me.summary}, not {PI_ROLE_NAME}")
    if me.operation == "AssumeRoleForPodIdentity" and me.error == "AccessDeniedException":
        raise NotSolved(
            "eks-auth-access-denied",
            f"{where} {me.summary} (EKS Auth's answer, passed on by the node's Pod Identity agent)",
        )
    if me.operation == "AssumeRoleForPodIdentity":
        raise NotSolved("eks-auth-error", f"{where} {me.summary}")
    if me.error == "NoCredentials":
        raise NotSolved("no-credentials", f"{where} {me.summary}")
    raise NotSolved("sdk-error", f"{where} {me.summary}")


def _pi_facts(lab: Lab) -> PodFacts:
    facts = pod_facts(lab, PI_POD)
    if not facts.exists:
        raise NotSolved(
            "pod-missing",
            f"there is no pod {PI_POD} in namespace default: create it again "
            "(the article's pod, named reports, with serviceAccountName reports-sa)",
        )
    return facts


def _setup_association_wrong_sa(lab: Lab) -> None:
    _pi_baseline(lab)
    _associate(lab, WRONG_SERVICE_ACCOUNT)
    lab.create_pod(pod_identity_manifest())


def _verify_association_wrong_sa(lab: Lab) -> str:
    facts = _pi_facts(lab)
    if C.ENV_CONTAINER_CREDENTIALS_FULL_URI not in facts.env:
        if associations(lab, C.NAMESPACE, facts.service_account):
            raise NotSolved(
                "pod-not-mutated",
                f"{PI_POD}'s container has no {C.ENV_CONTAINER_CREDENTIALS_FULL_URI}: the "
                "webhook did not give it Pod Identity (it acts only when a pod is created)",
            )
        _runs_as_pi_role(lab)  # the symptom, as the learner sees it
    done = _runs_as_pi_role(lab)
    stale = associations(lab, C.NAMESPACE, WRONG_SERVICE_ACCOUNT)
    if stale:
        raise NotSolved(
            "stale-association",
            f"{PI_POD} is fixed, but the association {stale[0]['associationId']} still gives "
            f"{PI_ROLE_NAME} to default/{WRONG_SERVICE_ACCOUNT}, a ServiceAccount nobody "
            "uses: whoever creates it later gets the role",
        )
    return done


def _setup_trust_without_tag_session(lab: Lab) -> None:
    # The association is made while the trust policy is right (EKS checks it then); a
    # later "tidy-up" drops sts:TagSession, which only the credential fetch notices
    # (docs/reference/pod-identity.md §6.4).
    _pi_baseline(lab)
    _associate(lab, PI_SERVICE_ACCOUNT)
    iam(lab).update_assume_role_policy(
        RoleName=PI_ROLE_NAME,
        PolicyDocument=json.dumps(pod_identity_trust_policy(tag_session=False), indent=2),
    )
    lab.create_pod(pod_identity_manifest())


def _verify_trust_without_tag_session(lab: Lab) -> str:
    facts = _pi_facts(lab)
    if C.ENV_CONTAINER_CREDENTIALS_FULL_URI not in facts.env:
        raise NotSolved(
            "pod-not-mutated",
            f"{PI_POD}'s container has no {C.ENV_CONTAINER_CREDENTIALS_FULL_URI}: keep its "
            f"association (default/{PI_SERVICE_ACCOUNT}) and let the webhook mutate it",
        )
    return _runs_as_pi_role(lab)


EXERCISES: tuple[Exercise, ...] = (
    Exercise(
        id="01",
        slug="unmutated-pod",
        title="Annotated too late",
        stage="webhook",
        story=(
            "A colleague deployed mypod first and only then remembered to annotate its "
            "ServiceAccount s3-readonly-sa with the role. The annotation is there now, "
            "yet the app still cannot read the bucket as the role."
        ),
        scene="mypod runs in default with ServiceAccount s3-readonly-sa, which carries the role-arn annotation.",
        goal="make `aws sts get-caller-identity` in mypod show AmazonEKSPodS3ReadOnlyAccessRole.",
        setup=_setup_late_annotation,
        verify=_verify_late_annotation,
        hints=(
            "Compare mypod's env with what the webhook adds. When does the webhook look at a pod?",
            "The pod identity webhook is a mutating admission webhook for CREATE of pods "
            "only: it never revisits a running pod. " + SEE_LATE,
            "Delete mypod and create it again from the same manifest "
            "(lab.core.delete_namespaced_pod, then lab.core.create_namespaced_pod).",
        ),
    ),
    Exercise(
        id="02",
        slug="skip-label",
        title="The skip label",
        stage="webhook",
        story=(
            "While debugging, someone labelled mypod so the webhook would leave it alone, "
            "and forgot. The pod is not mutated and runs as the node."
        ),
        scene="mypod runs in default with ServiceAccount s3-readonly-sa (annotated with the role).",
        goal="make mypod run as AmazonEKSPodS3ReadOnlyAccessRole, mutated by the webhook.",
        setup=_setup_skip_label,
        verify=_verify_skip_label,
        hints=(
            "Look at mypod's labels, and at the objectSelector of the MutatingWebhookConfiguration "
            "pod-identity-webhook.",
            "The API server never sends a pod with the label "
            f"{C.SKIP_WEBHOOK_LABEL} to the webhook: the selector is DoesNotExist, so any "
            'value counts, even "false". ' + SEE_LATE,
            "Create mypod again without that label (delete it, remove the label from the "
            "manifest, create it).",
        ),
    ),
    Exercise(
        id="03",
        slug="wrong-namespace",
        title="Moved to another namespace",
        stage="webhook and trust policy",
        story=(
            "The analytics team copied mypod and a ServiceAccount named s3-readonly-sa into "
            "their own namespace, analytics. Their pod should read the bucket with the same "
            "role, but it runs as the node."
        ),
        scene="analytics/mypod runs with the ServiceAccount analytics/s3-readonly-sa.",
        goal=(
            "make `aws sts get-caller-identity` in analytics/mypod show "
            "AmazonEKSPodS3ReadOnlyAccessRole, without opening the role to every namespace."
        ),
        setup=_setup_wrong_namespace,
        verify=_verify_wrong_namespace,
        pod=C.POD_NAME,
        namespace=ANALYTICS,
        hints=(
            "A ServiceAccount is namespaced: is analytics/s3-readonly-sa the one with the "
            "annotation? And once the pod gets a token, whose sub will it carry?",
            "Two links: the webhook reads the role from the pod's own ServiceAccount, and "
            "STS matches the token's sub (system:serviceaccount:<namespace>:<name>) against "
            "the trust policy. " + SEE_CLAIMS,
            "Annotate analytics/s3-readonly-sa with the role ARN, recreate analytics/mypod, and "
            "add system:serviceaccount:analytics:s3-readonly-sa to the trust policy's "
            "StringEquals sub values (a list) with update_assume_role_policy.",
        ),
    ),
    Exercise(
        id="04",
        slug="sub-mismatch",
        title="AccessDenied: the sub condition",
        stage="STS trust policy",
        story=(
            "Someone retyped the role's trust policy by hand. mypod is mutated and has a "
            "token, but STS answers AccessDenied."
        ),
        scene="mypod runs in default, mutated by the webhook, with ServiceAccount s3-readonly-sa.",
        goal="make mypod run as AmazonEKSPodS3ReadOnlyAccessRole, trusting only its ServiceAccount.",
        setup=_setup_sub_mismatch,
        verify=_verify_trust_fixed,
        hints=(
            "Put the token's sub claim next to the trust policy's sub condition, character by "
            "character (lab.aws_client('iam').get_role(...)).",
            "AccessDenied means the token was valid but no trust statement matched: each "
            "condition compares a claim with a value. " + SEE_FIX_TRUST,
            "Call update_assume_role_policy with the sub condition "
            "system:serviceaccount:default:s3-readonly-sa (StringEquals), keeping the aud condition.",
        ),
    ),
    Exercise(
        id="05",
        slug="audience-mismatch",
        title="InvalidIdentityToken: the audience",
        stage="STS OIDC provider",
        story=(
            "The cluster's IAM OIDC provider was registered from a script with a typo in its "
            "client ID. mypod gets InvalidIdentityToken."
        ),
        scene="mypod runs in default, mutated by the webhook; its token has aud sts.amazonaws.com.",
        goal="make mypod run as AmazonEKSPodS3ReadOnlyAccessRole.",
        setup=_setup_audience,
        verify=_verify_audience,
        hints=(
            "Compare the token's aud claim with the OIDC provider's ClientIDList "
            "(get_open_id_connect_provider).",
            "STS accepts a token only if its aud is one of the provider's client IDs "
            "(else InvalidIdentityToken, before any trust policy); the trust policy then "
            "checks aud again. " + SEE_PLAYGROUND,
            "Add sts.amazonaws.com to the provider's client IDs "
            "(add_client_id_to_open_id_connect_provider). That is the whole fix: STS needs "
            "the token's aud to be one of the client IDs, and extra ones do not get in the "
            "way. Removing the misspelt sts.amazon.com "
            "(remove_client_id_from_open_id_connect_provider) is tidying up, optional.",
        ),
    ),
    Exercise(
        id="06",
        slug="no-oidc-provider",
        title="InvalidIdentityToken: no OIDC provider",
        stage="STS OIDC provider",
        story=(
            "A clean-up script deleted 'unused' IAM identity providers, including the cluster's. "
            "mypod now gets InvalidIdentityToken."
        ),
        scene="mypod runs in default, mutated by the webhook, with a valid token.",
        goal="make mypod run as AmazonEKSPodS3ReadOnlyAccessRole.",
        setup=_setup_no_provider,
        verify=_verify_no_provider,
        hints=(
            "Read the error message to the end, then list the account's OIDC providers.",
            "STS trusts a token only if the account has an IAM OIDC provider whose URL is the "
            "token's iss (without https://) and whose client IDs contain its aud. "
            + SEE_PLAYGROUND,
            "create_open_id_connect_provider(Url=<issuer>, ClientIDList=['sts.amazonaws.com'], "
            "ThumbprintList=[<thumbprint>]) with the issuer from lab.endpoints['issuer'].",
        ),
    ),
    Exercise(
        id="07",
        slug="wildcard-stringequals",
        title="A wildcard under StringEquals",
        stage="STS trust policy",
        story=(
            "The platform team wanted every ServiceAccount of namespace default to use the "
            "role and wrote system:serviceaccount:default:* into the trust policy. Nobody gets in."
        ),
        scene="mypod runs in default, mutated by the webhook, with ServiceAccount s3-readonly-sa.",
        goal=(
            "make mypod run as AmazonEKSPodS3ReadOnlyAccessRole, without letting other "
            "namespaces in."
        ),
        setup=_setup_wildcard,
        verify=_verify_trust_fixed,
        hints=(
            "Which condition operator treats * as a wildcard?",
            "StringEquals compares literally: '*' only matches a sub that is the character *. "
            "StringLike knows * and ?. " + SEE_NAMESPACE,
            "Move the sub condition under StringLike (keep the aud one under StringEquals), or "
            "name the ServiceAccount exactly under StringEquals.",
        ),
    ),
    Exercise(
        id="08",
        slug="role-arn-in-container",
        title="The container sets AWS_ROLE_ARN itself",
        stage="webhook",
        story=(
            "A developer copied env vars from a docker-compose file into mypod's manifest: "
            "AWS_ROLE_ARN, AWS_REGION and AWS_STS_REGIONAL_ENDPOINTS. The pod runs as the node."
        ),
        scene="mypod runs in default with ServiceAccount s3-readonly-sa (annotated with the role).",
        goal="make mypod run as AmazonEKSPodS3ReadOnlyAccessRole.",
        setup=_setup_role_in_container,
        verify=_verify_role_in_container,
        hints=(
            "Does mypod's container have a token file and a mount for it?",
            "The webhook never overwrites a container's env: if a container already defines its "
            "identity (AWS_ROLE_ARN or AWS_WEB_IDENTITY_TOKEN_FILE), region and STS endpoint "
            "setting, it is left completely unchanged, mount included. " + SEE_STORED,
            "Recreate mypod without the hand-set AWS_ROLE_ARN (and the other two), and let the "
            "webhook add them.",
        ),
    ),
    Exercise(
        id="09",
        slug="imds-node-role",
        title="Silently the node's role",
        stage="IMDS",
        story=(
            "mypod reads the bucket fine, but as the node's role: nobody ever gave its "
            "ServiceAccount a role. Every pod on the node can do the same, like batch-job."
        ),
        scene="mypod (ServiceAccount s3-readonly-sa) and batch-job (ServiceAccount default) run in default.",
        goal=(
            "mypod runs as AmazonEKSPodS3ReadOnlyAccessRole, and a pod without a role "
            "(batch-job) can no longer get the node's credentials."
        ),
        setup=_setup_imds,
        verify=_verify_imds,
        hints=(
            "Two things: where does mypod's role come from, and how does batch-job reach "
            "the node's credentials? The node is an EC2 instance: "
            'lab.aws_client("ec2").describe_instances() (aws ec2 describe-instances) shows '
            "its MetadataOptions.",
            "Without a web identity the SDK asks IMDS. IMDSv2 with a hop limit of 1 keeps its "
            "answers from reaching containers, but only if IMDSv1 is switched off too "
            "(HttpTokens required). EC2's ModifyInstanceMetadataOptions sets both: "
            'lab.aws_client("ec2").modify_instance_metadata_options(...) '
            "(aws ec2 modify-instance-metadata-options). " + SEE_IMDS,
            "Annotate s3-readonly-sa with the role and recreate mypod; then "
            'lab.aws_client("ec2").modify_instance_metadata_options(InstanceId=<the node\'s '
            'instance id>, HttpTokens="required", HttpPutResponseHopLimit=1).',
        ),
    ),
    Exercise(
        id="10",
        slug="association-wrong-sa",
        title="Pod Identity: the association names another ServiceAccount",
        stage="EKS Pod Identity association",
        story=(
            "The reports team moved to EKS Pod Identity. Someone created the association "
            "for their pod with the EKS API, the pod was created after it, yet it does not "
            f"run as {PI_ROLE_NAME}."
        ),
        scene=(
            f"reports runs in default with ServiceAccount {PI_SERVICE_ACCOUNT}; the role "
            f"{PI_ROLE_NAME} trusts pods.eks.amazonaws.com."
        ),
        goal=(
            f"make `aws sts get-caller-identity` in reports show {PI_ROLE_NAME}, "
            "through Pod Identity, with no association left that nobody uses."
        ),
        setup=_setup_association_wrong_sa,
        verify=_verify_association_wrong_sa,
        pod=PI_POD,
        hints=(
            "Which ServiceAccount does reports use, and which one does the cluster's "
            'association name? (lab.aws_client("eks").list_pod_identity_associations'
            '(clusterName="irsa-lab"), aws eks list-pod-identity-associations)',
            "The webhook gives a pod Pod Identity only when an association names exactly "
            "its namespace and ServiceAccount; otherwise the pod is left alone and the SDK "
            "falls back to the node's role. An association cannot be moved to another "
            "ServiceAccount: delete it and create a new one. " + SEE_ASSOCIATION,
            f"delete_pod_identity_association the association for {WRONG_SERVICE_ACCOUNT}, "
            f"create_pod_identity_association for namespace default, ServiceAccount "
            f"{PI_SERVICE_ACCOUNT}, role {PI_ROLE_ARN}, then recreate reports.",
        ),
    ),
    Exercise(
        id="11",
        slug="trust-without-tagsession",
        title="Pod Identity: a trust policy without sts:TagSession",
        stage="EKS Pod Identity trust policy",
        story=(
            f"A security review tidied up the trust policy of {PI_ROLE_NAME}, keeping only "
            "sts:AssumeRole. Since then the reports pod cannot get any credentials."
        ),
        scene=(
            f"reports runs in default with ServiceAccount {PI_SERVICE_ACCOUNT}, which has a "
            f"Pod Identity association to {PI_ROLE_NAME}."
        ),
        goal=f"make `aws sts get-caller-identity` in reports show {PI_ROLE_NAME}.",
        setup=_setup_trust_without_tag_session,
        verify=_verify_trust_without_tag_session,
        pod=PI_POD,
        hints=(
            "Read the error to the end: who refused, and which action? Then read the role's "
            f'trust policy (get_role(RoleName="{PI_ROLE_NAME}")).',
            "EKS Auth assumes the role for the pod and tags the session (namespace, "
            "ServiceAccount, pod...). Passing session tags needs sts:TagSession in the role's "
            "trust policy, next to sts:AssumeRole. " + SEE_PI_TRUST,
            'update_assume_role_policy with Principal {"Service": "pods.eks.amazonaws.com"} '
            'and Action ["sts:AssumeRole", "sts:TagSession"]; the pod needs no change (the '
            "agent caches only successes).",
        ),
    ),
)

BY_ID = {ex.id: ex for ex in EXERCISES}
