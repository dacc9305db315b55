# Solution of lab 09: give mypod its role (annotate, then recreate), and close the IMDS
# path for pods without one: IMDSv2 only, hop limit 1, set on the node's EC2 instance
# (aws ec2 modify-instance-metadata-options --instance-id <id> --http-tokens required
#  --http-put-response-hop-limit 1).

import irsa_lab

lab = irsa_lab.lab()
lab.core.patch_namespaced_service_account(
    "s3-readonly-sa", "default",
    {"metadata": {"annotations": {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/AmazonEKSPodS3ReadOnlyAccessRole"
    }}},
)
manifest = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "mypod", "namespace": "default"},
    "spec": {
        "serviceAccountName": "s3-readonly-sa",
        "containers": [{"name": "s3-readonly", "image": "amazon/aws-cli", "command": ["sleep", "infinity"]}],
    },
}
lab.recreate_pod(manifest)  # kubectl delete pod mypod -n default; kubectl apply -f mypod.yaml
ec2 = lab.aws_client("ec2")
node = ec2.describe_instances()["Reservations"][0]["Instances"][0]  # aws ec2 describe-instances
ec2.modify_instance_metadata_options(
    InstanceId=node["InstanceId"], HttpTokens="required", HttpPutResponseHopLimit=1
)
