"""A run's diff in the command center: read (live from its worktree while it runs, from its
diff artifact once it ended), parsed per file, highlighted, and reviewed — line comments sent
to the run as one steering message, kept, and shown as outdated once their line changed."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import pygments
from pydantic import BaseModel, ConfigDict, Field
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..store import ReviewCommentRow
from .api import Supervised, answer, who

_STYLE = "monokai"
_CONTEXT = 6  # lines of a hunk around a commented line carried in the review


@dataclass
class Line:
    """One line of a hunk: `kind` is "+", "-" or " "; numbers in the old and new file."""

    kind: str
    old: int | None
    new: int | None
    text: str


@dataclass
class Hunk:
    header: str
    lines: list[Line] = field(default_factory=list)


@dataclass
class FileDiff:
    path: str
    hunks: list[Hunk] = field(default_factory=list)

    def line(self, number: int) -> tuple[Hunk, Line] | None:
        """The hunk and line at `number` of the new side (an added or unchanged line)."""
        for hunk in self.hunks:
            for line in hunk.lines:
                if line.new == number:
                    return hunk, line
        return None


def parse(text: str) -> list[FileDiff]:
    """Files of a unified diff (`git diff` output) with their hunks and numbered lines."""
    files: list[FileDiff] = []
    current: FileDiff | None = None
    hunk: Hunk | None = None
    old = new = 0
    minus_path = ""
    for raw in text.splitlines():
        if raw.startswith("diff --git "):
            current, hunk = None, None
        elif raw.startswith("--- ") and hunk is None:
            minus_path = raw[4:].removeprefix("a/")
        elif raw.startswith("+++ ") and hunk is None:
            path = raw[4:].removeprefix("b/")
            current = FileDiff(minus_path if path == "/dev/null" else path)
            files.append(current)
        elif raw.startswith("@@") and current is not None:
            hunk = Hunk(raw)
            current.hunks.append(hunk)
            old, new = _starts(raw)
        elif hunk is not None and raw[:1] in ("+", "-", " "):
            kind, body = raw[0], raw[1:]
            if kind == "+":
                hunk.lines.append(Line("+", None, new, body))
                new += 1
            elif kind == "-":
                hunk.lines.append(Line("-", old, None, body))
                old += 1
            else:
                hunk.lines.append(Line(" ", old, new, body))
                old, new = old + 1, new + 1
    return files


def _starts(header: str) -> tuple[int, int]:
    # @@ -a[,b] +c[,d] @@
    try:
        minus, plus = header.split("@@")[1].split()[:2]
        return int(minus[1:].split(",")[0]), int(plus[1:].split(",")[0])
    except (IndexError, ValueError):
        return 0, 0


@functools.lru_cache(maxsize=256)
def _lexer(path: str) -> Lexer:
    try:
        found: Lexer = get_lexer_for_filename(path, stripnl=False, ensurenl=False)
        return found
    except ClassNotFound:
        plain: Lexer = TextLexer(stripnl=False, ensurenl=False)
        return plain


def highlight(path: str, text: str) -> str:
    """One line of `path` as highlighted HTML (escaped; spans with Pygments' classes)."""
    return pygments.highlight(text, _lexer(path), HtmlFormatter(nowrap=True)).rstrip("\n")


@functools.cache
def stylesheet() -> str:
    """Pygments' classes for the diff, under `.hl`."""
    formatter: Any = HtmlFormatter(style=_STYLE)  # its get_style_defs is untyped in the stubs
    return str(formatter.get_style_defs(".hl"))


async def current_diff(site: Supervised, run_id: int) -> tuple[str, str]:
    """(where it comes from — "live", "final" or "none" —, the diff text) of a run."""
    live = await site.executor.live_diff(run_id)
    if live is not None:
        return "live", live
    store = site.store
    await store.call(store.get_run, run_id)  # RunNotFound for a run that does not exist
    artifacts = await store.call(store.run_events, run_id, 0, "artifact")
    diffs = [a.data.get("content") or "" for a in artifacts if a.data.get("kind") == "diff"]
    return ("final", diffs[-1]) if diffs else ("none", "")


def comment_json(row: ReviewCommentRow, files: dict[str, FileDiff]) -> dict[str, Any]:
    """A kept comment, `outdated` when its line no longer reads as it did."""
    found = files[row.path].line(row.line) if row.path in files else None
    out = row.model_dump(mode="json")
    out["outdated"] = found is None or found[1].text != row.anchor
    return out


def diff_json(files: list[FileDiff], *, html: bool) -> list[dict[str, Any]]:
    """The files as the API answers them (each line highlighted when `html`)."""
    return [
        {
            "path": f.path,
            "hunks": [
                {
                    "header": h.header,
                    "lines": [
                        {
                            "kind": line.kind,
                            "old": line.old,
                            "new": line.new,
                            "text": line.text,
                            **({"html": highlight(f.path, line.text)} if html else {}),
                        }
                        for line in h.lines
                    ],
                }
                for h in f.hunks
            ],
        }
        for f in files
    ]


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1)
    line: int = Field(ge=1)
    text: str = Field(min_length=1, max_length=5_000)


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comments: list[CommentIn] = Field(min_length=1, max_length=100)


