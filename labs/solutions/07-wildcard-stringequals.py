# Solution of lab 07: StringEquals has no wildcards. Move the sub condition under
# StringLike (which knows * and ?); the aud condition stays under StringEquals.
import json

import irsa_lab

lab = irsa_lab.lab()
iam = lab.aws_client("iam")
policy = iam.get_role(RoleName="AmazonEKSPodS3ReadOnlyAccessRole")["Role"]["AssumeRolePolicyDocument"]
condition = policy["Statement"][0]["Condition"]
sub_key = next(k for k in condition["StringEquals"] if k.endswith(":sub"))
condition["StringLike"] = {sub_key: condition["StringEquals"].pop(sub_key)}
iam.update_assume_role_policy(RoleName="AmazonEKSPodS3ReadOnlyAccessRole", PolicyDocument=json.dumps(policy))
