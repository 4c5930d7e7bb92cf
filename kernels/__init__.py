"""Warp functions and kernel templates of hybridwam, one stage of the step per file.

Installed as ``hybridwam.kernels``. Nothing here imports torch. The per-model fused step
kernel is emitted by :mod:`hybridwam.codegen` from the stage emitters in these files and calls
the generic ``@wp.func`` helpers defined here.
"""
