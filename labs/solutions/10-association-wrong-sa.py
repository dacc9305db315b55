# Solution of lab 10: the association names default/report-sa, but the pod runs as
# default/reports-sa, so the webhook left it alone and the SDK fell back to the node's
# role. An association cannot move to another ServiceAccount: delete it, create the
# right one, then recreate the pod (the webhook acts only when a pod is created).
import irsa_lab

lab = irsa_lab.lab()
eks = lab.aws_client("eks")
for found in eks.list_pod_identity_associations(clusterName="irsa-lab", namespace="default")[
    "associations"
]:  # aws eks list-pod-identity-associations --cluster-name irsa-lab --namespace default
    if found["serviceAccount"] == "report-sa":
        eks.delete_pod_identity_association(
            clusterName="irsa-lab", associationId=found["associationId"]
        )
eks.create_pod_identity_association(
    clusterName="irsa-lab",
    namespace="default",
    serviceAccount="reports-sa",
    roleArn="arn:aws:iam::123456789012:role/ReportsPodIdentityRole",
)
manifest = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "reports", "namespace": "default"},
    "spec": {
        "serviceAccountName": "reports-sa",
        "containers": [
            {"name": "reports", "image": "amazon/aws-cli", "command": ["sleep", "infinity"]}
        ],
    },
}
lab.recreate_pod(manifest)  # kubectl delete pod reports -n default; kubectl apply -f reports.yaml
