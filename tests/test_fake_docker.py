"""The fake Docker engine answers as engine 26.1.5 does, endpoint by endpoint.

Each test talks to it the way the modules do: http.client over the Unix socket, one
connection per request, `Host: docker`, JSON bodies, whole responses read. The expected
wording comes from moby v26.1.5 (see fake_docker.py).
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fake_docker import FakeDocker
from sidecar_deploy_modules import docker

REPO = "registry.lab:5000/hailo/sidecar"
NANOS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")


def call(
    fake: FakeDocker,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    conn = docker.UnixHTTPConnection(fake.socket_path, timeout=5)
    try:
        sent = {"Host": "docker", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=sent)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def api(fake: FakeDocker, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    """Status and decoded JSON body; an error body is reduced to its message."""
    status, raw = call(fake, method, path, body, **kw)
    data = json.loads(raw) if raw else None
    return status, data["message"] if status >= 400 and isinstance(data, dict) else data


def pull(fake: FakeDocker, query: str, **kw: Any) -> tuple[int, list[dict[str, Any]]]:
    status, raw = call(fake, "POST", f"/v1.41/images/create?{query}", **kw)
    lines = [json.loads(line) for line in raw.split(b"\r\n") if line]
    return status, lines[0]["message"] if status >= 400 else lines


def auth(username: str, password: str) -> dict[str, str]:
    data = {"username": username, "password": password, "serveraddress": "registry.lab:5000"}
    return {"X-Registry-Auth": base64.urlsafe_b64encode(json.dumps(data).encode()).decode()}


def create(fake: FakeDocker, name: str, image: str = f"{REPO}:1.0", **body: Any) -> tuple[int, Any]:
    path = f"/v1.41/containers/create?name={quote(name)}"
    return api(fake, "POST", path, {"Image": image, **body})


def inspect(fake: FakeDocker, name: str) -> dict[str, Any]:
    status, container = api(fake, "GET", f"/containers/{name}/json")
    assert status == 200, container
    return container


def error(message: str) -> dict[str, Any]:
    return {"errorDetail": {"message": message}, "error": message}


# ------------------------------------------------------------------ system
def test_ping_version_info(fake_docker: FakeDocker) -> None:
    assert call(fake_docker, "GET", "/_ping") == (200, b"OK")
    status, version = api(fake_docker, "GET", "/v1.41/version")
    assert status == 200
    assert (version["Version"], version["ApiVersion"]) == ("26.1.5", "1.45")
    assert (version["Os"], version["Arch"]) == ("linux", "amd64")
    status, info = api(fake_docker, "GET", "/info")
    assert status == 200
    assert Path(info["DockerRootDir"]).is_dir()


def test_api_version_out_of_range(fake_docker: FakeDocker) -> None:
    too_new = "client version 1.46 is too new. Maximum supported API version is 1.45"
    assert api(fake_docker, "GET", "/v1.46/version") == (400, too_new)
    status, message = api(fake_docker, "GET", "/v1.12/version")
    assert (status, message[:32]) == (400, "client version 1.12 is too old. ")


def test_unknown_endpoint_is_page_not_found_and_recorded(fake_docker: FakeDocker) -> None:
    assert api(fake_docker, "GET", "/v1.41/volumes") == (404, "page not found")
    assert api(fake_docker, "PUT", "/containers/x/start") == (404, "page not found")
    assert fake_docker.calls == [
        ("GET", "/volumes", {}),
        ("PUT", "/containers/x/start", {}),
    ]


def test_image_list_by_reference(fake_docker: FakeDocker) -> None:
    kept = fake_docker.add_image("local.test/keep", tags=("one", "two"))
    fake_docker.add_image("docker.io/library/other", tags=("latest",))
    filters = json.dumps({"reference": ["local.test/keep"]})
    status, body = api(fake_docker, "GET", f"/images/json?filters={quote(filters)}")
    assert status == 200
    assert [i["Id"] for i in body] == [kept]
    assert sorted(body[0]["RepoTags"]) == ["local.test/keep:one", "local.test/keep:two"]


def test_stop_removes_the_socket(tmp_path: Path) -> None:
    fake = FakeDocker(tmp_path / "d.sock").start()
    assert call(fake, "GET", "/_ping")[0] == 200
    fake.stop()
    assert not (tmp_path / "d.sock").exists()


# ------------------------------------------------------------------ images
def test_image_inspect_by_id_reference_digest_and_prefix(fake_docker: FakeDocker) -> None:
    digest = "sha256:" + "d" * 64
    image_id = fake_docker.add_image(REPO, digest=digest, tags=("1.0",))
    for ref in (image_id, f"{REPO}:1.0", f"{REPO}@{digest}", image_id[7:19]):
        status, image = api(fake_docker, "GET", f"/v1.41/images/{quote(ref, safe='')}/json")
        assert status == 200, ref
        assert (image["RepoTags"], image["RepoDigests"]) == ([f"{REPO}:1.0"], [f"{REPO}@{digest}"])
        assert (image["Id"], image["Architecture"], image["Os"]) == (image_id, "arm64", "linux")
    assert api(fake_docker, "GET", f"/images/{REPO}/json") == (
        404,
        f"No such image: {REPO}:latest",
    )


def test_image_references_are_normalized_like_the_engine(fake_docker: FakeDocker) -> None:
    image_id = fake_docker.add_image("alpine", tags=("3.20",))
    assert fake_docker.images[image_id]["RepoTags"] == ["alpine:3.20"]
    assert api(fake_docker, "GET", "/images/docker.io/library/alpine:3.20/json")[0] == 200
    lowercase = "invalid reference format: repository name (library/Alpine) must be lowercase"
    assert api(fake_docker, "GET", "/images/Alpine/json") == (400, lowercase)


def test_pull_by_tag_streams_progress_and_records_tag_and_digest(fake_docker: FakeDocker) -> None:
    digest = fake_docker.publish(REPO, tags=("1.0",))
    status, lines = pull(fake_docker, f"fromImage={REPO}&tag=1.0&platform=linux/arm64")
    assert status == 200
    assert lines[0] == {"status": f"Pulling from {REPO}", "id": "1.0"}
    assert lines[-2:] == [
        {"status": f"Digest: {digest}"},
        {"status": f"Status: Downloaded newer image for {REPO}:1.0"},
    ]
    (image,) = fake_docker.images.values()
    assert (image["RepoTags"], image["RepoDigests"]) == ([f"{REPO}:1.0"], [f"{REPO}@{digest}"])
    status, lines = pull(fake_docker, f"fromImage={REPO}&tag=1.0")
    assert lines[-1] == {"status": f"Status: Image is up to date for {REPO}:1.0"}
    assert {"status": "Already exists", "progressDetail": {}, "id": image["Id"][7:19]} in lines


def test_pull_by_digest_gives_an_image_without_tags(fake_docker: FakeDocker) -> None:
    digest = fake_docker.publish(REPO)
    status, lines = pull(fake_docker, f"fromImage={REPO}&tag={digest}")
    assert (status, lines[-1]) == (
        200,
        {"status": f"Status: Downloaded newer image for {REPO}@{digest}"},
    )
    (image,) = fake_docker.images.values()
    assert (image["RepoTags"], image["RepoDigests"]) == ([], [f"{REPO}@{digest}"])


def test_pull_failures_before_the_stream_are_http_errors(fake_docker: FakeDocker) -> None:
    query = f"fromImage={REPO}&tag=1.0"
    unknown = f"manifest for {REPO}:1.0 not found: manifest unknown: manifest unknown"
    assert pull(fake_docker, query) == (404, unknown)
    fake_docker.publish(REPO, tags=("1.0",))
    fake_docker.registry_up = False
    refused = (
        'Get "https://registry.lab:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection refused'
    )
    assert pull(fake_docker, query) == (500, refused)
    fake_docker.registry_up = True
    fake_docker.registry_auth = {"username": "ci", "password": "s3cret"}
    url = "https://registry.lab:5000/v2/hailo/sidecar/manifests/1.0"
    assert pull(fake_docker, query) == (500, f'Head "{url}": no basic auth credentials')
    wrong = pull(fake_docker, query, headers=auth("ci", "wrong"))
    assert wrong == (500, "unauthorized: authentication required")
    assert pull(fake_docker, query, headers=auth("ci", "s3cret"))[0] == 200
    assert len(fake_docker.images) == 1


def test_pull_errors_inside_the_stream_answer_200(fake_docker: FakeDocker) -> None:
    fake_docker.publish(REPO, tags=("1.0",))
    fake_docker.publish(REPO, tags=("multi",), arch=["amd64"])
    full = "write /var/lib/docker/tmp/x: no space left on device"
    fake_docker.fail_next["pull"] = full
    status, lines = pull(fake_docker, f"fromImage={REPO}&tag=1.0")
    assert (status, lines[-1]) == (200, error(full))
    assert (fake_docker.images, fake_docker.fail_next) == ({}, {})
    status, lines = pull(fake_docker, f"fromImage={REPO}&tag=multi&platform=linux/arm64")
    no_match = "no matching manifest for linux/arm64 in the manifest list entries"
    assert (status, lines[-1]) == (200, error(no_match))


def test_pull_single_arch_mismatch_is_a_warning(fake_docker: FakeDocker) -> None:
    fake_docker.publish(REPO, tags=("1.0",), arch="amd64")
    status, lines = pull(fake_docker, f"fromImage={REPO}&tag=1.0&platform=linux/arm64")
    warning = (
        f"WARNING: image with reference {REPO}:1.0 was found but does not match the specified "
        "platform: wanted linux/arm64, actual: linux/amd64"
    )
    assert (status, lines[-1]) == (200, {"status": warning})


def test_pull_list_digest_for_a_second_platform_cannot_overwrite(fake_docker: FakeDocker) -> None:
    digest = fake_docker.publish(REPO, arch=["amd64", "arm64"])
    query = f"fromImage={REPO}&tag={digest}&platform=linux/"
    assert pull(fake_docker, query + "amd64")[1][-1]["status"].startswith("Status: Downloaded")
    status, lines = pull(fake_docker, query + "arm64")
    assert (status, lines[-1]) == (200, error(f"cannot overwrite digest {digest}"))


def test_tag_moves_the_tag_from_another_image(fake_docker: FakeDocker) -> None:
    old = fake_docker.add_image(REPO, tags=("latest",))
    new = fake_docker.add_image(REPO, tags=("1.1",))
    assert call(fake_docker, "POST", f"/images/{new}/tag?repo={REPO}&tag=latest") == (201, b"")
    assert fake_docker.images[old]["RepoTags"] == []
    assert fake_docker.images[new]["RepoTags"] == [f"{REPO}:1.1", f"{REPO}:latest"]
    missing = api(fake_docker, "POST", f"/images/{REPO}:9/tag?repo=x")
    assert missing == (404, f"No such image: {REPO}:9")


def test_delete_untags_then_deletes(fake_docker: FakeDocker) -> None:
    digest = "sha256:" + "e" * 64
    image_id = fake_docker.add_image(REPO, digest=digest, tags=("1.0", "latest"))
    untagged = api(fake_docker, "DELETE", f"/images/{REPO}:1.0")
    assert untagged == (200, [{"Untagged": f"{REPO}:1.0"}])
    assert api(fake_docker, "DELETE", f"/images/{REPO}") == (
        200,
        [
            {"Untagged": f"{REPO}:latest"},
            {"Untagged": f"{REPO}@{digest}"},
            {"Deleted": image_id},
        ],
    )
    assert fake_docker.images == {}


def test_delete_of_an_image_in_use(fake_docker: FakeDocker) -> None:
    image_id = fake_docker.add_image(REPO, tags=("1.0",))
    short = image_id[7:19]
    create(fake_docker, "sidecar")
    cid = next(iter(fake_docker.containers))[:12]
    in_use = (
        f'conflict: unable to remove repository reference "{REPO}:1.0" (must force) - '
        f"container {cid} is using its referenced image {short}"
    )
    assert api(fake_docker, "DELETE", f"/images/{REPO}:1.0") == (409, in_use)
    stopped = f"(must be forced) - image is being used by stopped container {cid}"
    by_id = api(fake_docker, "DELETE", f"/images/{image_id}")
    assert by_id == (409, f"conflict: unable to delete {short} {stopped}")
    call(fake_docker, "POST", "/containers/sidecar/start")
    running = f"(cannot be forced) - image is being used by running container {cid}"
    forced = api(fake_docker, "DELETE", f"/images/{image_id}?force=1")
    assert forced == (409, f"conflict: unable to delete {short} {running}")
    status, records = api(fake_docker, "DELETE", f"/images/{REPO}:1.0?force=1")
    assert (status, records[0]) == (200, {"Untagged": f"{REPO}:1.0"})
    assert fake_docker.images[image_id]["RepoTags"] == []  # left dangling, not deleted


# ------------------------------------------------------------------ containers
def test_create_merges_the_image_config_and_inspects(fake_docker: FakeDocker) -> None:
    image_id = fake_docker.add_image(REPO, tags=("1.0",))
    api(fake_docker, "POST", "/networks/create", {"Name": "hailo", "Driver": "bridge"})
    check = {"Test": ["CMD", "true"], "Interval": 5_000_000_000, "Retries": 3}
    body = {
        "Image": f"{REPO}:1.0",
        "User": "1000:1000",
        "Env": ["MODEL=yolo"],
        "Labels": {"a": "b"},
        "Healthcheck": check,
        "HostConfig": {"NetworkMode": "hailo"},
        "NetworkingConfig": {"EndpointsConfig": {"hailo": {"Aliases": ["sidecar"]}}},
    }
    path = "/v1.41/containers/create?name=sidecar&platform=linux/arm64"
    status, created = api(fake_docker, "POST", path, body)
    assert (status, created["Warnings"]) == (201, [])
    c = inspect(fake_docker, "sidecar")
    assert (c["Id"], c["Name"], c["Image"]) == (created["Id"], "/sidecar", image_id)
    assert c["Config"]["Env"] == ["MODEL=yolo", fake_docker.images[image_id]["Config"]["Env"][0]]
    assert (c["Config"]["Labels"], c["Config"]["Cmd"]) == ({"a": "b"}, ["/bin/sh"])
    assert (c["Config"]["User"], c["Config"]["Healthcheck"]) == ("1000:1000", check)
    assert (c["State"]["Status"], c["State"]["StartedAt"]) == ("created", "0001-01-01T00:00:00Z")
    assert c["RestartCount"] == 0
    assert "Health" not in c["State"]  # until the first start
    assert c["HostConfig"]["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert c["NetworkSettings"]["Networks"]["hailo"]["Aliases"] == ["sidecar"]
    # Without a platform the engine warns that an arm64 image does not suit an amd64 host.
    status, created = create(fake_docker, "other")
    assert status == 201
    assert "does not match the detected host platform" in created["Warnings"][0]


def test_create_refusals(fake_docker: FakeDocker) -> None:
    assert create(fake_docker, "sidecar") == (404, f"No such image: {REPO}:1.0")
    fake_docker.add_image(REPO, tags=("1.0",))
    for name in ("a", "bad name", "-x"):
        allowed = "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        assert create(fake_docker, name) == (400, f"Invalid container name ({name}), {allowed}")
    create(fake_docker, "sidecar")
    cid = next(iter(fake_docker.containers))
    conflict = (
        f'Conflict. The container name "/sidecar" is already in use by container "{cid}". '
        "You have to remove (or rename) that container to be able to reuse that name."
    )
    assert create(fake_docker, "sidecar") == (409, conflict)
    aliases = {"EndpointsConfig": {"bridge": {"Aliases": ["a"]}}}
    assert create(fake_docker, "x2", NetworkingConfig=aliases)[0] == 400
    seconds = {"Test": ["CMD", "true"], "Interval": 30}  # nanoseconds, in the API
    assert create(fake_docker, "x3", Healthcheck=seconds) == (
        400,
        "Interval in Healthcheck cannot be less than 1ms",
    )
    path = "/containers/create?name=x4&platform=linux/amd64"
    mismatch = (
        f"image with reference {REPO}:1.0 was found but does not match the specified platform: "
        "wanted linux/amd64, actual: linux/arm64"
    )
    assert api(fake_docker, "POST", path, {"Image": f"{REPO}:1.0"}) == (404, mismatch)
    empty = "config cannot be empty in order to create a container"
    assert api(fake_docker, "POST", "/containers/create?name=x5", {}) == (400, empty)
    text = {"Content-Type": "text/plain"}
    assert api(fake_docker, "POST", "/containers/create", {"Image": "x"}, headers=text)[0] == 400
    disk = "mkdir /var/lib/docker/overlay2/x: no space left on device"
    fake_docker.fail_next["create"] = (500, disk)
    assert create(fake_docker, "x6") == (500, disk)
    assert create(fake_docker, "x6")[0] == 201


def test_an_unknown_network_fails_the_start_not_the_create(fake_docker: FakeDocker) -> None:
    fake_docker.add_image(REPO, tags=("1.0",))
    assert create(fake_docker, "sidecar", HostConfig={"NetworkMode": "nope"})[0] == 201
    started = api(fake_docker, "POST", "/containers/sidecar/start")
    assert started == (404, "network nope not found")


def test_lifecycle(fake_docker: FakeDocker) -> None:
    fake_docker.add_image(REPO, tags=("1.0",))
    create(fake_docker, "sidecar")
    cid = next(iter(fake_docker.containers))
    assert call(fake_docker, "POST", "/v1.41/containers/sidecar/start") == (204, b"")
    state = inspect(fake_docker, "sidecar")["State"]
    assert (state["Status"], state["Running"]) == ("running", True)
    assert NANOS.fullmatch(state["StartedAt"])
    assert call(fake_docker, "POST", "/containers/sidecar/start") == (304, b"")
    assert call(fake_docker, "POST", "/containers/sidecar/stop?t=10") == (204, b"")
    assert call(fake_docker, "POST", "/containers/sidecar/stop") == (304, b"")
    assert call(fake_docker, "POST", "/containers/sidecar/restart") == (204, b"")
    assert call(fake_docker, "POST", "/containers/sidecar/kill") == (204, b"")
    state = inspect(fake_docker, "sidecar")["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)
    not_running = f"cannot kill container: sidecar: container {cid} is not running"
    assert api(fake_docker, "POST", "/containers/sidecar/kill") == (409, not_running)
    create(fake_docker, "other")
    assert call(fake_docker, "POST", "/containers/sidecar/rename?name=old")[0] == 204
    assert api(fake_docker, "POST", "/containers/old/rename?name=other")[0] == 409
    call(fake_docker, "POST", f"/containers/{cid[:12]}/start")
    running = (
        'cannot remove container "/old": container is running: stop the container before '
        "removing or force remove"
    )
    assert api(fake_docker, "DELETE", "/containers/old") == (409, running)
    assert call(fake_docker, "DELETE", "/containers/old?force=1&v=1") == (204, b"")
    assert api(fake_docker, "GET", f"/containers/{cid}/json") == (404, f"No such container: {cid}")


def test_start_failures_are_recorded_in_the_state(fake_docker: FakeDocker, tmp_path: Path) -> None:
    fake_docker.add_image(REPO, tags=("1.0",))
    device = tmp_path / "hailo0"
    device.touch()
    mapping = {"PathOnHost": str(device), "PathInContainer": "/dev/hailo0"}
    create(fake_docker, "sidecar", HostConfig={"Devices": [mapping]})
    device.unlink()
    missing = (
        f'error gathering device information while adding custom device "{device}": '
        "no such file or directory"
    )
    assert api(fake_docker, "POST", "/containers/sidecar/start") == (500, missing)
    state = inspect(fake_docker, "sidecar")["State"]
    assert (state["Status"], state["ExitCode"], state["Error"]) == ("created", 128, missing)
    device.touch()
    assert call(fake_docker, "POST", "/containers/sidecar/start")[0] == 204
    fake_docker.fail_next["start"] = (500, "OCI runtime create failed")
    create(fake_docker, "flaky")
    failed = api(fake_docker, "POST", "/containers/flaky/start")
    assert failed == (500, "OCI runtime create failed")
    assert call(fake_docker, "POST", "/containers/flaky/start")[0] == 204


def test_two_running_containers_cannot_publish_the_same_port(fake_docker: FakeDocker) -> None:
    fake_docker.add_image(REPO, tags=("1.0",))
    ports = {"PortBindings": {"9000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9000"}]}}
    create(fake_docker, "blue", HostConfig=ports)
    create(fake_docker, "green", HostConfig=ports)
    assert call(fake_docker, "POST", "/containers/blue/start")[0] == 204
    status, message = api(fake_docker, "POST", "/containers/green/start")
    assert status == 500
    assert re.fullmatch(
        r"driver failed programming external connectivity on endpoint green \([0-9a-f]{64}\): "
        r"Bind for 127\.0\.0\.1:9000 failed: port is already allocated",
        message,
    )
    call(fake_docker, "POST", "/containers/blue/stop")
    assert call(fake_docker, "POST", "/containers/green/start")[0] == 204


def test_list_with_filters(fake_docker: FakeDocker) -> None:
    image_id = fake_docker.add_image(REPO, tags=("1.0",))
    create(fake_docker, "sidecar", Labels={"role": "sidecar"})
    create(fake_docker, "bench", Labels={"role": "bench"})
    call(fake_docker, "POST", "/containers/bench/start")
    assert [c["Names"] for c in api(fake_docker, "GET", "/containers/json")[1]] == [["/bench"]]
    label = quote(json.dumps({"label": ["role=sidecar"]}))
    status, (listed,) = api(fake_docker, "GET", f"/containers/json?all=1&filters={label}")
    assert (status, listed["Names"], listed["Labels"]) == (200, ["/sidecar"], {"role": "sidecar"})
    assert (listed["State"], listed["Status"]) == ("created", "Created")
    assert (listed["Image"], listed["ImageID"]) == (f"{REPO}:1.0", image_id)
    name = quote(json.dumps({"name": ["ben"]}))  # a regular expression, as in the engine
    assert len(api(fake_docker, "GET", f"/containers/json?all=1&filters={name}")[1]) == 1
    bad = quote(json.dumps({"colour": ["blue"]}))
    assert api(fake_docker, "GET", f"/containers/json?filters={bad}") == (
        400,
        "invalid filter 'colour'",
    )


def test_logs_are_multiplexed(fake_docker: FakeDocker) -> None:
    fake_docker.add_image(REPO, tags=("1.0",))
    create(fake_docker, "sidecar")
    for line, stream in (("one", "stdout"), ("two", "stderr"), ("three", "stdout")):
        fake_docker.add_log("sidecar", line, stream)
    logs = "/containers/sidecar/logs?stdout=1&stderr=1&tail=2"
    frames = b"\x02\0\0\0\0\0\0\x04two\n\x01\0\0\0\0\0\0\x06three\n"
    assert call(fake_docker, "GET", logs) == (200, frames)
    assert call(fake_docker, "GET", "/containers/sidecar/logs?stdout=1&tail=1")[1] == frames[12:]
    no_stream = api(fake_docker, "GET", "/containers/sidecar/logs")
    assert no_stream == (400, "You must choose at least one stream")


def test_health_restart_and_exit_hooks(fake_docker: FakeDocker) -> None:
    fake_docker.add_image(REPO, tags=("1.0",))
    create(fake_docker, "sidecar", Healthcheck={"Test": ["CMD", "true"], "Interval": 10**9})
    call(fake_docker, "POST", "/containers/sidecar/start")
    before = inspect(fake_docker, "sidecar")
    assert before["State"]["Health"]["Status"] == "starting"
    (listed,) = api(fake_docker, "GET", "/containers/json")[1]
    assert listed["Status"] == "Up Less than a second (health: starting)"
    fake_docker.set_health("sidecar", "healthy", "ok")
    assert inspect(fake_docker, "sidecar")["State"]["Health"]["Status"] == "healthy"
    fake_docker.restart("sidecar")
    after = inspect(fake_docker, "sidecar")
    assert after["RestartCount"] == 1
    assert after["State"]["StartedAt"] != before["State"]["StartedAt"]
    assert after["State"]["Health"]["Status"] == "starting"
    fake_docker.exit("sidecar", 3, restarting=True)
    state = inspect(fake_docker, "sidecar")["State"]
    assert (state["Status"], state["Restarting"], state["ExitCode"]) == ("restarting", True, 3)
    fake_docker.exit("sidecar", 3)
    call(fake_docker, "POST", "/containers/sidecar/start")
    assert inspect(fake_docker, "sidecar")["RestartCount"] == 0  # an API start resets it
    create(fake_docker, "plain")
    with pytest.raises(ValueError, match="no running healthcheck"):
        fake_docker.set_health("plain", "healthy")


# ------------------------------------------------------------------ networks
def test_networks(fake_docker: FakeDocker) -> None:
    assert api(fake_docker, "GET", "/v1.41/networks/bridge")[1]["Name"] == "bridge"
    assert api(fake_docker, "GET", "/networks/hailo") == (404, "network hailo not found")
    body = {"Name": "hailo", "Driver": "bridge", "CheckDuplicate": True}
    status, created = api(fake_docker, "POST", "/networks/create", body)
    assert (status, created["Warning"], len(created["Id"])) == (201, "", 64)
    assert api(fake_docker, "GET", f"/networks/{created['Id'][:12]}")[1]["Name"] == "hailo"
    again = api(fake_docker, "POST", "/networks/create", {"Name": "hailo"})
    assert again == (409, "network with name hailo already exists")
    assert api(fake_docker, "POST", "/networks/create", {"Name": "host"})[0] == 403
