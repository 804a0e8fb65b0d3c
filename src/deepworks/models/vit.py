"""Vision Transformer (Dosovitskiy et al., 2021): an image read as a sequence of patches.

The image (C, H, W) is cut into non-overlapping ``p x p`` patches, each flattened and projected
to ``dim`` features. A convolution with ``kernel = stride = p`` does exactly that in one call:
``N = (H / p) (W / p)`` patch tokens ``z_i = W_e vec(patch_i) + b``. A learned class token
``z_cls`` is prepended (``pooling: cls``), learned position embeddings are added, and ``depth``
pre-norm Transformer blocks mix the tokens::

    z <- z + MSA(LN(z))
    z <- z + MLP(LN(z))

After a final LayerNorm the image's features are the class token's output (``cls``) or the mean
of the patch tokens (``mean``); a linear ``head`` maps them to class logits. Unlike a convnet,
nothing in the architecture says which patches are neighbours: the position embeddings learn it,
so small ViTs need augmentation or many samples to match a CNN on small images.

:meth:`ViT.attention_maps` returns every layer's self-attention weights ``(B, H, L, L)`` (row 0
and column 0 are the class token when there is one), e.g. to draw where the class token looks.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from deepworks.errors import ConfigError
from deepworks.layers.attention import TransformerBlock
from deepworks.models.base import Model
from deepworks.registry import PositiveFloat, PositiveInt, Probability, register_model


@register_model("vit")
class ViT(Model):
    """Vision Transformer classifier.

    Args:
        in_channels: Channels of the input images (1 grey, 3 RGB).
        image_size: Input side, or [height, width]; each must be a multiple of ``patch_size``.
        num_classes: Output classes.
        patch_size: Side of the square patches (the patch embedding's kernel and stride).
        dim: Token width.
        depth: Transformer blocks.
        num_heads: Attention heads per block (must divide ``dim``).
        mlp_ratio: Hidden width of each block's MLP, as a multiple of ``dim``.
        dropout: Dropout on the embeddings, in the blocks and before the head.
        pooling: "cls" (a learned class token) or "mean" (average of the patch tokens).
    """

    example_input_shape = (1, 8, 8)
    example_kwargs = {
        "in_channels": 1,
        "image_size": 8,
        "patch_size": 2,
        "dim": 16,
        "depth": 2,
        "num_heads": 2,
    }

    def __init__(
        self,
        in_channels: PositiveInt = 3,
        image_size: list[PositiveInt] | PositiveInt = 32,
        num_classes: PositiveInt = 10,
        patch_size: PositiveInt = 4,
        dim: PositiveInt = 64,
        depth: PositiveInt = 4,
        num_heads: PositiveInt = 4,
        mlp_ratio: PositiveFloat = 2.0,
        dropout: Probability = 0.0,
        pooling: Literal["cls", "mean"] = "cls",
    ):
        super().__init__()
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        if patch_size < 1 or height % patch_size or width % patch_size:
            raise ConfigError(
                f"model.patch_size: {patch_size} must divide the image size {height}x{width}; "
                "pick a divisor of both sides"
            )
        if dim % num_heads:
            raise ConfigError(f"model.num_heads: {num_heads} must divide model.dim ({dim})")
        if pooling not in ("cls", "mean"):
            raise ConfigError(f"model.pooling: {pooling!r} must be 'cls' or 'mean'")
        self.pooling = pooling
        self.image_hw = (height, width)
        self.grid = (height // patch_size, width // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        num_tokens = self.num_patches + (pooling == "cls")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pooling == "cls" else None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, dim))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio=mlp_ratio, dropout=dropout)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self._init_parameters()

    def _init_parameters(self) -> None:
        # As in the reference (JAX) ViT: small truncated-normal positions and class token, so
        # that at the start every token is mostly its patch content, and Xavier-uniform linear
        # layers with zero biases (a fixed std such as 0.02 is far too small for narrow models).
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) → embedded tokens (B, L, dim) with positions (class token first)."""
        if tuple(x.shape[-2:]) != self.image_hw:
            h, w = self.image_hw
            raise ConfigError(
                f"model.image_size: the images are {x.shape[-2]}x{x.shape[-1]} but the model "
                f"was built for {h}x{w}; set model.image_size to the data's size"
            )
        z = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, dim), row-major patches
        if self.cls_token is not None:
            z = torch.cat([self.cls_token.expand(len(z), -1, -1), z], dim=1)
        return self.drop(z + self.pos_embed)

    def encode(self, x: torch.Tensor, need_weights: bool = False):
        """(token outputs (B, L, dim) after the final norm, per-layer attention weights)."""
        z, maps = self.tokens(x), []
        for block in self.blocks:
            z, weights = block(z, need_weights=need_weights)
            maps.append(weights)
        return self.norm(z), maps

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        z, _ = self.encode(x)
        pooled = z[:, 0] if self.cls_token is not None else z.mean(1)
        return self.drop(pooled)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Self-attention weights of every block, each (B, heads, L, L)."""
        return self.encode(x, need_weights=True)[1]
