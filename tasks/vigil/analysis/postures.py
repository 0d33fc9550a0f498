"""Posture rules on 2-D COCO keypoints, and the events they make along a track.

Every rule looks at one person in one frame and returns a score in [0, 1] (0: the posture is not
there, or the keypoints it needs are not visible). Image y grows downwards. Lengths are measured in
units of the person's torso (mid-shoulder to mid-hip), so the rules do not depend on distance to
the camera. Limits common to all rules: one camera, two dimensions — a person facing the camera
and one seen from the side can produce the same keypoints; keypoints below ``MIN_CONF`` are
treated as unseen; a rule that needs an unseen keypoint says 0, never guesses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RULES_VERSION = "postures-1"
MIN_CONF = 0.5

from vigil.model.keypoints import (  # noqa: F401  (the rules read keypoints by these names)
    HEAD, KEYPOINTS, L_ANKLE, L_EAR, L_ELBOW, L_EYE, L_HIP, L_KNEE, L_SHOULDER, L_WRIST, NOSE,
    R_ANKLE, R_EAR, R_ELBOW, R_EYE, R_HIP, R_KNEE, R_SHOULDER, R_WRIST,
)

POSTURES = ("lying", "hands_raised", "arms_behind_back", "kneeling_or_crouching", "suspended")


class Pose:
    """One person's keypoints ``(17, 3)``: x, y, confidence."""

    def __init__(self, keypoints: np.ndarray):
        self.kp = np.asarray(keypoints, dtype=np.float64).reshape(KEYPOINTS, 3)

    def seen(self, *indices: int) -> bool:
        return bool((self.kp[list(indices), 2] >= MIN_CONF).all())

    def xy(self, index: int) -> np.ndarray:
        return self.kp[index, :2]

    def mid(self, a: int, b: int) -> np.ndarray | None:
        if self.seen(a, b):
            return (self.xy(a) + self.xy(b)) / 2
        for i in (a, b):
            if self.seen(i):
                return self.xy(i)
        return None

    @property
    def shoulders(self):
        return self.mid(L_SHOULDER, R_SHOULDER)

    @property
    def hips(self):
        return self.mid(L_HIP, R_HIP)

    @property
    def torso(self) -> float | None:
        """Torso length in pixels (mid-shoulder to mid-hip), the unit of every rule."""
        s, h = self.shoulders, self.hips
        if s is None or h is None:
            return None
        length = float(np.linalg.norm(s - h))
        return length if length > 1 else None

    def head_top(self) -> float | None:
        ys = [self.xy(i)[1] for i in HEAD if self.seen(i)]
        return min(ys) if ys else None


def _clip(value: float) -> float:
    return float(min(1.0, max(0.0, value)))


def lying(pose: Pose, box: np.ndarray) -> float:
    """The body axis (shoulders to hips, and to ankles when seen) is near horizontal.

    Score 0 at 45° from vertical, 1 at 75° or more, and only if the box is at least as wide as
    tall. Fails: a person lying along the camera's line of sight looks upright (foreshortened);
    someone bending far forward can look horizontal for a moment (events need 2+ frames).
    """
    s, h = pose.shoulders, pose.hips
    if s is None or h is None or pose.torso is None:
        return 0.0
    axis = h - s
    ankles = pose.mid(L_ANKLE, R_ANKLE)
    if ankles is not None:
        axis = ankles - s
    angle = np.degrees(np.arctan2(abs(axis[0]), abs(axis[1]) + 1e-9))  # 0 = vertical
    width, height = box[2] - box[0], box[3] - box[1]
    if width < height:
        return 0.0
    return _clip((angle - 45) / 30)


def hands_raised(pose: Pose, box: np.ndarray | None = None) -> float:
    """Both wrists above the top of the head (by at least 0.1 torso).

    Fails: hands held at the face (not above it) score 0; a person seen from behind has no
    visible face keypoints, so the shoulders stand in for the head (0.6 torso above them).
    """
    torso = pose.torso
    if torso is None or not pose.seen(L_WRIST, R_WRIST):
        return 0.0
    top = pose.head_top()
    if top is None:
        top = pose.shoulders[1] - 0.6 * torso
    lowest_wrist = max(pose.xy(L_WRIST)[1], pose.xy(R_WRIST)[1])
    return _clip((top - lowest_wrist) / (0.3 * torso) + 0.33)  # 0.1 torso above -> 0.66, 0.3 -> 1


def arms_behind_back(pose: Pose, box: np.ndarray | None = None) -> float:
    """Both wrists close together at hip height, inside the torso's width, with the elbows bent out
    behind the body line (elbows further from the torso's centre line than the wrists).

    This is the weakest rule: in 2-D, hands held in front at the belly look the same from the back.
    Use it to find frames to review, not as a finding.
    """
    torso = pose.torso
    if torso is None or not pose.seen(L_WRIST, R_WRIST, L_ELBOW, R_ELBOW, L_HIP, R_HIP):
        return 0.0
    wrists = (pose.xy(L_WRIST) + pose.xy(R_WRIST)) / 2
    spread = float(np.linalg.norm(pose.xy(L_WRIST) - pose.xy(R_WRIST))) / torso
    height = abs(wrists[1] - pose.hips[1]) / torso
    centre = pose.hips[0]
    elbows_out = min(abs(pose.xy(L_ELBOW)[0] - centre), abs(pose.xy(R_ELBOW)[0] - centre))
    wrists_in = max(abs(pose.xy(L_WRIST)[0] - centre), abs(pose.xy(R_WRIST)[0] - centre))
    if spread > 0.5 or height > 0.4 or elbows_out <= wrists_in:
        return 0.0
    return _clip(1.0 - spread - height)


