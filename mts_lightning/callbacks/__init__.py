"""Lightning callbacks for MTS layers: kernel averaging and stretch-usage logging.

Both work with any LightningModule that contains ``MultiscaleConv2d``/``MultiscaleConv1d``
layers; neither needs anything else from this package.
"""

from mts_lightning.callbacks.kernel_averaging import KernelAveraging
from mts_lightning.callbacks.stretch_usage import StretchUsageLogger

__all__ = ["KernelAveraging", "StretchUsageLogger"]
