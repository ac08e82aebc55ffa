"""Lightning callbacks.

For MTS layers, in any LightningModule that contains ``MultiscaleConv2d``/``MultiscaleConv1d``
layers (neither needs anything else from this package): ``KernelAveraging`` and
``StretchUsageLogger``. For runs of the ``mts-lightning`` command: ``PredictionCSVWriter``
(the predictions of ``predict`` as CSV) and ``FitSummary`` (what a fit reached, where its
files are).
"""

from mts_lightning.callbacks.fit_summary import FitSummary
from mts_lightning.callbacks.kernel_averaging import KernelAveraging
from mts_lightning.callbacks.prediction_writer import PredictionCSVWriter
from mts_lightning.callbacks.stretch_usage import StretchUsageLogger

__all__ = ["FitSummary", "KernelAveraging", "PredictionCSVWriter", "StretchUsageLogger"]
