"""Spark side of graphpipe: DataFrame in, DataFrame out. Never imports torch at module level."""
