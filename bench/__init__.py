"""Benchmarks of aigc-lightning against plain PyTorch: ``python -m bench --list`` (see ``bench/__main__.py``)."""
