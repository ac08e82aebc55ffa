"""The summary figure of a large grid: every variant's line can be told apart."""

from __future__ import annotations

from mts_lightning.experiment.figures import condition_figure, line_style


def test_twelve_variants_get_twelve_distinct_lines():
    """The reported case: a grid of 12 variants drew variants 1 and 11 (and 2 and 12) in the
    same colour and dash, as matplotlib's cycle has 10 colours."""
    variants = [f"v{i}" for i in range(12)]
    conditions = [{"name": "slow", "x": 0.5}, {"name": "fast", "x": 2.0}]
    table = [
        {
            "variant": v,
            "condition": c["name"],
            "metric": "UA",
            "mean": 0.5 + 0.01 * i,
            "ci95_low": 0.4,
            "ci95_high": 0.6,
        }
        for i, v in enumerate(variants)
        for c in conditions
    ]
    fig = condition_figure(table, variants, conditions, "tempo")
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == variants
    looks = {(line.get_color(), line.get_linestyle(), line.get_marker()) for line in lines}
    assert len(looks) == 12


def test_line_styles_are_distinct_for_forty_variants_and_keep_the_first_ten_plain():
    styles = [line_style(i) for i in range(40)]
    assert len({tuple(s.values()) for s in styles}) == 40
    # The first ten look as before: solid lines with round markers in the default cycle.
    assert styles[:10] == [{"color": f"C{i}", "linestyle": "-", "marker": "o"} for i in range(10)]
