"""The adaptive estimator's memory of recent decisions: an outcome teaches on the features of the request it is
about, also when requests are asked again with the very same feature vector (the estimator then keeps one
shared copy of it)."""

from __future__ import annotations

import numpy as np

from agent_router.learned.adaptive import HASH_FOLD, AdaptiveEstimator
from agent_router.learned.features import DENSE_KEYS


def test_an_outcome_moves_the_request_it_is_about_and_not_the_one_decided_after_it():
    est = AdaptiveEstimator({}, explore=0.0, keep_spend=0)
    dim = len(DENSE_KEYS) + HASH_FOLD
    first, other = np.zeros(dim), np.zeros(dim)
    first[0], other[1] = 1.0, 1.0
    # `first` twice (the same array object, as LearnedRouter passes a request's cached vector), `other` between.
    for key, v in (("a", first), ("b", other), ("c", first), ("d", other)):
        est.decide("chat", 0.6, 0.8, 0.5, key=key, vector=v)
    est.update({"task_type": "chat", "tier": "premium", "good": False, "key": "c"})
    _, strong_first = est.residual.adjust(first, 0.6, 0.8)
    _, strong_other = est.residual.adjust(other, 0.6, 0.8)
    assert strong_first < 0.8  # premium's answer to that request was bad: premium looks worse for it
    assert strong_other == 0.8  # the request decided after it is not touched
    est.update({"task_type": "chat", "tier": "premium", "good": True, "key": "d"})
    assert est.residual.adjust(other, 0.6, 0.8)[1] > 0.8
