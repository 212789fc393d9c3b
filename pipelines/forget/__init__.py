"""Forget: delete users, items and edges from a finished run without retraining from scratch.

In: a run dir and a request file ``(request_id, kind, id, other_id, timestamp)``. Out: a new run
version ``versions/vN/`` (affected leaves retrained by distill-to-delete through ``seam``),
hashed ``tombstones`` that later ingests apply, and one ``audit`` record per request.
"""
