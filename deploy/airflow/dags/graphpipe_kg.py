"""Knowledge-graph DAG (Airflow DAG ``graphpipe_kg``): jobs/kg.py's four stages, from dags.yaml."""

from graphpipe_airflow.factory import build_dag

dag = build_dag("graphpipe_kg")
