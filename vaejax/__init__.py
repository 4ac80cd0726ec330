"""vaejax: variational autoencoders as pure JAX functions.

Modules, lowest first: distributions -> nets -> models -> objectives ->
training -> evaluate -> data -> viz -> checkpoint -> config -> experiment.
"""
__version__ = "0.1.0"
