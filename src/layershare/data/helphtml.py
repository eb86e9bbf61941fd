"""Paragraph text out of LibreOffice help pages, with the standard library's HTML parser.

The help is generated from the same XML in every language, so each ``<p id=...>`` and
``<h1..h6 id=...>`` carries the same id in German and English: aligning by (file, id) is
exact. Inline markup is flattened (``Key <span>Ctrl</span>+N`` -> ``Key Ctrl+N``), entities
are unescaped by the parser and whitespace is squeezed.

Platform and module variants sit side by side in ``<span hidden="true" class="MAC">``
(also WRITER, CALC, ...), and the page's JavaScript shows one of them; the unclassed hidden
span is the default variant. We keep the default and drop the classed ones, so
"Key Command Ctrl+N" reads "Key Ctrl+N" in both languages.
"""

from __future__ import annotations

from collections import defaultdict
from html.parser import HTMLParser

CAPTURED = {"p", "h1", "h2", "h3", "h4", "h5", "h6"}
# Elements that end an open <p> in HTML (the parser does not apply those rules for us).
CLOSES_P = CAPTURED | {"div", "table", "ul", "ol", "dl", "pre", "blockquote", "section",
                       "header", "footer", "aside", "nav", "form", "hr"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
        "source", "track", "wbr"}


def squeeze(text: str) -> str:
    """Collapse runs of whitespace (incl. NBSP, newlines) to one space; strip the ends."""
    return " ".join(text.split())


class ParagraphParser(HTMLParser):
    """Collects ``(id, text)`` for every ``<p id>`` / ``<h1..h6 id>``, in document order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[tuple[str, str]] = []
        self._tag: str | None = None        # the captured element, None when outside
        self._id = ""
        self._parts: list[str] = []
        self._open: list[tuple[str, bool]] = []  # inner elements: (tag, hides its text)

    def _finish(self) -> None:
        if self._tag is not None:
            self.paragraphs.append((self._id, squeeze("".join(self._parts))))
        self._tag, self._parts, self._open = None, [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self._tag is not None and (tag in CLOSES_P and self._tag == "p" or tag in CAPTURED):
            self._finish()
        if self._tag is None:
            if tag in CAPTURED and attrs.get("id"):
                self._tag, self._id = tag, attrs["id"]
            return
        if tag == "br":
            self._parts.append(" ")
        if tag not in VOID:
            hides = "hidden" in attrs and bool(attrs.get("class"))
            self._open.append((tag, hides))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if self._tag is not None and tag not in VOID and self._open and self._open[-1][0] == tag:
            self._open.pop()

    def handle_endtag(self, tag):
        if self._tag is None:
            return
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                del self._open[i:]
                return
        if tag == self._tag or tag in CLOSES_P:
            self._finish()

    def handle_data(self, data):
        if self._tag is not None and not any(hides for _, hides in self._open):
            self._parts.append(data)

    def close(self) -> None:
        super().close()
        self._finish()


def paragraphs(html: str) -> list[tuple[str, str]]:
    """``(id, text)`` of each identified paragraph or heading of one page."""
    parser = ParagraphParser()
    parser.feed(html)
    parser.close()
    return parser.paragraphs


def align(source: list[tuple[str, str]], target: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Pairs ``(source_text, target_text)`` matched by id.

    An id may occur several times in a page (embedded sections); its occurrences are paired
    in order when both sides have the same number, and skipped otherwise.
    """
    by_id: dict[str, list[str]] = defaultdict(list)
    for pid, text in source:
        by_id[pid].append(text)
    seen_target: dict[str, list[str]] = defaultdict(list)
    for pid, text in target:
        seen_target[pid].append(text)
    pairs = []
    for pid, texts in seen_target.items():
        if len(by_id.get(pid, ())) == len(texts):
            pairs.extend(zip(by_id[pid], texts))
    return pairs
