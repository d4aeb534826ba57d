"""The harness's own admin API under /moto-harness/admin (not EC2; not counted, faulted or signed).

    GET    /health              {"status": "ok", "moto": version, "network": {...}}
    GET    /network             {"vpc_id", "subnet_id", "cidr", "public_cidr"}
    GET    /requests            {"counts": {EC2 Action: n}}          DELETE: reset the counts
    GET    /faults              {"seed": n, "rules": [FaultRule fields + "fired"]}
    PUT    /faults              {"rules": [...], "seed": n}  replace    POST: add one rule    DELETE: none
    GET    /delays              {"pending_seconds": s, "volume_creating_seconds": s}   PUT: change either
                                (for instances and volumes made from now on)
    POST   /delays/finish       every instance still pending runs now, every volume creating is available
    GET    /instances           moto's instances (terminated too) + sshd state, root dir, host key
    GET    /volumes             moto's volumes, status as answered (``creating`` during the delay)
    POST   /reset               as just started: moto emptied, new VPC/subnet (same cidr), sshds stopped,
                                faults, delays and counts as in the settings; the body may override
                                public_ips, pending_seconds, volume_creating_seconds, faults, seed, max_instances
                                until the next reset; answers /network

Bad input answers 400 {"message": ...}.
"""

from __future__ import annotations

import collections
import json
import threading
from typing import Any, Callable, Iterable

from werkzeug.wrappers import Request, Response

from lablease.testing.moto_faults import FaultBook

PREFIX = "/moto-harness/admin"


class Admin:
    def __init__(self, world: Any, nodes: Any, faults: FaultBook, moto_version: str):
        self.world = world
        self.nodes = nodes
        self.faults = faults
        self.moto_version = moto_version
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def count(self, action: str) -> None:
        with self._lock:
            self.counts[action] += 1

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        path = request.path[len(PREFIX):].rstrip("/") or "/"
        handler = self._routes().get((request.method, path))
        if handler is None:
            response = _json({"message": f"no admin route {request.method} {path}"}, 404)
        else:
            try:
                body = request.get_json(force=True) if request.get_data() else None
                response = _json(handler(body))
            except (ValueError, TypeError, KeyError) as exc:
                response = _json({"message": f"{type(exc).__name__}: {exc}"}, 400)
        return response(environ, start_response)

    def _routes(self) -> dict[tuple[str, str], Callable[[Any], Any]]:
        return {
            ("GET", "/health"): lambda _: {"status": "ok", "moto": self.moto_version, "network": self._network()},
            ("GET", "/network"): lambda _: self._network(),
            ("GET", "/requests"): lambda _: {"counts": self._counts()},
            ("DELETE", "/requests"): lambda _: self._reset_counts(),
            ("GET", "/faults"): lambda _: self.faults.snapshot(),
            ("PUT", "/faults"): self._put_faults,
            ("POST", "/faults"): lambda body: (self.faults.add(dict(body)), self.faults.snapshot())[1],
            ("DELETE", "/faults"): lambda _: (self.faults.replace([]), self.faults.snapshot())[1],
            ("GET", "/delays"): lambda _: self._delays(),
            ("PUT", "/delays"): self._put_delays,
            ("POST", "/delays/finish"): self._finish,
            ("GET", "/instances"): lambda _: [{**i, **self.nodes.details(i["id"])} for i in self.world.instances()],
            ("GET", "/volumes"): lambda _: self.world.volumes(),
            ("POST", "/reset"): self._reset,
        }

    def _reset(self, body: Any) -> dict[str, Any]:
        if body is not None and not isinstance(body, dict):
            raise ValueError("expected settings overrides {name: value}")
        self.nodes.reset()
        self.world.reset(body)
        self.faults.replace(self.world.settings.faults, self.world.settings.seed)
        self._reset_counts()
        return self._network()

    def _network(self) -> dict[str, Any]:
        net = self.world.network
        return {"vpc_id": net.vpc_id, "subnet_id": net.subnet_id, "cidr": net.cidr, "public_cidr": net.public_cidr}

    def _counts(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self.counts.items()))

    def _reset_counts(self) -> dict[str, int]:
        with self._lock:
            self.counts.clear()
        return {}

    def _put_faults(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("rules", []), list):
            raise ValueError('expected {"rules": [...], "seed": n}')
        self.faults.replace([dict(r) for r in body.get("rules", [])], body.get("seed"))
        return self.faults.snapshot()

    def _delays(self) -> dict[str, float]:
        return {"pending_seconds": self.world.pending_seconds,
                "volume_creating_seconds": self.world.volume_creating_seconds}

    def _finish(self, _: Any) -> dict[str, float]:
        self.nodes.finish_pending()
        self.world.finish_creating()
        return self._delays()

    def _put_delays(self, body: Any) -> dict[str, float]:
        if not isinstance(body, dict) or set(body) - {"pending_seconds", "volume_creating_seconds"}:
            raise ValueError('expected {"pending_seconds": s, "volume_creating_seconds": s}')
        for key, value in body.items():
            if float(value) < 0:
                raise ValueError(f"{key} must be >= 0")
            setattr(self.world, key, float(value))
        return self._delays()


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")
