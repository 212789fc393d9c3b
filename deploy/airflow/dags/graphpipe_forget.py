"""Forget DAG (Airflow DAG ``graphpipe_forget``): forget -> recommend -> export, from dags.yaml."""

from graphpipe_airflow.factory import build_dag

dag = build_dag("graphpipe_forget")
