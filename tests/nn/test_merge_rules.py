"""The merge rules of the MTS layers (``merge``, ``temperature``, ``learn_temperature``,
``scale_dropout``): each rule against a plain written-out version, gradients, export, one
branch, scale dropout, the published maximum unchanged, bad options refused."""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from torch import nn
from torch.func import functional_call

from mts_lightning.callbacks import StretchUsageLogger, stretch_usage
from mts_lightning.export import export_recognizer
from mts_lightning.models.layers import ConvFactory
from mts_lightning.nn import MultiscaleConv1d, MultiscaleConv2d, convert_to_mts, dispatch
from mts_lightning.nn.options import MERGE_RULES, TEMPERATURE_RULES
from tests.callbacks.test_kernel_averaging_and_usage import make_loader, make_trainer
from tests.inference.test_export import CLASSES, FEATURES, make_recognizer, onnx_probabilities
from tests.nn.test_freeze import assert_frozen_matches

SOFT_RULES = tuple(r for r in MERGE_RULES if r != "max")
FACTORS = ((0.7, 1.0), (1.428, 1.0), (1.3, 0.7))


def make_layer(merge, factors=FACTORS, dtype=torch.float64, **options):
    torch.manual_seed(0)
    if merge in ("logsumexp", "softmax"):
        options.setdefault("temperature", 0.7)
    return MultiscaleConv2d(
        3, 4, (5, 3), padding=(2, 0), scale_factors=factors, merge=merge, dtype=dtype, **options
    )


def written_out(maps, merge, temperature=1.0, attention=None, kept=None):
    """The rule over the aligned maps ``maps`` (a list, base first), literally, and each
    branch's weight per element; ``kept``: the branches in the merge (all by default)."""
    kept = list(range(len(maps))) if kept is None else kept
    ys = [maps[i] for i in kept]
    if merge == "max":
        pooled = ys[0]
        for y in ys[1:]:
            pooled = torch.where(y > pooled, y, pooled)
        return pooled, None
    if merge == "mean":
        return sum(ys) / len(ys), [torch.full_like(ys[0], 1 / len(ys))] * len(ys)
    if merge in ("logsumexp", "softmax"):
        exps = [torch.exp(y / temperature) for y in ys]
        total = sum(exps)
        weights = [e / total for e in exps]
        if merge == "logsumexp":
            return temperature * torch.log(total / len(ys)), weights
        return sum(w * y for w, y in zip(weights, ys, strict=True)), weights
    # attention: mean of the kept maps, averaged over frequency, FC-ReLU-FC, softmax over kept
    context = (sum(ys) / len(ys)).mean(dim=3)  # (B, C, T)
    w1, b1 = attention.squeeze.weight[:, :, 0], attention.squeeze.bias
    w2, b2 = attention.select.weight[:, :, 0], attention.select.bias
    hidden = torch.relu(torch.einsum("dc,bct->bdt", w1, context) + b1[:, None])
    logits = torch.einsum("kd,bdt->bkt", w2, hidden) + b2[:, None]
    logits = logits.reshape(logits.shape[0], len(maps), -1, logits.shape[-1])[:, kept]
    exps = logits.exp()
    weights = [(exps[:, i] / exps.sum(dim=1))[..., None] for i in range(len(kept))]
    return sum(w * y for w, y in zip(weights, ys, strict=True)), weights


def aligned_maps(layer, x):
    """Each branch's map, by the spec: its own convolution with the bilinearly resampled
    kernel, resized bilinearly to the base map."""
    maps = []
    for scale in layer.branch_scales:
        kernel = F.interpolate(layer.weight, scale_factor=scale, mode="bilinear")
        maps.append(F.conv2d(x, kernel, layer.bias, padding=layer.padding))
    size = maps[0].shape[-2:]
    return [maps[0]] + [F.interpolate(m, size=size, mode="bilinear") for m in maps[1:]]


