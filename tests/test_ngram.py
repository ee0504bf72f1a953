"""Tests for the interpolated Kneser-Ney n-gram baseline."""

import math
import time

import numpy as np
import pytest

from deeporb.evaluation.ngram import NGramLM, select_order


def _random_sequences(rng, n_seq, length, vocab, start=0):
    return [[start] + rng.integers(1, vocab, size=length).tolist() for _ in range(n_seq)]


def _markov2(rng, vocab, n_seq, length, table):
    """Second-order Markov chain: token t depends on tokens t-2 and t-1."""
    out = []
    for _ in range(n_seq):
        s = [0, int(rng.integers(1, vocab))]
        for _ in range(length):
            s.append(int(rng.choice(vocab, p=table[s[-2], s[-1]])))
        out.append(s)
    return out


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("modified", [False, True])
def test_distribution_sums_to_one(order, modified):
    rng = np.random.default_rng(order)
    vocab = 9  # ids 7 and 8 never occur in training
    train = [[0] + rng.integers(1, 7, size=rng.integers(1, 40)).tolist() for _ in range(60)]
    lm = NGramLM(order, modified=modified, vocab_size=vocab).fit(train)
    histories = [[], [0], [0, 3], train[0][:5], [1, 2, 3, 4, 5, 6], [8, 8, 7], [0, 8, 1]]
    for hist in histories:
        dist = lm.distribution(hist)
        assert dist.shape == (vocab,)
        assert np.all(dist > 0)
        assert dist.sum() == pytest.approx(1.0, abs=1e-12)
        # brute force through the public per-token call as well
        assert sum(lm.prob(hist, w) for w in range(vocab)) == pytest.approx(1.0, abs=1e-12)


def test_log2prob_matches_prob_and_total_bits():
    rng = np.random.default_rng(1)
    train = _random_sequences(rng, 30, 50, 6)
    lm = NGramLM(3, vocab_size=6).fit(train)
    seq = train[0][:12]
    lp = lm.log2prob(seq)
    assert lp.shape == (len(seq) - 1,)
    expected = [math.log2(lm.prob(seq[:t], seq[t])) for t in range(1, len(seq))]
    np.testing.assert_allclose(lp, expected, rtol=1e-12)
    bits, count = lm.total_bits([seq, [0], []])  # too-short sequences predict nothing
    assert count == len(seq) - 1
    assert bits == pytest.approx(-lp.sum())
    assert lm.bits_per_token([seq]) == pytest.approx(bits / count)


def test_repetitive_sequence_needs_longer_history():
    # After a 1 comes 1 or 2 equally often, but (1, 1) -> 2 and (2, 1) -> 1 always.
    pattern = [1, 1, 2, 2]
    train = [[0] + pattern * 50]
    test = [[0] + pattern * 10]
    bpt = {order: NGramLM(order, vocab_size=3).fit(train).bits_per_token(test) for order in (1, 3)}
    assert bpt[1] > 0.9  # about one bit per token
    assert bpt[3] < 0.25 * bpt[1]


def test_select_order_on_second_order_markov_chain():
    rng = np.random.default_rng(0)
    vocab = 8
    table = rng.dirichlet(np.full(vocab, 0.2), size=(vocab, vocab))
    train = _markov2(rng, vocab, 100, 200, table)
    val = _markov2(rng, vocab, 20, 200, table)
    best, bpt = select_order(train, val, orders=(1, 2, 3, 4, 5))
    assert set(bpt) == {1, 2, 3, 4, 5}
    assert best == 3  # a history of two tokens is exactly the chain's memory
    assert bpt[3] < bpt[2] - 0.5
    assert bpt[2] < bpt[1]
    best_mod, _ = select_order(train, val, orders=(1, 2, 3, 4, 5), modified=True)
    assert best_mod == 3


def test_unseen_tokens_get_finite_bits():
    train = [[0, 1, 2, 3, 4, 1, 2, 3, 4]] * 5
    lm = NGramLM(3, vocab_size=10).fit(train)
    lp = lm.log2prob([0, 7, 8, 1, 9])
    assert np.all(np.isfinite(lp))
    # never seen anywhere: at most the uniform share, reached through the back-off
    assert -lp[0] >= math.log2(10)
    with pytest.raises(ValueError):
        lm.log2prob([0, 10])


def test_vocab_inferred_from_training_and_validation():
    lm = NGramLM(2).fit([[0, 1, 2, 1]])
    assert lm.vocab_size == 3
    best, bpt = select_order([[0, 1, 2, 1]], [[0, 5, 1]], orders=(1, 2))
    assert best in (1, 2) and all(np.isfinite(v) for v in bpt.values())


def test_bad_arguments():
    with pytest.raises(ValueError):
        NGramLM(0)
    with pytest.raises(RuntimeError):
        NGramLM(2).log2prob([0, 1])
    with pytest.raises(ValueError):
        NGramLM(2, vocab_size=2).fit([[0, 1, 2]])


def test_speed_200k_tokens_order5():
    rng = np.random.default_rng(0)
    vocab = 300
    # Zipfian unigram so the model has both frequent and rare n-grams.
    probs = 1.0 / np.arange(1, vocab)
    probs /= probs.sum()
    train = [[0] + rng.choice(np.arange(1, vocab), size=499, p=probs).tolist() for _ in range(400)]
    t0 = time.perf_counter()
    lm = NGramLM(5).fit(train)
    bits, count = lm.total_bits(train)
    elapsed = time.perf_counter() - t0
    assert count == 400 * 499
    assert np.isfinite(bits)
    assert elapsed < 30.0, elapsed  # about 1.5 s on one core; generous for slow CI
