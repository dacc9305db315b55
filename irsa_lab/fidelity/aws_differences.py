"""What the AWS stand-ins are still known to do differently from AWS, and why that is fine.

There is no AWS to run beside the lab, so this part of ``docs/fidelity.md`` is not
measured: each entry is a behaviour read against AWS's documentation or a published
observation, named with its source. The rest of the AWS side is held to AWS's wire by
the tests that drive it with boto3 and the aws CLI. A difference found later belongs
here, or is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AWS_DIFFERENCES", "AwsDifference"]


@dataclass(frozen=True)
class AwsDifference:
    """One behaviour: what the lab does, what AWS does, the source, why it is acceptable."""

    what: str
    lab: str
    aws: str
    source: str
    why: str


AWS_DIFFERENCES: tuple[AwsDifference, ...] = (
    AwsDifference(
        "endpoints",
        "STS, IAM, S3 and IMDS on loopback with the lab's CA; clients are pointed at them with "
        "AWS_ENDPOINT_URL_<SERVICE>, AWS_CA_BUNDLE and AWS_EC2_METADATA_SERVICE_ENDPOINT",
        "regional public endpoints with public certificates",
        "botocore's endpoint configuration (docs/reference/sts.md §4.6)",
        "the one difference the lab promises; nothing in a request or an answer changes",
    ),
    AwsDifference(
        "IAM eventual consistency",
        "a change to a role, policy or OIDC provider is seen by the next request",
        "changes can take seconds to propagate to every endpoint",
        "IAM User Guide, Troubleshooting IAM: 'Changes that I make are not always "
        "immediately visible'",
        "a lab checks the learner's fix at once; a random delay would only make the "
        "checks flaky, and the lab says that a real fix may take a moment",
    ),
    AwsDifference(
        "undocumented STS texts",
        "the lab's own wording for the InvalidIdentityToken cases AWS never published "
        "(malformed JWT, unknown kid, unsupported alg), in AWS's style",
        "not documented",
        "docs/reference/sts.md §7",
        "the code, the HTTP status and the step that failed are AWS's; only the free text "
        "of a few messages is the lab's",
    ),
    AwsDifference(
        "S3 error elements",
        "NoSuchKey, NoSuchBucket, InvalidBucketName and RequestTimeTooSkewed carry AWS's "
        "elements; other S3 errors (AccessDenied, InvalidRange, InvalidArgument ...) carry "
        "<Resource>",
        "each error carries its own elements (Method, RangeRequested, ArgumentName ...) or none",
        "Amazon S3 API Reference, Error responses",
        "SDKs read Code and Message and ignore the other children; the lab checks only "
        "those that a learner's tool prints",
    ),
    AwsDifference(
        "S3 APIs the lab does not serve",
        "?acl, CreateBucket and the other APIs outside the lab's chain answer NotImplemented "
        "(501) with the lab's reason in the trace",
        "S3 serves them",
        "Amazon S3 API Reference",
        "the chain reads one bucket; a clear 501 is better than a made-up answer",
    ),
    AwsDifference(
        "trust-policy principals",
        "a principal naming a missing role or user of the lab's account is refused; "
        "principals of other accounts and Federated providers are not checked",
        "IAM resolves every principal to its unique id at save time",
        "IAM User Guide, 'IAM JSON policy elements: Principal'",
        "the lab has one account, and the lessons create the OIDC provider before the role",
    ),
    AwsDifference(
        "bucket names",
        "the general-purpose naming rules, checked after authentication; legacy us-east-1 "
        "names (upper case, underscores) are refused",
        "legacy buckets keep their names; the order of checks is not documented",
        "Amazon S3 User Guide, 'Bucket naming rules'",
        "the lab has no legacy buckets",
    ),
    AwsDifference(
        "unique ids and access key ids",
        "AROA/AIDA/AKIA/ASIA ids in AWS's base32 alphabet and lengths, drawn from the lab's seed",
        "newer key ids encode the account id",
        "IAM User Guide, 'IAM identifiers' (unique id prefixes); public analyses of key-id "
        "encoding",
        "the lab does not teach decoding a key id; seeded ids keep notebook outputs stable",
    ),
    AwsDifference(
        "PackedPolicySize",
        "ceil(100 × (minified session policy JSON plus policy ARNs) ÷ the lab's packed "
        "limit); absent when no session policy is passed",
        "a percentage of an undocumented compressed format, usually lower for the same policy",
        "STS API Reference, AssumeRoleWithWebIdentity: PackedPolicySize",
        "the documented facts are kept: a percentage, and a refusal above 100",
    ),
    AwsDifference(
        "session-tag and source-identity errors in a web-identity token",
        "a malformed https://aws.amazon.com/tags claim is ValidationError 'Unable to validate "
        "tags'; a bad source identity gets the service model's ValidationError wording for "
        "sourceIdentity; both are found at the claims step, before the signature",
        "not published for AssumeRoleWithWebIdentity; the order of checks is not published",
        "the SAML observation in ministryofjustice/cloud-platform#4455; botocore's sts model; "
        "docs/reference/sts.md §7",
        "the code and status are AWS's for these parameters, and the message names the claim "
        "at fault",
    ),
    AwsDifference(
        "packed size of session tags",
        "tag text counted against a limit fitted to one observation (498% for nine "
        "250-character tags); policies and tags are sized apart and PackedPolicySize reports "
        "the larger",
        "a compressed binary form whose size is not published",
        "aws-actions/configure-aws-credentials#1898",
        "a learner sees the same error at about the same size",
    ),
    AwsDifference(
        "missing sts:TagSession or sts:SetSourceIdentity",
        "the web-identity AccessDenied 'Not authorized to perform sts:AssumeRoleWithWebIdentity'",
        "no public observation for web identity; signed AssumeRole callers are told the "
        "missing action",
        "IAM User Guide, 'Passing session tags in AWS STS' and 'Monitor and control actions "
        "taken with assumed roles'",
        "the lab's verdict table names the refused action beside the AWS message",
    ),
    AwsDifference(
        "source identity length",
        "2 to 64 characters of [\\w+=,.@-]",
        "the IAM User Guide says 64; botocore's model allows up to 256",
        "IAM User Guide, 'Monitor and control actions taken with assumed roles'",
        "the documented limit is the one a learner will meet",
    ),
    AwsDifference(
        "role chaining",
        "transitive tag keys are stored but never used: the lab has no role chaining",
        "transitive tags pass to the sessions of chained roles",
        "IAM User Guide, 'Chaining roles with session tags'",
        "IRSA assumes one role from a token; chaining is outside the chain the lab teaches",
    ),
    AwsDifference(
        "PolicyArns naming no policy",
        "MalformedPolicyDocument (400) 'Policy <arn> does not exist or is not attachable.'",
        "refused; the code and text are not published",
        "STS API Reference, AssumeRoleWithWebIdentity: PolicyArns; IAM's lookup text "
        "observed in aws/aws-cdk#3379",
        "the learner gets a 400 that names the ARN, and no credentials",
    ),
    AwsDifference(
        "which policy type an AccessDenied names",
        "an explicit deny first, then identity-based before session policy",
        "names one type; which one when several refuse is not documented",
        "IAM User Guide, 'Troubleshoot access denied error messages'",
        "the outcome is the same; only the named type could differ",
    ),
    AwsDifference(
        "policy variable edge cases",
        "a substituted value is always literal; a multivalued key counts as no value; an "
        "unclosed ${ stays as written; a variable under a numeric, date or IP operator is "
        "refused when the policy is read",
        "not documented beyond 'variables cannot be used with those operators'",
        "IAM User Guide, 'IAM policy elements: Variables and tags'",
        "every such case refuses or does not match, so the lab never grants more than AWS",
    ),
    AwsDifference(
        "global condition keys not produced",
        "no aws:UserAgent, aws:ResourceAccount, aws:ResourceOrgID, aws:MultiFactorAuthPresent, "
        "aws:Ec2InstanceSource* or ec2:* keys, no aws:RequestTag on IAM CreateRole, no iam:* "
        "service keys, no aws:SourceIp on IAM calls",
        "present in the requests the reference lists",
        "IAM User Guide, 'AWS global condition context keys'",
        "no lesson uses them, and a policy that names a missing key behaves as it does on "
        "AWS when the key is absent",
    ),
    AwsDifference(
        "the clock of condition keys",
        "aws:CurrentTime, aws:EpochTime and aws:TokenIssueTime read the lab clock, which a "
        "notebook may freeze; Expiration uses the wall clock",
        "one clock",
        "IAM User Guide, 'AWS global condition context keys'",
        "notebooks answer the same way on every run; the issue time never follows the current time",
    ),
    AwsDifference(
        "managed session policies",
        "the documents of PolicyArns are copied into the session when it is issued",
        "evaluated from the current policy version",
        "IAM User Guide, 'Session policies'",
        "AWS managed policies in the lab never change, so no request can tell",
    ),
    AwsDifference(
        "IAM credential scope",
        "IAM accepts a signature scoped to us-east-1 or to the lab's region (eu-west-1) and "
        "refuses any other with 'Credential should be scoped to a valid region'",
        "IAM accepts only us-east-1",
        "AWS SigV4 reference (global services sign for us-east-1); JuliaCloud/AWS.jl#565",
        "with AWS_ENDPOINT_URL_IAM set, botocore signs IAM calls for the client's region, so "
        "every learner's aws iam command would fail otherwise",
    ),
    AwsDifference(
        "S3 presigned URLs of Signature Version 2",
        "accepted for the lab bucket, checked with botocore's own signer",
        "buckets created after 24 June 2020 refuse Version 2",
        "AWS re:Post, 'Amazon S3 Signature Version 2 deprecation'",
        "botocore's default for eu-west-1 and aws s3 presign both produce Version 2 URLs; "
        "refusing them would make every presign lesson fail",
    ),
    AwsDifference(
        "IAM presigned requests",
        "accepted within the 15-minute window, as STS's are",
        "not documented",
        "aws/aws-sdk-go#2167 (STS ignores X-Amz-Expires)",
        "no lesson presigns an IAM call",
    ),
    AwsDifference(
        "checksum trailers and SigV4a",
        "aws-chunked trailers are checked for CRC32, SHA1 and SHA256 (a CRC32C trailer passes "
        "unchecked); SigV4a streaming modes are InvalidArgument",
        "every checksum algorithm; SigV4a accepted",
        "Amazon S3 User Guide, 'Checking object integrity'; AWS SigV4a documentation",
        "botocore's defaults use CRC32 and SigV4 for the lab's requests",
    ),
    AwsDifference(
        "S3 signing texts",
        "the InvalidArgument text for a bad x-amz-content-sha256, the X-Amz-Expires texts and "
        "'Request is not yet valid' follow single observations; the order of checks when "
        "several are wrong is inferred",
        "not documented",
        "dmjio/s3-signer#16 and the observations cited in irsa_lab/aws/sigv4_errors.py",
        "the codes and statuses are S3's; only some free texts may differ",
    ),
    AwsDifference(
        "a header and a query signature at once",
        "S3 refuses it (InvalidArgument 'Only one auth mechanism allowed'); STS and IAM use "
        "the header",
        "STS and IAM: not documented",
        "Amazon S3 API Reference, Authenticating Requests",
        "no client sends both",
    ),
    AwsDifference(
        "EKS APIs the lab does not serve",
        "ListClusters, DescribeCluster and Create/List/Describe/DeletePodIdentityAssociation "
        "are served for the one cluster; every other operation, UpdatePodIdentityAssociation "
        "included, answers UnknownOperationException (404), and a create with targetRoleArn "
        "(cross-account target roles) or policy (a session policy) InvalidRequestException "
        "(400) saying the lab does not support it",
        "EKS serves them all",
        "docs/reference/pod-identity.md §1.2, §6.6",
        "the lessons and labs need one role per ServiceAccount; changing an association is "
        "delete and create, and a clear refusal is better than a half-made answer",
    ),
    AwsDifference(
        "Pod Identity agent address",
        "the agent listens on loopback (endpoints.json pod_identity_agent) and also accepts "
        "its loopback address as Host; the webhook's --container-credentials-full-uri points "
        "pods there",
        "169.254.170.23:80 and [fd00:ec2::23]:80 with hostNetwork; any other Host is refused "
        "with 403",
        "docs/reference/pod-identity.md §4.7, §4.8 (agent v0.1.37, pkg/handlers)",
        "botocore allows loopback HTTP URLs as it allows 169.254.170.23; the one rewritten "
        "setting is the URL, and a wrong Host (10.0.0.1) still gets the agent's 403",
    ),
    AwsDifference(
        "Pod Identity agent: node credentials",
        "the agent takes the node role's instance credentials in process, the ones the IMDS "
        "stand-in serves, and signs EKS Auth calls with them over HTTPS",
        "the agent reads them from IMDS over HTTP on the node",
        "docs/reference/pod-identity.md §2.1, §4.7",
        "the credentials, the signature and the EKS Auth call are the real ones; only the "
        "IMDS round trip is skipped, and the trace shows the EKS Auth call",
    ),
    AwsDifference(
        "EKS Auth texts and checks",
        "InvalidTokenException, ExpiredTokenException, ResourceNotFoundException and "
        "AccessDeniedException (HTTP 400) carry the lab's own short messages; the token is "
        "checked with STS's steps against the cluster's issuer, then audience, pod binding, "
        "association, role and trust policy, in that order; an unknown cluster gets EKS's "
        "'No cluster found for name: X.'",
        "the codes and statuses are modelled; no message text and no check order is published",
        "docs/reference/pod-identity.md §2.4, §2.5, §8.2-8.4",
        "the code, status and failing step are what tools and learners act on; the trace "
        "names the step and why",
    ),
    AwsDifference(
        "Pod Identity sessions",
        "session name eks-<cluster[:10]>-<pod[:10]>-<uuid> (at most 62 characters), 6-hour "
        "credentials, assumedRoleUser.arn the STS session ARN, the trust policy judged with "
        "aws:SourceAccount (the cluster's account) and aws:SourceArn (the association)",
        "only the pattern eks-<cluster>-<pod>-<uuid> is documented; one observed name is 62 "
        "characters with the UUID whole; lifetime and condition keys are not documented",
        "docs/reference/pod-identity.md §6.2, §6.3, §8.5-8.7, §8.10",
        "fits the one observation and STS's 64-character limit; the six session tags are "
        "exactly AWS's",
    ),
    AwsDifference(
        "trust policy checked at association time",
        "CreatePodIdentityAssociation refuses a role whose trust policy does not allow "
        "pods.eks.amazonaws.com sts:AssumeRole and sts:TagSession (InvalidParameterException), "
        "and EKS Auth judges the same policy again for each pod (AccessDeniedException)",
        "observed for policies without the service principal or without sts:TagSession "
        "(CDK's plain ServicePrincipal); not documented",
        "docs/reference/pod-identity.md §1.4, §6.4, §8.1",
        "both places run one function (irsa_lab.aws.eks.trust.judge_trust), so the lab can "
        "show either refusal",
    ),
    AwsDifference(
        "associations take effect at once",
        "a new or deleted association is in the webhook's config file before the API call "
        "returns; the embedded webhook reads it on the next admission, the upstream binary "
        "after its fsnotify reload, which the lab waits for",
        "AWS says a change may take several seconds to take effect",
        "docs/reference/pod-identity.md §1.5, §5.3",
        "as for IAM: a lab checks a fix at once",
    ),
)
