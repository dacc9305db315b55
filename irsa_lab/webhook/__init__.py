"""The pod identity webhook stand-in (amazon-eks-pod-identity-webhook; docs/reference/webhook.md).

One module a role, in the order a pod meets them:

* :mod:`~irsa_lab.webhook.server`: ``/mutate``, AdmissionReview in and out;
* :mod:`~irsa_lab.webhook.service_account_cache`: the ServiceAccounts it knows and the
  lookup grace period; :mod:`~irsa_lab.webhook.service_account_watcher` fills it,
  :mod:`~irsa_lab.webhook.service_account_get` is its GET of one account
  (together, upstream's ``pkg/cache``);
* :mod:`~irsa_lab.webhook.mutate`: the pure mutation, pod and annotations to JSONPatch,
  reading values with :mod:`~irsa_lab.webhook.annotations` and wording Go's decoding
  errors with :mod:`~irsa_lab.webhook.go_json`;
* :mod:`~irsa_lab.webhook.settings` (its flags) and :mod:`~irsa_lab.webhook.config` (its
  MutatingWebhookConfiguration).
"""

__all__: list[str] = []
