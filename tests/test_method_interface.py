"""The method interface carries what the seed methods need, without engine changes:
an EMA teacher, extra views, a memory bank, extra synthetic images mid-batch, a second stage."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imbal_core.checkpoint import load_checkpoint
from imbal_core.engine import train
from imbal_core.methods import METHODS, Method, MethodCard, Stage, register_method

from .conftest import assert_resume_matches_uninterrupted, tiny_config


class Bank(nn.Module):
    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("features", torch.zeros(size, dim))


@pytest.fixture(scope="module")
def toy_method():
    @register_method("toy_mean_teacher")
    class ToyMeanTeacher(Method):
        card = MethodCard(title="toy", idea="test only", formula="-", paper="-")

        def setup(self, model, info):
            super().setup(model, info)
            self.add_frozen("teacher", copy.deepcopy(model))
            self.add_frozen("bank", Bank(len(info.train_labels), model.embed_dim))
            self.aux["projection"] = nn.Linear(model.embed_dim, 8)

        def stages(self, epochs):
            return [
                Stage("features", epochs),
                Stage("head", 1, sampler="class_balanced", trainable="head", representation=False),
            ]

        def loss(self, model, batch):
            # extra synthetic images joining the batch: flipped copies labelled as their sources
            synthetic = batch.augment(batch.raw.flip(3))
            x = torch.cat([batch.x, synthetic])
            y = torch.cat([batch.y, batch.y])
            features = model.features(x)
            with torch.no_grad():
                teacher_logits = self.aux["teacher"](batch.augment(batch.raw))
            self.aux["bank"].features[batch.index] = features[: len(batch.y)].detach()
            consistency = F.kl_div(
                F.log_softmax(model.head(features[: len(batch.y)]), 1),
                F.softmax(teacher_logits, 1),
                reduction="batchmean",
            )
            return F.cross_entropy(model.head(features), y) + consistency + 0 * self.aux["projection"](features).sum()

        def after_step(self, model):
            with torch.no_grad():
                for t, s in zip(self.aux["teacher"].parameters(), model.parameters()):
                    t.mul_(0.9).add_(s, alpha=0.1)

    yield "toy_mean_teacher"
    del METHODS._entries["toy_mean_teacher"]


def test_teacher_bank_views_synthetic_and_two_stages(store, toy_method):
    run_id = train(tiny_config(method=toy_method, epochs=2), store)
    state = load_checkpoint(store.run_dir(run_id) / "last.safetensors")
    aux, model = state["aux"], state["model"]
    assert (aux["bank.features"].abs().sum(1) > 0).float().mean() > 0.5  # most rows written
    teacher_w = aux["teacher.head.weight"]
    assert not torch.equal(teacher_w, model["head.weight"])  # EMA lags the student
    assert "projection.weight" in aux
    optimizer_sizes = {tuple(v["exp_avg"].shape) for v in state["optimizer"]["state"].values()}
    assert optimizer_sizes <= {tuple(model["head.weight"].shape), tuple(model["head.bias"].shape)}  # stage 2: head only
    assert [h["stage"] for h in store.get_run(run_id)["progress"]["history"]] == ["features", "features", "head"]


def test_toy_method_resumes_exactly(store, toy_method):
    assert_resume_matches_uninterrupted(store, tiny_config(method=toy_method, epochs=2))
