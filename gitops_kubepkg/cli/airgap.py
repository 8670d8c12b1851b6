"""``gitops-kubepkg airgap export`` and ``airgap import``: carry packages across an air gap."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from gitops_kubepkg.cli._cluster import duration
from gitops_kubepkg.cli.output import dump
from gitops_kubepkg.errors import InputError, ValidationError

PASSPHRASE_ENV = "GITOPS_KUBEPKG_SIGNING_KEY_PASSPHRASE"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "airgap", help="export KubePkgs, images and git history for an airgapped site; import them"
    )
    asub = p.add_subparsers(dest="airgap_command", metavar="COMMAND", required=True)

    ex = asub.add_parser(
        "export",
        help="write kubepkg.airgap.tar, git bundles and airgap.json into --out",
        description=(
            "Resolve every image of the KubePkgs to a digest, pull it over the OCI API and write "
            "DIR/kubepkg.airgap.tar (kubepkg.json first, then an OCI image layout), a git bundle "
            "per --repo under DIR/repos/, and DIR/airgap.json with their checksums."
        ),
    )
    ex.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="KubePkg files or directories (default: the KubePkgs in the --repo repositories)",
    )
    ex.add_argument("--out", "-O", type=Path, required=True, metavar="DIR")
    ex.add_argument(
        "--repo",
        action="append",
        default=[],
        metavar="URL[=PATH]",
        help="a git repository to bundle, by the URL Repository objects use; =PATH bundles "
        "from a local clone instead of cloning URL (repeatable)",
    )
    ex.add_argument("--ref", default="HEAD", help="where to read KubePkgs in --repo (default HEAD)")
    ex.add_argument("--dir", default="", help="only KubePkgs below this directory of --repo")
    ex.add_argument(
        "--platform",
        action="append",
        default=[],
        metavar="OS/ARCH[/VARIANT]",
        help="keep only these platforms of multi-arch images (repeatable; default all)",
    )
    ex.add_argument(
        "--since",
        type=Path,
        metavar="PREVIOUS",
        help="a previous export directory or tarball: leave out blobs it carried and git "
        "history it bundled",
    )
    ex.add_argument(
        "--registry-mirror",
        action="append",
        default=[],
        metavar="HOST=URL",
        help="pull images named HOST/... from URL instead (repeatable)",
    )
    ex.add_argument(
        "--plain-http", action="append", default=[], metavar="HOST", help="HOST speaks HTTP"
    )
    ex.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    ex.add_argument(
        "--sign",
        type=Path,
        metavar="KEY",
        help="sign airgap.json with this SSH private key (ed25519, ECDSA or RSA; passphrase from "
        f"${PASSPHRASE_ENV}) into airgap.json.sig, checkable with ssh-keygen -Y verify "
        "-n gitops-kubepkg-airgap",
    )
    ex.add_argument("-o", "--output", choices=("text", "json"), default="text")
    ex.set_defaults(run=run_export)

    im = asub.add_parser(
        "import",
        help="verify an export and import it into a store or registry and the git mirrors",
        description=(
            "SOURCE is an export directory (with airgap.json), an archive file, or - for an "
            "archive on stdin: ours, upstream KubePkg's kubepkg.airgap.tar (gen 3) or gzip "
            "kubepkg.tgz (gen 1/2), or crpe's .tgz (gzip is recognised by its first bytes). The "
            "archive is streamed once; every blob is verified before it is stored; manifests and "
            "tags are written last. Re-running after a crash resumes."
        ),
    )
    im.add_argument("source", metavar="SOURCE")
    dest = im.add_mutually_exclusive_group(required=True)
    dest.add_argument("--store", type=Path, metavar="DIR", help="the store `registry serve` reads")
    dest.add_argument(
        "--to-registry",
        metavar="URL",
        help="push into a registry instead: http[s]://[user:pass@]host[:port][/prefix]",
    )
    dest.add_argument(
        "--to-controller",
        metavar="URL",
        help="stream an export directory into the controller running in the cluster (its "
        "--upload-listen, e.g. through `kubectl port-forward`); resumes what it holds; "
        "authenticated by --token-file",
    )
    im.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="--to-controller: a Kubernetes token (e.g. `kubectl create token NAME`) allowed "
        "verb create on airgapimports.gitops.kubepkg.dev (default $GITOPS_KUBEPKG_TOKEN)",
    )
    im.add_argument(
        "--leader-wait",
        type=duration,
        default="1m",
        metavar="DURATION",
        help="--to-controller: how long to keep asking while the replica reached is not the "
        "one that takes uploads (it answers 503 naming the leader; default 1m)",
    )
    im.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="the controller's state directory; git bundles are fetched into its mirrors",
    )
    im.add_argument(
        "--namespace",
        default="",
        metavar="NS",
        help="fetch the git bundles into the mirrors of this namespace's Repositories (a "
        "--multi-tenant controller reads only those: STATE/tenants/NS)",
    )
    im.add_argument(
        "--images-only", action="store_true", help="skip the git bundles of an export directory"
    )
    im.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    im.add_argument(
        "--chunk-size",
        type=int,
        default=8 << 20,
        metavar="BYTES",
        help="--to-registry: blobs larger than this upload in chunks of this size (default 8 MiB)",
    )
    im.add_argument(
        "--verify",
        type=Path,
        metavar="ALLOWED_SIGNERS",
        help="refuse the export unless airgap.json.sig is a good signature over airgap.json by "
        "a key in this OpenSSH allowed_signers file (namespace gitops-kubepkg-airgap)",
    )
    im.add_argument(
        "--allow-rollback",
        action="store_true",
        help="import even when a branch would not fast-forward, a tag would move, or the "
        "export is older than the last one imported",
    )
    im.add_argument("-o", "--output", choices=("text", "json"), default="text")
    im.set_defaults(run=run_import)


def _progress(args: argparse.Namespace) -> Any:
    from gitops_kubepkg.airgap.progress import StderrProgress

    return StderrProgress()


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key or not value:
            raise InputError(f"{flag} {v!r}: want HOST=URL")
        out[key] = value
    return out


def run_export(args: argparse.Namespace) -> int:
    from gitops_kubepkg.airgap.export import ExportOptions, SourceRepository, export
    from gitops_kubepkg.registry.manifest import parse_platform
    from gitops_kubepkg.sources import bundle as git_bundle
    from gitops_kubepkg.spec import FILE_NAMES, load_path, parse_kubepkgs

    signing_key = None
    if args.sign is not None:  # load it first: a bad key fails before hours of pulling
        from gitops_kubepkg.airgap.trust import load_signing_key

        signing_key = load_signing_key(args.sign, os.environ.get(PASSPHRASE_ENV, ""))
    opts = ExportOptions(
        platforms=[parse_platform(p) for p in args.platform],
        mirrors=_pairs(args.registry_mirror, "--registry-mirror"),
        plain_http=frozenset(args.plain_http),
        tls_verify=not args.insecure,
        since=args.since,
    )
    with tempfile.TemporaryDirectory(prefix="gitops-kubepkg-export-") as tmp:
        repos = []
        for i, spec in enumerate(args.repo):
            url, sep, path = spec.partition("=")
            if sep and path:
                repos.append(SourceRepository(url, Path(path)))
            else:
                clone = git_bundle.clone_mirror(url, Path(tmp) / f"repo-{i}.git")
                repos.append(SourceRepository(url, clone))
        pkgs = []
        if args.paths:
            for path in args.paths:
                pkgs.extend(load_path(path))
        else:
            if not repos:
                raise InputError("give KubePkg PATHs or --repo to read them from")
            problems = []
            prefix = args.dir.strip("/") + "/" if args.dir.strip("/") else ""
            for repo in repos:
                assert repo.path is not None
                for name, data in git_bundle.read_files(repo.path, args.ref, FILE_NAMES):
                    if not name.startswith(prefix):
                        continue
                    try:
                        pkgs.extend(parse_kubepkgs(data, f"{repo.url}:{name}"))
                    except ValidationError as e:
                        problems.extend(e.problems)
            if problems:
                raise ValidationError(problems)
        result = export(pkgs, args.out, repos, opts=opts, progress=_progress(args))
    signed = None
    if signing_key is not None:
        from gitops_kubepkg.airgap.trust import sign_export

        signed = sign_export(args.out, signing_key)
    if args.output == "json":
        dump({**result.to_json(), "signature": str(signed) if signed else None}, "json")
    else:
        mib = result.tarball.size / (1 << 20)
        print(
            f"wrote {args.out}: {len(result.images)} images, {result.blobs_written} blobs "
            f"({result.blobs_omitted} left out by --since), {mib:.1f} MiB, "
            f"{sum(1 for r in result.repositories if r.bundle)} git bundles"
            + (f", signed ({signed.name})" if signed else "")
        )
    return 0


def _split_target(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url if "://" in url else f"https://{url}")
    base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    return base, parts.path.strip("/")


def run_import(args: argparse.Namespace) -> int:
    from gitops_kubepkg.airgap.importer import (
        ImportResult,
        RegistrySink,
        Sink,
        StoreSink,
        import_export,
        import_tarball,
    )
    from gitops_kubepkg.registry.client import RegistryClient, parse_endpoint
    from gitops_kubepkg.sources.mirror import mirror_dir

    progress = _progress(args)
    source = Path(args.source)
    if args.to_controller:
        return _run_upload(args, source, progress)
    if args.namespace:
        from gitops_kubepkg.tenancy import tenant_state_dir

        if args.state_dir is None:
            raise InputError("--namespace: give --state-dir too (the controller's state directory)")
        args.state_dir = tenant_state_dir(args.state_dir, args.namespace)
    trust = _check_trust(args, source)
    client: RegistryClient | None = None
    sink: Sink
    if args.to_registry:
        base, prefix = _split_target(args.to_registry)
        client = RegistryClient(chunk_size=args.chunk_size, tls_verify=not args.insecure)
        sink = RegistrySink(client, parse_endpoint(base), prefix)
    else:
        args.store.mkdir(parents=True, exist_ok=True)
        sink = StoreSink(args.store)
    try:
        if args.source == "-":
            tar = import_tarball(sys.stdin.buffer, "stdin", sink, progress=progress)
            result = ImportResult(tar, {})
        elif source.is_dir():
            state_dir = args.state_dir
            if state_dir is None and not args.images_only:
                from gitops_kubepkg.airgap.manifest import MANIFEST_NAME, read_manifest

                if any(r.bundle for r in read_manifest(source / MANIFEST_NAME).repositories):
                    raise InputError(
                        f"{source} has git bundles: give --state-dir (the controller's state "
                        "directory, whose mirrors they go into) or --images-only"
                    )
            mirror_for = (
                None
                if args.images_only or state_dir is None
                else (lambda url: mirror_dir(state_dir, url))
            )
            result = import_export(
                source,
                sink,
                mirror_for=mirror_for,
                progress=progress,
                allow_rollback=args.allow_rollback,
                manifest_data=trust.data,
            )
            trust.record(result.tarball.images, result.repositories)
        else:
            try:
                f = open(source, "rb", buffering=1 << 20)  # noqa: SIM115 - closed below
            except OSError as e:
                raise InputError(f"{source}: {e.strerror}") from e
            with f:
                size = source.stat().st_size
                tar = import_tarball(f, str(source), sink, progress=progress, total=size)
            result = ImportResult(tar, {})
    finally:
        if client is not None:
            client.close()
    if args.output == "json":
        out = {**result.to_json(), "signer": trust.signer or None}
        if client is not None:
            out["registry"] = dict(client.stats)
        dump(out, "json")
    else:
        t = result.tarball
        for note in t.notes:
            print(f"note: {note}", file=sys.stderr)
        print(
            f"imported {t.format}, {len(t.images)} images: {t.blobs_written} blobs written "
            f"({t.bytes_written / (1 << 20):.1f} MiB), {t.blobs_skipped} already there, "
            f"{t.manifests} manifests, {len(t.tags)} tags"
            + (f"; {len(result.repositories)} git mirrors updated" if result.repositories else "")
            + (f"; verified {trust.signer}" if trust.signer else "")
        )
    return 0


def _run_upload(args: argparse.Namespace, source: Path, progress: Any) -> int:
    from gitops_kubepkg.airgap.manifest import MANIFEST_NAME
    from gitops_kubepkg.airgap.upload import upload_export

    if not (source / MANIFEST_NAME).is_file():
        raise InputError(
            f"{source}: --to-controller sends an export directory (with {MANIFEST_NAME})"
        )
    for flag, value in (("--state-dir", args.state_dir), ("--verify", args.verify)):
        if value is not None:
            raise InputError(
                f"{flag} does not apply to --to-controller (the controller has its own)"
            )
    if args.token_file is not None:
        try:
            token = args.token_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise InputError(f"--token-file {args.token_file}: {e.strerror}") from e
    else:
        token = os.environ.get("GITOPS_KUBEPKG_TOKEN", "").strip()
    if not token:
        raise InputError(
            "--to-controller needs a token: --token-file FILE or $GITOPS_KUBEPKG_TOKEN"
        )
    result = upload_export(
        source,
        args.to_controller,
        token,
        progress=progress,
        namespace=args.namespace,
        allow_rollback=args.allow_rollback,
        insecure=args.insecure,
        leader_wait=args.leader_wait,
    )
    if args.output == "json":
        dump(result, "json")
    else:
        up = result["upload"]
        print(
            f"uploaded {up['bytes'] / (1 << 20):.1f} MiB ({up['resumed'] / (1 << 20):.1f} MiB "
            f"resumed); the controller imported {len(result.get('images') or {})} images: "
            f"{result.get('blobsWritten', 0)} blobs written, {result.get('blobsSkipped', 0)} "
            f"already there; {len(result.get('repositories') or {})} git mirrors updated"
        )
    return 0


class _Trust:
    """What ``--verify`` established, and the import records to check and then write."""

    def __init__(
        self, records: list[Any], created: str, sha256: str, signer: str, data: bytes | None = None
    ) -> None:
        self.data = data
        """``airgap.json`` as checked: the import reads these bytes, not the file again."""
        self.records = records
        self.created = created
        self.sha256 = sha256
        self.signer = signer

    def record(self, images: dict[str, str], repositories: Any) -> None:
        """Write the import records: the export, and what it brought."""
        for record in self.records:
            record.add(
                self.created, self.sha256, self.signer, images=images, repositories=repositories
            )


def _check_trust(args: argparse.Namespace, source: Path) -> _Trust:
    """Before anything is written: the signature (``--verify``) and the replay check."""
    from gitops_kubepkg.airgap.manifest import MANIFEST_NAME, read_manifest
    from gitops_kubepkg.airgap.trust import (
        ImportRecord,
        manifest_sha256,
        read_manifest_bytes,
        verify_export,
    )
    from gitops_kubepkg.signature import read_allowed_signers

    if args.source == "-" or not source.is_dir():
        if args.verify is not None:
            raise InputError(
                f"{args.source}: --verify needs an export directory (airgap.json and "
                "airgap.json.sig), not a bare tarball"
            )
        return _Trust([], "", "", "")
    data = read_manifest_bytes(source)
    signer = ""
    if args.verify is not None:
        signer = str(verify_export(source, read_allowed_signers(args.verify), data))
    created = read_manifest(source / MANIFEST_NAME, data).created
    sha256 = manifest_sha256(source, data)
    places = [p for p in (args.store, args.state_dir) if p is not None]
    records = [ImportRecord(p) for p in places]
    for record in records:
        record.check(created, sha256, allow_rollback=args.allow_rollback)
    return _Trust(records, created, sha256, signer, data)
