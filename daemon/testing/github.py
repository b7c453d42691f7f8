"""A GitHub REST API double on 127.0.0.1: the subset nightshift's skills use, with real
rate-limit answers, pagination by `Link` headers, and a bare git repository as each
repository's remote (pushed branches are real refs; pull requests need a pushed head)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from ._scripted import Served
from .github_repo import FakeRepo

_REACTIONS = frozenset({"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"})


class GitHubDouble(Served):
    """GitHub's REST API, as far as nightshift's skills use it."""

    def __init__(self, token: str = "ghp_double_token", *, prefix: str = "") -> None:  # noqa: S107
        self.token = token
        self.prefix = prefix  # "/api/v3" serves it the way GitHub Enterprise Server does
        self.repos: dict[str, FakeRepo] = {}
        self.calls: list[tuple[str, str]] = []
        self.limit = 5000
        self.remaining = 4999  # what successful answers report as left of the primary limit
        self._queued: list[tuple[int, dict[str, str], str]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def repo(self, full_name: str, git_dir: Path | None = None) -> FakeRepo:
        """The repository `owner/name` (made on first use)."""
        if full_name not in self.repos:
            html = f"https://github.example/{full_name}"
            self.repos[full_name] = FakeRepo(full_name, html, git_dir)
        return self.repos[full_name]

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] != "GET"]

    def rate_limit(self, kind: str = "secondary", *, times: int = 1, wait: int = 3) -> None:
        """Refuse the next `times` requests: `primary` (remaining 0 until reset in `wait`
        seconds) or `secondary` (403 with Retry-After)."""
        for _ in range(times):
            if kind == "primary":
                headers = {
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-reset": str(int(time.time()) + wait),
                }
                self._queued.append((403, headers, "API rate limit exceeded for user ID 1."))
            else:
                headers = {"retry-after": str(wait)}
                self._queued.append(
                    (403, headers, "You have exceeded a secondary rate limit. Please wait.")
                )

    # -- the API --------------------------------------------------------------------------
    def _app(self) -> Any:
        routes = [
            Route("/repos/{owner}/{name}/labels", self._labels),
            Route("/repos/{owner}/{name}/issues", self._issues, methods=["GET", "POST"]),
            Route("/repos/{owner}/{name}/commits/{sha}", self._commit),
            Route("/repos/{owner}/{name}/issues/{number:int}", self._issue),
            Route(
                "/repos/{owner}/{name}/issues/{number:int}/labels",
                self._add_labels,
                methods=["POST"],
            ),
            Route(
                "/repos/{owner}/{name}/issues/{number:int}/comments",
                self._comments,
                methods=["GET", "POST"],
            ),
            Route("/repos/{owner}/{name}/pulls", self._pulls, methods=["GET", "POST"]),
            Route("/repos/{owner}/{name}/pulls/{number:int}", self._pull, methods=["GET", "PATCH"]),
            Route("/repos/{owner}/{name}/actions/runs", self._runs),
            Route("/repos/{owner}/{name}/actions/runs/{run_id:int}", self._run),
            Route("/repos/{owner}/{name}/actions/runs/{run_id:int}/jobs", self._jobs),
            Route("/repos/{owner}/{name}/actions/jobs/{job_id:int}/logs", self._job_logs),
            Route("/_blobs/logs/{job_id:int}", self._log_blob),
            Route("/repos/{owner}/{name}/branches", self._branches),
            Route(
                "/repos/{owner}/{name}/git/refs/heads/{branch:path}",
                self._delete_ref,
                methods=["DELETE"],
            ),
            Route("/repos/{owner}/{name}/deployments", self._deployments),
            Route("/repos/{owner}/{name}/collaborators/{user}/permission", self._permission),
            Route(
                "/repos/{owner}/{name}/pulls/{number:int}/reviews/{id:int}/comments",
                self._review_comments,
            ),
            Route("/repos/{owner}/{name}/pulls/{number:int}/files", self._pull_files),
            Route(
                "/repos/{owner}/{name}/pulls/{number:int}/reviews",
                self._reviews,
                methods=["POST"],
            ),
            Route(
                "/repos/{owner}/{name}/issues/comments/{id:int}",
                self._edit_comment,
                methods=["PATCH"],
            ),
            Route(
                "/repos/{owner}/{name}/issues/comments/{id:int}/reactions",
                self._reaction("issue_comment"),
                methods=["POST"],
            ),
            Route(
                "/repos/{owner}/{name}/pulls/comments/{id:int}/reactions",
                self._reaction("review_comment"),
                methods=["POST"],
            ),
            Route(
                "/repos/{owner}/{name}/issues/{id:int}/reactions",
                self._reaction("issue"),
                methods=["POST"],
            ),
        ]
        app = Starlette(routes=[Mount(self.prefix, routes=routes)] if self.prefix else routes)
        double = self

        async def guard(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            request = Request(scope, receive)
            double.calls.append((request.method, request.url.path))
            if "/_blobs/" not in request.url.path:
                auth = request.headers.get("authorization", "")
                if auth not in (f"Bearer {double.token}", f"token {double.token}"):
                    resp: Response = JSONResponse({"message": "Bad credentials"}, 401)
                    await resp(scope, receive, send)
                    return
                if double._queued:
                    status, headers, message = double._queued.pop(0)
                    resp = JSONResponse({"message": message}, status, headers=headers)
                    await resp(scope, receive, send)
                    return

            async def send_with_limits(message: Any) -> None:
                if message["type"] == "http.response.start":
                    reset = str(int(time.time()) + 3600)
                    message.setdefault("headers", [])
                    message["headers"] += [
                        (b"x-ratelimit-limit", str(double.limit).encode()),
                        (b"x-ratelimit-remaining", str(double.remaining).encode()),
                        (b"x-ratelimit-reset", reset.encode()),
                    ]
                await send(message)

            await app(scope, receive, send_with_limits)

        return guard

    def _find(self, request: Request) -> FakeRepo | None:
        return self.repos.get(f"{request.path_params['owner']}/{request.path_params['name']}")

    @staticmethod
    def _page(request: Request, items: list[Any]) -> Response:
        per_page = int(request.query_params.get("per_page", 30))
        page = int(request.query_params.get("page", 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(items):
            nxt = request.url.include_query_params(page=page + 1, per_page=per_page)
            headers["Link"] = f'<{nxt}>; rel="next"'
        return JSONResponse(chunk, headers=headers)

    @staticmethod
    def _missing() -> Response:
        return JSONResponse({"message": "Not Found"}, 404)

    async def _labels(self, request: Request) -> Response:
        repo = self._find(request)
        return self._page(request, repo.labels) if repo else self._missing()

    async def _issues(self, request: Request) -> Response:
        repo = self._find(request)
        if repo is None:
            return self._missing()
        if request.method == "POST":
            body = await request.json()
            labels = body.get("labels")
            number = repo.issue(body["title"], body.get("body", ""), labels=labels, user="bot")
            return JSONResponse(repo.issues[number], 201)
        state = request.query_params.get("state", "open")
        items = [dict(i) for i in repo.issues.values()] + [
            {**p, "pull_request": {"url": p["html_url"]}, "labels": []} for p in repo.pulls.values()
        ]
        items = [i for i in items if state == "all" or i["state"] == state]
        wanted = request.query_params.get("labels")
        if wanted:
            names = set(wanted.split(","))
            items = [i for i in items if names <= {x["name"] for x in i["labels"]}]
        items.sort(key=lambda i: i["number"], reverse=True)
        return self._page(request, items)

    async def _issue(self, request: Request) -> Response:
        repo = self._find(request)
        issue = repo.issues.get(request.path_params["number"]) if repo else None
        return JSONResponse(issue) if issue else self._missing()

    async def _add_labels(self, request: Request) -> Response:
        repo = self._find(request)
        issue = repo.issues.get(request.path_params["number"]) if repo else None
        if repo is None or issue is None:
            return self._missing()
        body = await request.json()
        for name in body.get("labels", []):
            if name not in {x["name"] for x in issue["labels"]}:
                issue["labels"].append(repo._label(name))
        return JSONResponse(issue["labels"])

    async def _pull_files(self, request: Request) -> Response:
        repo = self._find(request)
        if repo is None:
            return self._missing()
        return self._page(request, repo.pull_files.get(request.path_params["number"], []))

    async def _reviews(self, request: Request) -> Response:
        """A review as GitHub takes it: every line comment must name a file of the pull
        request's diff (422 otherwise, as GitHub answers)."""
        repo = self._find(request)
        number = request.path_params["number"]
        if repo is None or number not in repo.pulls:
            return self._missing()
        review = await request.json()
        known = {f["filename"] for f in repo.pull_files.get(number, [])}
        for comment in review.get("comments", []):
            if comment.get("path") not in known or not isinstance(comment.get("line"), int):
                return JSONResponse(
                    {"message": "Unprocessable Entity", "errors": ["Path could not be resolved"]},
                    status_code=422,
                )
        posted = {"id": next(repo._ids), **review}
        repo.reviews.setdefault(number, []).append(posted)
        return JSONResponse(posted, status_code=200)

    async def _review_comments(self, request: Request) -> Response:
        repo = self._find(request)
        if repo is None:
            return self._missing()
        key = (request.path_params["number"], request.path_params["id"])
        return self._page(request, repo.review_comments.get(key, []))

    async def _edit_comment(self, request: Request) -> Response:
        repo = self._find(request)
        comment_id = request.path_params["id"]
        found = next(
            (
                c
                for cs in (repo.comments.values() if repo else ())
                for c in cs
                if c["id"] == comment_id
            ),
            None,
        )
        if found is None:
            return self._missing()
        found["body"] = (await request.json())["body"]
        found.setdefault("edits", 0)
        found["edits"] += 1
        return JSONResponse(found)

    async def _permission(self, request: Request) -> Response:
        """The collaborator-permission API: `permission` is the legacy level (admin, write,
        read, none) and `role_name` the role (admin, maintain, write, triage, read)."""
        repo = self._find(request)
        if repo is None:
            return self._missing()
        user = request.path_params["user"]
        role = repo.permissions.get(user)
        legacy = {"admin": "admin", "maintain": "write", "write": "write"}.get(role or "", "read")
        return JSONResponse(
            {
                "permission": legacy if role else "none",
                "role_name": role or "none",
                "user": {"login": user},
            }
        )

    def _reaction(self, where: str) -> Any:
        async def handler(request: Request) -> Response:
            repo = self._find(request)
            if repo is None:
                return self._missing()
            content = (await request.json()).get("content")
            if content not in (
                "+1",
                "-1",
                "laugh",
                "confused",
                "heart",
                "hooray",
                "rocket",
                "eyes",
            ):
                return JSONResponse({"message": "Validation Failed"}, status_code=422)
            repo.reactions.append((where, request.path_params["id"], content))
            return JSONResponse({"id": len(repo.reactions), "content": content}, status_code=201)

        return handler

    async def _comments(self, request: Request) -> Response:
        repo = self._find(request)
        number = request.path_params["number"]
        if repo is None or (number not in repo.issues and number not in repo.pulls):
            return self._missing()
        if request.method == "GET":
            return self._page(request, repo.comments.get(number, []))
        body = await request.json()
        comment = {
            "id": next(repo._ids),
            "body": body["body"],
            "user": {"login": "nightshift-bot", "type": "Bot"},
            "html_url": f"{repo.html}/issues/{number}#issuecomment-1",
        }
        repo.comments.setdefault(number, []).append(comment)
        if number in repo.issues:
            repo.issues[number]["comments"] += 1
        return JSONResponse(comment, 201)

    async def _pulls(self, request: Request) -> Response:
        repo = self._find(request)
        if repo is None:
            return self._missing()
        if request.method == "POST":
            body = await request.json()
            head, base = body["head"], body["base"]
            if any(p["head"]["ref"] == head and p["state"] == "open" for p in repo.pulls.values()):
                return JSONResponse(
                    {"message": "Validation Failed", "errors": [{"message": "already exists"}]},
                    422,
                )
            if await asyncio.to_thread(repo._branch_sha, head) is None:
                return JSONResponse(
                    {"message": "Validation Failed", "errors": [{"field": "head"}]}, 422
                )
            number = next(repo._numbers)
            repo.pulls[number] = await asyncio.to_thread(
                repo._pull_json,
                number,
                body["title"],
                head,
                base,
                body.get("body", ""),
                body.get("draft", False),
            )
            return JSONResponse(repo.pulls[number], 201)
        state = request.query_params.get("state", "open")
        head = request.query_params.get("head")
        items = [p for p in repo.pulls.values() if state == "all" or p["state"] == state]
        if head:
            branch = head.split(":", 1)[-1]
            items = [p for p in items if p["head"]["ref"] == branch]
        items.sort(key=lambda p: p["created_at"], reverse=True)
        return self._page(request, items)

    async def _pull(self, request: Request) -> Response:
        repo = self._find(request)
        pull = repo.pulls.get(request.path_params["number"]) if repo else None
        if pull is None:
            return self._missing()
        if request.method == "PATCH":
            pull.update(
                {k: v for k, v in (await request.json()).items() if k in ("title", "body", "state")}
            )
        return JSONResponse(pull)

    async def _runs(self, request: Request) -> Response:
        repo = self._find(request)
        if repo is None:
            return self._missing()
        q = request.query_params
        items = sorted(repo.runs.values(), key=lambda r: r["created_at"], reverse=True)
        for key in ("branch", "head_sha", "status"):
            if key in q:
                field_name = "head_branch" if key == "branch" else key
                items = [r for r in items if q[key] in (r.get(field_name), r.get("conclusion"))]
        per_page = int(q.get("per_page", 30))
        page = int(q.get("page", 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(items):
            nxt = request.url.include_query_params(page=page + 1, per_page=per_page)
            headers["Link"] = f'<{nxt}>; rel="next"'
        return JSONResponse({"total_count": len(items), "workflow_runs": chunk}, headers=headers)

    async def _run(self, request: Request) -> Response:
        repo = self._find(request)
        run = repo.runs.get(request.path_params["run_id"]) if repo else None
        return JSONResponse(run) if run else self._missing()

    async def _jobs(self, request: Request) -> Response:
        repo = self._find(request)
        if repo is None or request.path_params["run_id"] not in repo.runs:
            return self._missing()
        jobs = [j for j in repo.jobs.values() if j["run_id"] == request.path_params["run_id"]]
        return JSONResponse({"total_count": len(jobs), "jobs": jobs})

    async def _job_logs(self, request: Request) -> Response:
        repo = self._find(request)
        job_id = request.path_params["job_id"]
        if repo is None or job_id not in repo.logs:
            return self._missing()
        # GitHub redirects to a short-lived blob URL that needs no token.
        return RedirectResponse(f"{self.base_url}/_blobs/logs/{job_id}", 302)

    async def _log_blob(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        for repo in self.repos.values():
            if job_id in repo.logs:
                return PlainTextResponse(repo.logs[job_id])
        return self._missing()

    async def _commit(self, request: Request) -> Response:
        repo = self._find(request)
        if repo is None or repo.git_dir is None:
            return self._missing()
        sha = request.path_params["sha"]
        proc = await asyncio.to_thread(
            subprocess.run,
            ["git", "-C", str(repo.git_dir), "show", "-s", "--format=%H %cI", sha],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            return JSONResponse({"message": "No commit found for SHA: " + sha}, 422)
        full, date = proc.stdout.split()
        return JSONResponse({"sha": full, "commit": {"committer": {"date": date}}})

    async def _branches(self, request: Request) -> Response:
        repo = self._find(request)
        if repo is None:
            return self._missing()

        def listing() -> list[dict[str, Any]]:
            return [
                {"name": b, "commit": {"sha": repo._branch_sha(b) or ""}, "protected": False}
                for b in sorted(repo.branch_names())
            ]

        return self._page(request, await asyncio.to_thread(listing))

    async def _delete_ref(self, request: Request) -> Response:
        repo = self._find(request)
        branch = request.path_params["branch"]
        if repo is None:
            return self._missing()
        found = await asyncio.to_thread(repo.delete_branch, branch)
        if not found:
            return JSONResponse({"message": "Reference does not exist"}, 422)
        return Response(status_code=204)

    async def _deployments(self, request: Request) -> Response:
        repo = self._find(request)
        if repo is None:
            return self._missing()
        env = request.query_params.get("environment")
        items = [d for d in repo.deployments if env is None or d["environment"] == env]
        return self._page(request, items)
