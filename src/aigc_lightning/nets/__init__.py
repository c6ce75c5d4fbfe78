"""Plain ``nn.Module`` networks (no Lightning import, no losses)."""

from aigc_lightning.nets.dcgan import Discriminator, Generator
from aigc_lightning.nets.vae import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

__all__ = ["Discriminator", "Generator", "ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder"]
