"""The run machinery every stage shares: typed config, the one SparkSession, stages and markers.

In: a YAML config plus ``--set`` overrides. Out: ``PipelineConfig``, a ``SparkSession``, the
``<run_dir>/<stage>/`` folders with their ``_STAGE_DONE`` markers, run versions (``CURRENT``),
column-name constants (``schema``) and the vector byte encoding shared by train/aggregate/serve.
"""
