"""convert(): the structured KubePkg rules upstream's fixtures do not reach, one case each."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gitops_kubepkg.reconcile.render import RenderOptions, render_objects
from gitops_kubepkg.spec import parse_image
from gitops_kubepkg.spec.convert import ConvertError, convert, merge, sub_resource_name

DIGEST = "sha256:" + "c" * 64


def kpkg(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "web", "namespace": "team"},
        "spec": {"version": "1.0.0", **spec},
    }


NGINX = {"image": {"name": "docker.io/library/nginx", "tag": "1.25"}}


def by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def pod(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    result: dict[str, Any] = spec["template"]["spec"]
    return result


@pytest.mark.parametrize(
    ("key", "name"),
    [("#", "web"), ("", "web"), ("~shared", "shared"), ("/shared", "shared"),
     ("@shared", "shared"), ("html", "web-html")],
)  # fmt: skip
def test_sub_resource_names(key: str, name: str) -> None:
    assert sub_resource_name("web", key) == name


def test_containers_env_ports_and_init_containers() -> None:
    objects = convert(
        kpkg(
            deploy={"kind": "Deployment"},
            config={"A": "a", "NODE": "@field/spec.nodeName", "DB": "@secret/db/url?"},
            containers={
                "web": {
                    **NGINX,
                    "env": {"DB": "@configMap/cfg/path/key", "CPU": "@resource/limits.cpu"},
                    "ports": {"http": 80, "udp-dns:53": 5353, "sctp-x": 9},
                },
                "init-b": NGINX,
                "init-a": {"image": {"name": "busybox", "digest": DIGEST}},
            },
        )
    )
    spec = pod(by_key(objects)[("Deployment", "web")])
    assert [c["name"] for c in spec["initContainers"]] == ["init-a", "init-b"]
    assert spec["initContainers"][0]["image"] == f"busybox@{DIGEST}"
    (web,) = spec["containers"]
    assert web["env"] == [
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        # the container's own env wins over config; split on the last "/"
        {"name": "DB", "valueFrom": {"configMapKeyRef": {"name": "cfg/path", "key": "key"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]
    assert web["ports"] == [
        {"name": "http", "containerPort": 80, "protocol": "TCP"},
        {"name": "sctp-x", "containerPort": 9, "protocol": "SCTP"},
        {"name": "udp-dns", "containerPort": 5353, "protocol": "UDP", "hostPort": 53},
    ]
    # plain config values go to the implicit ConfigMap, mounted as envFrom into every container
    assert by_key(objects)[("ConfigMap", "web")]["data"] == {"A": "a"}
    assert all(c["envFrom"] == [{"configMapRef": {"name": "web"}}] for c in spec["initContainers"])
    init_env = spec["initContainers"][0]["env"]
    assert init_env[0]["valueFrom"]["secretKeyRef"] == {
        "name": "db",
        "key": "url",
        "optional": True,
    }


def test_volumes_of_every_type() -> None:
    objects = convert(
        kpkg(
            deploy={"kind": "StatefulSet"},
            containers={"web": NGINX},
            volumes={
                "data": {"type": "PersistentVolumeClaim", "mountPath": "/data",
                         "opt": {"claimName": "ignored", "readOnly": True},
                         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {}}},
                "tmp": {"type": "EmptyDir", "mountPath": "/tmp", "subPath": "x"},
                "sys": {"type": "HostPath", "mountPath": "/sys", "opt": {"path": "/sys"},
                        "mountPropagation": "HostToContainer", "readOnly": True},
                "model": {"type": "Image", "mountPath": "/model",
                          "opt": {"reference": "ghcr.io/x/model:1"}},
                "env": {"type": "Secret", "mountPath": "export", "prefix": "S_", "optional": True,
                        "spec": {"data": {"K": "v"}}},
                "~ext": {"type": "ConfigMap", "mountPath": "/ext"},
            },
        )
    )  # fmt: skip
    found = by_key(objects)
    # PVC named by the key, claimName forced to it
    assert found[("PersistentVolumeClaim", "web-data")]["spec"] == {
        "accessModes": ["ReadWriteOnce"]
    }
    secret = found[("Secret", "web-env")]
    assert secret["stringData"] == {"K": "v"} and "spec/digest" in secret["metadata"]["annotations"]
    spec = pod(found[("StatefulSet", "web")])
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["web-data"]["persistentVolumeClaim"] == {
        "claimName": "web-data",
        "readOnly": True,
    }
    assert volumes["web-tmp"] == {"name": "web-tmp", "emptyDir": {}}
    assert volumes["web-model"]["image"] == {"reference": "ghcr.io/x/model:1"}
    assert volumes["ext"] == {"name": "ext", "configMap": {"name": "ext"}}  # external: no object
    assert ("ConfigMap", "ext") not in found
    (c,) = spec["containers"]
    assert [m["name"] for m in c["volumeMounts"]] == sorted(m["name"] for m in c["volumeMounts"])
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["web-sys"] == {"name": "web-sys", "mountPath": "/sys", "readOnly": True,
                                 "mountPropagation": "HostToContainer"}  # fmt: skip
    assert mounts["web-tmp"]["subPath"] == "x"
    assert c["envFrom"] == [{"prefix": "S_", "secretRef": {"name": "web-env", "optional": True}}]
    # the StatefulSet reloads on the Secret and the external ConfigMap (no digest: not ours)
    annotations = (
        spec and found[("StatefulSet", "web")]["spec"]["template"]["metadata"]["annotations"]
    )
    assert annotations["secret.reloader.octohelm.tech/reload"] == "web-env"
    assert (
        annotations["digest.secret.reloader.octohelm.tech/web-env"]
        == (secret["metadata"]["annotations"]["spec/digest"])
    )
    assert annotations["configmap.reloader.octohelm.tech/reload"] == "ext"
    assert "digest.configmap.reloader.octohelm.tech/ext" not in annotations


@pytest.mark.parametrize("kind", ["Job", "CronJob"])
def test_jobs_are_batch_v1_without_a_selector(kind: str) -> None:
    spec: dict[str, Any] = {"template": {"spec": {"restartPolicy": "Never"}}}
    if kind == "CronJob":
        spec = {"schedule": "@daily", "template": {"spec": spec}}  # kubepkgspec's field name
    (job,) = [
        o for o in convert(kpkg(deploy={"kind": kind, "spec": spec}, containers={"w": NGINX}))
        if o["kind"] == kind
    ]  # fmt: skip
    assert job["apiVersion"] == "batch/v1"
    assert "selector" not in job["spec"]
    assert pod(job)["restartPolicy"] == "Never"
    assert pod(job)["containers"][0]["name"] == "w"


def test_deploy_spec_merges_lists_by_name_and_drops_empty_objects() -> None:
    assert merge(
        {"a": [{"name": "x", "v": 1}, {"name": "y"}], "s": [1, 2], "keep": {"k": 1}},
        {"a": [{"name": "x", "w": 2}, {"name": "z"}], "s": [3], "keep": {}, "empty": {}},
    ) == {"a": [{"name": "x", "v": 1, "w": 2}, {"name": "y"}, {"name": "z"}], "s": [3],
          "keep": {"k": 1}}  # fmt: skip


def test_deploy_spec_may_not_set_what_the_kubepkg_sections_own() -> None:
    bad = kpkg(
        deploy={"kind": "Deployment", "spec": {"template": {"spec": {"containers": []}}}},
        containers={"web": NGINX},
    )
    with pytest.raises(ConvertError, match=r"spec.deploy.spec.template.spec.containers"):
        convert(bad)


def test_services_node_port_and_rbac() -> None:
    objects = by_key(
        convert(
            kpkg(
                deploy={"kind": "DaemonSet"},
                containers={"web": NGINX},
                services={"admin": {"ports": {"http": 8080}, "expose": {"type": "NodePort"},
                                    "clusterIP": "10.0.0.9"}},
                serviceAccount={"scope": "Cluster", "rules": [{"verbs": ["get"]}]},
            )
        )
    )  # fmt: skip
    svc = objects[("Service", "web-admin")]["spec"]
    assert svc["type"] == "NodePort" and svc["ports"][0]["nodePort"] == 8080
    assert svc["clusterIP"] == "10.0.0.9" and svc["selector"] == {"app": "web"}
    assert ("ConfigMap", "endpoint-web-admin") not in objects  # no gateway templates
    binding = objects[("ClusterRoleBinding", "web")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "web", "namespace": "team"}]
    assert binding["roleRef"]["kind"] == "ClusterRole"
    assert pod(objects[("DaemonSet", "web")])["serviceAccountName"] == "web"


def test_gateways_argument_overrides_the_annotation() -> None:
    pkg = kpkg(
        deploy={"kind": "Deployment"},
        containers={"web": NGINX},
        services={"#": {"ports": {"http": 80}, "expose": {"type": "Ingress", "gateway": ["pub"]}}},
    )
    pkg["metadata"]["annotations"] = {"ingress.octohelm.tech/gateway": "old+http://old"}
    objects = by_key(convert(pkg, gateways=["pub+https://{{ .Name }}.{{ .Namespace }}.example"]))
    (rule,) = objects[("Ingress", "web")]["spec"]["rules"]
    assert rule["host"] == "web.team.example"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": "web",
                                                              "port": {"name": "http"}}  # fmt: skip
    assert objects[("ConfigMap", "endpoint-web")]["data"] == {
        "default": "http://web",
        "pub": "https://web.team.example",
    }


def test_platform_annotation_sets_arch_affinity_on_manifest_workloads() -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "elsewhere"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
    }
    job = copy.deepcopy(deployment) | {"apiVersion": "batch/v1", "kind": "Job"}
    job["metadata"] = {"name": "j"}
    pkg = kpkg(manifests={"d": deployment, "nested": {"j": job, "off": None}})
    pkg["metadata"]["annotations"] = {"octohelm.tech/platform": "linux/arm64"}
    objects = by_key(convert(pkg))
    for k in (("Deployment", "d"), ("Job", "j")):
        terms = pod(objects[k])["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        assert terms[0]["matchExpressions"][0]["values"] == ["arm64"]
        assert objects[k]["metadata"]["namespace"] == "team"


def test_bad_input_names_the_field() -> None:
    with pytest.raises(
        ConvertError, match=r'KubePkg team/web: spec.containers\["web"\].image.name'
    ):
        convert(kpkg(deploy={"kind": "Deployment"}, containers={"web": {"image": {}}}))
    with pytest.raises(ConvertError, match=r"spec.deploy.kind: must be one of"):
        convert(kpkg(deploy={"kind": "Pod"}))
    with pytest.raises(ConvertError, match=r"spec.config.PORT: must be a string"):
        convert(kpkg(deploy={"kind": "Deployment"}, config={"PORT": 80}, containers={"w": NGINX}))
    with pytest.raises(ConvertError, match=r"spec.containers: required for deploy kind Job"):
        convert(kpkg(deploy={"kind": "Job"}))


def test_render_pins_every_image_and_drops_the_own_namespace() -> None:
    pkg = kpkg(
        deploy={"kind": "CronJob", "spec": {"schedule": "@daily"}},
        containers={"w": NGINX, "init-x": NGINX},
        volumes={"m": {"type": "Image", "mountPath": "/m",
                       "opt": {"reference": "docker.io/library/nginx:1.25"}}},
    )  # fmt: skip
    refs = {"docker.io/library/nginx:1.25": parse_image("docker.io/library/nginx:1.25")}
    refs = {k: v.with_digest(DIGEST) for k, v in refs.items()}
    rendered = render_objects(pkg, RenderOptions(namespace="team", registry="reg.local"), refs)
    assert "Namespace" not in [o["kind"] for o in rendered]
    (cron,) = [o for o in rendered if o["kind"] == "CronJob"]
    spec = pod(cron)
    pinned = f"reg.local/docker.io/library/nginx:1.25@{DIGEST}"
    assert spec["containers"][0]["image"] == pinned
    assert spec["initContainers"][0]["image"] == pinned
    assert spec["volumes"][0]["image"]["reference"] == pinned
