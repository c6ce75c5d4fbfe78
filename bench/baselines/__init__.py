"""Plain-PyTorch references: the loops a user would write without the framework, over the project's networks.

The ``*_digits`` / ``style_network`` modules are scripts (``python -m bench.baselines.dcgan --out X.pt``) that
``python -m bench user_overhead`` times as whole processes; the rest are functions the cases call in-process.
"""
