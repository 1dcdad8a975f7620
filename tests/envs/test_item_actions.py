"""EasyRL4Rec's continuous action -> item mapping and the item embeddings learned from the training logs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recgym.envs.item_actions import (
    log_item_embeddings,
    map_actions_to_items,
    normalise_rows,
    svd_item_embeddings,
)


def test_mapping_clips_scores_normalised_embeddings_and_masks():
    # unit rows: item 0 = x axis, item 1 = y axis, item 2 = the diagonal
    emb = normalise_rows(torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]]))
    assert torch.allclose(emb[2], torch.tensor([0.5**0.5, 0.5**0.5]))
    a = torch.tensor([[1.0, 0.1], [0.2, 1.0], [5.0, 4.0], [-1.0, -1.0]])
    # (5, 4) clips to (1, 1): the diagonal (score 1.414) beats x (1.0); unclipped, x would win over y too
    assert map_actions_to_items(a, emb).tolist() == [0, 1, 2, 0]
    # the mask removes the best item: the best allowed one is taken (the diagonal for row 0)
    mask = torch.tensor([[False, True, True], [True, False, True], [True, True, True], [False, True, False]])
    assert map_actions_to_items(a, emb, mask).tolist() == [2, 2, 2, 1]
    # a masked item never wins, even when every allowed score is negative (EasyRL4Rec's 0/1 product would
    # give the masked item score 0 and pick it)
    neg = torch.tensor([[-1.0, -1.0]])
    assert map_actions_to_items(neg, emb, torch.tensor([[False, True, True]])).tolist() == [1]
    # a row with nothing allowed falls back to every item (the env ends it anyway)
    assert map_actions_to_items(a[:1], emb, torch.zeros(1, 3, dtype=torch.bool)).tolist() == [0]


def test_remap_eps_draws_random_allowed_items_per_row():
    emb = normalise_rows(torch.eye(5))
    a = torch.tensor([[1.0, 0, 0, 0, 0]]).repeat(4000, 1)
    mask = torch.ones(4000, 5, dtype=torch.bool)
    mask[:, 3] = False
    g = torch.Generator().manual_seed(0)
    items = map_actions_to_items(a, emb, mask, remap_eps=0.2, generator=g)
    counts = torch.bincount(items, minlength=5).double() / 4000
    assert counts[3] == 0  # never a masked item
    # 80% greedy + 20% uniform over the 4 allowed items: item 0 gets 0.85, the others 0.05 each
    assert abs(float(counts[0]) - 0.85) < 0.03
    assert all(abs(float(c) - 0.05) < 0.015 for c in counts[[1, 2, 4]])
    again = map_actions_to_items(a, emb, mask, remap_eps=0.2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(items, again)
    assert torch.equal(map_actions_to_items(a, emb, mask), torch.zeros(4000, dtype=torch.int64))


def test_mapping_refuses_bad_actions():
    emb = normalise_rows(torch.eye(3))
    with pytest.raises(ValueError, match=r"actions of envs \[1\] contain NaN or inf"):
        map_actions_to_items(torch.tensor([[0.0, 1, 0], [float("nan"), 0, 0]]), emb)
    with pytest.raises(ValueError, match=r"actions must be \[B, k=3\]"):
        map_actions_to_items(torch.zeros(2, 4), emb)


def test_log_embeddings_come_from_the_training_logs(synthetic):
    e = log_item_embeddings(synthetic, "train_svd", 8)
    assert torch.equal(e, svd_item_embeddings(synthetic.train_matrix(), 8))
    logged = torch.zeros(synthetic.n_items, dtype=torch.bool)
    logged[torch.as_tensor(synthetic.train["item"].unique())] = True
    assert 0 < int((~logged).sum()) < synthetic.n_items // 4  # a few items were never logged
    # unit rows for logged items; an item nobody logged has a zero row (nothing to learn it from)
    assert torch.allclose(e.norm(dim=1), logged.float(), atol=1e-5)
    # every logged item is the argmax for its own embedding
    ids = logged.nonzero().flatten()
    assert torch.equal(map_actions_to_items(e[ids], e), ids)
    # nothing of the ground truth: the same logs with another ground truth give the same embeddings
    import dataclasses

    other = dataclasses.replace(synthetic, ground_truth=np.zeros_like(synthetic.ground_truth))
    assert torch.equal(log_item_embeddings(other, "train_svd", 8), e)
    with pytest.raises(ValueError, match=r"source='gt'; valid values: \['deepfm', 'train_svd'\]"):
        log_item_embeddings(synthetic, "gt")
    with pytest.raises(ValueError, match="needs a fitted DeepFM ensemble"):
        log_item_embeddings(synthetic, "deepfm", world_model=object())


def test_deepfm_embeddings_are_the_user_models_first_member():
    from recgym.data import load_dataset
    from recgym.worldmodels.deepfm import DeepFMEnsemble

    ds = load_dataset("synthetic", n_users=40, n_items=60)
    model = DeepFMEnsemble({"n_members": 2, "epochs": 1, "dnn": (8,)}, seed=0).fit(ds, progress=False)
    e = log_item_embeddings(ds, "deepfm", world_model=model)
    raw = model.net.item_emb[0].detach()
    assert e.shape == (60, raw.shape[1])
    assert torch.allclose(e, raw / raw.norm(dim=1, keepdim=True), atol=1e-6)
