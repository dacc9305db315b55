"""The lab's vocabulary, spelled as upstream spells it, in one place.

Names come from aws/amazon-eks-pod-identity-webhook, the Kubernetes API and AWS
documentation (docs/reference/). Units are given in each name or comment.
"""

from __future__ import annotations

__all__ = [
    "ACCOUNT_ID",
    "ADMIN_USER_ARN",
    "ADMIN_USER_NAME",
    "ADMISSION_REVIEW_VERSIONS",
    "ANNOTATION_PREFIX",
    "AUDIENCE_ANNOTATION",
    "AUDIENCE_SUFFIX",
    "BUCKET",
    "BUCKET_CREATED",
    "CLUSTER_NAME",
    "CONTAINER_CREDENTIALS_AUDIENCE",
    "CONTAINER_CREDENTIALS_FULL_URI",
    "CONTAINER_CREDENTIALS_MOUNT_PATH",
    "CONTAINER_CREDENTIALS_TOKEN_PATH",
    "CONTAINER_CREDENTIALS_VOLUME_NAME",
    "DEFAULT_AUDIENCE",
    "DEFAULT_SESSION_DURATION_S",
    "DEFAULT_TOKEN_EXPIRATION_S",
    "ECR_READ_ONLY_POLICY_ARN",
    "EKS_CNI_POLICY_ARN",
    "EKS_OIDC_THUMBPRINT",
    "EKS_WORKER_NODE_POLICY_ARN",
    "ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "ENV_CONTAINER_CREDENTIALS_FULL_URI",
    "ENV_DEFAULT_REGION",
    "ENV_REGION",
    "ENV_ROLE_ARN",
    "ENV_STS_REGIONAL_ENDPOINTS",
    "ENV_WEB_IDENTITY_TOKEN_FILE",
    "GENERATE_NAME_ALPHABET",
    "IAM_API_VERSION",
    "IAM_MAX_MANAGED_POLICIES_PER_ROLE",
    "IAM_MAX_OIDC_CLIENT_IDS",
    "IAM_MAX_OIDC_THUMBPRINTS",
    "IAM_MAX_ROLE_POLICY_SIZE",
    "IAM_MAX_TRUST_POLICY_SIZE",
    "IAM_NS",
    "IMDS_MAX_TOKEN_TTL_S",
    "IMDS_TOKEN_HEADER",
    "IMDS_TOKEN_TTL_HEADER",
    "INOTIFY_MIN_MAX_USER_INSTANCES",
    "INOTIFY_MIN_MAX_USER_WATCHES",
    "KIND_API_AUDIENCES",
    "KIND_API_SERVER_ADDRESS",
    "KIND_API_SERVER_PORT",
    "KIND_API_SERVER_URL",
    "KIND_CLUSTER_NAME",
    "KIND_DISCOVERY_BINDING",
    "KIND_DISCOVERY_CLUSTER_ROLE",
    "KIND_DISCOVERY_URL",
    "KIND_ISSUER",
    "KIND_JWKS_FILE",
    "KIND_JWKS_URI",
    "KIND_KEYS_CONTAINER_DIR",
    "KIND_MIN_VERSION",
    "KIND_NODE_IMAGE",
    "KIND_NODE_MINOR",
    "KIND_PROBE_POD",
    "KIND_PUBLIC_KEY_FILE",
    "KIND_SIGNING_KEY_FILE",
    "KIND_VERSION_PINNED",
    "KIND_WEBHOOK_CERT_DIR",
    "KIND_WEBHOOK_IMAGE",
    "KIND_WEBHOOK_NAMESPACE",
    "KIND_WEBHOOK_SERVICE",
    "KIND_WEBHOOK_TLS_SECRET",
    "KUBELET_REFRESH_FRACTION",
    "KUBELET_REFRESH_MAX_AGE_S",
    "KUBERNETES_VERSION",
    "KUBE_API_ACCESS_PREFIX",
    "MAX_ROLE_SESSION_DURATION_S",
    "MAX_TOKEN_EXPIRATION_S",
    "MIN_SESSION_DURATION_S",
    "MIN_TOKEN_EXPIRATION_S",
    "NAMESPACE",
    "NODE_INSTANCE_ID",
    "NODE_NAME",
    "NODE_ROLE_ARN",
    "NODE_ROLE_MANAGED_POLICY_ARNS",
    "NODE_ROLE_NAME",
    "NODE_SELECTOR_OS",
    "NODE_SELECTOR_OS_BETA",
    "POD_IDENTITY_LABEL",
    "POD_IDENTITY_LABEL_VALUE",
    "POD_CONTAINER",
    "POD_IMAGE",
    "POD_NAME",
    "REGION",
    "ROLE_ARN",
    "ROLE_ARN_ANNOTATION",
    "ROLE_ARN_SUFFIX",
    "ROLE_NAME",
    "S3_NS",
    "S3_OWNER_DISPLAY_NAME",
    "S3_OWNER_ID",
    "S3_READ_ONLY_POLICY_ARN",
    "SA_MOUNT_PATH",
    "SA_TOKEN_DEFAULT_EXPIRATION_S",
    "SA_TOKEN_MAX_EXPIRATION_S",
    "SA_TOKEN_MIN_EXPIRATION_S",
    "SERVICE_ACCOUNT",
    "SKIP_CONTAINERS_ANNOTATION",
    "SKIP_CONTAINERS_SUFFIX",
    "SKIP_WEBHOOK_LABEL",
    "STS_API_VERSION",
    "STS_NS",
    "STS_REGIONAL_ANNOTATION",
    "STS_REGIONAL_SUFFIX",
    "STS_REGIONAL_VALUE",
    "STS_USER_AGENT",
    "TOKEN_EXPIRATION_ANNOTATION",
    "TOKEN_EXPIRATION_JITTER_FLOOR_S",
    "TOKEN_EXPIRATION_SUFFIX",
    "TOKEN_FILE",
    "TOKEN_FILE_NAME",
    "TOKEN_MOUNT_PATH",
    "TOKEN_VOLUME_NAME",
    "VOLUME_MOUNT_FIELDS",
    "WEBHOOK_CONFIG_NAME",
    "WEBHOOK_CONTENT_TYPE",
    "WEBHOOK_HEALTHZ_PATH",
    "WEBHOOK_MUTATE_PATH",
    "WEBHOOK_NAME",
    "WINDOWS_OS",
]

