"""``vigil query similar``: the tracks that look most like one track, across every recording of an output.

Ranks by cosine similarity of whole-body appearance descriptors (``track_appearance``), and only
among descriptors made the same way (``method_version``). A high rank is a lead for a person to
look at, never an identification: see the README's "Find this person" for the measured retrieval.
"""

from __future__ import annotations

from vigil.errors import ParameterError
from vigil.review.query import Result, run_sql


def similar(con, recording: str, track_id: int, top: int | None = 10) -> Result:
    """Every other track, most similar first (``top`` of them; None: all), with when it was seen."""
    found = con.execute(
        "SELECT recording_id, method_version FROM track_appearance "
        "WHERE (recording_id = ? OR recording_id LIKE ? || '-%') AND track_id = ?",
        [recording, recording, track_id],
    ).fetchall()
    if len(found) != 1:
        recordings = con.execute(
            "SELECT DISTINCT recording_id FROM tracks WHERE recording_id = ? OR recording_id LIKE ? || '-%'",
            [recording, recording],
        ).fetchall()
        if len(recordings) != 1:
            raise ParameterError(f"{recording!r} matches {len(recordings)} recordings; give the full recording id "
                                 "(vigil query recordings)")  # fmt: skip
        raise ParameterError(
            f"track {track_id} of {recordings[0][0]} has no appearance descriptor: check the id with "
            "vigil query tracks, and the manifest's warnings (the source may have been unreadable at finalize)"
        )
    recording_id, method = found[0]
    limit = "" if top is None else f"LIMIT {int(top)}"
    return run_sql(con, f"""
        SELECT a.recording_id, a.track_id,
               round(list_cosine_similarity(a.descriptor, q.descriptor)::DOUBLE, 4) AS similarity,
               t.first_s, t.last_s, t.first_captured_at, t.best_pts_s, t.best_frame_index, t.frames
        FROM track_appearance a
        JOIN tracks t USING (recording_id, track_id)
        CROSS JOIN (SELECT descriptor FROM track_appearance WHERE recording_id = ? AND track_id = ?) q
        WHERE a.method_version = ? AND NOT (a.recording_id = ? AND a.track_id = ?)
        ORDER BY list_cosine_similarity(a.descriptor, q.descriptor) DESC, a.recording_id, a.track_id
        {limit}""", [recording_id, track_id, method, recording_id, track_id])  # fmt: skip
