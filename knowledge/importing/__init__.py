"""Bringing a knowledge base in and out: files of articles read into records, and written back.

- ``records``: what a reader makes (``ArticleRecord``, ``Problem``, ``ReadResult``) and the
  checks every format shares;
- one module a format: ``json_files`` (JSON and JSON Lines), ``csv_files``,
  ``markdown_files`` (a folder of Markdown or HTML files), ``zendesk`` (Zendesk Guide's
  Help Center export), with ``html_text`` reducing HTML to text;
- ``formats``: which reader a path needs, and ``read_articles``;
- ``exporting``: the same formats written out;
- ``uploads``: a file uploaded in the admin, kept in the session from preview to confirmation.

Reading writes nothing; ``knowledge.imports.do_import_knowledge`` writes the records.
"""

from knowledge.importing.formats import FORMATS, FormatError, detect_format, read_articles
from knowledge.importing.records import ArticleRecord, Problem, ReadResult

__all__ = [
    "FORMATS",
    "ArticleRecord",
    "FormatError",
    "Problem",
    "ReadResult",
    "detect_format",
    "read_articles",
]
