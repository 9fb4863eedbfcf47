"""`sam` with a working `--docker-network host`, for scripts/sam-local-invoke.sh.

Run it with the SAM venv's python, with sam's arguments:
    "$SAM_VENV/bin/python" scripts/lib/sam-host-network.py local invoke ... --docker-network host

Why: SAM CLI (1.170 and every 1.x since 1.13) accepts `--docker-network host`
but ignores it. Container.create connects the container to the named network
only when the name is not "host" and never sets the container's network
mode, so the function runs on docker's default bridge and cannot reach
services on the host's 127.0.0.1 (aws/aws-sam-cli#3609, #4236; the fix in
#7278 was not merged). The local stand-ins listen on 127.0.0.1 only, and the
replicator sends plain HTTP only to loopback addresses, so the function must
share the host's network namespace.

What this changes, for Lambda containers created with --docker-network host
and nothing else:
  - HostConfig.NetworkMode = "host", without the port mapping SAM asks for
    (docker-py refuses it with the host network; nothing needs publishing);
  - SAM's runtime emulator (its own aws-lambda-rie, the entrypoint) listens
    on 127.0.0.1:<the port SAM picked and will call> instead of 0.0.0.0:8080,
    and serves the Lambda runtime API on a free 127.0.0.1 port instead of
    9001, so nothing collides with what runs on the host.
Everything else is SAM's own code. If SAM's internals are not what this
expects, it stops with a message rather than run something else; if a SAM
version sets the network mode itself, this steps aside.
"""

import inspect
import socket
import sys

PREFIX = "sam-host-network"


def die(message):
    sys.stderr.write(f"{PREFIX}: {message}\n")
    sys.exit(3)


try:
    from docker.models.containers import ContainerCollection
    from samcli.cli.main import cli
    from samcli.local.docker.container import Container
    from samcli.local.docker.lambda_container import LambdaContainer
except ImportError as e:  # pragma: no cover - depends on the installed SAM
    die(f"cannot import SAM CLI internals ({e}); run with the SAM venv's python")

RIE = "/var/rapid/aws-lambda-rie"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def patch():
    source = inspect.getsource(Container.create)
    if "network_mode" in source:
        # This SAM version handles the host network itself.
        return
    if 'self.network_id != "host"' not in source:
        die("SAM's Container.create changed; check how it handles --docker-network host before patching it")
    original = Container.create

    def create(self, context):
        if isinstance(self, LambdaContainer) and self.network_id == "host":
            entry = getattr(self, "_entrypoint", None)
            port = getattr(self, "rapid_port_host", None)
            if not (isinstance(entry, list) and entry and entry[0] == RIE) or not port:
                die(f"unexpected Lambda container setup (entrypoint {entry!r}, port {port!r})")
            self._entrypoint = entry + [
                "--runtime-interface-emulator-address",
                f"127.0.0.1:{port}",
                "--runtime-api-address",
                f"127.0.0.1:{free_port()}",
            ]
            self._container_opts = {**(self._container_opts or {}), "network_mode": "host"}
        return original(self, context)

    # docker-py refuses port bindings with the host network (there is nothing
    # to publish: the emulator listens on the host's 127.0.0.1 itself).
    docker_create = ContainerCollection.create

    def create_container(self, image, command=None, **kwargs):
        if kwargs.get("network_mode") == "host":
            kwargs.pop("ports", None)
        return docker_create(self, image, command, **kwargs)

    Container.create = create
    ContainerCollection.create = create_container


if __name__ == "__main__":
    patch()
    sys.argv[0] = "sam"
    sys.exit(cli())
