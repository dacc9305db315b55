"""Key material: the lab CA, TLS server certificates and the service-account signing key.

The lab CA signs a certificate for every HTTPS server of the stack (``127.0.0.1`` and
``localhost``); clients trust it through ``ca.crt`` (kubeconfig, ``AWS_CA_BUNDLE``,
a webhook's ``caBundle``). TLS keys are EC P-256 (fast to make); the service-account
signing key is RSA, as RS256 requires.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
import ssl
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "LOOPBACK",
    "LabCA",
    "ServerCert",
    "SigningKey",
    "begin_signing_key",
    "key_id",
    "private_pem",
    "write_secret",
]

LOOPBACK = "127.0.0.1"

# What x509.KeyUsage asks for, in its argument order; a certificate names the ones it sets.
_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


def private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_secret(path: Path, data: bytes) -> None:
    """Write a key file readable by its owner only (0600), never world-readable even briefly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def key_id(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    """The ``kid`` the API server puts in tokens and the JWKS.

    base64url without padding of SHA-256 over the DER SubjectPublicKeyInfo (43 chars).
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def _key_usage(*usages: str) -> x509.KeyUsage:
    """A KeyUsage extension with ``usages`` set and every other bit clear."""
    unknown = set(usages) - set(_KEY_USAGES)
    if unknown:
        raise ValueError(f"unknown key usage: {sorted(unknown)}")
    return x509.KeyUsage(**{u: u in usages for u in _KEY_USAGES})


def _valid_for_a_year(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    """A certificate builder valid from 5 minutes ago (a little clock skew) for a year."""
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
    )


@dataclass(frozen=True)
class ServerCert:
    """A certificate and key for one TLS server, signed by the lab CA."""

    cert_pem: bytes
    key_pem: bytes

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # load_cert_chain wants files; a context built from memory goes through a temp
        # file in a private folder.
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            cert = Path(d, "tls.crt")
            key = Path(d, "tls.key")
            cert.write_bytes(self.cert_pem)
            write_secret(key, self.key_pem)
            ctx.load_cert_chain(cert, key)
        return ctx


class LabCA:
    """A throw-away certificate authority for one lab stack."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert

    @classmethod
    def create(cls, common_name: str = "irsa-lab CA") -> LabCA:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = (
            _valid_for_a_year(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                _key_usage("digital_signature", "key_cert_sign", "crl_sign"), critical=True
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes) -> LabCA:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the lab CA key must be an EC key")
        return cls(key, x509.load_pem_x509_certificate(cert_pem))

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return private_pem(self.key)

    def issue(self, hosts: tuple[str, ...] = (LOOPBACK, "localhost")) -> ServerCert:
        """A server certificate for ``hosts`` (IP addresses or DNS names)."""
        sans: list[x509.GeneralName] = []
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        return self._issue_leaf(
            [x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])],
            ExtendedKeyUsageOID.SERVER_AUTH,
            x509.SubjectAlternativeName(sans),
        )

    def issue_client(self, common_name: str, organizations: tuple[str, ...] = ()) -> ServerCert:
        """A client certificate: the API server reads the user from CN, groups from O."""
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        return self._issue_leaf(attrs, ExtendedKeyUsageOID.CLIENT_AUTH)

    def _issue_leaf(
        self,
        subject: list[x509.NameAttribute],
        usage: x509.ObjectIdentifier,
        *extensions: x509.ExtensionType,
    ) -> ServerCert:
        """A fresh EC key and its end-entity certificate for ``usage``, signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = _valid_for_a_year(x509.Name(subject), self.cert.subject, key.public_key())
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        cert = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return ServerCert(cert.public_bytes(serialization.Encoding.PEM), private_pem(key))

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA only, with hostname checks on."""
        ctx = ssl.create_default_context(cadata=self.cert_pem.decode())
        return ctx


@dataclass(frozen=True)
class SigningKey:
    """The service-account token signing key (RS256) and its ``kid``."""

    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def for_file(cls, path: Path) -> SigningKey:
        """The key kept in ``path``, made and written (0600) there when missing.

        A key that :func:`begin_signing_key` started for ``path`` is collected here."""
        early = _early_keys.pop(path, None)
        if early is not None:
            key = early[1].result()  # waits for the thread
        elif path.exists():
            return cls.from_pem(path.read_bytes())
        else:
            key = cls.generate()
        write_secret(path, key.pem)
        return key

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the service-account signing key must be an RSA key")
        return cls(key)

    @classmethod
    def demo(cls) -> SigningKey:
        """The fixed key shipped for deterministic notebooks: same ``kid`` on every run.

        It signs tokens for a loopback lab only and protects nothing.
        """
        pem = (Path(__file__).parent / "data" / "keys" / "demo-sa-signer.pem").read_bytes()
        return cls.from_pem(pem)

    @property
    def kid(self) -> str:
        return key_id(self.private_key.public_key())

    @property
    def pem(self) -> bytes:
        return private_pem(self.private_key)

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK, in the field order the API server's JWKS uses."""
        numbers = self.private_key.public_key().public_numbers()

        def b64(n: int) -> str:
            raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        return {
            "use": "sig",
            "kty": "RSA",
            "kid": self.kid,
            "alg": "RS256",
            "n": b64(numbers.n),
            "e": b64(numbers.e),
        }


_early_keys: dict[Path, tuple[threading.Thread, Future[SigningKey]]] = {}


def begin_signing_key(path: Path) -> threading.Thread | None:
    """Start making the signing key for ``path`` on a thread, when the file is missing.

    A 2048-bit RSA key takes 50-300 ms to make, and OpenSSL releases the GIL while it
    works, so ``irsa-lab up`` begins it before importing the stack and the two overlap
    on two cores. :meth:`SigningKey.for_file` collects the result. Returns the thread
    (join it before a fork: a forked child has no copy of it), or None when there is
    nothing to make.
    """
    if path in _early_keys:
        return _early_keys[path][0]
    if path.exists():
        return None
    future: Future[SigningKey] = Future()

    def make() -> None:
        try:
            future.set_result(SigningKey.generate())
        except BaseException as err:  # noqa: BLE001 - re-raised by for_file in the caller
            future.set_exception(err)

    thread = threading.Thread(target=make, name="irsa-lab-keygen", daemon=True)
    _early_keys[path] = (thread, future)
    thread.start()
    return thread
