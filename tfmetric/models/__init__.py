"""Backbones (InceptionV1, ResNet50), the paper's embedding head and the training model."""
from tfmetric.models.backbones import BACKBONES, backbone_preprocessing, build_backbone
from tfmetric.models.embedding import build_embedding_model, build_training_model, head_variables
from tfmetric.models.inception_v1 import InceptionV1, load_slim_checkpoint, slim_variable_map
from tfmetric.models.resnet50 import ResNet50Backbone
from tfmetric.models.weights import WeightsNotFoundError, convert_slim_checkpoint, resolve_weights

__all__ = ["BACKBONES", "InceptionV1", "ResNet50Backbone", "backbone_preprocessing", "build_backbone",
           "build_embedding_model", "build_training_model", "head_variables", "load_slim_checkpoint",
           "slim_variable_map", "WeightsNotFoundError", "convert_slim_checkpoint", "resolve_weights"]
