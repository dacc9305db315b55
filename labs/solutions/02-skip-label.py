# Solution of lab 02: a pod with the skip label is never sent to the webhook, whatever the
# label's value. Recreate mypod without the label.
import irsa_lab

lab = irsa_lab.lab()
pod = lab.get_pod("mypod")
manifest = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "mypod", "namespace": "default", "labels": dict(pod["metadata"]["labels"])},
    "spec": {
        "serviceAccountName": "s3-readonly-sa",
        "containers": [{"name": "s3-readonly", "image": "amazon/aws-cli", "command": ["sleep", "infinity"]}],
    },
}
del manifest["metadata"]["labels"]["eks.amazonaws.com/skip-pod-identity-webhook"]
lab.recreate_pod(manifest)  # kubectl delete pod mypod -n default; kubectl apply -f mypod.yaml
