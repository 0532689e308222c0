"""Line-ups and closed-set identification: how often the attacker picks the right person.

A line-up shows the attacker one released photo (the probe) and a few candidates, exactly one of
whom is the person on the probe; the published human study used six. A closed set is the same
with every person of the gallery as a candidate. The attacker picks the candidate whose
embedding is nearest to the probe's (rank-1). Rates come with a 95% Wilson score interval,
which stays inside [0, 1] and behaves at 0% and 100%, where a dev set of 40 people often is.

Line-ups are drawn with ``random.Random(seed)``, whose ``sample`` and ``shuffle`` give the same
draws on every platform, so a report can be reproduced from its seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: Two-sided 95% quantile of the standard normal distribution.
Z_95 = 1.959963984540054


def wilson_interval(hits: float, trials: float, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    Parameters
    ----------
    hits, trials:
        Successes and trials; ``0 <= hits <= trials``. Fractional when the outcomes of several
        draws per probe are counted as the probe's share of hits.
    z:
        Normal quantile of the confidence level (default 95%).

    Returns
    -------
    tuple[float, float]
        Lower and upper bound; ``(0.0, 1.0)`` when there were no trials (nothing is known).
    """
    if not 0 <= hits <= trials:
        raise ValueError(f"need 0 <= hits <= trials, got {hits} of {trials}")
    if trials == 0:
        return 0.0, 1.0
    p = hits / trials
    z2 = z * z
    denominator = 1.0 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half_width = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    # At 0 and 100% the bounds are exactly 0 and 1; computed, they come out a rounding error off.
    low = 0.0 if hits == 0 else centre - half_width
    high = 1.0 if hits == trials else centre + half_width
    return low, high


def draw_lineup(identity: str, identities: Sequence[str], size: int, rng: random.Random) -> tuple[str, ...]:
    """Draw a line-up: ``identity`` and ``size - 1`` other identities, in random order.

    When fewer than ``size - 1`` other identities exist, all of them are used.
    """
    others = sorted(other for other in identities if other != identity)
    members = [identity, *rng.sample(others, min(size - 1, len(others)))]
    rng.shuffle(members)
    return tuple(members)


def rank1(probe: np.ndarray | None, candidates: Mapping[str, np.ndarray | None]) -> str | None:
    """The candidate whose embedding is nearest to the probe's (Euclidean).

    Candidates without an embedding cannot be picked; a probe without one picks nobody.
    Ties go to the first candidate in sorted order, so the answer never depends on dict order.
    """
    if probe is None:
        return None
    best: tuple[float, str] | None = None
    for name in sorted(candidates):
        embedding = candidates[name]
        if embedding is None:
            continue
        distance = float(np.linalg.norm(embedding - probe))
        if best is None or distance < best[0]:
            best = (distance, name)
    return None if best is None else best[1]


@dataclass(frozen=True)
class Score:
    """Rank-1 identification rate of one attacker on one protocol.

    Attributes
    ----------
    hits, trials:
        Correct picks and line-ups (or closed sets) shown.
    chance:
        Mean over the trials of 1 / number of candidates: what guessing would score.
    draws:
        Line-ups shown per probe. Draws of one probe share its embeddings, so they are not
        independent trials: the interval counts probes, each with its share of hits.
    """

    hits: int
    trials: int
    chance: float
    draws: int = 1

    @property
    def rate(self) -> float:
        """Fraction of correct picks (0 when there were no trials)."""
        return self.hits / self.trials if self.trials else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """95% Wilson interval of :attr:`rate`, over probes."""
        return wilson_interval(self.hits / self.draws, self.trials / self.draws)


def score(outcomes: Sequence[tuple[bool, int]], draws: int = 1) -> Score:
    """Aggregate trials given as ``(hit, number of candidates)``, ``draws`` per probe."""
    hits = sum(1 for hit, _ in outcomes if hit)
    chance = float(np.mean([1.0 / candidates for _, candidates in outcomes])) if outcomes else 0.0
    return Score(hits=hits, trials=len(outcomes), chance=chance, draws=draws)
