"""Plain ``nn.Module`` networks (no Lightning import, no losses)."""

from aigc_lightning.nets.vae import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

__all__ = ["ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder"]
