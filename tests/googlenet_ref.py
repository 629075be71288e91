"""GoogLeNet for 32x32 inputs as a plain PyTorch module: the definition
modeconn's `googlenet` zoo entry must equal (state_dict names and shapes,
forward, gradients; tests/test_torch_ref.c via tests/torch_ref.py).

It is Tatro et al.'s adaptation (IBM/NeuronAlignment, models/inception.py)
of torchvision 0.14's Inception-v1: conv1 7x7 with stride 1, maxpool1 and
maxpool4 removed; the rest is torchvision's (BasicConv2d = conv without bias
+ BN eps 1e-3 + ReLU, ceil-mode max pools, the "5x5" branch a 3x3 conv, aux
heads after 4a and 4d: adaptive average pool to 4x4, 1x1 conv 128, fc
2048->1024 + ReLU, dropout 0.7, fc).  Module names are torchvision's (the
official code names the pool branch branch4_pool/branch4 where torchvision
has branch4.0/branch4.1).  Every channel count is scaled by `width`
(modeconn's max(1, llround(c * width))) so tests can run a small copy.

Inputs whose side at the aux heads is not a multiple of 4 (7x7 for 28x28
inputs) get modeconn's pool instead of the adaptive one: average pool of
k = ceil(side/4), stride k, zero padding (counted) that gives 4x4.

torchvision_check() builds torchvision's own GoogLeNet with the same three
changes and checks that it has the same state_dict (names, shapes) and
computes the same function as this definition at width 1.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def scaled(c, w):
    return max(1, int(math.floor(c * w + 0.5)))


CFG = [  # (name, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5 (a 3x3 conv), pool_proj)
    ("inception3a", 64, 96, 128, 16, 32, 32), ("inception3b", 128, 128, 192, 32, 96, 64),
    ("inception4a", 192, 96, 208, 16, 48, 64), ("inception4b", 160, 112, 224, 24, 64, 64),
    ("inception4c", 128, 128, 256, 24, 64, 64), ("inception4d", 112, 144, 288, 32, 64, 64),
    ("inception4e", 256, 160, 320, 32, 128, 128), ("inception5a", 256, 160, 320, 32, 128, 128),
    ("inception5b", 384, 192, 384, 48, 128, 128)]


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, relu=nn.ReLU, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)
        self.relu = relu()  # no state: the state_dict stays torchvision's

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, pp, maxpool=nn.MaxPool2d, relu=nn.ReLU):
        super().__init__()
        self.branch1 = BasicConv2d(cin, c1, relu, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, c3r, relu, kernel_size=1),
                                     BasicConv2d(c3r, c3, relu, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, c5r, relu, kernel_size=1),
                                     BasicConv2d(c5r, c5, relu, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(maxpool(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(cin, pp, relu, kernel_size=1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def aux_pool(x):
    side = x.shape[-1]
    if side % 4 == 0:
        return F.adaptive_avg_pool2d(x, (4, 4))
    k = (side + 3) // 4
    return F.avg_pool2d(x, k, k, (4 * k - side + 1) // 2)


class InceptionAux(nn.Module):
    def __init__(self, cin, classes, width, dropout, relu=nn.ReLU):
        super().__init__()
        self.conv = BasicConv2d(cin, scaled(128, width), relu, kernel_size=1)
        self.fc1 = nn.Linear(scaled(128, width) * 16, scaled(1024, width))
        self.relu = relu()
        self.fc2 = nn.Linear(scaled(1024, width), classes)
        self.dropout = dropout(0.7)

    def forward(self, x):
        x = torch.flatten(self.conv(aux_pool(x)), 1)
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


class GoogLeNet(nn.Module):
    """forward(x): logits in eval mode; (logits, aux1, aux2) in train mode.
    The training loss is CE(logits) + 0.3 CE(aux1) + 0.3 CE(aux2).  dropout
    maxpool and relu are the module classes to use (tests substitute ones
    whose masks / argmax come from the C executor)."""

    AUX_WEIGHT = 0.3

    def __init__(self, in_c, classes, width=1.0, norm=None, dropout=nn.Dropout, maxpool=nn.MaxPool2d,
                 relu=nn.ReLU):
        super().__init__()
        self.norm = norm if norm is not None else nn.Identity()
        w = width
        self.conv1 = BasicConv2d(in_c, scaled(64, w), relu, kernel_size=7, stride=1, padding=3)
        self.conv2 = BasicConv2d(scaled(64, w), scaled(64, w), relu, kernel_size=1)
        self.conv3 = BasicConv2d(scaled(64, w), scaled(192, w), relu, kernel_size=3, padding=1)
        self.maxpool2 = maxpool(3, stride=2, ceil_mode=True)
        self.maxpool3 = maxpool(3, stride=2, ceil_mode=True)
        c = scaled(192, w)
        for name, *ch in CFG:
            ch = [scaled(v, w) for v in ch]
            setattr(self, name, Inception(c, *ch, maxpool=maxpool, relu=relu))
            c = ch[0] + ch[2] + ch[4] + ch[5]
            if name == "inception4a":
                self.aux1 = InceptionAux(c, classes, w, dropout, relu)
            if name == "inception4d":
                self.aux2 = InceptionAux(c, classes, w, dropout, relu)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = dropout(0.2)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.maxpool2(self.conv3(self.conv2(self.conv1(self.norm(x)))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        a1 = self.aux1(x) if self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        a2 = self.aux2(x) if self.training else None
        x = self.inception5b(self.inception5a(self.inception4e(x)))
        x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        return (x, a1, a2) if self.training else x

    @staticmethod
    def loss(out, y):
        if isinstance(out, tuple):
            main, a1, a2 = out
            return F.cross_entropy(main, y) + GoogLeNet.AUX_WEIGHT * (F.cross_entropy(a1, y) +
                                                                       F.cross_entropy(a2, y))
        return F.cross_entropy(out, y)


def torchvision_googlenet(in_c, classes):
    """torchvision 0.14's GoogLeNet with the official code's three changes
    (conv1 stride 1 and in_c input channels, maxpool1 and maxpool4 gone)."""
    import importlib
    tvg = importlib.import_module("torchvision.models.googlenet")
    m = tvg.GoogLeNet(num_classes=classes, aux_logits=True, init_weights=False)
    m.conv1 = tvg.BasicConv2d(in_c, 64, kernel_size=7, stride=1, padding=3)
    m.maxpool1 = nn.Identity()
    m.maxpool4 = nn.Identity()
    return m


def torchvision_check(in_c, side, classes, seed=0):
    """(torchvision's names and shapes, max relative difference of the
    eval logits and of the three train-mode heads (dropout p=0 on both
    sides) between torchvision's module and GoogLeNet above, same weights)."""
    tv = torchvision_googlenet(in_c, classes)
    ours = GoogLeNet(in_c, classes, 1.0, dropout=lambda p: nn.Dropout(0.0))
    for mod in tv.modules():
        if isinstance(mod, nn.Dropout):
            mod.p = 0.0
    sd_tv, sd_ours = tv.state_dict(), ours.state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd_tv.items() if not k.endswith("num_batches_tracked")}
    same = set(sd_tv) == set(sd_ours) and all(sd_tv[k].shape == sd_ours[k].shape for k in sd_tv)
    if not same:
        return shapes, float("inf")
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in sd_tv.items():
        if k.endswith("num_batches_tracked"):
            sd[k] = v
        elif k.endswith("running_var"):
            sd[k] = 0.5 + torch.rand(v.shape, generator=g)
        elif v.dim() >= 2:  # fan-in scaled, so eval-mode activations stay O(1)
            sd[k] = torch.randn(v.shape, generator=g) / math.sqrt(v[0].numel())
        elif k.endswith("bn.weight"):
            sd[k] = 1 + 0.1 * torch.randn(v.shape, generator=g)
        else:
            sd[k] = 0.1 * torch.randn(v.shape, generator=g)
    tv.load_state_dict(sd)
    ours.load_state_dict(sd)
    x = torch.rand(2, in_c, side, side, generator=g)
    err = 0.0
    with torch.no_grad():
        for train in (False, True):
            tv.train(train)
            ours.train(train)
            a, b = tv(x), ours(x)
            # torchvision 0.14's _forward returns (x, aux2, aux1) and forward
            # unpacks it as (x, aux1, aux2): its field aux_logits2 holds aux1's
            # output (the head after 4a), aux_logits1 aux2's
            a = (a.logits, a.aux_logits2, a.aux_logits1) if train else (a,)
            b = b if train else (b,)
            for u, v in zip(a, b):
                err = max(err, ((u - v).abs().max() / v.abs().max()).item())
    return shapes, err
