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
