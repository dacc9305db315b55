# Solution of lab 05: the OIDC provider's client IDs must contain the token's aud,
# sts.amazonaws.com. Adding it is the fix; removing the misspelt sts.amazon.com is tidying
# up (an extra client ID does not stop STS from accepting the token).
import irsa_lab

lab = irsa_lab.lab()
iam = lab.aws_client("iam")
issuer = lab.endpoints["issuer"].removeprefix("https://")
arn = f"arn:aws:iam::{lab.endpoints['account_id']}:oidc-provider/{issuer}"
iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="sts.amazonaws.com")
iam.remove_client_id_from_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="sts.amazon.com")