def kneeling_or_crouching(pose: Pose, box: np.ndarray | None = None) -> float:
    """The torso is upright but the hips are low: hip-to-ankle height under 0.7 torso, or a knee
    bent under 100°. Fails: a seated person scores high too; legs hidden by furniture score 0.
    """
    torso = pose.torso
    s, h, ankles = pose.shoulders, pose.hips, pose.mid(L_ANKLE, R_ANKLE)
    if torso is None or ankles is None or lying(pose, np.array([0, 0, 0, 1.0])) > 0:
        return 0.0
    if abs(h[0] - s[0]) > abs(h[1] - s[1]):
        return 0.0  # torso not upright
    drop = (ankles[1] - h[1]) / torso
    score = _clip((0.9 - drop) / 0.4)
    for hip, knee, ankle in ((L_HIP, L_KNEE, L_ANKLE), (R_HIP, R_KNEE, R_ANKLE)):
        if pose.seen(hip, knee, ankle):
            a, b = pose.xy(hip) - pose.xy(knee), pose.xy(ankle) - pose.xy(knee)
            cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))
            angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
            score = max(score, _clip((120 - angle) / 40))
    return score


def suspended(pose: Pose, box: np.ndarray | None = None, floor_y: float | None = None) -> float:
    """Hung by the arms: both wrists above the head, the body vertical below them, and — when the
    floor line can be inferred (``floor_y``: where this person's ankles usually are) — the ankles
    at least 0.15 torso above it. Without a floor line the score is capped at 0.5: hands raised
    while standing looks the same in one frame.
    """
    raised = hands_raised(pose)
    torso = pose.torso
    if raised == 0 or torso is None:
        return 0.0
    s, h = pose.shoulders, pose.hips
    if abs(h[0] - s[0]) > 0.5 * abs(h[1] - s[1]):
        return 0.0  # body not hanging vertically
    ankles = pose.mid(L_ANKLE, R_ANKLE)
    if floor_y is None or ankles is None:
        return min(raised, 0.5)
    lifted = (floor_y - ankles[1]) / torso
    return raised * _clip((lifted - 0.05) / 0.2)


RULES = {
    "lying": lying,
    "hands_raised": hands_raised,
    "arms_behind_back": arms_behind_back,
    "kneeling_or_crouching": kneeling_or_crouching,
}

THRESHOLD = 0.5  # a frame shows a posture when its score reaches this


@dataclass(frozen=True)
class PosePoint:
    """One detection of a track: what the rules need."""

    track_id: int
    frame_index: int
    pts_s: float
    det_index: int
    box: np.ndarray
    keypoints: np.ndarray


@dataclass(frozen=True)
class Event:
    track_id: int
    posture: str
    start_s: float
    end_s: float
    frames: int
    score: float
    best_frame_index: int
    best_pts_s: float
    best_det_index: int


def events(points: list[PosePoint], sample_fps: float, max_gap_frames: int = 1, min_frames: int = 2) -> list[Event]:
    """Intervals in which a track holds a posture: consecutive sampled frames scoring at least
    ``THRESHOLD``, allowing ``max_gap_frames`` missed frames, lasting ``min_frames`` or more."""
    interval = 1.0 / sample_fps
    found: list[Event] = []
    by_track: dict[int, list[PosePoint]] = {}
    for point in sorted(points, key=lambda p: (p.track_id, p.pts_s)):
        by_track.setdefault(point.track_id, []).append(point)
    for track_id, track in by_track.items():
        poses = [Pose(p.keypoints) for p in track]
        ankle_ys = [pose.mid(L_ANKLE, R_ANKLE)[1] for pose in poses if pose.mid(L_ANKLE, R_ANKLE) is not None]
        floor = float(np.percentile(ankle_ys, 90)) if len(ankle_ys) >= 5 else None
        scored = {name: [rule(pose, p.box) for pose, p in zip(poses, track)] for name, rule in RULES.items()}
        scored["suspended"] = [suspended(pose, p.box, floor) for pose, p in zip(poses, track)]
        for posture in POSTURES:
            run: list[tuple[PosePoint, float]] = []
            for point, score in zip(track, scored[posture]):
                if score >= THRESHOLD:
                    if run and point.pts_s - run[-1][0].pts_s > (max_gap_frames + 1) * interval + 1e-9:
                        found += _close(run, posture, min_frames, interval)
                        run = []
                    run.append((point, score))
            found += _close(run, posture, min_frames, interval)
    return sorted(found, key=lambda e: (e.start_s, e.track_id, e.posture))


def _close(run, posture: str, min_frames: int, interval: float) -> list[Event]:
    if len(run) < min_frames:
        return []
    best_point, _ = max(run, key=lambda item: item[1])
    return [
        Event(
            track_id=run[0][0].track_id,
            posture=posture,
            start_s=run[0][0].pts_s,
            end_s=run[-1][0].pts_s + interval,
            frames=len(run),
            score=round(float(np.mean([s for _, s in run])), 4),
            best_frame_index=best_point.frame_index,
            best_pts_s=best_point.pts_s,
            best_det_index=best_point.det_index,
        )
    ]
