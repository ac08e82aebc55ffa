"""benchmarks/device_check.py, the accelerator check, kept working on CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "device_check.py"


@pytest.fixture(scope="module")
def device_check():
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("config", ["first layer, fused", "middle layer, stride 2"])
def test_checks_pass_on_cpu(device_check, config, capsys):
    arguments, channels = device_check.CONFIGS[config]
    for options in device_check.OPTIONS[:3]:
        assert device_check.check(config, arguments, channels, options, "cpu", False)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 * 4 and all(line.startswith("ok") for line in lines)


def test_a_wrong_result_fails(device_check, monkeypatch, capsys):
    real_run = device_check.run

    def one_percent_off_in_float32(layer, x, autocast, compiled):
        out, *rest = real_run(layer, x, autocast, compiled)
        return (out * 1.01 if x.dtype == torch.float32 else out, *rest)

    monkeypatch.setattr(device_check, "run", one_percent_off_in_float32)
    arguments, channels = device_check.CONFIGS["first layer, separate"]
    assert not device_check.check("first layer, separate", arguments, channels, {}, "cpu", False)
    failed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    # 1% is beyond float32's tolerance, within autocast's; float64 is untouched.
    assert len(failed) == 1 and " float32 " in failed[0]


def test_refuses_cuda_without_a_device(device_check, monkeypatch):
    monkeypatch.setattr("sys.argv", ["device_check.py", "--device", "cuda"])
    with pytest.raises(SystemExit, match="torch sees no CUDA device"):
        device_check.main()
