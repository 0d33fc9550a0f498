"""Posture rules on keypoints built by hand: positive and negative cases for each."""

import numpy as np
import pytest

from vigil.analysis import postures
from vigil.analysis.postures import Pose, PosePoint

STANDING = {  # x, y of each COCO keypoint for an upright person facing the camera; torso = 100 px
    "nose": (200, 100), "left_eye": (195, 95), "right_eye": (205, 95), "left_ear": (190, 100), "right_ear": (210, 100),
    "left_shoulder": (180, 150), "right_shoulder": (220, 150), "left_elbow": (172, 200), "right_elbow": (228, 200),
    "left_wrist": (170, 250), "right_wrist": (230, 250), "left_hip": (190, 250), "right_hip": (210, 250),
    "left_knee": (190, 325), "right_knee": (210, 325), "left_ankle": (190, 400), "right_ankle": (210, 400),
}  # fmt: skip
NAMES = list(STANDING)
BOX = np.array([160, 80, 240, 410], np.float64)


def skeleton(unseen=(), **moved) -> np.ndarray:
    points = {**STANDING, **moved}
    return np.array([[*points[n], 0.0 if n in unseen else 0.9] for n in NAMES])


def rotated(degrees: float) -> np.ndarray:
    kp = skeleton()
    centre = kp[:, :2].mean(axis=0)
    theta = np.radians(degrees)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    kp[:, :2] = (kp[:, :2] - centre) @ rotation.T + centre
    return kp


def box_of(kp):
    return np.array([kp[:, 0].min(), kp[:, 1].min(), kp[:, 0].max(), kp[:, 1].max()])


def test_standing_person_holds_no_posture():
    pose = Pose(skeleton())
    assert pose.torso == pytest.approx(100)
    assert [rule(pose, BOX) for rule in postures.RULES.values()] == [0.0, 0.0, 0.0, 0.0]
    assert postures.suspended(pose, BOX, floor_y=400) == 0.0


@pytest.mark.parametrize("degrees, expected", [(90, 1.0), (80, 1.0), (30, 0.0), (0, 0.0)])
def test_lying_needs_a_near_horizontal_body(degrees, expected):
    kp = rotated(degrees)
    assert postures.lying(Pose(kp), box_of(kp)) == pytest.approx(expected, abs=0.05)


def test_lying_needs_a_wide_box():
    kp = rotated(90)
    tall = np.array([0, 0, 10, 100.0])
    assert postures.lying(Pose(kp), tall) == 0.0


@pytest.mark.parametrize(
    "wrists, expected",
    [
        ({"left_wrist": (185, 40), "right_wrist": (215, 40)}, 1.0),  # well above the head
        ({"left_wrist": (185, 85), "right_wrist": (215, 85)}, 0.66),  # just above (0.1 torso)
        ({"left_wrist": (190, 110), "right_wrist": (210, 110)}, 0.0),  # at the face
        ({"left_wrist": (185, 40)}, 0.0),  # one hand only
    ],
)
def test_hands_raised(wrists, expected):
    assert postures.hands_raised(Pose(skeleton(**wrists))) == pytest.approx(expected, abs=0.05)


def test_hands_raised_needs_visible_wrists():
    assert postures.hands_raised(Pose(skeleton(unseen=("left_wrist",), left_wrist=(185, 40), right_wrist=(215, 40)))) == 0


def test_arms_behind_back():
    behind = skeleton(left_wrist=(196, 255), right_wrist=(204, 255), left_elbow=(165, 215), right_elbow=(235, 215))
    assert postures.arms_behind_back(Pose(behind)) > 0.7
    apart = skeleton(left_wrist=(170, 255), right_wrist=(230, 255))
    assert postures.arms_behind_back(Pose(apart)) == 0.0
    at_chest = skeleton(left_wrist=(196, 180), right_wrist=(204, 180), left_elbow=(165, 215), right_elbow=(235, 215))
    assert postures.arms_behind_back(Pose(at_chest)) == 0.0


def test_kneeling_or_crouching():
    kneeling = skeleton(left_knee=(185, 300), right_knee=(215, 300), left_ankle=(170, 305), right_ankle=(230, 305))
    assert postures.kneeling_or_crouching(Pose(kneeling)) > 0.8
    crouching = skeleton(left_knee=(160, 275), right_knee=(240, 275), left_ankle=(190, 305), right_ankle=(210, 305))
    assert postures.kneeling_or_crouching(Pose(crouching)) > 0.8
    assert postures.kneeling_or_crouching(Pose(skeleton(unseen=("left_ankle", "right_ankle")))) == 0.0


def test_suspended_needs_lifted_feet_when_the_floor_is_known():
    hanging = dict(left_wrist=(190, 30), right_wrist=(210, 30))
    lifted = skeleton(**hanging, left_ankle=(190, 360), right_ankle=(210, 360))
    standing_arms_up = skeleton(**hanging)
    assert postures.suspended(Pose(lifted), BOX, floor_y=400) > 0.8
    assert postures.suspended(Pose(standing_arms_up), BOX, floor_y=400) == 0.0
    assert postures.suspended(Pose(lifted), BOX, floor_y=None) == 0.5  # no floor line: capped


def _points(track_id, keypoints_by_time, fps=2.0):
    return [PosePoint(track_id, i * 5, i / fps, 0, BOX, kp) for i, kp in enumerate(keypoints_by_time)]


def test_events_are_intervals_of_held_postures_per_track():
    up = skeleton(left_wrist=(185, 40), right_wrist=(215, 40))
    down = skeleton()
    sequence = [down, up, up, down, up, up, down, down, up, up]  # 1 missed frame joins, 2 split
    found = postures.events(_points(3, sequence), sample_fps=2.0)
    raised = [(e.start_s, e.end_s, e.frames, e.track_id) for e in found if e.posture == "hands_raised"]
    assert raised == [(0.5, 3.0, 4, 3), (4.0, 5.0, 2, 3)]
    assert all(e.score == pytest.approx(1.0) for e in found if e.posture == "hands_raised")
    assert {e.posture for e in found} == {"hands_raised"}  # feet on the floor: not suspended


def test_a_single_frame_is_not_an_event():
    up = skeleton(left_wrist=(185, 40), right_wrist=(215, 40))
    assert postures.events(_points(1, [skeleton(), up, skeleton(), skeleton()]), sample_fps=2.0) == []
