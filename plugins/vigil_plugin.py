"""Adds "Vigil recordings" to Airflow's navigation: processed recordings, timelines and reports."""

from airflow.plugins_manager import AirflowPlugin

from vigil.orchestration.airflow_view import app


class VigilPlugin(AirflowPlugin):
    name = "vigil"
    fastapi_apps = [{"app": app, "url_prefix": "/vigil", "name": "vigil recordings"}]
    external_views = [{"name": "Vigil recordings", "href": "/vigil/", "destination": "nav", "url_route": "vigil"}]
