"""What the tests, the benchmarks and ``python -m causal_conv1d_kernels`` measure against, not
needed to run the ops: the float64 references of every API (``reference``), the plain-torch
formulation (``baseline``) and the self-check's timing cases (``benchmark``)."""
