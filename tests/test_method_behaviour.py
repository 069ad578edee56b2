"""What each baseline and CRCKD promise, checked on tiny models and batches: when a term acts, what it trains,
what it leaves alone. (The loss formulas themselves are checked by hand in test_losses.py and test_seed_methods.py.)"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from imbal_core.checkpoint import load_checkpoint
from imbal_core.engine import train
from imbal_core.engine.augment import to_float
from imbal_core.methods import Batch, Method, Stage, TrainInfo, create_method, losses
from imbal_core.methods.crckd import ABLATIONS
from imbal_core.models import Classifier, create_model

from .conftest import tiny_config

COUNTS = torch.tensor([40, 16, 8])  # a long-tailed toy training set: class 0 is the head
LABELS = torch.repeat_interleave(torch.arange(3), COUNTS)
STAGE = Stage("train", 1)


def set_up(name: str, epochs: int = 4, num_classes: int = 3, **settings) -> tuple[Classifier, Method]:
    """A method set up on a fresh tiny model; the same call gives the same weights (heads, banks included)."""
    torch.manual_seed(0)
    model = create_model(num_classes=num_classes)
    method = create_method(name, **settings)
    method.setup(model, TrainInfo(COUNTS, LABELS, epochs, 1, torch.device("cpu")))
    return model, method


def toy_batch(epoch: int = 0, size: int = 16) -> Batch:
    """Random images of random training indices; views are plain (no augmentation), so a view shows its image."""
    generator = torch.Generator().manual_seed(1)
    index = torch.randperm(len(LABELS), generator=generator)[:size]
    raw = torch.randint(0, 256, (size, 3, 28, 28), generator=generator, dtype=torch.uint8)
    return Batch(raw, to_float(raw), LABELS[index], index, epoch, 0, STAGE, generator, to_float)


# --- loss-only baselines ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,settings,tau", [("balanced_softmax", {}, 1.0), ("logit_adjust", {"tau": 2.0}, 2.0)])
def test_prior_is_added_in_training_only(name, settings, tau):
    model, method = set_up(name, **settings)
    batch = toy_batch()
    assert type(model.head) is torch.nn.Linear  # the head (used for prediction) carries no prior
    logits = model(batch.x)
    log_prior = torch.log(COUNTS.float() / COUNTS.sum())
    assert method.loss(model, batch).item() == pytest.approx(F.cross_entropy(logits + tau * log_prior, batch.y).item())
    assert method.loss(model, batch).item() != pytest.approx(F.cross_entropy(logits, batch.y).item())
    assert torch.equal(method.class_probs(logits), torch.softmax(logits.double(), dim=1))


def test_drw_switches_on_at_its_epoch():
    model, method = set_up("ldam_drw", epochs=10)  # drw_start 0.8: re-weighting from epoch 8 of 0..9
    batch = toy_batch()
    per_epoch = []
    for epoch in range(10):
        method.on_epoch_start(model, epoch, STAGE)
        per_epoch.append(method.loss(model, batch).item())
    assert per_epoch[:8] == pytest.approx([per_epoch[0]] * 8)
    assert per_epoch[8:] == pytest.approx([per_epoch[8]] * 2)
    cosine = model(batch.x)
    unweighted = losses.ldam_loss(cosine, batch.y, method.margins, 30.0)
    weighted = losses.ldam_loss(cosine, batch.y, method.margins, 30.0, losses.class_balanced_weights(COUNTS, 0.9999))
    assert per_epoch[7] == pytest.approx(unweighted.item()) and per_epoch[8] == pytest.approx(weighted.item())
    assert weighted.item() != pytest.approx(unweighted.item())


# --- decoupled classifiers -------------------------------------------------------------------------------------


def _unit(degrees: float, dim: int) -> torch.Tensor:
    angle = torch.tensor(degrees).deg2rad()
    return torch.cat([torch.stack([angle.cos(), angle.sin()]), torch.zeros(dim - 2)])


def test_tau_norm_zeroes_the_bias_and_picks_tau_on_validation():
    """Head rows 3 u_0 and 1 u_60 (u_a: the unit vector at a degrees), so the head class wins too often at tau = 0.

    A class-0 image at u_0 is right while tau < 1.63; a class-1 image at u_a is right while
    3^(1 - tau) cos(a) < cos(60 - a): tau > 0.37 for a = 60, tau > 0.81 for a = 40. The grid (step 0.1)
    keeps the first tau with the best validation balanced accuracy: 0.4 and 0.9.
    """
    model, method = set_up("tau_norm", num_classes=2)
    dim = model.embed_dim
    weight = torch.stack([3 * _unit(0, dim), _unit(60, dim)])
    for class_1_angle, expected_tau in ((60, 0.4), (40, 0.9)):
        with torch.no_grad():
            model.head.weight.copy_(weight)
            model.head.bias.fill_(0.3)
        features = torch.stack([_unit(0, dim), _unit(class_1_angle, dim)])
        chosen = method.finalize(model, lambda features=features: (features, torch.tensor([0, 1])))
        assert chosen == {"tau": expected_tau}
        assert torch.equal(model.head.bias, torch.zeros(2))
        norms = torch.tensor([3.0, 1.0])
        assert torch.allclose(model.head.weight, weight / norms[:, None] ** expected_tau)

    def no_validation():
        raise AssertionError("a fixed tau must not look at validation")

    assert create_method("tau_norm", tau=1.0).finalize(model, no_validation) == {"tau": 1.0}


@pytest.mark.parametrize("name", ["crt", "lws"])
def test_classifier_stage_leaves_the_backbone_unchanged(store, name):
    run_id = train(tiny_config(method=name, method_settings={"stage2_epochs": 1}), store)
    folder = store.run_dir(run_id)
    before = load_checkpoint(folder / "representation.safetensors")["model"]  # the end of stage 1
    after = load_checkpoint(folder / "model.safetensors")["model"]
    backbone = [key for key in before if key.startswith("backbone.")]
    assert any("running_mean" in key for key in backbone)  # BatchNorm statistics are compared too
    assert all(torch.equal(before[key], after[key]) for key in backbone)
    if name == "crt":
        assert not torch.equal(before["head.weight"], after["head.weight"])
    else:  # LWS learns the scales only: the classifier's directions and biases stay
        assert torch.equal(before["head.linear.weight"], after["head.linear.weight"])
        assert torch.equal(before["head.linear.bias"], after["head.linear.bias"])
        assert not torch.equal(before["head.scale"], after["head.scale"])


def test_crt_representation_stage_is_ce_training(store):
    """cRT's first stage is plain CE with instance sampling: with the same seed it is ce's run, number for number (why
    the 128 px pilot, benchmarks/pilots/ham10000_128_pilot.toml, takes metric_two_stage as its two-stage method)."""
    histories = {
        name: store.get_run(train(tiny_config(method=name, epochs=2), store))["progress"]["history"]
        for name in ("ce", "crt")
    }
    representation = [e for e in histories["crt"] if e["stage"] == "representation"]
    assert [(e["loss"], e["val_balanced_acc"]) for e in representation] == [
        (e["loss"], e["val_balanced_acc"]) for e in histories["ce"]
    ]


def test_lws_scales_rise_for_tail_classes_relative_to_the_head(store):
    config = tiny_config(method="lws", epochs=3, method_settings={"stage2_epochs": 2})
    run_id = train(config, store)
    scale = load_checkpoint(store.run_dir(run_id) / "model.safetensors")["model"]["head.scale"]
    counts = torch.tensor(json.loads((store.run_dir(run_id) / "metrics.json").read_text())["train_counts"])
    order = torch.argsort(counts, descending=True)
    head, tail = scale[order[:2]].mean(), scale[order[-3:]].mean()
    # The run's AdamW at 1e-3 moves a scale by at most ~0.001 a step (~0.02 here): this asks for a learnt gap.
    assert tail - head > 0.2, scale[order].tolist()


# --- CRCKD -----------------------------------------------------------------------------------------------------


def test_crp_trains_the_student_side_only():
    model, method = set_up("crckd", ablation="mt_crp", rampup_start=0.0)
    method.on_epoch_start(model, 0, STAGE)
    method.loss(model, toy_batch()).backward()
    teacher_grad = method.aux["teacher_embed"].weight.grad
    assert teacher_grad is None or not teacher_grad.any()
    assert method.aux["student_embed"].weight.grad.abs().sum() > 0


def test_crckd_memory_banks_fill_before_the_ramp_up():
    model, method = set_up("crckd", epochs=4, rampup_start=0.5)  # the ramp-up starts at epoch 2
    banks = {name: method.aux[name].entries.clone() for name in ("student_bank", "teacher_bank")}
    batch = toy_batch()
    method.on_epoch_start(model, 0, STAGE)
    method.loss(model, batch).backward()
    method.after_step(model)
    visited = torch.zeros(len(LABELS), dtype=torch.bool)
    visited[batch.index] = True
    for name, start in banks.items():
        changed = (method.aux[name].entries != start).any(dim=1)
        assert torch.equal(changed, visited), name
    assert set(method.normalisers) == {"student", "teacher"}  # Z is fixed at the first batch, as in the code


def test_crckd_teacher_sees_its_view_turned_and_flipped():
    model, method = set_up("crckd", ablation="mt", rampup_start=0.0)
    teacher = method.aux["teacher"]
    seen = []
    features = teacher.features

    def recording_features(x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return features(x)

    teacher.features = recording_features
    method.on_epoch_start(model, 0, STAGE)
    batch = toy_batch()
    method.loss(model, batch)
    view, student_view = seen[0], batch.x
    turned_or_flipped = 0
    for image, original in zip(view, student_view):
        variants = [torch.rot90(flipped, k, dims=(1, 2)) for flipped in (original, original.flip(1)) for k in range(4)]
        match = [torch.equal(image, variant) for variant in variants]
        assert any(match)  # a turn and a flip of the same image, nothing else
        turned_or_flipped += not match[0]
    assert turned_or_flipped >= len(view) // 2  # 7 of 8 transforms change the image; 16 images


def test_crckd_ablations_differ_from_the_same_batch():
    def loss_of(ablation: str, epoch: int) -> float:
        model, method = set_up("crckd", epochs=4, ablation=ablation, rampup_start=0.5)
        method.on_epoch_start(model, epoch, STAGE)
        return method.loss(model, toy_batch(epoch)).item()

    model, method = set_up("crckd")
    batch = toy_batch()
    weighted_ce = F.cross_entropy(model(batch.x), batch.y, weight=method.weight).item()
    before = {ablation: loss_of(ablation, epoch=0) for ablation in ABLATIONS}
    # Before the ramp-up only CCD acts (with its warm-up weight); CRP and the mean teacher wait.
    assert before["mt"] == pytest.approx(weighted_ce) and before["mt_crp"] == pytest.approx(weighted_ce)
    assert before["mt_ccd"] == pytest.approx(before["full"]) and before["full"] > weighted_ce
    after = {ablation: loss_of(ablation, epoch=2) for ablation in ABLATIONS}
    assert len({round(value, 6) for value in after.values()}) == len(ABLATIONS), after
    assert after["mt"] > weighted_ce  # the teacher (a copy of the student) sees another view: KL > 0
