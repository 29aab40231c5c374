"""The registry role on the GPUSrv stand-in: service, TLS, logins, and a real push and pull.

The Docker engine on the host (from docker_host) logs in, pushes a small image built
FROM scratch and pulls it back by digest, trusting the registry's CA through
/etc/docker/certs.d; curl checks the HTTP answers with and without credentials.
"""

import os
import shlex
from pathlib import Path

import pytest
import yaml

REGISTRY = "mol-registry:5000"
# The same registry by another name in the certificate; its certs.d entry comes from
# registry_docker_trust_local (the registry role), not from docker_host.
ALIAS = "registry.lab.test:5000"
STORAGE = "/srv/registry"
PKI = "/etc/docker/registry/pki"
CA = f"{PKI}/ca.crt"
SECRETS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])


def password(user: str) -> str:
    """The password converge made for this run (Molecule's ephemeral directory)."""
    return (SECRETS / f"registry-{user}.password").read_text().strip()


def http_status(host, path: str, *curl_args: str) -> str:
    """HTTP status of https://REGISTRY<path>, trusting only the registry's CA."""
    args = " ".join(shlex.quote(a) for a in curl_args)
    return host.check_output(
        f"curl -sS -o /dev/null -w '%{{http_code}}' --cacert {CA} {args} https://{REGISTRY}{path}"
    )


def login(host, registry: str, user: str, secret: str):
    return host.run(
        f"printf %s {shlex.quote(secret)} | "
        f"docker login --username {user} --password-stdin {registry}"
    )


def test_service_active_and_enabled(host):
    service = host.service("docker-registry")
    assert service.is_running
    assert service.is_enabled


def test_config(host):
    config = yaml.safe_load(host.file("/etc/docker/registry/config.yml").content_string)
    assert config["storage"]["filesystem"]["rootdirectory"] == STORAGE
    assert config["storage"]["delete"]["enabled"] is True
    assert config["http"]["addr"] == ":5000"
    assert config["http"]["tls"] == {
        "certificate": f"{PKI}/server.crt",
        "key": f"{PKI}/server.key",
        "minimumtls": "tls1.2",
    }
    assert config["auth"]["htpasswd"]["path"] == "/etc/docker/registry/htpasswd"


@pytest.mark.parametrize(
    ("path", "mode", "group"),
    [
        (f"{PKI}/ca.key", 0o600, "root"),
        (f"{PKI}/server.key", 0o640, "docker-registry"),
        ("/etc/docker/registry/htpasswd", 0o640, "docker-registry"),
    ],
)
def test_secrets_not_world_readable(host, path, mode, group):
    secret = host.file(path)
    assert secret.user == "root"
    assert secret.group == group
    assert secret.mode == mode


def test_htpasswd_holds_exactly_the_users_with_bcrypt(host):
    lines = host.file("/etc/docker/registry/htpasswd").content_string.split()
    users = dict(line.split(":", 1) for line in lines)
    # "stale" was put there by prepare.yml; the role removes users it does not list.
    assert sorted(users) == ["pusher", "reader"]
    assert all(h.startswith(("$2b$", "$2y$")) for h in users.values())


def test_server_certificate_names_and_chain(host):
    sans = host.check_output(f"openssl x509 -in {PKI}/server.crt -noout -ext subjectAltName")
    for name in ("mol-registry", "registry.lab.test", "localhost"):
        assert f"DNS:{name}" in sans
    assert "IP Address:127.0.0.1" in sans
    assert host.run(f"openssl verify -CAfile {CA} {PKI}/server.crt").rc == 0
    ca = host.check_output(f"openssl x509 -in {CA} -noout -ext basicConstraints")
    assert "CA:TRUE" in ca


def test_tls_is_refused_without_the_ca(host):
    # curl exits 60 when the peer's certificate cannot be verified with its default trust.
    result = host.run(f"curl -sS -o /dev/null https://{REGISTRY}/v2/")
    assert result.rc == 60, result.stderr


def test_tls_verifies_for_each_name(host):
    for address in ("mol-registry", "registry.lab.test", "localhost", "127.0.0.1"):
        status = host.check_output(
            f"curl -sS -o /dev/null -w '%{{http_code}}' --cacert {CA} https://{address}:5000/v2/"
        )
        assert status == "401", address