@pytest.mark.parametrize(
    ("merge", "options"),
    [(merge, {}) for merge in MERGE_RULES]
    + [(merge, {"temperature": 1.0}) for merge in TEMPERATURE_RULES],  # the default: no division
)
def test_each_rule_matches_its_written_out_version(merge, options):
    layer = make_layer(merge, **options).eval()
    x = torch.randn(2, 3, 17, 9, dtype=torch.float64)
    with torch.no_grad():
        output = layer(x)
        maps = aligned_maps(layer, x)
        expected, weights = written_out(maps, merge, layer.temperature, layer.scale_attention)
    torch.testing.assert_close(output, expected, rtol=1e-12, atol=1e-12)
    if merge == "max":
        assert layer.stretch_usage_counts.dtype == torch.int64
        return
    # The usage is the mean weight each branch received; the index map its mean ln(s_time).
    mean_weights = [w.expand_as(output).mean().item() for w in weights]
    assert layer.get_stretch_percs() == pytest.approx(mean_weights, abs=1e-12)
    assert layer.stretch_usage_counts.dtype == torch.float64
    assert layer.stretch_usage_counts.sum().item() == pytest.approx(output.numel())
    interleaved = make_layer(merge, output_type="interleave_chdim", **options).eval()
    with torch.no_grad():
        pair = interleaved(x).unflatten(1, (4, 2))
    # The layer keeps ln(s_time) in float32, as the published index map.
    log_scales = [torch.tensor(math.log(s[0]), dtype=torch.float32).item() for s in FACTORS]
    index = sum(w * log for w, log in zip(weights, [0.0, *log_scales], strict=True))
    torch.testing.assert_close(pair[:, :, 0], expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pair[:, :, 1], index.expand_as(expected), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("merge", SOFT_RULES)
def test_soft_rules_lie_between_the_mean_and_the_maximum_or_the_extreme_maps(merge):
    cold = merge in ("logsumexp", "softmax")
    layer = make_layer(merge, temperature=0.05) if cold else make_layer(merge)
    x = torch.randn(2, 3, 17, 9, dtype=torch.float64)
    with torch.no_grad():
        maps = torch.stack(aligned_maps(layer, x))
        output = layer.eval()(x)
    tolerance = 1e-12
    if cold:
        assert (output <= maps.amax(0) + tolerance).all() and (output >= maps.mean(0) - 1e-12).all()
        # A small temperature approaches the maximum.
        assert (output - maps.amax(0)).abs().max() < 0.1
    else:  # mean, attention: a convex combination of the branch maps
        assert (output <= maps.amax(0) + tolerance).all() and (output >= maps.amin(0) - 1e-12).all()


@pytest.mark.parametrize("merge", MERGE_RULES)
def test_gradients_pass_gradcheck(merge):
    torch.manual_seed(0)
    options = {"learn_temperature": True} if merge in ("logsumexp", "softmax") else {}
    layer = MultiscaleConv2d(
        2, 2, (3, 2), padding=1, scale_factors=(0.7, 1.6), merge=merge, scale_dropout=0.4,
        kernel_sharing="autograd", dtype=torch.float64, **options,
    )  # fmt: skip
    names = [name for name, _ in layer.named_parameters()]
    assert ("log_temperature" in names) == bool(options)
    assert any(n.startswith("scale_attention.") for n in names) == (merge == "attention")
    x = torch.randn(2, 2, 6, 4, dtype=torch.float64, requires_grad=True)

    def run(x, *values):
        torch.manual_seed(1)  # the same branches dropped at every evaluation
        return functional_call(layer, dict(zip(names, values, strict=True)), (x,))

    values = [p.detach().clone().requires_grad_(True) for p in layer.parameters()]
    for training in (True, False):
        layer.train(training)
        assert torch.autograd.gradcheck(run, (x, *values), eps=1e-6, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("merge", MERGE_RULES)
def test_one_branch_is_nn_conv(merge):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, (5, 3), padding=(2, 0), dtype=torch.float64)
    conv1d = nn.Conv1d(3, 4, 5, dtype=torch.float64)
    x, x1d = (
        torch.randn(2, 3, 17, 9, dtype=torch.float64),
        torch.randn(2, 3, 17, dtype=torch.float64),
    )
    for training in (True, False):
        # No factor: the base alone, exactly nn.Conv2d.
        alone = make_layer(merge, factors=(), scale_dropout=0.5).train(training)
        alone.load_state_dict(conv.state_dict(), strict=False)
        assert torch.equal(alone(x), conv(x))
        # Factor 1: two identical branches, which every rule merges into the one map.
        for layer, conv_, input_ in (
            (make_layer(merge, factors=(1.0,)), conv, x),
            (MultiscaleConv1d(3, 4, 5, scale_factors=(1.0,), merge=merge, dtype=torch.float64),
             conv1d, x1d),
        ):  # fmt: skip
            layer.train(training).load_state_dict(conv_.state_dict(), strict=False)
            torch.testing.assert_close(layer(input_), conv_(input_), rtol=1e-12, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("merge", MERGE_RULES)
def test_scale_dropout_keeps_the_base_and_is_the_identity_in_evaluation(merge):
    layer = make_layer(merge, scale_dropout=0.5)
    plain = make_layer(merge)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(40, 3, 17, 9, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(layer.eval()(x), plain.eval()(x))
        maps = aligned_maps(layer, x)
        torch.manual_seed(3)
        trained = layer.train()(x)
    # Every sample is the rule over some set of branches that holds the base.
    subsets = [
        [0, *rest] for size in range(4) for rest in itertools.combinations(range(1, 4), size)
    ]
    candidates = [
        written_out(maps, merge, layer.temperature, layer.scale_attention, kept)[0]
        for kept in subsets
    ]
    seen = set()
    for sample in range(x.shape[0]):
        matches = [
            i
            for i, candidate in enumerate(candidates)
            if torch.allclose(trained[sample], candidate[sample], rtol=1e-12, atol=1e-12)
        ]
        assert matches, f"sample {sample} is no merge of a set of branches with the base"
        seen.add(matches[0])
    assert len(seen) >= 6  # the draws vary: the base alone, pairs, triples, all four


def test_scale_dropout_draws_each_stretched_branch_with_its_probability():
    layer = make_layer("max", scale_dropout=0.3)
    torch.manual_seed(0)
    keep = layer._merge_rule(4000, True, torch.device("cpu")).keep
    assert keep.shape == (4000, 4) and keep[:, 0].all()
    assert keep[:, 1:].float().mean().item() == pytest.approx(0.7, abs=0.02)
    assert layer._merge_rule(4000, False, torch.device("cpu")).keep is None


def test_the_published_maximum_is_unchanged():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 17, 9, requires_grad=True)
    default = MultiscaleConv2d(3, 4, (5, 3), scale_factors=FACTORS)
    explicit = MultiscaleConv2d(3, 4, (5, 3), scale_factors=FACTORS, merge="max")
    explicit.load_state_dict(default.state_dict())
    # No parameter, buffer or repr entry added; the fast backend still chosen.
    assert default.state_dict().keys() == explicit.state_dict().keys()
    assert [n for n, _ in default.named_parameters()] == ["weight", "bias"] + [
        f"branch_weights.{i}" for i in range(3)
    ]
    assert "merge" not in repr(default) and "dropout" not in repr(default)
    rule = default._merge_rule(2, True, x.device)
    assert rule.is_plain_max
    assert dispatch.choose_backend(x, default.geometry, "never", rule) is dispatch.NativeBackend
    outputs = [layer(x) for layer in (default, explicit)]
    assert torch.equal(outputs[0], outputs[1])
    grads = [torch.autograd.grad(o.sum(), x)[0] for o in outputs]
    assert torch.equal(grads[0], grads[1])
    assert default.stretch_usage_counts.dtype == torch.int64


def test_backends_decline_the_rules_they_do_not_compute_without_a_warning():
    x = torch.randn(2, 3, 17, 9)
    for merge, dropout, backend in [
        ("mean", 0.0, dispatch.ReferenceBackend),
        ("softmax", 0.5, dispatch.ReferenceBackend),
        ("max", 0.5, dispatch.StockBackend),  # the stock maximum takes scale dropout
    ]:
        layer = make_layer(
            merge, dtype=torch.float32, scale_dropout=dropout, fuse_branches="always"
        )
        rule = layer._merge_rule(2, True, x.device)
        assert dispatch.choose_backend(x, layer.geometry, "always", rule) is backend
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            layer(x).sum().backward()
            layer.eval()(x)


def test_a_learned_temperature_learns():
    layer = make_layer("softmax", learn_temperature=True, temperature=0.5)
    assert layer.log_temperature.item() == pytest.approx(math.log(0.5))
    x = torch.randn(2, 3, 17, 9, dtype=torch.float64)
    layer(x).square().sum().backward()
    assert layer.log_temperature.grad is not None and layer.log_temperature.grad.abs() > 0
    before = layer.eval()(x).detach()
    with torch.no_grad():
        layer.log_temperature.fill_(math.log(2.0))
    assert not torch.allclose(layer(x), before)
    assert layer.current_temperature.item() == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"merge": "avg"}, r"merge must be one of 'max', 'mean', .*; got 'avg'"),
        ({"merge": None}, "merge must be one of"),
        ({"merge": "softmax", "temperature": 0}, "temperature must be a finite number > 0, got 0"),
        ({"merge": "softmax", "temperature": -1.0}, "temperature must be a finite number > 0"),
        ({"merge": "softmax", "temperature": float("nan")}, "temperature must be a finite"),
        ({"merge": "softmax", "temperature": "1"}, "temperature must be a finite number"),
        ({"merge": "softmax", "learn_temperature": "yes"}, "learn_temperature must be True or"),
        ({"temperature": 0.5}, r"temperature and learn_temperature apply to merge='logsumexp' or"),
        ({"merge": "mean", "learn_temperature": True}, r"apply to .* with merge='mean'"),
        ({"scale_dropout": 1.0}, r"scale_dropout must be a probability in \[0, 1\), got 1.0"),
        ({"scale_dropout": -0.1}, "scale_dropout must be a probability"),
        ({"scale_dropout": "0.1"}, "scale_dropout must be a probability"),
        ({"merge": "mean", "output_type": "concat_fmaps"}, "'concat_fmaps' keeps every branch"),
        ({"scale_dropout": 0.2, "output_type": "concat_fmaps"}, "need output_type 'pooled_map'"),
    ],
)
def test_bad_merge_options_are_refused_naming_the_argument(options, message):
    with pytest.raises(ValueError, match=message):
        MultiscaleConv2d(3, 4, 3, **options)
    with pytest.raises(ValueError, match=message):
        MultiscaleConv1d(3, 4, 3, **options)
    # The zoo checks an option's type against the layer's signature before the layer does.
    ill_typed = r"mts: \w+ must be (?:str|float|bool) for MultiscaleConv2d"
    with pytest.raises(ValueError, match=f"{message}|{ill_typed}"):
        ConvFactory("mts", options)(3, 4, 3)


