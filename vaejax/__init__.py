"""vaejax: variational autoencoders as pure JAX functions.

Modules, lowest first (each imports only modules above it): distributions ->
latent_priors -> discrepancies -> nets -> models (a package: base, vae, cvae,
hvae, ladder, vqvae, code_prior, aae, batched) -> objectives -> estimators ->
diagnostics -> optim -> phases -> training -> evaluate -> classifier -> parallel
-> data_files -> data -> viz -> plots -> pictures -> checkpoint -> config_checks -> config ->
run_data -> builders -> tensorboard_writer -> experiment -> runs; cli (absl flags only).

`vaejax.load_run(workdir)` restores a trained run (see `vaejax.runs`).
"""
__version__ = "0.1.0"
__all__ = ["load_run", "NotARunError"]


def __getattr__(name):
  # Lazy, so that `import vaejax.distributions` does not pull in orbax and the rest.
  if name in __all__:
    from vaejax import runs
    return getattr(runs, name)
  raise AttributeError(f"module 'vaejax' has no attribute {name!r}")
