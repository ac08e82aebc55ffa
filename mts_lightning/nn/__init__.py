"""Multi-time-scale convolution layers (Guizzo, Weyde, Barnett Leveson, ICASSP 2020)."""

from mts_lightning.nn.convert import convert_to_mts, freeze, unfreeze
from mts_lightning.nn.multiscale_conv import MultiscaleConv2d
from mts_lightning.nn.multiscale_conv1d import MultiscaleConv1d

__all__ = ["MultiscaleConv1d", "MultiscaleConv2d", "convert_to_mts", "freeze", "unfreeze"]
