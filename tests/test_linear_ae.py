"""A linear autoencoder trained on squared error recovers the top-k PCA subspace.

With hidden=() and activation "linear" the encoder is one affine map x -> z and
the decoder one affine map z -> x_hat; the "ae" objective with a
gaussian_fixed likelihood of scale 1 is 0.5 ||x - x_hat||^2 + const. Its
global minimisers (Baldi & Hornik 1989) reconstruct every example by its
projection onto the span of the top-k eigenvectors of the data covariance, so
the decoder's column space is that span and the mean squared reconstruction
error is the sum of the discarded eigenvalues. The control freezes the encoder
at its random init: the decoder then reconstructs from a random projection and
its column space is far from the PCA subspace, so the bound is not vacuous.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vaejax import estimators, models, objectives

IMAGE_SHAPE = (3, 4, 1)
DIM = 12
LATENT = 4
# Population spectrum: clear gaps inside the top 4 and between the 4th and 5th.
EIGENVALUES = np.array([10.0, 8.0, 6.0, 4.0, 1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
NUM_EXAMPLES = 2000
KEY = jax.random.PRNGKey(0)


def _data():
  """[N, 3, 4, 1] float32, exactly centred; and its float64 sample covariance (1/N)."""
  rng = np.random.default_rng(0)
  basis, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
  x = (rng.standard_normal((NUM_EXAMPLES, DIM)) * np.sqrt(EIGENVALUES)) @ basis.T
  x = (x - x.mean(axis=0)).astype(np.float32)
  x64 = x.astype(np.float64)
  x64 = x64 - x64.mean(axis=0)  # the float32 rounding leaves a ~1e-7 mean
  return x.reshape((NUM_EXAMPLES,) + IMAGE_SHAPE), x64.T @ x64 / NUM_EXAMPLES


def _model():
  return models.make_vae(architecture="mlp", image_shape=IMAGE_SHAPE, latent_dim=LATENT,
                         hidden=(), likelihood="gaussian_fixed", activation="linear",
                         gaussian_scale=1.0)


def _train(model, params, batch, trainable, *, adam_steps=1500, gd_steps=1500):
  """Full-batch training of params[trainable] (the rest held at init), one jit.

  Adam (cosine-decayed) finds the basin; plain gradient descent then converges
  linearly to the minimiser, which Adam's normalised steps do not.
  """
  loss_fn = objectives.make_batch_loss(model, estimators.make_estimator("ae").per_example)
  frozen = {k: v for k, v in params.items() if k not in trainable}

  def value(train):
    return loss_fn({**frozen, **train}, batch, key=KEY)[0]

  grad = jax.grad(value)

  def run(optimizer, train, steps):
    def step(carry, _):
      train, state = carry
      updates, state = optimizer.update(grad(train), state, train)
      return (optax.apply_updates(train, updates), state), None
    (train, _), _ = jax.lax.scan(step, (train, optimizer.init(train)), None, length=steps)
    return train

  @jax.jit
  def fit(train):
    train = run(optax.adam(optax.cosine_decay_schedule(3e-2, adam_steps, 1e-2)), train,
                adam_steps)
    return run(optax.sgd(0.05), train, gd_steps)

  train = fit({k: params[k] for k in trainable})
  return {**frozen, **train}


def _max_principal_angle(a, b):
  """Largest principal angle (rad) between the column spaces of a and b."""
  try:
    from scipy.linalg import subspace_angles
  except ImportError:
    qa, qb = np.linalg.qr(a)[0], np.linalg.qr(b)[0]
    # sin of the largest angle = ||(I - Qb Qb^T) Qa||_2 (accurate for small angles)
    return float(np.arcsin(min(1.0, np.linalg.norm(qa - qb @ (qb.T @ qa), 2))))
  return float(np.max(subspace_angles(a, b)))


def _fit_and_measure(train_encoder):
  batch, cov = _data()
  model = _model()
  params = model.init(jax.random.PRNGKey(1))
  trainable = ("encoder", "decoder") if train_encoder else ("decoder",)
  params = _train(model, params, jnp.asarray(batch), trainable)
  if not train_encoder:
    assert all(np.array_equal(a, b) for a, b in zip(
        jax.tree_util.tree_leaves(params["encoder"]),
        jax.tree_util.tree_leaves(model.init(jax.random.PRNGKey(1))["encoder"])))

  eigvals, eigvecs = np.linalg.eigh(cov)  # ascending
  top = eigvecs[:, -LATENT:]
  discarded = float(np.sum(eigvals[:-LATENT]))
  # Decoder: x_hat = z @ kernel + bias, kernel [latent, d]; its column space in x-space
  # is spanned by the kernel's rows.
  kernel = np.asarray(params["decoder"]["out"]["kernel"], np.float64)
  assert kernel.shape == (LATENT, DIM)
  angle = _max_principal_angle(kernel.T, top)

  def reconstruct(x):
    return model.decode(params, model.posterior(params, x).mean)

  recon = np.asarray(jax.jit(jax.vmap(reconstruct))(batch), np.float64)
  sq_err = np.mean(np.sum((recon - batch.astype(np.float64)).reshape(NUM_EXAMPLES, -1) ** 2, 1))
  return angle, sq_err, discarded


def test_linear_ae_spans_the_top_pca_subspace():
  angle, sq_err, discarded = _fit_and_measure(train_encoder=True)
  rel_err = abs(sq_err - discarded) / discarded
  print(f"angle={angle:.3e} rad  sq_err={sq_err:.6f}  discarded={discarded:.6f}  "
        f"rel_err={rel_err:.3e}")
  assert angle < 1e-2
  assert rel_err < 1e-3


def test_frozen_random_encoder_does_not_find_the_pca_subspace():
  angle, sq_err, discarded = _fit_and_measure(train_encoder=False)
  print(f"frozen encoder: angle={angle:.3e} rad  sq_err={sq_err:.6f}  discarded={discarded:.6f}")
  assert angle > 0.1
  assert sq_err > discarded * (1 + 1e-2)
