"""Package index doubles on 127.0.0.1: PyPI's JSON API (`/pypi/<name>/json`), its simple
index (`/simple/<name>/`, PEP 503 with PEP 658 metadata, serving real wheels) and the npm
registry (`/npm/<name>` packuments and real `.tgz` tarballs with their integrity): enough for
`uv lock`, `pip-compile` and `npm install --package-lock-only` to resolve against it."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
import tarfile
import zipfile
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._scripted import Served

_WHEN = "2026-11-01T00:00:00.000Z"


def _tarball(name: str, version: str) -> bytes:
    manifest = json.dumps({"name": name, "version": version, "main": "index.js"}).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path, data in (("package/package.json", manifest), ("package/index.js", b"")):
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _metadata(name: str, version: str) -> bytes:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()


def _wheel(name: str, version: str) -> bytes:
    """A real, installable pure-Python wheel with one empty module."""
    dist = re.sub(r"[-.]+", "_", name)
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist.lower()}/__init__.py": b"",
        f"{info}/METADATA": _metadata(name, version),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: nightshift-double\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip('=')},{len(data)}"
        for path, data in files.items()
    ]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as zf:
        for path, data in files.items():
            zf.writestr(zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0)), data)
    return raw.getvalue()


def _wheel_name(name: str, version: str) -> str:
    return f"{re.sub(r'[-.]+', '_', name)}-{version}-py3-none-any.whl"


class PackageIndexDouble(Served):
    """PyPI and npm, serving the versions a test declares."""

    def __init__(self) -> None:
        self.pypi: dict[str, dict[str, Any]] = {}
        self.npm: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []

    @property
    def pypi_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/pypi"

    @property
    def simple_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/simple/"

    @property
    def npm_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/npm/"

    def python(self, name: str, *versions: str, changelog: str | None = None) -> None:
        """A PyPI project with these releases (the last is the newest)."""
        urls = {"Changelog": changelog} if changelog else {}
        self.pypi[_normalize(name)] = {"name": name, "versions": list(versions), "urls": urls}

    def node(self, name: str, *versions: str, repository: str | None = None) -> None:
        """An npm package with these versions (the last is `latest`)."""
        self.npm[name] = {"versions": list(versions), "repository": repository}

    def _app(self) -> Starlette:
        async def pypi(request: Request) -> Response:
            self.requests.append(request.url.path)
            project = self.pypi.get(_normalize(request.path_params["name"]))
            if project is None:
                return JSONResponse({"message": "Not Found"}, 404)
            versions = project["versions"]
            return JSONResponse(
                {
                    "info": {
                        "name": project["name"],
                        "version": versions[-1],
                        "project_urls": project["urls"],
                    },
                    "releases": {
                        v: [{"yanked": False, "upload_time_iso_8601": _WHEN}] for v in versions
                    },
                }
            )

        async def npm(request: Request) -> Response:
            self.requests.append(request.url.path)
            name = unquote(request.path_params["name"])
            if "/-/" in name:
                pkg, _, file = name.partition("/-/")
                version = file.removesuffix(".tgz").removeprefix(pkg.split("/")[-1] + "-")
                if pkg not in self.npm or version not in self.npm[pkg]["versions"]:
                    return JSONResponse({"error": "Not found"}, 404)
                return Response(_tarball(pkg, version), media_type="application/octet-stream")
            package = self.npm.get(name)
            if package is None:
                return JSONResponse({"error": "Not found"}, 404)
            versions = {}
            for v in package["versions"]:
                data = _tarball(name, v)
                integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
                versions[v] = {
                    "name": name,
                    "version": v,
                    "dist": {
                        "tarball": f"{self.npm_url}{name}/-/{name.split('/')[-1]}-{v}.tgz",
                        "integrity": integrity,
                        "shasum": hashlib.sha1(data).hexdigest(),  # noqa: S324 - npm's own field
                    },
                }
            body: dict[str, Any] = {
                "name": name,
                "dist-tags": {"latest": package["versions"][-1]},
                "versions": versions,
                "time": {v: _WHEN for v in package["versions"]},
            }
            if package["repository"]:
                body["repository"] = {"type": "git", "url": package["repository"]}
            return JSONResponse(body)

        async def simple(request: Request) -> Response:
            self.requests.append(request.url.path)
            project = self.pypi.get(_normalize(request.path_params["name"]))
            if project is None:
                return Response("Not Found", 404)
            links = []
            for v in project["versions"]:
                file = _wheel_name(project["name"], v)
                digest = hashlib.sha256(_wheel(project["name"], v)).hexdigest()
                meta = hashlib.sha256(_metadata(project["name"], v)).hexdigest()
                links.append(
                    f'<a href="/files/{file}#sha256={digest}" data-dist-info-metadata="sha256='
                    f'{meta}" data-core-metadata="sha256={meta}">{file}</a><br/>'
                )
            body = "<!DOCTYPE html><html><body>" + "".join(links) + "</body></html>"
            return Response(body, media_type="text/html")

        async def files(request: Request) -> Response:
            self.requests.append(request.url.path)
            file = request.path_params["file"]
            for project in self.pypi.values():
                for v in project["versions"]:
                    wheel = _wheel_name(project["name"], v)
                    if file == wheel:
                        return Response(_wheel(project["name"], v))
                    if file == wheel + ".metadata":
                        return Response(_metadata(project["name"], v))
            return Response("Not Found", 404)

        return Starlette(
            routes=[
                Route("/pypi/{name}/json", pypi),
                Route("/simple/{name}/", simple),
                Route("/files/{file}", files),
                Route("/npm/{name:path}", npm),
            ]
        )