# --- the default scenario: the article's account, region, role, ServiceAccount, bucket ---
ACCOUNT_ID = "123456789012"
REGION = "eu-west-1"
ROLE_NAME = "AmazonEKSPodS3ReadOnlyAccessRole"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/{ROLE_NAME}"
NAMESPACE = "default"
SERVICE_ACCOUNT = "s3-readonly-sa"
POD_NAME = "mypod"
POD_IMAGE = "amazon/aws-cli"
# The article's container name, as its last-applied-configuration shows it.
POD_CONTAINER = "s3-readonly"
BUCKET = "aws-codebuild-output-test"
# 2024-03-27 13:46:58 UTC, as `aws s3 ls` prints it in the article.
BUCKET_CREATED = "2024-03-27T13:46:58Z"
NODE_NAME = "ip-192-168-12-34.eu-west-1.compute.internal"
NODE_ROLE_NAME = "eksctl-irsa-lab-nodegroup-NodeInstanceRole"
NODE_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/{NODE_ROLE_NAME}"
NODE_INSTANCE_ID = "i-0abc1234def567890"
CLUSTER_NAME = "irsa-lab"

# --- webhook (docs/reference/webhook.md §1, §4, §5) -------------------------------------
ANNOTATION_PREFIX = "eks.amazonaws.com"
ROLE_ARN_ANNOTATION = f"{ANNOTATION_PREFIX}/role-arn"
AUDIENCE_ANNOTATION = f"{ANNOTATION_PREFIX}/audience"
STS_REGIONAL_ANNOTATION = f"{ANNOTATION_PREFIX}/sts-regional-endpoints"
TOKEN_EXPIRATION_ANNOTATION = f"{ANNOTATION_PREFIX}/token-expiration"
SKIP_CONTAINERS_ANNOTATION = f"{ANNOTATION_PREFIX}/skip-containers"
SKIP_WEBHOOK_LABEL = f"{ANNOTATION_PREFIX}/skip-pod-identity-webhook"
WEBHOOK_CONFIG_NAME = "pod-identity-webhook"
WEBHOOK_NAME = "iam-for-pods.amazonaws.com"
DEFAULT_AUDIENCE = "sts.amazonaws.com"
DEFAULT_TOKEN_EXPIRATION_S = 86400
MIN_TOKEN_EXPIRATION_S = 600  # upstream clamps smaller values up to this
TOKEN_VOLUME_NAME = "aws-iam-token"
TOKEN_MOUNT_PATH = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
TOKEN_FILE_NAME = "token"
TOKEN_FILE = f"{TOKEN_MOUNT_PATH}/{TOKEN_FILE_NAME}"

ENV_STS_REGIONAL_ENDPOINTS = "AWS_STS_REGIONAL_ENDPOINTS"
ENV_DEFAULT_REGION = "AWS_DEFAULT_REGION"
ENV_REGION = "AWS_REGION"
ENV_ROLE_ARN = "AWS_ROLE_ARN"
ENV_WEB_IDENTITY_TOKEN_FILE = "AWS_WEB_IDENTITY_TOKEN_FILE"

