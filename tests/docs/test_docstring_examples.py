"""The examples in the main public docstrings run as written (doctest), with the output shown."""

import doctest

import pytest

import mts_lightning

# The names whose docstrings must carry a runnable example.
WITH_EXAMPLES = [
    "MultiscaleConv2d",
    "MultiscaleConv1d",
    "convert_to_mts",
    "KernelAveraging",
    "StretchUsageLogger",
    "SpectrogramDataModule",
    "EmotionRecognizer",
]


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_example_runs(name, tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)  # whatever an example writes lands here
    obj = getattr(mts_lightning, name)
    # The object's own docstring only: its methods' examples are not part of this contract.
    test = doctest.DocTestParser().get_doctest(
        obj.__doc__, {}, f"mts_lightning.{name}", obj.__module__, 0
    )
    assert len(test.examples) >= 3, f"{name}'s docstring has no runnable example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report = []
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
