"""The Podman backend: Podman's Docker-compatible REST API, for hosts where a Docker daemon is not
allowed (no root daemon; rootless where the host allows it).

Start the API service once (scripts/setup.sh does, as root):

    podman system service --time=0 unix:///run/podman/podman.sock &          # rootful
    podman system service --time=0 unix://$XDG_RUNTIME_DIR/podman/podman.sock &   # rootless

The Docker backend drives it through the same Engine API client (engine_client.py); only what Podman does
differently is overridden here (docs/ARCHITECTURE.md, "Sandbox backends"):

- **Address.** `url=`, else ``CONTAINER_HOST`` (podman-remote's variable), else the rootful
  socket for root and ``$XDG_RUNTIME_DIR/podman/podman.sock`` for other users.
- **Network.** Podman's bridge (CNI or netavark) has no inter-container-communication switch:
  the Docker option is accepted and ignored. Each container gets its own user-mode network
  instead (``slirp4netns``): outbound traffic works, nothing reaches another container (nor the
  host's loopback); the verifier's snapshot joins it with ``container:<id>`` as on Docker.
- **Snapshots.** Podman's commit endpoint needs a JSON body (an empty config) where Docker takes
  none.
- **Images.** Podman has its own store; the base image is imported into it (``images load`` of
  ``docker save``, or `ttgen images bootstrap` against this backend). Short names are stored as
  ``docker.io/...`` or ``localhost/...`` and resolve as written. An import ignores the tag
  (handled in `import_rootfs`).
- **Files, exec, build, labels, gc, limits, init** work as on Docker through the same endpoints;
  the container's upper layer is read directly for `changes()` (storage driver "overlay"; the
  files Podman writes there itself, /etc/hosts, /run/.containerenv, ..., are left out as its
  own diff does), and its memory cgroup lives under libpod's names for `oom_kills()`.
- **Build timeouts.** Podman 4 does not cancel a build when the client gives up (no server-side
  cancellation yet): ttgen reports the timeout as on Docker, the build runs on in the service
  and, if it finishes, its image is a cache hit for a later run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from ttgen.errors import SandboxError
from ttgen.sandbox.docker import DockerBackend
from ttgen.sandbox.docker_sandbox import DockerSandbox
from ttgen.sandbox.engine_client import DockerError

ROOTFUL_SOCKET = "/run/podman/podman.sock"
# What Podman itself writes into a container's upper layer at start (Docker bind-mounts its
# equivalents), left out of `changes()` as Podman's own diff endpoint does (libpod diff.go).
PODMAN_OWN_PATHS = frozenset(
    {
        "/dev",
        "/etc/hostname",
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/mtab",
        "/proc",
        "/run",
        "/run/notify",
        "/run/.containerenv",
        "/run/secrets",
        "/run/podman-init",
        "/sys",
    }
)
# Podman's own per-container network namespace with user-mode networking: isolated by design.
PODMAN_NETWORK = "slirp4netns"


def default_podman_url() -> str:
    if os.environ.get("CONTAINER_HOST"):
        return os.environ["CONTAINER_HOST"]
    if os.geteuid() == 0:
        return f"unix://{ROOTFUL_SOCKET}"
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
    return f"unix://{runtime}/podman/podman.sock"


class PodmanSandbox(DockerSandbox):
    """One Podman container: a DockerSandbox with Podman's storage and cgroup names."""

    OVERLAY_DRIVERS = ("overlay", "overlay2")

    async def changes(self) -> list[dict[str, Any]]:
        return [c for c in await super().changes() if c["Path"] not in PODMAN_OWN_PATHS]

    def _oom_files(self) -> list[Path]:
        cid = self.id
        return [
            Path(f"/sys/fs/cgroup/memory/libpod_parent/libpod-{cid}/memory.oom_control"),
            Path(f"/sys/fs/cgroup/memory/machine.slice/libpod-{cid}.scope/memory.oom_control"),
            Path(f"/sys/fs/cgroup/libpod_parent/libpod-{cid}/memory.events"),
            Path(f"/sys/fs/cgroup/machine.slice/libpod-{cid}.scope/memory.events"),
            *super()._oom_files(),
        ]


class PodmanBackend(DockerBackend):
    """Sandboxes on Podman, through its Docker-compatible API."""

    name = "podman"
    sandbox_class = PodmanSandbox
    UNAVAILABLE_HINT = (
        "Start Podman's API service, e.g. `podman system service --time=0 "
        f"unix://{ROOTFUL_SOCKET} &` as root (scripts/setup.sh does), or set CONTAINER_HOST."
    )

    @classmethod
    def default_url(cls) -> str | None:
        return default_podman_url()

    @property
    def engine_url(self) -> str | None:
        return self._url

    async def _isolated_network(self) -> str:
        return PODMAN_NETWORK

    async def _commit(
        self, source: DockerSandbox, repo: str, tag: str, changes: Sequence[str]
    ) -> None:
        # Podman decodes the request body as the image config: an empty one, not none.
        await source.container.commit(
            repository=repo, tag=tag, changes=changes, pause=True, config={}
        )

    def interactive_command(self, container: str, argv: Sequence[str]) -> list[str]:
        """`podman --remote exec -it` against this backend's service (or the docker CLI
        pointed at it when podman's CLI is not installed here)."""
        if shutil.which("podman"):
            return ["podman", "--remote", "--url", str(self._url), "exec", "-it", container,
                    *argv]  # fmt: skip
        return super().interactive_command(container, argv)

    async def load_image_from(self, source: DockerBackend, ref: str) -> str:
        """Copy image `ref` from another engine (Docker's store) into Podman's: `docker save`
        streamed into Podman's `images/load`, no file in between. Returns the image id here."""

        async def chunks() -> AsyncIterator[bytes]:
            resp = await source.docker.images.export(ref)
            try:
                async for chunk in resp.chunks(1 << 20):
                    yield chunk
            finally:
                resp.release()

        try:
            resp = await self.docker.request(
                "POST", "images/load", data=chunks(), headers={"Content-Type": "application/x-tar"}
            )
            try:
                text = await resp.text()
            finally:
                resp.release()
        except DockerError as exc:
            raise SandboxError(f"cannot copy {ref} into Podman: {exc.message}") from exc
        info = await self.image_exists(ref)
        if info is None:
            raise SandboxError(f"copying {ref} into Podman gave no image: {text[-300:]}")
        self._workdirs.pop(ref, None)
        return info["Id"]