# --- Kubernetes (docs/reference/kubernetes.md §0, §1) -----------------------------------
SA_TOKEN_MIN_EXPIRATION_S = 600  # "may not specify a duration less than 10 minutes"
SA_TOKEN_MAX_EXPIRATION_S = 2**32
SA_TOKEN_DEFAULT_EXPIRATION_S = 3600
KUBELET_REFRESH_FRACTION = 0.8  # kubelet renews a token older than 80% of its TTL
KUBELET_REFRESH_MAX_AGE_S = 24 * 3600  # ... or older than 24 h
KUBE_API_ACCESS_PREFIX = "kube-api-access-"
SA_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
KUBERNETES_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.4-irsa-lab"}

# --- AWS ------------------------------------------------------------------------
STS_API_VERSION = "2011-06-15"
IAM_API_VERSION = "2010-05-08"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
IAM_NS = "https://iam.amazonaws.com/doc/2010-05-08/"
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
DEFAULT_SESSION_DURATION_S = 3600
MIN_SESSION_DURATION_S = 900
MAX_ROLE_SESSION_DURATION_S = 43200
IMDS_TOKEN_TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds"
IMDS_TOKEN_HEADER = "x-aws-ec2-metadata-token"
IMDS_MAX_TOKEN_TTL_S = 21600

# Managed policies the lab needs (arn -> name).
S3_READ_ONLY_POLICY_ARN = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
EKS_WORKER_NODE_POLICY_ARN = "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"
EKS_CNI_POLICY_ARN = "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"
ECR_READ_ONLY_POLICY_ARN = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"

# --- IAM / S3 stand-ins (aws/iam/, aws/s3/, aws/scenario.py) ---------------------
ADMIN_USER_NAME = "admin"
ADMIN_USER_ARN = f"arn:aws:iam::{ACCOUNT_ID}:user/{ADMIN_USER_NAME}"
NODE_ROLE_MANAGED_POLICY_ARNS = (
    EKS_WORKER_NODE_POLICY_ARN,
    EKS_CNI_POLICY_ARN,
    ECR_READ_ONLY_POLICY_ARN,
)
# SHA-1 of the root CA behind oidc.eks.<region>.amazonaws.com, as eksctl and the EKS
# console register it (40 hex digits, lower case).
EKS_OIDC_THUMBPRINT = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280"
IAM_MAX_OIDC_CLIENT_IDS = 100
IAM_MAX_OIDC_THUMBPRINTS = 5
IAM_MAX_MANAGED_POLICIES_PER_ROLE = 10  # default quota "Managed policies per role"
IAM_MAX_ROLE_POLICY_SIZE = 10240  # inline role policies, aggregate non-whitespace chars
IAM_MAX_TRUST_POLICY_SIZE = 2048  # default quota "Role trust policy length"
S3_OWNER_ID = "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a"
S3_OWNER_DISPLAY_NAME = "admin"

# --- webhook, continued (docs/reference/webhook.md §1-§4, §9) ----------------------------
# Annotation key suffixes: the full key is f"{--annotation-prefix}/{suffix}".
ROLE_ARN_SUFFIX = "role-arn"
AUDIENCE_SUFFIX = "audience"
STS_REGIONAL_SUFFIX = "sts-regional-endpoints"
TOKEN_EXPIRATION_SUFFIX = "token-expiration"  # noqa: S105 - a name, not a secret
SKIP_CONTAINERS_SUFFIX = "skip-containers"
STS_REGIONAL_VALUE = "regional"  # the only value the webhook writes to AWS_STS_REGIONAL_ENDPOINTS
# A constant upstream keeps but never applies: values above it pass through unchanged.
MAX_TOKEN_EXPIRATION_S = 86400
# Pod Identity mode only: an expiration of exactly 86400 s is replaced by a uniform
# random integer in [79200, 86400] (inclusive), so tokens do not all renew at once.
TOKEN_EXPIRATION_JITTER_FLOOR_S = 79200
# nodeSelector keys whose value "windows" switches the token file env var to a Windows path.
NODE_SELECTOR_OS = "kubernetes.io/os"
NODE_SELECTOR_OS_BETA = "beta.kubernetes.io/os"
WINDOWS_OS = "windows"

# Container credentials (EKS Pod Identity) mode: flag defaults of upstream main.go.
CONTAINER_CREDENTIALS_AUDIENCE = "pods.eks.amazonaws.com"
CONTAINER_CREDENTIALS_MOUNT_PATH = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
CONTAINER_CREDENTIALS_VOLUME_NAME = "eks-pod-identity-token"
CONTAINER_CREDENTIALS_TOKEN_PATH = "eks-pod-identity-token"  # noqa: S105 - a file name
CONTAINER_CREDENTIALS_FULL_URI = "http://169.254.170.23/v1/credentials"  # the Pod Identity agent
ENV_CONTAINER_CREDENTIALS_FULL_URI = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"  # noqa: S105
# Label added to pods mutated in Pod Identity mode (fixed: not affected by the prefix).
POD_IDENTITY_LABEL = "eks.amazonaws.com/pod-identity"
POD_IDENTITY_LABEL_VALUE = "enabled"

