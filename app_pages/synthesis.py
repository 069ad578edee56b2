"""Synthesis: images made for minority classes. For now the image-space tools the engine has
(device augmentation, mixup); style transfer and diffusion samples join this page later."""
from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from imbal_core.data import load_dataset
from imbal_core.engine.augment import AugmentConfig, augment

st.title("Synthesis")
st.caption("Real images beside what the training loop makes of them. Style transfer (Style-KD) and diffusion "
           "samples (IOIS) are added by their own issues.")


@st.cache_resource(show_spinner="Loading the built-in data set…")
def dataset():
    return load_dataset("synthetic")


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


ds = dataset()
counts = ds.train.class_counts(ds.num_classes)
order = list(np.argsort(counts))  # rarest first: these are the classes that need synthetic images
minority = st.selectbox("Minority class", [ds.class_names[i] for i in order],
                        format_func=lambda n: f"{n} ({counts[ds.class_names.index(n)]} training images)", key="syn_class")
c = ds.class_names.index(minority)
seed = st.number_input("Seed", 0, 10_000, 0, key="syn_seed")
members = np.flatnonzero(ds.train.labels == c)[:8]
real = torch.from_numpy(ds.train.images[members]).permute(0, 3, 1, 2)
generator = torch.Generator().manual_seed(int(seed))

st.subheader("Real")
st.image(list(ds.train.images[members]), width=96)
st.subheader("Augmented views (flips, 90° turns, affine, colour jitter — batched, as in training)")
st.image(list(to_uint8(augment(real, generator, AugmentConfig()))), width=96)

st.subheader("Mixup with the head class")
lam = st.slider("lambda (share of the minority image)", 0.0, 1.0, 0.7, 0.05, key="syn_lambda")
head = np.flatnonzero(ds.train.labels == order[-1])[: len(members)]
mixed = lam * real.float() + (1 - lam) * torch.from_numpy(ds.train.images[head]).permute(0, 3, 1, 2).float()
st.image(list(mixed.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).numpy()), width=96)
st.caption(f"Label: {lam:.2f} × {minority} + {1 - lam:.2f} × {ds.class_names[order[-1]]}")