def review_message(by: str, picked: list[tuple[CommentIn, Hunk, Line]]) -> str:
    """One steering message for a whole review: each comment with its file, line, the part
    of the hunk around the line, and the text."""
    count = f"{len(picked)} comment{'s' if len(picked) != 1 else ''}"
    parts = [f"Review of your diff from {by} ({count}). Address each:"]
    for n, (comment, hunk, line) in enumerate(picked, 1):
        at = hunk.lines.index(line)
        shown = hunk.lines[max(0, at - _CONTEXT) : at + _CONTEXT + 1]
        body = "\n".join(f"{x.kind}{x.text}" for x in shown)
        parts.append(
            f"{n}. {comment.path}, line {comment.line}:\n```diff\n{hunk.header}\n{body}\n```\n"
            f"{comment.text}"
        )
    return "\n\n".join(parts)


def routes(site: Supervised) -> list[Route]:
    """`/api/runs/{id}/diff`, `/api/runs/{id}/review` and the highlighting's stylesheet."""
    store = site.store

    async def diff(request: Request) -> Response:
        async def work() -> Response:
            run_id = int(request.path_params["run_id"])
            source, text = await current_diff(site, run_id)
            files = parse(text)
            kept = await store.call(store.review_comments, run_id)
            by_path = {f.path: f for f in files}
            html = request.query_params.get("html") in ("1", "true")
            return JSONResponse(
                {
                    "source": source,
                    "files": diff_json(files, html=html),
                    "comments": [comment_json(c, by_path) for c in kept],
                }
            )

        return await answer(work)

    async def review(request: Request) -> Response:
        async def work() -> Response:
            run_id = int(request.path_params["run_id"])
            body = ReviewIn.model_validate_json(await request.body() or b"{}")
            _, text = await current_diff(site, run_id)
            files = {f.path: f for f in parse(text)}
            picked = []
            for comment in body.comments:
                found = files[comment.path].line(comment.line) if comment.path in files else None
                if found is None:
                    raise ValueError(
                        f"{comment.path}, line {comment.line}: not a line of the run's diff"
                    )
                picked.append((comment, *found))
            by = who(request)
            # Steered first: a run that cannot take it (ended) keeps no comment either.
            await site.executor.steer(run_id, review_message(by, picked), by)
            kept = [(c.path, c.line, line.text, c.text) for c, _, line in picked]
            await store.call(store.add_review, run_id, kept, by)
            return JSONResponse({"ok": True, "comments": len(kept)}, status_code=202)

        return await answer(work)

    async def css(request: Request) -> Response:
        return Response(stylesheet(), media_type="text/css")

    return [
        Route("/api/runs/{run_id:int}/diff", diff),
        Route("/api/runs/{run_id:int}/review", review, methods=["POST"]),
        Route("/static/highlight.css", css),
    ]