# The webhook's HTTP surface (docs/reference/webhook.md §6.1).
WEBHOOK_MUTATE_PATH = "/mutate"
WEBHOOK_HEALTHZ_PATH = "/healthz"
WEBHOOK_CONTENT_TYPE = "application/json"  # must match exactly, else HTTP 415
ADMISSION_REVIEW_VERSIONS = ("v1beta1",)  # as upstream's deploy/mutatingwebhook.yaml

# --- kind backend (docs/reference/kubernetes.md §2, §5; irsa_lab/kind) --------------------
KIND_CLUSTER_NAME = CLUSTER_NAME
# kind v0.32.0 is the first release that translates an unversioned, map-form
# ClusterConfiguration patch to kubeadm v1beta4 (needed for Kubernetes >= 1.36).
KIND_MIN_VERSION = (0, 32, 0)
KIND_VERSION_PINNED = "v0.32.0"
# kind v0.32.0's default node image, pinned by digest: images are built per kind release.
KIND_NODE_IMAGE = (
    "kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5"
)
KIND_NODE_MINOR = 36
KIND_API_SERVER_ADDRESS = "127.0.0.1"
KIND_API_SERVER_PORT = 6443  # fixed, so the discovery and JWKS URLs are stable
KIND_API_SERVER_URL = f"https://{KIND_API_SERVER_ADDRESS}:{KIND_API_SERVER_PORT}"
# EKS-shaped and fixed, so kind-config.yaml in the repo is one file and notebooks print
# the same issuer on every run. The id is md5("irsa-lab kind cluster"), upper case,
# shaped like an EKS cluster's OIDC id; no host of that name is ever contacted.
KIND_ISSUER = f"https://oidc.eks.{REGION}.amazonaws.com/id/9F9455D9904B43490B195254C7B341E0"
# The API server serves discovery at these absolute paths whatever the issuer's path is.
KIND_DISCOVERY_URL = f"{KIND_API_SERVER_URL}/.well-known/openid-configuration"
KIND_JWKS_URI = f"{KIND_API_SERVER_URL}/openid/v1/jwks"
# What EKS uses (and the embedded stand-in, kube/tokens.py): in-cluster tokens carry this
# audience, IRSA tokens carry sts.amazonaws.com, and neither is accepted in place of the other.
KIND_API_AUDIENCES = ("https://kubernetes.default.svc",)
# Under /etc/kubernetes/pki because the kube-apiserver and kube-controller-manager static
# pods already mount that folder from the node; a folder mount (not single files) keeps
# working when a key file is replaced by rename.
KIND_KEYS_CONTAINER_DIR = "/etc/kubernetes/pki/irsa-lab"
KIND_SIGNING_KEY_FILE = "sa.key"
KIND_PUBLIC_KEY_FILE = "sa.pub"
KIND_JWKS_FILE = "jwks.json"
KIND_WEBHOOK_NAMESPACE = "pod-identity-webhook"
KIND_WEBHOOK_SERVICE = "pod-identity-webhook"
KIND_WEBHOOK_TLS_SECRET = "pod-identity-webhook-cert"  # noqa: S105 - a Secret's name
KIND_WEBHOOK_CERT_DIR = "/etc/webhook/certs"
# Current upstream releases are pushed to ECR Public; Docker Hub's
# amazon/amazon-eks-pod-identity-webhook only has older tags (e.g. v0.5.7).
KIND_WEBHOOK_IMAGE = "public.ecr.aws/eks/amazon-eks-pod-identity-webhook:v0.6.17"
KIND_DISCOVERY_BINDING = "oidc-discovery-anonymous"
KIND_DISCOVERY_CLUSTER_ROLE = "system:service-account-issuer-discovery"
KIND_PROBE_POD = "irsa-lab-probe"
# kind's "known issues" page: below these, nodes fail with "too many open files".
INOTIFY_MIN_MAX_USER_WATCHES = 524288
INOTIFY_MIN_MAX_USER_INSTANCES = 512

# The User-Agent the STS stand-in's key fetcher sends for discovery and JWKS, so the
# OIDC host can name its caller instead of guessing it.
STS_USER_AGENT = "irsa-lab-sts/1.0"

# The fields of a Kubernetes VolumeMount (k8s.io/api v0.36): the API server's decoder
# drops any other key before admission, so a webhook never sees one.
VOLUME_MOUNT_FIELDS = frozenset(
    {
        "name",
        "readOnly",
        "recursiveReadOnly",
        "mountPath",
        "subPath",
        "mountPropagation",
        "subPathExpr",
    }
)
