"""LightningModules: the training algorithms. Networks and optimizer factories are injected by config."""

from aigc_lightning.modules.adain import AdaIN
from aigc_lightning.modules.classifier import Classifier
from aigc_lightning.modules.gan import GAN
from aigc_lightning.modules.projector import Projector
from aigc_lightning.modules.style_network import StyleNetwork
from aigc_lightning.modules.style_transfer import StyleTransfer
from aigc_lightning.modules.vae import VAE
from aigc_lightning.modules.video_gan import VideoGAN

__all__ = ["GAN", "VAE", "AdaIN", "Classifier", "Projector", "StyleNetwork", "StyleTransfer", "VideoGAN"]
