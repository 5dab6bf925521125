import random

import pytest

from agent_router.learned.evaluation import evaluate_pair, evaluate_tiers


def test_perfect_constant_and_inverse_routers():
    rng = random.Random(0)
    n = 400
    weak = [float(rng.random() < 0.5) for _ in range(n)]
    strong = [1.0] * n
    cw, cs = [0.001] * n, [0.01] * n
    perfect = evaluate_pair([1 - w for w in weak], weak, strong, cw, cs)
    const = evaluate_pair([0.5] * n, weak, strong, cw, cs)
    inverse = evaluate_pair(weak, weak, strong, cw, cs)
    assert const.apgr == pytest.approx(0.5, abs=1e-9)  # ties count as random, exactly
    assert perfect.apgr > 0.7 > 0.3 > inverse.apgr
    assert perfect.cpt50 == pytest.approx(sum(1 - w for w in weak) / 2 / n, abs=1 / n)
    # Perfect: sending only the failures to strong keeps 100% quality at a big saving.
    assert perfect.save95 > 0.4 and const.save95 < perfect.save95


def test_three_tiers_frontier():
    n = 200
    q = [[0.0] * 100 + [1.0] * 100, [1.0] * n, [1.0] * n]
    c = [[0.001] * n, [0.003] * n, [0.01] * n]
    best = evaluate_tiers([1.0] * 100 + [0.0] * 100, q, c)
    # Hard half to mid tier, easy half to cheap: full quality at a large saving.
    assert best["quality"] >= 0.95 and best["save95"] > 0.7 and best["premium_share"] == 0.0
