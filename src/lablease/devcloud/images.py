"""Glance v2: list (with the `next` link libcloud follows) and show images."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request

from lablease.devcloud.errors import CloudError
from lablease.devcloud.identity import base_url
from lablease.devcloud.paging import page
from lablease.devcloud.state import Cloud, Token


def image_view(request: Request, i, project_id: str) -> dict[str, Any]:
    view = {"id": i.id, "name": i.name, "status": "active", "visibility": "public", "protected": False,
            "container_format": "bare", "disk_format": "qcow2", "size": 2361393152, "virtual_size": None,
            "min_disk": i.min_disk, "min_ram": i.min_ram, "owner": project_id, "tags": [],
            "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
            "checksum": None, "os_hidden": False,
            "self": f"/v2/images/{i.id}", "file": f"/v2/images/{i.id}/file", "schema": "/v2/schemas/image"}
    if i.os_distro:
        view["os_distro"] = i.os_distro
    if i.os_version:
        view["os_version"] = i.os_version
    return view


def make_router(cloud: Cloud, auth) -> APIRouter:
    router = APIRouter(prefix="/image")

    @router.get("")
    @router.get("/")
    async def versions(request: Request):
        href = f"{base_url(request)}/image/v2/"
        return {"versions": [{"id": "v2.9", "status": "CURRENT", "links": [{"rel": "self", "href": href}]}]}

    @router.get("/v2/images")
    async def list_images(request: Request, token: Token = auth):
        images = list(cloud.config.images)
        q = request.query_params
        if "name" in q:
            images = [i for i in images if i.name == q["name"]]
        body: dict[str, Any] = {"first": "/v2/images", "schema": "/v2/schemas/images"}
        images, marker = page(images, request, cloud.config.page_size, lambda i: i.id, "glance")
        if marker is not None:  # Glance's next: the request's own query with the new marker
            params = dict(q)
            params["marker"] = marker
            body["next"] = f"/v2/images?{urlencode(params)}"
        body["images"] = [image_view(request, i, token.project.id) for i in images]
        return body

    @router.get("/v2/images/{image_id}")
    async def show_image(image_id: str, request: Request, token: Token = auth):
        image = cloud.image(image_id)
        if image is None:
            raise CloudError(404, f"No image found with ID {image_id}", "glance")
        return image_view(request, image, token.project.id)

    return router
