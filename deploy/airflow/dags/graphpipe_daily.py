"""Daily graphpipe run (Airflow DAG ``graphpipe_daily``); the stages live in deploy/airflow/dags.yaml."""

from graphpipe_airflow.factory import build_dag

dag = build_dag("graphpipe_daily")
