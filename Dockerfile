# The controller image: `docker build -t REGISTRY/gitops-kubepkg:TAG .`
# Without Docker, `make image` (scripts/build-image) builds the same image from Debian packages;
# tests/unit/test_image_declarations.py keeps the two declaring the same user, entrypoint,
# command, ports and paths.
# deploy/deployment.yaml runs it as UID 65532 with a read-only root filesystem; the state
# (git mirrors, the registry store) lives on a volume at /var/lib/gitops-kubepkg.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gitops_kubepkg ./gitops_kubepkg
# This project's wheel and its dependencies' (pygit2's bundles libgit2, libssh2 and OpenSSL, so
# the runtime image needs no system libraries and no compiler).
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HOME=/tmp
COPY --from=build /wheels /wheels
# git: airgap import fetches the export's bundles into the mirrors with it. gpg verifies
# OpenPGP-signed commits and tags for Repositories with spec.verify (SSH signatures need nothing:
# they are checked in Python); it works in a throwaway home under /tmp (an emptyDir).
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends git gnupg ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-index --find-links=/wheels gitops-kubepkg \
    && rm -rf /wheels \
    && mkdir -p /var/lib/gitops-kubepkg \
    && chown 65532:65532 /var/lib/gitops-kubepkg
USER 65532:65532
EXPOSE 8080 9292 5000 9393 9494
ENTRYPOINT ["gitops-kubepkg"]
CMD ["controller", "--state-dir=/var/lib/gitops-kubepkg", "--log-format=json"]
