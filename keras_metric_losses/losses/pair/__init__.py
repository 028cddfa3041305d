"""Pair-based losses: every (anchor, key) pair of a labelled batch, weighted or mined."""
