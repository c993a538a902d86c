"""airbench94 in plain PyTorch: the *reference* side of `benchmarks/time_to_accuracy.py`.

This is Keller Jordan's airbench94 (94% on CIFAR-10 in 3.83 s on an A100), re-typed from

    github.com/KellerJordan/cifar10-airbench, legacy/airbench94.py,
    commit 1b8f794961dede8c4a3480bc7753904818f70d97 ("Uncompiled variant of airbench94_compiled.py")

with its hyperparameters, network, data pipeline, optimizer, schedules, Lookahead-EMA, TTA and
timing convention unchanged. It does not use archspec for anything but reading the data.

What is the same as the original:
  * `hyp`: 9.9 epochs, batch 1024 (drop_last), lr 11.5 and weight decay 0.0153 "per 1024 examples"
    with a summed loss (`kilostep_scale`), momentum 0.85 Nesterov, bias_scaler 64 for the BatchNorm
    biases, label smoothing 0.2, whitening-layer bias trained for the first 3 epochs only.
  * Network: 2x2 whitening conv 3 -> 24 (bias, weight frozen, set from the patch covariance of the
    first 5000 training images, eps 5e-4), GELU, three ConvGroups 64/256/256 (conv3x3 -> maxpool 2 ->
    BN -> GELU -> conv3x3 -> BN -> GELU), convs without bias and dirac (identity) initialised in their
    first `in` filters, BatchNorm with frozen weights (=1), trainable biases, momentum 0.6
    (torch 0.4), eps 1e-12, maxpool 3, linear 256 -> 10 without bias, x 1/9.
  * Data: images normalised once, half of them mirrored once ("pre-flip"), reflect-padded by 2,
    random 32x32 crops (translate 2) every epoch, and on odd epochs all images mirrored
    (the alternating flip); a fresh random permutation per epoch.
  * lr: linear 0.2 -> 1 over the first 23% of the steps, then 1 -> 0.07 (`get_lr`), stepped per batch.
  * Lookahead: every 5 steps the EMA (decay 0.95**5 * (step/total)**3) is updated and copied back
    into the weights; a final copy-back at the last step. The EMA state is created before the
    whitening init, as in the original.
  * Evaluation: tta_level 2 (mirror + 1-pixel translate, 6 views), test batches of 2000.
  * Timing: CUDA events + `torch.cuda.synchronize()` around the whitening init, each epoch's
    training and the final TTA evaluation; their sum is airbench's `total_time_seconds`. Loading
    the data onto the device and building the model are not timed, as in the original.

Differences (see also `DIFFERENCES`):
  * The images come as uint8 [N, 3, 32, 32] tensors from archspec's own CIFAR-10 reader
    (`archspec.data.datasets.load_dataset`), so both sides of the benchmark train on exactly the same
    data; the original reads torchvision's CIFAR10 into a `train.pt` cache.
  * Seeded (`torch.manual_seed(seed)`) for repeatable runs; the original draws from the unseeded
    global generator.
  * No per-epoch evaluation without TTA (it is outside the timed region in the original too) and no
    printed table; `train_airbench94` returns the numbers.
  * `epochs` and `batch_size` can be overridden (CPU smoke runs); the lr and weight decay keep
    their per-1024-examples definitions, so the per-example step is unchanged.
  * Device/precision: on CUDA exactly airbench's (fp16 weights and activations, fp32 BatchNorm,
    channels_last, cudnn.benchmark). On the CPU: fp32, contiguous, eager - only so it can be
    smoke-tested; CPU timings say nothing about the GPU.
  * Optional `compile_mode` (off by default; the 3.83 s figure is for the uncompiled file):
    `torch.compile(model, mode=...)` as in legacy/airbench94_compiled.py, with the compiled model
    kept across runs and re-initialised per run (`reinit_net`), but one model instead of that
    file's two (it swaps to a second compiled model to freeze the whitening bias; here the
    requires_grad change just costs a recompile in the first, warm-up, run).

Run alone: `.venv/bin/python benchmarks/airbench94_reference.py --data-dir .data --runs 1`.
"""

from __future__ import annotations

import argparse
import time
from math import ceil
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.transforms as T
from torch import nn

