"""Reading a mention of nightshift in a GitHub comment, review or issue body.

A mention counts only where a person addressed nightshift: the handle standing as a word
(`@nightshift`, not `@nightshift-bot`, `@nightshiftdevs` or `x@nightshift.io`) outside code
spans, code blocks and quoted lines (`> @nightshift …` quotes someone else). Before anything
reads the text, what a reader of the rendered page cannot see is removed — HTML comments,
invisible Unicode (zero-width and bidirectional controls, tag characters), image alt text —
and recorded, so nothing hidden reaches an agent. The text after the handle is the request;
`approve`, `deny <reason>` and `review` are commands.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
_IMAGE = re.compile(r"!\[([^\]]*)\]\(")  # ![alt](url): the alt text is not shown in place
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
# Characters that render as nothing yet change what a model reads.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f]"
)


@dataclass(frozen=True)
class Mention:
    """A mention found in a text: what was asked, and what was hidden from view."""

    request: str  # the visible text after the handle, trimmed
    command: str | None  # "approve", "deny", "review", or None for a free request
    argument: str  # an approval id or a reason after the command
    stripped: tuple[str, ...] = field(default=())  # what was removed as hidden, per kind


def visible_text(text: str) -> tuple[str, list[str]]:
    """`text` without what its rendered page does not show; and what was removed."""
    stripped: list[str] = []
    comments = _HTML_COMMENT.findall(text)
    if comments:
        stripped.append(
            f"{len(comments)} HTML comment(s): " + " | ".join(c[:200] for c in comments)
        )
        text = _HTML_COMMENT.sub("", text)
    invisible = _INVISIBLE.findall(text)
    if invisible:
        names = sorted({unicodedata.name(c, f"U+{ord(c):04X}") for c in invisible})
        stripped.append(f"{len(invisible)} invisible character(s): {', '.join(names)}")
        text = _INVISIBLE.sub("", text)
    alts = [m.group(1) for m in _IMAGE.finditer(text) if m.group(1)]
    if alts:
        stripped.append(f"{len(alts)} image alt text(s): " + " | ".join(a[:200] for a in alts))
        text = _IMAGE.sub("![](", text)
    return text, stripped


def _addressed_lines(text: str) -> list[str]:
    """The lines a person wrote to be read as prose: no code block, no quoted line, code
    spans blanked."""
    out: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        opened = _FENCE.match(line)
        if fence is not None:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = None
            continue
        if opened:
            fence = opened.group(1)
            continue
        if line.lstrip().startswith(">") or line.startswith(("    ", "\t")):
            continue  # a quote of someone else, or an indented code block
        out.append(line)
    prose = "\n".join(out)
    return _CODE_SPAN.sub(lambda m: " " * len(m.group(0)), prose).splitlines()


def find_mention(text: str, handle: str = "@nightshift") -> Mention | None:
    """The first mention of `handle` in `text` where a person addressed it; None if none."""
    visible, stripped = visible_text(text or "")
    name = re.escape(handle.lstrip("@"))
    # Not part of a longer name or an address: no word character, `-`, `.`, `/` or `@` around.
    pattern = re.compile(rf"(?<![\w@./-])@{name}(?![\w-]|\.\w)", re.IGNORECASE)
    lines = _addressed_lines(visible)
    for index, line in enumerate(lines):
        found = pattern.search(line)
        if found is None:
            continue
        rest = " ".join([line[found.end() :], *lines[index + 1 :]]).strip(" ,:\t")
        request = " ".join(rest.split())
        word, _, argument = request.partition(" ")
        command = word.lower().rstrip(".!") if word.lower().rstrip(".!") in _COMMANDS else None
        return Mention(request, command, argument.strip() if command else "", tuple(stripped))
    return None


_COMMANDS = frozenset({"approve", "deny", "review"})
