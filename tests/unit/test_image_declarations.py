"""`make image` (scripts/build-image) and the Dockerfile declare the same image: user,
entrypoint, command, ports, the runtime environment and the state directory; deploy/ runs it
with that user, those ports and that state path."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.images import REPO, build_image_module, dockerfile_declarations, dockerfile_final_stage


def test_build_image_declares_what_the_dockerfile_declares() -> None:
    image = build_image_module()
    docker = dockerfile_declarations()
    assert docker["user"] == image.USER
    assert docker["entrypoint"] == image.ENTRYPOINT
    assert docker["cmd"] == image.CMD
    assert docker["ports"] == set(image.PORTS)
    assert docker["state_dir"] == image.STATE_DIR
    assert docker["state_owner"] == image.USER
    ours = dict(item.split("=", 1) for item in image.ENV)
    for key in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "HOME"):
        assert docker["env"][key] == ours[key], key
    # Both images carry git (airgap import fetches bundles with it) and gpg.
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    for package in ("git", "gnupg", "ca-certificates"):
        assert f" {package}" in dockerfile and package in image.DEBIAN_PACKAGES, package


def test_deployment_runs_the_image_as_declared() -> None:
    image = build_image_module()
    deployment = yaml.safe_load(Path(REPO / "deploy" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    uid, gid = image.USER.split(":")
    assert (
        str(pod["securityContext"]["runAsUser"]),
        str(pod["securityContext"]["runAsGroup"]),
    ) == (
        uid,
        gid,
    )
    assert {f"{p['containerPort']}/{p['protocol'].lower()}" for p in container["ports"]} == set(
        image.PORTS
    )
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert image.STATE_DIR in mounts
    assert f"--state-dir={image.STATE_DIR}" in container["args"]
    # The image's reference is the one deploy/ names (containerd adds docker.io/library/).
    assert image.reference() == f"docker.io/library/{container['image']}"


def test_dockerfile_parser_reads_the_final_stage_only() -> None:
    # The build stage's WORKDIR and COPY lines must not leak into what the image declares.
    words = [word for word, _ in dockerfile_final_stage()]
    assert words[0] == "FROM" and "WORKDIR" not in words
