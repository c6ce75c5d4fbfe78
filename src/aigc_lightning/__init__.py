"""aigc-lightning: GANs, VAEs and neural style transfer on PyTorch Lightning."""

__version__ = "0.1.0"
