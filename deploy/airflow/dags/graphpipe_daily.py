"""Daily graphpipe run (Airflow DAG ``graphpipe_daily``); stages in deploy/airflow/dags.yaml."""

from graphpipe_airflow.factory import build_dag

dag = build_dag("graphpipe_daily")
