# Solution of lab 06: register the cluster's issuer as an IAM OIDC provider again
# (what `eksctl utils associate-iam-oidc-provider` does). The ARN comes out the same as
# before, so the role's trust policy needs no change.
import irsa_lab

lab = irsa_lab.lab()
lab.aws_client("iam").create_open_id_connect_provider(
    Url=lab.endpoints["issuer"],
    ClientIDList=["sts.amazonaws.com"],
    ThumbprintList=["9e99a48a9960b14926bb7f3b02e22da2b0ab7280"],
)
