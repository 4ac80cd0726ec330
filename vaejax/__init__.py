"""vaejax: variational autoencoders as pure JAX functions.

Modules, lowest first (each imports only modules above it): distributions ->
nets -> models (a package: base, vae, cvae) -> objectives -> estimators ->
diagnostics -> optim -> training -> evaluate -> parallel -> data -> viz ->
plots -> pictures -> checkpoint -> config -> builders -> experiment.
"""
__version__ = "0.1.0"
