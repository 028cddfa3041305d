"""TensorFlow Addons 0.23: its metric-learning losses keep their names and arguments here.

`ORIGINALS` maps each public name of `tfa.losses` to its arguments in order (`None`: the
argument is not ours, see the note); ours take the same in the same order (the first two
renamed to Keras' `y_true`, `y_pred` where TF Addons calls them `labels`, `embeddings`), so
migrating is an import change. Where TF Addons returns one scalar per batch, our function
returns per-anchor values whose mean is that scalar (`keras.ops.mean(kml.npairs_loss(...))`);
the classes return TF Addons' value with their default reduction.
"""

ORIGINALS = {
    "npairs_loss": ("y_true", "y_pred"),
    "npairs_multilabel_loss": ("y_true", "y_pred"),
    "NpairsLoss": ("name",),
    "NpairsMultilabelLoss": ("name",),
    "contrastive_loss": ("y_true", "y_pred", "margin"),
    "ContrastiveLoss": ("margin", "reduction", "name"),
    "lifted_struct_loss": ("labels", "embeddings", "margin"),
    "LiftedStructLoss": ("margin", "name"),
    "triplet_semihard_loss": ("y_true", "y_pred", "margin", "distance_metric"),
    "TripletSemiHardLoss": ("margin", "distance_metric", "name"),
    "triplet_hard_loss": ("y_true", "y_pred", "margin", "soft", "distance_metric"),
    "TripletHardLoss": ("margin", "soft", "distance_metric", "name"),
}

# The arguments of ours that take the place of TF Addons' (Keras' names for the inputs).
RENAMED = {"labels": "y_true", "embeddings": "y_pred"}
# Arguments to pass by keyword: ours come in Keras' order (`name`, then `reduction`).
BY_KEYWORD = {"ContrastiveLoss": ("reduction",)}
