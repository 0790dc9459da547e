#!/usr/bin/env python3
"""State-dict names and shapes of the image-to-image networks, for tests/img2img_nets.rs.

Builds, in PyTorch, modules with the module structure of the reference implementation of
pix2pix and CycleGAN (junyanz/pytorch-CycleGAN-and-pix2pix): the U-Net generator made of
nested skip-connection blocks (attribute `model` at every level), the ResNet generator
(`model` = one Sequential, residual blocks with a `conv_block` Sequential) and the
N-layer PatchGAN discriminator (`model` = one Sequential). The modules below are written
from the papers' descriptions and the reference's documented layout (layer order, which
layers carry a bias, where dropout sits); only the names and shapes they produce matter.

For every configuration it records the state_dict (name, shape) in order, the output shape
for a given input and, for the discriminators, the receptive field of one output (the
input rows and columns with a nonzero gradient), and writes
tests/data/pytorch/img2img_nets.json.

    python3 scripts/pytorch_reference/img2img_nets.py
"""
import json
import os

import torch
import torch.nn as nn


def norm_layer(kind, channels):
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class SkipBlock(nn.Module):
    """One level of the U-Net: down, the inner levels, up; output cat(x, up) except at the
    outermost level, whose output is the image."""

    def __init__(self, outer, inner, inner_block=None, in_ch=None, outermost=False,
                 innermost=False, norm="batch", dropout=False):
        super().__init__()
        self.outermost = outermost
        bias = norm == "instance"
        in_ch = outer if in_ch is None else in_ch
        down = nn.Conv2d(in_ch, inner, 4, stride=2, padding=1, bias=bias)
        if outermost:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1)
            layers = [down, inner_block, nn.ReLU(True), up, nn.Tanh()]
        elif innermost:
            up = nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, norm_layer(norm, outer)]
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, norm_layer(norm, inner), inner_block,
                      nn.ReLU(True), up, norm_layer(norm, outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UNet(nn.Module):
    def __init__(self, in_ch, out_ch, num_downs, ngf, norm, dropout):
        super().__init__()
        block = SkipBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = SkipBlock(ngf * 8, ngf * 8, block, norm=norm, dropout=dropout)
        for m in (4, 2, 1):
            block = SkipBlock(ngf * m, ngf * m * 2, block, norm=norm)
        self.model = SkipBlock(out_ch, ngf, block, in_ch=in_ch, outermost=True, norm=norm)

    def forward(self, x):
        return self.model(x)


class ResBlock(nn.Module):
    def __init__(self, dim, norm, dropout, bias):
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim),
                  nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


class ResNetGen(nn.Module):
    def __init__(self, in_ch, out_ch, ngf, norm, dropout, n_blocks):
        super().__init__()
        bias = norm == "instance"
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7, bias=bias), norm_layer(norm, ngf),
                  nn.ReLU(True)]
        for m in (1, 2):
            layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, stride=2, padding=1, bias=bias),
                       norm_layer(norm, ngf * m * 2), nn.ReLU(True)]
        layers += [ResBlock(ngf * 4, norm, dropout, bias) for _ in range(n_blocks)]
        for m in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, stride=2, padding=1,
                                          output_padding=1, bias=bias),
                       norm_layer(norm, ngf * m // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class PatchGAN(nn.Module):
    def __init__(self, in_ch, ndf, n_layers, norm):
        super().__init__()
        bias = norm == "instance"
        layers = [nn.Conv2d(in_ch, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=bias),
                       norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


def receptive_field(net, in_ch, side):
    """Rows and columns of the input that reach the centre output (nonzero gradient)."""
    net.eval()
    x = torch.randn(1, in_ch, side, side, dtype=torch.float64, requires_grad=True)
    y = net.double()(x)
    h, w = y.shape[2], y.shape[3]
    y[0, 0, h // 2, w // 2].backward()
    g = x.grad.abs().sum(dim=(0, 1))
    rows = torch.nonzero(g.sum(1)).flatten()
    cols = torch.nonzero(g.sum(0)).flatten()
    return [int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)]


def record(kind, params, net, in_shape):
    torch.manual_seed(0)
    net.eval()
    with torch.no_grad():
        out = net(torch.zeros(in_shape))
    entry = {
        "kind": kind,
        "params": params,
        "input_shape": list(in_shape),
        "output_shape": list(out.shape),
        "state_dict": [[k, list(v.shape)] for k, v in net.state_dict().items()],
    }
    if kind == "patchgan":
        entry["receptive_field"] = receptive_field(net, in_shape[1], 160)
    return entry


def main():
    cases = []
    for norm in ("batch", "instance"):
        for dropout in (False, True):
            for num_downs, side in ((5, 32), (7, 128)):
                p = dict(in_ch=1, out_ch=1, num_downs=num_downs, ngf=2, norm=norm, dropout=dropout)
                cases.append(record("unet", p, UNet(**p), (2, 1, side, side)))
        for dropout in (False, True):
            for n_blocks, side in ((2, 32), (3, 28)):
                p = dict(in_ch=1, out_ch=1, ngf=4, norm=norm, dropout=dropout, n_blocks=n_blocks)
                cases.append(record("resnet", p, ResNetGen(**p), (2, 1, side, side)))
        for n_layers in (1, 2, 3):
            p = dict(in_ch=2, ndf=4, n_layers=n_layers, norm=norm)
            cases.append(record("patchgan", p, PatchGAN(**p), (2, 2, 32, 32)))
    out = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "pytorch",
                       "img2img_nets.json")
    with open(out, "w") as f:
        json.dump({"torch": torch.__version__, "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases written to {os.path.normpath(out)}")


if __name__ == "__main__":
    main()