def test_the_zoo_and_convert_to_mts_take_the_merge_options():
    factory = ConvFactory("mts", {"merge": "softmax", "temperature": 0.5, "scale_dropout": 0.1})
    layer = factory(3, 4, 3)
    assert (layer.merge, layer.temperature, layer.scale_dropout) == ("softmax", 0.5, 0.1)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3))
    convert_to_mts(model, merge="attention", include="2")
    assert isinstance(model[2], MultiscaleConv2d) and model[2].merge == "attention"
    assert type(model[0]) is nn.Conv2d
    model(torch.randn(2, 1, 12, 10)).sum().backward()
    assert model[2].scale_attention.select.weight.grad is not None


# Every rule, a learned temperature, the index map and crop alignment, and scale dropout
# (an identity in the exported evaluation graph).
EXPORT_CASES = [
    pytest.param({"merge": "mean"}, id="mean"),
    pytest.param({"merge": "softmax", "learn_temperature": True, "temperature": 0.5},
                 id="softmax-learned"),
    pytest.param({"merge": "logsumexp", "output_type": "interleave_chdim", "fmap_align": "crop"},
                 id="logsumexp-interleave-crop"),
    pytest.param({"merge": "attention", "scale_dropout": 0.3}, id="attention-dropout"),
]  # fmt: skip


