"""The lab's vocabulary, spelled as upstream spells it, in one place.

Names come from aws/amazon-eks-pod-identity-webhook, the Kubernetes API and AWS
documentation (see ../shared/specs). Units are given in each name or comment.
"""

from __future__ import annotations

# --- the default scenario (DESIGN.md, "The default scenario") -----------------
ACCOUNT_ID = "123456789012"
REGION = "eu-west-1"
ROLE_NAME = "AmazonEKSPodS3ReadOnlyAccessRole"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/{ROLE_NAME}"
NAMESPACE = "default"
SERVICE_ACCOUNT = "s3-readonly-sa"
POD_NAME = "mypod"
POD_IMAGE = "amazon/aws-cli"
BUCKET = "aws-codebuild-output-test"
# 2024-03-27 13:46:58 UTC, as `aws s3 ls` prints it in the article.
BUCKET_CREATED = "2024-03-27T13:46:58Z"
NODE_NAME = "ip-192-168-12-34.eu-west-1.compute.internal"
NODE_ROLE_NAME = "eksctl-irsa-lab-nodegroup-NodeInstanceRole"
NODE_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/{NODE_ROLE_NAME}"
NODE_INSTANCE_ID = "i-0abc1234def567890"
CLUSTER_NAME = "irsa-lab"

# --- webhook (specs/webhook.md §1, §4, §5) -------------------------------------
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

# --- Kubernetes (specs/kubernetes.md §0, §1) -----------------------------------
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
