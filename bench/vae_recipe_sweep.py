"""The fast plain-PyTorch sweep that found ``vae_mlp_mnist.yaml``'s recipe: one variant per call, IW bound at k = 200.

The seed's 784-400-20 VAE written out plainly (as ``bench/vae_nll.py``'s reference) with the knobs swept:
learning rate, per-batch warm-up and decay (``--sched cos|lin|lin3|none``), Adam betas / eps / weight decay, batch
size, decoder bias from the data (``--biasinit``), the encoder's learning-rate factor (``--enclr``), IWAE samples
(``--k``), EMA, dropout, input centring, activation. Same data as ``bench/vae_nll.py`` (8,000 MNIST PNGs to train,
dynamically binarised; the other 2,000 held out, binarised once). Prints the settings, the process CPU time of
training, and the held-out −ELBO and IW-NLL (k = ``--evalk``, default 200: cheaper than the bench's 1000 and a few
tenths of a nat higher). The framework's numbers come from ``bench/vae_nll.py``; this is the search.

    python bench/vae_recipe_sweep.py --root MNIST_PNGS --lr 1e-3                       # the seed recipe
    python bench/vae_recipe_sweep.py --root MNIST_PNGS --fused --biasinit --sched cos --lr 2e-2 --enclr 0.25 \
        --warm 300 --b2 0.99                                                              # the config's recipe
"""

import argparse
import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from aigc_lightning.datamodules import ImageFolderDataModule

torch.set_num_threads(1)
LOG_2PI = math.log(2 * math.pi)


