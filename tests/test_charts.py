"""Charts: what a reader needs is on the figure."""

from __future__ import annotations

import numpy as np
import pytest

from imbal_core.charts import confusion_heatmap


@pytest.mark.parametrize("small", [False, True])
def test_confusion_heatmap_names_every_class(small: bool):
    names = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    fig = confusion_heatmap(np.eye(len(names)), names, "ce · seed 0", small=small)
    if small:  # a small multiple pins its ticks, or plotly drops every other class
        assert list(fig.layout.xaxis.tickvals) == names
        assert list(fig.layout.yaxis.tickvals) == names
    assert list(fig.data[0].x) == names and list(fig.data[0].y) == names


def test_validation_curves_break_at_a_new_stage_and_mark_the_last_stages_best_epoch():
    """A two-stage method's head starts again at its second stage: the line breaks there, and the best epoch marked
    is the last stage's (its runs pick their final model there), not a higher first-stage epoch."""
    import pandas as pd

    from imbal_core.charts import validation_curves

    curves = pd.DataFrame(
        {
            "group": "crt",
            "metric": "val_balanced_acc",
            "epoch": [1, 2, 3, 4],
            "stage": ["representation", "representation", "classifier", "classifier"],
            "n": 3,
            "mean": [0.5, 0.7, 0.4, 0.6],
            "sd": 0.01,
        }
    )
    (line,) = validation_curves(curves).data  # one trace a method: its legend entry hides the marker too
    assert list(line.x) == [1, 2, 2.5, 3, 4] and np.isnan(line.y[2])  # the gap before the classifier stage
    assert list(line.marker.size) == [0, 0, 0, 0, 10]  # the diamond: epoch 4 (0.6), not epoch 2 (0.7)
    assert line.customdata[4][3] == " · best epoch of the mean curve in its last stage"


def test_paired_difference_hover_gives_the_interval():
    import pandas as pd

    from imbal_core.charts import paired_difference_chart

    table = pd.DataFrame(
        {"group": "cb_loss", "x": ["balanced_acc", "macro_f1"], "mean_diff": [0.043, -0.084], "n_pairs": [3, 2]}
    ).assign(low=[0.015, np.nan], high=[0.071, np.nan])
    trace = paired_difference_chart(table, "ce · 30 ep", "metric").data[0]
    assert [row[0] for row in trace.customdata] == ["[+0.015, +0.071]", "(no interval)"]


def test_a_recall_change_heat_map_gives_each_cells_interval_in_its_hover():
    import pandas as pd

    from imbal_core.charts import method_class_heatmap

    table = pd.DataFrame(
        {
            "method": ["crt", "crt", "lws", "lws"],
            "class_label": ["nv (4705)", "df (80)"] * 2,
            "change": [-23.3, 18.1, -14.6, 0.0],
            "low": [-31.3, 6.1, -21.7, np.nan],
            "high": [-15.2, 30.0, -7.4, np.nan],
        }
    )
    cells = method_class_heatmap(table, "change", "points", diverging=True).data[0].customdata
    assert cells.tolist() == [["[-31.3, -15.2]", "[+6.1, +30.0]"], ["[-21.7, -7.4]", "(no interval)"]]


def test_method_colours_can_be_told_apart_also_with_deuteranopia():
    """Issue 38: cb_loss/crt, ldam_drw/metric_two_stage and cb_resample/style_kd were near-duplicates. Families share
    a hue; every pair of methods differs by CIEDE2000 >= 12, members of a family also under simulated deuteranopia
    (Machado et al. 2009, severity 1, by colour-science); every method has a marker of its own, which tells apart
    the methods of two families that deuteranopia merges. Every registered method has a colour and a marker."""
    import itertools

    import colour

    from imbal_core.charts import METHOD_COLOURS, METHOD_FAMILIES, METHOD_MARKERS
    from imbal_core.methods import METHODS

    deuteranopia = colour.blindness.matrix_cvd_Machado2009("Deuteranomaly", 1.0)

    def lab(hex_colour: str, simulated: bool) -> np.ndarray:
        linear = colour.models.eotf_sRGB(np.array(colour.notation.HEX_to_RGB(hex_colour)))
        if simulated:
            linear = np.clip(deuteranopia @ linear, 0, 1)
        return colour.XYZ_to_Lab(colour.RGB_to_XYZ(linear, "sRGB", apply_cctf_decoding=False))

    def difference(a: str, b: str, simulated: bool) -> float:
        return float(colour.delta_E(lab(METHOD_COLOURS[a], simulated), lab(METHOD_COLOURS[b], simulated), "CIE 2000"))

    assert set(METHODS.names()) <= set(METHOD_COLOURS)
    assert len(set(METHOD_MARKERS.values())) == len(METHOD_MARKERS) == len(METHOD_COLOURS)
    for a, b in itertools.combinations(METHOD_COLOURS, 2):
        assert difference(a, b, simulated=False) >= 12, (a, b)
    for family in METHOD_FAMILIES.values():
        for a, b in itertools.combinations(family, 2):
            assert difference(a, b, simulated=True) >= 12, (a, b)
