"""Weights from elsewhere onto spec-built models: torchvision's, key for key."""

from archspec.weights.torchvision import RULES, load_torchvision_weights, weights_source

__all__ = ["RULES", "load_torchvision_weights", "weights_source"]
