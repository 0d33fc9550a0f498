"""
### vigil_nightly — ingest new recordings every night

Every night at 02:00 UTC, lists the recordings under the configured source (`VIGIL_SOURCE_URI`),
skips those that already have a manifest for the same object and parameters under the output
(`VIGIL_OUTPUT_URI`), and processes the rest exactly as `vigil_process` does. Emits the
`vigil_detections` asset when recordings were finalized, for downstream DAGs.
"""

import os

from airflow.sdk import CronTriggerTimetable, dag

from vigil.orchestration.airflow_tasks import NIGHTLY_RUN_TIMEOUT, process_graph
from vigil.orchestration.trigger import process_params


@dag(
    dag_id="vigil_nightly",
    schedule=CronTriggerTimetable("0 2 * * *", timezone="UTC"),
    params=process_params(
        sources=[os.environ.get("VIGIL_SOURCE_URI", "file:///srv/vigil/source/")],
        out=os.environ.get("VIGIL_OUTPUT_URI", "file:///srv/vigil/output"),
    ),
    doc_md=__doc__,
    tags=["vigil"],
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=NIGHTLY_RUN_TIMEOUT,  # one hung run must not block every later night
)
def vigil_nightly():
    process_graph(unprocessed_only=True)


vigil_nightly()
