"""The reference VAE and its train step in PyTorch, eager and torch.compile.

Identical to vaejax's reference model: 784-512-512-(2x32) ReLU MLP encoder with
separate mean and log-variance heads (log-variance soft-clipped at 30 as in
vaejax.nets), 32-512-512-784 decoder, Bernoulli likelihood on logits, analytic
Gaussian KL, one reparameterised sample, Adam(1e-3), float32. The binarized
training set lives on the device as uint8 and each batch is gathered and
converted on the device, as vaejax does.

Optional dependency: `pip install torch` (CPU wheel is enough). Used by
`step_throughput.py --compare-torch`, which interleaves it with vaejax in one
process; run alone it prints its own throughput:

  python benchmarks/pytorch_reference.py --batch-sizes 20,128,1024
"""
from __future__ import annotations

import argparse
import time

import numpy as np

IMPLS = ("torch-eager", "torch-compile")


def available() -> bool:
  try:
    import torch  # noqa: F401
  except ImportError:
    return False
  return True


def make_runner(impl: str, *, batch_size: int, images: np.ndarray, seed: int = 0,
                hidden: int = 512, latent_dim: int = 32, learning_rate: float = 1e-3,
                update: bool = True):
  """run(num_steps) -> None: trains num_steps steps and waits for the device.

  images: [N, 784] uint8 in {0, 1}. impl: 'torch-eager' or 'torch-compile'
  (the whole step, forward + backward + Adam, under torch.compile). With
  update=False each step stops after backward (gradients computed, Adam not
  run): what the step costs without its optimizer.
  """
  import torch
  from torch import nn
  if impl not in IMPLS:
    raise ValueError(f"unknown torch impl {impl!r}; valid: {IMPLS}")
  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch.manual_seed(seed)
  pixels = images.shape[1]

  class ReferenceVAE(nn.Module):
    def __init__(self):
      super().__init__()
      self.encoder = nn.Sequential(nn.Linear(pixels, hidden), nn.ReLU(),
                                   nn.Linear(hidden, hidden), nn.ReLU())
      self.mean = nn.Linear(hidden, latent_dim)
      self.log_var = nn.Linear(hidden, latent_dim)
      self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(),
                                   nn.Linear(hidden, hidden), nn.ReLU(),
                                   nn.Linear(hidden, pixels))

    def forward(self, x, eps):
      h = self.encoder(x)
      mean, log_var = self.mean(h), 30.0 * torch.tanh(self.log_var(h) / 30.0)
      z = mean + torch.exp(0.5 * log_var) * eps
      logits = self.decoder(z)
      log_px_z = -nn.functional.binary_cross_entropy_with_logits(
          logits, x, reduction="none").sum(-1)
      kl = 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).sum(-1)
      return (kl - log_px_z).mean()

  model = ReferenceVAE().to(device)
  optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
  data = torch.from_numpy(np.ascontiguousarray(images)).to(device)
  generator = torch.Generator(device=device).manual_seed(seed)
  perm = torch.randperm(len(data), device=device, generator=generator)
  steps_per_epoch = len(data) // batch_size

  def step(x, eps):
    optimizer.zero_grad(set_to_none=True)
    loss = model(x, eps)
    loss.backward()
    if update:
      optimizer.step()
    return loss

  step_fn = torch.compile(step) if impl == "torch-compile" else step
  position = [0]

  def run(num_steps: int) -> None:
    for _ in range(num_steps):
      i = position[0] % steps_per_epoch
      position[0] += 1
      x = data[perm[i * batch_size:(i + 1) * batch_size]].float()
      eps = torch.randn(batch_size, latent_dim, device=device, generator=generator)
      step_fn(x, eps)
    if device == "cuda":
      torch.cuda.synchronize()

  return run


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch-sizes", default="20,128,1024")
  parser.add_argument("--steps", type=int, default=200)
  args = parser.parse_args()
  images = (np.random.default_rng(0).random((10_000, 784)) > 0.5).astype(np.uint8)
  for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
    for impl in IMPLS:
      run = make_runner(impl, batch_size=batch_size, images=images)
      run(3)  # compile / warm up
      start = time.perf_counter()
      run(args.steps)
      seconds = time.perf_counter() - start
      print(f"{impl:14s} batch {batch_size:5d}: {args.steps * batch_size / seconds:10.0f} examples/s")


if __name__ == "__main__":
  main()
