"""Plain ``nn.Module`` networks (no Lightning import, no losses)."""

from aigc_lightning.nets.adain import AdaINDecoder, AdaINNet
from aigc_lightning.nets.classifier import ConvClassifier
from aigc_lightning.nets.dcgan import Discriminator, Generator
from aigc_lightning.nets.features import DomainFeatures, InceptionFeatures
from aigc_lightning.nets.mocogan import MoCoGANDiscriminator, VideoDiscriminator, VideoGenerator
from aigc_lightning.nets.style_network import TransformNet
from aigc_lightning.nets.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from aigc_lightning.nets.vae import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from aigc_lightning.nets.vgg import VGGFeatures

__all__ = [
    "AdaINDecoder",
    "AdaINNet",
    "ConvClassifier",
    "ConvDecoder",
    "ConvEncoder",
    "Discriminator",
    "DomainFeatures",
    "Generator",
    "InceptionFeatures",
    "MLPDecoder",
    "MLPEncoder",
    "MoCoGANDiscriminator",
    "StyleGAN2Discriminator",
    "StyleGAN2Generator",
    "TransformNet",
    "VGGFeatures",
    "VideoDiscriminator",
    "VideoGenerator",
]