@pytest.mark.parametrize("merge", SOFT_RULES)
@pytest.mark.parametrize("output_type", ["pooled_map", "interleave_chdim"])
def test_the_frozen_form_gives_the_evaluation_output(monkeypatch, merge, output_type):
    layer = make_layer(merge, output_type=output_type, scale_dropout=0.2).eval()
    assert_frozen_matches(layer, torch.randn(2, 3, 17, 9, dtype=torch.float64), monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("mts", EXPORT_CASES)
def test_every_rule_exports_to_onnx_and_torchscript(tmp_path, mts):
    """``export_recognizer`` checks each file against PyTorch on three lengths; here the ONNX
    runtime and TorchScript outputs are also compared with the recognizer's own."""
    recognizer = make_recognizer("compact_cnn", conv_type="mts", mts=mts)
    layers = [m for m in recognizer.model.modules() if isinstance(m, MultiscaleConv2d)]
    assert layers and all(m.frozen and m.merge == mts["merge"] for m in layers)
    onnx_path = export_recognizer(recognizer, tmp_path / "model.onnx", "onnx", "features")
    script_path = export_recognizer(recognizer, tmp_path / "model.pt", "torchscript", "features")
    wave = 0.1 * torch.randn(20000)
    expected = recognizer.predict(wave, FEATURES.sample_rate).probabilities
    features = recognizer._features(wave)[None]
    got = onnx_probabilities(onnx_path, features, "features")[0]
    assert got == pytest.approx([expected[c] for c in CLASSES], abs=1e-4)
    scripted = torch.jit.load(str(script_path))(features)[1][0]
    assert scripted.tolist() == pytest.approx([expected[c] for c in CLASSES], abs=1e-4)


class MixedRules(pl.LightningModule):
    """One layer merged by the maximum, one by a softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.hard = MultiscaleConv2d(1, 3, 3, padding=1)
        self.soft = MultiscaleConv2d(3, 4, 3, padding=1, merge="softmax", scale_dropout=0.3)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.soft(torch.relu(self.hard(x))).mean(dim=(2, 3)))

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", F.cross_entropy(self(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


@pytest.mark.slow
def test_the_usage_logger_reports_wins_for_max_and_mean_weights_for_soft_rules(
    tmp_path, monkeypatch
):
    figures = {}  # figure tag or file name -> (title, y label) of each panel

    def capture(key_of):
        def record(*args):
            fig = next(a for a in args if isinstance(a, Figure))
            panels = [(axes.get_title(), axes.get_ylabel()) for axes in fig.axes]
            figures.setdefault(key_of(args), panels)

        return record

    # log_figure(trainer, tag, fig), save_figure(fig, path)
    monkeypatch.setattr(stretch_usage, "log_figure", capture(lambda args: args[1]))
    monkeypatch.setattr(stretch_usage, "save_figure", capture(lambda args: Path(args[1]).name))
    pl.seed_everything(0)
    usage = StretchUsageLogger(stages=("train", "val"))
    module = MixedRules()
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = make_trainer(tmp_path, [usage], max_epochs=2, limit_train_batches=3, logger=logger)
    trainer.fit(module, make_loader(n=12), make_loader(n=8, seed=1))
    # The bar chart and the history figure say where they show weights.
    ((title, label),) = figures["stretch_usage/train/bars"]
    assert "soft layers: weight" in title and label == "fraction won (max) or mean weight"
    assert figures["stretch_usage.png"][0] == ("hard", "fraction won")
    assert figures["stretch_usage.png"][1] == (
        "soft (mean weight, merge=softmax)",
        "mean weight received",
    )
    assert usage.soft_layers == {"soft"}
    for stage in ("train", "val"):
        for counts, fractions in zip(
            usage.history_counts[stage], usage.history[stage], strict=True
        ):
            assert counts["hard"].dtype == np.int64 and counts["soft"].dtype == np.float64
            # Summed weights: one per output element (12 or 8 clips of 4 x 12 x 10 each).
            assert counts["soft"].sum() == pytest.approx(counts["hard"].sum() * 4 / 3)
            assert fractions["soft"].sum() == pytest.approx(1.0)
    # In evaluation each branch's mean weight is what the layer reports for its last batch.
    clips = make_loader(n=8, seed=1).dataset.tensors[0]
    with torch.no_grad():
        module.eval()(clips)
        maps = aligned_maps(module.soft, torch.relu(module.hard(clips)))
    _, weights = written_out(maps, "softmax", 1.0)
    expected = [w.mean().item() for w in weights]
    assert module.soft.get_stretch_percs() == pytest.approx(expected, abs=1e-6)
    restored = StretchUsageLogger(stages=("train", "val"), log_figures=False)
    restored.load_state_dict(usage.state_dict())
    assert restored.history_counts["train"][-1]["soft"].dtype == np.float64
    np.testing.assert_allclose(
        restored.history["val"][-1]["soft"], usage.history["val"][-1]["soft"]
    )
