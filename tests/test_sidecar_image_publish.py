"""roles/sidecar_image/tasks/publish.yml (publish_image.yml) without a registry: the real
tasks run by ansible-playbook on the controller, against a fake engine (fake_docker.py:
the local per-platform images) and a fake `docker` CLI that answers
`docker buildx imagetools inspect|create` from a JSON file, as Buildx 0.13 prints them.

What it shows: a rerun with the registry up to date changes nothing; stale tags are
pointed at one manifest list, by digest, in one `imagetools create`; under --check the
reads still run, the create runs with --dry-run and nothing is written; a registry that
cannot be read stops with what Buildx said. Not shown here: the push itself (the fake
engine has no push) and real Buildx (the lab runs those: roles/sidecar_image/README.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_local import ANSIBLE_PLAYBOOK, REPO, ansible_env
from fake_docker import FakeDocker

NS = "reg.lab:5000/hailo-pipeline"
LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE = "application/vnd.docker.distribution.manifest.v2+json"
TAGS = {"hailo-runtime": ["0.1.0", "abc1234", "latest"], "tcn-encoder": ["0.2.0", "abc1234"]}
VERSIONS = {"hailo-runtime": "0.1.0", "tcn-encoder": "0.2.0"}
ARCHS = ["arm64", "amd64"]
PY = f"ansible_python_interpreter={sys.executable}"

# `docker buildx imagetools` as far as publish_image.yml uses it; every call is logged.
FAKE_CLI = """#!{python}
import hashlib, json, os, sys
state, log = os.environ["FAKE_REGISTRY"], os.environ["FAKE_CALLS"]
args = sys.argv[1:]
with open(log, "a") as f:
    f.write(json.dumps({{"args": args, "SSL_CERT_FILE": os.environ.get("SSL_CERT_FILE")}}) + "\\n")
registry = json.load(open(state))
if args[:4] != ["buildx", "imagetools", "inspect", "--builder"] and args[:4] != [
    "buildx", "imagetools", "create", "--builder"]:
    sys.exit("fake docker: not modelled: " + " ".join(args))
if os.environ.get("FAKE_FAIL"):
    sys.exit("ERROR: " + os.environ["FAKE_FAIL"])
rest = args[5:]
if args[2] == "inspect":
    assert rest[:2] == ["--format", "{{{{json .Manifest}}}}"], rest
    if rest[2] not in registry:
        sys.exit("ERROR: " + rest[2] + ": not found")
    print(json.dumps(registry[rest[2]], indent=2), end="")
    sys.exit(0)
tags = [a.removeprefix("--tag=") for a in rest if a.startswith("--tag=")]
sources = [a for a in rest if not a.startswith("--")]
manifests = [{{"mediaType": "{image}", "digest": s.split("@")[1], "size": 1}} for s in sources]
body = json.dumps(manifests)
index = {{"schemaVersion": 2, "mediaType": "{list}", "size": len(body), "manifests": manifests,
         "digest": "sha256:" + hashlib.sha256(body.encode()).hexdigest()}}
if "--dry-run" not in rest:
    registry.update({{tag: index for tag in tags}})
    json.dump(registry, open(state, "w"))
print(json.dumps(index))
"""

PLAYBOOK = """
- name: Publish with the role's own tasks
  hosts: localhost
  gather_facts: false
  vars:
    sidecar_image_registry: reg.lab:5000
    sidecar_image_namespace: hailo-pipeline
    sidecar_image_runtime_name: hailo-runtime
    sidecar_image_buildx_builder: default
    _sidecar_image_ca_path: /etc/docker/certs.d/reg.lab:5000/ca.crt
    _sidecar_image_git_sha: abc1234abc1234abc1234abc1234abc1234abc1
    _sidecar_image_revision: abc1234
    _sidecar_image_images: {images}
    _sidecar_image_builds: {builds}
  tasks:
    - name: Push
      ansible.builtin.include_role:
        name: sidecar_image
        tasks_from: publish
    - name: Keep what the release record would get
      ansible.builtin.copy:
        content: "{{{{ _sidecar_image_release_images | to_json }}}}"
        dest: {out}
        mode: "0644"
      check_mode: false
      changed_when: false