SOURCE = {
    "repo": "KellerJordan/cifar10-airbench",
    "path": "legacy/airbench94.py",
    "commit": "1b8f794961dede8c4a3480bc7753904818f70d97",
}

DIFFERENCES = (
    "data: uint8 tensors from archspec's CIFAR-10 reader (same images and labels as the archspec side) "
    "instead of torchvision's CIFAR10 cache",
    "seeded with torch.manual_seed(seed); the original is unseeded",
    "no per-epoch evaluation without TTA (untimed in the original too), no printed table",
    "epochs / batch_size overridable for CPU smoke runs (lr and wd stay per 1024 examples)",
    "CPU: fp32, contiguous, eager (CUDA: airbench's fp16 weights, fp32 BatchNorm, channels_last)",
    "optional torch.compile: one compiled model re-initialised per run (airbench94_compiled.py "
    "swaps between two)",
)

# The original's hyperparameters, unchanged.
hyp = {
    'opt': {
        'train_epochs': 9.9,
        'batch_size': 1024,
        'lr': 11.5,                 # learning rate per 1024 examples
        'momentum': 0.85,
        'weight_decay': 0.0153,     # weight decay per 1024 examples (decoupled from learning rate)
        'bias_scaler': 64.0,        # scales up learning rate (but not weight decay) for BatchNorm biases
        'label_smoothing': 0.2,
        'whiten_bias_epochs': 3,    # how many epochs to train the whitening layer bias before freezing
    },
    'aug': {
        'flip': True,
        'translate': 2,
    },
    'net': {
        'widths': {
            'block1': 64,
            'block2': 256,
            'block3': 256,
        },
        'batchnorm_momentum': 0.6,
        'scaling_factor': 1/9,
        'tta_level': 2,         # the level of test-time augmentation: 0=none, 1=mirror, 2=mirror+translate
    },
}

# Parameters of make_net() (all of them, frozen ones included) and the trainable ones at the start
# (minus the whitening weight 24*3*2*2 = 288 and the six BatchNorm weights 2*(64+256+256) = 1152).
PARAMS = 1_972_792
TRAINABLE_PARAMS = PARAMS - 288 - 1152

#############################################
#                DataLoader                 #
#############################################

CIFAR_MEAN = torch.tensor((0.4914, 0.4822, 0.4465))
CIFAR_STD = torch.tensor((0.2470, 0.2435, 0.2616))


def batch_flip_lr(inputs):
    flip_mask = (torch.rand(len(inputs), device=inputs.device) < 0.5).view(-1, 1, 1, 1)
    return torch.where(flip_mask, inputs.flip(-1), inputs)


def batch_crop(images, crop_size):
    r = (images.size(-1) - crop_size)//2
    shifts = torch.randint(-r, r+1, size=(len(images), 2), device=images.device)
    images_out = torch.empty((len(images), 3, crop_size, crop_size), device=images.device, dtype=images.dtype)
    # The two cropping methods in this if-else produce equivalent results, but the second is faster for r > 2.
    if r <= 2:
        for sy in range(-r, r+1):
            for sx in range(-r, r+1):
                mask = (shifts[:, 0] == sy) & (shifts[:, 1] == sx)
                images_out[mask] = images[mask, :, r+sy:r+sy+crop_size, r+sx:r+sx+crop_size]
    else:
        images_tmp = torch.empty((len(images), 3, crop_size, crop_size+2*r), device=images.device,
                                 dtype=images.dtype)
        for s in range(-r, r+1):
            mask = (shifts[:, 0] == s)
            images_tmp[mask] = images[mask, :, r+s:r+s+crop_size, :]
        for s in range(-r, r+1):
            mask = (shifts[:, 1] == s)
            images_out[mask] = images_tmp[mask, :, :, r+s:r+s+crop_size]
    return images_out


