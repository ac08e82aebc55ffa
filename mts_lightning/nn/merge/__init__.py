"""How the branch maps of an MTS layer become one output: the rule and its backends.

:mod:`.reference` states the rules (the published maximum and the soft rules of ``merge``)
with plain stock operators; :mod:`.attention` holds the learned weights of
``merge="attention"``. The fast backends compute the maximum: :mod:`.stock` over separately
convolved maps (scale dropout included), :mod:`.stacked` over the output of one convolution
for all branches, and :mod:`.native` through a C kernel (CPU float32/float64).
:mod:`mts_lightning.nn.dispatch` chooses among them; the soft rules run the reference.
"""
