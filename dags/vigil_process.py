"""
### vigil_process — analyse a footage drop

Trigger with the form: list the recordings (object URIs or prefixes, `s3://…` or `file://…`) and
an output location. vigil fingerprints and probes each recording, cuts it into time shards of
`shard_seconds`, runs YOLO person + pose detection on `sample_fps` frames per second of each shard
in parallel (one mapped `detect` task per shard), writes Parquet under the output, and finishes
with one manifest per recording. A recording that cannot be read fails on its own; the others
are still written and listed.
"""

from airflow.sdk import dag

from vigil.orchestration.airflow_tasks import process_graph
from vigil.orchestration.trigger import process_params


@dag(
    dag_id="vigil_process",
    schedule=None,
    params=process_params(),
    doc_md=__doc__,
    tags=["vigil"],
    max_active_runs=4,
)
def vigil_process():
    process_graph()


vigil_process()
