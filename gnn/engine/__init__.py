"""Training: the one loop and each model's fit on it.

:mod:`gnn.engine.loop` owns the time budget, epoch and step limits, per-epoch records,
evaluation cadence, early stop and hooks; the models supply a ``batches(epoch)`` and a
``step(batch)``: LightGCN (:mod:`gnn.engine.bpr`, :mod:`gnn.engine.lightgcn`), the homogeneous
LightGCN (:mod:`gnn.engine.homogeneous`), NBFNet (:mod:`gnn.engine.nbfnet`,
:mod:`gnn.engine.nbfnet_partitioned`, the step in :mod:`gnn.engine.nbfnet_batch`) and
unlearning (:func:`gnn.unlearn.d2dgn.distill_steps`). In: graph tensors (``data/``), a model
(``models/``) and a settings class (``*_config``, helpers in :mod:`gnn.engine.settings`). Out:
trained parameters, per-epoch logs and the device chosen once (``device``).
"""
