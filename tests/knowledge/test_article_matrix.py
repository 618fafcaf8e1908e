"""The search: an article scores by the nearest of its vectors, one matrix product for all."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge.index import ArticleMatrix


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def matrix(*articles: list[np.ndarray]) -> ArticleMatrix:
    """Articles 0, 1, ... with these vectors, their rows side by side as load_snapshot has them."""
    counts = [len(vectors) for vectors in articles]
    return ArticleMatrix(
        ids=tuple(range(10, 10 + len(articles))),
        titles=tuple(f"article {i}" for i in range(len(articles))),
        texts=tuple("" for _ in articles),
        vectors=np.stack([vector for vectors in articles for vector in vectors]),
        starts=np.cumsum([0, *counts[:-1]], dtype=np.intp),
    )


def test_it_scores_each_article_by_its_nearest_vector_best_first():
    vectors = [
        [unit(1, 0, 0)],
        [unit(0, 0, 1), unit(1, 1, 0), unit(0, 1, 0)],  # the middle one is nearest the query
        [unit(0, 1, 2), unit(-1, -1, 0)],
    ]
    query = unit(1, 1, 0)

    found = matrix(*vectors).search(query, 3)

    assert [i for i, _ in found] == [1, 0, 2]
    nearest = [max(float(vector @ query) for vector in article) for article in vectors]
    np.testing.assert_allclose([score for _, score in found], [nearest[i] for i in (1, 0, 2)])
    np.testing.assert_allclose(found[0][1], 1.0, atol=1e-6)


def test_single_vector_articles_and_the_last_one_keep_their_own_rows():
    articles = matrix([unit(1, 0)], [unit(0, 1)], [unit(-1, 0), unit(1, 1)])

    assert [i for i, _ in articles.search(unit(1, 1), 1)] == [2]
    assert [i for i, _ in articles.search(unit(0, 1), 3)] == [1, 2, 0]
    assert [i for i, _ in articles.search(unit(1, -0.1), 3)] == [0, 2, 1]
    assert len(articles.search(unit(0, 1), 10)) == 3


def test_skip_identical_scores_the_articles_as_if_the_question_were_not_stored():
    # Article 1 stores the query itself as an example question; its other vector is far off.
    articles = matrix([unit(1, 0.8)], [unit(1, 1), unit(-1, 0)], [unit(0, 1)])
    query = unit(1, 1)

    assert articles.search(query, 1)[0][0] == 1
    unseen = articles.search(query, 3, skip_identical=True)

    assert [i for i, _ in unseen] == [0, 2, 1]
    np.testing.assert_allclose(unseen[0][1], float(unit(1, 0.8) @ query), rtol=1e-6)
    np.testing.assert_allclose(unseen[2][1], float(unit(-1, 0) @ query), rtol=1e-6)


def at_cosine(cosine: float, sign: float = 1.0) -> np.ndarray:
    """A unit vector whose cosine with (1, 0) is ``cosine``."""
    return unit(cosine, sign * (1 - cosine**2) ** 0.5)


def test_a_temperature_ranks_by_a_soft_maximum_and_keeps_the_nearest_cosine_as_the_score():
    # Article 0 has one vector at 0.90; article 1 three at 0.85 (several example questions).
    articles = matrix(
        [at_cosine(0.90)], [at_cosine(0.85), at_cosine(0.85, -1), at_cosine(0.85)], [unit(0, 1)]
    )
    query = unit(1, 0)

    nearest = articles.search(query, 3)
    soft = articles.search(query, 3, temperature=0.1)  # 0.1·ln 3 = 0.11 > 0.05 apart

    assert [i for i, _ in nearest] == [0, 1, 2]
    assert [i for i, _ in soft] == [1, 0, 2]
    np.testing.assert_allclose([score for _, score in soft], [0.85, 0.90, 0.0], atol=1e-6)
    assert [i for i, _ in articles.search(query, 3, temperature=0.01)] == [0, 1, 2]
    # The best score (what the decline threshold is compared with) is any article's best.
    first, best = articles.scored_search(query, 1, temperature=0.1)
    assert [i for i, _ in first] == [1]
    assert best == pytest.approx(0.90, abs=1e-6)
