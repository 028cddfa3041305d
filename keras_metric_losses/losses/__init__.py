"""The package's losses: a function (scalar or per-example) and a Keras `Loss` class each."""

from keras_metric_losses.losses.fastap import FastAPLoss, fast_ap_loss
from keras_metric_losses.losses.infonce import (
    NTXentLoss,
    SupConLoss,
    SupConMultilabelLoss,
    ntxent_loss,
    supcon_loss,
    supcon_multilabel_loss,
)
from keras_metric_losses.losses.instance import InstanceLoss, instance_loss
from keras_metric_losses.losses.nce import (
    NCELoss,
    SampledSoftmaxLoss,
    nce_loss,
    sampled_softmax_loss,
)
from keras_metric_losses.losses.npairs import (
    NpairsLoss,
    NpairsMultilabelLoss,
    npairs_loss,
    npairs_multilabel_loss,
)
from keras_metric_losses.losses.pn import PNLoss, pn_loss
from keras_metric_losses.losses.ssl import (
    Barlow,
    SimCLRLoss,
    SimSiamLoss,
    VicReg,
    barlow_loss,
    simclr_loss,
    simsiam_loss,
    vicreg_loss,
)

__all__ = [
    "Barlow",
    "FastAPLoss",
    "InstanceLoss",
    "NCELoss",
    "NTXentLoss",
    "NpairsLoss",
    "NpairsMultilabelLoss",
    "PNLoss",
    "SampledSoftmaxLoss",
    "SimCLRLoss",
    "SimSiamLoss",
    "SupConLoss",
    "SupConMultilabelLoss",
    "VicReg",
    "barlow_loss",
    "fast_ap_loss",
    "instance_loss",
    "nce_loss",
    "npairs_loss",
    "npairs_multilabel_loss",
    "ntxent_loss",
    "pn_loss",
    "sampled_softmax_loss",
    "simclr_loss",
    "simsiam_loss",
    "supcon_loss",
    "supcon_multilabel_loss",
    "vicreg_loss",
]
