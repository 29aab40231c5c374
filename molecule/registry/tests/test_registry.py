"""The registry role on the GPUSrv stand-in: service, proxy, TLS, logins, and a real push and pull.

The Docker engine on the host (from docker_host) logs in, pushes a small image built
FROM scratch and pulls it back by digest, trusting the registry's CA through
/etc/docker/certs.d; curl checks the HTTP answers with and without credentials.
`pusher` may push; `reader` is pull-only (push: false): the role's nginx proxy in front
of the registry refuses its writes.
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
# The registry itself, behind the proxy: plain HTTP on loopback.
BACKEND = "127.0.0.1:5001"
REALM = "hailo-pipeline registry"
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


def http_headers(host, path: str, *curl_args: str) -> tuple[str, dict[str, str]]:
    """Status and headers (lower-case names) of https://REGISTRY<path> (or of a full URL)."""
    url = path if path.startswith("https://") else f"https://{REGISTRY}{path}"
    args = " ".join(shlex.quote(a) for a in (*curl_args, url))
    out = host.check_output(f"curl -sS -o /dev/null -D - --cacert {CA} {args}")
    # The last response (an upload may get "100 Continue" first).
    blocks = [b for b in out.replace("\r", "").split("\n\n") if b.startswith("HTTP/")]
    status, *lines = blocks[-1].splitlines()
    headers = {}
    for line in lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return status.split()[1], headers


def auth(user: str) -> str:
    return f"{user}:{password(user)}"


def login(host, registry: str, user: str, secret: str):
    return host.run(
        f"printf %s {shlex.quote(secret)} | "
        f"docker login --username {user} --password-stdin {registry}"
    )


@pytest.mark.parametrize("name", ["docker-registry", "nginx"])
def test_services_active_and_enabled(host, name):
    service = host.service(name)
    assert service.is_running
    assert service.is_enabled


def test_config(host):
    config = yaml.safe_load(host.file("/etc/docker/registry/config.yml").content_string)
    assert config["storage"]["filesystem"]["rootdirectory"] == STORAGE
    assert config["storage"]["delete"]["enabled"] is True
    # Behind the proxy: loopback, plain HTTP, still asking for a login.
    assert config["http"]["addr"] == BACKEND
    assert "tls" not in config["http"]
    assert config["auth"]["htpasswd"]["path"] == "/etc/docker/registry/htpasswd"


def test_proxy_holds_the_port_and_the_registry_only_loopback(host):
    listening = host.check_output("ss -Hltnp")
    by_port = {}
    for line in listening.splitlines():
        local, process = line.split()[3], line.split()[-1]
        by_port.setdefault(local.rsplit(":", 1)[1], []).append((local, process))
    assert {local for local, _ in by_port["5001"]} == {BACKEND}
    assert all("docker-registry" in process for _, process in by_port["5001"])
    assert by_port["5000"], listening
    assert all("nginx" in process for _, process in by_port["5000"])
    # nginx's own default site (port 80) was removed.
    assert "80" not in by_port


def test_registry_is_not_reachable_from_the_network(host):
    # prepare.yml: registry.lab.test is the host's network address.
    address = host.check_output("getent ahostsv4 registry.lab.test").split()[0]
    # curl exits 7 when the connection is refused.
    assert host.run(f"curl -sS -o /dev/null http://{address}:5001/v2/").rc == 7


def test_registry_behind_the_proxy_still_asks_for_a_login(host):
    for method in ("GET", "POST"):
        path = "/v2/" if method == "GET" else "/v2/molecule/anonymous/blobs/uploads/"
        status = host.check_output(
            f"curl -sS -o /dev/null -w '%{{http_code}}' -X {method} http://{BACKEND}{path}"
        )
        assert status == "401", method


@pytest.mark.parametrize(
    ("path", "mode", "group"),
    [
        (f"{PKI}/ca.key", 0o600, "root"),
        (f"{PKI}/server.key", 0o640, "docker-registry"),
        ("/etc/docker/registry/htpasswd", 0o640, "docker-registry"),
        # nginx's workers (www-data) read it at each request.
        ("/etc/docker/registry/htpasswd-push", 0o640, "www-data"),
    ],
)
def test_secrets_not_world_readable(host, path, mode, group):
    secret = host.file(path)
    assert secret.user == "root"
    assert secret.group == group
    assert secret.mode == mode


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/etc/docker/registry/htpasswd", ["pusher", "reader"]),
        ("/etc/docker/registry/htpasswd-push", ["pusher"]),
    ],
)
def test_htpasswd_holds_exactly_the_users_with_bcrypt(host, path, expected):
    lines = host.file(path).content_string.split()
    users = dict(line.split(":", 1) for line in lines)
    # prepare.yml left "stale" (and "reader" in the push file); the role removes users
    # it does not list, and pull-only users from the push file.
    assert sorted(users) == expected
    # bcrypt at registry_bcrypt_cost (the default, 10): what every request pays.
    assert all(h.startswith("$2b$10$") for h in users.values())


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
    status, headers = http_headers(host, "/v2/")
    assert status == "401"
    # What `docker login` needs to find a v2 registry with basic auth.
    assert headers["www-authenticate"] == f'Basic realm="{REALM}"'
    assert headers["docker-distribution-api-version"] == "registry/2.0"


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


