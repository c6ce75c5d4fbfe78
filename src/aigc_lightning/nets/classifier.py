"""A small convolutional image classifier whose penultimate layer serves as a domain feature extractor for FID.

Inception features (the usual FID) need downloaded ImageNet weights and describe natural photographs; on small
grey digits a classifier trained on the domain itself gives features that separate what matters there (which
digit, stroke shape) and costs a fraction of a millisecond per image on a CPU. ``nets.features.DomainFeatures`` loads
one trained on scikit-learn's digits from the package.
"""

from __future__ import annotations

from torch import Tensor, nn

from aigc_lightning.nets.sizes import check_sizes


def conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """3×3 convolution, BatchNorm, ReLU; ``stride`` 2 halves the resolution."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ConvClassifier(nn.Module):
    """Conv features → global average pool → a hidden linear layer (the *features*) → class logits.

    Input: images in [-1, 1], (B, ``channels``, ``image_size``, ``image_size``) — the DataModules' range.
    Any ``image_size`` works (global pooling); the features stay comparable only at the size it was trained on.

    Args:
        channels: input channels (1 grey, 3 RGB).
        image_size: input height = width it is trained on; stored so feature extractors can resize to it.
        num_classes: number of classes (logits).
        width: channels of the first convolution; the next two have 2× and 3× as many.
        feature_dim: size of the penultimate layer, i.e. of the features FID compares.
    """

    def __init__(
        self,
        channels: int = 1,
        image_size: int = 32,
        num_classes: int = 10,
        width: int = 16,
        feature_dim: int = 64,
    ) -> None:
        super().__init__()
        check_sizes(
            self, channels=channels, image_size=image_size, num_classes=num_classes, width=width,
            feature_dim=feature_dim,
        )
        self.channels, self.image_size, self.num_classes = channels, image_size, num_classes
        self.image_shape = (channels, image_size, image_size)
        self.num_features = feature_dim
        self.body = nn.Sequential(
            conv_block(channels, width, 1),
            conv_block(width, 2 * width, 2),
            conv_block(2 * width, 3 * width, 2),
            conv_block(3 * width, 3 * width, 2),
        )
        self.hidden = nn.Sequential(nn.Linear(3 * width, feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer activations (B, ``feature_dim``) of images in [-1, 1]."""
        h = self.body(x).mean(dim=(2, 3))  # (B, 3 * width): global average pool
        return self.hidden(h)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (B, ``num_classes``)."""
        return self.head(self.features(x))

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Both at once (one pass): features (B, ``feature_dim``) and logits (B, ``num_classes``)."""
        f = self.features(x)
        return f, self.head(f)


__all__ = ["ConvClassifier"]

