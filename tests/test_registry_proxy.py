"""The registry role's pull-only logins: its authenticating proxy, rendered without Docker.

The role's own preflight tasks and templates run for real (ansible-playbook on this
machine, local connection, one inventory host per case with the case's variables as
host variables, so the role's defaults and vars keep their precedence); nothing is
installed or started. What nginx and the registry do with the result is checked by the
Molecule scenario `registry` (a real push and pull through the proxy).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from labtools import REPO

ROLE = REPO / "roles" / "registry"
PUSHER = {"name": "pusher", "password": "push-secret", "push": True}
READER = {"name": "reader", "password": "read-secret", "push": False}

# inventory host -> its variables (one role configuration each).
CASES: dict[str, dict[str, Any]] = {
    # The lab's shape: a push login and a pull-only login, everything else default.
    "proxied": {"registry_users": [PUSHER, READER]},
    # An inventory written before `push` existed: every user may push, as before.
    "legacy": {
        "registry_users": [
            {"name": "builder", "password": "b-secret"},
            {"name": "ci", "password": "c-secret"},
        ]
    },
    "own-address": {
        "registry_users": [PUSHER],
        "registry_listen_address": "10.1.2.3",
        "registry_port": 443,
        "registry_proxy_backend_port": 5443,
        "registry_tls_minimum_version": "tls1.3",
    },
    # Without the proxy: the registry serves TLS itself on registry_port, as before.
    "direct": {"registry_users": [PUSHER], "registry_proxy_enabled": False},
    # Preflight must refuse these, each with a message that says what to change.
    "pull-only-without-proxy": {
        "registry_users": [PUSHER, READER],
        "registry_proxy_enabled": False,
    },
    "nobody-pushes": {"registry_users": [READER]},
    "push-not-a-bool": {"registry_users": [{**READER, "push": "no"}]},
    "backend-on-the-same-port": {
        "registry_users": [PUSHER],
        "registry_proxy_backend_port": 5000,
    },
    # Written into nginx's and the registry's configuration as a quoted string.
    "quote-in-realm": {"registry_users": [PUSHER], "registry_auth_realm": 'my "lab"'},
}

# Per host: the role's preflight, then its templates and derived values into OUT/<host>/.
PLAYBOOK = """
- name: Render the registry role per case
  hosts: all
  gather_facts: true
  gather_subset: [min]
  tasks:
    - name: The role's preflight (and its defaults and vars for the tasks below)
      ansible.builtin.include_role:
        name: registry
        tasks_from: preflight
        public: true

    - name: Output directory
      ansible.builtin.file:
        path: "{{ out }}/{{ inventory_hostname }}"
        state: directory
        mode: "0755"

    - name: The registry's configuration
      ansible.builtin.template:
        src: "{{ role }}/templates/config.yml.j2"
        dest: "{{ out }}/{{ inventory_hostname }}/config.yml"
        mode: "0644"

    - name: The proxy's site
      ansible.builtin.template:
        src: "{{ role }}/templates/proxy.conf.j2"
        dest: "{{ out }}/{{ inventory_hostname }}/proxy.conf"
        mode: "0644"
      when: registry_proxy_enabled | bool

    - name: Derived values
      ansible.builtin.copy:
        content: >-
          {{ {'push_users': _registry_push_users,
              'pull_only_users': _registry_pull_only_users,
              'push_htpasswd_path': _registry_push_htpasswd_path,
              'address': _registry_hostport | trim} | to_json }}
        dest: "{{ out }}/{{ inventory_hostname }}/derived.json"
        mode: "0644"
"""


class Rendered:
    def __init__(self, out: Path, results: dict[str, dict[str, Any]]) -> None:
        self.out = out
        self.results = results

    def failure(self, host: str) -> str:
        """The failed task's message for host ('' when every task passed)."""
        return self.results.get(host, {}).get("failed_msg", "")

    def ok(self, host: str) -> Path:
        assert not self.failure(host), self.failure(host)
        return self.out / host

    def registry_config(self, host: str) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load((self.ok(host) / "config.yml").read_text())
        return data

    def proxy(self, host: str) -> list[Any]:
        return parse_nginx((self.ok(host) / "proxy.conf").read_text())

    def derived(self, host: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.ok(host) / "derived.json").read_text())
        return data


