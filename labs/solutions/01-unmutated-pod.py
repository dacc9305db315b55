# Solution of lab 01: the webhook only mutates a pod when it is created, so recreate it.
# (kubectl delete pod mypod && kubectl apply -f examples/mypod.yaml)
import yaml

import irsa_lab

lab = irsa_lab.lab()
manifest = yaml.safe_load(
    """
apiVersion: v1
kind: Pod
metadata: {name: mypod, namespace: default}
spec:
  serviceAccountName: s3-readonly-sa
  containers:
    - {name: s3-readonly, image: amazon/aws-cli, command: [sleep, infinity]}
"""
)
lab.recreate_pod(manifest)  # kubectl delete pod mypod -n default; kubectl apply -f mypod.yaml
