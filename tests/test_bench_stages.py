"""bench/stages.py: py-spy's collapsed stacks put into pipeline stages."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import stages  # noqa: E402

MAIN = "thread (0x7f): MainThread;<module> (bench/run.py:229);_run_vigil (bench/run.py:177)"
SHARD = MAIN + ";detect_shard (tasks/vigil/orchestration/pipeline.py:88)"


def test_the_innermost_known_frame_names_the_stage_and_finalize_takes_all_below_it(tmp_path):
    collapsed = tmp_path / "stacks.txt"
    collapsed.write_text("\n".join([
        SHARD + ";_decode (tasks/vigil/media/frames.py:250);decode (av/container/input.py:1) 7",
        SHARD + ";_decode (tasks/vigil/media/frames.py:250);to_ndarray (av/video/frame.py:1) 3",
        SHARD + ";detect (tasks/vigil/model/detector.py:120);predict (ultralytics/engine/model.py:5);"
                "inference (ultralytics/engine/predictor.py:9);forward (ultralytics/nn/autobackend.py:2) 20",
        SHARD + ";detect (tasks/vigil/model/detector.py:120);postprocess (ultralytics/models/yolo/pose/predict.py:4) 2",
        SHARD + ";detect (tasks/vigil/model/detector.py:170);_detect (tasks/vigil/model/openvino_pose.py:98);"
                "letterbox (tasks/vigil/model/openvino_pose.py:120) 2",
        SHARD + ";detect (tasks/vigil/model/detector.py:170);_detect (tasks/vigil/model/openvino_pose.py:98) 6",
        SHARD + ";_detect (tasks/vigil/model/openvino_pose.py:98);_collect (tasks/vigil/model/openvino_pose.py:110) 9",
        SHARD + ";_collect (tasks/vigil/model/openvino_pose.py:112);postprocess (tasks/vigil/model/openvino_pose.py:140);"
                "nms (tasks/vigil/model/openvino_pose.py:170) 3",
        SHARD + ";write (tasks/vigil/store/sink.py:40);write_table (pyarrow/parquet/core.py:1) 1",
        MAIN + ";finalize (tasks/vigil/orchestration/finalize.py:30);write_table (pyarrow/parquet/core.py:1) 4",
        "thread (0x8f): Thread-1;run (threading.py:982);wait (threading.py:331);Condition.wait (threading.py:331) 5",
        MAIN + ";mystery (somewhere.py:1) 1",
        "not a stack line",
    ]))  # fmt: skip
    samples = stages.stage_samples(collapsed)
    assert samples == {"decode": 7, "convert/letterbox": 5, "inference": 35, "post-process": 5, "write": 1,
                       "finalize": 4, "thread hand-off": 5, "other": 1}  # fmt: skip
    table = stages.table(samples, wall_seconds=1.0)
    assert "| inference | 35 | 55.6 % |" in table and "| **all** | 63 |" in table
