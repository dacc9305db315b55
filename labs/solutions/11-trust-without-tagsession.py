# Solution of lab 11: EKS Auth assumes the role for the pod and tags the session
# (kubernetes-namespace, kubernetes-pod-name, ...), so the trust policy must allow
# sts:TagSession as well as sts:AssumeRole for pods.eks.amazonaws.com. The pod needs no
# change: the agent caches only credentials, never an error.
import json

import irsa_lab

lab = irsa_lab.lab()
trust = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "AllowEksAuthToAssumeRoleForPodIdentity",
            "Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
        }
    ],
}
lab.aws_client("iam").update_assume_role_policy(
    RoleName="ReportsPodIdentityRole", PolicyDocument=json.dumps(trust)
)  # aws iam update-assume-role-policy --role-name ReportsPodIdentityRole --policy-document file://trust.json
