# Solution of lab 04: the trust policy's sub named s3-read-only-sa; the ServiceAccount is
# s3-readonly-sa. Put the exact sub back, keep the aud condition.
import json

import irsa_lab

lab = irsa_lab.lab()
iam = lab.aws_client("iam")
policy = iam.get_role(RoleName="AmazonEKSPodS3ReadOnlyAccessRole")["Role"]["AssumeRolePolicyDocument"]
equals = policy["Statement"][0]["Condition"]["StringEquals"]
sub_key = next(k for k in equals if k.endswith(":sub"))
equals[sub_key] = "system:serviceaccount:default:s3-readonly-sa"
iam.update_assume_role_policy(RoleName="AmazonEKSPodS3ReadOnlyAccessRole", PolicyDocument=json.dumps(policy))
