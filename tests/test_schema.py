import io
import json

import pyarrow.parquet as pq

from vigil.model.detections import Detections
from vigil.store.schema import DETECTIONS, DETECTIONS_SCHEMA, FRAMES, FRAMES_SCHEMA, SCHEMA_VERSION, markdown_table
from vigil.store.sink import ShardRows, parquet_bytes, read_provenance

README = __import__("pathlib").Path(__file__).resolve().parents[1] / "README.md"

REQUIRED = {
    DETECTIONS: ["recording_id", "source_uri", "shard_index", "frame_index", "pts_s", "captured_at", "det_index",
                 "track_id", "confidence", "x1", "y1", "x2", "y2", "kp_x", "kp_y", "kp_conf", "runtime"],
    FRAMES: ["recording_id", "shard_index", "frame_index", "pts_s", "persons", "status"],
}  # fmt: skip


def test_schema_has_the_documented_columns_and_types():
    assert DETECTIONS_SCHEMA.names == REQUIRED[DETECTIONS]
    assert set(REQUIRED[FRAMES]) <= set(FRAMES_SCHEMA.names)
    assert str(DETECTIONS_SCHEMA.field("kp_x").type) == "fixed_size_list<item: float>[17]"
    assert str(DETECTIONS_SCHEMA.field("frame_index").type) == "int64"
    assert str(DETECTIONS_SCHEMA.field("captured_at").type) == "timestamp[us, tz=UTC]"


def test_readme_documents_the_schema_as_it_is():
    text = README.read_text()
    from vigil.store.schema import SCHEMAS

    for table in SCHEMAS:
        assert markdown_table(table) in text, f"README's {table} table is out of date: paste schema.markdown_table()"


def _one_person():
    import numpy as np

    keypoints = np.arange(51, dtype=np.float32).reshape(1, 17, 3)
    return Detections(np.array([[1, 2, 3, 4]], np.float32), np.array([0.9], np.float32), keypoints)


def test_rows_and_provenance_survive_a_parquet_roundtrip():
    from datetime import datetime, timezone

    from fractions import Fraction

    start = datetime(2024, 3, 1, 22, 0, tzinfo=timezone.utc)
    rows = ShardRows("cam-abc", "s3://b/cam.mp4", 3, sample_fps=2.0, runtime="onnxruntime-x/cpu", recording_start=start)
    rows.add_frame(15, Fraction(11, 2), Detections.empty())
    rows.add_frame(10, Fraction(5), _one_person())
    rows.add_missing(Fraction(6), "undecodable")
    assert rows.coverage(Fraction(5), Fraction(13, 2)) == [[5.0, 6.0, "ok"], [6.0, 6.5, "undecodable"]]
    provenance = {"schema_version": SCHEMA_VERSION, "source": {"sha256": "f" * 64}}
    for name, expected_rows in ((DETECTIONS, 1), (FRAMES, 3)):
        data = parquet_bytes(rows.table(name), provenance)
        table = pq.read_table(io.BytesIO(data))
        assert table.num_rows == expected_rows
        assert read_provenance(data) == provenance
        assert parquet_bytes(rows.table(name), provenance) == data, "same rows, same bytes"
    detections = pq.read_table(io.BytesIO(parquet_bytes(rows.table(DETECTIONS), provenance))).to_pylist()[0]
    assert detections["kp_x"][:2] == [0.0, 3.0] and detections["kp_conf"][16] == 50.0
    assert detections["captured_at"].isoformat() == "2024-03-01T22:00:05+00:00"
    frames = pq.read_table(io.BytesIO(parquet_bytes(rows.table(FRAMES), provenance))).to_pylist()
    assert [(f["frame_index"], f["persons"], f["status"]) for f in frames] == [
        (10, 1, "ok"), (15, 0, "ok"), (None, 0, "undecodable")
    ], "rows come out in time order, bins without a frame included"
    json.dumps(provenance)
