"""keras_metric_losses.mining: masks and selections, ties, empty rows, compiled."""

import keras
import numpy as np
import pytest
from support import compiled, numpy

from keras_metric_losses import mining

D = np.array(
    [
        [0.0, 1.0, 3.0, 2.0, 2.0],
        [1.0, 0.0, 2.0, 0.5, 4.0],
        [3.0, 2.0, 0.0, 1.0, 1.0],
        [2.0, 0.5, 1.0, 0.0, 3.0],
        [2.0, 4.0, 1.0, 3.0, 0.0],
    ],
    "float32",
)
LABELS = np.array([0, 0, 1, 1, 2])


def test_label_masks():
    positive, negative = (numpy(m) for m in mining.label_masks(LABELS))
    same = LABELS[:, None] == LABELS[None, :]
    np.testing.assert_array_equal(positive, same & ~np.eye(5, dtype=bool))
    np.testing.assert_array_equal(negative, ~same)
    positive, _ = mining.label_masks(LABELS + 2**24)  # integer ids compared exactly
    assert numpy(positive).sum() == 4


def test_positive_mining_and_rows_without_positive():
    positive, _ = mining.label_masks(LABELS)
    index, found = mining.mine_positives(D, positive, "hard")
    np.testing.assert_array_equal(numpy(index), [1, 0, 3, 2, 0])
    np.testing.assert_array_equal(numpy(found), [True, True, True, True, False])
    index, _ = mining.mine_positives(D, positive, "easy")
    np.testing.assert_array_equal(numpy(index), [1, 0, 3, 2, 0])


def test_negative_mining_ties_go_to_the_first_index():
    _, negative = mining.label_masks(LABELS)
    index, found = mining.mine_negatives(D, negative, "hard")
    # row 0: negatives 2, 3, 4 at 3, 2, 2 -> first of the tie, 3.
    np.testing.assert_array_equal(numpy(index), [3, 3, 4, 1, 2])
    assert numpy(found).all()
    index, _ = mining.mine_negatives(D, negative, "easy")
    np.testing.assert_array_equal(numpy(index), [2, 4, 0, 4, 1])


def test_semi_hard_uses_threshold_and_falls_back_to_farthest():
    _, negative = mining.label_masks(LABELS)
    threshold = np.array([1.0, 1.0, 1.0, 1.0, 2.5], "float32")
    index, _ = mining.mine_negatives(D, negative, "semi-hard", threshold=threshold)
    # row 2: negatives 0 (3.0), 1 (2.0), 4 (1.0); beyond 1.0: 0 and 1 -> 1.
    # row 4: negatives 0 (2.0), 1 (4.0), 2 (1.0), 3 (3.0); beyond 2.5 -> 3 (3.0).
    np.testing.assert_array_equal(numpy(index), [3, 2, 1, 0, 3])
    index, _ = mining.mine_negatives(D, negative, "semi-hard", threshold=np.full(5, 9.0, "float32"))
    farthest, _ = mining.mine_negatives(D, negative, "easy")
    np.testing.assert_array_equal(numpy(index), numpy(farthest))


def test_errors():
    _, negative = mining.label_masks(LABELS)
    with pytest.raises(ValueError, match=r"negative_mining_strategy.*'hardest'"):
        mining.mine_negatives(D, negative, "hardest")
    with pytest.raises(ValueError, match=r"positive_mining_strategy.*'semi-hard'"):
        mining.mine_positives(D, negative, "semi-hard")
    with pytest.raises(ValueError, match="threshold"):
        mining.mine_negatives(D, negative, "semi-hard")


def test_compiled_semi_hard_mining():
    if keras.backend.backend() == "torch":
        pytest.skip("torch.compile is exercised once in test_pn (compile time)")

    def mine(labels, distances):
        positive, negative = mining.label_masks(labels)
        hardest, _ = mining.mine_positives(distances, positive, "hard")
        threshold = mining.take_rows(distances, hardest)
        return mining.mine_negatives(distances, negative, "semi-hard", threshold=threshold)[0]

    np.testing.assert_array_equal(numpy(compiled(mine)(LABELS, D)), numpy(mine(LABELS, D)))
    registered = keras.saving.get_registered_object("keras_metric_losses>mine_negatives")
    assert registered is mining.mine_negatives
