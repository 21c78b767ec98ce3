"""Relation network: shapes and size of the published model, the rest/contrastive features on a hand-built
map, and one training step that reaches every head."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from personlab.models.relation import RelationBranch, RelationNet



def test_published_size_and_shapes():
    model = RelationNet(num_classes=751)
    assert sum(p.numel() for p in model.parameters()) == 49_922_627  # spec/reid.md §5.1
    model.eval()
    x = torch.zeros(2, 3, 384, 128)
    with torch.no_grad():
        assert model.backbone(x).shape == (2, 2048, 24, 8)
        assert model(x).shape == (2, 15 * 256)
    model.train()
    features, logits = model(torch.randn(2, 3, 384, 128))
    assert len(features) == 15 and all(f.shape == (2, 256) for f in features)
    assert len(logits) == 45 and all(z.shape == (2, 751) for z in logits)


class Capture(nn.Module):
    """Identity that remembers its input, to read what the branch feeds its reduction units."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().flatten(1))
        return x


class Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x[:, : x.shape[1] // 2])


def test_rest_and_contrastive_features_on_a_hand_built_map():
    # channel 0: value 10*row + col; channel 1: 5 - row. Three stripes of two rows each.
    rows = torch.arange(6.0).view(6, 1).expand(6, 2)
    cols = torch.arange(2.0).view(1, 2).expand(6, 2)
    fmap = torch.stack([10 * rows + cols, 5 - rows]).unsqueeze(0)  # (1, 2, 6, 2)
    branch = RelationBranch(parts=3, in_channels=2, dim=2, num_classes=0).eval()
    local, rest, gmax, grest = Capture(), Capture(), Capture(), Capture()
    branch.local = nn.ModuleList([local] * 3)
    branch.rest = nn.ModuleList([rest] * 3)
    branch.relation = nn.ModuleList([Zero()] * 3)
    branch.global_max, branch.global_rest, branch.global_pool = gmax, grest, Zero()
    out = branch(fmap, fmap.amax(dim=(2, 3), keepdim=True))
    # stripe maxima: channel 0 -> 11, 31, 51; channel 1 -> 5, 3, 1
    assert torch.equal(torch.cat(local.seen), torch.tensor([[11.0, 5.0], [31.0, 3.0], [51.0, 1.0]]))
    # rest_i = mean of the two other stripes
    assert torch.equal(torch.cat(rest.seen), torch.tensor([[41.0, 2.0], [31.0, 3.0], [21.0, 4.0]]))
    # global max g = (51, 5); contrast (sum_i p_i - g) / (n - 1) = ((93 - 51) / 2, (9 - 5) / 2)
    assert torch.equal(gmax.seen[0], torch.tensor([[51.0, 5.0]]))
    assert torch.equal(grest.seen[0], torch.tensor([[21.0, 2.0]]))
    # with the relation/pool convs zeroed the residual sums return the reduced inputs themselves
    assert torch.equal(torch.stack(out["relation"]).squeeze(1), torch.tensor([[11.0, 5.0], [31.0, 3.0], [51.0, 1.0]]))
    assert torch.equal(out["global"][0], torch.tensor([[51.0, 5.0]]))


def test_two_stripes_rest_is_the_other_stripe_undivided():
    fmap = torch.tensor([[[[1.0], [7.0]]]])  # (1, 1, 2, 1): stripes 1 and 7
    branch = RelationBranch(parts=2, in_channels=1, dim=1, num_classes=0).eval()
    rest, grest = Capture(), Capture()
    branch.local = nn.ModuleList([nn.Identity()] * 2)
    branch.rest = nn.ModuleList([rest] * 2)
    branch.relation = nn.ModuleList([Zero()] * 2)
    branch.global_max, branch.global_rest, branch.global_pool = nn.Identity(), grest, Zero()
    branch(fmap, fmap.amax(dim=(2, 3), keepdim=True))
    assert torch.equal(torch.cat(rest.seen), torch.tensor([[7.0], [1.0]]))
    assert torch.equal(grest.seen[0], torch.tensor([[1.0]]))  # (1 + 7 - 7) / 1


@pytest.mark.parametrize("height", [64, 96, 40])
def test_small_inputs_whose_height_is_not_a_multiple_of_twelve(height):
    model = RelationNet(num_classes=5, depth=18, dim=16).eval()
    with torch.no_grad():
        emb = model(torch.randn(2, 3, height, 32))
    assert emb.shape == (2, 15 * 16) and torch.isfinite(emb).all()


def test_one_training_step_reaches_every_head():
    from personlab.reid_train import relation_loss

    torch.manual_seed(0)
    model = RelationNet(num_classes=4, depth=18, dim=16).train()
    x = torch.randn(8, 3, 96, 32)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    features, logits = model(x)
    loss, terms = relation_loss(features, logits, labels, margin=1.2, ce_weight=2.0)
    assert torch.isfinite(loss) and set(terms) == {"triplet", "ce"}
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(heads) == 45 and all(h.weight.grad.abs().sum() > 0 for h in heads)


def test_importer_round_trip_from_the_original_layout(original_state):
    from personlab.models.convert import import_relation

    state = original_state("rrid")
    model, kwargs = import_relation(state)
    assert kwargs == {"num_classes": 751, "depth": 50, "last_stride": 1, "dim": 256}
    ours = model.state_dict()
    assert len(ours) == len(state) == 723
    # spot checks of the renaming, then every tensor arrives somewhere, unchanged
    assert torch.equal(ours["branches.6.local.3.0.weight"], state["local_6_conv_list.3.0.weight"])
    assert torch.equal(ours["branches.4.global_pool.1.running_var"], state["global_4_pooling_conv_list.0.1.running_var"])
    assert torch.equal(ours["branches.2.fc_local_rest.1.bias"], state["fc_local_rest_2_list.1.bias"])
    assert torch.equal(ours["branches.2.fc_global_max.weight"], state["fc_global_max_2_list.0.weight"])
    assert torch.equal(ours["backbone.layer4.2.bn3.weight"], state["base.layer4.2.bn3.weight"])
    assert sorted(t.sum().item() for t in ours.values()) == sorted(t.sum().item() for t in state.values())


def test_importer_lists_missing_and_unexpected_keys(original_state):
    from personlab.models.convert import CheckpointMismatch, import_relation

    state = original_state("rrid")
    del state["rest_4_conv_list.2.1.running_mean"]
    state["fc_local_6_list.6.weight"] = torch.zeros(751, 256)
    with pytest.raises(CheckpointMismatch) as err:
        import_relation(state)
    message = str(err.value)
    assert "missing keys (1): rest_4_conv_list.2.1.running_mean" in message
    assert "unexpected keys (1): fc_local_6_list.6.weight" in message
