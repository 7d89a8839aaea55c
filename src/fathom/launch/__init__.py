"""Launching the GPU training steps: in process, `accelerate launch` on the pod's GPUs, or a Kubeflow Trainer v2
TrainJob (see :mod:`fathom.launch.config`)."""
