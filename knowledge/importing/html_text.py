"""HTML reduced to the plain text an article holds, with the standard library's html.parser.

Helpdesks keep articles as HTML; the bot is shown plain text, and the encoder embeds it. Block
elements end lines (paragraphs, headings, lists and tables end a paragraph: a blank line), list
items start with "- ", scripts, styles and other invisible elements are dropped, entities are
unescaped (``convert_charrefs``), and runs of whitespace inside a line become one space.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

PARAGRAPH_TAGS = {
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table", "blockquote", "pre",
    "figure", "section", "article", "header", "footer", "hr",
}  # fmt: skip
LINE_TAGS = {"br", "div", "li", "dt", "dd", "tr", "caption", "figcaption", "address", "nav"}
CELL_TAGS = {"td", "th"}
DROPPED_TAGS = {"script", "style", "head", "template", "noscript", "svg", "iframe", "object"}
SPACES = re.compile(r"[ \t\f\v\r\u00a0]+")
BLANK_LINES = re.compile(r"\n{3,}")


class _TextCollector(HTMLParser):
    """The text, with a break owed before the next text: 1 ends a line, 2 a paragraph."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.owed_break = 0
        self.dropped_depth = 0
        self.title: list[str] = []
        self.first_heading: list[str] = []
        self._in_title = False
        self._in_h1 = False
        self._seen_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROPPED_TAGS:
            self.dropped_depth += 1
        elif tag == "title":
            self._in_title = True
        elif tag == "h1" and not self._seen_h1:
            self._in_h1 = True
        self._break_at(tag)
        if tag in CELL_TAGS:
            self.parts.append(" ")
        elif tag == "li":
            self._write("- ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._break_at(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in DROPPED_TAGS:
            self.dropped_depth = max(0, self.dropped_depth - 1)
        elif tag == "title":
            self._in_title = False
        elif tag == "h1" and self._in_h1:
            self._in_h1 = False
            self._seen_h1 = True
        self._break_at(tag)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
            return
        if self.dropped_depth:
            return
        if self._in_h1:
            self.first_heading.append(data)
        if data.strip():
            self._write(data.replace("\n", " "))
        elif self.parts and not self.owed_break:
            self.parts.append(" ")

    def _break_at(self, tag: str) -> None:
        if tag in PARAGRAPH_TAGS:
            self.owed_break = 2
        elif tag in LINE_TAGS:
            self.owed_break = max(self.owed_break, 1)

    def _write(self, text: str) -> None:
        if self.parts and self.owed_break:
            self.parts.append("\n" * self.owed_break)
        self.owed_break = 0
        self.parts.append(text)


def html_to_text(html: str) -> str:
    """The text of ``html``, lines and paragraphs kept, markup dropped."""
    return _collapse("".join(_collect(html).parts))


def html_title(html: str) -> str:
    """The document's <title>, or else its first <h1>; "" without either."""
    collector = _collect(html)
    return _collapse(" ".join(collector.title)) or _collapse(" ".join(collector.first_heading))


def _collect(html: str) -> _TextCollector:
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    return collector


def _collapse(text: str) -> str:
    lines = (SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