class CifarLoader:
    """The original's loader, fed uint8 [N, 3, 32, 32] tensors instead of a `train.pt` file.

    `dtype` is what the original hard-codes as `.half()` (fp16 on CUDA; fp32 here on the CPU)."""

    def __init__(self, images, labels, train=True, batch_size=500, aug=None, drop_last=None, shuffle=None,
                 device='cuda', dtype=torch.half, channels_last=True):
        self.images, self.labels = images.to(device), labels.to(device)
        # It's faster to load+process uint8 data than to load preprocessed fp16 data
        self.images = self.images.to(dtype) / 255
        if channels_last:
            self.images = self.images.to(memory_format=torch.channels_last)

        self.normalize = T.Normalize(CIFAR_MEAN, CIFAR_STD)
        self.proc_images = {}  # Saved results of image processing to be done on the first epoch
        self.epoch = 0

        self.aug = aug or {}
        for k in self.aug.keys():
            assert k in ['flip', 'translate'], f'Unrecognized key: {k}'

        self.batch_size = batch_size
        self.drop_last = train if drop_last is None else drop_last
        self.shuffle = train if shuffle is None else shuffle

    def __len__(self):
        return len(self.images)//self.batch_size if self.drop_last else ceil(len(self.images)/self.batch_size)

    def __iter__(self):

        if self.epoch == 0:
            images = self.proc_images['norm'] = self.normalize(self.images)
            # Pre-flip images in order to do every-other epoch flipping scheme
            if self.aug.get('flip', False):
                images = self.proc_images['flip'] = batch_flip_lr(images)
            # Pre-pad images to save time when doing random translation
            pad = self.aug.get('translate', 0)
            if pad > 0:
                self.proc_images['pad'] = F.pad(images, (pad,)*4, 'reflect')

        if self.aug.get('translate', 0) > 0:
            images = batch_crop(self.proc_images['pad'], self.images.shape[-2])
        elif self.aug.get('flip', False):
            images = self.proc_images['flip']
        else:
            images = self.proc_images['norm']
        # Flip all images together every other epoch. This increases diversity relative to random flipping
        if self.aug.get('flip', False):
            if self.epoch % 2 == 1:
                images = images.flip(-1)

        self.epoch += 1

        indices = (torch.randperm if self.shuffle else torch.arange)(len(images), device=images.device)
        for i in range(len(self)):
            idxs = indices[i*self.batch_size:(i+1)*self.batch_size]
            yield (images[idxs], self.labels[idxs])

#############################################
#            Network Components             #
#############################################


class Flatten(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), -1)


