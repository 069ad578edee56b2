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
