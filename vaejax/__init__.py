"""vaejax: variational autoencoders as pure JAX functions.

Modules, lowest first (each imports only modules above it): distributions ->
nets -> models -> objectives -> estimators -> diagnostics -> training ->
evaluate -> parallel -> data -> viz -> checkpoint -> config -> experiment.
"""
__version__ = "0.1.0"
