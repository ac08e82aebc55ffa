"""How the branch maps of an MTS layer become one output: the rule and its backends.

:mod:`.reference` states the rule with plain stock operators. The fast backends compute the
same: :mod:`.stock` over separately convolved maps, :mod:`.stacked` over the output of one
convolution for all branches, and :mod:`.native` through a C kernel (CPU float32/float64).
:mod:`mts_lightning.nn.dispatch` chooses among them.
"""
