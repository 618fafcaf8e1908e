"""Reading files of articles: each format, and every bad row reported with its file, line and
field (``knowledge.importing``). Reading writes nothing, so these tests need no database."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from knowledge.importing import FormatError, detect_format, read_articles
from knowledge.importing.html_text import html_title, html_to_text

BANKING77 = Path("/work/shared/datasets/banking77/articles.json")


def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


def problems(path: Path, format: str = "auto") -> list[str]:
    return [str(problem) for problem in read_articles(path, format).problems]


def test_it_reads_a_json_list_with_each_articles_line(tmp_path):
    path = write(
        tmp_path,
        "articles.json",
        json.dumps(
            [
                {
                    "title": "Track order",
                    "text": "Follow the DHL link.",
                    "example_questions": ["wheres my stuff", "trak my parcel"],
                    "topic": "orders",
                    "external_id": "kb-1",
                    "facts": ["DHL"],
                },
                {"title": "Returns", "text": "30 days.", "example_questions": "a\n\nb\na"},
            ],
            indent=2,
        ),
    )

    read = read_articles(path)

    assert read.problems == []
    first, second = read.records
    assert (first.title, first.text, first.topic, first.external_id) == (
        "Track order",
        "Follow the DHL link.",
        "orders",
        "kb-1",
    )
    assert first.example_questions == ("wheres my stuff", "trak my parcel")
    assert first.is_active is None
    assert (first.line, second.line) == (2, 15)  # where each object opens
    assert second.example_questions == ("a", "b")  # a question a line, blanks and repeats out
    assert (second.topic, second.external_id) == (None, "")  # no topic: not said


def test_it_reads_an_articles_object_and_an_id_as_the_external_id(tmp_path):
    path = write(
        tmp_path,
        "kb.json",
        '{"source": "x",\n "articles": [\n  {"id": 17, "title": "A", "text": "a"}\n ]}',
    )

    read = read_articles(path)

    assert read.problems == []
    assert [(r.external_id, r.line) for r in read.records] == [("17", 3)]


def test_it_reads_banking77_with_its_category_as_the_external_id():
    read = read_articles(BANKING77)

    assert read.problems == []
    assert len(read.records) == 77
    card = read.records[0]
    assert card.external_id == "card_arrival"
    assert card.title == "My card hasn't arrived yet"
    assert len(card.example_questions) == 8
    assert card.topic is None


def test_it_reports_every_bad_json_row_with_its_line_and_field(tmp_path):
    rows = [
        {"title": "Fine", "text": "ok", "external_id": "a"},
        {"title": "", "text": "no title"},
        {"title": "T" * 201, "text": "long"},
        {"title": "No text"},
        {"title": "Questions", "text": "x", "example_questions": ["ok", 3]},
        {"title": "Dup", "text": "x", "external_id": "a"},
        {"title": "Flag", "text": "x", "is_active": "maybe"},
        "not an object",
    ]
    path = write(tmp_path, "bad.json", "[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]")

    assert problems(path) == [
        f"{path}:3: title: is required",
        f"{path}:4: title: is 201 characters long; at most 200",
        f"{path}:5: text: is required",
        f"{path}:6: example_questions: question 2 must be text, not a number",
        f"{path}:8: is_active: must be true or false, not 'maybe'",
        f"{path}:9: (article): must be an object",
        f"{path}:7: external_id: “a” is also the external id at {path}:2",
    ]


def test_it_reports_a_file_that_is_not_json_where_it_breaks(tmp_path):
    path = write(tmp_path, "broken.json", '[\n {"title": "A",\n  "text": }\n]')

    assert problems(path) == [f"{path}:3: (file): not JSON: Expecting value"]


def test_it_reads_json_lines_with_real_line_numbers(tmp_path):
    path = write(
        tmp_path,
        "kb.jsonl",
        '{"title": "A", "text": "a", "external_id": "1"}\n\n'
        '{"title": "B", "text": "b", "is_active": false}\n'
        "{not json}\n"
        '{"title": "", "text": "c"}\n',
    )

    read = read_articles(path)

    assert [str(p) for p in read.problems] == [
        f"{path}:4: (line): not JSON: Expecting property name enclosed in double quotes",
        f"{path}:5: title: is required",
    ]
    assert [(r.title, r.line, r.is_active) for r in read.records] == [
        ("A", 1, None),
        ("B", 3, False),
    ]


def test_it_reads_csv_with_questions_split_on_lines_or_bars(tmp_path):
    path = write(
        tmp_path,
        "kb.csv",
        "title,text,example_questions,topic,external_id,is_active,notes\n"
        'Track order,"Follow the link.\nIt updates daily.",wheres my stuff | trak my parcel,'
        "orders,kb-1,yes,ignored\n"
        'Returns,30 days.,"how long to return\ncan i send it back",returns,,false,\n',
    )

    read = read_articles(path)

    assert read.problems == []
    track, returns = read.records
    assert track.text == "Follow the link.\nIt updates daily."
    assert track.example_questions == ("wheres my stuff", "trak my parcel")
    assert (track.topic, track.external_id, track.is_active) == ("orders", "kb-1", True)
    assert returns.example_questions == ("how long to return", "can i send it back")
    assert (returns.line, returns.is_active, returns.external_id) == (4, False, "")


def test_it_reports_bad_csv_rows_on_the_line_they_start(tmp_path):
    path = write(
        tmp_path,
        "kb.csv",
        'title,text,external_id\n"Two\nlines",fine,1\n,no title,2\nNo text,,3\nAgain,text,1\n',
    )

    assert problems(path) == [
        f"{path}:4: title: is required",
        f"{path}:5: text: is required",
        f"{path}:6: external_id: “1” is also the external id at {path}:2",
    ]


def test_a_csv_without_a_text_column_is_one_problem(tmp_path):
    path = write(tmp_path, "kb.csv", "title,body\nA,a\n")

    assert problems(path) == [
        f"{path}:1: (header): no text column (the header row names title, text, "
        "example_questions, topic, external_id, is_active)"
    ]


def test_it_reads_a_folder_of_markdown_files_with_front_matter(tmp_path):
    folder = tmp_path / "kb"
    write(
        folder,
        "returns/window.md",
        "---\n"
        "title: Return window\n"
        "topic: returns\n"
        "is_active: false\n"
        "example_questions:\n"
        "  - how long do i have\n"
        '  - "can I return: after 30 days?"\n'
        "---\n"
        "## Thirty days\n\nYou can return **unworn** items, see [the form](https://x.test/r).\n",
    )
    write(folder, "track.md", "# Track order\n\nFollow the `DHL` link.\n")
    write(
        folder,
        "plain.md",
        '---\ntitle: \'It\'\'s plain\'\nexternal_id: ""\nexample_questions: ["a", "b"]\n---\nX\n',
    )
    write(folder, ".hidden/skip.md", "# Skipped\n\nnever read")
    write(folder, "notes.txt", "not an article")

    read = read_articles(folder)

    assert read.problems == []
    plain, window, track = read.records  # in path order
    assert (window.title, window.topic, window.is_active) == ("Return window", "returns", False)
    assert window.external_id == "returns/window.md"  # the path, when the file gives none
    assert window.example_questions == ("how long do i have", "can I return: after 30 days?")
    assert (
        window.text
        == "Thirty days\n\nYou can return unworn items, see the form (https://x.test/r)."
    )
    assert (track.title, track.text, track.external_id) == (
        "Track order",
        "Follow the DHL link.",
        "track.md",
    )
    assert track.example_questions is None  # not said: an existing article keeps its own
    assert (plain.title, plain.external_id, plain.example_questions) == (
        "It's plain",
        "",
        ("a", "b"),
    )


def test_it_reports_markdown_problems_on_their_lines(tmp_path):
    folder = tmp_path / "kb"
    write(folder, "a.md", "---\ntitle: A\ntopic: |\nthis is not front matter\n---\nText\n")
    write(folder, "b.md", "---\ntopic: none\n---\n\n")
    write(folder, "c.md", "---\ntitle: C\n")

    assert problems(folder) == [
        f"{folder}/a.md:3: topic: multi-line values are not read: write the value on one line",
        f"{folder}/a.md:4: (front matter): cannot read this line: write key: value, or - item "
        "under key:",
        f"{folder}/b.md:1: title: is required",
        f"{folder}/b.md:4: text: is required",
        f"{folder}/c.md:1: (front matter): has no closing --- line",
    ]


def test_it_reads_a_zip_of_markdown_files(tmp_path):
    path = tmp_path / "kb.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("kb/track.md", "# Track order\n\nFollow the link.\n")
        archive.writestr("../escape.md", "# Escape\n\nnever read\n")

    read = read_articles(path)

    assert read.problems == []
    assert [(r.title, r.external_id) for r in read.records] == [("Track order", "kb/track.md")]


ZENDESK_PAGE = {
    "articles": [
        {
            "id": 360001,
            "url": "https://x.zendesk.com/api/v2/help_center/en-us/articles/360001.json",
            "title": "Returns &amp; refunds",
            "body": "<h2>Returns</h2><p>Within <b>30&nbsp;days</b>.</p><ul><li>Unworn</li>"
            "<li>Tags on</li></ul><script>track()</script>",
            "section_id": 11,
            "label_names": ["returns-label"],
            "draft": False,
            "locale": "en-us",
        },
        {
            "id": 360002,
            "title": "New policy",
            "body": "<p>Soon.</p>",
            "section_id": 99,
            "label_names": ["policy", "draft-ish"],
            "draft": True,
            "locale": "en-us",
        },
    ],
    "sections": [{"id": 11, "name": "Returns and exchanges"}],
    "next_page": None,
    "page": 1,
    "page_count": 1,
}


def test_it_reads_a_zendesk_export_and_maps_its_fields(tmp_path):
    path = write(tmp_path, "zendesk.json", json.dumps(ZENDESK_PAGE, indent=2))

    assert detect_format(path) == "zendesk"
    read = read_articles(path)

    assert read.problems == []
    returns, policy = read.records
    assert returns.external_id == "360001"
    assert returns.title == "Returns &amp; refunds"  # a title is text in the API, not HTML
    assert returns.text == "Returns\n\nWithin 30 days.\n\n- Unworn\n- Tags on"
    assert returns.topic == "Returns and exchanges"  # the sideloaded section's name
    assert returns.is_active is True
    assert returns.example_questions is None
    assert policy.topic == "policy"  # no section sideloaded: the first label
    assert policy.is_active is False  # a draft


def test_it_reads_several_zendesk_pages_and_reports_bad_articles_on_their_lines(tmp_path):
    second = {"articles": [{"id": 360003, "title": "", "body": "<p>x</p>", "draft": False}]}
    path = write(tmp_path, "pages.json", json.dumps([ZENDESK_PAGE, second], indent=1))
    lines = path.read_text().splitlines()
    bad_line = next(i for i, line in enumerate(lines, 1) if '"id": 360003' in line) - 1

    read = read_articles(path)

    assert [str(p) for p in read.problems] == [f"{path}:{bad_line}: title: is required"]


def test_the_format_can_be_named_and_is_told_by_the_name_otherwise(tmp_path):
    plain = write(tmp_path, "kb.json", '[{"title": "A", "text": "a"}]')
    assert detect_format(plain) == "json"
    assert detect_format(write(tmp_path, "kb.ndjson", "")) == "jsonl"
    assert detect_format(tmp_path) == "markdown"
    with pytest.raises(FormatError, match=r"Cannot tell the format of kb\.txt"):
        detect_format(write(tmp_path, "kb.txt", ""))
    lines = write(tmp_path, "kb.txt", '{"title": "A", "text": "a"}\n')
    assert [r.title for r in read_articles(lines, "jsonl").records] == ["A"]


def test_an_empty_or_missing_file_is_a_problem(tmp_path):
    empty = write(tmp_path, "empty.json", "[]")
    assert problems(empty) == [f"{empty}: (file): holds no articles"]
    missing = tmp_path / "missing.csv"
    assert problems(missing) == [f"{missing}: (file): does not exist"]


def test_html_is_reduced_to_lines_and_paragraphs():
    html = (
        "<html><head><title>Shipping</title><style>p {}</style></head><body>"
        "<h1>Shipping   costs</h1><p>Free over 50&euro;.<br>Else 4.95&nbsp;€.</p>"
        "<div>Ask <a href='/x'>us</a></div><table><tr><td>DE</td><td>2 days</td></tr></table>"
        "<script>var a = 1;</script></body></html>"
    )

    assert html_to_text(html) == (
        "Shipping costs\n\nFree over 50€.\nElse 4.95 €.\n\nAsk us\n\nDE 2 days"
    )
    assert html_title(html) == "Shipping"
    assert html_title("<h1>Only a heading</h1><p>x</p>") == "Only a heading"
