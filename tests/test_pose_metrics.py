"""Oracles for the pose metrics (spec §9.4.5): hand-worked values, not the code's own output."""

from __future__ import annotations

import numpy as np
import pytest

from personlab.pose import metrics, skeleton


def _actors(num_frames: int = 4, num_actors: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random 14-joint people 2 m apart, the last actor missing in frame 1 (when there is one)."""
    rng = np.random.default_rng(seed)
    gt = rng.normal(0, 300, (num_frames, num_actors, 14, 3))
    gt += np.arange(num_actors)[None, :, None, None] * np.array([2000.0, 0, 0])
    valid = np.ones((num_frames, num_actors), dtype=bool)
    valid[1:2, -1] = False
    return gt, valid


def _as_predictions(gt: np.ndarray, valid: np.ndarray, shift: np.ndarray | float = 0.0) -> list[np.ndarray]:
    return [frame[v] + shift for frame, v in zip(gt, valid)]


def test_ground_truth_as_prediction_is_perfect():
    gt, valid = _actors()
    pred = _as_predictions(gt, valid)
    out = metrics.pcp(pred, gt, valid)
    assert out["pcp_avg"] == 100.0
    assert all(out[f"pcp_actor{a}"] == 100.0 for a in (1, 2, 3))
    assert out["pcp_head"] == out["pcp_torso"] == out["pcp_lower_legs"] == 100.0
    assert out["pcp_recall500"] == 1.0
    ap = metrics.ap_mpjpe(pred, [np.ones(len(p)) for p in pred], [f[v] for f, v in zip(gt, valid)])
    assert all(ap[f"ap{t}"] == 1.0 for t in metrics.THRESHOLDS)
    assert ap["mpjpe_mm"] == 0.0 and ap["recall500"] == 1.0 and ap["recall25"] == 1.0


def test_40mm_shift_gives_ap25_zero_ap50_one_mpjpe_40():
    gt, valid = _actors()
    direction = np.array([2.0, -1.0, 2.0]) / 3.0  # a unit vector
    pred = _as_predictions(gt, valid, 40.0 * direction)
    ap = metrics.ap_mpjpe(pred, [np.ones(len(p)) for p in pred], [f[v] for f, v in zip(gt, valid)])
    assert ap["ap25"] == 0.0 and ap["recall25"] == 0.0
    assert ap["ap50"] == 1.0 and ap["ap150"] == 1.0
    assert ap["mpjpe_mm"] == pytest.approx(40.0, abs=1e-9)


def test_duplicates_lower_ap_but_not_pcp():
    # one frame, two people, each predicted twice with equal scores: TP FP TP FP
    gt = np.stack([np.full((14, 3), 0.0), np.full((14, 3), 5000.0)])[None]
    gt[0, :, :, 0] += np.arange(14) * 100.0  # non-degenerate limbs
    valid = np.ones((1, 2), bool)
    pred = [np.stack([gt[0, 0], gt[0, 0], gt[0, 1], gt[0, 1]])]
    ap = metrics.ap_mpjpe(pred, [np.ones(4)], [gt[0]])
    # recall .5 .5 1 1, precision 1 .5 2/3 .5 → monotone 1, 2/3 → AP = .5·1 + .5·2/3
    assert ap["ap25"] == pytest.approx(5 / 6)
    assert metrics.pcp(pred, gt, valid, actors=(0, 1))["pcp_avg"] == 100.0


def test_pcp_part_rule_alpha_half():
    gt, valid = _actors(num_frames=1, num_actors=1)
    length = np.linalg.norm(gt[0, 0, 0] - gt[0, 0, 1])  # part 0 = r-ankle → r-knee, joint 0 is in no other part
    for moved, expected in ((0.9, 100.0), (1.1, 90.0)):
        pred = gt[0].copy()
        pred[0, 0] += np.array([moved * length, 0.0, 0.0])  # part error = moved·L/2 vs 0.5·L
        out = metrics.pcp([pred], gt, valid, actors=(0,))
        assert out["pcp_actor1"] == pytest.approx(expected)
        assert out["pcp_lower_legs"] == pytest.approx(100.0 if moved < 1 else 50.0)


def test_pcp_boundary_counts_as_correct():
    gt, valid = _actors(num_frames=1, num_actors=1)
    gt[0, 0, 0], gt[0, 0, 1] = (0.0, 0.0, 0.0), (0.0, 0.0, 400.0)  # part 0 is 400 mm long, exactly
    pred = gt[0].copy()
    pred[0, 0] = (0.0, 400.0, 0.0)  # its ends are off by 400 and 0 mm: mean 200 = 0.5·400, still correct
    assert metrics.pcp([pred], gt, valid, actors=(0,))["pcp_actor1"] == 100.0


def test_pcp_matching_is_greedy_per_actor_without_cap():
    gt, valid = _actors(num_frames=1, num_actors=2)
    far = gt[0, 0] + np.array([0.0, 0.0, 10000.0])  # 10 m off: still the match of both actors
    out = metrics.pcp([far[None]], gt, valid, actors=(0, 1))
    assert out["pcp_avg"] == 0.0 and out["pcp_recall500"] == 0.0
    out = metrics.pcp([gt[0, :1]], gt, valid, actors=(0, 1))  # one prediction shared by both actors
    assert out["pcp_actor1"] == 100.0 and out["pcp_recall500"] == 0.5


@pytest.mark.parametrize("policy, pcp_expected, ap_expected", [("miss", 50.0, 0.5), ("skip", 100.0, 1.0)])
def test_empty_frame_policy(policy, pcp_expected, ap_expected):
    gt, valid = _actors(num_frames=2, num_actors=1)
    valid[:] = True
    pred = [gt[0], np.zeros((0, 14, 3))]
    assert metrics.pcp(pred, gt, valid, actors=(0,), empty_frame=policy)["pcp_actor1"] == pcp_expected
    ap = metrics.ap_mpjpe(pred, [np.ones(1), np.zeros(0)], [gt[0], gt[1]], empty_frame=policy)
    assert ap["ap25"] == pytest.approx(ap_expected)
    with pytest.raises(ValueError, match="empty_frame"):
        metrics.pcp(pred, gt, valid, actors=(0,), empty_frame="ignore")


def test_ap_nearest_gt_only_visible_joints_and_false_positives():
    gt = np.zeros((2, 15, 3))
    gt[1] += 3000.0
    vis = np.ones((2, 15), bool)
    vis[0, 3] = False
    pred = gt.copy()
    pred[0, 3] += 5000.0  # an invisible joint: ignored by MPJPE
    ghost = np.full((1, 15, 3), -9000.0)
    ap = metrics.ap_mpjpe([np.concatenate([pred, ghost]), ghost], [np.array([0.9, 0.8, 0.95]), np.ones(1)],
                          [gt, np.zeros((0, 15, 3))], [vis, np.zeros((0, 15), bool)])
    # order by score: ghost (FP), person 0 (TP), person 1 (TP), ghost of the empty-GT frame last (score 1 → first)
    # sorted: 1.0 FP, 0.95 FP, 0.9 TP, 0.8 TP → recall 0 0 .5 1, precision 0 0 1/3 1/2 → AP = .5·.5 + .5·.5
    assert ap["ap25"] == pytest.approx(0.5)
    assert ap["mpjpe_mm"] == 0.0 and ap["recall500"] == 1.0


def test_coco_to_campus_head_heuristics_by_hand():
    coco = np.zeros((17, 3))
    coco[5], coco[6] = (-1, 0, 0), (1, 0, 0)  # shoulders
    coco[3], coco[4] = (-0.5, 0, 2), (0.5, 0, 2)  # ears
    coco[0] = (0, 1, 2)  # nose
    coco[16] = (7, 7, 7)  # r-ankle → campus joint 0
    campus = skeleton.coco_to_campus(coco, "campus")
    np.testing.assert_allclose(campus[12], [0, 0, 1])
    np.testing.assert_allclose(campus[13], [0, 0, 3])
    np.testing.assert_allclose(campus[0], [7, 7, 7])
    shelf = skeleton.coco_to_campus(coco, "shelf")
    np.testing.assert_allclose(shelf[13], [0, 0.5625, 3])  # .75·(0, .75, 3) + .25·(0, 0, 3)
    np.testing.assert_allclose(shelf[12], [0, 0.375, 1])  # .75·(0, .5, 1) + .25·(0, 0, 1)


def test_evaluate_campus_from_coco_predictions():
    rng = np.random.default_rng(3)
    coco = rng.normal(0, 300, (3, 2, 17, 3)) + np.array([[[0.0, 0, 0]], [[3000.0, 0, 0]]])
    gt = skeleton.coco_to_campus(coco, "campus")
    valid = np.ones((3, 2), bool)
    out = metrics.evaluate_campus(list(coco), [np.ones(2)] * 3, gt, valid, actors=(0, 1))
    assert out["pcp_avg"] == 100.0 and out["ap25"] == 1.0 and out["mpjpe_mm"] == pytest.approx(0.0, abs=1e-9)


def test_joint_index_tables_agree_with_the_joint_names():
    # the 12 body joints of the 14-joint skeleton, by name, from COCO
    coco = np.arange(17 * 3, dtype=float).reshape(17, 3)
    campus = skeleton.coco_to_campus(coco)
    for i, name in enumerate(skeleton.CAMPUS14[:12]):
        np.testing.assert_array_equal(campus[i], coco[skeleton.COCO17.index(name)])
    for coco_index, pan_index in skeleton.PANOPTIC_TO_COCO.items():
        assert skeleton.COCO17[coco_index] == skeleton.PANOPTIC15[pan_index]
    superset = np.arange(19 * 3, dtype=float).reshape(19, 3)
    pan = skeleton.super_to_panoptic(superset)
    np.testing.assert_array_equal(pan[0], superset[skeleton.SUPER19.index("neck")])
    np.testing.assert_array_equal(pan[2], superset[[11, 12]].mean(axis=0))
    for i, name in enumerate(skeleton.PANOPTIC15):
        if name in skeleton.COCO17:
            np.testing.assert_array_equal(pan[i], superset[skeleton.SUPER19.index(name)])
