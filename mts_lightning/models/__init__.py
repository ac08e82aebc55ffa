"""Model zoo: the paper's networks and stronger backbones, each with ``conv_type="mts"|"conv"``.

Build one by class (``CompactCNN(num_classes=8, input_shape=(1, 64, 64))``) or by name
(``build_model("compact_cnn", num_classes=8)``); ``list_models()`` gives the names.
"""

from mts_lightning.models.alexnet import AlexNet
from mts_lightning.models.baseline import BagOfFrames
from mts_lightning.models.compact import CompactCNN
from mts_lightning.models.layers import CONV_TYPES, ConvFactory, make_conv
from mts_lightning.models.paper import PaperSingleConvNet, PaperTwoConvNet
from mts_lightning.models.registry import build_model, list_models, register_model
from mts_lightning.models.resnet import BasicBlock, ResNet18

__all__ = [
    "AlexNet",
    "BagOfFrames",
    "BasicBlock",
    "CONV_TYPES",
    "CompactCNN",
    "ConvFactory",
    "PaperSingleConvNet",
    "PaperTwoConvNet",
    "ResNet18",
    "build_model",
    "list_models",
    "make_conv",
    "register_model",
]
