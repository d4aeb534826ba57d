"""The harness process: moto's own WSGI app behind ``Ec2AsEc2``, served by werkzeug on 127.0.0.1.

    python -m lablease.testing.moto_serve --settings FILE --workdir DIR --port N

Started by ``lablease.testing.moto_ec2.start_moto_ec2``; SIGTERM stops every sshd, then the server.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from lablease.testing.moto_settings import MotoSettings, require_loopback

log = logging.getLogger("lablease.testing.moto")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="moto_serve")
    parser.add_argument("--settings", required=True, type=Path)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--parent-pid", type=int, default=None, help="stop when this process is gone")
    args = parser.parse_args(argv)
    require_loopback(args.host, "listen address")
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = MotoSettings.from_file(args.settings)
    workdir = args.workdir.resolve()
    amis = workdir / "amis.json"
    amis.write_text(json.dumps(settings.amis))
    # Read by moto.ec2.models.amis when it is imported: these images replace moto's own.
    os.environ["MOTO_AMIS_PATH"] = str(amis)
    os.environ["MOTO_ENABLE_AMI_VALIDATION"] = "true"  # an unknown ImageId is InvalidAMIID.NotFound, as on EC2
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "false")
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True).start()
    serve(settings, workdir, args.host, args.port)


def _watch_parent(pid: int) -> None:
    """SIGTERM ourselves when the process that started us is gone (killed with SIGKILL, say)."""
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            log.warning("parent %d is gone; stopping", pid)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        except PermissionError:
            pass
        threading.Event().wait(0.5)


def serve(settings: MotoSettings, workdir: Path, host: str, port: int) -> None:
    import moto
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    from lablease.testing.moto_admin import Admin
    from lablease.testing.moto_faults import FaultBook
    from lablease.testing.moto_fixes import Ec2AsEc2
    from lablease.testing.moto_nodes import Nodes
    from lablease.testing.moto_world import World, ec2_backend, make_network

    backend = ec2_backend(settings.region)
    world = World(backend, settings, make_network(backend, settings))
    world.install_address_pool()
    nodes = Nodes(world, workdir)
    faults = FaultBook(settings.faults, settings.seed)
    admin = Admin(world, nodes, faults, moto.__version__)
    app = Ec2AsEc2(DomainDispatcherApplication(create_backend_app), world, nodes, faults, admin)
    _warm_up(app)  # moto loads its answer modules on first use: done before the port opens
    server = make_server(host, port, app, threaded=True, request_handler=_quiet(MotoRequestHandler))
    nodes.start()
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("moto EC2 harness moto=%s listening on http://%s:%d region=%s subnet=%s",
             moto.__version__, host, port, settings.region, settings.cidr)
    try:
        server.serve_forever()
    finally:
        nodes.stop()
        server.server_close()
        log.info("moto EC2 harness stopped")
        logging.shutdown()
        # Every sshd is stopped and the socket closed: skip tearing down moto's thousands of
        # objects and modules, which takes seconds on a busy machine.
        os._exit(0)


def _warm_up(app: object) -> None:
    from werkzeug.test import Client

    client = Client(app)  # type: ignore[arg-type]
    auth = "AWS4-HMAC-SHA256 Credential=WARMUP/20200101/{}/ec2/aws4_request, SignedHeaders=host, Signature=0"
    for action in ("DescribeInstances", "DescribeVolumes", "DescribeImages"):
        client.get(f"/?Action={action}&Version=2016-11-15",
                   headers={"Authorization": auth.format(app.world.settings.region)})  # type: ignore[attr-defined]
    app.admin.counts.clear()  # type: ignore[attr-defined]


def _quiet(handler: type) -> type:
    """werkzeug's request handler without one log line per request (the harness logs what it changes)."""

    class Quiet(handler):  # type: ignore[misc, valid-type]
        def log_request(self, *args: object, **kwargs: object) -> None:
            pass

    return Quiet


if __name__ == "__main__":
    main()
