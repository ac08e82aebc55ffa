"""Lightning callbacks.

For MTS layers, in any LightningModule that contains ``MultiscaleConv2d``/``MultiscaleConv1d``
layers (neither needs anything else from this package): ``KernelAveraging`` and
``StretchUsageLogger``. For any model: ``EMAWeights`` (a moving average of the weights,
validated, checkpointed and used for evaluation). For runs of the ``mts-lightning`` command: ``PredictionCSVWriter``
(the predictions of ``predict`` as CSV) and ``FitSummary`` (what a fit reached, where its
files are).
"""

from mts_lightning.callbacks.fit_summary import FitSummary
from mts_lightning.callbacks.kernel_averaging import KernelAveraging
from mts_lightning.callbacks.prediction_writer import PredictionCSVWriter
from mts_lightning.callbacks.stretch_usage import StretchUsageLogger
from mts_lightning.callbacks.weight_averaging import EMAWeights

__all__ = [
    "EMAWeights",
    "FitSummary",
    "KernelAveraging",
    "PredictionCSVWriter",
    "StretchUsageLogger",
]
