"""N-pair losses (TF Addons): softmax cross-entropy over a similarity matrix, with targets
from the labels."""