def load_split(root: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(8000, 784) grey training images in [0, 1] and (2000, 784) binarised held-out ones, as bench/vae_nll.py."""
    dm = ImageFolderDataModule(root=root, image_size=28, channels=1, binarize=True, val_fraction=0.2, seed=0,
                               batch_size=128)  # fmt: skip
    dm.setup("fit")
    images = dm.train_set.dataset.images
    xtr = (images[torch.tensor(dm.train_set.indices)].float() / 255).view(-1, 784)
    xva = ((torch.cat([x for x, _ in dm.val_dataloader()]) + 1) / 2).view(-1, 784)
    return xtr, xva


class VAE(nn.Module):
    def __init__(s, act="relu"):
        super().__init__()
        s.fc1, s.fc21, s.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        s.fc3, s.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)
        s.act = getattr(F, act)

    center = False
    indrop = 0.0
    hdrop = 0.0

    def encode(s, x):
        if s.training and s.indrop:
            x = F.dropout(x, s.indrop)
        h = s.act(s.fc1(x * 2 - 1 if s.center else x))
        if s.training and s.hdrop:
            h = F.dropout(h, s.hdrop)
        return s.fc21(h), s.fc22(h).clamp(-30, 20)

    def decode(s, z):
        return s.fc4(s.act(s.fc3(z)))


@torch.no_grad()
def iw_nll(m, xs, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    nll = []
    nelbo = []
    for x in xs.split(100):
        mu, logvar = m.encode(x)
        std = torch.exp(0.5 * logvar)
        lw = []
        for _ in range(0, k, 50):
            eps = torch.randn(50, *mu.shape, generator=g)
            z = mu + std * eps
            logits = m.decode(z.view(-1, 20)).view(50, x.shape[0], 784)
            lpx = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
            lw.append(
                lpx - 0.5 * (z.pow(2) + LOG_2PI).sum(-1) + 0.5 * (eps.pow(2) + logvar + LOG_2PI).sum(-1)
            )
        lw = torch.cat(lw)[:k].double()
        nelbo.append(-lw.mean(0))
        nll.append(-(torch.logsumexp(lw, 0) - math.log(k)))
    return torch.cat(nelbo).mean().item(), torch.cat(nll).mean().item()


ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--root", required=True, help="a folder of MNIST PNGs in class folders")
ap.add_argument("--epochs", type=float, default=20)
ap.add_argument("--bs", type=int, default=128)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--sched", default="none")  # none|cos|lin|onecycle
ap.add_argument("--warm", type=int, default=0)
ap.add_argument("--final", type=float, default=0.0)
ap.add_argument("--b2", type=float, default=0.999)
ap.add_argument("--b1", type=float, default=0.9)
ap.add_argument("--biasinit", action="store_true")
ap.add_argument("--ema", type=float, default=0)
ap.add_argument("--k", type=int, default=1)
ap.add_argument("--evalk", type=int, default=200)
ap.add_argument("--act", default="relu")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--opt", default="adam")
ap.add_argument("--fused", action="store_true")
ap.add_argument("--wd", type=float, default=0)
ap.add_argument("--center", action="store_true")
ap.add_argument("--enclr", type=float, default=1.0)
ap.add_argument("--indrop", type=float, default=0)
ap.add_argument("--hdrop", type=float, default=0)
ap.add_argument("--lvbias", type=float, default=None)
ap.add_argument("--eps", type=float, default=1e-8)
a = ap.parse_args()
xtr, xva = load_split(a.root)
torch.manual_seed(a.seed)
m = VAE(a.act)
m.center = a.center
m.indrop = a.indrop
m.hdrop = a.hdrop
if a.lvbias is not None:
    m.fc22.bias.data.fill_(a.lvbias)
if a.biasinit:
    p = xtr.mean(0).clamp(1e-3, 1 - 1e-3)
    m.fc4.bias.data.copy_(torch.log(p / (1 - p)))
kw = {"lr": a.lr, "betas": (a.b1, a.b2), "eps": a.eps}
if a.fused:
    kw["fused"] = True
enc_p = [*m.fc1.parameters(), *m.fc21.parameters(), *m.fc22.parameters()]
dec_p = [*m.fc3.parameters(), *m.fc4.parameters()]
groups = [{"params": enc_p, "lr": a.lr * a.enclr}, {"params": dec_p, "lr": a.lr}]
opt = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adamax": torch.optim.Adamax}[a.opt](
    groups, weight_decay=a.wd, **kw
)
per = len(xtr) // a.bs
total = int(a.epochs * per)


def lr_at(t):
    if t < a.warm:
        return (t + 1) / a.warm
    if a.sched == "none":
        return 1.0
    u = (t - a.warm) / max(1, total - a.warm)
    if a.sched == "cos":
        return a.final + (1 - a.final) * 0.5 * (1 + math.cos(math.pi * u))
    if a.sched == "lin":
        return a.final + (1 - a.final) * (1 - u)
    if a.sched == "lin3":  # flat then linear decay over last third
        return 1.0 if u < 2 / 3 else a.final + (1 - a.final) * (1 - (u - 2 / 3) * 3)


sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
ema = None
if a.ema:
    ema = torch.optim.swa_utils.AveragedModel(
        m, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(a.ema)
    )
t0 = time.process_time()
t = 0
while t < total:
    perm = torch.randperm(len(xtr))
    for i in range(per):
        if t >= total:
            break
        x = torch.bernoulli(xtr[perm[i * a.bs : (i + 1) * a.bs]])
        mu, logvar = m.encode(x)
        if a.k == 1:
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            rec = F.binary_cross_entropy_with_logits(m.decode(z), x, reduction="none").sum(1)
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
            loss = (rec + kl).mean()
        else:
            std = torch.exp(0.5 * logvar)
            eps = torch.randn(a.k, *mu.shape)
            z = mu + std * eps
            logits = m.decode(z.view(-1, 20)).view(a.k, x.shape[0], 784)
            lpx = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
            lw = lpx - 0.5 * z.pow(2).sum(-1) + 0.5 * (eps.pow(2) + logvar).sum(-1)
            loss = -(torch.logsumexp(lw, 0) - math.log(a.k)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        t += 1
        if ema is not None:
            ema.update_parameters(m)
secs = time.process_time() - t0
m.eval()
ne, nl = iw_nll(m, xva, a.evalk)
out = f"{vars(a)} | train {secs:.1f}s | nelbo {ne:.2f} iw{a.evalk} {nl:.2f}"
if os.environ.get("TRAINEVAL"):
    xt = torch.bernoulli(xtr[:2000], generator=torch.Generator().manual_seed(1))
    ne3, nl3 = iw_nll(m, xt, a.evalk)
    out += f" | TRAIN nelbo {ne3:.2f} iw {nl3:.2f}"
if ema is not None:
    ne2, nl2 = iw_nll(ema.module, xva, a.evalk)
    out += f" | ema nelbo {ne2:.2f} iw {nl2:.2f}"
print(out, flush=True)
