"""The embedded stack: every stand-in of the IRSA chain, wired together on loopback.

:class:`EmbeddedLab` starts the servers on one :class:`~irsa_lab.httpd.ServerLoop`,
seeds the default scenario (:func:`~irsa_lab.aws.scenario.seed_default`) and
writes ``kubeconfig`` and ``endpoints.json`` into the state directory, where
``irsa-lab exec``, kubectl, boto3 and the aws CLI find them. Pass ``seed`` (and
optionally ``clock``) for a lab that shows the same uids, names, keys and claims on
every run.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import threading
from dataclasses import KW_ONLY, InitVar, dataclass, field
from pathlib import Path
from typing import Any, Self

from . import client_http, web
from . import constants as C
from .admin import TOKEN_FILE as ADMIN_TOKEN_FILE
from .admin import serve_admin
from .aws import iam as iam_mod
from .aws import imds as imds_mod
from .aws import s3 as s3_mod
from .aws import sts as sts_mod
from .aws.eks import service as eks_service
from .aws.eks.associations import Associations
from .aws.model import Account
from .aws.oidc_client import OidcKeyFetcher
from .aws.scenario import DefaultScenario, seed_default
from .client_env import lab_environment
from .clock import LAB_EPOCH, Clock, ManualClock, SystemClock
from .control import StackControl
from .httpd import ServerLoop
from .ids import Ids
from .kube import oidc as oidc_mod
from .kube.apiserver import ApiServer
from .kube.controllers import Controllers
from .kube.events import EventRecorder
from .kube.exec_ws import EmbeddedExec
from .kube.kubeconfig import write_kubeconfig
from .kube.kubelet import Kubelet
from .kube.tokens import TokenIssuer, eks_issuer
from .pki import LOOPBACK, LabCA, SigningKey, write_secret
from .trace import Trace, facts_path
from .webhook import server as webhook_server
from .webhook.config import pod_identity_webhook_configuration
from .webhook.container_credentials import ConfigFileSync, config_path
from .webhook.service_account_get import StoreGetter
from .webhook.service_account_watcher import ApiServerWatcher
from .webhook.settings import (
    LAB_LOOKUP_GRACE_PERIOD_S,
    ContainerCredentialsSettings,
    WebhookSettings,
)

__all__ = [
    "AwsHandle",
    "AwsSide",
    "DEFAULT_SEED",
    "EmbeddedLab",
    "Endpoints",
    "StartsOnce",
    "WithAwsSide",
    "default_state_dir",
    "lab_clock",
    "remove_state",
    "start_aws_for_issuer",
]

DEFAULT_SEED = 20240327


def default_state_dir() -> Path:
    """``$IRSA_LAB_STATE_DIR``, else ``~/.irsa-lab`` (the CLI's ``--state-dir`` default)."""
    env = os.environ.get("IRSA_LAB_STATE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".irsa-lab"


@dataclass
class Endpoints:
    """What ``endpoints.json`` holds: the contract other tools rely on."""

    apiserver: str
    webhook: str
    sts: str
    iam: str
    s3: str
    imds: str
    issuer: str
    oidc: str
    ca_bundle: str
    kubeconfig: str
    account_id: str
    region: str
    admin_access_key_id: str
    admin_secret_access_key: str
    imds_pod: str = ""
    ec2: str = ""
    eks: str = ""
    eks_auth: str = ""
    pod_identity_agent: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "extra"}
        d.update(self.extra)
        return d

    def write(self, state_dir: Path) -> Path:
        """Write ``endpoints.json`` (0600: it holds the admin's secret key) atomically."""
        tmp = state_dir / "endpoints.json.tmp"
        write_secret(tmp, (json.dumps(self.as_dict(), indent=2) + "\n").encode())
        return tmp.replace(state_dir / "endpoints.json")

    @classmethod
    def load(cls, path: Path) -> Endpoints:
        data = json.loads(path.read_text())
        known = {k: data.pop(k) for k in list(data) if k in cls.__dataclass_fields__}
        return cls(**known, extra=data)

    def aws_env(self) -> dict[str, str]:
        """The settings that point botocore and the aws CLI at the stand-ins: the AWS part
        of :func:`~irsa_lab.client_env.lab_environment`, without the admin's keys (a pod's
        are :func:`~irsa_lab.in_pod.pod_aws_env`)."""
        env = lab_environment(self.as_dict(), admin=False)
        del env["KUBECONFIG"]
        return env


@dataclass(eq=False, repr=False)
class AwsSide:
    """The AWS stand-ins of one account (STS, IAM, S3, EC2, IMDS), trusting one issuer.

    ``resolve`` maps an issuer's origin or URL prefix to where its discovery document
    really is (the local OIDC host, or a kind API server); ``discovery_ssl`` trusts
    that server's certificate. The default scenario is seeded into the account.
    """

    loop: ServerLoop
    _: KW_ONLY
    tls: ssl.SSLContext
    issuer: str
    resolve: InitVar[dict[str, str]]
    discovery_ssl: InitVar[ssl.SSLContext]
    clock: Clock
    wall_clock: Clock
    ids: Ids
    trace: Trace
    # Trusts the AWS side's own certificate: the Pod Identity agent calls EKS Auth with it.
    client_ssl: ssl.SSLContext
    account: Account = field(init=False)
    fetcher: OidcKeyFetcher = field(init=False)
    eks_auth_fetcher: OidcKeyFetcher = field(init=False)
    scenario: DefaultScenario = field(init=False)  # seeded by start()
    imds_settings: imds_mod.ImdsSettings = field(default_factory=imds_mod.ImdsSettings, init=False)
    urls: dict[str, str] = field(default_factory=dict, init=False)
    associations: Associations = field(init=False)  # EKS Pod Identity, the one cluster's
    # What EKS's DescribeCluster shows; endpoints() adds the API server's URL and CA.
    cluster: eks_service.Cluster = field(init=False)

    def __post_init__(self, resolve: dict[str, str], discovery_ssl: ssl.SSLContext) -> None:
        self.account = Account(C.ACCOUNT_ID, clock=self.clock, ids=self.ids)
        self.fetcher = OidcKeyFetcher(resolve, discovery_ssl, self.clock, self.trace)
        # EKS Auth is another service: it fetches and caches the cluster's keys itself.
        self.eks_auth_fetcher = OidcKeyFetcher(
            resolve, discovery_ssl, self.clock, self.trace, who="eks-auth"
        )
        self.associations = Associations(
            cluster_name=C.CLUSTER_NAME,
            region=C.REGION,
            account_id=C.ACCOUNT_ID,
            wall_clock=self.wall_clock.now,
        )

    def endpoints(
        self,
        *,
        apiserver: str,
        webhook: str,
        oidc: str,
        ca_bundle: str,
        kubeconfig: str,
        extra: dict[str, Any],
    ) -> Endpoints:
        """The contract file's contents: this AWS side's URLs and the cluster's."""
        self.cluster.endpoint = apiserver
        self.cluster.certificate_authority = base64.b64encode(Path(ca_bundle).read_bytes()).decode()
        return Endpoints(
            apiserver=apiserver,
            webhook=webhook,
            sts=self.urls["sts"],
            iam=self.urls["iam"],
            s3=self.urls["s3"],
            imds=self.urls["imds"],
            imds_pod=self.urls["imds-pod"],
            ec2=self.urls["ec2"],
            eks=self.urls["eks"],
            eks_auth=self.urls["eks-auth"],
            pod_identity_agent=self.urls["pod-identity-agent"],
            issuer=self.issuer,
            oidc=oidc,
            ca_bundle=ca_bundle,
            kubeconfig=kubeconfig,
            account_id=C.ACCOUNT_ID,
            region=C.REGION,
            admin_access_key_id=self.scenario.admin.access_key_id,
            admin_secret_access_key=self.scenario.admin.secret_access_key,
            extra=extra,
        )

    def start(self) -> AwsSide:
        self.scenario = seed_default(self.account, issuer=self.issuer)
        serve = self.loop.serve
        acct, trace, wall = self.account, self.trace, self.wall_clock
        sts_app = sts_mod.make_app(
            acct,
            fetcher=self.fetcher,
            clock=self.clock,
            wall_clock=wall,
            trace=trace,
            region=C.REGION,
        )
        self.urls["sts"] = serve("sts", sts_app, tls=self.tls).url
        self.urls["iam"] = serve(
            "iam", iam_mod.make_app(acct, trace=trace, wall_clock=wall), tls=self.tls
        ).url
        self.urls["s3"] = serve(
            "s3", s3_mod.make_app(acct, trace=trace, wall_clock=wall), tls=self.tls
        ).url
        # EC2 describes the node instance; its metadata options are the IMDS's settings.
        from .aws import ec2 as ec2_mod

        node = ec2_mod.Instance(
            C.NODE_INSTANCE_ID,
            private_dns_name=C.NODE_NAME,
            private_ip=ec2_mod.ip_of_dns_name(C.NODE_NAME),
            role_name=C.NODE_ROLE_NAME,
            launch_time=self.clock.now(),
            settings=self.imds_settings,
            tags={"eks:cluster-name": C.CLUSTER_NAME},
        )
        self.urls["ec2"] = serve(
            "ec2", ec2_mod.make_app(acct, node, trace=trace, wall_clock=wall), tls=self.tls
        ).url
        # IMDS is plain HTTP, as on EC2. It is served twice: as the node reaches it,
        # and as a container behind the pod network's bridge does (one more hop).
        for name, position in (("imds", "node"), ("imds-pod", "pod")):
            app = imds_mod.make_app(
                acct,
                node_role=C.NODE_ROLE_NAME,
                position=position,
                settings=self.imds_settings,
                clock=self.clock,
                wall_clock=wall,
                ids=self.ids,
                trace=trace,
            )
            self.urls[name] = serve(name, app).url
        # EKS: the cluster as DescribeCluster shows it, and its Pod Identity associations.
        self.cluster = eks_service.Cluster(
            C.CLUSTER_NAME,
            region=C.REGION,
            account_id=C.ACCOUNT_ID,
            issuer=self.issuer,
            created_at=self.clock.now(),
            version=f"{C.KUBERNETES_VERSION['major']}.{C.KUBERNETES_VERSION['minor']}",
        )
        eks_app = eks_service.make_app(
            acct, self.associations, self.cluster, trace=trace, wall_clock=wall
        )
        self.urls["eks"] = serve("eks", eks_app, tls=self.tls).url
        self._start_pod_identity()
        return self

    def _start_pod_identity(self) -> None:
        """EKS Auth (HTTPS) and the node's Pod Identity agent (plain HTTP, on loopback where
        EKS has 169.254.170.23): docs/reference/pod-identity.md §2, §4.7."""
        from .aws.eks import agent as agent_mod
        from .aws.eks import auth as auth_mod

        app = auth_mod.make_app(
            self.account,
            self.associations,
            issuer=self.issuer,
            keys_for_issuer=self.eks_auth_fetcher.keys,
            clock=self.clock,
            wall_clock=self.wall_clock,
            trace=self.trace,
            region=C.REGION,
        )
        self.urls["eks-auth"] = self.loop.serve("eks-auth", app, tls=self.tls).url
        agent = agent_mod.make_app(
            cluster=C.CLUSTER_NAME,
            eks_auth_url=lambda: self.urls["eks-auth"],
            node_credentials=lambda: imds_mod.node_credentials(
                self.account, C.NODE_ROLE_NAME, wall_clock=self.wall_clock, ids=self.ids
            ),
            ssl_context=self.client_ssl,
            region=C.REGION,
            clock=self.clock,
            wall_clock=self.wall_clock,
            trace=self.trace,
        )
        served = self.loop.serve("pod-identity-agent", agent)
        self.urls["pod-identity-agent"] = served.url + agent_mod.credentials_path()


@dataclass
class AwsHandle:
    """The AWS side started on its own for a kind cluster (:func:`start_aws_for_issuer`)."""

    side: AwsSide
    loop: ServerLoop
    endpoints: dict[str, Any]

    def stop(self) -> None:
        self.loop.stop()


def start_aws_for_issuer(
    *,
    state_dir: Path,
    issuer: str,
    discovery_url: str,
    ca_pem_for_discovery: bytes,
    seed: int | None = None,
    pod_host: str | None = None,
    pod_bind: str | None = None,
) -> AwsHandle:
    """Start STS, IAM, S3 and IMDS trusting a real cluster's issuer (the kind backend).

    ``discovery_url`` is where ``<issuer>/.well-known/openid-configuration`` really is
    (the kind API server); ``ca_pem_for_discovery`` is that server's CA.
    ``pod_host`` is the name pods reach the host by (the certificate names it too);
    ``pod_bind`` an address the pod-facing stand-ins also listen on (the kind
    network's gateway). Without them everything listens on 127.0.0.1 only.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    loop = ServerLoop("irsa-lab-aws").start()
    try:
        ca = LabCA.create()
        ca_path = state_dir / "ca.crt"
        ca_path.write_bytes(ca.cert_pem)
        base = discovery_url.removesuffix("/.well-known/openid-configuration")
        discovery_ssl = ssl.create_default_context(cadata=ca_pem_for_discovery.decode())
        clock = SystemClock()
        hosts = (LOOPBACK, "localhost", *([pod_host] if pod_host else []))
        tls = ca.issue(hosts).server_context()
        side = AwsSide(
            loop,
            tls=tls,
            issuer=issuer,
            resolve={issuer: base},
            discovery_ssl=discovery_ssl,
            client_ssl=ca.client_context(),
            clock=clock,
            wall_clock=clock,
            ids=Ids(seed),
            trace=Trace(clock),
        ).start()
        pod_ports: dict[str, int] | None = None
        if pod_bind:
            from .kind.network import serve_for_pods  # kind mode only

            pod_ports = serve_for_pods(loop, pod_bind, tls)
    except BaseException:
        loop.stop()
        raise
    endpoints = {
        **{k.replace("-", "_"): v for k, v in side.urls.items()},
        "issuer": issuer,
        "oidc": base,
        "ca_bundle": str(ca_path),
        "account_id": C.ACCOUNT_ID,
        "region": C.REGION,
        "admin_access_key_id": side.scenario.admin.access_key_id,
        "admin_secret_access_key": side.scenario.admin.secret_access_key,
    }
    if pod_host:
        from .kind.network import pod_endpoint_fields

        endpoints.update(pod_endpoint_fields(side.urls, host=pod_host, ports=pod_ports))
    return AwsHandle(side, loop, endpoints)


class StartsOnce:
    """A stack that starts once and stops once, from any thread.

    A subclass creates ``_lock`` in ``__init__`` and gives :meth:`_start` (bring
    everything up) and :meth:`_teardown` (take it down); a start that fails half-way
    is undone by :meth:`_abort`, which tears down by default.
    """

    _lock: threading.Lock
    _started: bool = False

    def start(self) -> Self:
        with self._lock:
            if self._started:
                return self
            try:
                self._start()
            except BaseException:
                self._abort()
                raise
            self._started = True
        return self

    def stop(self) -> None:
        """Stop every server and background task."""
        with self._lock:
            if not self._started:
                return
            self._started = False
            self._teardown()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self) -> None:
        raise NotImplementedError

    def _teardown(self) -> None:
        raise NotImplementedError

    def _abort(self) -> None:
        self._teardown()


class WithAwsSide:
    """A lab whose AWS stand-ins run on its own server loop, trusting its issuer.

    The embedded and the k8s backends start their :class:`AwsSide` here; the lab's
    ``account``, ``scenario``, ``imds_settings`` and ``fetcher`` (STS's cache of the
    issuer's keys) are the AWS side's.
    """

    loop: ServerLoop
    ca: LabCA
    issuer_url: str
    clock: Clock
    ids: Ids
    trace: Trace
    aws: AwsSide

    def start_aws_side(
        self, *, tls: ssl.SSLContext, resolve: dict[str, str], wall_clock: Clock
    ) -> AwsSide:
        """Start STS, IAM, S3 and IMDS; ``resolve`` says where the issuer's documents are."""
        self.aws = AwsSide(
            self.loop,
            tls=tls,
            issuer=self.issuer_url,
            resolve=resolve,
            discovery_ssl=self.ca.client_context(),
            client_ssl=self.ca.client_context(),
            clock=self.clock,
            wall_clock=wall_clock,
            ids=self.ids,
            trace=self.trace,
        ).start()
        return self.aws

    @property
    def account(self) -> Account:
        return self.aws.account

    @property
    def scenario(self) -> DefaultScenario:
        return self.aws.scenario

    @property
    def imds_settings(self) -> imds_mod.ImdsSettings:
        return self.aws.imds_settings

    @property
    def fetcher(self) -> OidcKeyFetcher:
        return self.aws.fetcher


class EmbeddedLab(StartsOnce, WithAwsSide):
    """Every stand-in of the chain, running in this process on loopback.

    ``seed`` fixes ids, issuer, keys and secrets; ``clock`` is the lab's clock (token
    ``iat``/``exp``, kubelet renewals, STS token checks). Credentials handed to real
    clients always expire on the wall clock, which botocore checks.
    """

    def __init__(
        self,
        *,
        state_dir: Path | None = None,
        seed: int | None = None,
        clock: Clock | None = None,
        renew_interval: float = 1.0,
    ) -> None:
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self.seed = seed
        self.clock: Clock = clock or SystemClock()
        self.wall_clock: Clock = SystemClock()
        self.ids = Ids(seed)
        self.trace = Trace(self.clock)
        self.renew_interval = renew_interval
        self.loop = ServerLoop("irsa-lab")
        self._started = False
        self._lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------
    def _start(self) -> None:
        state = self.state_dir
        state.mkdir(parents=True, exist_ok=True)
        # Token reads that `irsa-lab exec` children report land in the trace too.
        self.trace.watch(facts_path(state))
        self.loop.start()
        self.ca = LabCA.create()
        ca_path = state / "ca.crt"
        ca_path.write_bytes(self.ca.cert_pem)
        tls = self.ca.issue()
        ctx = tls.server_context()

        # Kubernetes identity: the signing key and the EKS-shaped issuer.
        self.signing_key = self._signing_key()
        self.issuer_url = eks_issuer(self.ids, C.REGION)
        self.issuer = TokenIssuer(self.issuer_url, self.signing_key, clock=self.clock, ids=self.ids)
        oidc = self.loop.serve("oidc", oidc_mod.make_app(self.issuer, trace=self.trace), tls=ctx)
        issuer_id = self.issuer_url.rsplit("/", 1)[-1]
        self.oidc_url = f"{oidc.url}/id/{issuer_id}"

        # AWS side, trusting this cluster's issuer through the local OIDC host.
        issuer_origin = self.issuer_url.split("/id/")[0]
        self.start_aws_side(tls=ctx, resolve={issuer_origin: oidc.url}, wall_clock=self.wall_clock)

        # Kubernetes side.
        self.api_token = self.ids.secret_token(48)
        self.webhook_url = ""
        self.apiserver = ApiServer(
            issuer=self.issuer,
            clock=self.clock,
            ids=self.ids,
            trace=self.trace,
            ca=self.ca,
            service_resolver=self._resolve_service,
            token=self.api_token,
        )
        api = self.loop.serve("apiserver", self.apiserver.make_app(), tls=ctx)
        kubeconfig = state / "kubeconfig"
        write_kubeconfig(kubeconfig, server=api.url, ca_pem=self.ca.cert_pem, token=self.api_token)

        # The webhook's informer. Its lookup grace period, with the lab's consistent
        # lookup, makes a pod created right after `kubectl annotate` see the annotation:
        # the webhook waits until its cache has the account's current version.
        self.sa_cache = ApiServerWatcher(
            api.url, token=self.api_token, ssl_context=self.ca.client_context()
        )
        # The consistent lookup's GET asks the API server for the account's current
        # version on every pod. In this process the store is that answer (same object,
        # same resourceVersion): reading it directly spares an HTTPS round trip on the
        # event loop the admission call waits on (issue 18: admission p99 under 5 ms).
        store = self.apiserver.store
        self.sa_cache.cache.getter = StoreGetter(
            lambda ns, name: store.get("serviceaccounts", ns, name)
        )
        # Pod Identity mode, fed as on EKS: a file of the associations' identities that
        # the webhook watches (docs/reference/pod-identity.md §5.2, §5.3).
        self.pod_identity_config = ConfigFileSync(self.aws.associations, config_path(state)).start()
        self.webhook_settings = WebhookSettings.lab(
            service_account_lookup_grace_period=LAB_LOOKUP_GRACE_PERIOD_S,
            service_account_lookup_consistent=True,
            container_credentials=ContainerCredentialsSettings(
                full_uri=self.aws.urls.get("pod-identity-agent", C.CONTAINER_CREDENTIALS_FULL_URI),
                watch_config=str(self.pod_identity_config.path),
            ),
        )
        self._tls = ctx
        self.start_webhook()

        # Events and controller objects draw on their own ids, so a seeded lab's other
        # names stay as they were before these components existed.
        event_ids = Ids(None if self.seed is None else self.seed + 1)
        self.kubelet = Kubelet(
            root=state / "kubelet",
            request_token=self.apiserver.token_request,
            ca_pem=self.ca.cert_pem,
            clock=self.clock,
            ids=self.ids,
            trace=self.trace,
            set_status=self.apiserver.set_pod_status,
            events=EventRecorder(
                self.apiserver.store, self.clock, event_ids, "kubelet", host=C.NODE_NAME
            ),
        )
        # The controller manager's stand-in; its scheduler hook reports each binding
        # (Scheduled) before the kubelet starts the pod.
        self.controllers = Controllers(
            self.apiserver, clock=self.clock, ids=event_ids, node_name=C.NODE_NAME
        )
        self.apiserver.on_pod_created.append(self.controllers.scheduled)
        self.apiserver.on_pod_created.append(self.kubelet.sync_pod)
        self.apiserver.on_pod_deleted.append(self.kubelet.forget_pod)

        self._seed_kubernetes()
        # The informer lists and watches over HTTPS with aiohttp, which the start does
        # not wait to import (irsa_lab.client_http). Until its first list, each lookup's
        # GET (the StoreGetter above) brings the account, so a pod admitted meanwhile is
        # mutated the same.
        web.note_activity()  # the preload waits for quiet from here (client_http)
        self._informer = self.loop.submit(self._start_informer())
        self._renewals = self.loop.submit(self.kubelet.run(self.renew_interval))
        self._controllers = self.loop.submit(self.controllers.run())

        self.endpoints = self.aws.endpoints(
            apiserver=api.url,
            webhook=self.webhook_url,
            oidc=self.oidc_url,
            ca_bundle=str(ca_path),
            kubeconfig=str(kubeconfig),
            extra={
                "backend": "embedded",
                "kubelet_root": str(state / "kubelet"),
                "admin": serve_admin(self.loop, StackControl(self), state, tls=ctx),
            },
        )
        self.endpoints.write(state)
        web.note_activity()
        # kubectl exec runs commands as `irsa-lab exec` does, from these endpoints.
        self.apiserver.pod_exec = EmbeddedExec(state)

    def wait_for_pod_identity_config(self, timeout: float = 10.0) -> None:
        """Return once the webhook uses the current associations' identities.

        The embedded webhook reads the file on each request, so it always does; this is
        here so that code written for either backend can wait the same way.
        """

    # -- breaking the chain on purpose ---------------------------------------------------
    @property
    def webhook_running(self) -> bool:
        return "webhook" in self.loop.served()

    def stop_webhook(self) -> None:
        """Take the pod identity webhook down (its failurePolicy then decides)."""
        if self.webhook_running:
            self.loop.unserve("webhook")

    def start_webhook(self) -> str:
        """Bring the webhook (back) up; returns its URL."""
        if not self.webhook_running:
            app = webhook_server.make_app(
                cache=self.sa_cache,
                settings=self.webhook_settings,
                trace=self.trace,
                clock=self.clock,
            )
            self.webhook_url = self.loop.serve("webhook", app, tls=self._tls).url
        return self.webhook_url

    async def _start_informer(self) -> None:
        await client_http.loaded()
        await self.sa_cache.start(wait_s=None)

    def _signing_key(self) -> SigningKey:
        if self.seed is not None:
            return SigningKey.demo()
        return SigningKey.for_file(self.state_dir / "sa-signer.key")

    def _resolve_service(self, service: dict[str, Any]) -> str:
        """Where a webhook's ``clientConfig.service`` lives: the in-cluster DNS name of
        the webhook Service stands for its local HTTPS server."""
        if service.get("name") == C.WEBHOOK_CONFIG_NAME and self.webhook_url:
            return self.webhook_url + (service.get("path") or "")
        raise LookupError(f'service "{service.get("namespace")}/{service.get("name")}" not found')

    def _seed_kubernetes(self) -> None:
        api = self.apiserver
        api.seed_namespace(C.NAMESPACE)
        api.seed_namespace("kube-system")
        api.seed_service_account(
            C.NAMESPACE, C.SERVICE_ACCOUNT, annotations={C.ROLE_ARN_ANNOTATION: C.ROLE_ARN}
        )
        api.seed_mutating_webhook_configuration(
            pod_identity_webhook_configuration(ca_bundle_pem=self.ca.cert_pem)
        )

    def _teardown(self) -> None:
        """Stop every server and background task; leaves the state directory in place."""
        try:
            if getattr(self, "_informer", None) is not None:
                self._informer.cancel()
            self.loop.call(self.sa_cache.stop())
        finally:
            self.loop.stop()
        (self.state_dir / "endpoints.json").unlink(missing_ok=True)
        (self.state_dir / ADMIN_TOKEN_FILE).unlink(missing_ok=True)

    def _abort(self) -> None:
        self.loop.stop()

    # -- for people ------------------------------------------------------------------------
    def summary(self) -> str:
        ep = self.endpoints
        return "\n".join(
            [
                f"irsa-lab: embedded stack ready in {self.state_dir}",
                f"  Kubernetes API  {ep.apiserver}   (kubeconfig: {ep.kubeconfig})",
                f"  pod identity webhook  {ep.webhook}",
                f"  OIDC issuer     {ep.issuer}  -> served at {ep.oidc}",
                f"  STS {ep.sts}   IAM {ep.iam}   S3 {ep.s3}   EC2 {ep.ec2}   EKS {ep.eks}",
                f"  IMDS {ep.imds} (node)  {ep.imds_pod} (seen from a pod)",
                f"  `irsa-lab env{'' if self.state_dir == default_state_dir().resolve() else ' --state-dir ' + str(self.state_dir)}` prints the settings for kubectl, boto3 and the aws CLI",
            ]
        )


def lab_clock(deterministic: bool) -> Clock:
    """The clock a deterministic lab starts with: stopped at :data:`LAB_EPOCH`."""
    return ManualClock(LAB_EPOCH) if deterministic else SystemClock()


def remove_state(state_dir: Path) -> None:
    """Delete a state directory (tests and ``reset``)."""
    shutil.rmtree(state_dir, ignore_errors=True)