"""


class Lab:
    def __init__(self, tmp_path: Path, fake: FakeDocker) -> None:
        self.tmp, self.fake = tmp_path, fake
        self.state, self.calls = tmp_path / "registry.json", tmp_path / "calls.jsonl"
        self.out = tmp_path / "release_images.json"
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        cli = bin_dir / "docker"
        cli.write_text(FAKE_CLI.format(python=sys.executable, image=IMAGE, list=LIST))
        cli.chmod(0o755)
        # The per-platform images in the engine, each with the digest its push gave it.
        self.digests: dict[str, str] = {}
        for name, version in VERSIONS.items():
            for arch in ARCHS:
                ref = f"{NS}/{name}:{version}-{arch}"
                fake.add_image(f"{NS}/{name}", tags=(f"{version}-{arch}",), arch=arch)
                image = next(i for i in fake.images.values() if ref in i["RepoTags"])
                self.digests[ref] = image["RepoDigests"][0].split("@")[1]
        self.registry: dict[str, dict] = {}

    def pushed(self) -> None:
        """Every per-platform image is in the registry (as docker push left it)."""
        for ref, digest in self.digests.items():
            self.registry[ref] = {"mediaType": IMAGE, "digest": digest, "size": 1}

    def listed(self) -> None:
        """Every tag names a list of its platforms (made by the fake create itself)."""
        self.pushed()
        self.run_cli_create()

    def run_cli_create(self) -> None:
        self.state.write_text(json.dumps(self.registry))
        for name, version in VERSIONS.items():
            sources = [f"{NS}/{name}@{self.digests[f'{NS}/{name}:{version}-{a}']}" for a in ARCHS]
            tags = [f"--tag={NS}/{name}:{t}" for t in TAGS[name]]
            argv = [str(self.tmp / "bin/docker"), "buildx", "imagetools", "create", "--builder"]
            subprocess.run(
                [*argv, "default", *tags, *sources], env=self.env(), check=True, capture_output=True
            )
        self.registry = json.loads(self.state.read_text())

    def env(self, **extra: str) -> dict[str, str]:
        env = ansible_env(self.tmp, **extra)
        env["PATH"] = f"{self.tmp / 'bin'}:{Path(sys.executable).parent}:{env['PATH']}"
        env |= {"FAKE_REGISTRY": str(self.state), "FAKE_CALLS": str(self.calls)}
        env["DOCKER_HOST"] = f"unix://{self.fake.socket_path}"
        return env

    def run(self, *args: str, **extra: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
        self.state.write_text(json.dumps(self.registry))
        self.calls.write_text("")
        images = [
            {"name": n, "kind": "runtime" if n == "hailo-runtime" else "model"}
            | {"repo": f"{NS}/{n}", "version": v, "tags": TAGS[n]}
            for n, v in VERSIONS.items()
        ]
        builds = [
            {"image": n, "platform": f"linux/{a}", "ref": f"{NS}/{n}:{v}-{a}"}
            for n, v in VERSIONS.items()
            for a in ARCHS
        ]
        playbook = self.tmp / "publish.yml"
        playbook.write_text(
            PLAYBOOK.format(images=json.dumps(images), builds=json.dumps(builds), out=self.out)
        )
        result = subprocess.run(
            [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", str(playbook), *args, "-e", PY],
            env=self.env(**extra),
            capture_output=True,
            text=True,
            cwd=REPO,
            check=False,
        )
        self.registry = json.loads(self.state.read_text())
        calls = [json.loads(line) for line in self.calls.read_text().splitlines()]
        return result, calls


@pytest.fixture
def lab(tmp_path: Path, fake_docker: FakeDocker) -> Lab:
    return Lab(tmp_path, fake_docker)


def recap(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return result.stdout.rsplit("PLAY RECAP", 1)[1]


def creates(calls: list[dict]) -> list[list[str]]:
    return [c["args"] for c in calls if c["args"][2] == "create"]


def test_an_up_to_date_registry_changes_nothing(lab: Lab) -> None:
    lab.listed()
    before = dict(lab.registry)
    result, calls = lab.run()
    assert "changed=0" in recap(result)
    assert creates(calls) == []
    assert lab.registry == before
    # Nothing pushed or pointed: each per-platform tag and each tag is read once.
    inspected = [c["args"][-1] for c in calls if c["args"][2] == "inspect"]
    assert sorted(inspected) == sorted(
        [f"{NS}/{n}:{v}-{a}" for n, v in VERSIONS.items() for a in ARCHS]
        + [f"{NS}/{n}:{t}" for n, tags in TAGS.items() for t in tags]
    )
    # Every call trusts the registry's CA through SSL_CERT_FILE (Buildx ignores certs.d).
    assert {c["SSL_CERT_FILE"] for c in calls} == {"/etc/docker/certs.d/reg.lab:5000/ca.crt"}
    record = json.loads(lab.out.read_text())
    runtime = record["hailo-runtime"]
    assert runtime["digest"] == before[f"{NS}/hailo-runtime:0.1.0"]["digest"]
    assert runtime["reference"] == f"{NS}/hailo-runtime@{runtime['digest']}"
    assert runtime["platform_digests"] == {
        f"linux/{a}": lab.digests[f"{NS}/hailo-runtime:0.1.0-{a}"] for a in ARCHS
    }
    assert record["tcn-encoder"]["runtime"] == runtime["reference"]


def test_stale_tags_are_pointed_at_one_list_by_digest(lab: Lab) -> None:
    lab.pushed()
    # One tag already names the right list; the others name nothing or a single image.
    lab.registry[f"{NS}/tcn-encoder:abc1234"] = lab.registry[f"{NS}/tcn-encoder:0.2.0-arm64"]
    result, calls = lab.run()
    assert "changed=2" in recap(result)
    runtime, model = creates(calls)
    assert runtime == [
        "buildx",
        "imagetools",
        "create",
        "--builder",
        "default",
        *(f"--tag={NS}/hailo-runtime:{t}" for t in TAGS["hailo-runtime"]),
        *(f"{NS}/hailo-runtime@{lab.digests[f'{NS}/hailo-runtime:0.1.0-{a}']}" for a in ARCHS),
    ]
    assert [a for a in model if a.startswith("--tag")] == [
        f"--tag={NS}/tcn-encoder:0.2.0",
        f"--tag={NS}/tcn-encoder:abc1234",
    ]
    record = json.loads(lab.out.read_text())
    assert record["tcn-encoder"]["digest"] == lab.registry[f"{NS}/tcn-encoder:0.2.0"]["digest"]
    # The second run finds them all current.
    result, calls = lab.run()
    assert "changed=0" in recap(result)
    assert creates(calls) == []


def test_check_mode_reads_reports_the_retag_and_writes_nothing(lab: Lab) -> None:
    lab.pushed()
    before = dict(lab.registry)
    result, calls = lab.run("--check")
    assert "changed=2" in recap(result)
    assert [c[5] for c in creates(calls)] == ["--dry-run", "--dry-run"]
    assert lab.registry == before


def test_check_mode_with_a_platform_not_pushed_yet_does_not_fail(lab: Lab) -> None:
    lab.pushed()
    del lab.registry[f"{NS}/tcn-encoder:0.2.0-amd64"]
    result, calls = lab.run("--check")
    recap(result)
    assert len(creates(calls)) == 1  # the runtime's (dry run); the model's waits for its push


def test_a_registry_that_cannot_be_read_stops_with_buildxs_words(lab: Lab) -> None:
    lab.listed()
    error = "failed to do request: tls: failed to verify certificate: x509: unknown authority"
    result, _ = lab.run(FAKE_FAIL=error)
    assert result.returncode != 0
    assert f"The registry did not answer as expected for {NS}/hailo-runtime" in result.stdout
    assert "x509: unknown authority" in result.stdout
