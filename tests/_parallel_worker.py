"""Run in a subprocess by test_parallel.py: XLA_FLAGS must be set before jax loads.

  python _parallel_worker.py MODES STEPS OUT_DIR [COORDINATOR NUM_PROCESSES PROCESS_ID]

Trains a small VAE (or, with VAEJAX_WORKER_MODEL=cvae, a class-conditioned CVAE
with a learned prior on labelled batches; with =vqvae, a VQ-VAE whose EMA codebook
and restarts are a state group updated from the global batch; with =aae, a supervised
adversarial autoencoder trained in three phases per step; with =wae, a WAE-MMD whose
batch term gathers the codes over devices; with =mvae, =mmvae (DReG, K = 3) or =mopoe,
a multimodal VAE of the image and its label; with =seqvae, a GRU sequence VAE over the
image rows with word dropout drawn in preprocessing) for STEPS steps (two chunks) on fixed
synthetic data with each parallel mode in MODES (comma-separated: one process for
the modes compared, so imports, init and eager compiles are paid once) and writes the
final params (flattened) and metric sums to OUT_DIR/MODE.npz (OUT_DIR/MODE_pID.npz for
process ID of a multi-process run).
"""
import os
import sys

import jax
import numpy as np
import optax

import ml_collections

from vaejax import builders, checkpoint, estimators, models, parallel, phases, training

modes, steps, out_dir = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3]
suffix = ""
if len(sys.argv) > 4:
  suffix = f"_p{sys.argv[6]}"
  parallel.initialize_distributed(sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))

which = os.environ.get("VAEJAX_WORKER_MODEL")
conditional = which in ("cvae", "aae", "wae") + models.MULTIMODAL
estimator = estimators.make_estimator("iwae", num_samples=3)
optimizer = optax.adam(1e-2)
if which in ("aae", "wae"):
  model = models.aae.make_prior_matching_ae(
      regularizer="adversarial" if which == "aae" else "mmd", architecture="mlp",
      image_shape=(8, 8, 1), latent_dim=2, hidden=(32,), likelihood="bernoulli",
      latent_prior="mixture2d", discriminator_hidden=(16,), supervised=which == "aae")
  estimator = estimators.make_estimator(which, "adversarial" if which == "aae" else "mmd")
  if which == "aae":
    optimizer = phases.PhasedOptimizer(tuple((p.name, p.groups, optax.adam(1e-2))
                                             for p in model.phases))
elif which in models.MULTIMODAL:
  modalities = (models.multimodal.Modality("image", (8, 8, 1), "bernoulli"),
                models.multimodal.Modality("label", (10,), "categorical", 5.0))
  model = models.multimodal.make_multimodal_vae(
      model=which, modalities=modalities, latent_dim=4, hidden=(32,),
      estimator="dreg" if which == "mmvae" else "pathwise", num_samples=3 if which == "mmvae" else 1)
  estimator = estimators.make_estimator(which, "dreg" if which == "mmvae" else "pathwise")
elif which == "seqvae":
  model = models.recurrent.make_sequence_vae(image_shape=(8, 8, 1), latent_dim=3, hidden=16)
elif which == "vqvae":
  model = models.vqvae.make_vqvae(image_shape=(8, 8, 1), features=(4, 8), num_codes=16,
                                  code_dim=4, codebook_update="ema", restart_after=2)
  estimator = estimators.make_estimator("vq", "straight_through")
elif conditional:
  model = models.cvae.make_cvae(architecture="mlp", image_shape=(8, 8, 1), latent_dim=4,
                                hidden=(32,), condition="label", prior="learned")
else:
  model = models.make_vae(architecture="mlp", image_shape=(8, 8, 1), latent_dim=4, hidden=(32,))
images = np.asarray(jax.random.randint(jax.random.PRNGKey(0), (512, 8, 8, 1), 0, 256), np.uint8)
labels = np.asarray(jax.random.randint(jax.random.PRNGKey(4), (512,), 0, 10), np.int32)
order = np.asarray(jax.random.permutation(jax.random.PRNGKey(3), 512))

for mode in modes:
  loss_fn = builders.build_loss(ml_collections.ConfigDict({"parallel": mode}), model, estimator)
  runner = parallel.make_runner(
      mode, loss_fn=loss_fn,
      optimizer=optimizer, batch_size=32,
      preprocess=training.make_preprocess(255, True, 0.25 if which == "seqvae" else 0.0),
      max_consecutive_skips=5, update_state=getattr(model, "update_state", None))
  # A fresh init per mode: a step may donate the state's buffers.
  state = training.create_train_state(model.init(jax.random.PRNGKey(1)), optimizer,
                                      key=jax.random.PRNGKey(2))
  state = runner.put_state(state)
  data = runner.put_data({"image": images, "label": labels} if conditional else images)
  perm = runner.put_data(order)
  state, sums1 = runner.chunk(state, data, perm, np.int32(0), np.int32(steps // 2))
  state, sums2 = runner.chunk(state, data, perm, np.int32(steps // 2), np.int32(steps - steps // 2))
  host = runner.get_state(state)
  sums = runner.get_metrics(sums2)
  flat = {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(host.params)[0]}
  np.savez(os.path.join(out_dir, f"{mode}{suffix}.npz"), **flat,
           **{f"metric/{k}": np.asarray(v) for k, v in sums.items()},
           step=np.asarray(host.step), devices=np.asarray(runner.num_devices))
  print("checksum", jax.process_index(), checkpoint.params_checksum(host.params), flush=True)