def host_results(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per host, the message of its first failed task (json callback output)."""
    results: dict[str, dict[str, Any]] = {host: {} for host in CASES}
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                if result.get("failed") and "failed_msg" not in results[host]:
                    # A looped task: the first failed item's message.
                    items = [r for r in result.get("results", []) if r.get("failed")]
                    message = (items[0] if items else result).get("msg") or json.dumps(result)
                    results[host]["failed_msg"] = " ".join(str(message).split())
    return results


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    tmp = tmp_path_factory.mktemp("registry")
    out = tmp / "out"
    inventory = {
        "all": {
            "hosts": {
                name: {
                    **case,
                    "ansible_connection": "local",
                    "ansible_python_interpreter": sys.executable,
                }
                for name, case in CASES.items()
            }
        }
    }
    (tmp / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp / "play.yml").write_text(PLAYBOOK)
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_NOCOLOR": "1",
    }
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i", str(tmp / "hosts.yml"),
            "-e", json.dumps({"out": str(out), "role": str(ROLE)}),
            str(tmp / "play.yml"),
        ],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    # rc 2: some hosts failed (the preflight cases); anything else is a broken run.
    assert run.returncode in (0, 2), run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(run.stdout[run.stdout.index("{") :])
    return Rendered(out, host_results(report))


# --- a small nginx configuration reader: [name, args, block or None] per directive ---


def parse_nginx(text: str) -> list[Any]:
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|[{};]|[^\s{};"]+', re.sub(r"#[^\n]*", "", text))
    stack: list[list[Any]] = [[]]
    words: list[str] = []
    for token in tokens:
        if token == ";":
            stack[-1].append([words[0], words[1:], None])
            words = []
        elif token == "{":
            block: list[Any] = []
            stack[-1].append([words[0], words[1:], block])
            stack.append(block)
            words = []
        elif token == "}":
            assert not words, words
            stack.pop()
        else:
            words.append(json.loads(token) if token.startswith('"') else token)
    assert len(stack) == 1, "unbalanced braces"
    assert not words, words
    return stack[0]


def directives(block: list[Any], name: str) -> list[list[str]]:
    return [args for n, args, _ in block if n == name]


def one(block: list[Any], name: str) -> list[str]:
    found = directives(block, name)
    assert len(found) == 1, (name, found)
    return found[0]


def child(block: list[Any], name: str, *args: str) -> list[Any]:
    found = [b for n, a, b in block if n == name and tuple(a) == args]
    assert len(found) == 1, (name, args, [(n, a) for n, a, _ in block])
    return found[0]


def server(conf: list[Any]) -> list[Any]:
    return child(conf, "server")


# --- the registry behind the proxy ---


def test_registry_listens_on_loopback_without_tls_behind_the_proxy(rendered: Rendered) -> None:
    http = rendered.registry_config("proxied")["http"]
    assert http["addr"] == "127.0.0.1:5001"
    assert "tls" not in http


def test_registry_still_asks_every_user_for_a_login(rendered: Rendered) -> None:
    # The proxy checks only writes; the registry authenticates every request itself
    # (reads for every user, and no login-free loophole on the loopback port).
    auth = rendered.registry_config("proxied")["auth"]
    assert auth["htpasswd"] == {
        "realm": "hailo-pipeline registry",
        "path": "/etc/docker/registry/htpasswd",
    }


def test_without_the_proxy_the_registry_serves_tls_itself(rendered: Rendered) -> None:
    http = rendered.registry_config("direct")["http"]
    assert http["addr"] == ":5000"
    assert http["tls"]["certificate"] == "/etc/docker/registry/pki/server.crt"
    assert http["tls"]["key"] == "/etc/docker/registry/pki/server.key"


# --- the proxy ---


def test_proxy_terminates_tls_on_the_registry_port_with_the_role_certificate(
    rendered: Rendered,
) -> None:
    site = server(rendered.proxy("proxied"))
    assert directives(site, "listen") == [["5000", "ssl"]]
    assert one(site, "ssl_certificate") == ["/etc/docker/registry/pki/server.crt"]
    assert one(site, "ssl_certificate_key") == ["/etc/docker/registry/pki/server.key"]
    assert one(site, "ssl_protocols") == ["TLSv1.2", "TLSv1.3"]


def test_proxy_listens_where_the_registry_did(rendered: Rendered) -> None:
    site = server(rendered.proxy("own-address"))
    assert directives(site, "listen") == [["10.1.2.3:443", "ssl"]]
    assert one(site, "ssl_protocols") == ["TLSv1.3"]
    v2 = child(site, "location", "/v2/")
    assert one(v2, "proxy_pass") == ["http://127.0.0.1:5443"]
    # registry_address: no port for 443.
    assert rendered.derived("own-address")["address"] == "own-address"


def test_proxy_passes_reads_and_lets_only_push_users_write(rendered: Rendered) -> None:
    site = server(rendered.proxy("proxied"))
    v2 = child(site, "location", "/v2/")
    assert one(v2, "proxy_pass") == ["http://127.0.0.1:5001"]
    # Reads (GET, HEAD) go to the registry, which asks for a login itself.
    for level in (site, v2):
        assert not directives(level, "auth_basic")
        assert not directives(level, "auth_basic_user_file")
    # Every other method needs a user of the push file.
    writes = child(v2, "limit_except", "GET", "HEAD")
    assert one(writes, "auth_basic") == ["hailo-pipeline registry"]
    assert one(writes, "auth_basic_user_file") == ["/etc/docker/registry/htpasswd-push"]


def test_proxy_streams_uploads_and_forwards_what_the_registry_needs(rendered: Rendered) -> None:
    site = server(rendered.proxy("proxied"))
    v2 = child(site, "location", "/v2/")
    assert one(site, "client_max_body_size") == ["0"]
    assert one(v2, "proxy_request_buffering") == ["off"]
    assert one(v2, "proxy_http_version") == ["1.1"]
    headers = {args[0]: args[1] for args in directives(v2, "proxy_set_header")}
    # Upload URLs (Location) are built from these.
    assert headers["Host"] == "$http_host"
    assert headers["X-Forwarded-Proto"] == "$scheme"


def test_proxy_sends_the_api_version_header_on_its_own_answers(rendered: Rendered) -> None:
    conf = rendered.proxy("proxied")
    v2 = child(server(conf), "location", "/v2/")
    name, value, *flags = one(v2, "add_header")
    assert name == "Docker-Distribution-Api-Version"
    assert flags == ["always"]
    # Set only when the registry did not send it (no duplicate on its answers).
    mapping = child(conf, "map", "$upstream_http_docker_distribution_api_version", value)
    assert mapping == [["", ["registry/2.0"], None]]


# --- who may push ---


def test_users_marked_push_false_are_pull_only(rendered: Rendered) -> None:
    derived = rendered.derived("proxied")
    assert derived["push_users"] == ["pusher"]
    assert derived["pull_only_users"] == ["reader"]
    assert derived["push_htpasswd_path"] == "/etc/docker/registry/htpasswd-push"


def test_users_without_push_may_push_as_before(rendered: Rendered) -> None:
    derived = rendered.derived("legacy")
    assert derived["push_users"] == ["builder", "ci"]
    assert derived["pull_only_users"] == []


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("pull-only-without-proxy", "pull-only users (reader) need the proxy"),
        ("nobody-pushes", "no user may push"),
        ("push-not-a-bool", "'push' must be true or false"),
        ("backend-on-the-same-port", "registry_proxy_backend_port (5000) must differ"),
        ("quote-in-realm", "registry_auth_realm must be printable ASCII without double quotes"),
    ],
)
def test_preflight_refuses(rendered: Rendered, case: str, message: str) -> None:
    assert message in rendered.failure(case)


def test_preflight_passes_the_good_cases(rendered: Rendered) -> None:
    for case in ("proxied", "legacy", "own-address", "direct"):
        assert rendered.failure(case) == "", case


# --- the role's interface ---


def test_argument_specs_document_push_and_the_proxy() -> None:
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    push = options["registry_users"]["options"]["push"]
    assert push["type"] == "bool"
    assert push["default"] is True
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert defaults["registry_proxy_enabled"] is True
    # Every default is documented in the argument specs.
    assert sorted(set(defaults) - set(options)) == []
