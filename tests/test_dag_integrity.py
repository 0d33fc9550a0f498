import json
import os
import subprocess
import sys
from pathlib import Path

DAGS = Path(__file__).resolve().parents[1] / "dags"
# boto3 is left out: Airflow itself (the amazon provider) imports it before any DAG is parsed.
HEAVY = ("torch", "ultralytics", "cv2", "av", "pyarrow", "numpy", "duckdb", "onnxruntime", "polars")


def test_dags_import_without_errors():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert {"vigil_process", "vigil_nightly"} <= set(bag.dags)
    process = bag.dags["vigil_process"]
    assert sorted(t.task_id for t in process.tasks) == [
        "batch_shards", "cpu_shards", "detect", "detect_gpu", "discover", "finalize", "gpu_shards", "plan"
    ]  # fmt: skip
    assert process.get_task("detect").retries == 2
    assert process.get_task("detect").queue == "default"
    assert process.get_task("detect_gpu").queue == "gpu" and process.get_task("detect_gpu").pool == "gpu_shards"
    nightly = bag.dags["vigil_nightly"]
    assert nightly.timetable.expression == "0 2 * * *"
    assert [o.name for o in nightly.get_task("finalize").outlets] == ["vigil_detections"]


def test_parsing_dags_loads_no_heavy_module():
    """The dag-processor and every worker parse DAG files constantly: they must stay light."""
    code = f"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
DagBag(dag_folder={str(DAGS)!r})
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ.copy())
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