def test_pull_only_user_cannot_start_an_upload(host):
    path = "/v2/molecule/probe/blobs/uploads/"
    status, headers = http_headers(host, path, "-X", "POST", "-u", auth("reader"))
    assert status == "401"
    assert headers["www-authenticate"] == f'Basic realm="{REALM}"'
    assert headers["docker-distribution-api-version"] == "registry/2.0"
    assert http_status(host, path, "-X", "POST") == "401"


def test_pull_only_user_cannot_delete(host, pushed):
    _, digest, _ = pushed
    path = f"/v2/molecule/probe/manifests/{digest}"
    accept = "Accept: application/vnd.docker.distribution.manifest.v2+json"
    assert http_status(host, path, "-u", auth("reader"), "-X", "DELETE") == "401"
    assert http_status(host, path, "-u", auth("reader"), "-H", accept, "-I") == "200"


def test_pull_only_user_docker_push_refused(host):
    """`docker push` as reader (its own client config, so pusher's login stays) fails."""
    ctx = host.check_output("mktemp -d")
    config = host.check_output("mktemp -d")
    repository = f"{REGISTRY}/molecule/reader-push"
    host.check_output(f"printf 'reader push probe\\n' > {ctx}/probe.txt")
    host.check_output(f"printf 'FROM scratch\\nCOPY probe.txt /probe.txt\\n' > {ctx}/Dockerfile")
    try:
        build = host.run(f"docker build -t {repository}:1 {ctx}")
        assert build.rc == 0, build.stderr
        login = host.run(
            f"printf %s {shlex.quote(password('reader'))} | DOCKER_CONFIG={config} "
            f"docker login --username reader --password-stdin {REGISTRY}"
        )
        assert login.rc == 0, login.stderr
        push = host.run(f"DOCKER_CONFIG={config} docker push {repository}:1")
        output = push.stdout + push.stderr
        assert push.rc != 0, output
        assert "401" in output or "unauthorized" in output.lower(), output
        v2 = f"{STORAGE}/docker/registry/v2"
        assert not host.file(f"{v2}/repositories/molecule/reader-push").exists
    finally:
        host.run(f"docker image rm {repository}:1")
        host.run(f"rm -rf {ctx} {config}")


def test_push_user_streams_a_chunked_upload(host):
    """An 8 MiB blob sent with chunked transfer encoding (no length) through the proxy."""
    blob = host.check_output("mktemp")
    try:
        host.check_output(f"head -c 8388608 /dev/urandom > {blob}")
        digest = "sha256:" + host.check_output(f"sha256sum {blob}").split()[0]
        status, headers = http_headers(
            host, "/v2/molecule/chunked/blobs/uploads/", "-X", "POST", "-u", auth("pusher")
        )
        assert status == "202"
        location = headers["location"]
        # Built by the registry from the Host and X-Forwarded-Proto the proxy passes.
        assert location.startswith(f"https://{REGISTRY}/v2/molecule/chunked/blobs/uploads/")
        status, headers = http_headers(
            host, location, "-X", "PATCH", "-u", auth("pusher"),
            "-H", "Content-Type: application/octet-stream",
            "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{blob}",
        )  # fmt: skip
        assert status == "202"
        assert headers["range"] == "0-8388607"
        status, _ = http_headers(
            host, f"{headers['location']}&digest={digest}", "-X", "PUT", "-u", auth("pusher")
        )
        assert status == "201"
        pulled = host.check_output(
            f"curl -sS --cacert {CA} -u {shlex.quote(auth('reader'))} "
            f"https://{REGISTRY}/v2/molecule/chunked/blobs/{digest} | sha256sum"
        )
        assert "sha256:" + pulled.split()[0] == digest
    finally:
        host.run(f"rm -f {blob}")


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
    pusher = auth("pusher")
    accept = "Accept: application/vnd.docker.distribution.manifest.v2+json"
    assert http_status(host, path, "-u", pusher, "-H", accept, "-I") == "200"
    assert http_status(host, path, "-u", pusher, "-X", "DELETE") == "202"
    assert http_status(host, path, "-u", pusher, "-H", accept, "-I") == "404"
    host.run(f"docker image rm {repository}@{digest}")
