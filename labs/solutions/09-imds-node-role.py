# Solution of lab 09: give mypod its role (annotate, then recreate), and close the IMDS
# path for pods without one: IMDSv2 only, hop limit 1
# (aws ec2 modify-instance-metadata-options --http-tokens required --http-put-response-hop-limit 1).

import irsa_lab
from irsa_lab import labs

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
        "containers": [{"name": "mypod", "image": "amazon/aws-cli", "command": ["sleep", "infinity"]}],
    },
}
lab.recreate_pod(manifest)  # kubectl delete pod mypod -n default; kubectl apply -f mypod.yaml
labs.modify_instance_metadata_options(lab, http_tokens="required", http_put_response_hop_limit=1)