def test_v2_needs_credentials(host):
    assert http_status(host, "/v2/") == "401"


@pytest.mark.parametrize("user", ["pusher", "reader"])
def test_v2_with_credentials(host, user):
    assert http_status(host, "/v2/", "-u", f"{user}:{password(user)}") == "200"


def test_v2_wrong_password(host):
    assert http_status(host, "/v2/", "-u", f"pusher:{password('pusher')}x") == "401"


def test_docker_trusts_the_ca(host):
    ca = host.file(CA).content_string.strip()
    for registry in (REGISTRY, ALIAS):
        assert host.file(f"/etc/docker/certs.d/{registry}/ca.crt").content_string.strip() == ca


def test_docker_login_wrong_password_refused(host):
    result = login(host, REGISTRY, "pusher", "not-the-password")
    assert result.rc != 0
    assert "401" in result.stderr or "unauthorized" in result.stderr.lower()


@pytest.fixture(scope="module")
def pushed(host):
    """Build a one-file image FROM scratch, push it, and return (repository, digest, content)."""
    content = "registry probe\n"
    ctx = host.check_output("mktemp -d")
    host.check_output(f"printf %s {shlex.quote(content)} > {ctx}/probe.txt")
    host.check_output(f"printf 'FROM scratch\\nCOPY probe.txt /probe.txt\\n' > {ctx}/Dockerfile")
    repository = f"{REGISTRY}/molecule/probe"
    assert login(host, REGISTRY, "pusher", password("pusher")).rc == 0
    build = host.run(f"docker build -t {repository}:1 {ctx}")
    assert build.rc == 0, build.stderr
    push = host.run(f"docker push {repository}:1")
    assert push.rc == 0, push.stderr
    digest = host.check_output(
        f"docker image inspect -f '{{{{index .RepoDigests 0}}}}' {repository}:1"
    ).split("@", 1)[1]
    # Forget the local copy so that the pull below really comes from the registry.
    host.check_output(f"docker image rm {repository}:1")
    yield repository, digest, content
    host.run(f"docker logout {REGISTRY}")


def read_probe(host, image: str) -> str:
    """The file /probe.txt of an image (FROM scratch: nothing to run, so copy it out)."""
    container = host.check_output(f"docker create {image} /probe")
    try:
        return host.check_output(f"docker cp {container}:/probe.txt - | tar -xO")
    finally:
        host.run(f"docker rm {container}")


def test_pull_by_digest(host, pushed):
    repository, digest, content = pushed
    pull = host.run(f"docker pull {repository}@{digest}")
    assert pull.rc == 0, pull.stderr
    assert read_probe(host, f"{repository}@{digest}") == content.strip()


def test_pull_by_digest_through_the_other_name(host, pushed):
    _, digest, content = pushed
    assert login(host, ALIAS, "reader", password("reader")).rc == 0
    try:
        pull = host.run(f"docker pull {ALIAS}/molecule/probe@{digest}")
        assert pull.rc == 0, pull.stderr
        assert read_probe(host, f"{ALIAS}/molecule/probe@{digest}") == content.strip()
    finally:
        host.run(f"docker logout {ALIAS}")


def test_storage_under_configured_path(host, pushed):
    _, digest, _ = pushed
    algorithm, hexdigest = digest.split(":", 1)
    v2 = f"{STORAGE}/docker/registry/v2"
    assert host.file(f"{v2}/repositories/molecule/probe").is_directory
    manifest = host.file(f"{v2}/blobs/{algorithm}/{hexdigest[:2]}/{hexdigest}/data")
    assert manifest.is_file
    assert manifest.user == "docker-registry"
    assert not host.file("/var/lib/docker-registry/docker").exists


def test_delete_by_digest(host, pushed):
    repository, digest, _ = pushed
    path = f"/v2/molecule/probe/manifests/{digest}"
    auth = f"pusher:{password('pusher')}"
    accept = "Accept: application/vnd.docker.distribution.manifest.v2+json"
    assert http_status(host, path, "-u", auth, "-H", accept, "-I") == "200"
    assert http_status(host, path, "-u", auth, "-X", "DELETE") == "202"
    assert http_status(host, path, "-u", auth, "-H", accept, "-I") == "404"
    host.run(f"docker image rm {repository}@{digest}")
