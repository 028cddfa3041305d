"""NumPy replay of pytorch-metric-learning 2.9.0's CrossBatchMemory (no miner).

`CrossBatchMemory(loss, embedding_size, memory_size)` keeps a ring buffer of embeddings
`[memory_size, D]` (zeros at first) and labels `[memory_size]` (integer zeros at first),
`queue_idx = 0` and `has_been_filled = False`. One call `xbm(embeddings, labels, enqueue_mask)`:

1. Which rows go where. Without `enqueue_mask`, every row is both written to the memory and a
   query. With it, the rows where the mask is True are only written, the others are only
   queries (renumbered `0..Q-1` in their batch order), and nothing is removed in step 4.
2. Write: the `n` rows to write go to slots `(queue_idx + arange(n)) % memory_size`;
   `queue_idx = (queue_idx + n) % memory_size`, and `has_been_filled` turns True (for good) the
   first time the new `queue_idx <= ` the old one (the write reached or passed the end).
3. Keys: the filled prefix `memory[:queue_idx]` (labels likewise) until the first wrap-around,
   the whole buffer after it. The current batch is already part of the keys.
4. Positives: every key with the query's label, except that without `enqueue_mask` query `i`'s
   own slot is removed (PML's `remove_self_comparisons`); the rest of its own batch stays in.
   Negatives: every key with another label (stale slots included). So the loss is the pair loss
   of the queries against the keys with `self_index[i] = slot of row i` (or -1).
5. Loss: `loss(queries, labels, indices_tuple, keys, key_labels)` with the default reducer;
   pair indices in the unreduced dict are `[query row, memory slot]` (slot = key column,
   because the keys are the memory's prefix or all of it).

PML quirk kept here: the own-slot test of `remove_self_comparisons` shifts slots by the start
slot and unwraps those `<= end - start`; with a batch of one row `end == start`, its slot is
"unwrapped" to `memory_size` and never matches, so a one-row batch keeps itself as a positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pml_pair_reference as pair


@dataclass
class XBMStep:
    """One call: the loss's `LossResult`, the queue after it, and the slots written."""

    result: pair.LossResult
    queue_idx: int
    has_been_filled: bool
    label_memory: np.ndarray
    slots: np.ndarray
    self_index: np.ndarray


class CrossBatchMemory:
    """The ring buffer of `CrossBatchMemory` around a keyed pair loss of `pml_pair_reference`.

    `loss` is `(query_emb, query_labels, key_emb, key_labels, self_index) -> LossResult`, e.g.
    `functools.partial(pml_pair_reference.contrastive_loss, pos_margin=0, neg_margin=1)`.
    """

    def __init__(self, loss, embedding_size, memory_size):
        self.loss = loss
        self.memory_size = int(memory_size)
        self.embedding_memory = np.zeros((self.memory_size, int(embedding_size)))
        self.label_memory = np.zeros(self.memory_size, dtype=np.int64)
        self.queue_idx = 0
        self.has_been_filled = False

    def __call__(self, embeddings, labels, enqueue_mask=None):
        embeddings = np.asarray(embeddings, np.float64)
        labels = np.asarray(labels).reshape(-1)
        if enqueue_mask is not None:
            enqueue_mask = np.asarray(enqueue_mask, dtype=bool).reshape(-1)
            to_write, write_labels = embeddings[enqueue_mask], labels[enqueue_mask]
            queries, query_labels = embeddings[~enqueue_mask], labels[~enqueue_mask]
        else:
            if len(embeddings) > self.memory_size:
                raise ValueError("a batch larger than the memory needs an enqueue_mask")
            to_write, write_labels = embeddings, labels
            queries, query_labels = embeddings, labels

        slots = (self.queue_idx + np.arange(len(to_write))) % self.memory_size
        self.embedding_memory[slots] = to_write
        self.label_memory[slots] = write_labels
        previous = self.queue_idx
        self.queue_idx = int((self.queue_idx + len(to_write)) % self.memory_size)
        if not self.has_been_filled and self.queue_idx <= previous:
            self.has_been_filled = True

        end = self.memory_size if self.has_been_filled else self.queue_idx
        keys, key_labels = self.embedding_memory[:end], self.label_memory[:end]

        if enqueue_mask is not None or len(slots) == 1:
            # No own slot to remove: queries are not in the memory (or PML's one-row quirk).
            self_index = np.full(len(queries), -1)
        else:
            self_index = slots
        result = self.loss(queries, query_labels, keys, key_labels, self_index)
        return XBMStep(
            result,
            self.queue_idx,
            self.has_been_filled,
            self.label_memory.copy(),
            slots,
            self_index,
        )


def from_golden(case):
    """A `CrossBatchMemory` for a pml_xbm.json case (`kwargs.loss = {"call", "kwargs"}`)."""
    inner = case["kwargs"]["loss"]
    if case["kwargs"].get("miner") is not None:
        raise NotImplementedError("CrossBatchMemory with a miner")
    fn = pair.KEYED_LOSSES[inner["call"]]
    kwargs = dict(inner["kwargs"])
    if isinstance(kwargs.get("distance"), dict):
        kwargs["distance"] = pair.Distance.from_spec(kwargs["distance"])

    def loss(query_emb, query_labels, key_emb, key_labels, self_index):
        return fn(query_emb, query_labels, key_emb, key_labels, self_index, **kwargs)

    return CrossBatchMemory(loss, case["kwargs"]["embedding_size"], case["kwargs"]["memory_size"])