class Mul(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return x * self.scale


class BatchNorm(nn.BatchNorm2d):
    def __init__(self, num_features, momentum, eps=1e-12,
                 weight=False, bias=True):
        super().__init__(num_features, eps=eps, momentum=1-momentum)
        self.weight.requires_grad = weight
        self.bias.requires_grad = bias
        # Note that PyTorch already initializes the weights to one and bias to zero


class Conv(nn.Conv2d):
    def __init__(self, in_channels, out_channels, kernel_size=3, padding='same', bias=False):
        super().__init__(in_channels, out_channels, kernel_size=kernel_size, padding=padding, bias=bias)

    def reset_parameters(self):
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        w = self.weight.data
        torch.nn.init.dirac_(w[:w.size(1)])


class ConvGroup(nn.Module):
    def __init__(self, channels_in, channels_out, batchnorm_momentum):
        super().__init__()
        self.conv1 = Conv(channels_in,  channels_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNorm(channels_out, batchnorm_momentum)
        self.conv2 = Conv(channels_out, channels_out)
        self.norm2 = BatchNorm(channels_out, batchnorm_momentum)
        self.activ = nn.GELU()

    def forward(self, x):
        x = self.conv1(x)
        x = self.pool(x)
        x = self.norm1(x)
        x = self.activ(x)
        x = self.conv2(x)
        x = self.norm2(x)
        x = self.activ(x)
        return x

#############################################
#            Network Definition             #
#############################################


def make_net(device='cuda', dtype=torch.half, channels_last=True):
    """The original's make_net; it hard-codes `.half().cuda()` and channels_last."""
    widths = hyp['net']['widths']
    batchnorm_momentum = hyp['net']['batchnorm_momentum']
    whiten_kernel_size = 2
    whiten_width = 2 * 3 * whiten_kernel_size**2
    net = nn.Sequential(
        Conv(3, whiten_width, whiten_kernel_size, padding=0, bias=True),
        nn.GELU(),
        ConvGroup(whiten_width,     widths['block1'], batchnorm_momentum),
        ConvGroup(widths['block1'], widths['block2'], batchnorm_momentum),
        ConvGroup(widths['block2'], widths['block3'], batchnorm_momentum),
        nn.MaxPool2d(3),
        Flatten(),
        nn.Linear(widths['block3'], 10, bias=False),
        Mul(hyp['net']['scaling_factor']),
    )
    net[0].weight.requires_grad = False
    net = net.to(dtype=dtype, device=device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    for mod in net.modules():
        if isinstance(mod, BatchNorm):
            mod.float()
    return net


def reinit_net(model):
    """From legacy/airbench94_compiled.py: a fresh initialisation of an existing (compiled) net."""
    for m in model.modules():
        if type(m) in (Conv, BatchNorm, nn.Linear):
            m.reset_parameters()

#############################################
#       Whitening Conv Initialization       #
#############################################


def get_patches(x, patch_shape):
    c, (h, w) = x.shape[1], patch_shape
    return x.unfold(2,h,1).unfold(3,w,1).transpose(1,3).reshape(-1,c,h,w).float()


def get_whitening_parameters(patches):
    n,c,h,w = patches.shape
    patches_flat = patches.view(n, -1)
    est_patch_covariance = (patches_flat.T @ patches_flat) / n
    eigenvalues, eigenvectors = torch.linalg.eigh(est_patch_covariance, UPLO='U')
    return eigenvalues.flip(0).view(-1, 1, 1, 1), eigenvectors.T.reshape(c*h*w,c,h,w).flip(0)


def init_whitening_conv(layer, train_set, eps=5e-4):
    patches = get_patches(train_set, patch_shape=layer.weight.data.shape[2:])
    eigenvalues, eigenvectors = get_whitening_parameters(patches)
    eigenvectors_scaled = eigenvectors / torch.sqrt(eigenvalues + eps)
    layer.weight.data[:] = torch.cat((eigenvectors_scaled, -eigenvectors_scaled))

############################################
#                Lookahead                 #
############################################


class LookaheadState:
    def __init__(self, net):
        self.net_ema = {k: v.clone() for k, v in net.state_dict().items()}

    def update(self, net, decay):
        for ema_param, net_param in zip(self.net_ema.values(), net.state_dict().values(), strict=True):
            if net_param.dtype in (torch.half, torch.float):
                ema_param.lerp_(net_param, 1-decay)
                net_param.copy_(ema_param)

############################################
#          Schedules (from main())         #
############################################


def make_lr_schedule(total_train_steps):
    """The original's `get_lr` (a LambdaLR factor per step), lifted out of main() to be testable."""
    def get_lr(step):
        warmup_steps = int(total_train_steps * 0.23)
        warmdown_steps = total_train_steps - warmup_steps
        if step < warmup_steps:
            frac = step / warmup_steps
            return 0.2 * (1 - frac) + 1.0 * frac
        else:
            frac = (step - warmup_steps) / warmdown_steps
            return 1.0 * (1 - frac) + 0.07 * frac
    return get_lr


def make_alpha_schedule(total_train_steps):
    return 0.95**5 * (torch.arange(total_train_steps+1) / total_train_steps)**3

############################################
#               Evaluation                 #
############################################


def infer(model, loader, tta_level=0):

    # Test-time augmentation strategy (for tta_level=2):
    # 1. Flip/mirror the image left-to-right (50% of the time).
    # 2. Translate the image by one pixel either up-and-left or down-and-right (50% of the time,
    #    i.e. both happen 25% of the time).
    #
    # This creates 6 views per image (left/right times the two translations and no-translation),
    # which we evaluate and then weight according to the given probabilities.

    def infer_basic(inputs, net):
        return net(inputs).clone()

    def infer_mirror(inputs, net):
        return 0.5 * net(inputs) + 0.5 * net(inputs.flip(-1))

    def infer_mirror_translate(inputs, net):
        logits = infer_mirror(inputs, net)
        pad = 1
        padded_inputs = F.pad(inputs, (pad,)*4, 'reflect')
        inputs_translate_list = [
            padded_inputs[:, :, 0:32, 0:32],
            padded_inputs[:, :, 2:34, 2:34],
        ]
        logits_translate_list = [infer_mirror(inputs_translate, net)
                                 for inputs_translate in inputs_translate_list]
        logits_translate = torch.stack(logits_translate_list).mean(0)
        return 0.5 * logits + 0.5 * logits_translate

    model.eval()
    test_images = loader.normalize(loader.images)
    infer_fn = [infer_basic, infer_mirror, infer_mirror_translate][tta_level]
    with torch.no_grad():
        return torch.cat([infer_fn(inputs, model) for inputs in test_images.split(2000)])


def evaluate(model, loader, tta_level=0):
    logits = infer(model, loader, tta_level)
    return (logits.argmax(1) == loader.labels).float().mean().item()

############################################
#                 Timing                   #
############################################


class Stopwatch:
    """The original's `starter`/`ender` CUDA events + synchronize; perf_counter on the CPU."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == 'cuda'
        if self.cuda:
            self.starter = torch.cuda.Event(enable_timing=True)
            self.ender = torch.cuda.Event(enable_timing=True)

    def start(self):
        if self.cuda:
            self.starter.record()
        else:
            self._t0 = time.perf_counter()

    def stop(self):
        """Seconds since `start`."""
        if self.cuda:
            self.ender.record()
            torch.cuda.synchronize()
            return 1e-3 * self.starter.elapsed_time(self.ender)
        return time.perf_counter() - self._t0

############################################
#                Training                  #
############################################

_COMPILED = {}  # (device, dtype, channels_last, mode) -> (net, compiled net): kept across runs, as airbench


def precision_of(device):
    """(dtype, channels_last, name): airbench's on CUDA, fp32 contiguous elsewhere."""
    if torch.device(device).type == 'cuda':
        return torch.half, True, 'fp16 weights+activations, fp32 BatchNorm, channels_last'
    return torch.float32, False, 'fp32'


def train_airbench94(train_images, train_labels, test_images, test_labels, *, device='cuda', seed=None,
                     epochs=None, batch_size=None, compile_mode=None):
    """One airbench94 run (the original's `main(run)`); returns a dict of numbers.

    `*_images` uint8 [N, 3, 32, 32], `*_labels` int64 [N] (CPU or device). `epochs` / `batch_size`
    default to `hyp`. Keys: tta_val_acc, total_time_seconds (airbench's: whitening init + training
    epochs + TTA evaluation), whiten_seconds, train_seconds, tta_seconds, wall_seconds (the whole
    call: data to the device, model build, compile), steps, epochs, batch_size.
    """
    wall_start = time.perf_counter()
    device = torch.device(device)
    if seed is not None:
        torch.manual_seed(seed)
    dtype, channels_last, _ = precision_of(device)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True

    batch_size = int(batch_size or hyp['opt']['batch_size'])
    epochs = float(epochs if epochs is not None else hyp['opt']['train_epochs'])
    momentum = hyp['opt']['momentum']
    # Assuming gradients are constant in time, for Nesterov momentum, the below ratio is how much
    # larger the default steps will be than the underlying per-example gradients. We divide the
    # learning rate by this ratio in order to ensure steps are the same scale as gradients, regardless
    # of the choice of momentum.
    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    lr = hyp['opt']['lr'] / kilostep_scale  # un-decoupled learning rate for PyTorch SGD
    wd = hyp['opt']['weight_decay'] * batch_size / kilostep_scale
    lr_biases = lr * hyp['opt']['bias_scaler']

    loss_fn = nn.CrossEntropyLoss(label_smoothing=hyp['opt']['label_smoothing'], reduction='none')
    loader_kw = dict(device=device, dtype=dtype, channels_last=channels_last)
    test_loader = CifarLoader(test_images, test_labels, train=False, batch_size=2000, **loader_kw)
    train_loader = CifarLoader(train_images, train_labels, train=True, batch_size=batch_size, aug=hyp['aug'],
                               **loader_kw)
    total_train_steps = ceil(len(train_loader) * epochs)
    if total_train_steps < 1:
        raise ValueError(f'airbench94 needs at least one full batch: {len(train_images)} training images, '
                         f'batch size {batch_size}, {epochs:g} epochs')

    if compile_mode:
        key = (str(device), dtype, channels_last, compile_mode)
        if key not in _COMPILED:
            net = make_net(device, dtype, channels_last)
            _COMPILED[key] = (net, torch.compile(net, mode=compile_mode))
        net, model = _COMPILED[key]
        reinit_net(net)  # nothing learned is reused between runs, only the compilation
        net[0].bias.requires_grad = True  # as a fresh make_net(): the last run froze it after 3 epochs
    else:
        net = model = make_net(device, dtype, channels_last)
    current_steps = 0

    norm_biases = [p for k, p in net.named_parameters() if 'norm' in k and p.requires_grad]
    other_params = [p for k, p in net.named_parameters() if 'norm' not in k and p.requires_grad]
    param_configs = [dict(params=norm_biases, lr=lr_biases, weight_decay=wd/lr_biases),
                     dict(params=other_params, lr=lr, weight_decay=wd/lr)]
    optimizer = torch.optim.SGD(param_configs, momentum=momentum, nesterov=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, make_lr_schedule(total_train_steps))

    alpha_schedule = make_alpha_schedule(total_train_steps)
    lookahead_state = LookaheadState(net)

    # For accurately timing GPU code
    watch = Stopwatch(device)
    times = {'whiten': 0.0, 'train': 0.0, 'tta': 0.0}

    # Initialize the whitening layer using training images
    watch.start()
    train_images_norm = train_loader.normalize(train_loader.images[:5000])
    init_whitening_conv(net[0], train_images_norm)
    times['whiten'] += watch.stop()

    for epoch in range(ceil(epochs)):

        net[0].bias.requires_grad = (epoch < hyp['opt']['whiten_bias_epochs'])

        ####################
        #     Training     #
        ####################

        watch.start()

        model.train()
        for inputs, labels in train_loader:

            outputs = model(inputs)
            loss = loss_fn(outputs, labels).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()

            current_steps += 1

            if current_steps % 5 == 0:
                lookahead_state.update(net, decay=alpha_schedule[current_steps].item())

            if current_steps >= total_train_steps:
                if lookahead_state is not None:
                    lookahead_state.update(net, decay=1.0)
                break

        times['train'] += watch.stop()

    ####################
    #  TTA Evaluation  #
    ####################

    watch.start()
    tta_val_acc = evaluate(model, test_loader, tta_level=hyp['net']['tta_level'])
    times['tta'] += watch.stop()

    return {
        'tta_val_acc': tta_val_acc,
        'total_time_seconds': times['whiten'] + times['train'] + times['tta'],
        'whiten_seconds': times['whiten'],
        'train_seconds': times['train'],
        'tta_seconds': times['tta'],
        'wall_seconds': time.perf_counter() - wall_start,
        'steps': current_steps,
        'epochs': epochs,
        'batch_size': batch_size,
        'train_images': len(train_labels),
        'test_images': len(test_labels),
    }


def _main():
    ap = argparse.ArgumentParser(description='airbench94 (legacy/airbench94.py) on archspec-read CIFAR-10')
    ap.add_argument('--data-dir', default='.data', help='folder containing cifar-10-batches-py/')
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--runs', type=int, default=1)
    ap.add_argument('--epochs', type=float, default=None)
    ap.add_argument('--batch-size', type=int, default=None)
    ap.add_argument('--compile', default=None, metavar='MODE', help='torch.compile mode, e.g. max-autotune')
    args = ap.parse_args()

    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from archspec.data.datasets import load_dataset

    train = load_dataset('cifar10', 'train', data_dir=args.data_dir)
    test = load_dataset('cifar10', 'test', data_dir=args.data_dir)
    accs = []
    for run in range(args.runs):
        r = train_airbench94(train.images, train.labels, test.images, test.labels, device=args.device, seed=run,
                             epochs=args.epochs, batch_size=args.batch_size, compile_mode=args.compile)
        accs.append(r['tta_val_acc'])
        print(f"run {run}: tta_val_acc {r['tta_val_acc']:.4f}  total_time_seconds {r['total_time_seconds']:.3f} "
              f"(whiten {r['whiten_seconds']:.3f} + train {r['train_seconds']:.3f} + tta {r['tta_seconds']:.3f})")
    t = torch.tensor(accs)
    print(f"Mean: {t.mean():.4f}    Std: {t.std() if len(accs) > 1 else 0.0:.4f}")


if __name__ == '__main__':
    _main()
