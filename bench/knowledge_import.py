"""Importing a knowledge base: 1,000 synthetic articles of 8 example questions each, read from a
JSON file, embedded and written, timed step by step.

    DATABASE_URL=sqlite:////tmp/import-bench.db .venv/bin/python manage.py migrate
    DATABASE_URL=sqlite:////tmp/import-bench.db .venv/bin/python bench/knowledge_import.py

It writes into the database DATABASE_URL names, so name a throwaway one: it refuses a database
that has articles unless --force. The encoder is the one KNOWLEDGE_ENCODER names (empty:
all-MiniLM-L6-v2 from its wheel, as in production). The articles are generated with a fixed
seed: a title, a text of 50 to 90 words and 8 questions of 6 to 14 words, all distinct (an
import encodes a repeated passage once). It prints the seconds to parse the file
(``read_articles``), to load the encoder, to embed and to write (``do_import_knowledge``'s
transaction), and all of it, with the machine's CPU and torch's threads, and the
tokens encoded per second (the embedding time grows with the tokens, not the articles).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = (
    "order parcel delivery refund return card payment account password invoice shipping "
    "address store size colour stock discount voucher subscription warranty repair exchange "
    "tracking courier label box damaged missing late express weekend abroad customs fee tax "
    "receipt bank transfer wallet limit pin statement balance top-up currency app email phone"
).split()
VERBS = "change cancel track find update check get use pay send close open block reset".split()
OPENERS = (
    "how do i",
    "can i",
    "why is my",
    "where can i",
    "what happens if i",
    "is it possible to",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    parser.add_argument("--articles", type=int, default=1000, help="articles (default 1000)")
    parser.add_argument("--questions", type=int, default=8, help="questions each (default 8)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument(
        "--force", action="store_true", help="import even if the database has articles"
    )
    return parser.parse_args(argv)


def synthetic_articles(count: int, questions: int, *, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)

    def words(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))

    articles = []
    for number in range(1, count + 1):
        subject = f"{rng.choice(VERBS)} {rng.choice(WORDS)} {rng.choice(WORDS)}"
        sentences = []
        while sum(len(s.split()) for s in sentences) < rng.randint(50, 90):
            sentences.append(f"To {subject}, {words(6, 14)}.")
        asked = [
            f"{rng.choice(OPENERS)} {subject} {words(2, 9)} {number}" for _ in range(questions)
        ]
        articles.append(
            {
                "external_id": f"bench-{number}",
                "title": f"{subject.capitalize()} ({number})",
                "text": " ".join(sentences),
                "example_questions": asked,
                "topic": rng.choice(WORDS),
            }
        )
    return articles


def token_count(encoder, records) -> int:
    """The encoder's tokens in every passage: what the embedding time is proportional to, so
    that other articles can be compared."""
    from knowledge.models import article_passages

    passages = [
        passage
        for record in records
        for passage in article_passages(
            record.title, record.text, "\n".join(record.example_questions or ())
        )
    ]
    return sum(encoder.token_counts(passages))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot_site.settings")
    import django

    django.setup()
    import torch
    from django.conf import settings

    from knowledge import imports
    from knowledge.importing import read_articles
    from knowledge.models import KnowledgeArticle

    if args.threads:
        torch.set_num_threads(args.threads)
    database = settings.DATABASES["default"]
    if KnowledgeArticle.objects.exists() and not args.force:
        print(
            f"{database['NAME']} has articles: run on a throwaway database, or --force.",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-import-") as folder:
        path = Path(folder) / "articles.json"
        path.write_text(json.dumps(synthetic_articles(args.articles, args.questions)))
        started = time.perf_counter()
        read = read_articles(path)
        parse_seconds = time.perf_counter() - started
    if read.problems:
        print(*read.problems, sep="\n", file=sys.stderr)
        return 1
    passages = sum(1 + len(record.example_questions or ()) for record in read.records)
    started = time.perf_counter()
    encoder = imports.get_encoder()  # what the import's embedding would load first
    load_seconds = time.perf_counter() - started
    result = imports.do_import_knowledge(read.records, dry_run=False, replace=False)
    total = time.perf_counter() - started + parse_seconds

    print(
        f"CPU: {cpu_model()} ({os.cpu_count()} cores); torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"database: {database['ENGINE'].rsplit('.', 1)[-1]} {database['NAME']}")
    print(f"encoder: {imports.current_encoder_name()}")
    print(
        f"{len(read.records)} articles, {passages} passages; "
        f"{len(result.created)} created, {len(result.updated)} updated"
    )
    tokens = token_count(encoder, read.records)
    print(
        f"parse {parse_seconds:.2f}s  load the encoder {load_seconds:.1f}s  embed "
        f"{result.embed_seconds:.1f}s ({passages / result.embed_seconds:.0f} passages/s, "
        f"{tokens / result.embed_seconds:,.0f} tokens/s of {tokens:,})  write "
        f"{result.write_seconds:.2f}s  in all {total:.1f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
