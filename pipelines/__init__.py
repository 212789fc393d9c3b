"""The Spark side of graphpipe: DataFrame in, DataFrame out, one folder per pipeline stage.

The stages run in this order, each in its folder (``registry`` wires them into one run)::

    ingest/ -> partition/ -> train/ -> aggregate/ -> serve/ -> evaluate/
    forget/ (deletes from a finished run)    kg/ (the knowledge-graph run)
    generate/ (synthetic input graphs)       core/ (config, session, stage machinery)

Only the seam modules (``<folder>/seam*.py``) import torch or :mod:`gnn`; everything else is plain
PySpark (``tests/test_layout.py`` checks it, with the import cycles and the sizes).
"""
