"""``python -m aigc_lightning demo --ckpt_path CKPT_OR_DIR [--port P]``: a Gradio app fitted to the model.

- GAN: seed, truncation ψ, class (conditional models), number of images → a grid; a latent-walk video button;
  StyleGAN2 also style mixing (a second seed, coarse/middle/fine layers) and SeFa edit-direction sliders.
- VAE: sliders for the first latent dimensions → the decoded image; upload an image → its reconstruction.
- Style network: upload an image or a video → stylised.

``CKPT_OR_DIR`` is a CLI checkpoint, a pretrained folder or a Hub repo id (``modules.pretrained.load_model``). Every
function is also an API endpoint (``/sample``, ``/walk``, ``/edit``, ``/decode``, ``/reconstruct``, ``/stylize``,
``/stylize_video``) for ``gradio_client``; docs/share.md shows a scripted call. Needs the ``[demo]`` extra (gradio).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid

from aigc_lightning.errors import UserError

DISPLAY = 256  # images are shown at least this large (nearest-neighbour: the pixels the model made)
VAE_SLIDERS = 8  # latent dimensions offered as sliders; the rest stay 0


def to_pil(images: Tensor, nrow: int = 4) -> Image.Image:
    """Images (B, C, H, W) in [0, 1] as one PIL grid, upscaled by an integer factor to about ``DISPLAY`` px."""
    grid = make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2)
    scale = max(1, DISPLAY // max(images.shape[-2:]))
    if scale > 1:
        grid = torch.nn.functional.interpolate(grid[None], scale_factor=scale, mode="nearest")[0]
    x = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # (H, W, C)
    return Image.fromarray(x[..., 0] if x.shape[2] == 1 else x)


def from_pil(image: Any) -> Tensor:
    """A Gradio image (PIL or numpy) as (1, 3, H, W) in [0, 1]."""
    import numpy as np

    array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return torch.from_numpy(array[..., :3].copy()).permute(2, 0, 1)[None] / 255


def class_index(model: Any, label: Any) -> int | None:
    """A class name or number (the dropdown's string) → its index; None for an unconditional model."""
    classes = getattr(model, "num_classes", 0)
    if not classes:
        return None
    names = [str(n) for n in (model.hparams.get("class_names") or range(classes))]
    return names.index(str(label)) if label is not None else 0


@torch.no_grad()
def style_edit(model: Any, seed: int, psi: float, mix_seed: int | None = None, mix_layers: str = "coarse",
               direction: int = 0, strength: float = 0.0, label: int | None = None) -> Tensor:  # fmt: skip
    """One StyleGAN2 image (1, C, H, W) in [0, 1]: ``seed``'s ws (of class ``label`` if conditional) with the
    ``mix_layers`` group (coarse/middle/fine) taken from ``mix_seed``'s ws, truncated by ``psi`` (towards the
    class's mean w), then moved ``strength`` along SeFa direction ``direction`` (``nets.latent_edits``)."""
    from aigc_lightning.nets.latent_edits import layer_group, sefa_directions
    from aigc_lightning.pixels import to_unit
    from aigc_lightning.seeds import randn_from_seeds

    centre = model.mean_latent()  # refreshes the EMA generator, as generate does
    g = model.generator_ema.eval()
    y = None if label is None else torch.full((1,), int(label), dtype=torch.long, device=model.device)

    def ws_of(s: int) -> Tensor:  # (1, num_ws, w_dim)
        z = randn_from_seeds(torch.tensor([int(s)]), (model.latent_dim,), model.device)
        return g.mapping(z, update_w_avg=False, labels=y)

    ws = ws_of(seed)
    if mix_seed is not None:
        idx = layer_group(mix_layers, g.num_ws)
        if len(idx) == 0:
            raise UserError(
                f"a {g.image_size} px generator has no {mix_layers} layers; pick another layer group"
            )
        ws = ws.clone()
        ws[:, idx] = ws_of(mix_seed)[:, idx]
    ws = g.truncate(ws, float(psi), centre=None if y is None else centre[y][:, None])
    if strength:
        directions = sefa_directions(g)
        if not 0 <= direction < len(directions):
            raise UserError(f"SeFa direction {direction} is out of range (0 … {len(directions) - 1})")
        ws = ws + float(strength) * directions[int(direction)].to(ws)
    return to_unit(g.synthesis(ws, noise_mode=model.hparams.noise_mode)).clamp(0, 1)


def style_controls(gr: Any, model: Any, seed: Any, psi: Any, label: Any) -> None:
    """StyleGAN2 only: style mixing (a second seed, a layer group) and a SeFa direction with a strength."""
    from aigc_lightning.nets.latent_edits import LAYER_GROUPS

    with gr.Row():
        mix_seed = gr.Number(value=-1, precision=0, label="mixing seed (-1: none)")
        layers = gr.Dropdown(list(LAYER_GROUPS), value="coarse", label="layers from the mixing seed")
        direction = gr.Slider(
            0, min(15, model.generator_ema.w_dim - 1), value=0, step=1, label="SeFa direction"
        )
        strength = gr.Slider(-5.0, 5.0, value=0.0, step=0.25, label="edit strength")
    edited = gr.Image(label="style mixing and SeFa edit of the seed's image", type="pil")

    def edit(seed: float, psi: float, mix: float, layers: str, direction: float, strength: float,
             label: str | None = None) -> Image.Image:  # fmt: skip
        mix_seed = None if mix is None or int(mix) < 0 else int(mix)
        image = style_edit(
            model, int(seed), psi, mix_seed, layers, int(direction), strength, class_index(model, label)
        )
        return to_pil(image, nrow=1)

    inputs = [seed, psi, mix_seed, layers, direction, strength, label]
    gr.Button("Mix and edit").click(edit, inputs, edited, api_name="edit")
    for control in (mix_seed, layers, direction, strength):
        control.change(edit, inputs, edited, api_name=False)


def gan_tab(gr: Any, model: Any) -> tuple:
    """Seed, ψ, count (and class) controls over a grid, and a walk button; returns what the page draws at load."""
    classes = getattr(model, "num_classes", 0)
    names = list(model.hparams.get("class_names") or range(classes)) if classes else []
    with gr.Row():
        seed = gr.Number(value=0, precision=0, label="seed")
        psi = gr.Slider(0.0, 1.5, value=float(model.hparams.truncation_psi), step=0.05, label="truncation ψ")
        count = gr.Slider(1, 16, value=8, step=1, label="images")
        label = gr.Dropdown([str(n) for n in names], value=str(names[0]) if names else None, label="class",
                            visible=bool(classes))  # fmt: skip
    image = gr.Image(label="samples (image i from seed + i)", type="pil")

    def sample(seed: float, psi: float, count: float, label: str | None = None) -> Image.Image:
        kwargs: dict[str, Any] = {"truncation_psi": float(psi)}
        if classes:
            kwargs["labels"] = [str(n) for n in names].index(str(label)) if label is not None else 0
        with torch.no_grad():
            return to_pil(model.sample(int(count), seed=int(seed), **kwargs))

    inputs = [seed, psi, count, label]
    gr.Button("Generate").click(sample, inputs, image, api_name="sample")
    for control in (seed, psi, count, label):
        control.change(sample, inputs, image, api_name=False)
    video = gr.Video(label="latent walk (4 s loop)")

    def walk(seed: float) -> str:
        from aigc_lightning.callbacks.video import write_frames
        from aigc_lightning.callbacks.walk import LatentWalk, even_size, frames_to_uint8

        frames = LatentWalk(model, 48, num_keys=4, loop=True, seed=int(seed)).frames(16)
        h, w = even_size(tuple(model.sample(1, seed=0).shape[-2:]), DISPLAY)
        path = Path(tempfile.mkdtemp(prefix="aigc_walk_")) / "walk.mp4"
        write_frames(path, (frames_to_uint8(x, h, w) for x in frames), 12, w, h)
        return str(path)

    gr.Button("Latent walk video").click(walk, [seed], video, api_name="walk")
    if getattr(getattr(model, "latents", None), "gives_ws", False):
        style_controls(gr, model, seed, psi, label)
    return sample, inputs, image


def vae_tab(gr: Any, model: Any) -> None:
    dims = min(VAE_SLIDERS, model.latent_dim)
    sliders = [gr.Slider(-3.0, 3.0, value=0.0, step=0.1, label=f"z[{i}]") for i in range(dims)]
    decoded = gr.Image(label="decoded", type="pil")

    def decode(*values: float) -> Image.Image:
        z = torch.zeros(1, model.latent_dim, device=model.device)
        z[0, :dims] = torch.tensor([float(v) for v in values])
        with torch.no_grad():
            y = (
                torch.zeros(1, dtype=torch.long, device=model.device)
                if getattr(model, "num_classes", 0)
                else None
            )
            return to_pil(model.mean_image(model.decode(z) if y is None else model.decode(z, y)), nrow=1)

    gr.Button("Decode").click(decode, sliders, decoded, api_name="decode")
    for s in sliders:
        s.change(decode, sliders, decoded, api_name=False)
    with gr.Row():
        upload = gr.Image(label="an image to reconstruct", type="pil")
        recon = gr.Image(label="reconstruction", type="pil")

    def reconstruct(image: Any) -> Image.Image:
        from aigc_lightning.pixels import resize_crop

        _, c, _, size = model.sample(1).shape
        x = resize_crop(from_pil(image) * 255, size) / 255  # (1, 3, size, size)
        x = x.mean(1, keepdim=True) if c == 1 else x
        with torch.no_grad():
            return to_pil(torch.cat([x, model.reconstruct(x.to(model.device)).cpu()]), nrow=2)

    upload.change(reconstruct, upload, recon, api_name="reconstruct")


def style_tab(gr: Any, model: Any) -> None:
    with gr.Row():
        upload = gr.Image(label="a photo", type="pil")
        out = gr.Image(label="stylised", type="pil")

    def stylize(image: Any) -> Image.Image:
        with torch.no_grad():
            return to_pil(model.stylize(from_pil(image).to(model.device)), nrow=1)

    upload.change(stylize, upload, out, api_name="stylize")
    with gr.Row():
        video_in = gr.Video(label="a video", sources=["upload"])
        video_out = gr.Video(label="stylised video")
    video_in.change(
        lambda path: stylize_video_file(model, path), video_in, video_out, api_name="stylize_video"
    )


def stylize_video_file(model: Any, path: str | None) -> str | None:
    """An uploaded video stylised through the streaming path (``stylize_frames`` → ``write_video``: the source's
    size, frame rate and audio; memory independent of the length) into a fresh temporary MP4; returns its path."""
    if not path:
        return None
    from aigc_lightning.callbacks.video import write_video
    from aigc_lightning.datamodules.video import VideoClip

    clip = VideoClip(str(path))
    out = Path(tempfile.mkdtemp(prefix="aigc_stylized_")) / f"{Path(str(path)).stem}_stylized.mp4"
    with torch.no_grad():
        write_video(out, clip, model.stylize_frames(clip.frames(8)))
    return str(out)


def build_demo(model: Any, title: str = "aigc-lightning") -> Any:
    """The Gradio ``Blocks`` app for a GAN, VAE or StyleNetwork."""
    import gradio as gr

    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"# {title}\n`{type(model).__name__}`")
        if hasattr(model, "stylize"):
            style_tab(gr, model)
        elif hasattr(model, "generate"):
            demo.load(*gan_tab(gr, model), api_name=False)  # the page opens with samples
        elif hasattr(model, "decode"):
            vae_tab(gr, model)
        else:
            raise UserError(
                f"the demo shows a GAN, VAE or style network; {type(model).__name__} is none of them"
            )
    return demo


