"""Zendesk Guide's Help Center export: the articles API's JSON.

``GET /api/v2/help_center/{locale}/articles.json`` answers ``{"articles": [...], "next_page":
..., ...}``; an export of several pages is a list of such objects. Each article has (among
others) ``id``, ``title``, ``body`` (HTML), ``section_id``, ``label_names``, ``draft`` and
``locale``. The mapping:

- ``id`` → external id (so importing a newer export updates the same articles);
- ``title`` → title; ``body`` → text, reduced from HTML (``knowledge.importing.html_text``);
- topic: the name of the article's section when the export sideloads sections
  (``?include=sections`` adds ``"sections": [{"id", "name"}, ...]``), else its first label
  name; with neither, an existing article keeps its topic (a new one has none);
- ``draft: true`` → inactive (the bot never shows a draft); otherwise active;
- example questions: Zendesk has none, so the import leaves an existing article's as they are
  (staff add them here; importing a newer export keeps them). Every other key is ignored.
"""

from __future__ import annotations

from typing import Any

from knowledge.importing.html_text import html_to_text
from knowledge.importing.json_files import LocatedJSON, decode_json
from knowledge.importing.records import Problem, ReadResult, finish, record_from_fields


def looks_like_zendesk(document: Any) -> bool:
    """Whether a JSON document is an articles API answer (or a list of them) rather than
    articles in this project's own schema: articles with an HTML ``body`` and no ``text``."""
    pages = document if isinstance(document, list) else [document]
    if not pages or not all(isinstance(page, dict) and "articles" in page for page in pages):
        return False
    articles = [a for page in pages for a in page.get("articles") or [] if isinstance(a, dict)]
    return bool(articles) and all("body" in a and "text" not in a for a in articles)


def read_zendesk(text: str, file: str) -> ReadResult:
    document, result = decode_json(text, file)
    if not result.ok:
        return result
    located = LocatedJSON(text)
    start = located.skip_whitespace(0)
    pages = located.items(start) if isinstance(document, list) else [(start, document)]
    sections: dict[Any, str] = {}
    located_articles: list[tuple[int, Any]] = []
    for offset, page in pages:
        members = located.members(offset) if isinstance(page, dict) else {}
        if "articles" not in members or not isinstance(members["articles"][1], list):
            why = 'must be the articles API\'s answer: an object with an "articles" list'
            result.problems.append(Problem(file, located.line(offset), "(page)", why))
            continue
        located_articles += located.items(members["articles"][0])
        for section in (page.get("sections") or []) if isinstance(page, dict) else []:
            if isinstance(section, dict) and isinstance(section.get("name"), str):
                sections[section.get("id")] = section["name"]
    for offset, article in located_articles:
        line = located.line(offset)
        if not isinstance(article, dict):
            result.problems.append(Problem(file, line, "(article)", "must be an object"))
            continue
        fields = zendesk_fields(article, sections)
        record, problems = record_from_fields(fields, file=file, line=line)
        result.problems.extend(problems)
        if record is not None:
            result.records.append(record)
    return finish(result, file)


def zendesk_fields(article: dict[str, Any], sections: dict[Any, str]) -> dict[str, Any]:
    body = article.get("body")
    labels = article.get("label_names")
    first_label = labels[0] if isinstance(labels, list) and labels else ""
    draft = article.get("draft")
    return {
        "external_id": article.get("id"),
        "title": article.get("title"),
        "text": html_to_text(body) if isinstance(body, str) else body,
        "topic": sections.get(article.get("section_id")) or first_label or None,
        "is_active": (not draft) if isinstance(draft, bool) else draft,
        "example_questions": None,
    }
