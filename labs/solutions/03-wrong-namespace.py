# Solution of lab 03: two links. The pod's own ServiceAccount (analytics/s3-readonly-sa)
# needs the role annotation, and the role's trust policy must accept that ServiceAccount's
# sub, system:serviceaccount:analytics:s3-readonly-sa, next to the one in default.
import json

import irsa_lab

lab = irsa_lab.lab()
role_arn = "arn:aws:iam::123456789012:role/AmazonEKSPodS3ReadOnlyAccessRole"

# 1. kubectl annotate sa -n analytics s3-readonly-sa eks.amazonaws.com/role-arn=<role>
lab.core.patch_namespaced_service_account(
    "s3-readonly-sa", "analytics",
    {"metadata": {"annotations": {"eks.amazonaws.com/role-arn": role_arn}}},
)

# 2. The trust policy: a list under StringEquals means "any of these".
iam = lab.aws_client("iam")
policy = iam.get_role(RoleName="AmazonEKSPodS3ReadOnlyAccessRole")["Role"]["AssumeRolePolicyDocument"]
equals = policy["Statement"][0]["Condition"]["StringEquals"]
sub_key = next(k for k in equals if k.endswith(":sub"))
equals[sub_key] = [
    "system:serviceaccount:default:s3-readonly-sa",
    "system:serviceaccount:analytics:s3-readonly-sa",
]
iam.update_assume_role_policy(RoleName="AmazonEKSPodS3ReadOnlyAccessRole", PolicyDocument=json.dumps(policy))

# 3. Recreate the pod: the webhook only acts when a pod is created.
manifest = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "mypod", "namespace": "analytics"},
    "spec": {
        "serviceAccountName": "s3-readonly-sa",
        "containers": [{"name": "s3-readonly", "image": "amazon/aws-cli", "command": ["sleep", "infinity"]}],
    },
}
lab.recreate_pod(manifest)  # kubectl delete pod mypod -n analytics; kubectl apply -f mypod.yaml
