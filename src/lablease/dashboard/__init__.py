"""The dashboard: the lab's nodes in a browser, served by ``lablease serve`` itself at ``/ui/``.

Server-rendered Jinja2 pages with a small script that refreshes them in place (docs/dashboard.md
says why: nothing to build, reads without JavaScript). On a plain lock server it shows the
inventory and the locks; with the lab service it also shows provisioning live, the cloud parts
of a node and the reconciler.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from lablease.dashboard.routes import HERE, router
from lablease.dashboard.stages import StageTracker
from lablease.dashboard.terms import router as terms_router


def install(app: FastAPI) -> None:
    """Add the dashboard's routes and static files to ``app`` (after ``app.state.lab`` is set)."""
    lab = app.state.lab
    if lab is not None:
        tracker = StageTracker()
        lab.bus.subscribe(tracker)
        app.state.dashboard_stages = tracker
    app.include_router(router)
    app.include_router(terms_router)  # the node page's extend form
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")


__all__ = ["install"]
