"""PyTorch modules for tests/torch2mc_test.py, given to tools/torch2mc.py as
tests/torch2mc_models.py:FACTORY: one exportable model with a concat and a
residual that is not in modeconn's zoo, and modules torch2mc must refuse."""
import torch
from torch import nn
import torch.nn.functional as F


class CatRes(nn.Module):
    """stem -> two branches concatenated -> 1x1 fuse + residual with the
    stem -> pools -> strided conv -> view-flatten -> MLP head.  Functional
    and module ReLUs, in place and not, Identity, Dropout, BatchNorm1d."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        self.b1 = nn.Sequential(nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.b2 = nn.Conv2d(16, 12, 3, padding="same")
        self.fuse = nn.Conv2d(20, 16, 1, bias=False)
        self.fuse_bn = nn.BatchNorm2d(16)
        self.skip = nn.Identity()
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.down_bn = nn.BatchNorm2d(32)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.bn1 = nn.BatchNorm1d(64)
        self.drop = nn.Dropout(0.25)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x):
        s = self.stem(x)
        c = torch.cat([self.b1(s), F.relu(self.b2(s))], dim=1)
        r = self.fuse_bn(self.fuse(c))
        r += self.skip(s)
        r = torch.relu(r)
        r = F.max_pool2d(r, 2)
        d = self.relu(self.down_bn(self.down(r)))
        d = F.avg_pool2d(d, 2)
        v = d.view(d.size(0), -1)
        return self.fc2(self.drop(self.bn1(self.fc1(v)).relu()))


def catres(num_classes=10):
    return CatRes(num_classes)


class WithAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        t = self.conv(x).flatten(2).transpose(1, 2)
        t, _ = self.attn(t, t, t)
        return self.fc(t.mean(1))


class Gate(nn.Module):
    def forward(self, x):
        if x.mean() > 0:
            return x
        return -x


class WithBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gate = nn.Sequential(nn.ReLU(), Gate())
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.gate(self.conv(x)).mean((2, 3)))


class WithGroups(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, groups=4))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class WithSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Sigmoid())
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.body(x), (1, 1)), 1))


def attention():
    return WithAttention()


def branch():
    return WithBranch()


def grouped():
    return WithGroups()


def sigmoid():
    return WithSigmoid()
