"""TLS for memcached: the context the driver builds, the client kwargs, and a real TLS server."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fixtures.memcached_servers import memcached_argv

from satchel import ConfigError, SessionBackendError, SessionConfig
from satchel.testing import free_port, new_storage_id, start_server_process
from satchel_memcached import MemcachedSessionHandler, connection
from satchel_memcached.options import MemcachedOptions

CA_NAME = "satchel test CA"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_pem(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_pki(folder: Path, ca_name: str = CA_NAME) -> dict[str, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1 (PEM files in ``folder``)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(ca_name))
        .issuer_name(_name(ca_name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_pem(folder / "ca", ca_key, ca)
    _write_pem(folder / "server", server_key, server)
    return {
        "ca": folder / "ca.pem",
        "server_cert": folder / "server.pem",
        "server_key": folder / "server.key",
    }


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    return make_pki(tmp_path)


# --- the context and the client kwargs ----------------------------------------------


def test_a_verifying_context_checks_the_certificate_and_host(pki: dict[str, Path]) -> None:
    context = connection._tls_context(MemcachedOptions(tls=True, tls_ca_certs=str(pki["ca"])))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    subjects = [dict(item[0] for item in cert["subject"]) for cert in context.get_ca_certs()]
    assert {"commonName": CA_NAME} in subjects


def test_tls_verify_false_checks_nothing() -> None:
    context = connection._tls_context(MemcachedOptions(tls=True, tls_verify=False))
    assert context.verify_mode == ssl.CERT_NONE
    assert context.check_hostname is False


def test_a_client_certificate_is_loaded(pki: dict[str, Path]) -> None:
    options = MemcachedOptions(
        tls=True, tls_certfile=str(pki["server_cert"]), tls_keyfile=str(pki["server_key"])
    )
    assert isinstance(connection._tls_context(options), ssl.SSLContext)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"tls_ca_certs": "/nonexistent/ca.pem"}, "options.tls_ca_certs"),
        ({"tls_certfile": "/nonexistent/client.pem"}, "options.tls_certfile"),
        ({"tls_certfile": "CA", "tls_keyfile": "SERVER_KEY"}, "options.tls_certfile"),  # mismatched
    ],
)
def test_unreadable_tls_files_are_config_errors_naming_the_option(
    pki: dict[str, Path], options: dict[str, str], key: str
) -> None:
    paths = {"CA": str(pki["ca"]), "SERVER_KEY": str(pki["server_key"])}
    resolved = {name: paths.get(value, value) for name, value in options.items()}
    with pytest.raises(ConfigError) as caught:
        MemcachedSessionHandler.from_config(
            SessionConfig(driver="memcached", options={"tls": True, **resolved})
        )
    assert caught.value.key == key


class _Recorder:
    """Stands in for a pymemcache client class and keeps what it was built with."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> _Recorder:
        self.calls.append((args, kwargs))
        return self


def test_one_server_gets_a_pooled_client_with_the_options(
    monkeypatch: pytest.MonkeyPatch, pki: dict[str, Path]
) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(connection, "PooledClient", recorder)
    options = MemcachedOptions(
        tls=True, tls_ca_certs=str(pki["ca"]), timeout=1.5, connect_timeout=0.5, max_pool_size=7
    )
    connection.build_client((("10.0.0.1", 11211),), options)
    [(args, kwargs)] = recorder.calls
    assert args == (("10.0.0.1", 11211),)
    context = kwargs.pop("tls_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert kwargs == {
        "connect_timeout": 0.5,
        "timeout": 1.5,
        "no_delay": True,
        "default_noreply": False,
        "max_pool_size": 7,
    }


def test_a_pool_gets_a_strict_hash_client_that_fails_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(connection, "StrictHashClient", recorder)
    options = MemcachedOptions(retry_attempts=4, retry_timeout=0.5, dead_timeout=12)
    servers = (("10.0.0.1", 11211), ("10.0.0.2", 11212))
    connection.build_client(servers, options)
    [(args, kwargs)] = recorder.calls
    assert args == ([("10.0.0.1", 11211), ("10.0.0.2", 11212)],)
    assert "tls_context" not in kwargs  # no TLS unless asked for
    assert kwargs == {
        "use_pooling": True,
        "retry_attempts": 4,
        "retry_timeout": 0.5,
        "dead_timeout": 12,
        "ignore_exc": False,
        "connect_timeout": 2.0,
        "timeout": 2.0,
        "no_delay": True,
        "default_noreply": False,
    }


# --- a real memcached speaking TLS ------------------------------------------------


@pytest.fixture
def tls_memcached(pki: dict[str, Path]) -> Any:
    port = free_port()
    argv = [
        *memcached_argv(port),
        "-Z",
        "-o",
        f"ssl_chain_cert={pki['server_cert']},ssl_key={pki['server_key']}",
    ]
    with start_server_process(argv, port=port, name="memcached"):
        yield port


def _tls_handler(port: int, ca: Path, prefix: str) -> MemcachedSessionHandler:
    return MemcachedSessionHandler.from_config(
        SessionConfig(
            driver="memcached",
            connection=f"127.0.0.1:{port}",
            prefix=prefix,
            options={"tls": True, "tls_ca_certs": str(ca), "timeout": 2},
        )
    )


def test_sessions_round_trip_over_tls(
    tls_memcached: int, pki: dict[str, Path], unique_prefix: str
) -> None:
    handler = _tls_handler(tls_memcached, pki["ca"], unique_prefix)
    key = new_storage_id()
    assert handler.write(key, "over TLS")
    assert handler.read(key) == "over TLS"
    handler.close()


def test_a_server_certificate_from_another_ca_is_refused(
    tls_memcached: int, tmp_path: Path, unique_prefix: str
) -> None:
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    other = make_pki(stranger, ca_name="another CA")
    handler = _tls_handler(tls_memcached, other["ca"], unique_prefix)
    with pytest.raises(SessionBackendError, match="CERTIFICATE_VERIFY_FAILED"):
        handler.read(new_storage_id())