def main(argv: list[str] | None = None) -> None:
    """``demo --ckpt_path CKPT_OR_DIR [--port P] [--host H] [--share true]``."""
    parser = argparse.ArgumentParser(
        prog="python -m aigc_lightning demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--ckpt_path", required=True, help="a CLI checkpoint, a pretrained folder or a Hub repo id"
    )
    parser.add_argument("--port", type=int, default=7860, help="the server's port")
    parser.add_argument(
        "--host", default="127.0.0.1", help="the address to serve on (0.0.0.0: every interface)"
    )
    parser.add_argument(
        "--share", type=lambda s: s.lower() == "true", default=False, help="a public Gradio link"
    )
    args = parser.parse_args(argv)
    try:
        try:
            import gradio
        except ImportError:
            gradio = None
        if not hasattr(gradio, "Blocks"):  # missing, or the empty folder an uninstalled gradio leaves
            raise UserError('the demo needs gradio: pip install -e ".[demo]"')
        from aigc_lightning.modules.pretrained import load_model

        model = load_model(args.ckpt_path)
        demo = build_demo(model, title=f"aigc-lightning: {Path(str(args.ckpt_path)).name}")
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    demo.launch(server_name=args.host, server_port=args.port, share=args.share)


__all__ = ["build_demo", "main"]
