# Solution of lab 08: a container that already defines its identity, region and STS
# setting is left untouched by the webhook (no token file, no mount). Drop the hand-set
# variables and recreate the pod: the webhook adds the right ones.
import irsa_lab

lab = irsa_lab.lab()
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
