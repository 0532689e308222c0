"""Line-up drawing, rank-1 picking and the Wilson interval of the privacy audit."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from gateway.audit.lineup import draw_lineup, rank1, score, wilson_interval

PEOPLE = [f"person{i:02d}" for i in range(40)]


@pytest.mark.parametrize(
    ("hits", "trials", "low", "high"),
    [
        (0, 10, 0.0, 0.27753),
        (5, 10, 0.23659, 0.76341),
        (10, 10, 0.72247, 1.0),
        (39, 40, 0.87123, 0.99557),
        (1, 6, 0.03005, 0.56351),
    ],
)
def test_wilson_interval_matches_published_values(hits: int, trials: int, low: float, high: float) -> None:
    assert wilson_interval(hits, trials) == pytest.approx((low, high), abs=5e-5)


def test_wilson_interval_is_symmetric_and_contains_the_rate() -> None:
    for trials in (1, 7, 40, 149):
        for hits in range(trials + 1):
            low, high = wilson_interval(hits, trials)
            assert 0.0 <= low <= hits / trials <= high <= 1.0
            mirror_low, mirror_high = wilson_interval(trials - hits, trials)
            assert (low, high) == pytest.approx((1 - mirror_high, 1 - mirror_low))


def test_wilson_interval_without_trials_says_nothing_and_rejects_impossible_counts() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_lineup_holds_the_person_and_distinct_others() -> None:
    rng = random.Random(1)
    for identity in PEOPLE:
        lineup = draw_lineup(identity, PEOPLE, 6, rng)
        assert len(lineup) == 6 == len(set(lineup))
        assert identity in lineup
        assert set(lineup) <= set(PEOPLE)


def test_lineup_draws_repeat_with_the_seed_and_not_without_it() -> None:
    def draws(seed: int) -> list[tuple[str, ...]]:
        rng = random.Random(seed)
        return [draw_lineup(identity, PEOPLE, 6, rng) for identity in PEOPLE]

    assert draws(7050) == draws(7050)
    assert draws(7050) != draws(7051)
    # Input order does not matter, only the seed.
    rng = random.Random(7050)
    assert [draw_lineup(i, list(reversed(PEOPLE)), 6, rng) for i in PEOPLE] == draws(7050)


def test_lineup_spreads_distractors_and_positions() -> None:
    rng = random.Random(3)
    lineups = [draw_lineup("person00", PEOPLE, 6, rng) for _ in range(2000)]
    distractors = Counter(m for lineup in lineups for m in lineup if m != "person00")
    assert set(distractors) == set(PEOPLE) - {"person00"}
    expected = 2000 * 5 / 39
    assert all(0.7 * expected < n < 1.3 * expected for n in distractors.values())
    positions = Counter(lineup.index("person00") for lineup in lineups)
    assert set(positions) == set(range(6))
    assert all(0.7 * 2000 / 6 < n < 1.3 * 2000 / 6 for n in positions.values())


def test_lineup_shrinks_to_the_people_there_are() -> None:
    assert sorted(draw_lineup("a", ["a", "b", "c"], 6, random.Random(0))) == ["a", "b", "c"]


def test_rank1_picks_the_nearest_embedding() -> None:
    candidates = {"a": np.array([0.0, 0.0]), "b": np.array([1.0, 0.0]), "c": np.array([0.0, 3.0])}
    assert rank1(np.array([0.9, 0.2]), candidates) == "b"
    assert rank1(np.array([0.1, 2.0]), candidates) == "c"


def test_rank1_skips_missing_embeddings_and_breaks_ties_by_name() -> None:
    assert rank1(None, {"a": np.zeros(2)}) is None
    assert rank1(np.zeros(2), {"a": None, "b": None}) is None
    assert rank1(np.zeros(2), {"a": None, "b": np.ones(2)}) == "b"
    tie = {"z": np.array([1.0, 0.0]), "m": np.array([-1.0, 0.0])}
    assert rank1(np.zeros(2), tie) == "m"


def test_score_counts_hits_and_chance() -> None:
    result = score([(True, 6), (False, 6), (True, 4), (True, 6)])
    assert (result.hits, result.trials) == (3, 4)
    assert result.rate == 0.75
    assert result.chance == pytest.approx((3 / 6 + 1 / 4) / 4)
    assert result.interval == wilson_interval(3, 4)
    empty = score([])
    assert (empty.rate, empty.trials, empty.chance) == (0.0, 0, 0.0)


def test_the_interval_of_several_draws_per_probe_counts_probes() -> None:
    per_probe = score([(True, 6), (False, 6), (True, 6), (True, 6)] * 10, draws=4)
    once = score([(True, 6)] * 30 + [(False, 6)] * 10)

    assert per_probe.rate == once.rate == 0.75
    assert per_probe.interval == pytest.approx(wilson_interval(7.5, 10))
    assert per_probe.interval[1] - per_probe.interval[0] > once.interval[1] - once.interval[0]
